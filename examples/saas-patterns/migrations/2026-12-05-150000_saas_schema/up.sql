-- The schema of the SaaS patterns (examples/saas-patterns). Conventions (docs/design.md): uuid
-- keys, the org column in every primary, unique and foreign key between tenant tables, an index
-- leading with it. Row-level security is added by the generated migration that follows
-- (`cargo run -p saas-patterns --example xtask -- gen`).

-- Reference data every org reads: a global table, written here (an admin step), never by the
-- application role.
CREATE TABLE plans (
    code text PRIMARY KEY CHECK (code ~ '^[a-z]+$'),
    name text NOT NULL,
    monthly_cents bigint NOT NULL CHECK (monthly_cents >= 0),
    trial_days integer NOT NULL CHECK (trial_days >= 0)
);
INSERT INTO plans (code, name, monthly_cents, trial_days) VALUES
    ('free', 'Free', 0, 0),
    ('team', 'Team', 2900, 14),
    ('business', 'Business', 9900, 30);

-- Pattern 1, sign-up: an org is a tenant row whose org column is its own id, so the
-- application role creates it through a scoped handle of the new org, in the same transaction
-- as the org's first rows.
CREATE TABLE orgs (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (name <> ''),
    plan text NOT NULL REFERENCES plans (code),
    trial_ends_on date,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
    org_id uuid NOT NULL REFERENCES orgs (id),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    email text NOT NULL CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, email)
);

-- What happened in an org, in its own feed (sign-up and the nightly job write here).
CREATE TABLE activity (
    org_id uuid NOT NULL REFERENCES orgs (id),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    kind text NOT NULL,
    detail text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

-- Pattern 2, the nightly job: open invoices past their due date become overdue.
CREATE TABLE invoices (
    org_id uuid NOT NULL REFERENCES orgs (id),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    number text NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    due_on date NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'overdue')),
    overdue_since date,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, number)
);
-- The job's scan: one org's open invoices by due date (equalities and a range on plain
-- columns, LEAKPROOF operators, so the index serves them under row-level security).
CREATE INDEX invoices_org_id_status_due_on_idx ON invoices (org_id, status, due_on);

-- Pattern 3, search. `tsv` is what a full-text query matches; `attrs` holds custom fields.
-- Neither gets a GIN index: under row-level security the application role's `@@` and `@>`
-- are not LEAKPROOF, so they run after the policy and no index serves them (docs/patterns.md).
-- The two tables after it are the index the application role can use: one row per word and
-- per custom field, looked up with text equality (LEAKPROOF) in a btree.
CREATE TABLE documents (
    org_id uuid NOT NULL REFERENCES orgs (id),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    title text NOT NULL,
    body text NOT NULL,
    attrs jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attrs) = 'object'),
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE document_words (
    org_id uuid NOT NULL,
    lexeme text NOT NULL,
    document_id uuid NOT NULL,
    PRIMARY KEY (org_id, lexeme, document_id),
    FOREIGN KEY (org_id, document_id) REFERENCES documents (org_id, id) ON DELETE CASCADE
);
CREATE INDEX document_words_org_id_document_id_idx ON document_words (org_id, document_id);

CREATE TABLE document_attributes (
    org_id uuid NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    document_id uuid NOT NULL,
    PRIMARY KEY (org_id, key, value, document_id),
    FOREIGN KEY (org_id, document_id) REFERENCES documents (org_id, id) ON DELETE CASCADE
);
CREATE INDEX document_attributes_org_id_document_id_idx ON document_attributes (org_id, document_id);
