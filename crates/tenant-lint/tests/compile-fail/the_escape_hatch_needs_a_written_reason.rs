use tenant_core::{OrgId, TenantPool};

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let _conn = s.raw_connection_unchecked();
}

fn main() {}
