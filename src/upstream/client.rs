//! The HTTP/1.1 client of the proxy path, driven inline by the task that serves the request.
//!
//! hyper's client runs each upstream connection as a task of its own and hands requests and
//! responses to it over channels, which costs a task switch and a wakeup each way per request.
//! Here the request's own task does the exchange: [`encode`] writes the request head, and the
//! body when it is small and of known length, into one buffer; [`roundtrip`] sends it in one
//! write and reads the response head (streaming a larger body alongside, so that an early answer
//! is still seen); [`ResponseBody`] then reads the body straight from the socket as the client
//! side asks for it (so backpressure is the client's), and gives the connection back to its
//! pool when the body has been read to its end and the upstream agreed to keep it open. The wire
//! format itself is [`crate::h1`].

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::Lease;
use crate::body::{Body, BoxError};
use crate::deadline::Deadline;
use crate::h1::{self, make_room, Added, BodyError, BodyReader, Framing, ParseError, ResponseHead};

/// Request bodies of known length up to this size are read before sending and go out with the
/// head in one write.
const COALESCE_BODY: u64 = 64 * 1024;
/// Room for a typical request head, so that encoding one rarely grows the buffer.
const HEAD_CAPACITY: usize = 1024;

/// An open connection to an upstream, idle or in use.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// The timer of the request timeout, kept from one exchange to the next.
    deadline: Option<Deadline>,
}

impl Connection {
    /// Connects to `addr`. Boxed: a connection moves between the pool and response bodies many
    /// times over its life, and is allocated once.
    pub async fn open(addr: SocketAddr) -> io::Result<Box<Self>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(Self { stream, read: BytesMut::new(), deadline: None }))
    }

    /// The connection's request timer, set to `timeout` from now (made on first use); give it
    /// back with [`Connection::keep_deadline`] when the connection goes on.
    pub fn take_deadline(&mut self, timeout: Duration) -> Deadline {
        match self.deadline.take() {
            Some(mut deadline) => {
                deadline.reset(timeout);
                deadline
            }
            None => Deadline::after(timeout),
        }
    }

    pub fn keep_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    /// What has been read from the upstream and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.read
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent anything unasked. Costs no system call unless the socket has had an event.
    pub fn is_reusable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                matches!(self.stream.try_read_buf(&mut self.read), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing reached the upstream: the request can go out again on another connection.
    #[error("connection unusable before the request was sent: {0}")]
    Unsent(io::Error),
    #[error("upstream closed the connection before answering")]
    Closed,
    #[error("upstream connection failed: {0}")]
    Io(io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The client's body failed (too large, broken, or not the length it announced).
    #[error("request body: {0}")]
    Body(BoxError),
}

/// A request encoded for the wire, ready to be sent (again, while nothing of it has left).
pub struct Outgoing {
    /// The head, and the whole body when it was small enough to join it.
    buf: BytesMut,
    /// The body still to stream after `buf`, and how it is framed.
    rest: Option<(Body, Framing)>,
    method: Method,
}

/// Encodes `request`'s head, with the gateway's `added` fields, and chooses its framing; the
/// body is taken, and a small one of known length is read by [`Outgoing::coalesce`]. Not
/// async, and the request is borrowed: it is not moved through the states of futures.
pub fn encode(request: &mut Request<Body>, added: &Added) -> Outgoing {
    let body = std::mem::replace(request.body_mut(), Body::empty());
    let (method, headers) = (request.method(), request.headers());
    let framing = h1::request_framing(method, headers, body.is_end_stream(), body.size_hint().exact());
    let mut buf = BytesMut::with_capacity(HEAD_CAPACITY);
    h1::encode_request_head(&mut buf, method, request.uri(), headers, added, framing);
    let rest = (framing.framing != Framing::Empty).then_some((body, framing.framing));
    Outgoing { buf, rest, method: method.clone() }
}

impl Outgoing {
    /// Reads a body of known length up to 64 KiB into the buffer, so that it leaves with the
    /// head (and can be sent again: the pipeline buffers the bodies of retryable requests up to
    /// the same size). Does nothing for other bodies.
    pub async fn coalesce(&mut self) -> Result<(), SendError> {
        let Some((mut body, Framing::Length(len))) =
            self.rest.take_if(|(_, f)| matches!(f, Framing::Length(l) if *l <= COALESCE_BODY))
        else {
            return Ok(());
        };
        let mut left = len;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(SendError::Body)?.into_data() else {
                continue;
            };
            left = left.checked_sub(data.len() as u64).ok_or_else(|| SendError::Body(too_long()))?;
            self.buf.extend_from_slice(&data);
        }
        if left != 0 {
            return Err(SendError::Body(too_short()));
        }
        Ok(())
    }

    /// Whether what is left of the body (if anything) is in memory: reading it cannot wait.
    pub fn body_in_memory(&self) -> bool {
        self.rest.as_ref().is_none_or(|(body, _)| body.is_buffered())
    }

    /// Whether the whole request is in memory, so that it can be sent again elsewhere.
    pub fn is_replayable(&self) -> bool {
        self.rest.is_none()
    }
}

fn too_long() -> BoxError {
    "request body longer than its content-length".into()
}

fn too_short() -> BoxError {
    "request body shorter than its content-length".into()
}

