//! `lint [PATH]...`: every use of an escape hatch in the service's Rust sources, listed with its
//! file, line and reason.
//!
//! The escape hatches are the APIs that reach past the scoped layer: `raw_connection_unchecked`
//! (the raw connection under a scoped transaction), `GlobalWriter::connect` (writes to global
//! tables), `CatalogReader::connect` (catalog reads for audits), `ProbeSession::connect`
//! (the leak probe's attacker, arbitrary SQL in a transaction that is never committed) and
//! `ClusterAdmin::connect` (Citus shard operations as the cluster's admin). Each
//! takes a written reason; a use whose reason is not a non-empty string literal fails the lint.
//! This is the "code review" half of the application layer, as a tool. Files under `target`
//! and `compile-fail` directories (cases that misuse the hatches on purpose and never build)
//! are not read.

use std::path::{Path, PathBuf};

use crate::{CliError, io_error};

/// An escape hatch: its call pattern and which argument (0-based) is the reason.
/// Each pattern is written in two pieces, so that this file, which the lint reads too, holds
/// no use.
const HATCHES: &[(&str, usize)] = &[
    (concat!("raw_connection_unchecked", "("), 0),
    (concat!("GlobalWriter::connect", "("), 2),
    (concat!("CatalogReader::connect", "("), 1),
    (concat!("ProbeSession::connect", "("), 1),
    (concat!("ClusterAdmin::connect", "("), 1),
];

/// One use of an escape hatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// File, relative to the workspace.
    pub file: String,
    /// 1-based line of the call.
    pub line: usize,
    /// Which hatch.
    pub hatch: &'static str,
    /// The reason, when it is a non-empty string literal.
    pub reason: Option<String>,
}

/// Finds every use in `text` (the contents of `file`), doc-comment examples included.
pub fn scan(file: &str, text: &str) -> Vec<Use> {
    // Doc examples compile too: read them as code, keeping line numbers.
    let code: String = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            t.strip_prefix("///")
                .or_else(|| t.strip_prefix("//!"))
                .map_or(l, |rest| rest.strip_prefix(" #").unwrap_or(rest))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut uses = Vec::new();
    for &(pattern, reason_arg) in HATCHES {
        let mut from = 0;
        while let Some(found) = text[from..].find(pattern) {
            let start = from + found;
            from = start + pattern.len();
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let before = text[line_start..start].trim_start();
            // The definition is not a use.
            if before.contains("fn ") {
                continue;
            }
            let args = arguments(&text[from..]);
            let reason = args.get(reason_arg).and_then(|a| string_literal(a));
            uses.push(Use {
                file: file.to_owned(),
                line: text[..start].matches('\n').count() + 1,
                hatch: pattern.trim_end_matches('('),
                reason,
            });
        }
    }
    uses.sort_by_key(|u| u.line);
    uses
}

/// The top-level, comma-separated arguments of a call whose text starts after its `(`.
fn arguments(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for ch in text.chars() {
        if in_string {
            current.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => {
                in_string = true;
                current.push(ch);
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(ch);
            }
            ')' | ']' | '}' if depth == 0 => {
                args.push(current.trim().to_owned());
                return args;
            }
            ')' | ']' | '}' => {
                depth -= 1;
                current.push(ch);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(ch),
        }
    }
    args
}

/// The contents of `arg` when it is a plain, non-empty string literal.
fn string_literal(arg: &str) -> Option<String> {
    let inner = arg.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.trim().is_empty()).then(|| inner.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == ".git")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Scans the Rust files under each of `paths` (directories or files), naming them relative
/// to `base`; returns the list, a line each, or [`CliError::Lint`] with it when a use has no
/// reason.
///
/// # Errors
/// [`CliError::Io`] when a file cannot be read; [`CliError::Lint`].
pub fn run(paths: &[PathBuf], base: &Path) -> Result<Vec<String>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            rust_files(path, &mut files);
        } else {
            files.push(path.clone());
        }
    }
    // Compile-fail cases misuse the hatches on purpose and never build: not uses.
    files.retain(|p| !p.components().any(|c| c.as_os_str() == "compile-fail"));
    files.sort();
    let mut uses = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let rel = path
            .strip_prefix(base)
            .unwrap_or(path)
            .display()
            .to_string();
        uses.extend(scan(&rel, &text));
    }
    let mut lines = vec![format!(
        "escape hatches: {} uses in {} files scanned",
        uses.len(),
        files.len()
    )];
    let mut missing = 0;
    for u in &uses {
        match &u.reason {
            Some(reason) => lines.push(format!(
                "  {}:{}  {}  \"{reason}\"",
                u.file, u.line, u.hatch
            )),
            None => {
                missing += 1;
                lines.push(format!(
                    "  {}:{}  {}  MISSING REASON",
                    u.file, u.line, u.hatch
                ));
            }
        }
    }
    if missing > 0 {
        return Err(CliError::Lint { missing, lines });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample code for the scanner, with `RAW(` and `WRITER(` standing for two hatches (this
    /// file holds no use of its own: the lint reads it too).
    fn sample(text: &str) -> String {
        text.replace("RAW(", HATCHES[0].0)
            .replace("WRITER(", HATCHES[1].0)
    }

    #[test]
    fn uses_are_found_with_their_reasons_across_lines() {
        let text = sample(
            r#"
fn f(s: &mut S) {
    s.RAW("load the legacy report (no DSL for it)").batch_execute("x");
    let w = WRITER(
        &url,
        &REGISTRY,
        "reference data, ticket OPS-12",
    );
}
"#,
        );
        let uses = scan("a.rs", &text);
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].line, 3);
        assert_eq!(
            uses[0].reason.as_deref(),
            Some("load the legacy report (no DSL for it)")
        );
        assert_eq!(uses[1].hatch, "GlobalWriter::connect");
        assert_eq!(
            uses[1].reason.as_deref(),
            Some("reference data, ticket OPS-12")
        );
    }

    #[test]
    fn a_use_without_a_literal_reason_is_reported() {
        let text = sample("s.RAW(REASON);\ns.RAW(\"\");\nWRITER(&u, &R);");
        let uses = scan("b.rs", &text);
        assert_eq!(uses.len(), 3);
        assert!(uses.iter().all(|u| u.reason.is_none()), "{uses:?}");
    }

    #[test]
    fn doc_examples_count_as_uses() {
        let text =
            sample("/// let w = WRITER(\n///     &url,\n///     &R,\n///     \"why\",\n/// )?;");
        let uses = scan("d.rs", &text);
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].reason.as_deref(), Some("why"));
    }

    #[test]
    fn the_definition_is_not_a_use() {
        let text = sample("    pub fn RAW(&mut self, reason: &'static str) -> &mut PgConnection {");
        assert!(scan("c.rs", &text).is_empty());
    }

    #[test]
    fn this_file_holds_no_use() {
        assert!(scan("lint.rs", include_str!("lint.rs")).is_empty());
    }
}
