//! Checks that an SQL statement confines every tenant table it touches to the session's org.
//!
//! Used at run time by `tenant-core` on every statement a scoped handle sends (the statement is
//! rendered by diesel, and the org parameters are the bind positions holding the handle's org),
//! and meant for compile time in `tenant_sql!` (with `$org` as the org parameter). The rule is
//! the principle of the threat model (docs/threat-model.md), applied to one statement: every reference to a registered
//! tenant table must be constrained to the org, and nothing may move rows between orgs or
//! change the session's org.
//!
//! ```
//! use tenant_sqlcheck::{Tables, Violation, check};
//!
//! let tables = Tables::new([("invoices", Some("org_id")), ("currencies", None)])
//!     .with_functions([("billing.net_total", "adds its arguments; runs no SQL")]);
//! let org = |p: &str| p == "$1";
//! assert_eq!(check(r#"SELECT * FROM invoices WHERE invoices.org_id = $1 AND total > $2"#, &tables, &org), Ok(()));
//! assert_eq!(
//!     check("SELECT * FROM invoices WHERE org_id = $1 OR total > 0", &tables, &org),
//!     Err(Violation::MissingOrgPredicate { table: "invoices".into() })
//! );
//! // Functions: safe built-ins and registered functions only.
//! assert_eq!(
//!     check("SELECT lower(name), billing.net_total(total) FROM invoices WHERE org_id = $1", &tables, &org),
//!     Ok(())
//! );
//! assert_eq!(
//!     check("SELECT my_fn(total) FROM invoices WHERE org_id = $1", &tables, &org),
//!     Err(Violation::UnknownFunction { name: "my_fn".into() })
//! );
//! assert!(matches!(
//!     check("SELECT query_to_xml('SELECT * FROM invoices', true, true, '')", &tables, &org),
//!     Err(Violation::UnsafeFunction { .. })
//! ));
//! ```
//!
//! The check is structural and fails closed: a tenant table counts as confined only by a
//! top-level `AND` conjunct `<table or alias>.<org column> = <org parameter>` in the WHERE of the
//! SELECT, UPDATE or DELETE that reads it (or in the ON of its own join, or of an inner join);
//! every reference the visitor finds must have been confirmed that way, or the statement is
//! refused. Likewise a function, operator, cast or FROM item is allowed only when it is known
//! to run no SQL of its own, change no setting or session state, and read nothing outside the
//! statement's rows.
//!
//! The stages, each a module that uses only the ones before it:
//! `violation` (the refusals) → `parse` (one statement of a known kind) → `registry`
//! (tables, functions, requirements) → `allowlist` (built-in functions by safety) →
//! `functions` (the function policy) → `expressions` (expression kinds, operators, casts,
//! FROM items) → `order` (nothing that can fail runs before the org predicate) → `scope`
//! (which references are confined) → `writes` (UPDATE, DELETE,
//! INSERT) → `server_reading` (PostgreSQL's own parser must find no name the walk did not
//! judge) → `server_tree` (and must build the same tree from the text as from the walk's
//! reading written back fully parenthesized) → `verdict` (the walk and the final pass; `check`, `requirements`,
//! `check_global_write`) → `catalog` (`check_catalog_only`).

mod allowlist;
mod catalog;
mod ctes;
mod expressions;
mod functions;
mod lexical;
mod notation;
mod order;
mod parse;
mod pglex;
mod registry;
mod scope;
mod server_reading;
mod server_tree;
mod verdict;
mod violation;
mod writes;

#[cfg(test)]
mod story;

pub use catalog::check_catalog_only;
pub use order::pattern_parameters;
pub use registry::{Requirement, Tables};
pub use verdict::{check, check_global_write, requirements, requirements_with_builtins_only};
pub use violation::Violation;
