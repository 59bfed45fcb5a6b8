use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT number FROM invoices WHERE customer_id = $org"
    ));
}

fn main() {}
