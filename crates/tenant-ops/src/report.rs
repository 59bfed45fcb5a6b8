//! The postmortem report of break-glass access to one org: every grant with who, when, the
//! ticket, the reason, read or write, the window, when it was entered and closed and how long
//! that took, and every refused request. Markdown for the customer's postmortem, JSON for
//! tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use tenant_core::operator::AccessEntry;
use tenant_schema::evidence::{md_cell, md_line};

/// One grant and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// The grant id.
    pub grant: i64,
    /// The login.
    pub operator: String,
    /// When it was granted.
    pub granted_at: String,
    /// The ticket.
    pub ticket: String,
    /// The reason given.
    pub reason: String,
    /// `read` or `write`.
    pub mode: String,
    /// End of the window.
    pub expires_at: String,
    /// When the operator entered it (first time), if they did.
    pub entered_at: Option<String>,
    /// When the session was closed, if it was.
    pub closed_at: Option<String>,
    /// From entering to closing.
    pub duration_s: Option<f64>,
    /// What the session recorded (statement count, purge receipt).
    pub details: Vec<String>,
}

/// The report for one org.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessReport {
    /// The org.
    pub org: String,
    /// The start of the period, if one was given.
    pub since: Option<String>,
    /// Every grant, oldest first.
    pub accesses: Vec<Access>,
    /// Every refused request or entry: when, who, ticket, why.
    pub refusals: Vec<(String, String, String, String)>,
}

