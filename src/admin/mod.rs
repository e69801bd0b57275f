//! The admin listener: liveness and readiness probes, Prometheus metrics, and (as capabilities
//! land) the `/api/v1` API. Everything but the probes needs `Authorization: Bearer <token>`;
//! a token's role decides what it may do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::config::raw::Role;
use crate::respond;
use crate::secret::Secret;
use crate::server::reload::ReplaceError;
use crate::server::{stopped, Shared};

/// The admin listener's compiled settings.
#[derive(Debug)]
pub struct AdminSpec {
    pub bind: SocketAddr,
    pub tokens: Vec<Token>,
}

#[derive(Debug)]
pub struct Token {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
}

impl Role {
    /// Whether this role may do what `needed` may.
    pub fn covers(self, needed: Role) -> bool {
        self == Role::Admin || self == needed || needed == Role::Viewer
    }
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(request, &shared).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The largest config body `PUT /api/v1/config` accepts.
const MAX_CONFIG_BYTES: usize = 4 << 20;

async fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let request_id = respond::request_id(request.headers().get(respond::REQUEST_ID));
    let error = |status, code, message: &str| respond::json_error(status, code, message, &request_id);
    let ok = |value: serde_json::Value| respond::json(StatusCode::OK, &value, &request_id);
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => return ok(serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let snapshot = shared.snapshot();
            return if shared.is_shutting_down() || snapshot.revision == 0 {
                error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the gateway is starting or shutting down")
            } else {
                ok(serde_json::json!({"status": "ready", "revision": snapshot.revision}))
            };
        }
        _ => {}
    }
    let snapshot = shared.snapshot();
    let Some(admin) = &snapshot.admin else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
    };
    let Some(role) = authenticate(admin, request.headers().get(AUTHORIZATION)) else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid bearer token is required");
    };
    let needed = match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics" | "/api/v1/config") => Role::Viewer,
        (&Method::PUT, "/api/v1/config") => Role::Admin,
        (&Method::POST, "/api/v1/waf/evaluate") => Role::Security,
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    };
    if !role.covers(needed) {
        return error(StatusCode::FORBIDDEN, "forbidden", "this token's role may not do that");
    }
    match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut text = shared.metrics.render(&snapshot);
            text.push_str(&shared.websockets.render(&snapshot));
            let mut response = Response::new(Body::full(text));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            response
        }
        (&Method::GET, "/api/v1/config") => {
            let text = shared.current_source().text;
            let config =
                serde_yaml::from_str::<serde_json::Value>(&text).map(redact).unwrap_or(serde_json::Value::Null);
            ok(serde_json::json!({"revision": snapshot.revision, "config": config}))
        }
        (&Method::POST, _) => evaluate(request, &snapshot, &request_id).await,
        _ => put_config(request, shared, &request_id).await,
    }
}

/// `POST /api/v1/waf/evaluate`: runs a request through a rule set without sending it anywhere.
async fn evaluate(
    request: Request<Incoming>,
    snapshot: &crate::config::Snapshot,
    request_id: &HeaderValue,
) -> Response<Body> {
    use http_body_util::BodyExt;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        method: Option<String>,
        uri: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
        ruleset: Option<String>,
        route: Option<String>,
    }
    let error = |status, code, message: &str| respond::json_error(status, code, message, request_id);
    let body = match http_body_util::Limited::new(request.into_body(), MAX_CONFIG_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request is larger than 4 MiB"),
    };
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(ask) => ask,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &format!("not an evaluate request: {e}")),
    };
    let by_route = ask.route.as_deref().and_then(|name| {
        snapshot.router.routes().iter().find(|r| &*r.name == name).and_then(|r| r.waf.as_ref()).map(|p| &p.ruleset)
    });
    let ruleset = match (&ask.ruleset, by_route) {
        (Some(name), _) => snapshot.waf.rulesets.get(name),
        (None, Some(ruleset)) => Some(ruleset),
        (None, None) => None,
    };
    let Some(ruleset) = ruleset else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such WAF rule set (name one with ruleset, or a route with a WAF)",
        );
    };
    let mut inspected = barbican_waf::Request::new(ask.method.unwrap_or_else(|| "GET".into()), ask.uri).body(ask.body);
    for (name, value) in &ask.headers {
        inspected = inspected.header(name, value);
    }
    // Off the control thread's runtime: a large body takes a while.
    let rules = ruleset.rules.clone();
    let outcome = match tokio::task::spawn_blocking(move || rules.evaluate(&inspected, None)).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_cancelled() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the gateway is shutting down")
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "evaluation_failed", "the rule set failed"),
    };
    let action = if matches!(outcome.verdict, barbican_waf::Verdict::Block { .. }) { "block" } else { "pass" };
    let matched: Vec<serde_json::Value> = outcome
        .matched
        .iter()
        .map(|m| serde_json::json!({"id": m.id, "msg": m.msg, "data": m.data, "severity": m.severity.map(|s| s.number())}))
        .collect();
    respond::json(
        StatusCode::OK,
        &serde_json::json!({"action": action, "anomaly_score": outcome.inbound_anomaly_score, "matched": matched}),
        request_id,
    )
}

