use tenant_core::{OrgId, TenantPool};

fn twice(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _t = s.clone();
}

fn main() {}
