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
    functions: &'static [FunctionEntry],
}

/// A function of the service's own that scoped SQL may call, with the reason it is safe.
///
/// The SQL checker allows a function only when it is known to run no SQL of its own, change
/// no setting or session state, and read nothing outside the statement's rows; PostgreSQL's
/// built-ins that do so are known to it, and a service names its own here
/// (`function normalize_email => "lowercases and trims its text argument; runs no SQL";` in
/// [`registry!`](crate::registry)). Everything else is refused before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionEntry {
    /// The function's name as SQL spells it: `normalize_email`, or `app.normalize_email`
    /// when the statements qualify it.
    pub name: &'static str,
    /// Why it is safe in an org-scoped statement (shown to reviewers; never empty).
    pub reason: &'static str,
}

impl Registry {
    /// A registry over `tables`. Prefer [`registry!`](crate::registry), which also implements
    /// the marker traits so the compile-time layer and this list cannot drift apart.
    #[doc(hidden)]
    pub const fn __new(tables: &'static [TableEntry], functions: &'static [FunctionEntry]) -> Self {
        Self { tables, functions }
    }

    /// A registry of tables known only at run time, for tools that work on a database rather
    /// than on a crate (the leak probe and audit benchmarks over a generated schema). A
    /// service uses [`registry!`](crate::registry) instead, which also marks the tables for the
    /// compile-time layer.
    pub fn from_entries(tables: Vec<TableEntry>) -> Self {
        Self {
            tables: Vec::leak(tables),
            functions: &[],
        }
    }

    /// A number that tells this registry from every other one in the process (the address and
    /// length of its table list, which is `'static`): the run-time check caches its verdicts
    /// per registry with it.
    pub fn identity(&self) -> [usize; 4] {
        [
            self.tables.as_ptr() as usize,
            self.tables.len(),
            self.functions.as_ptr() as usize,
            self.functions.len(),
        ]
    }

    /// The service's own functions that scoped SQL may call.
    pub fn functions(&self) -> impl Iterator<Item = &'static FunctionEntry> + use<> {
        self.functions.iter()
    }

    /// Whether function `name` is registered (usable in `const` context: `tenant_sql!` asks it
    /// at compile time).
    pub const fn allows_function(&self, name: &str) -> bool {
        let mut i = 0;
        while i < self.functions.len() {
            if str_eq(self.functions[i].name, name) {
                return true;
            }
            i += 1;
        }
        false
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
///
/// The org column is looked up among the table's columns (a glob import of its module in an
/// inner block) before a stand-in of the same name in an outer block, so that a name the
/// table does not have reaches [`OrgColumnOf`]'s diagnostic instead of rustc's
/// "cannot find type".
#[macro_export]
macro_rules! tenant_table {
    ($table:ident => $org:ident) => {
        const _: () = {
            /// Found only when the table has no column of this name (see `tenant_table!`).
            #[allow(non_camel_case_types, dead_code, unreachable_pub)]
            pub struct $org;
            impl<T> $crate::OrgColumnOf<T> for $org
            where
                $org: $crate::NoSuchOrgColumn<T>,
            {
                type Column = $org;
            }
            /// The table, named before its columns come into scope (one could share its name).
            type TenantTableOfTheRegistry = $table::table;
            const _: () = {
                #[allow(unused_imports)]
                use $table::*;
                impl $crate::TenantTable for TenantTableOfTheRegistry {
                    type OrgColumn =
                        <$org as $crate::OrgColumnOf<TenantTableOfTheRegistry>>::Column;
                    const TABLE_NAME: &'static str = ::core::stringify!($table);
                    const ORG_COLUMN_NAME: &'static str = ::core::stringify!($org);
                }
                impl $crate::RegisteredTable for TenantTableOfTheRegistry {
                    type Kind = $crate::Tenant;
                    const IS_TENANT: bool = true;
                    const ORG_COLUMN: &'static str = ::core::stringify!($org);
                }
            };
        };
    };
}

/// A column of table `T`: what the registry's `tenant <table> => <column>;` names. Every
/// column of `T` is one; a name `T` does not have is the registry's stand-in, which is one
/// only if it were a [`NoSuchOrgColumn`], which nothing is (the second impl also keeps rustc's
/// report on this trait, with this message, rather than on `diesel::Column`).
#[diagnostic::on_unimplemented(
    message = "the registry names `{Self}` as the org column of a table that has no column of that name",
    label = "the table's `table!` definition has no column `{Self}`",
    note = "name the column that holds the owning org's id as the `table!` definition spells it: `tenant <table> => <org column>;`",
    note = "a table without an org column holds no tenant data: register it as `global <table>;`"
)]
pub trait OrgColumnOf<T> {
    /// The column itself.
    type Column;
}

