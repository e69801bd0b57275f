//! The path of one request through the gateway, in the order it is taken.
//!
//! ```text
//! head limits ─ route match ─ body limit ─ ip rules ─ bot ─ (auth ─ WAF ─ CC ─ rate limits) ─ proxy
//!   ─ WAF response phases (routes whose rule set has response rules)
//! ```
//!
//! The route picks the policies; stages then run in a fixed order, cheapest refusal first: an
//! address check costs a few comparisons, a user-agent check one regex-set scan, credentials a
//! signature, the WAF a scan of the whole request, and CC and rate limits touch shared counters
//! (Redis when clustered), which should only count requests that would otherwise be served.
//! Each stage returns a [`Verdict`]; the first that answers ends the request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Body as _;

use crate::access_log::Pending;
use crate::body::{Body, BufferError};
use crate::config::Snapshot;
use crate::h1::Added;
use crate::respond::{self, Rejection, REQUEST_ID};
use crate::route::{self, Action, Fixed, Route};
use crate::server::Conn;
use crate::stages::{Exchange, Stage, Verdict};
use crate::upstream::proxy::{forward, Failure};
use crate::upstream::PickInput;
use crate::websocket::{self, Handshake};

/// Request bodies up to this size with a known length are read before proxying, so that an
/// idempotent request can be retried on another target.
const BUFFER_FOR_RETRY: u64 = 64 * 1024;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the access log and metrics need to know about a request once it is answered; borrowed
/// from the request's snapshot, copied only into a log record.
#[derive(Default)]
struct Outcome<'s> {
    route: Option<&'s Route>,
    upstream: Option<&'s Arc<str>>,
    target: Option<&'s Arc<str>>,
    tenant: Option<String>,
    consumer: Option<String>,
    waf_action: Option<&'static str>,
    limited: bool,
}

/// A request on its way through the pipeline: boxed, so that it moves as a pointer through the
/// futures of the steps that take it (a `Request` is about 300 bytes, copied whole at each).
pub type BoxedRequest = Box<Request<Body>>;

/// A response on its way back, boxed for the same reason.
pub type BoxedResponse = Box<Response<Body>>;

/// Answers one request: routes it, runs the stages, proxies it, and records the outcome.
pub async fn handle(request: BoxedRequest, conn: &Conn) -> Response<Body> {
    let (mut response, request_id) = answer(request, conn).await;
    headers_to_map(&mut response);
    response.headers_mut().insert(REQUEST_ID, request_id);
    *response
}

/// [`handle`], leaving the request id out of the response: the HTTP/1 server writes it with
/// the head instead of inserting it into the header map.
pub async fn answer(request: BoxedRequest, conn: &Conn) -> (BoxedResponse, HeaderValue) {
    let started = Instant::now();
    let snapshot = conn.shared.snapshot();
    let request_id = respond::request_id(request.headers().get(REQUEST_ID));
    let client_ip = snapshot.real_ip.client_ip(conn.peer.ip(), request.headers());
    let sink = conn.shared.access_log();
    // Only what the log needs is copied, and only when there is a log.
    let logged = sink.as_ref().map(|_| {
        (
            request.method().to_string(),
            route::request_host(request.uri(), request.headers()).into_owned(),
            request.uri().path().to_string(),
            content_length(request.headers()),
        )
    });

    let mut outcome = Outcome::default();
    let mut response = dispatch(request, conn, &snapshot, &request_id, client_ip, &mut outcome).await;

    let status = response.status().as_u16();
    let stats = outcome.route.map_or(&conn.shared.metrics.unmatched, |route| &route.stats);
    stats.observe(status, started.elapsed());
    if let (Some(sink), Some((method, host, path, bytes_in))) = (sink, logged) {
        response.body_mut().log_on_end(Box::new(Pending {
            sink,
            started,
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            client_ip,
            method,
            host,
            path,
            status,
            route: outcome.route.map(|route| route.name.clone()),
            upstream: outcome.upstream.cloned(),
            target: outcome.target.cloned(),
            tenant: outcome.tenant,
            consumer: outcome.consumer,
            bytes_in: bytes_in.unwrap_or(0),
            waf_action: outcome.waf_action,
            limited: outcome.limited,
        }));
    }
    (response, request_id)
}

