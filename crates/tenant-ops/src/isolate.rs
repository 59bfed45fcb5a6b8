//! `org isolate`: on a Citus cluster, moves one large org to shards of its own
//! (`isolate_tenant_to_new_shard`, cascading to every colocated tenant table), so that its
//! load can be placed on a node of its own and its rows share a shard with no other org.
//!
//! Invariant: an org is isolated only if it has rows (an org id mistyped is an error, not a
//! shard made for nobody), and the result is read back: every tenant table of the registry has
//! a shard that holds exactly the org's hash value.

use tenant_core::admin::CatalogReader;
use tenant_core::cluster::ClusterAdmin;
use tenant_core::{OrgId, TenantError};
use tenant_lint::Registry;

use crate::OpsError;

/// What isolating an org did: the shard of each tenant table that now holds the org alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    /// The org.
    pub org: OrgId,
    /// Each tenant table and the id of its shard that holds only the org.
    pub shards: Vec<(String, i64)>,
}

impl Isolated {
    /// A short human-readable account.
    pub fn render(&self) -> String {
        let mut out = format!("org {} now has shards of its own, colocated:\n", self.org);
        for (table, shard) in &self.shards {
            out.push_str(&format!("  {table}: shard {shard}\n"));
        }
        out
    }
}

/// Moves `org` to shards of its own on the Citus cluster whose coordinator `admin_url` names
/// (a role that may split shards: the cluster's admin), for every tenant table of `registry`
/// (they are colocated, so one isolation cascades to all).
///
/// # Errors
/// [`OpsError::Refused`] when the database is not a Citus coordinator, the registry has no
/// tenant table, or the org has no rows; a database error from Citus otherwise (an org
/// already isolated, a split Citus refuses).
pub fn isolate(admin_url: &str, registry: &Registry, org: OrgId) -> Result<Isolated, OpsError> {
    let mut reader = CatalogReader::connect(admin_url, "tenant-ops: org isolate")?;
    if !tenant_schema::audit::cluster::is_citus(&mut reader)
        .map_err(|e| OpsError::Tenant(TenantError::Pool(e.to_string())))?
    {
        return Err(OpsError::Refused(
            "org isolate needs a Citus coordinator: this database has no Citus extension".into(),
        ));
    }
    drop(reader);
    let tenant: Vec<(&str, &str)> = registry
        .tenant_tables()
        .filter_map(|t| t.org_column().map(|c| (t.name, c)))
        .collect();
    let Some(&(anchor, column)) = tenant.first() else {
        return Err(OpsError::Refused(
            "the registry has no tenant table to isolate an org in".into(),
        ));
    };
    let mut admin = ClusterAdmin::connect(admin_url, "tenant-ops: org isolate")?;
    if admin.org_rows(anchor, column, org)? == 0 {
        return Err(OpsError::Refused(format!(
            "org {org} has no row in {anchor}: nothing to isolate (is the org id right?)"
        )));
    }
    admin.isolate_org(anchor, org)?;
    // Read back: each tenant table's shard for the org holds its hash value alone.
    let mut shards = Vec::new();
    for (table, _) in &tenant {
        let (shard, alone) = admin.org_shard(table, org)?;
        if !alone {
            return Err(OpsError::Refused(format!(
                "{table} is not colocated with {anchor}: its shard {shard} for org {org} still \
                 holds other orgs (distribute every tenant table with the generated Citus \
                 migration)"
            )));
        }
        shards.push(((*table).to_owned(), shard));
    }
    Ok(Isolated { org, shards })
}
