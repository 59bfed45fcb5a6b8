//! A throwaway Citus cluster: a coordinator and two workers, each an ordinary [`Cluster`]
//! with `shared_preload_libraries = 'citus'` listening on localhost (the nodes reach each
//! other over TCP), and a database per test on all three ([`CitusDb`]).
//!
//! Citus is a server the tests run against, like PostgreSQL: it must be installed into the
//! local PostgreSQL (`cargo xtask citus start` builds it when it is missing). Nothing of it is
//! linked into the crates.
//!
//! What Citus propagates and what it does not, as this module relies on it (Citus 13.2):
//! roles (CREATE/ALTER ROLE, GRANT role) are propagated from a database with the extension and
//! registered workers, and every existing role is copied to a worker when it is added;
//! `CREATE DATABASE` is not (`citus.enable_create_database_propagation` is off by default), and
//! every database is a cluster of its own to Citus: the extension and the worker registration
//! are made in each one, which [`CitusDb::new`] does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::cluster::Cluster;

/// The Citus version the tests were written against.
pub const CITUS_VERSION: &str = "13.2";

/// The nodes' directory names under `target/` (coordinator first).
const NODES: [&str; 3] = [
    "tenant-citus-coordinator",
    "tenant-citus-worker1",
    "tenant-citus-worker2",
];

/// A coordinator and two workers.
#[derive(Debug)]
pub struct CitusCluster {
    nodes: Vec<Cluster>,
}

impl CitusCluster {
    /// The Citus cluster of the workspace at `root` (`cargo xtask citus`).
    pub fn at(root: &Path) -> Self {
        Self {
            nodes: NODES
                .iter()
                .map(|name| {
                    Cluster::named(root, name)
                        .with_setting("listen_addresses", "localhost")
                        .with_setting("shared_preload_libraries", "citus")
                        .with_setting("shared_buffers", "128MB")
                        .with_setting("max_connections", "300")
                        // Scoped transactions set the org with SET LOCAL, which Citus sends
                        // on to the workers only with this setting.
                        .with_setting("citus.propagate_set_commands", "local")
                        // citus_stat_counters: how many queries ran on one shard, how many on
                        // several (the routing tests read them).
                        .with_setting("citus.enable_stat_counters", "on")
                })
                .collect(),
        }
    }

    /// Whether Citus is installed into the PostgreSQL whose binaries the nodes run.
    pub fn installed(&self) -> bool {
        self.control_file().is_some_and(|f| f.is_file())
    }

    /// `citus.control` of the PostgreSQL the nodes run, from its `pg_config`.
    fn control_file(&self) -> Option<PathBuf> {
        let pg_config = self.nodes.first()?.bindir()?.join("pg_config");
        let out = std::process::Command::new(pg_config)
            .arg("--sharedir")
            .output()
            .ok()?;
        let share = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!share.is_empty()).then(|| Path::new(&share).join("extension").join("citus.control"))
    }

    /// Starts the three nodes (a running one is reused), creates the extension in their
    /// `postgres` databases and registers the workers with the coordinator.
    ///
    /// # Errors
    /// When Citus is not installed, a node does not start, or the registration fails.
    pub fn start(self) -> Result<Self, String> {
        if !self.installed() {
            return Err(format!(
                "Citus is not installed into the PostgreSQL at {}: run `cargo xtask citus start`, \
                 which builds it, or install Citus {CITUS_VERSION} for that server",
                self.nodes
                    .first()
                    .and_then(Cluster::bindir)
                    .map_or_else(|| "(not found)".to_owned(), |b| b.display().to_string())
            ));
        }
        let mut started = Vec::new();
        for node in self.nodes {
            started.push(node.start()?);
        }
        let cluster = Self { nodes: started };
        cluster.register("postgres")?;
        Ok(cluster)
    }

    /// Creates the extension in database `db` of every node and registers the workers with
    /// the coordinator's `db` (each database is a Citus cluster of its own).
    fn register(&self, db: &str) -> Result<(), String> {
        let (coordinator, workers) = self.split()?;
        for worker in workers {
            connect(&db_url(worker, db))?
                .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
                .map_err(|e| format!("CREATE EXTENSION citus on a worker ({db}): {e}"))?;
        }
        let mut sql = format!(
            "CREATE EXTENSION IF NOT EXISTS citus;
             SELECT citus_set_coordinator_host('localhost', {});",
            tcp_port(coordinator)?
        );
        for worker in workers {
            sql.push_str(&format!(
                "SELECT citus_add_node('localhost', {});",
                tcp_port(worker)?
            ));
        }
        connect(&db_url(coordinator, db))?
            .batch_execute(&sql)
            .map_err(|e| format!("registering the workers with the coordinator ({db}): {e}"))
    }

    fn split(&self) -> Result<(&Cluster, &[Cluster]), String> {
        self.nodes
            .split_first()
            .ok_or_else(|| "a Citus cluster without nodes".to_owned())
    }

    /// The coordinator's admin URL (over its unix socket).
    pub fn url(&self) -> String {
        self.nodes.first().map(Cluster::url).unwrap_or_default()
    }

    /// The workers' admin URLs (over their unix sockets).
    pub fn worker_urls(&self) -> Vec<String> {
        self.nodes.iter().skip(1).map(Cluster::url).collect()
    }

    /// Whether all three nodes run.
    pub fn running(&self) -> bool {
        self.nodes.iter().all(Cluster::running)
    }

    /// Prints whether the nodes run, and the coordinator's URL.
    pub fn status(&self) -> Result<(), String> {
        for (name, node) in NODES.iter().zip(&self.nodes) {
            if node.running() {
                println_status(&format!("{name}: running: {}", node.url()));
            } else {
                println_status(&format!(
                    "{name}: not running (start the cluster with `cargo xtask citus start`)"
                ));
            }
        }
        Ok(())
    }

    /// Stops every node, keeping the data.
    ///
    /// # Errors
    /// The first node that did not stop.
    pub fn stop(&self) -> Result<(), String> {
        self.nodes.iter().try_for_each(Cluster::stop)
    }

    /// Stops every node and removes its directory.
    ///
    /// # Errors
    /// The first node that did not stop or could not be removed.
    pub fn stop_and_remove(&self) -> Result<(), String> {
        self.nodes.iter().try_for_each(Cluster::stop_and_remove)
    }
}

