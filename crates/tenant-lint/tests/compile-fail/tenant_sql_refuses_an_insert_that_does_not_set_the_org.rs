use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "INSERT INTO customers (org_id, name, email) VALUES (gen_random_uuid(), 'x', 'y') RETURNING id, $org"
    ));
}

fn main() {}
