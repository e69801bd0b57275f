//! The WAF stage: reads the body (up to the WAF's limit), hands the request to the route's
//! rule set, counts the decision, writes the audit line, and answers 403 `waf_blocked` when
//! the rules block and the route's mode is `block`. In `detect` mode the request goes on and
//! the audit log says what would have been blocked.
//!
//! When the rule set has response rules (phases 3 and 4) and the request goes to an upstream,
//! its transaction does not end here: it travels in the [`Exchange`] as a [`ResponseCheck`],
//! so that the response rules see what the request rules set (anomaly scores, paranoia
//! levels), and [`ResponseCheck::inspect`] runs them on the upstream's answer:
//!
//! ```text
//! phases 1, 2 ─┬ blocked / no response rules / not proxied ─ phase 5, count, audit ─ 403 or on
//!              └ ResponseCheck ─ proxy ─ status, headers (+ the body's first bytes when the
//!                  rule set reads bodies of that type) ─ phases 3, 4, 5, count, audit
//!                  ─ 403, or the response: the bytes read, then the rest streamed
//! ```
//!
//! Either way a request counts once in `barbican_waf_decisions_total` and has at most one
//! audit line, with every rule that it and its response matched. A check dropped before a
//! response came (the upstream failed, the client went away) finishes as it drops, and is
//! counted and audited all the same.
//!
//! Once its request is inspected, the stage waits behind the worker's other ready tasks
//! ([`crate::server::behind_ready_tasks`]): the requests ready at that moment are inspected
//! back to back, with the engine's code and tables still in the CPU's caches, and then go on
//! to the upstream in a burst. With no other request ready, the task goes on at once.
//! Measured with `bench/waf.sh` (CRS 4.28.0, one core) when the pause came in: 15 % more
//! benign GETs per second, 25 % more with no value repeated, and a lower p99 latency.

use std::net::IpAddr;
use std::time::Duration;

use barbican_waf::engine::{media_type, Settings};
use barbican_waf::seclang::ast::{EngineMode, LimitAction};
use barbican_waf::{Outcome, Transaction};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::{Exchange, Stage, Verdict};
use crate::body::{Body, BoxError, BufferError};
use crate::config::raw::WafMode;
use crate::respond::{self, Rejection};
use crate::waf::{Action, AuditMatch, AuditRecord, RoutePolicy, WafConfig};

/// The audit line's `reason` when a response went past `SecResponseBodyLimit` and the rule set
/// says `SecResponseBodyLimitAction Reject`.
const BODY_LIMIT_REJECTED: &str = "response_body_limit";

impl Stage for WafConfig {
    async fn check(&self, request: &mut Request<Body>, exchange: &mut Exchange<'_>) -> Verdict {
        let (snapshot, route) = (exchange.snapshot, exchange.route);
        let Some(policy) = route.waf.as_ref().filter(|p| p.mode != WafMode::Off) else {
            return Verdict::Continue;
        };
        let declared =
            request.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.request_body_limit) {
            return exchange.reject(Rejection::BodyTooLarge);
        }
        let body = std::mem::replace(request.body_mut(), Body::empty());
        let bytes = match body.buffer().await {
            Ok(body) => {
                let bytes = body.buffered().unwrap_or_default();
                *request.body_mut() = body;
                bytes
            }
            Err(BufferError::TooLarge) => return exchange.reject(Rejection::BodyTooLarge),
            Err(BufferError::Broken) => return exchange.reject(Rejection::BadRequest),
        };
        if bytes.len() as u64 > self.request_body_limit {
            return exchange.reject(Rejection::BodyTooLarge);
        }

