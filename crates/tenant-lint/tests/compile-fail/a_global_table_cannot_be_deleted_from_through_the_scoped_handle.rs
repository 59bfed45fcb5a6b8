use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn write(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.delete(currencies::table);
}

fn main() {}
