//! A context left on a pooled connection (docs/threat-model.md #6): a statement that sets the org at
//! session level (`set_config(.., false)`) and commits leaves it on the connection; if the
//! pool hands that connection out again, the next user (a code path that sets no org, or
//! PgBouncer in transaction mode) runs as B. The attack runs through the application's pool,
//! which must have one connection: it plants B's org at session level as A, then checks out
//! again. The same backend coming back means the context reached the next checkout.
//!
//! In the signed mode also: while the pool holds B's transaction open, the attacker's
//! session reads every other session's statement text (`pg_stat_activity`, which shows a
//! role's sessions to each other) for a token, which could be replayed on that backend.

use tenant_core::admin::{ProbeOutcome, ProbeSession};
use tenant_core::{OrgId, TenantPool};

use crate::attack::Family;
use crate::report::{AttackResult, Observed, Verdict};
use uuid::Uuid;

/// The application's pool, as the probe drives it.
pub trait PoolUnderTest {
    /// Runs `sql` (one row, one text column) on a connection checked out of the pool, in a
    /// transaction with `org` set the way the application sets it, and commits. `Err` with
    /// the reason when the pool or the database refused.
    fn query_in_org(&self, org: Uuid, sql: &str) -> Result<String, String>;

    /// Runs `sql` (one statement of any kind) on a connection checked out of the pool, in a transaction
    /// with `org` set the way the application sets it, and commits; returns the backend's
    /// pid. `Err` with the reason when the pool or the database refused (the session-state
    /// attacks count that as a pass), or when this pool cannot run statements for the probe.
    fn execute_in_org(&self, org: Uuid, sql: &str) -> Result<String, String> {
        let _ = (org, sql);
        Err("this pool cannot run statements for the probe".into())
    }

    /// Opens a transaction with `org` set the way the application sets it, calls `during`
    /// while it sits open (idle), then rolls it back. `Err` when this pool cannot (the
    /// attack that needs it is then reported as not run).
    fn hold_in_org(&self, org: Uuid, during: &mut dyn FnMut()) -> Result<(), String> {
        let _ = (org, during);
        Err("this pool cannot hold a transaction open for the probe".into())
    }
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

impl PoolUnderTest for TenantPool {
    fn query_in_org(&self, org: Uuid, sql: &str) -> Result<String, String> {
        let org = OrgId::try_from(org).map_err(|e| e.to_string())?;
        self.with_org(org, |s| {
            let raw = s.raw_connection_unchecked(
                "tenant-probe: the pool-reuse attack plants a session-level context as the attacker would",
            );
            let row: Text = diesel::RunQueryDsl::get_result(
                diesel::sql_query(format!("SELECT ({sql})::text AS value")),
                raw,
            )?;
            Ok::<_, tenant_core::TenantError>(row.value)
        })
        .map_err(|e| e.to_string())
    }

    fn execute_in_org(&self, org: Uuid, sql: &str) -> Result<String, String> {
        let org = OrgId::try_from(org).map_err(|e| e.to_string())?;
        self.with_org(org, |s| {
            let raw = s.raw_connection_unchecked(
                "tenant-probe: the session-state attacks leave state on a pooled connection as the attacker would",
            );
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), raw)?;
            let row: Text = diesel::RunQueryDsl::get_result(
                diesel::sql_query("SELECT pg_backend_pid()::text AS value"),
                raw,
            )?;
            Ok::<_, tenant_core::TenantError>(row.value)
        })
        .map_err(|e| e.to_string())
    }

    fn hold_in_org(&self, org: Uuid, during: &mut dyn FnMut()) -> Result<(), String> {
        let org = OrgId::try_from(org).map_err(|e| e.to_string())?;
        let held = self.begin(org).map_err(|e| e.to_string())?;
        during();
        held.rollback().map_err(|e| e.to_string())
    }
}

/// The query that finds a signed token (`v1.<org>.<expiry>.<pid>.<kid>.<mac>`) in another
/// session's statement text: a token found there can be replayed (docs/threat-model.md #5, #20).
pub const TOKEN_IN_ACTIVITY: &str = "SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
     AND query ~ 'v1[.][0-9a-f-]{36}[.][0-9]+[.][0-9]+[.][A-Za-z0-9_-]+[.][0-9a-f]{64}'";

