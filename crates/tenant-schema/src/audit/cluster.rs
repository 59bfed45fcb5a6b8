//! The audit of a Citus cluster: the coordinator's catalog as on PostgreSQL ([`super::audit`]),
//! and every worker's, where the policies run. On each worker, every shard of every
//! registered table placed there, and the table's own copy of the metadata, must be protected
//! as the table is on the coordinator: owner, row-level security enabled and forced, the same
//! policies (name, kind, command, roles, expressions) and the same privileges for the
//! application role; and the application role must not bypass row-level security there. A
//! worker that cannot be read is a finding, never a silent skip.
//!
//! The inline policy form, which the audit of a single server reports
//! (`policy-reads-org-per-row`), is the one Citus takes and is not reported here.
//!
//! The workers are found in the coordinator's `pg_dist_node` and read as the same role, with
//! the URL's host and port replaced (`worker_urls`), and with Citus's hiding of shards from
//! the catalog turned off for the session (`citus.override_table_visibility`).

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Integer, Text};
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use super::shard_protection::{Placed, differences};
use super::{AuditError, AuditOptions, Finding, Report, Severity};

/// What the cluster audit adds to the audit's rules, for the evidence: rule id, threat-model
/// item, what is checked.
pub const CLUSTER_CHECKS: &[(&str, &str, &str)] = &[
    (
        "worker-unreachable",
        "#35",
        "every worker of the cluster was read",
    ),
    (
        "coordinator-holds-tenant-shards",
        "#35",
        "the coordinator, where the application's statements arrive, holds no shard of a tenant table",
    ),
    (
        "citus-power-executable",
        "#35",
        "on no node may the application role run SQL on other nodes, take another session's distributed transaction or intermediate results, list other sessions, lock relations by name or call Citus's internal functions",
    ),
    (
        "worker-app-role",
        "#2",
        "the application role exists on every worker and bypasses row-level security on none",
    ),
    (
        "shard-missing",
        "#35",
        "every shard placed on a worker is there",
    ),
    (
        "shard-not-protected",
        "#1, #26, #35",
        "every shard on every worker has its table's owner, row-level security enabled and forced, the same policies and the same application privileges as the table on the coordinator",
    ),
];

/// Whether the database behind `reader` is a Citus coordinator with workers.
///
/// # Errors
/// When the catalog cannot be read.
pub fn is_citus(reader: &mut CatalogReader) -> Result<bool, AuditError> {
    #[derive(QueryableByName)]
    struct Flag {
        #[diesel(sql_type = Bool)]
        citus: bool,
    }
    Ok(reader
        .load::<Flag>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus",
            &[],
        )?
        .first()
        .is_some_and(|f| f.citus))
}

/// The URLs of the workers registered with the coordinator behind `coordinator`: `app_url`
/// (the coordinator's, as the same role) with each worker's host and port, and the option that
/// shows Citus's shards in the catalog.
///
/// # Errors
/// When the node table cannot be read, or `app_url` is not a `postgres://` URL.
pub fn worker_urls(
    coordinator: &mut CatalogReader,
    app_url: &str,
) -> Result<Vec<(String, String)>, AuditError> {
    #[derive(QueryableByName)]
    struct Node {
        #[diesel(sql_type = Text)]
        host: String,
        #[diesel(sql_type = Integer)]
        port: i32,
    }
    let nodes = coordinator.load::<Node>(
        "SELECT nodename::text AS host, nodeport AS port FROM pg_catalog.pg_dist_node \
         WHERE groupid <> 0 AND noderole = 'primary' AND isactive ORDER BY 1, 2",
        &[],
    )?;
    nodes
        .iter()
        .map(|n| {
            let node = format!("{}:{}", n.host, n.port);
            worker_url(app_url, &n.host, n.port)
                .map(|url| (node.clone(), url))
                .ok_or_else(|| {
                    AuditError::Cluster(format!(
                        "cannot make a URL for worker {node} from the coordinator's URL: give a \
                         postgres:// URL"
                    ))
                })
        })
        .collect()
}

