use tenant_core::TenantPool;

fn raw(pool: &TenantPool) {
    let _conn = pool.get().unwrap();
}

fn main() {}
