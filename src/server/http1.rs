//! Barbican's own HTTP/1.1 server: the task of a client connection reads a request head, runs
//! the pipeline, and writes the answer, with the request body read from the same socket as the
//! pipeline asks for it.
//!
//! hyper's server put a dispatcher, a channel for every request body and a timer registration
//! per request between the socket and the pipeline; on the plain proxy path (bench/proxy.sh)
//! they were most of the gap to nginx. Here a connection is one loop:
//!
//! ```text
//! read head (h1::parse_request) ─ pipeline::answer ─ take the socket back from the body ─ write
//!   head + body (one write when the body is ready) ─ next head (maybe already buffered)
//! ```
//!
//! A body that arrived whole with its head is handed over as bytes; otherwise the socket is lent
//! to the request body ([`RequestBody`]), which reads it as the pipeline asks (sending
//! `100 Continue` first when the client waits for it) and gives it back when done or dropped;
//! a body left unread closes the connection after the answer. A `101` answer to an upgrade
//! request hands the socket to the WebSocket relay ([`on_upgrade`]). A connection that opens
//! with the HTTP/2 preface (prior knowledge, or ALPN `h2` over TLS) is returned to the caller
//! for hyper's HTTP/2 server.
//!
//! The head must arrive within `header_read_timeout` from the moment the connection waits for
//! it (idle keep-alive connections included), watched by one [`Deadline`] per connection.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::Conn;
use crate::body::{Body, BoxError, Inbound};
use crate::deadline::Deadline;
use crate::h1::{self, make_room, BodyError, BodyReader, Framing, ParseError, READ_CHUNK};
use crate::pipeline::{self, BoxedResponse};
use crate::respond::{self, Rejection};

/// A client connection's transport: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A client connection: its transport and what has been read from it and not consumed yet.
pub struct Stream {
    io: Box<dyn Io>,
    read: BytesMut,
}

/// How HTTP/2 begins (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a connection may still take a request after shutdown begins: an HTTP/1.1 client
/// that sends one more gets its answer with `connection: close` (see `exchange`) and
/// reconnects elsewhere; closing an idle connection at once could race a request on its way.
pub const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);
/// After refusing a malformed head, how long and how much of the rest is read and dropped, so
/// that closing with unread bytes does not reset the connection before the client reads the
/// answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// Body data up to this size is copied behind the head (one write); larger data is written
/// as it is.
const COPY_DATA: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves HTTP/1.x on `io` until the connection closes. Returns the connection, with the bytes
/// read so far in front, when it turns out to speak HTTP/2.
pub async fn serve(io: Box<dyn Io>, conn: Arc<Conn>) -> Option<Prefixed<Box<dyn Io>>> {
    let mut stream = Box::new(Stream { io, read: BytesMut::with_capacity(READ_CHUNK) });
    let mut out = BytesMut::with_capacity(4 * 1024);
    let mut waiting = Waiting::new(&conn);
    let mut first = true;
    loop {
        let head = match read_head(&mut stream, &conn, &mut waiting, first).await {
            Next::Request(head) => head,
            Next::Http2 => return Some(Prefixed::new(stream.read.split().freeze(), stream.io)),
            Next::Closed => return None,
            Next::Refused(error) => {
                refuse(stream, &mut out, error).await;
                return None;
            }
        };
        first = false;
        match exchange(stream, head, &conn, &mut out, &waiting).await {
            Some(next) => stream = next,
            None => return None,
        }
    }
}

/// What waiting for a request head ended with.
// Moved once per request: boxing the head would cost an allocation instead.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(h1::RequestHead),
    Http2,
    /// The client closed, went quiet past the timeout, or the gateway is shutting down.
    Closed,
    Refused(ParseError),
}

