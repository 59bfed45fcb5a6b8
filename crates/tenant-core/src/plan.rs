//! What the start-up check of a pool decides, shared by [`TenantPool`](crate::TenantPool) and
//! the async pool: how each transaction's opening message sets the org ([`ContextPlan`]), and
//! the verdict of the start-up token round trip.
//!
//! Invariant: both pools open every scoped transaction with the message
//! [`ContextPlan::opening`] picks, from the same options and the same start-up findings, so
//! the sync and the async path send the same opening for the same configuration.

use std::sync::Arc;

use crate::context::{Backend, ContextKey};
use crate::opening::Opening;
use crate::{OrgId, TenantError};

/// How a pool tells the database each transaction's org.
#[derive(Debug, Clone)]
pub(crate) struct ContextPlan {
    /// The service's key (the signed context), or `None` (the plain setting).
    pub(crate) signing: Option<Arc<ContextKey>>,
    /// With `signing`: whether a policy or default of a tenant table reads the plain setting,
    /// so that the opening sets it next to the token (found at start-up).
    pub(crate) signed_org_setting: bool,
    /// `SET LOCAL` (Citus).
    pub(crate) set_local: bool,
    /// Behind a transaction pooler: tokens name no backend.
    pub(crate) transaction_pooler: bool,
    /// The org id kept out of the text `pg_stat_activity` shows.
    pub(crate) hide_org: bool,
}

impl ContextPlan {
    /// The opening message's form for a connection whose backend is `backend` (read when
    /// [`reads_backend`](Self::reads_backend)).
    pub(crate) fn opening(&self, backend: Option<Backend>) -> Result<Opening<'_>, TenantError> {
        let backend = backend.map(|b| {
            if self.transaction_pooler {
                b.unbound()
            } else {
                b
            }
        });
        Ok(match (&self.signing, self.set_local, backend) {
            (_, true, _) => Opening::SetLocal,
            (Some(key), false, Some(backend)) => Opening::Signed {
                key,
                backend,
                org_setting: self.signed_org_setting,
            },
            (None, false, Some(backend)) if self.hide_org => {
                Opening::HiddenSetting(backend.recorded_text())
            }
            (None, false, _) if !self.hide_org => Opening::Setting,
            _ => {
                return Err(TenantError::Pool(
                    "a connection came without the backend its opening message needs".into(),
                ));
            }
        })
    }

    /// The start-up check of the signed context: one token sent for random `org` as every
    /// transaction will send it, and `seen`, what the database's verifier made of it
    /// (`Err` when the database has no verifier). A database without the verifier, a key the
    /// database does not hold (or holds under another secret, or retired), or a verifier
    /// older than unbound tokens would otherwise show as every org having no rows.
    pub(crate) fn token_verdict(
        &self,
        key: &ContextKey,
        org: OrgId,
        seen: Result<Option<uuid::Uuid>, TenantError>,
    ) -> Result<(), TenantError> {
        let Ok(seen) = seen else {
            return Err(TenantError::ContextKey(
                "the database has no signed-context verifier (tenant_context.verified_org): its \
                 migrations were generated in the plain mode (ContextMode::TrustEveryStatement). \
                 Generate them in the default signed mode (`cargo xtask gen` with \
                 ContextMode::Signed) and add the key, or, if this database is meant to trust \
                 every statement the application sends, build the pool with \
                 OrgContext::TrustEveryStatement"
                    .into(),
            ));
        };
        if seen != Some(org.as_uuid()) {
            return Err(TenantError::ContextKey(format!(
                "the database does not accept this service's tokens (key {}{}): add the key \
                 with `cargo xtask context-key rotate` and configure the service with what it \
                 prints, or check that the key was not retired; a verifier generated before \
                 unbound tokens needs its migration generated again",
                key.kid(),
                if self.transaction_pooler {
                    ", tokens for any backend"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }
}
