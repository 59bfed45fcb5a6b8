//! `migrate` on a real server: the service's own schema migration and the generated one are
//! applied in diesel's order, as the admin; a second run applies nothing and says so; a
//! broken migration fails naming it, is rolled back, and leaves the ones before it applied;
//! the application role cannot run them; a directory that is not there is named with where
//! it was looked for.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use diesel::prelude::*;
use tenant_testkit::{TestDb, roles};

mod common;
use common::{REGISTRY, SCHEMA, generated};

fn tables(db: &TestDb) -> Vec<String> {
    #[derive(QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    diesel::sql_query(
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load::<T>(&mut db.admin())
    .unwrap()
    .into_iter()
    .map(|t| t.name)
    .collect()
}

#[test]
fn migrate_applies_the_services_migrations_once_and_names_a_broken_one() {
    let db = TestDb::new("cli_migrate");
    let (dir, service, _) = generated("migrate");
    let dir = &dir.0;
    // The service's own schema, written by hand, named to run before the generated folder.
    let own = dir.join("2000-01-01-000000_schema");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("up.sql"), SCHEMA).unwrap();
    std::fs::write(
        own.join("down.sql"),
        "DROP TABLE tasks; DROP TABLE projects; DROP TABLE plans;",
    )
    .unwrap();
    let admin = db.admin_url();
    let migrate = |url: &str| {
        tenant_cli::run(
            &service,
            ["xtask", "migrate", "--database-url", url].map(String::from),
        )
    };

    // The application role may not change the schema: refused by the server, nothing applied.
    assert_eq!(migrate(&db.url_as(roles::APP)), ExitCode::FAILURE);
    assert!(!tables(&db).contains(&"projects".to_owned()));

    assert_eq!(migrate(&admin), ExitCode::SUCCESS);
    let applied = tables(&db);
    for t in ["plans", "projects", "tasks"] {
        assert!(applied.contains(&t.to_owned()), "{applied:?}");
    }
    // The generated protection is there: the audit as the application role finds nothing.
    let report = tenant_cli::catalog::audit(&service, &db.url_as(roles::APP)).unwrap();
    assert_eq!(report.error_count(), 0, "{:#?}", report.findings);
    // Nothing is pending the second time.
    assert_eq!(migrate(&admin), ExitCode::SUCCESS);
    assert_eq!(
        tenant_core::admin::run_migrations(&admin, &service.migrations).unwrap(),
        Vec::<String>::new()
    );

    // A broken migration after them: named, rolled back, the earlier ones stay.
    let broken = dir.join("2999-01-01-000000_broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("up.sql"),
        "CREATE TABLE half_done (id int); SELECT 'not a number: 12ab'::int;",
    )
    .unwrap();
    std::fs::write(broken.join("down.sql"), "DROP TABLE half_done;").unwrap();
    let err = tenant_core::admin::run_migrations(&admin, &service.migrations)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("migrations: Failed to run 2999-01-01-000000_broken")
            && err.contains("rolled back")
            && err.contains("invalid input syntax for type integer: <redacted>"),
        "{err}"
    );
    assert!(!tables(&db).contains(&"half_done".to_owned()));
    assert!(tables(&db).contains(&"tasks".to_owned()));

    // A directory that is not there: named, with where it was looked for.
    let missing = tenant_cli::Service::new(&REGISTRY, "no-such-migrations");
    let err = tenant_core::admin::run_migrations(&admin, &missing.migrations)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("migrations: no-such-migrations (the migrations directory, relative to /"),
        "{err}"
    );
}
