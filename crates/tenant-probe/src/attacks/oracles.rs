//! What constraint errors tell A about B (docs/threat-model.md #8, #9). A foreign key checks its parent
//! without RLS: a reference from A's row to B's parent row must fail as if the parent did not
//! exist (23503), which a composite key with the org column guarantees. A unique key checks
//! every org: A inserting B's values must not collide (23505 would prove B has them), which a
//! key that includes the org column guarantees.

use std::collections::BTreeMap;

use crate::attack::{Accept, Family, Plan, Target};
use crate::seed::{insert_sql, unqualified};

/// The oracle attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let table = t.table.name.as_str();
    let org_col = t.table.org_column.as_str();
    let mut out = Vec::new();
    for k in t.table.foreign_keys() {
        let parent = unqualified(&k.parent);
        let Some(b_parent) = t.b_rows.get(&parent) else {
            continue;
        };
        let cols = k.column_list();
        // A key on the org column alone references the org itself, not a row of B's.
        if parent == t.table.name || cols.iter().all(|c| *c == org_col) {
            continue;
        }
        let overrides: BTreeMap<String, String> = cols
            .iter()
            .zip(k.parent_column_list())
            .filter(|(c, _)| **c != org_col)
            .filter_map(|(c, p)| {
                let ty = &t.table.column(c)?.ty;
                let v = b_parent.get(p).cloned().flatten();
                Some(((*c).to_owned(), crate::sql::literal(v.as_deref(), ty)))
            })
            .collect();
        if let Some((names, exprs)) = t.fresh(t.a, &overrides) {
            let mut plan = Plan::new(
                "foreign_key_to_b",
                Family::Oracle,
                "#8",
                table,
                insert_sql(table, &names, &exprs),
            )
            .no_rows()
            .accept(
                vec![Accept::Sqlstate("23503")],
                "refused: 23503 (B's parent row does not exist for A)",
            );
            plan.attack = "foreign_key_to_b";
            plan.expected = format!("{} [{}]", plan.expected, k.name);
            out.push(plan);
        }
    }
    for k in t
        .table
        .constraints
        .iter()
        .filter(|k| matches!(k.kind.as_str(), "p" | "u"))
    {
        let cols = k.column_list();
        let own: Vec<&str> = cols.iter().copied().filter(|c| *c != org_col).collect();
        // Another unique key within these columns would collide first and be the one judged:
        // (org_id, id) is tried through the key on id.
        let dominated = t.table.constraints.iter().any(|o| {
            o.name != k.name
                && matches!(o.kind.as_str(), "p" | "u")
                && o.column_list().iter().all(|c| own.contains(c))
        });
        if dominated {
            continue;
        }
        let overrides: BTreeMap<String, String> = cols
            .iter()
            .filter(|c| **c != org_col)
            .filter_map(|c| Some(((*c).to_owned(), t.b_value(c)?)))
            .collect();
        if overrides.is_empty() {
            continue;
        }
        // Any key without the org column is an existence oracle, a primary key on one random
        // uuid included: ids leak (links, logs, support tickets), and confirming one is enough.
        let Some((names, exprs)) = t.fresh(t.a, &overrides) else {
            continue;
        };
        let insert = insert_sql(table, &names, &exprs);
        let target: Vec<String> = cols.iter().map(|c| crate::sql::ident(c)).collect();
        let set = names
            .iter()
            .find(|n| !target.contains(n) && n.as_str() != crate::sql::ident(org_col))
            .or_else(|| names.first());
        let mut attempts = vec![
            (
                "unique_value_of_b",
                insert.clone(),
                Some("23505"),
                "1 row inserted (the key includes the org column)",
            ),
            (
                "on_conflict_nothing_with_b_key",
                format!("{insert} ON CONFLICT DO NOTHING"),
                None,
                "1 row inserted (nothing of another org conflicts)",
            ),
        ];
        if let Some(set) = set {
            attempts.push((
                "on_conflict_update_with_b_key",
                format!(
                    "{insert} ON CONFLICT ({}) DO UPDATE SET {set} = EXCLUDED.{set}",
                    target.join(", ")
                ),
                Some("42501"),
                "1 row inserted (nothing of another org conflicts)",
            ));
        }
        // B's value in a column that a foreign key also covers (with the org column, as in
        // (org_id, project_id) -> projects) names a parent A does not have: the row that got
        // past the unique key is then refused by the foreign key (23503). PostgreSQL checks a
        // unique key as it inserts and a foreign key at the end of the statement, so 23503
        // says the unique key let the row through: nothing of B collided. Not for a
        // DEFERRABLE key, checked at the end too.
        let foreign_key_may_refuse = !k.definition.contains("DEFERRABLE")
            && t.table
                .foreign_keys()
                .any(|f| f.column_list().iter().any(|c| overrides.contains_key(*c)));
        for (attack, sql, refusal, expected) in attempts {
            let (accept, expected) = if foreign_key_may_refuse {
                (
                    vec![Accept::Rows(1), Accept::Sqlstate("23503")],
                    format!(
                        "{expected}, or refused by a foreign key after the unique key let it through (23503)"
                    ),
                )
            } else {
                (vec![Accept::Rows(1)], expected.to_owned())
            };
            let mut plan = Plan::new(attack, Family::Oracle, "#9", table, sql)
                .no_rows()
                .accept(accept, &expected)
                .check_b();
            if let Some(sqlstate) = refusal {
                plan = plan.fails_with(sqlstate);
            }
            plan.expected = format!("{} [{}]", plan.expected, k.name);
            out.push(plan);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;
    use crate::report::Verdict;

    #[test]
    fn the_composite_key_is_misused_and_the_uuid_key_is_an_oracle_three_ways() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        let names: Vec<(&str, Verdict)> = plans.iter().map(|p| (p.attack, p.on_fail)).collect();
        // The org-only key to orgs is skipped; (org_id, id) is judged through the key on id.
        assert_eq!(
            names,
            [
                ("foreign_key_to_b", Verdict::Leak),
                ("unique_value_of_b", Verdict::Leak),
                ("on_conflict_nothing_with_b_key", Verdict::Leak),
                ("on_conflict_update_with_b_key", Verdict::Leak),
            ]
        );
        assert!(
            plans[2].sql.ends_with("ON CONFLICT DO NOTHING"),
            "{}",
            plans[2].sql
        );
        assert!(
            plans[3].sql.contains("ON CONFLICT (\"id\") DO UPDATE SET"),
            "{}",
            plans[3].sql
        );
        assert!(plans[0].sql.contains("'c-b'::uuid"), "{}", plans[0].sql);
    }
}
