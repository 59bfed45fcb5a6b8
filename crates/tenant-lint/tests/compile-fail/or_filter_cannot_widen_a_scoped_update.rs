use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn widened(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.update(invoices::table).or_filter(invoices::paid_on.is_null());
}

fn main() {}
