//! The leak probe: an automated attacker from two synthetic orgs.
//!
//! [`run`] connects with the application's own credentials (the application role, never an
//! owner or superuser), reads the tenant tables from the registry and the catalog, seeds two
//! synthetic orgs A and B with one row per table (no per-table code from the user), and
//! attacks from A against B on every tenant table: reads, writes, no org set, org hopping,
//! privilege tricks, foreign-key and unique-value oracles, views, side channels, and (given
//! the application's pool) a context left on a pooled connection. Each attack's outcome is
//! judged against what isolation requires, and the [`Report`] is written as Markdown, JSON
//! and JUnit XML.
//!
//! Everything happens inside transactions that are rolled back (`tenant_core::admin::ProbeSession`),
//! so the probe can run against production: the database is the same before and after
//! (sequences aside: an insert into a table with a serial column advances it).
//!
//! ```no_run
//! # tenant_lint::registry! { pub static REGISTRY; }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The service's key: the probe sets the org as the service does (a signed token).
//! let key = tenant_core::context::ContextKey::require_env("TENANT_CONTEXT_KEY")?;
//! let report = tenant_probe::run(&tenant_probe::ProbeOptions::new(
//!     "postgres://tenant_app@localhost/app",
//!     &REGISTRY,
//!     key,
//! ))?;
//! println!("{}", report.summary_line());
//! std::process::exit(if report.failed() { 1 } else { 0 });
//! # }
//! ```

pub mod attack;
pub mod attacks;
pub mod config;
mod globals;
pub mod progress;
pub mod report;
pub mod schema;
pub mod seed;
mod sql;

use std::collections::HashMap;
use std::time::Instant;

use tenant_core::admin::{CatalogReader, ProbeOutcome, ProbeSession};
use tenant_core::{IntoOrgContext, OrgContext, TenantError};
use tenant_lint::Registry;
use uuid::Uuid;

pub use attacks::pool::PoolUnderTest;
pub use report::{AttackResult, Observed, Report, Summary, Verdict};

use attack::{Accept, Family, Plan, Session, Target};
use seed::set_org;

/// Why a probe run could not be made (as opposed to an attack that failed, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A registered tenant table is not in the database.
    #[error(
        "registered tenant table `{0}` does not exist in the database: run the migrations, or remove it from the registry"
    )]
    MissingTable(String),
    /// A registered org column is not in its table.
    #[error(
        "tenant table `{table}` has no column `{column}`, its org column in the registry: fix the registry or the schema"
    )]
    MissingOrgColumn {
        /// The table.
        table: String,
        /// The org column the registry names.
        column: String,
    },
    /// The registry has no tenant table.
    #[error("the registry has no tenant table to attack")]
    NothingToAttack,
    /// The org context the probe was given does not match the database's policies.
    #[error("{0}")]
    ContextMismatch(String),
    /// A seeder is not an INSERT into its table that the scoped path's function policy
    /// accepts.
    #[error(
        "the seeder for table `{table}` is refused: {why}. A seeder is one `INSERT INTO {table} \
         ... RETURNING *` with `$org` where the org goes, calling only functions known to be safe"
    )]
    Seeder {
        /// The table.
        table: String,
        /// What is wrong.
        why: String,
    },
    /// A row of the configuration's `global_rows` could not be added or deleted.
    #[error("global table `{table}`: {why}")]
    GlobalRow {
        /// The table.
        table: String,
        /// What is wrong, and what to do.
        why: String,
    },
    /// The configuration file was refused.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The catalog could not be read.
    #[error("reading the catalog: {0}")]
    Catalog(String),
    /// The attacker's session failed (not an attack's refusal).
    #[error("the probe's session failed: {0}")]
    Session(String),
    /// A database or connection error.
    #[error(transparent)]
    Database(#[from] TenantError),
}

