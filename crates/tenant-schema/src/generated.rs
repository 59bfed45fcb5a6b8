//! What the generator writes, read back: the functions of the shared objects (the access
//! log's and the signed context's) as the server stores them, and the policies it puts on
//! every tenant table as the server prints them, so that the audit can tell a generated object
//! from one changed after it was applied.
//!
//! The SECURITY DEFINER functions tenant-schema generates run with the table owner's rights
//! and decide who sees which org (`granted_org`, `enter_access`, the signed verifier): a body
//! changed by hand (to skip the access log, say) would keep its name and its grants. The audit
//! compares each function of a generated name with what this version generates, in either
//! context mode (some bodies differ between them).

use crate::options::{ContextMode, RlsOptions, Target};

/// One generated function, as `pg_proc` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GeneratedFunction {
    /// Schema.
    pub schema: String,
    /// Name (without arguments).
    pub name: String,
    /// SECURITY DEFINER.
    pub security_definer: bool,
    /// `proconfig` as the catalog reader joins it (`search_path=pg_catalog, pg_temp`).
    pub config: String,
    /// The body (`prosrc`).
    pub source: String,
}

/// Every function the shared objects define, in both context modes and for both targets (a
/// function whose body is the same in several appears once).
pub(crate) fn functions(options: &RlsOptions) -> Vec<GeneratedFunction> {
    let mut out: Vec<GeneratedFunction> = Vec::new();
    for context in [ContextMode::TrustEveryStatement, ContextMode::Signed] {
        let o = RlsOptions {
            context,
            ..options.clone()
        };
        let mut sql = crate::pg::shared_objects(&o);
        // Citus takes the plain context only, and its break-glass functions differ
        // (`operator_citus.rs`); on a server without Citus they fail closed.
        if context == ContextMode::TrustEveryStatement {
            sql.push_str(&crate::pg::preamble_for(&o, Target::Citus));
        }
        for f in parse(&sql) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// The functions `CREATE OR REPLACE FUNCTION schema.name(...) ... AS $fn$body$fn$` of `sql`.
fn parse(sql: &str) -> Vec<GeneratedFunction> {
    const CREATE: &str = "CREATE OR REPLACE FUNCTION ";
    const OPEN: &str = " AS $fn$";
    const CLOSE: &str = "$fn$";
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find(CREATE) {
        rest = &rest[at + CREATE.len()..];
        let (Some(paren), Some(open)) = (rest.find('('), rest.find(OPEN)) else {
            break;
        };
        let header = &rest[..open];
        let body_and_rest = &rest[open + OPEN.len()..];
        let Some(close) = body_and_rest.find(CLOSE) else {
            break;
        };
        let (schema, name) = rest[..paren]
            .split_once('.')
            .unwrap_or(("public", &rest[..paren]));
        let config = header
            .split_once("SET search_path = ")
            .map(|(_, path)| format!("search_path={}", path.trim()))
            .unwrap_or_default();
        out.push(GeneratedFunction {
            schema: unquote(schema),
            name: unquote(name),
            security_definer: header.contains("SECURITY DEFINER"),
            config,
            source: body_and_rest[..close].to_owned(),
        });
        rest = &body_and_rest[close + CLOSE.len()..];
    }
    out
}

/// One policy the generator puts on every tenant table, with the texts the server may print
/// for it (one per policy form and context mode the generator has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GeneratedPolicy {
    /// Name.
    pub name: String,
    /// PERMISSIVE (else RESTRICTIVE).
    pub permissive: bool,
    /// `polcmd`: `*` all, `r` select.
    pub cmd: &'static str,
    /// The roles, as the catalog reader joins them (`public` for all), each accepted form.
    pub roles: Vec<String>,
    /// USING as `pg_get_expr` prints it, each accepted form.
    pub using: Vec<String>,
    /// WITH CHECK likewise (empty: none).
    pub check: Vec<String>,
}

/// The org policy's expression as the server prints it, by mode: the plain setting's forms
/// (sub-select, inline), then the signed context's.
pub(crate) fn org_forms(o: &RlsOptions, column: &str) -> [Vec<String>; 2] {
    let col = printed_ident(column);
    let setting = crate::sql::literal(&o.setting);
    let inline_org = format!("(NULLIF(current_setting({setting}::text, true), ''::text))::uuid");
    [
        vec![
            format!("({col} = ( SELECT {inline_org} AS \"nullif\"))"),
            format!("({col} = {inline_org})"),
        ],
        vec![format!(
            "({col} = ( SELECT {view}.org FROM {schema}.{view}))",
            view = crate::context::ORG_VIEW,
            schema = crate::context::CONTEXT_SCHEMA
        )],
    ]
}

/// The policies the generator writes on a tenant table whose org column is `column`, as the
/// server prints them back (the audit compares with `normalized_printed_text`). The org policy
/// reads the org in the sub-select form, the inline form (Citus) or the signed form; the
/// operator's policies call `granted_org` in a sub-select or inline. A test audits databases
/// generated in each of them (the story, the signed story, the inline form) and finds nothing.
pub(crate) fn policies(o: &RlsOptions, column: &str) -> Vec<GeneratedPolicy> {
    let col = printed_ident(column);
    let org = org_forms(o, column).concat();
    let granted = |write: bool| {
        let audit = printed_ident(&o.audit_schema);
        vec![
            format!("({col} = ( SELECT {audit}.granted_org({write}) AS granted_org))"),
            format!("({col} = {audit}.granted_org({write}))"),
        ]
    };
    vec![
        GeneratedPolicy {
            name: o.policy.clone(),
            permissive: false,
            cmd: "*",
            // Every role on PostgreSQL; the application role on Citus, which recreates the
            // policy on its shards as permissive (`citus.rs`).
            roles: vec!["public".to_owned(), o.app_role.clone()],
            using: org.clone(),
            check: org.clone(),
        },
        GeneratedPolicy {
            name: o.base_policy.clone(),
            permissive: true,
            cmd: "*",
            roles: vec![o.app_role.clone()],
            using: org.clone(),
            check: org.clone(),
        },
        GeneratedPolicy {
            name: o.operator_read_policy.clone(),
            permissive: true,
            cmd: "r",
            roles: vec![o.operator_role.clone()],
            using: granted(false),
            check: vec![String::new()],
        },
        GeneratedPolicy {
            name: o.operator_write_policy.clone(),
            permissive: true,
            cmd: "*",
            roles: vec![o.operator_role.clone()],
            using: granted(true),
            check: granted(true),
        },
        GeneratedPolicy {
            name: o.owner_lookup_policy.clone(),
            permissive: true,
            cmd: "r",
            roles: vec![o.owner_role.clone()],
            using: vec!["true".to_owned()],
            check: vec![String::new()],
        },
    ]
}

/// An identifier as the server prints it: bare when it is lower case letters, digits and
/// underscores (not starting with a digit), quoted otherwise. (Key words would be quoted too;
/// the generated names are none.)
fn printed_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        crate::sql::ident(name)
    }
}

