//! The scale-out target: Citus, every tenant table distributed by its org column. What Citus
//! asks of the generated SQL, as measured on a coordinator and two workers (Citus 13.2;
//! docs/scale-out.md):
//!
//! - policies on distributed tables may not contain sub-queries, so the org is read inline:
//!   `org_id = nullif(current_setting('tenant.org_id', true), '')::uuid` (a per-row cast on
//!   plain PostgreSQL, which is why it is not the default there);
//! - only `SET LOCAL` reaches the workers (`citus.propagate_set_commands = local`), so the
//!   library sets the org with `SET LOCAL tenant.org_id = '<org>'`
//!   (`TenantPoolBuilder::set_local_context`);
//! - a table cannot be distributed while a local table references it or it references a local
//!   table: the migration sets aside the foreign keys of every table it distributes, distributes,
//!   and puts them back as they were (`pg_get_constraintdef`), one connection per node
//!   (`citus.multi_shard_modify_mode = sequential`, which foreign keys to reference tables need
//!   in a transaction);
//! - Citus refuses to alter a distribution column, so the org column's default goes on before
//!   the distribution and stays (as the distribution does) when the protection is undone;
//! - Citus recreates every policy on its shards and on the workers' copies of the table as a
//!   *permissive* one (it drops `AS RESTRICTIVE`, whether the policy came before the
//!   distribution or after). The coordinator applies its own policies before it plans, but a
//!   query sent to a worker meets only the worker's: a restrictive org policy `TO PUBLIC`
//!   would there let every role with a table grant read the org it names in the setting. The
//!   Citus form binds it to the application role, whose permissive policy has the same
//!   predicate, so the degraded copy changes nothing; the cluster audit
//!   (`audit::cluster`) judges each worker's policies by what they let each role do;
//! - tenant tables are colocated with the first one, so a query filtered by org (the scoped DSL
//!   always filters) routes to one shard, and joins and foreign keys between them stay on it;
//!   global tables become reference tables, which every tenant table may reference.
//!
//! - Citus 13.2 sends the text of the query that ran an `ALTER TABLE` (owner, row-level
//!   security), a `DROP POLICY` or a `SET LOCAL` on a distributed table on to the workers as
//!   it is: a migration sent as one query (as diesel sends it) fails there ("cannot insert
//!   multiple commands into a prepared statement"). Every statement of the Citus migration
//!   that is not a `DO` block or a `SELECT` runs in a `DO` block of its own
//!   ([`statementwise`]), whose statements Citus sends alone.
//!
//! Each table's [`Fragment`] distributes it (once: a distributed table is left as it is) and
//! then protects it as on PostgreSQL with the inline policy form, so [`incremental`] works as
//! the PostgreSQL target's does. The distribution is never undone by a migration:
//! undistributing moves every row back to the coordinator (`undistribute_table()`, by hand).

use std::fmt::Write as _;

use tenant_lint::{Registry, TableEntry};

pub use crate::options::PolicyForm;
use crate::options::{ContextMode, RlsOptions, Target};
use crate::sql::{HEADER, Migration, ident, literal, statements};
use crate::table::{Fragment, OrgDefault, RestrictiveTo, Shape, fragment, org_default_up};

/// `options` as Citus needs them: the inline policy form; refused, naming the reason, unless
/// the context is the plain mode.
///
/// # Errors
/// When `options.context` is not [`ContextMode::TrustEveryStatement`]: the signed context's
/// verifier reads a key table and a view that Citus does not run on its workers, so a Citus
/// deployment is the opt-in plain mode, chosen by name (docs/scale-out.md).
pub fn target_options(options: &RlsOptions) -> Result<RlsOptions, String> {
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
    Ok(RlsOptions {
        policy_form: PolicyForm::Inline,
        ..options.clone()
    })
}

/// What the Citus target asks of each table's fragment: the org default is set before the
/// distribution (Citus refuses to alter a distribution column after), and the restrictive org
/// policy binds the application role only (Citus recreates it on the shards as permissive).
const CITUS: Shape = Shape {
    org_default: OrgDefault::Untouched,
    restrictive_to: RestrictiveTo::AppRole,
};

/// One [`Fragment`] per table of `registry`, in registry order: the table's distribution, then
/// its protection with the inline policy form.
///
/// # Errors
/// As [`target_options`].
pub fn fragments(registry: &Registry, options: &RlsOptions) -> Result<Vec<Fragment>, String> {
    let options = target_options(options)?;
    let first_tenant = registry
        .tables()
        .find_map(|t| t.org_column().map(|_| t.name));
    Ok(registry
        .tables()
        .map(|table| {
            let protection = fragment(table, &options, CITUS);
            let (up, down) = (statementwise(&protection.up), statementwise(&protection.down));
            Fragment {
                table: protection.table,
                // Distributed first, then protected: Citus 13.2 builds a shard's policies
                // from the table's as permissive ones (it drops AS RESTRICTIVE), while a
                // CREATE POLICY on a distributed table reaches every shard as written.
                up: distribute(table, first_tenant, &options) + &up,
                down: down
                    + "\n-- The distribution stays (undistribute_table() moves every row back to the coordinator).\n",
            }
        })
        .collect())
}

