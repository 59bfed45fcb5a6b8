//! The registry of tenant and global tables, and the traits that mark them.
//!
//! The traits carry `#[diagnostic::on_unimplemented]` messages: when a query names a table
//! that was never registered, the compiler error says to register it rather than pointing
//! at a diesel trait bound.

use diesel::sql_types::Uuid;

/// A table whose rows belong to one org each, keyed by its org column.
///
/// Implemented by [`registry!`](crate::registry) (or [`tenant_table!`](crate::tenant_table))
/// for a diesel `table!`; never by hand. `tenant-core` scopes every query on such a table
/// to the session's org through [`TenantTable::OrgColumn`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a registered tenant table, so it cannot be queried through an org-scoped handle",
    label = "this table is not in the tenant registry",
    note = "register it once next to its `table!` definition: `tenant_lint::registry! {{ pub static REGISTRY; tenant <table> => org_id; }}`",
    note = "a table that holds no tenant data is registered as `global <table>;` and read with `scoped.read_global(...)`"
)]
pub trait TenantTable:
    diesel::Table + diesel::query_builder::QueryId + Copy + Default + Send + Sync + 'static
{
    /// The column holding the owning org's id (`uuid NOT NULL`).
    type OrgColumn: diesel::Column<Table = Self, SqlType = Uuid> + Copy + Default;
    /// The table's SQL name.
    const TABLE_NAME: &'static str;
    /// The org column's SQL name.
    const ORG_COLUMN_NAME: &'static str;
}

/// A table that holds no tenant data (plans, currencies): readable without an org filter.
///
/// Implemented by [`registry!`](crate::registry) (or [`global_table!`](crate::global_table)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not registered as a global table",
    label = "not registered as global",
    note = "only a table that holds no tenant data may be read without an org filter; register it with `global <table>;` in `tenant_lint::registry!`",
    note = "if it holds tenant data, register it as `tenant <table> => org_id;` and query it with `scoped.query(...)`"
)]
pub trait GlobalTable:
    diesel::Table + diesel::query_builder::QueryId + Copy + Default + Send + Sync + 'static
{
    /// The table's SQL name.
    const TABLE_NAME: &'static str;
}

/// Any registered table, tenant or global, with its kind as a type ([`Tenant`] or [`Global`]),
/// so generic code (joins) can treat the two differently.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not in the tenant registry, so it cannot take part in an org-scoped query",
    label = "not registered",
    note = "register it once next to its `table!` definition: `tenant <table> => org_id;` if it holds tenant data, `global <table>;` if it holds none"
)]
pub trait RegisteredTable:
    diesel::Table + diesel::query_builder::QueryId + Copy + Default + Send + Sync + 'static
{
    /// [`Tenant`] or [`Global`].
    type Kind;
    /// Whether it is a tenant table (for compile-time checks in `const` context).
    const IS_TENANT: bool;
    /// The org column's SQL name; empty for a global table.
    const ORG_COLUMN: &'static str;
}

/// The kind of a tenant table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tenant;

/// The kind of a global table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

/// What the registry knows about a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Rows belong to one org each.
    Tenant {
        /// The SQL name of the org column.
        org_column: &'static str,
    },
    /// Holds no tenant data.
    Global,
}

/// One registered table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    /// The table's SQL name.
    pub name: &'static str,
    /// Tenant or global.
    pub kind: TableKind,
}

impl TableEntry {
    /// The org column, for a tenant table.
    pub const fn org_column(&self) -> Option<&'static str> {
        match self.kind {
            TableKind::Tenant { org_column } => Some(org_column),
            TableKind::Global => None,
        }
    }

    /// Whether this is a tenant table.
    pub const fn is_tenant(&self) -> bool {
        matches!(self.kind, TableKind::Tenant { .. })
    }
}

/// Every registered table of a service, in declaration order.
///
/// Built by [`registry!`](crate::registry); the same value drives the pool's start-up checks
/// and the generated migration, so the two can never disagree about which tables are tenant
/// tables.
#[derive(Debug, Clone, Copy)]
pub struct Registry {
    tables: &'static [TableEntry],
}

impl Registry {
    /// A registry over `tables`. Prefer [`registry!`](crate::registry), which also implements
    /// the marker traits so the compile-time layer and this list cannot drift apart.
    #[doc(hidden)]
    pub const fn __new(tables: &'static [TableEntry]) -> Self {
        Self { tables }
    }

