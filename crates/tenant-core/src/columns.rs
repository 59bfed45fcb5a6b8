//! Which columns an insert's values set, known at compile time: a scoped insert whose values
//! name the org column does not compile (the handle sets it; a second value would either be
//! rejected by PostgreSQL or, worse, name another org).
//!
//! diesel represents insert values as (nested tuples of) `ColumnInsertValue<Column, Expr>`,
//! wrapped in `DefaultableColumnInsertValue` for batch rows and in `ValuesClause`; all three are
//! nameable, so the check is a `const` computed over that type.

use diesel::Column;
use diesel::insertable::{ColumnInsertValue, DefaultableColumnInsertValue};
use diesel::query_builder::ValuesClause;
use tenant_lint::TenantTable;

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

impl<C, E, T> SetsOrgColumn<T> for ColumnInsertValue<C, E>
where
    C: Column,
    T: TenantTable,
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

/// String equality usable in `const` context.
pub(crate) const fn str_eq(a: &str, b: &str) -> bool {
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
