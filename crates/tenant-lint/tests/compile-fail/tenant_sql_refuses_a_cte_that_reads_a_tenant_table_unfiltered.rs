use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "WITH everyone AS (SELECT id, name FROM customers) SELECT i.number FROM invoices i JOIN everyone e ON e.id = i.customer_id WHERE i.org_id = $org"
    ));
}

fn main() {}
