-- No uniqueness across orgs, primary keys included. A primary key on `id` alone is an existence
-- oracle: `INSERT ... ON CONFLICT (id) DO NOTHING` with another org's id inserts nothing, and
-- `DO UPDATE` fails on row-level security, so either tells that the id exists in some org. With
-- (org_id, id) a row of another org never conflicts. The UNIQUE (org_id, id) constraints the
-- composite foreign keys referenced become the primary keys (the foreign keys are re-created
-- against them), so no index is added.
ALTER TABLE deals DROP CONSTRAINT deals_org_id_customer_id_fkey;
ALTER TABLE proposals DROP CONSTRAINT proposals_org_id_customer_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_org_id_customer_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_org_id_deal_id_fkey;

ALTER TABLE customers DROP CONSTRAINT customers_pkey, DROP CONSTRAINT customers_org_id_id_key;
ALTER TABLE customers ADD CONSTRAINT customers_pkey PRIMARY KEY (org_id, id);
ALTER TABLE deals DROP CONSTRAINT deals_pkey, DROP CONSTRAINT deals_org_id_id_key;
ALTER TABLE deals ADD CONSTRAINT deals_pkey PRIMARY KEY (org_id, id);
ALTER TABLE proposals DROP CONSTRAINT proposals_pkey, DROP CONSTRAINT proposals_org_id_id_key;
ALTER TABLE proposals ADD CONSTRAINT proposals_pkey PRIMARY KEY (org_id, id);
ALTER TABLE invoices DROP CONSTRAINT invoices_pkey, DROP CONSTRAINT invoices_org_id_id_key;
ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (org_id, id);

ALTER TABLE deals ADD CONSTRAINT deals_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE proposals ADD CONSTRAINT proposals_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE invoices ADD CONSTRAINT invoices_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE invoices ADD CONSTRAINT invoices_org_id_deal_id_fkey
    FOREIGN KEY (org_id, deal_id) REFERENCES deals (org_id, id);