/// An identifier as the generator writes it (`crate::sql::ident`), as the catalog holds it.
fn unquote(ident: &str) -> String {
    ident
        .strip_prefix('"')
        .and_then(|i| i.strip_suffix('"'))
        .map_or_else(|| ident.to_owned(), |i| i.replace("\"\"", "\""))
}

/// The name of a function as the catalog reader gives it (`oid::regprocedure::text`: the
/// schema only when it is not on the reader's path, then the arguments), without schema and
/// arguments.
pub(crate) fn bare_name(catalog_name: &str) -> &str {
    let without_args = catalog_name.split('(').next().unwrap_or(catalog_name);
    without_args.rsplit('.').next().unwrap_or(without_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_security_definer_function_of_both_modes_is_read_back_with_its_body() {
        let o = RlsOptions::default();
        let all = functions(&o);
        let mut definers: Vec<String> = all
            .iter()
            .filter(|f| f.security_definer)
            .map(|f| format!("{}.{}", f.schema, f.name))
            .collect();
        definers.sort();
        definers.dedup();
        assert_eq!(
            definers,
            [
                "tenant_audit.enter_access",
                "tenant_audit.granted_org",
                "tenant_audit.record_event",
                "tenant_audit.request_access",
                "tenant_context.add_key",
                "tenant_context.mac",
                "tenant_context.retire_key",
                "tenant_context.sign_for_this_backend",
                "tenant_context.verified_org",
            ]
        );
        for f in all.iter().filter(|f| f.security_definer) {
            assert_eq!(
                f.config, "search_path=pg_catalog, pg_temp",
                "{}.{}",
                f.schema, f.name
            );
            assert!(!f.source.contains("$fn$") && !f.source.trim().is_empty());
        }
        let verifier = all.iter().find(|f| f.name == "verified_org").unwrap();
        assert_eq!(verifier.source, crate::context::verified_org_body());
    }

    #[test]
    fn names_print_bare_unless_the_server_would_quote_them() {
        assert_eq!(printed_ident("org_id"), "org_id");
        assert_eq!(printed_ident("tenant_audit"), "tenant_audit");
        assert_eq!(printed_ident("OrgId"), "\"OrgId\"");
        assert_eq!(printed_ident("1org"), "\"1org\"");
        let generated = policies(&RlsOptions::default(), "Org Id");
        assert!(generated[0].using[0].starts_with("(\"Org Id\" = "));
        assert_eq!(
            generated.len(),
            5,
            "the org policy and four permissive ones"
        );
    }

    #[test]
    fn a_catalog_name_loses_its_schema_and_arguments() {
        assert_eq!(
            bare_name("tenant_audit.granted_org(boolean)"),
            "granted_org"
        );
        assert_eq!(bare_name("granted_org(boolean)"), "granted_org");
        assert_eq!(unquote("\"tenant_audit\""), "tenant_audit");
        assert_eq!(unquote("\"a\"\"b\""), "a\"b");
        assert_eq!(unquote("tenant_context"), "tenant_context");
        assert_eq!(
            bare_name("tenant_context.retire_key(text,timestamp with time zone)"),
            "retire_key"
        );
    }
}
