use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn move_customers(pool: &TenantPool, org: OrgId, other: OrgId) {
    let mut s = pool.begin(org).unwrap();
    s.execute(
        s.update(customers::table)
            .set((customers::name.eq("moved"), customers::org_id.eq(other.as_uuid()))),
    )
    .unwrap();
}

fn main() {}
