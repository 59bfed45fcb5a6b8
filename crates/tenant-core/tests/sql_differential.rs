//! Differential testing of the SQL scope checker (`tenant-sqlcheck`): any statement it
//! accepts, run for org A, must read and write only A's rows. Each accepted statement runs
//! twice, in transactions that are rolled back: as the application role under row-level
//! security, and as a role that bypasses it, with `$1` = A (the org parameter) and `$2` = B
//! (a value the statement may mention, but not as the org). If the checker is right, RLS adds
//! nothing: both runs return the same rows (or both fail), and in the bypassing run no row of
//! another org changes. A difference is a statement the checker wrongly let through.
//!
//! Statements come from the regression corpus (`fuzz/corpus/sql_differential/*.sql`), the
//! libFuzzer corpus of the checker (`fuzz/corpus/sql_check/`, those it accepts), and a
//! generator over the story's tables (joins, subqueries, CTEs, set operations, aggregates,
//! UPDATE/DELETE/INSERT with RETURNING, ON CONFLICT), seeded: `TENANT_SQLDIFF_CASES` (default
//! 1500) and `TENANT_SQLDIFF_SEED` (default fixed) set the campaign; `cargo xtask soak` runs a
//! longer one with a fresh seed. A failing statement is written to the regression corpus.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use tenant_core::OrgId;
use tenant_sqlcheck::{Tables, check};
use tenant_testkit::{TestDb, roles};

/// The tables the generator uses, as the checker knows them.
fn tables() -> Tables {
    Tables::new([
        ("orgs", Some("id")),
        ("customers", Some("org_id")),
        ("deals", Some("org_id")),
        ("currencies", None),
    ])
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
struct Outcome {
    rows: String,
    others_before: String,
    others_after: String,
}

struct Harness {
    db: TestDb,
    app: PgConnection,
    bypass: PgConnection,
    a: OrgId,
    b: OrgId,
}

impl Harness {
    fn new() -> Self {
        // The plain mode, whose policies follow any org a statement sets: the differential
        // judges the application layer alone, which a signed database would back up.
        let db = common::plain_story("sql_differential");
        let mut admin = db.admin();
        admin.batch_execute(HARNESS).unwrap();
        admin
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
                roles::BYPASSRLS
            ))
            .unwrap();
        // Three orgs, each with customers and deals; A is the session's org.
        let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new_random()).collect();
        for (i, org) in orgs.iter().enumerate() {
            admin
                .batch_execute(&format!(
                    "INSERT INTO orgs (id, name) VALUES ('{org}', 'org {i}');
                     INSERT INTO customers (id, org_id, name, email)
                       SELECT gen_random_uuid(), '{org}', 'c' || g, 'c' || g || '@x' FROM generate_series(1, 3) g;
                     INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage)
                       SELECT '{org}', c.id, 'd ' || c.name || ' ' || g, 100 * g, 'EUR', (ARRAY['open','won','lost'])[1 + g % 3]
                       FROM customers c, generate_series(1, 2) g WHERE c.org_id = '{org}';"
                ))
                .unwrap();
        }
        let app = db.connect_as(roles::APP);
        let bypass = db.connect_as(roles::BYPASSRLS);
        Self {
            db,
            app,
            bypass,
            a: orgs[0],
            b: orgs[1],
        }
    }

    /// `sql` for org A, in a transaction rolled back afterwards, on `conn`.
    fn run(conn: &mut PgConnection, sql: &str, a: OrgId, b: OrgId) -> Outcome {
        conn.batch_execute(&format!(
            "BEGIN; SELECT set_config('tenant.org_id', '{a}', true)"
        ))
        .unwrap();
        let others = |c: &mut PgConnection| -> String {
            diesel::select(
                diesel::dsl::sql::<Text>("ts_diff.others(")
                    .bind::<SqlUuid, _>(a.as_uuid())
                    .sql(")"),
            )
            .get_result(c)
            .unwrap()
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
        .unwrap();
        let others_after = others(conn);
        conn.batch_execute("ROLLBACK").unwrap();
        Outcome {
            rows,
            others_before,
            others_after,
        }
    }

    /// `None` when the two runs agree and the bypassing run left other orgs alone; else what
    /// differs.
    fn differs(&mut self, sql: &str) -> Option<String> {
        let under_rls = Self::run(&mut self.app, sql, self.a, self.b);
        let bypassing = Self::run(&mut self.bypass, sql, self.a, self.b);
        if bypassing.others_before != bypassing.others_after {
            return Some("rows of another org changed".into());
        }
        (under_rls.rows != bypassing.rows).then(|| {
            format!(
                "under RLS:\n{}\nbypassing RLS:\n{}",
                under_rls.rows, bypassing.rows
            )
        })
    }
}

