use tenant_core::{OrgId, TenantPool};

fn raw(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    let _conn: &mut diesel::PgConnection = &mut *s;
}

fn main() {}
