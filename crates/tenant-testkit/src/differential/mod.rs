//! The SQL checker's differential (feature `differential`): any statement the checker
//! approves, run for org A, must read and write only A's rows and leave the session's org
//! alone. Each approved statement runs twice on a database of the story in the plain mode, in
//! transactions rolled back afterwards: as the application role under row-level security, and
//! as a role that bypasses it, with `$1` = A (the org parameter) and `$2` = B (a value the
//! statement may mention, but not as the org). If the checker is right, RLS adds nothing:
//! both runs return the same rows (or both fail), no row of another org changes in the
//! bypassing run, and the session's org is A after each. A difference is a statement the
//! checker wrongly let through.
//!
//! Used by the test `tenant-core/tests/sql_differential.rs` (seeded campaigns and the
//! corpus) and by the fuzz target `fuzz/fuzz_targets/sql_differential.rs` (libFuzzer's
//! inputs, [`decode`]d).

mod generator;

pub use generator::{ALLOWED_CALLS, Gen, REFUSED_CALLS};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use tenant_core::OrgId;
use tenant_sqlcheck::Tables;

use crate::{TestDb, roles};

/// The tables the generator uses, as the checker knows them.
pub fn tables() -> Tables {
    Tables::new([
        ("orgs", Some("id")),
        ("customers", Some("org_id")),
        ("deals", Some("org_id")),
        ("currencies", None),
    ])
}

/// Which placeholder holds the org: `$1`.
pub fn is_org(p: &str) -> bool {
    p == "$1"
}

/// The first byte of a fuzzer's input that makes the rest the generator's choices; any other
/// input is the statement's text (so a corpus file of plain SQL is an input as it is).
pub const GENERATED: u8 = 0x01;

/// The statement a fuzzer's input stands for: [`Gen::from_bytes`] of the rest after a
/// [`GENERATED`] byte, else the input as UTF-8 text (`None` if it is not, or holds a NUL,
/// which PostgreSQL text cannot).
///
/// ```
/// use tenant_testkit::differential::{GENERATED, decode};
///
/// assert_eq!(decode(b"SELECT 1").as_deref(), Some("SELECT 1"));
/// assert!(decode(&[GENERATED, 9, 9]).is_some_and(|sql| sql.contains("FROM")));
/// assert_eq!(decode(&[0xff, 0xfe]), None);
/// ```
pub fn decode(data: &[u8]) -> Option<String> {
    let sql = match data.split_first() {
        Some((&GENERATED, rest)) => Gen::from_bytes(rest).statement(),
        _ => std::str::from_utf8(data).ok()?.to_owned(),
    };
    (!sql.contains('\0')).then_some(sql)
}

/// Runs a statement, returning its rows (sorted jsonb text) or `ERROR <sqlstate>`; and the
/// digest of every row that is not org `a`'s.
const HARNESS: &str = r#"
CREATE SCHEMA ts_diff;
CREATE FUNCTION ts_diff.run(sql text, a uuid, b uuid) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record; rows text[] := '{}';
BEGIN
  FOR r IN EXECUTE sql USING a, b LOOP rows := rows || to_jsonb(r)::text; END LOOP;
  RETURN (SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM unnest(rows) x);
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;
CREATE FUNCTION ts_diff.others(a uuid) RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws('|',
    (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM orgs t WHERE id <> a),
    (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM customers t WHERE org_id <> a),
    (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM deals t WHERE org_id <> a),
    (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM currencies t))
$$;
GRANT USAGE ON SCHEMA ts_diff TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ts_diff TO PUBLIC;
"#;

/// What one run of a statement gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The rows (sorted, as jsonb text), or `ERROR <sqlstate>`.
    pub rows: String,
    /// The digest of every row not org A's, before the statement.
    pub others_before: String,
    /// The same, after it.
    pub others_after: String,
    /// `tenant.org_id` after the statement.
    pub org_after: String,
}

/// The database of the differential and a connection as each of the two roles.
pub struct Harness {
    // Dropped last: the connections go first.
    app: PgConnection,
    bypass: PgConnection,
    /// Org A, the session's.
    pub a: OrgId,
    /// Org B, another.
    pub b: OrgId,
    /// The words in the names of orgs B and C.
    others_markers: Vec<String>,
    db: TestDb,
}

