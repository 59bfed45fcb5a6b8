DROP TABLE document_attributes;
DROP TABLE document_words;
DROP TABLE documents;
DROP TABLE invoices;
DROP TABLE activity;
DROP TABLE members;
DROP TABLE orgs;
DROP TABLE plans;
