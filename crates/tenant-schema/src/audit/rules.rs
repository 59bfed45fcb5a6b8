//! The audit rules: each a pure function of the catalog snapshot, with a stable id.

use tenant_lint::Registry;

use super::tables::{
    confines, is_registered, is_tenant, org_policy_of, partition_of_tenant, policy_table, relation,
    tenant_tables,
};
use super::{AuditOptions, Catalog, Finding, Relation, Severity};

type Rule = fn(&Catalog, &Registry, &AuditOptions) -> Vec<Finding>;

/// Every rule, by id. The ids are stable: evidence and suppressions refer to them.
pub const RULES: &[(&str, Rule)] = &[
    ("registered-table-missing", registered_table_missing),
    ("rls-not-enabled", rls_not_enabled),
    ("rls-not-forced", rls_not_forced),
    ("tenant-policy-missing", tenant_policy_missing),
    ("policy-always-true", policy_always_true),
    ("policy-has-or", policy_has_or),
    ("policy-reads-org-per-row", policy_reads_org_per_row),
    ("policy-function-volatility", policy_function_volatility),
    ("unexpected-permissive-policy", unexpected_permissive_policy),
    ("app-role", app_role),
    ("app-role-owns-tenant-table", app_role_owns_tenant_table),
    ("forbidden-privilege", forbidden_privilege),
    ("unique-without-org", unique_without_org),
    ("foreign-key-without-org", foreign_key_without_org),
    ("sequence-key", sequence_key),
    (
        "view-without-security-invoker",
        view_without_security_invoker,
    ),
    ("security-definer-function", security_definer_function),
    ("generated-object-changed", generated_object_changed),
    ("access-log-not-append-only", access_log_not_append_only),
    ("access-log-writable", access_log_writable),
    ("context-keys-readable", context_keys_readable),
    ("operator-key-readable", operator_key_readable),
    ("leakproof-function", leakproof_function),
    ("partition-not-protected", partition_not_protected),
    ("index-unusable-under-rls", index_unusable_under_rls),
    ("foreign-key-without-index", foreign_key_without_index),
    ("unregistered-relation", unregistered_relation),
    ("unregistered-tenant-table", unregistered_tenant_table),
    ("server-version", server_version),
    ("role-can-create", super::powers::role_can_create),
    ("role-can-signal", super::powers::role_can_signal),
    ("role-reads-server", super::powers::role_reads_server),
    ("role-attribute", super::powers::role_attribute),
    (
        "generated-function-executable",
        super::powers::generated_function_executable,
    ),
    ("default-privilege", super::powers::default_privilege),
    ("role-membership", super::powers::role_membership),
    ("role-setting", super::powers::role_setting),
    ("large-object-compat", super::powers::large_object_compat),
    (
        super::context_mode::RULE,
        super::context_mode::org_context_trusts_every_statement,
    ),
    ("code-on-tenant-table", super::code::code_on_tenant_table),
    ("global-table-writable", super::code::global_table_writable),
    (
        "function-on-tenant-row",
        super::row_functions::function_on_tenant_row,
    ),
    (
        "function-cost-below-one",
        super::function_cost::function_cost_below_one,
    ),
];

