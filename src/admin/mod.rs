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
                async move { Ok::<_, Infallible>(handle(request, &shared)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let request_id = respond::request_id(request.headers().get(respond::REQUEST_ID));
    let error = |status, code, message| respond::json_error(status, code, message, &request_id);
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/healthz") => respond::json(StatusCode::OK, &serde_json::json!({"status": "ok"}), &request_id),
        (&Method::GET, "/readyz") => {
            let snapshot = shared.snapshot();
            if shared.is_shutting_down() || snapshot.revision == 0 {
                error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the gateway is starting or shutting down")
            } else {
                respond::json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ready", "revision": snapshot.revision}),
                    &request_id,
                )
            }
        }
        _ => {
            let snapshot = shared.snapshot();
            let Some(admin) = &snapshot.admin else {
                return error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
            };
            let Some(role) = authenticate(admin, request.headers().get(AUTHORIZATION)) else {
                return error(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid bearer token is required");
            };
            match (request.method(), path) {
                (&Method::GET, "/metrics") => {
                    if !role.covers(Role::Viewer) {
                        return error(StatusCode::FORBIDDEN, "forbidden", "this token's role may not read metrics");
                    }
                    let mut response = Response::new(Body::full(shared.metrics.render(&snapshot)));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                    response
                }
                _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
            }
        }
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
    fn roles_cover_viewer_and_themselves() {
        assert!(Role::Operator.covers(Role::Viewer));
        assert!(Role::Admin.covers(Role::Security));
        assert!(!Role::Viewer.covers(Role::Operator));
        assert!(!Role::Operator.covers(Role::Security));
    }
}