/// Functions the generator calls that the checker must refuse wherever they appear.
const REFUSED_CALLS: &[&str] = &[
    "query_to_xml(",
    "set_config(",
    "table_to_xml(",
    "current_setting(",
    "ts_diff.others(",
];

/// Functions the generator calls that the checker allows.
const ALLOWED_CALLS: &[&str] = &["lower(", "coalesce(upper(", "abs(length(btrim(", "md5("];

/// xorshift64*: deterministic, and enough for choosing grammar branches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// A table the generator uses: name, org column (None: global), other columns.
struct Table {
    name: &'static str,
    org: Option<&'static str>,
    columns: &'static [&'static str],
}

const TABLES: &[Table] = &[
    Table {
        name: "customers",
        org: Some("org_id"),
        columns: &["id", "name", "email"],
    },
    Table {
        name: "deals",
        org: Some("org_id"),
        columns: &["id", "customer_id", "title", "amount_cents", "stage"],
    },
    Table {
        name: "orgs",
        org: Some("id"),
        columns: &["name"],
    },
    Table {
        name: "currencies",
        org: None,
        columns: &["code", "name"],
    },
];

struct Gen {
    rng: Rng,
    aliases: usize,
}

impl Gen {
    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("t{}", self.aliases)
    }

    fn table(&mut self) -> &'static Table {
        // Tenant tables more often than the global one.
        &TABLES[[0, 0, 1, 1, 1, 2, 3][self.rng.below(7)]]
    }

    /// A predicate on `alias` of `t`.
    fn predicate(&mut self, t: &Table, alias: &str) -> String {
        if let Some(org) = t.org
            && self.rng.chance(55)
        {
            return match self.rng.below(12) {
                0 => format!("{alias}.{org} = $2"),
                1 => format!("{alias}.{org} <> $1"),
                2 => format!("$1 = {alias}.{org}"),
                3 => format!("{alias}.{org} IN ($1, $2)"),
                4 => format!("({alias}.{org} = $1 OR true)"),
                5 => format!("{alias}.{org} IS NOT NULL"),
                6 => format!("NOT ({alias}.{org} = $1)"),
                7 => format!("{org} = $1"),
                _ => format!("{alias}.{org} = $1"),
            };
        }
        let col = t.columns[self.rng.below(t.columns.len())];
        if self.rng.chance(12) {
            return self.call(alias, col);
        }
        match self.rng.below(6) {
            0 => "true".into(),
            1 => format!("{alias}.{col} IS NOT NULL"),
            2 => format!("{alias}.{col}::text <> 'zzz'"),
            3 => format!("{alias}.{col}::text LIKE '%1%'"),
            4 => format!("({alias}.{col}::text = 'x' OR {alias}.{col}::text <> 'y')"),
            _ => format!("length({alias}.{col}::text) > 1"),
        }
    }

    /// A predicate calling a function: one the checker allows, or one it must refuse (each
    /// of those would hop to org B, read a table by name, or read the session's context).
    fn call(&mut self, alias: &str, col: &str) -> String {
        match self.rng.below(10) {
            0 => format!("lower({alias}.{col}::text) <> 'zzz'"),
            1 => format!("coalesce(upper({alias}.{col}::text), '') <> 'zzz'"),
            2 => format!("abs(length(btrim({alias}.{col}::text))) >= 0"),
            3 => format!("md5({alias}.{col}::text) IS NOT NULL"),
            4 => "query_to_xml('SELECT set_config(''tenant.org_id'', ''' || $2::text || ''', true)', true, true, '') IS NOT NULL".into(),
            5 => "set_config('tenant.org_id', $2::text, true) IS NOT NULL".into(),
            6 => "table_to_xml('customers', true, true, '') IS NOT NULL".into(),
            7 => "current_setting('tenant.org_id') IS NOT NULL".into(),
            8 => "ts_diff.others($1) IS NOT NULL".into(),
            _ => "pg_catalog.set_config('tenant.org_id', $2::text, true) IS NOT NULL".into(),
        }
    }

    /// A WHERE body: the org predicate mostly present, other conjuncts, sometimes a subquery.
    fn condition(&mut self, t: &Table, alias: &str, depth: u32) -> String {
        let mut parts = Vec::new();
        if let Some(org) = t.org
            && self.rng.chance(75)
        {
            parts.push(format!("{alias}.{org} = $1"));
        }
        for _ in 0..self.rng.below(3) {
            parts.push(self.predicate(t, alias));
        }
        if depth < 2 && self.rng.chance(25) {
            let inner = self.subquery_of_ids(depth + 1);
            parts.push(match (t.name, self.rng.below(3)) {
                ("deals", 0) => format!("{alias}.customer_id IN ({inner})"),
                (_, 1) => format!("EXISTS ({inner})"),
                _ => format!("{alias}.id::text IN (SELECT x::text FROM ({inner}) s(x))"),
            });
        }
        if parts.is_empty() {
            parts.push("true".into());
        }
        let joined = parts.join(" AND ");
        if self.rng.chance(8) {
            format!("({joined}) OR {}", self.predicate(t, alias))
        } else {
            joined
        }
    }

    /// `SELECT <one uuid column> FROM ...`.
    fn subquery_of_ids(&mut self, depth: u32) -> String {
        let t = &TABLES[self.rng.below(2)];
        let a = self.alias();
        let cond = self.condition(t, &a, depth);
        format!("SELECT {a}.id FROM {} {a} WHERE {cond}", t.name)
    }

    fn select(&mut self, depth: u32) -> String {
        let t = self.table();
        let a = self.alias();
        let mut from = format!("{} {a}", t.name);
        let mut cond = self.condition(t, &a, depth);
        let mut columns = vec![format!(
            "{a}.{}",
            t.columns[self.rng.below(t.columns.len())]
        )];
        if self.rng.chance(35) {
            let u = self.table();
            let b = self.alias();
            let on = match (t.org, u.org) {
                (Some(x), Some(y)) if self.rng.chance(60) => {
                    let mut on = format!("{b}.{y} = {a}.{x}");
                    if self.rng.chance(50) {
                        on.push_str(&format!(" AND {b}.{y} = $1"));
                    }
                    on
                }
                _ => self.predicate(u, &b),
            };
            match self.rng.below(4) {
                0 => from.push_str(&format!(" JOIN {} {b} ON {on}", u.name)),
                1 => from.push_str(&format!(" LEFT JOIN {} {b} ON {on}", u.name)),
                2 => {
                    from.push_str(&format!(", {} {b}", u.name));
                    cond = format!("{cond} AND {}", self.condition(u, &b, depth + 1));
                }
                _ => from.push_str(&format!(" CROSS JOIN {} {b}", u.name)),
            }
            columns.push(format!(
                "{b}.{}",
                u.columns[self.rng.below(u.columns.len())]
            ));
        }
        let list = match self.rng.below(6) {
            0 => "count(*) AS n".to_owned(),
            1 if depth < 2 => {
                let inner_alias = self.alias();
                let filter = if self.rng.chance(60) {
                    format!(" AND {inner_alias}.org_id = $1")
                } else {
                    String::new()
                };
                format!(
                    "{}, (SELECT count(*) FROM deals {inner_alias} WHERE {inner_alias}.amount_cents > 0{filter}) AS n",
                    columns.join(", ")
                )
            }
            _ => columns.join(", "),
        };
        let mut sql = format!("SELECT {list} FROM {from} WHERE {cond}");
        if list.starts_with("count") && self.rng.chance(30) {
            sql = format!(
                "SELECT {}, count(*) AS n FROM {from} WHERE {cond} GROUP BY 1",
                columns[0]
            );
        }
        sql
    }

    fn statement(&mut self) -> String {
        self.aliases = 0;
        match self.rng.below(14) {
            0 => {
                let (x, y) = (self.select(1), self.select(1));
                // Whole rows as text: both sides have one column of one type.
                let op = self
                    .rng
                    .pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]);
                format!("SELECT l::text AS v FROM ({x}) l {op} SELECT r::text AS v FROM ({y}) r")
            }
            1 => format!("WITH w AS ({}) SELECT * FROM w", self.select(1)),
            2 => format!("SELECT * FROM ({}) s", self.select(1)),
            3 | 4 => self.update(),
            5 | 6 => self.delete(),
            7 | 8 => self.insert(),
            _ => self.select(0),
        }
    }

    fn update(&mut self) -> String {
        let t = &TABLES[self.rng.below(3)];
        let a = self.alias();
        let set = match (t.name, self.rng.below(8)) {
            (_, 0) => format!("{} = $2", t.org.unwrap_or("id")),
            ("deals", 1..=3) => "title = title || 'u', amount_cents = amount_cents + 1".into(),
            ("deals", _) => "stage = 'won'".into(),
            _ => "name = name || 'u'".into(),
        };
        let cond = self.condition(t, &a, 1);
        if t.name == "deals" && self.rng.chance(25) {
            let b = self.alias();
            let extra = if self.rng.chance(60) {
                format!(" AND {b}.org_id = $1")
            } else {
                String::new()
            };
            return format!(
                "UPDATE deals {a} SET {set} FROM customers {b} WHERE {a}.customer_id = {b}.id AND {cond}{extra} RETURNING {a}.title, {a}.stage"
            );
        }
        format!(
            "UPDATE {} {a} SET {set} WHERE {cond} RETURNING {a}.*",
            t.name
        )
    }

    fn delete(&mut self) -> String {
        // Deals only: customers and orgs are referenced, so deleting them mostly fails in both.
        let a = self.alias();
        let cond = self.condition(&TABLES[1], &a, 1);
        format!("DELETE FROM deals {a} WHERE {cond} RETURNING {a}.title")
    }

    fn insert(&mut self) -> String {
        let org = self.rng.pick(&["$1", "$1", "$1", "$2"]);
        match self.rng.below(4) {
            0 => {
                let a = self.alias();
                let cond = self.condition(&TABLES[0], &a, 1);
                format!(
                    "INSERT INTO customers (org_id, name, email) SELECT {org}, {a}.name || 'i', {a}.email || 'i' FROM customers {a} WHERE {cond} RETURNING org_id, name, email"
                )
            }
            1 => format!(
                "INSERT INTO customers (org_id, name, email) VALUES ({org}, 'new', 'c1@x') \
                 ON CONFLICT (org_id, email) DO UPDATE SET name = excluded.name RETURNING org_id, name, email"
            ),
            _ => format!(
                "INSERT INTO customers (org_id, name, email) VALUES ({org}, 'new', 'new@x') RETURNING org_id, name, email"
            ),
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let text = std::fs::read(e.path()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        String::from_utf8(text).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_harness_sees_a_statement_that_reads_or_writes_another_org() {
    let mut h = Harness::new();
    for leaking in [
        "SELECT name FROM customers",
        "SELECT c.name FROM customers c WHERE c.org_id = $2",
        "SELECT count(*) FROM deals d WHERE d.org_id = $1 OR true",
        "UPDATE deals d SET title = 'x' WHERE d.org_id = $2 RETURNING d.title",
    ] {
        assert!(h.differs(leaking).is_some(), "not seen: {leaking}");
    }
    for confined in [
        "SELECT c.name FROM customers c WHERE c.org_id = $1",
        "UPDATE deals d SET title = 'x' WHERE d.org_id = $1 RETURNING d.title",
        "SELECT code FROM currencies",
    ] {
        assert_eq!(h.differs(confined), None, "{confined}");
    }
}

#[test]
fn every_statement_the_checker_accepts_reads_and_writes_only_the_session_org() {
    let mut h = Harness::new();
    let tables = tables();
    let is_org = |p: &str| p == "$1";
    let corpus = workspace().join("fuzz/corpus/sql_differential");
    let mut statements: Vec<(String, String)> = files_in(&corpus);
    let regression = statements.len();
    statements.extend(files_in(&workspace().join("fuzz/corpus/sql_check")));
    let cases: usize = std::env::var("TENANT_SQLDIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("TENANT_SQLDIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0f7e_4a41_7500);
    let mut generator = Gen {
        rng: Rng(seed | 1),
        aliases: 0,
    };
    statements.extend((0..cases).map(|i| (format!("generated #{i}"), generator.statement())));
    let (mut accepted, mut with_rows, mut failures) = (0, 0, Vec::new());
    // How strict the checker is: of the generated statements it refuses (up to 300), how many
    // did leak, and how many were confined after all (refused to fail closed).
    let (mut refused_leaking, mut refused_confined) = (0, 0);
    // Generated statements calling a function the checker must refuse, and accepted ones
    // calling a function it allows.
    let (mut refused_calls, mut allowed_calls) = (0, 0);
    for (name, sql) in &statements {
        // A NUL byte cannot reach the server (PostgreSQL text has none; libpq refuses it).
        if sql.contains('\0') {
            continue;
        }
        let verdict = check(sql, &tables, &is_org);
        if name.starts_with("generated") {
            if REFUSED_CALLS.iter().any(|c| sql.contains(*c)) {
                refused_calls += 1;
            } else if verdict.is_ok() && ALLOWED_CALLS.iter().any(|c| sql.contains(*c)) {
                allowed_calls += 1;
            }
        }
        if verdict.is_ok()
            && let Some(call) = REFUSED_CALLS.iter().find(|c| sql.contains(*c))
        {
            failures.push(format!("{name}: accepted a call of {call}: {sql}"));
            continue;
        }
        if verdict.is_err() {
            if name.starts_with("generated") && refused_leaking + refused_confined < 300 {
                if h.differs(sql).is_some() {
                    refused_leaking += 1;
                } else {
                    refused_confined += 1;
                }
            }
            continue;
        }
        accepted += 1;
        if let Some(difference) = h.differs(sql) {
            failures.push(format!("{name}: {sql}\n{difference}"));
            let file = corpus.join(format!("found-{:016x}.sql", {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                sql.hash(&mut hasher);
                hasher.finish()
            }));
            let _ = std::fs::create_dir_all(&corpus);
            let _ = std::fs::write(file, sql);
        } else {
            let rows = Harness::run(&mut h.app, sql, h.a, h.b).rows;
            if !rows.is_empty() && !rows.starts_with("ERROR") {
                with_rows += 1;
            }
        }
    }
    println!(
        "{} statements ({regression} regression, {cases} generated, seed {seed}): {accepted} accepted, \
         {with_rows} of them returned rows, {} differed; of {} refused ones run anyway, {refused_leaking} \
         leaked and {refused_confined} were confined",
        statements.len(),
        failures.len(),
        refused_leaking + refused_confined
    );
    println!(
        "{refused_calls} called a refused function, {allowed_calls} accepted ones an allowed one"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if cases > 0 {
        assert!(
            refused_calls > 0 && allowed_calls > 0,
            "the generator made no calls"
        );
    }
    // The campaign means something only if the checker accepted a fair share of the generated
    // statements and they did real work (without generated ones, `--sql-cases 0`, the corpora
    // alone promise no share).
    if cases > 0 {
        assert!(accepted * 5 >= cases, "only {accepted} accepted of {cases}");
        assert!(
            with_rows * 3 >= accepted,
            "only {with_rows} of {accepted} returned rows"
        );
    }
    drop(h.db);
}
