//! What Citus lets every role do, and what the Citus migration takes away from `PUBLIC` on the
//! coordinator and on every worker (found by a red-team pass on a real cluster, each item
//! shown by a test in `tests/citus.rs` of tenant-probe):
//!
//! - run any SQL on the workers, as oneself: `run_command_on_workers` and its siblings,
//!   `master_run_on_worker`, `citus_run_local_command`. On a worker the application role
//!   reaches what the coordinator keeps it from (the local copy that skips WITH CHECK, every
//!   other session's statement text with its parameters as literals, signals to other
//!   sessions), so "the application role reaches the coordinator only" held only with these
//!   gone;
//! - take another session's distributed transaction id (`assign_distributed_transaction_id`)
//!   and read or overwrite its intermediate results (`create_intermediate_result`,
//!   `broadcast_intermediate_result`, `fetch_intermediate_results`): another org's rows, read
//!   and forged. The workers keep `assign_distributed_transaction_id` and
//!   `read_intermediate_result(s)`, which the coordinator calls there as the session's role;
//! - list every session's distributed transactions and statements
//!   (`get_all_active_transactions`, `get_global_active_transactions`, the views
//!   `citus_stat_activity`, `citus_dist_stat_activity`, `citus_worker_stat_activity`,
//!   `citus_locks`, `citus_lock_waits`), and every shard's size (`citus_shards`,
//!   `citus_shard_sizes`), which is one org's size where an org has its shard to itself, and
//!   every distributed table's (the views `public.citus_tables`, `public.citus_schemas`);
//! - lock any relation by name (`lock_relation_if_exists`);
//! - call Citus's internal metadata functions (schema `citus_internal`, and their older names
//!   `pg_catalog.citus_internal_*`), which trust a session whose `application_name` says it is
//!   Citus's own: a role set it and deleted another org's shard placement; and a query the
//!   coordinator pushes to a worker runs its function calls there on a connection Citus counts
//!   as its own;
//! - run a nested distributed `INSERT ... SELECT` on a worker from inside a pushed-down query
//!   (`worker_partition_query_result` in `worker_save_query_explain_analyze`), or read every
//!   session's statements there (`pg_stat_get_activity`, workers only), update and read shard
//!   sizes, unmark distributed objects.
//!
//! The session revokes of [`crate::session`] (large objects, signals to other sessions) are
//! applied on the workers too: Citus does not propagate privileges on `pg_catalog` functions.

/// Functions (by name, in `pg_catalog`) no role of the service may execute on the coordinator.
pub const COORDINATOR_FUNCTIONS: &[&str] = &[
    "run_command_on_workers",
    "run_command_on_all_nodes",
    "run_command_on_coordinator",
    "run_command_on_shards",
    "run_command_on_placements",
    "run_command_on_colocated_placements",
    "master_run_on_worker",
    "citus_run_local_command",
    "assign_distributed_transaction_id",
    "create_intermediate_result",
    "broadcast_intermediate_result",
    "fetch_intermediate_results",
    "get_all_active_transactions",
    "get_global_active_transactions",
    "lock_relation_if_exists",
    "citus_shard_sizes",
    "citus_update_shard_statistics",
    "master_update_shard_statistics",
    "citus_relation_size",
    "citus_table_size",
    "citus_total_relation_size",
    "citus_stat_counters",
    "citus_unmark_object_distributed",
    "worker_change_sequence_dependency",
    // A second pass ran these inside a query the coordinator pushed to a worker (a function
    // call in it runs there, as the caller, on a connection Citus counts as its own):
    // a nested INSERT ... SELECT through the worker's local copy, and every session's
    // statement with its parameters as literals.
    "worker_partition_query_result",
    "worker_save_query_explain_analyze",
    // Citus's overloads that signal a session anywhere in the cluster by its global pid (the
    // session revokes take PostgreSQL's own).
    "pg_cancel_backend",
    "pg_terminate_backend",
];

/// Functions no role of the service may execute on a worker, besides those of
/// [`COORDINATOR_FUNCTIONS`]: a worker's `pg_stat_activity` shows every session of the role
/// with its shard statements, bind parameters written in as literals.
pub const WORKER_ONLY_FUNCTIONS: &[&str] = &["pg_stat_get_activity"];

/// Functions no role of the service may execute on a worker: the coordinator's, but for
/// `assign_distributed_transaction_id`, which the coordinator calls there as the session's
/// role at the start of every distributed transaction.
pub fn worker_functions() -> impl Iterator<Item = &'static str> {
    COORDINATOR_FUNCTIONS
        .iter()
        .copied()
        .filter(|f| *f != "assign_distributed_transaction_id")
        .chain(WORKER_ONLY_FUNCTIONS.iter().copied())
}

