//! Evidence for auditors: the audit's snapshot and findings as `evidence.json` (a stable schema,
//! keys sorted, lists in catalog order) and `evidence.md` (the report a security reviewer
//! reads), each with a SHA-256 digest of its content.
//!
//! Both carry a *configuration digest*: the SHA-256 of the JSON without its timestamp, so two
//! runs against the same configuration have the same configuration digest, and any change to
//! roles, tables, policies, grants, functions, triggers or findings changes it.
//!
//! JSON schema (version 1): `{schema_version, generated_at, git_commit, configuration_digest,
//! verdict: "pass"|"fail", summary: {errors, warnings}, server: {version_num, version},
//! app_role: {name, superuser, bypassrls, privileged_memberships[]} | null,
//! registry: [{table, kind: "tenant"|"global", org_column}], relations: [{schema, name, kind,
//! owner, rls, forced, app_privileges[], options[], reads[], definition_sha256 | null,
//! grants[]}],
//! policies: [{table, name, permissive, command, roles[], using, with_check, functions[]}],
//! functions: [{schema, name, security_definer, leakproof, app_can_execute, config[], owner,
//! source_sha256}], triggers: [{table, name, enabled, timing, function, function_sha256}],
//! findings: [{rule, severity, object, why, fix}], checks: [{rule, threats, checks,
//! findings}]}` (`checks` lists every audit rule with the threat-model items it covers and its
//! number of findings). `checks`, a view's `reads` and `definition_sha256`, a relation's
//! `grants`, a function's `owner` and `source_sha256`, and `triggers` were added in version 1
//! without a version change, since readers of version 1 ignore unknown keys; with them a
//! changed function body, view definition, grant or trigger changes the configuration digest.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenant_lint::Registry;

use crate::audit::{Report, Severity};

/// The two evidence documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `evidence.json`.
    pub json: String,
    /// `evidence.md`.
    pub markdown: String,
    /// SHA-256 of the configuration (the JSON without `generated_at`), hex.
    pub configuration_digest: String,
}

/// Where and when the evidence was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// RFC 3339 time of the run.
    pub generated_at: String,
    /// The git commit of the schema and registry.
    pub git_commit: String,
}

/// The SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    tenant_core::context::to_hex(&Sha256::digest(data))
}

fn list(s: &str) -> Vec<&str> {
    s.split(',').filter(|x| !x.is_empty()).collect()
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The checks a report's audit performed: the audit's rules, and on a Citus cluster the
/// cluster audit's too.
fn checks(
    report: &Report,
) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    let cluster: &'static [(&'static str, &'static str, &'static str)] =
        if report.workers.is_empty() {
            &[]
        } else {
            crate::audit::cluster::CLUSTER_CHECKS
        };
    crate::audit::CHECKS.iter().chain(cluster)
}

