//! `INSERT ... ON CONFLICT` for scoped inserts, built by the handle's own types.
//!
//! Invariant: no closure or generic here can hand back a statement of the caller's making.
//! diesel's upsert builder has unnameable types, so an earlier `on_conflict(|insert| ...)` took
//! a closure, and the closure could return anything runnable (`diesel::sql_query`, an insert
//! into another table); the handle then ran it. Here each step is a method on a type of this
//! crate, which renders the clause itself: the conflict target (columns of the same table,
//! the org column among them), `DO NOTHING` or `DO UPDATE SET <changes>` (changes that cannot
//! set the org column), and `RETURNING`.
//!
//! Requiring the org column in the target closes an existence oracle in the application layer:
//! a conflict on a key without it (`ON CONFLICT (id)`) would tell whether another org's row has
//! that key.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, InsertStatement, Query, QueryFragment, QueryId};
use diesel::{AsChangeset, Column, Expression, QueryResult, Table};
use tenant_lint::TenantTable;

use crate::OrgId;
use crate::columns::{ScopedChangeset, str_eq};
use crate::dsl::ScopedWrite;
use crate::subquery::ScopeProbe;

/// The columns of an `ON CONFLICT (...)` target: a tuple of columns of tenant table `T`, the
/// org column among them (every unique constraint of a tenant table includes it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a conflict target of `{T}`",
    label = "not a tuple of the table's columns",
    note = "name the columns of a unique constraint of the table, its org column among them: `.on_conflict((customers::org_id, customers::email))`"
)]
pub trait ConflictTarget<T> {
    /// Whether the target includes `T`'s org column.
    const HAS_ORG: bool;
    /// Writes the comma-separated column names.
    fn walk(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()>;
}

macro_rules! targets {
    ($first:ident $($name:ident)*) => {
        impl<$first, $($name,)* T> ConflictTarget<T> for ($first, $($name,)*)
        where
            $first: Column<Table = T>,
            $($name: Column<Table = T>,)*
            T: TenantTable,
        {
            const HAS_ORG: bool = str_eq($first::NAME, <T::OrgColumn as Column>::NAME)
                $(|| str_eq($name::NAME, <T::OrgColumn as Column>::NAME))*;

            fn walk(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
                out.push_identifier($first::NAME)?;
                $(
                    out.push_sql(", ");
                    out.push_identifier($name::NAME)?;
                )*
                Ok(())
            }
        }
    };
}

targets!(A);
targets!(A B);
targets!(A B C);
targets!(A B C D);
targets!(A B C D E);

/// An insert with `ON CONFLICT (<target>)` and no action yet: choose
/// [`do_nothing`](Self::do_nothing) or [`do_update`](Self::do_update).
#[must_use = "an ON CONFLICT clause needs an action: `.do_nothing()` or `.do_update().set(..)`"]
pub struct ScopedConflict<T, I, Target> {
    insert: I,
    org: OrgId,
    target: PhantomData<(T, Target)>,
}

impl<T, I, Target> std::fmt::Debug for ScopedConflict<T, I, Target> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedConflict")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// An insert with `ON CONFLICT (<target>) DO UPDATE` waiting for its changes:
/// [`set`](Self::set).
#[must_use = "`do_update()` needs its changes: `.set(..)`"]
pub struct ScopedConflictUpdate<T, I, Target> {
    conflict: ScopedConflict<T, I, Target>,
}

impl<T, I, Target> std::fmt::Debug for ScopedConflictUpdate<T, I, Target> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.conflict.fmt(f)
    }
}

impl<T, U, Op> ScopedWrite<InsertStatement<T, U, Op>>
where
    T: Table + TenantTable,
{
    /// `ON CONFLICT (<target>)`: the target is a tuple of columns of the table, and must
    /// include the org column (so a conflict can only be with a row of this org);
    /// continue with `.do_nothing()` or `.do_update().set(..)`:
    /// `.on_conflict((customers::org_id, customers::email)).do_update().set(customers::name.eq(excluded(customers::name)))`.
    pub fn on_conflict<Target>(
        self,
        target: Target,
    ) -> ScopedConflict<T, InsertStatement<T, U, Op>, Target>
    where
        Target: ConflictTarget<T>,
    {
        let _ = target;
        const {
            assert!(
                Target::HAS_ORG,
                "the ON CONFLICT target of a scoped insert must include the org column: a conflict on a key without it would tell whether another org has that key"
            );
        }
        let (insert, org) = self.into_scoped_parts();
        ScopedConflict {
            insert,
            org,
            target: PhantomData,
        }
    }
}

impl<T, I, Target> ScopedConflict<T, I, Target> {
    /// `ON CONFLICT (<target>) DO NOTHING`.
    pub fn do_nothing(self) -> ScopedWrite<Upsert<T, I, Target, DoNothing>> {
        ScopedWrite::from_scoped_parts(
            Upsert {
                insert: self.insert,
                action: DoNothing,
                returning: NoReturning,
                target: PhantomData,
            },
            self.org,
        )
    }

    /// `ON CONFLICT (<target>) DO UPDATE`, then `.set(changes)`.
    pub fn do_update(self) -> ScopedConflictUpdate<T, I, Target> {
        ScopedConflictUpdate { conflict: self }
    }
}

impl<T, I, Target> ScopedConflictUpdate<T, I, Target>
where
    T: Table,
{
    /// The changes for a conflicting row: a tuple of `column.eq(value)` (with
    /// `diesel::upsert::excluded(column)` for the proposed value) or a
    /// `#[derive(AsChangeset, TenantChangeset)]` struct. Changes that set the org column do
    /// not compile.
    pub fn set<V>(self, changes: V) -> ScopedWrite<Upsert<T, I, Target, DoUpdate<V::Changeset>>>
    where
        V: AsChangeset<Target = T> + ScopedChangeset<T>,
    {
        let conflict = self.conflict;
        ScopedWrite::from_scoped_parts(
            Upsert {
                insert: conflict.insert,
                action: DoUpdate(changes.as_changeset()),
                returning: NoReturning,
                target: PhantomData,
            },
            conflict.org,
        )
    }
}

