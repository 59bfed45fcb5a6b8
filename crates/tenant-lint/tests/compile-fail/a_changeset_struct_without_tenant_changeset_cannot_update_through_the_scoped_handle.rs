use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

// AsChangeset alone: the scoped layer cannot tell which columns this sets.
#[derive(AsChangeset)]
#[diesel(table_name = deals)]
struct DealChanges {
    title: String,
}

fn rename(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(s.update(deals::table).set(&DealChanges { title: "x".into() }))
        .unwrap();
}

fn main() {}
