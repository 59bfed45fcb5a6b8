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
        // A sleep is allowed only on a line marked as emulating a network's latency (the
        // benchmarks' delayed link), never to wait for something to happen.
        let sleeps = text
            .lines()
            .enumerate()
            .filter(|(i, l)| {
                l.contains("thread::sleep")
                    && !(*i > 0
                        && text.lines().nth(i - 1).is_some_and(|prev| {
                            prev.trim() == "// tidy: latency emulation, not synchronization"
                        }))
            })
            .count();
        assert_eq!(sleeps, 0, "{} sleeps", file.display());
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

/// The README is the front page (at most 12 KB: what it is, the two commands, a quickstart,
/// links), and every relative link in the repository's Markdown leads to a file that exists.
#[test]
fn the_readme_is_short_and_every_relative_link_resolves() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
    let mut files = Vec::new();
    text_files(&root(), &mut files);
    let mut broken = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let dir = file.parent().unwrap();
            if !dir.join(target).exists() {
                broken.push(format!(
                    "{}: {target}",
                    file.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}

/// The variants of `pub enum {name}` in `file`.
fn variants(file: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let start = text
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("no enum {name} in {file}"));
    let body = &text[start..];
    let end = body.find("\n}").unwrap();
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let rest = l.strip_prefix("    ")?;
            let first = rest.chars().next()?;
            if !first.is_ascii_uppercase() {
                return None;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            Some(name)
        })
        .collect()
}

/// The README's quickstart compiles: every code line of its block stands verbatim in
/// `crates/tenant-cli/tests/quickstart.rs`, which the test suite builds.
#[test]
fn the_readme_quickstart_is_the_code_a_test_compiles() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("## Quickstart").expect("a Quickstart section");
    let block = &readme[start..];
    let open = block.find("```rust").unwrap();
    let body = &block[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = &body[..body.find("```").unwrap()];
    let compiled =
        std::fs::read_to_string(root().join("crates/tenant-cli/tests/quickstart.rs")).unwrap();
    let compiled: Vec<&str> = compiled.lines().map(str::trim).collect();
    let code: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    assert!(code.len() > 8, "{code:#?}");
    let missing: Vec<&&str> = code.iter().filter(|l| !compiled.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "README quickstart lines no test compiles: {missing:#?}"
    );
}

/// The variants of `pub enum {name}` in `file` that docs/troubleshooting.md does not name as
/// `` `{name}::{Variant}` ``.
fn undocumented(guide: &str, file: &str, name: &str) -> Vec<String> {
    let found = variants(file, name);
    assert!(!found.is_empty(), "{name} in {file}: no variants found");
    found
        .into_iter()
        .filter(|v| !guide.contains(&format!("`{name}::{v}`")))
        .map(|v| format!("{name}::{v}"))
        .collect()
}

/// Every error tenant-core returns has its cause and fix in docs/troubleshooting.md.
#[test]
fn every_error_of_tenant_core_is_in_the_troubleshooting_guide() {
    let guide = std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap();
    let mut missing = Vec::new();
    for (file, name) in [
        ("crates/tenant-core/src/error.rs", "TenantError"),
        ("crates/tenant-core/src/error.rs", "Timeout"),
        ("crates/tenant-core/src/startup.rs", "UnsafeConfig"),
        ("crates/tenant-core/src/org_id.rs", "OrgIdError"),
        ("crates/tenant-core/src/manager.rs", "ManagerError"),
    ] {
        assert!(variants(file, name).len() > 1, "{name}");
        missing.extend(undocumented(&guide, file, name));
    }
    assert!(
        missing.is_empty(),
        "not in docs/troubleshooting.md: {missing:?}"
    );
}

/// The public error enums of the library crates: every top-level `pub enum ...Error` in
/// `crates/*/src` (tenant-testkit, test support that is not published, aside), and the error
/// enums whose names do not say so. `(file, enum)`, the file relative to the root.
fn library_error_enums() -> Vec<(String, String)> {
    let mut enums = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.file_name().is_some_and(|n| n == "tenant-testkit") || !dir.join("src").is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("pub enum ") else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.ends_with("Error") {
                    let relative = file.strip_prefix(root()).unwrap();
                    enums.push((relative.to_string_lossy().into_owned(), name));
                }
            }
        }
    }
    for (file, name) in [
        ("crates/tenant-core/src/error.rs", "Timeout"),
        ("crates/tenant-core/src/startup.rs", "UnsafeConfig"),
        ("crates/tenant-sqlcheck/src/violation.rs", "Violation"),
    ] {
        enums.push((file.to_owned(), name.to_owned()));
    }
    enums.sort();
    enums
}

