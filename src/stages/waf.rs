//! The WAF stage: reads the body (up to the WAF's limit), hands the request to the route's
//! rule set, counts the decision, writes the audit line, and answers 403 `waf_blocked` when
//! the rules block and the route's mode is `block`. In `detect` mode the request goes on and
//! the audit log says what would have been blocked.

use http::Request;

use super::{Exchange, Stage, Verdict};
use crate::body::{Body, BufferError};
use crate::config::raw::WafMode;
use crate::respond::{self, Rejection};
use crate::waf::{Action, AuditMatch, AuditRecord, WafConfig};

impl Stage for WafConfig {
    async fn check(&self, request: &mut Request<Body>, exchange: &mut Exchange<'_>) -> Verdict {
        let Some(policy) = exchange.route.waf.as_ref().filter(|p| p.mode != WafMode::Off) else {
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

        let inspected = inspected(request, exchange, bytes.to_vec());
        let outcome = policy.ruleset.rules.evaluate(&inspected, None);
        let blocks = matches!(outcome.verdict, barbican_waf::Verdict::Block { .. });
        let action = match (blocks, policy.mode) {
            (true, WafMode::Block) => Action::Block,
            (true, _) => Action::Detect,
            (false, _) => Action::Pass,
        };
        policy.ruleset.stats.count(action);
        exchange.waf_action = Some(action.as_str());
        if !outcome.matched.is_empty() {
            if let Some(audit) = self.audit.get() {
                audit.write_json(&AuditRecord {
                    ts: crate::access_log::rfc3339(std::time::SystemTime::now()),
                    request_id: exchange.request_id.to_str().unwrap_or(""),
                    client_ip: exchange.client_ip,
                    route: &exchange.route.name,
                    tenant: exchange.tenant.as_deref(),
                    method: request.method().as_str(),
                    uri: request.uri().path_and_query().map_or("/", |p| p.as_str()),
                    ruleset: &policy.ruleset.name,
                    matched: outcome.matched.iter().map(AuditMatch::of).collect(),
                    anomaly_score: outcome.inbound_anomaly_score,
                    action: action.as_str(),
                });
            }
        }
        if action != Action::Block {
            return Verdict::Continue;
        }
        let mut body = respond::error_body(Rejection::WafBlocked, exchange.request_id);
        if policy.expose_rule_ids {
            let mut ids: Vec<u64> = outcome.matched.iter().map(|m| m.id).collect();
            ids.dedup();
            body["rule_ids"] = ids.into();
        }
        Verdict::Respond(respond::json(Rejection::WafBlocked.status(), &body, exchange.request_id))
    }
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
            inspected.headers.push((b"Host".to_vec(), authority.as_str().as_bytes().to_vec()));
        }
    }
    for (name, value) in request.headers() {
        inspected.headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    inspected.remote_addr = exchange.client_ip;
    inspected
}