async fn read_head(stream: &mut Stream, conn: &Conn, waiting: &mut Waiting, first: bool) -> Next {
    let mut armed = false;
    loop {
        let undecided = first && stream.read.len() < PREFACE.len() && PREFACE.starts_with(&stream.read);
        if first && stream.read.starts_with(PREFACE) {
            return Next::Http2;
        }
        if !undecided {
            match h1::parse_request(&mut stream.read, conn.limits.max_header_bytes) {
                Ok(Some(head)) => return Next::Request(head),
                Ok(None) => {}
                Err(error) => return Next::Refused(error),
            }
        }
        if !armed {
            waiting.arm(conn.limits.header_read_timeout);
            armed = true;
        }
        make_room(&mut stream.read);
        match poll_fn(|cx| waiting.poll(stream, cx)).await {
            Wait::Read(Ok(0) | Err(_)) | Wait::TimedOut => return Next::Closed,
            Wait::Read(Ok(_)) => {}
            // Idle: a last chance for a request already on its way. Mid-head: it may finish.
            Wait::Stopping if stream.read.is_empty() => waiting.shorten(SHUTDOWN_LINGER),
            Wait::Stopping => {}
        }
    }
}

/// Where the connection is while the pipeline answers a request.
enum Held {
    Here(Box<Stream>),
    /// Lent to the request body, which gives it back when it ends or is dropped.
    Lent(oneshot::Receiver<Returned>),
}

