use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(diesel::delete(invoices::table)).unwrap();
}

fn main() {}
