//! Pattern 3, search under row-level security, on a real server: the statement the search
//! sends, read back from `pg_stat_activity`, is explained as the application role in the
//! search's own scoped transaction, and must reach the documents through indexes only (the
//! term tables' primary keys, then the documents' primary key); its results must be exactly
//! the org's rows that match. The naive form beside it (a GIN index and `@@`/`@>` on the
//! documents) must not get its index as the application role while a superuser gets it: that
//! is the reason for the pattern. And the attack: the term tables cannot lead a search into
//! another org's documents.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::corpus::{self, COMMON_WORD, CUSTOMER_KEY, RARE_WORD};
use common::plan::{Explained, explain};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use saas_patterns::schema::{document_words, documents};
use saas_patterns::search::{
    Found, NewDocument, create_documents, documents_with_attribute, search_documents,
    update_document,
};
use saas_patterns::signup::{SignUp, sign_up};
use tenant_core::{OrgId, OrgScoped, Pooled, TenantError, TenantPool};
use tenant_testkit::TestDb;
use uuid::Uuid;

fn new_org(pool: &TenantPool, name: &str) -> OrgId {
    let email = format!("owner@{}.example", name.to_lowercase());
    sign_up(
        pool,
        &SignUp {
            org_name: name,
            owner_email: &email,
            plan: "free",
        },
        chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
    )
    .unwrap()
    .org
}

/// The text of the statement the application role's open transaction sent last, read by the
/// admin from `pg_stat_activity`: exactly what the library sent, placeholders and all.
fn last_statement(db: &TestDb) -> String {
    #[derive(QueryableByName)]
    struct Activity {
        #[diesel(sql_type = Text)]
        query: String,
    }
    let rows: Vec<Activity> = diesel::sql_query(
        "SELECT query FROM pg_stat_activity \
         WHERE datname = current_database() AND usename = 'tenant_app' \
           AND state = 'idle in transaction'",
    )
    .load(&mut db.admin())
    .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one open transaction of the application role"
    );
    rows.into_iter().next().unwrap().query
}

fn conn(s: &mut OrgScoped<Pooled>) -> &mut PgConnection {
    s.raw_connection_unchecked(
        "test: EXPLAIN the statement the search sent, in its own transaction as the application role",
    )
}

/// The ids the admin finds with the real operator, outside row-level security.
fn truth(admin: &mut PgConnection, org: OrgId, condition: &str, bind: &str) -> Vec<Uuid> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let mut ids: Vec<Uuid> = diesel::sql_query(format!(
        "SELECT id FROM documents WHERE org_id = $1 AND {condition}"
    ))
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<Text, _>(bind)
    .load::<Id>(admin)
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect();
    ids.sort();
    ids
}

fn ids(found: &[Found]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = found.iter().map(|f| f.id).collect();
    ids.sort();
    ids
}

/// `sql`'s generic plan (what a prepared statement may switch to), explained with `args`:
/// prepared under a name, explained with `plan_cache_mode = force_generic_plan` (local to the
/// transaction), and deallocated at once, so that the connection carries no statement
/// prepared by SQL into its next transaction (the opening would refuse it).
fn explain_generic(conn: &mut PgConnection, sql: &str, types: &str, args: &str) -> Explained {
    conn.batch_execute(&format!(
        "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE pattern_generic ({types}) AS {sql}"
    ))
    .unwrap();
    let plan = explain(
        conn,
        &format!("EXECUTE pattern_generic ({args})"),
        true,
        |q| q,
    );
    conn.batch_execute("DEALLOCATE pattern_generic").unwrap();
    plan
}

/// The pattern's plan: the term table by its primary key on the org and the term, then the
/// documents by theirs; nothing scanned sequentially.
fn assert_indexed(plan: &Explained, term_index: &str, term_column: &str) {
    let summary = plan.summary();
    assert!(
        plan.index_cond_on(term_index, term_column),
        "no index condition on {term_column} in {term_index}:\n{summary}"
    );
    assert!(
        plan.index_cond_on(term_index, "org_id"),
        "the term index is not entered by the org:\n{summary}"
    );
    assert!(
        plan.uses_index("documents_pkey"),
        "the candidates are not fetched by primary key:\n{summary}"
    );
    // (The signed context's key table, a few rows read once per statement by the policy, is
    // the only table scanned whole.)
    let scanned: Vec<&str> = plan
        .seq_scans()
        .into_iter()
        .filter(|t| *t != "keys")
        .collect();
    assert_eq!(scanned, Vec::<&str>::new(), "\n{summary}");
}