/// Answers one request; returns the connection when it can carry another.
async fn exchange(
    stream: Box<Stream>,
    head: h1::RequestHead,
    conn: &Conn,
    out: &mut BytesMut,
    waiting: &Waiting,
) -> Option<Box<Stream>> {
    let h1::RequestHead { method, uri, version, headers, framing, mut keep_alive, expect_continue, upgrade } = head;
    let head_request = method == Method::HEAD;
    let upgrade = upgrade && crate::websocket::wants_upgrade(&headers);
    let (body, held) = match framing {
        Framing::Empty => (Inbound::Empty, Held::Here(stream)),
        Framing::Length(len) if len <= stream.read.len() as u64 => {
            let mut stream = stream;
            let bytes = stream.read.split_to(len as usize).freeze();
            (Inbound::Full(bytes), Held::Here(stream))
        }
        _ => {
            let (back, lent) = oneshot::channel();
            let body = RequestBody {
                stream: Some(stream),
                reader: BodyReader::new(framing),
                continue_left: if expect_continue { CONTINUE.len() } else { 0 },
                failed: false,
                back: Some(back),
            };
            (Inbound::Streaming(Box::new(body)), Held::Lent(lent))
        }
    };
    let mut request = Box::new(Request::new(Body::limited(body, conn.limits.max_body_bytes)));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let handover = upgrade.then(|| {
        let (give, take) = oneshot::channel();
        request.extensions_mut().insert(Upgrade(Arc::new(Mutex::new(Some(take)))));
        give
    });

    let (response, request_id) = pipeline::answer(request, conn).await;
    let mut added = h1::Added::default();
    added.push(respond::REQUEST_ID, request_id);

    let mut stream = match held {
        Held::Here(stream) => stream,
        Held::Lent(lent) => {
            let returned = lent.await.ok()?;
            keep_alive &= returned.clean;
            returned.stream
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let give = handover?;
        send(&mut stream.io, out, response, &added, Sent { head_request, version, keep_alive: true }).await?;
        let _ = give.send(stream);
        return None;
    }
    // Draining: this connection closes after this answer.
    keep_alive &= !waiting.draining();
    if !send(&mut stream.io, out, response, &added, Sent { head_request, version, keep_alive }).await? {
        let _ = stream.io.shutdown().await;
        return None;
    }
    Some(stream)
}

/// What the request says about how its answer goes out.
struct Sent {
    /// A HEAD request: no body goes out.
    head_request: bool,
    version: Version,
    /// The connection may carry another request, as far as the request and the server know.
    keep_alive: bool,
}

/// Writes a response: head (with the `added` fields) and body. `Some(true)`: the connection
/// can carry another request; `None`: it broke.
async fn send(
    io: &mut Box<dyn Io>,
    out: &mut BytesMut,
    mut response: BoxedResponse,
    added: &h1::Added,
    sent: Sent,
) -> Option<bool> {
    // An upstream's header fields not moved into the map are written from its head.
    let fields = response.body_mut().take_fields();
    let (status, exact) = (response.status(), response.body().size_hint().exact());
    let headers = (response.headers(), fields.as_ref());
    let framing = h1::response_framing(status, sent.head_request, sent.version, headers, exact);
    let keep_alive = sent.keep_alive && framing.framing != Framing::UntilClose;
    let http10 = sent.version == Version::HTTP_10;
    out.clear();
    let keep_alive = h1::encode_response_head(out, status, headers, added, framing, (keep_alive, http10), &date());
    drop(fields);
    // Responses ready together go out together (see `behind_ready_tasks`).
    super::behind_ready_tasks().await;
    let complete = write_body(io, out, response.body_mut(), framing.framing).await.ok()?;
    // The body's end (and its access-log line) before the next request.
    drop(response);
    Some(keep_alive && complete)
}

/// Writes what `out` holds (the head), then the body as its framing delimits it. `Ok(false)`:
/// the body broke off or did not match its length, so the connection cannot carry more.
async fn write_body(io: &mut Box<dyn Io>, out: &mut BytesMut, body: &mut Body, framing: Framing) -> io::Result<bool> {
    let mut left = match framing {
        Framing::Empty => {
            write_out(io, out).await?;
            io.flush().await?;
            return Ok(true);
        }
        Framing::Length(len) => Some(len),
        Framing::Chunked | Framing::UntilClose => None,
    };
    let chunked = framing == Framing::Chunked;
    let mut complete = true;
    loop {
        // What the body has ready goes out with the head; the rest as it comes.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                write_out(io, out).await?;
                io.flush().await?;
                body.frame().await
            }
        };
        let mut data = match frame {
            None => break,
            Some(Err(_)) => {
                complete = false;
                break;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if let Some(left) = &mut left {
            if data.len() as u64 > *left {
                data.truncate(*left as usize);
                complete = false;
            }
            *left -= data.len() as u64;
        }
        if chunked {
            out.put_slice(h1::chunk_size_line(data.len()).as_ref());
        }
        if data.len() <= COPY_DATA {
            out.put_slice(&data);
        } else {
            write_out(io, out).await?;
            io.write_all(&data).await?;
        }
        if chunked {
            out.put_slice(b"\r\n");
        }
        if !complete {
            break;
        }
    }
    match left {
        Some(left) => complete &= left == 0,
        None if chunked && complete => out.put_slice(b"0\r\n\r\n"),
        None => {}
    }
    write_out(io, out).await?;
    io.flush().await?;
    Ok(complete)
}

async fn write_out(io: &mut Box<dyn Io>, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Answers a head that cannot be read (400, or 431 when it is too large) and closes.
async fn refuse(mut stream: Box<Stream>, out: &mut BytesMut, error: ParseError) {
    tracing::debug!(%error, "refused a request head");
    let rejection = match error {
        ParseError::RequestHeadTooLarge => Rejection::HeadersTooLarge,
        _ => Rejection::BadRequest,
    };
    let response = Box::new(respond::reject(rejection, &respond::request_id(None)));
    let sent = Sent { head_request: false, version: Version::HTTP_11, keep_alive: false };
    if send(&mut stream.io, out, response, &h1::Added::default(), sent).await.is_none() {
        return;
    }
    let _ = stream.io.shutdown().await;
    // Read what the client is still sending, so that closing does not reset the connection
    // before it reads the answer.
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < LINGER_BYTES {
            stream.read.clear();
            make_room(&mut stream.read);
            match tokio::io::AsyncReadExt::read_buf(&mut stream.io, &mut stream.read).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The `date` header value, formatted once a second per worker thread.
fn date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, date) = cached.get();
        if at == second {
            return date;
        }
        let mut date = [0u8; 29];
        let text = httpdate::fmt_http_date(now);
        date.copy_from_slice(&text.as_bytes()[..29]);
        cached.set((second, date));
        date
    })
}

/// The head timer and the shutdown signal of one connection, both created once.
struct Waiting {
    deadline: Deadline,
    /// Resolves when shutdown begins; polled once to register the task for the wakeup, then
    /// again only when `signal` has changed (a version check instead of a lock and a wait).
    stop: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    signal: watch::Receiver<bool>,
    registered: bool,
    stopping: bool,
}

enum Wait {
    Read(io::Result<usize>),
    TimedOut,
    /// Shutdown began (reported once).
    Stopping,
}

impl Waiting {
    fn new(conn: &Conn) -> Self {
        let signal = conn.shared.shutdown_signal();
        let mut waiter = signal.clone();
        Self {
            deadline: Deadline::after(conn.limits.header_read_timeout),
            stop: Box::pin(async move {
                let _ = waiter.wait_for(|stop| *stop).await;
            }),
            signal,
            registered: false,
            stopping: false,
        }
    }

