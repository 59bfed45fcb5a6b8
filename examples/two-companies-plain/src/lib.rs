//! The two-companies story written with plain diesel and hand-written org filters: what a
//! service looks like without tenant-safe, and the baseline that `cargo xtask compile-bench`
//! measures the scoped version against. Nothing here stops a forgotten filter.

#[path = "../../two-companies/src/schema.rs"]
pub mod schema;

/// The same migrations as the scoped example (kept for a like-for-like build).
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../../migrations");

use chrono::{Datelike, Months, NaiveDate};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::schema::{currencies, customers, deals, invoices, orgs, proposals};

/// A deal as the digital twin reads it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deals)]
pub struct Deal {
    /// Key.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Customer.
    pub customer_id: Uuid,
    /// Title.
    pub title: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Currency.
    pub currency: String,
    /// When it closed.
    pub closed_on: Option<NaiveDate>,
}

/// An invoice as the chief of staff reads it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    /// Key.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Invoice number.
    pub number: String,
    /// Total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: String,
    /// Due date.
    pub due_on: NaiveDate,
}

/// A new customer.
#[derive(Debug, Insertable)]
#[diesel(table_name = customers)]
pub struct NewCustomer<'a> {
    /// Key.
    pub id: Uuid,
    /// Owning org, set by hand.
    pub org_id: Uuid,
    /// Name.
    pub name: &'a str,
    /// Email.
    pub email: &'a str,
}

/// A new deal.
#[derive(Debug, Insertable)]
#[diesel(table_name = deals)]
pub struct NewDeal<'a> {
    /// Key.
    pub id: Uuid,
    /// Owning org, set by hand.
    pub org_id: Uuid,
    /// Customer.
    pub customer_id: Uuid,
    /// Title.
    pub title: &'a str,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Currency.
    pub currency: &'a str,
    /// open, won or lost.
    pub stage: &'a str,
    /// When it closed.
    pub closed_on: Option<NaiveDate>,
}

/// A new invoice.
#[derive(Debug, Insertable)]
#[diesel(table_name = invoices)]
pub struct NewInvoice<'a> {
    /// Key.
    pub id: Uuid,
    /// Owning org, set by hand.
    pub org_id: Uuid,
    /// Customer.
    pub customer_id: Uuid,
    /// Deal.
    pub deal_id: Option<Uuid>,
    /// Number.
    pub number: &'a str,
    /// Total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: &'a str,
    /// Due date.
    pub due_on: NaiveDate,
    /// Paid date.
    pub paid_on: Option<NaiveDate>,
}

/// A new proposal.
#[derive(Debug, Insertable)]
#[diesel(table_name = proposals)]
pub struct NewProposal<'a> {
    /// Key.
    pub id: Uuid,
    /// Owning org, set by hand.
    pub org_id: Uuid,
    /// Customer.
    pub customer_id: Uuid,
    /// Title.
    pub title: &'a str,
    /// Body.
    pub body: &'a str,
    /// Total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: &'a str,
    /// Who drafted it.
    pub drafted_by: &'a str,
}

/// The first and last day of the calendar quarter before the one containing `today`.
pub fn last_quarter(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let this_quarter_month = (today.month0() / 3) * 3 + 1;
    let this_start = NaiveDate::from_ymd_opt(today.year(), this_quarter_month, 1).unwrap_or(today);
    let start = this_start
        .checked_sub_months(Months::new(3))
        .unwrap_or(this_start);
    let end = this_start.pred_opt().unwrap_or(this_start);
    (start, end)
}

/// Opens a transaction with the org set, the way a service does it by hand.
fn in_org<T>(
    conn: &mut PgConnection,
    org: Uuid,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|c| {
        c.batch_execute(&format!(
            "SELECT set_config('tenant.org_id', '{org}', true)"
        ))?;
        f(c)
    })
}

