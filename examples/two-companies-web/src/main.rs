//! Serves the two-companies API: `DATABASE_URL` (the application role), `TENANT_CONTEXT_KEY`
//! (`kid:hex`), `TENANT_JWT_SECRET` (the token issuer's HS256 secret), and `TENANT_WEB_ADDR`
//! (default `127.0.0.1:3000`).

use tenant_core::{ContextKey, TenantPool};

#[tokio::main]
async fn main() -> Result<(), String> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL".to_owned())?;
    let key = ContextKey::require_env("TENANT_CONTEXT_KEY").map_err(|e| e.to_string())?;
    let secret = std::env::var("TENANT_JWT_SECRET")
        .map_err(|_| "set TENANT_JWT_SECRET to the token issuer's HS256 secret".to_owned())?;
    let addr = std::env::var("TENANT_WEB_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let pool = TenantPool::builder(url, &two_companies::REGISTRY, key)
        .build_async()
        .await
        .map_err(|e| e.to_string())?;
    let app = two_companies_web::app(pool, secret.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("binding {addr}: {e}"))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("serving: {e}"))
}
