//! What an attack is: a statement (with setup statements before it) run as org A, the
//! outcomes that mean the isolation held, and what a different outcome means.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::report::Verdict;
use crate::schema::TableInfo;
use crate::seed::{Row, fresh_row};
use crate::sql::{ident, literal};

/// The kind of attack, for grouping in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Reading B's rows.
    Read,
    /// Writing B's rows or writing rows into B.
    Write,
    /// Reading or writing with no org set.
    NoOrg,
    /// Changing the org inside a transaction.
    OrgHopping,
    /// Switching the policy off or acting as someone else.
    Privilege,
    /// Learning about B's rows from constraint errors.
    Oracle,
    /// Reading through views.
    View,
    /// What the server shows across orgs by design (reported, not judged).
    SideChannel,
    /// A context left on a pooled connection.
    Pool,
}

impl Family {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Read => "read",
            Family::Write => "write",
            Family::NoOrg => "no-org",
            Family::OrgHopping => "org-hopping",
            Family::Privilege => "privilege",
            Family::Oracle => "oracle",
            Family::View => "view",
            Family::SideChannel => "side-channel",
            Family::Pool => "pool",
        }
    }
}

/// An outcome that means the isolation held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// The statement ran and returned (or affected) exactly this many rows.
    Rows(u64),
    /// The statement was refused with this SQLSTATE.
    Sqlstate(&'static str),
}

/// Which session an attack runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The attacker's transaction, with org A set and both orgs seeded.
    Main,
    /// A fresh connection that never set an org.
    Fresh,
    /// A connection whose earlier transaction set an org and ended.
    AfterScoped,
}

/// One attack, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its name, e.g. `read_by_key`.
    pub attack: &'static str,
    /// Its family.
    pub family: Family,
    /// The threat-model item it tries (docs/threat-model.md).
    pub threat: &'static str,
    /// The table (or view) attacked; empty for a database-wide attack.
    pub table: String,
    /// Statements run first (no rows wanted); a refusal there is the outcome.
    pub setup: Vec<String>,
    /// The attack statement.
    pub sql: String,
    /// Whether it returns rows (a query, or a write with RETURNING).
    pub want_rows: bool,
    /// Outcomes that mean the isolation held; empty for an observation.
    pub accept: Vec<Accept>,
    /// What should happen, in words.
    pub expected: String,
    /// The verdict when the outcome is not accepted.
    pub on_fail: Verdict,
    /// Refusals that are themselves the failure (a 23505 that proves B has a value), as
    /// opposed to a refusal nobody expected, after which the attack counts as not run.
    pub failing_refusals: Vec<&'static str>,
    /// Whether to check afterwards that B's rows of the table are unchanged.
    pub check_b: bool,
    /// Where it runs.
    pub session: Session,
}

impl Plan {
    /// A read-like attack in the main session that must return no rows.
    pub fn new(
        attack: &'static str,
        family: Family,
        threat: &'static str,
        table: &str,
        sql: String,
    ) -> Self {
        Self {
            attack,
            family,
            threat,
            table: table.to_owned(),
            setup: Vec::new(),
            sql,
            want_rows: true,
            accept: vec![Accept::Rows(0)],
            expected: "0 rows".into(),
            on_fail: Verdict::Leak,
            failing_refusals: Vec::new(),
            check_b: false,
            session: Session::Main,
        }
    }

    /// Statements run before the attack.
    pub fn setup(mut self, setup: Vec<String>) -> Self {
        self.setup = setup;
        self
    }

    /// The statement affects rows rather than returning them.
    pub fn no_rows(mut self) -> Self {
        self.want_rows = false;
        self
    }

    /// The accepted outcomes and their description.
    pub fn accept(mut self, accept: Vec<Accept>, expected: &str) -> Self {
        self.accept = accept;
        self.expected = expected.to_owned();
        self
    }

    /// Checks afterwards that B's rows are unchanged.
    pub fn check_b(mut self) -> Self {
        self.check_b = true;
        self
    }

    /// The verdict when the outcome is not accepted.
    pub fn on_fail(mut self, verdict: Verdict) -> Self {
        self.on_fail = verdict;
        self
    }

