//! Org hopping inside A's transaction (docs/threat-model.md #5): `set_config`, `SET LOCAL`, the
//! one-statement injection that sets B's org in a subquery of the same statement, the token
//! emptied beside the setting, and a forged token. In the default signed mode every one must
//! read nothing (the policies verify a token only the service can sign), and one that reads B's
//! row is a leak. In the opt-in plain mode, which trusts every statement, the session may
//! change its own setting, so the setting hops read B's row: they are reported as findings
//! (what that mode gives up, by name), not leaks.

use crate::attack::{Accept, Family, Plan, Target};
use crate::report::Verdict;

const THREAT: &str = "#5";
const EXPECTED: &str = "0 rows (the signed context: the policies verify a token only the service can sign); \
     the opt-in plain mode trusts every statement, so the session can change its org";

/// A hop that reads B's row: in the signed mode a leak if it gets it, in the opt-in plain mode
/// a finding (what that mode gives up by name).
fn hop(t: &Target<'_>, attack: &'static str, setup: Vec<String>, sql: String) -> Plan {
    Plan::new(attack, Family::OrgHopping, THREAT, &t.table.name, sql)
        .setup(setup)
        .accept(vec![Accept::Rows(0)], EXPECTED)
        .on_fail(if t.signed_kid.is_some() {
            Verdict::Leak
        } else {
            Verdict::Finding
        })
}

/// The hopping attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, org, b) = (t.name(), t.org(), Target::lit(t.b));
    let read_b = format!("SELECT 1 FROM {name} WHERE {org} = {b}");
    let set_b = format!("set_config('tenant.org_id', '{}', true)", t.b);
    // The org is compared as text in the one-statement forms, so the planner cannot turn it
    // into a filter on the policy's value that runs before the hop.
    let b_as_text = format!("t.{org}::text = '{}'", t.b);
    let kid = t.signed_kid.unwrap_or("k1");
    vec![
        hop(t, "set_config_hop", vec![format!("SELECT {set_b}")], read_b.clone()),
        hop(t, "set_local_hop", vec![format!("SET LOCAL tenant.org_id = '{}'", t.b)], read_b.clone()),
        hop(t, "injected_hop", vec![], format!("SELECT 1 FROM (SELECT {set_b}) hop, {name} t WHERE {b_as_text}")),
        hop(t, "injected_hop_lateral", vec![], format!("SELECT 1 FROM {name} t, LATERAL (SELECT {set_b}) hop WHERE {b_as_text}")),
        hop(t, "injected_hop_cte", vec![], format!("WITH hop AS MATERIALIZED (SELECT {set_b}) SELECT 1 FROM hop, {name} t WHERE {b_as_text}")),
        // The token emptied and B in the setting: what a policy that falls back to the setting
        // when no token verifies would take.
        hop(
            t,
            "emptied_token_hop",
            vec![format!("SELECT set_config('tenant.org_token', '', true), {set_b}")],
            read_b.clone(),
        ),
        // A token made up without the key, for the key the service signs with: nothing in
        // either mode.
        Plan::new("forged_token_hop", Family::OrgHopping, THREAT, &t.table.name, read_b)
            .setup(vec![format!(
                "SELECT set_config('tenant.org_token', 'v1.{}.9999999999.' || pg_backend_pid() || '.{kid}.{}', true)",
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
    fn a_hop_is_a_finding_in_the_plain_mode_and_a_leak_in_the_signed_mode() {
        let parts = fixture::parts();
        let plain = plans(&parts.target());
        assert_eq!(plain.len(), 7);
        assert!(plain[..6].iter().all(|p| p.on_fail == Verdict::Finding));
        assert_eq!(plain[6].on_fail, Verdict::Leak);
        assert!(
            plain[2]
                .sql
                .starts_with("SELECT 1 FROM (SELECT set_config("),
            "{}",
            plain[2].sql
        );
        let signed = plans(&Target {
            signed_kid: Some("k20261205"),
            ..parts.target()
        });
        assert!(signed.iter().all(|p| p.on_fail == Verdict::Leak));
        assert!(
            signed[6].setup[0].contains(".k20261205."),
            "the forged token names the service's key: {}",
            signed[6].setup[0]
        );
    }
}
