//! Idle HTTP/1.1 connections to one target, one pool per worker thread so that a connection is
//! only ever driven by the runtime that opened it and checkout never contends.
//!
//! A connection is leased for one exchange and comes back when the response body has been read
//! to its end; a body dropped half-way takes its connection with it. Proxied requests use the
//! inline client of [`super::client`]; health probes and WebSocket handshakes, which are rare and
//! need hyper's upgrades, use hyper's client through [`connect`] and [`connect_upgradable`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::Connection;
use super::target::{InFlight, Target};
use crate::body::Body;
use crate::server::worker_index;

/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per target and worker; more are closed.
const MAX_IDLE: usize = 256;

pub type Sender = SendRequest<Body>;

struct Idle {
    conn: Box<Connection>,
    since: Instant,
}

pub struct Pool {
    per_worker: Box<[Mutex<Vec<Idle>>]>,
}

impl Pool {
    pub fn new(workers: usize) -> Self {
        Self { per_worker: (0..workers.max(1)).map(|_| Mutex::new(Vec::new())).collect() }
    }

    fn slot(&self) -> &Mutex<Vec<Idle>> {
        &self.per_worker[worker_index() % self.per_worker.len()]
    }

    /// The most recently used live connection of this worker, if any.
    pub fn checkout(&self) -> Option<Box<Connection>> {
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut entry) = idle.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Box<Connection>) {
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, since: Instant::now() });
        }
    }

    /// Closes every idle connection (all workers).
    pub fn clear(&self) {
        for slot in self.per_worker.iter() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Opens a new hyper HTTP/1.1 connection to `addr`; its driver runs as a task on this worker.
pub async fn connect(addr: SocketAddr) -> std::io::Result<Sender> {
    let (sender, conn) = handshake(addr).await?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Like [`connect`], for one request that may switch protocols (a WebSocket handshake).
pub async fn connect_upgradable(addr: SocketAddr) -> std::io::Result<Sender> {
    let (sender, conn) = handshake(addr).await?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

async fn handshake(addr: SocketAddr) -> std::io::Result<(Sender, http1::Connection<TokioIo<TcpStream>, Body>)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)
}

/// One exchange with a target, holding its in-flight count until the response body is done.
pub struct Lease {
    in_flight: InFlight,
}

impl Lease {
    pub fn new(in_flight: InFlight) -> Self {
        Self { in_flight }
    }

    pub fn target(&self) -> &Arc<Target> {
        self.in_flight.target()
    }

    /// Returns the exchange's connection to its pool; the exchange is over.
    pub fn release(self, conn: Box<Connection>) {
        self.in_flight.target().pool.checkin(conn);
    }
}