async fn put_config(request: Request<Incoming>, shared: &Shared, request_id: &HeaderValue) -> Response<Body> {
    use http_body_util::BodyExt;
    let error = |status, code, message: &str| respond::json_error(status, code, message, request_id);
    let if_match = match request.headers().get(http::header::IF_MATCH) {
        None => None,
        Some(value) => match value.to_str().ok().map(|v| v.trim().trim_matches('"')).and_then(|v| v.parse().ok()) {
            Some(revision) => Some(revision),
            None => return error(StatusCode::BAD_REQUEST, "bad_request", "If-Match must be a revision number"),
        },
    };
    let body = match http_body_util::Limited::new(request.into_body(), MAX_CONFIG_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the config is larger than 4 MiB"),
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "the config must be UTF-8 YAML or JSON");
    };
    match shared.replace(text, if_match).await {
        Ok((revision, warnings)) => {
            respond::json(StatusCode::OK, &serde_json::json!({"revision": revision, "warnings": warnings}), request_id)
        }
        Err(ReplaceError::Stale { serving }) => respond::json(
            StatusCode::CONFLICT,
            &serde_json::json!({"error": "stale_revision", "message": format!("revision {serving} is serving"), "revision": serving}),
            request_id,
        ),
        Err(ReplaceError::Invalid(errors)) => respond::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_config", "errors": errors}),
            request_id,
        ),
    }
}

/// Hides values that look like secrets: keys named like a password, secret or token (the
/// `*_env` keys only name variables and stay), and passwords inside URLs.
fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    let secret = !lower.ends_with("_env")
                        && ["password", "secret", "token", "key"].iter().any(|word| lower.ends_with(word));
                    let value = if secret && value.is_string() { Value::from("<redacted>") } else { redact(value) };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(text) => Value::String(redact_url_password(&text)),
        other => other,
    }
}

fn redact_url_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:<redacted>{}", &text[..scheme_end + 3], &rest[..colon], &rest[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// The role of the bearer token offered, if it is one of ours.
fn authenticate(admin: &AdminSpec, header: Option<&HeaderValue>) -> Option<Role> {
    let offered = header?.as_bytes().strip_prefix(b"Bearer ")?;
    admin.tokens.iter().find(|t| t.secret.matches(offered)).map(|t| t.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_shown_config() {
        let config = serde_json::json!({
            "cluster": { "redis": "redis://user:hunter2@10.0.0.1:6379/0" },
            "admin": { "tokens": [{ "name": "a", "token_env": "X_TOKEN", "role": "admin" }] },
            "consumers": [{ "credentials": [{ "type": "key", "key": "raw-key" }] }],
        });
        let shown = redact(config).to_string();
        assert!(!shown.contains("hunter2") && !shown.contains("raw-key"), "{shown}");
        assert!(shown.contains("X_TOKEN") && shown.contains("redis://user:<redacted>@10.0.0.1:6379/0"), "{shown}");
    }

    #[test]
    fn roles_cover_viewer_and_themselves() {
        assert!(Role::Operator.covers(Role::Viewer));
        assert!(Role::Admin.covers(Role::Security));
        assert!(!Role::Viewer.covers(Role::Operator));
        assert!(!Role::Operator.covers(Role::Security));
    }
}
