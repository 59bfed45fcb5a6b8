//! PgBouncer in transaction mode in front of a PostgreSQL server, for the tests that prove the
//! library is correct behind it: many clients share four server connections, session state
//! does not follow a client, and named prepared statements do not survive a transaction.

use std::path::PathBuf;
use std::process::Command;

/// A running PgBouncer, stopped on drop.
pub struct Bouncer {
    dir: PathBuf,
    port: u16,
}

const HINT: &str = "pgbouncer not found: install it (Debian/Ubuntu: `apt-get install pgbouncer`); the PgBouncer tests run through it";

/// The socket directory (or host) and port of a libpq URL.
fn host_port(url: &str) -> Result<(String, u16), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("parsing the database URL: {e}"))?;
    let query = |k: &str| {
        parsed
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let host = query("host")
        .or_else(|| {
            parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".into());
    let port = query("port")
        .and_then(|p| p.parse().ok())
        .or(parsed.port())
        .unwrap_or(5432);
    Ok((host, port))
}

impl Bouncer {
    /// Starts PgBouncer (transaction pooling, four server connections per database and user: the probe holds three transactions open at once)
    /// in front of the server of `admin_url`.
    pub fn start(admin_url: &str) -> Result<Self, String> {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or(HINT)?;
        let (host, port) = host_port(admin_url)?;
        let dir = PathBuf::from(format!("/tmp/tenant-pgbouncer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let listen = crate::pg::free_port()?;
        let users: String = ["postgres", "tenant_app", "ts_test_operator"]
            .iter()
            .map(|u| format!("\"{u}\" \"\"\n"))
            .collect();
        std::fs::write(dir.join("users.txt"), users).map_err(|e| e.to_string())?;
        let ini = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\nlisten_addr =\nlisten_port = {listen}\n\
             unix_socket_dir = {dir}\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
             default_pool_size = 4\nmax_client_conn = 400\nignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\nadmin_users = postgres\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(|e| e.to_string())?;
        let mut cmd = if crate::pg::is_root() {
            // PgBouncer refuses to run as root.
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err(format!("chown of {} failed", dir.display()));
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", binary]);
            c
        } else {
            Command::new(binary)
        };
        let out = cmd
            .arg("-d")
            .arg(dir.join("pgbouncer.ini"))
            .output()
            .map_err(|e| format!("starting pgbouncer: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pgbouncer did not start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            ));
        }
        // It forks; its socket appears within milliseconds. Watch for it (bounded).
        let socket = dir.join(format!(".s.PGSQL.{listen}"));
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(10) {
            if socket.exists() {
                println!(
                    "PgBouncer (transaction mode) started on {}",
                    socket.display()
                );
                return Ok(Self { dir, port: listen });
            }
            std::thread::yield_now();
        }
        Err(format!("pgbouncer did not open {}", socket.display()))
    }

    /// The admin URL through PgBouncer.
    pub fn url(&self) -> String {
        format!(
            "postgres:///postgres?host={}&port={}&user=postgres",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
