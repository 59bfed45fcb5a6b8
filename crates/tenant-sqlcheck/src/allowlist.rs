//! The built-in functions by what they are known to do: a curated allowlist of those safe in
//! an org-scoped statement (with where they may be called), the catalog functions the audit
//! connection may call in addition, and the built-ins known to be unsafe.
//!
//! Invariant: a name is on the allowlist only with a reason saying why it runs no SQL of its
//! own, changes no setting or session state, and reads nothing outside the statement's rows;
//! no name is both allowed and known unsafe; every table is sorted (looked up by binary
//! search, with no allocation).

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, Value};

/// Where a function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In an expression: select list, WHERE, ORDER BY, VALUES, SET, ...
    Expression,
    /// As a FROM item (a table function).
    From,
}

/// A group of built-ins with the reason they are safe, and where they may be called.
pub(crate) struct Group {
    /// Where the built-ins of the group may be called.
    pub(crate) place: Place,
    /// Why they are safe (documentation that travels with the table; read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) reason: &'static str,
}

const fn expr(reason: &'static str) -> Group {
    Group {
        place: Place::Expression,
        reason,
    }
}

static AGG: Group = expr("aggregate: folds the statement's own rows");
static WINDOW: Group = expr("window function: ranks or reads rows of the statement's own window");
static COND: Group = expr("conditional: picks among its arguments");
static STRING: Group = expr("string function: computes on its arguments only");
static MATH: Group =
    expr("math function: computes on its arguments (random: the session's generator)");
static CLOCK: Group = expr("clock: reads the current time, nothing else");
static DATETIME: Group = expr("date/time or formatting function: computes on its arguments");
static JSON: Group = expr("json(b) function: builds or reads the value it is given");
static ARRAY: Group = expr("array function: computes on the array it is given");
static UUID: Group = expr("generates a random UUID");
static RANGE: Group = expr("range function: reads the bounds of the range it is given");
static TABLE: Group = Group {
    place: Place::From,
    reason: "table function: expands the value it is given into rows (FROM items only)",
};

