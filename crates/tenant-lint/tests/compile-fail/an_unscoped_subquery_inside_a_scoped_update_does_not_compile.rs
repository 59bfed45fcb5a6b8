use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn close_deals_of_every_alice(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let alices = customers::table
        .filter(customers::name.eq("alice"))
        .select(customers::id);
    s.execute(
        s.update(deals::table)
            .filter(deals::customer_id.eq_any(alices))
            .set(deals::stage.eq("lost")),
    )
    .unwrap();
}

fn main() {}
