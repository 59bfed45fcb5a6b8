use tenant_core::admin::GlobalWriter;
use two_companies::schema::invoices;

fn purge(w: &mut GlobalWriter) {
    w.execute(invoices::table, diesel::delete).unwrap();
}

fn main() {}
