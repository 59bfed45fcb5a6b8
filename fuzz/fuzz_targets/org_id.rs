//! Fuzzes `OrgId` parsing: any text either parses to a non-nil id that prints back to itself,
//! or is refused with an error that does not echo the input (errors never carry values).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_core::OrgId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<OrgId>() {
        Ok(id) => {
            assert!(!id.as_uuid().is_nil(), "the nil uuid was accepted");
            assert_eq!(id.to_string().parse::<OrgId>().ok(), Some(id));
        }
        Err(e) => {
            let message = e.to_string();
            let t = text.trim();
            // Text the message has for any input of this length (the example UUID, the
            // wording, the count) is not an echo; anything else of the input must not appear.
            // The count is of the trimmed input, as the parser counts it: an input spelling
            // the message's own opening with that count is not an echo either.
            let template = "#"
                .repeat(t.chars().count())
                .parse::<OrgId>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            if t.len() >= 8 && !template.contains(t) {
                assert!(
                    !message.contains(t),
                    "the error echoes the input: {message}"
                );
            }
        }
    }
});
