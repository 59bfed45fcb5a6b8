//! The application layer, attacked as an outsider would: ordinary service code, no escape
//! hatch (`raw_connection_unchecked` and `GlobalWriter` unused), a handle scoped to org A,
//! trying to read or write org B. Each attempt is run in both context modes (the plain
//! setting and the signed token), and each must be refused **before anything is sent**:
//! the server's own record of the app backend (`pg_stat_activity.query_start` and `query`,
//! read by a privileged session) is the same after the attempt as before it, and a digest of
//! B's rows (read outside row-level security) is unchanged.
//!
//! The attempts fall into the classes of the application layer's threat list:
//! 1. SQL the checker cannot read: functions that run SQL given as text, read tables by name,
//!    change settings or session state, read session data; custom operators.
//! 2. The statement checked is not the statement sent: a fragment that renders differently
//!    the second time (here the attempt *is* sent, once, and the assertion is that the server
//!    received exactly the checked text and no B row came back).
//! 3. Entry points that wrapped what a closure returned (`join`, `on_conflict`): closed at
//!    compile time, see `crates/tenant-lint/tests/compile-fail/a_raw_statement_*`; what is
//!    left of them at run time (a join's or an upsert's clause carrying the attack) is here.
//! 4. Public constructors of checked types: `TenantSql::new` with hand-written SQL.
//! 5. Clauses a subquery can appear in: a *boxed* diesel subquery (its type erased, so the
//!    compile-time probe cannot see it) in select, filter, order, group by, having, returning.
//! 6. diesel traits implemented by hand to get past a type-level check: an expression type of
//!    the attacker's, a changeset that claims not to touch the org column.
//!
//! Add an attempt here whenever a new route is found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Mode, org};

use std::cell::Cell;
use std::sync::Mutex;

use diesel::dsl::sql;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Text};
use tenant_core::{OrgId, OrgScoped, Pooled, TenantError, TenantPool, TenantSql, Violation};
use tenant_testkit::TestDb;
use two_companies::schema::{customers, deals};

/// Two orgs with rows, a pool of one connection as the application role, and a privileged
/// session that watches what the server received.
struct World {
    /// Kept alive: dropping it drops the database.
    _db: TestDb,
    pool: TenantPool,
    a: OrgId,
    b: OrgId,
    b_customer: uuid::Uuid,
    watch: Mutex<PgConnection>,
}

impl World {
    fn new(mode: Mode) -> Self {
        let (db, builder) = common::database(mode, "adversarial");
        let pool = builder.build().unwrap();
        let (a, _) = org(&pool, "A", "alice");
        let (b, b_customer) = org(&pool, "B", "bob-secret");
        let watch = Mutex::new(db.admin());
        Self {
            _db: db,
            pool,
            a,
            b,
            b_customer,
            watch,
        }
    }

    /// What the server last received on the application role's one connection: when its
    /// statement started, and its text.
    fn received(&self) -> (String, String) {
        #[derive(QueryableByName)]
        struct Activity {
            #[diesel(sql_type = Text)]
            started: String,
            #[diesel(sql_type = Text)]
            query: String,
        }
        let mut watch = self.watch.lock().unwrap();
        let rows: Vec<Activity> = diesel::sql_query(
            "SELECT query_start::text AS started, query FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = $1 AND backend_type = 'client backend'",
        )
        .bind::<Text, _>(tenant_testkit::roles::APP)
        .load(&mut *watch)
        .unwrap();
        assert_eq!(rows.len(), 1, "one application connection");
        let row = rows.into_iter().next().unwrap();
        (row.started, row.query)
    }

    /// A digest of every row of org B, read outside row-level security.
    fn b_digest(&self) -> String {
        #[derive(QueryableByName)]
        struct Digest {
            #[diesel(sql_type = Text)]
            d: String,
        }
        let mut watch = self.watch.lock().unwrap();
        let sql = format!(
            "SELECT md5(concat_ws('|', \
               (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM orgs t WHERE id = '{b}'), \
               (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM customers t WHERE org_id = '{b}'), \
               (SELECT string_agg(t::text, ',' ORDER BY t::text) FROM deals t WHERE org_id = '{b}'))) AS d",
            b = self.b.as_uuid()
        );
        diesel::sql_query(sql)
            .get_result::<Digest>(&mut *watch)
            .unwrap()
            .d
    }

    /// Runs `attack` in a transaction scoped to A; returns its outcome and whether the server
    /// received anything while it ran.
    fn attempt<T>(
        &self,
        attack: impl FnOnce(&mut OrgScoped<Pooled>, &Self) -> Result<T, TenantError>,
    ) -> (Result<T, TenantError>, bool) {
        let before_b = self.b_digest();
        let mut s = self.pool.begin(self.a).unwrap();
        let before = self.received();
        let outcome = attack(&mut s, self);
        let after = self.received();
        // Committed, as a service would: whatever the attempt did must not reach B.
        let _ = s.commit();
        let sent = before != after;
        assert_eq!(self.b_digest(), before_b, "B's rows changed");
        (outcome, sent)
    }
}

