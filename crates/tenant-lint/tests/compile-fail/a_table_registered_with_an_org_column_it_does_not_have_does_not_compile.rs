// The table keeps its org in `tenant_id`; the registry says `org_id`.
diesel::table! {
    invoices (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        total_cents -> BigInt,
    }
}

tenant_lint::registry! {
    pub static REGISTRY;
    tenant invoices => org_id;
}

fn main() {}
