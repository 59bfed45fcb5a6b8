use diesel::prelude::*;
use tenant_core::excluded;
use tenant_core::admin::GlobalWriter;
use tenant_core::{OrgId, TenantError, TenantPool};
use two_companies::schema::*;

#[derive(Insertable)]
#[diesel(table_name = customers)]
struct NewCustomer<'a> {
    name: &'a str,
    email: &'a str,
}

#[derive(AsChangeset, tenant_core::TenantChangeset)]
#[diesel(table_name = deals)]
struct DealChanges<'a> {
    title: Option<&'a str>,
}

// What diesel's AsChangeset leaves out of the SET, TenantChangeset leaves out of the check:
// the primary key, a skipped field (here the org column itself); a renamed and an embedded
// field are checked under their column names.
#[derive(AsChangeset, tenant_core::TenantChangeset)]
#[diesel(table_name = deals, primary_key(id))]
struct DealStage {
    stage: String,
}

#[derive(AsChangeset, tenant_core::TenantChangeset)]
#[diesel(table_name = deals)]
struct DealEdit {
    id: uuid::Uuid,
    #[diesel(skip_update)]
    org_id: uuid::Uuid,
    #[diesel(column_name = title)]
    headline: String,
    #[diesel(embed)]
    stage: DealStage,
}

fn writes(pool: &TenantPool, org: OrgId) -> Result<(), TenantError> {
    pool.with_org(org, |s| {
        let _id: uuid::Uuid =
            s.get_result(s.insert(customers::table, &NewCustomer { name: "a", email: "a@x" }).returning(customers::id))?;
        s.execute(s.insert(customers::table, &NewCustomer { name: "a", email: "a@x" }).on_conflict((customers::org_id, customers::email)).do_update().set(customers::name.eq(excluded(customers::name))))?;
        let _titles: Vec<String> =
            s.load(s.update(deals::table).filter(deals::stage.eq("lost")).set(&DealChanges { title: Some("x") }).returning(deals::title))?;
        let edit = DealEdit { id: uuid::Uuid::nil(), org_id: uuid::Uuid::nil(), headline: "h".into(), stage: DealStage { stage: "won".into() } };
        let _ = (edit.id, edit.org_id);
        s.execute(s.update(deals::table).filter(deals::title.eq("x")).set(&edit))?;
        s.execute(s.update(deals::table).set((deals::title.eq("t"), deals::amount_cents.eq(deals::amount_cents + 1))))?;
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