/// Renders the evidence of `report`.
pub fn render(report: &Report, registry: &Registry, provenance: &Provenance) -> Evidence {
    let c = &report.catalog;
    let errors = report.error_count();
    let warnings = report.findings.len() - errors;
    let mut doc = json!({
        "schema_version": 1,
        "git_commit": provenance.git_commit,
        "context_mode": context_mode(report),
        "verdict": if errors == 0 { "pass" } else { "fail" },
        "summary": { "errors": errors, "warnings": warnings },
        "server": { "version_num": c.server.version_num, "version": c.server.version },
        "app_role": c.app_role.as_ref().map(|r| json!({
            "name": r.name, "superuser": r.superuser, "bypassrls": r.bypassrls,
            "privileged_memberships": list(&r.privileged_memberships),
        })),
        "registry": registry.tables().map(|t| json!({
            "table": t.name,
            "kind": if t.is_tenant() { "tenant" } else { "global" },
            "org_column": t.org_column(),
        })).collect::<Vec<_>>(),
        "relations": c.relations.iter().map(|r| json!({
            "schema": r.schema, "name": r.name, "kind": r.kind, "owner": r.owner,
            "rls": r.rls, "forced": r.forced, "app_privileges": list(&r.app_privileges),
            "options": list(&r.options),
            "reads": list(&r.reads),
            "definition_sha256": (!r.definition.is_empty()).then(|| sha256_hex(r.definition.as_bytes())),
            "grants": list(&r.grants),
        })).collect::<Vec<_>>(),
        "policies": c.policies.iter().map(|p| json!({
            "table": p.table_name, "name": p.name, "permissive": p.permissive, "command": p.cmd,
            "roles": list(&p.roles), "using": p.using_expr, "with_check": p.check_expr,
            "functions": list(&p.functions),
        })).collect::<Vec<_>>(),
        "functions": c.functions.iter().map(|f| json!({
            "schema": f.schema, "name": f.name, "security_definer": f.security_definer,
            "leakproof": f.leakproof, "app_can_execute": f.app_can_execute, "config": list(&f.config),
            "owner": f.owner, "source_sha256": sha256_hex(f.source.as_bytes()),
        })).collect::<Vec<_>>(),
        "triggers": c.triggers.iter().map(|t| json!({
            "table": t.table_name, "name": t.name, "enabled": t.enabled, "timing": t.timing,
            "function": t.function, "function_sha256": sha256_hex(t.function_source.as_bytes()),
        })).collect::<Vec<_>>(),
        "findings": report.findings.iter().map(|f| json!({
            "rule": f.rule, "severity": severity(f.severity), "object": f.object, "why": f.why, "fix": f.fix,
        })).collect::<Vec<_>>(),
        "checks": checks(report).map(|(rule, threats, checks)| json!({
            "rule": rule, "threats": threats, "checks": checks,
            "findings": report.findings.iter().filter(|f| f.rule == *rule).count(),
        })).collect::<Vec<_>>(),
    });
    if !report.workers.is_empty()
        && let Value::Object(map) = &mut doc
    {
        map.insert("citus_workers".into(), json!(report.workers));
    }
    let configuration = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let configuration_digest = sha256_hex(configuration.as_bytes());
    if let Value::Object(map) = &mut doc {
        map.insert("generated_at".into(), json!(provenance.generated_at));
        map.insert("configuration_digest".into(), json!(configuration_digest));
    }
    let json = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let markdown = markdown(
        report,
        registry,
        provenance,
        &configuration_digest,
        errors,
        warnings,
    );
    Evidence {
        json,
        markdown,
        configuration_digest,
    }
}

/// `signed` when the tenant tables' restrictive policies verify a signed token and no policy of
/// theirs reads a setting (the default mode, where SQL in a session cannot switch the org),
/// `setting` when none verifies a token (the opt-in mode that trusts every statement), `mixed`
/// when both (a policy changed by hand, a migration rolled back in part: the setting's weakness
/// holds where it is read); in USING and WITH CHECK alike, on partitions too
/// ([`crate::audit::org_context`]).
pub fn context_mode(report: &Report) -> &'static str {
    report.org_context
}

