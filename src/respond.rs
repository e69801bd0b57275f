//! Every response the gateway produces itself, and the one place where a reason to refuse a
//! request becomes a status code and an error code.
//!
//! Bodies are always JSON with the request id: `{"error", "message", "request_id"}`; the
//! `x-request-id` header is set on every response, proxied or not.

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::body::Body;

pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Why the gateway answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    NoRoute,
    BadRequest,
    IpDenied,
    BotDenied,
    WafBlocked,
    HeadersTooLarge,
    BodyTooLarge,
    UpstreamUnavailable,
    UpstreamError,
    UpstreamTimeout,
    /// More WebSocket handshakes than the route admits; `retry-after` says when to come back.
    HandshakesOverloaded,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::BadRequest => StatusCode::BAD_REQUEST,
            Rejection::IpDenied | Rejection::BotDenied | Rejection::WafBlocked => StatusCode::FORBIDDEN,
            Rejection::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UpstreamUnavailable | Rejection::UpstreamError => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::HandshakesOverloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable `error` code of the contract.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::NoRoute => "no_route",
            Rejection::BadRequest => "bad_request",
            Rejection::IpDenied => "ip_denied",
            Rejection::BotDenied => "bot_denied",
            Rejection::WafBlocked => "waf_blocked",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamError => "upstream_error",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::HandshakesOverloaded => "too_many_handshakes",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Rejection::NoRoute => "no route matches this request",
            Rejection::BadRequest => "the request could not be read",
            Rejection::IpDenied => "requests from this address are not allowed",
            Rejection::BotDenied => "this client is not allowed",
            Rejection::WafBlocked => "the request was blocked by the web application firewall",
            Rejection::HeadersTooLarge => "the request head is larger than this gateway accepts",
            Rejection::BodyTooLarge => "the request body is larger than this gateway accepts",
            Rejection::UpstreamUnavailable => "no healthy upstream target is available",
            Rejection::UpstreamError => "the upstream could not be reached",
            Rejection::UpstreamTimeout => "the upstream did not answer in time",
            Rejection::HandshakesOverloaded => "too many new WebSocket connections; retry shortly",
        }
    }
}

/// The JSON body of the answer for `rejection`, for answers that add fields to it.
pub fn error_body(rejection: Rejection, request_id: &HeaderValue) -> serde_json::Value {
    serde_json::json!({
        "error": rejection.code(),
        "message": rejection.message(),
        "request_id": String::from_utf8_lossy(request_id.as_bytes()),
    })
}

/// The gateway's own answer for `rejection`.
pub fn reject(rejection: Rejection, request_id: &HeaderValue) -> Response<Body> {
    json_error(rejection.status(), rejection.code(), rejection.message(), request_id)
}

/// The answer for `rejection` with `retry-after` (whole seconds, at least 1).
pub fn reject_retry_after(
    rejection: Rejection,
    request_id: &HeaderValue,
    after: std::time::Duration,
) -> Response<Body> {
    let mut response = reject(rejection, request_id);
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// A JSON error body in the contract's shape.
pub fn json_error(status: StatusCode, code: &str, message: &str, request_id: &HeaderValue) -> Response<Body> {
    let body = serde_json::json!({
        "error": code,
        "message": message,
        "request_id": String::from_utf8_lossy(request_id.as_bytes()),
    });
    json(status, &body, request_id)
}

/// A JSON response with the request id header.
pub fn json(status: StatusCode, value: &serde_json::Value, request_id: &HeaderValue) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(Body::full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REQUEST_ID, request_id.clone());
    response
}

/// Lowercase hexadecimal digits by value (request ids, chunk sizes).
pub(crate) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The request's own id when it sent a sane one, else a new random one.
pub fn request_id(sent: Option<&HeaderValue>) -> HeaderValue {
    if let Some(value) = sent {
        let bytes = value.as_bytes();
        if !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic()) {
            return value.clone();
        }
    }
    let mut text = [0u8; 32];
    let id = (u128::from(fastrand::u64(..)) << 64) | u128::from(fastrand::u64(..));
    // Two digits a byte (shifting the u128 for each digit cost more than the rest of this).
    for (digits, byte) in text.chunks_exact_mut(2).zip(id.to_be_bytes()) {
        digits[0] = HEX_DIGITS[usize::from(byte >> 4)];
        digits[1] = HEX_DIGITS[usize::from(byte & 0xf)];
    }
    // Owned by a shared buffer from the start: the id is cloned into the upstream request and
    // the response, and a copied slice would be re-allocated as shared on its first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let sent = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&sent)), sent);
        let hostile = HeaderValue::from_bytes(b"a b\t").unwrap();
        let made = request_id(Some(&hostile));
        assert_eq!(made.len(), 32);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn errors_carry_code_and_request_id() {
        let id = HeaderValue::from_static("r\"1");
        let response = reject(Rejection::NoRoute, &id);
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()[REQUEST_ID], id);
        let body = response.body().buffered().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"], "no_route");
        assert_eq!(value["request_id"], "r\"1");
    }
}
