//! The function policy: a call is allowed only when the function is KNOWN to run no SQL of its
//! own, change no setting or session state, and read nothing outside the statement's rows.
//!
//! Invariant (fail closed): a function name is allowed only if it is on the built-in allowlist
//! ([`crate::allowlist`], unqualified or `pg_catalog.`-qualified), or registered exactly
//! ([`Tables::with_functions`](crate::Tables::with_functions)); in symbolic mode an unknown name
//! becomes a [`Requirement::Function`]. Built-ins known to be unsafe are refused even if a
//! function of the same name is registered, since an unqualified call reaches the built-in.
//! Everything else is refused.

use sqlparser::ast::{FunctionArg, ObjectName};

use crate::allowlist::{BUILTINS, Place, catalog_allowed, lookup, unsafe_reason};
use crate::parse::fold_name;
use crate::registry::{Requirement, Tables};
use crate::violation::Violation;

/// The function policy of one check: what is registered, and which mode.
#[derive(Clone, Copy)]
pub(crate) struct Policy<'a> {
    tables: &'a Tables,
    catalog: bool,
}

impl<'a> Policy<'a> {
    /// The policy of an org-scoped check (or, with symbolic `tables`, of `requirements`).
    pub(crate) fn scoped(tables: &'a Tables) -> Self {
        Self {
            tables,
            catalog: false,
        }
    }

    /// The policy of the audit connection: catalog functions are allowed too.
    pub(crate) fn catalog(tables: &'a Tables) -> Self {
        Self {
            tables,
            catalog: true,
        }
    }

    /// Whether this is the audit connection's policy.
    pub(crate) fn is_catalog(&self) -> bool {
        self.catalog
    }