/// Built-ins safe in every org-scoped statement, sorted by name (binary search).
pub(crate) static BUILTINS: &[(&str, &Group)] = &[
    ("abs", &MATH),
    ("age", &DATETIME),
    ("array_agg", &AGG),
    ("array_append", &ARRAY),
    ("array_cat", &ARRAY),
    ("array_dims", &ARRAY),
    ("array_fill", &ARRAY),
    ("array_length", &ARRAY),
    ("array_lower", &ARRAY),
    ("array_ndims", &ARRAY),
    ("array_position", &ARRAY),
    ("array_positions", &ARRAY),
    ("array_prepend", &ARRAY),
    ("array_remove", &ARRAY),
    ("array_replace", &ARRAY),
    ("array_to_string", &ARRAY),
    ("array_upper", &ARRAY),
    ("ascii", &STRING),
    ("avg", &AGG),
    ("bit_and", &AGG),
    ("bit_length", &STRING),
    ("bit_or", &AGG),
    ("bool_and", &AGG),
    ("bool_or", &AGG),
    ("btrim", &STRING),
    ("cardinality", &ARRAY),
    ("cbrt", &MATH),
    ("ceil", &MATH),
    ("ceiling", &MATH),
    ("char_length", &STRING),
    ("character_length", &STRING),
    ("chr", &STRING),
    ("clock_timestamp", &CLOCK),
    ("coalesce", &COND),
    ("concat", &STRING),
    ("concat_ws", &STRING),
    ("corr", &AGG),
    ("count", &AGG),
    ("covar_pop", &AGG),
    ("covar_samp", &AGG),
    ("cume_dist", &WINDOW),
    ("current_date", &CLOCK),
    ("current_time", &CLOCK),
    ("current_timestamp", &CLOCK),
    ("date", &DATETIME),
    ("date_bin", &DATETIME),
    ("date_part", &DATETIME),
    ("date_trunc", &DATETIME),
    ("decode", &STRING),
    ("degrees", &MATH),
    ("dense_rank", &WINDOW),
    ("div", &MATH),
    ("encode", &STRING),
    ("every", &AGG),
    ("exp", &MATH),
    ("extract", &DATETIME),
    ("first_value", &WINDOW),
    ("floor", &MATH),
    ("format", &STRING),
    ("gen_random_uuid", &UUID),
    ("generate_series", &TABLE),
    ("greatest", &COND),
    ("grouping", &AGG),
    ("initcap", &STRING),
    ("isempty", &RANGE),
    ("isfinite", &DATETIME),
    ("json_agg", &AGG),
    ("json_array_elements", &TABLE),
    ("json_array_elements_text", &TABLE),
    ("json_array_length", &JSON),
    ("json_build_array", &JSON),
    ("json_build_object", &JSON),
    ("json_each", &TABLE),
    ("json_each_text", &TABLE),
    ("json_extract_path", &JSON),
    ("json_extract_path_text", &JSON),
    ("json_object", &JSON),
    ("json_object_agg", &AGG),
    ("json_strip_nulls", &JSON),
    ("json_typeof", &JSON),
    ("jsonb_agg", &AGG),
    ("jsonb_array_elements", &TABLE),
    ("jsonb_array_elements_text", &TABLE),
    ("jsonb_array_length", &JSON),
    ("jsonb_build_array", &JSON),
    ("jsonb_build_object", &JSON),
    ("jsonb_each", &TABLE),
    ("jsonb_each_text", &TABLE),
    ("jsonb_extract_path", &JSON),
    ("jsonb_extract_path_text", &JSON),
    ("jsonb_insert", &JSON),
    ("jsonb_object", &JSON),
    ("jsonb_object_agg", &AGG),
    ("jsonb_pretty", &JSON),
    ("jsonb_set", &JSON),
    ("jsonb_set_lax", &JSON),
    ("jsonb_strip_nulls", &JSON),
    ("jsonb_typeof", &JSON),
    ("justify_days", &DATETIME),
    ("justify_hours", &DATETIME),
    ("justify_interval", &DATETIME),
    ("lag", &WINDOW),
    ("last_value", &WINDOW),
    ("lead", &WINDOW),
    ("least", &COND),
    ("left", &STRING),
    ("length", &STRING),
    ("ln", &MATH),
    ("localtime", &CLOCK),
    ("localtimestamp", &CLOCK),
    ("log", &MATH),
    ("log10", &MATH),
    ("lower", &STRING),
    ("lower_inc", &RANGE),
    ("lower_inf", &RANGE),
    ("lpad", &STRING),
    ("ltrim", &STRING),
    ("make_date", &DATETIME),
    ("make_interval", &DATETIME),
    ("make_time", &DATETIME),
    ("make_timestamp", &DATETIME),
    ("make_timestamptz", &DATETIME),
    ("max", &AGG),
    ("md5", &STRING),
    ("min", &AGG),
    ("mod", &MATH),
    ("mode", &AGG),
    ("now", &CLOCK),
    ("nth_value", &WINDOW),
    ("ntile", &WINDOW),
    ("nullif", &COND),
    ("octet_length", &STRING),
    ("percent_rank", &WINDOW),
    ("percentile_cont", &AGG),
    ("percentile_disc", &AGG),
    ("pi", &MATH),
    ("position", &STRING),
    ("power", &MATH),
    ("radians", &MATH),
    ("random", &MATH),
    ("range_merge", &RANGE),
    ("rank", &WINDOW),
    ("regexp_match", &STRING),
    ("regexp_replace", &STRING),
    ("regexp_split_to_table", &TABLE),
    ("repeat", &STRING),
    ("replace", &STRING),
    ("reverse", &STRING),
    ("right", &STRING),
    ("round", &MATH),
    ("row_number", &WINDOW),
    ("row_to_json", &JSON),
    ("rpad", &STRING),
    ("rtrim", &STRING),
    ("sign", &MATH),
    ("split_part", &STRING),
    ("sqrt", &MATH),
    ("starts_with", &STRING),
    ("statement_timestamp", &CLOCK),
    ("stddev", &AGG),
    ("stddev_pop", &AGG),
    ("stddev_samp", &AGG),
    ("string_agg", &AGG),
    ("string_to_array", &ARRAY),
    ("strpos", &STRING),
    ("substr", &STRING),
    ("substring", &STRING),
    ("sum", &AGG),
    ("to_char", &DATETIME),
    ("to_date", &DATETIME),
    ("to_hex", &STRING),
    ("to_json", &JSON),
    ("to_jsonb", &JSON),
    ("to_number", &DATETIME),
    ("to_timestamp", &DATETIME),
    ("transaction_timestamp", &CLOCK),
    ("translate", &STRING),
    ("trim_array", &ARRAY),
    ("trunc", &MATH),
    ("unnest", &TABLE),
    ("upper", &STRING),
    ("upper_inc", &RANGE),
    ("upper_inf", &RANGE),
    ("var_pop", &AGG),
    ("var_samp", &AGG),
    ("variance", &AGG),
];

static CATALOG_TEXT: Group =
    expr("prints a catalog object's name or definition: catalog data only");
static PRIVILEGE: Group = expr("reads privileges from the catalog");
static SESSION_INFO: Group = expr("names the session's role, database or schema");
static ACL: Group = Group {
    place: Place::From,
    reason: "expands the ACL array it is given into rows",
};

