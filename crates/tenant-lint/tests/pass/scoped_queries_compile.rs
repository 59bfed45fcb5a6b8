use tenant_core::{OrgId, TenantPool};
use two_companies::schema::*;
use diesel::prelude::*;
use tenant_core::TenantError;

fn story(pool: &TenantPool, org: OrgId) -> Result<(), TenantError> {
    pool.with_org(org, |s| {
        let _overdue: Vec<(uuid::Uuid, String)> = s.load(
            s.query(invoices::table)
                .filter(invoices::paid_on.is_null().or(invoices::total_cents.gt(0)))
                .order(invoices::due_on.asc())
                .limit(10)
                .offset(0)
                .select((invoices::id, invoices::number)),
        )?;
        let _n: i64 = s.get_result(s.query(deals::table).count())?;
        let _eur: Option<String> =
            s.optional(s.read_global(currencies::table).filter(currencies::code.eq("EUR")).select(currencies::name))?;
        s.execute(s.update(invoices::table).filter(invoices::number.eq("INV-1")).set(invoices::paid_on.eq(None::<chrono::NaiveDate>)))?;
        s.execute(s.delete(proposals::table).filter(proposals::title.eq("draft")))?;
        s.execute(s.insert(orgs::table, orgs::name.eq("Acme")))?;
        Ok(())
    })
}

fn main() {}
