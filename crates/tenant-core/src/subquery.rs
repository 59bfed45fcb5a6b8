//! Subqueries inside scoped queries, checked at compile time: every subquery in a scoped
//! query's filter, `having` or select list must itself come from the handle
//! ([`ScopedSubquery`]), or the query does not compile.
//!
//! # How the check works
//!
//! diesel's expression types (`Grouped`, `Eq`, `In`, `Subselect`, ...) are private, so nothing
//! can match on them by name. What they do have is `AppearsOnTable<QS>`, implemented generically
//! for every node, down to the leaves: a column asks `QS: AppearsInFromClause<its table>`, and a
//! diesel subquery asks `QS: QuerySource` (diesel joins the subquery's `FROM` with `QS` to check
//! it). [`ScopeProbe`] is a stand-in `QS` that answers the first like the outer query's real
//! source and refuses the second with [`SubqueryFromTheHandle`]'s diagnostic. Requiring
//! `predicate: AppearsOnTable<ScopeProbe<_>>` (on `filter`, `having` and `select`) therefore
//! walks the whole expression and fails exactly when a diesel subquery is in it: such a
//! subquery was not built from the handle, so nothing put the org filter in it.
//!
//! A scoped subquery ([`ScopedSelect::into_subquery`](crate::ScopedSelect::into_subquery), also
//! from `read_global` for a global table) is an expression type of this module that is valid
//! inside any source: its own filters were probed when it was built, and it carries its org
//! filter. It may refer to columns of the outer query (a correlated subquery).
//!
//! What the probe cannot see: a *boxed* diesel subquery (`into_boxed()` erases its type) and raw
//! `sql()` fragments. Both are still refused before they are sent, by the check of the rendered
//! statement ([`crate::Violation`]), and row-level security refuses the rows either way.

use std::marker::PhantomData;

use diesel::dsl;
use diesel::expression::array_comparison::{AsInExpression, InExpression};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{
    AstPass, BoxedSelectStatement, DeleteStatement, FromClause, QueryFragment, QueryId,
    SelectQuery, SelectStatement, UpdateStatement,
};
use diesel::query_dsl::methods::LimitDsl;
use diesel::query_source::{AppearsInFromClause, MoreThanOnce, Never, Once, QuerySource};
use diesel::sql_types::{Bool, IntoNullable, SqlType};
use tenant_lint::RegisteredTable;

/// A stand-in query source that answers like `QS` about tables and refuses to be joined with a
/// subquery's `FROM`. Never rendered or run: it exists only in trait bounds.
#[derive(Debug)]
pub struct ScopeProbe<QS>(PhantomData<QS>);

impl<QS> Clone for ScopeProbe<QS> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<QS> Copy for ScopeProbe<QS> {}

/// Used as a query source only when a diesel subquery sits in the predicate (diesel joins the
/// subquery's `FROM` with the outer source to check it): that is the refusal.
#[diagnostic::on_unimplemented(
    message = "a diesel subquery inside an org-scoped query: nothing puts the org filter in it",
    label = "this subquery was not built from the `OrgScoped` handle",
    note = "build every subquery from the handle, so it carries the org filter: `s.query(table).filter(..).select(..).into_subquery()` (or `s.read_global(table)` for a global table), then use it in `eq_any(..)`, `.exists()` or `.single_value()`"
)]
pub trait SubqueryFromTheHandle {}

impl<QS> QuerySource for ScopeProbe<QS>
where
    QS: SubqueryFromTheHandle,
{
    type FromClause = Self;
    type DefaultSelection = ProbeSelection;

    fn from_clause(&self) -> Self {
        *self
    }

    fn default_selection(&self) -> ProbeSelection {
        ProbeSelection
    }
}

impl<QS, X> AppearsInFromClause<X> for ScopeProbe<QS>
where
    QS: AppearsInFromClause<X>,
    X: RegisteredTable,
    QS::Count: ProbeCount,
{
    type Count = <QS::Count as ProbeCount>::Count;
}

/// What the probe answers for a registered table: what the outer source answers, except that a
/// table the outer source does not contain counts as present once, so that a scoped subquery
/// may refer to a column of its outer query (a correlated subquery). diesel itself checks the
/// columns of a statement against its real source when the statement is run.
pub trait ProbeCount {
    /// The answer.
    type Count;
}

impl ProbeCount for Once {
    type Count = Once;
}
impl ProbeCount for MoreThanOnce {
    type Count = MoreThanOnce;
}
impl ProbeCount for Never {
    type Count = Once;
}

/// The default selection of a [`ScopeProbe`]: an expression valid anywhere. Never rendered.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSelection;

