//! The probe's results and the three forms it writes them in: Markdown for people, JSON with a
//! stable schema (`schema_version` 1) for tools, JUnit XML for CI systems.
//!
//! JSON schema, version 1: `{ schema_version, tool, generated_at, duration_ms, server:
//! { version_num, version }, role, evidence_digest, orgs: { attacker, victim }, tables: [name],
//! unseedable: [{ table, reason }], summary: { total, pass, leak, finding, observed, not_run,
//! not_run_expected, refused_by_citus }, global_rows: [note], stale_expectations: [message],
//! verdict: "pass" | "fail", results: [{ attack, family, threat, table, sql, expected,
//! observed: { outcome: "rows" | "refused" | "not_run", rows, sqlstate, message }, verdict,
//! note, expected_by: reason | null }] }`. Observed outcomes carry counts and SQLSTATEs, never
//! row data. Fields are only ever added within a schema version.

use std::fmt::Write as _;

use serde_json::json;
use tenant_schema::evidence::{md_cell, md_code, md_code_cell, md_line};

/// What an attack's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The isolation held.
    Pass,
    /// The attack got at B's data (or an oracle on it): the deployment fails.
    Leak,
    /// What the configuration gives up by name (org hopping in the opt-in plain mode, which
    /// trusts every statement).
    Finding,
    /// A side channel, reported as observed, not judged.
    Observed,
    /// The attack could not run (a table that could not be seeded, a session failure).
    NotRun,
    /// A Citus coordinator refused the statement as a feature it does not support on
    /// distributed tables (SQLSTATE 0A000, or XX000 "not supported"): it read and wrote
    /// nothing, and no application can run it there either. Recorded with the refusal, not
    /// a failure.
    Refused,
}

impl Verdict {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Leak => "LEAK",
            Verdict::Finding => "finding",
            Verdict::Observed => "observed",
            Verdict::NotRun => "NOT RUN",
            Verdict::Refused => "refused by Citus",
        }
    }
}

/// What the database did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Ran, with this many rows returned or affected.
    Rows(u64),
    /// Refused with this SQLSTATE and message.
    Refused {
        /// SQLSTATE.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// Did not run, with why.
    NotRun(String),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Rows(1) => write!(f, "1 row"),
            Observed::Rows(n) => write!(f, "{n} rows"),
            Observed::Refused { sqlstate, message } => write!(f, "refused: {sqlstate} ({message})"),
            Observed::NotRun(why) => write!(f, "not run: {why}"),
        }
    }
}

/// One attack on one table, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackResult {
    /// The attack's name.
    pub attack: String,
    /// Its family.
    pub family: String,
    /// The threat-model item (docs/threat-model.md).
    pub threat: String,
    /// The table or view; empty for a database-wide attack.
    pub table: String,
    /// What was sent (setup statements first, `;`-separated).
    pub sql: String,
    /// What should happen.
    pub expected: String,
    /// What happened.
    pub observed: Observed,
    /// What it means.
    pub verdict: Verdict,
    /// More about the outcome (B's rows changed, ...).
    pub note: String,
    /// The reason the service's configuration gives for expecting this outcome (a not-run
    /// attack so marked no longer fails the run); never set on a leak.
    pub expected_by: Option<String>,
}

/// Counts by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// All attacks.
    pub total: usize,
    /// Held.
    pub pass: usize,
    /// Leaked.
    pub leak: usize,
    /// Known limitations.
    pub finding: usize,
    /// Side channels observed.
    pub observed: usize,
    /// Could not run.
    pub not_run: usize,
    /// Of those, expected by the configuration with a reason.
    pub not_run_expected: usize,
    /// Refused by Citus as not supported on distributed tables.
    pub refused: usize,
}

