//! The running gateway: listeners, worker threads, the control runtime, and reloads.
//!
//! Each worker is an OS thread with a single-threaded tokio runtime that accepts on every
//! listener (the sockets are shared) and serves its connections start to finish, with its own
//! upstream connection pools: nothing on the request path crosses threads. The control runtime
//! runs the admin listener, health checks, DNS refresh and access-log flushing.
//!
//! A reload compiles the new config against the same registries and swaps the snapshot in one
//! store; requests in flight finish on the snapshot they started with.

pub mod tls;

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::access_log::Sink;
use crate::config::{self, ConfigError, Limits, Registries, Snapshot, Source};
use crate::metrics::Metrics;
use crate::upstream::watch::Watchers;
use crate::upstream::Targets;
use crate::{admin, pipeline};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code (0 outside workers).
pub fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind { name: String, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// State shared by workers, the control runtime and the admin API.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    source: Mutex<Source>,
    pub targets: Targets,
    pub metrics: Metrics,
    access_log: ArcSwapOption<Sink>,
    watchers: Watchers,
    shutdown: watch::Sender<bool>,
    reloading: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn access_log(&self) -> Option<Arc<Sink>> {
        self.access_log.load_full()
    }

    /// Turns true when the gateway starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn compile(&self, source: &Source, revision: u64) -> Result<Snapshot, Vec<ConfigError>> {
        let raw = source.parse()?;
        let registries = Registries { targets: &self.targets, metrics: &self.metrics };
        config::compile(&raw, &source.base_dir, revision, &registries)
    }

    /// Re-reads the config file and applies it; on any error the old snapshot keeps serving.
    pub async fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.try_reload().await;
        self.metrics.reload(result.is_ok());
        match &result {
            Ok(revision) => tracing::info!(revision, "config reloaded"),
            Err(errors) => {
                for error in errors {
                    tracing::error!(%error, "config reload failed; the previous config keeps serving");
                }
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<u64, Vec<ConfigError>> {
        let source = self.source.lock().unwrap_or_else(|e| e.into_inner()).reread()?;
        let current = self.snapshot();
        let next = self.compile(&source, current.revision + 1)?;
        check_restart_only(&current, &next)?;
        let revision = next.revision;
        self.apply(next).await.map_err(|e| vec![ConfigError::new("access_log", e.to_string())])?;
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = source;
        Ok(revision)
    }

    /// Makes `next` the serving snapshot: resolves new host names first, then swaps, then
    /// brings background tasks and the access log in line. Runs on the control runtime.
    async fn apply(&self, next: Snapshot) -> std::io::Result<()> {
        let sink = match (&next.access_log, self.access_log.load_full()) {
            (None, _) => None,
            (Some(target), Some(open)) if open.target == *target => Some(open),
            (Some(target), _) => Some(Arc::new(Sink::open(target, next.workers)?)),
        };
        Watchers::resolve_unresolved(&next.upstreams).await;
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        self.access_log.store(sink);
        self.watchers.sync(&next.upstreams);
        Ok(())
    }
}

/// Settings that only a restart can change; a reload that changes them is refused whole.
fn check_restart_only(current: &Snapshot, next: &Snapshot) -> Result<(), Vec<ConfigError>> {
    let binds =
        |s: &Snapshot| s.listeners.iter().map(|l| (l.name.clone(), l.bind, l.tls.is_some())).collect::<Vec<_>>();
    let mut errors = Vec::new();
    if binds(current) != binds(next) {
        errors.push(ConfigError::new("listeners", "adding, removing or re-binding listeners needs a restart"));
    }
    if current.admin.as_ref().map(|a| a.bind) != next.admin.as_ref().map(|a| a.bind) {
        errors.push(ConfigError::new("admin.bind", "changing the admin listener needs a restart"));
    }
    if current.workers != next.workers {
        errors.push(ConfigError::new("workers", "changing the number of workers needs a restart"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// One accepted client connection, as requests on it see it.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub limits: Limits,
}

/// A started gateway. Dropping it stops it at once; [`Gateway::shutdown`] drains first.
pub struct Gateway {
    shared: Arc<Shared>,
    control: Option<tokio::runtime::Runtime>,
    workers: Vec<std::thread::JoinHandle<()>>,
    listeners: Vec<(String, SocketAddr)>,
    admin_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Compiles `source`, binds every listener and starts serving.
    pub fn start(source: Source) -> Result<Self, StartError> {
        let raw = source.parse().map_err(StartError::Config)?;
        let workers = raw.worker_count().max(1);
        let targets = Targets::new(workers);
        let metrics = Metrics::default();
        let snapshot = config::compile(&raw, &source.base_dir, 1, &Registries { targets: &targets, metrics: &metrics })
            .map_err(StartError::Config)?;

        let mut bound = Vec::new();
        for spec in &snapshot.listeners {
            let listener = bind(spec.bind).map_err(|source| StartError::Bind {
                name: spec.name.clone(),
                addr: spec.bind,
                source,
            })?;
            bound.push(listener);
        }
        let admin_listener = match &snapshot.admin {
            Some(admin) => Some(bind(admin.bind).map_err(|source| StartError::Bind {
                name: "admin".into(),
                addr: admin.bind,
                source,
            })?),
            None => None,
        };
        let listeners: Vec<(String, SocketAddr)> = snapshot
            .listeners
            .iter()
            .zip(&bound)
            .map(|(spec, l)| (spec.name.clone(), l.local_addr().unwrap_or(spec.bind)))
            .collect();
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            source: Mutex::new(source),
            targets,
            metrics,
            access_log: ArcSwapOption::empty(),
            watchers: Watchers::default(),
            shutdown,
            reloading: tokio::sync::Mutex::new(()),
        });
        let control = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("barbican-control")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        control.block_on(shared.apply(snapshot)).map_err(StartError::AccessLog)?;
        control.spawn(flush_access_log(shared.clone()));
        if let Some(listener) = admin_listener {
            let listener = {
                let _entered = control.enter();
                TcpListener::from_std(listener).map_err(StartError::Runtime)?
            };
            control.spawn(admin::serve(listener, shared.clone()));
        }

        let mut handles = Vec::new();
        for index in 0..workers {
            let sockets =
                bound.iter().map(|l| l.try_clone()).collect::<Result<Vec<_>, _>>().map_err(StartError::Runtime)?;
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("barbican-worker-{index}"))
                .spawn(move || worker(index, shared, sockets))
                .map_err(StartError::Runtime)?;
            handles.push(handle);
        }
        for (name, addr) in &listeners {
            tracing::info!(listener = %name, %addr, workers, "listening");
        }
        if let Some(addr) = admin_addr {
            tracing::info!(%addr, "admin listening");
        }
        Ok(Self { shared, control: Some(control), workers: handles, listeners, admin_addr })
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reloads the config file (as SIGHUP does).
    pub async fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let shared = self.shared.clone();
        let control = self.control.as_ref().expect("control runtime lives as long as the gateway");
        control
            .spawn(async move { shared.reload().await })
            .await
            .unwrap_or_else(|e| Err(vec![ConfigError::new("", format!("reload task failed: {e}"))]))
    }

    /// Serves until SIGTERM or SIGINT (then drains and returns); SIGHUP reloads the config.
    pub fn run_until_signal(self) -> std::io::Result<()> {
        let control = self.control.as_ref().expect("control runtime lives as long as the gateway");
        let shared = self.shared.clone();
        control.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let mut hup = signal(SignalKind::hangup())?;
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => {
                        let _ = shared.reload().await;
                    }
                }
            }
            tracing::info!("shutting down: no new connections; draining");
            Ok::<_, std::io::Error>(())
        })?;
        self.shutdown();
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish (up to `shutdown_timeout`), and stops.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.send_replace(true);
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        self.shared.watchers.stop();
        if let Some(sink) = self.shared.access_log() {
            sink.flush();
        }
        if let Some(control) = self.control.take() {
            control.shutdown_background();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resolves once shutdown has begun.
pub async fn stopped(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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

async fn flush_access_log(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        if let Some(sink) = shared.access_log() {
            sink.flush();
        }
    }
}

fn worker(index: usize, shared: Arc<Shared>, sockets: Vec<std::net::TcpListener>) {
    WORKER.with(|w| w.set(index));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "worker could not start its runtime");
            return;
        }
    };
    runtime.block_on(async move {
        // Every connection task holds a sender; when all are gone, the worker has drained.
        let (active, mut drained) = mpsc::channel::<()>(1);
        for (listener_index, socket) in sockets.into_iter().enumerate() {
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    tokio::spawn(accept(listener_index, listener, shared.clone(), active.clone()));
                }
                Err(error) => tracing::error!(%error, "cannot register listener"),
            }
        }
        drop(active);
        let mut shutdown = shared.shutdown.subscribe();
        let _ = stopped(&mut shutdown).await;
        let grace = shared.snapshot().shutdown_timeout;
        if tokio::time::timeout(grace, drained.recv()).await.is_err() {
            tracing::warn!(?grace, "connections still open after the shutdown timeout; closing them");
        }
    });
}

async fn accept(listener_index: usize, listener: TcpListener, shared: Arc<Shared>, active: mpsc::Sender<()>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, listener_index, shared.clone(), active.clone()));
            }
            Err(error) => {
                // Out of file descriptors, mostly: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener_index: usize,
    shared: Arc<Shared>,
    _active: mpsc::Sender<()>,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot();
    let Some(spec) = snapshot.listeners.get(listener_index) else {
        return;
    };
    let tls = spec.tls.clone();
    let conn = Arc::new(Conn { shared: shared.clone(), peer, tls: tls.is_some(), limits: spec.limits });
    drop(snapshot);
    match tls {
        None => serve(TokioIo::new(stream), conn).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(conn.limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(TokioIo::new(stream), conn).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (by preface or ALPN) on one connection until it closes, or until
/// shutdown, when it is closed gracefully after the requests in flight.
async fn serve<I>(io: TokioIo<I>, conn: Arc<Conn>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = conn.limits;
    let mut shutdown = conn.shared.shutdown.subscribe();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        // Room past our own limit, so that our JSON 431 answers most oversized heads.
        .max_buf_size((limits.max_header_bytes * 2).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let service = service_fn(move |request| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(request, &conn).await) }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
