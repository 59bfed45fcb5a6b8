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
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};

use diesel::pg::{Pg, PgMetadataLookup, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::{PgConnection, QueryResult, RunQueryDsl};
use tenant_lint::Registry;
use tenant_sqlcheck::{Tables, Violation, check};

use crate::{OrgId, TenantError};

/// What the check knows of one registry: its tables as the checker wants them, and the
/// registry's identity, part of every cache key so that a verdict given under one registry is
/// never reused under another (two pools of one process may have different registries).
#[derive(Debug)]
pub(crate) struct Checks {
    registry: [usize; 4],
    tables: Tables,
}

/// The checks of `registry`.
pub(crate) fn tables_of(registry: &Registry) -> Checks {
    Checks {
        registry: registry.identity(),
        tables: Tables::new(registry.tables().map(|t| (t.name, t.org_column())))
            .with_functions(registry.functions().map(|f| (f.name, f.reason))),
    }
}

impl Checks {
    /// The tables, for checks outside the cache (the admin path).
    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }
}

/// A verdict per (registry, SQL text, org bind positions).
///
/// Keyed first by (registry, org positions), then by the text, so that a lookup borrows the
/// statement's text rather than copying it (this runs before every statement).
type Cache = Mutex<HashMap<([usize; 4], Vec<usize>), HashMap<String, Result<(), Violation>>>>;

/// Most distinct statement shapes remembered; past it the cache starts over.
const CACHE_LIMIT: usize = 4096;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A statement rendered once: the SQL text and the bind values the check saw, sent exactly as
/// they are: what is checked is exactly what is sent.
///
/// The query a handle was given is walked once to text and once for its binds, and never again:
/// diesel sends this value, whose text is the saved text and whose binds are the saved bytes
/// with their type metadata. So a `QueryFragment` or `Expression` of the user's that would
/// render differently a second time has no second time. It has no static query id, so diesel's
/// prepared-statement cache keys it by this exact text (and bind types), never by the type of
/// the query it came from, whose cached statement could be another rendering.
///
/// Only the handle builds one ([`OrgScoped`](crate::OrgScoped)'s `load`, `execute`, ...); it
/// is public because it appears in their bounds. `ST` is the SQL type of the rows it returns.
pub struct CheckedStatement<ST> {
    sql: String,
    binds: RawBytesBindCollector<Pg>,
    safe_to_cache: bool,
    rows: PhantomData<fn() -> ST>,
}

impl<ST> std::fmt::Debug for CheckedStatement<ST> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text only: bind values may be tenant data, which errors and logs never carry.
        f.debug_struct("CheckedStatement")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl<ST> CheckedStatement<ST> {
    /// Walks `query` for its text and its binds, once each.
    /// `lookup` finds the type of a bind of a custom SQL type (a connection; see
    /// [`NoCustomTypes`] for the async path).
    pub(crate) fn render<Q: QueryFragment<Pg>>(
        query: &Q,
        lookup: &mut (dyn PgMetadataLookup + 'static),
    ) -> Result<Self, TenantError> {
        let mut builder = PgQueryBuilder::new();
        query.to_sql(&mut builder, &Pg)?;
        let mut binds = RawBytesBindCollector::<Pg>::new();
        query.collect_binds(&mut binds, lookup, &Pg)?;
        let safe_to_cache = query.is_safe_to_cache_prepared(&Pg)?;
        Ok(Self {
            sql: builder.finish(),
            binds,
            safe_to_cache,
            rows: PhantomData,
        })
    }

    /// The SQL text that is sent.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// What a connection's prepared-statement cache keys this statement by (its text and the
    /// type of each bind), when it may be cached at all (the async path's one-flight
    /// transactions need to know a statement is prepared already).
    #[cfg(feature = "async")]
    pub(crate) fn cache_key(&self) -> Option<(String, Vec<u32>)> {
        if !self.safe_to_cache {
            return None;
        }
        let oids = self
            .binds
            .metadata
            .iter()
            .map(|m| m.oid().ok())
            .collect::<Option<Vec<u32>>>()?;
        Some((self.sql.clone(), oids))
    }

    /// The 1-based positions of the binds that are `org`, bound as a `uuid`: the only
    /// parameters the check counts as the org. A bind of the same 16 bytes with another type
    /// (a `bytea`, say) is not the org.
    fn org_positions(&self, org: OrgId) -> Vec<usize> {
        let org_bytes = org.as_uuid();
        self.positions(|bytes, oid| {
            bytes == org_bytes.as_bytes().as_slice() && oid == Some(UUID_OID)
        })
    }

    /// The placeholders (`$n`) of the text binds that end with the escape character `\`
    /// (an odd run of them): as a `LIKE` pattern, one fails on exactly the rows that match
    /// what comes before it, and PostgreSQL may test another org's rows with it before the
    /// org predicate (the application layer alone; RLS filters first).
    fn escape_ended_texts(&self) -> Vec<String> {
        self.positions(|bytes, oid| {
            oid.is_some_and(|oid| TEXT_OIDS.contains(&oid))
                && bytes.iter().rev().take_while(|c| **c == b'\\').count() % 2 == 1
        })
        .into_iter()
        .map(|i| format!("${i}"))
        .collect()
    }

    /// The 1-based positions of the (non-NULL) binds whose bytes and type oid satisfy `keep`.
    fn positions(&self, keep: impl Fn(&[u8], Option<u32>) -> bool) -> Vec<usize> {
        self.binds
            .binds
            .iter()
            .zip(&self.binds.metadata)
            .enumerate()
            .filter(|(_, (bytes, meta))| bytes.as_deref().is_some_and(|b| keep(b, meta.oid().ok())))
            .map(|(i, _)| i + 1)
            .collect()
    }
}

/// PostgreSQL's type oid of `uuid`.
const UUID_OID: u32 = 2950;

/// PostgreSQL's type oids of text binds: `text`, `varchar`, `bpchar`, `name`.
const TEXT_OIDS: [u32; 4] = [25, 1043, 1042, 19];

impl<ST> QueryFragment<Pg> for CheckedStatement<ST> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !self.safe_to_cache {
            pass.unsafe_to_cache_prepared();
        }
        // The saved text in the text pass, the saved binds in the bind pass: nothing of the
        // original query is walked again.
        pass.push_sql(&self.sql);
        pass.push_bind_collector_data(&self.binds)
    }
}