    /// A registry of tables known only at run time, for tools that work on a database rather
    /// than on a crate (the leak probe and audit benchmarks over a generated schema). A
    /// service uses [`registry!`](crate::registry) instead, which also marks the tables for the
    /// compile-time layer.
    pub fn from_entries(tables: Vec<TableEntry>) -> Self {
        Self {
            tables: Vec::leak(tables),
        }
    }

    /// A number that tells this registry from every other one in the process (the address and
    /// length of its table list, which is `'static`): the run-time check caches its verdicts
    /// per registry with it.
    pub fn identity(&self) -> (usize, usize) {
        (self.tables.as_ptr() as usize, self.tables.len())
    }

    /// All tables, in declaration order.
    pub fn tables(&self) -> impl Iterator<Item = &'static TableEntry> + use<> {
        self.tables.iter()
    }

    /// The tenant tables, in declaration order (parents before children, as declared).
    pub fn tenant_tables(&self) -> impl Iterator<Item = &'static TableEntry> + use<> {
        self.tables.iter().filter(|t| t.is_tenant())
    }

    /// The global tables, in declaration order.
    pub fn global_tables(&self) -> impl Iterator<Item = &'static TableEntry> + use<> {
        self.tables.iter().filter(|t| !t.is_tenant())
    }

    /// The entry for the table named `name`.
    pub fn get(&self, name: &str) -> Option<&'static TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Marks one diesel table as a tenant table keyed by `org_column`.
///
/// A building block of [`registry!`](crate::registry): a table marked only with this macro is
/// scoped at compile time but missing from the registry that the pool checks and the
/// migration generator walk. Use `registry!`.
#[macro_export]
macro_rules! tenant_table {
    ($table:ident => $org:ident) => {
        impl $crate::TenantTable for $table::table {
            type OrgColumn = $table::$org;
            const TABLE_NAME: &'static str = ::core::stringify!($table);
            const ORG_COLUMN_NAME: &'static str = ::core::stringify!($org);
        }
        impl $crate::RegisteredTable for $table::table {
            type Kind = $crate::Tenant;
            const IS_TENANT: bool = true;
            const ORG_COLUMN: &'static str = ::core::stringify!($org);
        }
    };
}

/// Marks one diesel table as global (holding no tenant data). A building block of
/// [`registry!`](crate::registry); use that.
#[macro_export]
macro_rules! global_table {
    ($table:ident) => {
        impl $crate::GlobalTable for $table::table {
            const TABLE_NAME: &'static str = ::core::stringify!($table);
        }
        impl $crate::RegisteredTable for $table::table {
            type Kind = $crate::Global;
            const IS_TENANT: bool = false;
            const ORG_COLUMN: &'static str = "";
        }
    };
}

/// Declares the registry of a service's tables and marks each table for the compile-time
/// layer, in one place.
///
/// ```
/// diesel::table! { customers (id) { id -> Uuid, org_id -> Uuid, name -> Text } }
/// diesel::table! { plans (id) { id -> Uuid, name -> Text } }
///
/// tenant_lint::registry! {
///     pub static REGISTRY;
///     tenant customers => org_id;
///     global plans;
/// }
///
/// fn org_column<T: tenant_lint::TenantTable>(_: T) -> &'static str { T::ORG_COLUMN_NAME }
/// assert_eq!(org_column(customers::table), "org_id");
/// assert_eq!(REGISTRY.global_tables().map(|t| t.name).collect::<Vec<_>>(), ["plans"]);
/// ```
#[macro_export]
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $vis:vis static $name:ident;
        $( $kind:ident $table:ident $(=> $org:ident)? ; )*
    ) => {
        $( $crate::registry!(@mark $kind $table $(=> $org)?); )*
        $(#[$meta])*
        $vis static $name: $crate::Registry = $crate::Registry::__new(&[
            $( $crate::registry!(@entry $kind $table $(=> $org)?), )*
        ]);
    };
    (@mark tenant $table:ident => $org:ident) => { $crate::tenant_table!($table => $org); };
    (@mark global $table:ident) => { $crate::global_table!($table); };
    (@entry tenant $table:ident => $org:ident) => {
        $crate::TableEntry {
            name: ::core::stringify!($table),
            kind: $crate::TableKind::Tenant { org_column: ::core::stringify!($org) },
        }
    };
    (@entry global $table:ident) => {
        $crate::TableEntry { name: ::core::stringify!($table), kind: $crate::TableKind::Global }
    };
}
