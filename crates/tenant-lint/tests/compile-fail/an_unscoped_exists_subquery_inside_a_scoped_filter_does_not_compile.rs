use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn customers_with_any_deal(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // deals of every org, correlated by customer id only.
    let any_deal = deals::table.filter(deals::customer_id.eq(customers::id)).select(deals::id);
    let _: Vec<String> = s
        .load(
            s.query(customers::table)
                .filter(diesel::dsl::exists(any_deal))
                .select(customers::name),
        )
        .unwrap();
}

fn main() {}
