//! HTTP/1.1 as the gateway speaks it, both ways, with no I/O: to upstreams request heads out,
//! response heads and chunked bodies in; to clients request heads in, response heads out.
//!
//! `upstream::client` and `server::http1` drive these over sockets ([`BodyReader`] is the one
//! piece that reads); keeping them pure lets every edge case of the wire format be tested (and
//! fuzzed) alone. The rules follow RFC 9112 and, where it leaves a choice, hyper, which this
//! replaced on the plain proxy path: the same limits (100 headers, a response head of at most
//! about 400 KiB, 16 KiB of chunk extensions and of trailers), the same framing decisions, and
//! errors instead of panics for anything a peer can send. Requests are held to the stricter
//! side where smuggling lives: `transfer-encoding` with `content-length`, a coding other than a
//! final `chunked`, or disagreeing lengths are refused, never guessed at.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncRead;

/// Most header lines accepted in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted, in bytes (hyper's default read buffer limit).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Bytes asked of a socket per read.
pub const READ_CHUNK: usize = 8 * 1024;
/// Most bytes of chunk extensions accepted over one body.
const MAX_EXTENSION_BYTES: u64 = 16 * 1024;
/// Largest trailer section accepted, in bytes.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What a peer sent that is not HTTP/1.1 as the gateway accepts it: an upstream's response or
/// a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("malformed head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid status code")]
    Status,
    #[error("invalid header value")]
    HeaderValue,
    #[error("invalid content-length")]
    ContentLength,
    #[error("transfer-encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    #[error("invalid chunk size line")]
    ChunkSize,
    #[error("chunk size too large")]
    ChunkSizeOverflow,
    #[error("invalid chunk extension")]
    ChunkExtension,
    #[error("missing CRLF after chunk data")]
    ChunkData,
    #[error("malformed trailers")]
    Trailers,
    #[error("request head larger than the listener allows")]
    RequestHeadTooLarge,
    #[error("invalid method")]
    Method,
    #[error("invalid request target")]
    Target,
    #[error("transfer-encoding in an HTTP/1.0 request")]
    TransferEncodingInRequest10,
    #[error("transfer-encoding whose last coding is not chunked")]
    TransferEncoding,
    #[error("both transfer-encoding and content-length")]
    BothLengths,
    #[error("HTTP/1.1 request without a host header")]
    NoHost,
    #[error("more than one host header")]
    Hosts,
    #[error("invalid host header")]
    Host,
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// How the request body goes out, from its headers and what the body knows of itself, as hyper's
/// client decides it: a body that has ended sends nothing; a valid `content-length` is kept; an
/// exact size becomes one; GET, HEAD and CONNECT without a length send no body; anything else
/// is chunked. `add_length` tells the encoder to write the `content-length` header.
pub fn request_framing(method: &Method, headers: &HeaderMap, ended: bool, exact: Option<u64>) -> RequestFraming {
    if ended {
        return RequestFraming { framing: Framing::Empty, add_length: false };
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = content_length(headers) {
            return RequestFraming { framing: Framing::Length(len), add_length: false };
        }
    } else if let Some(len) = exact {
        return RequestFraming { framing: Framing::Length(len), add_length: true };
    }
    match *method {
        Method::GET | Method::HEAD | Method::CONNECT if exact.is_none() => {
            RequestFraming { framing: Framing::Empty, add_length: false }
        }
        _ => RequestFraming { framing: Framing::Chunked, add_length: false },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFraming {
    pub framing: Framing,
    pub add_length: bool,
}

/// Header fields the gateway adds to a message it forwards (forwarding headers, the request
/// id), written by the encoder after the message's own fields, replacing those of the same
/// name. Cheaper than inserting them into the header map, which hashes each name, only to
/// write the map out again. Holds at most [`Added::CAPACITY`] fields.
#[derive(Debug, Default)]
pub struct Added {
    fields: [Option<(HeaderName, HeaderValue)>; Added::CAPACITY],
    /// The message has no `host` (HTTP/1.0 may leave it out): the proxy names its target.
    pub host_missing: bool,
}

impl Added {
    pub const CAPACITY: usize = 3;

    /// Adds a field; `name` must not be among those added already.
    pub fn push(&mut self, name: HeaderName, value: HeaderValue) {
        debug_assert!(!self.replaces(name.as_str().as_bytes()), "{name} added twice");
        let slot = self.fields.iter_mut().find(|f| f.is_none()).expect("more added fields than Added::CAPACITY");
        *slot = Some((name, value));
    }

    pub fn remove(&mut self, name: &HeaderName) {
        for field in &mut self.fields {
            if field.as_ref().is_some_and(|(n, _)| n == name) {
                *field = None;
            }
        }
    }

    /// Whether a field of the message named `name` (lowercase) is replaced by one of these.
    fn replaces(&self, name: &[u8]) -> bool {
        self.iter().any(|(n, _)| n.as_str().as_bytes() == name)
    }

    /// [`Added::replaces`] for the fields of one message: a bit for the length of each name
    /// added (modulo 64) rules most fields out without comparing names.
    fn replaced(&self) -> impl Fn(&[u8]) -> bool + '_ {
        let lengths = self.iter().fold(0u64, |lengths, (n, _)| lengths | length_bit(n.as_str().as_bytes()));
        move |name| lengths & length_bit(name) != 0 && self.replaces(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.fields.iter().flatten().map(|(n, v)| (n, v))
    }

    fn put(&self, dst: &mut BytesMut) {
        for (name, value) in self.iter() {
            put_field(dst, name.as_str().as_bytes(), value.as_bytes());
        }
    }

    /// Puts the fields into `headers` (for a message that is not written by this encoder).
    pub fn insert_into(self, headers: &mut HeaderMap) {
        for (name, value) in self.fields.into_iter().flatten() {
            headers.insert(name, value);
        }
    }
}

fn length_bit(name: &[u8]) -> u64 {
    1 << (name.len() % 64)
}

/// Writes one header field line.
#[inline]
fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Writes a `content-length` line.
fn put_length(dst: &mut BytesMut, len: u64) {
    dst.put_slice(b"content-length: ");
    dst.put_slice(itoa::Buffer::new().format(len).as_bytes());
    dst.put_slice(b"\r\n");
}

/// Writes `METHOD uri HTTP/1.1`, the headers, the `added` ones and the framing headers of
/// `framing` into `dst`. `transfer-encoding` is written only for a chunked body, and
/// `content-length` never with one.
pub fn encode_request_head(
    dst: &mut BytesMut,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    added: &Added,
    framing: RequestFraming,
) {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    dst.reserve(32 + target.len() + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
    let chunked = framing.framing == Framing::Chunked;
    let replaced = added.replaced();
    for (name, value) in headers {
        if *name == header::TRANSFER_ENCODING
            || (chunked && *name == header::CONTENT_LENGTH)
            || replaced(name.as_str().as_bytes())
        {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    added.put(dst);
    match framing {
        RequestFraming { framing: Framing::Length(len), add_length: true } => put_length(dst, len),
        RequestFraming { framing: Framing::Chunked, .. } => dst.put_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    dst.put_slice(b"\r\n");
}

/// How a response goes out to a client, decided by [`response_framing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    /// How the body is delimited; [`Framing::Empty`] sends none (HEAD, 1xx, 204, 304).
    pub framing: Framing,
    /// A `content-length` to write (the body knows its size), replacing the response's own.
    pub add_length: Option<u64>,
}

/// How a response body goes out, as hyper's server decides it: no body for HEAD, 1xx, 204 and
/// 304; a body of exact size gets its `content-length`; else a valid `content-length` of the
/// response (in its map or its upstream [`Fields`]) is kept; else chunked for HTTP/1.1 clients,
/// and for HTTP/1.0 clients the end of the connection.
pub fn response_framing(
    status: StatusCode,
    head_request: bool,
    version: Version,
    (headers, fields): (&HeaderMap, Option<&Fields>),
    exact: Option<u64>,
) -> ResponseFraming {
    let framing = |framing| ResponseFraming { framing, add_length: None };
    if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return framing(Framing::Empty);
    }
    if head_request {
        return framing(Framing::Empty);
    }
    // A body that knows its size says it (the response's own `content-length`, if any, is
    // then not written): no header lookup on the common path.
    if let Some(len) = exact {
        return ResponseFraming { framing: Framing::Length(len), add_length: Some(len) };
    }
    let own = headers.get_all(header::CONTENT_LENGTH).iter().map(HeaderValue::as_bytes);
    match length_of(own.chain(fields.into_iter().flat_map(|f| f.values(b"content-length")))) {
        Some(len) => framing(Framing::Length(len)),
        None if version == Version::HTTP_11 => framing(Framing::Chunked),
        None => framing(Framing::UntilClose),
    }
}

/// Writes the status line, the headers (those of the map, then the upstream's [`Fields`] not
/// moved into it), the `added` ones, the framing headers of `framing`, `date` when the response
/// has none, and (unless it has its own) `connection: close` when the connection ends after it
/// or `connection: keep-alive` for an HTTP/1.0 client that keeps it.
/// Returns whether the connection goes on: `keep_alive`, unless the response says `close`.
/// `transfer-encoding` is written only for a chunked body, and `content-length` never with one
/// nor on a 1xx or 204; the response's own is replaced by `framing.add_length`.
pub fn encode_response_head(
    dst: &mut BytesMut,
    status: StatusCode,
    (headers, fields): (&HeaderMap, Option<&Fields>),
    added: &Added,
    framing: ResponseFraming,
    (keep_alive, http10): (bool, bool),
    date: &[u8],
) -> bool {
    dst.reserve(64 + (headers.len() + fields.map_or(0, |f| f.at.len())) * 48);
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.put_slice(b"\r\n");
    let chunked = framing.framing == Framing::Chunked;
    let no_length =
        chunked || framing.add_length.is_some() || status.is_informational() || status == StatusCode::NO_CONTENT;
    let (mut dated, mut connection, mut close) = (false, false, false);
    let replaced = added.replaced();
    let mut keep = |name: &[u8], value: &[u8]| {
        if name == b"transfer-encoding" || (no_length && name == b"content-length") || replaced(name) {
            return false;
        }
        if name == b"date" {
            dated = true;
        } else if name == b"connection" {
            connection = true;
            close |= has_token(value, b"close");
        }
        true
    };
    for (name, value) in headers {
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        if keep(name, value) {
            put_field(dst, name, value);
        }
    }
    if let Some(fields) = fields {
        fields.put(dst, &mut keep);
    }
    added.put(dst);
    if let Some(len) = framing.add_length {
        put_length(dst, len);
    }
    if chunked {
        dst.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if !dated {
        dst.put_slice(b"date: ");
        dst.put_slice(date);
        dst.put_slice(b"\r\n");
    }
    let keep_alive = keep_alive && !close;
    if !connection {
        match (keep_alive, http10) {
            (false, _) => dst.put_slice(b"connection: close\r\n"),
            (true, true) => dst.put_slice(b"connection: keep-alive\r\n"),
            (true, false) => {}
        }
    }
    dst.put_slice(b"\r\n");
    keep_alive
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_size_line(len: usize) -> ChunkLine {
    let mut line = ChunkLine { bytes: [0; 18], len: 0 };
    let digits = if len == 0 { 1 } else { (usize::BITS - len.leading_zeros()).div_ceil(4) as usize };
    for i in 0..digits {
        line.bytes[digits - 1 - i] = crate::respond::HEX_DIGITS[(len >> (4 * i)) & 0xf];
    }
    line.bytes[digits] = b'\r';
    line.bytes[digits + 1] = b'\n';
    line.len = digits + 2;
    line
}

/// A chunk size line, on the stack.
pub struct ChunkLine {
    bytes: [u8; 18],
    len: usize,
}

impl AsRef<[u8]> for ChunkLine {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A parsed response head, and how its body is delimited.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The header fields, less the connection options this parser consumed (`keep-alive`, and
    /// `connection` when it says only `close` or `keep-alive`): they are hop-by-hop.
    pub fields: Fields,
    /// The reason phrase, when it is not the status code's usual one.
    pub reason: Option<Bytes>,
    pub framing: Framing,
    /// Whether the connection may carry another request once this body is read.
    pub keep_alive: bool,
}

/// The header fields of a response head, left in the head's bytes (names lowercased) with
/// where each lies: a response that crosses the gateway unedited is written to the client from
/// them ([`encode_response_head`]), and only one that is read or edited is copied into a
/// `HeaderMap` ([`Fields::append_to`]), which costs a hash, a name lookup and a value check per
/// field. The parser has checked them as the map would (httparse accepts the same name and
/// value bytes as `http`; longer names are refused here), so the copy cannot fail.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    head: Bytes,
    at: Vec<Indices>,
}

impl Fields {
    /// Each field's name and value, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.at.iter().map(|at| (&self.head[at.name.0..at.name.1], &self.head[at.value.0..at.value.1]))
    }

    /// Writes the fields `keep` lets through as `name: value` lines. The lines the upstream wrote
    /// so already are copied as they are, each run of them at once.
    fn put(&self, dst: &mut BytesMut, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let mut run = 0..0;
        for at in &self.at {
            let (name, value) = (&self.head[at.name.0..at.name.1], &self.head[at.value.0..at.value.1]);
            if !keep(name, value) {
                continue;
            }
            let line = at.name.0..at.value.1 + 2;
            let as_written = self.head.get(at.name.1..at.value.0) == Some(&b": "[..])
                && self.head.get(at.value.1..line.end) == Some(&b"\r\n"[..]);
            if as_written && !run.is_empty() && run.end == line.start {
                run.end = line.end;
                continue;
            }
            dst.put_slice(&self.head[run]);
            run = if as_written { line } else { 0..0 };
            if run.is_empty() {
                put_field(dst, name, value);
            }
        }
        dst.put_slice(&self.head[run]);
    }

    /// The fields as a map (a copy).
    #[cfg(test)]
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        self.clone().append_to(&mut map);
        map
    }

    /// Appends the fields to `map`, their values sharing the head's bytes.
    pub fn append_to(self, map: &mut HeaderMap) {
        map.reserve(self.at.len() + 1);
        // Checked when parsed: nothing is left out.
        for (name, value) in self.at.iter().filter_map(|at| field(&self.head, at).ok()) {
            map.append(name, value);
        }
    }

    /// The values of the fields named `name` (lowercase).
    fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Lowercases a header name eight bytes at a time, the last eight overlapping the ones before
/// (lowercasing twice changes nothing); a name is token characters, all ASCII, so no byte's sum
/// carries into the next. (Byte by byte, it cost as much as the rest of the parse.)
fn lowercase(name: &mut [u8]) {
    const fn each(byte: u8) -> u64 {
        u64::from_ne_bytes([byte; 8])
    }
    if name.len() < 8 {
        name.make_ascii_lowercase();
        return;
    }
    for at in (0..name.len()).step_by(8) {
        let start = at.min(name.len() - 8);
        if let Ok(word) = <&mut [u8; 8]>::try_from(&mut name[start..start + 8]) {
            let bytes = u64::from_ne_bytes(*word);
            // The high bit of each byte's sum says `>= b'A'`, then `> b'Z'`; it moves to 0x20.
            let upper = bytes.wrapping_add(each(0x80 - b'A')) & !bytes.wrapping_add(each(0x80 - b'Z' - 1));
            *word = (bytes | (upper & each(0x80)) >> 2).to_ne_bytes();
        }
    }
}

/// Longest header name a `HeaderMap` takes.
const MAX_NAME_BYTES: usize = (1 << 16) - 1;

/// Parses the response head at the front of `buf` and removes it (and any 1xx interim heads
/// before it) from `buf`. `Ok(None)`: more bytes are needed.
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, ParseError> {
    loop {
        let Some(head) = parse_one(buf, method)? else {
            return Ok(None);
        };
        if !head.status.is_informational() {
            return Ok(Some(head));
        }
        // 100 Continue and other interim answers come before the real one.
    }
}

/// A parsed request head, and how its body is delimited.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// Every header field as sent: the pipeline decides what crosses to the upstream.
    pub headers: HeaderMap,
    /// [`Framing::Empty`], [`Framing::Length`] or [`Framing::Chunked`]: a request body is never
    /// delimited by the end of the connection.
    pub framing: Framing,
    /// Whether the client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `expect: 100-continue`: the client waits for an interim answer before sending the body.
    pub expect_continue: bool,
    /// `connection` lists `upgrade`: the client may ask to switch protocols.
    pub upgrade: bool,
}

/// Parses the request head at the front of `buf` (after any empty lines) and removes it.
/// `Ok(None)`: more bytes are needed. A head longer than `max_len` bytes, or with more than
/// [`MAX_HEADERS`] fields, is [`ParseError::RequestHeadTooLarge`].
pub fn parse_request(buf: &mut BytesMut, max_len: usize) -> Result<Option<RequestHead>, ParseError> {
    if buf.is_empty() {
        return Ok(None);
    }
    with_indices(|indices| parse_request_into(buf, max_len, indices))
}

fn parse_request_into(
    buf: &mut BytesMut,
    max_len: usize,
    indices: &mut Vec<Indices>,
) -> Result<Option<RequestHead>, ParseError> {
    let (len, method, target, version, count) = {
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        // Only the bytes a head may take are parsed, so that what lies past the limit cannot
        // change the answer (a bad byte there made a long head malformed when it came in one
        // read, and too large when it came in pieces).
        let bytes: &[u8] = &buf[..buf.len().min(max_len)];
        let len = match request.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > max_len => return Err(ParseError::RequestHeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::RequestHeadTooLarge),
            Err(error) => return Err(ParseError::Head(error)),
        };
        note(indices, bytes, request.headers);
        let method =
            Method::from_bytes(request.method.unwrap_or_default().as_bytes()).map_err(|_| ParseError::Method)?;
        let target = span(bytes, request.path.unwrap_or_default().as_bytes());
        (len, method, target, request.version.unwrap_or(1), request.headers.len())
    };
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1)).map_err(|_| ParseError::Target)?;
    let version = if version == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    // Room for the forwarding headers the pipeline adds, so that the map grows once at most.
    let mut headers = HeaderMap::with_capacity(count + 4);
    // What decides the connection and the framing is noted on the way: no lookups after.
    let (mut close, mut keep, mut upgrade) = (false, false, false);
    // Whether the last `transfer-encoding` ends in `chunked`; what the `content-length` values
    // say, folded as they come (see `length_of`).
    let (mut expect, mut transfer_encoding, mut content_length_seen) = (None, None, false);
    let mut length = Some(None);
    // One valid `host` (RFC 9112, 3.2): with two, the gateway and the upstream could each
    // route by a different one.
    let (mut hosts, mut host_valid) = (0, true);
    for at in indices.iter() {
        let (name, value) = field(&head, at)?;
        if name == header::HOST {
            hosts += 1;
            host_valid &= valid_host(value.as_bytes());
        } else if name == header::CONNECTION {
            close |= has_token(value.as_bytes(), b"close");
            keep |= has_token(value.as_bytes(), b"keep-alive");
            upgrade |= has_token(value.as_bytes(), b"upgrade");
        } else if name == header::EXPECT {
            expect.get_or_insert_with(|| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = Some(ends_chunked(value.as_bytes()));
        } else if name == header::CONTENT_LENGTH {
            content_length_seen = true;
            length = length.and_then(|found| more_length(found, value.as_bytes()));
        }
        headers.append(name, value);
    }
    let keep_alive = !close && (version == Version::HTTP_11 || keep);
    let expect_continue = version == Version::HTTP_11 && expect == Some(true);
    let framing = match (transfer_encoding, content_length_seen) {
        (Some(_), _) if version == Version::HTTP_10 => return Err(ParseError::TransferEncodingInRequest10),
        (Some(_), true) => return Err(ParseError::BothLengths),
        (Some(false), false) => return Err(ParseError::TransferEncoding),
        (Some(true), false) => Framing::Chunked,
        (None, true) => match length.flatten().ok_or(ParseError::ContentLength)? {
            0 => Framing::Empty,
            len => Framing::Length(len),
        },
        (None, false) => Framing::Empty,
    };
    match hosts {
        0 if version == Version::HTTP_11 => return Err(ParseError::NoHost),
        0 | 1 if !host_valid => return Err(ParseError::Host),
        0 | 1 => {}
        _ => return Err(ParseError::Hosts),
    }
    Ok(Some(RequestHead { method, uri, version, headers, framing, keep_alive, expect_continue, upgrade }))
}

/// Whether `value` can be a `host` field: empty, or a name or address with an optional port.
/// What no host holds (user info, a path, spaces, quotes) makes it invalid.
fn valid_host(value: &[u8]) -> bool {
    const HOST_BYTES: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = matches!(byte as u8,
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'%' | b':' | b'[' | b']'
                | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
            byte += 1;
        }
        table
    };
    // Every byte looked up, without a branch per byte: most hosts are valid.
    value.iter().fold(true, |valid, &b| valid & HOST_BYTES[usize::from(b)])
}

/// Where one header's name and value lie in the head.
#[derive(Debug, Clone, Copy)]
struct Indices {
    name: (usize, usize),
    value: (usize, usize),
}

/// Where `part`, a slice of `bytes`, lies in it.
fn span(bytes: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - bytes.as_ptr() as usize;
    (start, start + part.len())
}

/// Notes where each parsed header field lies in `bytes`.
fn note(indices: &mut Vec<Indices>, bytes: &[u8], headers: &[httparse::Header<'_>]) {
    indices
        .extend(headers.iter().map(|h| Indices { name: span(bytes, h.name.as_bytes()), value: span(bytes, h.value) }));
}

/// The header field noted at `at`, its value sharing `head`'s bytes.
fn field(head: &Bytes, at: &Indices) -> Result<(HeaderName, HeaderValue), ParseError> {
    let name = HeaderName::from_bytes(&head[at.name.0..at.name.1]).map_err(|_| ParseError::HeaderValue)?;
    let value =
        HeaderValue::from_maybe_shared(head.slice(at.value.0..at.value.1)).map_err(|_| ParseError::HeaderValue)?;
    Ok((name, value))
}

/// Runs `parse` with this thread's empty list of header positions: a head is parsed while its
/// bytes are borrowed, and its header values are cut from them once they are owned; the list
/// bridges the two without zeroing room for [`MAX_HEADERS`] on every parse.
fn with_indices<R>(parse: impl FnOnce(&mut Vec<Indices>) -> R) -> R {
    thread_local! {
        static INDICES: std::cell::RefCell<Vec<Indices>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    INDICES.with_borrow_mut(|indices| {
        indices.clear();
        parse(indices)
    })
}

fn parse_one(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, ParseError> {
    if buf.is_empty() {
        return Ok(None);
    }
    with_indices(|indices| parse_one_into(buf, method, indices))
}

fn parse_one_into(
    buf: &mut BytesMut,
    method: &Method,
    indices: &mut Vec<Indices>,
) -> Result<Option<ResponseHead>, ParseError> {
    // Most responses carry a few headers: room for 24 is set up first, for all the allowed ones
    // only when that is not enough.
    let mut few = [httparse::EMPTY_HEADER; 24];
    let mut all = Vec::new();
    let (len, code, reason, version, count) = {
        let mut response = httparse::Response::new(&mut few);
        // Only the bytes a head may take, as for requests.
        let bytes: &[u8] = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        let mut parsed = response.parse(bytes);
        if let Err(httparse::Error::TooManyHeaders) = parsed {
            all.resize(MAX_HEADERS, httparse::EMPTY_HEADER);
            response = httparse::Response::new(&mut all);
            parsed = response.parse(bytes);
        }
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(ParseError::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::Head(httparse::Error::TooManyHeaders)),
            Err(error) => return Err(ParseError::Head(error)),
        };
        note(indices, bytes, response.headers);
        // A missing reason phrase, or one with a byte httparse refuses, is an empty string of
        // httparse's own, not a slice of `bytes`: no reason phrase.
        let reason = response.reason.filter(|r| !r.is_empty()).map(|r| span(bytes, r.as_bytes()));
        (len, response.code.unwrap_or(0), reason, response.version.unwrap_or(1), response.headers.len())
    };
    let mut head = buf.split_to(len);
    let status = StatusCode::from_u16(code).map_err(|_| ParseError::Status)?;
    let version = if version == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut keep_alive = version == Version::HTTP_11;
    let mut saw_close = false;
    // Whether the last `transfer-encoding` ends in `chunked`; what the `content-length` values
    // say, folded as they come (see `length_of`).
    let (mut transfer_encoding, mut content_length_seen) = (None, false);
    let mut length = Some(None);
    let mut kept = Vec::with_capacity(count);
    for at in indices.iter() {
        lowercase(&mut head[at.name.0..at.name.1]);
        let (name, value) = (&head[at.name.0..at.name.1], &head[at.value.0..at.value.1]);
        if name.len() > MAX_NAME_BYTES {
            return Err(ParseError::HeaderValue);
        }
        match name {
            b"connection" => {
                // Once any `connection` line asks to close, a later `keep-alive` does not undo it.
                if saw_close || has_token(value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(value, b"keep-alive");
                }
                // Hop-by-hop and fully read here, unless it names other headers to drop later.
                if only_options(value) {
                    continue;
                }
            }
            b"keep-alive" => continue,
            b"transfer-encoding" => transfer_encoding = Some(ends_chunked(value)),
            b"content-length" => {
                content_length_seen = true;
                length = length.and_then(|found| more_length(found, value));
            }
            _ => {}
        }
        kept.push(*at);
    }
    let fields = Fields { head: head.freeze(), at: kept };
    let reason = reason
        .map(|(start, end)| fields.head.slice(start..end))
        .filter(|r| status.canonical_reason().map(str::as_bytes) != Some(&r[..]));
    let framing = match status.as_u16() {
        101 => return Err(ParseError::UnexpectedUpgrade),
        100..=199 | 204 | 304 => Framing::Empty,
        _ if *method == Method::HEAD => Framing::Empty,
        _ if transfer_encoding.is_some() => {
            if version == Version::HTTP_10 {
                return Err(ParseError::TransferEncodingInHttp10);
            }
            // With both, transfer-encoding wins and the connection is not trusted further.
            if content_length_seen {
                keep_alive = false;
            }
            if transfer_encoding == Some(true) {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        }
        _ if content_length_seen => Framing::Length(length.flatten().ok_or(ParseError::ContentLength)?),
        _ => Framing::UntilClose,
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some(ResponseHead { status, version, fields, reason, framing, keep_alive }))
}

/// The content length when every `content-length` value (lists included) is the same number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    length_of(headers.get_all(header::CONTENT_LENGTH).iter().map(HeaderValue::as_bytes))
}

fn length_of<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    values.try_fold(None, more_length).flatten()
}

/// `found`, the length earlier `content-length` values gave (`None` before the first), checked
/// against the numbers `value` lists; `None` when they are not all the same valid number.
fn more_length(mut found: Option<u64>, value: &[u8]) -> Option<Option<u64>> {
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    Some(found)
}

/// Whether the last coding of a `transfer-encoding` value is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    value.rsplit(|&b| b == b',').next().is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether a `connection` value holds nothing but `close` and `keep-alive`.
fn only_options(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|t| {
        let t = t.trim_ascii();
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
    })
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Decodes a chunked body from the front of a buffer, step by step as bytes arrive.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    extension_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Start,
    Size,
    SizeWhitespace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailers,
    End,
}

/// What one call of [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (taken from the buffer).
    Data(Bytes),
    /// The buffer holds no complete step: read more.
    NeedMore,
    /// The trailer fields; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended (this is returned again on later calls).
    End,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::End
    }

    /// Checks as much of the first chunk-size line as `bytes` holds, consuming nothing: a body
    /// that is broken from its first bytes can still be answered with a 502 instead of a
    /// response that breaks off.
    pub fn check_start(bytes: &[u8]) -> Result<(), ParseError> {
        let mut decoder = Self::new();
        for &byte in bytes {
            decoder.state = decoder.step(byte)?;
            if matches!(decoder.state, ChunkState::Data | ChunkState::Trailers) {
                break;
            }
        }
        Ok(())
    }

    /// Consumes framing from the front of `buf` up to the next data, trailers or end.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        loop {
            if self.state == ChunkState::End {
                return Ok(Decoded::End);
            }
            if self.state == ChunkState::Trailers {
                return self.trailers(buf);
            }
            if self.state == ChunkState::Data {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(self.size).unwrap_or(usize::MAX).min(buf.len());
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            self.state = self.step(byte)?;
        }
    }

    fn step(&mut self, byte: u8) -> Result<ChunkState, ParseError> {
        use ChunkState::*;
        Ok(match (self.state, byte) {
            (Start | Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(ParseError::ChunkSizeOverflow)?;
                Size
            }
            (Start, _) => return Err(ParseError::ChunkSize),
            (Size | SizeWhitespace, b'\t' | b' ') => SizeWhitespace,
            (Size | SizeWhitespace, b';') => Extension,
            (Size | SizeWhitespace | Extension, b'\r') => SizeLf,
            (Size | SizeWhitespace, _) => return Err(ParseError::ChunkSize),
            (Extension, b'\n') => return Err(ParseError::ChunkExtension),
            (Extension, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes >= MAX_EXTENSION_BYTES {
                    return Err(ParseError::ChunkExtension);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => Trailers,
            (SizeLf, b'\n') => Data,
            (SizeLf, _) => return Err(ParseError::ChunkSize),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (DataCr | DataLf, _) => return Err(ParseError::ChunkData),
            // `decode` handles these without calling `step`.
            (Data | Trailers | End, _) => self.state,
        })
    }

    /// After the last chunk: an empty line, or trailer fields and an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = ChunkState::End;
            return Ok(Decoded::End);
        }
        if buf.len() < 2 {
            return Ok(Decoded::NeedMore);
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if buf.len() > MAX_TRAILER_BYTES { Err(ParseError::Trailers) } else { Ok(Decoded::NeedMore) };
        };
        let len = end + 4;
        if len > MAX_TRAILER_BYTES {
            return Err(ParseError::Trailers);
        }
        let section = buf.split_to(len).freeze();
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match httparse::parse_headers(&section, &mut fields) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            _ => return Err(ParseError::Trailers),
        };
        let mut trailers = HeaderMap::with_capacity(parsed.len());
        for field in parsed {
            let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ParseError::Trailers)?;
            let value = HeaderValue::from_bytes(field.value).map_err(|_| ParseError::Trailers)?;
            trailers.append(name, value);
        }
        self.state = ChunkState::End;
        Ok(Decoded::Trailers(trailers))
    }
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the connection closed mid-body")]
    Closed,
}