/// What each rule checks, and the items of the threat model (docs/threat-model.md) it covers: the evidence lists them, so
/// that "no finding" reads as "these were checked and passed". One entry per rule, in
/// [`RULES`] order (a test keeps them in step).
pub const CHECKS: &[(&str, &str, &str)] = &[
    (
        "registered-table-missing",
        "-",
        "every registered table exists",
    ),
    (
        "rls-not-enabled",
        "#1",
        "row-level security is enabled on every tenant table",
    ),
    (
        "rls-not-forced",
        "#1",
        "row-level security is forced, so it binds the owner too",
    ),
    (
        "tenant-policy-missing",
        "#26",
        "a RESTRICTIVE policy confines the org column to the session org",
    ),
    (
        "policy-always-true",
        "#26",
        "no restrictive tenant policy is always true",
    ),
    (
        "policy-has-or",
        "#4, #26",
        "no tenant policy ORs its org condition with anything",
    ),
    (
        "policy-reads-org-per-row",
        "-",
        "the policy reads the org once per statement (performance)",
    ),
    (
        "policy-function-volatility",
        "principle",
        "functions in policies are STABLE: an IMMUTABLE one can be folded into a cached plan for another org",
    ),
    (
        "unexpected-permissive-policy",
        "#26",
        "no PERMISSIVE policy beyond the generated ones widens access",
    ),
    (
        "app-role",
        "#2",
        "the application role is no superuser, has no BYPASSRLS, and cannot become either",
    ),
    (
        "app-role-owns-tenant-table",
        "#1",
        "the application role owns no tenant table, directly or by membership",
    ),
    (
        "forbidden-privilege",
        "#7",
        "the application role holds no TRUNCATE, REFERENCES or TRIGGER on a tenant table",
    ),
    (
        "unique-without-org",
        "#9",
        "every unique key of a tenant table, its primary key included, includes the org column",
    ),
    (
        "foreign-key-without-org",
        "#8",
        "every foreign key between tenant tables includes the org column",
    ),
    (
        "sequence-key",
        "#19",
        "no serial or identity key counts every org's inserts",
    ),
    (
        "view-without-security-invoker",
        "#11",
        "views run with the caller's rights (security_invoker)",
    ),
    (
        "security-definer-function",
        "#13",
        "SECURITY DEFINER functions are listed, each with a fixed search_path",
    ),
    (
        "generated-object-changed",
        "#11, #13, #26",
        "the generated SECURITY DEFINER functions (access log, signed context), the signed context's view and the generated policies on every tenant table are exactly as generated",
    ),
    (
        "access-log-not-append-only",
        "-",
        "the operators' access log refuses UPDATE, DELETE and TRUNCATE (enabled BEFORE triggers run the generated function)",
    ),
    (
        "access-log-writable",
        "-",
        "no role but the log's owner may insert into, change or put triggers on the access log (granted_org trusts its rows)",
    ),
    (
        "context-keys-readable",
        "#5",
        "no role but the key table's owner holds a privilege on the signed context's keys",
    ),
    (
        "operator-key-readable",
        "#38",
        "no role but the key table's owner holds a privilege on the key of the operators' tokens (Citus)",
    ),
    (
        "leakproof-function",
        "#10",
        "non-catalog LEAKPROOF functions are listed",
    ),
    (
        "partition-not-protected",
        "#1",
        "every partition of a tenant table has its parent's protection",
    ),
    (
        "index-unusable-under-rls",
        "-",
        "indexes a non-LEAKPROOF condition cannot use under RLS (performance)",
    ),
    (
        "foreign-key-without-index",
        "-",
        "an index serves every foreign key between tenant tables (purge and restore time)",
    ),
    (
        "unregistered-relation",
        "principle",
        "every relation the application role can reach is registered",
    ),
    (
        "unregistered-tenant-table",
        "principle",
        "no unregistered table has the org column",
    ),
    (
        "server-version",
        "#27",
        "the server is a verified major (15-18) at a release with every fix of the PostgreSQL CVEs that break isolation (RLS bypasses, memory corruption by any SQL user)",
    ),
    (
        "role-can-create",
        "-",
        "neither the application nor the operator role can create objects, temporary ones and large objects included",
    ),
    (
        "role-can-signal",
        "-",
        "neither role can cancel or terminate another session of its own role",
    ),
    (
        "role-reads-server",
        "-",
        "neither role reads the server's files or the catalogs that hold every org's values",
    ),
    (
        "role-attribute",
        "#2",
        "neither role has CREATEROLE, REPLICATION or CREATEDB",
    ),
    (
        "generated-function-executable",
        "#5",
        "each role may run only the generated functions given to it",
    ),
    (
        "default-privilege",
        "-",
        "no default privilege grants either role rights on objects created later",
    ),
    (
        "role-membership",
        "#2",
        "neither role inherits another role's rights (the library's roles, PostgreSQL's data and file roles)",
    ),
    (
        "role-setting",
        "-",
        "neither role starts its sessions with settings other than the generated search path",
    ),
    (
        "large-object-compat",
        "-",
        "large objects keep their access checks (lo_compat_privileges off)",
    ),
    super::context_mode::CHECK,
    (
        "code-on-tenant-table",
        "#13",
        "no rewrite rule on a tenant table or partition; every trigger on one is listed for review",
    ),
    (
        "global-table-writable",
        "-",
        "the application role only reads global tables (writes go through the admin path)",
    ),
    (
        "function-on-tenant-row",
        "#28",
        "no function of a user schema the application role may call on a tenant table's whole row (`t.f`, which the SQL checker reads as a column) unless registered",
    ),
    (
        "function-cost-below-one",
        "#34",
        "no function the application role may run is declared cheaper than one operator (the SQL checker's evaluation-order rule counts each call as one at least)",
    ),
];

fn finding(
    rule: &'static str,
    severity: Severity,
    object: impl Into<String>,
    why: &str,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        rule,
        severity,
        object: object.into(),
        why: why.to_owned(),
        fix: fix.into(),
    }
}

fn registered_table_missing(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    r.tables()
        .filter(|t| relation(c, t.name).is_none())
        .map(|t| {
            finding(
                "registered-table-missing",
                Severity::Error,
                t.name,
                "the registry names this table but the database has no such relation, so the registry and the deployed schema disagree",
                "run the migrations, or remove the table from the registry",
            )
        })
        .collect()
}

fn rls_not_enabled(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    tenant_tables(c, r)
        .into_iter()
        .filter(|(_, rel, _)| !rel.rls)
        .map(|(t, _, _)| {
            finding(
                "rls-not-enabled",
                Severity::Error,
                t.name,
                "row-level security is disabled: every org's rows are visible to the application role",
                format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY (apply the generated migration)", t.name),
            )
        })
        .collect()
}

fn rls_not_forced(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    tenant_tables(c, r)
        .into_iter()
        .filter(|(_, rel, _)| rel.rls && !rel.forced)
        .map(|(t, _, _)| {
            finding(
                "rls-not-forced",
                Severity::Error,
                t.name,
                "row-level security is not forced, so the table owner (and anything running as it) sees every org (docs/threat-model.md #1)",
                format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY", t.name),
            )
        })
        .collect()
}

fn tenant_policy_missing(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, _, col) in tenant_tables(c, r) {
        // The generated org policy, in a form the generator writes, binding the application
        // role: anything else, however close, is a policy the audit cannot vouch for.
        if org_policy_of(c, t.name, col, o).is_some() {
            continue;
        }
        let on_table: Vec<_> = c
            .policies
            .iter()
            .filter(|p| p.table_name == t.name)
            .collect();
        let permissive_only = on_table
            .iter()
            .any(|p| p.permissive && confines(&p.using_expr, col, &o.rls.setting));
        let hand_written = on_table
            .iter()
            .any(|p| !p.permissive && confines(&p.using_expr, col, &o.rls.setting));
        out.push(finding(
            "tenant-policy-missing",
            Severity::Error,
            t.name,
            if permissive_only && !hand_written {
                "the org policy is PERMISSIVE: any other permissive policy is ORed with it and widens access beyond the org (docs/threat-model.md #26)"
            } else if hand_written {
                "a RESTRICTIVE policy names the org, but none is the generated org policy (its form exactly, for all commands, binding the application role): a policy of one's own can let rows through without the org (`... IS NOT FALSE` passes a session with no org, a fallback to a setting lets one statement choose the org, `TO` another role leaves the application unbound)"
            } else {
                "no RESTRICTIVE policy for all commands keys this table's USING and WITH CHECK on the session org"
            },
            "apply the generated migration: CREATE POLICY ... AS RESTRICTIVE FOR ALL USING (org = <the session org>) WITH CHECK (org = <the session org>), in the form the generator writes",
        ));
    }
    out
}