/// Creates org `name` with a few customers, deals and invoices.
pub fn seed_org(
    conn: &mut PgConnection,
    name: &str,
    flavor: u8,
    today: NaiveDate,
) -> QueryResult<Uuid> {
    let org = Uuid::new_v4();
    let (q_start, _) = last_quarter(today);
    in_org(conn, org, |c| {
        diesel::insert_into(orgs::table)
            .values((orgs::id.eq(org), orgs::name.eq(name)))
            .execute(c)?;
        let currency = if flavor == 0 { "EUR" } else { "USD" };
        let mut customer_ids = Vec::new();
        for (i, cname) in ["Contoso", "Fabrikam", "Initech"].iter().enumerate() {
            let id = Uuid::now_v7();
            let email = format!("buyer{i}@{}.example", cname.to_lowercase());
            let full = format!("{cname} ({name})");
            diesel::insert_into(customers::table)
                .values(&NewCustomer {
                    id,
                    org_id: org,
                    name: &full,
                    email: &email,
                })
                .execute(c)?;
            customer_ids.push(id);
        }
        for i in 0..6u32 {
            let closed = q_start + chrono::Days::new(u64::from(10 + i * 12));
            let stage = if i % 3 == 2 { "lost" } else { "won" };
            let title = format!("{name} deal #{i}");
            let deal = NewDeal {
                id: Uuid::now_v7(),
                org_id: org,
                customer_id: customer_ids[(i as usize) % 2],
                title: &title,
                amount_cents: 100_000 * i64::from(i + 1) + i64::from(flavor) * 7_000,
                currency,
                stage,
                closed_on: Some(closed),
            };
            diesel::insert_into(deals::table).values(&deal).execute(c)?;
            let number = format!("INV-{flavor}{i:03}");
            diesel::insert_into(invoices::table)
                .values(&NewInvoice {
                    id: Uuid::now_v7(),
                    org_id: org,
                    customer_id: deal.customer_id,
                    deal_id: Some(deal.id),
                    number: &number,
                    total_cents: deal.amount_cents,
                    currency,
                    due_on: today + chrono::TimeDelta::days(i64::from(i) * 10 - 45),
                    paid_on: (i % 2 == 0).then_some(today - chrono::Days::new(1)),
                })
                .execute(c)?;
        }
        Ok(org)
    })
}

/// The digital twin, with every org filter written by hand.
pub fn digital_twin_draft(
    conn: &mut PgConnection,
    org: Uuid,
    today: NaiveDate,
) -> QueryResult<Option<Uuid>> {
    let (start, end) = last_quarter(today);
    in_org(conn, org, |c| {
        let deals: Vec<Deal> = deals::table
            .filter(deals::org_id.eq(org))
            .filter(deals::stage.eq("won"))
            .filter(deals::closed_on.between(start, end))
            .order(deals::closed_on.asc())
            .select(Deal::as_select())
            .load(c)?;
        let Some(first) = deals.first() else {
            return Ok(None);
        };
        let customer_id = first.customer_id;
        let customer: String = customers::table
            .filter(customers::org_id.eq(org))
            .filter(customers::id.eq(customer_id))
            .select(customers::name)
            .get_result(c)?;
        let currency_name: String = currencies::table
            .filter(currencies::code.eq(&first.currency))
            .select(currencies::name)
            .get_result(c)?;
        let total_cents = deals
            .iter()
            .filter(|d| d.customer_id == customer_id)
            .map(|d| d.amount_cents)
            .sum::<i64>()
            / 10;
        let proposal_id = Uuid::now_v7();
        diesel::insert_into(proposals::table)
            .values(&NewProposal {
                id: proposal_id,
                org_id: org,
                customer_id,
                title: &format!("Follow-up for {customer}"),
                body: &format!("A follow-up engagement in {currency_name}."),
                total_cents,
                currency: &first.currency,
                drafted_by: "digital twin",
            })
            .execute(c)?;
        Ok(Some(proposal_id))
    })
}

/// The chief of staff, with the org filter written by hand.
pub fn chief_of_staff_overdue(
    conn: &mut PgConnection,
    org: Uuid,
    today: NaiveDate,
) -> QueryResult<Vec<Invoice>> {
    in_org(conn, org, |c| {
        invoices::table
            .filter(invoices::org_id.eq(org))
            .filter(invoices::paid_on.is_null())
            .filter(invoices::due_on.lt(today))
            .order(invoices::due_on.asc())
            .select(Invoice::as_select())
            .load(c)
    })
}