    /// Starts the wait for a head.
    fn arm(&mut self, timeout: Duration) {
        self.deadline.reset(timeout);
        if self.stopping {
            self.shorten(SHUTDOWN_LINGER);
        }
    }

    /// Whether shutdown has begun (a version check on the signal this connection watches).
    fn draining(&self) -> bool {
        self.stopping || self.signal.has_changed().unwrap_or(true)
    }

    /// Brings the deadline to at most `within` from now.
    fn shorten(&mut self, within: Duration) {
        let at = Instant::now() + within;
        if at < self.deadline.at() {
            self.deadline.set(at);
        }
    }

    fn poll(&mut self, stream: &mut Stream, cx: &mut Context<'_>) -> Poll<Wait> {
        if let Poll::Ready(read) = tokio_util::io::poll_read_buf(Pin::new(&mut stream.io), cx, &mut stream.read) {
            return Poll::Ready(Wait::Read(read));
        }
        if !self.stopping && (!self.registered || self.signal.has_changed().unwrap_or(true)) {
            self.registered = true;
            if self.stop.as_mut().poll(cx).is_ready() {
                self.stopping = true;
                return Poll::Ready(Wait::Stopping);
            }
        }
        self.deadline.poll_expired(cx).map(|()| Wait::TimedOut)
    }
}

/// A request body read from the client connection, which it holds until the body ends or is
/// dropped, then gives back.
pub struct RequestBody {
    stream: Option<Box<Stream>>,
    reader: BodyReader,
    /// Bytes of `100 Continue` still to write before reading.
    continue_left: usize,
    failed: bool,
    back: Option<oneshot::Sender<Returned>>,
}

/// The connection coming back from a request body.
struct Returned {
    stream: Box<Stream>,
    /// The body was read to its end: the next bytes are the next request.
    clean: bool,
}

impl RequestBody {
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        while self.continue_left > 0 {
            let from = CONTINUE.len() - self.continue_left;
            match Pin::new(&mut stream.io).poll_write(cx, &CONTINUE[from..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err("the client went away before sending the body".into())));
                }
                Poll::Ready(Ok(n)) => self.continue_left -= n,
            }
            if self.continue_left == 0 && Pin::new(&mut stream.io).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let polled = self.reader.poll_frame(&mut stream.io, &mut stream.read, cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed = true;
        }
        polled.map_err(|e| match e {
            BodyError::Closed => "the client closed the connection mid-body".into(),
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

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let clean = self.reader.is_done() && !self.failed;
            let _ = back.send(Returned { stream, clean });
        }
    }
}

/// The connection of an upgrade request, handed over once its `101` has been written.
#[derive(Clone)]
struct Upgrade(Arc<Mutex<Option<oneshot::Receiver<Box<Stream>>>>>);

/// The client side of an upgrade: resolves to the connection once the `101` is sent.
pub type Upgraded = Pin<Box<dyn Future<Output = Result<Box<dyn Io>, BoxError>> + Send>>;

/// The client connection of an upgrade request, from this server or from hyper's.
pub fn on_upgrade(request: &mut Request<Body>) -> Upgraded {
    let own = request.extensions_mut().remove::<Upgrade>().and_then(|u| u.0.lock().ok()?.take());
    match own {
        Some(take) => Box::pin(async move {
            let stream = take.await.map_err(|_| "the upgrade was not answered with 101")?;
            let Stream { io, read } = *stream;
            // What the client sent after its handshake, if anything; else the buffer is let go.
            let early = if read.is_empty() { Bytes::new() } else { read.freeze() };
            Ok(Box::new(Prefixed::new(early, io)) as Box<dyn Io>)
        }),
        None => {
            let upgrade = hyper::upgrade::on(request);
            Box::pin(async move {
                let upgraded = upgrade.await?;
                Ok(Box::new(hyper_util::rt::TokioIo::new(upgraded)) as Box<dyn Io>)
            })
        }
    }
}

/// A transport with bytes already read from it in front.
pub struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, io: I) -> Self {
        Self { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            if self.prefix.is_empty() {
                // Let go of the read buffer the prefix was cut from (a long-lived WebSocket
                // would otherwise keep it).
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
