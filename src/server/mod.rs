//! The running gateway: listeners, worker threads, the control runtime, and reloads.
//!
//! Each worker is an OS thread with a single-threaded tokio runtime that accepts on every
//! listener (the sockets are shared) and serves its connections start to finish, with its own
//! upstream connection pools: nothing on the request path crosses threads. The control runtime
//! runs the admin listener, health checks, DNS refresh and access-log flushing.
//!
//! A reload compiles the new config against the same registries and swaps the snapshot in one
//! store; requests in flight finish on the snapshot they started with.

pub mod http1;
pub mod listeners;
pub mod reload;
pub mod tls;
pub mod upgrade;

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::access_log::{LogTarget, Sink};
use crate::body::{Body, Inbound};
use crate::config::{self, ConfigError, Limits, Registries, Snapshot, Source};
use crate::metrics::Metrics;
use crate::upstream::watch::Watchers;
use crate::upstream::Targets;
use crate::{admin, pipeline};
use listeners::{Listeners, WorkerCommand};

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
    /// Compiled WAF rule sets, reused across reloads while their files are unchanged.
    waf: crate::waf::Rulesets,
    access_log: ArcSwapOption<Sink>,
    audit_log: ArcSwapOption<Sink>,
    watchers: Watchers,
    listeners: Listeners,
    pub websockets: Arc<crate::websocket::Registry>,
    /// The admin listening socket, kept to hand over on upgrade.
    admin_socket: Option<std::net::TcpListener>,
    workers: Vec<mpsc::UnboundedSender<WorkerCommand>>,
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

    fn flush_logs(&self) {
        for sink in [self.access_log.load_full(), self.audit_log.load_full()].into_iter().flatten() {
            sink.flush();
        }
    }

    /// Starts a graceful shutdown (as SIGTERM does).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Every listening socket, the admin one included, for a successor process.
    fn handover_sockets(&self) -> std::io::Result<Vec<(SocketAddr, std::net::TcpListener)>> {
        let mut sockets = self.listeners.sockets()?;
        if let Some(admin) = &self.admin_socket {
            sockets.push((admin.local_addr()?, admin.try_clone()?));
        }
        Ok(sockets)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn compile(&self, source: &Source, revision: u64) -> Result<Snapshot, Vec<ConfigError>> {
        let raw = source.parse()?;
        let registries = Registries { targets: &self.targets, metrics: &self.metrics, waf: &self.waf };
        config::compile(&raw, &source.base_dir, revision, &registries)
    }

    /// Makes `next` the serving snapshot. Everything that can fail (binding new listeners,
    /// opening the access log, resolving new host names) happens first; then one store swaps
    /// the config, and listeners, background tasks and the log follow. Runs on the control
    /// runtime.
    async fn apply(&self, next: Snapshot) -> Result<(), Vec<ConfigError>> {
        let prepared = self.listeners.prepare(&next)?;
        let sink = reopen(self.access_log.load_full(), next.access_log.as_ref(), next.workers)
            .map_err(|e| vec![ConfigError::new("access_log", format!("cannot open: {e}"))])?;
        let audit = reopen(self.audit_log.load_full(), next.waf.audit_log.as_ref(), next.workers)
            .map_err(|e| vec![ConfigError::new("waf.audit_log", format!("cannot open: {e}"))])?;
        if let Some(audit) = &audit {
            let _ = next.waf.audit.set(audit.clone());
        }
        Watchers::resolve_unresolved(&next.upstreams).await;
        for warning in &next.warnings {
            tracing::warn!(%warning, revision = next.revision, "config setting has no effect");
        }
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        self.listeners.commit(prepared, &self.workers);
        self.access_log.store(sink);
        self.audit_log.store(audit);
        self.watchers.sync(&next.upstreams);
        self.websockets.sweep(&next);
        Ok(())
    }
}

/// The sink for `target`: the one already open when it writes there, else a new one.
fn reopen(open: Option<Arc<Sink>>, target: Option<&LogTarget>, workers: usize) -> std::io::Result<Option<Arc<Sink>>> {
    Ok(match (target, open) {
        (None, _) => None,
        (Some(target), Some(open)) if open.target == *target => Some(open),
        (Some(target), _) => Some(Arc::new(Sink::open(target, workers)?)),
    })
}

