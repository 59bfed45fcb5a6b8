use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn upsert(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // A conflict on a key without the org column would tell whether another org has that key.
    let q = s
        .insert(customers::table, (customers::name.eq("a"), customers::email.eq("a@x")))
        .on_conflict((customers::id,))
        .do_nothing();
    s.execute(q).unwrap();
}

fn main() {
    // A reachable call: the check runs when `on_conflict` is instantiated for this target.
    let pool = TenantPool::builder("postgres://app@localhost/app", &two_companies::REGISTRY, tenant_core::OrgContext::TrustEveryStatement).build().unwrap();
    upsert(&pool, OrgId::new_random());
}
