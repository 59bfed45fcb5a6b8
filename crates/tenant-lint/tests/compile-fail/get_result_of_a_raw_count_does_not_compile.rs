use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let _n: i64 = s.get_result(invoices::table.count()).unwrap();
}

fn main() {}
