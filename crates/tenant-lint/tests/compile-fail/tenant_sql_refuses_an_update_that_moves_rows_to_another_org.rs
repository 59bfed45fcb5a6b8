use tenant_core::{OrgScoped, Pooled, tenant_sql};

fn run(s: &mut OrgScoped<Pooled>) {
    let _ = s.execute_sql(tenant_sql!(in two_companies::schema;
        "UPDATE invoices SET org_id = gen_random_uuid() WHERE org_id = $org"
    ));
}

fn main() {}
