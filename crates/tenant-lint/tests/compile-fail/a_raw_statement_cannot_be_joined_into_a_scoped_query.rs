use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn joined(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A join takes a registered table and builds the join itself: no closure can hand back
    // a statement of the caller's making (an earlier `join(rhs, |q, r| ...)` could).
    let q = s
        .query(invoices::table)
        .inner_join(diesel::sql_query("SELECT * FROM invoices"));
    let _ = s.execute(q);
}

fn main() {}
