//! `gen` and `check` on a migrations directory of their own: the first migration, nothing
//! when nothing changed, a registry change caught by `check` and written by `gen`, and a
//! folder named after a hand-made migration that sorts later.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use tenant_cli::Service;
use tenant_cli::migrations::{GenError, check, generate};

mod one {
    diesel::table! { notes (org_id, id) { org_id -> Uuid, id -> Uuid, body -> Text } }
    tenant_lint::registry! { pub static REGISTRY; tenant notes => org_id; }
}

/// The same `notes` (a table is registered once, so it is declared again here) and `tags`.
mod two {
    diesel::table! { notes (org_id, id) { org_id -> Uuid, id -> Uuid, body -> Text } }
    diesel::table! { tags (org_id, id) { org_id -> Uuid, id -> Uuid, name -> Text } }
    tenant_lint::registry! { pub static REGISTRY; tenant notes => org_id; tenant tags => org_id; }
}

/// An empty directory of its own under the system's temporary directory.
fn empty_dir(hint: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tenant-cli-{hint}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn at(s: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn generated(dir: &PathBuf) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_registry_change_fails_check_until_gen_writes_its_migration() {
    let dir = empty_dir("change");
    let first = Service::new(&one::REGISTRY, &dir);
    assert!(matches!(check(&first), Err(GenError::OutOfDate(_))));
    let wrote = generate(&first, at("2026-12-05 09:00:00")).unwrap();
    assert!(wrote[0].contains("the whole protection"), "{wrote:?}");
    assert_eq!(generated(&dir), ["2026-12-05-090000_tenant_rls"]);
    let up = std::fs::read_to_string(dir.join("2026-12-05-090000_tenant_rls/up.sql")).unwrap();
    assert!(up.contains("ALTER TABLE \"notes\" FORCE ROW LEVEL SECURITY;"));
    check(&first).unwrap();
    assert!(
        generate(&first, at("2026-12-05 09:30:00")).unwrap()[0].contains("nothing to generate")
    );

    // A table joins the registry: check names why, gen writes only the new table.
    let second = Service::new(&two::REGISTRY, &dir);
    let err = check(&second).unwrap_err().to_string();
    assert!(
        err.contains("not up to date") && err.contains("the registry's tables changed"),
        "{err}"
    );
    generate(&second, at("2026-12-05 10:00:00")).unwrap();
    let up = std::fs::read_to_string(dir.join("2026-12-05-100000_tenant_rls/up.sql")).unwrap();
    assert!(up.contains("\"tags\"") && !up.contains("-- notes"), "{up}");
    check(&second).unwrap();
}

#[test]
fn a_new_migration_is_named_to_run_after_a_hand_made_one_with_a_later_version() {
    let dir = empty_dir("order");
    std::fs::create_dir_all(dir.join("2027-01-01-000000_by_hand")).unwrap();
    generate(
        &Service::new(&one::REGISTRY, &dir),
        at("2026-12-05 09:00:00"),
    )
    .unwrap();
    assert_eq!(
        generated(&dir),
        ["2027-01-01-000000_by_hand", "2027-01-01-000001_tenant_rls"]
    );
}

#[test]
fn a_missing_migrations_directory_is_an_error_naming_it() {
    let dir = std::env::temp_dir().join("tenant-cli-no-such-dir-ever");
    let err = check(&Service::new(&one::REGISTRY, &dir))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&dir.display().to_string()), "{err}");
}

#[test]
fn the_command_line_runs_check_and_refuses_an_unknown_command() {
    let dir = empty_dir("cli");
    let service = Service::new(&one::REGISTRY, &dir);
    assert_eq!(
        tenant_cli::run(&service, ["xtask", "check"]),
        std::process::ExitCode::FAILURE
    );
    assert_eq!(
        tenant_cli::run(&service, ["xtask", "gen"]),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(
        tenant_cli::run(&service, ["xtask", "check"]),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(
        tenant_cli::run(&service, ["xtask", "no-such-command"]),
        std::process::ExitCode::from(2)
    );
}
