use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn sorted(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A plain diesel subquery in order: nothing puts the org filter in it, and its result
    // (another org's customer name) would decide the order.
    let name = customers::table
        .filter(customers::id.eq(deals::customer_id))
        .select(customers::name)
        .single_value();
    let _: Vec<String> = s
        .load(s.query(deals::table).order(name).select(deals::title))
        .unwrap();
}

fn main() {}
