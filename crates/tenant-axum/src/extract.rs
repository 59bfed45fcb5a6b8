//! The extractors: [`RequestOrg`] (the org), [`Tenant`] (run a transaction in it) and
//! [`Scoped`] (a transaction already open in it).
//!
//! Invariant: each reads only what [`TenantLayer`](crate::TenantLayer) resolved; on a route
//! without the layer each fails with a 500 that names the missing layer, never with a
//! transaction of some default org.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use diesel::pg::Pg;
use diesel::query_builder::{Query, QueryFragment};
use diesel_async::AsyncPgConnection;
use diesel_async::methods::LoadQuery;
use tenant_core::{
    AsyncOrgScoped, AsyncTenantPool, CheckedStatement, Isolation, OrgId, OrgStatements,
    ScopedQuery, SqlTypeOf, TenantError,
};

use crate::error::ApiError;
use crate::layer::Resolved;

/// What the layer resolved, or the response that says it is missing.
fn resolved(parts: &Parts) -> Option<&Resolved> {
    parts.extensions.get::<Resolved>()
}

/// The 500 of an extractor on a route the layer does not wrap.
fn layer_missing() -> Response {
    tracing::error!("tenant.request: an extractor of tenant-axum on a route without TenantLayer");
    crate::error::body(
        StatusCode::INTERNAL_SERVER_ERROR,
        "layer_missing",
        "the request failed; the service logged why",
    )
}

/// The org the layer resolved for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOrg(pub OrgId);

impl<S: Send + Sync> FromRequestParts<S> for RequestOrg {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        resolved(parts)
            .map(|r| RequestOrg(r.org))
            .ok_or_else(layer_missing)
    }
}

/// The request's org and the pool: run transactions in that org, committed when the closure
/// returns `Ok` ([`AsyncTenantPool::with_org`]).
#[derive(Debug, Clone)]
pub struct Tenant {
    org: OrgId,
    pool: AsyncTenantPool,
}

impl Tenant {
    /// The request's org.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Runs `f` in a transaction of the request's org: commits on `Ok`, rolls back on `Err`.
    ///
    /// # Errors
    /// `f`'s error, or the pool's or the database's.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut AsyncOrgScoped) -> Result<T, E>,
        E: From<TenantError>,
    {
        self.pool.with_org(self.org, f).await
    }

    /// The rows of the one statement `build` makes, in a transaction of the request's org
    /// of its own: one round trip once the connection has the statement prepared
    /// ([`AsyncTenantPool::load_one`]).
    ///
    /// # Errors
    /// As [`AsyncTenantPool::load_one`].
    pub async fn load_one<U, Q>(
        &self,
        build: impl FnOnce(&OrgStatements) -> Q,
    ) -> Result<Vec<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, AsyncPgConnection, U>,
        for<'c> CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, &'c AsyncPgConnection, U>,
        U: Send + 'static,
        SqlTypeOf<Q>: 'static,
    {
        self.pool.load_one(self.org, build).await
    }

    /// The one insert, update or delete `build` makes, in a transaction of the request's org
    /// of its own ([`AsyncTenantPool::execute_one`]); the rows affected.
    ///
    /// # Errors
    /// As [`AsyncTenantPool::execute_one`].
    pub async fn execute_one<Q>(
        &self,
        build: impl FnOnce(&OrgStatements) -> Q,
    ) -> Result<usize, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: QueryFragment<Pg>,
    {
        self.pool.execute_one(self.org, build).await
    }

    /// [`run`](Self::run) at `isolation`, retried up to `attempts` times in all on a
    /// serialization failure or deadlock; after the last, [`ApiError`] makes it a 409.
    ///
    /// # Errors
    /// As [`AsyncTenantPool::with_org_retry`].
    pub async fn run_retry<T, F>(
        &self,
        isolation: Isolation,
        attempts: u32,
        f: F,
    ) -> Result<T, TenantError>
    where
        F: AsyncFnMut(&mut AsyncOrgScoped) -> Result<T, TenantError>,
    {
        self.pool
            .with_org_retry_isolated(self.org, isolation, attempts, f)
            .await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        resolved(parts)
            .map(|r| Tenant {
                org: r.org,
                pool: r.pool.clone(),
            })
            .ok_or_else(layer_missing)
    }
}

/// A transaction of the request's org, opened before the handler runs. The handler
/// commits it (`scoped.0.commit().await`); dropped uncommitted, it rolls back.
#[derive(Debug)]
pub struct Scoped(pub AsyncOrgScoped);

impl<S: Send + Sync> FromRequestParts<S> for Scoped {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let r = resolved(parts).ok_or_else(layer_missing)?;
        let (org, pool) = (r.org, r.pool.clone());
        pool.begin(org)
            .await
            .map(Scoped)
            .map_err(|e| axum::response::IntoResponse::into_response(ApiError(e)))
    }
}