fn markdown(
    report: &Report,
    registry: &Registry,
    provenance: &Provenance,
    digest: &str,
    errors: usize,
    warnings: usize,
) -> String {
    use std::fmt::Write as _;
    let c = &report.catalog;
    let mut m = String::new();
    let verdict = if errors == 0 { "PASS" } else { "FAIL" };
    let _ = writeln!(m, "# Tenant isolation evidence\n");
    let _ = writeln!(m, "| | |\n|---|---|");
    let _ = writeln!(
        m,
        "| Verdict | **{verdict}**: {errors} errors, {warnings} warnings |"
    );
    let _ = writeln!(m, "| Generated at | {} |", provenance.generated_at);
    let _ = writeln!(m, "| Schema commit | `{}` |", provenance.git_commit);
    let _ = writeln!(
        m,
        "| Server | {} (`server_version_num` {}) |",
        c.server.version, c.server.version_num
    );
    let _ = writeln!(
        m,
        "| Org context | {} |",
        match context_mode(report) {
            "signed" =>
                "**signed**: the policies verify a token the service signs; SQL in a session cannot switch the org",
            "mixed" =>
                "**mixed**: some policies verify a signed token, others read a setting SQL in a session can change (docs/threat-model.md #5): generate every table's migration in the signed mode",
            _ =>
                "**plain setting, trusting every statement** (the opt-in mode): the policies believe `tenant.org_id`, which any statement of the application role can set to another org, so an injected or mistaken statement reads and writes that org's rows and only the application layer stops it (docs/threat-model.md #5); the default signed mode closes this",
        }
    );
    if !report.workers.is_empty() {
        let _ = writeln!(
            m,
            "| Citus workers audited | {} (every shard placed on each, against the coordinator's table) |",
            md_cell(&report.workers.join(", "))
        );
    }
    let _ = writeln!(m, "| Configuration digest | `{digest}` |\n");
    let _ = writeln!(
        m,
        "How to read this: every table the application role can reach must be a registered tenant table with row-level security enabled and forced and a RESTRICTIVE policy on the session org, or a registered global table. Each finding says why it matters and how to fix it.\n"
    );

    let _ = writeln!(m, "## Application role\n");
    match &c.app_role {
        Some(r) => {
            let _ = writeln!(
                m,
                "| role | superuser | bypassrls | can become (superuser/bypassrls) |\n|---|---|---|---|"
            );
            let member = if r.privileged_memberships.is_empty() {
                "none"
            } else {
                r.privileged_memberships.as_str()
            };
            let _ = writeln!(
                m,
                "| `{}` | {} | {} | {member} |\n",
                r.name, r.superuser, r.bypassrls
            );
        }
        None => {
            let _ = writeln!(m, "The application role does not exist.\n");
        }
    }

    let _ = writeln!(m, "## Protection per table\n");
    let _ = writeln!(
        m,
        "| table | registry | RLS | forced | owner | application role may | restrictive org policy |\n|---|---|---|---|---|---|---|"
    );
    for r in &c.relations {
        let entry = registry.get(&r.name);
        let kind = match entry {
            Some(e) if e.is_tenant() => {
                format!("tenant (`{}`)", e.org_column().unwrap_or_default())
            }
            Some(_) => "global".to_owned(),
            // What the generated migrations create for the signed context and break-glass
            // access: audited by their own rules.
            None if matches!(
                (r.schema.as_str(), r.name.as_str()),
                ("tenant_context", "keys" | "current_org")
                    | ("tenant_audit", "access_log" | "operator_key")
            ) =>
            {
                "tenant-safe's own (not registered)".to_owned()
            }
            // diesel's migration history: versions and dates, no tenant data.
            None if r.name == "__diesel_schema_migrations" && r.app_privileges.is_empty() => {
                "diesel's migration history (not registered; no tenant data)".to_owned()
            }
            None if r.app_privileges.is_empty() => {
                "not registered (the application role has no access)".to_owned()
            }
            None => "**not registered**".to_owned(),
        };
        let restrictive = c
            .policies
            .iter()
            .any(|p| p.table_name == r.name && !p.permissive);
        let privileges = if r.app_privileges.is_empty() {
            "nothing".to_owned()
        } else {
            r.app_privileges.replace(',', ", ")
        };
        // RLS is required on tenant tables only; elsewhere the cells say so instead of "no".
        let required = entry.is_some_and(|e| e.is_tenant());
        let cell = |b: bool| if required { yes(b) } else { "n/a" };
        let _ = writeln!(
            m,
            "| {} | {kind} | {} | {} | {} | {privileges} | {} |",
            md_code_cell(&format!("{}.{}", r.schema, r.name)),
            cell(r.rls),
            cell(r.forced),
            md_code_cell(&r.owner),
            cell(restrictive)
        );
    }

    let _ = writeln!(m, "\n## Policies, verbatim\n");
    for p in &c.policies {
        let _ = writeln!(
            m,
            "- {} on {}: {} for {} to {}\n  - USING {}\n  - WITH CHECK {}",
            md_code(&p.name),
            md_code(&p.table_name),
            if p.permissive {
                "PERMISSIVE"
            } else {
                "RESTRICTIVE"
            },
            command(&p.cmd),
            md_line(&p.roles),
            md_code(or_none(&p.using_expr)),
            md_code(or_none(&p.check_expr))
        );
    }

    let _ = writeln!(
        m,
        "\n## Functions that bypass or precede row-level security\n"
    );
    if c.functions.is_empty() {
        let _ = writeln!(
            m,
            "None (no SECURITY DEFINER or LEAKPROOF functions outside the system schemas)."
        );
    }
    for f in &c.functions {
        let _ = writeln!(
            m,
            "- {}: security definer {}, leakproof {}, application may execute {}, config {}",
            md_code(&format!("{}.{}", f.schema, f.name)),
            f.security_definer,
            f.leakproof,
            f.app_can_execute,
            md_code(or_none(&f.config))
        );
    }

    let _ = writeln!(
        m,
        "\n## Checks performed\n\nEach rule of the audit, the items of the threat model (docs/threat-model.md) it covers, and its findings here.\n\n| rule | threats | checks | findings |\n|---|---|---|---|"
    );
    for (rule, threats, checks) in checks(report) {
        let n = report.findings.iter().filter(|f| f.rule == *rule).count();
        let _ = writeln!(m, "| `{rule}` | {threats} | {checks} | {n} |");
    }

    let _ = writeln!(m, "\n## Findings\n");
    if report.findings.is_empty() {
        let _ = writeln!(m, "None.");
    } else {
        let _ = writeln!(
            m,
            "| severity | rule | object | why | fix |\n|---|---|---|---|---|"
        );
        for f in &report.findings {
            let _ = writeln!(
                m,
                "| {} | `{}` | {} | {} | {} |",
                severity(f.severity),
                f.rule,
                md_code_cell(&f.object),
                md_cell(&f.why),
                md_cell(&f.fix)
            );
        }
    }
    m
}

