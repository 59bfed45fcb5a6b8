use tenant_core::TenantPool;

fn main() {
    // The key as the service's configuration holds it (`kid:hex`), not yet a ContextKey: the
    // pool must be told how the database learns the org, and text says nothing about it.
    let _ = TenantPool::builder(
        "postgres://app@localhost/app",
        &two_companies::REGISTRY,
        "k1:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    );
}
