//! The diesel schema of the story, as `diesel print-schema` writes it. The tenant registry
//! that marks these tables is in `lib.rs`; this file is shared with the plain-diesel twin
//! (`examples/two-companies-plain`), so both build the same schema.
//!
//! The database's primary keys are `(org_id, id)` (no uniqueness across orgs); the tables here
//! declare `id` because `joinable!` needs a key of one column, and `id` is unique within an org,
//! which is all a scoped join needs: the scoped DSL ANDs the org predicate into every join.

diesel::table! {
    /// Currencies: global, shared by every org.
    currencies (code) {
        /// ISO 4217 code.
        code -> Text,
        /// Display name.
        name -> Text,
    }
}

diesel::table! {
    /// Organizations. An org sees only its own row: its org column is `id`.
    orgs (id) {
        /// The org's id.
        id -> Uuid,
        /// Display name.
        name -> Text,
        /// When it was created.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// An org's customers.
    customers (id) {
        /// Key.
        id -> Uuid,
        /// Owning org.
        org_id -> Uuid,
        /// Display name.
        name -> Text,
        /// Contact address, unique within the org.
        email -> Text,
    }
}

diesel::table! {
    /// Sales deals.
    deals (id) {
        /// Key.
        id -> Uuid,
        /// Owning org.
        org_id -> Uuid,
        /// The customer (same org).
        customer_id -> Uuid,
        /// Title.
        title -> Text,
        /// Amount in cents.
        amount_cents -> BigInt,
        /// Currency code.
        currency -> Text,
        /// open, won or lost.
        stage -> Text,
        /// When it closed.
        closed_on -> Nullable<Date>,
    }
}

diesel::table! {
    /// Proposals drafted for customers.
    proposals (id) {
        /// Key.
        id -> Uuid,
        /// Owning org.
        org_id -> Uuid,
        /// The customer (same org).
        customer_id -> Uuid,
        /// Title.
        title -> Text,
        /// Text of the proposal.
        body -> Text,
        /// Total in cents.
        total_cents -> BigInt,
        /// Currency code.
        currency -> Text,
        /// Who (or what) drafted it.
        drafted_by -> Text,
        /// When.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Invoices.
    invoices (id) {
        /// Key.
        id -> Uuid,
        /// Owning org.
        org_id -> Uuid,
        /// The customer (same org).
        customer_id -> Uuid,
        /// The deal invoiced, if any (same org).
        deal_id -> Nullable<Uuid>,
        /// Invoice number, unique within the org.
        number -> Text,
        /// Total in cents.
        total_cents -> BigInt,
        /// Currency code.
        currency -> Text,
        /// Due date.
        due_on -> Date,
        /// When it was paid.
        paid_on -> Nullable<Date>,
    }
}

diesel::joinable!(customers -> orgs (org_id));
diesel::joinable!(deals -> customers (customer_id));
diesel::joinable!(invoices -> customers (customer_id));
diesel::joinable!(proposals -> customers (customer_id));
diesel::joinable!(deals -> currencies (currency));
diesel::joinable!(invoices -> currencies (currency));
diesel::allow_tables_to_appear_in_same_query!(
    currencies, orgs, customers, deals, proposals, invoices
);