/// Runs a stage; an answer from it is the answer to the request.
macro_rules! stage {
    ($stage:expr, $request:expr, $exchange:expr) => {
        if let Verdict::Respond(response) = $stage.check(&mut $request, &mut $exchange).await {
            return response;
        }
    };
}

async fn dispatch<'s>(
    mut request: BoxedRequest,
    conn: &Conn,
    snapshot: &'s Snapshot,
    request_id: &HeaderValue,
    client_ip: IpAddr,
    outcome: &mut Outcome<'s>,
) -> BoxedResponse {
    let reject = |rejection| Box::new(respond::reject(rejection, request_id));
    if head_size(&request) > conn.limits.max_header_bytes {
        return reject(Rejection::HeadersTooLarge);
    }
    let host = route::request_host(request.uri(), request.headers());
    // Routed, and forwarded, as the upstream will read it; the stages see what was sent.
    let normalized = route::path::normalize(request.uri().path());
    let path = normalized.as_deref().unwrap_or(request.uri().path());
    let Some(route) = snapshot.router.find(&host, path, request.method(), request.headers()) else {
        return reject(Rejection::NoRoute);
    };
    drop(host);
    outcome.route = Some(route);

    // The declared length (HTTP/1 bodies know it from their framing, HTTP/2 ones from the
    // header); the body itself enforces the limit as it streams (see `Body::limited`).
    let length = request.body().size_hint().exact();
    if length.is_some_and(|l| l > conn.limits.max_body_bytes) {
        return reject(Rejection::BodyTooLarge);
    }

    let mut exchange = Exchange {
        snapshot,
        route,
        client_ip,
        request_id,
        tenant: None,
        consumer: None,
        waf_action: None,
        waf_response: None,
        limited: false,
    };
    stage!(snapshot.ip_rules, request, exchange);
    stage!(snapshot.bot, request, exchange);
    stage!(snapshot.waf, request, exchange);
    outcome.tenant = exchange.tenant.take();
    outcome.consumer = exchange.consumer.take();
    outcome.waf_action = exchange.waf_action;
    outcome.limited = exchange.limited;

    let proxy = match &route.action {
        Action::Proxy(proxy) => proxy,
        Action::Respond(fixed) => return Box::new(fixed_response(fixed)),
    };
    outcome.upstream = Some(&proxy.upstream.name);
    if let Some(policy) = route.websocket.as_ref().filter(|_| websocket::is_upgrade(&request)) {
        upstream_request(&mut request, normalized.as_deref(), route, conn, snapshot, request_id)
            .insert_into(request.headers_mut());
        let input = PickInput::new(&proxy.upstream.balancer, client_ip, request.headers());
        let handshake = websocket::handshake(*request, route.name.clone(), proxy, policy, conn, &input).await;
        return match handshake {
            // A 101 keeps its upgrade headers: they are the answer.
            Handshake::Upgraded(response, target) => {
                outcome.target = Some(&target.key.addr);
                Box::new(response)
            }
            Handshake::Refused(response, target) => {
                outcome.target = Some(&target.key.addr);
                downstream_response(Box::new(response))
            }
            Handshake::Failed(failure, target) => {
                outcome.target = target.map(|t| &t.key.addr);
                reject(rejection_for(failure))
            }
            Handshake::Overloaded(after) => {
                Box::new(respond::reject_retry_after(Rejection::HandshakesOverloaded, request_id, after))
            }
        };
    }
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let buffer = idempotent && proxy.upstream.retries > 0 && length.is_some_and(|l| l <= BUFFER_FOR_RETRY);
    if buffer && !request.body().is_buffered() {
        let (parts, body) = (*request).into_parts();
        match body.buffer().await {
            Ok(body) => request = Box::new(Request::from_parts(parts, body)),
            Err(BufferError::TooLarge) => return reject(Rejection::BodyTooLarge),
            Err(BufferError::Broken) => return reject(Rejection::BadRequest),
        }
    }
    let retryable = idempotent && request.body().is_buffered();
    let added = upstream_request(&mut request, normalized.as_deref(), route, conn, snapshot, request_id);
    let input = PickInput::new(&proxy.upstream.balancer, client_ip, request.headers());
    let backends = proxy.backends_for(request.headers());
    let forwarded = forward(&proxy.upstream, backends, &input, request, &added, retryable).await;
    outcome.target = forwarded.target.map(|t| &t.key.addr);
    let response = match forwarded.result {
        Ok(response) => downstream_response(response),
        Err(failure) => return reject(rejection_for(failure)),
    };
    // The WAF's response phases, when the route's rule set has any.
    match exchange.waf_response.take() {
        None => response,
        Some(check) => {
            // Boxed: its state would otherwise widen this future for every route.
            let (response, action) = Box::pin(check.inspect(*response, proxy.upstream.request_timeout)).await;
            outcome.waf_action = Some(action.as_str());
            Box::new(response)
        }
    }
}

