//! The integration harness: real upstream servers and a real gateway on ephemeral ports, and a
//! small client. Readiness is signalled (a bound socket, a started gateway), never slept for.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use barbican::{Gateway, Source};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How an upstream answers.
#[derive(Clone)]
pub struct UpstreamBuilder {
    name: String,
    delay: Duration,
    status: u16,
}

pub fn upstream(name: &str) -> UpstreamBuilder {
    UpstreamBuilder { name: name.to_string(), delay: Duration::ZERO, status: 200 }
}

impl UpstreamBuilder {
    /// Waits this long before answering (not for `/healthz`).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers with this status (not for `/healthz`).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Binds an ephemeral port and serves until killed or dropped.
    pub async fn run(self) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        self.serve_on(listener)
    }

    fn serve_on(self, listener: TcpListener) -> TestUpstream {
        let addr = listener.local_addr().unwrap();
        let (stop, _) = watch::channel(false);
        let state = Arc::new(UpstreamState {
            name: self.name.clone(),
            delay: self.delay,
            status: AtomicU16::new(self.status),
            healthy: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let stop_rx = stop.subscribe();
        let task_state = state.clone();
        tokio::spawn(async move {
            let mut stop_rx = stop_rx;
            loop {
                let accepted = tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                task_state.connections.fetch_add(1, Ordering::Relaxed);
                let state = task_state.clone();
                let mut conn_stop = stop_rx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let conn =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        TestUpstream { addr, state, stop }
    }
}

struct UpstreamState {
    name: String,
    delay: Duration,
    status: AtomicU16,
    healthy: AtomicBool,
    hits: AtomicU64,
    connections: AtomicU64,
}

impl UpstreamState {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() == "/healthz" {
            let ok = self.healthy.load(Ordering::Relaxed);
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
            *r.status_mut() = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            return r;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let headers: BTreeMap<String, String> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let echo = serde_json::json!({
            "name": self.name,
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body.len(),
        });
        let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&echo).unwrap())));
        *r.status_mut() = StatusCode::from_u16(self.status.load(Ordering::Relaxed)).unwrap();
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        r.headers_mut().insert("x-upstream", self.name.parse().unwrap());
        r
    }
}

/// A running upstream. `kill` closes its port and every open connection.
pub struct TestUpstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    stop: watch::Sender<bool>,
}

impl TestUpstream {
    pub fn kill(&self) {
        self.stop.send_replace(true);
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gateway started from a config file in its own temporary folder.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// One upstream `a` behind a gateway whose public listener has `limits` (YAML flow mapping).
pub async fn proxy_with_limits(limits: &str) -> (TestGateway, TestUpstream) {
    let up = upstream("a").run().await;
    let yaml = format!(
        "listeners: [{{ name: public, bind: 127.0.0.1:0, limits: {limits} }}]
workers: 1
shutdown_timeout: 2s
upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: a }}]
",
        up.addr
    );
    (gateway(&yaml).await, up)
}

/// Starts a gateway; `yaml` has its listener named `public`. `{dir}` in `yaml` becomes the
/// gateway's folder.
pub async fn gateway(yaml: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml.replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("barbican.yaml");
    std::fs::write(&path, text).unwrap();
    let gateway = start(path).await.unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    let addr = gateway.listener_addr("public").expect("a listener named public");
    let client = Client::builder(TokioExecutor::new()).build_http();
    TestGateway { gateway: Some(gateway), dir, addr, client }
}

/// Starts a gateway from `path` off the async runtime (start blocks briefly).
pub async fn start(path: PathBuf) -> Result<Gateway, barbican::StartError> {
    tokio::task::spawn_blocking(move || {
        let source = Source::read(&path).map_err(barbican::StartError::Config)?;
        Gateway::start(source)
    })
    .await
    .unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The name of the upstream that answered.
    pub fn upstream(&self) -> String {
        self.headers.get("x-upstream").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

impl TestGateway {
    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `request` (its URI a path) and reads the whole answer.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let (mut parts, body) = request.into_parts();
        parts.uri = self.url(&parts.uri.to_string()).parse().unwrap();
        let response = self.client.request(Request::from_parts(parts, body)).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Full::default()).unwrap()).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut builder = Request::get(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(Full::default()).unwrap()).await
    }

    /// The admin listener's answer to `GET path` with an optional bearer token.
    pub async fn admin_get(&self, path: &str, token: Option<&str>) -> Answer {
        let addr = self.gateway().admin_addr().expect("an admin listener");
        let mut builder = Request::get(format!("http://{addr}{path}"));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let response = self.client.request(builder.body(Full::default()).unwrap()).await.expect("admin request");
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// Sends `method path` to the admin listener with a bearer token and a body.
    pub async fn admin(&self, method: &str, path: &str, token: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let addr = self.gateway().admin_addr().expect("an admin listener");
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let response =
            self.client.request(builder.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// Replaces the config file the way careful tools do: write a sibling, rename it over.
    pub fn write_config(&self, yaml: &str) {
        let path = self.dir.path().join("barbican.yaml");
        let tmp = self.dir.path().join("barbican.yaml.tmp");
        std::fs::write(&tmp, yaml.replace("{dir}", &self.dir.path().display().to_string())).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// The revision serving now.
    pub fn revision(&self) -> u64 {
        self.gateway().shared().snapshot().revision
    }

    /// Rewrites the config file and reloads it, as SIGHUP does.
    pub async fn rewrite_and_reload(&self, yaml: &str) -> Result<u64, Vec<barbican::ConfigError>> {
        std::fs::write(
            self.dir.path().join("barbican.yaml"),
            yaml.replace("{dir}", &self.dir.path().display().to_string()),
        )
        .unwrap();
        self.gateway().reload().await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown();
        }
    }
}

/// Polls `check` every 20 ms until it holds, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config with one `public` listener and a short shutdown, followed by `rest`.
pub fn config(rest: &str) -> String {
    format!("listeners: [{{ name: public, bind: 127.0.0.1:0 }}]\nworkers: 1\nshutdown_timeout: 2s\n{rest}")
}

/// An upstream that answers in raw HTTP/1.1, for answers the echo upstream cannot give: chosen
/// status, headers and body, chunks spread over time. `answer` gets each request's head and
/// the connection, writes what it likes, and hands the connection back to read the next
/// request from (`None` closes it). Request bodies (by `content-length`) are read and dropped.
pub async fn scripted_upstream<F, Fut>(answer: F) -> ScriptedUpstream
where
    F: Fn(String, tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<tokio::net::TcpStream>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut stream).await {
                    match answer(head, stream).await {
                        Some(next) => stream = next,
                        None => return,
                    }
                }
            });
        }
    });
    ScriptedUpstream { addr, task }
}

/// A running scripted upstream; dropping it stops accepting.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (and drops its body); `None` when the connection ends first.
async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    tokio::io::copy(&mut (&mut *stream).take(length), &mut tokio::io::sink()).await.ok()?;
    Some(head)
}

/// The path of a request head's request line.
pub fn request_path(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("/")
}

/// A whole HTTP/1.1 response with `content-length`.
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One chunk of a chunked body (an empty `data` is the last chunk).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}
