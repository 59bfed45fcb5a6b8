//! A TCP proxy on loopback in front of a test cluster's unix socket that counts the client's
//! round trips: a *flight* is what the client sends after it received something since it last
//! sent (its first send included). A transaction whose messages all go out before any reply
//! is one flight; one that waits for each reply before the next is one per message.
//!
//! Deterministic when the client writes all it pipelines before any reply can reach it (a
//! current-thread tokio runtime: the connection task runs only once the test's task yields,
//! with every request queued).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The running proxy; its threads end with the process (a test's).
#[derive(Debug)]
pub struct FlightProxy {
    port: u16,
    flights: Arc<AtomicU64>,
}

impl FlightProxy {
    /// Starts a proxy to the server of `url` (a URL with `host=<socket dir>&port=<port>`,
    /// as the test cluster's are).
    ///
    /// # Errors
    /// When `url` names no socket directory, or no port can be bound.
    pub fn start(url: &str) -> Result<Self, String> {
        let socket = unix_socket(url)?;
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the proxy: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let flights = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flights);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = UnixStream::connect(&socket) else {
                    continue;
                };
                relay(client, server, Arc::clone(&counter));
            }
        });
        Ok(Self { port, flights })
    }

    /// `url` through the proxy: the same database, user and password over TCP to it.
    pub fn url(&self, url: &str) -> String {
        through_loopback(url, self.port)
    }

    /// Flights so far, over every connection through the proxy.
    pub fn flights(&self) -> u64 {
        self.flights.load(Ordering::SeqCst)
    }
}

/// The unix socket of the server of `url` (`host=<socket dir>&port=<port>`, as the test
/// cluster's URLs are): what a proxy on loopback connects to.
///
/// # Errors
/// When `url` does not parse or names no socket directory.
pub fn unix_socket(url: &str) -> Result<PathBuf, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("parsing {url}: {e}"))?;
    let param = |k: &str| {
        parsed
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let dir = param("host")
        .filter(|h| h.starts_with('/'))
        .ok_or("the URL names no unix socket directory (host=/...)")?;
    let port = param("port").unwrap_or_else(|| "5432".into());
    Ok(PathBuf::from(dir).join(format!(".s.PGSQL.{port}")))
}

/// `url` (a `postgres://` URL) with its host and port replaced by `127.0.0.1` and `port`: the
/// same database, user and password, over TCP to a proxy on loopback. A URL that does not
/// parse is returned as it is (the connection then fails, naming it).
pub fn through_loopback(url: &str, port: u16) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "host" && k != "port")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair("host", "127.0.0.1");
        q.append_pair("port", &port.to_string());
    }
    parsed.to_string()
}

/// Copies both ways between `client` and `server`, counting the client's flights.
fn relay(client: TcpStream, server: UnixStream, flights: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    // Set before the client can see the reply (so a send it makes in answer counts).
    let replied = Arc::new(AtomicBool::new(true));
    let (Ok(mut client_in), Ok(mut server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (mut client_out, mut server_out) = (client, server);
    let sent_replied = Arc::clone(&replied);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = client_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            if sent_replied.swap(false, Ordering::SeqCst) {
                flights.fetch_add(1, Ordering::SeqCst);
            }
            if server_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = server_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            replied.store(true, Ordering::SeqCst);
            if client_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(std::net::Shutdown::Both);
    });
}
