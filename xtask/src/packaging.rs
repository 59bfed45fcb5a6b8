//! What a service needs to depend on the crates like any other: `publish-check` packages and
//! builds every library crate as crates.io would (`cargo publish --workspace --dry-run`), and
//! `diesel-min` checks that the lowest diesel the manifests accept still builds everything.

use std::path::{Path, PathBuf};

/// The lowest diesel (and diesel_migrations) the workspace's `>=2.3, <2.5` accepts.
const DIESEL_MIN: &str = "2.3.0";

/// `cargo publish --workspace --dry-run`: the metadata crates.io asks for, versions on the
/// dependencies between the crates, and each package building on its own.
pub(crate) fn publish_check() -> Result<(), String> {
    clear_packaged_copies()?;
    let mut publish = crate::cargo();
    // --allow-dirty: the check is about what would be packaged, also with local changes.
    publish.args(["publish", "--workspace", "--dry-run", "--allow-dirty"]);
    crate::run(
        "cargo publish --workspace --dry-run (every library crate packages and builds)",
        publish,
    )
}

/// Takes the async path out of the copy at `copy`: diesel-async 0.10, which it is built on,
/// needs diesel 2.4, so with 2.3 tenant-core builds without its `async` feature (an empty
/// feature stays, so that `cfg(feature = "async")` still names one), and tenant-axum, the web
/// example and xtask, which need it, are not in the copy's workspace.
fn without_async_path(copy: &Path) -> Result<(), String> {
    let manifest = copy.join("crates/tenant-core/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let mut dropped = 0;
    let kept: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let t = line.trim_start();
            if [
                "diesel-async",
                "deadpool",
                "tokio",
                "tenant-core = { path = \".\"",
            ]
            .iter()
            .any(|dep| t.starts_with(dep))
            {
                dropped += 1;
                None
            } else if t.starts_with("async = [") {
                Some("async = []".to_owned())
            } else {
                Some(line.to_owned())
            }
        })
        .collect();
    // diesel-async, deadpool, tokio (a dependency and a dev-dependency), the crate itself.
    if dropped != 5 {
        return Err(format!(
            "{}: expected the async path's five dependency lines (diesel-async, deadpool, tokio \
             twice, tenant-core itself), found {dropped}: update `without_async_path` in \
             xtask/src/packaging.rs with the manifest",
            manifest.display()
        ));
    }
    std::fs::write(&manifest, kept.join("\n") + "\n")
        .map_err(|e| format!("writing {}: {e}", manifest.display()))?;
    // The crates built on the async path leave the workspace with it.
    for dir in ["crates/tenant-axum", "examples/two-companies-web"] {
        let dir = copy.join(dir);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    // xtask measures the async path (async-bench, web-bench): it leaves the copy's workspace
    // too. It is not published; what a service builds with diesel 2.3 is checked.
    let root = copy.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&root).map_err(|e| format!("reading {}: {e}", root.display()))?;
    let members = r#"members = ["crates/*", "examples/*", "xtask"]"#;
    if !text.contains(members) {
        return Err(format!(
            "{}: no line `{members}`: update `without_async_path` in xtask/src/packaging.rs",
            root.display()
        ));
    }
    std::fs::write(
        &root,
        text.replace(members, r#"members = ["crates/*", "examples/*"]"#),
    )
    .map_err(|e| format!("writing {}: {e}", root.display()))
}

/// Removes the copies of this workspace's packages that earlier dry runs left in cargo's cache.
/// The dry run verifies each crate against the others through a local registry under the
/// target directory; cargo unpacks those into `$CARGO_HOME/registry/src/-<hash>/` and reuses
/// an unpacked `name-version` as it is, so a later run from the same directory compiled a
/// dependent crate against a stale copy (a module added since was missing). Only local
/// registries' entries (a directory name starting with `-`) of this workspace's packages at
/// this version are removed.
fn clear_packaged_copies() -> Result<(), String> {
    let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    else {
        return Ok(());
    };
    let version = env!("CARGO_PKG_VERSION");
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(registry.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".crate").unwrap_or(&name);
                if stem.starts_with("tenant-") && stem.ends_with(&format!("-{version}")) {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// `cargo check --workspace --all-targets` with diesel and diesel_migrations at
/// [`DIESEL_MIN`], on a copy of the sources under `target/diesel-min` (the lockfile of the
/// workspace stays as it is).
pub(crate) fn diesel_min() -> Result<(), String> {
    let root = crate::workspace();
    let copy = root.join("target/diesel-min/src");
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| format!("removing {}: {e}", copy.display()))?;
    }
    std::fs::create_dir_all(&copy).map_err(|e| format!("creating {}: {e}", copy.display()))?;
    for entry in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "clippy.toml",
        "README.md",
        "crates",
        "examples",
        "xtask",
        "migrations",
    ] {
        copy_tree(&root.join(entry), &copy.join(entry))?;
    }
    without_async_path(&copy)?;
    for package in ["diesel_migrations", "diesel"] {
        let mut update = crate::cargo();
        update
            .args(["update", "-p", package, "--precise", DIESEL_MIN])
            .current_dir(&copy);
        let status = update
            .status()
            .map_err(|e| format!("cargo update -p {package}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo update -p {package} --precise {DIESEL_MIN} failed ({status}): the \
                 manifests no longer accept diesel {DIESEL_MIN}; raise the lower bound in \
                 Cargo.toml and DIESEL_MIN in xtask/src/packaging.rs together"
            ));
        }
    }
    let mut check = crate::cargo();
    check
        .args(["check", "--workspace", "--all-targets"])
        .env("CARGO_TARGET_DIR", root.join("target/diesel-min/target"))
        .current_dir(&copy);
    println!("==> cargo check --workspace --all-targets with diesel {DIESEL_MIN}");
    let status = check.status().map_err(|e| format!("cargo check: {e}"))?;
    status.success().then_some(()).ok_or_else(|| {
        format!(
            "the workspace does not build with diesel {DIESEL_MIN}, the lowest Cargo.toml \
             accepts ({status}): fix the code, or raise the lower bound"
        )
    })
}

/// Copies `from` (a file or a directory, without `target` directories) to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| format!("copying {} to {}: {e}", from.display(), to.display());
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(err)?;
        for entry in std::fs::read_dir(from).map_err(err)? {
            let entry = entry.map_err(err)?;
            if entry.file_name() == "target" {
                continue;
            }
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if from.exists() {
        std::fs::copy(from, to).map(|_| ()).map_err(err)
    } else {
        Ok(())
    }
}