type Attack = fn(&mut OrgScoped<Pooled>, &World) -> Result<usize, TenantError>;

/// An attempt, the class it belongs to, and the exact refusal expected.
struct Attempt {
    name: &'static str,
    class: u8,
    attack: Attack,
    refused: fn(&Violation) -> bool,
}

fn unsafe_fn(v: &Violation, f: &str) -> bool {
    matches!(v, Violation::UnsafeFunction { name, .. } if name == f)
}

fn unknown_fn(v: &Violation, f: &str) -> bool {
    matches!(v, Violation::UnknownFunction { name } if name == f)
}

fn field_call(v: &Violation) -> bool {
    matches!(v, Violation::UnsupportedExpression(what) if what.contains("field selection"))
}

fn from_function_call(v: &Violation) -> bool {
    matches!(v, Violation::UnsupportedExpression(what) if what.contains("is a function in FROM"))
}

fn dropped_word(v: &Violation) -> bool {
    matches!(v, Violation::UnsupportedExpression(what) if what.contains("`global`"))
}

/// A refusal of the lexical stage (sqlparser's tokens are not PostgreSQL's).
fn lexer_differs(v: &Violation) -> bool {
    matches!(v, Violation::UnsupportedExpression(what)
        if what.contains("dollar-quoted")
            || what.contains("`U&`")
            || what.contains("unquoted")
            || what.contains("operator")
            || what.contains("dollar-quote tag"))
}

fn parser_stopped(v: &Violation) -> bool {
    matches!(v, Violation::Unparsable(m) if m.contains("ends before the text does"))
}

fn missing(v: &Violation, t: &str) -> bool {
    matches!(v, Violation::MissingOrgPredicate { table } if table == t)
}

/// A select list item of raw SQL text (a `sql()` fragment): the way ordinary code reaches
/// for a function the DSL does not have.
fn select_sql(s: &mut OrgScoped<Pooled>, text: &str) -> Result<usize, TenantError> {
    let q = s
        .query(customers::table)
        .select(sql::<Text>(text))
        .limit(10);
    s.load::<String, _>(q).map(|r| r.len())
}

/// A filter of raw SQL text.
fn filter_sql(s: &mut OrgScoped<Pooled>, text: &str) -> Result<usize, TenantError> {
    let q = s
        .query(customers::table)
        .filter(sql::<Bool>(text))
        .select(customers::name);
    s.load::<String, _>(q).map(|r| r.len())
}

