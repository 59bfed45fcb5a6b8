//! What scoped transactions tell a service's tracing and metrics, and nothing more.
//!
//! Every scoped transaction runs in a `tenant.transaction` span (DEBUG) with its org, how the
//! org was set (`mode`), its isolation level, and, when it ends, its `outcome`, the number of
//! `statements` sent and its `duration_us`; a `tenant.transaction.end` event (DEBUG) says the
//! same. A refusal (a statement refused before it was sent, a write row-level security
//! refused, a lost or changed org context, a connection carrying state from earlier code) is
//! a WARN event with its class; a retry is an INFO event, a discarded connection a WARN event.
//! A [`TenantPool`](crate::TenantPool) also counts all of it in [`Metrics`], which a metrics
//! exporter reads with [`TenantPool::metrics`](crate::TenantPool::metrics).
//!
//! Invariant: no span, event or counter carries SQL text, a bound value, row data or a
//! server message: only the org id (which the caller holds), names fixed in this crate
//! ([`TenantError::class`]), counts and durations. SQL text is never recorded because the
//! opening message carries the signed token, a credential for its backend.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Isolation, OrgId, TenantError};

/// Every class [`TenantError::class`] returns, in a fixed order (the counters' layout).
pub const ERROR_CLASSES: [&str; 23] = [
    "no_org_context",
    "org_context_changed",
    "cross_org_write",
    "org_mismatch",
    "handle_swapped",
    "transaction_aborted",
    "unscoped",
    "unsafe_config",
    "org_id",
    "pool",
    "connect",
    "session_context_left",
    "context_key",
    "access_refused",
    "connection_lost",
    "commit_outcome_unknown",
    "statement_timeout",
    "lock_timeout",
    "serialization_failure",
    "deadlock",
    "database",
    "conflicting_options",
    "migration",
];

impl TenantError {
    /// The error's class: a fixed name with no data in it, for logs and metrics (one of
    /// [`ERROR_CLASSES`]).
    ///
    /// ```
    /// assert_eq!(tenant_core::TenantError::NoOrgContext.class(), "no_org_context");
    /// ```
    pub fn class(&self) -> &'static str {
        ERROR_CLASSES[self.class_index()]
    }

    fn class_index(&self) -> usize {
        match self {
            TenantError::NoOrgContext => 0,
            TenantError::OrgContextChanged => 1,
            TenantError::CrossOrgWrite { .. } => 2,
            TenantError::OrgMismatch => 3,
            TenantError::HandleSwapped => 4,
            TenantError::TransactionAborted => 5,
            TenantError::Unscoped(_) => 6,
            TenantError::UnsafeConfig(_) => 7,
            TenantError::OrgId(_) => 8,
            TenantError::Pool(_) => 9,
            TenantError::Connect(_) => 10,
            TenantError::SessionContextLeft => 11,
            TenantError::ContextKey(_) => 12,
            TenantError::AccessRefused(_) => 13,
            TenantError::ConnectionLost => 14,
            TenantError::CommitOutcomeUnknown => 15,
            TenantError::Timeout(crate::Timeout::Statement) => 16,
            TenantError::Timeout(crate::Timeout::Lock) => 17,
            TenantError::Database(db) if db.kind == "serialization failure" => 18,
            TenantError::Database(db) if db.message.starts_with("deadlock detected") => 19,
            TenantError::Database(_) => 20,
            TenantError::ConflictingOptions(_) => 21,
            TenantError::Migration(_) => 22,
        }
    }

    /// Whether the error is isolation refusing something (logged at WARN): a statement refused
    /// before it was sent, a write row-level security refused, an org context lost or changed,
    /// a query of another org's handle, a swapped handle, a connection carrying state from
    /// earlier code.
    pub fn is_refusal(&self) -> bool {
        REFUSAL_CLASSES.contains(&self.class())
    }
}

/// A snapshot of a pool's counters since it was built, for a metrics exporter (Prometheus
/// counters, OpenTelemetry sums: every field only grows).
///
/// ```no_run
/// # fn show(pool: &tenant_core::TenantPool) {
/// let m = pool.metrics();
/// println!("tenant_transactions_committed_total {}", m.transactions_committed);
/// for (class, n) in &m.errors {
///     println!("tenant_errors_total{{class=\"{class}\"}} {n}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Scoped transactions opened.
    pub transactions_begun: u64,
    /// Of those, committed.
    pub transactions_committed: u64,
    /// Of those, rolled back (an error, an explicit rollback, a dropped handle, a refused
    /// commit).
    pub transactions_rolled_back: u64,
    /// Statements sent inside scoped transactions (the opening message not counted).
    pub statements: u64,
    /// Transactions run again by `with_org_retry` after a retryable error.
    pub retries: u64,
    /// Connections not used because they were dead or carried state from earlier code.
    pub connections_discarded: u64,
    /// Errors by class ([`ERROR_CLASSES`], every class listed, zeros included).
    pub errors: Vec<(&'static str, u64)>,
}

