//! Adding the signed context's keys to a database: the secret never travels in a statement's
//! text, a taken id is refused before anything is sent, a rotation retires the others after
//! the grace period, and the list shows ids and dates, never a secret.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::Connection as _;
use diesel::connection::InstrumentationEvent;

#[test]
fn the_key_never_travels_in_statement_text_and_a_taken_id_is_refused_before_it_is_sent() {
    let db = tenant_testkit::TestDb::new("keys_install");
    two_companies::migrate(&db.admin_url()).unwrap();
    let mut conn = db.admin();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            sink.lock().unwrap().push(query.to_string());
        }
    });
    let secret = [0xc3; 32];
    let hex = tenant_core::context::to_hex(&secret);
    tenant_core::keys::install_on(&mut conn, "k1", &secret, Some(60)).unwrap();
    let err = tenant_core::keys::install_on(&mut conn, "k1", &secret, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a key k1"), "{err}");
    {
        let sent = sent.lock().unwrap();
        assert!(
            sent.iter()
                .any(|q| q.contains("tenant_context.add_key($1, $2)"))
        );
        assert!(
            sent.iter().all(|q| !q.contains(&hex[..16])),
            "the key in a statement's text: {sent:#?}"
        );
    }
    // And it works: a token signed with it verifies.
    let key = tenant_core::context::ContextKey::parse(&format!("k1:{hex}")).unwrap();
    let pool = tenant_core::TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key)
        .max_size(1)
        .build();
    assert!(pool.is_ok(), "{:?}", pool.err());

    // A rotation retires k1 after its grace period; the list says so, and shows no secret.
    tenant_core::keys::install(&db.admin_url(), "k2", &[0x7e; 32], Some(30)).unwrap();
    let keys = tenant_core::keys::list(&db.admin_url()).unwrap();
    let ids: Vec<(&str, bool, bool)> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.retire_after.is_some(), k.valid))
        .collect();
    assert_eq!(ids, [("k1", true, true), ("k2", false, true)]);
    assert!(!format!("{keys:?}").contains(&hex[..16]));
    // A role that may not read the key table gets an error naming who may.
    let err = tenant_core::keys::list(&db.app_url())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the key table's owner or an administrator"),
        "{err}"
    );
}
