use tenant_core::{OrgId, TenantPool};
use two_companies::schema::invoices;

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        org_id -> Uuid,
        entry -> Text,
    }
}

fn entries(pool: &TenantPool, org: OrgId) {
    let s = pool.begin(org).unwrap();
    let _q = s.query(invoices::table).inner_join(audit_log::table);
}

fn main() {}
