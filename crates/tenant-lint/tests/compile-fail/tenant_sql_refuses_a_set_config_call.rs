use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT number FROM invoices WHERE org_id = $org AND set_config('tenant.org_id', '00000000-0000-0000-0000-000000000001', true) IS NOT NULL"
    ));
}

fn main() {}