fn rejection_for(failure: Failure) -> Rejection {
    match failure {
        Failure::Unavailable => Rejection::UpstreamUnavailable,
        Failure::Connect => Rejection::UpstreamError,
        Failure::Timeout => Rejection::UpstreamTimeout,
        Failure::BodyTooLarge => Rejection::BodyTooLarge,
    }
}

fn fixed_response(fixed: &Fixed) -> Response<Body> {
    let mut response = Response::new(Body::full(fixed.body.clone()));
    *response.status_mut() = fixed.status;
    response.headers_mut().insert(header::CONTENT_TYPE, fixed.content_type.clone());
    response
}

/// The size of the request head as the client sent it (approximately, for HTTP/2).
fn head_size<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    request.headers().iter().fold(line, |n, (name, value)| n + name.as_str().len() + value.len() + 4)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Headers that describe one connection and never cross a proxy.
pub(crate) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than seven removals.
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        remove_named_hop_by_hop(headers);
    }
}

fn remove_named_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Makes the request what the upstream gets: origin-form URI (with the `normalized` path when
/// the path needed it), HTTP/1.1, the host it was routed by, no hop-by-hop headers, and the
/// route's header edits applied; returns the forwarding headers and request id to add (unless
/// the route edits them), and whether the request has no host at all.
fn upstream_request(
    request: &mut Request<Body>,
    normalized: Option<&str>,
    route: &Route,
    conn: &Conn,
    snapshot: &Snapshot,
    request_id: &HeaderValue,
) -> Added {
    let uri = request.uri();
    let path = route.upstream_path(normalized.unwrap_or(uri.path()));
    // Already origin-form and unchanged: kept as it is.
    let unchanged = uri.authority().is_none() && uri.scheme().is_none() && path == uri.path();
    let origin_form: Option<Uri> = match uri.query() {
        _ if unchanged => None,
        None => Some(Uri::try_from(path.as_ref()).unwrap_or_else(|_| Uri::from_static("/"))),
        Some(query) => Some(Uri::try_from(format!("{path}?{query}")).unwrap_or_else(|_| Uri::from_static("/"))),
    };
    // One pass over the names finds what has to go (usually nothing): hop-by-hop headers, and
    // `expect`, which the gateway answers itself when it reads the body; and which of the
    // headers the gateway sets are there already (usually none), so that no lookup is needed.
    let (mut hop_by_hop, mut expect, mut has_host, mut forwarded_by, mut proto) = (false, false, false, false, false);
    for name in request.headers().keys() {
        if *name == header::HOST {
            has_host = true;
        } else if *name == X_FORWARDED_FOR {
            forwarded_by = true;
        } else if *name == X_FORWARDED_PROTO {
            proto = true;
        } else if *name == header::EXPECT {
            expect = true;
        } else {
            hop_by_hop |= HOP_BY_HOP.contains(name);
        }
    }
    // A target with an authority (HTTP/2, absolute-form) names the host the request was routed
    // by, and a `host` header that says otherwise must not reach the upstream (RFC 9112, 3.2.2).
    let host = request.uri().authority().and_then(|authority| {
        let text = authority.as_str();
        HeaderValue::from_str(text.rsplit_once('@').map_or(text, |(_userinfo, host)| host)).ok()
    });
    if let Some(origin_form) = origin_form {
        *request.uri_mut() = origin_form;
    }
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    if hop_by_hop {
        remove_named_hop_by_hop(headers);
    }
    if expect {
        headers.remove(header::EXPECT);
    }
    let host_missing = host.is_none() && !has_host;
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    // The forwarding headers and the request id go out after the request's own (replacing
    // them), written by the encoder rather than inserted here.
    let mut added = Added::default();
    added.host_missing = host_missing;
    let earlier = if forwarded_by { headers.get(X_FORWARDED_FOR) } else { None };
    if let Some(value) = forwarded_for(earlier, conn.peer.ip()) {
        added.push(X_FORWARDED_FOR, value);
    }
    let trusted_peer = snapshot.real_ip.trusted.iter().any(|net| net.contains(&conn.peer.ip()));
    if !(trusted_peer && proto) {
        added.push(X_FORWARDED_PROTO, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    }
    added.push(REQUEST_ID, request_id.clone());
    // The route's own edits come last and win.
    for name in &route.remove_headers {
        headers.remove(name);
        added.remove(name);
    }
    for (name, value) in &route.set_headers {
        headers.insert(name.clone(), value.clone());
        added.remove(name);
    }
    added
}

/// `x-forwarded-for` with `peer` appended to what earlier proxies wrote.
fn forwarded_for(earlier: Option<&HeaderValue>, peer: IpAddr) -> Option<HeaderValue> {
    let earlier = earlier.and_then(|v| v.to_str().ok());
    // Written on the stack when it fits (an address takes at most 45 bytes).
    let mut stack = [0u8; 128];
    let mut cursor = std::io::Cursor::new(&mut stack[..]);
    if write_forwarded_for(&mut cursor, earlier, peer).is_ok() {
        let len = cursor.position() as usize;
        return HeaderValue::from_bytes(&stack[..len]).ok();
    }
    let mut long = Vec::new();
    write_forwarded_for(&mut long, earlier, peer).ok()?;
    HeaderValue::from_bytes(&long).ok()
}

fn write_forwarded_for(out: &mut impl std::io::Write, earlier: Option<&str>, peer: IpAddr) -> std::io::Result<()> {
    if let Some(earlier) = earlier {
        out.write_all(earlier.as_bytes())?;
        out.write_all(b", ")?;
    }
    match peer {
        // The common case, without the formatting machinery.
        IpAddr::V4(ip) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b".")?;
                }
                out.write_all(digits.format(octet).as_bytes())?;
            }
            Ok(())
        }
        IpAddr::V6(_) => write!(out, "{peer}"),
    }
}

