use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn returned(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // RETURNING a plain diesel subquery would read another org's rows.
    let name = customers::table.select(customers::name).single_value();
    let _: Vec<Option<String>> = s
        .load(s.delete(deals::table).filter(deals::stage.eq("lost")).returning(name))
        .unwrap();
}

fn main() {}
