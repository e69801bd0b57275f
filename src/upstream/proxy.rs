//! Sending a request to an upstream: pick a target, lease a connection, apply the connect and
//! request timeouts, retry idempotent requests elsewhere, and eject targets that refuse connects.
//! The exchange itself runs inline in the request's task ([`super::client`]).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::ext::ReasonPhrase;

use super::balance::{BackendSet, PickInput};
use super::client::{self, Connection, ResponseBody, SendError};
use super::pool::Lease;
use super::target::Target;
use super::Upstream;
use crate::body::{Body, BodyTooLarge};

/// Why no upstream response could be had; the pipeline maps these to 502 and 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No target of the set is healthy.
    Unavailable,
    /// Connecting failed, or the connection broke before a response came.
    Connect,
    /// No response within the request timeout.
    Timeout,
    /// The client's streamed body went past the listener's limit.
    BodyTooLarge,
}

/// The outcome of forwarding, with the target that answered (or failed last), for the log.
pub struct Forwarded {
    pub result: Result<Response<Body>, Failure>,
    pub target: Option<Arc<Target>>,
}

/// Forwards `request` to a target of `set`. When `retryable` (an idempotent method with a
/// buffered body), failed connects and 502/503 answers are retried on other targets.
pub async fn forward(
    upstream: &Upstream,
    set: &BackendSet,
    input: &PickInput,
    request: Request<Body>,
    retryable: bool,
) -> Forwarded {
    // At most 11 attempts (retries are capped at 10), tracked without allocating.
    let mut tried = [0usize; 11];
    let attempts = (1 + if retryable { upstream.retries as usize } else { 0 }).min(tried.len());
    let (parts, body) = request.into_parts();
    let replay = if retryable { body.buffered() } else { None };
    let (mut parts, mut body) = (Some(parts), Some(body));
    let mut outcome = Forwarded { result: Err(Failure::Unavailable), target: None };

    for attempt in 0..attempts {
        let Some(index) = upstream.balancer.pick(&upstream.members, set, input, &tried[..attempt]) else {
            break;
        };
        tried[attempt] = index;
        let target = &upstream.members[index].target;
        outcome.target = Some(target.clone());
        let last = attempt + 1 == attempts;
        // Only a replayable request is ever sent twice; the last attempt takes the originals.
        let (head, payload) = match (&replay, last) {
            (Some(bytes), false) => (parts.clone(), Some(Body::full(bytes.clone()))),
            _ => (parts.take(), body.take()),
        };
        let (Some(head), Some(payload)) = (head, payload) else {
            break;
        };
        match exchange(upstream, target, Request::from_parts(head, payload)).await {
            Ok(response) => {
                let retry_status =
                    matches!(response.status(), StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE);
                outcome.result = Ok(response);
                if !(retry_status && replay.is_some()) {
                    return outcome;
                }
            }
            Err(failure) => {
                outcome.result = Err(failure);
                if matches!(failure, Failure::Timeout | Failure::BodyTooLarge) || replay.is_none() {
                    return outcome;
                }
            }
        }
    }
    outcome
}

/// One request to one target: a pooled connection when one is idle, else a new one. A pooled
/// connection that turns out closed before anything of the request left is replaced by a new one.
async fn exchange(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let in_flight = target.start_request();
    let (conn, pooled) = match target.pool.checkout() {
        Some(conn) => (conn, true),
        None => (connect(upstream, target).await?, false),
    };
    let attempt = async move {
        let (mut conn, mut pooled) = (conn, pooled);
        let mut out = client::encode(request, conn.take_write_buffer()).await.map_err(|e| failure(target, e))?;
        loop {
            match client::roundtrip(&mut conn, &mut out).await {
                Ok((head, complete)) => {
                    conn.put_write_buffer(out.into_buffer());
                    return Ok((conn, head, complete));
                }
                // Never sent: the pooled connection was closing. Send it on a fresh one.
                Err(SendError::Unsent(error)) if pooled => {
                    tracing::debug!(target = %target.key.addr, %error, "pooled connection closed; reconnecting");
                    conn = connect(upstream, target).await?;
                    pooled = false;
                }
                Err(error) => return Err(failure(target, error)),
            }
        }
    };
    let (conn, head, complete) = match tokio::time::timeout(upstream.request_timeout, attempt).await {
        Err(_elapsed) => return Err(Failure::Timeout),
        Ok(result) => result?,
    };
    let body = ResponseBody::new(conn, &head, complete, Lease::new(in_flight));
    let mut response = Response::new(Body::upstream(body));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    if let Some(reason) = head.reason.and_then(|r| ReasonPhrase::try_from(r).ok()) {
        response.extensions_mut().insert(reason);
    }
    Ok(response)
}

fn failure(target: &Target, error: SendError) -> Failure {
    match error {
        SendError::Body(error) if error.is::<BodyTooLarge>() => Failure::BodyTooLarge,
        error => {
            tracing::debug!(target = %target.key.addr, %error, "upstream exchange failed");
            Failure::Connect
        }
    }
}

async fn connect(upstream: &Upstream, target: &Target) -> Result<Box<Connection>, Failure> {
    let addrs = target.connect_order();
    if addrs.is_empty() {
        return Err(Failure::Unavailable);
    }
    // Each address of a host name in turn, all within one connect timeout.
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match Connection::open(addr).await {
                Ok(conn) => return Ok(conn),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    match tokio::time::timeout(upstream.connect_timeout, attempt).await {
        Ok(Ok(conn)) => {
            target.connect_succeeded();
            return Ok(conn);
        }
        Ok(Err(error)) => tracing::debug!(target = %target.key.addr, %error, "connect failed"),
        Err(_elapsed) => tracing::debug!(target = %target.key.addr, "connect timed out"),
    }
    let passive = upstream.passive;
    if target.connect_failed(passive.failures, passive.eject_for) {
        tracing::warn!(upstream = %upstream.name, target = %target.key.addr, eject_for = ?passive.eject_for, "target ejected after failed connects");
        target.pool.clear();
    }
    // A connect timeout is a failed connect, not a slow answer: 502, not 504.
    Err(Failure::Connect)
}
