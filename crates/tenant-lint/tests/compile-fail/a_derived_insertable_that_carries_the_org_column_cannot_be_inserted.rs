use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

#[derive(Insertable)]
#[diesel(table_name = customers)]
struct NewCustomer<'a> {
    org_id: uuid::Uuid,
    name: &'a str,
    email: &'a str,
}

fn smuggle(pool: &TenantPool, org: OrgId, rows: &[NewCustomer<'_>]) {
    let s = pool.begin(org).unwrap();
    let _q = s.insert_many(customers::table, rows);
}

fn main() {
    // A reachable call: the check runs when `insert` is instantiated for this type.
    let pool = TenantPool::builder("postgres://app@localhost/app", &two_companies::REGISTRY, tenant_core::OrgContext::TrustEveryStatement).build().unwrap();
    smuggle(&pool, OrgId::new_random(), &[]);
}