/// What to probe and how.
pub struct ProbeOptions<'a> {
    /// The application role's connection URL.
    pub app_url: String,
    /// The tenant registry of the service.
    pub registry: &'a Registry,
    /// Seeders for tables the generator cannot fill: table name to an
    /// `INSERT ... RETURNING *` statement with `$org` where the org id goes.
    pub seeders: HashMap<String, String>,
    /// The application's pool, for the pool-reuse attack; it must hold one connection.
    pub pool: Option<&'a dyn PoolUnderTest>,
    /// The git commit recorded in the evidence digest (as `cargo xtask evidence` records it).
    pub git_commit: String,
    /// Per-statement timeout.
    pub statement_timeout_ms: u32,
    /// Show a progress line on a terminal.
    pub progress: bool,
    /// How the database learns the org, as the service's pool says it: the service's key for
    /// a database in the (default) signed mode, where the probe sets the org as the service
    /// does (a token for its own backend); `OrgContext::TrustEveryStatement` for one generated
    /// in the plain mode, where the hopping attacks are findings.
    pub context: OrgContext,
    /// Set the org with `SET LOCAL`, as a pool built with `set_local_context()` does: a Citus
    /// cluster's coordinator sends `SET LOCAL` on to its workers, not `set_config`. Plain
    /// context only. On a database with Citus the probe does so whatever this says.
    pub set_local: bool,
    /// The attacker's and the victim's org ids, for a run that must be reproduced (a Citus
    /// test places the victim's shards on a chosen node); by default two fresh random ids.
    /// Neither may exist in the database.
    pub orgs: Option<(Uuid, Uuid)>,
    /// Rows for empty global tables (added with `admin_url`, deleted after the run).
    pub global_rows: Vec<config::GlobalRow>,
    /// Outcomes the service expects, with reasons.
    pub expectations: Vec<config::Expectation>,
    /// A URL of a role that may write the global tables, for `global_rows`.
    pub admin_url: Option<String>,
}

impl std::fmt::Debug for ProbeOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("seeders", &self.seeders.keys().collect::<Vec<_>>())
            .field("pool", &self.pool.is_some())
            .field("git_commit", &self.git_commit)
            .field("global_rows", &self.global_rows)
            .field("expectations", &self.expectations.len())
            .field("admin_url", &self.admin_url.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> ProbeOptions<'a> {
    /// Probes the database at `app_url` (the application role) for the tables of `registry`,
    /// setting the org as `context` says (the service's `ContextKey`, or
    /// `OrgContext::TrustEveryStatement` for a database in the plain mode).
    pub fn new(app_url: &str, registry: &'a Registry, context: impl IntoOrgContext) -> Self {
        Self {
            app_url: app_url.to_owned(),
            registry,
            seeders: HashMap::new(),
            pool: None,
            git_commit: "unknown".into(),
            statement_timeout_ms: 30_000,
            progress: true,
            context: context.into_org_context(),
            set_local: false,
            orgs: None,
            global_rows: Vec::new(),
            expectations: Vec::new(),
            admin_url: None,
        }
    }

    /// Takes the seeders, global rows and expectations of a configuration file (a seeder of
    /// the file replaces one given before for the same table).
    pub fn with_config(mut self, config: config::ProbeConfig) -> Self {
        self.seeders.extend(config.seeders);
        self.global_rows.extend(config.global_rows);
        self.expectations.extend(config.expectations);
        self
    }
}

/// The attacker's three sessions.
struct Sessions {
    main: ProbeSession,
    fresh: ProbeSession,
    after: ProbeSession,
    /// The database is a Citus coordinator: refusals of what it does not support on
    /// distributed tables are recorded as such.
    citus: bool,
}

impl Sessions {
    fn get(&mut self, which: Session) -> &mut ProbeSession {
        match which {
            Session::Main => &mut self.main,
            Session::Fresh => &mut self.fresh,
            Session::AfterScoped => &mut self.after,
        }
    }
}

/// B's rows of `table`, hashed, as B sees them.
fn checksum(s: &mut ProbeSession, b: Uuid, table: &str) -> Result<String, ProbeError> {
    set_org(s, Some(b))?;
    let sql = format!(
        "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM {} x",
        sql::ident(table)
    );
    Ok(match s.try_sql(&sql, true)? {
        ProbeOutcome::Ran { first_row, .. } => first_row.unwrap_or_default(),
        ProbeOutcome::Refused { sqlstate, message } => format!("refused {sqlstate} {message}"),
    })
}

fn observed(o: &ProbeOutcome) -> Observed {
    match o {
        ProbeOutcome::Ran { rows, .. } => Observed::Rows(*rows),
        ProbeOutcome::Refused { sqlstate, message } => Observed::Refused {
            sqlstate: sqlstate.clone(),
            message: message.clone(),
        },
    }
}

