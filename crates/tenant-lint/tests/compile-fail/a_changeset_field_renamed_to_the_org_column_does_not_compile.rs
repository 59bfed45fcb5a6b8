use diesel::prelude::*;
use tenant_core::TenantChangeset;
use two_companies::schema::*;

#[derive(AsChangeset, TenantChangeset)]
#[diesel(table_name = invoices)]
struct InvoiceChanges {
    number: String,
    #[diesel(column_name = org_id)]
    owner: uuid::Uuid,
}

fn main() {}