/// `sql` with every statement that is not a `DO` block or a `SELECT` in a `DO` block of its
/// own, so that Citus sends that statement, and not the text of the whole query it came in,
/// on to the workers. Comments stay outside; applying it twice changes nothing.
pub fn statementwise(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    let mut rest = sql;
    for statement in statements(sql) {
        rest = &rest[statement.len()..];
        // The comment and blank lines before the statement stay as they are.
        let mut body_at = 0;
        for line in statement.split_inclusive('\n') {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with("--") {
                body_at += line.len();
            } else {
                break;
            }
        }
        let (comments, body) = statement.split_at(body_at.min(statement.len()));
        out.push_str(comments);
        let head = body.trim_start();
        let keep = ["DO ", "DO\n", "SELECT ", "SELECT\n"].iter().any(|k| {
            head.get(..k.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(k))
        });
        if keep || head.is_empty() {
            out.push_str(body);
        } else {
            let _ = write!(out, "DO $citus$BEGIN {head} END$citus$;");
        }
    }
    out.push_str(rest);
    out
}

/// The statement that distributes `t` unless it is already: a tenant table by its org column
/// (its org default set first), colocated with `first_tenant` (the first of them gets a
/// colocation group of its own), a global table as a reference table.
fn distribute(t: &TableEntry, first_tenant: Option<&str>, o: &RlsOptions) -> String {
    let table = literal(&ident(t.name));
    let (what, steps) = match t.org_column() {
        Some(org_column) => {
            let colocate = match first_tenant {
                Some(first) if first != t.name => literal(&ident(first)),
                _ => literal("none"),
            };
            let default = org_default_up(t.name, org_column, o)
                .lines()
                .filter(|l| !matches!(l.trim(), "DO $$" | "BEGIN" | "END" | "$$;"))
                .map(|l| format!("  {l}\n"))
                .collect::<String>();
            (
                format!(
                    "{} distributed by {}, colocated with {}",
                    t.name,
                    org_column,
                    first_tenant.unwrap_or(t.name)
                ),
                format!(
                    "{default}\x20   PERFORM create_distributed_table({table}, {}, colocate_with => {colocate});\n",
                    literal(org_column)
                ),
            )
        }
        None => (
            format!("{} as a reference table (a copy on every node)", t.name),
            format!("\x20   PERFORM create_reference_table({table});\n"),
        ),
    };
    format!(
        "\n-- Citus: {what}, once.\n\
         DO $$\n\
         BEGIN\n\
         \x20 IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = {table}::regclass) THEN\n\
         {steps}\
         \x20   -- The rows were copied to the shards; the coordinator's local copy goes.\n\
         \x20   PERFORM truncate_local_data_after_distributing_table({table});\n\
         \x20 END IF;\n\
         END\n\
         $$;\n"
    )
}

/// The temporary table holding the foreign keys set aside while tables are distributed.
const SET_ASIDE: &str = "tenant_citus_foreign_keys";

