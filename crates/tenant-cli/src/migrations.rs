//! `gen` and `check`: the service's generated RLS migrations against its registry.
//!
//! Each generated migration is a diesel migration folder `<version>_tenant_rls` with
//! `up.sql`, `down.sql` and a manifest of what it generated (`tenant-rls.manifest.json`),
//! from which the next one is computed ([`tenant_schema::incremental`]). diesel runs
//! migrations in the order of their versions (the folder name up to its first `_`, without
//! `-`, compared as text), so a new folder is named by the clock, or one second after the
//! latest migration already there when that sorts later ([`next_name`]): a folder written
//! before a hand-made one with a later version would run after it on a fresh database, and
//! not at all on one that already ran the hand-made one.

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use tenant_schema::{
    MANIFEST_FILE, Migration, assemble, fragments, incremental, manifest, read_manifest,
    shared_refresh,
};

use crate::Service;

/// What names a generated migration folder, after its version.
pub const GENERATED_SUFFIX: &str = "_tenant_rls";

/// The layout of a version written by [`next_name`].
const VERSION_FORMAT: &str = "%Y-%m-%d-%H%M%S";

/// Why `gen` or `check` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The options are not valid.
    #[error("the RLS options are not valid: {0}")]
    Options(String),
    /// A generated folder has no manifest and is not what the registry generates.
    #[error(
        "{0} has no {MANIFEST_FILE} and differs from what the registry generates: regenerate it (move the folder away and run `gen`) or add its manifest by hand"
    )]
    NoManifest(PathBuf),
    /// A manifest could not be read.
    #[error("{dir}: {message}")]
    Manifest {
        /// The folder.
        dir: PathBuf,
        /// What is wrong with its manifest.
        message: String,
    },
    /// No name sorts after an existing migration's version in the time-stamped form.
    #[error(
        "migration {0} has a version that no time-stamped name sorts after: rename it to the form YYYY-MM-DD-HHMMSS_name (diesel orders migrations by the part before the first `_`)"
    )]
    Unorderable(String),
    /// The migrations are not up to date with the registry.
    #[error(
        "the migrations are not up to date with the registry: {0}; run `gen` and commit what it writes"
    )]
    OutOfDate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `gen` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing changed.
    UpToDate,
    /// The last generated folder predates manifests and is exactly what the registry
    /// generates: its manifest is recorded.
    RecordManifest {
        /// The folder.
        dir: PathBuf,
        /// The manifest to write.
        manifest: String,
    },
    /// A new migration folder.
    Write {
        /// The folder's name.
        name: String,
        /// Its SQL.
        migration: Migration,
        /// Its manifest.
        manifest: String,
        /// Why: the registry's tables, or only the shared objects, changed.
        why: &'static str,
    },
}

/// The migration folders under `dir`, sorted by name.
fn folders(dir: &Path) -> Result<Vec<String>, GenError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// diesel's version of a migration folder: the part before the first `_`, without `-`.
fn version(name: &str) -> String {
    name.split('_').next().unwrap_or(name).replace('-', "")
}

/// The name of a new generated folder: `now` in the form `YYYY-MM-DD-HHMMSS`, or one second
/// after the latest version among `existing` when `now` would not sort after it.
///
/// # Errors
/// [`GenError::Unorderable`] when the latest version is not in that form and sorts after
/// `now` (no time-stamped name is known to sort after it).
///
/// ```
/// use chrono::NaiveDate;
/// let now = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap().and_hms_opt(9, 0, 0).unwrap();
/// let after = tenant_cli::migrations::next_name(&["2026-12-06-000000_by_hand".into()], now);
/// assert_eq!(after.unwrap(), "2026-12-06-000001_tenant_rls");
/// let clock = tenant_cli::migrations::next_name(&["2026-12-01-000000_init".into()], now);
/// assert_eq!(clock.unwrap(), "2026-12-05-090000_tenant_rls");
/// ```
pub fn next_name(existing: &[String], now: NaiveDateTime) -> Result<String, GenError> {
    let latest = existing.iter().max_by_key(|n| version(n));
    let mut at = now;
    if let Some(latest) = latest
        && version(latest) >= at.format("%Y%m%d%H%M%S").to_string()
    {
        at = NaiveDateTime::parse_from_str(&version(latest), "%Y%m%d%H%M%S")
            .map_err(|_| GenError::Unorderable(latest.clone()))?
            + chrono::Duration::seconds(1);
    }
    Ok(format!("{}{GENERATED_SUFFIX}", at.format(VERSION_FORMAT)))
}

