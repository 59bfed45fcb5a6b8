use tenant_core::{OrgId, TenantSql};

fn forged(org: OrgId) -> TenantSql<'static> {
    // A TenantSql takes 'static text, so the usual injection (format! of values) does not build;
    // text leaked to 'static on purpose is still checked when built and before it is sent.
    let sql = format!("SELECT name FROM customers WHERE org_id = '{org}'");
    TenantSql::new(&sql)
}

fn main() {}