/// A probe run.
#[derive(Debug, Clone)]
pub struct Report {
    /// RFC 3339 start time.
    pub generated_at: String,
    /// How long the run took.
    pub duration_ms: u128,
    /// `server_version_num`.
    pub server_version_num: i32,
    /// `version()`.
    pub server_version: String,
    /// The role the probe connected as.
    pub role: String,
    /// The configuration digest of the schema's evidence (as `cargo xtask evidence` writes it).
    pub evidence_digest: Option<String>,
    /// The synthetic attacker org.
    pub org_a: String,
    /// The synthetic victim org.
    pub org_b: String,
    /// The tenant tables attacked.
    pub tables: Vec<String>,
    /// Tables that could not be seeded, with why.
    pub unseedable: Vec<(String, String)>,
    /// Every attack.
    pub results: Vec<AttackResult>,
    /// What the probe wrote to global tables with the admin role (the configuration's
    /// `global_rows`), and that it deleted it.
    pub global_rows: Vec<String>,
    /// Expectations of the configuration that did not hold (matched no result, or a result
    /// with another verdict): each fails the run.
    pub stale_expectations: Vec<String>,
}

impl Report {
    /// Counts by verdict.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.results.len(),
            ..Summary::default()
        };
        for r in &self.results {
            match r.verdict {
                Verdict::Pass => s.pass += 1,
                Verdict::Leak => s.leak += 1,
                Verdict::Finding => s.finding += 1,
                Verdict::Observed => s.observed += 1,
                Verdict::NotRun => {
                    s.not_run += 1;
                    s.not_run_expected += usize::from(r.expected_by.is_some());
                }
                Verdict::Refused => s.refused += 1,
            }
        }
        s
    }

    /// Whether the run fails the deployment: a leak, an attack that could not run and that
    /// the configuration does not expect, an expectation that did not hold, or no tenant
    /// table attacked at all (a run that proved nothing is no pass).
    pub fn failed(&self) -> bool {
        let s = self.summary();
        s.leak > 0
            || s.not_run > s.not_run_expected
            || !self.stale_expectations.is_empty()
            || self.tables.is_empty()
    }

    /// The one-line summary.
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        format!(
            "tenant-probe: {} attacks on {} tables: {} pass, {} leaks, {} findings (what the configuration gives up by name), {} observed (side channels), {} not run{}{}{}: {}",
            s.total,
            self.tables.len(),
            s.pass,
            s.leak,
            s.finding,
            s.observed,
            s.not_run,
            expected_part(s.not_run_expected),
            refused_part(s.refused),
            stale_part(self.stale_expectations.len(), self.tables.is_empty()),
            if self.failed() { "FAIL" } else { "PASS" }
        )
    }

    /// The results whose verdict is `v`.
    pub fn with_verdict(&self, v: Verdict) -> impl Iterator<Item = &AttackResult> {
        self.results.iter().filter(move |r| r.verdict == v)
    }

    /// The report as JSON (schema version 1).
    pub fn json(&self) -> String {
        let s = self.summary();
        let doc = json!({
            "schema_version": 1,
            "tool": "tenant-probe",
            "generated_at": self.generated_at,
            "duration_ms": self.duration_ms,
            "server": { "version_num": self.server_version_num, "version": self.server_version },
            "role": self.role,
            "evidence_digest": self.evidence_digest,
            "orgs": { "attacker": self.org_a, "victim": self.org_b },
            "tables": self.tables,
            "unseedable": self.unseedable.iter().map(|(t, why)| json!({"table": t, "reason": why})).collect::<Vec<_>>(),
            "summary": {
                "total": s.total, "pass": s.pass, "leak": s.leak, "finding": s.finding,
                "observed": s.observed, "not_run": s.not_run,
                "not_run_expected": s.not_run_expected, "refused_by_citus": s.refused,
            },
            "global_rows": self.global_rows,
            "stale_expectations": self.stale_expectations,
            "verdict": if self.failed() { "fail" } else { "pass" },
            "results": self.results.iter().map(|r| {
                let observed = match &r.observed {
                    Observed::Rows(n) => json!({"outcome": "rows", "rows": n}),
                    Observed::Refused { sqlstate, message } => json!({"outcome": "refused", "sqlstate": sqlstate, "message": message}),
                    Observed::NotRun(why) => json!({"outcome": "not_run", "message": why}),
                };
                json!({
                    "attack": r.attack, "family": r.family, "threat": r.threat, "table": r.table,
                    "sql": r.sql, "expected": r.expected, "observed": observed,
                    "verdict": match r.verdict {
                        Verdict::Pass => "pass", Verdict::Leak => "leak", Verdict::Finding => "finding",
                        Verdict::Observed => "observed", Verdict::NotRun => "not_run",
                        Verdict::Refused => "refused_by_citus",
                    },
                    "note": r.note,
                    "expected_by": r.expected_by,
                })
            }).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    /// The report as Markdown, for a security reviewer.
    pub fn markdown(&self) -> String {
        let s = self.summary();
        let mut md = String::new();
        let _ = writeln!(md, "# Leak probe report\n");
        let _ = writeln!(md, "**{}**\n", self.summary_line());
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(
            md,
            "| time | {} ({} ms) |",
            self.generated_at, self.duration_ms
        );
        let _ = writeln!(md, "| server | {} |", self.server_version);
        let _ = writeln!(md, "| role | {} |", md_code_cell(&self.role));
        let _ = writeln!(
            md,
            "| evidence digest | `{}` |",
            self.evidence_digest.as_deref().unwrap_or("(not computed)")
        );
        let _ = writeln!(md, "| attacker org (A) | `{}` |", self.org_a);
        let _ = writeln!(md, "| victim org (B) | `{}` |", self.org_b);
        let _ = writeln!(md, "| tables | {} |", md_cell(&self.tables.join(", ")));
        let _ = writeln!(
            md,
            "| verdicts | {} pass, {} leak, {} finding, {} observed, {} not run{}{} |\n",
            s.pass,
            s.leak,
            s.finding,
            s.observed,
            s.not_run,
            expected_part(s.not_run_expected),
            refused_part(s.refused)
        );
        let _ = writeln!(
            md,
            "Every attack ran as the application role inside one transaction that was rolled back; \
             nothing was committed. A **leak** fails the deployment; a **finding** is what the \
             configuration gives up by name (org hopping in the opt-in plain mode, which trusts \
             every statement; docs/limitations.md); **observed** is a side channel \
             PostgreSQL shows by design.\n"
        );
        if !self.stale_expectations.is_empty() {
            let _ = writeln!(
                md,
                "## Expectations that did not hold (each fails the run)\n"
            );
            for e in &self.stale_expectations {
                let _ = writeln!(md, "- {}", md_line(e));
            }
            let _ = writeln!(md);
        }
        if !self.global_rows.is_empty() {
            let _ = writeln!(md, "## Rows the probe added to global tables\n");
            for g in &self.global_rows {
                let _ = writeln!(md, "- {}", md_line(g));
            }
            let _ = writeln!(md);
        }
        if !self.unseedable.is_empty() {
            let _ = writeln!(md, "## Tables that could not be seeded\n");
            for (t, why) in &self.unseedable {
                let _ = writeln!(md, "- {}: {}", md_code(t), md_line(why));
            }
            let _ = writeln!(md);
        }
        for (title, v) in [
            ("Leaks", Verdict::Leak),
            ("Not run", Verdict::NotRun),
            ("Findings", Verdict::Finding),
            ("Observed side channels", Verdict::Observed),
            (
                "Refused by Citus (not supported on distributed tables)",
                Verdict::Refused,
            ),
        ] {
            let rows: Vec<&AttackResult> = self.with_verdict(v).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(md, "## {title}\n");
            for r in rows {
                let _ = writeln!(
                    md,
                    "- **{}** on {} ({}, docs/threat-model.md {}): {} {}; observed {}{}{}\n  {}",
                    md_line(&r.attack),
                    if r.table.is_empty() {
                        "(database)".to_owned()
                    } else {
                        md_code(&r.table)
                    },
                    r.family,
                    r.threat,
                    if v == Verdict::Observed {
                        "shows"
                    } else {
                        "expected"
                    },
                    md_line(&r.expected),
                    md_line(&r.observed.to_string()),
                    if r.note.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", md_line(&r.note))
                    },
                    expected_by(r),
                    md_code(&r.sql)
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "## Every attack\n");
        let _ = writeln!(
            md,
            "| attack | family | threat | table | expected | observed | verdict |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.attack,
                r.family,
                r.threat,
                md_cell(&r.table),
                md_cell(&r.expected),
                md_cell(&r.observed.to_string()),
                match &r.expected_by {
                    Some(_) => format!("{} (expected)", r.verdict.as_str()),
                    None => r.verdict.as_str().to_owned(),
                }
            );
        }
        md
    }

    /// The report as JUnit XML: one test case per attack; a leak is a failure, an attack that
    /// could not run an error, findings and observations are passing cases with their output.
    pub fn junit(&self) -> String {
        let s = self.summary();
        let mut x = String::new();
        let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            x,
            r#"<testsuites name="tenant-probe" tests="{}" failures="{}" errors="{}" time="{:.3}">"#,
            s.total,
            s.leak,
            s.not_run - s.not_run_expected,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            x,
            r#"  <testsuite name="tenant-probe" tests="{}" failures="{}" errors="{}" timestamp="{}">"#,
            s.total,
            s.leak,
            s.not_run - s.not_run_expected,
            xml(&self.generated_at)
        );
        let _ = writeln!(x, "    <properties>");
        for (k, v) in [
            ("server", self.server_version.as_str()),
            (
                "evidence_digest",
                self.evidence_digest.as_deref().unwrap_or(""),
            ),
            ("attacker_org", &self.org_a),
            ("victim_org", &self.org_b),
        ] {
            let _ = writeln!(x, r#"      <property name="{k}" value="{}"/>"#, xml(v));
        }
        let _ = writeln!(x, "    </properties>");
        for r in &self.results {
            let class = if r.table.is_empty() {
                r.family.clone()
            } else {
                format!("{}.{}", r.family, r.table)
            };
            let _ = write!(
                x,
                r#"    <testcase classname="{}" name="{}">"#,
                xml(&class),
                xml(&r.attack)
            );
            let detail = format!(
                "expected {}; observed {}; {}",
                r.expected, r.observed, r.sql
            );
            match r.verdict {
                Verdict::Leak => {
                    let _ = write!(
                        x,
                        r#"<failure message="leak: {}">{}</failure>"#,
                        xml(&r.observed.to_string()),
                        xml(&detail)
                    );
                }
                Verdict::NotRun if r.expected_by.is_some() => {
                    let _ = write!(
                        x,
                        r#"<skipped message="expected: {}"/><system-out>{}</system-out>"#,
                        xml(r.expected_by.as_deref().unwrap_or_default()),
                        xml(&detail)
                    );
                }
                Verdict::NotRun => {
                    let _ = write!(
                        x,
                        r#"<error message="{}">{}</error>"#,
                        xml(&r.observed.to_string()),
                        xml(&detail)
                    );
                }
                Verdict::Finding | Verdict::Observed | Verdict::Refused => {
                    let _ = write!(
                        x,
                        "<system-out>{}: {}</system-out>",
                        r.verdict.as_str(),
                        xml(&detail)
                    );
                }
                Verdict::Pass => {}
            }
            let _ = writeln!(x, "</testcase>");
        }
        let _ = writeln!(x, "  </testsuite>\n</testsuites>");
        x
    }
}

/// Escapes text for XML attributes and content.
fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// ` (N expected)` when the configuration expected any of the attacks that did not run.
fn expected_part(expected: usize) -> String {
    if expected == 0 {
        String::new()
    } else {
        format!(" ({expected} expected)")
    }
}

/// `, N expectations that did not hold` when any did not; `, no tenant table attacked` when
/// none was.
fn stale_part(stale: usize, nothing_attacked: bool) -> String {
    let mut out = String::new();
    if stale > 0 {
        out.push_str(&format!(", {stale} expectations that did not hold"));
    }
    if nothing_attacked {
        out.push_str(", no tenant table attacked");
    }
    out
}

/// `; expected by the configuration: reason` for a result the configuration expects.
fn expected_by(r: &AttackResult) -> String {
    r.expected_by
        .as_ref()
        .map(|why| format!("; expected by the configuration: {}", md_line(why)))
        .unwrap_or_default()
}

/// `, N refused by Citus` when any was (nothing on PostgreSQL, where none is).
fn refused_part(refused: usize) -> String {
    if refused == 0 {
        String::new()
    } else {
        format!(", {refused} refused by Citus")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdicts: &[Verdict]) -> Report {
        Report {
            generated_at: "2026-11-27T00:00:00Z".into(),
            duration_ms: 1500,
            server_version_num: 150_000,
            server_version: "PostgreSQL 15".into(),
            role: "tenant_app".into(),
            evidence_digest: Some("abc".into()),
            org_a: "a".into(),
            org_b: "b".into(),
            tables: vec!["deals".into()],
            unseedable: vec![],
            results: verdicts
                .iter()
                .map(|v| AttackResult {
                    attack: "read_by_key".into(),
                    family: "read".into(),
                    threat: "RLS".into(),
                    table: "deals".into(),
                    sql: "SELECT 1 FROM \"deals\" WHERE a < b & c".into(),
                    expected: "0 rows".into(),
                    observed: Observed::Rows(1),
                    verdict: *v,
                    note: String::new(),
                    expected_by: None,
                })
                .collect(),
            global_rows: vec![],
            stale_expectations: vec![],
        }
    }

    #[test]
    fn a_leak_or_an_attack_not_run_fails_the_run_and_a_finding_does_not() {
        assert!(!report(&[Verdict::Pass, Verdict::Finding, Verdict::Observed]).failed());
        assert!(report(&[Verdict::Pass, Verdict::Leak]).failed());
        assert!(report(&[Verdict::NotRun]).failed());
        let line = report(&[Verdict::Pass, Verdict::Leak]).summary_line();
        assert_eq!(
            line,
            "tenant-probe: 2 attacks on 1 tables: 1 pass, 1 leaks, 0 findings (what the configuration gives up by name), 0 observed (side channels), 0 not run: FAIL"
        );
    }

    #[test]
    fn junit_escapes_and_counts_leaks_as_failures() {
        let x = report(&[Verdict::Pass, Verdict::Leak]).junit();
        assert!(x.contains(r#"tests="2" failures="1" errors="0""#), "{x}");
        assert!(x.contains("a &lt; b &amp; c"), "{x}");
        assert_eq!(x.matches("<failure").count(), 1);
    }

    #[test]
    fn a_table_name_from_the_catalog_cannot_add_rows_to_the_markdown() {
        let mut r = report(&[Verdict::Leak]);
        let name = "deals|x\n| forged | row | - | - | - | - | pass |";
        r.tables = vec![name.into()];
        r.results[0].table = name.into();
        let md = r.markdown();
        assert!(!md.lines().any(|l| l.starts_with("| forged")), "{md}");
        assert!(md.contains("deals\\|x\\n\\| forged"), "{md}");
    }

    #[test]
    fn json_has_the_stable_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&report(&[Verdict::Leak]).json()).unwrap_or_default();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["summary"]["leak"], 1);
        assert_eq!(v["results"][0]["observed"]["outcome"], "rows");
        assert_eq!(v["results"][0]["verdict"], "leak");
    }
}
