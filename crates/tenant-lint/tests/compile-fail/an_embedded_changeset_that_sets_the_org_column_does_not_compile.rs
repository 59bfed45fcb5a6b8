use diesel::prelude::*;
use tenant_core::{OrgId, TenantChangeset, TenantPool};
use two_companies::schema::*;

#[derive(AsChangeset, TenantChangeset)]
#[diesel(table_name = deals)]
struct Owner {
    org_id: uuid::Uuid,
}

#[derive(AsChangeset, TenantChangeset)]
#[diesel(table_name = deals)]
struct DealChanges {
    title: String,
    #[diesel(embed)]
    owner: Owner,
}

fn rename(pool: &TenantPool, org: OrgId, changes: &DealChanges) {
    let mut s = pool.begin(org).unwrap();
    s.execute(s.update(deals::table).set(changes)).unwrap();
}

fn main() {}