/// Built-ins allowed in addition on the audit connection (catalog-only queries), which reads
/// catalog data by design; sorted by name. Nothing here runs SQL, changes state or reads rows.
pub(crate) static CATALOG: &[(&str, &Group)] = &[
    ("aclexplode", &ACL),
    ("col_description", &CATALOG_TEXT),
    ("current_database", &SESSION_INFO),
    ("current_schema", &SESSION_INFO),
    ("current_user", &SESSION_INFO),
    ("format_type", &CATALOG_TEXT),
    ("has_any_column_privilege", &PRIVILEGE),
    ("has_column_privilege", &PRIVILEGE),
    ("has_database_privilege", &PRIVILEGE),
    ("has_function_privilege", &PRIVILEGE),
    ("has_schema_privilege", &PRIVILEGE),
    ("has_sequence_privilege", &PRIVILEGE),
    ("has_table_privilege", &PRIVILEGE),
    ("obj_description", &CATALOG_TEXT),
    ("pg_get_constraintdef", &CATALOG_TEXT),
    ("pg_get_expr", &CATALOG_TEXT),
    ("pg_get_function_arguments", &CATALOG_TEXT),
    ("pg_get_function_identity_arguments", &CATALOG_TEXT),
    ("pg_get_function_result", &CATALOG_TEXT),
    ("pg_get_functiondef", &CATALOG_TEXT),
    ("pg_get_indexdef", &CATALOG_TEXT),
    ("pg_get_ruledef", &CATALOG_TEXT),
    ("pg_get_serial_sequence", &CATALOG_TEXT),
    ("pg_get_triggerdef", &CATALOG_TEXT),
    ("pg_get_userbyid", &CATALOG_TEXT),
    ("pg_get_viewdef", &CATALOG_TEXT),
    ("pg_has_role", &PRIVILEGE),
    ("pg_partition_root", &CATALOG_TEXT),
    ("pg_table_is_visible", &CATALOG_TEXT),
    ("quote_ident", &CATALOG_TEXT),
    ("quote_literal", &CATALOG_TEXT),
    ("session_user", &SESSION_INFO),
    ("to_regclass", &CATALOG_TEXT),
    ("to_regnamespace", &CATALOG_TEXT),
    ("to_regproc", &CATALOG_TEXT),
    ("to_regprocedure", &CATALOG_TEXT),
    ("to_regrole", &CATALOG_TEXT),
    ("to_regtype", &CATALOG_TEXT),
    ("version", &SESSION_INFO),
];

/// Settings the audit connection may read with `current_setting('<name>')`: the server's
/// version, never a session's own settings (the signed org token lives in one).
const SERVER_SETTINGS: &[&str] = &["server_version", "server_version_num"];

pub(crate) const RUNS_SQL: &str = "runs SQL given to it as text (or reads a cursor of the session)";
pub(crate) const BY_NAME: &str = "reads a whole table, schema or database named by its arguments";
pub(crate) const CATALOG_BY_NAME: &str =
    "looks catalog objects up by name and reads data about them";
pub(crate) const SEQUENCE: &str = "reads or changes a sequence's session state";
pub(crate) const LARGE_OBJECT: &str = "reads or writes large objects";

