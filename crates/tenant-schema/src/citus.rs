//! The scale-out target: Citus, distributed by org. What Citus asks of the generated SQL
//! (docs/scale-out.md says what was verified here and what was not):
//!
//! - policies on distributed tables may not contain subqueries, so the org is read inline:
//!   `org_id = nullif(current_setting('tenant.org_id', true), '')::uuid` (a per-row cast on
//!   plain PostgreSQL, which is why it is not the default there);
//! - only `SET LOCAL` reaches the workers (`citus.propagate_set_commands = local`), so the
//!   library sets the org with `SET LOCAL tenant.org_id = '<org>'`
//!   (`TenantPoolBuilder::set_local_context`);
//! - tenant tables are distributed by their org column and colocated with the first one, so a
//!   query filtered by org (the scoped DSL always filters) routes to one shard; global tables
//!   become reference tables, which every tenant table may reference.
//!
//! [`generate`] writes the distribution first (parents before children, in registry order:
//! Citus wants referenced tables distributed before the tables that reference them), then
//! the same protection as for PostgreSQL with the inline policy form.

use std::fmt::Write as _;

use tenant_lint::Registry;

use crate::context::ContextMode;
use crate::pg::{Migration, RlsOptions, literal};

/// How a policy reads the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyForm {
    /// Once per statement, in a sub-select (PostgreSQL; about 1.1x of no RLS on a scan).
    #[default]
    SubSelect,
    /// Inline, with no sub-select (what Citus accepts on distributed tables).
    Inline,
}

/// The org expression of the inline form.
pub(crate) fn inline_org_expression(options: &RlsOptions) -> String {
    format!(
        "nullif(current_setting({}, true), '')::uuid",
        literal(&options.setting)
    )
}

/// `create_distributed_table` for every tenant table (colocated with the first) and
/// `create_reference_table` for every global table, in registry order.
pub fn distribution(registry: &Registry) -> String {
    let mut out = String::from(
        "\n-- Citus: tenant tables distributed by their org column and colocated, global tables\n\
         -- as reference tables. Referenced tables come first (registry order).\n",
    );
    let mut first: Option<&str> = None;
    for t in registry.tables() {
        match t.org_column() {
            Some(org) => {
                let colocate = first.map_or_else(|| "'default'".to_owned(), literal);
                let _ = writeln!(
                    out,
                    "SELECT create_distributed_table({}, {}, colocate_with => {colocate});",
                    literal(t.name),
                    literal(org)
                );
                first.get_or_insert(t.name);
            }
            None => {
                let _ = writeln!(out, "SELECT create_reference_table({});", literal(t.name));
            }
        }
    }
    out
}

/// The migration for a Citus cluster: the distribution, then the protection with the inline
/// policy form (whatever form `options` asked for).
///
/// # Errors
/// When `options.context` is not [`ContextMode::TrustEveryStatement`]: the signed context's
/// verifier reads a key table and a view that Citus does not run on its workers, so a Citus
/// deployment is the opt-in plain mode, chosen by name (docs/scale-out.md).
pub fn generate(registry: &Registry, options: &RlsOptions) -> Result<Migration, String> {
    if options.context != ContextMode::TrustEveryStatement {
        return Err(format!(
            "Citus needs the plain org context: the signed context's verifier (the key table and \
             the view tenant_context.current_org) does not run on Citus workers. Generate with \
             `RlsOptions {{ context: ContextMode::TrustEveryStatement, .. }}` and build the pool \
             with `OrgContext::TrustEveryStatement` and `set_local_context()`, knowing that the \
             database then trusts every statement the application sends to keep its org \
             (was asked for {:?})",
            options.context
        ));
    }
    let inline = RlsOptions {
        policy_form: PolicyForm::Inline,
        ..options.clone()
    };
    let mut migration = crate::pg::generate(registry, &inline);
    let header_end = migration.up.find("\n\n").map_or(0, |i| i + 1);
    migration.up.insert_str(header_end, &distribution(registry));
    migration
        .down
        .push_str("\n-- The distribution stays: undistributing moves every row back to the coordinator;\n-- do it deliberately with undistribute_table().\n");
    Ok(migration)
}

#[cfg(test)]
mod tests {
    use super::*;

    diesel::table! { currencies (code) { code -> Text } }
    diesel::table! { customers (id) { id -> Uuid, org_id -> Uuid } }
    diesel::table! { deals (id) { id -> Uuid, org_id -> Uuid } }
    tenant_lint::registry! {
        static R;
        global currencies;
        tenant customers => org_id;
        tenant deals => org_id;
    }

    #[test]
    fn the_signed_context_is_refused_for_citus_by_name() {
        let err = generate(&R, &RlsOptions::default()).unwrap_err();
        assert!(
            err.contains("ContextMode::TrustEveryStatement") && err.contains("Citus workers"),
            "{err}"
        );
    }

    #[test]
    fn tenant_tables_are_colocated_with_the_first_and_globals_are_reference_tables() {
        assert_eq!(
            distribution(&R)
                .lines()
                .filter(|l| l.starts_with("SELECT"))
                .collect::<Vec<_>>(),
            [
                "SELECT create_reference_table('currencies');",
                "SELECT create_distributed_table('customers', 'org_id', colocate_with => 'default');",
                "SELECT create_distributed_table('deals', 'org_id', colocate_with => 'customers');",
            ]
        );
    }

    #[test]
    fn the_citus_policies_have_no_subquery_and_distribution_comes_first() {
        let plain = RlsOptions {
            context: ContextMode::TrustEveryStatement,
            ..RlsOptions::default()
        };
        let m = generate(&R, &plain).unwrap();
        let policy_lines: Vec<&str> =
            m.up.lines()
                .filter(|l| l.contains("USING (") || l.contains("WITH CHECK ("))
                .collect();
        assert!(!policy_lines.is_empty());
        for l in policy_lines
            .iter()
            .filter(|l| l.contains("current_setting"))
        {
            assert!(!l.contains("SELECT"), "a sub-select in a Citus policy: {l}");
        }
        let distributed = m.up.find("create_distributed_table").unwrap_or(usize::MAX);
        let protected = m.up.find("ENABLE ROW LEVEL SECURITY").unwrap_or(0);
        assert!(distributed < protected);
    }
}
