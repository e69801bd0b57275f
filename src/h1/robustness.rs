//! Any bytes through the parsers, as a connection feeds them: the body of the `h1` fuzz target
//! (`fuzz/fuzz_targets/h1.rs`) and of the unit tests that run it over mangled messages.
//!
//! [`check`] reads a request head or a response head from the bytes, then the chunked body
//! when the head says so, once all at once and once in small reads. Nothing may panic, and the
//! two must agree: what the parsers decide cannot depend on how the peer's bytes were split
//! into reads. Built for tests and for fuzzing (`--cfg fuzzing`) only.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Uri, Version};

use super::{parse_request, parse_response, ChunkedDecoder, Decoded, Framing, ParseError};

/// The largest request head [`check`] accepts (the gateway's default is larger; a small one
/// lets the fuzzer reach the limit).
pub const MAX_REQUEST_HEAD: usize = 2048;

/// The first byte chooses a request (even) or a response (odd) and the size of the small reads
/// (1 to 16 bytes); the rest is the message.
pub fn check(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else { return };
    let step = usize::from(first >> 1) % 16 + 1;
    if first & 1 == 0 {
        assert_eq!(read_request(wire, wire.len()), read_request(wire, step), "{:?}", String::from_utf8_lossy(wire));
    } else {
        assert_eq!(read_response(wire, wire.len()), read_response(wire, step), "{:?}", String::from_utf8_lossy(wire));
    }
}

/// What a request comes to: its head and its body if chunked.
type RequestRead = Result<Option<(RequestParts, Option<Body>)>, ParseError>;

/// A request head's parts: method, target, version and fields; framing, keep-alive, `expect:
/// 100-continue` and `upgrade`.
type RequestParts = ((Method, Uri, Version, HeaderMap), (Framing, bool, bool, bool));

/// What a response comes to: its head and its body if chunked.
type ResponseRead = Result<Option<(ResponseParts, Option<Body>)>, ParseError>;

/// A response head's parts: status, version, reason phrase and fields; framing and keep-alive.
type ResponseParts = ((u16, Version, Option<Bytes>, Vec<(Vec<u8>, Vec<u8>)>), (Framing, bool));

/// A chunked body read from what followed the head: see [`decode_all`].
type Body = Result<(Vec<u8>, Option<HeaderMap>, bool, usize), ParseError>;

/// Feeds `wire` to the request parser `step` bytes at a time, then the rest to the chunked
/// decoder when the head says so.
pub fn read_request(wire: &[u8], step: usize) -> RequestRead {
    read(
        wire,
        step,
        |buf| parse_request(buf, MAX_REQUEST_HEAD),
        |h| {
            let parts =
                ((h.method, h.uri, h.version, h.headers), (h.framing, h.keep_alive, h.expect_continue, h.upgrade));
            (parts, h.framing)
        },
    )
}

/// [`read_request`] for a response to a `GET`.
pub fn read_response(wire: &[u8], step: usize) -> ResponseRead {
    read(
        wire,
        step,
        |buf| parse_response(buf, &Method::GET),
        |h| {
            let fields = h.fields.iter().map(|(name, value)| (name.to_vec(), value.to_vec())).collect();
            (((h.status.as_u16(), h.version, h.reason, fields), (h.framing, h.keep_alive)), h.framing)
        },
    )
}

/// Feeds `wire` to `parse` `step` bytes at a time until it gives a head, then what follows
/// to the chunked decoder when `parts` (what is compared of the head, and its framing) says
/// the body is chunked.
fn read<H, P>(
    wire: &[u8],
    step: usize,
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<H>, ParseError>,
    parts: impl Fn(H) -> (P, Framing),
) -> Result<Option<(P, Option<Body>)>, ParseError> {
    let mut buf = BytesMut::new();
    for (n, piece) in wire.chunks(step.max(1)).enumerate() {
        buf.extend_from_slice(piece);
        if let Some(head) = parse(&mut buf)? {
            let (parts, framing) = parts(head);
            let body = (framing == Framing::Chunked).then(|| decode_all(&rest(&buf, wire, step, n), step));
            return Ok(Some((parts, body)));
        }
    }
    Ok(None)
}

/// The bytes after a head: what the parser left of the first `n + 1` reads, and the reads not
/// made yet.
fn rest(left: &[u8], wire: &[u8], step: usize, n: usize) -> Vec<u8> {
    let read = ((n + 1) * step.max(1)).min(wire.len());
    [left, &wire[read..]].concat()
}

/// Feeds `wire` to a chunked decoder `step` bytes at a time: the body, the trailers, whether
/// it ended, and how many bytes it left after its end; or the first error.
pub fn decode_all(wire: &[u8], step: usize) -> Body {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut trailers = None;
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => return Ok((body, trailers, true, buf.len() + wire.len() - fed)),
            Decoded::NeedMore if fed == wire.len() => return Ok((body, trailers, false, buf.len())),
            Decoded::NeedMore => {
                let next = (fed + step.max(1)).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}
