//! The scoped query DSL: queries on tenant tables that always carry the org filter.
//!
//! Every builder here starts from an [`OrgScoped`] handle, which puts
//! `org_column = <the handle's org>` (a bound parameter) into the query before anything else.
//! The builders only offer operations that keep that filter: `filter` ANDs, `or_filter` is a
//! compile error, and none of them hands the inner diesel query back. The types cannot be
//! built by hand (private fields, no constructors), and only types of this module implement
//! [`ScopedQuery`], the bound of [`OrgScoped::load`] and friends, so a raw diesel query or
//! `sql_query` cannot run through a scoped handle.
//!
//! This is the application layer of the two; row-level security in the database is the other,
//! and holds even where this one is bypassed.

use diesel::associations::HasTable;
use diesel::dsl;
use diesel::expression::ValidGrouping;
use diesel::expression_methods::ExpressionMethods;
use diesel::internal::table_macro::{Inner, LeftOuter};
// `RETURNING`'s statement types by diesel's public alias: the clause type itself moved
// between diesel 2.3 and 2.4.
use diesel::helper_types::Returning;
use diesel::query_builder::{
    AsQuery, DeleteStatement, InsertStatement, IntoUpdateTarget, UpdateStatement,
};
use diesel::query_builder::{AstPass, Query, QueryId};
use diesel::query_dsl::methods::{
    BoxedDsl, DistinctDsl, ExecuteDsl, FilterDsl, GroupByDsl, HavingDsl, LimitDsl, OffsetDsl,
    OrderDsl, SelectDsl, ThenOrderDsl,
};
use diesel::query_dsl::{JoinOnDsl, JoinWithImplicitOnClause};
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::query_source::JoinTo;
use diesel::{AsChangeset, Insertable, PgConnection, Table};
use tenant_lint::{Global, GlobalTable, RegisteredTable, Tenant, TenantTable};
use uuid::Uuid;

use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;

use crate::columns::{ScopedChangeset, SetsOrgColumn};
use crate::scoped::ScopedConnection;
use crate::subquery::{ProbeOf, ProbeSource, ScopeProbe, ScopedSubquery};
use crate::verify::CheckedStatement;
use crate::{OrgId, OrgScoped, TenantError};

/// `org_column = $org` for tenant table `T`.
pub type OrgPredicate<T> = dsl::Eq<<T as TenantTable>::OrgColumn, Uuid>;
/// Tenant table `T` filtered to one org: where every scoped select starts.
pub type ScopedSource<T> = dsl::Filter<T, OrgPredicate<T>>;
/// An insert into tenant table `T` of `V` with the org column set from the handle.
pub type ScopedInsert<T, V> = InsertStatement<T, <(OrgPredicate<T>, V) as Insertable<T>>::Values>;
/// An insert of many rows `V` into tenant table `T`, each with the org column set.
pub type ScopedInsertMany<T, V> =
    InsertStatement<T, <Vec<(OrgPredicate<T>, V)> as Insertable<T>>::Values>;
/// An update of tenant table `T` filtered to one org: where every scoped update starts.
pub type ScopedUpdateSource<T> =
    dsl::Filter<UpdateStatement<T, <T as IntoUpdateTarget>::WhereClause>, OrgPredicate<T>>;
/// A delete from tenant table `T` filtered to one org: where every scoped delete starts.
pub type ScopedDeleteSource<T> =
    dsl::Filter<DeleteStatement<T, <T as IntoUpdateTarget>::WhereClause>, OrgPredicate<T>>;

/// What registered table `R` enters a join of `Q` as (see [`JoinRhs`]).
pub type RhsOf<Q, R> = <<R as RegisteredTable>::Kind as JoinRhs<Q, R>>::Rhs;
/// `Q` joined with registered table `R`, `K` being diesel's inner or left outer join.
pub type JoinOf<Q, R, K> = <Q as JoinWithImplicitOnClause<RhsOf<Q, R>, K>>::Output;