        let rules = &policy.ruleset.rules;
        let mut tx = Transaction::new(rules);
        tx.process_request(inspected(request, exchange, bytes.to_vec()));
        // Inspected requests go on together (see above).
        crate::server::behind_ready_tasks().await;
        let proxied = matches!(route.action, crate::route::Action::Proxy(_))
            && !(route.websocket.is_some() && crate::websocket::is_upgrade(request));
        // Nothing runs after an interruption but phase 5, so a blocked request (in either
        // mode) ends here; so does one whose rule set has nothing to say about responses.
        if tx.interruption().is_none() && proxied && judges_responses(rules) {
            exchange.waf_action = Some(Action::Pass.as_str());
            exchange.waf_response = Some(Box::new(ResponseCheck {
                waf: &snapshot.waf,
                policy,
                tx: Some(tx),
                request_id: exchange.request_id,
                client_ip: exchange.client_ip,
                route: &route.name,
                tenant: exchange.tenant.clone(),
                method: request.method().clone(),
                uri: request.uri().path_and_query().cloned(),
            }));
            return Verdict::Continue;
        }
        let outcome = tx.finish();
        let facts = Facts {
            request_id: exchange.request_id,
            client_ip: exchange.client_ip,
            route: &route.name,
            tenant: exchange.tenant.as_deref(),
            method: request.method().as_str(),
            uri: request.uri().path_and_query().map_or("/", |p| p.as_str()),
        };
        let action = conclude(self, policy, &outcome, blocks(&outcome), &facts, None);
        exchange.waf_action = Some(action.as_str());
        if action != Action::Block {
            return Verdict::Continue;
        }
        Verdict::Respond(Box::new(blocked(policy, &outcome, exchange.request_id)))
    }
}

/// A request the rules let through, whose transaction goes on into its response (phases 3
/// and 4), with what its audit line needs.
pub struct ResponseCheck<'a> {
    waf: &'a WafConfig,
    policy: &'a RoutePolicy,
    /// Taken when the transaction finishes; still here on drop means it never did.
    tx: Option<Transaction<'a>>,
    request_id: &'a HeaderValue,
    client_ip: IpAddr,
    route: &'a str,
    tenant: Option<String>,
    method: Method,
    uri: Option<PathAndQuery>,
}

impl ResponseCheck<'_> {
    /// Runs the response rules on the upstream's `response` and finishes the transaction.
    /// Returns the response for the client (the gateway's 403 when the rules block it) and
    /// what the WAF did. A body the rule set reads (see [`inspects_body`]) is read up to
    /// `SecResponseBodyLimit` bytes, for at most `wait`; the rest is streamed after it.
    pub async fn inspect(
        mut self: Box<Self>,
        mut response: Response<Body>,
        wait: Duration,
    ) -> (Response<Body>, Action) {
        let Some(mut tx) = self.tx.take() else {
            return (response, Action::Pass);
        };
        let settings = self.policy.ruleset.rules.settings();
        let mut seen = barbican_waf::Response::new(response.status().as_u16());
        if response.version() == http::Version::HTTP_10 {
            seen.protocol = b"HTTP/1.0".to_vec();
        }
        for (name, value) in upstream_fields(&response) {
            seen = seen.header(name, value);
        }
        let reads_body = inspects_body(settings, seen.headers.iter().map(|(k, v)| (&k[..], &v[..])));
        if reads_body {
            // The body is rebuilt from what is read of it: the fields it holds go to the map.
            crate::pipeline::headers_to_map(&mut response);
        }
        let (parts, mut body) = response.into_parts();

        let mut prefix = Prefix::default();
        if reads_body {
            let limit = usize::try_from(settings.response_body_limit).unwrap_or(usize::MAX);
            prefix = match read_prefix(&mut body, limit, wait).await {
                Ok(prefix) => prefix,
                Err(error) => {
                    // Nothing has gone to the client yet: a 502 rather than a broken answer.
                    tracing::debug!(%error, "upstream body broke while the WAF read it");
                    let outcome = tx.finish();
                    let action = self.conclude(&outcome, blocks(&outcome), None);
                    return (respond::reject(Rejection::UpstreamError, self.request_id), action);
                }
            };
            // The engine reads at most its limit of it, and knows from one byte more that the
            // body went past it (OUTBOUND_DATA_ERROR).
            prefix.over = prefix.bytes.len() > limit;
            seen.body = prefix.bytes.to_vec();
        }
        tx.process_response(seen);
        let outcome = tx.finish();
        let rejected = prefix.over
            && settings.response_body_limit_action == LimitAction::Reject
            && settings.engine == EngineMode::On;
        let action = self.conclude(&outcome, blocks(&outcome) || rejected, rejected.then_some(BODY_LIMIT_REJECTED));
        if action == Action::Block {
            return (blocked(self.policy, &outcome, self.request_id), action);
        }
        let body = match (prefix.read, prefix.ended, prefix.trailers) {
            (false, ..) => body,
            (true, true, None) => Body::full(prefix.bytes),
            (true, _, trailers) => Body::prefixed(Bytes::from(prefix.bytes), body, trailers),
        };
        (Response::from_parts(parts, body), action)
    }

    fn conclude(&self, outcome: &Outcome, blocks: bool, reason: Option<&'static str>) -> Action {
        let facts = Facts {
            request_id: self.request_id,
            client_ip: self.client_ip,
            route: self.route,
            tenant: self.tenant.as_deref(),
            method: self.method.as_str(),
            uri: self.uri.as_ref().map_or("/", |p| p.as_str()),
        };
        conclude(self.waf, self.policy, outcome, blocks, &facts, reason)
    }
}

