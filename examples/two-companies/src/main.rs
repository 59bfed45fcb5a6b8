//! The two-companies demo: `cargo xtask demo` runs it against a throwaway cluster.
//!
//! Environment: `ADMIN_DATABASE_URL` (runs the migrations, and the final privileged check),
//! `APP_DATABASE_URL` (the application role, tenant_app) and `TENANT_CONTEXT_KEY` (the
//! service's context key, `kid:hex`, which the database holds).

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use tenant_core::context::ContextKey;
use tenant_core::{OrgId, TenantPool};
use two_companies::story::{self, money};

fn main() -> ExitCode {
    match run() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(crossed) => {
            eprintln!("FAILED: {crossed} rows crossed between the orgs");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("two-companies: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!("{name} is not set: run `cargo xtask demo`, which sets up a database and both URLs")
    })
}

fn run() -> Result<i64, String> {
    let admin_url = env("ADMIN_DATABASE_URL")?;
    let app_url = env("APP_DATABASE_URL")?;
    let applied = two_companies::migrate(&admin_url).map_err(|e| e.to_string())?;
    if !applied.is_empty() {
        println!("migrations applied: {}", applied.join(", "));
    }
    // The service's context key: the database verifies every transaction's org with it, so no
    // statement the service sends can switch the org row-level security enforces.
    let key = ContextKey::require_env("TENANT_CONTEXT_KEY").map_err(|e| e.to_string())?;

    let pool = TenantPool::builder(app_url, &two_companies::REGISTRY, key)
        .max_size(4)
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "pool started as the application role; start-up checks passed (not superuser, NOBYPASSRLS, owns no tenant table, no TRUNCATE/REFERENCES/TRIGGER, RLS forced on every tenant table, the database verifies this service's signed org tokens)"
    );

    let today = Utc::now().date_naive();
    let northwind = story::seed_org(&pool, "Northwind", 0, today).map_err(|e| e.to_string())?;
    let globex = story::seed_org(&pool, "Globex", 1, today).map_err(|e| e.to_string())?;
    println!(
        "seeded two orgs with customers, deals and invoices: Northwind {northwind}, Globex {globex}\n"
    );

    // Both orgs work on the same pool at the same time.
    let (twin, chief) = std::thread::scope(|scope| {
        let twin = scope.spawn(|| story::digital_twin_draft(&pool, northwind, today));
        let chief = scope.spawn(|| story::chief_of_staff_overdue(&pool, globex, today));
        (twin.join(), chief.join())
    });
    let proposal = twin
        .map_err(|_| "the digital twin panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    let overdue = chief
        .map_err(|_| "the chief of staff panicked".to_owned())?
        .map_err(|e| e.to_string())?;

    let (q_start, q_end) = story::last_quarter(today);
    println!("Northwind / digital twin: won deals of last quarter ({q_start} to {q_end})");
    let mut seen_by_northwind = Vec::new();
    if let Some(p) = &proposal {
        for d in &p.deals {
            println!(
                "  {}  {:>12} {}  closed {}",
                d.title,
                money(d.amount_cents),
                d.currency,
                d.closed_on.map(|c| c.to_string()).unwrap_or_default()
            );
            seen_by_northwind.push(d.id);
        }
        println!(
            "  -> drafted proposal {} for {}: {} {}\n",
            p.proposal_id,
            p.customer,
            money(p.total_cents),
            p.currency
        );
        seen_by_northwind.push(p.proposal_id);
    } else {
        println!("  -> nothing won last quarter, no proposal drafted\n");
    }

    println!("Globex / chief of staff: overdue invoices");
    let mut seen_by_globex = Vec::new();
    for i in &overdue {
        println!(
            "  {}  {:>12} {}  due {}",
            i.number,
            money(i.total_cents),
            i.currency,
            i.due_on
        );
        seen_by_globex.push(i.id);
    }
    println!("  -> {} overdue invoices\n", overdue.len());

    let crossed = crossed_rows(&admin_url, northwind, &seen_by_northwind)?
        + crossed_rows(&admin_url, globex, &seen_by_globex)?;
    println!(
        "rows that crossed between the orgs: {crossed} (checked by a privileged query, outside row-level security, over the {} rows the two sessions saw or wrote)",
        seen_by_northwind.len() + seen_by_globex.len()
    );
    Ok(crossed)
}

/// How many of the rows in `ids` belong to another org than `org`, counted by the admin role,
/// which row-level security does not restrict: the proof does not rely on what it checks.
fn crossed_rows(admin_url: &str, org: OrgId, ids: &[uuid::Uuid]) -> Result<i64, String> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut admin = PgConnection::establish(admin_url).map_err(|e| e.to_string())?;
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM ( \
           SELECT org_id FROM deals WHERE id = ANY($1) \
           UNION ALL SELECT org_id FROM proposals WHERE id = ANY($1) \
           UNION ALL SELECT org_id FROM invoices WHERE id = ANY($1) \
         ) seen WHERE org_id <> $2",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<SqlUuid, _>(org.as_uuid())
    .get_result(&mut admin)
    .map_err(|e| e.to_string())?;
    let found: i64 = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT id FROM deals UNION ALL SELECT id FROM proposals UNION ALL SELECT id FROM invoices) x WHERE id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .get_result::<Count>(&mut admin)
    .map_err(|e| e.to_string())?
    .n;
    if found != ids.len() as i64 {
        return Err(format!(
            "the proof query found {found} of {} rows; it proves nothing",
            ids.len()
        ));
    }
    Ok(count.n)
}
