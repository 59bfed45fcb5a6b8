use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let q = invoices::table.select(invoices::number).into_boxed();
    let _rows: Vec<String> = s.load(q).unwrap();
}

fn main() {}
