//! The HTTP exchange as the engine sees it: a [`Request`] (method, target, protocol, headers,
//! body, peer address) and optionally a [`Response`] (status, headers, body).
//!
//! Values are bytes, not `String`s: ModSecurity inspects what was on the wire, and attack
//! payloads are often not UTF-8. The gateway fills these from hyper's types; the regression
//! runner fills them from go-ftw test stages.

use std::net::{IpAddr, Ipv4Addr};

use super::body::{Pair, Text};
use super::transform::is_space;

/// A request to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method as sent (`GET`).
    pub method: Vec<u8>,
    /// The request target as sent (`/path?query`), not decoded.
    pub uri: Vec<u8>,
    /// The protocol (`HTTP/1.1`).
    pub protocol: Vec<u8>,
    /// Header fields in order; names keep their case, repeated names stay separate.
    pub headers: Vec<Pair>,
    /// The body (already de-chunked).
    pub body: Vec<u8>,
    /// The client address.
    pub remote_addr: IpAddr,
    /// The client port.
    pub remote_port: u16,
    /// The address the request arrived on.
    pub server_addr: IpAddr,
    /// The port the request arrived on.
    pub server_port: u16,
}

impl Request {
    /// A request with no headers and no body, from `127.0.0.1`.
    pub fn new(method: impl Into<Vec<u8>>, uri: impl Into<Vec<u8>>) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            remote_port: 0,
            server_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_port: 80,
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Request {
        self.headers.push((Text::from_slice(name.as_ref()), Text::from_slice(value.as_ref())));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the protocol.
    pub fn protocol(mut self, protocol: impl Into<Vec<u8>>) -> Request {
        self.protocol = protocol.into();
        self
    }

    /// Sets the client address.
    pub fn remote_addr(mut self, addr: IpAddr) -> Request {
        self.remote_addr = addr;
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.headers, name)
    }
}

/// A response to evaluate in phases 3 and 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The protocol (`HTTP/1.1`).
    pub protocol: Vec<u8>,
    /// Header fields in order.
    pub headers: Vec<Pair>,
    /// The body (decoded from any content encoding by the caller).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with no headers and no body.
    pub fn new(status: u16) -> Response {
        Response { status, protocol: b"HTTP/1.1".to_vec(), headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Response {
        self.headers.push((Text::from_slice(name.as_ref()), Text::from_slice(value.as_ref())));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.headers, name)
    }
}

/// The value of the first header field named `name` (any case).
pub(crate) fn header_value<'h>(headers: &'h [Pair], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.as_slice())
}

/// The media type of a `Content-Type` value: what comes before any `;`, without the blanks
/// around it (`text/html` of ` text/html ; charset=utf-8`).
pub fn media_type(content_type: &[u8]) -> &[u8] {
    let mime = content_type.split(|&b| b == b';').next().unwrap_or_default();
    let start = mime.iter().position(|&b| !is_space(b)).unwrap_or(mime.len());
    let end = mime.iter().rposition(|&b| !is_space(b)).map_or(start, |p| p + 1);
    &mime[start..end]
}
