-- Back to primary keys on `id` alone, with UNIQUE (org_id, id) for the composite foreign keys.
ALTER TABLE deals DROP CONSTRAINT deals_org_id_customer_id_fkey;
ALTER TABLE proposals DROP CONSTRAINT proposals_org_id_customer_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_org_id_customer_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_org_id_deal_id_fkey;

ALTER TABLE customers DROP CONSTRAINT customers_pkey;
ALTER TABLE customers ADD CONSTRAINT customers_pkey PRIMARY KEY (id), ADD CONSTRAINT customers_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE deals DROP CONSTRAINT deals_pkey;
ALTER TABLE deals ADD CONSTRAINT deals_pkey PRIMARY KEY (id), ADD CONSTRAINT deals_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE proposals DROP CONSTRAINT proposals_pkey;
ALTER TABLE proposals ADD CONSTRAINT proposals_pkey PRIMARY KEY (id), ADD CONSTRAINT proposals_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE invoices DROP CONSTRAINT invoices_pkey;
ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (id), ADD CONSTRAINT invoices_org_id_id_key UNIQUE (org_id, id);

ALTER TABLE deals ADD CONSTRAINT deals_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE proposals ADD CONSTRAINT proposals_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE invoices ADD CONSTRAINT invoices_org_id_customer_id_fkey
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id);
ALTER TABLE invoices ADD CONSTRAINT invoices_org_id_deal_id_fkey
    FOREIGN KEY (org_id, deal_id) REFERENCES deals (org_id, id);