impl Expression for ProbeSelection {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for ProbeSelection {}
impl<QS> SelectableExpression<QS> for ProbeSelection {}

impl<GB> ValidGrouping<GB> for ProbeSelection {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// The query source of a scoped statement, which the probe stands in for.
pub trait ProbeSource {
    /// The `FROM` of the statement: a table or a join.
    type Source;
}

impl<F, S, D, W, O, LOf, G, H, LC> ProbeSource
    for SelectStatement<FromClause<F>, S, D, W, O, LOf, G, H, LC>
where
    F: QuerySource,
{
    type Source = F;
}

impl<'a, ST, F, GB> ProbeSource for BoxedSelectStatement<'a, ST, FromClause<F>, Pg, GB>
where
    F: QuerySource,
{
    type Source = F;
}

impl<T, U, V, Ret> ProbeSource for UpdateStatement<T, U, V, Ret>
where
    T: QuerySource,
{
    type Source = T;
}

impl<T, U, Ret> ProbeSource for DeleteStatement<T, U, Ret>
where
    T: QuerySource,
{
    type Source = T;
}

/// Shorthand for the probe of scoped statement `Q`.
pub type ProbeOf<Q> = ScopeProbe<<Q as ProbeSource>::Source>;

/// A scoped select turned into a subquery, from
/// [`ScopedSelect::into_subquery`](crate::ScopedSelect::into_subquery). It still carries its
/// org filter. Use it in `column.eq_any(subquery)` / `ne_all`, or turn it into
/// `EXISTS (...)` with [`exists`](Self::exists) or a scalar with
/// [`single_value`](Self::single_value).
///
/// `diesel::dsl::exists` does not accept it (diesel only takes its own query types there); use
/// the method.
#[derive(Debug, Clone, Copy)]
pub struct ScopedSubquery<Q> {
    query: Q,
}

impl<Q> ScopedSubquery<Q> {
    pub(crate) fn new(query: Q) -> Self {
        ScopedSubquery { query }
    }

    /// `EXISTS (<this subquery>)`, a boolean expression for a scoped filter.
    pub fn exists(self) -> ScopedExists<Q> {
        ScopedExists { query: self.query }
    }

    /// `(<this subquery> LIMIT 1)` as a single value, `NULL` when it has no rows.
    pub fn single_value(self) -> ScopedSubselect<Parenthesized<dsl::Limit<Q>>, NullableOf<Q>>
    where
        Q: SelectQuery + LimitDsl,
        Q::SqlType: IntoNullable,
    {
        ScopedSubselect {
            query: Parenthesized(self.query.limit(1)),
            _sql_type: PhantomData,
        }
    }
}

/// The nullable SQL type of scoped subquery `Q`'s single column.
pub type NullableOf<Q> = <<Q as SelectQuery>::SqlType as IntoNullable>::Nullable;

/// A query in parentheses, for a scalar subquery.
#[derive(Debug, Clone, Copy)]
pub struct Parenthesized<Q>(Q);

impl<Q: SelectQuery> SelectQuery for Parenthesized<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Parenthesized<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Q: QueryId> QueryId for Parenthesized<Q> {
    type QueryId = Parenthesized<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q, ST> AsInExpression<ST> for ScopedSubquery<Q>
where
    Q: SelectQuery<SqlType = ST>,
    ST: SqlType + diesel::expression::TypedExpressionType,
{
    type InExpression = ScopedSubselect<Q, ST>;

    fn as_in_expression(self) -> Self::InExpression {
        ScopedSubselect {
            query: self.query,
            _sql_type: PhantomData,
        }
    }
}

/// A scoped subquery as an expression of SQL type `ST`: the values of an `IN` / `= ANY(...)`,
/// or a single value.
#[derive(Debug, Clone, Copy)]
pub struct ScopedSubselect<Q, ST> {
    query: Q,
    _sql_type: PhantomData<ST>,
}

impl<Q, ST> Expression for ScopedSubselect<Q, ST>
where
    Q: SelectQuery,
    ST: SqlType + diesel::expression::TypedExpressionType,
{
    type SqlType = ST;
}

impl<Q, ST: SqlType> InExpression for ScopedSubselect<Q, ST> {
    type SqlType = ST;

    fn is_empty(&self) -> bool {
        false
    }

    fn is_array(&self) -> bool {
        false
    }
}

// A scoped subquery is valid inside any scoped filter: its own filters were checked when it was
// built, and its org filter is inside it. (Like diesel's boxed subqueries, a column it takes
// from an outer table that is not there is an error of PostgreSQL's, not of the compiler's.)
impl<Q, ST, QS> AppearsOnTable<QS> for ScopedSubselect<Q, ST> where Self: Expression {}
impl<Q, ST, QS> SelectableExpression<QS> for ScopedSubselect<Q, ST> where Self: Expression {}

impl<Q, ST, GB> ValidGrouping<GB> for ScopedSubselect<Q, ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<Q, ST> QueryFragment<Pg> for ScopedSubselect<Q, ST>
where
    Q: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        // Like diesel's subselect: `IN`/`= ANY(` supplies the parentheses.
        self.query.walk_ast(out)
    }
}

impl<Q, ST> QueryId for ScopedSubselect<Q, ST>
where
    Q: QueryId,
    ST: 'static,
{
    type QueryId = ScopedSubselect<Q::QueryId, ST>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

/// `EXISTS (<scoped subquery>)`, from [`ScopedSubquery::exists`].
#[derive(Debug, Clone, Copy)]
pub struct ScopedExists<Q> {
    query: Q,
}

impl<Q: SelectQuery> Expression for ScopedExists<Q> {
    type SqlType = Bool;
}

impl<Q, QS> AppearsOnTable<QS> for ScopedExists<Q> where Self: Expression {}
impl<Q, QS> SelectableExpression<QS> for ScopedExists<Q> where Self: Expression {}

impl<Q, GB> ValidGrouping<GB> for ScopedExists<Q> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<Q> QueryFragment<Pg> for ScopedExists<Q>
where
    Q: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("EXISTS (");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Q: QueryId> QueryId for ScopedExists<Q> {
    type QueryId = ScopedExists<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}
