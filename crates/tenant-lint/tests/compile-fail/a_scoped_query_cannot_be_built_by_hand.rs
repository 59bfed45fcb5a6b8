use tenant_core::OrgId;
use two_companies::schema::*;
use tenant_core::ScopedSelect;

fn forged(org: OrgId) {
    let _q = ScopedSelect { query: invoices::table, org };
}

fn main() {}
