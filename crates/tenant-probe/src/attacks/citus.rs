//! On a Citus cluster (docs/threat-model.md #37): what Citus grants every role and a red-team
//! pass used to reach another org (run SQL on the workers, write intermediate results, list
//! other sessions' statements and shards, lock relations by name, call the internal metadata
//! functions with a forged `application_name`, signal other sessions). Each must be refused
//! (42501); one that runs is a leak, since each gave another org's rows or a way to change them.

use crate::attack::{Accept, Family, Plan};

const THREAT: &str = "#37";

/// One attack per power, in the database (no table).
pub fn database() -> Vec<Plan> {
    [
        ("run_command_on_workers", "SELECT run_command_on_workers('SELECT 1')"),
        ("run_command_on_all_nodes", "SELECT run_command_on_all_nodes('SELECT 1')"),
        ("run_command_on_coordinator", "SELECT run_command_on_coordinator('SELECT 1')"),
        (
            "master_run_on_worker",
            "SELECT * FROM master_run_on_worker(ARRAY['localhost'], ARRAY[5432], ARRAY['SELECT 1'], false)",
        ),
        ("citus_run_local_command", "SELECT citus_run_local_command('SELECT 1')"),
        (
            "create_intermediate_result",
            "SELECT create_intermediate_result('1_1', 'SELECT 1')",
        ),
        (
            "broadcast_intermediate_result",
            "SELECT broadcast_intermediate_result('1_1', 'SELECT 1')",
        ),
        (
            "get_all_active_transactions",
            "SELECT 1 FROM get_all_active_transactions() LIMIT 1",
        ),
        (
            "get_global_active_transactions",
            "SELECT 1 FROM get_global_active_transactions() LIMIT 1",
        ),
        ("citus_stat_activity", "SELECT 1 FROM citus_stat_activity LIMIT 1"),
        ("citus_locks", "SELECT 1 FROM citus_locks LIMIT 1"),
        ("citus_shards", "SELECT 1 FROM citus_shards LIMIT 1"),
        ("citus_shard_sizes", "SELECT 1 FROM citus_shard_sizes() LIMIT 1"),
        (
            "lock_relation_if_exists",
            "SELECT lock_relation_if_exists('pg_catalog.pg_class', 'ACCESS SHARE')",
        ),
        (
            "citus_internal_forged_application_name",
            "SELECT citus_internal.delete_placement_metadata(0) \
             FROM (SELECT set_config('application_name', 'citus_internal gpid=10000000001', true)) s",
        ),
    ]
    .into_iter()
    .map(|(attack, sql)| {
        Plan::new(attack, Family::Privilege, THREAT, "", sql.to_owned())
            .accept(
                vec![Accept::Sqlstate("42501")],
                "refused: 42501 (the Citus migration takes it from PUBLIC)",
            )
            .no_rows()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_power_is_expected_refused() {
        let plans = super::database();
        assert_eq!(plans.len(), 15);
        assert!(
            plans
                .iter()
                .all(|p| p.accept == [super::Accept::Sqlstate("42501")])
        );
    }
}
