use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    // PostgreSQL reads `('...').ts_stat` as `ts_stat('...')`, which runs the SQL in the string.
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT ('SELECT to_tsvector(name) FROM customers').ts_stat FROM invoices WHERE org_id = $org"
    ));
}

fn main() {}
