//! Sending a request to an upstream: pick a target, lease a connection, apply the connect and
//! request timeouts, retry idempotent requests elsewhere, and eject targets that refuse connects.

use std::sync::Arc;

use http::{Request, Response, StatusCode};

use super::balance::{BackendSet, PickInput};
use super::pool::{self, Lease, Sender};
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
/// connection that turns out closed before the request left is replaced by a new one.
async fn exchange(
    upstream: &Upstream,
    target: &Arc<Target>,
    request: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let in_flight = target.start_request();
    let mut request = request;
    let mut sender = match pooled(target).await {
        Some(sender) => sender,
        None => connect(upstream, target).await?,
    };
    loop {
        let sent = tokio::time::timeout(upstream.request_timeout, sender.try_send_request(request)).await;
        match sent {
            Err(_elapsed) => return Err(Failure::Timeout),
            Ok(Ok(response)) => {
                let (parts, incoming) = response.into_parts();
                return Ok(Response::from_parts(parts, Body::upstream(incoming, Lease::new(sender, in_flight))));
            }
            Ok(Err(mut error)) => match error.take_message() {
                // Never written: the pooled connection was closing. Send it on a fresh one.
                Some(unsent) => {
                    tracing::debug!(target = %target.key.addr, error = %error.error(), "pooled connection closed; reconnecting");
                    request = unsent;
                    sender = connect(upstream, target).await?;
                }
                None => {
                    let error = error.into_error();
                    if body_too_large(&error) {
                        return Err(Failure::BodyTooLarge);
                    }
                    tracing::debug!(target = %target.key.addr, %error, "upstream exchange failed");
                    return Err(Failure::Connect);
                }
            },
        }
    }
}

async fn pooled(target: &Target) -> Option<Sender> {
    while let Some(mut sender) = target.pool.checkout() {
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    None
}

async fn connect(upstream: &Upstream, target: &Target) -> Result<Sender, Failure> {
    let addrs = target.connect_order();
    if addrs.is_empty() {
        return Err(Failure::Unavailable);
    }
    // Each address of a host name in turn, all within one connect timeout.
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match pool::connect(addr).await {
                Ok(sender) => return Ok(sender),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    match tokio::time::timeout(upstream.connect_timeout, attempt).await {
        Ok(Ok(sender)) => {
            target.connect_succeeded();
            return Ok(sender);
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

/// Whether a failed exchange failed because the client's body passed its limit.
fn body_too_large(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<BodyTooLarge>() {
            return true;
        }
        source = cause.source();
    }
    false
}