fn seconds(from: &str, to: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

impl AccessReport {
    /// Builds the report from the log entries of `org` (oldest first).
    pub fn new(org: &str, since: Option<&str>, log: &[AccessEntry]) -> Self {
        let mut accesses: BTreeMap<i64, Access> = BTreeMap::new();
        let mut refusals = Vec::new();
        for e in log {
            match e.event.as_str() {
                "granted" => {
                    accesses.insert(
                        e.id,
                        Access {
                            grant: e.id,
                            operator: e.operator.clone(),
                            granted_at: e.at.clone(),
                            ticket: e.ticket.clone().unwrap_or_default(),
                            reason: e.reason.clone().unwrap_or_default(),
                            mode: e.mode.clone().unwrap_or_default(),
                            expires_at: e.expires_at.clone().unwrap_or_default(),
                            entered_at: None,
                            closed_at: None,
                            duration_s: None,
                            details: Vec::new(),
                        },
                    );
                }
                "refused" => refusals.push((
                    e.at.clone(),
                    e.operator.clone(),
                    e.ticket.clone().unwrap_or_default(),
                    e.detail.clone().unwrap_or_default(),
                )),
                event => {
                    let Some(a) = e.grant_id.and_then(|g| accesses.get_mut(&g)) else {
                        continue;
                    };
                    match event {
                        "entered" if a.entered_at.is_none() => a.entered_at = Some(e.at.clone()),
                        "closed" => {
                            a.closed_at = Some(e.at.clone());
                            a.duration_s = a
                                .entered_at
                                .as_deref()
                                .and_then(|from| seconds(from, &e.at));
                        }
                        _ => {}
                    }
                    if let Some(d) = &e.detail {
                        a.details.push(format!("{event}: {d}"));
                    }
                }
            }
        }
        Self {
            org: org.to_owned(),
            since: since.map(str::to_owned),
            accesses: accesses.into_values().collect(),
            refusals,
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Access to org `{}`\n", self.org);
        let _ = writeln!(
            md,
            "Period: {}. Every access by a person to this organization's data goes through a logged request with a ticket, a reason and a time window; the log cannot be changed by the people it records.\n",
            self.since
                .as_deref()
                .map_or("everything on record".to_owned(), |s| format!("since {s}"))
        );
        if self.accesses.is_empty() {
            let _ = writeln!(
                md,
                "No one accessed this organization's data in this period.\n"
            );
        } else {
            let _ = writeln!(
                md,
                "| granted | who | ticket | reason | access | window until | entered | closed | duration |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
            for a in &self.accesses {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    md_cell(&a.granted_at),
                    md_cell(&a.operator),
                    md_cell(&a.ticket),
                    md_cell(&a.reason),
                    md_cell(&a.mode),
                    md_cell(&a.expires_at),
                    a.entered_at.as_deref().unwrap_or("never"),
                    a.closed_at.as_deref().unwrap_or("not closed"),
                    a.duration_s.map_or("-".to_owned(), |s| format!("{s:.1} s")),
                );
            }
            let _ = writeln!(md);
            for a in self.accesses.iter().filter(|a| !a.details.is_empty()) {
                let _ = writeln!(
                    md,
                    "- grant {} ({}): {}",
                    a.grant,
                    md_line(&a.ticket),
                    md_line(&a.details.join("; "))
                );
            }
            let _ = writeln!(md);
        }
        if !self.refusals.is_empty() {
            let _ = writeln!(md, "## Refused requests\n");
            let _ = writeln!(md, "| when | who | ticket | why |\n|---|---|---|---|");
            for (at, who, ticket, why) in &self.refusals {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    md_cell(at),
                    md_cell(who),
                    md_cell(ticket),
                    md_cell(why)
                );
            }
        }
        md
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        let doc = json!({
            "org": self.org,
            "since": self.since,
            "accesses": self.accesses.iter().map(|a| json!({
                "grant": a.grant, "operator": a.operator, "granted_at": a.granted_at,
                "ticket": a.ticket, "reason": a.reason, "mode": a.mode, "expires_at": a.expires_at,
                "entered_at": a.entered_at, "closed_at": a.closed_at, "duration_s": a.duration_s,
                "details": a.details,
            })).collect::<Vec<_>>(),
            "refusals": self.refusals.iter().map(|(at, who, ticket, why)| json!({
                "at": at, "operator": who, "ticket": ticket, "why": why,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        id: i64,
        at: &str,
        event: &str,
        grant: Option<i64>,
        detail: Option<&str>,
    ) -> AccessEntry {
        AccessEntry {
            id,
            at: at.into(),
            event: event.into(),
            operator: "alice".into(),
            ticket: Some("OPS-1".into()),
            reason: Some("the customer asked us to look".into()),
            mode: Some("read".into()),
            expires_at: Some("2026-11-27T01:30:00Z".into()),
            grant_id: grant,
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn a_grant_its_session_and_a_refusal_become_one_row_each() {
        let log = [
            entry(1, "2026-11-27T01:00:00.000000Z", "granted", Some(1), None),
            entry(2, "2026-11-27T01:00:01.000000Z", "entered", Some(1), None),
            entry(
                3,
                "2026-11-27T01:00:31.500000Z",
                "closed",
                Some(1),
                Some("3 statements"),
            ),
            entry(
                4,
                "2026-11-27T01:05:00.000000Z",
                "refused",
                None,
                Some("malformed ticket"),
            ),
        ];
        let r = AccessReport::new("org-a", None, &log);
        assert_eq!(r.accesses.len(), 1);
        assert_eq!(r.accesses[0].duration_s, Some(30.5));
        assert_eq!(r.accesses[0].details, ["closed: 3 statements"]);
        assert_eq!(r.refusals.len(), 1);
        let md = r.markdown();
        assert!(
            md.contains("| alice | OPS-1 | the customer asked us to look | read |"),
            "{md}"
        );
        assert!(md.contains("30.5 s"), "{md}");
        assert!(md.contains("malformed ticket"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap_or_default();
        assert_eq!(json["accesses"][0]["ticket"], "OPS-1");
    }

    #[test]
    fn text_from_the_log_cannot_add_rows_or_cells_to_the_report() {
        let mut granted = entry(1, "2026-11-27T01:00:00.000000Z", "granted", Some(1), None);
        granted.ticket = Some("OPS|2".into());
        granted.reason =
            Some("look\n| 2026-11-27 | mallory | OPS-9 | forged | read | x | x | x | x |".into());
        let mut refused = entry(2, "2026-11-27T01:05:00.000000Z", "refused", None, None);
        refused.detail = Some("bad\r\n- grant 9 (OPS-9): forged".into());
        let md = AccessReport::new("org-a", None, &[granted, refused]).markdown();
        assert!(
            !md.lines()
                .any(|l| l.starts_with("| 2026-11-27 | mallory") || l.starts_with("- grant 9")),
            "{md}"
        );
        assert!(
            md.contains("| OPS\\|2 | look\\n\\| 2026-11-27 \\| mallory"),
            "{md}"
        );
        let rows = |header: &str| {
            md.lines()
                .skip_while(|l| !l.starts_with(header))
                .skip(2)
                .take_while(|l| l.starts_with('|'))
                .count()
        };
        assert_eq!(rows("| granted |"), 1, "{md}");
        assert_eq!(rows("| when |"), 1, "{md}");
    }
}
