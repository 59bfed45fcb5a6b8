//! Privilege tricks from the application role (docs/threat-model.md #2, #3, #7, #25): being or becoming
//! a role that bypasses RLS, becoming the table's owner, `SET row_security = off`, disabling
//! or un-forcing RLS, dropping or adding a policy, and `TRUNCATE` (which ignores RLS). Each
//! must be refused with 42501, or find nothing to use.

use crate::attack::{Accept, Family, Plan, Target};
use crate::sql::ident;

const DENIED: &str = "refused: 42501 (permission denied / must be owner)";

fn denied(attack: &'static str, threat: &'static str, t: &Target<'_>, sql: String) -> Plan {
    Plan::new(attack, Family::Privilege, threat, &t.table.name, sql)
        .no_rows()
        .accept(vec![Accept::Sqlstate("42501")], DENIED)
}

/// The privilege attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let name = t.name();
    let mut out = vec![
        denied(
            "set_role_owner",
            "#25",
            t,
            format!("SET ROLE {}", ident(&t.table.owner)),
        ),
        Plan::new(
            "row_security_off",
            Family::Privilege,
            "#3",
            &t.table.name,
            format!("SELECT 1 FROM {name}"),
        )
        .setup(vec!["SET LOCAL row_security = off".into()])
        .accept(
            vec![Accept::Sqlstate("42501")],
            "refused: 42501 (query would be affected by row-level security policy)",
        ),
        denied(
            "disable_rls",
            "#25",
            t,
            format!("ALTER TABLE {name} DISABLE ROW LEVEL SECURITY"),
        ),
        denied(
            "no_force_rls",
            "#1",
            t,
            format!("ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY"),
        ),
        denied(
            "create_open_policy",
            "#26",
            t,
            format!(
                "CREATE POLICY tenant_probe_open ON {name} AS PERMISSIVE USING (true) WITH CHECK (true)"
            ),
        ),
        denied("truncate", "#7", t, format!("TRUNCATE {name}")).check_b(),
    ];
    if let Some(policy) = t.table.policies.first() {
        out.push(denied(
            "drop_policy",
            "#25",
            t,
            format!("DROP POLICY {} ON {name}", ident(policy)),
        ));
    }
    out
}

/// Database-wide: the role itself, and the roles it can become.
pub fn database() -> Vec<Plan> {
    vec![
        Plan::new(
            "role_bypasses_rls",
            Family::Privilege,
            "#2",
            "",
            "SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)"
                .into(),
        )
        .accept(
            vec![Accept::Rows(0)],
            "0 rows (neither SUPERUSER nor BYPASSRLS)",
        ),
        Plan::new(
            "member_of_a_bypassing_role",
            Family::Privilege,
            "#2",
            "",
            "SELECT 1 FROM pg_roles r WHERE r.rolname <> current_user \
             AND pg_has_role(current_user, r.oid, 'MEMBER') AND (r.rolsuper OR r.rolbypassrls)"
                .into(),
        )
        .accept(
            vec![Accept::Rows(0)],
            "0 rows (no SUPERUSER or BYPASSRLS role to become)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;

    #[test]
    fn every_trick_expects_42501() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        assert_eq!(plans.len(), 7);
        assert!(
            plans
                .iter()
                .all(|p| p.accept == [Accept::Sqlstate("42501")])
        );
        assert_eq!(plans[0].sql, "SET ROLE \"tenant_owner\"");
        assert_eq!(
            plans[6].sql,
            "DROP POLICY \"tenant_isolation\" ON \"deals\""
        );
    }
}