/// `s` as the text of one Markdown table cell: a `|` would end the cell and a line break the
/// row, so text from the catalog or a log (a table name, an access reason) could add rows or
/// columns to a report an auditor reads. As [`md_line`], and pipes become `\|`. The JSON
/// keeps the exact text.
///
/// ```
/// use tenant_schema::evidence::md_cell;
/// assert_eq!(md_cell("a|b\n| forged | row |"), "a\\|b\\n\\| forged \\| row \\|");
/// assert_eq!(md_cell("<h2>0 leaks</h2>"), "&lt;h2&gt;0 leaks&lt;/h2&gt;");
/// ```
pub fn md_cell(s: &str) -> String {
    md_line(s).replace('|', "\\|")
}

/// `s` as plain text on one line of a Markdown list item: every line break (`\n`, `\r`, and
/// the Unicode ones some viewers break on) becomes a visible escape, and `<`, `>`, `&` become
/// HTML entities, so text from the catalog, a log or a configuration file can neither start
/// an item of its own nor open an HTML element that hides or forges what follows.
///
/// ```
/// use tenant_schema::evidence::md_line;
/// assert_eq!(md_line("a\n- b"), "a\\n- b");
/// assert_eq!(md_line("x<!-- hide"), "x&lt;!-- hide");
/// assert_eq!(md_line("a\u{2028}b"), "a\\u{2028}b");
/// ```
pub fn md_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => push_one_line(&mut out, c),
        }
    }
    out
}

/// `s` as a complete Markdown code span (its backticks included), verbatim on one line: the
/// fence is one backtick longer than any run of backticks in `s`, so none ends it early; line
/// breaks become visible escapes. Code spans show `<` and `&` as they are.
///
/// ```
/// use tenant_schema::evidence::md_code;
/// assert_eq!(md_code("org_id <> $1"), "`org_id <> $1`");
/// assert_eq!(md_code("a`b"), "``a`b``");
/// assert_eq!(md_code("`x"), "`` `x ``");
/// assert_eq!(md_code("a\nb"), "`a\\nb`");
/// ```
pub fn md_code(s: &str) -> String {
    let mut text = String::with_capacity(s.len());
    for c in s.chars() {
        push_one_line(&mut text, c);
    }
    let (mut longest, mut run) = (0, 0);
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// [`md_code`] in a table cell: pipes become `\|`, which GitHub Markdown reads as a pipe
/// inside code spans too.
pub fn md_code_cell(s: &str) -> String {
    md_code(s).replace('|', "\\|")
}

/// Pushes `c`, a line break as a visible escape (`\n`, `\r`, `\u{2028}`, ...), so that the
/// text stays on its line.
fn push_one_line(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
        c => out.push(c),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

fn command(cmd: &str) -> &str {
    match cmd {
        "*" => "ALL",
        "r" => "SELECT",
        "a" => "INSERT",
        "w" => "UPDATE",
        "d" => "DELETE",
        other => other,
    }
}
