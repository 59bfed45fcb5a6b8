//! Seeding the two synthetic orgs: one row per tenant table and org, with no per-table code
//! from the user. Values come from the column types (enum labels, `varchar` limits, `IN (...)`
//! checks respected); defaults are left to the database; foreign keys take the parent row of
//! the same org (parents first, composite keys column by column) or an existing row of a
//! global table. A table whose constraints the generator cannot satisfy takes a seeder the
//! user registers; one that still cannot be seeded is reported, with its dependents.

use std::collections::{BTreeMap, HashMap};

use tenant_core::admin::{ProbeOutcome, ProbeSession};
use uuid::Uuid;

use crate::ProbeError;
use crate::schema::{Column, TableInfo};
use crate::sql::{ident, literal};

/// A seeded row: column name to its value as text (`None` for NULL).
pub type Row = BTreeMap<String, Option<String>>;

/// What seeding produced.
#[derive(Debug, Default)]
pub struct Seed {
    /// Org A's row of each seeded table.
    pub a: HashMap<String, Row>,
    /// Org B's row of each seeded table.
    pub b: HashMap<String, Row>,
    /// Tables that could not be seeded, with why.
    pub unseedable: Vec<(String, String)>,
    /// Tables in the order they were seeded (parents first).
    pub order: Vec<String>,
}

/// Sets the session's org, transaction-locally, as tenant-core does (signed, when the
/// session has a key).
pub(crate) fn set_org(session: &mut ProbeSession, org: Option<Uuid>) -> Result<(), ProbeError> {
    let org = org
        .map(tenant_core::OrgId::try_from)
        .transpose()
        .map_err(|e| ProbeError::Session(e.to_string()))?;
    match session.set_org(org)? {
        ProbeOutcome::Ran { .. } => Ok(()),
        ProbeOutcome::Refused { sqlstate, message } => Err(ProbeError::Session(format!(
            "setting the org context was refused: {sqlstate} {message}"
        ))),
    }
}

/// Orders tables so that every table comes after the tenant tables it references.
pub fn parents_first(tables: &[TableInfo]) -> Vec<&TableInfo> {
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let parents = |t: &TableInfo| -> Vec<String> {
        t.foreign_keys()
            .map(|k| unqualified(&k.parent))
            .filter(|p| *p != t.name && names.contains(&p.as_str()))
            .collect()
    };
    let mut done: Vec<&TableInfo> = Vec::new();
    let mut left: Vec<&TableInfo> = tables.iter().collect();
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|t| parents(t).iter().all(|p| done.iter().any(|d| &d.name == p)));
        // A cycle: take the next one; its reference to a later table is left NULL if it can be.
        let i = ready.unwrap_or(0);
        done.push(left.remove(i));
    }
    done
}

/// `public.customers` -> `customers`; the probe works in the search path's schema.
pub fn unqualified(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_owned()
}

/// The first value a `col = ANY (ARRAY[...])` (an `IN (...)`) check allows for `column`.
fn allowed_by_check(table: &TableInfo, column: &str) -> Option<String> {
    for k in table.constraints.iter().filter(|k| k.kind == "c") {
        let def = &k.definition;
        for (i, _) in def.match_indices(" = ANY (ARRAY[") {
            let before = def[..i].trim_end_matches(')');
            let name = before
                .rsplit(['(', ' '])
                .next()
                .unwrap_or("")
                .trim_matches('"');
            if name != column {
                continue;
            }
            let rest = &def[i + " = ANY (ARRAY[".len()..];
            let start = rest.find('\'')?;
            let tail = &rest[start + 1..];
            let end = tail.find('\'')?;
            return Some(tail[..end].to_owned());
        }
    }
    None
}

/// A generated value for `column`, as SQL; `None` when the type is unknown.
fn generate(table: &TableInfo, column: &Column, tag: &str) -> Option<String> {
    if let Some(v) = allowed_by_check(table, &column.name) {
        return Some(literal(Some(&v), &column.ty));
    }
    if let Some(label) = &column.enum_label {
        return Some(literal(Some(label), &column.ty));
    }
    let unique = Uuid::new_v4().simple().to_string();
    let number = u32::from_str_radix(&unique[..4], 16).unwrap_or(7) % 30_000 + 1;
    let text = match column.base.as_str() {
        "uuid" => Uuid::new_v4().to_string(),
        "text" | "varchar" | "bpchar" | "citext" | "name" => {
            let full = format!("probe {tag} {unique}");
            let count = full.chars().count();
            match column.max_len.and_then(|n| usize::try_from(n).ok()) {
                // Keep the random tail: it is what makes the value unique.
                Some(n) if count > n => full.chars().skip(count - n).collect(),
                _ => full,
            }
        }
        "int2" | "int4" | "int8" | "numeric" | "float4" | "float8" | "money" | "oid" => {
            number.to_string()
        }
        "bool" => "true".into(),
        "date" => "2026-01-01".into(),
        "timestamp" | "timestamptz" => "2026-01-01 00:00:00+00".into(),
        "time" | "timetz" => "12:00:00".into(),
        "interval" => "1 day".into(),
        "json" | "jsonb" => "{}".into(),
        "bytea" => "\\x00".into(),
        "inet" | "cidr" => "192.0.2.1".into(),
        "macaddr" => "08:00:2b:01:02:03".into(),
        base if base.starts_with('_') => "{}".into(),
        _ => return None,
    };
    Some(literal(Some(&text), &column.ty))
}

