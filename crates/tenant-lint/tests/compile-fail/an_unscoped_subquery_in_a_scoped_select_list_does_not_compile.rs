use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn with_customer_name(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A scalar subquery by plain diesel: it could name another org's customer.
    let name = customers::table
        .filter(customers::id.eq(deals::customer_id))
        .select(customers::name)
        .single_value();
    let _: Vec<(String, Option<String>)> = s
        .load(s.query(deals::table).select((deals::title, name)))
        .unwrap();
}

fn main() {}