/// Reads one message body from a socket as its framing delimits it, bytes already buffered
/// first: the response bodies of upstreams and the request bodies of clients.
#[derive(Debug)]
pub enum BodyReader {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Self::Done,
            Framing::Length(len) => Self::Length(len),
            Framing::Chunked => Self::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => Self::UntilClose,
        }
    }

    /// Whether the body has been read to its end (or failed).
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    pub fn size_hint(&self) -> SizeHint {
        match self {
            Self::Done => SizeHint::with_exact(0),
            Self::Length(left) => SizeHint::with_exact(*left),
            Self::Chunked(_) | Self::UntilClose => SizeHint::default(),
        }
    }

    /// The next frame of the body, from `buf` and then from `stream`. `Ready(None)` at the end;
    /// after the end or an error the reader [`is_done`](Self::is_done), and the bytes left in
    /// `buf` belong to whatever follows on the connection.
    pub fn poll_frame<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            match self {
                Self::Done => return Poll::Ready(None),
                Self::Length(left) if !buf.is_empty() => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Self::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Self::UntilClose if !buf.is_empty() => return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze())))),
                Self::Chunked(decoder) if !buf.is_empty() || decoder.is_done() => match decoder.decode(buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        *self = Self::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        *self = Self::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => return self.fail(error.into()),
                },
                _ => {}
            }
            // The buffer holds nothing usable: read more.
            make_room(buf);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(self, Self::UntilClose) => {
                    *self = Self::Done;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return self.fail(BodyError::Closed),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return self.fail(error.into()),
            }
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        *self = Self::Done;
        Poll::Ready(Some(Err(error)))
    }
}

/// Makes room in a read buffer for the next read, growing it by [`READ_CHUNK`] when it is
/// nearly full.
pub fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

#[cfg(any(test, fuzzing))]
pub mod robustness;
#[cfg(test)]
mod tests;