/// What `gen` would write for `service` at `now`.
///
/// # Errors
/// As [`GenError`].
pub fn plan(service: &Service, now: NaiveDateTime) -> Result<Plan, GenError> {
    let options = &service.options;
    options.validate().map_err(GenError::Options)?;
    let current = fragments(service.registry, options);
    let all = folders(&service.migrations)?;
    let generated: Vec<PathBuf> = all
        .iter()
        .filter(|n| n.contains(GENERATED_SUFFIX))
        .map(|n| service.migrations.join(n))
        .collect();
    // A migration generated before manifests existed is adopted if it is exactly what the
    // registry generates now.
    if let [.., last] = generated.as_slice()
        && !last.join(MANIFEST_FILE).exists()
    {
        let up = std::fs::read_to_string(last.join("up.sql")).unwrap_or_default();
        if up == assemble(&current, options).up {
            return Ok(Plan::RecordManifest {
                dir: last.clone(),
                manifest: manifest(&current),
            });
        }
        return Err(GenError::NoManifest(last.clone()));
    }
    let previous = match generated
        .iter()
        .rev()
        .find(|d| d.join(MANIFEST_FILE).exists())
    {
        Some(dir) => {
            let path = dir.join(MANIFEST_FILE);
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let up_path = dir.join("up.sql");
            let up = std::fs::read_to_string(&up_path).map_err(io(&up_path))?;
            let fragments = read_manifest(&text).map_err(|message| GenError::Manifest {
                dir: dir.clone(),
                message,
            })?;
            Some((fragments, up))
        }
        None => None,
    };
    let (migration, why) = match &previous {
        None => (
            assemble(&current, options),
            "no generated migration yet: the whole protection",
        ),
        Some((previous, previous_up)) => match incremental(previous, &current, options) {
            Some(m) => (m, "the registry's tables changed"),
            None => match shared_refresh(previous_up, options) {
                Some(m) => (
                    m,
                    "this version of tenant-schema writes the shared objects differently",
                ),
                None => return Ok(Plan::UpToDate),
            },
        },
    };
    Ok(Plan::Write {
        name: next_name(&all, now)?,
        migration,
        manifest: manifest(&current),
        why,
    })
}

/// `gen`: carries out [`plan`]; returns what it did, a line each.
///
/// # Errors
/// As [`GenError`].
pub fn generate(service: &Service, now: NaiveDateTime) -> Result<Vec<String>, GenError> {
    match plan(service, now)? {
        Plan::UpToDate => Ok(vec![
            "the RLS migrations are up to date with the registry: nothing to generate".into(),
        ]),
        Plan::RecordManifest { dir, manifest } => {
            let path = dir.join(MANIFEST_FILE);
            std::fs::write(&path, manifest).map_err(io(&path))?;
            Ok(vec![format!("recorded the manifest of {}", dir.display())])
        }
        Plan::Write {
            name,
            migration,
            manifest,
            why,
        } => {
            let dir = service.migrations.join(&name);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let mut lines = vec![format!("{why}:")];
            for (file, text) in [
                ("up.sql", &migration.up),
                ("down.sql", &migration.down),
                (MANIFEST_FILE, &manifest),
            ] {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(io(&path))?;
                lines.push(format!("wrote {}", path.display()));
            }
            Ok(lines)
        }
    }
}

/// `check`: `Ok` when `gen` has nothing to write.
///
/// # Errors
/// [`GenError::OutOfDate`] naming what `gen` would do; others as [`GenError`].
pub fn check(service: &Service) -> Result<(), GenError> {
    match plan(service, chrono::Utc::now().naive_utc())? {
        Plan::UpToDate => Ok(()),
        Plan::RecordManifest { dir, .. } => Err(GenError::OutOfDate(format!(
            "{} has no manifest yet",
            dir.display()
        ))),
        Plan::Write { why, .. } => Err(GenError::OutOfDate(why.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_new_folder_sorts_after_every_migration_as_diesel_orders_them() {
        let now = at("2026-12-05 12:00:00");
        let existing = [
            "00000000000000_diesel_initial_setup".to_owned(),
            "2026-12-05-030000_org_primary_keys".to_owned(),
            "2026-12-05-235959_by_hand".to_owned(),
        ];
        let name = next_name(&existing, now).unwrap();
        assert_eq!(name, "2026-12-06-000000_tenant_rls");
        assert!(existing.iter().all(|e| version(e) < version(&name)));
        assert_eq!(
            next_name(&existing[..2], now).unwrap(),
            "2026-12-05-120000_tenant_rls"
        );
        assert_eq!(next_name(&[], now).unwrap(), "2026-12-05-120000_tenant_rls");
        // The same second as the latest: one second later.
        assert_eq!(
            next_name(&["2026-12-05-120000_tenant_rls".to_owned()], now).unwrap(),
            "2026-12-05-120001_tenant_rls"
        );
    }

    #[test]
    fn a_version_no_timestamp_sorts_after_is_refused_naming_the_folder() {
        let err = next_name(&["9_zzz".to_owned()], at("2026-12-05 12:00:00")).unwrap_err();
        assert!(
            err.to_string().starts_with("migration 9_zzz has a version"),
            "{err}"
        );
    }
}
