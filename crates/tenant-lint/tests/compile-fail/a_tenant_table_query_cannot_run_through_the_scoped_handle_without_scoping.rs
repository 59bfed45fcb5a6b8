use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn overdue(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A plain diesel query has no org filter: it cannot run through the handle.
    let _ids: Vec<uuid::Uuid> = s.load(invoices::table.select(invoices::id)).unwrap();
}

fn main() {}