/// Built-ins known to be unsafe in an org-scoped statement, sorted by name; registering a
/// function of the same name does not allow them.
pub(crate) static UNSAFE: &[(&str, &str)] = &[
    ("col_description", CATALOG_BY_NAME),
    (
        "current_setting",
        "reads session settings (such as the signed org token)",
    ),
    ("currval", SEQUENCE),
    ("cursor_to_xml", RUNS_SQL),
    ("cursor_to_xmlschema", RUNS_SQL),
    ("database_to_xml", BY_NAME),
    ("database_to_xml_and_xmlschema", BY_NAME),
    ("database_to_xmlschema", BY_NAME),
    ("has_any_column_privilege", CATALOG_BY_NAME),
    ("has_column_privilege", CATALOG_BY_NAME),
    ("has_database_privilege", CATALOG_BY_NAME),
    ("has_foreign_data_wrapper_privilege", CATALOG_BY_NAME),
    ("has_function_privilege", CATALOG_BY_NAME),
    ("has_language_privilege", CATALOG_BY_NAME),
    ("has_parameter_privilege", CATALOG_BY_NAME),
    ("has_schema_privilege", CATALOG_BY_NAME),
    ("has_sequence_privilege", CATALOG_BY_NAME),
    ("has_server_privilege", CATALOG_BY_NAME),
    ("has_table_privilege", CATALOG_BY_NAME),
    ("has_tablespace_privilege", CATALOG_BY_NAME),
    ("has_type_privilege", CATALOG_BY_NAME),
    ("lastval", SEQUENCE),
    ("loread", LARGE_OBJECT),
    ("lowrite", LARGE_OBJECT),
    ("nextval", SEQUENCE),
    ("obj_description", CATALOG_BY_NAME),
    ("query_to_xml", RUNS_SQL),
    ("query_to_xml_and_xmlschema", RUNS_SQL),
    ("query_to_xmlschema", RUNS_SQL),
    ("schema_to_xml", BY_NAME),
    ("schema_to_xml_and_xmlschema", BY_NAME),
    ("schema_to_xmlschema", BY_NAME),
    ("set_config", "changes a setting of the session"),
    ("setseed", "changes the session's random generator"),
    ("setval", SEQUENCE),
    ("shobj_description", CATALOG_BY_NAME),
    ("table_to_xml", BY_NAME),
    ("table_to_xml_and_xmlschema", BY_NAME),
    ("table_to_xmlschema", BY_NAME),
    ("to_regclass", CATALOG_BY_NAME),
    ("to_regcollation", CATALOG_BY_NAME),
    ("to_regnamespace", CATALOG_BY_NAME),
    ("to_regoper", CATALOG_BY_NAME),
    ("to_regoperator", CATALOG_BY_NAME),
    ("to_regproc", CATALOG_BY_NAME),
    ("to_regprocedure", CATALOG_BY_NAME),
    ("to_regrole", CATALOG_BY_NAME),
    ("to_regtype", CATALOG_BY_NAME),
    ("to_regtypemod", CATALOG_BY_NAME),
    ("ts_rewrite", RUNS_SQL),
    ("ts_stat", RUNS_SQL),
];

/// Families of unsafe built-ins, by prefix.
pub(crate) static UNSAFE_PREFIXES: &[(&str, &str)] = &[
    ("dblink", "connects to another database and runs SQL there"),
    ("lo_", LARGE_OBJECT),
    (
        "pg_",
        "is a system function (they read files, other sessions, catalog data about relations, \
         or change session state: advisory locks, NOTIFY, settings, backends)",
    ),
    ("txid_", "reads transaction state of the server"),
];

pub(crate) fn lookup<'g>(table: &[(&str, &'g Group)], name: &str) -> Option<&'g Group> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, g)| *g)
}

/// Why built-in `name` is unsafe, if it is known to be.
pub(crate) fn unsafe_reason(name: &str) -> Option<&'static str> {
    if let Ok(i) = UNSAFE.binary_search_by(|(n, _)| (*n).cmp(name)) {
        return UNSAFE.get(i).map(|(_, r)| *r);
    }
    UNSAFE_PREFIXES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, r)| *r)
}

/// Whether the audit connection may call `name`: a catalog function, or `current_setting` of
/// a server setting named by a literal.
pub(crate) fn catalog_allowed(name: &str, args: &[FunctionArg], place: Place) -> bool {
    if lookup(CATALOG, name).is_some_and(|g| g.place == place) {
        return true;
    }
    name == "current_setting"
        && place == Place::Expression
        && matches!(
            args,
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))]
                if matches!(&v.value, Value::SingleQuotedString(s) if SERVER_SETTINGS.contains(&s.as_str()))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<T>(table: &[(&str, T)]) -> bool {
        table.windows(2).all(|w| w[0].0 < w[1].0)
    }

    #[test]
    fn the_tables_are_sorted_and_the_lists_disjoint() {
        assert!(sorted(BUILTINS));
        assert!(sorted(CATALOG));
        assert!(sorted(UNSAFE));
        for (name, group) in BUILTINS {
            assert!(
                unsafe_reason(name).is_none(),
                "{name} is allowed and unsafe"
            );
            assert!(!group.reason.is_empty());
        }
        for (name, group) in CATALOG {
            assert!(lookup(BUILTINS, name).is_none(), "{name} is in both");
            assert!(!group.reason.is_empty());
        }
        for (name, _) in UNSAFE {
            assert!(lookup(BUILTINS, name).is_none(), "{name}");
        }
    }

    #[test]
    fn lookups_find_names_and_places() {
        assert_eq!(
            lookup(BUILTINS, "lower").map(|g| g.place),
            Some(Place::Expression)
        );
        assert_eq!(
            lookup(BUILTINS, "generate_series").map(|g| g.place),
            Some(Place::From)
        );
        assert!(lookup(BUILTINS, "current_setting").is_none());
        assert_eq!(unsafe_reason("query_to_xml"), Some(RUNS_SQL));
        assert_eq!(unsafe_reason("lo_import"), Some(LARGE_OBJECT));
        assert!(unsafe_reason("pg_sleep").is_some());
        assert!(unsafe_reason("lower").is_none());
    }
}
