//! How a shard on a worker (or a worker's copy of a table) differs from the table on the
//! coordinator: owner, row-level security flags, the application role's privileges, and the
//! policies, compared one by one and judged together by what rows each role may read and
//! write. Citus 13.2 writes every policy it puts on a shard as permissive: a restrictive
//! policy that came back permissive is a difference only where it changes a role's access.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};

/// A shard (or the table's own copy) on a worker, and its protection.
#[derive(Debug, Clone, QueryableByName)]
pub(super) struct Placed {
    /// The registered table it belongs to.
    #[diesel(sql_type = Text)]
    pub(super) table_name: String,
    /// The relation on the worker (empty when the shard is not there).
    #[diesel(sql_type = Text)]
    pub(super) relation: String,
    #[diesel(sql_type = Text)]
    pub(super) owner: String,
    #[diesel(sql_type = Bool)]
    pub(super) rls: bool,
    #[diesel(sql_type = Bool)]
    pub(super) forced: bool,
    #[diesel(sql_type = Text)]
    pub(super) app_privileges: String,
    /// Its policies, one per line: `name|permissive|cmd|roles|using|check`.
    #[diesel(sql_type = Text)]
    pub(super) policies: String,
}

/// How `placed` differs from `table`, the coordinator's.
pub(super) fn differences(table: &Placed, placed: &Placed) -> Vec<String> {
    let mut out = Vec::new();
    if placed.owner != table.owner {
        out.push(format!("owner {} (not {})", placed.owner, table.owner));
    }
    if placed.rls != table.rls {
        out.push(format!("row-level security enabled: {}", placed.rls));
    }
    if placed.forced != table.forced {
        out.push(format!("row-level security forced: {}", placed.forced));
    }
    if placed.app_privileges != table.app_privileges {
        out.push(format!(
            "application role's privileges [{}] (not [{}])",
            placed.app_privileges, table.app_privileges
        ));
    }
    let (want, have) = (policies(&table.policies), policies(&placed.policies));
    for w in &want {
        match have.iter().find(|h| h.name == w.name) {
            None => out.push(format!("policy {} missing", w.name)),
            // Citus 13.2 recreates a restrictive policy on its shards as a permissive one:
            // the same policy otherwise, judged by what it lets each role do (below).
            Some(h) if h == w || (!w.permissive && h.permissive && h.same_but_kind(w)) => {}
            Some(_) => out.push(format!("policy {} changed", w.name)),
        }
    }
    for h in have
        .iter()
        .filter(|h| !want.iter().any(|w| w.name == h.name))
    {
        out.push(format!("policy {} that the table does not have", h.name));
    }
    // What each role may do, by the policies together: a restrictive policy turned permissive
    // is harmless only where it lets no role do more (or less) than before.
    let mut roles: Vec<&str> = want
        .iter()
        .chain(&have)
        .flat_map(|p| p.roles.iter().map(String::as_str))
        .filter(|r| *r != "public")
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles.push("any other role");
    for role in roles {
        let mut changed = Vec::new();
        for (cmd, word) in [
            ('r', "SELECT"),
            ('a', "INSERT"),
            ('w', "UPDATE"),
            ('d', "DELETE"),
        ] {
            let (c, w) = (rule_for(&want, role, cmd), rule_for(&have, role, cmd));
            if c != w {
                changed.push(format!(
                    "{word} rows pass when {w} (on the coordinator: {c})"
                ));
            }
        }
        if !changed.is_empty() {
            out.push(format!("for {role}, {}", changed.join(", ")));
        }
    }
    out
}

/// One policy, as `POLICY_LINES` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pol {
    name: String,
    permissive: bool,
    cmd: char,
    roles: Vec<String>,
    using: String,
    check: String,
}

impl Pol {
    fn same_but_kind(&self, other: &Pol) -> bool {
        (&self.name, self.cmd, &self.roles, &self.using, &self.check)
            == (
                &other.name,
                other.cmd,
                &other.roles,
                &other.using,
                &other.check,
            )
    }

    fn applies(&self, role: &str, cmd: char) -> bool {
        (self.cmd == '*' || self.cmd == cmd)
            && self.roles.iter().any(|r| r == "public" || r == role)
    }

    /// The condition rows meet for `cmd`: WITH CHECK for an insert (USING where it has
    /// none), USING otherwise.
    fn condition(&self, cmd: char) -> &str {
        if cmd == 'a' && !self.check.is_empty() {
            &self.check
        } else {
            &self.using
        }
    }
}

