use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantPool};
use two_companies::schema::*;

fn reads(pool: &TenantPool, org: OrgId, stages: &[&str]) -> Result<(), TenantError> {
    pool.with_org(org, |s| {
        let _inner: Vec<(String, String)> = s.load(
            s.query(deals::table)
                .inner_join(customers::table)
                .select((deals::title, customers::name)),
        )?;
        let _left: Vec<(String, Option<String>)> = s.load(
            s.query(deals::table)
                .left_join(customers::table)
                .select((deals::title, customers::name.nullable())),
        )?;
        let _global: Vec<(String, String)> = s.load(
            s.query(invoices::table)
                .inner_join(currencies::table)
                .select((invoices::number, currencies::name)),
        )?;
        let customers_named_a = s.query(customers::table).filter(customers::name.like("A%")).select(customers::id);
        let _in: Vec<String> =
            s.load(s.query(deals::table).filter(deals::customer_id.eq_any(customers_named_a.into_subquery())).select(deals::title))?;
        let with_invoice = s.query(invoices::table).filter(invoices::customer_id.eq(customers::id)).select(invoices::id);
        let _exists: Vec<String> =
            s.load(s.query(customers::table).filter(with_invoice.into_subquery().exists()).select(customers::name))?;
        let mut q = s.query(deals::table).into_boxed();
        for stage in stages {
            q = q.filter(deals::stage.eq(*stage));
        }
        let _dynamic: Vec<String> = s.load(q.select(deals::title))?;
        let _page: Vec<String> = s.load(s.query(deals::table).order(deals::title).paginate(2, 20).select(deals::title))?;
        let _any: bool = s.get_result(s.query(deals::table).filter(deals::stage.eq("won")).exists())?;
        let _per_stage: Vec<(String, i64)> = s.load(
            s.query(deals::table)
                .group_by(deals::stage)
                .having(diesel::dsl::count_star().gt(1))
                .select((deals::stage, diesel::dsl::count_star())),
        )?;
        let _first: Option<String> = s.first(s.query(deals::table).order(deals::title).select(deals::title))?;
        Ok(())
    })
}

fn main() {}
