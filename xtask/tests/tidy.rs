//! Tidy: the project's rules that a machine can check (after rust-analyzer's tidy test).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["crates", "examples", "xtask", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "tidy found too few files: {files:?}");
    files
}

fn is_compile_test_case(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.contains("/tests/compile-fail/") || s.contains("/tests/pass/")
}

#[test]
fn every_module_starts_with_module_docs() {
    let missing: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|p| !is_compile_test_case(p))
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` module doc: {missing:?}"
    );
}

/// docs/design.md invariant 1: only tenant-core touches a raw database connection.
#[test]
fn only_tenant_core_touches_a_raw_connection_among_the_library_crates() {
    for krate in ["tenant-lint", "tenant-schema", "tenant-probe", "tenant-ops"] {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in [
                "PgConnection",
                "::establish(",
                "ConnectionManager",
                "r2d2::",
                "batch_execute",
            ] {
                assert!(
                    !text.contains(needle),
                    "{} uses `{needle}`: only tenant-core may",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn no_test_is_ignored_and_none_sleeps_to_synchronize() {
    for file in all_rust_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        if file.ends_with("tidy.rs") {
            continue;
        }
        assert!(
            !text.contains("#[ignore"),
            "{} ignores a test",
            file.display()
        );
        assert!(!text.contains("thread::sleep"), "{} sleeps", file.display());
        assert!(
            !text.contains("```ignore"),
            "{} has a doc example that is never compiled",
            file.display()
        );
    }
}

#[test]
fn compile_fail_cases_are_named_as_sentences_and_have_expected_output() {
    let dir = root().join("crates/tenant-lint/tests/compile-fail");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            cases += 1;
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let words: Vec<&str> = stem.split('_').collect();
            assert!(
                words.len() >= 5
                    && words.iter().all(|w| w
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
                "{stem} is not a sentence in snake_case"
            );
            assert!(
                path.with_extension("stderr").exists(),
                "{stem} has no .stderr"
            );
        }
    }
    assert!(
        cases >= 5,
        "expected the compile-fail suite, found {cases} cases"
    );
}

#[test]
fn architecture_md_has_an_invariant_and_an_api_boundary_for_every_library_crate() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let heading = format!("### {name}\n");
        let start = text
            .find(&heading)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no section `### {name}`"));
        let section = &text[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        assert!(
            section.contains("**Invariant**"),
            "{name}: no **Invariant** note"
        );
        assert!(
            section.contains("**API boundary**"),
            "{name}: no **API boundary** note"
        );
    }
}

#[test]
fn readme_gives_the_two_commands_and_ci_runs_the_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo xtask demo"));
    assert!(readme.contains("cargo xtask test"));
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("cargo xtask test"));
}

#[test]
fn the_toolchain_is_pinned() {
    let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    assert!(toolchain.contains("channel = \"1.95.0\""), "{toolchain}");
}

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                text_files(&path, out);
            }
        } else if ["rs", "md", "sql", "snap", "toml", "json", "sh"]
            .iter()
            .any(|e| name.ends_with(&format!(".{e}")))
            || name == "run"
        {
            out.push(path);
        }
    }
}

/// The repository stands alone: nothing it ships (code, docs, migrations, evidence snapshots,
/// CI) cites a file outside it. The design card and the threat model are `docs/design.md` and
/// `docs/threat-model.md`.
#[test]
fn nothing_cites_a_file_outside_the_repository() {
    let root = root();
    for doc in ["docs/design.md", "docs/threat-model.md"] {
        assert!(root.join(doc).is_file(), "{doc} is missing");
    }
    // Spelled in pieces, so that this file does not cite them either.
    let outside = [
        ["THREATS", ".md"].concat(),
        ["DESIGN", ".md"].concat(),
        ["..", "/shared"].concat(),
    ];
    let mut files = Vec::new();
    text_files(&root, &mut files);
    assert!(files.len() > 50, "tidy found too few files");
    let citing: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            outside
                .iter()
                .find(|o| text.contains(o.as_str()))
                .map(|o| format!("{} cites {o}", p.strip_prefix(&root).unwrap_or(p).display()))
        })
        .collect();
    assert!(citing.is_empty(), "{citing:#?}");
}