impl<T, C: diesel::Column<Table = T>> OrgColumnOf<T> for C {
    type Column = C;
}

/// Implemented by nothing: the diagnostic of a registry that names an org column the table
/// does not have.
#[diagnostic::on_unimplemented(
    message = "the registry names `{Self}` as the org column of a table that has no column of that name",
    label = "the table's `table!` definition has no column `{Self}`",
    note = "name the column that holds the owning org's id as the `table!` definition spells it: `tenant <table> => <org column>;`",
    note = "a table without an org column holds no tenant data: register it as `global <table>;`"
)]
pub trait NoSuchOrgColumn<T> {}

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

/// String equality usable in `const` context (the compile-time checks compare table and
/// column names with it).
///
/// ```
/// const SAME: bool = tenant_lint::str_eq("org_id", "org_id");
/// assert!(SAME && !tenant_lint::str_eq("org_id", "id"));
/// ```
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Declares the registry of a service's tables and marks each table for the compile-time
/// layer, in one place; it also names the service's own SQL functions that scoped statements
/// may call, each with the reason it is safe.
///
/// ```
/// diesel::table! { customers (id) { id -> Uuid, org_id -> Uuid, name -> Text } }
/// diesel::table! { plans (id) { id -> Uuid, name -> Text } }
///
/// tenant_lint::registry! {
///     pub static REGISTRY;
///     tenant customers => org_id;
///     global plans;
///     function normalize_email => "lowercases and trims its text argument; runs no SQL";
/// }
///
/// fn org_column<T: tenant_lint::TenantTable>(_: T) -> &'static str { T::ORG_COLUMN_NAME }
/// assert_eq!(org_column(customers::table), "org_id");
/// assert_eq!(REGISTRY.global_tables().map(|t| t.name).collect::<Vec<_>>(), ["plans"]);
/// assert!(REGISTRY.allows_function("normalize_email"));
/// ```
///
/// A function is named as the statements spell it: an identifier, or a string for a
/// schema-qualified name (`function "app.normalize_email" => "...";`). The reason may not be
/// empty.
#[macro_export]
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $vis:vis static $name:ident;
        $($rest:tt)*
    ) => {
        $crate::registry!(@munch [$(#[$meta])* $vis static $name] [] [] $($rest)*);
    };
    (@munch $head:tt [$($tables:tt)*] [$($fns:tt)*] tenant $table:ident => $org:ident; $($rest:tt)*) => {
        $crate::tenant_table!($table => $org);
        $crate::registry!(@munch $head [$($tables)*
            $crate::TableEntry {
                name: ::core::stringify!($table),
                kind: $crate::TableKind::Tenant { org_column: ::core::stringify!($org) },
            },
        ] [$($fns)*] $($rest)*);
    };
    (@munch $head:tt [$($tables:tt)*] [$($fns:tt)*] global $table:ident; $($rest:tt)*) => {
        $crate::global_table!($table);
        $crate::registry!(@munch $head [$($tables)*
            $crate::TableEntry { name: ::core::stringify!($table), kind: $crate::TableKind::Global },
        ] [$($fns)*] $($rest)*);
    };
    (@munch $head:tt [$($tables:tt)*] [$($fns:tt)*] function $fname:ident => $why:literal; $($rest:tt)*) => {
        $crate::registry!(@munch $head [$($tables)*] [$($fns)*
            $crate::registry!(@function ::core::stringify!($fname), $why),
        ] $($rest)*);
    };
    (@munch $head:tt [$($tables:tt)*] [$($fns:tt)*] function $fname:literal => $why:literal; $($rest:tt)*) => {
        $crate::registry!(@munch $head [$($tables)*] [$($fns)*
            $crate::registry!(@function $fname, $why),
        ] $($rest)*);
    };
    (@function $fname:expr, $why:literal) => {
        $crate::FunctionEntry {
            name: $fname,
            reason: {
                const WHY: &str = $why;
                const _: () = ::core::assert!(
                    !WHY.is_empty(),
                    "a registered function needs its reason: why it runs no SQL, changes no setting and reads only its arguments"
                );
                WHY
            },
        }
    };
    (@munch [$(#[$meta:meta])* $vis:vis static $name:ident] [$($tables:tt)*] [$($fns:tt)*]) => {
        $(#[$meta])*
        $vis static $name: $crate::Registry = $crate::Registry::__new(&[$($tables)*], &[$($fns)*]);
    };
}
