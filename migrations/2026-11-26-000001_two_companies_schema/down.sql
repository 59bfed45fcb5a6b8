DROP TABLE invoices;
DROP TABLE proposals;
DROP TABLE deals;
DROP TABLE customers;
DROP TABLE orgs;
DROP TABLE currencies;
