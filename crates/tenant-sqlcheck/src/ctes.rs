//! Which CTE names are visible where, as PostgreSQL resolves them.
//!
//! Invariant: a relation name counts as a CTE only inside the scope where PostgreSQL would
//! resolve it to that CTE. A `WITH` list's names are visible in the query's body; in a plain
//! `WITH`, each CTE's own query sees only the CTEs before it; in `WITH RECURSIVE`, every CTE
//! of the list sees them all. A name declared in one scope never hides a real relation in
//! another: `... FROM pg_stat_activity WHERE EXISTS (WITH pg_stat_activity AS (...) ...)` reads
//! the real view, and is refused as unregistered.
//!
//! The walk calls [`CteScopes::enter`] before each query and [`CteScopes::leave`] after it;
//! sqlparser visits a query's `WITH` list before its body, in order.

use sqlparser::ast::Query;

use crate::parse::ident;

/// The CTE scopes open at the current point of a walk.
#[derive(Debug, Default)]
pub(crate) struct CteScopes {
    frames: Vec<Frame>,
}

/// One `WITH` list.
#[derive(Debug)]
struct Frame {
    /// Each CTE's query (by address: the walk hands us the same nodes) and name.
    ctes: Vec<(*const Query, String)>,
    /// How many CTE queries of the list the walk has finished.
    done: usize,
    /// The names visible at this point.
    visible: Vec<String>,
}

impl CteScopes {
    /// Before the walk visits `query`.
    pub(crate) fn enter(&mut self, query: &Query) {
        if let Some(with) = &query.with {
            let ctes: Vec<(*const Query, String)> = with
                .cte_tables
                .iter()
                .map(|c| (std::ptr::from_ref(c.query.as_ref()), ident(&c.alias.name)))
                .collect();
            // WITH RECURSIVE: every name of the list, everywhere in it.
            let visible = if with.recursive {
                ctes.iter().map(|(_, n)| n.clone()).collect()
            } else {
                Vec::new()
            };
            self.frames.push(Frame {
                ctes,
                done: 0,
                visible,
            });
        }
    }

    /// After the walk visited `query`.
    pub(crate) fn leave(&mut self, query: &Query) {
        if query.with.is_some() {
            self.frames.pop();
        }
        // A finished CTE query makes its name visible to the rest of its list and the body.
        if let Some(frame) = self.frames.last_mut()
            && let Some((body, name)) = frame.ctes.get(frame.done)
            && std::ptr::eq(*body, query)
        {
            if !frame.visible.contains(name) {
                frame.visible.push(name.clone());
            }
            frame.done += 1;
        }
    }

    /// Whether `name` resolves to a CTE here.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.frames
            .iter()
            .any(|f| f.visible.iter().any(|n| n == name))
    }
}

#[cfg(test)]
mod tests {
    use crate::story::run;
    use crate::{Violation, check_catalog_only};

    fn unregistered(table: &str) -> Result<(), Violation> {
        Err(Violation::UnregisteredTable {
            table: table.into(),
        })
    }

    #[test]
    fn a_cte_in_one_scope_does_not_hide_a_relation_in_another() {
        assert_eq!(
            run(
                "SELECT count(*) FROM pg_stat_activity WHERE $1::uuid IS NOT NULL \
                 AND EXISTS (WITH pg_stat_activity AS (SELECT 1) SELECT 1)"
            ),
            unregistered("pg_stat_activity")
        );
        assert_eq!(
            run("SELECT (WITH x AS (SELECT 1) SELECT 1) FROM x"),
            unregistered("x")
        );
    }

    #[test]
    fn a_schema_qualified_name_is_never_a_cte() {
        assert_eq!(
            run("WITH pg_stat_activity AS (SELECT 1) \
                 SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE $1::uuid IS NOT NULL"),
            unregistered("pg_catalog.pg_stat_activity")
        );
        // Nor is a tenant table of another schema the registered one.
        assert_eq!(
            run("SELECT name FROM other.customers WHERE org_id = $1"),
            unregistered("other.customers")
        );
        assert_eq!(
            run("SELECT name FROM public.customers WHERE org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn a_plain_cte_does_not_see_itself_or_the_ones_after_it() {
        assert_eq!(
            run("WITH x AS (SELECT * FROM y), y AS (SELECT 1) SELECT * FROM x"),
            unregistered("y")
        );
        assert_eq!(
            run("WITH pg_settings AS (SELECT * FROM pg_settings) SELECT * FROM pg_settings"),
            unregistered("pg_settings")
        );
        assert_eq!(
            run("WITH x AS (SELECT 1 AS n), y AS (SELECT * FROM x) SELECT * FROM y"),
            Ok(())
        );
    }

    #[test]
    fn a_recursive_cte_sees_its_list() {
        assert_eq!(
            run(
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_cte_named_like_a_tenant_table_is_still_checked_as_one() {
        assert_eq!(
            run("WITH invoices AS (SELECT * FROM invoices) SELECT * FROM invoices"),
            Err(Violation::MissingOrgPredicate {
                table: "invoices".into()
            })
        );
    }

    #[test]
    fn the_catalog_check_scopes_ctes_too() {
        assert_eq!(
            check_catalog_only(
                "SELECT * FROM pg_class WHERE EXISTS (WITH invoices AS (SELECT 1) SELECT 1) \
                 AND relname IN (SELECT number FROM invoices)"
            ),
            unregistered("invoices")
        );
    }
}
