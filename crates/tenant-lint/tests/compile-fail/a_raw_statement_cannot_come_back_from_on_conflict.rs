use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn upsert(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // `on_conflict` takes the conflict target, not a closure over diesel's insert statement
    // that could return anything runnable.
    let q = s
        .insert(customers::table, (customers::name.eq("a"), customers::email.eq("a@x")))
        .on_conflict(|_insert: ()| diesel::sql_query("DELETE FROM customers"));
    let _ = q;
}

fn main() {}
