//! The generated Citus migration on a real cluster (a coordinator and two workers; `cargo
//! xtask test` starts it and sets `TENANT_CITUS_URL` and `TENANT_CITUS_WORKER_URLS`): it
//! applies to the story's schema as it is, its down reverses it, and a registry change
//! generates an incremental migration that applies too. What the workers hold is read on
//! the workers.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use tenant_schema::citus;
use tenant_testkit::citus::CitusDb;
use tenant_testkit::story;

#[derive(QueryableByName, Debug, PartialEq)]
struct Shard {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Bool)]
    rls: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = BigInt)]
    policies: i64,
    /// The application role's privileges, as `has_table_privilege` answers them.
    #[diesel(sql_type = Text)]
    app: String,
}

/// Every shard of `table` on every worker, with its protection.
fn shards(db: &CitusDb, table: &str) -> Vec<Shard> {
    let mut all = Vec::new();
    for url in db.worker_admin_urls() {
        let mut conn = PgConnection::establish(&url).unwrap();
        // Citus hides shards from the catalog of other clients.
        conn.batch_execute("SET citus.override_table_visibility TO off")
            .unwrap();
        all.extend(
            diesel::sql_query(format!(
                "SELECT c.relname::text AS name, pg_get_userbyid(c.relowner)::text AS owner,
                        c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
                        (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
                        concat_ws(',',
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'SELECT') THEN 'SELECT' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'INSERT') THEN 'INSERT' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'UPDATE') THEN 'UPDATE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'DELETE') THEN 'DELETE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'REFERENCES') THEN 'REFERENCES' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRIGGER') THEN 'TRIGGER' END) AS app
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ '^{table}_[0-9]+$'
                 ORDER BY 1"
            ))
            .load::<Shard>(&mut conn)
            .unwrap(),
        );
    }
    all
}

/// The distributed tables: name, method (`h` hash, `n` reference) and colocation group.
fn distribution(db: &CitusDb) -> Vec<(String, String, i64)> {
    #[derive(QueryableByName)]
    struct Dist {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        method: String,
        #[diesel(sql_type = BigInt)]
        colocation: i64,
    }
    diesel::sql_query(
        "SELECT logicalrelid::text AS name, partmethod::text AS method,
                colocationid::bigint AS colocation
         FROM pg_dist_partition ORDER BY 1",
    )
    .load::<Dist>(&mut db.admin())
    .unwrap()
    .into_iter()
    .map(|d| (d.name, d.method, d.colocation))
    .collect()
}

const TENANT_TABLES: [&str; 5] = ["orgs", "customers", "deals", "proposals", "invoices"];

/// Every shard of the tenant tables is protected as the table is: owner, row-level security
/// enabled and forced, its five policies, and only DML for the application role.
fn assert_every_shard_protected(db: &CitusDb, tables: &[&str]) {
    for table in tables {
        let shards = shards(db, table);
        // 32 shards (Citus's default count), spread over both workers.
        assert_eq!(shards.len(), 32, "{table}: {shards:#?}");
        for s in &shards {
            assert_eq!(
                (
                    s.owner.as_str(),
                    s.rls,
                    s.forced,
                    s.policies,
                    s.app.as_str()
                ),
                ("tenant_owner", true, true, 5, "SELECT,INSERT,UPDATE,DELETE"),
                "{}",
                s.name
            );
        }
    }
}

#[test]
fn the_migration_distributes_the_story_by_org_and_protects_every_shard() {
    let db = story::citus("citus_migration");
    let dist = distribution(&db);
    let tenant_group = dist.iter().find(|d| d.0 == "orgs").unwrap().2;
    for (name, method, group) in &dist {
        if name == "currencies" {
            assert_eq!(method, "n", "global tables are reference tables");
        } else {
            assert_eq!(
                (method.as_str(), *group),
                ("h", tenant_group),
                "{name}: hash-distributed, colocated with orgs"
            );
        }
    }
    assert_eq!(dist.len(), 6);
    assert_every_shard_protected(&db, &TENANT_TABLES);
    // The foreign keys set aside for the distribution are back, on the coordinator and on
    // every shard.
    let mut admin = db.admin();
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let fks: N = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
    )
    .get_result(&mut admin)
    .unwrap();
    // customers -> orgs; deals, proposals -> orgs, customers, currencies; invoices -> orgs,
    // customers, deals, currencies.
    assert_eq!(fks.n, 11);
}