/// Every variant of every public error enum of a library crate (the SQL checker's
/// `Violation`, tenant-schema's `AuditError`, tenant-probe's, tenant-ops' `OpsError`,
/// tenant-cli's `CliError` and `GenError`, tenant-core's, and any new one) has its cause and
/// fix in docs/troubleshooting.md.
#[test]
fn every_error_of_every_library_crate_is_in_the_troubleshooting_guide() {
    let guide = std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap();
    let enums = library_error_enums();
    let names: Vec<&str> = enums.iter().map(|(_, name)| name.as_str()).collect();
    for expected in [
        "TenantError",
        "OrgIdError",
        "ManagerError",
        "Violation",
        "AuditError",
        "ProbeError",
        "OpsError",
        "CliError",
        "GenError",
    ] {
        assert!(names.contains(&expected), "{expected} not found: {names:?}");
    }
    let missing: Vec<String> = enums
        .iter()
        .flat_map(|(file, name)| undocumented(&guide, file, name))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/troubleshooting.md: {missing:?}"
    );
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

/// The modules of the crate whose sources are in `src`, each with the modules of the same
/// crate its code names (`crate::a::b`, `use crate::{a, b::c}`, `super::x`), outside
/// comments and outside its `#[cfg(test)] mod tests`.
fn module_references(src: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |file: &Path| -> Vec<String> {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        parts
    };
    let modules: Vec<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let known = |path: &[String]| -> Option<String> {
        // The longest prefix of `path` that is a module file.
        (0..=path.len())
            .rev()
            .map(|n| &path[..n])
            .find(|p| modules.iter().any(|m| m.as_slice() == *p))
            .map(|p| p.join("::"))
    };
    let mut out = std::collections::BTreeMap::new();
    for (file, module) in files.iter().zip(&modules) {
        let text = std::fs::read_to_string(file).unwrap();
        let text = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let code: String = text
            .lines()
            .map(|l| match l.find("//") {
                // A comment, unless the `//` is in a string (a URL).
                Some(i) if !l[..i].contains('"') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut refs = Vec::new();
        let word = |s: &str| -> Vec<String> {
            s.split("::")
                .map(|p| {
                    p.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|p| !p.is_empty())
                .collect()
        };
        for (i, _) in code.match_indices("crate::") {
            if code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `tenant_crate::`, not `crate::`
            }
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                refs.extend(inner.split(',').map(|p| word(p.trim())));
            } else {
                refs.push(word(rest));
            }
        }
        for (i, _) in code.match_indices("super::") {
            if code[..i].ends_with("super::") {
                continue;
            }
            let parent = &module[..module.len().saturating_sub(1)];
            let mut path = parent.to_vec();
            path.extend(word(&code[i + "super::".len()..]));
            refs.push(path);
        }
        let me = module.join("::");
        let mut targets: Vec<String> = refs
            .iter()
            .filter_map(|r| known(r))
            // The module itself and its ancestors (the facades that declare it) are not
            // imports between files.
            .filter(|t| *t != me && !(t.is_empty() || me.starts_with(&format!("{t}::"))))
            .collect();
        targets.sort();
        targets.dedup();
        out.insert(me, targets);
    }
    out
}

/// A circle in `graph`, if there is one.
fn circle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// No two files of a crate import each other, directly or around a circle: each crate's
/// modules are layered (a module may use its ancestors, the facades that declare it).
#[test]
fn no_file_imports_a_file_that_imports_it() {
    let mut sources = Vec::new();
    for dir in ["crates", "examples"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let src = entry.unwrap().path().join("src");
            if src.is_dir() {
                sources.push(src);
            }
        }
    }
    sources.push(root().join("xtask/src"));
    let circles: Vec<String> = sources
        .iter()
        .filter_map(|src| {
            circle(&module_references(src))
                .map(|c| format!("{}: {}", src.display(), c.join(" -> ")))
        })
        .collect();
    assert!(circles.is_empty(), "{circles:#?}");
}

#[test]
fn the_circle_check_sees_a_circle_through_crate_paths_groups_and_super() {
    let dir = std::env::temp_dir().join(format!("tidy-circle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::write(dir.join("lib.rs"), "//! x\nmod a;\nmod m;\npub use a::A;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "//! x\nuse crate::{m::b::B, a::A};\n").unwrap();
    std::fs::write(dir.join("m/mod.rs"), "//! x\nmod b;\n").unwrap();
    std::fs::write(
        dir.join("m/b.rs"),
        "//! see crate::nothing\n// crate::a in a comment\nfn f() { super::c::g() }\n",
    )
    .unwrap();
    std::fs::write(dir.join("m/c.rs"), "//! x\nfn g() { crate::a::f() }\n").unwrap();
    let graph = module_references(&dir);
    assert_eq!(graph["a"], ["m::b"]);
    assert_eq!(graph["m::b"], ["m::c"]);
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "m::b".into(), "m::c".into(), "a".into()])
    );
    std::fs::remove_file(dir.join("m/c.rs")).unwrap();
    assert_eq!(circle(&module_references(&dir)), None);
    let _ = std::fs::remove_dir_all(&dir);
}