/// What the pool attack saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolOutcome {
    /// Planting the context was refused or not committed.
    Refused(String),
    /// The next checkout got another backend: the connection was discarded.
    Discarded,
    /// The next checkout got the same backend, and the org left on it was gone (the opening
    /// undid it).
    Undone,
    /// The next checkout got the same backend, which still carries B's org or the marker.
    Reused,
}

/// Plants B's org and a marker setting at session level through `pool` as A, then checks out
/// again and looks at what that transaction sees: a pool that hands the connection out with
/// either still there lets state reach the next user, even where it sets the org over it.
pub fn attack(pool: &dyn PoolUnderTest, a: Uuid, b: Uuid) -> Result<PoolOutcome, String> {
    let planted = pool.query_in_org(a, &plant_sql(b));
    let first = match planted {
        Ok(v) => v.rsplit(' ').next().unwrap_or_default().to_owned(),
        Err(why) => return Ok(PoolOutcome::Refused(why)),
    };
    let second = pool.query_in_org(a, NEXT_SQL)?;
    let mut parts = second.rsplitn(3, ' ');
    let (pid, marker, org) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    Ok(if pid != first {
        PoolOutcome::Discarded
    } else if org == b.to_string() || marker == "planted" {
        PoolOutcome::Reused
    } else {
        PoolOutcome::Undone
    })
}

fn plant_sql(b: Uuid) -> String {
    format!(
        "SELECT set_config('tenant.org_id', '{b}', false) || set_config('tenant_probe.marker', 'planted', false) \
         || ' ' || pg_backend_pid()"
    )
}

/// What the next checkout reads: the org setting, the marker, the backend.
const NEXT_SQL: &str = "SELECT coalesce(current_setting('tenant.org_id', true), '') || ' ' \
     || coalesce(current_setting('tenant_probe.marker', true), '') || ' ' || pg_backend_pid()";

/// The SQL the attack sends, for the report.
pub fn sql(b: Uuid) -> String {
    format!(
        "{}; COMMIT; then, on the next checkout: {NEXT_SQL}",
        plant_sql(b)
    )
}

/// The signed mode's token, looked for in the statement text other sessions see while the
/// application's pool holds B's transaction open.
pub(crate) fn token_in_activity(
    pool: &dyn PoolUnderTest,
    attacker: &mut ProbeSession,
    b: Uuid,
) -> AttackResult {
    let mut seen: Result<u64, String> = Err("the pool did not hold the transaction".into());
    let held = pool.hold_in_org(b, &mut || {
        // The server keeps one snapshot of the activity per transaction: take a fresh one.
        seen = attacker
            .try_sql("SELECT pg_stat_clear_snapshot()", false)
            .and_then(|_| attacker.try_sql(TOKEN_IN_ACTIVITY, true))
            .map_err(|e| e.to_string())
            .and_then(|outcome| match outcome {
                ProbeOutcome::Ran { rows, .. } => Ok(rows),
                ProbeOutcome::Refused { sqlstate, message } => Err(format!("{sqlstate} {message}")),
            });
    });
    let (observed, verdict) = match held.and(seen) {
        Ok(0) => (Observed::Rows(0), Verdict::Pass),
        Ok(n) => (Observed::Rows(n), Verdict::Leak),
        Err(why) => (Observed::NotRun(why), Verdict::NotRun),
    };
    AttackResult {
        attack: "token_in_activity".into(),
        family: Family::Pool.as_str().into(),
        threat: "#5, #20".into(),
        table: String::new(),
        sql: TOKEN_IN_ACTIVITY.into(),
        expected: "no other session's statement text holds a token (0 rows) while the application holds B's transaction open".into(),
        observed,
        verdict,
        note: match verdict {
            Verdict::Leak => "a token of B's is readable in pg_stat_activity: it can be replayed on that backend".into(),
            _ => String::new(),
        },
        expected_by: None,
    }
}
