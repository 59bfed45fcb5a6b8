//! Writes from org A at B: an insert with B's org id, an update moving A's row to B,
//! updates and deletes of B's rows, `INSERT .. SELECT` both ways, `UPDATE .. FROM`, a writable
//! CTE, `MERGE` and an upsert onto B's key (docs/threat-model.md #24). Each write is followed by a check
//! that B's rows of the table are unchanged.

use std::collections::BTreeMap;

use crate::attack::{Accept, Family, Plan, Target};
use crate::seed::insert_sql;
use crate::sql::ident;

const THREAT: &str = "#24";
const REFUSED: &str = "refused: 42501 (new row violates row-level security policy)";

/// The write attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, org, b) = (t.name(), t.org(), Target::lit(t.b));
    let m = ident(t.table.mutable_column());
    let table = t.table.name.as_str();
    let mut out = Vec::new();
    if let Some((names, exprs)) = t.fresh(t.b, &BTreeMap::new()) {
        out.push(
            Plan::new(
                "insert_into_b",
                Family::Write,
                THREAT,
                table,
                insert_sql(table, &names, &exprs),
            )
            .no_rows()
            .accept(vec![Accept::Sqlstate("42501")], REFUSED)
            .check_b(),
        );
    }
    if let Some(key) = t.a_key(None) {
        out.push(
            Plan::new(
                "update_moving_row_to_b",
                Family::Write,
                THREAT,
                table,
                format!("UPDATE {name} SET {org} = {b} WHERE {key}"),
            )
            .no_rows()
            .accept(vec![Accept::Sqlstate("42501")], REFUSED)
            .check_b(),
        );
    }
    out.push(
        Plan::new(
            "update_b_rows",
            Family::Write,
            THREAT,
            table,
            format!("UPDATE {name} SET {m} = {m} WHERE {org} = {b}"),
        )
        .no_rows()
        .accept(vec![Accept::Rows(0)], "0 rows affected")
        .check_b(),
    );
    out.push(
        Plan::new(
            "delete_b_rows",
            Family::Write,
            THREAT,
            table,
            format!("DELETE FROM {name} WHERE {org} = {b}"),
        )
        .no_rows()
        .accept(vec![Accept::Rows(0)], "0 rows affected")
        .check_b(),
    );
    // Copy A's row into B: the columns the seed wrote, the org column replaced.
    if let (Some((names, _)), Some(key)) = (t.fresh(t.a, &BTreeMap::new()), t.a_key(None)) {
        let select: Vec<String> = names
            .iter()
            .map(|n| if *n == org { b.clone() } else { n.clone() })
            .collect();
        out.push(
            Plan::new(
                "insert_select_into_b",
                Family::Write,
                THREAT,
                table,
                format!(
                    "INSERT INTO {name} ({}) SELECT {} FROM {name} WHERE {key}",
                    names.join(", "),
                    select.join(", ")
                ),
            )
            .no_rows()
            .accept(vec![Accept::Sqlstate("42501")], REFUSED)
            .check_b(),
        );
        out.push(
            Plan::new(
                "insert_select_from_b",
                Family::Write,
                THREAT,
                table,
                format!(
                    "INSERT INTO {name} ({0}) SELECT {0} FROM {name} WHERE {org} = {b}",
                    names.join(", ")
                ),
            )
            .no_rows()
            .accept(
                vec![Accept::Rows(0)],
                "0 rows inserted (B's rows are invisible)",
            )
            .check_b(),
        );
    }
    out.push(
        Plan::new(
            "update_from",
            Family::Write,
            THREAT,
            table,
            format!("UPDATE {name} t SET {m} = s.{m} FROM {name} s WHERE s.{org} = {b} AND t.{org} = s.{org}"),
        )
        .no_rows()
        .accept(vec![Accept::Rows(0)], "0 rows affected")
        .check_b(),
    );
    out.push(
        Plan::new(
            "writable_cte",
            Family::Write,
            THREAT,
            table,
            format!("WITH w AS (UPDATE {name} SET {m} = {m} WHERE {org} = {b} RETURNING 1) SELECT * FROM w"),
        )
        // A data-modifying WITH must be at the top level: not wrapped to count rows.
        .no_rows()
        .check_b(),
    );
    let key = t.key();
    if t.server_version >= 150_000
        && !key.is_empty()
        && let Some(b_key) = t.b_key(Some("t"))
    {
        out.push(
                Plan::new(
                    "merge_update",
                    Family::Write,
                    THREAT,
                    table,
                    format!("MERGE INTO {name} t USING (SELECT 1) s ON {b_key} WHEN MATCHED THEN UPDATE SET {m} = t.{m}"),
                )
                .no_rows()
                .accept(vec![Accept::Rows(0)], "0 rows merged")
                .check_b(),
            );
        out.push(
            Plan::new(
                "merge_delete",
                Family::Write,
                THREAT,
                table,
                format!(
                    "MERGE INTO {name} t USING (SELECT 1) s ON {b_key} WHEN MATCHED THEN DELETE"
                ),
            )
            .no_rows()
            .accept(vec![Accept::Rows(0)], "0 rows merged")
            .check_b(),
        );
    }
    // An upsert of A's row onto B's key: a new row of A, or a refusal; never B's row updated.
    let overrides: BTreeMap<String, String> = key
        .iter()
        .filter(|c| **c != t.table.org_column)
        .filter_map(|c| Some(((*c).to_owned(), t.b_value(c)?)))
        .collect();
    if !key.is_empty()
        && !overrides.is_empty()
        && let Some((names, exprs)) = t.fresh(t.a, &overrides)
    {
        let target: Vec<String> = key.iter().map(|c| ident(c)).collect();
        out.push(
            Plan::new(
                "upsert_onto_b_key",
                Family::Write,
                THREAT,
                table,
                format!(
                    "{} ON CONFLICT ({}) DO UPDATE SET {m} = EXCLUDED.{m}",
                    insert_sql(table, &names, &exprs),
                    target.join(", ")
                ),
            )
            .no_rows()
            .accept(
                vec![Accept::Rows(1), Accept::Sqlstate("42501")],
                "a new row of A (1 row), or refused: 42501; B's row unchanged",
            )
            .check_b(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;

    #[test]
    fn writes_aim_at_b_and_check_b_afterwards() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        let names: Vec<&str> = plans.iter().map(|p| p.attack).collect();
        assert_eq!(
            names,
            [
                "insert_into_b",
                "update_moving_row_to_b",
                "update_b_rows",
                "delete_b_rows",
                "insert_select_into_b",
                "insert_select_from_b",
                "update_from",
                "writable_cte",
                "merge_update",
                "merge_delete",
                "upsert_onto_b_key"
            ]
        );
        assert!(plans.iter().all(|p| p.check_b));
        // The insert into B takes B's customer (same org), so only RLS can refuse it.
        assert!(plans[0].sql.contains("'c-b'::uuid"), "{}", plans[0].sql);
        assert!(
            plans[10]
                .sql
                .contains("'22222222-2222-2222-2222-222222222222'::uuid"),
            "{}",
            plans[10].sql
        );
        assert!(
            plans[10].sql.contains("ON CONFLICT (\"id\")"),
            "{}",
            plans[10].sql
        );
    }
}