/// A value like `value` (of a key column) but new: a fresh uuid, a number moved by a random
/// amount, or the text with a random part where checks least often look: after it (so
/// `LIKE 'T-%'` formats still hold), or, for an address with `@`, before it (so
/// `'%@%.%'`-style checks still hold). Within a `varchar(n)` limit the value is cut, never
/// the random part.
fn varied(column: &Column, value: &str) -> String {
    let token = Uuid::new_v4().simple().to_string();
    match column.base.as_str() {
        "uuid" => Uuid::new_v4().to_string(),
        "int2" | "int4" | "int8" | "numeric" => {
            let n: i64 = value.parse().unwrap_or(0);
            let step = i64::from(u16::from_str_radix(&token[..4], 16).unwrap_or(1)) % 9_000 + 1;
            (n % 20_000 + step).to_string()
        }
        _ => {
            let tag = &token[..8];
            let limit = column.max_len.and_then(|n| usize::try_from(n).ok());
            let room = limit.map_or(usize::MAX, |n| n.saturating_sub(tag.len()));
            let kept: String = value.chars().take(room).collect();
            let varied = if value.contains('@') {
                format!("{tag}{kept}")
            } else {
                format!("{kept}{tag}")
            };
            // Only a limit shorter than the random part itself cuts into it.
            match limit {
                Some(n) if varied.chars().count() > n => varied.chars().take(n).collect(),
                _ => varied,
            }
        }
    }
}

/// The values of one fresh row of `table` in `org`: column names and SQL expressions, in
/// column order. Foreign keys to tenant tables take the row of `parents` (this org's rows);
/// to other tables, a row of `outside`. With `base` (a seeded row of the table), other
/// columns copy it, key columns varied, so a row a user's seeder made valid stays valid.
/// `overrides` (column to SQL) win over all of it.
pub(crate) fn fresh_row(
    table: &TableInfo,
    org: Uuid,
    parents: &HashMap<String, Row>,
    outside: &HashMap<String, Row>,
    overrides: &BTreeMap<String, String>,
    base: Option<&Row>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let keyed: Vec<&str> = table
        .constraints
        .iter()
        .filter(|k| matches!(k.kind.as_str(), "p" | "u"))
        .flat_map(|k| k.column_list())
        .collect();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for k in table.foreign_keys() {
        let parent = unqualified(&k.parent);
        let (cols, pcols) = (k.column_list(), k.parent_column_list());
        let row = parents.get(&parent).or_else(|| outside.get(&parent));
        for (col, pcol) in cols.iter().zip(&pcols) {
            if *col == table.org_column {
                continue;
            }
            let Some(column) = table.column(col) else {
                continue;
            };
            match row {
                Some(r) if parent != table.name => {
                    let v = r.get(*pcol).cloned().flatten();
                    values.insert((*col).to_owned(), literal(v.as_deref(), &column.ty));
                }
                _ if !column.not_null => {
                    values.insert((*col).to_owned(), literal(None, &column.ty));
                }
                _ => {
                    return Err(format!(
                        "column {col} references {parent}, which has no row to reference: \
                         give {parent} a row, or let the probe add one for the run \
                         ([[global_rows]] table = \"{parent}\" in its configuration, with \
                         --admin-url; docs/probe.md)"
                    ));
                }
            }
        }
    }
    let mut names = Vec::new();
    let mut exprs = Vec::new();
    for column in &table.columns {
        if column.generated {
            continue;
        }
        let expr = if let Some(o) = overrides.get(&column.name) {
            o.clone()
        } else if column.name == table.org_column {
            literal(Some(&org.to_string()), &column.ty)
        } else if let Some(v) = values.get(&column.name) {
            v.clone()
        } else if let Some(Some(v)) = base.and_then(|b| b.get(&column.name)) {
            if keyed.contains(&column.name.as_str()) {
                literal(Some(&varied(column, v)), &column.ty)
            } else {
                literal(Some(v), &column.ty)
            }
        } else if column.has_default {
            continue;
        } else if let Some(v) = generate(table, column, &table.name) {
            v
        } else if !column.not_null {
            literal(None, &column.ty)
        } else {
            return Err(format!(
                "no value generator for column {} of type {}",
                column.name, column.ty
            ));
        };
        names.push(ident(&column.name));
        exprs.push(expr);
    }
    Ok((names, exprs))
}

