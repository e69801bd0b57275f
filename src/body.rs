//! The one body type that crosses the gateway, in both directions.
//!
//! A request body is either buffered (small, known length: replayable for retries and readable by
//! later stages) or streamed with a size limit, from an [`Inbound`] body. A response body is
//! either produced by the gateway or streamed from an upstream; when an upstream body ends, its
//! connection returns to the pool. An upstream body also holds its response's header fields
//! until they are written or moved into the response's map ([`Body::take_fields`]): a
//! `Response` has no other place of the gateway's own to carry them unparsed.
//! An upstream body whose beginning the WAF read (phase 4) is that prefix followed by the rest,
//! still streamed. A response may carry its access-log record, written when the body is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::access_log::Pending;
use crate::h1::Fields;
use crate::server::http1::RequestBody;
use crate::upstream::client::ResponseBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client sent more body than the listener allows.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// A body as it arrives from a peer: over Barbican's HTTP/1.1 server (whole, or read from the
/// connection as asked), or over hyper (HTTP/2 clients, upstream upgrade handshakes).
pub enum Inbound {
    Empty,
    /// Arrived with its head.
    Full(Bytes),
    Streaming(Box<RequestBody>),
    Hyper(Incoming),
}

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            Inbound::Empty => Poll::Ready(None),
            Inbound::Full(bytes) => {
                let bytes = std::mem::take(bytes);
                *self = Inbound::Empty;
                Poll::Ready((!bytes.is_empty()).then(|| Ok(Frame::data(bytes))))
            }
            Inbound::Streaming(body) => body.poll_frame(cx),
            Inbound::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Empty => true,
            Inbound::Full(bytes) => bytes.is_empty(),
            Inbound::Streaming(body) => body.is_end_stream(),
            Inbound::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Empty => SizeHint::with_exact(0),
            Inbound::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Inbound::Streaming(body) => body.size_hint(),
            Inbound::Hyper(body) => body.size_hint(),
        }
    }
}

pub struct Body {
    kind: Kind,
    log: Option<Box<Pending>>,
    bytes: u64,
}

enum Kind {
    Full(Option<Bytes>),
    Limited {
        body: Inbound,
        remaining: u64,
        limit: u64,
    },
    /// Read from its upstream connection, which goes back to the pool at the end; with the
    /// response's header fields, until taken.
    Upstream(ResponseBody, Option<Fields>),
    /// Bytes already read from `rest`, sent before the rest of it (boxed: rare, and it keeps
    /// every other body small).
    Prefixed(Box<Prefixed>),
}

struct Prefixed {
    head: Option<Bytes>,
    rest: Body,
    /// Trailers read with the head (the body ended there).
    trailers: Option<http::HeaderMap>,
}

impl Body {
    pub fn empty() -> Self {
        Self::from_kind(Kind::Full(None))
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::from_kind(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// A client body, failing once it passes `limit` bytes; one that arrived whole is kept as
    /// it is (buffered: replayable, and readable by later stages).
    pub fn limited(body: Inbound, limit: u64) -> Self {
        match body {
            body if http_body::Body::is_end_stream(&body) => Self::empty(),
            Inbound::Full(bytes) if bytes.len() as u64 <= limit => Self::full(bytes),
            body => Self::from_kind(Kind::Limited { body, remaining: limit, limit }),
        }
    }

    /// A body streamed through as it comes (an upstream answer on an unpooled connection).
    pub fn streamed(body: Incoming) -> Self {
        Self::from_kind(Kind::Limited { body: Inbound::Hyper(body), remaining: u64::MAX, limit: u64::MAX })
    }

    /// An upstream response body, holding the response's header `fields`; its connection goes
    /// back to its pool when the body ends.
    pub fn upstream(body: ResponseBody, fields: Fields) -> Self {
        Self::from_kind(Kind::Upstream(body, Some(fields)))
    }

    /// `head`, then what is left of `rest` (a body whose first bytes were read from it), then
    /// `trailers` when the head ended with them.
    pub fn prefixed(head: Bytes, rest: Body, trailers: Option<http::HeaderMap>) -> Self {
        let head = (!head.is_empty()).then_some(head);
        Self::from_kind(Kind::Prefixed(Box::new(Prefixed { head, rest, trailers })))
    }

    fn from_kind(kind: Kind) -> Self {
        Self { kind, log: None, bytes: 0 }
    }

    /// The buffered bytes, when this body is buffered (and so can be sent again).
    pub fn buffered(&self) -> Option<Bytes> {
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.clone().unwrap_or_default()),
            _ => None,
        }
    }

    /// Whether this body is buffered, without taking a reference to its bytes.
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }

    /// The header fields of the upstream response this body belongs to, unless taken.
    pub fn fields(&self) -> Option<&Fields> {
        match &self.kind {
            Kind::Upstream(_, fields) => fields.as_ref(),
            _ => None,
        }
    }

    /// Takes the header fields of the upstream response this body belongs to: from now on the
    /// response's map holds them, or they have been written.
    pub fn take_fields(&mut self) -> Option<Fields> {
        match &mut self.kind {
            Kind::Upstream(_, fields) => fields.take(),
            _ => None,
        }
    }

    /// Writes `log` when this body has been sent or dropped, with the bytes that went out.
    pub fn log_on_end(&mut self, log: Box<Pending>) {
        self.log = Some(log);
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.finish(self.bytes);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Limited { body, remaining, limit } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if len > *remaining {
                        Poll::Ready(Some(Err(BodyTooLarge(*limit).into())))
                    } else {
                        *remaining -= len;
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Kind::Upstream(body, _) => body.poll_frame(cx),
            Kind::Prefixed(prefixed) => match prefixed.head.take() {
                Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
                None => match Pin::new(&mut prefixed.rest).poll_frame(cx) {
                    Poll::Ready(None) => Poll::Ready(prefixed.trailers.take().map(|t| Ok(Frame::trailers(t)))),
                    polled => polled,
                },
            },
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Limited { body, .. } => body.is_end_stream(),
            Kind::Upstream(body, _) => body.is_end_stream(),
            Kind::Prefixed(prefixed) => {
                prefixed.head.is_none() && prefixed.rest.is_end_stream() && prefixed.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Limited { body, .. } => body.size_hint(),
            Kind::Upstream(body, _) => body.size_hint(),
            Kind::Prefixed(prefixed) => {
                let head = prefixed.head.as_ref().map_or(0, |h| h.len() as u64);
                let rest = prefixed.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}

/// Why a body could not be buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    TooLarge,
    /// The client went away or sent a malformed body.
    Broken,
}

impl Body {
    /// Reads the whole body into memory, keeping the limit it was created with.
    pub async fn buffer(self) -> Result<Body, BufferError> {
        use http_body_util::BodyExt;
        if self.buffered().is_some() {
            return Ok(self);
        }
        match self.collect().await {
            Ok(collected) => Ok(Body::full(collected.to_bytes())),
            Err(error) if error.is::<BodyTooLarge>() => Err(BufferError::TooLarge),
            Err(_) => Err(BufferError::Broken),
        }
    }
}
