//! Which columns an insert's values set, known at compile time: a scoped insert whose values
//! name the org column does not compile (the handle sets it; a second value would either be
//! rejected by PostgreSQL or, worse, name another org).
//!
//! diesel represents insert values as (nested tuples of) `ColumnInsertValue<Column, Expr>`,
//! wrapped in `DefaultableColumnInsertValue` for batch rows and in `ValuesClause`; all three are
//! nameable, so the check is a `const` computed over that type.

use std::marker::PhantomData;

use diesel::Column;
use diesel::expression::{IsContainedInGroupBy, ValidGrouping, is_contained_in_group_by};
use diesel::insertable::{ColumnInsertValue, DefaultableColumnInsertValue};
use diesel::query_builder::ValuesClause;
use tenant_lint::TenantTable;

use crate::subquery::ScopeProbe;

/// Whether insert values set tenant table `T`'s org column.
#[diagnostic::on_unimplemented(
    message = "cannot tell which columns these insert values set",
    label = "not a derived `Insertable` or a tuple of `column.eq(value)`",
    note = "insert a `#[derive(Insertable)]` struct (without the org column) or a tuple of `column.eq(value)`: the handle sets the org column"
)]
pub trait SetsOrgColumn<T: TenantTable> {
    /// True when one of the values is for the org column.
    const SETS_ORG: bool;
}

/// A value is probed like a filter ([`ScopeProbe`]): a diesel subquery as an insert value
/// (`title.eq(customers::table.select(..).single_value())`) does not compile, since nothing
/// puts the org filter in it.
impl<C, E, T> SetsOrgColumn<T> for ColumnInsertValue<C, E>
where
    C: Column,
    T: TenantTable,
    E: diesel::AppearsOnTable<ScopeProbe<T>>,
{
    const SETS_ORG: bool = str_eq(C::NAME, <T::OrgColumn as Column>::NAME);
}

impl<X, T> SetsOrgColumn<T> for DefaultableColumnInsertValue<X>
where
    X: SetsOrgColumn<T>,
    T: TenantTable,
{
    const SETS_ORG: bool = X::SETS_ORG;
}

impl<X, Tab, T> SetsOrgColumn<T> for ValuesClause<X, Tab>
where
    X: SetsOrgColumn<T>,
    T: TenantTable,
{
    const SETS_ORG: bool = X::SETS_ORG;
}

macro_rules! tuples {
    ($($name:ident)+) => {
        impl<$($name,)+ T> SetsOrgColumn<T> for ($($name,)+)
        where
            $($name: SetsOrgColumn<T>,)+
            T: TenantTable,
        {
            const SETS_ORG: bool = false $(|| $name::SETS_ORG)+;
        }
    };
}

tuples!(A);
tuples!(A B);
tuples!(A B C);
tuples!(A B C D);
tuples!(A B C D E);
tuples!(A B C D E F);
tuples!(A B C D E F G);
tuples!(A B C D E F G H);
tuples!(A B C D E F G H I);
tuples!(A B C D E F G H I J);
tuples!(A B C D E F G H I J K);
tuples!(A B C D E F G H I J K L);
tuples!(A B C D E F G H I J K L M);
tuples!(A B C D E F G H I J K L M N);
tuples!(A B C D E F G H I J K L M N O);
tuples!(A B C D E F G H I J K L M N O P);

pub(crate) use tenant_lint::str_eq;

/// A stand-in `GROUP BY` clause that contains every column of tenant table `T` except its org
/// column, for the check that an update does not set the org column.
///
/// diesel's update values (`Grouped<Eq<column, value>>`, tuples of them) are private types, but
/// each implements `ValidGrouping<GB>` generically, down to the columns, and a column is valid
/// for `GB` when `GB: IsContainedInGroupBy<column, Output = Yes>`. This type answers `Yes` for
/// every column except the org column, for which it requires [`UpdateSetsOrgColumn`], which no
/// column has: `changes: ValidGrouping<OrgColumnProbe<T>>` holds exactly when the changes
/// leave the org column alone. Never rendered.
#[derive(Debug, Clone, Copy)]
pub struct OrgColumnProbe<T>(PhantomData<T>);

impl<T, C> IsContainedInGroupBy<C> for OrgColumnProbe<T>
where
    T: TenantTable,
    C: Column + IsContainedInGroupBy<T::OrgColumn>,
    T::OrgColumn: IsContainedInGroupBy<C>,
    (
        <C as IsContainedInGroupBy<T::OrgColumn>>::Output,
        <T::OrgColumn as IsContainedInGroupBy<C>>::Output,
    ): UpdateSetsOrgColumn<C, T>,
{
    type Output = is_contained_in_group_by::Yes;
}

/// Implemented for the pair of answers diesel's `table!` gives for two *different* columns
/// (`column_a: IsContainedInGroupBy<column_b>` is `Yes` one way at most: from the single-column
/// primary key); not for the `(Yes, Yes)` of a column with itself, the org column here.
#[diagnostic::on_unimplemented(
    message = "a scoped update sets the org column `{C}` of `{T}`",
    label = "this changes the org of the rows: the org column is fixed by the handle",
    note = "leave the org column out of the changes; moving rows to another org is an operator task, not a scoped update"
)]
pub trait UpdateSetsOrgColumn<C, T> {}

#[diagnostic::do_not_recommend]
impl<C, T> UpdateSetsOrgColumn<C, T>
    for (is_contained_in_group_by::Yes, is_contained_in_group_by::No)
{
}
#[diagnostic::do_not_recommend]
impl<C, T> UpdateSetsOrgColumn<C, T>
    for (is_contained_in_group_by::No, is_contained_in_group_by::Yes)
{
}
#[diagnostic::do_not_recommend]
impl<C, T> UpdateSetsOrgColumn<C, T>
    for (is_contained_in_group_by::No, is_contained_in_group_by::No)
{
}

/// The changes of a scoped update: a tuple of `column.eq(value)`, or a struct with
/// `#[derive(AsChangeset, TenantChangeset)]`, that does not set tenant table `T`'s org column.
#[diagnostic::on_unimplemented(
    message = "cannot tell which columns `{Self}` sets, so it cannot be the changes of a scoped update",
    label = "not a tuple of `column.eq(value)` or a `TenantChangeset` struct",
    note = "add `tenant_core::TenantChangeset` to the struct's derives, beside `AsChangeset`: `#[derive(AsChangeset, TenantChangeset)]`; it tells the compiler which columns the struct sets"
)]
pub trait ScopedChangeset<T> {}

impl<V, T> ScopedChangeset<T> for V
where
    T: TenantTable,
    V: ValidGrouping<OrgColumnProbe<T>> + ChangesValuesProbe<T>,
{
}

/// The values of a scoped update's changes carry no diesel subquery (it would carry no org
/// filter): a tuple of `column.eq(value)` is probed like a filter ([`ScopeProbe`]);
/// `#[derive(TenantChangeset)]` implements it for a struct, whose fields are bound values.
pub trait ChangesValuesProbe<T> {}

impl<V, T> ChangesValuesProbe<T> for V where V: diesel::AppearsOnTable<ScopeProbe<T>> {}