/// diesel's `GROUP BY` of `G`, asked only after the subquery probe of
/// [`ScopedSelect::group_by`] (its output is named through this trait, not through diesel's),
/// so that an unscoped subquery gets this crate's diagnostic rather than diesel's error about
/// query sources.
pub trait ScopedGroupBy<G> {
    /// The grouped query.
    type Output;
    /// `GROUP BY group`.
    fn scoped_group_by(self, group: G) -> Self::Output;
}

impl<Q, G> ScopedGroupBy<G> for Q
where
    Q: GroupByDsl<G>,
    G: diesel::Expression,
{
    type Output = dsl::GroupBy<Q, G>;

    fn scoped_group_by(self, group: G) -> Self::Output {
        self.group_by(group)
    }
}

/// A query that may run through an [`OrgScoped`] handle: only the builders of this module,
/// each started from a handle and carrying its org filter.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an org-scoped query, so it cannot run through `OrgScoped`",
    label = "this query was not built from an `OrgScoped` handle, so nothing adds the org filter",
    note = "start every query from the handle, which adds the org filter: `s.query(invoices::table)`, `s.insert(..)`, `s.update(..)`, `s.delete(..)`, or `s.read_global(..)` for a global table",
    note = "raw SQL (`diesel::sql_query`) cannot run through `OrgScoped`: express the query with the DSL"
)]
pub trait ScopedQuery: sealed::Sealed {
    /// The diesel query inside.
    type Query;
    /// The org the query was built for, and the query. Callable only inside this crate: the
    /// token cannot be made elsewhere.
    #[doc(hidden)]
    fn into_parts(self, token: sealed::Token) -> (OrgId, Self::Query);
}

pub(crate) mod sealed {
    /// Keeps [`super::ScopedQuery`] implemented only by this module's types.
    pub trait Sealed {}

    /// Proof that a call comes from inside this crate.
    #[derive(Debug)]
    pub struct Token(pub(crate) ());
}

/// `or_filter` on a scoped query: it would OR an alternative with the org filter and widen the
/// query to every org, so it does not exist. Implemented for no type.
#[diagnostic::on_unimplemented(
    message = "`or_filter` would widen an org-scoped query beyond its org",
    label = "`or_filter` ORs this with the org filter, so rows of every org would match",
    note = "put the alternatives inside one filter, which stays within the org: `.filter(a.or(b))`"
)]
pub trait OrFilterWidensScope: never::Never {}

mod never {
    /// Implemented for no type, so [`super::OrFilterWidensScope`] cannot be implemented.
    pub trait Never {}
}

/// How a registered table enters a join of a scoped query: a tenant table with its org
/// predicate in the ON clause, a global table as is. Implemented for [`Tenant`] and [`Global`].
pub trait JoinRhs<Q, R> {
    /// What is handed to diesel's join method.
    type Rhs;
    /// Builds it.
    fn rhs(rhs: R, org: Uuid) -> Self::Rhs;
}

impl<Q, R> JoinRhs<Q, R> for Tenant
where
    R: TenantTable,
    Q: JoinTo<R>,
{
    type Rhs = dsl::On<R, OnWithOrg<<Q as JoinTo<R>>::OnClause, OrgPredicate<R>>>;

    fn rhs(rhs: R, org: Uuid) -> Self::Rhs {
        let (_, on) = <Q as JoinTo<R>>::join_target(rhs);
        rhs.on(OnWithOrg {
            on,
            org: R::OrgColumn::default().eq(org),
        })
    }
}

/// A join condition ANDed with the joined tenant table's org predicate:
/// `((<on>) AND (<org predicate>))`. Built only by [`ScopedSelect::inner_join`] and
/// [`ScopedSelect::left_join`].
#[derive(Debug, Clone, Copy, QueryId)]
pub struct OnWithOrg<On, P> {
    on: On,
    org: P,
}

impl<On: diesel::Expression, P> diesel::Expression for OnWithOrg<On, P> {
    type SqlType = On::SqlType;
}

