//! The probe's configuration file (`tenant-probe.toml`): seeders for tables the generator
//! cannot fill, rows for empty global tables that tenant tables reference, and the outcomes a
//! service expects, each with its reason.
//!
//! ```toml
//! # A table whose constraints the generator cannot satisfy: one INSERT into it, with $org
//! # where the org goes, RETURNING *.
//! [seeders]
//! invoices = "INSERT INTO invoices (org_id, number) VALUES ($org, 'INV-1') RETURNING *"
//!
//! # An empty global table a tenant table references (a fresh database): with --admin-url the
//! # probe inserts one row (generated; `values` win), and deletes it when it is done. A
//! # table that already has a row is never written.
//! [[global_rows]]
//! table = "plans"
//! values = { code = "probe" }
//!
//! # An outcome the service expects, and why. Only "not_run", "finding" and "observed" can be
//! # expected: a leak always fails the run. An expectation that matches no result, or a
//! # result whose verdict is not the one expected, fails the run (so none goes stale).
//! [[expect]]
//! attack = "seed"
//! table = "audit_log"
//! verdict = "not_run"
//! reason = "rows are written by a trigger only; tests/audit_log.rs attacks it"
//! ```
//!
//! Unknown keys are refused: a misspelt key would otherwise silently configure nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::report::{Report, Verdict};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the probe's configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape (an unknown key, a wrong type).
    #[error("the probe's configuration {path} does not parse: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// An expectation the probe refuses.
    #[error("the probe's configuration {path}, expectation {index} (`{attack}`): {why}")]
    Expectation {
        /// The file.
        path: String,
        /// Its position among the `[[expect]]` entries, from 1.
        index: usize,
        /// The attack it names.
        attack: String,
        /// What is wrong.
        why: String,
    },
    /// A global row the probe refuses.
    #[error("the probe's configuration {path}, global row for `{table}`: {why}")]
    GlobalRow {
        /// The file.
        path: String,
        /// The table.
        table: String,
        /// What is wrong.
        why: String,
    },
}

/// The verdicts a service may expect. A leak (or a pass) cannot be expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ExpectedVerdict {
    /// The attack could not run (a table that cannot be seeded, ...): accepted, with the
    /// reason in every report, instead of failing the run.
    NotRun,
    /// What the configuration gives up by name (org hopping in the plain mode).
    Finding,
    /// A side channel, reported as observed.
    Observed,
}

impl TryFrom<String> for ExpectedVerdict {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "not_run" => Ok(ExpectedVerdict::NotRun),
            "finding" => Ok(ExpectedVerdict::Finding),
            "observed" => Ok(ExpectedVerdict::Observed),
            other if other.eq_ignore_ascii_case("leak") => Err(
                "a leak cannot be expected: it always fails the run (fix the schema or the role)"
                    .into(),
            ),
            other => Err(format!(
                "`{other}` cannot be expected: the verdicts that can are not_run, finding and observed"
            )),
        }
    }
}

impl ExpectedVerdict {
    /// The report's verdict this names.
    pub fn verdict(self) -> Verdict {
        match self {
            ExpectedVerdict::NotRun => Verdict::NotRun,
            ExpectedVerdict::Finding => Verdict::Finding,
            ExpectedVerdict::Observed => Verdict::Observed,
        }
    }
}

/// One outcome the service expects, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The attack's name, as the report gives it (`seed`, `read_by_key`, ...).
    pub attack: String,
    /// The table, as the report gives it; absent or empty for a database-wide attack.
    #[serde(default)]
    pub table: String,
    /// The verdict expected.
    pub verdict: ExpectedVerdict,
    /// Why the service accepts it: printed in every report beside the result.
    pub reason: String,
}

/// A row the probe may add to an empty global table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRow {
    /// The global table (registered as global in the service's registry).
    pub table: String,
    /// Column values as text, cast to each column's type; other columns are generated as
    /// for a tenant row, or left to their defaults.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// The probe's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Seeders: table name to one `INSERT ... RETURNING *` with `$org` where the org goes.
    #[serde(default)]
    pub seeders: HashMap<String, String>,
    /// Rows for empty global tables.
    #[serde(default)]
    pub global_rows: Vec<GlobalRow>,
    /// Expected outcomes.
    #[serde(default, rename = "expect")]
    pub expectations: Vec<Expectation>,
}

/// The shortest reason accepted, in visible characters: a reason is for the security
/// reviewer reading the report.
const MIN_REASON: usize = 10;

