//! Quoting for the SQL the probe writes. The probe's statements carry literals (synthetic org
//! ids and values it generated itself), never data read from other orgs.

/// `name` as a quoted identifier; `value` as a string literal (the migration generator's
/// quoting: one implementation for every statement the crates write).
pub(crate) use tenant_schema::pg::{ident, literal as string};

/// `value` (text, or NULL) as a literal of SQL type `ty`.
pub(crate) fn literal(value: Option<&str>, ty: &str) -> String {
    match value {
        Some(v) => format!("{}::{ty}", string(v)),
        None => format!("NULL::{ty}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(string("it's"), "'it''s'");
        assert_eq!(literal(Some("x"), "text"), "'x'::text");
        assert_eq!(literal(None, "uuid"), "NULL::uuid");
    }
}