/// Citus's views in the `public` schema no role of the service may read: every distributed
/// table's name, size and shard count (`citus_tables`), and the distributed schemas.
pub const PUBLIC_VIEWS: &[&str] = &["citus_tables", "citus_schemas"];

/// Views (in `pg_catalog`) no role of the service may read.
pub const VIEWS: &[&str] = &[
    "citus_stat_activity",
    "citus_dist_stat_activity",
    "citus_worker_stat_activity",
    "citus_locks",
    "citus_lock_waits",
    "citus_shards",
    "citus_stat_counters",
    "pg_dist_transaction",
];

/// A `DO` block that takes `functions` and [`VIEWS`] from `PUBLIC` and every function of the
/// schema `citus_internal`, plus the session revokes, on the node it runs on, and gives the
/// functions to the table owner `owner` (Citus calls them as the owner when it moves, splits
/// or isolates shards); `q` quotes the block's own dollar-quote tag (it is sent to the workers
/// inside another).
fn revoke_block(functions: &[&str], q: &str, owner: &str) -> String {
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (names, views, public_views) = (quoted(functions), quoted(VIEWS), quoted(PUBLIC_VIEWS));
    let session: Vec<&str> = crate::session::LARGE_OBJECT_CREATORS
        .iter()
        .chain(crate::session::SESSION_SIGNALS)
        .copied()
        .collect();
    format!(
        "DO {q}\n\
         DECLARE f regprocedure; v regclass;\n\
         BEGIN\n\
         \x20 FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p\n\
         \x20          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n\
         \x20          WHERE (n.nspname = 'pg_catalog' AND (p.proname IN ({names}) OR p.proname LIKE 'citus\\_internal\\_%'))\n\
         \x20             OR n.nspname = 'citus_internal' LOOP\n\
         \x20   EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);\n\
         \x20   EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, {owner});\n\
         \x20 END LOOP;\n\
         \x20 FOR v IN SELECT c.oid::regclass FROM pg_catalog.pg_class c\n\
         \x20          WHERE (c.relnamespace = 'pg_catalog'::regnamespace AND c.relname IN ({views}))\n\
         \x20             OR (c.relnamespace = 'public'::regnamespace AND c.relname IN ({public_views})\n\
         \x20                 AND EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid\n\
         \x20                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid\n\
         \x20                               AND d.deptype = 'e' AND e.extname = 'citus')) LOOP\n\
         \x20   EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', v);\n\
         \x20 END LOOP;\n\
         \x20 REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC;\n\
         END\n\
         {q};",
        session.join(", "),
        owner = crate::sql::literal(owner),
    )
}

/// The Citus migration's part that takes these powers away, on the coordinator and, through
/// it, on every worker registered now (a worker added later gets them back with the extension:
/// the cluster audit reports it, `citus-power-executable`). Refused, failing the migration,
/// when a worker does not apply it.
pub(crate) fn revoke(o: &crate::options::RlsOptions) -> String {
    let workers: Vec<&str> = worker_functions().collect();
    format!(
        "\n-- What Citus lets every role do that no role of the service may (citus_powers.rs): run\n\
         -- SQL on the workers, take another session's distributed transaction and its\n\
         -- intermediate results, see every session's statements and every shard's size, lock\n\
         -- any relation, call Citus's internal metadata functions. On the coordinator, then on\n\
         -- every worker through it.\n\
         {coordinator}\n\
         DO $tenant_workers$\n\
         DECLARE failed text;\n\
         BEGIN\n\
         \x20 SELECT string_agg(nodename || ':' || nodeport || ': ' || result, '; ') INTO failed\n\
         \x20   FROM run_command_on_workers($cmd${workers}$cmd$) WHERE NOT success;\n\
         \x20 IF failed IS NOT NULL THEN\n\
         \x20   RAISE EXCEPTION 'taking Citus''s powers from PUBLIC failed on a worker: %', failed;\n\
         \x20 END IF;\n\
         END\n\
         $tenant_workers$;\n",
        coordinator = revoke_block(COORDINATOR_FUNCTIONS, "$tenant_powers$", &o.owner_role),
        workers = revoke_block(&workers, "$w$", &o.owner_role),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_keep_what_the_coordinator_calls_there_and_lose_the_rest() {
        let w: Vec<&str> = worker_functions().collect();
        assert!(!w.contains(&"assign_distributed_transaction_id"));
        assert!(w.contains(&"run_command_on_workers") && w.contains(&"create_intermediate_result"));
        assert!(!COORDINATOR_FUNCTIONS.contains(&"read_intermediate_result"));
        let sql = revoke(&crate::options::RlsOptions::default());
        assert!(sql.contains("run_command_on_workers($cmd$DO $w$"), "{sql}");
        assert!(sql.contains("pg_catalog.pg_terminate_backend(integer, bigint)"));
    }
}
