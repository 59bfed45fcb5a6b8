//! The two-companies story as an HTTP API: each request carries a bearer token whose `org`
//! claim names its org ([`tenant_axum::JwtClaimOrg`]); the handlers reach the database only
//! through the async pool, in that org ([`tenant_axum::Tenant`]).
//!
//! | route | does |
//! |---|---|
//! | `GET /customers` | the org's customers, by name |
//! | `POST /customers` | adds one (`{"name": .., "email": ..}`, at most 16 KiB): 201 with its id |
//! | `GET /customers/{id}` | one of the org's customers, or 404 (another org's id too) |
//!
//! Statuses besides: 400 malformed org claim or body, 401 no or unverified token, 403 a token
//! without an org, 409 an email the org has already, 413 a body over 16 KiB, 503 no
//! connection in time.

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tenant_axum::{ApiError, JwtClaimOrg, Tenant, TenantLayer};
use tenant_core::{AsyncTenantPool, TenantError};
use two_companies::schema::customers;
use uuid::Uuid;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 16 * 1024;

/// A customer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable)]
pub struct Customer {
    /// Key.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Contact address, unique within the org.
    pub email: String,
}

/// What `POST /customers` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewCustomer {
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// The API's routes behind the tenant layer: orgs from the `org` claim of HS256 tokens signed
/// with `jwt_secret`.
///
/// # Errors
/// When jsonwebtoken cannot make a key of `jwt_secret`.
pub fn app(pool: AsyncTenantPool, jwt_secret: &[u8]) -> Result<Router, String> {
    let resolver = JwtClaimOrg::hs256(jwt_secret, "org").map_err(|e| e.to_string())?;
    Ok(Router::new()
        .route("/customers", get(list).post(create))
        .route("/customers/{id}", get(one))
        .layer(TenantLayer::new(pool, resolver))
        .layer(DefaultBodyLimit::max(BODY_LIMIT)))
}

async fn list(tenant: Tenant) -> Result<Json<Vec<Customer>>, ApiError> {
    let rows = tenant
        .run(async |s| {
            s.load(
                s.query(customers::table)
                    .select((customers::id, customers::name, customers::email))
                    .order(customers::name),
            )
            .await
        })
        .await?;
    Ok(Json(rows))
}

async fn one(tenant: Tenant, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let row: Option<Customer> = tenant
        .run(async |s| {
            s.first(
                s.query(customers::table)
                    .filter(customers::id.eq(id))
                    .select((customers::id, customers::name, customers::email)),
            )
            .await
        })
        .await?;
    Ok(match row {
        Some(c) => Json(c).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn create(tenant: Tenant, Json(new): Json<NewCustomer>) -> Result<Response, ApiError> {
    let id = Uuid::now_v7();
    let written = tenant
        .run(async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::id.eq(id),
                    customers::name.eq(&new.name),
                    customers::email.eq(&new.email),
                ),
            ))
            .await
        })
        .await;
    match written {
        Ok(_) => Ok((StatusCode::CREATED, Json(id)).into_response()),
        Err(TenantError::Database(e)) if e.constraint.is_some() => {
            Ok(StatusCode::CONFLICT.into_response())
        }
        Err(e) => Err(e.into()),
    }
}
