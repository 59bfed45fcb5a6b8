use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    // PostgreSQL reads `customers global` as the table aliased `global`; the checker's parser
    // would drop the word and take `customers.org_id` (the decoy's) for the table's filter.
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT global.email FROM customers global, (SELECT $org AS org_id) AS customers WHERE customers.org_id = $org"
    ));
}

fn main() {}