/// The characters of `s` a reader sees: not whitespace, not control characters, not the
/// zero-width and direction marks (which would let ten invisible characters pass for a
/// reason).
fn visible_chars(s: &str) -> usize {
    s.chars()
        .filter(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(
                    c,
                    '\u{ad}'
                        | '\u{34f}'
                        | '\u{61c}'
                        | '\u{115f}'
                        | '\u{1160}'
                        | '\u{180e}'
                        | '\u{200b}'..='\u{200f}'
                        | '\u{202a}'..='\u{202e}'
                        | '\u{2060}'..='\u{206f}'
                        | '\u{3164}'
                        | '\u{fe00}'..='\u{fe0f}'
                        | '\u{feff}'
                        | '\u{ffa0}'
                )
        })
        .count()
}

impl ProbeConfig {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `path` names it in errors.
    ///
    /// ```
    /// let config = tenant_probe::config::ProbeConfig::parse(
    ///     r#"
    ///     [[expect]]
    ///     attack = "seed"
    ///     table = "audit_log"
    ///     verdict = "not_run"
    ///     reason = "written by a trigger only; attacked in tests/audit_log.rs"
    ///     "#,
    ///     "tenant-probe.toml",
    /// )?;
    /// assert_eq!(config.expectations.len(), 1);
    /// # Ok::<(), tenant_probe::config::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`]: not TOML of this shape, an unknown key, an expectation of a leak or a
    /// pass, an expectation without a reason or given twice, a global row for no table.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: ProbeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        for (i, e) in config.expectations.iter().enumerate() {
            let refuse = |why: String| ConfigError::Expectation {
                path: path.to_owned(),
                index: i + 1,
                attack: e.attack.clone(),
                why,
            };
            if e.attack.trim().is_empty() {
                return Err(refuse("name the attack, as the report gives it".into()));
            }
            if visible_chars(&e.reason) < MIN_REASON {
                return Err(refuse(format!(
                    "say why the service expects it: a reason of at least {MIN_REASON} characters, \
                     which every report prints beside the result"
                )));
            }
            if config.expectations[..i]
                .iter()
                .any(|o| o.attack == e.attack && o.table == e.table)
            {
                return Err(refuse(format!(
                    "given twice for table `{}`: keep one",
                    e.table
                )));
            }
        }
        for g in &config.global_rows {
            if g.table.trim().is_empty() {
                return Err(ConfigError::GlobalRow {
                    path: path.to_owned(),
                    table: g.table.clone(),
                    why: "name the global table".into(),
                });
            }
        }
        Ok(config)
    }

    /// [`apply`] with this file's expectations.
    pub fn apply(&self, report: &mut Report) {
        apply(&self.expectations, report);
    }
}