#[test]
fn the_down_migration_removes_the_protection_keeps_the_distribution_and_up_applies_again() {
    let db = story::citus("citus_down");
    let options = story::citus_options();
    let m = citus::generate(&two_companies::REGISTRY, &options).unwrap();
    let mut admin = db.admin();
    let distributed = distribution(&db);
    admin.transaction(|c| c.batch_execute(&m.down)).unwrap();
    for table in TENANT_TABLES {
        for s in shards(&db, table) {
            assert_eq!(
                (s.rls, s.forced, s.policies),
                (false, false, 0),
                "{}",
                s.name
            );
            assert!(!s.app.contains("SELECT"), "{}: {}", s.name, s.app);
        }
    }
    assert_eq!(distribution(&db), distributed, "the distribution stays");
    // Up again, on the distributed tables: the protection is back, nothing is distributed
    // twice.
    admin.transaction(|c| c.batch_execute(&m.up)).unwrap();
    assert_every_shard_protected(&db, &TENANT_TABLES);
    assert_eq!(distribution(&db), distributed);
}

mod grown {
    //! The story's registry with one more tenant table, `notes`.
    diesel::table! { currencies (code) { code -> Text } }
    diesel::table! { orgs (id) { id -> Uuid } }
    diesel::table! { customers (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { deals (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { proposals (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { invoices (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { notes (org_id, id) { org_id -> Uuid, id -> Uuid } }
    tenant_lint::registry! {
        pub static REGISTRY;
        global currencies;
        tenant orgs => id;
        tenant customers => org_id;
        tenant deals => org_id;
        tenant proposals => org_id;
        tenant invoices => org_id;
        tenant notes => org_id;
    }
}

#[test]
fn a_table_that_joins_the_registry_is_distributed_and_protected_by_an_incremental_migration() {
    let db = story::citus("citus_incremental");
    let options = story::citus_options();
    let mut admin = db.admin();
    // The service adds a table (its own migration), with a foreign key to a distributed one.
    admin
        .batch_execute(
            "CREATE TABLE notes (
                 org_id uuid NOT NULL REFERENCES orgs (id),
                 id uuid NOT NULL DEFAULT gen_random_uuid(),
                 customer_id uuid NOT NULL,
                 body text NOT NULL,
                 PRIMARY KEY (org_id, id),
                 FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id)
             )",
        )
        .unwrap();
    let previous = citus::fragments(&two_companies::REGISTRY, &options).unwrap();
    let step = citus::incremental(&grown::REGISTRY, &previous, &options)
        .unwrap()
        .expect("a table joined: something to migrate");
    assert!(step.up.contains("-- notes joined the registry."));
    assert!(!step.up.contains("-- customers changed."), "{}", step.up);
    admin.transaction(|c| c.batch_execute(&step.up)).unwrap();
    let dist = distribution(&db);
    let group = |t: &str| dist.iter().find(|d| d.0 == t).map(|d| d.2);
    assert_eq!(group("notes"), group("orgs"), "{dist:?}");
    assert_every_shard_protected(&db, &["notes"]);

    // A's note is A's alone, through the coordinator as the application role.
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut app = PgConnection::establish(&db.app_url()).unwrap();
    for org in [a, b] {
        let customer = uuid::Uuid::new_v4();
        app.batch_execute(&format!(
            "BEGIN; {set_org};
             INSERT INTO orgs (id, name) VALUES ('{org}', 'o');
             INSERT INTO customers (id, name, email) VALUES ('{customer}', 'c', 'c@x');
             INSERT INTO notes (customer_id, body) VALUES ('{customer}', 'secret of {org}');
             COMMIT;",
            set_org = tenant_testkit::citus::set_local_org(org)
        ))
        .unwrap();
    }
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Text)]
        body: String,
    }
    app.batch_execute(&format!(
        "BEGIN; {}",
        tenant_testkit::citus::set_local_org(a)
    ))
    .unwrap();
    let seen: Vec<String> = diesel::sql_query("SELECT body FROM notes")
        .load::<Body>(&mut app)
        .unwrap()
        .into_iter()
        .map(|b| b.body)
        .collect();
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(seen, [format!("secret of {a}")]);

    // Its down takes the new table's protection away and leaves the rest as it was.
    admin.transaction(|c| c.batch_execute(&step.down)).unwrap();
    for s in shards(&db, "notes") {
        assert_eq!((s.rls, s.policies), (false, 0), "{}", s.name);
    }
    assert_every_shard_protected(&db, &TENANT_TABLES);
}