#[test]
fn search_keeps_its_index_as_the_application_role_and_finds_only_the_orgs_rows() {
    let db = common::database("search_index");
    let pool = common::pool(&db, 1);
    let orgs = [
        new_org(&pool, "Acme"),
        new_org(&pool, "Globex"),
        new_org(&pool, "Initech"),
    ];
    corpus::load(&pool, &orgs, 1_200, 20, 500, 200);
    let mut admin = db.admin();
    // The naive form's indexes, to show what the application role does not get from them.
    admin
        .batch_execute(
            "CREATE INDEX documents_tsv_gin ON documents USING gin (tsv); \
             CREATE INDEX documents_attrs_gin ON documents USING gin (attrs jsonb_path_ops)",
        )
        .unwrap();
    common::analyze(&mut admin);
    let acme = orgs[0];

    // Full text: the search's own statement, explained as it ran.
    let mut s = pool.begin(acme).unwrap();
    let found = search_documents(&mut s, RARE_WORD, 100).unwrap();
    let sent = last_statement(&db);
    assert!(sent.contains("document_words"), "{sent}");
    let plan = explain(conn(&mut s), &sent, true, |q| {
        q.bind::<Text, _>(RARE_WORD)
            .bind::<BigInt, _>(100)
            .bind::<SqlUuid, _>(acme.as_uuid())
    });
    assert_indexed(&plan, "document_words_pkey", "lexeme");
    // The library's statements are prepared, and PostgreSQL may switch a prepared statement
    // to its generic plan (no parameter values) after five runs: that plan too.
    let generic = explain_generic(
        conn(&mut s),
        &sent,
        "text, bigint, uuid",
        &format!("'{RARE_WORD}', 100, '{}'", acme.as_uuid()),
    );
    assert_indexed(&generic, "document_words_pkey", "lexeme");

    // The naive form in the same transaction: its GIN index is not used by this role.
    let naive = explain(
        conn(&mut s),
        "SELECT d.id FROM documents d WHERE d.org_id = $1 AND d.tsv @@ plainto_tsquery('english', $2)",
        true,
        |q| {
            q.bind::<SqlUuid, _>(acme.as_uuid())
                .bind::<Text, _>(RARE_WORD)
        },
    );
    assert!(
        !naive.uses_index("documents_tsv_gin"),
        "{}",
        naive.summary()
    );
    s.rollback().unwrap();

    // Exactly the org's matches: as the real operator finds them from outside RLS, and none
    // of the other orgs', which have as many.
    let expected = truth(
        &mut admin,
        acme,
        "tsv @@ plainto_tsquery('english', $2)",
        RARE_WORD,
    );
    assert_eq!(expected.len(), 12);
    assert_eq!(ids(&found), expected);
    assert!(found.iter().all(|f| f.org_id == acme.as_uuid()));
    for other in &orgs[1..] {
        assert_eq!(
            truth(
                &mut admin,
                *other,
                "tsv @@ plainto_tsquery('english', $2)",
                RARE_WORD
            )
            .len(),
            12
        );
    }
    // Two words: the documents holding both.
    let both = format!("{RARE_WORD} {COMMON_WORD}");
    let found = pool
        .with_org(acme, |s| search_documents(s, &both, 100))
        .unwrap();
    assert_eq!(
        ids(&found),
        truth(
            &mut admin,
            acme,
            "tsv @@ plainto_tsquery('english', $2)",
            &both
        )
    );
    let superuser_naive = explain(
        &mut admin,
        "SELECT d.id FROM documents d WHERE d.org_id = $1 AND d.tsv @@ plainto_tsquery('english', $2)",
        true,
        |q| {
            q.bind::<SqlUuid, _>(acme.as_uuid())
                .bind::<Text, _>(RARE_WORD)
        },
    );
    assert!(
        superuser_naive.uses_index("documents_tsv_gin"),
        "outside RLS the GIN index serves `@@` (else this test shows nothing):\n{}",
        superuser_naive.summary()
    );

    // jsonb: the same, for a custom field.
    let mut s = pool.begin(acme).unwrap();
    let found = documents_with_attribute(&mut s, CUSTOMER_KEY, "c42", 100).unwrap();
    let sent = last_statement(&db);
    assert!(sent.contains("document_attributes"), "{sent}");
    let plan = explain(conn(&mut s), &sent, true, |q| {
        q.bind::<Text, _>(CUSTOMER_KEY)
            .bind::<Text, _>("c42")
            .bind::<BigInt, _>(100)
            .bind::<SqlUuid, _>(acme.as_uuid())
    });
    assert_indexed(&plan, "document_attributes_pkey", "value");
    let generic = explain_generic(
        conn(&mut s),
        &sent,
        "text, text, bigint, uuid",
        &format!("'{CUSTOMER_KEY}', 'c42', 100, '{}'", acme.as_uuid()),
    );
    assert_indexed(&generic, "document_attributes_pkey", "value");
    let naive = explain(
        conn(&mut s),
        "SELECT d.id FROM documents d WHERE d.org_id = $1 AND d.attrs @> jsonb_build_object($2::text, $3::text)",
        true,
        |q| {
            q.bind::<SqlUuid, _>(acme.as_uuid())
                .bind::<Text, _>(CUSTOMER_KEY)
                .bind::<Text, _>("c42")
        },
    );
    assert!(
        !naive.uses_index("documents_attrs_gin"),
        "{}",
        naive.summary()
    );
    s.rollback().unwrap();
    let expected = truth(
        &mut admin,
        acme,
        "attrs @> jsonb_build_object('customer', $2::text)",
        "c42",
    );
    assert_eq!(expected.len(), 12);
    assert_eq!(ids(&found), expected);
    assert!(found.iter().all(|f| f.org_id == acme.as_uuid()));
}

