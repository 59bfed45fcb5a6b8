//! The first stage: the statement's tokens as sqlparser reads them must be the tokens
//! PostgreSQL's lexer reads.
//!
//! Invariant: a statement reaches the parse only when, for every construct where the two
//! lexers are known to disagree, it is written in the form both read alike. Otherwise the
//! checker would check a statement the server never runs. Each rule below is such a
//! disagreement, found by attack:
//! - `$` starts a dollar-quoted string for PostgreSQL whenever a tag of letters, digits, `_`
//!   or any non-ASCII byte and a second `$` follow; sqlparser accepts fewer tag characters
//!   (`$€$` is a placeholder and a word to it, the start of a string to the server). Only
//!   `$<digits>` parameters and tags of ASCII letters, digits and `_` pass.
//! - Words sqlparser reads as another dialect's keyword and drops or turns into syntax, where
//!   PostgreSQL reads a name (`customers global`, `customers anti JOIN ..`: an alias to the
//!   server, ClickHouse's `GLOBAL` and Spark's `ANTI JOIN` to sqlparser).
//! - Operator characters: PostgreSQL reads the longest run of `+-*/<>=~!@#%^&|`?` as one
//!   operator (dropping a trailing `+`/`-` unless the run has one of `~!@#%^&|`?`); sqlparser
//!   splits runs its own way (`!=-` is `<>` then `-` to it, one unknown operator to the
//!   server). A run both split alike passes; `==` (which sqlparser takes for `=`) does not.
//! - `U&"name"` and `U&'text'`: one Unicode-escaped token to PostgreSQL, `u & "name"` to
//!   sqlparser (`q.U&"ts_stat"` called `ts_stat(q)` on the server).
//! - A character sqlparser does not know (`Token::Char`), and an unquoted word with a `$`.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::violation::Violation;

/// Words sqlparser drops or reads as syntax where PostgreSQL reads a name (see the module
/// doc). Quoted, each is an ordinary name.
const DROPPED_WORDS: &[&str] = &["anti", "asof", "global", "output", "semi", "straight_join"];

/// PostgreSQL's operator characters (`scan.l`, `op_chars`).
const OP_CHARS: &str = "~!@#^&|`?+-*/%<>=";

/// Characters that keep a trailing `+`/`-` in an operator (`scan.l`).
const KEEPS_TRAILING_SIGN: &str = "~!@#^&|`?%";

/// Refuses `sql` where sqlparser's tokens are not PostgreSQL's.
pub(crate) fn same_tokens_as_postgresql(sql: &str) -> Result<(), Violation> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Violation::Unparsable(e.to_string()))?;
    let lines = LineStarts::new(sql);
    // Source texts of adjacent operator tokens (nothing between them).
    let mut run: Vec<&str> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let text = lines.slice(sql, t.span.start, t.span.end);
        token(&t.token)?;
        // `ORDER BY x USING <operator>`: the operator is whatever token follows, never checked.
        if let Token::Word(w) = &t.token
            && w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("using")
            && let Some(next) = tokens[i + 1..]
                .iter()
                .find(|n| !matches!(n.token, Token::Whitespace(_)))
        {
            let operator_next = match &next.token {
                Token::Word(n) => {
                    n.quote_style.is_none() && n.value.eq_ignore_ascii_case("operator")
                }
                other => {
                    let text = lines.slice(sql, next.span.start, next.span.end);
                    !text.is_empty() && text.chars().all(|c| OP_CHARS.contains(c))
                        || matches!(other, Token::Placeholder(_) | Token::SingleQuotedString(_))
                }
            };
            if operator_next {
                return Err(Violation::UnsupportedExpression(
                    "`USING <operator>` in an ORDER BY (sort with ASC or DESC)".into(),
                ));
            }
        }
        // `U&"ts_stat"` is one identifier to PostgreSQL (Unicode escapes) and `u & "ts_stat"`
        // to sqlparser: `q.U&"ts_stat"` is the call `ts_stat(q)` to the server.
        if let Token::Word(w) = &t.token
            && w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("u")
            && tokens
                .get(i + 1)
                .is_some_and(|n| n.token == Token::Ampersand && n.span.start == t.span.end)
        {
            return Err(Violation::UnsupportedExpression(
                "`U&` touching a name or string (PostgreSQL reads a Unicode-escaped name or \
                 string, the checker's parser `u & ...`; write the name plainly)"
                    .into(),
            ));
        }
        if !text.is_empty() && text.chars().all(|c| OP_CHARS.contains(c)) {
            run.push(text);
        } else {
            operator_run(&run)?;
            run.clear();
        }
    }
    operator_run(&run)?;
    // The catch-all: every token boundary as PostgreSQL's lexer draws it.
    let server = crate::pglex::token_ranges(sql).map_err(|what| {
        Violation::UnsupportedExpression(format!("{what}, which the check cannot verify"))
    })?;
    let ours: Vec<(usize, usize)> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .filter_map(|t| {
            Some((
                lines.offset(sql, t.span.start)?,
                lines.offset(sql, t.span.end)?,
            ))
        })
        .collect();
    if let Some(k) = (0..server.len().max(ours.len())).find(|&k| server.get(k) != ours.get(k)) {
        let at = server.get(k).or(ours.get(k)).map_or(0, |r| r.0);
        let snippet: String = sql.get(at..).unwrap_or_default().chars().take(24).collect();
        return Err(Violation::UnsupportedExpression(format!(
            "text that PostgreSQL cuts into tokens otherwise than the checker's parser, at \
             `{snippet}`"
        )));
    }
    Ok(())
}