impl<On, P, QS> diesel::AppearsOnTable<QS> for OnWithOrg<On, P>
where
    On: diesel::AppearsOnTable<QS>,
    P: diesel::AppearsOnTable<QS>,
    Self: diesel::Expression,
{
}

impl<On, P, GB> ValidGrouping<GB> for OnWithOrg<On, P>
where
    On: ValidGrouping<GB>,
{
    type IsAggregate = On::IsAggregate;
}

impl<On, P> QueryFragment<Pg> for OnWithOrg<On, P>
where
    On: QueryFragment<Pg>,
    P: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("((");
        self.on.walk_ast(out.reborrow())?;
        out.push_sql(") AND (");
        self.org.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

impl<Q, R> JoinRhs<Q, R> for Global {
    type Rhs = R;

    fn rhs(rhs: R, _org: Uuid) -> R {
        rhs
    }
}

/// What every scoped query type has: the wrapped diesel query and its org, no public fields,
/// no constructor outside this module, and `ScopedQuery` (sealed).
macro_rules! scoped_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[must_use = "a scoped query does nothing until it is run through its OrgScoped handle"]
        pub struct $name<Q> {
            query: Q,
            org: OrgId,
        }

        impl<Q> std::fmt::Debug for $name<Q> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("org", &self.org).finish_non_exhaustive()
            }
        }

        impl<Q> sealed::Sealed for $name<Q> {}

        impl<Q> ScopedQuery for $name<Q> {
            type Query = Q;
            fn into_parts(self, _: sealed::Token) -> (OrgId, Q) {
                (self.org, self.query)
            }
        }

        impl<Q> $name<Q> {
            /// The query and its org, for the other builders of this crate.
            #[allow(dead_code)]
            pub(crate) fn into_scoped_parts(self) -> (Q, OrgId) {
                (self.query, self.org)
            }

            /// A scoped query of this kind, for the other builders of this crate.
            #[allow(dead_code)]
            pub(crate) fn from_scoped_parts(query: Q, org: OrgId) -> Self {
                $name { query, org }
            }

            fn wrap<R>(self, f: impl FnOnce(Q) -> R) -> $name<R> {
                $name { query: f(self.query), org: self.org }
            }

            /// The SQL this query will run, with its bind values, for debugging and tests.
            pub fn debug_sql(&self) -> String
            where
                Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
            {
                diesel::debug_query::<diesel::pg::Pg, _>(&self.query).to_string()
            }
        }
    };
}