/// `app_url` pointed at `host:port`, with the shards visible in the catalog.
fn worker_url(app_url: &str, host: &str, port: i32) -> Option<String> {
    let mut url = url::Url::parse(app_url).ok()?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "host" | "hostaddr" | "port" | "options"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_host(Some(host)).ok()?;
    url.set_port(u16::try_from(port).ok()).ok()?;
    // Percent-encoded, spaces as %20: libpq reads `+` in a URL as a plus sign.
    let query = kept
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("options", "-c citus.override_table_visibility=off")])
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
    Some(url.to_string())
}

/// `s` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The policies of relation `c`, one per line, sorted: what two relations must share.
const POLICY_LINES: &str = "coalesce((SELECT string_agg(p.polname::text || '|' || p.polpermissive::text || '|' || \
       p.polcmd::text || '|' || CASE WHEN 0::oid = ANY (p.polroles) THEN 'public' ELSE \
       (SELECT string_agg(r.rolname::text, ',' ORDER BY r.rolname) FROM pg_catalog.pg_roles r \
        WHERE r.oid = ANY (p.polroles)) END || '|' || \
       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || '|' || \
       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), ''), E'\\n' ORDER BY p.polname) \
     FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid), '')";

/// The application role's privileges on relation `c`, as the audit lists them.
const APP_PRIVILEGES: &str = "concat_ws(',', \
       CASE WHEN has_table_privilege($1::name, c.oid, 'SELECT') THEN 'SELECT' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'INSERT') THEN 'INSERT' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'UPDATE') THEN 'UPDATE' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'DELETE') THEN 'DELETE' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'TRUNCATE') THEN 'TRUNCATE' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'REFERENCES') THEN 'REFERENCES' END, \
       CASE WHEN has_table_privilege($1::name, c.oid, 'TRIGGER') THEN 'TRIGGER' END)";

/// The registered tables, on the node behind `reader`, as the coordinator's own: each with its
/// protection (the coordinator's reference).
fn tables_here(reader: &mut CatalogReader, app_role: &str) -> Result<Vec<Placed>, AuditError> {
    Ok(reader.load::<Placed>(
        &format!(
            "SELECT c.relname::text AS table_name, c.relname::text AS relation, \
                    pg_catalog.pg_get_userbyid(c.relowner)::text AS owner, \
                    c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, \
                    {APP_PRIVILEGES} AS app_privileges, {POLICY_LINES} AS policies \
             FROM pg_catalog.pg_dist_partition d JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid \
             ORDER BY 1"
        ),
        &[app_role],
    )?)
}

/// The shards placed on the worker behind `reader`, each with its protection; a placement
/// whose relation is not there has an empty `relation`.
fn shards_here(reader: &mut CatalogReader, app_role: &str) -> Result<Vec<Placed>, AuditError> {
    Ok(reader.load::<Placed>(
        &format!(
            "SELECT t.relname::text AS table_name, coalesce(c.relname::text, '') AS relation, \
                    coalesce(pg_catalog.pg_get_userbyid(c.relowner)::text, '') AS owner, \
                    coalesce(c.relrowsecurity, false) AS rls, \
                    coalesce(c.relforcerowsecurity, false) AS forced, \
                    CASE WHEN c.oid IS NULL THEN '' ELSE {APP_PRIVILEGES} END AS app_privileges, \
                    CASE WHEN c.oid IS NULL THEN '' ELSE {POLICY_LINES} END AS policies \
             FROM pg_catalog.pg_dist_shard s \
             JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid \
             JOIN pg_catalog.pg_class t ON t.oid = s.logicalrelid \
             LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = t.relnamespace \
                  AND c.relname::text = t.relname::text || '_' || s.shardid::text \
             WHERE p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group) \
             ORDER BY 1, 2"
        ),
        &[app_role],
    )?)
}

/// The hash-distributed tables with a shard placed on the coordinator (group 0).
fn tenant_shards_on_coordinator(reader: &mut CatalogReader) -> Result<Vec<String>, AuditError> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    Ok(reader
        .load::<Table>(
            "SELECT DISTINCT t.relname::text AS name FROM pg_catalog.pg_dist_placement p \
             JOIN pg_catalog.pg_dist_shard s ON s.shardid = p.shardid \
             JOIN pg_catalog.pg_dist_partition d ON d.logicalrelid = s.logicalrelid \
             JOIN pg_catalog.pg_class t ON t.oid = s.logicalrelid \
             WHERE p.groupid = 0 AND d.partmethod = 'h' ORDER BY 1",
            &[],
        )?
        .into_iter()
        .map(|t| t.name)
        .collect())
}