/// Sets aside every foreign key from or to a table of `registry` that is not distributed yet
/// (Citus distributes no table that a local table references or that references one).
fn set_aside_foreign_keys(registry: &Registry) -> String {
    let tables = registry
        .tables()
        .map(|t| literal(&ident(t.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n-- Citus distributes no table that a local table references or that references a local\n\
         -- table: the foreign keys of the tables not distributed yet are set aside here and put back,\n\
         -- as they were, once every table is distributed. Foreign keys to reference tables need one\n\
         -- connection per node in a transaction (set at the top of the migration).\n\
         DROP TABLE IF EXISTS pg_temp.{SET_ASIDE};\n\
         CREATE TEMPORARY TABLE {SET_ASIDE} AS\n\
         \x20 SELECT c.conrelid::regclass AS relation, c.conname::text AS name, pg_get_constraintdef(c.oid) AS definition\n\
         \x20 FROM pg_constraint c\n\
         \x20 WHERE c.contype = 'f'\n\
         \x20   AND (c.conrelid = ANY (ARRAY[{tables}]::regclass[]) OR c.confrelid = ANY (ARRAY[{tables}]::regclass[]))\n\
         \x20   AND NOT (c.conrelid IN (SELECT logicalrelid FROM pg_dist_partition)\n\
         \x20            AND c.confrelid IN (SELECT logicalrelid FROM pg_dist_partition));\n\
         DO $$\n\
         DECLARE k record;\n\
         BEGIN\n\
         \x20 FOR k IN SELECT * FROM pg_temp.{SET_ASIDE} LOOP\n\
         \x20   EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', k.relation, k.name);\n\
         \x20 END LOOP;\n\
         END\n\
         $$;\n"
    )
}

/// Puts back the foreign keys [`set_aside_foreign_keys`] set aside.
fn restore_foreign_keys() -> String {
    format!(
        "\n-- The foreign keys set aside for the distribution, back as they were.\n\
         DO $$\n\
         DECLARE k record;\n\
         BEGIN\n\
         \x20 FOR k IN SELECT * FROM pg_temp.{SET_ASIDE} LOOP\n\
         \x20   EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.relation, k.name, k.definition);\n\
         \x20 END LOOP;\n\
         END\n\
         $$;\n\
         DROP TABLE pg_temp.{SET_ASIDE};\n"
    )
}

/// `sql` with what follows `prefix` (which `sql` starts with) between the foreign keys'
/// set-aside and their restoring, when it distributes a table; else `sql` as it is.
fn wrap(sql: &str, prefix: &str, registry: &Registry) -> String {
    if !sql.contains("PERFORM create_") {
        return sql.to_owned();
    }
    let body = sql.strip_prefix(prefix).unwrap_or(sql);
    let head = if sql.len() == body.len() { "" } else { prefix };
    format!(
        "{head}{}{body}{}",
        set_aside_foreign_keys(registry),
        restore_foreign_keys()
    )
}

/// The first statement of every Citus migration: one connection per node for the whole
/// transaction. DDL on a table after parallel DDL on a colocated one, and foreign keys to
/// reference tables, need it. `set_config`, not `SET LOCAL`: with
/// `citus.propagate_set_commands = local`, Citus sends a `SET LOCAL`'s query text on to the
/// workers, and this setting only concerns the coordinator.
const SEQUENTIAL: &str = "\n-- One connection per node for the whole migration: Citus needs it for DDL on colocated\n\
     -- tables and for foreign keys to reference tables in one transaction.\n\
     SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true);\n";

/// `sql` (a migration beginning with `prefix`) with [`SEQUENTIAL`] after `prefix`, and in an
/// `up` (with its options), Citus's powers taken from `PUBLIC`.
fn sequential(sql: &str, prefix: &str, up: Option<&RlsOptions>) -> String {
    let first = if let Some(o) = up {
        format!("{SEQUENTIAL}{}", crate::citus_powers::revoke(o))
    } else {
        SEQUENTIAL.to_owned()
    };
    match sql.strip_prefix(prefix) {
        Some(body) => format!("{prefix}{first}{body}"),
        None => format!("{first}{sql}"),
    }
}

/// `m` (what the PostgreSQL target assembled from Citus fragments, with the Citus shared
/// objects) made a Citus migration:
/// the foreign keys set aside around the distribution, one connection per node (and, in `up`,
/// Citus's powers taken), and every statement alone.
fn for_citus(m: Migration, registry: &Registry, options: &RlsOptions) -> Migration {
    let shared = crate::pg::preamble_for(options, Target::Citus);
    Migration {
        up: statementwise(&sequential(
            &wrap(&m.up, &shared, registry),
            HEADER,
            Some(options),
        )),
        down: statementwise(&sequential(&wrap(&m.down, HEADER, registry), HEADER, None)),
    }
}

/// The migration made of `parts` (what [`generate`] writes for `registry`).
pub fn assemble(registry: &Registry, parts: &[Fragment], options: &RlsOptions) -> Migration {
    for_citus(
        crate::pg::assemble_for(parts, options, Target::Citus),
        registry,
        options,
    )
}

/// The migration for a Citus cluster: the shared objects, then each table distributed and
/// protected with the inline policy form, between the foreign keys' set-aside and restoring.
///
/// # Errors
/// As [`target_options`].
pub fn generate(registry: &Registry, options: &RlsOptions) -> Result<Migration, String> {
    let options = target_options(options)?;
    Ok(assemble(
        registry,
        &fragments(registry, &options)?,
        &options,
    ))
}

/// The migration from the state `previous` (a manifest's fragments) to `registry`'s: tables
/// that joined are distributed and protected, changed ones protected anew, those that left
/// lose their protection (their distribution stays). `None` when nothing changed.
///
/// # Errors
/// As [`target_options`].
pub fn incremental(
    registry: &Registry,
    previous: &[Fragment],
    options: &RlsOptions,
) -> Result<Option<Migration>, String> {
    let options = target_options(options)?;
    let current = fragments(registry, &options)?;
    Ok(
        crate::pg::incremental_for(previous, &current, &options, Target::Citus)
            .map(|m| for_citus(m, registry, &options)),
    )
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

    fn plain() -> RlsOptions {
        RlsOptions {
            context: ContextMode::TrustEveryStatement,
            ..RlsOptions::default()
        }
    }

    #[test]
    fn tenant_tables_are_colocated_with_the_first_and_globals_are_reference_tables() {
        let up = generate(&R, &plain()).unwrap().up;
        assert_eq!(
            up.lines()
                .map(str::trim)
                .filter(|l| l.starts_with("PERFORM create_"))
                .collect::<Vec<_>>(),
            [
                // The key of the operator's tokens (operator_citus.rs), with the shared objects.
                "PERFORM create_reference_table('\"tenant_audit\".operator_key');",
                "PERFORM create_reference_table('\"currencies\"');",
                "PERFORM create_distributed_table('\"customers\"', 'org_id', colocate_with => 'none');",
                "PERFORM create_distributed_table('\"deals\"', 'org_id', colocate_with => '\"customers\"');",
            ]
        );
    }

    #[test]
    fn foreign_keys_are_set_aside_before_the_first_distribution_and_restored_after_the_last() {
        let m = generate(&R, &plain()).unwrap();
        let aside = m.up.find("DROP CONSTRAINT").unwrap();
        let restored = m.up.rfind("ADD CONSTRAINT").unwrap();
        let first =
            m.up.find("PERFORM create_reference_table('\"currencies\"')")
                .unwrap();
        let last = m.up.rfind("PERFORM create_").unwrap();
        assert!(aside < first && last < restored);
        // The undo distributes nothing, so it sets no foreign key aside.
        assert!(!m.down.contains("CONSTRAINT"), "{}", m.down);
        assert!(m.up.starts_with(&format!(
            "{HEADER}{SEQUENTIAL}{}",
            crate::citus_powers::revoke(&target_options(&plain()).unwrap())
        )));
        assert!(m.down.starts_with(&format!("{HEADER}{SEQUENTIAL}")));
    }

    #[test]
    fn every_statement_but_do_blocks_and_selects_runs_in_a_do_block_of_its_own() {
        let m = generate(&R, &plain()).unwrap();
        for sql in [&m.up, &m.down] {
            for statement in statements(sql) {
                let head = statement
                    .lines()
                    .map(str::trim_start)
                    .find(|l| !l.is_empty() && !l.starts_with("--"))
                    .unwrap_or("");
                assert!(
                    head.starts_with("DO ") || head.starts_with("SELECT "),
                    "{statement}"
                );
            }
        }
        assert_eq!(
            statementwise(&m.up),
            m.up,
            "applying it twice changes nothing"
        );
        assert_eq!(
            statementwise("-- why\nALTER TABLE t OWNER TO o;\nSELECT 1;\n"),
            "-- why\nDO $citus$BEGIN ALTER TABLE t OWNER TO o; END$citus$;\nSELECT 1;\n"
        );
    }

    #[test]
    fn the_org_default_goes_on_before_the_distribution_and_no_undo_alters_the_org_column() {
        let m = generate(&R, &plain()).unwrap();
        let default =
            m.up.find("ALTER TABLE \"deals\" ALTER COLUMN \"org_id\" SET DEFAULT")
                .unwrap();
        let distributed = m.up.find("create_distributed_table('\"deals\"'").unwrap();
        assert!(default < distributed);
        assert_eq!(m.up.matches("ALTER COLUMN").count(), 2, "{}", m.up);
        assert!(!m.down.contains("ALTER COLUMN"), "{}", m.down);
    }

    #[test]
    fn the_citus_policies_have_no_subquery_and_each_table_is_distributed_before_it_is_protected() {
        let plain = RlsOptions {
            context: ContextMode::TrustEveryStatement,
            ..RlsOptions::default()
        };
        let m = generate(&R, &plain).unwrap();
        assert!(m.up.contains("AS RESTRICTIVE"));
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
        // The table is distributed, then protected: ALTER TABLE and CREATE POLICY on the
        // distributed table reach every shard.
        let protected =
            m.up.find("ALTER TABLE \"deals\" ENABLE ROW LEVEL SECURITY")
                .unwrap();
        let distributed = m.up.find("create_distributed_table('\"deals\"'").unwrap();
        assert!(distributed < protected);
        // The restrictive org policy binds the application role only: Citus recreates it on
        // the shards as permissive, which TO PUBLIC would turn into access for every role.
        assert!(m.up.contains(
            "CREATE POLICY \"tenant_isolation\" ON \"deals\" AS RESTRICTIVE FOR ALL TO \"tenant_app\""
        ));
        assert!(!m.up.contains("AS RESTRICTIVE FOR ALL TO PUBLIC"));
    }
}
