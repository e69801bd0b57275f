//! WebSocket proxying: the upgrade handshake (after the route's stages have passed it), the
//! admission cap on new handshakes, the frame relay with its limits (`relay`), and the
//! registry of open connections that drains them gently (`registry`).

pub mod frame;
pub mod registry;
pub mod relay;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::route::Proxy;
use crate::server::Conn;
use crate::upstream::pool;
use crate::upstream::proxy::Failure;
use crate::upstream::{PickInput, Target};

pub use registry::Registry;

/// A route's WebSocket settings, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct WsPolicy {
    pub max_message: u64,
    pub idle_timeout: Duration,
    /// Connections to a target that leaves are closed spread over this window.
    pub drain: Duration,
    /// How long a target may stay unhealthy before its connections are drained.
    pub health_grace: Duration,
    /// Drain open connections whose target the route's subsets no longer select (by default
    /// only a target leaving the upstream drains them).
    pub drain_on_subset_change: bool,
    pub admission: Option<AdmissionSpec>,
}

/// How many new handshakes a route takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionSpec {
    pub per_second: f64,
    pub burst: f64,
    /// How long a handshake may wait for its turn before it is refused with 503.
    pub queue: Duration,
}

/// A handshake rate limiter that queues: generic cell rate algorithm, where each admitted
/// handshake moves the "theoretical arrival time" one interval on.
pub struct Admission {
    spec: AdmissionSpec,
    tat: Mutex<Option<tokio::time::Instant>>,
}

impl Admission {
    fn new(spec: AdmissionSpec) -> Self {
        Self { spec, tat: Mutex::new(None) }
    }

    /// Waits for this handshake's turn; `Err(retry_after)` when that is further than the queue.
    pub async fn admit(&self) -> Result<(), Duration> {
        let interval = Duration::from_secs_f64(1.0 / self.spec.per_second);
        let tolerance = interval.mul_f64((self.spec.burst - 1.0).max(0.0));
        let now = tokio::time::Instant::now();
        let wait = {
            let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
            let current = tat.map_or(now, |t| t.max(now));
            let wait = (current.checked_sub(tolerance).unwrap_or(now)).saturating_duration_since(now);
            if wait > self.spec.queue {
                return Err(wait);
            }
            *tat = Some(current + interval);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

/// Whether `request` asks to become a WebSocket.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::GET && wants_upgrade(request.headers())
}

/// Whether request headers ask to switch to the WebSocket protocol.
pub fn wants_upgrade(headers: &http::HeaderMap) -> bool {
    headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// What a handshake came to.
pub enum Handshake<'u> {
    /// 101: the relay runs in its own task.
    Upgraded(Response<Body>, &'u Arc<Target>),
    /// The upstream refused the upgrade; its answer goes back as it is.
    Refused(Response<Body>, &'u Arc<Target>),
    Failed(Failure, Option<&'u Arc<Target>>),
    /// Over the route's handshake rate for longer than its queue.
    Overloaded(Duration),
}

/// Forwards an upgrade request (already rewritten for the upstream) and, on 101, relays.
pub async fn handshake<'u>(
    mut request: Request<Body>,
    route: Arc<str>,
    proxy: &'u Proxy,
    policy: &WsPolicy,
    conn: &Conn,
    input: &PickInput,
) -> Handshake<'u> {
    let registry = conn.shared.websockets.clone();
    if let Some(spec) = policy.admission {
        if let Err(retry_after) = registry.admission(&route, spec).admit().await {
            return Handshake::Overloaded(retry_after);
        }
    }
    let client_upgrade = crate::server::http1::on_upgrade(&mut request);
    let headers = request.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));

    let upstream = &proxy.upstream;
    let backends = proxy.backends_for(request.headers());
    let attempts = 1 + upstream.retries as usize;
    let mut tried = Vec::with_capacity(attempts);
    let mut failure = (Failure::Unavailable, None);
    let (parts, _) = request.into_parts();
    for _ in 0..attempts {
        let Some(index) = upstream.balancer.pick(&upstream.members, backends, input, &tried) else {
            break;
        };
        tried.push(index);
        let target = &upstream.members[index].target;
        let Some(addr) = target.next_addr() else {
            failure = (Failure::Unavailable, Some(target));
            continue;
        };
        let connected = tokio::time::timeout(upstream.connect_timeout, pool::connect_upgradable(addr)).await;
        let mut sender = match connected {
            Ok(Ok(sender)) => sender,
            _ => {
                let passive = upstream.passive;
                target.connect_failed(passive.failures, passive.eject_for);
                failure = (Failure::Connect, Some(target));
                continue;
            }
        };
        target.connect_succeeded();
        let outgoing = Request::from_parts(parts.clone(), Body::empty());
        let mut response = match tokio::time::timeout(upstream.request_timeout, sender.send_request(outgoing)).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Handshake::Failed(Failure::Connect, Some(target)),
            Err(_) => return Handshake::Failed(Failure::Timeout, Some(target)),
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = response.into_parts();
            return Handshake::Refused(Response::from_parts(parts, Body::streamed(body)), target);
        }
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let limits = relay::Limits { max_message: policy.max_message, idle_timeout: policy.idle_timeout };
        let (registration, close_at) = registry.register(route.clone(), target.clone(), policy);
        let active = conn.active.clone();
        tokio::spawn(async move {
            let _active = active;
            let _registration = registration;
            match tokio::try_join!(client_upgrade, async {
                upstream_upgrade.await.map_err(crate::body::BoxError::from)
            }) {
                Ok((client, upstream)) => {
                    let closed = relay::relay(client, TokioIo::new(upstream), limits, close_at).await;
                    tracing::debug!(route = %route, ?closed, "WebSocket closed");
                }
                Err(error) => tracing::debug!(%error, "WebSocket upgrade did not complete"),
            }
        });
        let (parts, _) = response.into_parts();
        return Handshake::Upgraded(Response::from_parts(parts, Body::empty()), target);
    }
    Handshake::Failed(failure.0, failure.1)
}
