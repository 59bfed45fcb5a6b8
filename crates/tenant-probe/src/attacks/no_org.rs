//! Reads and writes with no org set (docs/threat-model.md #4): with the setting emptied inside the
//! attacker's transaction (both orgs' rows present), on a fresh connection that never set
//! one, and on a connection after an earlier scoped transaction ended (the setting is then
//! `''`, not NULL). Each must see no row and write none.

use std::collections::BTreeMap;

use crate::attack::{Accept, Family, Plan, Session, Target};
use crate::seed::insert_sql;

const THREAT: &str = "#4";

/// The no-org attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, table) = (t.name(), t.table.name.as_str());
    // Both the setting and, for the signed mode, the token; with SET LOCAL too where the
    // service sets the org that way (Citus's workers learn the org only from SET LOCAL, in a
    // DO block so that they get that statement alone).
    let mut empty = vec![
        "SELECT set_config('tenant.org_id', '', true), set_config('tenant.org_token', '', true)"
            .to_owned(),
    ];
    if t.set_local {
        empty.push("DO $$BEGIN SET LOCAL tenant.org_id = ''; END$$".to_owned());
    }
    let none = vec![Accept::Rows(0), Accept::Sqlstate("22P02")];
    let mut out = vec![
        Plan::new(
            "empty_org_read",
            Family::NoOrg,
            THREAT,
            table,
            format!("SELECT 1 FROM {name}"),
        )
        .setup(empty.clone())
        .accept(none.clone(), "0 rows, or refused: 22P02"),
        Plan::new(
            "fresh_connection_read",
            Family::NoOrg,
            THREAT,
            table,
            format!("SELECT 1 FROM {name}"),
        )
        .accept(none.clone(), "0 rows, or refused: 22P02")
        .session(Session::Fresh),
        Plan::new(
            "after_scoped_read",
            Family::NoOrg,
            THREAT,
            table,
            format!("SELECT 1 FROM {name}"),
        )
        .accept(none, "0 rows, or refused: 22P02")
        .session(Session::AfterScoped),
    ];
    if let Some((names, exprs)) = t.fresh(t.a, &BTreeMap::new()) {
        let insert = insert_sql(table, &names, &exprs);
        let refused = vec![Accept::Sqlstate("42501"), Accept::Sqlstate("22P02")];
        let words = "refused: 42501 or 22P02";
        out.push(
            Plan::new(
                "empty_org_write",
                Family::NoOrg,
                THREAT,
                table,
                insert.clone(),
            )
            .setup(empty)
            .no_rows()
            .accept(refused.clone(), words),
        );
        out.push(
            Plan::new(
                "fresh_connection_write",
                Family::NoOrg,
                THREAT,
                table,
                insert.clone(),
            )
            .no_rows()
            .accept(refused.clone(), words)
            .session(Session::Fresh),
        );
        out.push(
            Plan::new("after_scoped_write", Family::NoOrg, THREAT, table, insert)
                .no_rows()
                .accept(refused, words)
                .session(Session::AfterScoped),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;

    #[test]
    fn no_org_attacks_run_in_all_three_states() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        let sessions: Vec<Session> = plans.iter().map(|p| p.session).collect();
        assert_eq!(
            sessions,
            [
                Session::Main,
                Session::Fresh,
                Session::AfterScoped,
                Session::Main,
                Session::Fresh,
                Session::AfterScoped
            ]
        );
        assert_eq!(
            plans[0].setup,
            [
                "SELECT set_config('tenant.org_id', '', true), set_config('tenant.org_token', '', true)"
            ]
        );
    }
}
