use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn write(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.insert(currencies::table, currencies::code.eq("XXX"));
}

fn main() {}