impl Drop for ResponseCheck<'_> {
    /// No response came to inspect: the request's own decision stands, counted and audited.
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let outcome = tx.finish();
            self.conclude(&outcome, blocks(&outcome), None);
        }
    }
}

/// Whether a rule set has anything to say about responses: rules in phases 3 or 4, or a
/// response body limit that refuses (`SecResponseBodyLimitAction Reject`, which libmodsecurity3
/// applies whether or not a rule reads the body).
fn judges_responses(rules: &barbican_waf::RuleSet) -> bool {
    let settings = rules.settings();
    rules.has_response_rules()
        || (settings.response_body_access && settings.response_body_limit_action == LimitAction::Reject)
}

/// A response's header fields as the client will get them: those in its map, then those its
/// body still holds unparsed, less hop-by-hop ones. The rules only read them, so an upstream's
/// lines stay as it wrote them and go on to the client that way. Names are lowercase.
fn upstream_fields(response: &Response<Body>) -> impl Iterator<Item = (&[u8], &[u8])> {
    let map = response.headers().iter().map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    let unparsed = response.body().fields().into_iter().flat_map(|f| f.iter());
    map.chain(unparsed.filter(|(name, _)| !crate::pipeline::is_hop_by_hop(name)))
}

/// Whether the rule set reads a response's body, given its header `fields`:
/// `SecResponseBodyAccess On` and its media type in `SecResponseBodyMimeType`, as the engine
/// decides it. Not read: a compressed body (`content-encoding` other than `identity`; the rules
/// would see compressed bytes, and CRS skips such bodies too), and an event stream
/// (`text/event-stream`: it has no end, and each event is due when it is sent).
fn inspects_body<'f>(settings: &Settings, fields: impl Iterator<Item = (&'f [u8], &'f [u8])>) -> bool {
    if !settings.response_body_access {
        return false;
    }
    let mut content_type = None;
    for (name, value) in fields {
        if name == CONTENT_ENCODING.as_str().as_bytes() && !value.trim_ascii().eq_ignore_ascii_case(b"identity") {
            return false;
        }
        if name == CONTENT_TYPE.as_str().as_bytes() {
            content_type.get_or_insert(value);
        }
    }
    let mime = media_type(content_type.unwrap_or_default());
    !mime.eq_ignore_ascii_case(b"text/event-stream") && settings.reads_body_of(mime)
}

/// The first bytes of a response body, read before the rest is streamed.
#[derive(Default)]
struct Prefix {
    /// Whether anything was read (the body is inspected).
    read: bool,
    bytes: Vec<u8>,
    /// Whether the body ended within them.
    ended: bool,
    /// The body's trailers, when it ended with them.
    trailers: Option<HeaderMap>,
    /// Whether the body is longer than the limit.
    over: bool,
}

/// Reads `body` until it ends, passes `limit` bytes (one byte more says it is longer), or
/// `wait` has passed (a slow or endless stream is inspected as far as it came).
async fn read_prefix(body: &mut Body, limit: usize, wait: Duration) -> Result<Prefix, BoxError> {
    let deadline = tokio::time::Instant::now() + wait;
    let expected = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut prefix =
        Prefix { read: true, bytes: Vec::with_capacity(expected.min(limit.saturating_add(1))), ..Prefix::default() };
    while prefix.bytes.len() <= limit {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => break,
            Ok(None) => {
                prefix.ended = true;
                break;
            }
            Ok(Some(frame)) => frame?,
        };
        match frame.into_data() {
            Ok(data) => prefix.bytes.extend_from_slice(&data),
            Err(frame) => {
                prefix.trailers = frame.into_trailers().ok();
                prefix.ended = true;
                break;
            }
        }
    }
    Ok(prefix)
}

