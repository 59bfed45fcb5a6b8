use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn write(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.update(currencies::table);
}

fn main() {}
