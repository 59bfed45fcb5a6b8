use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        org_id -> Uuid,
        entry -> Text,
    }
}

fn write(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.insert(audit_log::table, audit_log::entry.eq("x"));
}

fn main() {}