fn accepted(accept: &[Accept], o: &ProbeOutcome) -> bool {
    accept.iter().any(|a| match (a, o) {
        (Accept::Rows(n), ProbeOutcome::Ran { rows, .. }) => n == rows,
        (Accept::Sqlstate(s), ProbeOutcome::Refused { sqlstate, .. }) => s == sqlstate,
        _ => false,
    })
}

/// Runs one plan in a savepoint of its session and judges it.
fn execute(
    sessions: &mut Sessions,
    plan: &Plan,
    a: Uuid,
    b: Uuid,
    baseline: Option<&str>,
) -> Result<AttackResult, ProbeError> {
    let citus = sessions.citus;
    let s = sessions.get(plan.session);
    s.savepoint()?;
    if plan.session == Session::Main {
        set_org(s, Some(a))?;
    }
    let mut outcome = None;
    for step in &plan.setup {
        let o = s.try_sql(step, false)?;
        if matches!(o, ProbeOutcome::Refused { .. }) {
            outcome = Some(o);
            break;
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => s.try_sql(&plan.sql, plan.want_rows)?,
    };
    let mut note = String::new();
    let mut held = accepted(&plan.accept, &outcome);
    if plan.check_b
        && let Some(before) = baseline
    {
        let after = checksum(s, b, &plan.table)?;
        if after != before {
            held = false;
            note = "B's rows of the table changed".into();
        }
    }
    s.rollback_to_savepoint()?;
    // Citus refusing what it does not support on distributed tables: nothing was read or
    // written, and no application can run the statement there either.
    let refused_by_citus = !held
        && citus
        && note.is_empty()
        && matches!(&outcome, ProbeOutcome::Refused { sqlstate, message }
            if !plan.failing_refusals.contains(&sqlstate.as_str())
                && (sqlstate == "0A000"
                    || (sqlstate == "XX000"
                        && ((message.contains("not") && message.contains("supported"))
                            // A command Citus sends to another node as part of the statement
                            // was refused there (on a worker, a TRUNCATE's lock on the
                            // coordinator): the statement did nothing.
                            || message.starts_with("failure on connection marked as essential")))));
    // A refusal nobody expected, where the attack was meant to run: the probe cannot tell
    // whether isolation held, so the attack counts as not run (which fails the run too).
    let unexpected_refusal = !held
        && plan.on_fail == Verdict::Leak
        && note.is_empty()
        && matches!(&outcome, ProbeOutcome::Refused { sqlstate, .. }
            if !plan.failing_refusals.contains(&sqlstate.as_str()))
        && !plan.accept.is_empty()
        && plan.accept.iter().all(|a| matches!(a, Accept::Rows(_)));
    // The row the probe built broke a constraint of the table: the attack never reached the
    // point it tests.
    let invalid_row = !held
        && plan.on_fail == Verdict::Leak
        && note.is_empty()
        && matches!(&outcome, ProbeOutcome::Refused { sqlstate, .. }
            if (sqlstate == "23514" || sqlstate == "23502" || sqlstate.starts_with("22"))
                && !plan.failing_refusals.contains(&sqlstate.as_str()));
    if refused_by_citus {
        note = "Citus does not support this statement on distributed tables".into();
    } else if invalid_row {
        note = "the row the probe built broke a constraint of the table: register a seeder whose row satisfies it".into();
    } else if unexpected_refusal {
        note = "refused in a way the attack did not expect: it did not run as designed".into();
    }
    let mut sql = plan.setup.clone();
    sql.push(plan.sql.clone());
    Ok(AttackResult {
        attack: plan.attack.to_owned(),
        family: plan.family.as_str().to_owned(),
        threat: plan.threat.to_owned(),
        table: plan.table.clone(),
        sql: sql.join("; "),
        expected: plan.expected.clone(),
        observed: observed(&outcome),
        verdict: if held {
            Verdict::Pass
        } else if refused_by_citus {
            Verdict::Refused
        } else if unexpected_refusal || invalid_row {
            Verdict::NotRun
        } else {
            plan.on_fail
        },
        note,
        expected_by: None,
    })
}

/// The configuration digest of the schema's evidence, as the application role sees it.
fn evidence_digest(options: &ProbeOptions<'_>, generated_at: &str) -> Option<String> {
    let mut reader = CatalogReader::connect(
        &options.app_url,
        "tenant-probe: the evidence digest of the probed schema",
    )
    .ok()?;
    let report = tenant_schema::audit::audit(
        &mut reader,
        options.registry,
        &tenant_schema::audit::AuditOptions::default(),
    )
    .ok()?;
    let provenance = tenant_schema::evidence::Provenance {
        generated_at: generated_at.to_owned(),
        git_commit: options.git_commit.clone(),
    };
    Some(
        tenant_schema::evidence::render(&report, options.registry, &provenance)
            .configuration_digest,
    )
}

/// Refuses a seeder (user input run as the application role) that is not one INSERT into its
/// own table, or that the scoped path's function policy would refuse (`set_config`, a function
/// that reads a table by name or runs SQL text, one not known to be safe).
fn check_seeders(seeders: &HashMap<String, String>, registry: &Registry) -> Result<(), ProbeError> {
    use tenant_sqlcheck::Requirement;
    for (table, sql) in seeders {
        let refused = |why: String| ProbeError::Seeder {
            table: table.clone(),
            why,
        };
        // A seeder for a misspelt table would configure nothing, silently.
        if !registry.tenant_tables().any(|t| t.name == table.as_str()) {
            return Err(refused(
                "it is not a tenant table of the registry: check the name".into(),
            ));
        }
        let requirements = tenant_sqlcheck::requirements_with_builtins_only(sql, &|p| p == "$org")
            .map_err(|v| refused(v.to_string()))?;
        let inserts: Vec<&str> = requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::Insert { table, .. } => Some(table.as_str()),
                _ => None,
            })
            .collect();
        if inserts != [table.as_str()] {
            return Err(refused(format!(
                "it inserts into {inserts:?}, not into `{table}` alone"
            )));
        }
    }
    Ok(())
}

