use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn copy_a_title(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A plain diesel subquery as a new value would copy another org's customer name.
    let name = customers::table
        .select(customers::name)
        .limit(1)
        .single_value()
        .assume_not_null();
    s.execute(s.update(deals::table).set(deals::title.eq(name))).unwrap();
}

fn main() {}
