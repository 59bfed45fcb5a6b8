use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn overdue(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // Loading on the handle as if it were a connection: the raw path does not exist.
    let _ids: Vec<uuid::Uuid> = invoices::table.select(invoices::id).load(&mut s).unwrap();
}

fn main() {}
