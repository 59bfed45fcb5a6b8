use tenant_core::{OrgId, TenantPool};

fn purge(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(diesel::sql_query("DELETE FROM invoices")).unwrap();
}

fn main() {}
