//! The listening sockets, kept in step with the config without disturbing the ones that stay.
//!
//! A listener is identified by its configured bind address (by name too when the port is 0).
//! On each applied snapshot, [`Listeners::prepare`] binds what is new *before* the swap (a bind
//! failure refuses the reload whole), and [`Listeners::commit`] hands new sockets to every
//! worker and stops accepting on the ones that left. Connections already accepted are never
//! touched: they finish on their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, Snapshot};

/// What the control thread tells a worker.
pub enum WorkerCommand {
    /// Accept on this socket (a clone of a shared listening socket) until `stop` turns true.
    Accept { name: String, socket: std::net::TcpListener, stop: watch::Receiver<bool> },
}

struct Bound {
    name: String,
    configured: SocketAddr,
    local: SocketAddr,
    socket: std::net::TcpListener,
    stop: watch::Sender<bool>,
}

impl Bound {
    fn key(name: &str, configured: SocketAddr) -> (Option<String>, SocketAddr) {
        (if configured.port() == 0 { Some(name.to_string()) } else { None }, configured)
    }
}

/// Sockets bound for a snapshot that is not serving yet.
pub struct Prepared {
    fresh: Vec<Bound>,
    /// Listeners that stay, possibly renamed: (index in the set, new name).
    kept: Vec<(usize, String)>,
}

#[derive(Default)]
pub struct Listeners {
    bound: Mutex<Vec<Bound>>,
    /// Sockets handed over by a previous process, by bound address, not yet claimed.
    inherited: Mutex<HashMap<SocketAddr, std::net::TcpListener>>,
}

impl Listeners {
    pub fn with_inherited(inherited: HashMap<SocketAddr, std::net::TcpListener>) -> Self {
        Self { bound: Mutex::default(), inherited: Mutex::new(inherited) }
    }

    /// Binds every listener of `next` that is not bound yet.
    pub fn prepare(&self, next: &Snapshot) -> Result<Prepared, Vec<ConfigError>> {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let mut prepared = Prepared { fresh: Vec::new(), kept: Vec::new() };
        let mut errors = Vec::new();
        for (i, spec) in next.listeners.iter().enumerate() {
            let key = Bound::key(&spec.name, spec.bind);
            if let Some(index) = bound.iter().position(|b| Bound::key(&b.name, b.configured) == key) {
                prepared.kept.push((index, spec.name.clone()));
                continue;
            }
            match self.take_or_bind(spec.bind) {
                Ok(socket) => {
                    let local = socket.local_addr().unwrap_or(spec.bind);
                    let (stop, _) = watch::channel(false);
                    prepared.fresh.push(Bound { name: spec.name.clone(), configured: spec.bind, local, socket, stop });
                }
                Err(error) => errors.push(ConfigError::new(
                    format!("listeners[{i}].bind"),
                    format!("cannot listen on {} ({}): {error}", spec.bind, spec.name),
                )),
            }
        }
        if errors.is_empty() {
            Ok(prepared)
        } else {
            Err(errors)
        }
    }

    /// The socket handed over for `addr`, else a new one bound to it.
    pub fn take_or_bind(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        let mut inherited = self.inherited.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(socket) = inherited.remove(&addr) {
            tracing::info!(%addr, "listening on a socket handed over by the previous process");
            return Ok(socket);
        }
        bind(addr)
    }

    /// Makes `prepared` the listener set: workers start accepting on new sockets, and stop on
    /// sockets the config no longer has.
    pub fn commit(&self, prepared: Prepared, workers: &[mpsc::UnboundedSender<WorkerCommand>]) {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Bound> = Vec::with_capacity(prepared.kept.len() + prepared.fresh.len());
        let mut old: Vec<Option<Bound>> = bound.drain(..).map(Some).collect();
        for (index, name) in prepared.kept {
            if let Some(mut listener) = old[index].take() {
                listener.name = name;
                next.push(listener);
            }
        }
        for listener in old.into_iter().flatten() {
            tracing::info!(listener = %listener.name, addr = %listener.local, "no longer listening");
            listener.stop.send_replace(true);
        }
        for listener in prepared.fresh {
            for worker in workers {
                match listener.socket.try_clone() {
                    Ok(socket) => {
                        let command = WorkerCommand::Accept {
                            name: listener.name.clone(),
                            socket,
                            stop: listener.stop.subscribe(),
                        };
                        let _ = worker.send(command);
                    }
                    Err(error) => tracing::error!(%error, listener = %listener.name, "cannot share listening socket"),
                }
            }
            tracing::info!(listener = %listener.name, addr = %listener.local, workers = workers.len(), "listening");
            next.push(listener);
        }
        *bound = next;
    }

    /// Closes handed-over sockets that no listener claimed.
    pub fn release_unclaimed(&self) {
        let mut inherited = self.inherited.lock().unwrap_or_else(|e| e.into_inner());
        for (addr, _) in inherited.drain() {
            tracing::info!(%addr, "closing a handed-over socket this config does not listen on");
        }
    }

    /// Where listener `name` is bound.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        bound.iter().find(|b| b.name == name).map(|b| b.local)
    }

    /// Clones of every listening socket with its bound address, for a successor process.
    pub fn sockets(&self) -> std::io::Result<Vec<(SocketAddr, std::net::TcpListener)>> {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        bound.iter().map(|b| Ok((b.local, b.socket.try_clone()?))).collect()
    }

    /// Stops accepting on every listener and closes this set's copies of the sockets.
    pub fn close_all(&self) {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        for listener in bound.drain(..) {
            listener.stop.send_replace(true);
        }
        self.release_unclaimed();
    }
}

/// A non-blocking listening socket with a deep backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