    /// Checks a call of `name` with `args` at `place`; in symbolic mode an unknown name is
    /// added to `requirements` instead of refused.
    pub(crate) fn call(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
        place: Place,
        requirements: &mut Vec<Requirement>,
    ) -> Result<(), Violation> {
        let Some(parts) = fold_name(name) else {
            return Err(Violation::UnknownFunction {
                name: name.to_string(),
            });
        };
        let last = parts.last().map(String::as_str).unwrap_or_default();
        if last == "set_config" {
            return Err(Violation::ChangesSessionSetting("set_config".into()));
        }
        // `db.schema.name` (PostgreSQL accepts the current database's name in front): never
        // a registered name, and `postgres.pg_catalog.current_setting` is the built-in.
        if parts.len() > 2 {
            return Err(Violation::UnknownFunction {
                name: parts.join("."),
            });
        }
        let builtin = match parts.as_slice() {
            [name] => Some(name.as_str()),
            [schema, name] if schema == "pg_catalog" => Some(name.as_str()),
            _ => None,
        };
        if let Some(builtin) = builtin {
            if self.catalog && catalog_allowed(builtin, args, place) {
                return Ok(());
            }
            if lookup(BUILTINS, builtin).is_some_and(|g| g.place == place) {
                return Ok(());
            }
            if let Some(reason) = unsafe_reason(builtin) {
                return Err(Violation::UnsafeFunction {
                    name: parts.join("."),
                    reason: reason.into(),
                });
            }
            if parts.len() == 2 {
                return Err(Violation::UnsafeFunction {
                    name: parts.join("."),
                    reason: "is not on the list of built-ins known to be safe (it may run SQL \
                             of its own, change session state, or read rows outside the \
                             statement)"
                        .into(),
                });
            }
        }
        if self.tables.has_function(&parts) {
            return Ok(());
        }
        let name = parts.join(".");
        if self.tables.is_symbolic() {
            let requirement = Requirement::Function { name };
            if !requirements.contains(&requirement) {
                requirements.push(requirement);
            }
            return Ok(());
        }
        Err(Violation::UnknownFunction { name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::{
        BY_NAME, CATALOG_BY_NAME, LARGE_OBJECT, RUNS_SQL, SEQUENCE, UNSAFE_PREFIXES,
    };
    use crate::{Tables, Violation, check, requirements};

    fn tables() -> Tables {
        Tables::new([("invoices", Some("org_id")), ("currencies", None)])
            .with_functions([("billing.net_total", "adds its arguments"), ("tax", "x")])
    }

    fn run(sql: &str) -> Result<(), Violation> {
        check(sql, &tables(), &|p: &str| p == "$1")
    }

    fn unknown(name: &str) -> Result<(), Violation> {
        Err(Violation::UnknownFunction { name: name.into() })
    }

    fn unsafe_fn(name: &str, reason: &str) -> Result<(), Violation> {
        Err(Violation::UnsafeFunction {
            name: name.into(),
            reason: reason.into(),
        })
    }

    const SCOPED: &str = "FROM invoices WHERE org_id = $1";

    #[test]
    fn a_name_of_three_parts_is_never_a_registered_function() {
        // PostgreSQL takes the current database's name in front: this is the built-in.
        let tables = Tables::new([("invoices", Some("org_id"))]).with_functions([(
            "postgres.pg_catalog.current_setting",
            "registered by mistake",
        )]);
        assert_eq!(
            check(
                "SELECT postgres.pg_catalog.current_setting('tenant.org_token') FROM invoices WHERE org_id = $1",
                &tables,
                &|p| p == "$1"
            ),
            unknown("postgres.pg_catalog.current_setting")
        );
        assert!(matches!(
            run("SELECT ts_rewrite('a'::tsquery, 'SELECT 1') FROM invoices WHERE org_id = $1"),
            Err(Violation::UnsafeFunction { name, .. }) if name == "ts_rewrite"
        ));
    }

    #[test]
    fn functions_that_run_sql_given_as_text_are_refused() {
        for (call, name) in [
            (
                "query_to_xml('select * from invoices', true, true, '')",
                "query_to_xml",
            ),
            (
                "query_to_xmlschema('select 1', true, true, '')",
                "query_to_xmlschema",
            ),
            (
                "query_to_xml_and_xmlschema('select 1', true, true, '')",
                "query_to_xml_and_xmlschema",
            ),
            ("cursor_to_xml('c', 10, true, true, '')", "cursor_to_xml"),
            (
                "ts_stat('select to_tsvector(name) from invoices')",
                "ts_stat",
            ),
        ] {
            assert_eq!(
                run(&format!("SELECT {call} {SCOPED}")),
                unsafe_fn(name, RUNS_SQL),
                "{call}"
            );
        }
    }

    #[test]
    fn functions_that_read_tables_by_name_are_refused() {
        for (call, name, reason) in [
            (
                "table_to_xml('invoices', true, true, '')",
                "table_to_xml",
                BY_NAME,
            ),
            (
                "schema_to_xml('public', true, true, '')",
                "schema_to_xml",
                BY_NAME,
            ),
            (
                "database_to_xml(true, true, '')",
                "database_to_xml",
                BY_NAME,
            ),
            ("to_regclass('invoices')", "to_regclass", CATALOG_BY_NAME),
            (
                "has_table_privilege('invoices', 'select')",
                "has_table_privilege",
                CATALOG_BY_NAME,
            ),
        ] {
            assert_eq!(
                run(&format!("SELECT {call} {SCOPED}")),
                unsafe_fn(name, reason),
                "{call}"
            );
        }
        let pg = UNSAFE_PREFIXES[2].1;
        assert_eq!(
            run(&format!("SELECT pg_relation_size('invoices') {SCOPED}")),
            unsafe_fn("pg_relation_size", pg)
        );
        assert_eq!(
            run("SELECT * FROM pg_stat_get_activity(NULL)"),
            unsafe_fn("pg_stat_get_activity", pg)
        );
    }

    #[test]
    fn functions_that_change_or_read_session_state_are_refused() {
        let pg = UNSAFE_PREFIXES[2].1;
        let settings = "reads session settings (such as the signed org token)";
        for (sql, verdict) in [
            (
                "SELECT * FROM set_config('tenant.org_id', 'x', false)".to_owned(),
                Err(Violation::ChangesSessionSetting("set_config".into())),
            ),
            (
                "SELECT * FROM pg_catalog.set_config('tenant.org_id', 'x', false)".to_owned(),
                Err(Violation::ChangesSessionSetting("set_config".into())),
            ),
            (
                format!("SELECT current_setting('tenant.token') {SCOPED}"),
                unsafe_fn("current_setting", settings),
            ),
            (
                format!("SELECT pg_advisory_lock(1) {SCOPED}"),
                unsafe_fn("pg_advisory_lock", pg),
            ),
            (
                format!("SELECT nextval('invoices_id_seq') {SCOPED}"),
                unsafe_fn("nextval", SEQUENCE),
            ),
            (
                format!("SELECT setval('invoices_id_seq', 1) {SCOPED}"),
                unsafe_fn("setval", SEQUENCE),
            ),
            (
                format!("SELECT pg_notify('c', 'x') {SCOPED}"),
                unsafe_fn("pg_notify", pg),
            ),
            (
                format!("SELECT lo_import('/etc/passwd') {SCOPED}"),
                unsafe_fn("lo_import", LARGE_OBJECT),
            ),
            (
                format!("SELECT lo_get(1) {SCOPED}"),
                unsafe_fn("lo_get", LARGE_OBJECT),
            ),
            (
                format!("SELECT pg_read_file('/etc/passwd') {SCOPED}"),
                unsafe_fn("pg_read_file", pg),
            ),
            (
                "SELECT * FROM dblink('host=x', 'select * from invoices') AS t(a int)".to_owned(),
                unsafe_fn("dblink", UNSAFE_PREFIXES[0].1),
            ),
        ] {
            assert_eq!(run(&sql), verdict, "{sql}");
        }
    }

    #[test]
    fn an_unknown_function_is_refused_wherever_it_appears() {
        for sql in [
            "SELECT f(total) FROM invoices WHERE org_id = $1",
            "SELECT id FROM invoices WHERE org_id = $1 AND f(total) > 0",
            "SELECT id FROM invoices WHERE org_id = $1 ORDER BY f(total)",
            "SELECT count(*) FROM invoices WHERE org_id = $1 GROUP BY f(total)",
            "SELECT count(*) FROM invoices WHERE org_id = $1 GROUP BY id HAVING f(count(*)) > 0",
            "SELECT sum(total) OVER (PARTITION BY f(id)) FROM invoices WHERE org_id = $1",
            "SELECT sum(total) OVER w FROM invoices WHERE org_id = $1 WINDOW w AS (ORDER BY f(id))",
            "SELECT count(*) FILTER (WHERE f(total)) FROM invoices WHERE org_id = $1",
            "INSERT INTO invoices (org_id, total) VALUES ($1, f(1))",
            "UPDATE invoices SET total = f(total) WHERE org_id = $1",
            "INSERT INTO invoices (org_id, n) VALUES ($1, 1) ON CONFLICT (org_id, id) DO UPDATE SET n = f(1)",
            "DELETE FROM invoices WHERE org_id = $1 RETURNING f(id)",
            "WITH x AS (SELECT f(id) FROM invoices WHERE org_id = $1) SELECT * FROM x",
            "SELECT id FROM invoices WHERE org_id = $1 AND id IN (SELECT f(1))",
            "SELECT * FROM f(1)",
            "SELECT * FROM invoices i, LATERAL f(i.id) WHERE i.org_id = $1",
            "SELECT lower(coalesce(f(name), '')) FROM invoices WHERE org_id = $1",
        ] {
            assert_eq!(run(sql), unknown("f"), "{sql}");
        }
    }

    #[test]
    fn quoted_and_qualified_spellings_are_folded_before_the_lookup() {
        assert_eq!(
            run(&format!(
                r#"SELECT "query_to_xml"('x', true, true, '') {SCOPED}"#
            )),
            unsafe_fn("query_to_xml", RUNS_SQL)
        );
        assert_eq!(
            run(&format!(
                "SELECT pg_catalog.query_to_xml('x', true, true, '') {SCOPED}"
            )),
            unsafe_fn("pg_catalog.query_to_xml", RUNS_SQL)
        );
        assert_eq!(
            run(&format!(
                "SELECT PG_CATALOG.QUERY_TO_XML('x', true, true, '') {SCOPED}"
            )),
            unsafe_fn("pg_catalog.query_to_xml", RUNS_SQL)
        );
        assert_eq!(
            run(&format!("SELECT public.lower(name) {SCOPED}")),
            unknown("public.lower")
        );
        assert_eq!(
            run(&format!(r#"SELECT "LOWER"(name) {SCOPED}"#)),
            unknown("LOWER")
        );
        assert_eq!(
            run(&format!(r#"SELECT "pg_catalog.lower"(name) {SCOPED}"#)),
            unknown(r#""pg_catalog.lower""#)
        );
        assert!(matches!(
            run(&format!("SELECT pg_catalog.f(1) {SCOPED}")),
            Err(Violation::UnsafeFunction { .. })
        ));
        assert_eq!(
            run(&format!(
                "SELECT PG_CATALOG.LOWER(name), pg_catalog.count(*) {SCOPED} GROUP BY name"
            )),
            Ok(())
        );
    }

    #[test]
    fn table_functions_are_allowed_only_as_from_items() {
        assert_eq!(run("SELECT * FROM generate_series(1, 3) g"), Ok(()));
        assert_eq!(run("SELECT * FROM jsonb_array_elements_text($2) e"), Ok(()));
        assert_eq!(
            run("SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(x, n)"),
            Ok(())
        );
        assert_eq!(run("SELECT * FROM pg_catalog.unnest(ARRAY[1, 2])"), Ok(()));
        assert_eq!(
            run("SELECT generate_series(1, 3)"),
            unknown("generate_series")
        );
        assert_eq!(run("SELECT * FROM lower('x')"), unknown("lower"));
    }

    #[test]
    fn allowed_builtins_and_registered_functions_pass() {
        for sql in [
            "SELECT count(*), sum(total), avg(total), min(total), max(total), bool_and(paid), every(paid), string_agg(name, ',' ORDER BY name), jsonb_agg(id), array_agg(DISTINCT id) FROM invoices WHERE org_id = $1",
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total), mode() WITHIN GROUP (ORDER BY name) FROM invoices WHERE org_id = $1",
            "SELECT row_number() OVER (ORDER BY id), lag(total, 1) OVER w, ntile(4) OVER w FROM invoices WHERE org_id = $1 WINDOW w AS (PARTITION BY name ORDER BY id)",
            "SELECT coalesce(name, ''), nullif(name, ''), greatest(1, 2), lower(name), upper(name), length(name), substr(name, 1, 2), concat_ws('-', name, id), split_part(name, ' ', 1), md5(name), regexp_replace(name, 'a', 'b'), format('%s', name) FROM invoices WHERE org_id = $1",
            "SELECT now(), CURRENT_TIMESTAMP, current_date, LOCALTIMESTAMP, date_trunc('day', created_at), extract(year FROM created_at), age(created_at), make_interval(days => 1), to_char(created_at, 'YYYY') FROM invoices WHERE org_id = $1",
            "SELECT abs(total), round(total, 2), ceil(total), floor(total), power(total, 2), mod(id, 2), random(), gen_random_uuid() FROM invoices WHERE org_id = $1",
            "SELECT jsonb_build_object('a', id), data -> 'a', data ->> 'b', jsonb_set(data, '{a}', '1'), jsonb_extract_path_text(data, 'a'), array_length(tags, 1), cardinality(tags), array_to_string(tags, ',') FROM invoices WHERE org_id = $1",
            "SELECT ARRAY(SELECT id FROM invoices WHERE org_id = $1)",
            "SELECT billing.net_total(total), BILLING.NET_TOTAL(total), tax(total) FROM invoices WHERE org_id = $1",
            "SELECT * FROM billing.net_total(1)",
        ] {
            assert_eq!(run(sql), Ok(()), "{sql}");
        }
        // A registered name is matched exactly: not under another schema, nor unqualified.
        assert_eq!(
            run(&format!("SELECT net_total(1) {SCOPED}")),
            unknown("net_total")
        );
        assert_eq!(
            run(&format!("SELECT public.tax(1) {SCOPED}")),
            unknown("public.tax")
        );
    }

    #[test]
    fn registering_an_unsafe_builtin_does_not_allow_it() {
        let t = Tables::new([("invoices", Some("org_id"))]).with_functions([
            ("query_to_xml", "it is mine"),
            ("pg_catalog.query_to_xml", "it is mine"),
            ("set_config", "it is mine"),
            ("pg_catalog.f", "it is mine"),
        ]);
        let run = |sql: &str| check(sql, &t, &|p: &str| p == "$1");
        assert_eq!(
            run("SELECT query_to_xml('x', true, true, '')"),
            unsafe_fn("query_to_xml", RUNS_SQL)
        );
        assert_eq!(
            run("SELECT pg_catalog.query_to_xml('x', true, true, '')"),
            unsafe_fn("pg_catalog.query_to_xml", RUNS_SQL)
        );
        assert_eq!(
            run("SELECT set_config('a', 'b', true)"),
            Err(Violation::ChangesSessionSetting("set_config".into()))
        );
        assert!(matches!(
            run("SELECT pg_catalog.f(1)"),
            Err(Violation::UnsafeFunction { .. })
        ));
    }

    #[test]
    fn symbolic_mode_requires_unknown_functions_to_be_registered() {
        let reqs = |sql: &str| requirements(sql, &|p: &str| p == "$org");
        assert_eq!(
            reqs(
                "SELECT my_fn(id), billing.net_total(id), my_fn(2), lower(name) FROM invoices WHERE org_id = $org"
            ),
            Ok(vec![
                Requirement::Read {
                    table: "invoices".into(),
                    constrained: vec!["org_id".into()]
                },
                Requirement::Function {
                    name: "my_fn".into()
                },
                Requirement::Function {
                    name: "billing.net_total".into()
                },
            ])
        );
        assert_eq!(
            reqs("SELECT * FROM f()"),
            Ok(vec![Requirement::Function { name: "f".into() }])
        );
        // Unsafe built-ins are refused outright: no registration can allow them.
        assert_eq!(
            reqs("SELECT query_to_xml('x', true, true, '')"),
            Err(Violation::UnsafeFunction {
                name: "query_to_xml".into(),
                reason: RUNS_SQL.into()
            })
        );
        assert_eq!(
            reqs("SELECT * FROM set_config('a', 'b', true)"),
            Err(Violation::ChangesSessionSetting("set_config".into()))
        );
    }
}
