//! The service of the real-server tests: a schema of its own (not the example's), its
//! registry, and the migration `gen` writes for it.

// Test code: helpers may unwrap and panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::process::ExitCode;

use tenant_cli::Service;

/// The service's own tables.
mod service {
    diesel::table! { projects (org_id, id) { org_id -> Uuid, id -> Uuid, name -> Text, plan -> Text } }
    diesel::table! { tasks (org_id, id) { org_id -> Uuid, id -> Uuid, project_id -> Uuid, title -> Text } }
    diesel::table! { plans (code) { code -> Text } }
    tenant_lint::registry! {
        pub static REGISTRY;
        global plans;
        tenant projects => org_id;
        tenant tasks => org_id;
    }
}
pub use service::REGISTRY;

pub const SCHEMA: &str = "
    CREATE TABLE plans (code text PRIMARY KEY);
    CREATE TABLE projects (org_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
        name text NOT NULL, plan text NOT NULL REFERENCES plans (code), PRIMARY KEY (org_id, id));
    CREATE INDEX ON projects (plan);
    CREATE TABLE tasks (org_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
        project_id uuid NOT NULL, title text NOT NULL, PRIMARY KEY (org_id, id),
        FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id),
        UNIQUE (org_id, project_id, title));
    CREATE INDEX ON tasks (org_id, project_id);";

/// Removes a test's directory when the test ends, passed or not.
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A migrations directory of its own (removed when the first value drops), the service with
/// it, and the `up.sql` that `gen` wrote there for the service's registry.
pub fn generated(hint: &str) -> (RemoveOnDrop, Service, String) {
    generated_for(&REGISTRY, hint)
}

/// [`generated`] for another registry.
pub fn generated_for(
    registry: &'static tenant_lint::Registry,
    hint: &str,
) -> (RemoveOnDrop, Service, String) {
    let dir = std::env::temp_dir().join(format!("tenant-cli-{hint}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let guard = RemoveOnDrop(dir.clone());
    let service = Service::new(registry, &dir);
    assert_eq!(
        tenant_cli::run(&service, ["xtask", "gen"]),
        ExitCode::SUCCESS
    );
    let folder = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let up = std::fs::read_to_string(folder.join("up.sql")).unwrap();
    (guard, service, up)
}

pub fn args<'a>(command: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["xtask", command, "--database-url", url]
}