fn policy_always_true(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.policies
        .iter()
        .filter(|p| is_tenant(r, &p.table_name) && !p.permissive)
        .filter(|p| p.using_expr == "true" || p.check_expr == "true")
        .map(|p| {
            finding(
                "policy-always-true",
                Severity::Error,
                format!("{}.{}", p.table_name, p.name),
                "a RESTRICTIVE policy that is always true restricts nothing",
                "drop it, or key it on the org setting",
            )
        })
        .collect()
}

fn policy_has_or(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, _, col) in tenant_tables(c, r) {
        for p in c
            .policies
            .iter()
            .filter(|p| p.table_name == t.name && !p.permissive)
        {
            let keyed = confines(&p.using_expr, col, &o.rls.setting)
                || confines(&p.check_expr, col, &o.rls.setting);
            if keyed && (p.using_expr.contains(" OR ") || p.check_expr.contains(" OR ")) {
                out.push(finding(
                    "policy-has-or",
                    Severity::Error,
                    format!("{}.{}", p.table_name, p.name),
                    "an OR in the tenant policy lets rows through without matching the org: `... IS NULL OR ...` shows every org to a session with no org set (docs/threat-model.md #4)",
                    "key the policy on the org alone: org_id = (SELECT nullif(current_setting('tenant.org_id', true), '')::uuid)",
                ));
            }
        }
    }
    out
}

fn policy_reads_org_per_row(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let needle = format!("current_setting('{}'", o.rls.setting);
    c.policies
        .iter()
        .filter(|p| is_tenant(r, &p.table_name))
        .filter(|p| {
            [&p.using_expr, &p.check_expr].iter().any(|e| {
                // The server prints the once-per-statement form as `( SELECT ... current_setting(`.
                e.match_indices(&needle).any(|(i, _)| !e[..i].contains("( SELECT"))
            })
        })
        .map(|p| {
            finding(
                "policy-reads-org-per-row",
                Severity::Warning,
                format!("{}.{}", p.table_name, p.name),
                "the policy reads the org setting (and casts it) for every row instead of once per statement: measured about 4x slower on a sequential scan",
                "wrap it in a sub-select: org_id = (SELECT nullif(current_setting('tenant.org_id', true), '')::uuid)",
            )
        })
        .collect()
}

fn policy_function_volatility(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &c.policies {
        for f in p.functions.split(',').filter(|f| !f.is_empty()) {
            let (name, volatility) = f.rsplit_once(':').unwrap_or((f, ""));
            let (severity, why) = match volatility {
                "i" => (
                    Severity::Error,
                    "an IMMUTABLE helper is folded into cached plans, so a plan made for one org answers for another",
                ),
                "v" => (
                    Severity::Warning,
                    "a VOLATILE helper is evaluated per row and defeats index use",
                ),
                _ => continue,
            };
            out.push(finding(
                "policy-function-volatility",
                severity,
                format!("{}.{} -> {name}", p.table_name, p.name),
                why,
                format!("ALTER FUNCTION {name} STABLE"),
            ));
        }
    }
    out
}

fn unexpected_permissive_policy(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let partitions: Vec<String> = c
        .relations
        .iter()
        .filter(|rel| partition_of_tenant(rel, r))
        .map(policy_table)
        .collect();
    c.policies
        .iter()
        .filter(|p| {
            (is_tenant(r, &p.table_name) || partitions.contains(&p.table_name))
                && p.permissive
                && ![
                    &o.rls.base_policy,
                    &o.rls.operator_read_policy,
                    &o.rls.operator_write_policy,
                    &o.rls.owner_lookup_policy,
                ]
                .contains(&&p.name)
        })
        .map(|p| {
            finding(
                "unexpected-permissive-policy",
                Severity::Error,
                format!("{}.{}", p.table_name, p.name),
                "a permissive policy the generator did not write: the restrictive org policy still applies, but this one widens what the roles it names may read or write within it (an operator's policies open an org only through a logged grant; this one opens it with none), and nothing reviewed it",
                "drop it, or express what it allows in the registry so the generator writes it",
            )
        })
        .collect()
}

fn app_role(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let Some(role) = &c.app_role else {
        return vec![finding(
            "app-role",
            Severity::Error,
            o.rls.app_role.clone(),
            "the application role does not exist, so nothing could be checked about what it can reach",
            "apply the generated migration, or set the audited role's name in the options",
        )];
    };
    let mut out = Vec::new();
    if role.superuser {
        out.push(finding(
            "app-role",
            Severity::Error,
            role.name.clone(),
            "a superuser bypasses row-level security (docs/threat-model.md #2)",
            format!("ALTER ROLE {} NOSUPERUSER", role.name),
        ));
    }
    if role.bypassrls {
        out.push(finding(
            "app-role",
            Severity::Error,
            role.name.clone(),
            "BYPASSRLS makes row-level security not apply (docs/threat-model.md #2)",
            format!("ALTER ROLE {} NOBYPASSRLS", role.name),
        ));
    }
    for m in role
        .privileged_memberships
        .split(',')
        .filter(|m| !m.is_empty())
    {
        out.push(finding(
            "app-role",
            Severity::Error,
            format!("{} -> {m}", role.name),
            "the application role can SET ROLE to a superuser or BYPASSRLS role (docs/threat-model.md #2)",
            format!("REVOKE {m} FROM {}", role.name),
        ));
    }
    out
}

