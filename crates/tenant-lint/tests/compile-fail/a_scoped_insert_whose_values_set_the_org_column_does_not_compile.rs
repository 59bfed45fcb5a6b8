use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn smuggle(pool: &TenantPool, org: OrgId, other: uuid::Uuid) {
    let s = pool.begin(org).unwrap();
    let _q = s.insert(customers::table, (customers::org_id.eq(other), customers::name.eq("x")));
}

fn main() {
    // A reachable call: the check runs when `insert` is instantiated for this type.
    let pool = TenantPool::builder("postgres://app@localhost/app", &two_companies::REGISTRY, tenant_core::OrgContext::TrustEveryStatement).build().unwrap();
    smuggle(&pool, OrgId::new_random(), uuid::Uuid::new_v4());
}
