//! PostgreSQL 15's lexer, as far as token boundaries go (`src/backend/parser/scan.l`): where
//! each token of a statement starts and ends. The lexical stage compares these boundaries with
//! sqlparser's, so that a text the two lexers cut differently (a string to one, code to the
//! other) never reaches the parse.
//!
//! Invariant: every byte of the text is either inside exactly one token here or is whitespace
//! or a comment, cut by PostgreSQL's rules: identifiers (`[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*`),
//! quoted identifiers, strings (`'..'`, `E'..'`, `N'..'`, with PostgreSQL's continuation of
//! `'a'` newline `'b'` into one string), dollar-quoted strings, parameters, numbers, the two-
//! character tokens (`::`, `..`, `:=`, `=>`), operators (the longest run of operator
//! characters, cut before `/*` or `--`, trailing `+`/`-` dropped unless the run has one of
//! `~!@#%^&|`?`), and single characters. What PostgreSQL 15 would refuse to lex, and forms
//! the checker does not take at all (`U&`, `B''`, `X''`, `UESCAPE`-able strings, a vertical
//! tab), is an error here.

/// Byte ranges of the tokens of `sql` as PostgreSQL cuts them; an error names what it would
/// refuse (or what the checker does not take).
pub(crate) fn token_ranges(sql: &str) -> Result<Vec<(usize, usize)>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // Whitespace (PostgreSQL 15: space, tab, newline, carriage return, form feed).
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') {
            i += 1;
            continue;
        }
        if c == b'\x0b' {
            return Err("a vertical tab, which PostgreSQL 15 does not take for whitespace".into());
        }
        if b[i..].starts_with(b"--") {
            i = line_end(b, i);
            continue;
        }
        if b[i..].starts_with(b"/*") {
            i = block_comment_end(b, i)?;
            continue;
        }
        let start = i;
        i = match c {
            b'\'' => quoted_string(b, i + 1, false)?,
            b'"' => quoted_identifier(b, i + 1)?,
            b'$' => dollar(b, i)?,
            b'0'..=b'9' => number(b, i)?,
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => number(b, i)?,
            _ if ident_start(c) => {
                let lower = c.to_ascii_lowercase();
                let next = b.get(i + 1).copied();
                match (lower, next) {
                    (b'e', Some(b'\'')) => quoted_string(b, i + 2, true)?,
                    (b'n', Some(b'\'')) => quoted_string(b, i + 2, false)?,
                    (b'b' | b'x', Some(b'\'')) => {
                        return Err("a bit-string literal (B'..' or X'..')".into());
                    }
                    (b'u', Some(b'&')) if matches!(b.get(i + 2), Some(b'\'' | b'"')) => {
                        return Err("a Unicode-escaped name or string (U&)".into());
                    }
                    _ => identifier_end(b, i),
                }
            }
            b':' if matches!(b.get(i + 1), Some(b':' | b'=')) => i + 2,
            b'.' if b.get(i + 1) == Some(&b'.') => i + 2,
            _ if is_op_char(c) => operator_end(b, i),
            // Single characters: `,()[].;:` and anything else (PostgreSQL returns it as is).
            _ => i + char_len(b, i),
        };
        out.push((start, i));
    }
    Ok(out)
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn ident_cont(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn is_op_char(c: u8) -> bool {
    b"~!@#^&|`?+-*/%<>=".contains(&c)
}

/// The length of the UTF-8 character at `i` (the text is a `str`, so it is well formed).
fn char_len(b: &[u8], i: usize) -> usize {
    match b[i] {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn line_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
        i += 1;
    }
    i
}

/// After a `/* ... */` comment (they nest).
fn block_comment_end(b: &[u8], mut i: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err("an unterminated /* comment".into())
}

/// After a string whose opening quote ends just before `i`; with `escapes`, a backslash
/// escapes the next byte (`E'..'`). PostgreSQL joins `'a'` and `'b'` separated by whitespace
/// with a newline into one string.
fn quoted_string(b: &[u8], mut i: usize, escapes: bool) -> Result<usize, String> {
    loop {
        match b.get(i) {
            None => return Err("an unterminated string".into()),
            Some(b'\\') if escapes => i += 2,
            Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
            Some(b'\'') => {
                i += 1;
                // A continuation: whitespace with a newline, then another quote.
                let mut j = i;
                let mut newline = false;
                while let Some(&c) = b.get(j) {
                    match c {
                        b'\n' | b'\r' => newline = true,
                        b' ' | b'\t' | b'\x0c' => {}
                        _ => break,
                    }
                    j += 1;
                }
                if newline && b.get(j) == Some(&b'\'') {
                    i = j + 1;
                    continue;
                }
                return Ok(i);
            }
            Some(_) => i += 1,
        }
    }
}

/// After a quoted identifier whose opening quote ends just before `i`.
fn quoted_identifier(b: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        match b.get(i) {
            None => return Err("an unterminated quoted name".into()),
            Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
            Some(b'"') => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// A `$`: a parameter `$n`, or a dollar-quoted string `$tag$ ... $tag$`.
fn dollar(b: &[u8], i: usize) -> Result<usize, String> {
    // `$org`, `tenant_sql!`'s name for the org parameter (rewritten to `$n` before sending).
    if b[i..].starts_with(b"$org") && !b.get(i + 4).copied().is_some_and(ident_cont) {
        return Ok(i + 4);
    }
    let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 {
        let end = i + 1 + digits;
        if b.get(end).copied().is_some_and(ident_cont) {
            return Err("trailing junk after a parameter".into());
        }
        return Ok(end);
    }
    // A tag: [A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*, then `$`.
    let mut j = i + 1;
    if b.get(j).copied().is_some_and(ident_start) {
        j += 1;
        while b
            .get(j)
            .copied()
            .is_some_and(|c| ident_start(c) || c.is_ascii_digit())
        {
            j += 1;
        }
    }
    if b.get(j) != Some(&b'$') {
        return Err("a `$` that starts neither a parameter nor a dollar-quoted string".into());
    }
    let delimiter = &b[i..=j];
    let body = j + 1;
    let close = b[body..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
        .ok_or("an unterminated dollar-quoted string")?;
    Ok(body + close + delimiter.len())
}

/// After a number: digits, a decimal point, an exponent; a letter, `_` or `$` right after
/// is PostgreSQL 15's "trailing junk" error. `1..2` is `1` then `..`.
fn number(b: &[u8], mut i: usize) -> Result<usize, String> {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else {
            return Err("trailing junk after a number".into());
        }
    }
    if b.get(i).copied().is_some_and(ident_cont) {
        return Err("trailing junk after a number".into());
    }
    Ok(i)
}

fn identifier_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(ident_cont) {
        i += 1;
    }
    i
}

/// After an operator starting at `i` (scan.l's `{operator}` rule).
fn operator_end(b: &[u8], i: usize) -> usize {
    let mut end = i;
    while b.get(end).copied().is_some_and(is_op_char) {
        end += 1;
    }
    let run = &b[i..end];
    let mut n = run.len();
    for start in [&b"/*"[..], &b"--"[..]] {
        if let Some(p) = run.windows(2).position(|w| w == start) {
            n = n.min(p);
        }
    }
    // An operator starting with a comment start cannot happen: the comment rules come first.
    n = n.max(1);
    if n > 1
        && matches!(run[n - 1], b'+' | b'-')
        && !run[..n - 1].iter().any(|c| b"~!@#^&|`?%".contains(c))
    {
        while n > 1 && matches!(run[n - 1], b'+' | b'-') {
            n -= 1;
        }
    }
    i + n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        token_ranges(sql)
            .unwrap()
            .into_iter()
            .map(|(a, b)| &sql[a..b])
            .collect()
    }

    #[test]
    fn tokens_are_cut_as_postgresql_cuts_them() {
        assert_eq!(
            texts(r#"SELECT "c"."org_id", $1, 'it''s', $q$x$q$ FROM c WHERE a::int >= -1.5e3"#),
            [
                "SELECT",
                "\"c\"",
                ".",
                "\"org_id\"",
                ",",
                "$1",
                ",",
                "'it''s'",
                ",",
                "$q$x$q$",
                "FROM",
                "c",
                "WHERE",
                "a",
                "::",
                "int",
                ">=",
                "-",
                "1.5e3"
            ]
        );
        // A dollar-quote tag of any non-ASCII bytes.
        assert_eq!(texts("SELECT $€$ x $€$"), ["SELECT", "$€$ x $€$"]);
        // `>--` is `>` and a comment; `!=-` one operator; `=-` two.
        assert_eq!(texts("a >-- x\n b"), ["a", ">", "b"]);
        assert_eq!(texts("a !=- b =- c"), ["a", "!=-", "b", "=", "-", "c"]);
        // 'a' newline 'b' is one string.
        assert_eq!(texts("SELECT 'a'\n'b'"), ["SELECT", "'a'\n'b'"]);
        assert_eq!(texts("SELECT E'\\'' x"), ["SELECT", "E'\\''", "x"]);
        assert_eq!(texts("SELECT 1..2"), ["SELECT", "1", "..", "2"]);
    }

    #[test]
    fn what_postgresql_or_the_checker_refuses_to_lex_is_an_error() {
        for sql in [
            "SELECT U&\"x\"",
            "SELECT B'101'",
            "SELECT 1abc",
            "SELECT $1x",
            "SELECT $ x",
            "SELECT 'open",
            "SELECT /* open",
            "SELECT\x0b1",
        ] {
            assert!(token_ranges(sql).is_err(), "{sql:?}");
        }
    }
}
