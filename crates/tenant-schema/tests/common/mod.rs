//! The audit tests' set-up: the story's database, an audit of it, the findings of one rule.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use diesel::connection::SimpleConnection;
use tenant_core::admin::CatalogReader;
use tenant_schema::audit::{AuditOptions, Finding, Report, Severity, audit};
use tenant_testkit::{TestDb, roles};

pub use tenant_testkit::story::{plain as plain_migrated, signed as migrated};

/// The test key's token for `org`, valid in the session of backend `pid` (0: any backend).
pub fn token(org: &str, pid: i32) -> String {
    tenant_testkit::story::test_key().token(org.parse().unwrap(), pid)
}

/// The statement that sets `org` in the session of `conn` as the service does (a token signed
/// with the test key for this backend), for the rest of the transaction.
pub fn set_org_sql(conn: &mut diesel::PgConnection, org: &str) -> String {
    use diesel::RunQueryDsl;
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(conn)
    .unwrap();
    format!(
        "SELECT set_config('tenant.org_token', '{}', true)",
        token(org, pid)
    )
}

/// As the operator: forges a `granted` entry for `org` in the access log (what a grant to
/// insert into the log allows; no ticket, no request), committed, then enters it as
/// `enter_access` lets anyone holding a grant, trying the ids (the operator cannot read the
/// log) each in a transaction of its own (`enter_access` must be its transaction's first
/// write). Returns with the transaction that entered it open.
pub fn forge_grant_and_enter(conn: &mut diesel::PgConnection, org: &str) {
    conn.batch_execute(&format!(
        "INSERT INTO tenant_audit.access_log (event, target_org, mode, expires_at) \
           VALUES ('granted', '{org}', 'read', now() + interval '1 hour')"
    ))
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Entered {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        org: Option<String>,
    }
    for id in 1..200 {
        conn.batch_execute("BEGIN").unwrap();
        let e: Entered = diesel::RunQueryDsl::get_result(
            diesel::sql_query(format!(
                "SELECT org::text AS org FROM tenant_audit.enter_access({id})"
            )),
            conn,
        )
        .unwrap();
        if e.org.as_deref() == Some(org) {
            return;
        }
        conn.batch_execute("ROLLBACK").unwrap();
    }
    panic!("the forged grant for {org} was not found");
}

pub fn run_as(db: &TestDb, role: &str, options: &AuditOptions) -> Report {
    let mut reader = CatalogReader::connect(&db.url_as(role), "test: audit").unwrap();
    audit(&mut reader, &two_companies::REGISTRY, options).unwrap()
}

pub fn run(db: &TestDb) -> Report {
    run_as(db, roles::APP, &AuditOptions::default())
}

/// Builds the bad configuration with the admin role, audits, returns the findings of `rule`.
pub fn findings_after(hint: &str, setup: &str, rule: &str) -> Vec<Finding> {
    let db = migrated(hint);
    db.admin().batch_execute(setup).unwrap();
    run(&db)
        .findings
        .into_iter()
        .filter(|f| f.rule == rule)
        .collect()
}

pub fn objects(findings: &[Finding]) -> Vec<(&str, Severity)> {
    findings
        .iter()
        .map(|f| (f.object.as_str(), f.severity))
        .collect()
}
