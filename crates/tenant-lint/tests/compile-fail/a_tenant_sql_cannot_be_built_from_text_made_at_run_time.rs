use tenant_core::{OrgId, TenantSql};

fn forged(org: OrgId) -> TenantSql<'static> {
    // Only a literal (or other 'static text) can become a TenantSql: SQL assembled at run time
    // from values is how injections happen.
    let sql = format!("SELECT name FROM customers WHERE org_id = '{org}'");
    TenantSql::new(&sql)
}

fn main() {}
