use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(diesel::update(invoices::table).set(invoices::paid_on.eq(None::<chrono::NaiveDate>))).unwrap();
}

fn main() {}
