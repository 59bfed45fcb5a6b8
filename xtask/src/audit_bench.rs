//! `cargo xtask audit-bench`: how the catalog audit's cost grows with the number of tenant
//! tables. Builds databases with 50 and 500 generated tenant tables (each with RLS from the
//! generator, a composite unique key and a composite foreign key to a parent), audits each
//! several times, interleaved, and prints the medians, the time per table, and the ratio of
//! the 500-table run to ten times the 50-table run (linear growth: at most 1.2).

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tenant_lint::{Registry, TableEntry, TableKind};

const ROUNDS: usize = 5;

/// A registry of `n` generated tenant tables `t0..t{n-1}` (leaked: it lives for the run).
fn registry(n: usize) -> &'static Registry {
    let entries: Vec<TableEntry> = (0..n)
        .map(|i| TableEntry {
            name: Box::leak(format!("t{i}").into_boxed_str()),
            kind: TableKind::Tenant {
                org_column: "org_id",
            },
        })
        .collect();
    Box::leak(Box::new(Registry::from_entries(entries)))
}

/// A database of `n` generated tenant tables with their protection: its admin URL, its
/// application URL and the registry.
pub(crate) fn build(
    admin_url: &str,
    n: usize,
) -> Result<(String, String, &'static Registry), String> {
    let db = format!("tenant_audit_bench_{n}");
    let (admin, app) = crate::prepare_story_db(admin_url, &db)?;
    let mut conn = PgConnection::establish(&admin).map_err(|e| e.to_string())?;
    let mut ddl = String::new();
    for i in 0..n {
        let parent = if i == 0 {
            String::new()
        } else {
            format!(
                ", parent_id uuid, FOREIGN KEY (org_id, parent_id) REFERENCES t{} (org_id, id)",
                i - 1
            )
        };
        ddl.push_str(&format!(
            "CREATE TABLE t{i} (id uuid NOT NULL DEFAULT gen_random_uuid(), org_id uuid NOT NULL, body text, PRIMARY KEY (org_id, id){parent});\n"
        ));
    }
    conn.batch_execute(&ddl)
        .map_err(|e| format!("creating {n} tables: {e}"))?;
    let registry = registry(n);
    let migration = tenant_schema::generate(registry, &tenant_schema::RlsOptions::default());
    conn.batch_execute(&migration.up)
        .map_err(|e| format!("applying RLS to {n} tables: {e}"))?;
    Ok((admin, app, registry))
}

fn time_audit(app_url: &str, registry: &'static Registry) -> Result<(f64, usize), String> {
    let mut reader =
        tenant_core::admin::CatalogReader::connect(app_url, "cargo xtask audit-bench: timing")
            .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let report = tenant_schema::audit::audit(
        &mut reader,
        registry,
        &tenant_schema::audit::AuditOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    Ok((start.elapsed().as_secs_f64(), report.findings.len()))
}

/// Runs the measurement.
pub fn run() -> Result<(), String> {
    crate::with_database(|admin_url| {
        let (_, small_url, small) = build(admin_url, 50)?;
        let (_, large_url, large) = build(admin_url, 500)?;
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let (ts, fs) = time_audit(&small_url, small)?;
            let (tl, fl) = time_audit(&large_url, large)?;
            println!(
                "round {round}: 50 tables {:.1} ms ({fs} findings), 500 tables {:.1} ms ({fl} findings)",
                ts * 1e3,
                tl * 1e3
            );
            if fs + fl > 0 {
                return Err(format!(
                    "the generated schemas should audit clean, found {} findings",
                    fs + fl
                ));
            }
            s.push(ts);
            l.push(tl);
        }
        let (ms, ml) = (crate::median(s), crate::median(l));
        println!();
        println!("| tenant tables | median audit | per table |");
        println!("|---|---|---|");
        println!("| 50 | {:.1} ms | {:.3} ms |", ms * 1e3, ms * 1e3 / 50.0);
        println!("| 500 | {:.1} ms | {:.3} ms |", ml * 1e3, ml * 1e3 / 500.0);
        println!(
            "| ratio 500 / (10 x 50) | {:.2} (target <= 1.2) | |",
            ml / (10.0 * ms)
        );
        Ok(())
    })
}
