//! `EXPLAIN (ANALYZE, FORMAT JSON)` read into the nodes of the plan: what the search test
//! asserts on, and what the search measurement (`examples/measure_search.rs`) times.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::Text;

/// One node of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// `Seq Scan`, `Index Scan`, `Bitmap Index Scan`, ...
    pub node_type: String,
    /// The table it scans, if any.
    pub relation: Option<String>,
    /// The index it uses, if any.
    pub index: Option<String>,
    /// Its index condition, if any.
    pub index_cond: Option<String>,
    /// Its filter, if any.
    pub filter: Option<String>,
}

/// A plan, flattened, with its times.
#[derive(Debug, Clone)]
pub struct Explained {
    /// Every node, depth first.
    pub nodes: Vec<Node>,
    /// The server's execution time, ms.
    pub execution_ms: f64,
    /// The server's planning time, ms.
    pub planning_ms: f64,
}

impl Explained {
    /// Whether some node scans index `index` with a condition that mentions `column`.
    pub fn index_cond_on(&self, index: &str, column: &str) -> bool {
        self.nodes.iter().any(|n| {
            n.node_type.contains("Index")
                && n.index.as_deref() == Some(index)
                && n.index_cond.as_deref().is_some_and(|c| c.contains(column))
        })
    }

    /// Whether some node uses index `index`.
    pub fn uses_index(&self, index: &str) -> bool {
        self.nodes.iter().any(|n| n.index.as_deref() == Some(index))
    }

    /// The tables scanned sequentially.
    pub fn seq_scans(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.node_type == "Seq Scan")
            .filter_map(|n| n.relation.as_deref())
            .collect()
    }

    /// The scan nodes, one line each, for messages and reports.
    pub fn summary(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.relation.is_some() || n.index.is_some())
            .map(|n| {
                let mut line = n.node_type.clone();
                if let Some(r) = &n.relation {
                    line.push_str(&format!(" on {r}"));
                }
                if let Some(i) = &n.index {
                    line.push_str(&format!(" using {i}"));
                }
                if let Some(c) = &n.index_cond {
                    line.push_str(&format!(" [index cond {c}]"));
                }
                if let Some(f) = &n.filter {
                    line.push_str(&format!(" [filter {f}]"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// Runs `EXPLAIN (ANALYZE, FORMAT JSON[, TIMING OFF])` of `sql` with the binds `bind` adds, on
/// `conn`, as whatever role and org `conn`'s transaction has.
pub fn explain(
    conn: &mut PgConnection,
    sql: &str,
    timing: bool,
    bind: impl FnOnce(BoxedSqlQuery<'static, Pg, SqlQuery>) -> BoxedSqlQuery<'static, Pg, SqlQuery>,
) -> Explained {
    let options = if timing {
        "ANALYZE, FORMAT JSON"
    } else {
        "ANALYZE, TIMING OFF, FORMAT JSON"
    };
    let query = diesel::sql_query(format!("EXPLAIN ({options}) {sql}")).into_boxed();
    let rows: Vec<PlanRow> = bind(query).load(conn).unwrap();
    parse(&rows[0].plan)
}

/// Reads the JSON of `EXPLAIN (FORMAT JSON)`.
pub fn parse(json: &str) -> Explained {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let top = &value[0];
    let mut nodes = Vec::new();
    walk(&top["Plan"], &mut nodes);
    Explained {
        nodes,
        execution_ms: top["Execution Time"].as_f64().unwrap_or(f64::NAN),
        planning_ms: top["Planning Time"].as_f64().unwrap_or(f64::NAN),
    }
}

fn walk(plan: &serde_json::Value, out: &mut Vec<Node>) {
    let text = |k: &str| plan[k].as_str().map(str::to_owned);
    out.push(Node {
        node_type: text("Node Type").unwrap_or_default(),
        relation: text("Relation Name"),
        index: text("Index Name"),
        index_cond: text("Index Cond"),
        filter: text("Filter"),
    });
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            walk(child, out);
        }
    }
}
