use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(diesel::insert_into(orgs::table).values(orgs::name.eq("x"))).unwrap();
}

fn main() {}