/// Marks the results of `report` that an expectation names, and records in the report every
/// expectation that matched no result or a result with another verdict (each fails the run:
/// an expectation that no longer holds must be removed, not left to excuse a later outcome).
/// A leak is never marked.
pub fn apply(expectations: &[Expectation], report: &mut Report) {
    for e in expectations {
        let want = e.verdict.verdict();
        let mut matched = false;
        let mut other = Vec::new();
        for r in report
            .results
            .iter_mut()
            .filter(|r| r.attack == e.attack && r.table == e.table)
        {
            if r.verdict == want {
                r.expected_by = Some(e.reason.clone());
                matched = true;
            } else {
                other.push(r.verdict.as_str());
            }
        }
        if matched {
            continue;
        }
        let place = if e.table.is_empty() {
            "database-wide".to_owned()
        } else {
            format!("on `{}`", e.table)
        };
        report.stale_expectations.push(if other.is_empty() {
            format!(
                "the expectation for `{}` {place} matched no result: check the attack and table \
                 names against probe.md, or remove it",
                e.attack
            )
        } else {
            format!(
                "`{}` {place} was expected to be {} and was {}: remove the expectation",
                e.attack,
                want.as_str(),
                other.join(", ")
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AttackResult, Observed};

    fn parse(text: &str) -> Result<ProbeConfig, String> {
        ProbeConfig::parse(text, "p.toml").map_err(|e| e.to_string())
    }

    fn result(attack: &str, table: &str, verdict: Verdict) -> AttackResult {
        AttackResult {
            attack: attack.into(),
            family: "read".into(),
            threat: "#1".into(),
            table: table.into(),
            sql: String::new(),
            expected: String::new(),
            observed: Observed::Rows(0),
            verdict,
            note: String::new(),
            expected_by: None,
        }
    }

    fn report(results: Vec<AttackResult>) -> Report {
        Report {
            generated_at: String::new(),
            duration_ms: 0,
            server_version_num: 0,
            server_version: String::new(),
            role: String::new(),
            evidence_digest: None,
            org_a: String::new(),
            org_b: String::new(),
            tables: vec!["invoices".into()],
            unseedable: vec![],
            results,
            global_rows: vec![],
            stale_expectations: vec![],
        }
    }

    const NOT_RUN: &str = r#"
        [[expect]]
        attack = "seed"
        table = "audit_log"
        verdict = "not_run"
        reason = "written by a trigger only"
    "#;

    #[test]
    fn a_leak_or_a_pass_cannot_be_expected() {
        for verdict in ["leak", "LEAK"] {
            let err = parse(&NOT_RUN.replace("not_run", verdict)).unwrap_err();
            assert!(
                err.contains("a leak cannot be expected: it always fails the run"),
                "{err}"
            );
        }
        let err = parse(&NOT_RUN.replace("not_run", "pass")).unwrap_err();
        assert!(
            err.contains(
                "`pass` cannot be expected: the verdicts that can are not_run, finding and observed"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it() {
        let err = parse(&format!("{NOT_RUN}\nverdcit = \"finding\"")).unwrap_err();
        assert!(err.contains("unknown field `verdcit`"), "{err}");
        let err = parse("[seeder]\nx = \"INSERT\"").unwrap_err();
        assert!(err.contains("unknown field `seeder`"), "{err}");
    }

    #[test]
    fn an_expectation_needs_a_reason_and_is_given_once() {
        let err = parse(&NOT_RUN.replace("written by a trigger only", "ok")).unwrap_err();
        assert!(err.contains("expectation 1 (`seed`): say why"), "{err}");
        let err = parse(&format!("{NOT_RUN}{NOT_RUN}")).unwrap_err();
        assert!(err.contains("expectation 2 (`seed`): given twice"), "{err}");
    }

    #[test]
    fn a_reason_of_invisible_characters_is_no_reason() {
        let hidden = NOT_RUN.replace(
            "written by a trigger only",
            &"\u{200b}\u{2060}\u{feff} ".repeat(5),
        );
        let err = parse(&hidden).unwrap_err();
        assert!(err.contains("say why"), "{err}");
    }

    #[test]
    fn an_expected_not_run_is_marked_and_no_longer_fails_the_run() {
        let config = parse(NOT_RUN).unwrap();
        let mut r = report(vec![
            result("seed", "audit_log", Verdict::NotRun),
            result("read_by_key", "invoices", Verdict::Pass),
        ]);
        assert!(r.failed());
        config.apply(&mut r);
        assert_eq!(
            r.results[0].expected_by.as_deref(),
            Some("written by a trigger only")
        );
        assert!(r.stale_expectations.is_empty());
        assert!(!r.failed(), "{}", r.summary_line());
        assert!(
            r.summary_line().contains("1 not run (1 expected)"),
            "{}",
            r.summary_line()
        );
    }

    #[test]
    fn an_expectation_never_excuses_a_leak_and_says_what_happened() {
        let config = parse(NOT_RUN).unwrap();
        let mut r = report(vec![result("seed", "audit_log", Verdict::Leak)]);
        config.apply(&mut r);
        assert_eq!(r.results[0].expected_by, None);
        assert_eq!(
            r.stale_expectations,
            [
                "`seed` on `audit_log` was expected to be NOT RUN and was LEAK: remove the expectation"
            ]
        );
        assert!(r.failed());
    }

    #[test]
    fn an_expectation_that_matches_nothing_fails_the_run() {
        let config = parse(&NOT_RUN.replace("audit_log", "audit_logs")).unwrap();
        let mut r = report(vec![result("seed", "audit_log", Verdict::Pass)]);
        config.apply(&mut r);
        assert!(r.failed());
        assert!(
            r.stale_expectations[0].contains("`seed` on `audit_logs` matched no result"),
            "{:?}",
            r.stale_expectations
        );
    }

    #[test]
    fn an_expected_not_run_that_now_passes_fails_the_run_until_removed() {
        let config = parse(NOT_RUN).unwrap();
        let mut r = report(vec![result("seed", "audit_log", Verdict::Pass)]);
        config.apply(&mut r);
        assert!(r.failed());
        assert!(
            r.stale_expectations[0].contains("was pass"),
            "{:?}",
            r.stale_expectations
        );
    }

    #[test]
    fn seeders_and_global_rows_parse() {
        let config = parse(
            r#"
            [seeders]
            invoices = "INSERT INTO invoices (org_id) VALUES ($org) RETURNING *"
            [[global_rows]]
            table = "plans"
            values = { code = "probe", price_cents = "0" }
            "#,
        )
        .unwrap();
        assert!(config.seeders.contains_key("invoices"));
        assert_eq!(config.global_rows[0].values.len(), 2);
    }
}
