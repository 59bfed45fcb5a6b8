//! The diesel schema of the patterns (`migrations/2026-12-05-150000_saas_schema`). The tenant
//! registry that marks these tables is in `lib.rs`.
//!
//! The database's primary keys lead with the org column (no uniqueness across orgs); the tables
//! here declare `id` where `joinable!` or `find` want one column, which is unique within an org,
//! and the scoped DSL adds the org to every statement.

diesel::table! {
    /// Plans: global reference data, written by the migrations.
    plans (code) {
        /// Key, e.g. `team`.
        code -> Text,
        /// Display name.
        name -> Text,
        /// Price per month in cents.
        monthly_cents -> BigInt,
        /// Days of trial a new org gets.
        trial_days -> Integer,
    }
}

diesel::table! {
    /// Organizations. An org sees only its own row: its org column is `id`.
    orgs (id) {
        /// The org's id.
        id -> Uuid,
        /// Display name.
        name -> Text,
        /// The plan's code.
        plan -> Text,
        /// When the trial ends, if there is one.
        trial_ends_on -> Nullable<Date>,
        /// When it signed up.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// The people of an org.
    members (id) {
        /// Owning org.
        org_id -> Uuid,
        /// Key.
        id -> Uuid,
        /// Login, unique within the org.
        email -> Text,
        /// owner, admin or member.
        role -> Text,
    }
}

diesel::table! {
    /// An org's activity feed.
    activity (id) {
        /// Owning org.
        org_id -> Uuid,
        /// Key.
        id -> Uuid,
        /// What happened, as a code.
        kind -> Text,
        /// What happened, for people.
        detail -> Text,
        /// When.
        at -> Timestamptz,
    }
}

diesel::table! {
    /// Invoices.
    invoices (id) {
        /// Owning org.
        org_id -> Uuid,
        /// Key.
        id -> Uuid,
        /// Number, unique within the org.
        number -> Text,
        /// Total in cents.
        total_cents -> BigInt,
        /// Due date.
        due_on -> Date,
        /// open, paid or overdue.
        status -> Text,
        /// The day the nightly job found it overdue.
        overdue_since -> Nullable<Date>,
    }
}

diesel::table! {
    /// Searchable documents. The generated `tsv` column is left out: it is only ever read in
    /// SQL (`search.rs`), never loaded.
    documents (id) {
        /// Owning org.
        org_id -> Uuid,
        /// Key.
        id -> Uuid,
        /// Title.
        title -> Text,
        /// Text.
        body -> Text,
        /// Custom fields, a JSON object of strings.
        attrs -> Jsonb,
    }
}

diesel::table! {
    /// The words of each document (the lexemes of its `tsv`): the full-text index the
    /// application role can use under row-level security.
    document_words (document_id, lexeme) {
        /// Owning org.
        org_id -> Uuid,
        /// A lexeme of the document's `tsv`.
        lexeme -> Text,
        /// The document.
        document_id -> Uuid,
    }
}

diesel::table! {
    /// The custom fields of each document (the string pairs of its `attrs`): the jsonb index
    /// the application role can use under row-level security.
    document_attributes (document_id, key, value) {
        /// Owning org.
        org_id -> Uuid,
        /// A top-level key of `attrs`.
        key -> Text,
        /// Its value.
        value -> Text,
        /// The document.
        document_id -> Uuid,
    }
}

diesel::joinable!(members -> orgs (org_id));
diesel::joinable!(invoices -> orgs (org_id));
diesel::joinable!(orgs -> plans (plan));
diesel::allow_tables_to_appear_in_same_query!(
    plans,
    orgs,
    members,
    activity,
    invoices,
    documents,
    document_words,
    document_attributes
);
