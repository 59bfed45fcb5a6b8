use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;

fn titles_like_any_org(pool: &TenantPool, org: OrgId) {
    let mut s = pool.begin(org).unwrap();
    // The same table, but read by plain diesel: every org's titles.
    let every_title = deals::table.select(deals::title);
    let _: Vec<String> = s
        .load(
            s.query(deals::table)
                .filter(deals::title.eq_any(every_title))
                .select(deals::title),
        )
        .unwrap();
}

fn main() {}
