//! The inline client against scripted upstreams on real sockets: framing, reuse, and failures.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::h1::Added;
use crate::upstream::pool::Lease;
use crate::upstream::target::{Target, Targets};

/// An upstream that answers each request on one connection with the next scripted bytes, and
/// closes the connection after the last one (at once, or after a while when it `lingers`).
/// Returns its address and what it received.
async fn scripted(answers: Vec<&'static [u8]>, lingers: bool) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        for (served, answer) in answers.into_iter().enumerate() {
            while count_heads(&received) <= served {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return received;
                }
                received.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(answer).await.unwrap();
        }
        if lingers {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        stream.shutdown().await.ok();
        received
    });
    (addr, task)
}

fn count_heads(bytes: &[u8]) -> usize {
    bytes.windows(4).filter(|w| *w == b"\r\n\r\n").count()
}

fn target() -> Arc<Target> {
    Targets::new(1).get_or_create("u", "127.0.0.1:1").unwrap()
}

/// Sends `request` on `conn` and reads the whole response body.
async fn exchange(
    conn: Box<Connection>,
    request: Request<Body>,
    target: &Arc<Target>,
) -> Result<(ResponseHead, Vec<u8>, Option<HeaderMap>), SendError> {
    let (mut conn, mut request) = (conn, request);
    let mut out = encode(&mut request, &Added::default());
    out.coalesce().await?;
    let (head, complete) = roundtrip(&mut conn, &mut out).await?;
    let mut body = ResponseBody::new(conn, &head, complete, Lease::new(target.start_request()));
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
        let frame = frame.map_err(SendError::Body)?;
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    assert!(body.is_end_stream());
    Ok((head, data, trailers))
}

fn get() -> Request<Body> {
    Request::get("/x").header("host", "up").body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_sized_answer_is_read_and_the_connection_reused() {
    let (addr, upstream) = scripted(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\nabc",
        ],
        false,
    )
    .await;
    let target = target();
    let conn = Connection::open(addr).await.unwrap();
    let (head, body, _) = exchange(conn, get(), &target).await.unwrap();
    assert_eq!((head.status.as_u16(), &body[..]), (200, &b"ok"[..]));
    let conn = target.pool.checkout().expect("the connection went back to the pool");
    let post = Request::post("/y").header("content-length", "4").body(Body::full("ping")).unwrap();
    let (head, body, _) = exchange(conn, post, &target).await.unwrap();
    assert_eq!((head.status.as_u16(), &body[..]), (201, &b"abc"[..]));
    let received = String::from_utf8(upstream.await.unwrap()).unwrap();
    assert_eq!(received, "GET /x HTTP/1.1\r\nhost: up\r\n\r\nPOST /y HTTP/1.1\r\ncontent-length: 4\r\n\r\nping");
}

#[tokio::test]
async fn a_chunked_answer_with_trailers_is_decoded() {
    let (addr, _upstream) = scripted(
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Sum: 9\r\n\r\n"],
        true,
    )
    .await;
    let target = target();
    let (_, body, trailers) = exchange(Connection::open(addr).await.unwrap(), get(), &target).await.unwrap();
    assert_eq!(body, b"abcde");
    assert_eq!(trailers.unwrap()["x-sum"], "9");
    assert!(target.pool.checkout().is_some(), "a chunked body read to its end frees the connection");
}

#[tokio::test]
async fn a_body_until_close_and_connection_close_are_not_reused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\n\r\neverything until the end"[..],
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let (addr, _upstream) = scripted(vec![answer], false).await;
        let target = target();
        let (head, body, _) = exchange(Connection::open(addr).await.unwrap(), get(), &target).await.unwrap();
        assert_eq!(head.status.as_u16(), 200);
        assert!(!body.is_empty());
        assert!(target.pool.checkout().is_none(), "{}", String::from_utf8_lossy(answer));
    }
}

#[tokio::test]
async fn heads_and_empty_answers_free_the_connection_at_once() {
    let (addr, _upstream) =
        scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"], true)
            .await;
    let target = target();
    let head_request = Request::head("/").body(Body::empty()).unwrap();
    let (head, body, _) = exchange(Connection::open(addr).await.unwrap(), head_request, &target).await.unwrap();
    assert_eq!((head.fields.to_map()["content-length"].to_str().unwrap(), body.len()), ("100", 0));
    let conn = target.pool.checkout().unwrap();
    let (head, _, _) = exchange(conn, get(), &target).await.unwrap();
    assert_eq!(head.status.as_u16(), 204);
    assert!(target.pool.checkout().is_some());
}

#[tokio::test]
async fn broken_answers_are_errors() {
    let cases: Vec<(&'static [u8], &str)> = vec![
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "parse"),
        (b"SMTP ready\r\n\r\n", "parse"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "body"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed mid-head"),
        (b"", "closed"),
    ];
    for (answer, kind) in cases {
        let (addr, _upstream) = scripted(vec![answer], false).await;
        let target = target();
        let result = exchange(Connection::open(addr).await.unwrap(), get(), &target).await;
        let error = result.err().unwrap_or_else(|| panic!("{kind}: {}", String::from_utf8_lossy(answer)));
        let matched = match kind {
            "parse" => matches!(error, SendError::Parse(_)),
            "body" => matches!(error, SendError::Body(_)),
            "closed mid-head" => matches!(error, SendError::Io(_)),
            _ => matches!(error, SendError::Closed),
        };
        assert!(matched, "{kind}: got {error:?}");
        assert!(target.pool.checkout().is_none());
    }
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    let (addr, upstream) = scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], false).await;
    let target = target();
    exchange(Connection::open(addr).await.unwrap(), get(), &target).await.unwrap();
    // The upstream closes after its one answer; once that is seen, the idle connection is dropped.
    upstream.await.unwrap();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match target.pool.checkout() {
            None => return,
            Some(conn) => Lease::new(target.start_request()).release(conn),
        }
    }
    panic!("a closed idle connection was still handed out");
}

#[tokio::test]
async fn an_early_answer_ends_the_exchange_and_the_connection() {
    // The upstream answers after the head, before a body too large for the socket buffers, which
    // it never reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while count_heads(&head) == 0 {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            head.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let big = Bytes::from(vec![b'x'; 32 * 1024 * 1024]);
    let mut request = Request::put("/").body(Body::full(big)).unwrap();
    let target = target();
    let mut conn = Connection::open(addr).await.unwrap();
    let mut out = encode(&mut request, &Added::default());
    out.coalesce().await.unwrap();
    assert!(!out.is_replayable(), "a body past 64 KiB is streamed");
    let (head, complete) = roundtrip(&mut conn, &mut out).await.unwrap();
    assert_eq!(head.status.as_u16(), 413);
    let body = ResponseBody::new(conn, &head, complete, Lease::new(target.start_request()));
    drop(body);
    assert!(target.pool.checkout().is_none(), "a request not sent whole leaves nothing to reuse");
}

#[tokio::test]
async fn bodies_that_lie_about_their_length_are_refused() {
    let mut request = Request::post("/").header("content-length", "10").body(Body::full("short")).unwrap();
    assert!(matches!(encode(&mut request, &Added::default()).coalesce().await, Err(SendError::Body(_))));
    let mut request = Request::post("/").header("content-length", "2").body(Body::full("too long")).unwrap();
    assert!(matches!(encode(&mut request, &Added::default()).coalesce().await, Err(SendError::Body(_))));
}
