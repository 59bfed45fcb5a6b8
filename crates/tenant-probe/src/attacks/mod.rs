//! The attacks, one file per family. Each family turns a [`Target`] (a table, both orgs and
//! their seeded rows) into the [`Plan`]s it tries; an attack that does not apply to a table
//! (no foreign key to misuse, no key to look up) is not planned for it.

pub mod citus;
pub mod hopping;
pub mod no_org;
pub mod oracles;
pub mod pool;
pub mod privileges;
pub mod reads;
pub mod session_state;
pub mod side_channels;
pub mod views;
pub mod writes;

use crate::attack::{Plan, Target};

/// Every per-table attack on `target`.
pub fn on_table(target: &Target<'_>) -> Vec<Plan> {
    let mut plans = Vec::new();
    plans.extend(reads::plans(target));
    plans.extend(writes::plans(target));
    plans.extend(no_org::plans(target));
    plans.extend(hopping::plans(target));
    plans.extend(privileges::plans(target));
    plans.extend(oracles::plans(target));
    plans.extend(side_channels::per_table(target));
    plans
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A target over the shape of the example's `deals` table, for the families' unit tests.

    use std::collections::HashMap;

    use uuid::Uuid;

    use crate::attack::Target;
    use crate::schema::{Column, Constraint, TableInfo};
    use crate::seed::Row;

    fn column(name: &str, ty: &str, not_null: bool, has_default: bool) -> Column {
        Column {
            name: name.into(),
            ty: ty.into(),
            base: ty.into(),
            not_null,
            has_default,
            generated: false,
            enum_label: None,
            max_len: None,
            sequence_default: false,
        }
    }

    fn constraint(
        name: &str,
        kind: &str,
        columns: &str,
        parent: &str,
        parent_columns: &str,
    ) -> Constraint {
        Constraint {
            name: name.into(),
            kind: kind.into(),
            columns: columns.into(),
            parent: parent.into(),
            parent_columns: parent_columns.into(),
            definition: String::new(),
        }
    }

    /// The pieces a [`Target`] borrows.
    pub struct Parts {
        pub table: TableInfo,
        pub a_rows: HashMap<String, Row>,
        pub b_rows: HashMap<String, Row>,
        pub outside: HashMap<String, Row>,
    }

    pub const A: Uuid = Uuid::from_u128(0xa);
    pub const B: Uuid = Uuid::from_u128(0xb);

    fn row(org: Uuid, id: &str, customer: &str) -> Row {
        [
            ("id", Some(id)),
            ("org_id", Some(&*org.to_string())),
            ("customer_id", Some(customer)),
            ("title", Some("t")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
        .collect()
    }

    pub fn parts() -> Parts {
        let table = TableInfo {
            name: "deals".into(),
            org_column: "org_id".into(),
            owner: "tenant_owner".into(),
            policies: vec!["tenant_isolation".into()],
            verifies_tokens: true,
            columns: vec![
                column("id", "uuid", true, true),
                column("org_id", "uuid", true, false),
                column("customer_id", "uuid", true, false),
                column("title", "text", true, false),
            ],
            constraints: vec![
                constraint("deals_pkey", "p", "id", "", ""),
                constraint("deals_org_id_id_key", "u", "org_id,id", "", ""),
                constraint("deals_org_id_fkey", "f", "org_id", "orgs", "id"),
                constraint(
                    "deals_org_id_customer_id_fkey",
                    "f",
                    "org_id,customer_id",
                    "customers",
                    "org_id,id",
                ),
            ],
        };
        let mut a_rows = HashMap::new();
        let mut b_rows = HashMap::new();
        a_rows.insert(
            "deals".to_owned(),
            row(A, "11111111-1111-1111-1111-111111111111", "c-a"),
        );
        b_rows.insert(
            "deals".to_owned(),
            row(B, "22222222-2222-2222-2222-222222222222", "c-b"),
        );
        for (rows, org, id) in [(&mut a_rows, A, "c-a"), (&mut b_rows, B, "c-b")] {
            rows.insert(
                "customers".into(),
                [
                    ("id".to_owned(), Some(id.to_owned())),
                    ("org_id".to_owned(), Some(org.to_string())),
                ]
                .into_iter()
                .collect(),
            );
            rows.insert(
                "orgs".into(),
                [("id".to_owned(), Some(org.to_string()))]
                    .into_iter()
                    .collect(),
            );
        }
        Parts {
            table,
            a_rows,
            b_rows,
            outside: HashMap::new(),
        }
    }

    impl Parts {
        pub fn target(&self) -> Target<'_> {
            Target {
                table: &self.table,
                a: A,
                b: B,
                a_rows: &self.a_rows,
                b_rows: &self.b_rows,
                outside: &self.outside,
                server_version: 170_000,
                signed_kid: None,
                set_local: false,
            }
        }
    }
}
