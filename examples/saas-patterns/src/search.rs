//! Pattern 3: full-text and jsonb search under row-level security that keeps its index.
//!
//! **The problem.** The obvious schema gives `documents` a `tsvector` column with a GIN index
//! and a `jsonb` column with another, and searches with `tsv @@ query` and `attrs @> filter`.
//! As a superuser that is a bitmap index scan. As the application role it reads every row of
//! the org (through the org's index, or the whole table when the org holds much of it):
//! row-level security policies are security barriers, so PostgreSQL runs a condition of the
//! query before them only when its operator is `LEAKPROOF` (it can reveal nothing about the rows
//! the policy would hide, not even by failing). `tsvector @@ tsquery` (`ts_match_vq`) and
//! `jsonb @> jsonb` (`jsonb_contains`) are not, and a condition that must wait for the policy
//! cannot be an index condition (`restriction_is_securely_promotable` in the planner). A
//! composite GIN index with the org column in front (`btree_gin`, `(org_id, tsv)`) changes
//! nothing: the index is then used for `org_id = ..` alone, and `@@` stays a filter over every
//! row of the org. Marking the operators `LEAKPROOF` would make them an oracle on other orgs'
//! rows, and bypassing row-level security gives up the database layer: both are out.
//!
//! **The form that keeps an index.** The conditions an index serves under row-level security
//! are those with `LEAKPROOF` operators: equalities and ranges on plain columns of built-in
//! types, text equality among them (`texteq`). So the search terms are kept as rows, one per
//! word of a document ([`document_words`]: the lexemes of its `tsv`) and one per custom field
//! ([`document_attributes`]: the string pairs of its `attrs`), in tenant tables of their own
//! with a btree primary key that leads with the org column. A search looks up the terms with
//! `lexeme = ANY(<the query's lexemes>)` (index condition, with the org), keeps the documents
//! that have all of them, fetches those by primary key, and checks each with the real operator
//! (`@@`, `@>`). The term tables only narrow the candidates: a stale or forged term row can
//! never make a document match that the operator does not. A missing one would hide its
//! document, which is why the terms are written in the same scoped transaction as the
//! document, here and nowhere else ([`create_documents`], [`update_document`]).
//!
//! **Isolation.** The term tables are ordinary tenant tables: registered, protected by the
//! generated policies, `org_id` in every key, and a composite foreign key
//! `(org_id, document_id) -> documents (org_id, id)`, so a term row can only name a document of
//! its own org (`tests/search.rs` tries to point one at another org's document). The queries are
//! `tenant_sql!`, checked at compile time and before sending: every table constrained to the
//! handle's org.
//!
//! **Cost.** One row per distinct word per document: on the measured data (50,000 documents
//! of 40 words) the word table and its indexes are far larger than a GIN index on `tsv`
//! (numbers in docs/patterns.md), and each document write also writes its terms. In exchange,
//! a selective search reads a few index pages instead of every row of the org. The measurement
//! is `cargo run -p saas-patterns --example measure_search`.
//!
//! Queries use `plainto_tsquery` (every word must match); the candidates are the documents
//! holding every lexeme of the query, which is exactly the set `@@` then confirms.
//!
//! [`document_words`]: crate::schema::document_words
//! [`document_attributes`]: crate::schema::document_attributes

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use tenant_core::{OrgScoped, ScopedConnection, TenantError, tenant_sql};
use uuid::Uuid;

/// A document to create; the org comes from the scoped handle.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    /// Title.
    pub title: &'a str,
    /// Text.
    pub body: &'a str,
    /// Custom fields, each a key and a string value (a key given twice keeps the last value).
    pub attributes: &'a [(&'a str, &'a str)],
}

/// A document a search found.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Found {
    /// Key.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// Owning org (always the handle's).
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    /// Title.
    #[diesel(sql_type = Text)]
    pub title: String,
}

/// The most documents one statement creates ([`create_documents`] splits longer lists): each
/// batch is one `INSERT` of four arrays, then one statement per term table.
pub const MAX_BATCH: usize = 1_000;

/// Creates `docs` in the handle's org, with their search terms, and returns their ids in the
/// same order. Call it inside the scoped transaction that needs them: the terms commit or roll
/// back with the documents.
///
/// # Errors
/// [`TenantError`] from the database (the handle's transaction is then aborted).
pub fn create_documents<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    docs: &[NewDocument<'_>],
) -> Result<Vec<Uuid>, TenantError> {
    let mut all = Vec::with_capacity(docs.len());
    for batch in docs.chunks(MAX_BATCH) {
        let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
        insert_documents(s, &ids, batch)?;
        all.extend(ids);
    }
    Ok(all)
}

/// [`create_documents`] for one document: its id.
///
/// # Errors
/// As [`create_documents`].
pub fn create_document<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    doc: &NewDocument<'_>,
) -> Result<Uuid, TenantError> {
    let id = Uuid::now_v7();
    insert_documents(s, &[id], std::slice::from_ref(doc))?;
    Ok(id)
}

/// One statement for the documents `docs` with ids `ids` (as many), then their terms.
fn insert_documents<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    ids: &[Uuid],
    docs: &[NewDocument<'_>],
) -> Result<(), TenantError> {
    let titles: Vec<&str> = docs.iter().map(|d| d.title).collect();
    let bodies: Vec<&str> = docs.iter().map(|d| d.body).collect();
    let attrs: Vec<String> = docs.iter().map(|d| attributes_json(d.attributes)).collect();
    s.execute_sql(tenant_sql!(
        "INSERT INTO documents (org_id, id, title, body, attrs) \
         SELECT $org, u.id, u.title, u.body, u.attrs::jsonb \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u (id, title, body, attrs)",
        Array<SqlUuid>: ids,
        Array<Text>: &titles,
        Array<Text>: &bodies,
        Array<Text>: &attrs
    ))?;
    index_terms(s, ids)
}

