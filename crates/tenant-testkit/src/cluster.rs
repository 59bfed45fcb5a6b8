//! A throwaway PostgreSQL cluster from the machine's binaries: the one `cargo xtask test`
//! runs the tests on, and clusters of their own for tests that must stop or restart a server.
//!
//! initdb refuses to run as root, so when we are root every server command runs as the
//! `postgres` user (`runuser`). The cluster listens only on a unix socket in its own
//! directory; the port is a free one, so two checkouts do not collide.

// Tooling: `cargo xtask pg start|stop|status` reports through these messages.
#![allow(clippy::print_stdout)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A cluster directory (`target/<name>`, see [`Cluster::named`]).
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: Option<PathBuf>,
    /// Server settings after the defaults (`-c name=value`; a later one wins).
    settings: Vec<String>,
}

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
     /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`), or set \
     DATABASE_URL to a server where the role can create roles and databases";

impl Cluster {
    /// The cluster of the workspace at `root` (`cargo xtask pg`, `cargo xtask test`).
    pub fn at(root: &Path) -> Self {
        Self::named(root, "tenant-pg")
    }

    /// Cluster `name` of the workspace at `root`.
    ///
    /// The data lives under `target/<name>` when the `postgres` user can reach it; when we
    /// are root and a parent directory is closed to others (a private checkout), it lives in
    /// `/tmp/<name>-<hash of the workspace path>` instead, the same on every invocation.
    ///
    /// Binaries from outside `/usr/lib/postgresql` (another major put first on PATH, such as
    /// `cargo xtask pg start --pg N` fetches) get a directory of their own major,
    /// `<name>-<major>`: a data directory one major initialized never meets another's server.
    /// A name that already ends in `-<number>` (`tenant-pg-17`, given with its binaries,
    /// [`Cluster::with_bindir`]) is kept.
    pub fn named(root: &Path, name: &str) -> Self {
        let lib = Path::new("/usr/lib/postgresql");
        let bin = find_bindir(std::env::var_os("PATH"), lib);
        let has_major = name
            .rsplit_once('-')
            .is_some_and(|(_, n)| n.parse::<u32>().is_ok());
        let name = match bin.as_deref().filter(|b| !b.starts_with(lib)) {
            Some(b) if !has_major => match major_of(b) {
                Some(major) => format!("{name}-{major}"),
                None => name.to_owned(),
            },
            _ => name.to_owned(),
        };
        Self {
            dir: server_dir(root, &name),
            bin,
            settings: Vec::new(),
        }
    }

    /// This cluster with server setting `name = value` after the defaults (which it overrides).
    /// Values are passed on the server's command line: letters, digits, `_`, `.`, `,`, `*`
    /// and `-` only.
    #[must_use]
    pub fn with_setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push(format!("-c {name}={value}"));
        self
    }

    /// This cluster run with the server binaries (initdb, pg_ctl, postgres) of `bin` instead of
    /// the ones found on PATH or under `/usr/lib/postgresql` (another major's, see `cargo xtask
    /// pg start --pg N`).
    #[must_use]
    pub fn with_bindir(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    /// The directory of the server binaries, when they were found.
    pub fn bindir(&self) -> Option<&Path> {
        self.bin.as_deref()
    }

    /// The port the server listens on (its socket's name; on TCP too when `listen_addresses`
    /// was set), once it was started.
    pub fn listen_port(&self) -> Option<u16> {
        self.port()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The socket directory: inside the cluster directory unless that path is too long for a
    /// unix socket name (107 bytes), then under /tmp.
    fn sock(&self) -> PathBuf {
        let inside = self.dir.join("sock");
        if inside.as_os_str().len() < 80 {
            inside
        } else {
            PathBuf::from(format!("/tmp/tenant-pg-sock-{:016x}", path_hash(&self.dir)))
        }
    }

    fn port(&self) -> Option<u16> {
        std::fs::read_to_string(self.dir.join("port"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The admin URL of the running cluster.
    pub fn url(&self) -> String {
        let sock = std::fs::read_to_string(self.dir.join("sockdir"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| self.sock().display().to_string());
        format!(
            "postgres:///postgres?host={sock}&port={}&user=postgres",
            self.port().unwrap_or(5432)
        )
    }

    fn tool(&self, name: &str) -> Result<Command, String> {
        let bin = self.bin.as_ref().ok_or(INSTALL_HINT)?;
        let path = bin.join(name);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            Ok(cmd)
        } else {
            Ok(Command::new(path))
        }
    }

    /// Starts the cluster (initializing it first if needed); a running one is reused.
    pub fn start(self) -> Result<Self, String> {
        if self.running() {
            println!("PostgreSQL already running: {}", self.url());
            return Ok(self);
        }
        if self.bin.is_none() {
            return Err(INSTALL_HINT.to_owned());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let sock = self.sock();
        std::fs::create_dir_all(&sock).map_err(|e| format!("creating {}: {e}", sock.display()))?;
        if is_root() {
            for d in [&self.dir, &sock] {
                chown_postgres(d)?;
            }
        }
        if !self.data().join("PG_VERSION").exists() {
            let mut initdb = self.tool("initdb")?;
            initdb.arg("-D").arg(self.data()).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]);
            quiet(initdb, "initdb")?;
        }
        // The same port as last time, when there was one: the server listens only on a unix
        // socket in its own directory, so the port only names the socket file, and clients
        // that knew the cluster before a stop find it again.
        let port = match self.port() {
            Some(port) => port,
            None => free_port()?,
        };
        std::fs::write(self.dir.join("port"), port.to_string()).map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join("sockdir"), sock.display().to_string())
            .map_err(|e| e.to_string())?;
        // shared_buffers holds the bench's four tables of 1M rows (about 650 MB), which
        // `cargo xtask bench` loads before it measures; the server only touches what it uses.
        let mut options = format!(
            "-k {} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 -c lc_messages=C -c shared_buffers=1GB",
            sock.display()
        );
        for setting in &self.settings {
            options.push(' ');
            options.push_str(setting);
        }
        let mut ctl = self.tool("pg_ctl")?;
        ctl.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        quiet(ctl, "pg_ctl start")
            .map_err(|e| format!("{e}; see {}", self.dir.join("server.log").display()))?;
        println!("PostgreSQL started: {}", self.url());
        Ok(self)
    }

    /// Whether the cluster's server runs.
    pub fn running(&self) -> bool {
        self.data().join("postmaster.pid").exists()
            && self
                .tool("pg_ctl")
                .map(|mut c| {
                    c.arg("-D").arg(self.data()).arg("status");
                    c.output().map(|o| o.status.success()).unwrap_or(false)
                })
                .unwrap_or(false)
    }

    /// Prints whether the cluster runs, and its URL.
    pub fn status(&self) -> Result<(), String> {
        if self.running() {
            println!("running: {}", self.url());
        } else {
            println!("not running (start it with `cargo xtask pg start`)");
        }
        Ok(())
    }

    /// Restarts the running server (fast shutdown: every session is ended), with the same
    /// options, and waits until it accepts connections again.
    ///
    /// # Errors
    /// What `pg_ctl` said.
    pub fn restart(&self) -> Result<(), String> {
        let mut ctl = self.tool("pg_ctl")?;
        ctl.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        quiet(ctl, "pg_ctl restart")
    }

    /// Stops the cluster, keeping its data.
    pub fn stop(&self) -> Result<(), String> {
        if !self.running() {
            println!("not running");
            return Ok(());
        }
        let mut ctl = self.tool("pg_ctl")?;
        ctl.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        quiet(ctl, "pg_ctl stop")?;
        println!("PostgreSQL stopped");
        Ok(())
    }

    /// Stops the cluster and removes its directory.
    pub fn stop_and_remove(&self) -> Result<(), String> {
        self.stop()?;
        let sock = self.sock();
        if !sock.starts_with(&self.dir) {
            let _ = std::fs::remove_dir_all(&sock);
        }
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| format!("removing {}: {e}", self.dir.display()))
    }
}

fn quiet(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The directory holding initdb and pg_ctl: the first on `path`, else the newest version under
/// `lib` (Debian's layout, `/usr/lib/postgresql/<major>/bin`).
fn find_bindir(path: Option<std::ffi::OsString>, lib: &Path) -> Option<PathBuf> {
    if let Some(paths) = path {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Resolve symlinks (Debian links /usr/local/bin/initdb into the versioned dir).
                return std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .or(Some(dir));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// The major version of the binaries in `bin` (`pg_ctl --version`: `pg_ctl (PostgreSQL) 17.10`).
fn major_of(bin: &Path) -> Option<u32> {
    let out = Command::new(bin.join("pg_ctl"))
        .arg("--version")
        .output()
        .ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

fn parse_major(version: &str) -> Option<u32> {
    let number = version
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Directory `name` for the server (the `postgres` user when we are root) to read or write:
/// `target/<name>` of the workspace at `root`, or, when we are root and a parent of `root` is
/// closed to others (a private checkout), `/tmp/<name>-<hash of the workspace path>`, the same
/// on every invocation. Cluster data and fetched server binaries both live in one.
pub fn server_dir(root: &Path, name: &str) -> PathBuf {
    if is_root() && !reachable_by_others(root) {
        PathBuf::from(format!("/tmp/{name}-{:016x}", path_hash(root)))
    } else {
        root.join("target").join(name)
    }
}

/// Whether every directory from `/` down to `path` lets others traverse it.
fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors().all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

fn path_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Whether this process runs as root (server commands then run as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_postgres(dir: &Path) -> Result<(), String> {
    let mut cmd = Command::new("chown");
    cmd.arg("-R").arg("postgres:postgres").arg(dir);
    quiet(cmd, "chown postgres")?;
    // The postgres user must be able to reach the directory through its parents.
    Ok(())
}

/// A TCP port free at the time of asking.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_binaries_the_cluster_refuses_to_start_and_says_how_to_fix_it() {
        let empty = scratch("empty");
        let cluster = Cluster {
            dir: empty.join("c"),
            bin: find_bindir(Some(empty.clone().into()), &empty),
            settings: Vec::new(),
        };
        let err = cluster.start().err().unwrap();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_major_is_read_from_the_version_line() {
        assert_eq!(parse_major("pg_ctl (PostgreSQL) 17.10\n"), Some(17));
        assert_eq!(
            parse_major("pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_ctl (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major(""), None);
    }

    #[test]
    fn the_newest_versioned_install_is_found_when_path_has_none() {
        let lib = scratch("lib");
        for v in ["13", "16", "9"] {
            let bin = lib.join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
        }
        assert_eq!(find_bindir(None, &lib), Some(lib.join("16").join("bin")));
    }
}
