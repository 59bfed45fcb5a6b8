use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT number FROM invoices WHERE org_id = $org AND customer_id IN (SELECT id FROM customers)"
    ));
}

fn main() {}
