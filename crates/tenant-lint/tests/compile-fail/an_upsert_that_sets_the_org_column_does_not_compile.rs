use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn upsert(pool: &TenantPool, org: OrgId, other: uuid::Uuid) {
    let mut s = pool.begin(org).unwrap();
    // DO UPDATE SET org_id = ... would move the conflicting row to another org.
    let q = s
        .insert(customers::table, (customers::name.eq("a"), customers::email.eq("a@x")))
        .on_conflict((customers::org_id, customers::email))
        .do_update()
        .set(customers::org_id.eq(other));
    s.execute(q).unwrap();
}

fn main() {}