/// Sends `out` on `conn` and reads the response head. On [`SendError::Unsent`] nothing of the
/// request has left and `out` can be sent on another connection. The second value says whether
/// the whole request was sent (a response that came before the end of the body leaves the
/// connection in no state to be reused).
pub async fn roundtrip(conn: &mut Connection, out: &mut Outgoing) -> Result<(ResponseHead, bool), SendError> {
    let mut written = 0;
    while written < out.buf.len() {
        match conn.stream.write(&out.buf[written..]).await {
            Ok(0) => return Err(unsent_or_io(written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(error) => return Err(unsent_or_io(written, error)),
        }
    }
    if out.rest.is_none() {
        let head = read_head(&mut conn.stream, &mut conn.read, &out.method).await?;
        return Ok((head, true));
    }
    // Boxed: this rarer path would otherwise make every request's future larger (and futures
    // are moved whole as they are awaited).
    Box::pin(stream_body(conn, out)).await
}

/// Streams the rest of the body while watching for the answer, which may come early.
async fn stream_body(conn: &mut Connection, out: &mut Outgoing) -> Result<(ResponseHead, bool), SendError> {
    let Some((body, framing)) = out.rest.as_mut() else {
        return Err(SendError::Body("no body to stream".into()));
    };
    let (mut reader, mut writer) = conn.stream.split();
    let mut recv = pin!(read_head(&mut reader, &mut conn.read, &out.method));
    let mut send = pin!(send_body(&mut writer, body, *framing));
    let mut sent = false;
    poll_fn(|cx| {
        if let Poll::Ready(head) = recv.as_mut().poll(cx) {
            return Poll::Ready(head.map(|head| (head, sent)));
        }
        if !sent {
            match send.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => sent = true,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

fn unsent_or_io(written: usize, error: io::Error) -> SendError {
    if written == 0 {
        SendError::Unsent(error)
    } else {
        SendError::Io(error)
    }
}

async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<ResponseHead, SendError> {
    loop {
        if let Some(head) = h1::parse_response(buf, method)? {
            return Ok(head);
        }
        make_room(buf);
        if reader.read_buf(buf).await.map_err(SendError::Io)? == 0 {
            return Err(if buf.is_empty() {
                SendError::Closed
            } else {
                SendError::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
    }
}

async fn send_body<W: AsyncWrite + Unpin>(writer: &mut W, body: &mut Body, framing: Framing) -> Result<(), SendError> {
    let mut left = match framing {
        Framing::Length(len) => Some(len),
        _ => None,
    };
    while let Some(frame) = body.frame().await {
        // Trailers are not forwarded (hyper's client did not send them either without a
        // `trailer` header, which is hop-by-hop).
        let Ok(data) = frame.map_err(SendError::Body)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match &mut left {
            Some(left) => {
                *left = left.checked_sub(data.len() as u64).ok_or_else(|| SendError::Body(too_long()))?;
                writer.write_all(&data).await.map_err(SendError::Io)?;
            }
            None => {
                let line = h1::chunk_size_line(data.len());
                write_all_vectored(writer, &mut [line.as_ref(), &data, b"\r\n"]).await.map_err(SendError::Io)?;
            }
        }
    }
    match left {
        Some(0) => Ok(()),
        Some(_) => Err(SendError::Body(too_short())),
        None => writer.write_all(b"0\r\n\r\n").await.map_err(SendError::Io),
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<io::IoSlice<'_>> = parts[first..].iter().map(|p| io::IoSlice::new(p)).collect();
        let mut n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < parts.len() && n >= parts[first].len() {
            n -= parts[first].len();
            first += 1;
        }
        if first < parts.len() {
            parts[first] = &parts[first][n..];
        }
    }
    Ok(())
}

/// A response body read from its upstream connection as the client side asks for it.
pub struct ResponseBody {
    conn: Option<Box<Connection>>,
    reader: BodyReader,
    keep_alive: bool,
    lease: Option<Lease>,
}

impl ResponseBody {
    /// The body of `head`, read from `conn`; `reusable` is false when the connection cannot
    /// carry another request whatever the response says.
    pub fn new(conn: Box<Connection>, head: &ResponseHead, reusable: bool, lease: Lease) -> Self {
        let reader = BodyReader::new(head.framing);
        let mut body = Self { conn: Some(conn), reader, keep_alive: head.keep_alive && reusable, lease: Some(lease) };
        if body.reader.is_done() {
            body.finish();
        }
        body
    }

    /// The body has been read to its end: the connection goes back to its pool if it is clean.
    fn finish(&mut self) {
        let (Some(conn), Some(lease)) = (self.conn.take(), self.lease.take()) else {
            return;
        };
        if self.keep_alive && conn.read.is_empty() {
            lease.release(conn);
        }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = self.reader.poll_frame(&mut conn.stream, &mut conn.read, cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => {
                self.conn = None;
                self.lease = None;
            }
            Poll::Ready(_) if self.reader.is_done() => self.finish(),
            _ => {}
        }
        polled.map_err(|e| match e {
            BodyError::Closed => "upstream closed the connection mid-body".into(),
            e => e.into(),
        })
    }

    pub fn is_end_stream(&self) -> bool {
        self.reader.is_done()
    }

    pub fn size_hint(&self) -> SizeHint {
        self.reader.size_hint()
    }
}

#[cfg(test)]
mod tests;
