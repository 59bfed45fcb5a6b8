use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    // The story's registry lists no function of its own.
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema; registry two_companies::REGISTRY;
        "SELECT normalize_number(number) FROM invoices WHERE org_id = $org"
    ));
}

fn main() {}
