use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>, id: uuid::Uuid) {
    // A conflict on `id` alone can be with another org's row: DO UPDATE would reach it.
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "INSERT INTO customers (org_id, id, name, email) VALUES ($org, $1, 'x', 'x@x') ON CONFLICT (id) DO UPDATE SET name = 'mine now'",
        diesel::sql_types::Uuid: id
    ));
}

fn main() {}
