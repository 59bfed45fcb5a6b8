//! A proxy on loopback that adds a fixed delay to every byte each way between a client and a
//! PostgreSQL server's unix socket: a network link's round-trip time, for the benchmarks that
//! compare round trips (R11). Each direction of a connection has a reader thread, which
//! timestamps what it reads, and a writer thread, which passes it on once the delay has
//! passed since it was read; so bytes keep their order and a burst costs one delay, not one
//! per chunk, as on a real link.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running proxy; its threads end with the process.
pub(crate) struct DelayProxy {
    port: u16,
}

impl DelayProxy {
    /// A proxy to the server of `url` (`host=<socket dir>&port=<port>`) adding `one_way` to
    /// each direction.
    pub(crate) fn start(url: &str, one_way: Duration) -> Result<Self, String> {
        let socket = tenant_testkit::flight_proxy::unix_socket(url)?;
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the proxy: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = UnixStream::connect(&socket) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                if let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) {
                    delayed(client_in, server, one_way);
                    delayed(server_in, client, one_way);
                }
            }
        });
        Ok(Self { port })
    }

    /// `url` through the proxy (TCP to it, the same database, user and password).
    pub(crate) fn url(&self, url: &str) -> String {
        tenant_testkit::flight_proxy::through_loopback(url, self.port)
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn delayed(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    delay: Duration,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            // The kernel wakes a sleeper tens of microseconds late: sleep to 100 us before
            // the time, then spin to it, so the link's delay is the one asked for.
            let early = due.checked_sub(Duration::from_micros(100));
            if let Some(early) = early.filter(|e| *e > Instant::now()) {
                // tidy: latency emulation, not synchronization
                std::thread::sleep(early - Instant::now());
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
    });
}
