//! Pattern 1: sign-up, creating an org and its first rows.
//!
//! **Which connection, which role.** The application's own pool, as the application role, in
//! one scoped transaction of the *new* org. No admin connection is involved: `orgs` is a
//! tenant table whose org column is its own `id` (registered `tenant orgs => id`), so the org's
//! row is written like any tenant row, with the org set by the handle and checked by the
//! policy's `WITH CHECK`. The admin path ([`tenant_core::admin::GlobalWriter`]) is for global
//! tables only and refuses a statement on a tenant table; the one global table sign-up needs,
//! `plans`, it only reads ([`OrgScoped::read_global`](tenant_core::OrgScoped::read_global)).
//!
//! **All or nothing.** The org row, its owner, its welcome document (with its search terms)
//! and the first entry of its activity feed are one transaction: [`TenantPool::with_org`]
//! commits when every step returned `Ok` and rolls back on any error or panic. A sign-up that
//! fails half-way (here: an owner address the `members` table refuses, after the org row was
//! inserted) leaves no org behind, and no row of it anywhere (`tests/signup.rs` counts every
//! table from outside row-level security).
//!
//! **No way into an existing org.** [`sign_up`] mints the org id itself ([`OrgId::new_random`]);
//! the request carries no id, so a caller cannot name an org. [`sign_up_as`], for an id minted
//! elsewhere (an idempotency key of the sign-up form, an identity provider's tenant id),
//! claims the id with a plain `INSERT` of the org row as the transaction's first write: for an
//! id that is taken, the primary key refuses it, the transaction aborts, and nothing else runs
//! ([`SignUpError::OrgExists`]). Never write the org row with `ON CONFLICT DO NOTHING` (or look
//! it up and skip it): the scoped handle of an existing org may write that org's rows, so
//! the sign-up would go on and add its owner to someone else's org. The tests try exactly that
//! with a known org id and assert the org is unchanged.
//!
//! Retrying a sign-up whose commit outcome is unknown
//! ([`TenantError::CommitOutcomeUnknown`]): retry [`sign_up_as`] with the same id; `OrgExists`
//! then means the first attempt committed.

use chrono::NaiveDate;
use diesel::prelude::*;
use tenant_core::{OrgId, OrgScoped, ScopedConnection, TenantError, TenantPool};
use uuid::Uuid;

use crate::schema::{activity, members, orgs, plans};
use crate::search::{NewDocument, create_document};

/// What the sign-up form sends.
#[derive(Debug, Clone)]
pub struct SignUp<'a> {
    /// The org's display name.
    pub org_name: &'a str,
    /// The first member, who becomes the org's owner.
    pub owner_email: &'a str,
    /// The plan's code (`plans.code`).
    pub plan: &'a str,
}

/// A new org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUp {
    /// The org.
    pub org: OrgId,
    /// Its owner's member id.
    pub owner: Uuid,
    /// The welcome document's id.
    pub welcome: Uuid,
}

/// Why a sign-up did not happen. Nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// No such plan.
    #[error("no plan `{0}`")]
    UnknownPlan(String),
    /// The org id is taken: an org with it exists (or was just created by a retry of the same
    /// sign-up).
    #[error("an org with this id exists: the sign-up wrote nothing")]
    OrgExists,
    /// The database refused a step, or could not be reached.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// A plan as sign-up reads it.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = plans)]
struct Plan {
    code: String,
    name: String,
    trial_days: i32,
}

/// Creates an org with a fresh id, its owner, its welcome document and the first entry of its
/// activity feed, in one scoped transaction of the new org as the application role.
///
/// # Errors
/// [`SignUpError`]; nothing was committed.
pub fn sign_up(
    pool: &TenantPool,
    request: &SignUp<'_>,
    today: NaiveDate,
) -> Result<SignedUp, SignUpError> {
    sign_up_as(pool, OrgId::new_random(), request, today)
}

/// [`sign_up`] with an org id minted by the caller. An id that names an existing org is
/// refused before anything else is written ([`SignUpError::OrgExists`]).
///
/// # Errors
/// [`SignUpError`]; nothing was committed.
pub fn sign_up_as(
    pool: &TenantPool,
    org: OrgId,
    request: &SignUp<'_>,
    today: NaiveDate,
) -> Result<SignedUp, SignUpError> {
    pool.with_org(org, |s| provision(s, request, today))
}

/// The sign-up's steps, inside the new org's transaction.
fn provision<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    request: &SignUp<'_>,
    today: NaiveDate,
) -> Result<SignedUp, SignUpError> {
    let plan: Plan = s
        .optional(
            s.read_global(plans::table)
                .filter(plans::code.eq(request.plan))
                .select(Plan::as_select()),
        )?
        .ok_or_else(|| SignUpError::UnknownPlan(request.plan.to_owned()))?;
    let trial_ends_on = (plan.trial_days > 0)
        .then(|| today + chrono::Days::new(plan.trial_days.unsigned_abs().into()));

    // The claim: the org row, first, with a plain INSERT. Its primary key is the org id, so
    // for an id that is taken this fails and the transaction ends here.
    let claimed = s.execute(s.insert(
        orgs::table,
        (
            orgs::name.eq(request.org_name),
            orgs::plan.eq(&plan.code),
            orgs::trial_ends_on.eq(trial_ends_on),
        ),
    ));
    match claimed {
        Ok(_) => {}
        Err(TenantError::Database(e))
            if e.kind == "unique violation" && e.constraint.as_deref() == Some("orgs_pkey") =>
        {
            return Err(SignUpError::OrgExists);
        }
        Err(e) => return Err(e.into()),
    }

    let owner = Uuid::now_v7();
    s.execute(s.insert(
        members::table,
        (
            members::id.eq(owner),
            members::email.eq(request.owner_email),
            members::role.eq("owner"),
        ),
    ))?;
    let body = format!(
        "Welcome to {}. You are on the {} plan. Invite your team from the members page.",
        request.org_name, plan.name
    );
    let welcome = create_document(
        s,
        &NewDocument {
            title: "Getting started",
            body: &body,
            attributes: &[("kind", "welcome")],
        },
    )?;
    s.execute(s.insert(
        activity::table,
        (
            activity::kind.eq("org_created"),
            activity::detail.eq(format!("signed up on the {} plan", plan.name)),
        ),
    ))?;
    Ok(SignedUp {
        org: s.org(),
        owner,
        welcome,
    })
}