#[test]
fn an_updated_document_is_found_by_its_new_words_and_fields_only() {
    let db = common::database("search_update");
    let pool = common::pool(&db, 1);
    let acme = new_org(&pool, "Acme");
    let doc = pool
        .with_org(acme, |s| {
            create_documents(
                s,
                &[NewDocument {
                    title: "Quarterly plan",
                    body: "Budget for the zeppelin hangar",
                    attributes: &[("status", "draft")],
                }],
            )
        })
        .unwrap()[0];
    let search = |words: &str| {
        ids(&pool
            .with_org(acme, |s| search_documents(s, words, 10))
            .unwrap())
    };
    let with = |value: &str| {
        ids(&pool
            .with_org(acme, |s| documents_with_attribute(s, "status", value, 10))
            .unwrap())
    };
    assert_eq!(search("zeppelins"), [doc], "stemmed as the document was");
    assert_eq!(with("draft"), [doc]);

    let changed = pool
        .with_org(acme, |s| {
            update_document(
                s,
                doc,
                &NewDocument {
                    title: "Quarterly plan",
                    body: "Budget for the airship hangar",
                    attributes: &[("status", "final")],
                },
            )
        })
        .unwrap();
    assert!(changed);
    assert_eq!(search("zeppelin"), Vec::<Uuid>::new());
    assert_eq!(search("airship budget"), [doc]);
    assert_eq!(with("draft"), Vec::<Uuid>::new());
    assert_eq!(with("final"), [doc]);
    assert_eq!(
        search("the"),
        Vec::<Uuid>::new(),
        "stop words alone find nothing"
    );
}

