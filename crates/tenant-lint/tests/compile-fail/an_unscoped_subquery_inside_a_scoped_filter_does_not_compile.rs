use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn deals_of_every_customer(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // customers read by plain diesel: no org filter inside the scoped query.
    let everyone = customers::table.select(customers::id);
    let _: Vec<String> = s
        .load(
            s.query(deals::table)
                .filter(deals::customer_id.eq_any(everyone))
                .select(deals::title),
        )
        .unwrap();
}

fn main() {}