impl<ST> QueryId for CheckedStatement<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST> Query for CheckedStatement<ST> {
    type SqlType = ST;
}

impl<ST> RunQueryDsl<PgConnection> for CheckedStatement<ST> {}

/// Refuses `statement` unless every tenant table in it is confined to `org`.
pub(crate) fn verify<ST>(
    statement: &CheckedStatement<ST>,
    org: OrgId,
    checks: &Checks,
) -> Result<(), TenantError> {
    let shape = (checks.registry, statement.org_positions(org));
    let cached = cache().lock().ok().and_then(|c| {
        c.get(&shape)
            .and_then(|texts| texts.get(statement.sql.as_str()).cloned())
    });
    let outcome = match cached {
        Some(outcome) => outcome,
        None => {
            let positions = &shape.1;
            let is_org = |p: &str| {
                p.strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| positions.contains(&n))
            };
            let outcome = check(&statement.sql, &checks.tables, &is_org);
            if let Ok(mut c) = cache().lock() {
                if c.len() >= CACHE_LIMIT {
                    c.clear();
                }
                let texts = c.entry(shape).or_default();
                if texts.len() >= CACHE_LIMIT {
                    texts.clear();
                }
                texts.insert(statement.sql.clone(), outcome.clone());
            }
            outcome
        }
    };
    outcome.map_err(TenantError::Unscoped)?;
    // Rare, so looked at only when a text bind ends with the escape character.
    let escape_ended = statement.escape_ended_texts();
    if !escape_ended.is_empty()
        && let Some(param) = tenant_sqlcheck::pattern_parameters(&statement.sql)
            .into_iter()
            .find(|p| escape_ended.contains(p))
    {
        return Err(TenantError::Unscoped(Violation::MayRunBeforeOrgPredicate {
            condition: format!(
                "a LIKE pattern ({param}) ending with the escape character `\\`, which fails on the rows that match what comes before it; escape it (`\\\\`)"
            ),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    mod schema {
        diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, number -> Text } }
        tenant_lint::registry! {
            pub static WITH_FUNCTION;
            tenant invoices => org_id;
            function normalize_number => "upper-cases and trims its text argument; runs no SQL";
        }
        tenant_lint::registry! {
            pub static WITHOUT;
        }
    }

    #[test]
    fn a_function_is_allowed_by_the_registry_that_lists_it_and_by_no_other() {
        let sql = "SELECT normalize_number(number) FROM invoices WHERE org_id = $1";
        let org = |p: &str| p == "$1";
        let with = tables_of(&schema::WITH_FUNCTION);
        assert_eq!(check(sql, with.tables(), &org), Ok(()));
        let mut without = tables_of(&schema::WITH_FUNCTION);
        without.tables = Tables::new([("invoices", Some("org_id"))]);
        assert_eq!(
            check(sql, without.tables(), &org),
            Err(Violation::UnknownFunction {
                name: "normalize_number".into()
            })
        );
        // Two registries never share a cache entry.
        assert_ne!(with.registry, tables_of(&schema::WITHOUT).registry);
    }
}