fn app_role_owns_tenant_table(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    tenant_tables(c, r)
        .into_iter()
        .filter(|(_, rel, _)| rel.app_owns)
        .map(|(t, rel, _)| {
            finding(
                "app-role-owns-tenant-table",
                Severity::Error,
                t.name,
                "the application role owns this table (or is a member of its owner): it can disable RLS or drop its policies (docs/threat-model.md #1, #25)",
                format!("ALTER TABLE {} OWNER TO {} and make sure {} is not a member of {}", t.name, o.rls.owner_role, o.rls.app_role, rel.owner),
            )
        })
        .collect()
}

fn forbidden_privilege(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, rel, _) in tenant_tables(c, r) {
        for (privilege, why) in [
            (
                "TRUNCATE",
                "TRUNCATE ignores row-level security and empties every org (docs/threat-model.md #7)",
            ),
            (
                "REFERENCES",
                "REFERENCES lets the role add foreign keys that probe other orgs' rows (docs/threat-model.md #8)",
            ),
            (
                "TRIGGER",
                "TRIGGER lets the role run code on every org's writes",
            ),
        ] {
            if rel.app_has(privilege) {
                out.push(finding(
                    "forbidden-privilege",
                    Severity::Error,
                    format!("{} ({privilege})", t.name),
                    why,
                    format!("REVOKE {privilege} ON {} FROM {}", t.name, o.rls.app_role),
                ));
            }
        }
    }
    out
}

fn unique_without_org(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, _, col) in tenant_tables(c, r) {
        for k in c
            .constraints
            .iter()
            .filter(|k| k.table_name == t.name && matches!(k.kind.as_str(), "u" | "p" | "i"))
        {
            let cols: Vec<&str> = k.columns.split(',').collect();
            if cols.contains(&col) {
                continue;
            }
            out.push(finding(
                "unique-without-org",
                Severity::Warning,
                format!("{}.{}", t.name, k.name),
                "a unique key without the org column (a primary key too) is an oracle: a duplicate of another org's value raises 23505, and INSERT ... ON CONFLICT DO NOTHING inserts nothing, which proves the value exists (docs/threat-model.md #9)",
                format!("include {col} in the key: UNIQUE ({col}, {})", k.columns.replace(',', ", ")),
            ));
        }
    }
    out
}

fn foreign_key_without_org(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, _, col) in tenant_tables(c, r) {
        for k in c
            .constraints
            .iter()
            .filter(|k| k.table_name == t.name && k.kind == "f")
        {
            let Some(parent) = r.get(&k.ref_table).filter(|e| e.is_tenant()) else {
                continue;
            };
            let parent_col = parent.org_column().unwrap_or_default();
            let pairs: Vec<(&str, &str)> =
                k.columns.split(',').zip(k.ref_columns.split(',')).collect();
            if pairs.contains(&(col, parent_col)) {
                continue;
            }
            out.push(finding(
                "foreign-key-without-org",
                Severity::Error,
                format!("{}.{}", t.name, k.name),
                "a foreign key between tenant tables without the org column lets a row reference (and probe, or cascade into) another org's row: foreign-key checks bypass RLS (docs/threat-model.md #8)",
                format!("FOREIGN KEY ({col}, {}) REFERENCES {} ({parent_col}, {}) with UNIQUE ({parent_col}, {}) on the parent", k.columns, k.ref_table, k.ref_columns, k.ref_columns),
            ));
        }
    }
    out
}

fn sequence_key(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.sequence_columns
        .iter()
        .filter(|s| is_tenant(r, &s.table_name))
        .map(|s| {
            finding(
                "sequence-key",
                Severity::Warning,
                format!("{}.{} ({})", s.table_name, s.column_name, s.kind),
                "a sequence shared by all orgs counts other orgs' inserts (docs/threat-model.md #19)",
                "use uuid keys: DEFAULT gen_random_uuid() or UUIDv7 from the application",
            )
        })
        .collect()
}

/// Whether `rel` is the signed context's view as the generator makes it: owned by the owner
/// role, a security barrier reading the key table and nothing else, and only selectable by the
/// application role. It runs with its owner's rights on purpose (to read the keys), and yields
/// nothing but the verified org, so the rules about owner-run and unregistered views do not
/// apply to it; a view of that name that differs in any of these is reported like any other.
fn is_signed_context_view(rel: &crate::audit::catalog::Relation, o: &AuditOptions) -> bool {
    let s = crate::context::CONTEXT_SCHEMA;
    rel.kind == "v"
        && rel.schema == s
        && rel.name == crate::context::ORG_VIEW
        && rel.owner == o.rls.owner_role
        && rel.reads == format!("{s}.keys")
        && rel.app_privileges == "SELECT"
        && rel
            .options
            .split(',')
            .any(|opt| opt == "security_barrier=true")
}

fn view_without_security_invoker(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.relations
        .iter()
        .filter(|rel| rel.kind == "v" && !rel.app_privileges.is_empty() && !is_signed_context_view(rel, o))
        .filter(|rel| !rel.options.split(',').any(|opt| opt == "security_invoker=true" || opt == "security_invoker=on"))
        .map(|rel| {
            finding(
                "view-without-security-invoker",
                Severity::Error,
                format!("{}.{}", rel.schema, rel.name),
                "the view runs with its owner's rights, so row-level security applies to the owner, not the reader: an owner-run view can return every org's rows (docs/threat-model.md #11)",
                format!("ALTER VIEW {}.{} SET (security_invoker = true)", rel.schema, rel.name),
            )
        })
        .collect()
}

/// `its A and B differ` (`its A differs`): what a generated-object finding says changed.
fn what_differs(d: &[&str]) -> String {
    format!(
        "its {} {}",
        d.join(" and "),
        if d.len() == 1 { "differs" } else { "differ" }
    )
}

/// What of `f` differs from the generated function `g` (owner, search path, body); empty
/// when nothing does.
fn differences(
    f: &crate::audit::catalog::Function,
    g: &crate::generated::GeneratedFunction,
    o: &AuditOptions,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if f.owner != o.rls.owner_role {
        out.push("owner");
    }
    if f.config != g.config {
        out.push("search_path");
    }
    if f.source != g.source {
        out.push("body");
    }
    out
}

