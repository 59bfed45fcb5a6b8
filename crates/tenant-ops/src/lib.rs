//! Operations on tenant data as commands and library calls, not procedures:
//!
//! - [`report`]: the postmortem report of break-glass access to one org (who, when, ticket,
//!   reason, duration, read or write), as Markdown and JSON, from the access log that the
//!   generated migration keeps and `tenant_core::operator` writes.
//! - [`export`]: every row of one org from every tenant table, parents first, read as the
//!   application role with that org's context (so row-level security guarantees nothing of
//!   another org is in the file), in the documented format of [`format`].
//! - [`restore`]: a file back into the same or another database with the same schema, in one
//!   transaction, refusing a file whose manifest, checksums or schema digest do not match.
//! - [`purge`]: one org's rows from every tenant table, children first, through a logged
//!   break-glass write grant, with a receipt of per-table counts.

pub mod data;
pub mod format;
pub mod isolate;
pub mod report;
pub mod seal;

pub use report::{Access, AccessReport};

pub use data::{OpsError, Receipt, export, purge, restore, restore_sealed};
pub use format::{Export, Manifest, TableManifest};
pub use isolate::{Isolated, isolate};
pub use seal::SealKey;
