use tenant_core::{OrgScoped, Pooled, TenantError, tenant_sql};

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    number: String,
}

fn run(s: &mut OrgScoped<Pooled>, today: chrono::NaiveDate) -> Result<Vec<String>, TenantError> {
    s.execute_sql(tenant_sql!(in two_companies::schema;
        "INSERT INTO customers (org_id, name, email) VALUES ($org, $1, $2) ON CONFLICT (org_id, email) DO UPDATE SET name = excluded.name",
        diesel::sql_types::Text: "n",
        diesel::sql_types::Text: "e"
    ))?;
    s.execute_sql(tenant_sql!(in two_companies::schema;
        "DELETE FROM proposals WHERE org_id = $org AND created_at < now() - interval '1 year'"
    ))?;
    let rows: Vec<Row> = s.load_sql(tenant_sql!(in two_companies::schema;
        "WITH mine AS (SELECT id FROM customers WHERE org_id = $org) \
         SELECT i.number FROM invoices i JOIN currencies x ON x.code = i.currency \
         WHERE i.org_id = $org AND i.customer_id IN (SELECT id FROM mine) AND i.due_on < $1",
        diesel::sql_types::Date: today
    ))?;
    Ok(rows.into_iter().map(|r| r.number).collect())
}

fn main() {}