fn blocks(outcome: &Outcome) -> bool {
    matches!(outcome.verdict, barbican_waf::Verdict::Block { .. })
}

/// What an audit line says about the request.
struct Facts<'f> {
    request_id: &'f HeaderValue,
    client_ip: IpAddr,
    route: &'f str,
    tenant: Option<&'f str>,
    method: &'f str,
    uri: &'f str,
}

/// Counts the decision on a finished transaction and writes its audit line (when a rule
/// matched or a limit decided); returns what the route does with it.
fn conclude(
    waf: &WafConfig,
    policy: &RoutePolicy,
    outcome: &Outcome,
    blocks: bool,
    facts: &Facts<'_>,
    reason: Option<&'static str>,
) -> Action {
    let action = match (blocks, policy.mode) {
        (true, WafMode::Block) => Action::Block,
        (true, _) => Action::Detect,
        (false, _) => Action::Pass,
    };
    policy.ruleset.stats.count(action);
    if outcome.matched.is_empty() && reason.is_none() {
        return action;
    }
    if let Some(audit) = waf.audit.get() {
        audit.write_json(&AuditRecord {
            ts: crate::access_log::rfc3339(std::time::SystemTime::now()),
            request_id: facts.request_id.to_str().unwrap_or(""),
            client_ip: facts.client_ip,
            route: facts.route,
            tenant: facts.tenant,
            method: facts.method,
            uri: facts.uri,
            ruleset: &policy.ruleset.name,
            matched: outcome.matched.iter().map(AuditMatch::of).collect(),
            anomaly_score: outcome.inbound_anomaly_score,
            outbound_anomaly_score: outcome.outbound_anomaly_score,
            reason,
            action: action.as_str(),
        });
    }
    action
}

/// The 403 `waf_blocked` answer, with the ids of the matched rules when the route tells them.
fn blocked(policy: &RoutePolicy, outcome: &Outcome, request_id: &HeaderValue) -> Response<Body> {
    let mut body = respond::error_body(Rejection::WafBlocked, request_id);
    if policy.expose_rule_ids {
        let mut ids: Vec<u64> = outcome.matched.iter().map(|m| m.id).collect();
        ids.dedup();
        body["rule_ids"] = ids.into();
    }
    respond::json(Rejection::WafBlocked.status(), &body, request_id)
}

/// The request as the rules see it: as the client sent it, with the real client address.
fn inspected(request: &Request<Body>, exchange: &Exchange<'_>, body: Vec<u8>) -> barbican_waf::Request {
    let uri = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let protocol = match request.version() {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let mut inspected = barbican_waf::Request::new(request.method().as_str(), uri).protocol(protocol).body(body);
    if request.headers().get(http::header::HOST).is_none() {
        if let Some(authority) = request.uri().authority() {
            inspected = inspected.header("Host", authority.as_str());
        }
    }
    for (name, value) in request.headers() {
        inspected = inspected.header(name, value);
    }
    inspected.remote_addr = exchange.client_ip;
    inspected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'p>(pairs: &'p [(&str, &str)]) -> impl Iterator<Item = (&'p [u8], &'p [u8])> {
        pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn bodies_are_read_by_media_type_and_never_compressed_or_endless() {
        let mut settings = Settings { response_body_access: true, ..Settings::default() };
        settings.response_mime_types = vec!["text/plain".into(), "text/html".into(), "text/event-stream".into()];
        let cases: [(&[(&str, &str)], bool); 7] = [
            (&[("content-type", "text/html; charset=utf-8")], true),
            (&[("content-type", " TEXT/PLAIN ")], true),
            (&[("content-type", "application/json")], false),
            (&[], false),
            (&[("content-type", "text/html"), ("content-encoding", "gzip")], false),
            (&[("content-type", "text/html"), ("content-encoding", "identity")], true),
            (&[("content-type", "text/event-stream")], false),
        ];
        for (pairs, read) in cases {
            assert_eq!(inspects_body(&settings, fields(pairs)), read, "{pairs:?}");
        }
        settings.response_body_access = false;
        assert!(!inspects_body(&settings, fields(&[("content-type", "text/html")])));
    }
}