// Tooling: `cargo xtask citus status` reports through these lines.
#[allow(clippy::print_stdout)]
fn println_status(line: &str) {
    println!("{line}");
}

fn tcp_port(node: &Cluster) -> Result<u16, String> {
    node.listen_port()
        .ok_or_else(|| "a Citus node without a port (was it started?)".to_owned())
}

fn db_url(node: &Cluster, db: &str) -> String {
    crate::url_for(&node.url(), "postgres", None, db)
}

fn connect(url: &str) -> Result<PgConnection, String> {
    PgConnection::establish(url).map_err(|e| format!("connecting to {url}: {e}"))
}

/// `SET LOCAL tenant.org_id = '<org>'` in a DO block of its own, for raw SQL in a test's
/// transaction on the cluster: Citus sends a top-level SET LOCAL on to the workers as the text
/// of the whole query it came in, so every other statement of that query would run on them
/// again.
pub fn set_local_org(org: impl std::fmt::Display) -> String {
    format!("DO $$BEGIN SET LOCAL tenant.org_id = '{org}'; END$$")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One setup at a time in a process: registering the workers and migrating in two databases
/// at once change the same nodes and roles ("failure on connection marked as essential",
/// "tuple concurrently updated"). Test binaries run one after the other.
pub fn one_setup_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SETUP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A database of its own for one test on every node of the Citus cluster whose coordinator
/// `TENANT_CITUS_URL` names, with the extension and the workers registered; dropped on every
/// node when the value is.
#[derive(Debug)]
pub struct CitusDb {
    name: String,
    coordinator: String,
    workers: Vec<String>,
}

/// The coordinator URL: `TENANT_CITUS_URL`, or a panic that says how to get one.
pub fn coordinator_url() -> String {
    std::env::var("TENANT_CITUS_URL").unwrap_or_else(|_| {
        panic!(
            "TENANT_CITUS_URL is not set: run the Citus tests with `cargo xtask test` (or `cargo \
             xtask citus test`), which starts a coordinator and two workers"
        )
    })
}

impl CitusDb {
    /// Creates database `ts_<hint>_<pid>_<n>` on the coordinator and both workers, the
    /// extension in each, the test roles, and registers the workers.
    ///
    /// # Panics
    /// When the cluster cannot be reached or a step fails.
    pub fn new(hint: &str) -> Self {
        Self::on(&coordinator_url(), worker_urls_from_env(), hint)
    }

    /// [`new`](Self::new) on the cluster of coordinator admin URL `coordinator` and workers'
    /// admin URLs `workers` (a command that started the cluster itself).
    ///
    /// # Panics
    /// When the cluster cannot be reached or a step fails.
    pub fn on(coordinator: &str, workers: Vec<String>, hint: &str) -> Self {
        let _one = one_setup_at_a_time();
        let coordinator = coordinator.to_owned();
        let mut admin = PgConnection::establish(&coordinator)
            .unwrap_or_else(|e| panic!("cannot connect to the Citus coordinator: {e}"));
        // Roles made on the coordinator's `postgres` database (which has the extension and the
        // workers) reach every worker.
        crate::ensure_roles(&mut admin);
        let name = format!(
            "{}_{}_{}",
            crate::database_prefix(hint),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        for url in workers.iter().chain([&coordinator]) {
            let mut conn = PgConnection::establish(url)
                .unwrap_or_else(|e| panic!("cannot connect to a Citus node {url}: {e}"));
            conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .unwrap_or_else(|e| panic!("CREATE DATABASE on {url}: {e}"));
        }
        let db = Self {
            name,
            coordinator,
            workers,
        };
        for url in &db.workers {
            PgConnection::establish(&crate::url_for(url, "postgres", None, &db.name))
                .and_then(|mut c| {
                    c.batch_execute("CREATE EXTENSION citus")
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
                })
                .unwrap_or_else(|e| panic!("CREATE EXTENSION citus on worker {url}: {e}"));
        }
        let mut sql = format!(
            "CREATE EXTENSION citus; SELECT citus_set_coordinator_host('localhost', {});",
            port_of(&mut admin)
        );
        for url in &db.workers {
            let mut w = PgConnection::establish(url).expect("worker");
            sql.push_str(&format!(
                "SELECT citus_add_node('localhost', {});",
                port_of(&mut w)
            ));
        }
        db.admin()
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("registering the workers in {}: {e}", db.name));
        db
    }

    /// The database's name (the same on every node).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The coordinator's URL of this database as the cluster's admin (`postgres`).
    pub fn admin_url(&self) -> String {
        crate::url_for(&self.coordinator, "postgres", None, &self.name)
    }

    /// A raw admin connection to the coordinator's database.
    pub fn admin(&self) -> PgConnection {
        PgConnection::establish(&self.admin_url()).expect("admin connection to the coordinator")
    }

    /// The coordinator's URL of this database as `role` (one of [`crate::roles`]).
    pub fn url_as(&self, role: &str) -> String {
        crate::url_for(
            &self.coordinator,
            role,
            Some(crate::TEST_PASSWORD),
            &self.name,
        )
    }

    /// The coordinator's URL as the application role.
    pub fn app_url(&self) -> String {
        self.url_as(crate::roles::APP)
    }

    /// The workers' URLs of this database as the cluster's admin.
    pub fn worker_admin_urls(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| crate::url_for(w, "postgres", None, &self.name))
            .collect()
    }

    /// `(single-shard, multi-shard)` query executions Citus counted in this database on the
    /// coordinator (`citus_stat_counters`; the cluster runs with `citus.enable_stat_counters`).
    pub fn routing_counters(&self) -> (i64, i64) {
        #[derive(QueryableByName)]
        struct Counters {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            single: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            multi: i64,
        }
        let c: Counters = diesel::sql_query(
            "SELECT query_execution_single_shard AS single, query_execution_multi_shard AS multi \
             FROM citus_stat_counters WHERE name = current_database()",
        )
        .get_result(&mut self.admin())
        .expect("reading citus_stat_counters");
        (c.single, c.multi)
    }

    /// The workers' ports, in the order of [`worker_admin_urls`](Self::worker_admin_urls)
    /// (the ports `pg_dist_node` names them by).
    pub fn worker_ports(&self) -> Vec<u16> {
        self.workers
            .iter()
            .map(|w| {
                let url = url::Url::parse(w).expect("a worker URL");
                url.query_pairs()
                    .find(|(k, _)| k == "port")
                    .and_then(|(_, v)| v.parse().ok())
                    .or_else(|| url.port())
                    .expect("a worker URL without a port")
            })
            .collect()
    }

    /// The port of the node that holds shard `shard` (its first placement).
    pub fn shard_port(&self, shard: i64) -> u16 {
        #[derive(QueryableByName)]
        struct Port {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            port: i32,
        }
        let port = diesel::sql_query(
            "SELECT n.nodeport AS port FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) \
             WHERE p.shardid = $1 ORDER BY p.placementid LIMIT 1",
        )
        .bind::<diesel::sql_types::BigInt, _>(shard)
        .get_result::<Port>(&mut self.admin())
        .expect("reading the shard's placement")
        .port;
        u16::try_from(port).expect("a port")
    }

    /// The workers' URLs of this database as `role`.
    pub fn worker_urls_as(&self, role: &str) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| crate::url_for(w, role, Some(crate::TEST_PASSWORD), &self.name))
            .collect()
    }
}

impl Drop for CitusDb {
    fn drop(&mut self) {
        for url in [&self.coordinator].into_iter().chain(&self.workers) {
            if let Ok(mut admin) = PgConnection::establish(url) {
                let _ = crate::drop_database(&mut admin, &self.name);
            }
        }
    }
}

/// The workers' admin URLs: `TENANT_CITUS_WORKER_URLS`, comma-separated (`cargo xtask test`
/// sets it beside `TENANT_CITUS_URL`).
fn worker_urls_from_env() -> Vec<String> {
    let urls: Vec<String> = std::env::var("TENANT_CITUS_WORKER_URLS")
        .unwrap_or_default()
        .split(',')
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim().to_owned())
        .collect();
    assert!(
        !urls.is_empty(),
        "TENANT_CITUS_WORKER_URLS is not set: run the Citus tests with `cargo xtask test`, which \
         starts a coordinator and two workers and names them"
    );
    urls
}

fn port_of(conn: &mut PgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "current_setting('port')::int",
    ))
    .get_result(conn)
    .expect("reading the port")
}