/// For each SECURITY DEFINER function of a name the generator uses (in its schema), what
/// differs from the closest generated one (either context mode): empty for a function exactly
/// as generated.
fn against_generated<'c>(
    c: &'c Catalog,
    o: &AuditOptions,
) -> Vec<(&'c crate::audit::catalog::Function, Vec<&'static str>)> {
    let generated = crate::generated::functions(&o.rls);
    c.functions
        .iter()
        .filter(|f| f.security_definer)
        .filter_map(|f| {
            let name = crate::generated::bare_name(&f.name);
            generated
                .iter()
                .filter(|g| g.security_definer && g.schema == f.schema && g.name == name)
                .map(|g| differences(f, g, o))
                .min_by_key(Vec::len)
                .map(|d| (f, d))
        })
        .collect()
}

/// The SECURITY DEFINER functions exactly as the generator writes them (owner, search path,
/// body; `verified_org()`, the access functions): they do what tenant-schema's review says, so
/// the review the security-definer rule asks for is done.
fn generated_functions<'c>(
    c: &'c Catalog,
    o: &AuditOptions,
) -> Vec<&'c crate::audit::catalog::Function> {
    against_generated(c, o)
        .into_iter()
        .filter(|(_, d)| d.is_empty())
        .map(|(f, _)| f)
        .collect()
}

/// The PostgreSQL major versions whose way of printing a view and a policy back was compared
/// with the generator's texts (`crate::context::printed_view_query`,
/// `crate::generated::policies`) by the tests (the story, the signed story and the inline form
/// audit clean; a changed view or policy is an error): 15.20, 16.14, 17.10 and 18.4
/// (`cargo xtask test-matrix`).
const VIEW_TEXT_VERIFIED_ON: &[i32] = super::server_version::VERIFIED_MAJORS;

/// What of the signed context's view differs from the generated one (owner, what it reads,
/// definition); `None` when there is no view of that name.
fn signed_view_against_generated<'c>(
    c: &'c Catalog,
    o: &AuditOptions,
) -> Option<(&'c Relation, Vec<&'static str>)> {
    let view = c.relations.iter().find(|rel| {
        rel.kind == "v"
            && rel.schema == crate::context::CONTEXT_SCHEMA
            && rel.name == crate::context::ORG_VIEW
    })?;
    let mut d = Vec::new();
    if view.owner != o.rls.owner_role {
        d.push("owner");
    }
    if view.reads != format!("{}.keys", crate::context::CONTEXT_SCHEMA) {
        d.push("what it reads");
    }
    if crate::context::normalized_view_text(&view.definition)
        != crate::context::normalized_view_text(&crate::context::printed_view_query(
            c.server.version_num,
        ))
    {
        d.push("definition");
    }
    Some((view, d))
}

/// Each policy of a generated name on a registered tenant table whose kind, command, roles,
/// USING or WITH CHECK differ from every form the generator writes, with what differs.
fn policies_against_generated<'c>(
    c: &'c Catalog,
    r: &Registry,
    o: &AuditOptions,
) -> Vec<(&'c crate::audit::catalog::Policy, Vec<&'static str>)> {
    let same = |printed: &str, forms: &[String]| {
        let printed = crate::context::normalized_printed_text(printed);
        forms
            .iter()
            .any(|f| crate::context::normalized_printed_text(f) == printed)
    };
    let mut out = Vec::new();
    for (t, _, column) in tenant_tables(c, r) {
        let generated = crate::generated::policies(&o.rls, column);
        for p in c.policies.iter().filter(|p| p.table_name == t.name) {
            let Some(g) = generated.iter().find(|g| g.name == p.name) else {
                continue;
            };
            let mut d = Vec::new();
            if p.permissive != g.permissive {
                d.push("kind (PERMISSIVE or RESTRICTIVE)");
            }
            if p.cmd != g.cmd {
                d.push("command");
            }
            if !g.roles.contains(&p.roles) {
                d.push("roles");
            }
            if !same(&p.using_expr, &g.using) {
                d.push("USING");
            }
            if !same(&p.check_expr, &g.check) {
                d.push("WITH CHECK");
            }
            if !d.is_empty() {
                out.push((p, d));
            }
        }
    }
    out
}

/// The access log every break-glass entry writes is append-only only while its triggers
/// fire and run the generated `refuse_change` (which raises): a trigger disabled, dropped,
/// set to fire only on a replica, or a function changed to let the row through, and its
/// owner could rewrite who entered which org.
fn access_log_not_append_only(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let schema = &o.rls.audit_schema;
    let table = format!("{schema}.access_log");
    if table_in(c, schema, "access_log").is_none() {
        return vec![finding(
            "access-log-not-append-only",
            Severity::Warning,
            table,
            "there is no access log: break-glass access (request_access, enter_access) is not set up, so nothing records an operator entering an org",
            "apply the generated migration (its shared objects create the log and the access functions)",
        )];
    }
    let Some(refuse) = crate::generated::functions(&o.rls)
        .into_iter()
        .find(|f| &f.schema == schema && f.name == "refuse_change")
    else {
        return Vec::new();
    };
    let function = format!("{schema}.refuse_change");
    let guarded = |level: &str, event: &str| {
        c.triggers.iter().any(|t| {
            t.table_name == table
                && t.function == function
                && t.function_source == refuse.source
                && t.fires_before(level, event)
        })
    };
    let open: Vec<&str> = [
        ("ROW", "UPDATE"),
        ("ROW", "DELETE"),
        ("STATEMENT", "TRUNCATE"),
    ]
    .into_iter()
    .filter(|(level, event)| !guarded(level, event))
    .map(|(_, event)| event)
    .collect();
    if open.is_empty() {
        return Vec::new();
    }
    vec![finding(
        "access-log-not-append-only",
        Severity::Error,
        table,
        &format!(
            "nothing refuses {} on the access log: its triggers (access_log_append_only, access_log_no_truncate) are missing, disabled, set to fire only on a replica, or run something other than the generated refuse_change, so the log's owner can rewrite who entered which org",
            open.join(", ")
        ),
        "apply the generated shared objects again (tenant_schema::shared_objects), which recreate the function and both triggers",
    )]
}