/// The rules for one token on its own.
fn token(token: &Token) -> Result<(), Violation> {
    let refuse = |what: String| Err(Violation::UnsupportedExpression(what));
    // PostgreSQL cuts every identifier to 63 bytes (NAMEDATALEN - 1): two names that differ
    // only after that are one name to the server and two to the check (a qualifier the check
    // takes for an unknown table is the alias of a FROM function, and `alias.f` the call
    // `f(alias)`).
    if let Token::Word(w) = token
        && w.value.len() > 63
    {
        return refuse(format!(
            "a name of {} bytes (PostgreSQL cuts names to 63 bytes, so the server would read \
             another name than the check); use a shorter one",
            w.value.len()
        ));
    }
    match token {
        Token::Word(w) if w.quote_style.is_none() => {
            let lower = w.value.to_ascii_lowercase();
            if DROPPED_WORDS.contains(&lower.as_str()) {
                return refuse(format!(
                    "the word `{}` unquoted (the checker's parser would drop it or read it as \
                     syntax where PostgreSQL reads a name; quote it, `\"{lower}\"`, or choose \
                     another alias)",
                    w.value
                ));
            }
            if w.value.contains('$') {
                return refuse(format!(
                    "the name `{}` with a `$` unquoted (quote it)",
                    w.value
                ));
            }
            Ok(())
        }
        Token::Placeholder(p) => {
            let digits = p.strip_prefix('$').unwrap_or_default();
            let numbered = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            if numbered || p == "$org" {
                Ok(())
            } else {
                refuse(format!(
                    "`{p}`, which PostgreSQL may read as the start of a dollar-quoted string: \
                     parameters are `$1`, `$2`, ...; a dollar-quote tag is ASCII letters, digits \
                     and `_`"
                ))
            }
        }
        Token::DollarQuotedString(d) => match &d.tag {
            Some(tag)
                if !tag.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                refuse(format!(
                    "the dollar-quote tag `${tag}$` (a tag is ASCII letters, digits and `_`, \
                     not starting with a digit)"
                ))
            }
            _ => Ok(()),
        },
        Token::DoubleEq => refuse(
            "the operator `==` (the checker's parser reads it as `=`, PostgreSQL as an operator \
             of its own; write `=`)"
                .into(),
        ),
        Token::Char(c) => refuse(format!(
            "the character `{c}` where the checker's parser expects none"
        )),
        _ => Ok(()),
    }
}

