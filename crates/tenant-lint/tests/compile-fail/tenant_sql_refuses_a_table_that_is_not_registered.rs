use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "SELECT * FROM audit_log WHERE org_id = $org"
    ));
}

fn main() {}
