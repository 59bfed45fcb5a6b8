use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let _n: Option<String> = s.optional(invoices::table.select(invoices::number)).unwrap();
}

fn main() {}
