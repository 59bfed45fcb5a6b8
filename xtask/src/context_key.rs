//! The signed org context's keys: `cargo xtask context-key rotate|add`, how the other commands
//! learn the service's key (`--context-key-file F`, or `TENANT_CONTEXT_KEY`; the plain mode
//! only by `--trust-every-statement`), and the key a command gives a database it made itself.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use tenant_core::context::ContextKey;

use crate::args::{options, required};

pub use tenant_cli::context::CONTEXT_KEY_VAR;

/// 32 bytes from the OS random source (two v4 UUIDs: 244 random bits).
fn random_secret() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// Adds key `kid` with `secret` to the database at `admin_url` (its owner or an
/// administrator), first retiring every other key `retire_minutes` from now when given, in one
/// transaction. The secret travels as a bound parameter, never in the statement text (which
/// the server logs with any failing statement, and with every statement under
/// `log_statement = all`), and what would fail is checked first; where the session may (a
/// superuser), it turns statement and parameter logging off for itself.
fn install(
    admin_url: &str,
    kid: &str,
    secret: &[u8],
    retire_minutes: Option<u32>,
) -> Result<(), String> {
    let mut conn =
        diesel::PgConnection::establish(admin_url).map_err(|e| format!("connecting: {e}"))?;
    install_on(&mut conn, kid, secret, retire_minutes)
}

/// [`install`] on an open connection.
fn install_on(
    conn: &mut diesel::PgConnection,
    kid: &str,
    secret: &[u8],
    retire_minutes: Option<u32>,
) -> Result<(), String> {
    use diesel::RunQueryDsl;
    for quiet in [
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET log_parameter_max_length = 0",
        "SET log_parameter_max_length_on_error = 0",
    ] {
        // Refused to a role that is not a superuser: then the defaults hold, under which a
        // statement that succeeds is not logged, and a failing one without its parameters.
        let _ = conn.batch_execute(quiet);
    }
    #[derive(diesel::QueryableByName)]
    struct Yes {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        yes: bool,
    }
    let verifier: Yes = diesel::sql_query(
        "SELECT to_regprocedure('tenant_context.add_key(text, bytea)') IS NOT NULL AS yes",
    )
    .get_result(conn)
    .map_err(|e| format!("reading the database's catalog: {e}"))?;
    if !verifier.yes {
        return Err(
            "the database has no signed-context objects (tenant_context.add_key): apply the \
             migrations generated in the signed mode first"
                .into(),
        );
    }
    // A role that may not read the key table cannot tell; add_key refuses a taken id anyway.
    let taken = diesel::sql_query(
        "SELECT EXISTS (SELECT FROM tenant_context.keys k WHERE k.kid = $1) AS yes",
    )
    .bind::<diesel::sql_types::Text, _>(kid)
    .get_result::<Yes>(conn)
    .is_ok_and(|t| t.yes);
    if taken {
        return Err(format!(
            "the database already holds a key {kid}: give another --kid (keys are never replaced)"
        ));
    }
    conn.transaction(|c| {
        if let Some(minutes) = retire_minutes {
            diesel::sql_query(
                "SELECT tenant_context.retire_key(kid, now() + make_interval(mins => $1)) \
                   FROM tenant_context.keys \
                  WHERE retire_after IS NULL OR retire_after > now() + make_interval(mins => $1)",
            )
            .bind::<diesel::sql_types::Integer, _>(i32::try_from(minutes).unwrap_or(i32::MAX))
            .execute(c)?;
        }
        diesel::sql_query("SELECT tenant_context.add_key($1, $2)")
            .bind::<diesel::sql_types::Text, _>(kid)
            .bind::<diesel::sql_types::Binary, _>(secret)
            .execute(c)
    })
    .map(drop)
    .map_err(|e: diesel::result::Error| {
        format!("adding the key (this URL needs the key table's owner or an administrator): {e}")
    })
}

/// A new random secret for key `kid`, the id checked before anything is written anywhere.
fn new_key(kid: &str) -> Result<Vec<u8>, String> {
    let secret = random_secret();
    ContextKey::new(kid, &secret).map_err(|e| e.to_string())?;
    Ok(secret)
}

/// A key as a service configures it: one line `kid:hex`.
fn key_line(kid: &str, secret: &[u8]) -> String {
    format!("{kid}:{}", tenant_core::context::to_hex(secret))
}