impl Metrics {
    /// The count of errors of `class` (0 for a class that does not exist).
    pub fn errors_of(&self, class: &str) -> u64 {
        self.errors
            .iter()
            .find(|(c, _)| *c == class)
            .map_or(0, |(_, n)| *n)
    }

    /// The errors that were refusals ([`TenantError::is_refusal`]), summed.
    pub fn refusals(&self) -> u64 {
        REFUSAL_CLASSES.iter().map(|c| self.errors_of(c)).sum()
    }
}

/// The classes of [`TenantError::is_refusal`] (the one list of them).
const REFUSAL_CLASSES: [&str; 7] = [
    "no_org_context",
    "org_context_changed",
    "cross_org_write",
    "org_mismatch",
    "handle_swapped",
    "unscoped",
    "session_context_left",
];

/// A pool's counters (relaxed atomics: each is a count, read as a snapshot).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    begun: AtomicU64,
    committed: AtomicU64,
    rolled_back: AtomicU64,
    statements: AtomicU64,
    retries: AtomicU64,
    discarded: AtomicU64,
    errors: [AtomicU64; ERROR_CLASSES.len()],
}

impl Counters {
    pub(crate) fn begun(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, outcome: Outcome, statements: u32) {
        let counter = match outcome {
            Outcome::Committed => &self.committed,
            Outcome::RolledBack => &self.rolled_back,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.statements
            .fetch_add(u64::from(statements), Ordering::Relaxed);
    }

    pub(crate) fn error(&self, e: &TenantError) {
        self.errors[e.class_index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn discarded(&self) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            transactions_begun: get(&self.begun),
            transactions_committed: get(&self.committed),
            transactions_rolled_back: get(&self.rolled_back),
            statements: get(&self.statements),
            retries: get(&self.retries),
            connections_discarded: get(&self.discarded),
            errors: ERROR_CLASSES
                .iter()
                .zip(&self.errors)
                .map(|(class, n)| (*class, get(n)))
                .collect(),
        }
    }
}

/// How a scoped transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    RolledBack,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

/// Logs `e`, raised inside the transaction of `span`: a refusal at WARN with its class,
/// anything else at DEBUG.
pub(crate) fn error_event(span: &tracing::Span, e: &TenantError) {
    if e.is_refusal() {
        tracing::warn!(parent: span, class = e.class(), "tenant.refused");
    } else {
        tracing::debug!(parent: span, class = e.class(), "tenant.error");
    }
}

/// The `tenant.transaction` span of a transaction of `org` (every path's: the sync and async
/// handles', the one-flight transaction's); disabled when no subscriber wants it. `flight` is
/// `"one"` for a transaction sent in one flight, empty otherwise.
pub(crate) fn transaction_span(
    org: OrgId,
    mode: &'static str,
    isolation: Isolation,
    one_flight: bool,
) -> tracing::Span {
    let span = tracing::debug_span!(
        "tenant.transaction",
        org = %org,
        mode,
        isolation = isolation.name(),
        flight = tracing::field::Empty,
        outcome = tracing::field::Empty,
        statements = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    if one_flight {
        span.record("flight", "one");
    }
    span
}

/// Records how the transaction of `span`, begun at `started`, ended: the pool's counters, the
/// span's fields and the `tenant.transaction.end` event. Once per transaction.
pub(crate) fn transaction_ended(
    span: &tracing::Span,
    counters: Option<&Counters>,
    outcome: Outcome,
    statements: u32,
    started: std::time::Instant,
) {
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(c) = counters {
        c.ended(outcome, statements);
    }
    span.record("outcome", outcome.as_str());
    span.record("statements", statements);
    span.record("duration_us", duration_us);
    tracing::debug!(
        parent: span,
        outcome = outcome.as_str(),
        statements,
        duration_us,
        "tenant.transaction.end"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_named_once_and_refusals_are_classes() {
        let mut sorted = ERROR_CLASSES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ERROR_CLASSES.len());
        for c in REFUSAL_CLASSES {
            assert!(ERROR_CLASSES.contains(&c), "{c}");
        }
        assert_eq!(
            TenantError::Timeout(crate::Timeout::Lock).class(),
            "lock_timeout"
        );
        assert!(TenantError::OrgMismatch.is_refusal());
        assert!(!TenantError::TransactionAborted.is_refusal());
    }

    #[test]
    fn counters_count_by_class() {
        let c = Counters::default();
        c.begun();
        c.ended(Outcome::Committed, 3);
        c.error(&TenantError::OrgMismatch);
        c.error(&TenantError::OrgMismatch);
        c.error(&TenantError::NoOrgContext);
        let m = c.snapshot();
        assert_eq!(
            (m.transactions_begun, m.transactions_committed, m.statements),
            (1, 1, 3)
        );
        assert_eq!(m.errors_of("org_mismatch"), 2);
        assert_eq!(m.refusals(), 3);
        assert_eq!(m.errors.len(), ERROR_CLASSES.len());
    }
}
