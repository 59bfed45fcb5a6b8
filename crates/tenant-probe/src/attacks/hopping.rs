//! Org hopping inside A's transaction (THREATS.md #5): `set_config`, `SET LOCAL`, and the
//! one-statement injection that sets B's org in a subquery of the same statement. In the
//! default configuration the session may change its own setting, so these read B's row: they
//! are reported as findings (a known limitation until the hardened context mode), not leaks.

use crate::attack::{Family, Plan, Target};
use crate::report::Verdict;

const THREAT: &str = "#5";
const EXPECTED: &str =
    "0 rows (hardened context); the default configuration lets the session change its org";

/// The hopping attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, org, b) = (t.name(), t.org(), Target::lit(t.b));
    let table = t.table.name.as_str();
    let read_b = format!("SELECT 1 FROM {name} WHERE {org} = {b}");
    vec![
        Plan::new("set_config_hop", Family::OrgHopping, THREAT, table, read_b.clone())
            .setup(vec![format!("SELECT set_config('tenant.org_id', '{}', true)", t.b)])
            .accept(vec![crate::attack::Accept::Rows(0)], EXPECTED)
            .on_fail(Verdict::Finding),
        Plan::new("set_local_hop", Family::OrgHopping, THREAT, table, read_b)
            .setup(vec![format!("SET LOCAL tenant.org_id = '{}'", t.b)])
            .accept(vec![crate::attack::Accept::Rows(0)], EXPECTED)
            .on_fail(Verdict::Finding),
        Plan::new(
            "injected_hop",
            Family::OrgHopping,
            THREAT,
            table,
            format!(
                // Compared as text, so the planner cannot turn it into a filter on the policy's
                // value that runs before the hop.
                "SELECT 1 FROM (SELECT set_config('tenant.org_id', '{0}', true)) hop, {name} t WHERE t.{org}::text = '{0}'",
                t.b
            ),
        )
        .accept(vec![crate::attack::Accept::Rows(0)], EXPECTED)
        .on_fail(Verdict::Finding),
        Plan::new(
            "injected_hop_lateral",
            Family::OrgHopping,
            THREAT,
            table,
            format!(
                "SELECT 1 FROM {name} t, LATERAL (SELECT set_config('tenant.org_id', '{0}', true)) hop WHERE t.{org}::text = '{0}'",
                t.b
            ),
        )
        .accept(vec![crate::attack::Accept::Rows(0)], EXPECTED)
        .on_fail(Verdict::Finding),
        Plan::new(
            "injected_hop_cte",
            Family::OrgHopping,
            THREAT,
            table,
            format!(
                "WITH hop AS MATERIALIZED (SELECT set_config('tenant.org_id', '{0}', true)) SELECT 1 FROM hop, {name} t WHERE t.{org}::text = '{0}'",
                t.b
            ),
        )
        .accept(vec![crate::attack::Accept::Rows(0)], EXPECTED)
        .on_fail(Verdict::Finding),
        // A token made up without the key: nothing in either mode.
        Plan::new("forged_token_hop", Family::OrgHopping, THREAT, table, format!("SELECT 1 FROM {name} WHERE {org} = {b}"))
            .setup(vec![format!(
                "SELECT set_config('tenant.org_token', 'v1.{0}.9999999999.' || pg_backend_pid() || '.k1.{1}', true)",
                t.b,
                "0".repeat(64)
            )])
            .accept(vec![crate::attack::Accept::Rows(0)], "0 rows: a token needs the key")
            .on_fail(Verdict::Leak),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;

    #[test]
    fn hopping_is_a_finding_not_a_leak() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        assert_eq!(plans.len(), 6);
        assert!(plans[..5].iter().all(|p| p.on_fail == Verdict::Finding));
        assert_eq!(plans[5].on_fail, Verdict::Leak);
        assert!(
            plans[2]
                .sql
                .starts_with("SELECT 1 FROM (SELECT set_config("),
            "{}",
            plans[2].sql
        );
    }
}