impl<T, I, Target, A> ScopedWrite<Upsert<T, I, Target, A>>
where
    T: Table,
{
    /// `RETURNING` the given columns of the inserted or updated rows; run with `load` or
    /// `get_result`. A subquery in them must come from the handle.
    pub fn returning<E>(self, columns: E) -> ScopedWrite<Upsert<T, I, Target, A, Returning<E>>>
    where
        E: diesel::SelectableExpression<T> + diesel::AppearsOnTable<ScopeProbe<T>>,
    {
        let (upsert, org) = self.into_scoped_parts();
        ScopedWrite::from_scoped_parts(
            Upsert {
                insert: upsert.insert,
                action: upsert.action,
                returning: Returning(columns),
                target: PhantomData,
            },
            org,
        )
    }
}

/// A scoped `INSERT ... ON CONFLICT (...) <action> [RETURNING ...]`, rendered by this crate.
/// Built only by [`ScopedConflict`]'s methods.
pub struct Upsert<T, I, Target, A, R = NoReturning> {
    insert: I,
    action: A,
    returning: R,
    target: PhantomData<(T, Target)>,
}

/// `DO NOTHING`.
#[derive(Debug, Clone, Copy)]
pub struct DoNothing;

/// `DO UPDATE SET <changes>`.
#[derive(Debug, Clone, Copy)]
pub struct DoUpdate<C>(C);

/// No `RETURNING` clause.
#[derive(Debug, Clone, Copy)]
pub struct NoReturning;

/// `RETURNING <columns>`.
#[derive(Debug, Clone, Copy)]
pub struct Returning<E>(E);

/// The action of an [`Upsert`]: rendered after the conflict target.
pub trait ConflictAction {
    /// Writes ` DO ...`.
    fn walk<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl ConflictAction for DoNothing {
    fn walk<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(" DO NOTHING");
        Ok(())
    }
}

impl<C: QueryFragment<Pg>> ConflictAction for DoUpdate<C> {
    fn walk<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if self.0.is_noop(&Pg)? {
            // What diesel says for an update with nothing to set.
            return Err(diesel::result::Error::QueryBuilderError(
                "the ON CONFLICT DO UPDATE has no changes to set: every field of the changeset is None".into(),
            ));
        }
        out.push_sql(" DO UPDATE SET ");
        self.0.walk_ast(out.reborrow())
    }
}

/// The `RETURNING` part of an [`Upsert`].
pub trait ReturningPart {
    /// Writes ` RETURNING ...`, or nothing.
    fn walk<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl ReturningPart for NoReturning {
    fn walk<'b>(&'b self, _out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

impl<E: QueryFragment<Pg>> ReturningPart for Returning<E> {
    fn walk<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(" RETURNING ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<T, I, Target, A, R> QueryFragment<Pg> for Upsert<T, I, Target, A, R>
where
    I: QueryFragment<Pg>,
    Target: ConflictTarget<T>,
    A: ConflictAction,
    R: ReturningPart,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(" ON CONFLICT (");
        Target::walk(&mut out)?;
        out.push_sql(")");
        self.action.walk(out.reborrow())?;
        self.returning.walk(out.reborrow())
    }
}

impl<T, I, Target, A, R> QueryId for Upsert<T, I, Target, A, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T, I, Target, A, E> Query for Upsert<T, I, Target, A, Returning<E>>
where
    E: Expression,
{
    type SqlType = E::SqlType;
}

/// The value a conflicting insert proposed for column `C`: `excluded.<column>` in
/// `ON CONFLICT ... DO UPDATE SET`. Use it instead of `diesel::upsert::excluded` in the changes
/// of a scoped upsert (diesel's type cannot be inspected for the org column check).
///
/// ```
/// # mod schema {
/// #     diesel::table! { customers (id) { id -> Uuid, org_id -> Uuid, email -> Text, name -> Text } }
/// #     tenant_lint::registry! { pub static REGISTRY; tenant customers => org_id; }
/// # }
/// use diesel::prelude::*;
/// use schema::customers;
/// use tenant_core::{OrgScoped, ScopedConnection, TenantError, excluded};
///
/// fn upsert<C: ScopedConnection>(s: &mut OrgScoped<C>) -> Result<usize, TenantError> {
///     s.execute(
///         s.insert(customers::table, (customers::email.eq("a@x"), customers::name.eq("A")))
///             .on_conflict((customers::org_id, customers::email))
///             .do_update()
///             .set(customers::name.eq(excluded(customers::name))),
///     )
/// }
/// ```
pub fn excluded<C: Column>(column: C) -> Excluded<C> {
    Excluded(column)
}

/// `excluded.<column>`; see [`excluded`].
#[derive(Debug, Clone, Copy, QueryId)]
pub struct Excluded<C>(C);

impl<C: Column> Expression for Excluded<C> {
    type SqlType = C::SqlType;
}

impl<C: Column, QS> diesel::AppearsOnTable<QS> for Excluded<C> {}
impl<C: Column, QS> diesel::SelectableExpression<QS> for Excluded<C> {}

impl<C: Column, GB> diesel::expression::ValidGrouping<GB> for Excluded<C> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<C: Column> QueryFragment<Pg> for Excluded<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("excluded.");
        out.push_identifier(C::NAME)
    }
}
