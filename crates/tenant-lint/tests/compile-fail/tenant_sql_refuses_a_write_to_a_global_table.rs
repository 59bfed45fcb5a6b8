use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "DELETE FROM currencies WHERE code IN (SELECT currency FROM invoices WHERE org_id = $org)"
    ));
}

fn main() {}
