use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn mixed(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _a = s.query(currencies::table);
    let _b = s.read_global(invoices::table);
}

fn main() {}
