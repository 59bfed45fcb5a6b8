//! Measures the search pattern (`src/search.rs`) against the naive form, side by side in one
//! run, on a database of its own on the server of `DATABASE_URL` (dropped at the end):
//!
//! ```text
//! DATABASE_URL=... cargo run -p saas-patterns --example measure_search [-- ROUNDS [ORGS]]
//! ```
//!
//! 50,000 documents (ORGS orgs, 5 by default, sharing them equally; 40 words each from a
//! skewed vocabulary of 2,000; the orgs' rows interleaved as in a live table) are created through the application's own path.
//! Each form is then explained with `EXPLAIN (ANALYZE, TIMING OFF)` once per round, the forms
//! taking turns and the org changing every round, and the median server execution time is
//! reported with the plan's scans:
//!
//! - naive, application role: `tsv @@ ..` / `attrs @> ..` on `documents` with a GIN index,
//!   as the application role in a scoped transaction (row-level security applies);
//! - pattern, application role: the statement `search_documents` /
//!   `documents_with_attribute` sends, read back from `pg_stat_activity`;
//! - naive, superuser: the naive form outside row-level security (the reference the GIN
//!   index was built for).
//!
//! The cost on the write side: creating 100 documents with their terms
//! (`create_documents`) against the documents alone, in a transaction that is rolled back,
//! median wall time through the pool.
//!
//! A second phase replaces the GIN indexes with composite ones that lead with the org
//! (`btree_gin`: `(org_id, tsv)`, `(org_id, attrs jsonb_path_ops)`) and measures the naive
//! form again.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a measurement program: it prints its report and stops at the first failure"
)]

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../tests/common/plan.rs"]
mod plan;

use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use plan::{Explained, explain};
use saas_patterns::search::{
    NewDocument, create_documents, documents_with_attribute, search_documents,
};
use tenant_core::context::ContextKey;
use tenant_core::{OrgId, TenantPool, tenant_sql};
use tenant_testkit::TestDb;

const DOCUMENTS: usize = 50_000;
const WORDS: usize = 40;
const VOCABULARY: usize = 2_000;
const LIMIT: i64 = 100;

/// One query of the comparison: its binds after the org.
#[derive(Clone, Copy)]
enum Query {
    Words(&'static str),
    Attribute(&'static str, &'static str),
}

impl Query {
    fn label(self) -> String {
        match self {
            Query::Words(w) => format!("full text `{w}`"),
            Query::Attribute(k, v) => format!("jsonb `{{\"{k}\": \"{v}\"}}`"),
        }
    }

    /// The naive form: the real operator on `documents`, the org as `$1`.
    fn naive_sql(self) -> &'static str {
        match self {
            Query::Words(_) => {
                "SELECT d.id, d.org_id, d.title FROM documents d \
                 WHERE d.org_id = $1 AND d.tsv @@ plainto_tsquery('english', $2) \
                 ORDER BY ts_rank(d.tsv, plainto_tsquery('english', $2)) DESC, d.id LIMIT $3"
            }
            Query::Attribute(..) => {
                "SELECT d.id, d.org_id, d.title FROM documents d \
                 WHERE d.org_id = $1 AND d.attrs @> jsonb_build_object($2::text, $3::text) \
                 ORDER BY d.id LIMIT $4"
            }
        }
    }

    fn bind_naive(
        self,
        org: OrgId,
        q: BoxedSqlQuery<'static, Pg, SqlQuery>,
    ) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let q = q.bind::<SqlUuid, _>(org.as_uuid());
        match self {
            Query::Words(w) => q.bind::<Text, _>(w).bind::<BigInt, _>(LIMIT),
            Query::Attribute(k, v) => q
                .bind::<Text, _>(k)
                .bind::<Text, _>(v)
                .bind::<BigInt, _>(LIMIT),
        }
    }

    /// The pattern's statement takes the org last.
    fn bind_pattern(
        self,
        org: OrgId,
        q: BoxedSqlQuery<'static, Pg, SqlQuery>,
    ) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let q = match self {
            Query::Words(w) => q.bind::<Text, _>(w).bind::<BigInt, _>(LIMIT),
            Query::Attribute(k, v) => q
                .bind::<Text, _>(k)
                .bind::<Text, _>(v)
                .bind::<BigInt, _>(LIMIT),
        };
        q.bind::<SqlUuid, _>(org.as_uuid())
    }

    /// Runs the pattern through the library in `org`'s transaction and returns the text it
    /// sent (read by the admin from `pg_stat_activity`).
    fn pattern_sql(self, db: &TestDb, pool: &TenantPool, org: OrgId) -> String {
        let mut s = pool.begin(org).unwrap();
        match self {
            Query::Words(w) => {
                search_documents(&mut s, w, LIMIT).unwrap();
            }
            Query::Attribute(k, v) => {
                documents_with_attribute(&mut s, k, v, LIMIT).unwrap();
            }
        }
        #[derive(QueryableByName)]
        struct Activity {
            #[diesel(sql_type = Text)]
            query: String,
        }
        let sent: Activity = diesel::sql_query(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() \
             AND usename = 'tenant_app' AND state = 'idle in transaction'",
        )
        .get_result(&mut db.admin())
        .unwrap();
        s.rollback().unwrap();
        sent.query
    }
}

