-- Indexes behind the composite foreign keys (org_id, x_id): PostgreSQL does not create them,
-- and without them deleting a parent (a purge, a restore that replaces an org) checks each
-- child table by scanning all of the org's rows, once per parent row.
CREATE INDEX deals_org_id_customer_id_idx ON deals (org_id, customer_id);
CREATE INDEX proposals_org_id_customer_id_idx ON proposals (org_id, customer_id);
CREATE INDEX invoices_org_id_customer_id_idx ON invoices (org_id, customer_id);
CREATE INDEX invoices_org_id_deal_id_idx ON invoices (org_id, deal_id);