/// `INSERT INTO table (cols) VALUES (exprs)`.
pub(crate) fn insert_sql(table: &str, names: &[String], exprs: &[String]) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        ident(table),
        names.join(", "),
        exprs.join(", ")
    )
}

/// A row from `row_to_json` text.
pub(crate) fn parse_row(json: &str) -> Result<Row, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a row".into());
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, text)
        })
        .collect())
}

/// One row of each non-tenant table a tenant table references (currencies, ...), read as
/// org A sees them.
fn outside_rows(
    session: &mut ProbeSession,
    tables: &[TableInfo],
) -> Result<HashMap<String, Row>, ProbeError> {
    let tenant: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut out = HashMap::new();
    for k in tables.iter().flat_map(TableInfo::foreign_keys) {
        let parent = unqualified(&k.parent);
        if tenant.contains(&parent.as_str()) || out.contains_key(&parent) {
            continue;
        }
        if let ProbeOutcome::Ran {
            first_row: Some(json),
            ..
        } = session.try_sql(&format!("SELECT * FROM {} LIMIT 1", k.parent), true)?
            && let Ok(row) = parse_row(&json)
        {
            out.insert(parent, row);
        }
    }
    Ok(out)
}

/// Whether `json` (a row an INSERT returned) is a row of `table` in `org`, whole.
fn is_the_inserted_row(
    session: &mut ProbeSession,
    table: &TableInfo,
    org: Uuid,
    json: &str,
) -> Result<bool, ProbeError> {
    let sql = format!(
        "SELECT 1 FROM {t} x WHERE to_jsonb(x) = {row}::jsonb AND x.{col} = {org}",
        t = ident(&table.name),
        row = crate::sql::string(json),
        col = ident(&table.org_column),
        org = literal(Some(&org.to_string()), "uuid"),
    );
    Ok(matches!(
        session.try_sql(&sql, true)?,
        ProbeOutcome::Ran { rows: 1, .. }
    ))
}

