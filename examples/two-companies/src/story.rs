//! The story's units of work, each one scoped transaction.

use chrono::{Datelike, Months, NaiveDate};
use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantPool};
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

/// A new customer; the org comes from the scoped handle.
#[derive(Debug, Insertable)]
#[diesel(table_name = customers)]
pub struct NewCustomer<'a> {
    /// Key.
    pub id: Uuid,
    /// Name.
    pub name: &'a str,
    /// Email.
    pub email: &'a str,
}

/// A new deal; the org comes from the scoped handle.
#[derive(Debug, Insertable)]
#[diesel(table_name = deals)]
pub struct NewDeal<'a> {
    /// Key.
    pub id: Uuid,
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

/// A new invoice; the org comes from the scoped handle.
#[derive(Debug, Insertable)]
#[diesel(table_name = invoices)]
pub struct NewInvoice<'a> {
    /// Key.
    pub id: Uuid,
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

/// A new proposal; the org comes from the scoped handle.
#[derive(Debug, Insertable)]
#[diesel(table_name = proposals)]
pub struct NewProposal<'a> {
    /// Key.
    pub id: Uuid,
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

/// Creates org `name` with a few customers, deals and invoices, all through scoped handles.
/// `flavor` varies the data so the two orgs' rows differ.
pub fn seed_org(
    pool: &TenantPool,
    name: &str,
    flavor: u8,
    today: NaiveDate,
) -> Result<OrgId, TenantError> {
    let org = OrgId::new_random();
    let (q_start, _) = last_quarter(today);
    pool.with_org(org, |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))?;
        let currency = if flavor == 0 { "EUR" } else { "USD" };
        let mut customer_ids = Vec::new();
        for (i, cname) in ["Contoso", "Fabrikam", "Initech"].iter().enumerate() {
            let id = Uuid::now_v7();
            let email = format!("buyer{i}@{}.example", cname.to_lowercase());
            let full = format!("{cname} ({name})");
            s.execute(s.insert(
                customers::table,
                &NewCustomer {
                    id,
                    name: &full,
                    email: &email,
                },
            ))?;
            customer_ids.push(id);
        }
        for i in 0..6u32 {
            let closed = q_start + chrono::Days::new(u64::from(10 + i * 12));
            let stage = if i % 3 == 2 { "lost" } else { "won" };
            let title = format!("{name} deal #{i}");
            let deal = NewDeal {
                id: Uuid::now_v7(),
                customer_id: customer_ids[(i as usize) % 2],
                title: &title,
                amount_cents: 100_000 * i64::from(i + 1) + i64::from(flavor) * 7_000,
                currency,
                stage,
                closed_on: Some(closed),
            };
            s.execute(s.insert(deals::table, &deal))?;
            let number = format!("INV-{flavor}{i:03}");
            let invoice = NewInvoice {
                id: Uuid::now_v7(),
                customer_id: deal.customer_id,
                deal_id: Some(deal.id),
                number: &number,
                total_cents: deal.amount_cents,
                currency,
                // Due 45 days ago down to 5 days from now: the later ones are not overdue yet.
                due_on: today + chrono::TimeDelta::days(i64::from(i) * 10 - 45),
                paid_on: (i % 2 == 0).then_some(today - chrono::Days::new(1)),
            };
            s.execute(s.insert(invoices::table, &invoice))?;
        }
        Ok(org)
    })
}

/// What the digital twin did.
#[derive(Debug, Clone)]
pub struct DraftedProposal {
    /// The proposal's key.
    pub proposal_id: Uuid,
    /// The customer it is for.
    pub customer: String,
    /// The won deals of last quarter it was drafted from (every one the twin saw).
    pub deals: Vec<Deal>,
    /// The proposal's total.
    pub total_cents: i64,
    /// Its currency.
    pub currency: String,
}

/// The digital twin: reads last quarter's won deals and drafts a follow-up proposal for the
/// customer with the most of them. `None` when the org won nothing last quarter.
pub fn digital_twin_draft(
    pool: &TenantPool,
    org: OrgId,
    today: NaiveDate,
) -> Result<Option<DraftedProposal>, TenantError> {
    let (start, end) = last_quarter(today);
    pool.with_org(org, |s| {
        let deals: Vec<Deal> = s.load(
            s.query(deals::table)
                .filter(deals::stage.eq("won"))
                .filter(deals::closed_on.between(start, end))
                .order(deals::closed_on.asc())
                .select(Deal::as_select()),
        )?;
        let Some(customer_id) = most_frequent(deals.iter().map(|d| d.customer_id)) else {
            return Ok(None);
        };
        let customer: String =
            s.get_result(s.query(customers::table).filter(customers::id.eq(customer_id)).select(customers::name))?;
        let currency = deals.first().map(|d| d.currency.clone()).unwrap_or_else(|| "EUR".into());
        let currency_name: String = s.get_result(
            s.read_global(currencies::table).filter(currencies::code.eq(&currency)).select(currencies::name),
        )?;
        let mine: Vec<&Deal> = deals.iter().filter(|d| d.customer_id == customer_id).collect();
        let total_cents = mine.iter().map(|d| d.amount_cents).sum::<i64>() / 10;
        let body = format!(
            "Building on {} deals won last quarter ({}), we propose a follow-up engagement of {} {}.",
            mine.len(),
            mine.iter().map(|d| d.title.as_str()).collect::<Vec<_>>().join(", "),
            money(total_cents),
            currency_name,
        );
        let proposal_id = Uuid::now_v7();
        s.execute(s.insert(
            proposals::table,
            &NewProposal {
                id: proposal_id,
                customer_id,
                title: &format!("Follow-up for {customer}"),
                body: &body,
                total_cents,
                currency: &currency,
                drafted_by: "digital twin",
            },
        ))?;
        Ok(Some(DraftedProposal { proposal_id, customer, deals, total_cents, currency }))
    })
}

/// The chief of staff: every unpaid invoice past its due date, oldest first.
pub fn chief_of_staff_overdue(
    pool: &TenantPool,
    org: OrgId,
    today: NaiveDate,
) -> Result<Vec<Invoice>, TenantError> {
    pool.with_org(org, |s| {
        s.load(
            s.query(invoices::table)
                .filter(invoices::paid_on.is_null())
                .filter(invoices::due_on.lt(today))
                .order(invoices::due_on.asc())
                .select(Invoice::as_select()),
        )
    })
}

/// Formats cents as `12,345.67`.
pub fn money(cents: i64) -> String {
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{grouped}.{:02}", (cents % 100).abs())
}

fn most_frequent(ids: impl Iterator<Item = Uuid>) -> Option<Uuid> {
    let mut counts: Vec<(Uuid, usize)> = Vec::new();
    for id in ids {
        match counts.iter_mut().find(|(k, _)| *k == id) {
            Some((_, n)) => *n += 1,
            None => counts.push((id, 1)),
        }
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_quarter_is_the_previous_calendar_quarter() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(
            last_quarter(d(2026, 11, 26)),
            (d(2026, 7, 1), d(2026, 9, 30))
        );
        assert_eq!(
            last_quarter(d(2026, 1, 1)),
            (d(2025, 10, 1), d(2025, 12, 31))
        );
    }

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(1_234_567), "12,345.67");
        assert_eq!(money(5), "0.05");
    }
}
