//! Reads of B's rows from org A: by key, full scan, count, joins (with itself and with a
//! parent), a subquery, and `RETURNING` of writes aimed at B. RLS must show none of B's rows.

use crate::attack::{Accept, Family, Plan, Target};
use crate::sql::ident;

const THREAT: &str = "RLS (reads)";

/// The read attacks on `t`.
pub fn plans(t: &Target<'_>) -> Vec<Plan> {
    let (name, org, a, b) = (t.name(), t.org(), Target::lit(t.a), Target::lit(t.b));
    let m = ident(t.table.mutable_column());
    let mut out = Vec::new();
    if let Some(key) = t.b_key(None) {
        out.push(Plan::new(
            "read_by_key",
            Family::Read,
            THREAT,
            &t.table.name,
            format!("SELECT 1 FROM {name} WHERE {key}"),
        ));
    }
    out.push(Plan::new(
        "full_scan",
        Family::Read,
        THREAT,
        &t.table.name,
        format!("SELECT 1 FROM {name} WHERE {org} IS DISTINCT FROM {a}"),
    ));
    // A sees exactly its own seeded row.
    out.push(
        Plan::new(
            "count",
            Family::Read,
            THREAT,
            &t.table.name,
            format!("SELECT 1 FROM {name}"),
        )
        .accept(vec![Accept::Rows(1)], "1 row (A's own)"),
    );
    out.push(Plan::new(
        "self_join",
        Family::Read,
        THREAT,
        &t.table.name,
        format!(
            "SELECT 1 FROM {name} x JOIN {name} y ON true WHERE x.{org} = {b} OR y.{org} = {b}"
        ),
    ));
    if let Some(k) = t.table.foreign_keys().find(|k| {
        let parent = crate::seed::unqualified(&k.parent);
        parent != t.table.name
            && t.b_rows.contains_key(&parent)
            && k.column_list() != [t.table.org_column.as_str()]
    }) {
        let on: Vec<String> = k
            .column_list()
            .iter()
            .zip(k.parent_column_list())
            .map(|(c, p)| format!("c.{} = p.{}", ident(c), ident(p)))
            .collect();
        out.push(Plan::new(
            "parent_join",
            Family::Read,
            THREAT,
            &t.table.name,
            format!(
                "SELECT 1 FROM {name} c JOIN {} p ON {} WHERE c.{org} = {b}",
                k.parent,
                on.join(" AND ")
            ),
        ));
    }
    out.push(Plan::new(
        "subquery",
        Family::Read,
        THREAT,
        &t.table.name,
        format!("SELECT 1 WHERE EXISTS (SELECT 1 FROM {name} WHERE {org} = {b})"),
    ));
    out.push(
        Plan::new(
            "update_returning",
            Family::Read,
            THREAT,
            &t.table.name,
            format!("UPDATE {name} SET {m} = {m} WHERE {org} = {b} RETURNING 1"),
        )
        .check_b(),
    );
    out.push(
        Plan::new(
            "delete_returning",
            Family::Read,
            THREAT,
            &t.table.name,
            format!("DELETE FROM {name} WHERE {org} = {b} RETURNING 1"),
        )
        .check_b(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::fixture;

    #[test]
    fn every_read_looks_for_b_and_expects_nothing_of_it() {
        let parts = fixture::parts();
        let plans = plans(&parts.target());
        let names: Vec<&str> = plans.iter().map(|p| p.attack).collect();
        assert_eq!(
            names,
            [
                "read_by_key",
                "full_scan",
                "count",
                "self_join",
                "parent_join",
                "subquery",
                "update_returning",
                "delete_returning"
            ]
        );
        let by_key = &plans[0];
        assert!(
            by_key
                .sql
                .contains("\"id\" = '22222222-2222-2222-2222-222222222222'::uuid"),
            "{}",
            by_key.sql
        );
        assert_eq!(by_key.accept, [Accept::Rows(0)]);
        assert!(
            plans[4].sql.contains(
                "JOIN customers p ON c.\"org_id\" = p.\"org_id\" AND c.\"customer_id\" = p.\"id\""
            ),
            "{}",
            plans[4].sql
        );
        assert!(plans[6].check_b && plans[7].check_b);
    }
}