fn policies(lines: &str) -> Vec<Pol> {
    lines
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(6, '|').collect();
            let [name, permissive, cmd, roles, using, check] = f.as_slice() else {
                return None;
            };
            Some(Pol {
                name: (*name).to_owned(),
                permissive: *permissive == "true",
                cmd: cmd.chars().next().unwrap_or('*'),
                roles: roles.split(',').map(str::to_owned).collect(),
                using: (*using).to_owned(),
                check: (*check).to_owned(),
            })
        })
        .collect()
}

/// What rows of command `cmd` must meet for `role` under `policies`: every restrictive
/// condition and one of the permissive ones, written so that equal meanings compare equal
/// (a restrictive condition that equals the only permissive one adds nothing).
fn rule_for(policies: &[Pol], role: &str, cmd: char) -> String {
    let pick = |permissive: bool| -> Vec<&str> {
        let mut v: Vec<&str> = policies
            .iter()
            .filter(|p| p.permissive == permissive && p.applies(role, cmd))
            .map(|p| p.condition(cmd))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (all, any) = (pick(false), pick(true));
    match any.as_slice() {
        [] => "no row".into(),
        [one] if all.iter().all(|a| a == one) => format!("[{one}]"),
        _ if all.is_empty() => format!("any of [{}]", any.join("] or [")),
        _ => format!(
            "all of [{}] and any of [{}]",
            all.join("] and ["),
            any.join("] or [")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(policies: &str) -> Placed {
        Placed {
            table_name: "deals".into(),
            relation: "deals_102008".into(),
            owner: "tenant_owner".into(),
            rls: true,
            forced: true,
            app_privileges: "SELECT,INSERT,UPDATE,DELETE".into(),
            policies: policies.into(),
        }
    }
    const APP: &str = "tenant_isolation|false|*|tenant_app|org = s|org = s\n\
                       tenant_app_access|true|*|tenant_app|org = s|org = s\n\
                       tenant_operator_read|true|r|tenant_operator|org = g|";

    #[test]
    fn a_shard_differs_by_owner_flags_privileges_and_each_policy() {
        let table = placed(APP);
        assert!(differences(&table, &placed(&table.policies)).is_empty());
        let mut shard = placed(
            "tenant_app_access|true|*|tenant_app|org = s OR true|org = s\n\
             tenant_operator_read|true|r|tenant_operator|org = g|\n\
             extra|true|*|public|true|true",
        );
        shard.forced = false;
        shard.app_privileges.push_str(",TRUNCATE");
        let d = differences(&table, &shard);
        assert_eq!(
            d[..5],
            [
                "row-level security forced: false",
                "application role's privileges [SELECT,INSERT,UPDATE,DELETE,TRUNCATE] (not [SELECT,INSERT,UPDATE,DELETE])",
                "policy tenant_isolation missing",
                "policy tenant_app_access changed",
                "policy extra that the table does not have",
            ]
        );
        assert!(d[5].starts_with("for tenant_app, SELECT rows pass when any of [org = s OR true] or [true] (on the coordinator: [org = s])"), "{}", d[5]);
    }

    /// What Citus 13.2 does to every shard: the restrictive policy comes back permissive.
    #[test]
    fn a_restrictive_policy_turned_permissive_is_reported_only_where_it_widens_a_role() {
        let degraded = APP.replacen("tenant_isolation|false", "tenant_isolation|true", 1);
        assert!(differences(&placed(APP), &placed(&degraded)).is_empty());
        // The same policy bound to every role: the operator may now read the org it sets.
        let public = APP.replacen(
            "|tenant_app|org = s|org = s\n",
            "|public|org = s|org = s\n",
            1,
        );
        let d = differences(
            &placed(&public),
            &placed(&public.replacen("tenant_isolation|false", "tenant_isolation|true", 1)),
        );
        assert_eq!(
            d,
            [
                "for tenant_operator, SELECT rows pass when any of [org = g] or [org = s] (on the coordinator: all of [org = s] and any of [org = g]), INSERT rows pass when [org = s] (on the coordinator: no row), UPDATE rows pass when [org = s] (on the coordinator: no row), DELETE rows pass when [org = s] (on the coordinator: no row)",
                "for any other role, SELECT rows pass when [org = s] (on the coordinator: no row), INSERT rows pass when [org = s] (on the coordinator: no row), UPDATE rows pass when [org = s] (on the coordinator: no row), DELETE rows pass when [org = s] (on the coordinator: no row)",
            ]
        );
    }
}
