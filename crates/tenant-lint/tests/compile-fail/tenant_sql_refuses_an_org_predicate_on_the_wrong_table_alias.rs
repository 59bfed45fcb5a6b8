use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT i.number FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE c.org_id = $org"
    ));
}

fn main() {}
