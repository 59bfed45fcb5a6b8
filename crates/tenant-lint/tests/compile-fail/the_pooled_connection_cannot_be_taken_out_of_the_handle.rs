use tenant_core::Pooled;

fn raw(p: Pooled) {
    let _conn = p.0;
}

fn main() {}