/// An attacker's expression: its own type, with diesel's traits implemented by hand so that
/// it passes every type-level check (it claims to appear on any table and to contain no
/// subquery), rendering whatever SQL it holds.
#[derive(Debug, Clone, Copy, QueryId)]
struct Smuggled(&'static str);

impl Expression for Smuggled {
    type SqlType = Text;
}
impl<QS> AppearsOnTable<QS> for Smuggled {}
impl<QS> SelectableExpression<QS> for Smuggled {}
impl<GB> ValidGrouping<GB> for Smuggled {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}
impl QueryFragment<Pg> for Smuggled {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

/// A changeset of the attacker's that says it leaves the org column alone, and sets it.
#[derive(Debug, Clone, Copy)]
struct MoveToB(uuid::Uuid);

impl<GB> ValidGrouping<GB> for MoveToB {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

// The attacker claims its values hold no subquery too.
impl tenant_core::ChangesValuesProbe<customers::table> for MoveToB {}

impl AsChangeset for MoveToB {
    type Target = customers::table;
    type Changeset = <diesel::dsl::Eq<customers::org_id, uuid::Uuid> as AsChangeset>::Changeset;

    fn as_changeset(self) -> Self::Changeset {
        customers::org_id.eq(self.0).as_changeset()
    }
}

fn attempts() -> Vec<Attempt> {
    vec![
        // 1. SQL the checker cannot read.
        Attempt {
            name: "query_to_xml runs a query given as text that hops to B",
            class: 1,
            attack: |s, w| {
                let text = format!(
                    "query_to_xml('SELECT set_config(''tenant.org_id'', ''{}'', true)', true, true, '')::text",
                    w.b.as_uuid()
                );
                select_sql(s, &text)
            },
            refused: |v| unsafe_fn(v, "query_to_xml"),
        },
        Attempt {
            name: "query_to_xml_and_xmlschema reads B's customers as text",
            class: 1,
            attack: |s, w| {
                let text = format!(
                    "query_to_xml_and_xmlschema('SELECT name FROM customers WHERE org_id = ''{}''', true, true, '')::text",
                    w.b.as_uuid()
                );
                select_sql(s, &text)
            },
            refused: |v| unsafe_fn(v, "query_to_xml_and_xmlschema"),
        },
        Attempt {
            name: "table_to_xml reads a table by name",
            class: 1,
            attack: |s, _| select_sql(s, "table_to_xml('customers', true, true, '')::text"),
            refused: |v| unsafe_fn(v, "table_to_xml"),
        },
        Attempt {
            name: "database_to_xml reads every table",
            class: 1,
            attack: |s, _| select_sql(s, "database_to_xml(true, true, '')::text"),
            refused: |v| unsafe_fn(v, "database_to_xml"),
        },
        Attempt {
            name: "ts_stat runs a query given as text",
            class: 1,
            attack: |s, _| {
                filter_sql(
                    s,
                    "EXISTS (SELECT 1 FROM ts_stat('SELECT to_tsvector(name) FROM customers'))",
                )
            },
            refused: |v| unsafe_fn(v, "ts_stat"),
        },
        Attempt {
            name: "set_config called schema-qualified and upper-case hops to B",
            class: 1,
            attack: |s, w| {
                filter_sql(
                    s,
                    &format!(
                        "PG_CATALOG.SET_CONFIG('tenant.org_id', '{}', true) IS NOT NULL",
                        w.b.as_uuid()
                    ),
                )
            },
            refused: |v| matches!(v, Violation::ChangesSessionSetting(f) if f == "set_config"),
        },
        Attempt {
            name: "set_config called quoted hops to B",
            class: 1,
            attack: |s, w| {
                filter_sql(
                    s,
                    &format!(
                        "\"set_config\"('tenant.org_id', '{}', true) IS NOT NULL",
                        w.b.as_uuid()
                    ),
                )
            },
            refused: |v| matches!(v, Violation::ChangesSessionSetting(f) if f == "set_config"),
        },
        Attempt {
            name: "set_config as a FROM item of hand-written SQL hops to B",
            class: 1,
            attack: |s, w| {
                let forged = TenantSql::new(
                    "SELECT c.name FROM customers c, set_config('tenant.org_id', $1, true) AS hop \
                     WHERE c.org_id = $2",
                )
                .bind::<Text, _>(w.b.as_uuid().to_string());
                s.execute_sql(forged)
            },
            refused: |v| matches!(v, Violation::ChangesSessionSetting(f) if f == "set_config"),
        },
        Attempt {
            name: "current_setting reads the session's context (the signed token)",
            class: 1,
            attack: |s, _| select_sql(s, "current_setting('tenant.org_token', true)"),
            refused: |v| unsafe_fn(v, "current_setting"),
        },
        Attempt {
            name: "a session advisory lock outlives the transaction",
            class: 1,
            attack: |s, _| filter_sql(s, "pg_advisory_lock(42) IS NOT NULL"),
            refused: |v| unsafe_fn(v, "pg_advisory_lock"),
        },
        Attempt {
            name: "pg_notify sends B-readable data to every listener",
            class: 1,
            attack: |s, _| filter_sql(s, "pg_notify('leak', name) IS NOT NULL"),
            refused: |v| unsafe_fn(v, "pg_notify"),
        },
        Attempt {
            name: "a function the checker does not know is refused, not trusted",
            class: 1,
            attack: |s, _| select_sql(s, "public.lower(name)"),
            refused: |v| unknown_fn(v, "public.lower"),
        },
        Attempt {
            name: "a custom operator named with OPERATOR() is refused",
            class: 1,
            attack: |s, _| filter_sql(s, "1 OPERATOR(pg_catalog.=) 1"),
            refused: |v| matches!(v, Violation::UnknownOperator(_)),
        },
        // Found by the red team (each read or wrote B's rows before it was closed).
        Attempt {
            name: "PostgreSQL's attribute notation calls ts_stat, which hops to B",
            class: 1,
            attack: |s, w| {
                select_sql(
                    s,
                    &format!(
                        "(SELECT count(*) FROM (SELECT ('SELECT to_tsvector(set_config(''tenant.org_id'', ''{}'', true))').ts_stat) AS z)::text",
                        w.b.as_uuid()
                    ),
                )
            },
            refused: field_call,
        },
        Attempt {
            name: "attribute notation reads the session's token",
            class: 1,
            attack: |s, _| select_sql(s, "('tenant.org_token').current_setting"),
            refused: field_call,
        },
        Attempt {
            name: "attribute notation takes a session advisory lock",
            class: 1,
            attack: |s, _| select_sql(s, "(4242::bigint).pg_advisory_lock::text"),
            refused: field_call,
        },
        Attempt {
            name: "a three-part name reaches a built-in past the checks",
            class: 1,
            attack: |s, _| select_sql(s, "postgres.pg_catalog.current_setting('tenant.org_token')"),
            refused: |v| unknown_fn(v, "postgres.pg_catalog.current_setting"),
        },
        Attempt {
            name: "ts_rewrite runs a query given as text",
            class: 1,
            attack: |s, _| {
                select_sql(
                    s,
                    "ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')::text",
                )
            },
            refused: |v| unsafe_fn(v, "ts_rewrite"),
        },
        Attempt {
            name: "a join alias hides a tenant table, so its org predicate binds to a decoy",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT leak.name FROM (SELECT $1::uuid AS org_id) AS customers \
                     CROSS JOIN LATERAL (SELECT j.name FROM (customers JOIN (SELECT 1 AS one) AS o ON true) AS j \
                     WHERE customers.org_id = $1) AS leak",
                ))
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a column alias list renames another column to the org column's name",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT c.name FROM customers AS c(org_id, real_org) WHERE c.org_id = $1",
                ))
            },
            refused: |v| missing(v, "c"),
        },
        Attempt {
            name: "a CTE in another scope lets an unregistered view through",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT query FROM pg_stat_activity WHERE $1::uuid IS NOT NULL \
                     AND EXISTS (WITH pg_stat_activity AS (SELECT 1) SELECT 1)",
                ))
            },
            refused: |v| matches!(v, Violation::UnregisteredTable { table } if table == "pg_stat_activity"),
        },
        Attempt {
            name: "a CTE in another scope lets an UPDATE of pg_settings through",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "UPDATE pg_settings SET setting = '4321' WHERE name = 'statement_timeout' \
                     AND $1::uuid IS NOT NULL AND EXISTS (WITH pg_settings AS (SELECT 1) SELECT 1)",
                ))
            },
            refused: |v| matches!(v, Violation::UnregisteredTable { table } if table == "pg_settings"),
        },
        Attempt {
            name: "an upsert on B's key without the org column reaches B's row",
            class: 4,
            attack: |s, w| {
                let text: &'static str = Box::leak(
                    format!(
                        "INSERT INTO customers (org_id, id, name, email) VALUES ($1, '{}'::uuid, 'x', 'x@x') \
                         ON CONFLICT (id) DO UPDATE SET name = 'overwritten by org A'",
                        w.b_customer
                    )
                    .into_boxed_str(),
                );
                s.execute_sql(TenantSql::new(text))
            },
            refused: |v| matches!(v, Violation::ConflictWithoutOrg { column, .. } if column == "org_id"),
        },
        // Found by the second red-team pass.
        Attempt {
            name: "a FROM function's alias qualifies a call: q.ts_stat runs the SQL in a bound array",
            class: 1,
            attack: |s, w| {
                let hop = vec![format!(
                    "SELECT to_tsvector('simple', set_config('tenant.org_id', '{}', true))",
                    w.b.as_uuid()
                )];
                s.execute_sql(
                    TenantSql::new(
                        "SELECT q.ts_stat::text AS t FROM unnest($1::text[]) AS q WHERE $2::uuid IS NOT NULL",
                    )
                    .bind::<diesel::sql_types::Array<Text>, _>(hop),
                )
            },
            refused: from_function_call,
        },
        Attempt {
            name: "the same call from a DSL select list",
            class: 1,
            attack: |s, _| {
                select_sql(
                    s,
                    "(ARRAY(SELECT q.ts_stat::text FROM unnest(ARRAY['SELECT to_tsvector(name) FROM customers']) AS q))::text",
                )
            },
            refused: from_function_call,
        },
        Attempt {
            name: "a generate_series alias qualifies pg_advisory_lock",
            class: 1,
            attack: |s, _| {
                select_sql(
                    s,
                    "(SELECT g.pg_advisory_lock::text FROM generate_series(4242, 4242) AS g)",
                )
            },
            refused: from_function_call,
        },
        Attempt {
            name: "a decoy named like the table inside an aliased join satisfies the org check (read)",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT customers.name FROM customers, \
                     ((SELECT 1 AS one) AS x JOIN (SELECT $1::uuid AS org_id) AS customers ON customers.org_id = $1) AS j",
                ))
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a decoy named like the table inside an aliased join satisfies the org check (update)",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "UPDATE customers SET name = 'pwned-by-A' \
                     FROM ((SELECT 1 AS one) AS x JOIN (SELECT $1::uuid AS org_id) AS customers ON customers.org_id = $1) AS j",
                ))
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "an ON that cannot see the table binds its name to an outer decoy",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT (SELECT string_agg(a.name, ',') FROM (SELECT 1 AS one) AS x \
                     JOIN (SELECT 2 AS two) AS y ON a.org_id = $1 JOIN customers a ON true) \
                     FROM (SELECT $1::uuid AS org_id) AS a",
                ))
            },
            refused: |v| missing(v, "a"),
        },
        Attempt {
            name: "two aliases one Unicode case apart are one name to the checker only",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT (SELECT string_agg(Ç.name, ',') FROM customers Ç WHERE ç.org_id = $1) \
                     FROM (SELECT $1::uuid AS org_id) AS ç",
                ))
            },
            refused: |v| missing(v, "Ç"),
        },
        Attempt {
            name: "a CTE named with the Kelvin sign hides the real pg_locks",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "WITH pg_loc\u{212A}s AS (SELECT 1 AS x) SELECT locktype FROM pg_locks WHERE $1::uuid IS NOT NULL",
                ))
            },
            refused: |v| matches!(v, Violation::UnregisteredTable { table } if table == "pg_locks"),
        },
        Attempt {
            name: "a wildcard in INSERT ... SELECT shifts B's id into the org column",
            class: 4,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "INSERT INTO customers (id, org_id, name, email) \
                         SELECT x.*, $2, 'planted@example.com' FROM (SELECT gen_random_uuid() AS id, $1::uuid AS o) AS x",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid()),
                )
            },
            refused: |v| matches!(v, Violation::InsertWithoutOrg { column, .. } if column == "org_id"),
        },
        Attempt {
            name: "a cast to an array of regclass looks names up in the catalog",
            class: 1,
            attack: |s, _| select_sql(s, "('{customers,pg_authid}'::_regclass)::text"),
            refused: |v| matches!(v, Violation::UnsupportedExpression(what) if what.contains("_regclass")),
        },
        // Found by the third red-team pass.
        Attempt {
            name: "a schema-qualified view is taken for a CTE of the same name",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "WITH pg_stat_activity AS (SELECT 1) \
                     SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE $1::uuid IS NOT NULL",
                ))
            },
            refused: |v| matches!(v, Violation::UnregisteredTable { table } if table == "pg_catalog.pg_stat_activity"),
        },
        Attempt {
            name: "a tenant table's name in another schema passes for the registered table",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT name FROM information_schema.customers WHERE org_id = $1",
                ))
            },
            refused: |v| matches!(v, Violation::UnregisteredTable { table } if table == "information_schema.customers"),
        },
        Attempt {
            name: "an alias the checker's parser drops (global) turns the org filter onto a decoy",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "UPDATE customers global SET name = 'pwned by A' \
                     FROM (SELECT $1::uuid AS org_id) AS customers WHERE customers.org_id = $1",
                ))
            },
            refused: dropped_word,
        },
        Attempt {
            name: "a dropped alias hides a FROM function, so global.ts_stat runs SQL",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "SELECT (global.ts_stat)::text FROM unnest(ARRAY[$1::text]) global WHERE $2::uuid IS NOT NULL",
                    )
                    .bind::<Text, _>(format!(
                        "SELECT to_tsvector('simple', set_config('tenant.org_id', '{}', true))",
                        w.b.as_uuid()
                    )),
                )
            },
            refused: dropped_word,
        },
        Attempt {
            name: "a dropped alias in a DSL filter takes an advisory lock",
            class: 1,
            attack: |s, _| {
                filter_sql(
                    s,
                    "(SELECT global.pg_advisory_lock::text FROM generate_series(4242::bigint, 4242::bigint) global) IS NOT NULL",
                )
            },
            refused: dropped_word,
        },
        // Found by the fourth red-team pass: where the two lexers disagree.
        Attempt {
            name: "a dollar-quote tag only PostgreSQL reads hides an org hop from the checker",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new("SELECT $€$ --$€$, set_config('tenant.org_id', $1, true)\n")
                        .bind::<Text, _>(w.b.as_uuid().to_string()),
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "a dollar-quote tag only PostgreSQL reads turns the org predicate into a string",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT name, $€$ FROM customers WHERE org_id = $1 --$€$ AS x FROM customers",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "the same hidden hop from a DSL select list",
            class: 1,
            attack: |s, w| {
                select_sql(
                    s,
                    &format!(
                        "$€$ --$€$, set_config('tenant.org_id', '{}', true)\n",
                        w.b.as_uuid()
                    ),
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "a hidden SELECT INTO TEMP would shadow the table for the next org",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT $€$ --$€$ AS zz, c.* INTO TEMP customers FROM public.customers c WHERE false\n",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "an alias the parser reads as ANTI JOIN turns the org filter onto a decoy",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT anti.name FROM customers anti JOIN (SELECT $1::uuid AS org_id) AS customers \
                     ON true WHERE customers.org_id = $1",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "an alias the parser reads as SEMI JOIN turns the org filter onto a decoy",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT semi.name FROM customers semi JOIN (SELECT $1::uuid AS org_id) AS customers \
                     ON true WHERE customers.org_id = $1",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "== is = to the checker and an operator of its own to the server",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT name FROM customers WHERE org_id == $1",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "!=- is two operators to the checker and one custom operator to the server",
            class: 1,
            attack: |s, _| filter_sql(s, "1 !=-1"),
            refused: lexer_differs,
        },
        // Found by the fifth red-team pass.
        Attempt {
            name: "a Unicode-escaped name is one token to the server and three to the checker",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        r#"SELECT (q.u&"ts_stat")::text AS x FROM unnest(ARRAY[format('SELECT to_tsvector(set_config(%L, %L, true))', 'tenant.org_id', $1::text)]) AS q(u) WHERE $2::uuid IS NOT NULL"#,
                    )
                    .bind::<Text, _>(w.b.as_uuid().to_string()),
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "a Unicode-escaped name takes a session advisory lock",
            class: 1,
            attack: |s, _| {
                select_sql(
                    s,
                    r#"(SELECT (q.u&"pg_advisory_lock")::text FROM unnest(ARRAY[424242::bigint]) AS q(u))"#,
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "an INSERT target that is a field of a column passes for the org column",
            class: 4,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "INSERT INTO customers (email.org_id, org_id, name) VALUES ($2, $1, 'planted')",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid()),
                )
            },
            refused: |v| matches!(v, Violation::UnsupportedExpression(w) if w.contains("a field of a column")),
        },
        // Found by the sixth red-team pass.
        Attempt {
            name: "an operator token that swallows `--` drops the org predicate for the server",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT c.name FROM customers c WHERE (SELECT 1 ORDER BY 1 USING >-- ) IS NOT NULL \
                     AND c.org_id = $1 AND (SELECT 1 ORDER BY 1 USING >\n) IS NOT NULL",
                ))
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "an operator token that swallows `/*` hides an org hop from the checker",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "SELECT (SELECT 1 ORDER BY 1 USING >/*, ' */) AS skip, \
                         set_config($$tenant.org_id$$, $1::text, true) AS name --\n-- ') AS name",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid()),
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "the same hidden read of B from a DSL select list",
            class: 1,
            attack: |s, _| {
                select_sql(
                    s,
                    "COALESCE((SELECT '' ORDER BY 1 USING >/*, ' */ LIMIT 0), \
                     (SELECT string_agg(name || $$ $$ || email, $$,$$) FROM customers)) --\n-- '))",
                )
            },
            refused: lexer_differs,
        },
        Attempt {
            name: "ORDER BY ... USING an operator the checker never looks at",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT name FROM customers WHERE org_id = $1 ORDER BY name USING OPERATOR(public.<)",
                ))
            },
            refused: |v| matches!(v, Violation::UnsupportedExpression(w) if w.contains("USING <operator>")),
        },
        // Found by the seventh red-team pass: the parser stopped at `end`.
        Attempt {
            name: "a bare `end` label ends the statement for the checker only (org hop)",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "SELECT 1 end, set_config('tenant.org_id', $1, true) AS name WHERE $2::uuid IS NOT NULL",
                    )
                    .bind::<Text, _>(w.b.as_uuid().to_string()),
                )
            },
            refused: parser_stopped,
        },
        Attempt {
            name: "a bare `end` label hides an INSERT into B",
            class: 1,
            attack: |s, w| {
                s.execute_sql(
                    TenantSql::new(
                        "INSERT INTO customers (org_id, name, email) SELECT $2::uuid, 'n', 'e' end \
                         WHERE false UNION ALL SELECT $1::uuid, 'PLANTED_BY_A', 'planted@x'",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid()),
                )
            },
            refused: parser_stopped,
        },
        Attempt {
            name: "a bare `end` label in a DSL select list comments out the org filter",
            class: 1,
            attack: |s, _| select_sql(s, "c.name end FROM customers c --"),
            refused: parser_stopped,
        },
        Attempt {
            name: "a bare `end` label hides SELECT INTO TEMP, a table shadowing the next org's",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "SELECT gen_random_uuid() AS id, $1::uuid AS org_id, 'FAKE'::text AS name, \
                     'fake@x'::text AS email, 1 end INTO TEMP customers",
                ))
            },
            refused: parser_stopped,
        },
        // Found by the eighth red-team pass: a clause of another dialect.
        Attempt {
            name: "a DELETE alias read as SQL Server's OUTPUT clause moves the org filter off the target",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "DELETE FROM customers output USING customers \
                     WHERE customers.org_id = $1 AND customers.name = 'dummy'",
                ))
            },
            refused: |v| matches!(v, Violation::UnsupportedExpression(w) if w.contains("`output`")),
        },
        Attempt {
            name: "the same OUTPUT misreading hides pg_stat_activity in the USING list",
            class: 1,
            attack: |s, _| {
                s.execute_sql(TenantSql::new(
                    "DELETE FROM customers output USING customers, pg_stat_activity \
                     WHERE customers.org_id = $1 AND customers.id = output.id AND output.name = 'sacrifice' \
                     RETURNING pg_stat_activity.query AS q",
                ))
            },
            refused: |v| matches!(v, Violation::UnsupportedExpression(w) if w.contains("`output`")),
        },
        // 4. Public constructors of checked types.
        Attempt {
            name: "TenantSql::new with a read of B that skips the macro",
            class: 4,
            attack: |s, w| {
                let forged = TenantSql::new("SELECT name FROM customers WHERE org_id = $1")
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid());
                s.execute_sql(forged)
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "TenantSql::new with an update that moves A's rows to B",
            class: 4,
            attack: |s, w| {
                let forged = TenantSql::new("UPDATE customers SET org_id = $1 WHERE org_id = $2")
                    .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid());
                s.execute_sql(forged)
            },
            refused: |v| matches!(v, Violation::AssignsOrgColumn { column, .. } if column == "org_id"),
        },
        Attempt {
            name: "TenantSql::new with an insert into B",
            class: 4,
            attack: |s, w| {
                let forged = TenantSql::new(
                    "INSERT INTO customers (org_id, name, email) VALUES ($1, 'x', 'x@x') RETURNING $2::uuid",
                )
                .bind::<diesel::sql_types::Uuid, _>(w.b.as_uuid());
                s.execute_sql(forged)
            },
            refused: |v| matches!(v, Violation::InsertWithoutOrg { column, .. } if column == "org_id"),
        },
        // 5. A boxed diesel subquery (its type erased) in each clause.
        Attempt {
            name: "a boxed subquery in the select list reads B's names",
            class: 5,
            attack: |s, _| {
                let every = customers::table
                    .select(customers::name)
                    .limit(1)
                    .into_boxed::<Pg>();
                let q = s
                    .query(deals::table)
                    .select(every.single_value().assume_not_null());
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a boxed subquery in a filter reads B's ids",
            class: 5,
            attack: |s, _| {
                let every = customers::table.select(customers::id).into_boxed::<Pg>();
                let q = s
                    .query(deals::table)
                    .filter(deals::customer_id.eq_any(every))
                    .select(deals::title);
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a boxed subquery in order by sorts by B's names",
            class: 5,
            attack: |s, _| {
                let name = customers::table
                    .select(customers::name)
                    .limit(1)
                    .into_boxed::<Pg>();
                let q = s
                    .query(deals::table)
                    .order(name.single_value())
                    .select(deals::title);
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a boxed subquery in then_order_by sorts by B's names",
            class: 5,
            attack: |s, _| {
                let name = customers::table
                    .select(customers::name)
                    .limit(1)
                    .into_boxed::<Pg>();
                let q = s
                    .query(deals::table)
                    .order(deals::title)
                    .then_order_by(name.single_value())
                    .select(deals::title);
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a boxed subquery in having counts B's rows",
            class: 5,
            attack: |s, _| {
                let theirs = customers::table
                    .select(diesel::dsl::count_star())
                    .into_boxed::<Pg>();
                let q = s
                    .query(deals::table)
                    .group_by(deals::stage)
                    .having(diesel::dsl::count_star().lt(theirs.single_value().assume_not_null()))
                    .select(deals::stage);
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a boxed subquery in returning reads B's names",
            class: 5,
            attack: |s, _| {
                let name = customers::table
                    .select(customers::name)
                    .limit(1)
                    .into_boxed::<Pg>();
                let q = s
                    .update(deals::table)
                    .filter(deals::stage.eq("never"))
                    .set(deals::stage.eq("never"))
                    .returning(name.single_value().assume_not_null());
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        // 6. diesel traits implemented by hand.
        Attempt {
            name: "a hand-made expression in the select list reads B's customers",
            class: 6,
            attack: |s, _| {
                let q = s
                    .query(deals::table)
                    .select(Smuggled("(SELECT string_agg(name, ',') FROM customers)"));
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a hand-made expression in a filter hops to B",
            class: 6,
            attack: |s, _| {
                let q = s
                    .query(deals::table)
                    .filter(Smuggled("set_config('tenant.org_id', '00000000-0000-0000-0000-00000000000b', true)").eq("x"))
                    .select(deals::title);
                s.load::<String, _>(q).map(|r| r.len())
            },
            refused: |v| matches!(v, Violation::ChangesSessionSetting(f) if f == "set_config"),
        },
        Attempt {
            name: "a hand-made expression in an update's changes reads B's names",
            class: 6,
            attack: |s, _| {
                let q = s
                    .update(customers::table)
                    .set(customers::name.eq(Smuggled("(SELECT max(name) FROM customers)")));
                s.execute(q)
            },
            refused: |v| missing(v, "customers"),
        },
        Attempt {
            name: "a hand-made changeset that claims not to set the org column moves rows to B",
            class: 6,
            attack: |s, w| s.execute(s.update(customers::table).set(MoveToB(w.b.as_uuid()))),
            refused: |v| matches!(v, Violation::AssignsOrgColumn { column, .. } if column == "org_id"),
        },
        Attempt {
            name: "a hand-made expression as an upsert's value writes into B",
            class: 6,
            attack: |s, w| {
                let _ = w;
                let q = s
                    .insert(
                        deals::table,
                        (
                            deals::customer_id.eq(w.b_customer),
                            deals::title.eq(Smuggled("(SELECT name FROM customers LIMIT 1)")),
                            deals::amount_cents.eq(1),
                            deals::currency.eq("EUR"),
                            deals::stage.eq("open"),
                        ),
                    )
                    .on_conflict((deals::org_id, deals::id))
                    .do_nothing();
                s.execute(q)
            },
            refused: |v| missing(v, "customers"),
        },
    ]
}

fn every_attempt_is_refused_before_it_is_sent(mode: Mode) {
    let w = World::new(mode);
    let attempts = attempts();
    assert!(attempts.len() >= 25, "{} attempts", attempts.len());
    let mut failures = Vec::new();
    for a in &attempts {
        let (outcome, sent) = w.attempt(|s, w| (a.attack)(s, w));
        let refused = match &outcome {
            Err(TenantError::Unscoped(v)) => (a.refused)(v),
            _ => false,
        };
        if !refused || sent {
            failures.push(format!(
                "class {} {:?}: {} -> {outcome:?}, sent: {sent}",
                a.class, mode, a.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The classes covered.
    for class in [1, 4, 5, 6] {
        assert!(attempts.iter().any(|a| a.class == class), "class {class}");
    }
}

#[test]
fn every_attempt_is_refused_before_it_is_sent_with_the_plain_setting() {
    every_attempt_is_refused_before_it_is_sent(Mode::Setting);
}

#[test]
fn every_attempt_is_refused_before_it_is_sent_with_the_signed_context() {
    every_attempt_is_refused_before_it_is_sent(Mode::Signed);
}

/// The harness can see a statement that is sent: without this, "nothing was sent" would be
/// a claim no test could falsify.
#[test]
fn the_watch_sees_a_statement_that_is_sent() {
    let w = World::new(Mode::Setting);
    let (outcome, sent) = w.attempt(|s, _| {
        s.load::<String, _>(s.query(customers::table).select(customers::name))
            .map(|r| r.len())
    });
    assert_eq!(outcome.unwrap(), 1);
    assert!(sent);
}

/// Class 2: an expression of the attacker's that renders something harmless the first time
/// and an org hop every time after. The handle renders once and sends that rendering, so the
/// server receives the harmless text and no row of B comes back.
#[derive(Debug, Clone, QueryId)]
struct Shapeshifter {
    walks: std::rc::Rc<Cell<usize>>,
    hop: &'static str,
}

impl Expression for Shapeshifter {
    type SqlType = Bool;
}
impl<QS> AppearsOnTable<QS> for Shapeshifter {}
impl<GB> ValidGrouping<GB> for Shapeshifter {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}
impl QueryFragment<Pg> for Shapeshifter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let n = self.walks.get();
        self.walks.set(n + 1);
        out.push_sql(if n == 0 { "TRUE" } else { self.hop });
        Ok(())
    }
}

fn what_is_checked_is_what_is_sent(mode: Mode) {
    let w = World::new(mode);
    let hop: &'static str = Box::leak(
        format!(
            "set_config('tenant.org_id', '{}', true) IS NOT NULL",
            w.b.as_uuid()
        )
        .into_boxed_str(),
    );
    for round in 0..2 {
        let walks = std::rc::Rc::new(Cell::new(0));
        let shifter = Shapeshifter {
            walks: walks.clone(),
            hop,
        };
        let (names, received) = w
            .pool
            .with_org(w.a, |s| {
                let q = s
                    .query(customers::table)
                    .filter(shifter)
                    .select(customers::name);
                let names: Vec<String> = s.load(q)?;
                Ok::<_, TenantError>((names, w.received().1))
            })
            .unwrap();
        assert_eq!(names, ["alice"], "round {round}: only A's row came back");
        assert!(
            received.contains("TRUE") && !received.contains("set_config"),
            "round {round}: the server received the checked text, not a second rendering: {received}"
        );
        assert!(walks.get() >= 1);
    }
}

#[test]
fn what_is_checked_is_what_is_sent_with_the_plain_setting() {
    what_is_checked_is_what_is_sent(Mode::Setting);
}

#[test]
fn what_is_checked_is_what_is_sent_with_the_signed_context() {
    what_is_checked_is_what_is_sent(Mode::Signed);
}

/// Control for the digest and the world: A's handle counts A's one customer, not B's.
#[test]
fn a_count_of_bs_rows_is_never_visible_through_the_handle() {
    let w = World::new(Mode::Setting);
    let seen: i64 = w
        .pool
        .with_org(w.a, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    assert_eq!(seen, 1);
}
