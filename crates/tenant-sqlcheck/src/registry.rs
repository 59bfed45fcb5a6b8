//! What the check knows about the schema: tenant tables with their org column, global tables,
//! and functions registered as safe; and, when it does not know them (symbolic mode, at compile
//! time), what a statement requires of them.
//!
//! Invariant: a name is trusted only as registered here, compared exactly as PostgreSQL folds
//! it; in symbolic mode nothing is trusted, and every assumption becomes a [`Requirement`].

use std::collections::BTreeMap;

use sqlparser::ast::{ObjectName, ObjectNamePart};

use crate::parse::{fold, last_ident};

/// The tables the check knows: tenant tables with their org column, and global tables; and the
/// functions registered as safe to call from an org-scoped statement.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    entries: Vec<(String, Option<String>)>,
    /// Registered functions by their name parts (`["net_total"]`, `["billing", "net_total"]`),
    /// with the reason given for each.
    functions: BTreeMap<Vec<String>, String>,
    symbolic: bool,
}

/// The org column of every table in symbolic mode: matches no real column.
const SYMBOLIC: &str = "\u{0}org column";

/// What a statement needs from the registry to be confined, found without knowing the registry
/// (symbolic mode, for `tenant_sql!`, whose registry is only known to the compiler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `table` is read: if it is a tenant table, its org column must be among `constrained`.
    Read {
        /// The table.
        table: String,
        /// Columns of this reference constrained `= <org param>` (ANDed).
        constrained: Vec<String>,
    },
    /// `table` is updated or deleted from: it must be a tenant table, and its org column must
    /// not be among `assigned`.
    Write {
        /// The table.
        table: String,
        /// Columns assigned (UPDATE SET, ON CONFLICT DO UPDATE SET).
        assigned: Vec<String>,
    },
    /// An `ON CONFLICT` on `table`: if it is a tenant table, its org column must be among
    /// `columns` (the target's; empty without a target or with a named constraint).
    ConflictTarget {
        /// The table.
        table: String,
        /// The columns of the conflict target.
        columns: Vec<String>,
    },
    /// Rows are inserted into `table`: it must be a tenant table, and its org column must be
    /// among `org_columns` (columns holding the org parameter in every row).
    Insert {
        /// The table.
        table: String,
        /// Columns whose value is the org parameter in every row.
        org_columns: Vec<String>,
    },
    /// The statement calls `name`, which is not a built-in known to be safe: it must be a
    /// function registered as safe (see [`Tables::with_functions`]), under exactly this name.
    Function {
        /// The name as PostgreSQL folds it: `name`, or `schema.name` when called qualified.
        name: String,
    },
}

/// What the registry says a relation is.
pub(crate) enum Kind<'a> {
    /// A tenant table, with its org column.
    Tenant(&'a str),
    /// A global table.
    Global,
    /// Not registered.
    Unknown,
}

impl Tables {
    /// Tables as `(name, Some(org_column))` for tenant tables and `(name, None)` for global ones.
    pub fn new<'a>(tables: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        Self {
            entries: tables
                .into_iter()
                .map(|(t, c)| (t.to_owned(), c.map(str::to_owned)))
                .collect(),
            functions: BTreeMap::new(),
            symbolic: false,
        }
    }

    /// Adds functions registered as safe in an org-scoped statement: each runs no SQL of its
    /// own, changes no setting or session state, and reads only its arguments, for the reason
    /// given. A registered function is allowed wherever a built-in is (an expression or a FROM
    /// item).
    ///
    /// A name is the function's name as the catalog spells it (what an unquoted name folds
    /// to), schema-qualified as `schema.name` if it is called that way: a call matches only
    /// the exact name (`billing.net_total` does not allow `net_total`, nor the reverse).
    /// A `pg_catalog.` name, and a built-in that is never safe (`query_to_xml`, `set_config`,
    /// ...), cannot be allowed by registering it.
    pub fn with_functions<'a>(
        mut self,
        functions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (name, reason) in functions {
            let parts = name.split('.').map(str::to_owned).collect();
            self.functions.insert(parts, reason.to_owned());
        }
        self
    }

    /// Symbolic mode: every table may be a tenant table, no function is registered.
    pub(crate) fn symbolic() -> Self {
        Self {
            symbolic: true,
            ..Self::default()
        }
    }

    /// Whether this is symbolic mode (the registry is not known).
    pub(crate) fn is_symbolic(&self) -> bool {
        self.symbolic
    }

    /// Whether a function of exactly these (folded) name parts is registered.
    pub(crate) fn has_function(&self, parts: &[String]) -> bool {
        self.functions.contains_key(parts)
    }

    /// What the registry says `name` (its last part) is; in symbolic mode, a tenant table.
    pub(crate) fn kind(&self, name: &ObjectName) -> Kind<'_> {
        let Some(last) = last_ident(name) else {
            return Kind::Unknown;
        };
        // The registry names tables without a schema, as the service's search path finds
        // them: `public.customers` is the table, `other.customers` (or `db.public.customers`)
        // is some other relation, unknown.
        let qualified_elsewhere = match name.0.as_slice() {
            [_] => false,
            [schema, _] => !matches!(schema, ObjectNamePart::Identifier(s) if fold(s) == "public"),
            _ => true,
        };
        if qualified_elsewhere {
            return Kind::Unknown;
        }
        if self.symbolic {
            return Kind::Tenant(SYMBOLIC);
        }
        match self.entries.iter().find(|(t, _)| *t == last) {
            Some((_, Some(col))) => Kind::Tenant(col),
            Some((_, None)) => Kind::Global,
            None => Kind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[&str]) -> ObjectName {
        ObjectName::from(
            parts
                .iter()
                .map(|p| sqlparser::ast::Ident::new(*p))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn tables_are_tenant_global_or_unknown() {
        let t = Tables::new([("invoices", Some("org_id")), ("currencies", None)]);
        assert!(matches!(
            t.kind(&name(&["invoices"])),
            Kind::Tenant("org_id")
        ));
        assert!(matches!(
            t.kind(&name(&["public", "INVOICES"])),
            Kind::Tenant("org_id")
        ));
        assert!(matches!(t.kind(&name(&["currencies"])), Kind::Global));
        assert!(matches!(t.kind(&name(&["pg_class"])), Kind::Unknown));
        assert!(matches!(
            Tables::symbolic().kind(&name(&["anything"])),
            Kind::Tenant(SYMBOLIC)
        ));
    }

    #[test]
    fn registered_functions_match_their_exact_parts() {
        let t = Tables::new([]).with_functions([
            ("net_total", "sums its arguments"),
            ("billing.tax", "multiplies its arguments"),
        ]);
        let parts = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(t.has_function(&parts("net_total")));
        assert!(t.has_function(&parts("billing.tax")));
        assert!(!t.has_function(&parts("tax")));
        assert!(!t.has_function(&parts("public.net_total")));
        assert!(!t.has_function(&["billing.tax".to_owned()]));
        assert!(!Tables::symbolic().has_function(&parts("net_total")));
    }
}
