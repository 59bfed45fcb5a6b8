-- The schema of the two-companies story (see examples/two-companies).
-- Conventions (docs/design.md): uuid keys, `org_id uuid NOT NULL` on every tenant table, every UNIQUE
-- and every foreign key between tenant tables includes org_id. Row-level security is added by
-- the generated migration that follows this one.

CREATE TABLE currencies (
    code text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name text NOT NULL
);
INSERT INTO currencies (code, name) VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('GBP', 'Pound sterling');

CREATE TABLE orgs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs (id),
    name text NOT NULL,
    email text NOT NULL,
    UNIQUE (org_id, id),
    UNIQUE (org_id, email)
);

CREATE TABLE deals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs (id),
    customer_id uuid NOT NULL,
    title text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency text NOT NULL REFERENCES currencies (code),
    stage text NOT NULL CHECK (stage IN ('open', 'won', 'lost')),
    closed_on date,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id)
);

CREATE TABLE proposals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs (id),
    customer_id uuid NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    currency text NOT NULL REFERENCES currencies (code),
    drafted_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id)
);

CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs (id),
    customer_id uuid NOT NULL,
    deal_id uuid,
    number text NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    currency text NOT NULL REFERENCES currencies (code),
    due_on date NOT NULL,
    paid_on date,
    UNIQUE (org_id, id),
    UNIQUE (org_id, number),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id),
    FOREIGN KEY (org_id, deal_id) REFERENCES deals (org_id, id)
);