/// Makes the upstream's response what the client gets: no hop-by-hop headers. Header fields
/// still unparsed with the body (see `h1::Fields`) stay so unless one of them has to go, other
/// than `transfer-encoding`, which the HTTP/1 encoder leaves out itself.
fn downstream_response(mut response: BoxedResponse) -> BoxedResponse {
    let unparsed = response.body().fields().map(|fields| fields.iter());
    if unparsed.is_some_and(|mut f| f.any(|(n, _)| n != b"transfer-encoding" && is_hop_by_hop(n))) {
        // Moved into the map, which then loses its hop-by-hop headers.
        headers_to_map(&mut response);
    } else {
        remove_hop_by_hop(response.headers_mut());
    }
    response
}

/// Moves the upstream's header fields, held unparsed by the body until then, into the
/// response's map (less hop-by-hop ones), for what reads or edits them.
pub(crate) fn headers_to_map(response: &mut Response<Body>) {
    if let Some(fields) = response.body_mut().take_fields() {
        fields.append_to(response.headers_mut());
        remove_hop_by_hop(response.headers_mut());
    }
}

pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str().as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_peer() {
        let v4: IpAddr = "10.0.0.255".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let earlier = HeaderValue::from_static("203.0.113.9");
        let long = HeaderValue::from_str(&"198.51.100.1, ".repeat(20)).unwrap();
        let cases = [
            (None, v4, "10.0.0.255".to_string()),
            (Some(&earlier), v4, "203.0.113.9, 10.0.0.255".to_string()),
            (Some(&earlier), v6, "203.0.113.9, 2001:db8::1".to_string()),
            (Some(&long), v4, format!("{}, 10.0.0.255", long.to_str().unwrap())),
        ];
        for (earlier, peer, expected) in cases {
            assert_eq!(forwarded_for(earlier, peer).unwrap(), expected.as_str());
        }
    }
}