/// The Citus powers (functions and views of `citus_powers`) the role `app_role` holds on the
/// node behind `reader`, given the functions it must not execute there.
fn powers_held(
    reader: &mut CatalogReader,
    app_role: &str,
    functions: &[&str],
) -> Result<Vec<String>, AuditError> {
    #[derive(QueryableByName)]
    struct Power {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let list = |names: &[&str]| format!("{{{}}}", names.join(","));
    Ok(reader
        .load::<Power>(
            "SELECT p.oid::regprocedure::text AS name FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE ((n.nspname = 'pg_catalog' AND (p.proname = ANY ($2::text[]) OR p.proname LIKE 'citus\\_internal\\_%')) \
                    OR n.nspname = 'citus_internal') \
               AND has_function_privilege($1::name, p.oid, 'EXECUTE') \
             UNION ALL \
             SELECT c.relname::text AS name FROM pg_catalog.pg_class c \
             WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relname = ANY ($3::text[]) \
               AND has_table_privilege($1::name, c.oid, 'SELECT') \
             ORDER BY 1",
            &[
                app_role,
                &list(functions),
                &list(crate::citus_powers::VIEWS),
            ],
        )?
        .into_iter()
        .map(|p| p.name)
        .collect())
}

/// The finding for the Citus powers `held` on `node`, if any.
fn powers_finding(node: &str, app_role: &str, held: &[String]) -> Option<Finding> {
    (!held.is_empty()).then(|| Finding {
        rule: "citus-power-executable",
        severity: Severity::Error,
        object: format!("{app_role} on {node}"),
        why: format!(
            "the application role may use these on this node: {}. Each reached another org on a \
             real cluster: SQL run on the workers, another session's intermediate results read \
             and forged, every session's statements with their parameters, placements deleted \
             through the internal functions (docs/threat-model.md #35)",
            held.join(", ")
        ),
        fix: "apply the generated Citus migration again: it takes them from PUBLIC on the \
              coordinator and on every worker (a worker added since has them back)"
            .into(),
    })
}

/// Whether the application role bypasses row-level security on the node (`None`: no such
/// role there).
fn app_role_bypasses(
    reader: &mut CatalogReader,
    app_role: &str,
) -> Result<Option<bool>, AuditError> {
    #[derive(QueryableByName)]
    struct Role {
        #[diesel(sql_type = Bool)]
        bypasses: bool,
    }
    Ok(reader
        .load::<Role>(
            "SELECT (rolsuper OR rolbypassrls) AS bypasses FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[app_role],
        )?
        .first()
        .map(|r| r.bypasses))
}

/// The audit of the coordinator behind `coordinator` (reached at `app_url`) and of every
/// worker registered with it. On a database without Citus, the plain audit.
///
/// # Errors
/// When the coordinator's catalog cannot be read. A worker that cannot be reached or read is
/// a finding (`worker-unreachable`), not an error.
pub fn audit_cluster(
    coordinator: &mut CatalogReader,
    app_url: &str,
    registry: &Registry,
    options: &AuditOptions,
) -> Result<Report, AuditError> {
    let mut report = super::audit(coordinator, registry, options)?;
    if !is_citus(coordinator)? {
        return Ok(report);
    }
    // Citus refuses sub-selects in policies on distributed tables: the inline form is the one
    // it takes, not a finding.
    report
        .findings
        .retain(|f| f.rule != "policy-reads-org-per-row");
    let app = options.rls.app_role.as_str();
    let registered: Vec<&str> = registry.tables().map(|t| t.name).collect();
    let reference: BTreeMap<String, Placed> = tables_here(coordinator, app)?
        .into_iter()
        .filter(|t| registered.contains(&t.table_name.as_str()))
        .map(|t| (t.table_name.clone(), t))
        .collect();
    for table in tenant_shards_on_coordinator(coordinator)?
        .into_iter()
        .filter(|t| registry.tenant_tables().any(|r| r.name == t.as_str()))
    {
        report.findings.push(Finding {
            rule: "coordinator-holds-tenant-shards",
            severity: Severity::Error,
            object: table.clone(),
            why: format!(
                "the coordinator holds shards of {table}: an INSERT ... SELECT the application \
                 sends whose target shard is on the coordinator goes through Citus's local copy, \
                 which skips the policies' WITH CHECK, so one statement writes into another org \
                 (docs/threat-model.md #35)"
            ),
            fix: "move the shards to the workers and keep them there: SELECT \
                  citus_set_node_property('<coordinator host>', <port>, 'shouldhaveshards', false); \
                  SELECT citus_drain_node('<coordinator host>', <port>)"
                .into(),
        });
    }
    let held = powers_held(coordinator, app, crate::citus_powers::COORDINATOR_FUNCTIONS)?;
    report
        .findings
        .extend(powers_finding("the coordinator", app, &held));
    let worker_functions: Vec<&str> = crate::citus_powers::worker_functions().collect();
    for (node, url) in worker_urls(coordinator, app_url)? {
        let read = CatalogReader::connect(&url, "tenant-schema: audit of a Citus worker")
            .map_err(AuditError::from)
            .and_then(|mut worker| {
                Ok((
                    app_role_bypasses(&mut worker, app)?,
                    tables_here(&mut worker, app)?,
                    shards_here(&mut worker, app)?,
                    powers_held(&mut worker, app, &worker_functions)?,
                ))
            });
        let (bypasses, tables, shards, held) = match read {
            Ok(r) => {
                report.workers.push(node.clone());
                r
            }
            Err(e) => {
                report.findings.push(Finding {
                    rule: "worker-unreachable",
                    severity: Severity::Error,
                    object: node.clone(),
                    why: format!(
                        "the worker could not be read ({e}): its shards' protection is unknown, \
                         and it evaluates the policies of the rows it holds"
                    ),
                    fix: "make the worker reachable with the application role's credentials from \
                          where the audit runs, and audit again"
                        .into(),
                });
                continue;
            }
        };
        report.findings.extend(powers_finding(&node, app, &held));
        match bypasses {
            Some(false) => {}
            found => report.findings.push(Finding {
                rule: "worker-app-role",
                severity: Severity::Error,
                object: format!("{app} on {node}"),
                why: match found {
                    None => "the application role does not exist on this worker".into(),
                    _ => "the application role is SUPERUSER or BYPASSRLS on this worker: every \
                          query it runs there reads past every policy"
                        .into(),
                },
                fix: format!(
                    "create or alter the role on the coordinator (Citus propagates roles): \
                     ALTER ROLE {app} NOSUPERUSER NOBYPASSRLS"
                ),
            }),
        }
        for placed in tables.iter().chain(&shards) {
            let Some(table) = reference.get(&placed.table_name) else {
                continue;
            };
            if placed.relation.is_empty() {
                report.findings.push(Finding {
                    rule: "shard-missing",
                    severity: Severity::Error,
                    object: format!("a shard of {} on {node}", placed.table_name),
                    why: "the node table places a shard on this worker that is not there: \
                          queries routed to it fail, and what replaced it is unknown"
                        .into(),
                    fix: "repair the placement (citus_copy_shard_placement from a healthy \
                          replica, or restore the shard) and audit again"
                        .into(),
                });
                continue;
            }
            let differs = differences(table, placed);
            if !differs.is_empty() {
                report.findings.push(Finding {
                    rule: "shard-not-protected",
                    severity: Severity::Error,
                    object: format!("{} on {node}", placed.relation),
                    why: format!(
                        "this worker evaluates the policies of {}'s rows it holds, and its copy \
                         is not protected as the table is on the coordinator: {}",
                        placed.table_name,
                        differs.join("; ")
                    ),
                    fix: format!(
                        "apply the generated Citus migration's fragment of {} again on the \
                         coordinator (it propagates to every shard); never change a shard on a \
                         worker by hand",
                        placed.table_name
                    ),
                });
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| (a.severity, a.rule, &a.object).cmp(&(b.severity, b.rule, &b.object)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_url_keeps_the_role_and_database_and_shows_the_shards() {
        let url = worker_url(
            "postgres:///app?host=%2Ftmp%2Fsock&port=5432&user=tenant_app&password=pw",
            "10.0.0.7",
            5433,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://10.0.0.7:5433/app?user=tenant_app&password=pw&options=-c%20citus.override_table_visibility%3Doff"
        );
        assert_eq!(worker_url("host=/tmp user=x", "h", 1), None);
    }
}