/// A fresh key, added to each story database a command made itself (the demo, the probe and
/// the benches without `--database-url`), which is thrown away with it.
fn throwaway(admin_urls: &[&str]) -> Result<(String, Vec<u8>), String> {
    let kid = format!("xtask{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let secret = new_key(&kid)?;
    for url in admin_urls {
        install(url, &kid, &secret, None)?;
    }
    Ok((kid, secret))
}

/// [`throwaway`]'s key.
pub fn throwaway_key(admin_urls: &[&str]) -> Result<ContextKey, String> {
    let (kid, secret) = throwaway(admin_urls)?;
    ContextKey::new(&kid, &secret).map_err(|e| e.to_string())
}

/// [`throwaway`]'s key as its `kid:hex` line, for a process started with it in
/// [`CONTEXT_KEY_VAR`].
pub fn throwaway_key_line(admin_urls: &[&str]) -> Result<String, String> {
    let (kid, secret) = throwaway(admin_urls)?;
    Ok(key_line(&kid, &secret))
}

/// `cargo xtask context-key rotate --database-url ADMIN_URL [--kid KID] [--retire-after MINUTES]`:
/// a new key for the signed org context. It is added to the database (where only the table
/// owner reads it) and printed once for the service's configuration; every other key stays
/// valid for MINUTES more (default 60), so services can move to the new key without a gap.
/// `add`: see [`add_context_key`].
pub fn context_key(args: &[&str]) -> Result<(), String> {
    if let ["add", rest @ ..] = args {
        return add_context_key(rest);
    }
    let ["rotate", rest @ ..] = args else {
        return Err(format!(
            "context-key: expected rotate or add\n{}",
            crate::USAGE
        ));
    };
    let o = options(rest, &["--database-url", "--kid", "--retire-after"], &[])?;
    let url = required(&o, "--database-url")?;
    let minutes: u32 = o
        .get("--retire-after")
        .map_or(Ok(60), |m| m.parse())
        .map_err(|e| format!("--retire-after: {e}"))?;
    let kid = o.get("--kid").map_or_else(
        || format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S")),
        |k| (*k).to_owned(),
    );
    let secret = new_key(&kid)?;
    install(url, &kid, &secret, Some(minutes))?;
    let hex = tenant_core::context::to_hex(&secret);
    println!("new context key {kid} added; the others stay valid for {minutes} minutes");
    println!("configure the service with: kid = {kid}, key = {hex}");
    println!(
        "(as one line, for {CONTEXT_KEY_VAR} or a key file: {})",
        key_line(&kid, &secret)
    );
    Ok(())
}

/// `cargo xtask context-key add --database-url ADMIN_URL (--from-file F | --from-env VAR)`:
/// adds a key the service already has (one line `kid:hex`) to another database, so that one
/// key serves several. Nothing is retired; the key is checked before anything is written.
fn add_context_key(args: &[&str]) -> Result<(), String> {
    let o = options(args, &["--database-url", "--from-file", "--from-env"], &[])?;
    let url = required(&o, "--database-url")?;
    let text = match (o.get("--from-file"), o.get("--from-env")) {
        (Some(file), None) => {
            std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?
        }
        // The error never shows the variable's value (a key, or most of one).
        (None, Some(var)) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => format!("{var} is not set"),
            std::env::VarError::NotUnicode(_) => {
                format!("{var} is not UTF-8 text: write the key as one line kid:hex")
            }
        })?,
        _ => {
            return Err(
                "context-key add: give exactly one of --from-file F and --from-env VAR".into(),
            );
        }
    };
    // Checks the id, the hex and the length; the error never shows the key.
    let key = ContextKey::parse(&text).map_err(|e| e.to_string())?;
    let (_, hex) = text.trim().split_once(':').unwrap_or_default();
    let secret = tenant_core::context::hex_bytes("the key", hex.trim())?;
    install(url, key.kid(), &secret, None)?;
    println!("context key {} added", key.kid());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_travels_in_statement_text_and_a_taken_id_is_refused_before_it_is_sent() {
        use diesel::connection::InstrumentationEvent;
        let db = tenant_testkit::TestDb::new("xtask_key_install");
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
        install_on(&mut conn, "k1", &secret, Some(60)).unwrap();
        let err = install_on(&mut conn, "k1", &secret, None).unwrap_err();
        assert!(err.contains("already holds a key k1"), "{err}");
        let sent = sent.lock().unwrap();
        assert!(
            sent.iter()
                .any(|q| q.contains("tenant_context.add_key($1, $2)"))
        );
        assert!(
            sent.iter().all(|q| !q.contains(&hex[..16])),
            "the key in a statement's text: {sent:#?}"
        );
        // And it works: a token signed with it verifies.
        let key = ContextKey::parse(&format!("k1:{hex}")).unwrap();
        let pool = tenant_core::TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key)
            .max_size(1)
            .build();
        assert!(pool.is_ok(), "{:?}", pool.err());
    }
}
