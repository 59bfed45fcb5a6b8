use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn after(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.commit().unwrap();
    let _n: i64 = s.get_result(s.query(invoices::table).count()).unwrap();
}

fn main() {}
