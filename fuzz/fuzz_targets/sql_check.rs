//! Fuzzes the SQL scope checker (`tenant_sql!` and the check before every statement): any text
//! gets a verdict without a panic, and a verdict is the same when asked twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_sqlcheck::{Tables, check};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let tables = Tables::new([
        ("invoices", Some("org_id")),
        ("customers", Some("org_id")),
        ("orgs", Some("id")),
        ("currencies", None),
    ]);
    let is_org = |p: &str| p == "$1";
    let first = check(sql, &tables, &is_org);
    assert_eq!(first, check(sql, &tables, &is_org));
});