    /// A refusal with `sqlstate` is the failure itself.
    pub fn fails_with(mut self, sqlstate: &'static str) -> Self {
        self.failing_refusals.push(sqlstate);
        self
    }

    /// Runs in another session.
    pub fn session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }
}

/// What an attack on one table knows: the table, both orgs and their seeded rows.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The table.
    pub table: &'a TableInfo,
    /// The attacker.
    pub a: Uuid,
    /// The victim.
    pub b: Uuid,
    /// A's rows, by table.
    pub a_rows: &'a HashMap<String, Row>,
    /// B's rows, by table.
    pub b_rows: &'a HashMap<String, Row>,
    /// A row of each non-tenant table a tenant table references.
    pub outside: &'a HashMap<String, Row>,
    /// `server_version_num`.
    pub server_version: i32,
    /// In the signed mode, the id of the key the probe signs with (a forged token names it);
    /// `None` in the opt-in plain mode, where a hop that works is what the mode gives up.
    pub signed_kid: Option<&'a str>,
    /// The service sets the org with `SET LOCAL` (a Citus coordinator sends that, not
    /// `set_config`, on to its workers): the attacks empty it that way too.
    pub set_local: bool,
}

impl Target<'_> {
    /// The table, quoted.
    pub fn name(&self) -> String {
        ident(&self.table.name)
    }

    /// The org column, quoted.
    pub fn org(&self) -> String {
        ident(&self.table.org_column)
    }

    /// An org id as a `uuid` literal.
    pub fn lit(org: Uuid) -> String {
        literal(Some(&org.to_string()), "uuid")
    }

    /// A's row of this table.
    pub fn a_row(&self) -> Option<&Row> {
        self.a_rows.get(&self.table.name)
    }

    /// B's row of this table.
    pub fn b_row(&self) -> Option<&Row> {
        self.b_rows.get(&self.table.name)
    }

    /// The columns that identify a row: the primary key, else the first unique key.
    pub fn key(&self) -> Vec<&str> {
        let pk = self.table.primary_key();
        if !pk.is_empty() {
            return pk;
        }
        self.table
            .constraints
            .iter()
            .find(|c| c.kind == "u")
            .map(|c| c.column_list())
            .unwrap_or_default()
    }

    /// `alias.col = <value in row>` for each of `columns`, ANDed.
    pub fn matches(&self, row: &Row, columns: &[&str], alias: Option<&str>) -> Option<String> {
        if columns.is_empty() {
            return None;
        }
        let parts: Vec<String> = columns
            .iter()
            .map(|c| {
                let ty = self.table.column(c).map_or("text", |c| c.ty.as_str());
                let value = row.get(*c).cloned().flatten();
                let col = match alias {
                    Some(a) => format!("{a}.{}", ident(c)),
                    None => ident(c),
                };
                match value {
                    Some(v) => format!("{col} = {}", literal(Some(&v), ty)),
                    None => format!("{col} IS NULL"),
                }
            })
            .collect();
        Some(parts.join(" AND "))
    }

    /// `key = B's key`.
    pub fn b_key(&self, alias: Option<&str>) -> Option<String> {
        self.matches(self.b_row()?, &self.key(), alias)
    }

    /// `key = A's key`.
    pub fn a_key(&self, alias: Option<&str>) -> Option<String> {
        self.matches(self.a_row()?, &self.key(), alias)
    }

    /// A fresh row for `org` (parents of that org), like its seeded row with new keys, with
    /// `overrides` (column to SQL).
    pub fn fresh(
        &self,
        org: Uuid,
        overrides: &BTreeMap<String, String>,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let parents = if org == self.b {
            self.b_rows
        } else {
            self.a_rows
        };
        let base = parents.get(&self.table.name);
        fresh_row(self.table, org, parents, self.outside, overrides, base).ok()
    }

    /// B's value of `column`, as a typed literal.
    pub fn b_value(&self, column: &str) -> Option<String> {
        let ty = self.table.column(column).map_or("text", |c| c.ty.as_str());
        let v = self.b_row()?.get(column).cloned().flatten();
        Some(literal(v.as_deref(), ty))
    }
}