/// The attack: ordinary code in one org uses the search's own surface (its term tables, its
/// update, its queries) to reach a document of another org. Nothing crosses.
#[test]
fn the_term_tables_cannot_lead_a_search_into_another_org() {
    let db = common::database("search_attack");
    let pool = common::pool(&db, 1);
    let mallory = new_org(&pool, "Mallory");
    let victim = new_org(&pool, "Victim");
    let secret = pool
        .with_org(victim, |s| {
            create_documents(
                s,
                &[NewDocument {
                    title: "Acquisition",
                    body: "Project quetzalcoatl: the offer is final",
                    attributes: &[("customer", "bigfish")],
                }],
            )
        })
        .unwrap()[0];
    let decoy = pool
        .with_org(mallory, |s| {
            create_documents(
                s,
                &[NewDocument {
                    title: "Notes",
                    body: "nothing here",
                    attributes: &[],
                }],
            )
        })
        .unwrap()[0];
    let mut admin = db.admin();
    let victim_before: Vec<i64> = ["documents", "document_words", "document_attributes"]
        .iter()
        .map(|t| common::rows_of(&mut admin, t, victim))
        .collect();

    // 1. Search for the victim's words and fields.
    let outcome = pool
        .with_org(mallory, |s| {
            Ok::<_, TenantError>((
                search_documents(s, "quetzalcoatl", 10)?,
                documents_with_attribute(s, "customer", "bigfish", 10)?,
            ))
        })
        .unwrap();
    assert_eq!(outcome, (vec![], vec![]));

    // 2. Plant a term row that points at the victim's document: the composite foreign key
    //    (org_id, document_id) finds no such document in Mallory's org.
    let planted = pool.with_org(mallory, |s| {
        s.execute(s.insert(
            document_words::table,
            (
                document_words::lexeme.eq("quetzalcoatl"),
                document_words::document_id.eq(secret),
            ),
        ))
    });
    match planted {
        Err(TenantError::Database(e)) => assert_eq!(e.kind, "foreign key violation", "{e}"),
        other => panic!("a term row naming another org's document was not refused: {other:?}"),
    }

    // 3. Plant the victim's word on Mallory's own document: the term row is accepted (it is
    //    Mallory's), but the search checks every candidate with `@@`, so it finds nothing.
    let found = pool
        .with_org(mallory, |s| {
            s.execute(s.insert(
                document_words::table,
                (
                    document_words::lexeme.eq("quetzalcoatl"),
                    document_words::document_id.eq(decoy),
                ),
            ))?;
            search_documents(s, "quetzalcoatl", 10)
        })
        .unwrap();
    assert_eq!(found, vec![]);

    // 4. Rewrite the victim's document through the search's own update, by its id.
    let changed = pool
        .with_org(mallory, |s| {
            update_document(
                s,
                secret,
                &NewDocument {
                    title: "pwned",
                    body: "pwned",
                    attributes: &[],
                },
            )
        })
        .unwrap();
    assert!(!changed);

    // 5. Raw SQL on the escape hatch, the database layer alone: the terms and the documents
    //    of the victim are invisible.
    let seen: i64 = pool
        .with_org(mallory, |s| {
            diesel::sql_query(
                "SELECT count(*) AS n FROM documents d WHERE d.id IN \
                 (SELECT w.document_id FROM document_words w WHERE w.lexeme = 'quetzalcoatl')",
            )
            .get_result::<Count>(s.raw_connection_unchecked(
                "test: raw SQL over the term tables, to show the database layer alone hides the victim's rows",
            ))
            .map(|c| c.n)
            .map_err(TenantError::from)
        })
        .unwrap();
    assert_eq!(seen, 1, "Mallory's own decoy only");

    // From outside row-level security: the victim's document and terms are as they were.
    let victim_after: Vec<i64> = ["documents", "document_words", "document_attributes"]
        .iter()
        .map(|t| common::rows_of(&mut admin, t, victim))
        .collect();
    assert_eq!(victim_after, victim_before);
    let title: String = documents::table
        .filter(documents::org_id.eq(victim.as_uuid()))
        .filter(documents::id.eq(secret))
        .select(documents::title)
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(title, "Acquisition");
    let pointing_at_secret: Vec<Uuid> = document_words::table
        .filter(document_words::document_id.eq(secret))
        .select(document_words::org_id)
        .distinct()
        .load(&mut admin)
        .unwrap();
    assert_eq!(pointing_at_secret, [victim.as_uuid()]);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}