/// A scoped type that takes conditions: `filter` ANDs, `or_filter` does not compile.
macro_rules! scoped_query_type {
    ($(#[$meta:meta])* $name:ident) => {
        scoped_type! { $(#[$meta])* $name }

        impl<Q> $name<Q> {
            /// Adds a condition, ANDed with the org filter and any earlier condition.
            ///
            /// A subquery in the condition that reads a tenant table must come from the handle
            /// ([`ScopedSelect::into_subquery`]), or this does not compile.
            pub fn filter<P>(self, predicate: P) -> $name<dsl::Filter<Q, P>>
            where
                Q: FilterDsl<P> + ProbeSource,
                P: diesel::AppearsOnTable<ProbeOf<Q>>,
            {
                self.wrap(|q| q.filter(predicate))
            }

            /// Does not exist on scoped queries: use `.filter(a.or(b))`.
            pub fn or_filter<P>(self, _predicate: P) -> Self
            where
                P: OrFilterWidensScope,
            {
                self
            }
        }
    };
}

scoped_query_type! {
    /// A select on a tenant table (filtered to the handle's org) or on a global table.
    ScopedSelect
}
scoped_query_type! {
    /// An update of a tenant table's rows in the handle's org, before `set`.
    ScopedUpdate
}
scoped_query_type! {
    /// A delete of a tenant table's rows in the handle's org.
    ScopedDelete
}
scoped_type! {
    /// A complete insert or update, ready to run.
    ScopedWrite
}

impl<T, U, Op> ScopedWrite<InsertStatement<T, U, Op>>
where
    T: Table,
{
    /// `RETURNING` the given columns; run with `load` or `get_result`. A subquery in them
    /// must come from the handle.
    pub fn returning<E>(self, columns: E) -> ScopedWrite<Returning<InsertStatement<T, U, Op>, E>>
    where
        E: diesel::AppearsOnTable<ScopeProbe<T>>,
        Returning<InsertStatement<T, U, Op>, E>: diesel::query_builder::Query,
    {
        self.wrap(|q| q.returning(columns))
    }
}

impl<T, U, V> ScopedWrite<UpdateStatement<T, U, V>>
where
    T: Table,
{
    /// `RETURNING` the given columns of the updated rows; a subquery in them must come from
    /// the handle.
    pub fn returning<E>(self, columns: E) -> ScopedWrite<Returning<UpdateStatement<T, U, V>, E>>
    where
        E: diesel::AppearsOnTable<ScopeProbe<T>>,
        Returning<UpdateStatement<T, U, V>, E>: diesel::query_builder::Query,
    {
        self.wrap(|q| q.returning(columns))
    }
}

impl<T, U> ScopedDelete<DeleteStatement<T, U>>
where
    T: Table,
{
    /// `RETURNING` the given columns of the deleted rows; a subquery in them must come from
    /// the handle.
    pub fn returning<E>(self, columns: E) -> ScopedWrite<Returning<DeleteStatement<T, U>, E>>
    where
        E: diesel::SelectableExpression<T> + diesel::AppearsOnTable<ScopeProbe<T>>,
        Returning<DeleteStatement<T, U>, E>: diesel::query_builder::Query,
    {
        ScopedWrite {
            query: self.query.returning(columns),
            org: self.org,
        }
    }
}

impl<Q> ScopedSelect<Q> {
    /// Orders the rows, replacing any earlier order. A subquery in the order must come from
    /// the handle, like one in [`filter`](Self::filter).
    pub fn order<O>(self, order: O) -> ScopedSelect<dsl::Order<Q, O>>
    where
        O: diesel::Expression + diesel::AppearsOnTable<ProbeOf<Q>>,
        Q: OrderDsl<O> + ProbeSource,
    {
        self.wrap(|q| q.order(order))
    }

    /// Adds a further ordering; a subquery in it must come from the handle.
    pub fn then_order_by<O>(self, order: O) -> ScopedSelect<dsl::ThenOrderBy<Q, O>>
    where
        O: diesel::AppearsOnTable<ProbeOf<Q>>,
        Q: ThenOrderDsl<O> + ProbeSource,
    {
        self.wrap(|q| q.then_order_by(order))
    }

    /// At most `n` rows.
    pub fn limit(self, n: i64) -> ScopedSelect<dsl::Limit<Q>>
    where
        Q: LimitDsl,
    {
        self.wrap(|q| q.limit(n))
    }

    /// Skips `n` rows.
    pub fn offset(self, n: i64) -> ScopedSelect<dsl::Offset<Q>>
    where
        Q: OffsetDsl,
    {
        self.wrap(|q| q.offset(n))
    }

    /// Chooses the selected columns or expressions.
    pub fn select<S>(self, selection: S) -> ScopedSelect<dsl::Select<Q, S>>
    where
        S: diesel::Expression + diesel::AppearsOnTable<ProbeOf<Q>>,
        Q: SelectDsl<S> + ProbeSource,
    {
        self.wrap(|q| q.select(selection))
    }

    /// `SELECT DISTINCT`.
    pub fn distinct(self) -> ScopedSelect<dsl::Distinct<Q>>
    where
        Q: DistinctDsl,
    {
        self.wrap(|q| q.distinct())
    }

    /// `GROUP BY`; a subquery in it must come from the handle.
    pub fn group_by<G>(self, group: G) -> ScopedSelect<<Q as ScopedGroupBy<G>>::Output>
    where
        Q: ProbeSource,
        G: diesel::AppearsOnTable<ProbeOf<Q>>,
        Q: ScopedGroupBy<G>,
    {
        self.wrap(|q| q.scoped_group_by(group))
    }

    /// `HAVING`, ANDed like `filter`.
    pub fn having<P>(self, predicate: P) -> ScopedSelect<dsl::Having<Q, P>>
    where
        Q: HavingDsl<P> + ProbeSource,
        P: diesel::AppearsOnTable<ProbeOf<Q>>,
    {
        self.wrap(|q| q.having(predicate))
    }

    /// Page `page` (from 0) of `per_page` rows: `LIMIT per_page OFFSET page * per_page`.
    pub fn paginate(self, page: i64, per_page: i64) -> ScopedSelect<dsl::Offset<dsl::Limit<Q>>>
    where
        Q: LimitDsl,
        dsl::Limit<Q>: OffsetDsl,
    {
        self.wrap(|q| q.limit(per_page).offset(page.saturating_mul(per_page)))
    }

    /// A boxed query, for filters chosen at run time (`q = q.filter(...)` in a loop). The org
    /// filter is already inside.
    pub fn into_boxed<'a>(self) -> ScopedSelect<dsl::IntoBoxed<'a, Q, Pg>>
    where
        Q: BoxedDsl<'a, Pg>,
    {
        self.wrap(|q| BoxedDsl::internal_into_boxed(q))
    }

    /// `SELECT EXISTS (<this query>)`: run it with `get_result::<bool, _>`.
    pub fn exists(self) -> ScopedSelect<dsl::select<dsl::exists<Q>>>
    where
        dsl::exists<Q>: diesel::Expression,
        dsl::select<dsl::exists<Q>>: AsQuery,
    {
        self.wrap(|q| diesel::select(diesel::dsl::exists(q)))
    }

    /// This query, to be used as a subquery inside another scoped query's filter: in
    /// `column.eq_any(subquery)`, `subquery.exists()` or `subquery.single_value()`. It keeps
    /// its org filter. A diesel query used there instead does not compile when it reads a
    /// tenant table (see [`crate::subquery`]).
    pub fn into_subquery(self) -> ScopedSubquery<Q> {
        ScopedSubquery::new(self.query)
    }

    /// `INNER JOIN` registered table `rhs`: `s.query(invoices::table).inner_join(customers::table)`.
    ///
    /// A tenant table joins on its `joinable!` condition ANDed with its org predicate; a global
    /// table joins as is. A table that is not registered does not compile. There is no closure
    /// to pass: the join is built here, from this query, so nothing but this query can come
    /// back.
    pub fn inner_join<R>(self, rhs: R) -> ScopedSelect<JoinOf<Q, R, Inner>>
    where
        R: RegisteredTable,
        R::Kind: JoinRhs<Q, R>,
        Q: JoinWithImplicitOnClause<RhsOf<Q, R>, Inner>,
    {
        self.join_as(rhs, Inner)
    }

    /// `LEFT OUTER JOIN` registered table `rhs`, like [`inner_join`](Self::inner_join); a
    /// tenant table's org predicate goes into the ON clause, so a left join keeps its meaning.
    pub fn left_join<R>(self, rhs: R) -> ScopedSelect<JoinOf<Q, R, LeftOuter>>
    where
        R: RegisteredTable,
        R::Kind: JoinRhs<Q, R>,
        Q: JoinWithImplicitOnClause<RhsOf<Q, R>, LeftOuter>,
    {
        self.join_as(rhs, LeftOuter)
    }

    fn join_as<R, K>(self, rhs: R, kind: K) -> ScopedSelect<JoinOf<Q, R, K>>
    where
        R: RegisteredTable,
        R::Kind: JoinRhs<Q, R>,
        Q: JoinWithImplicitOnClause<RhsOf<Q, R>, K>,
    {
        let rhs = <R::Kind as JoinRhs<Q, R>>::rhs(rhs, self.org.as_uuid());
        self.wrap(|q| q.join_with_implicit_on_clause(rhs, kind))
    }

    /// `SELECT count(*)` over the filtered rows.
    pub fn count(self) -> ScopedSelect<dsl::Select<Q, dsl::CountStar>>
    where
        Q: SelectDsl<dsl::CountStar>,
    {
        self.wrap(|q| q.select(dsl::count_star()))
    }
}

impl<T, W> ScopedUpdate<UpdateStatement<T, W>>
where
    T: Table + diesel::QuerySource,
{
    /// The new values: a tuple of `column.eq(value)`, or a struct with
    /// `#[derive(AsChangeset, TenantChangeset)]`. Changes that set the org column do not
    /// compile (the handle fixes the org of the rows).
    pub fn set<V>(self, changes: V) -> ScopedWrite<UpdateStatement<T, W, V::Changeset>>
    where
        V: AsChangeset<Target = T> + ScopedChangeset<T>,
        UpdateStatement<T, W, V::Changeset>: AsQuery,
    {
        ScopedWrite {
            query: self.query.set(changes),
            org: self.org,
        }
    }
}

/// The query builders of a scoped handle: [`OrgScoped`]'s and the async path's
/// (`AsyncOrgScoped`) are this one text, so both offer the same DSL with the same bounds.
/// The handle needs only `fn org(&self) -> OrgId`.
macro_rules! scoped_builders {
    (impl [$($generics:tt)*] $handle:ty) => {
impl<$($generics)*> $handle {
    fn org_predicate<T: TenantTable>(&self) -> OrgPredicate<T> {
        T::OrgColumn::default().eq(self.org().as_uuid())
    }

    /// Starts a select on tenant table `table`, filtered to this handle's org.
    ///
    /// The table must be registered (`tenant_lint::registry!`), or this does not compile.
    pub fn query<T>(&self, table: T) -> ScopedSelect<ScopedSource<T>>
    where
        T: TenantTable + FilterDsl<OrgPredicate<T>>,
    {
        ScopedSelect {
            query: table.filter(self.org_predicate::<T>()),
            org: self.org(),
        }
    }

    /// Starts a select on a global table (one the registry marks as holding no tenant data).
    pub fn read_global<T>(&self, table: T) -> ScopedSelect<T::Query>
    where
        T: GlobalTable + AsQuery,
    {
        ScopedSelect {
            query: table.as_query(),
            org: self.org(),
        }
    }

    /// An insert into tenant table `table`; the org column is set from this handle, so
    /// `values` must not carry it.
    pub fn insert<T, V>(&self, table: T, values: V) -> ScopedWrite<ScopedInsert<T, V>>
    where
        T: TenantTable,
        V: Insertable<T>,
        V::Values: SetsOrgColumn<T>,
        (OrgPredicate<T>, V): Insertable<T>,
    {
        const {
            assert!(
                !<V::Values as SetsOrgColumn<T>>::SETS_ORG,
                "the values of a scoped insert set the org column: leave it out, the handle sets it"
            );
        }
        ScopedWrite {
            query: diesel::insert_into(table).values((self.org_predicate::<T>(), values)),
            org: self.org(),
        }
    }

    /// An insert of many rows into tenant table `table` in one statement, each row with the org
    /// column set from this handle.
    pub fn insert_many<T, V>(
        &self,
        table: T,
        rows: impl IntoIterator<Item = V>,
    ) -> ScopedWrite<ScopedInsertMany<T, V>>
    where
        T: TenantTable,
        V: Insertable<T>,
        V::Values: SetsOrgColumn<T>,
        Vec<(OrgPredicate<T>, V)>: Insertable<T>,
    {
        const {
            assert!(
                !<V::Values as SetsOrgColumn<T>>::SETS_ORG,
                "the values of a scoped insert set the org column: leave it out, the handle sets it"
            );
        }
        let rows: Vec<(OrgPredicate<T>, V)> = rows
            .into_iter()
            .map(|v| (self.org_predicate::<T>(), v))
            .collect();
        ScopedWrite {
            query: diesel::insert_into(table).values(rows),
            org: self.org(),
        }
    }

    /// Starts an update of tenant table `table`'s rows in this handle's org; add conditions
    /// with `filter` and values with `set`.
    pub fn update<T>(&self, table: T) -> ScopedUpdate<ScopedUpdateSource<T>>
    where
        T: TenantTable + IntoUpdateTarget + HasTable<Table = T>,
        UpdateStatement<T, T::WhereClause>: FilterDsl<OrgPredicate<T>>,
    {
        ScopedUpdate {
            query: diesel::update(table).filter(self.org_predicate::<T>()),
            org: self.org(),
        }
    }

    /// A delete of tenant table `table`'s rows in this handle's org; narrow it with `filter`.
    pub fn delete<T>(&self, table: T) -> ScopedDelete<ScopedDeleteSource<T>>
    where
        T: TenantTable + IntoUpdateTarget + HasTable<Table = T>,
        DeleteStatement<T, T::WhereClause>: FilterDsl<OrgPredicate<T>>,
    {
        ScopedDelete {
            query: diesel::delete(table).filter(self.org_predicate::<T>()),
            org: self.org(),
        }
    }

}
    };
}

scoped_builders!(impl [C: ScopedConnection] OrgScoped<C>);
#[cfg(feature = "async")]
scoped_builders!(impl [] crate::AsyncOrgScoped);
#[cfg(feature = "async")]
scoped_builders!(impl [] crate::OrgStatements);

impl<C: ScopedConnection> OrgScoped<C> {
    /// Runs a scoped query and returns all rows.
    ///
    /// The query is rendered once and that rendering is checked, then sent as it is
    /// ([`CheckedStatement`]); a refused query is never sent.
    pub fn load<U, Q>(&mut self, query: Q) -> Result<Vec<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, PgConnection, U>,
    {
        let (org, q) = query.into_parts(sealed::Token(()));
        self.run_verified(org, q, |q, conn| RunQueryDsl::load(q, conn))
    }

    /// Runs a scoped query and returns its first row; [`TenantError::is_not_found`] when there
    /// is none.
    pub fn get_result<U, Q>(&mut self, query: Q) -> Result<U, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, PgConnection, U>,
    {
        let (org, q) = query.into_parts(sealed::Token(()));
        self.run_verified(org, q, |q, conn| RunQueryDsl::get_result(q, conn))
    }

    /// The first row of a scoped select (`LIMIT 1`), or `None`.
    pub fn first<U, Q>(&mut self, query: ScopedSelect<Q>) -> Result<Option<U>, TenantError>
    where
        Q: LimitDsl,
        dsl::Limit<Q>: Query + QueryFragment<Pg>,
        CheckedStatement<<dsl::Limit<Q> as Query>::SqlType>: LoadQuery<'static, PgConnection, U>,
    {
        self.optional(query.limit(1))
    }

    /// Runs a scoped query and returns its first row, or `None`.
    pub fn optional<U, Q>(&mut self, query: Q) -> Result<Option<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, PgConnection, U>,
    {
        match self.get_result(query) {
            Ok(row) => Ok(Some(row)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs a scoped insert, update or delete and returns the number of rows affected.
    pub fn execute<Q>(&mut self, statement: Q) -> Result<usize, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: QueryFragment<Pg>,
    {
        let (org, q) = statement.into_parts(sealed::Token(()));
        self.run_verified(org, q, |q: CheckedStatement<()>, conn| {
            ExecuteDsl::execute(q, conn)
        })
    }
}

/// The SQL type of the rows scoped query `Q` returns.
pub type SqlTypeOf<Q> = <<Q as ScopedQuery>::Query as Query>::SqlType;