/// How a form runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    NaiveApp,
    PatternApp,
    NaiveSuperuser,
}

impl Form {
    fn label(self) -> &'static str {
        match self {
            Form::NaiveApp => "naive, application role",
            Form::PatternApp => "pattern, application role",
            Form::NaiveSuperuser => "naive, superuser (no RLS)",
        }
    }
}

struct Bench<'a> {
    db: &'a TestDb,
    pool: &'a TenantPool,
    admin: PgConnection,
    orgs: Vec<OrgId>,
}

impl Bench<'_> {
    fn run(&mut self, form: Form, query: Query, pattern_sql: &str, org: OrgId) -> Explained {
        match form {
            Form::NaiveSuperuser => explain(&mut self.admin, query.naive_sql(), false, |q| {
                query.bind_naive(org, q)
            }),
            Form::NaiveApp | Form::PatternApp => {
                let mut s = self.pool.begin(org).unwrap();
                let conn = s.raw_connection_unchecked(
                    "measurement: EXPLAIN ANALYZE as the application role in a scoped transaction",
                );
                let plan = if form == Form::NaiveApp {
                    explain(conn, query.naive_sql(), false, |q| query.bind_naive(org, q))
                } else {
                    explain(conn, pattern_sql, false, |q| query.bind_pattern(org, q))
                };
                s.rollback().unwrap();
                plan
            }
        }
    }

    /// Each form of `forms` once per round for `rounds` rounds (after one round unrecorded),
    /// the org changing every round; the median execution time and the last plan of each.
    fn compare(
        &mut self,
        query: Query,
        forms: &[Form],
        rounds: usize,
    ) -> Vec<(Form, f64, Explained)> {
        let pattern_sql = query.pattern_sql(self.db, self.pool, self.orgs[0]);
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); forms.len()];
        let mut plans: Vec<Option<Explained>> = vec![None; forms.len()];
        for round in 0..=rounds {
            let org = self.orgs[round % self.orgs.len()];
            for (i, &form) in forms.iter().enumerate() {
                let plan = self.run(form, query, &pattern_sql, org);
                if round > 0 {
                    times[i].push(plan.execution_ms);
                }
                plans[i] = Some(plan);
            }
        }
        forms
            .iter()
            .zip(times)
            .zip(plans)
            .map(|((&form, t), p)| (form, median(t), p.unwrap()))
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn size(admin: &mut PgConnection, what: &str) -> String {
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = Text)]
        size: String,
    }
    diesel::sql_query(format!("SELECT pg_size_pretty({what}) AS size"))
        .get_result::<Size>(admin)
        .unwrap()
        .size
}