/// Changes document `id`'s title, text and custom fields, and its search terms with them.
/// Returns whether the handle's org has such a document (another org's id changes nothing).
///
/// # Errors
/// [`TenantError`] from the database.
pub fn update_document<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    id: Uuid,
    doc: &NewDocument<'_>,
) -> Result<bool, TenantError> {
    let changed = s.execute_sql(tenant_sql!(
        "UPDATE documents SET title = $2, body = $3, attrs = $4::jsonb \
         WHERE documents.org_id = $org AND documents.id = $1",
        SqlUuid: id,
        Text: doc.title,
        Text: doc.body,
        Text: attributes_json(doc.attributes)
    ))?;
    if changed == 0 {
        return Ok(false);
    }
    s.execute_sql(tenant_sql!(
        "DELETE FROM document_words WHERE document_words.org_id = $org AND document_words.document_id = $1",
        SqlUuid: id
    ))?;
    s.execute_sql(tenant_sql!(
        "DELETE FROM document_attributes \
         WHERE document_attributes.org_id = $org AND document_attributes.document_id = $1",
        SqlUuid: id
    ))?;
    index_terms(s, &[id])?;
    Ok(true)
}

/// Writes the term rows of documents `ids` of the handle's org from what the database stored:
/// the lexemes of `tsv` (computed by the same `to_tsvector` a query's words go through) and
/// the pairs of `attrs`.
fn index_terms<C: ScopedConnection>(s: &mut OrgScoped<C>, ids: &[Uuid]) -> Result<(), TenantError> {
    s.execute_sql(tenant_sql!(
        registry crate::REGISTRY;
        "INSERT INTO document_words (org_id, lexeme, document_id) \
         SELECT $org, w.lexeme, d.id \
         FROM documents d CROSS JOIN LATERAL unnest(tsvector_to_array(d.tsv)) AS w (lexeme) \
         WHERE d.org_id = $org AND d.id = ANY($1)",
        Array<SqlUuid>: ids
    ))?;
    s.execute_sql(tenant_sql!(
        "INSERT INTO document_attributes (org_id, key, value, document_id) \
         SELECT $org, a.key, a.value, d.id \
         FROM documents d CROSS JOIN LATERAL jsonb_each_text(d.attrs) AS a (key, value) \
         WHERE d.org_id = $org AND d.id = ANY($1)",
        Array<SqlUuid>: ids
    ))?;
    Ok(())
}

/// `attributes` as a JSON object of strings.
fn attributes_json(attributes: &[(&str, &str)]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The documents of the handle's org that contain every word of `words` (English stemming,
/// as `plainto_tsquery`), best match first, at most `limit`. Words that are all stop words
/// find nothing.
///
/// Under row-level security this is an index scan of `document_words` on
/// `(org_id, lexeme)` and a primary-key lookup per candidate (`tests/search.rs` asserts it from
/// `EXPLAIN` as the application role). The candidates sit behind `OFFSET 0`, so that `@@` runs
/// on them only: the SQL checker refuses a condition that can fail where PostgreSQL might
/// evaluate it before the org predicate (docs/threat-model.md #34).
///
/// # Errors
/// [`TenantError`] from the database.
pub fn search_documents<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    words: &str,
    limit: i64,
) -> Result<Vec<Found>, TenantError> {
    s.load_sql(tenant_sql!(
        registry crate::REGISTRY;
        "SELECT c.id, c.org_id, c.title FROM \
           (SELECT d.id, d.org_id, d.title, d.tsv FROM documents d \
            WHERE d.org_id = $org \
              AND d.id IN (SELECT w.document_id FROM document_words w \
                           WHERE w.org_id = $org \
                             AND w.lexeme = ANY (tsvector_to_array(to_tsvector('english', $1))) \
                           GROUP BY w.document_id \
                           HAVING count(*) = cardinality(tsvector_to_array(to_tsvector('english', $1)))) \
            OFFSET 0) AS c \
         WHERE c.tsv @@ plainto_tsquery('english', $1) \
         ORDER BY ts_rank(c.tsv, plainto_tsquery('english', $1)) DESC, c.id \
         LIMIT $2",
        Text: words,
        BigInt: limit
    ))
}

/// The documents of the handle's org whose custom field `key` is `value` (`attrs @>
/// {key: value}`), at most `limit`, by id.
///
/// Under row-level security this is an index scan of `document_attributes` on
/// `(org_id, key, value)` and a primary-key lookup per candidate.
///
/// # Errors
/// [`TenantError`] from the database.
pub fn documents_with_attribute<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    key: &str,
    value: &str,
    limit: i64,
) -> Result<Vec<Found>, TenantError> {
    s.load_sql(tenant_sql!(
        "SELECT d.id, d.org_id, d.title FROM documents d \
         WHERE d.org_id = $org \
           AND d.id IN (SELECT a.document_id FROM document_attributes a \
                        WHERE a.org_id = $org AND a.key = $1 AND a.value = $2) \
           AND d.attrs @> jsonb_build_object($1, $2) \
         ORDER BY d.id \
         LIMIT $3",
        Text: key,
        Text: value,
        BigInt: limit
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_a_json_object_of_strings_with_quotes_escaped() {
        assert_eq!(
            attributes_json(&[("status", "open"), ("note", "say \"hi\"")]),
            r#"{"note":"say \"hi\"","status":"open"}"#
        );
        assert_eq!(attributes_json(&[]), "{}");
    }
}