/// Seeds org `a` and org `b`, one row per table each. `seeders` maps a table to an
/// `INSERT ... RETURNING *` statement with `$org` where the org goes.
pub fn seed(
    session: &mut ProbeSession,
    tables: &[TableInfo],
    a: Uuid,
    b: Uuid,
    seeders: &HashMap<String, String>,
) -> Result<(Seed, HashMap<String, Row>), ProbeError> {
    let order = parents_first(tables);
    let mut result = Seed {
        order: order.iter().map(|t| t.name.clone()).collect(),
        ..Seed::default()
    };
    set_org(session, Some(a))?;
    let outside = outside_rows(session, tables)?;
    for org in [a, b] {
        set_org(session, Some(org))?;
        for table in &order {
            if result.unseedable.iter().any(|(t, _)| t == &table.name) {
                continue;
            }
            let rows = if org == a { &result.a } else { &result.b };
            let sql = if let Some(custom) = seeders.get(&table.name) {
                Ok(custom.replace("$org", &literal(Some(&org.to_string()), "uuid")))
            } else {
                // A NOT NULL reference to a table that could not be seeded cannot be made.
                let missing = table.foreign_keys().find_map(|k| {
                    let parent = unqualified(&k.parent);
                    let needed = k.column_list().iter().any(|c| {
                        *c != table.org_column && table.column(c).is_some_and(|c| c.not_null)
                    });
                    (needed
                        && parent != table.name
                        && result.unseedable.iter().any(|(t, _)| *t == parent))
                    .then_some(parent)
                });
                match missing {
                    Some(p) => Err(format!("it references {p}, which could not be seeded")),
                    None => fresh_row(table, org, rows, &outside, &BTreeMap::new(), None)
                        .map(|(n, e)| format!("{} RETURNING *", insert_sql(&table.name, &n, &e))),
                }
            };
            let outcome = match sql {
                Ok(sql) => session.try_sql(&sql, true)?,
                Err(why) => {
                    result.unseedable.push((table.name.clone(), why));
                    continue;
                }
            };
            let seeder = seeders.contains_key(&table.name);
            // A row the attacks aim at must be the row in the table: a seeder could return
            // another (a decoy title, a subset of the columns), and every attack would aim
            // where B has nothing.
            let outcome = match outcome {
                ProbeOutcome::Ran {
                    rows: 1,
                    first_row: Some(json),
                } => match is_the_inserted_row(session, table, org, &json)? {
                    true => Ok(json),
                    false => Err(
                        "the row its INSERT returned is not a row of the table in this org: \
                         a seeder must end in RETURNING * and insert exactly one row"
                            .to_owned(),
                    ),
                },
                ProbeOutcome::Ran { rows, .. } => {
                    Err(format!("the insert returned {rows} rows, not 1"))
                }
                ProbeOutcome::Refused { sqlstate, message } => Err(if seeder {
                    format!("the seeder's row was refused ({sqlstate} {message})")
                } else {
                    format!(
                        "the generated row was refused ({sqlstate} {message}); register a seeder for it"
                    )
                }),
            };
            // A seeder is the service's word that the table can be seeded: one that fails is
            // an error, never an attack that did not run (which an expectation could accept).
            let json = match (outcome, seeder) {
                (Ok(json), _) => json,
                (Err(why), true) => {
                    return Err(ProbeError::Seeder {
                        table: table.name.clone(),
                        why,
                    });
                }
                (Err(why), false) => {
                    result.unseedable.push((table.name.clone(), why));
                    continue;
                }
            };
            let row = parse_row(&json).map_err(ProbeError::Session)?;
            if org == a {
                result.a.insert(table.name.clone(), row);
            } else {
                result.b.insert(table.name.clone(), row);
            }
        }
    }
    // A table seeded for A but not for B is of no use to the attacks.
    for (t, _) in &result.unseedable {
        result.a.remove(t);
        result.b.remove(t);
    }
    Ok((result, outside))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Constraint;

    fn column(name: &str, base: &str) -> Column {
        Column {
            name: name.into(),
            ty: base.into(),
            base: base.into(),
            not_null: true,
            has_default: false,
            generated: false,
            enum_label: None,
            max_len: None,
            sequence_default: false,
        }
    }

    fn table(name: &str, fks: &[(&str, &str)]) -> TableInfo {
        TableInfo {
            name: name.into(),
            org_column: "org_id".into(),
            owner: "tenant_owner".into(),
            policies: vec![],
            verifies_tokens: true,
            columns: vec![column("id", "uuid"), column("org_id", "uuid")],
            constraints: fks
                .iter()
                .map(|(col, parent)| Constraint {
                    name: format!("{name}_{col}_fkey"),
                    kind: "f".into(),
                    columns: format!("org_id,{col}"),
                    parent: (*parent).into(),
                    parent_columns: "org_id,id".into(),
                    definition: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn parents_come_before_their_children() {
        let tables = vec![
            table(
                "invoices",
                &[("deal_id", "deals"), ("customer_id", "customers")],
            ),
            table("deals", &[("customer_id", "public.customers")]),
            table("customers", &[]),
        ];
        let order: Vec<&str> = parents_first(&tables)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(order, ["customers", "deals", "invoices"]);
    }

    #[test]
    fn an_in_list_check_gives_its_first_value() {
        let mut t = table("deals", &[]);
        t.constraints.push(Constraint {
            name: "deals_stage_check".into(),
            kind: "c".into(),
            columns: "stage".into(),
            parent: String::new(),
            parent_columns: String::new(),
            definition: "CHECK ((stage = ANY (ARRAY['open'::text, 'won'::text, 'lost'::text])))"
                .into(),
        });
        assert_eq!(allowed_by_check(&t, "stage").as_deref(), Some("open"));
        assert_eq!(allowed_by_check(&t, "title"), None);
    }

    #[test]
    fn a_varchar_value_fits_its_limit_and_an_unknown_type_has_none() {
        let t = table("x", &[]);
        let mut c = column("code", "varchar");
        c.ty = "character varying(6)".into();
        c.max_len = Some(6);
        let v = generate(&t, &c, "x").unwrap_or_default();
        // '<6 chars>'::character varying(6)
        assert_eq!(v.split('\'').nth(1).map(str::len), Some(6), "{v}");
        assert_eq!(generate(&t, &column("shape", "geometry"), "x"), None);
    }

    #[test]
    fn a_varied_key_keeps_a_format_prefix_or_an_address_domain_and_its_limit() {
        let title = column("title", "text");
        let v = varied(&title, "T-1");
        assert!(v.starts_with("T-1") && v.len() == 11, "{v}");
        let e = varied(&title, "ops@example.com");
        assert!(e.ends_with("ops@example.com") && e.len() == 23, "{e}");
        let mut code = column("code", "varchar");
        code.max_len = Some(10);
        let c = varied(&code, "INV-000123");
        assert_eq!(c.chars().count(), 10, "{c}");
        assert!(c.starts_with("IN") && c != "INV-000123", "{c}");
    }

    #[test]
    fn a_json_row_keeps_nulls_and_numbers_as_text() {
        let row = parse_row(r#"{"id":"a","n":5,"gone":null}"#).unwrap_or_default();
        assert_eq!(row.get("n").cloned().flatten().as_deref(), Some("5"));
        assert_eq!(row.get("gone"), Some(&None));
    }
}
