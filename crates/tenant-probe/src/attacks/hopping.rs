//! Org hopping inside A's transaction (docs/threat-model.md #5): `set_config`, `SET LOCAL`, and the
//! one-statement injection that sets B's org in a subquery of the same statement. In the
//! default signed mode they read nothing (the policies verify a token only the service can
//! sign). In the opt-in plain mode, which trusts every statement, the session may change its
//! own setting, so these read B's row: they are reported as findings (what that mode gives up,
//! by name), not leaks.

use crate::attack::{Accept, Family, Plan, Target};
use crate::report::Verdict;

const THREAT: &str = "#5";
const EXPECTED: &str = "0 rows (the signed context: the policies verify a token only the service can sign); \
     the opt-in plain mode trusts every statement, so the session can change its org";

/// A hop that reads B's row and, in the opt-in plain mode, gets it: a finding, not a leak.
fn hop(attack: &'static str, table: &str, setup: Vec<String>, sql: String) -> Plan {
    Plan::new(attack, Family::OrgHopping, THREAT, table, sql)
        .setup(setup)
        .accept(vec![Accept::Rows(0)], EXPECTED)
        .on_fail(Verdict::Finding)
}

/// The hopping attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, org, b) = (t.name(), t.org(), Target::lit(t.b));
    let table = t.table.name.as_str();
    let read_b = format!("SELECT 1 FROM {name} WHERE {org} = {b}");
    let set_b = format!("set_config('tenant.org_id', '{}', true)", t.b);
    // The org is compared as text in the one-statement forms, so the planner cannot turn it
    // into a filter on the policy's value that runs before the hop.
    let b_as_text = format!("t.{org}::text = '{}'", t.b);
    vec![
        hop("set_config_hop", table, vec![format!("SELECT {set_b}")], read_b.clone()),
        hop("set_local_hop", table, vec![format!("SET LOCAL tenant.org_id = '{}'", t.b)], read_b.clone()),
        hop("injected_hop", table, vec![], format!("SELECT 1 FROM (SELECT {set_b}) hop, {name} t WHERE {b_as_text}")),
        hop("injected_hop_lateral", table, vec![], format!("SELECT 1 FROM {name} t, LATERAL (SELECT {set_b}) hop WHERE {b_as_text}")),
        hop("injected_hop_cte", table, vec![], format!("WITH hop AS MATERIALIZED (SELECT {set_b}) SELECT 1 FROM hop, {name} t WHERE {b_as_text}")),
        // A token made up without the key: nothing in either mode.
        Plan::new("forged_token_hop", Family::OrgHopping, THREAT, table, read_b)
            .setup(vec![format!(
                "SELECT set_config('tenant.org_token', 'v1.{}.9999999999.' || pg_backend_pid() || '.k1.{}', true)",
                t.b,
                "0".repeat(64)
            )])
            .accept(vec![Accept::Rows(0)], "0 rows: a token needs the key")
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
