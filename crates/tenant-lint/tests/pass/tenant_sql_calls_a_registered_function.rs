use tenant_core::{OrgScoped, Pooled, TenantError, tenant_sql};

mod schema {
    diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, number -> Text } }
    tenant_lint::registry! {
        pub static REGISTRY;
        tenant invoices => org_id;
        function normalize_number => "upper-cases and trims its text argument; runs no SQL, reads nothing else";
    }
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    n: String,
}

fn run(s: &mut OrgScoped<Pooled>) -> Result<Vec<String>, TenantError> {
    let rows: Vec<Row> = s.load_sql(tenant_sql!(in schema; registry schema::REGISTRY;
        "SELECT normalize_number(number) AS n FROM invoices WHERE org_id = $org"
    ))?;
    Ok(rows.into_iter().map(|r| r.n).collect())
}

fn main() {
    let _ = run;
}