/// Settings that only a restart can change; a reload that changes them is refused whole.
fn check_restart_only(current: &Snapshot, next: &Snapshot) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
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
    /// Held by everything serving this connection, upgraded ones included: the worker drains
    /// until every clone is gone.
    pub active: mpsc::Sender<()>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub limits: Limits,
}

/// A started gateway. Dropping it stops it at once; [`Gateway::shutdown`] drains first.
pub struct Gateway {
    shared: Arc<Shared>,
    control: Option<tokio::runtime::Runtime>,
    workers: Vec<std::thread::JoinHandle<()>>,
    admin_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Compiles `source`, binds every listener and starts serving.
    pub fn start(source: Source) -> Result<Self, StartError> {
        Self::start_with(source, HashMap::new())
    }

    /// Like [`Gateway::start`], listening on `inherited` sockets (by address) instead of
    /// binding those addresses again: how a new process takes over from an old one.
    pub fn start_with(
        source: Source,
        inherited: HashMap<SocketAddr, std::net::TcpListener>,
    ) -> Result<Self, StartError> {
        let raw = source.parse().map_err(StartError::Config)?;
        let worker_count = raw.worker_count().max(1);
        let targets = Targets::new(worker_count);
        let metrics = Metrics::default();
        let waf = crate::waf::Rulesets::default();
        let snapshot =
            config::compile(&raw, &source.base_dir, 1, &Registries { targets: &targets, metrics: &metrics, waf: &waf })
                .map_err(StartError::Config)?;
        let listeners = Listeners::with_inherited(inherited);
        let admin_listener = match &snapshot.admin {
            Some(admin) => Some(listeners.take_or_bind(admin.bind).map_err(|source| StartError::Bind {
                name: "admin".into(),
                addr: admin.bind,
                source,
            })?),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

        let (senders, receivers): (Vec<_>, Vec<_>) = (0..worker_count).map(|_| mpsc::unbounded_channel()).unzip();
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            source: Mutex::new(source),
            targets,
            metrics,
            waf,
            access_log: ArcSwapOption::empty(),
            audit_log: ArcSwapOption::empty(),
            watchers: Watchers::default(),
            listeners,
            websockets: Arc::default(),
            admin_socket: admin_listener.as_ref().and_then(|l| l.try_clone().ok()),
            workers: senders,
            shutdown,
            reloading: tokio::sync::Mutex::new(()),
        });
        let control = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("barbican-control")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;

        let mut handles = Vec::new();
        for (index, commands) in receivers.into_iter().enumerate() {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("barbican-worker-{index}"))
                .spawn(move || worker(index, shared, commands))
                .map_err(StartError::Runtime)?;
            handles.push(handle);
        }
        let gateway = Self { shared: shared.clone(), control: Some(control), workers: handles, admin_addr };
        let control = gateway.control.as_ref().expect("just built");
        control.block_on(shared.apply(snapshot)).map_err(StartError::Config)?;
        // Handed-over sockets this config does not listen on must not linger unserved.
        shared.listeners.release_unclaimed();
        control.spawn(flush_logs(shared.clone()));
        control.spawn(reload::watch_files(shared.clone()));
        control.spawn(sweep_websockets(shared.clone()));
        if let Some(listener) = admin_listener {
            let listener = {
                let _entered = control.enter();
                TcpListener::from_std(listener).map_err(StartError::Runtime)?
            };
            control.spawn(admin::serve(listener, shared.clone()));
        }
        if let Some(addr) = admin_addr {
            tracing::info!(%addr, "admin listening");
        }
        Ok(gateway)
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared.listeners.local_addr(name)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Offers this process's sockets to a successor started with `--takeover` on `path`.
    pub fn offer_upgrades(&self, path: std::path::PathBuf) -> std::io::Result<()> {
        let control = self.control.as_ref().expect("control runtime lives as long as the gateway");
        let offering = upgrade::offer(path, self.shared.clone())?;
        control.spawn(offering);
        Ok(())
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
            let mut handed_over = shared.shutdown_signal();
            loop {
                tokio::select! {
                    // A successor took the listeners over (see `upgrade`): drain and exit.
                    _ = stopped(&mut handed_over) => break,
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
        self.shared.listeners.close_all();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        self.shared.watchers.stop();
        self.shared.flush_logs();
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

/// Drains WebSocket connections whose target left or failed, and all of them at shutdown.
async fn sweep_websockets(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => shared.websockets.sweep(&shared.snapshot()),
        }
    }
    // Spread the closes over most of the shutdown timeout, leaving time to finish.
    shared.websockets.drain_all(shared.snapshot().shutdown_timeout.mul_f64(0.8));
}

/// Writes out buffered access-log and audit-log lines every 200 ms.
async fn flush_logs(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        shared.flush_logs();
    }
}

