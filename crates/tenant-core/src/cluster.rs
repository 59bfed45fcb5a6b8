//! Operations on a Citus cluster that only its admin may run: named, with a written reason,
//! each a fixed statement (no SQL from the caller). Today: moving one org to shards of its own
//! (`tenant-ops`' `org isolate`).
//!
//! Invariant: nothing here reads or returns a tenant row; the org's row count is the only
//! thing read from a tenant table, to refuse isolating an org that does not exist.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use crate::{OrgId, TenantError};

/// A connection as the cluster's admin (a role that may split shards), for one stated reason.
pub struct ClusterAdmin {
    conn: PgConnection,
    reason: &'static str,
}

impl std::fmt::Debug for ClusterAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdmin")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// Quotes an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl ClusterAdmin {
    /// Connects with `admin_url` for `reason`.
    ///
    /// # Errors
    /// [`TenantError::Connect`] when the database cannot be reached.
    pub fn connect(admin_url: &str, reason: &'static str) -> Result<Self, TenantError> {
        Ok(Self {
            conn: crate::establish(admin_url)?,
            reason,
        })
    }

    /// The reason given at `connect`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// How many rows `table` holds for `org` in its org column `column`.
    ///
    /// # Errors
    /// A database error (a table or column that does not exist).
    pub fn org_rows(&mut self, table: &str, column: &str, org: OrgId) -> Result<i64, TenantError> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {} WHERE {} = $1::uuid",
            ident(table),
            ident(column)
        ))
        .bind::<Text, _>(org.to_string())
        .get_result(&mut self.conn)?;
        Ok(n.n)
    }

    /// Moves `org` to a shard of its own in `table` and, cascading, in every table colocated
    /// with it (`isolate_tenant_to_new_shard`, writes blocked during the split).
    ///
    /// # Errors
    /// What Citus said (an org already isolated, a split it refuses).
    pub fn isolate_org(&mut self, table: &str, org: OrgId) -> Result<(), TenantError> {
        diesel::sql_query(
            "SELECT isolate_tenant_to_new_shard($1::regclass, $2::uuid, 'CASCADE', \
             shard_transfer_mode => 'block_writes')",
        )
        .bind::<Text, _>(ident(table))
        .bind::<Text, _>(org.to_string())
        .execute(&mut self.conn)?;
        Ok(())
    }

    /// The shard of `table` that holds `org`, and whether it holds that org's hash value alone.
    ///
    /// # Errors
    /// A database error (a table that is not distributed).
    pub fn org_shard(&mut self, table: &str, org: OrgId) -> Result<(i64, bool), TenantError> {
        #[derive(QueryableByName)]
        struct Shard {
            #[diesel(sql_type = BigInt)]
            shard: i64,
            #[diesel(sql_type = Bool)]
            alone: bool,
        }
        let s: Shard = diesel::sql_query(
            "SELECT s.shardid AS shard, s.shardminvalue = s.shardmaxvalue AS alone \
             FROM pg_dist_shard s \
             WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)",
        )
        .bind::<Text, _>(ident(table))
        .bind::<Text, _>(org.to_string())
        .get_result(&mut self.conn)?;
        Ok((s.shard, s.alone))
    }
}
