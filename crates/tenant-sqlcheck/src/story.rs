//! Test support: the example story's tables as the checker knows them, and a check of one
//! statement with `$1` (run time) or `$org` (`tenant_sql!`) as the org parameter.

use crate::{Requirement, Tables, Violation, check, requirements};

/// The story's tables: `orgs` (keyed by `id`), three tenant tables, one global table.
pub(crate) fn tables() -> Tables {
    Tables::new([
        ("orgs", Some("id")),
        ("customers", Some("org_id")),
        ("invoices", Some("org_id")),
        ("deals", Some("org_id")),
        ("currencies", None),
    ])
}

/// `sql` checked against [`tables`].
pub(crate) fn run(sql: &str) -> Result<(), Violation> {
    check(sql, &tables(), &|p: &str| p == "$1" || p == "$org")
}

/// Asserts that each of `sqls` is refused as something the check cannot verify (or cannot
/// parse): the verdict for constructs PostgreSQL reads otherwise or does not have.
pub(crate) fn assert_unverifiable(sqls: &[&str]) {
    for sql in sqls {
        assert!(
            matches!(
                run(sql),
                Err(Violation::UnsupportedExpression(_) | Violation::Unparsable(_))
            ),
            "{sql}: {:?}",
            run(sql)
        );
    }
}

/// What `sql` requires of the registry in symbolic mode (`tenant_sql!`, `$org` the org).
pub(crate) fn reqs(sql: &str) -> Vec<Requirement> {
    requirements(sql, &|p: &str| p == "$org").expect("the statement has requirements")
}

/// A read of `table` with `constrained` columns bound to the org.
pub(crate) fn read(table: &str, constrained: &[&str]) -> Requirement {
    Requirement::Read {
        table: table.into(),
        constrained: constrained.iter().map(|c| (*c).into()).collect(),
    }
}
