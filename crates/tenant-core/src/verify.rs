//! The run-time half of the application layer: before a scoped handle sends a statement, the
//! statement's SQL is checked by `tenant-sqlcheck` to confine every tenant table to the
//! handle's org.
//!
//! Why at run time: diesel's expression node types (operators, subselects) are crate-private,
//! so no trait of ours can inspect a `filter(...)` argument at compile time. The compile-time
//! layer covers what enters through our own entry points (registered tables, `or_filter`, raw
//! queries); this check covers what flows through diesel's expressions: a subquery on a tenant
//! table without its org predicate, an `sql(...)` fragment calling `set_config`, an assignment
//! of the org column. A refused statement is never sent.
//!
//! The org parameters are the bind positions whose value is exactly the handle's org, so a
//! predicate compared with any other value does not count. Results are cached per SQL text and
//! org positions, so a query shape is parsed once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use diesel::PgConnection;
use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use tenant_lint::Registry;
use tenant_sqlcheck::{Tables, Violation, check};

use crate::{OrgId, TenantError};

/// The tables of `registry`, as the checker wants them.
pub(crate) fn tables_of(registry: &Registry) -> Tables {
    Tables::new(registry.tables().map(|t| (t.name, t.org_column())))
}

type Cache = Mutex<HashMap<(String, Vec<usize>), Result<(), Violation>>>;

/// Most distinct statement shapes remembered; past it the cache starts over.
const CACHE_LIMIT: usize = 4096;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The SQL text diesel sends for `query` (placeholders, not values).
pub(crate) fn render<Q: QueryFragment<Pg>>(query: &Q) -> Result<String, TenantError> {
    let mut builder = PgQueryBuilder::new();
    query.to_sql(&mut builder, &Pg)?;
    Ok(builder.finish())
}

/// Refuses `query` unless every tenant table in it is confined to `org`.
pub(crate) fn verify<Q: QueryFragment<Pg>>(
    query: &Q,
    conn: &mut PgConnection,
    org: OrgId,
    tables: &Tables,
) -> Result<(), TenantError> {
    let sql = render(query)?;
    let mut binds = RawBytesBindCollector::<Pg>::new();
    query.collect_binds(&mut binds, conn, &Pg)?;
    let org_bytes = org.as_uuid();
    let org_positions: Vec<usize> = binds
        .binds
        .iter()
        .enumerate()
        .filter(|(_, b)| b.as_deref() == Some(org_bytes.as_bytes().as_slice()))
        .map(|(i, _)| i + 1)
        .collect();
    let key = (sql, org_positions);
    let cached = cache().lock().ok().and_then(|c| c.get(&key).cloned());
    let outcome = match cached {
        Some(outcome) => outcome,
        None => {
            let (sql, positions) = &key;
            let is_org = |p: &str| {
                p.strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| positions.contains(&n))
            };
            let outcome = check(sql, tables, &is_org);
            if let Ok(mut c) = cache().lock() {
                if c.len() >= CACHE_LIMIT {
                    c.clear();
                }
                c.insert(key.clone(), outcome.clone());
            }
            outcome
        }
    };
    outcome.map_err(TenantError::Unscoped)
}
