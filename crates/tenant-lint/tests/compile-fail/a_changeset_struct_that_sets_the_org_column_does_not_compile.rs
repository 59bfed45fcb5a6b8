use diesel::prelude::*;
use tenant_core::TenantChangeset;
use two_companies::schema::*;

#[derive(AsChangeset, TenantChangeset)]
#[diesel(table_name = deals)]
struct DealChanges {
    title: String,
    org_id: uuid::Uuid,
}

fn main() {}
