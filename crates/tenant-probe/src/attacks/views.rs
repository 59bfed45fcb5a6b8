//! Reads through views (docs/threat-model.md #11): a view runs with its owner's rights unless it has
//! `security_invoker`, so a view owned by a superuser (or a BYPASSRLS role) shows every org.
//! A materialized view has no RLS at all. Every view the application role can read that has
//! an org column is read as A: it must show no row of another org.

use crate::attack::{Accept, Family, Plan};
use crate::schema::ViewInfo;
use crate::sql::ident;

/// The attack on view `v`, read as org `a` (a `uuid` literal).
pub fn plan(v: &ViewInfo, a: &str) -> Plan {
    Plan::new(
        "read_through_view",
        Family::View,
        "#11",
        &v.name,
        format!(
            "SELECT 1 FROM {} WHERE {} IS DISTINCT FROM {a}",
            v.name,
            ident(&v.org_column)
        ),
    )
    .accept(
        vec![Accept::Rows(0), Accept::Sqlstate("42501")],
        "0 rows of other orgs (or no access)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_read_for_other_orgs_rows() {
        let v = ViewInfo {
            name: "public.deal_titles".into(),
            kind: "v".into(),
            org_column: "org_id".into(),
        };
        let p = plan(&v, "'a'::uuid");
        assert_eq!(
            p.sql,
            "SELECT 1 FROM public.deal_titles WHERE \"org_id\" IS DISTINCT FROM 'a'::uuid"
        );
    }
}