impl Harness {
    /// A database of its own (named after `hint`) with three orgs, each with customers and
    /// deals.
    ///
    /// # Panics
    /// When the database cannot be made (see [`TestDb::new`]).
    pub fn new(hint: &str) -> Self {
        // The plain mode, whose policies follow any org a statement sets: the differential
        // judges the application layer alone, which a signed database would back up.
        let db = crate::story::plain(hint);
        let mut admin = db.admin();
        admin.batch_execute(HARNESS).expect("the harness");
        admin
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
                roles::BYPASSRLS
            ))
            .expect("grants to the bypassing role");
        let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new_random()).collect();
        // A word no statement can guess in every name of each org: another org's in a result
        // is a read of its rows, whether RLS let it through or not (a statement that moved
        // the session's org would read them under RLS too).
        let markers: Vec<String> = (0..3)
            .map(|_| {
                format!(
                    "m{}",
                    &OrgId::new_random().to_string().replace('-', "")[..16]
                )
            })
            .collect();
        for (i, (org, marker)) in orgs.iter().zip(&markers).enumerate() {
            // Org A's names and titles are years and numbers, the others' are words: a
            // conversion (`::int8`, `to_date(.., 'YYYY')`) fails on another org's row only, so
            // one that PostgreSQL evaluates before the org predicate shows as an error in the
            // bypassing run alone.
            let (name, title) = if i == 0 {
                ("'202' || g".to_owned(), "c.name || g".to_owned())
            } else {
                (
                    format!("'c' || g || ' {marker}'"),
                    "'d ' || c.name || ' ' || g".to_owned(),
                )
            };
            admin
                .batch_execute(&format!(
                    "INSERT INTO orgs (id, name) VALUES ('{org}', 'org {i} {marker}');
                     INSERT INTO customers (id, org_id, name, email)
                       SELECT gen_random_uuid(), '{org}', {name}, 'c' || g || '@x' FROM generate_series(1, 3) g;
                     INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage)
                       SELECT '{org}', c.id, {title}, 100 * g, 'EUR', (ARRAY['open','won','lost'])[1 + g % 3]
                       FROM customers c, generate_series(1, 2) g WHERE c.org_id = '{org}';"
                ))
                .expect("the orgs' rows");
        }
        Self {
            app: db.connect_as(roles::APP),
            bypass: db.connect_as(roles::BYPASSRLS),
            a: orgs[0],
            b: orgs[1],
            others_markers: markers[1..].to_vec(),
            db,
        }
    }

    /// [`new`](Self::new) for a fuzzing process, which ends without dropping its statics:
    /// first drops the databases earlier fuzzing processes left (named after `hint` too).
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn for_fuzzing(hint: &str) -> Self {
        crate::drop_leftovers(hint);
        Self::new(hint)
    }

    /// The same database and orgs on new connections (which see settings changed since).
    pub fn reconnect(self) -> Self {
        Self {
            app: self.db.connect_as(roles::APP),
            bypass: self.db.connect_as(roles::BYPASSRLS),
            ..self
        }
    }

    /// The database.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// `sql` for org A as the application role, under RLS.
    ///
    /// # Panics
    /// When the server cannot be reached (a statement's own error is an outcome).
    pub fn run_as_app(&mut self, sql: &str) -> Outcome {
        run(&mut self.app, sql, self.a, self.b)
    }

    /// `None` when the two runs agree, the bypassing run left other orgs alone, neither
    /// returned a word of another org's rows and both left the session's org A; else what
    /// differs.
    ///
    /// # Panics
    /// As [`run_as_app`](Self::run_as_app).
    pub fn differs(&mut self, sql: &str) -> Option<String> {
        let under_rls = run(&mut self.app, sql, self.a, self.b);
        let bypassing = run(&mut self.bypass, sql, self.a, self.b);
        let a = self.a.to_string();
        if bypassing.others_before != bypassing.others_after {
            return Some("rows of another org changed".into());
        }
        for (how, outcome) in [("under RLS", &under_rls), ("bypassing RLS", &bypassing)] {
            if self
                .others_markers
                .iter()
                .any(|m| outcome.rows.contains(m.as_str()))
            {
                return Some(format!(
                    "another org's rows were read {how}:\n{}",
                    outcome.rows
                ));
            }
            if outcome.org_after != a {
                return Some(format!(
                    "the session's org changed {how}: `{}` after the statement",
                    outcome.org_after
                ));
            }
        }
        (under_rls.rows != bypassing.rows).then(|| {
            format!(
                "under RLS:\n{}\nbypassing RLS:\n{}",
                under_rls.rows, bypassing.rows
            )
        })
    }
}

/// `sql` for org A, in a transaction rolled back afterwards, on `conn`.
fn run(conn: &mut PgConnection, sql: &str, a: OrgId, b: OrgId) -> Outcome {
    conn.batch_execute(&format!(
        "BEGIN; SELECT set_config('tenant.org_id', '{a}', true)"
    ))
    .expect("opening the transaction");
    let others = |c: &mut PgConnection| -> String {
        diesel::select(
            diesel::dsl::sql::<Text>("ts_diff.others(")
                .bind::<SqlUuid, _>(a.as_uuid())
                .sql(")"),
        )
        .get_result(c)
        .expect("the digest of other orgs' rows")
    };
    let others_before = others(conn);
    let rows: String = diesel::select(
        diesel::dsl::sql::<Text>("ts_diff.run(")
            .bind::<Text, _>(sql)
            .sql(", ")
            .bind::<SqlUuid, _>(a.as_uuid())
            .sql(", ")
            .bind::<SqlUuid, _>(b.as_uuid())
            .sql(")"),
    )
    .get_result(conn)
    .expect("ts_diff.run");
    let others_after = others(conn);
    let org_after: String = diesel::select(diesel::dsl::sql::<Text>(
        "coalesce(current_setting('tenant.org_id', true), '')",
    ))
    .get_result(conn)
    .expect("the session's org");
    conn.batch_execute("ROLLBACK").expect("ROLLBACK");
    Outcome {
        rows,
        others_before,
        others_after,
        org_after,
    }
}