/// The table `schema.name`, if the catalog has it.
fn table_in<'c>(c: &'c Catalog, schema: &str, name: &str) -> Option<&'c Relation> {
    c.relations
        .iter()
        .find(|r| r.kind == "r" && r.schema == schema && r.name == name)
}

/// The grantees of `grants` (`role:PRIVILEGE`, ...) as a REVOKE names them, sorted, once each.
/// `; REVOKE ALL (column) ON table FROM role` for each column-level grant among `grants`
/// (revoking a table privilege leaves those in place).
fn column_revokes(table: &str, grants: &[&str]) -> String {
    grants
        .iter()
        .filter_map(|g| {
            let (role, privilege) = g.rsplit_once(':')?;
            let column = privilege.split_once('(')?.1.strip_suffix(')')?;
            let role = if role == "public" {
                "PUBLIC".to_owned()
            } else {
                crate::sql::ident(role)
            };
            Some(format!(
                "; REVOKE ALL ({}) ON {table} FROM {role}",
                crate::sql::ident(column)
            ))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn grantees(grants: &[&str]) -> String {
    grants
        .iter()
        .filter_map(|g| g.rsplit_once(':').map(|(role, _)| role))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|r| {
            if r == "public" {
                "PUBLIC".to_owned()
            } else {
                crate::sql::ident(r)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `granted_org` lets an operator into an org on the strength of an `entered` row of the
/// access log for their backend and transaction: only the generated functions, running as the
/// log's owner, may write it. A role granted INSERT forges such a row (an org entered with no
/// ticket, no grant); UPDATE, DELETE or TRUNCATE rewrite history; TRIGGER lets a role's own
/// trigger rewrite the rows the functions insert.
fn access_log_writable(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let Some(log) = table_in(c, &o.rls.audit_schema, "access_log") else {
        return Vec::new();
    };
    let writes: Vec<&str> = log
        .grants
        .split(',')
        .filter(|g| {
            g.rsplit_once(':').is_some_and(|(_, p)| {
                let privilege = p.split('(').next().unwrap_or(p);
                ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER"].contains(&privilege)
            })
        })
        .collect();
    if writes.is_empty() {
        return Vec::new();
    }
    vec![finding(
        "access-log-writable",
        Severity::Error,
        format!("{}.{}", log.schema, log.name),
        &format!(
            "roles other than the log's owner may write the access log ({}): an inserted 'entered' row is all granted_org asks for, so such a role can enter any org with no ticket and no grant, and the others can rewrite who entered which org",
            writes.join(", ")
        ),
        format!(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER ON {}.{} FROM {}{}",
            log.schema,
            log.name,
            grantees(&writes),
            column_revokes(&format!("{}.{}", log.schema, log.name), &writes)
        ),
    )]
}

/// The signed context's key table holds the HMAC pads of every valid key: whoever reads them
/// signs a token for any org, and whoever writes them adds a key of their own. Only its owner
/// may hold any privilege on it (the view reads it with the owner's rights).
fn context_keys_readable(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let Some(keys) = table_in(c, crate::context::CONTEXT_SCHEMA, "keys") else {
        return Vec::new();
    };
    if keys.grants.is_empty() {
        return Vec::new();
    }
    let grants: Vec<&str> = keys.grants.split(',').collect();
    vec![finding(
        "context-keys-readable",
        Severity::Error,
        format!("{}.{}", keys.schema, keys.name),
        &format!(
            "roles other than the key table's owner hold privileges on the signed context's keys ({}): a role that reads them signs a token for any org, one that writes them adds its own key, and SQL in a session can then switch the org again (docs/threat-model.md #5)",
            grants.join(", ")
        ),
        format!(
            "REVOKE ALL ON {}.{} FROM {}{}",
            keys.schema,
            keys.name,
            grantees(&grants),
            column_revokes(&format!("{}.{}", keys.schema, keys.name), &grants)
        ),
    )]
}

/// On Citus, the key of the operators' tokens (`operator_citus.rs`): whoever reads it mints a
/// token that opens any org to a break-glass login without a logged grant, whoever writes it
/// puts in a key of their own. Only its owner may hold any privilege on it (the access
/// functions read it with the owner's rights; Citus gave every node's copy the same grants).
fn operator_key_readable(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let Some(key) = table_in(c, &o.rls.audit_schema, "operator_key") else {
        return Vec::new();
    };
    if key.grants.is_empty() {
        return Vec::new();
    }
    let grants: Vec<&str> = key.grants.split(',').collect();
    let table = format!("{}.{}", key.schema, key.name);
    vec![finding(
        "operator-key-readable",
        Severity::Error,
        table.clone(),
        &format!(
            "roles other than the key table's owner hold privileges on the key of the operators' tokens ({}): a role that reads it mints a token that lets a break-glass login into any org with no grant logged, one that writes it puts in its own key (docs/threat-model.md #38)",
            grants.join(", ")
        ),
        format!(
            "REVOKE ALL ON {table} FROM {}{} (Citus applies it to every node's copy)",
            grantees(&grants),
            column_revokes(&table, &grants)
        ),
    )]
}

/// A SECURITY DEFINER function with the name of one tenant-schema generates (the access
/// functions, the signed context's), the signed context's view, or a generated policy,
/// changed after it was applied: its grants and its name stay, so it still decides who sees
/// which org. Texts the server prints (a view's definition, a policy's expressions) were
/// compared on the versions of [`VIEW_TEXT_VERIFIED_ON`]; elsewhere a difference in them alone
/// is a warning, since another version may print the same object differently.
fn generated_object_changed(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let why = |what: &str, d: &[&str]| {
        format!(
            "this {what} has the name of one tenant-schema generates (it runs with the owner's rights and decides who sees which org: the access log, the signed context), but {} from what this version generates",
            what_differs(d)
        )
    };
    let fix = "if tenant-schema was upgraded, generate the migration that refreshes the shared objects (`cargo xtask gen`; tenant_schema::shared_refresh); otherwise find out who changed it, and apply the generated shared objects again (tenant_schema::shared_objects) to restore it";
    let mut out: Vec<Finding> = against_generated(c, o)
        .into_iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(f, d)| {
            finding(
                "generated-object-changed",
                Severity::Error,
                format!("{}.{}", f.schema, f.name),
                &why("SECURITY DEFINER function", &d),
                fix,
            )
        })
        .collect();
    let verified = VIEW_TEXT_VERIFIED_ON.contains(&(c.server.version_num / 10_000));
    let printed = ["definition", "USING", "WITH CHECK"];
    // Error, unless only printed texts differ on a version where their printing was not
    // compared; then a warning that says so.
    let judge = |mut why: String, d: &[&str]| {
        if verified || d.iter().any(|x| !printed.contains(x)) {
            return (Severity::Error, why);
        }
        why.push_str(
            " (as this server prints it: the comparison was verified on PostgreSQL 15 to 18, and another version may print the same object differently; compare the evidence's texts with a run against a database freshly migrated on the same version)",
        );
        (Severity::Warning, why)
    };
    for (policy, d) in policies_against_generated(c, r, o) {
        let (severity, why) = judge(
            format!(
                "this policy has the name of one tenant-schema generates on every tenant table (the org policy, or the application's, the operator's or the owner's), but {} from what this version generates: a generated policy changed in place keeps its name, and the other rules only look for its shape",
                what_differs(&d)
            ),
            &d,
        );
        out.push(finding(
            "generated-object-changed",
            severity,
            format!("{}.{}", policy.table_name, policy.name),
            &why,
            "apply the generated migration again for this table (tenant_schema::generate), or, if it was changed on purpose, give the policy a name of its own and review it",
        ));
    }
    if let Some((view, d)) = signed_view_against_generated(c, o).filter(|(_, d)| !d.is_empty()) {
        let (severity, why) = judge(why("view", &d), &d);
        out.push(finding(
            "generated-object-changed",
            severity,
            format!("{}.{}", view.schema, view.name),
            &why,
            fix,
        ));
    }
    out
}

fn security_definer_function(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let generated = generated_functions(c, o);
    c.functions
        .iter()
        .filter(|f| f.security_definer && (f.app_can_execute || f.operator_can_execute))
        .filter(|f| !generated.iter().any(|g| std::ptr::eq(*g, *f)))
        .map(|f| {
            let fixed_path = f.config.split(',').any(|s| s.starts_with("search_path="));
            // A function of one's own that reaches the signed context's keys and signing
            // functions, or the access log, with its owner's rights: a token for any org, or
            // an org opened without a ticket, for whoever may run it.
            let library = [crate::context::CONTEXT_SCHEMA, o.rls.audit_schema.as_str()]
                .into_iter()
                .find(|s| f.source.contains(&format!("{s}.")));
            if let Some(schema) = library {
                return finding(
                    "security-definer-function",
                    Severity::Error,
                    qualified(f),
                    &format!(
                        "the application or operator role can run this function with its owner's rights, and it reaches {schema} (the signed context's keys and signing functions, or the access log): it can sign a token for any org, or open an org without a ticket, for its caller (docs/threat-model.md #5, #13)"
                    ),
                    format!("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, the application and operator roles; or drop it", qualified(f)),
                );
            }
            finding(
                "security-definer-function",
                if fixed_path { Severity::Warning } else { Severity::Error },
                qualified(f),
                if fixed_path {
                    "the application or operator role can run this function with its owner's rights: review that it cannot return another org's rows (for the operator: without a logged grant) (docs/threat-model.md #13)"
                } else {
                    "the application or operator role can run this function with its owner's rights, and it has no fixed search_path, so the caller can redirect what it calls (docs/threat-model.md #13)"
                },
                format!("review it; ALTER FUNCTION {} SET search_path = pg_catalog, public; or REVOKE EXECUTE from the application and operator roles", qualified(f)),
            )
        })
        .chain(definer_triggers(c, r))
        .collect()
}

/// A function's name with its schema, once: the server prints it qualified already where the
/// audit's search path does not find it.
fn qualified(f: &crate::audit::catalog::Function) -> String {
    if f.name.split('(').next().is_some_and(|n| n.contains('.')) {
        f.name.clone()
    } else {
        format!("{}.{}", f.schema, f.name)
    }
}

/// Triggers on tenant tables whose function is SECURITY DEFINER: a trigger runs its function
/// whatever the EXECUTE privilege, on every write of every org, with the function owner's
/// rights, so it can read other orgs' rows into the row being written.
fn definer_triggers<'c>(c: &'c Catalog, r: &'c Registry) -> impl Iterator<Item = Finding> + 'c {
    c.triggers
        .iter()
        .filter(|t| super::code::on_tenant(c, r, &t.table_name))
        .filter(move |t| super::code::runs_definer(c, t))
        .map(|t| {
            finding(
                "security-definer-function",
                Severity::Error,
                format!("{}.{} ({})", t.table_name, t.name, t.function),
                "a trigger on a tenant table runs this SECURITY DEFINER function on every write of every org, whatever its EXECUTE privilege, with its owner's rights: it can copy another org's rows into the row being written (docs/threat-model.md #13)",
                format!("make {} SECURITY INVOKER, or drop the trigger", t.function),
            )
        })
}

fn index_unusable_under_rls(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.leaky_indexes
        .iter()
        .filter(|i| is_tenant(r, &i.table_name))
        .map(|i| {
            finding(
                "index-unusable-under-rls",
                Severity::Warning,
                format!("{}.{}", i.table_name, i.name),
                "under row-level security, a condition whose operator or function is not LEAKPROOF runs after the policy, so PostgreSQL cannot use this index for it: such queries scan every row of the org (docs/performance.md)",
                format!(
                    "keep queries that need it ({}) off hot paths, or index for a LEAKPROOF condition (an equality or range on a plain column), or narrow by another indexed column first",
                    i.not_leakproof
                ),
            )
        })
        .collect()
}

/// Whether some index of `table` starts with exactly the columns `columns` (in any order).
fn has_leading_index(c: &Catalog, table: &str, columns: &str) -> bool {
    let mut wanted: Vec<&str> = columns.split(',').collect();
    wanted.sort_unstable();
    c.index_keys
        .iter()
        .filter(|i| i.table_name == table)
        .any(|i| {
            let mut lead: Vec<&str> = i.columns.split(',').take(wanted.len()).collect();
            lead.sort_unstable();
            lead == wanted
        })
}

fn foreign_key_without_index(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.constraints
        .iter()
        .filter(|k| k.kind == "f" && is_tenant(r, &k.table_name) && is_tenant(r, &k.ref_table))
        .filter(|k| !has_leading_index(c, &k.table_name, &k.columns))
        .map(|k| {
            finding(
                "foreign-key-without-index",
                Severity::Warning,
                format!("{}.{}", k.table_name, k.name),
                "no index starts with this foreign key's columns, so deleting or re-keying a row of the referenced table scans this table (all of the org's rows) once per row: purging or restoring an org becomes quadratic (100,000 rows: 32 s without, 4.8 s with, docs/performance.md)",
                format!(
                    "CREATE INDEX ON {} ({})",
                    crate::sql::ident(&k.table_name),
                    k.columns
                        .split(',')
                        .map(crate::sql::ident)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
        .collect()
}

fn leakproof_function(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.functions
        .iter()
        .filter(|f| f.leakproof)
        .map(|f| {
            finding(
                "leakproof-function",
                Severity::Warning,
                format!("{}.{}", f.schema, f.name),
                "LEAKPROOF functions run before row-level security filters; one that can raise or log its input leaks other orgs' values (docs/threat-model.md #10)",
                format!("ALTER FUNCTION {}.{} NOT LEAKPROOF unless it provably reveals nothing", f.schema, f.name),
            )
        })
        .collect()
}

fn partition_not_protected(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.relations
        .iter()
        .filter(|rel| partition_of_tenant(rel, r))
        .filter(|rel| {
            let col = r.get(&rel.partition_root).and_then(|e| e.org_column()).unwrap_or_default();
            let restrictive = org_policy_of(c, &policy_table(rel), col, o).is_some();
            !(rel.rls && rel.forced && restrictive)
        })
        .map(|rel| {
            let reachable = !rel.app_privileges.is_empty();
            finding(
                "partition-not-protected",
                if reachable { Severity::Error } else { Severity::Warning },
                format!("{}.{} (partition of {})", rel.schema, rel.name, rel.partition_root),
                if reachable {
                    "the application role can query this partition directly, and a partition queried directly uses its own row-level security, which is not set up"
                } else {
                    "this partition lacks the parent's row-level security; it is safe only while nobody grants the application role access to it"
                },
                "re-run the generated migration (it protects every partition that exists), or ENABLE and FORCE RLS and create the tenant policy on it",
            )
        })
        .collect()
}

fn unregistered_relation(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.relations
        .iter()
        .filter(|rel| {
            !rel.app_privileges.is_empty()
                && !is_registered(rel, r)
                && !partition_of_tenant(rel, r)
                && !is_signed_context_view(rel, o)
        })
        .map(|rel| {
            finding(
                "unregistered-relation",
                Severity::Error,
                format!("{}.{}", rel.schema, rel.name),
                "the application role can reach a relation that is neither a registered tenant table nor a registered global table",
                "register it (tenant with its org column, or global if it holds no tenant data), or revoke the application role's privileges on it",
            )
        })
        .collect()
}

fn unregistered_tenant_table(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.relations
        .iter()
        .filter(|rel| {
            matches!(rel.kind.as_str(), "r" | "p")
                && rel.has_org_column
                && rel.app_privileges.is_empty()
                && !is_registered(rel, r)
                && !partition_of_tenant(rel, r)
        })
        .map(|rel| {
            finding(
                "unregistered-tenant-table",
                Severity::Warning,
                format!("{}.{}", rel.schema, rel.name),
                "the table has an org column but is not in the registry: it gets no generated protection, and nothing stops a later grant from exposing it",
                format!("register it as `tenant {} => {};` and regenerate the migration", rel.name, o.org_column),
            )
        })
        .collect()
}

fn server_version(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    super::server_version::findings(&c.server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_row_setting_read_is_told_apart_from_the_sub_select_form() {
        let once = "(org_id = ( SELECT (NULLIF(current_setting('tenant.org_id'::text, true), ''::text))::uuid AS \"nullif\"))";
        let per_row =
            "(org_id = (NULLIF(current_setting('tenant.org_id'::text, true), ''::text))::uuid)";
        let needle = "current_setting('tenant.org_id'";
        let per_row_hit = |e: &str| {
            e.match_indices(needle)
                .any(|(i, _)| !e[..i].contains("( SELECT"))
        };
        assert!(!per_row_hit(once));
        assert!(per_row_hit(per_row));
    }

    #[test]
    fn every_rule_says_what_it_checks_in_the_same_order() {
        let rules: Vec<&str> = RULES.iter().map(|(id, _)| *id).collect();
        let checks: Vec<&str> = CHECKS.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(rules, checks);
    }

    #[test]
    fn rule_ids_are_unique() {
        let mut ids: Vec<&str> = RULES.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