/// Goes on once the tasks the worker has ready now have run: work that ends in a write to
/// another process (a request to the upstream, a response to the client) leaves in a burst
/// with that of the other ready tasks, so the reader, on another CPU, is woken once for many
/// writes (waking a process on an idle CPU is an interprocessor interrupt, several
/// microseconds on a virtual machine). A task that wakes itself while it runs goes to the back
/// of the worker's queue (each worker is a current-thread runtime).
/// `tokio::task::yield_now` waits longer, until the runtime has also polled for I/O and run
/// the tasks that woke: the burst left one round later, and the readers' CPU went idle, and
/// had to be woken, more often (0.138 against 0.126 interrupts per WAF-inspected GET).
pub(crate) async fn behind_ready_tasks() {
    let mut waited = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut waited, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

fn worker(index: usize, shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<WorkerCommand>) {
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
        let mut shutdown = shared.shutdown.subscribe();
        loop {
            let command = tokio::select! {
                _ = stopped(&mut shutdown) => break,
                command = commands.recv() => command,
            };
            match command {
                Some(WorkerCommand::Accept { name, socket, stop }) => match TcpListener::from_std(socket) {
                    Ok(listener) => {
                        tokio::spawn(accept(name, listener, stop, shared.clone(), active.clone()));
                    }
                    Err(error) => tracing::error!(%error, listener = %name, "cannot register listener"),
                },
                None => break,
            }
        }
        drop(active);
        let grace = shared.snapshot().shutdown_timeout;
        if tokio::time::timeout(grace, drained.recv()).await.is_err() {
            tracing::warn!(?grace, "connections still open after the shutdown timeout; closing them");
        }
    });
}

async fn accept(
    name: String,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
    active: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let name: Arc<str> = name.into();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, name.clone(), shared.clone(), active.clone()));
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
    listener: Arc<str>,
    shared: Arc<Shared>,
    active: mpsc::Sender<()>,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot();
    let Some(spec) = snapshot.listeners.iter().find(|l| *l.name == *listener) else {
        return;
    };
    let tls = spec.tls.clone();
    let conn = Arc::new(Conn { shared: shared.clone(), active, peer, tls: tls.is_some(), limits: spec.limits });
    drop(snapshot);
    match tls {
        None => serve(Box::new(stream), conn).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(conn.limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(Box::new(stream), conn).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serves one connection until it closes: HTTP/1.x with [`http1`], HTTP/2 (by its preface,
/// which ALPN `h2` clients send too) with hyper.
async fn serve(io: Box<dyn http1::Io>, conn: Arc<Conn>) {
    if let Some(io) = http1::serve(io, conn.clone()).await {
        serve_http2(TokioIo::new(io), conn).await;
    }
}

/// Serves HTTP/2 until the connection closes, or until shutdown, when it is closed gracefully
/// (GOAWAY) after the requests in flight.
async fn serve_http2<I>(io: TokioIo<I>, conn: Arc<Conn>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = conn.limits;
    let mut shutdown = conn.shared.shutdown.subscribe();
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let conn = conn.clone();
        let limit = conn.limits.max_body_bytes;
        async move {
            Ok::<_, Infallible>(
                pipeline::handle(Box::new(request.map(|b| Body::limited(Inbound::Hyper(b), limit))), &conn).await,
            )
        }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            let linger = tokio::time::sleep(http1::SHUTDOWN_LINGER);
            tokio::pin!(linger);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = &mut linger => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