/// Refuses a run of adjacent operator tokens that PostgreSQL's lexer splits otherwise.
fn operator_run(run: &[&str]) -> Result<(), Violation> {
    // One token too: sqlparser reads `>--` and `>/*` as one operator, PostgreSQL as `>` and
    // the start of a comment (code to one, comment to the other).
    if run.is_empty() {
        return Ok(());
    }
    let joined = run.concat();
    if postgresql_operators(&joined) == run {
        return Ok(());
    }
    Err(Violation::UnsupportedExpression(format!(
        "the operator characters `{joined}` without spaces, which PostgreSQL splits into \
         operators otherwise than the checker's parser (put spaces between the operators)"
    )))
}

/// How PostgreSQL's lexer splits a run of operator characters into operators (`scan.l`,
/// the `{operator}` rule): the longest run, cut before an embedded `/*` or `--`, then a
/// trailing `+`/`-` dropped (all of them) unless the operator has a character of
/// [`KEEPS_TRAILING_SIGN`].
fn postgresql_operators(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut n = rest.len();
        for start in ["/*", "--"] {
            if let Some(i) = rest.find(start) {
                n = n.min(i);
            }
        }
        if n == 0 {
            // A comment starts here: the tokens after it are not operators at all.
            out.push(rest);
            break;
        }
        let candidate = &rest[..n];
        if n > 1
            && candidate.ends_with(['+', '-'])
            && !candidate[..n - 1]
                .chars()
                .any(|c| KEEPS_TRAILING_SIGN.contains(c))
        {
            while n > 1 && rest[..n].ends_with(['+', '-']) {
                n -= 1;
            }
        }
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// Byte offsets of the starts of the lines of a text, to turn sqlparser's (line, column)
/// locations (1-based, columns in characters) into slices.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    fn offset(&self, text: &str, at: Location) -> Option<usize> {
        let line = usize::try_from(at.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let start = *self.0.get(line)?;
        let rest = text.get(start..)?;
        Some(
            start
                + rest
                    .char_indices()
                    .nth(column)
                    .map_or(rest.len(), |(i, _)| i),
        )
    }

    /// The text between two locations; empty when either is unknown.
    fn slice<'t>(&self, text: &'t str, start: Location, end: Location) -> &'t str {
        match (self.offset(text, start), self.offset(text, end)) {
            (Some(a), Some(b)) if a <= b => text.get(a..b).unwrap_or_default(),
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_longer_than_postgresql_keeps_is_refused() {
        let q = "q".repeat(63);
        // To the server `{q}y` and `{q}x` are both `{q}`: the alias of the FROM function,
        // and `{q}y.ts_stat` the call `ts_stat({q})`.
        let sql = format!(
            "SELECT {q}y.ts_stat::text AS t FROM unnest(ARRAY[$2::text]) AS {q}x WHERE $1::uuid IS NOT NULL"
        );
        assert!(
            matches!(crate::story::run(&sql), Err(Violation::UnsupportedExpression(m)) if m.contains("cuts names to 63 bytes")),
            "{:?}",
            crate::story::run(&sql)
        );
        let quoted =
            format!("SELECT \"{q}y\".id FROM customers AS \"{q}x\" WHERE \"{q}x\".org_id = $1");
        assert!(matches!(
            crate::story::run(&quoted),
            Err(Violation::UnsupportedExpression(_))
        ));
        // 63 bytes are kept whole.
        let alias = "c".repeat(63);
        assert_eq!(
            crate::story::run(&format!(
                "SELECT {alias}.name FROM customers {alias} WHERE {alias}.org_id = $1"
            )),
            Ok(())
        );
    }
    use crate::story::run;

    fn refused(sql: &str) -> bool {
        matches!(run(sql), Err(Violation::UnsupportedExpression(_)))
    }

    #[test]
    fn a_dollar_quote_tag_the_two_lexers_read_differently_is_refused() {
        // To sqlparser `$` and the word `€$`; to PostgreSQL the start of a string that hides
        // the org predicate.
        assert!(refused(
            "SELECT c.name, $€$ FROM customers c WHERE c.org_id = $1 --$€$ FROM customers c"
        ));
        assert!(refused(
            "SELECT $€$ --$€$, set_config('tenant.org_id', $1, true)\n"
        ));
        assert!(refused(
            "SELECT $1 FROM customers WHERE org_id = $1 AND name = $é$x$é$"
        ));
        // Plain tags and parameters pass.
        assert_eq!(
            run("SELECT $q$it's$q$, $$x$$ FROM customers WHERE org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn a_unicode_escaped_name_is_refused() {
        assert!(refused(
            r#"SELECT (q.u&"ts_stat")::text FROM unnest(ARRAY['SELECT 1']) AS q(u) WHERE $1::uuid IS NOT NULL"#
        ));
        assert!(refused(
            r#"SELECT U&"\0073et_config"('a', 'b', true) FROM customers WHERE org_id = $1"#
        ));
        // A spaced `u & x` is an operator to both.
        assert_eq!(
            run("SELECT c.u & 1 FROM (SELECT 1 AS u) AS c WHERE $1::uuid IS NOT NULL"),
            Ok(())
        );
    }

    #[test]
    fn an_operator_that_swallows_a_comment_start_is_refused() {
        assert!(refused(
            "SELECT c.name FROM customers c WHERE (SELECT 1 ORDER BY 1 USING >-- ) IS NOT NULL \
             AND c.org_id = $1 AND (SELECT 1 ORDER BY 1 USING >\n) IS NOT NULL"
        ));
        assert!(refused(
            "SELECT c.name FROM customers c WHERE (SELECT 1 ORDER BY 1 USING >/*, ' */) IS NOT NULL \
             --\n-- ') IS NOT NULL AND c.org_id = $1"
        ));
        assert!(refused(
            "SELECT name FROM customers WHERE org_id = $1 ORDER BY name USING <"
        ));
        assert!(refused(
            "SELECT name FROM customers WHERE org_id = $1 ORDER BY name USING OPERATOR(pg_catalog.<)"
        ));
        // USING of a join or a DELETE is not an ordering.
        assert_eq!(
            run(
                "SELECT 1 FROM customers c JOIN invoices i USING (org_id) WHERE c.org_id = $1 AND i.org_id = $1"
            ),
            Ok(())
        );
        assert_eq!(postgresql_operators(">--"), [">", "--"]);
    }

    #[test]
    fn words_the_parser_reads_as_join_syntax_are_refused() {
        for sql in [
            "SELECT anti.name FROM customers anti JOIN (SELECT $1::uuid AS org_id) AS customers \
             ON true WHERE customers.org_id = $1",
            "SELECT semi.name FROM customers semi JOIN (SELECT $1::uuid AS org_id) AS customers \
             ON true WHERE customers.org_id = $1",
        ] {
            assert!(refused(sql), "{sql}");
        }
    }

    #[test]
    fn operator_runs_are_split_as_postgresql_splits_them() {
        assert_eq!(postgresql_operators("=-"), ["=", "-"]);
        assert_eq!(postgresql_operators("<>-"), ["<>", "-"]);
        assert_eq!(postgresql_operators("*-+"), ["*", "-", "+"]);
        assert_eq!(postgresql_operators("!=-"), ["!=-"]);
        assert_eq!(postgresql_operators("^-"), ["^-"]);
        assert!(refused(
            "SELECT name FROM customers WHERE org_id = $1 AND 1 !=-1"
        ));
        assert!(refused(
            "SELECT name FROM customers WHERE org_id = $1 AND 2 ^-1 > 0"
        ));
        assert!(refused("SELECT name FROM customers WHERE org_id == $1"));
        // sqlparser reads `<>-` as one operator, PostgreSQL as `<>` and `-`.
        assert!(refused(
            "SELECT name FROM customers WHERE org_id = $1 AND 2<>-2"
        ));
        // What both read alike passes.
        assert_eq!(
            run("SELECT name FROM customers WHERE org_id = $1 AND 1=-1 OR org_id = $1"),
            Err(Violation::MissingOrgPredicate {
                table: "customers".into()
            })
        );
        assert_eq!(
            run("SELECT name FROM customers WHERE org_id = $1 AND 2*-1 < 0"),
            Ok(())
        );
    }
}
