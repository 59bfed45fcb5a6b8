//! [`TenantLayer`]: resolves each request's org before the handler, and puts it, with the
//! pool, where the extractors find it.
//!
//! Invariant: the request reaches the inner service only with an org its resolver returned;
//! a rejection is the response. The org travels in a request extension of a type only this
//! crate can build, so nothing of the request (a header, a path) can stand in for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tenant_core::{AsyncTenantPool, OrgId};
use tracing::Instrument;

use crate::resolve::OrgResolver;

/// What the layer resolved for a request: its org and the pool. Only this crate makes one.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) org: OrgId,
    pub(crate) pool: AsyncTenantPool,
}

/// The tower layer: `Router::layer(TenantLayer::new(pool, resolver))`.
#[derive(Debug)]
pub struct TenantLayer<R> {
    pool: AsyncTenantPool,
    resolver: Arc<R>,
}

impl<R> Clone for TenantLayer<R> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            resolver: Arc::clone(&self.resolver),
        }
    }
}

impl<R: OrgResolver> TenantLayer<R> {
    /// Resolves each request's org with `resolver`; the extractors open transactions of it on
    /// `pool`.
    pub fn new(pool: AsyncTenantPool, resolver: R) -> Self {
        Self {
            pool,
            resolver: Arc::new(resolver),
        }
    }
}

impl<S, R> tower_layer::Layer<S> for TenantLayer<R> {
    type Service = TenantService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            pool: self.pool.clone(),
            resolver: Arc::clone(&self.resolver),
        }
    }
}

/// The service [`TenantLayer`] wraps around the routes.
#[derive(Debug)]
pub struct TenantService<S, R> {
    inner: S,
    pool: AsyncTenantPool,
    resolver: Arc<R>,
}

impl<S: Clone, R> Clone for TenantService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pool: self.pool.clone(),
            resolver: Arc::clone(&self.resolver),
        }
    }
}

impl<S, R> tower_service::Service<Request> for TenantService<S, R>
where
    S: tower_service::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: OrgResolver,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was made ready is the one called (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pool = self.pool.clone();
        let resolver = Arc::clone(&self.resolver);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // Whatever a client put in the extensions' place is not ours: nothing to remove,
            // since only this crate can make a `Resolved`.
            let org = match resolver.resolve(&parts).await {
                Ok(org) => org,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let span = tracing::info_span!(
                "tenant.request",
                org = %org,
                method = %parts.method,
                path = parts.uri.path(),
            );
            parts.extensions.insert(Resolved { org, pool });
            inner
                .call(Request::from_parts(parts, body))
                .instrument(span)
                .await
        })
    }
}