fn report(query: Query, results: &[(Form, f64, Explained)], index_label: &str) {
    println!("\n{} ({index_label})", query.label());
    println!("| form | median execution (ms) | scans |");
    println!("|---|---:|---|");
    for (form, ms, plan) in results {
        let scans = plan
            .summary()
            .lines()
            .filter(|l| !l.contains(" on keys"))
            .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
            .join("; ");
        println!("| {} | {ms:.2} | {scans} |", form.label());
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("ROUNDS is a number"))
        .unwrap_or(15);
    let org_count: usize = std::env::args()
        .nth(2)
        .map(|r| r.parse().expect("ORGS is a number"))
        .unwrap_or(5);
    let per_org = DOCUMENTS / org_count;
    let db = TestDb::new("measure_search");
    saas_patterns::migrate(&db.admin_url()).unwrap();
    db.add_test_context_key();
    let key = ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap();
    let pool = TenantPool::builder(db.app_url(), &saas_patterns::REGISTRY, key)
        .max_size(1)
        .build()
        .unwrap();
    let orgs: Vec<OrgId> = (0..org_count)
        .map(|i| {
            let name = format!("Org {i}");
            let email = format!("owner@org{i}.example");
            saas_patterns::signup::sign_up(
                &pool,
                &saas_patterns::signup::SignUp {
                    org_name: &name,
                    owner_email: &email,
                    plan: "team",
                },
                chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            )
            .unwrap()
            .org
        })
        .collect();
    let started = std::time::Instant::now();
    corpus::load(&pool, &orgs, per_org, WORDS, VOCABULARY, 500);
    let mut admin = db.admin();
    admin
        .batch_execute(
            "CREATE INDEX documents_tsv_gin ON documents USING gin (tsv); \
             CREATE INDEX documents_attrs_gin ON documents USING gin (attrs jsonb_path_ops)",
        )
        .unwrap();
    // What autovacuum would do after the load, done now (VACUUM runs outside a transaction).
    admin.batch_execute("VACUUM ANALYZE").unwrap();
    println!(
        "loaded {} documents in {} orgs through the application role in {:.1} s; PostgreSQL {}",
        org_count * per_org,
        org_count,
        started.elapsed().as_secs_f64(),
        server_version(&mut admin)
    );
    for (label, what) in [
        (
            "documents (heap, toast, primary key)",
            "pg_total_relation_size('documents') - pg_relation_size('documents_tsv_gin') - pg_relation_size('documents_attrs_gin')",
        ),
        ("GIN on tsv", "pg_relation_size('documents_tsv_gin')"),
        (
            "GIN on attrs (jsonb_path_ops)",
            "pg_relation_size('documents_attrs_gin')",
        ),
        (
            "document_words (heap and indexes)",
            "pg_total_relation_size('document_words')",
        ),
        (
            "document_attributes (heap and indexes)",
            "pg_total_relation_size('document_attributes')",
        ),
    ] {
        println!("size of {label}: {}", size(&mut admin, what));
    }
    #[derive(QueryableByName)]
    struct Rows {
        #[diesel(sql_type = BigInt)]
        words: i64,
        #[diesel(sql_type = BigInt)]
        attributes: i64,
    }
    let rows: Rows = diesel::sql_query(
        "SELECT (SELECT count(*) FROM document_words) AS words, \
                (SELECT count(*) FROM document_attributes) AS attributes",
    )
    .get_result(&mut admin)
    .unwrap();
    println!(
        "term rows: {} in document_words, {} in document_attributes",
        rows.words, rows.attributes
    );
    let (with_terms, without) = write_cost(&pool, orgs[0], rounds);
    println!(
        "creating 100 documents of {WORDS} words in one transaction: {with_terms:.1} ms with their terms, {without:.1} ms without (median of {rounds})"
    );
    let mut bench = Bench {
        db: &db,
        pool: &pool,
        admin,
        orgs,
    };
    let all = [Form::NaiveApp, Form::PatternApp, Form::NaiveSuperuser];
    let queries = [
        Query::Words(corpus::RARE_WORD),
        Query::Words(corpus::COMMON_WORD),
        Query::Attribute(corpus::CUSTOMER_KEY, "c42"),
        Query::Attribute("status", "open"),
    ];
    println!("\n{rounds} rounds, median of each; `EXPLAIN (ANALYZE, TIMING OFF)` execution time");
    for query in queries {
        let results = bench.compare(query, &all, rounds);
        report(query, &results, "GIN indexes on tsv and attrs");
    }

    bench
        .admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS btree_gin; \
             DROP INDEX documents_tsv_gin; DROP INDEX documents_attrs_gin; \
             CREATE INDEX documents_org_tsv_gin ON documents USING gin (org_id, tsv); \
             CREATE INDEX documents_org_attrs_gin ON documents USING gin (org_id, attrs jsonb_path_ops); \
             ANALYZE documents",
        )
        .unwrap();
    for query in [
        Query::Words(corpus::RARE_WORD),
        Query::Attribute(corpus::CUSTOMER_KEY, "c42"),
    ] {
        let results = bench.compare(query, &all, rounds);
        report(
            query,
            &results,
            "btree_gin composite indexes (org_id, tsv), (org_id, attrs)",
        );
    }
}

/// Median wall time (ms) of creating 100 documents in `org` through the pool, with their
/// terms and without, the two taking turns, each transaction rolled back.
fn write_cost(pool: &TenantPool, org: OrgId, rounds: usize) -> (f64, f64) {
    let mut rng = corpus::Rng::new(99);
    let docs: Vec<corpus::Doc> = (0..100)
        .map(|n| corpus::document(&mut rng, n, WORDS, VOCABULARY))
        .collect();
    let pairs: Vec<Vec<(&str, &str)>> = docs
        .iter()
        .map(|d| {
            d.attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let new: Vec<NewDocument<'_>> = docs
        .iter()
        .zip(&pairs)
        .map(|(d, attributes)| NewDocument {
            title: &d.title,
            body: &d.body,
            attributes,
        })
        .collect();
    let titles: Vec<&str> = docs.iter().map(|d| d.title.as_str()).collect();
    let bodies: Vec<&str> = docs.iter().map(|d| d.body.as_str()).collect();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let started = std::time::Instant::now();
        let mut s = pool.begin(org).unwrap();
        create_documents(&mut s, &new).unwrap();
        s.rollback().unwrap();
        let with_terms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let mut s = pool.begin(org).unwrap();
        let ids: Vec<uuid::Uuid> = docs.iter().map(|_| uuid::Uuid::now_v7()).collect();
        s.execute_sql(tenant_sql!(
            in saas_patterns::schema;
            "INSERT INTO documents (org_id, id, title, body) \
             SELECT $org, u.id, u.title, u.body \
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u (id, title, body)",
            diesel::sql_types::Array<SqlUuid>: &ids,
            diesel::sql_types::Array<Text>: &titles,
            diesel::sql_types::Array<Text>: &bodies
        ))
        .unwrap();
        s.rollback().unwrap();
        if round > 0 {
            with.push(with_terms);
            without.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    (median(with), median(without))
}

fn server_version(admin: &mut PgConnection) -> String {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        v: String,
    }
    diesel::sql_query("SELECT current_setting('server_version') AS v")
        .get_result::<Version>(admin)
        .unwrap()
        .v
}
