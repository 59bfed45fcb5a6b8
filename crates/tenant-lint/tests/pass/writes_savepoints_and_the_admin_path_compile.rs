use diesel::prelude::*;
use diesel::upsert::excluded;
use tenant_core::admin::GlobalWriter;
use tenant_core::{OrgId, TenantError, TenantPool};
use two_companies::schema::*;

#[derive(Insertable)]
#[diesel(table_name = customers)]
struct NewCustomer<'a> {
    name: &'a str,
    email: &'a str,
}

#[derive(AsChangeset)]
#[diesel(table_name = deals)]
struct DealChanges<'a> {
    title: Option<&'a str>,
}

fn writes(pool: &TenantPool, org: OrgId) -> Result<(), TenantError> {
    pool.with_org(org, |s| {
        let _id: uuid::Uuid =
            s.get_result(s.insert(customers::table, &NewCustomer { name: "a", email: "a@x" }).returning(customers::id))?;
        s.execute(s.insert(customers::table, &NewCustomer { name: "a", email: "a@x" }).on_conflict(|i| {
            i.on_conflict((customers::org_id, customers::email)).do_update().set(customers::name.eq(excluded(customers::name)))
        }))?;
        let _titles: Vec<String> =
            s.load(s.update(deals::table).filter(deals::stage.eq("lost")).set(&DealChanges { title: Some("x") }).returning(deals::title))?;
        let _gone: Vec<uuid::Uuid> = s.load(s.delete(proposals::table).returning(proposals::id))?;
        s.savepoint(|s| s.execute(s.delete(proposals::table).filter(proposals::title.eq("draft"))))?;
        Ok(())
    })
}

fn reference_data(url: &str) -> Result<usize, TenantError> {
    let mut w = GlobalWriter::connect(url, &two_companies::REGISTRY, "compile test: reference data")?;
    w.execute(currencies::table, |t| diesel::update(t).filter(currencies::code.eq("EUR")).set(currencies::name.eq("Euro")))
}

fn main() {}
