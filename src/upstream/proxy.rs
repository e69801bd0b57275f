//! Sending a request to an upstream: pick a target, lease a connection, apply the connect and
//! request timeouts, retry idempotent requests elsewhere, and eject targets that refuse connects.
//! The exchange itself runs inline in the request's task ([`super::client`]).

use std::pin::pin;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::ext::ReasonPhrase;

use super::balance::{BackendSet, PickInput};
use super::client::{self, Connection, Outgoing, ResponseBody, SendError};
use super::pool::Lease;
use super::target::Target;
use super::Upstream;
use crate::body::{Body, BodyTooLarge};
use crate::h1::{Added, ChunkedDecoder, Framing};

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
pub struct Forwarded<'u> {
    pub result: Result<Box<Response<Body>>, Failure>,
    pub target: Option<&'u Arc<Target>>,
}

/// Forwards `request`, with the gateway's `added` header fields, to a target of `set`. When
/// `retryable` (an idempotent method with a buffered body), failed connects and 502/503
/// answers are retried on other targets.
pub async fn forward<'u>(
    upstream: &'u Upstream,
    set: &BackendSet,
    input: &PickInput,
    mut request: Box<Request<Body>>,
    added: &Added,
    retryable: bool,
) -> Forwarded<'u> {
    // At most 11 attempts (retries are capped at 10), tracked without allocating.
    let mut tried = [0usize; 11];
    let Some(mut index) = upstream.balancer.pick(&upstream.members, set, input, &[]) else {
        return Forwarded { result: Err(Failure::Unavailable), target: None };
    };
    let mut outcome = Forwarded { result: Err(Failure::Unavailable), target: Some(&upstream.members[index].target) };
    // HTTP/1.1 needs a host. A request that came without one (HTTP/1.0, or HTTP/2 without an
    // authority) names the first target, as health checks do.
    if added.host_missing {
        if let Ok(host) = HeaderValue::from_str(&upstream.members[index].target.key.addr) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    // Encoded once: a retry sends the same bytes again.
    let mut out = client::encode(&mut request, added);
    if let Err(failure) = coalesce(upstream, &mut out).await {
        outcome.result = Err(failure);
        return outcome;
    }
    // Only a request held whole in memory is ever sent twice.
    let replayable = retryable && out.is_replayable();
    let attempts = if replayable { (1 + upstream.retries as usize).min(tried.len()) } else { 1 };
    let mut attempt = 0;
    loop {
        tried[attempt] = index;
        attempt += 1;
        let target = &upstream.members[index].target;
        outcome.target = Some(target);
        match exchange(upstream, target, &mut out).await {
            Ok(response) => {
                let retry_status =
                    matches!(response.status(), StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE);
                outcome.result = Ok(response);
                if !(retry_status && replayable) {
                    return outcome;
                }
            }
            Err(failure) => {
                outcome.result = Err(failure);
                if matches!(failure, Failure::Timeout | Failure::BodyTooLarge) || !replayable {
                    return outcome;
                }
            }
        }
        if attempt == attempts {
            return outcome;
        }
        match upstream.balancer.pick(&upstream.members, set, input, &tried[..attempt]) {
            Some(next) => index = next,
            None => return outcome,
        }
    }
}

/// Reads a small body of known length into the encoded request (the client's time to send it
/// counts against the request timeout, as the exchange does).
async fn coalesce(upstream: &Upstream, out: &mut Outgoing) -> Result<(), Failure> {
    // A body already in memory (or none) needs no timer. The timed path is boxed, so that its
    // timer does not widen every request's future.
    let read = if out.body_in_memory() {
        Ok(out.coalesce().await)
    } else {
        Box::pin(tokio::time::timeout(upstream.request_timeout, out.coalesce())).await
    };
    match read {
        Err(_elapsed) => Err(Failure::Timeout),
        Ok(Ok(())) => Ok(()),
        Ok(Err(SendError::Body(error))) if error.is::<BodyTooLarge>() => Err(Failure::BodyTooLarge),
        Ok(Err(error)) => {
            tracing::debug!(%error, "request body could not be read");
            Err(Failure::Connect)
        }
    }
}

/// One request to one target: a pooled connection when one is idle, else a new one. A pooled
/// connection that turns out closed before anything of the request left is replaced by a new one.
async fn exchange(
    upstream: &Upstream,
    target: &Arc<Target>,
    out: &mut Outgoing,
) -> Result<Box<Response<Body>>, Failure> {
    let in_flight = target.start_request();
    let (mut conn, pooled) = match target.pool.checkout() {
        Some(conn) => (conn, true),
        None => (connect(upstream, target).await?, false),
    };
    let mut deadline = conn.take_deadline(upstream.request_timeout);
    // Made in place and pinned there: a future moved into `run` is copied whole.
    let attempt = pin!(async move {
        let (mut conn, mut pooled) = (conn, pooled);
        loop {
            match client::roundtrip(&mut conn, out).await {
                Ok((head, complete)) => return Ok((conn, head, complete)),
                // Never sent: the pooled connection was closing. Send it on a fresh one.
                Err(SendError::Unsent(error)) if pooled => {
                    tracing::debug!(target = %target.key.addr, %error, "pooled connection closed; reconnecting");
                    conn = Box::pin(connect(upstream, target)).await?;
                    pooled = false;
                }
                Err(error) => return Err(failure(target, error)),
            }
        }
    });
    let (mut conn, head, complete) = match deadline.run(attempt).await {
        None => return Err(Failure::Timeout),
        Some(result) => result?,
    };
    conn.keep_deadline(deadline);
    if head.framing == Framing::Chunked {
        if let Err(error) = ChunkedDecoder::check_start(conn.buffered()) {
            tracing::debug!(target = %target.key.addr, %error, "upstream body broken from its start");
            return Err(Failure::Connect);
        }
    }
    let body = ResponseBody::new(conn, &head, complete, Lease::new(in_flight));
    // The header fields stay unparsed with the body (see `h1::Fields`).
    let mut response = Box::new(Response::new(Body::upstream(body, head.fields)));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
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