/// Refuses a probe whose org context does not match the database's policies: without the
/// key, a database that verifies tokens would show the probe no row at all and every attack
/// would pass for the wrong reason; with a key, a database that reads the plain setting is
/// not the one the service's pool (which refuses it) would run against.
fn check_context(
    options: &ProbeOptions<'_>,
    tables: &[schema::TableInfo],
) -> Result<(), ProbeError> {
    let verifying: Vec<&str> = tables
        .iter()
        .filter(|t| t.verifies_tokens)
        .map(|t| t.name.as_str())
        .collect();
    match (&options.context, verifying.first()) {
        (OrgContext::TrustEveryStatement, Some(table)) => Err(ProbeError::ContextMismatch(format!(
            "the policies of tenant table `{table}` verify a signed org token, and the probe was \
             given no context key (OrgContext::TrustEveryStatement): give it the service's key \
             (`TENANT_CONTEXT_KEY=kid:hex` for `cargo xtask probe`), the one the database holds"
        ))),
        (OrgContext::Signed(_), None) => Err(ProbeError::ContextMismatch(
            "the probe was given a context key, and no tenant table's policy verifies a signed \
             token: the database was generated in the plain mode (ContextMode::TrustEveryStatement). \
             Probe it without a key (unset TENANT_CONTEXT_KEY; the hopping attacks are then \
             findings), or generate its migrations in the default signed mode"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Attacks the database of `options` from two synthetic orgs and reports every outcome.
///
/// # Errors
/// [`ProbeError`] when the run itself cannot be made: no connection, a registered table or
/// org column missing, a session that fails. An attack that succeeds is not an error: it is a
/// [`Verdict::Leak`] in the report.
pub fn run(options: &ProbeOptions<'_>) -> Result<Report, ProbeError> {
    check_seeders(&options.seeders, options.registry)?;
    let mut added = Vec::new();
    // The rows added to global tables are deleted whatever happens, a panic included (the
    // panic goes on afterwards); the attacker's sessions are closed (their transactions
    // rolled back) before the rows they referenced are deleted.
    let attacked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attack(options, &mut added)));
    let removed = globals::remove(&added, options.registry, options.admin_url.as_deref());
    let attacked = match attacked {
        Ok(attacked) => attacked,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let mut report = match (attacked, removed) {
        (Ok(report), Ok(())) => report,
        (Err(e), Ok(())) => return Err(e),
        (Ok(_), Err(left)) => return Err(left),
        // Both: the rows left behind must not be hidden by the run's own failure.
        (Err(e), Err(ProbeError::GlobalRow { table, why })) => {
            return Err(ProbeError::GlobalRow {
                table,
                why: format!("{why}; the run itself failed first: {e}"),
            });
        }
        (Err(e), Err(left)) => {
            return Err(ProbeError::Session(format!(
                "{e}; and deleting the rows added to global tables failed: {left}"
            )));
        }
    };
    config::apply(&options.expectations, &mut report);
    Ok(report)
}

/// The run itself, in the attacker's sessions; `added` receives the global rows it adds, to
/// be deleted whatever happens.
fn attack(
    options: &ProbeOptions<'_>,
    added: &mut Vec<globals::Added>,
) -> Result<Report, ProbeError> {
    let started = Instant::now();
    let generated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut reader =
        CatalogReader::connect(&options.app_url, "tenant-probe: discover the tenant tables")?;
    let server = schema::server(&mut reader)?;
    let tables = schema::tables(&mut reader, options.registry)?;
    if tables.is_empty() {
        return Err(ProbeError::NothingToAttack);
    }
    let views = schema::views(&mut reader, options.registry)?;
    drop(reader);
    check_context(options, &tables)?;
    let evidence_digest = evidence_digest(options, &generated_at);

    let (a, b) = options
        .orgs
        .unwrap_or_else(|| (Uuid::new_v4(), Uuid::new_v4()));
    if a == b {
        return Err(ProbeError::Session(
            "the attacker's and the victim's orgs are the same id: give two".into(),
        ));
    }
    let timeout = options.statement_timeout_ms;
    let mut sessions = Sessions {
        main: ProbeSession::connect(
            &options.app_url,
            "tenant-probe: the attacker, org A, in a transaction that is rolled back",
            timeout,
        )?,
        fresh: ProbeSession::connect(
            &options.app_url,
            "tenant-probe: a fresh connection that never set an org",
            timeout,
        )?,
        after: ProbeSession::connect(
            &options.app_url,
            "tenant-probe: a connection after a scoped transaction ended",
            timeout,
        )?,
        citus: server.citus,
    };
    let signing = match &options.context {
        OrgContext::Signed(key) => Some(key),
        OrgContext::TrustEveryStatement => None,
    };
    if let Some(key) = signing {
        for s in [&mut sessions.main, &mut sessions.fresh, &mut sessions.after] {
            s.sign_with(key.clone());
        }
    }
    // A Citus coordinator's workers learn the org only from SET LOCAL: the probe sets it so
    // there whether or not it was asked to.
    if options.set_local || sessions.citus {
        if signing.is_some() {
            return Err(ProbeError::Session(
                "set_local needs OrgContext::TrustEveryStatement: SET LOCAL is the Citus form of \
                 the plain org setting; a database in the signed mode is probed with its key"
                    .into(),
            ));
        }
        for s in [&mut sessions.main, &mut sessions.fresh, &mut sessions.after] {
            s.set_local_context();
        }
    }
    // The "after" connection had a scoped transaction that ended: its setting is now ''.
    set_org(&mut sessions.after, Some(a))?;
    sessions.after.restart()?;

    let global_rows = globals::add(
        &options.global_rows,
        options.registry,
        &options.app_url,
        options.admin_url.as_deref(),
        &mut sessions.main,
        added,
    )?;
    let (seeded, outside) = seed::seed(&mut sessions.main, &tables, a, b, &options.seeders)?;
    let mut results = Vec::new();
    for (table, why) in &seeded.unseedable {
        results.push(AttackResult {
            attack: "seed".into(),
            family: "seed".into(),
            threat: "-".into(),
            table: table.clone(),
            sql: String::new(),
            expected: "a row of A and of B".into(),
            observed: Observed::NotRun(why.clone()),
            verdict: Verdict::NotRun,
            note: "no attack on this table ran".into(),
            expected_by: None,
        });
    }

    let targets: Vec<Target<'_>> = seed::parents_first(&tables)
        .into_iter()
        .filter(|t| seeded.a.contains_key(&t.name))
        .map(|t| Target {
            table: t,
            a,
            b,
            a_rows: &seeded.a,
            b_rows: &seeded.b,
            outside: &outside,
            server_version: server.version_num,
            signed_kid: signing.map(|k| k.kid()),
            set_local: options.set_local || server.citus,
        })
        .collect();
    let per_table: Vec<Vec<Plan>> = targets.iter().map(attacks::on_table).collect();
    let mut global: Vec<Plan> = views
        .iter()
        .map(|v| attacks::views::plan(v, &Target::lit(a)))
        .collect();
    global.extend(attacks::privileges::database());
    if server.citus {
        global.extend(attacks::citus::database());
    }
    if let Some(first) = targets.first() {
        global.extend(attacks::side_channels::database(&first.name()));
    }
    let total = per_table.iter().map(Vec::len).sum::<usize>()
        + global.len()
        + usize::from(options.pool.is_some())
        + usize::from(options.pool.is_some() && signing.is_some());
    let progress = progress::Progress::new(options.progress, targets.len(), total);
    let mut done = 0;
    for (i, (target, plans)) in targets.iter().zip(&per_table).enumerate() {
        let baseline = checksum(&mut sessions.main, b, &target.table.name)?;
        for plan in plans {
            results.push(execute(&mut sessions, plan, a, b, Some(&baseline))?);
            done += 1;
            progress.update(i, done);
        }
    }
    for plan in &global {
        results.push(execute(&mut sessions, plan, a, b, None)?);
        done += 1;
        progress.update(targets.len(), done);
    }
    if let Some(pool) = options.pool {
        let outcome = attacks::pool::attack(pool, a, b);
        let (observed, verdict) = match outcome {
            Ok(attacks::pool::PoolOutcome::Refused(why)) => (
                Observed::Refused {
                    sqlstate: "-".into(),
                    message: why,
                },
                Verdict::Pass,
            ),
            Ok(attacks::pool::PoolOutcome::Discarded | attacks::pool::PoolOutcome::Undone) => {
                (Observed::Rows(0), Verdict::Pass)
            }
            Ok(attacks::pool::PoolOutcome::Reused) => (Observed::Rows(1), Verdict::Leak),
            Err(why) => (Observed::NotRun(why), Verdict::NotRun),
        };
        results.push(AttackResult {
            attack: "session_context_reuse".into(),
            family: Family::Pool.as_str().into(),
            threat: "#6".into(),
            table: String::new(),
            sql: attacks::pool::sql(b),
            expected: "the planted context is refused, or its connection is not handed out again (0 reused)".into(),
            observed,
            verdict,
            note: match verdict {
                Verdict::Leak => "the next checkout got the same backend, still carrying B's org".into(),
                _ => String::new(),
            },
            expected_by: None,
        });
        done += 1;
        progress.update(targets.len(), done);
        for kind in attacks::session_state::KINDS {
            results.push(session_state_result(pool, a, kind));
        }
        if signing.is_some() {
            results.push(attacks::pool::token_in_activity(
                pool,
                &mut sessions.main,
                b,
            ));
            done += 1;
            progress.update(targets.len(), done);
        }
    }
    progress.finish();

    Ok(Report {
        generated_at,
        duration_ms: started.elapsed().as_millis(),
        server_version_num: server.version_num,
        server_version: server.version,
        role: server.role,
        evidence_digest,
        org_a: a.to_string(),
        org_b: b.to_string(),
        tables: targets.iter().map(|t| t.table.name.clone()).collect(),
        unseedable: seeded.unseedable,
        results,
        global_rows,
        stale_expectations: Vec::new(),
    })
}

/// One session-state attack through the application's pool, as a result.
fn session_state_result(
    pool: &dyn PoolUnderTest,
    a: Uuid,
    kind: &attacks::session_state::Kind,
) -> AttackResult {
    use attacks::session_state::Fate;
    let (observed, verdict, note) = match attacks::session_state::attack(pool, a, kind) {
        Ok(Fate::Refused(why)) => (
            Observed::Refused {
                sqlstate: "-".into(),
                message: why,
            },
            Verdict::Pass,
            String::new(),
        ),
        Ok(Fate::Discarded) => (Observed::Rows(0), Verdict::Pass, "discarded".into()),
        Ok(Fate::Undone) => (Observed::Rows(0), Verdict::Pass, "undone".into()),
        Ok(Fate::Reached(seen)) => (
            Observed::Rows(1),
            Verdict::Leak,
            format!("the next checkout got the same backend, and read {seen:?}"),
        ),
        Err(why) => (Observed::NotRun(why), Verdict::NotRun, String::new()),
    };
    AttackResult {
        attack: kind.name.into(),
        family: Family::Pool.as_str().into(),
        threat: "#6".into(),
        table: String::new(),
        sql: format!(
            "{}; COMMIT; then, on the next checkout: SELECT {}",
            kind.plant, kind.observe
        ),
        expected: format!(
            "refused, or the connection discarded, or the state gone at the next checkout ({:?})",
            kind.gone
        ),
        observed,
        verdict,
        note,
        expected_by: None,
    }
}
