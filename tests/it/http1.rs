//! The gateway's own HTTP/1.1 server, byte by byte over raw sockets: keep-alive and pipelining,
//! request bodies (whole, streamed, chunked, after `100 Continue`), framing that could smuggle a
//! request, HTTP/1.0, HEAD, malformed heads and the head timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{proxy_with_limits, TestGateway, TestUpstream};

async fn setup() -> (TestGateway, TestUpstream) {
    proxy_with_limits("{ max_body_bytes: 1KiB, header_read_timeout: 1s }").await
}

async fn connect(gw: &TestGateway) -> TcpStream {
    let addr = gw.gateway().listener_addr("public").expect("listener");
    TcpStream::connect(addr).await.expect("connect to the gateway")
}

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Reads one response (content-length or chunked body; none for HEAD and 1xx) from `stream`,
/// keeping what follows in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Raw {
    let (status, headers, len) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(len) = response.parse(buf).expect("a valid response head") {
            let headers = response
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                .collect::<Vec<_>>();
            break (response.code.unwrap(), headers, len);
        }
        fill(stream, buf).await;
    };
    buf.drain(..len);
    let mut raw = Raw { status, headers, body: Vec::new() };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return raw;
    }
    if raw.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(stream, buf).await;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16).unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                fill(stream, buf).await;
            }
            raw.body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                return raw;
            }
        }
    }
    let len: usize = raw.header("content-length").expect("a framed response").parse().unwrap();
    while buf.len() < len {
        fill(stream, buf).await;
    }
    raw.body = buf.drain(..len).collect();
    raw
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
        .await
        .expect("the gateway answers within 5 s")
        .expect("read");
    assert!(n > 0, "the gateway closed the connection mid-response; read so far: {:?}", String::from_utf8_lossy(buf));
    buf.extend_from_slice(&chunk[..n]);
}

/// Whether the gateway closes the connection (EOF, or a reset) within 3 s, reading nothing more.
async fn closes(stream: &mut TcpStream, buf: &[u8]) -> bool {
    assert!(buf.is_empty(), "unexpected bytes after the answer: {:?}", String::from_utf8_lossy(buf));
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("more bytes after the answer: {:?}", String::from_utf8_lossy(&chunk[..n])),
        Err(_) => false,
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (gw, up) = setup().await;
    let mut stream = connect(&gw).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.extend_from_slice(format!("GET /p/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes());
    }
    sent.extend_from_slice(b"POST /p/3 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello");
    stream.write_all(&sent).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..4 {
        let answer = read_response(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["uri"], format!("/p/{i}"));
        assert!(answer.header("date").is_some(), "every answer carries a date");
    }
    assert_eq!(up.hits(), 4);
    // Still open for more.
    stream.write_all(b"GET /again HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream, &mut buf, false).await.json()["uri"], "/again");
}

#[tokio::test]
async fn bodies_arrive_whole_streamed_chunked_and_after_100_continue() {
    let (gw, up) = setup().await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();

    // Streamed: the head first, the body later.
    stream.write_all(b"POST /late HTTP/1.1\r\nHost: a.test\r\nContent-Length: 600\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(&[b'x'; 600]).await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.json()["body_len"].as_u64()), (200, Some(600)));

    // Chunked, in pieces.
    stream.write_all(b"POST /chunked HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    stream.write_all(b"5\r\nhello\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream.write_all(b"7;ext=1\r\n, world\r\n0\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.json()["body_len"].as_u64()), (200, Some(12)));

    // Expect: 100-continue: the body goes only after the interim answer.
    stream
        .write_all(b"POST /expect HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(interim.status, 100);
    stream.write_all(b"ping").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    assert_eq!(echo["body_len"], 4);
    assert!(echo["headers"].get("expect").is_none(), "the gateway answered the expectation itself");
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_the_connection_closed() {
    let (gw, up) = setup().await;
    // Declared too large, the body not sent yet: 413 without reading it, then close, since the
    // body's bytes would otherwise be read as the next request.
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.json()["error"].as_str()), (413, Some("body_too_large")));
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closes(&mut stream, &buf).await, "a connection with an unread body is closed");

    // Arrived whole with its head: refused the same, and the connection goes on.
    let mut stream = connect(&gw).await;
    let mut sent = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2048\r\n\r\n".to_vec();
    sent.extend_from_slice(&[b'a'; 2048]);
    sent.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n");
    stream.write_all(&sent).await.unwrap();
    assert_eq!(read_response(&mut stream, &mut buf, false).await.status, 413);
    assert_eq!(read_response(&mut stream, &mut buf, false).await.json()["uri"], "/next");
    assert_eq!(up.hits(), 1);

    // Chunked past the limit: found while streaming.
    let mut stream = connect(&gw).await;
    stream.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    for _ in 0..3 {
        // The gateway may answer once the limit is passed and stop reading: a write after that
        // can fail (broken pipe) while the answer is still there to read.
        let mut chunk = b"200\r\n".to_vec();
        chunk.extend_from_slice(&[b'b'; 0x200]);
        chunk.extend_from_slice(b"\r\n");
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.json()["error"].as_str()), (413, Some("body_too_large")));
}

#[tokio::test]
async fn ambiguous_framing_is_refused_before_any_upstream_sees_it() {
    let (gw, up) = setup().await;
    let smuggling: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for request in smuggling {
        let mut stream = connect(&gw).await;
        let mut buf = Vec::new();
        stream.write_all(request).await.unwrap();
        let answer = read_response(&mut stream, &mut buf, false).await;
        let shown = String::from_utf8_lossy(request);
        assert_eq!(answer.status, 400, "{shown}");
        assert_eq!(answer.json()["error"], "bad_request", "{shown}");
        assert!(closes(&mut stream, &buf).await, "{shown}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn malformed_and_oversized_heads_get_json_errors() {
    let (gw, up) = setup().await;
    let cases: [(&[u8], u16, &str); 6] = [
        (b"GET /a b c\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "bad_request"),
        // Which host is it for? The gateway must not pick one while the upstream reads another.
        (b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: a.test@b.test\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n", 431, "headers_too_large"),
    ];
    for (request, status, error) in cases {
        let mut stream = connect(&gw).await;
        let mut buf = Vec::new();
        stream.write_all(request).await.unwrap();
        if status == 431 {
            // A head that never ends grows past the limit (the default, 32 KiB and up).
            let line = format!("x-filler: {}\r\n", "y".repeat(1000));
            for _ in 0..80 {
                if stream.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        let answer = read_response(&mut stream, &mut buf, false).await;
        assert_eq!((answer.status, answer.json()["error"].as_str()), (status, Some(error)));
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive_and_head_has_no_body() {
    let (gw, _up) = setup().await;
    let mut buf = Vec::new();

    let mut stream = connect(&gw).await;
    stream.write_all(b"GET /old HTTP/1.0\r\nHost: a.test\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closes(&mut stream, &buf).await);

    let mut stream = connect(&gw).await;
    stream.write_all(b"GET /old HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    // HEAD: the upstream's length, no body; the connection goes on.
    stream.write_all(b"HEAD /head HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, true).await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("content-length").is_some_and(|l| l != "0"), "{:?}", answer.headers);
    stream.write_all(b"GET /after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_response(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["uri"], "/after");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closes(&mut stream, &buf).await);
}

/// The upstream gets the host the request was routed by. An absolute-form target names it,
/// whatever the `host` header says (RFC 9112, 3.2.2), user info left out. HTTP/1.0 may leave
/// out the host, HTTP/1.1 to the upstream may not: it gets the target's address (as nginx
/// sends its upstream's name).
#[tokio::test]
async fn the_upstream_gets_the_host_the_request_was_routed_by() {
    let (gw, up) = setup().await;
    let target = up.addr.to_string();
    let cases: [(&[u8], &str, &str); 3] = [
        (b"GET /no-host HTTP/1.0\r\n\r\n", "/no-host", &target),
        (b"GET http://b.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\n\r\n", "/x?y=1", "b.test"),
        (b"GET http://u:p@B.test:8080/x HTTP/1.1\r\nHost: a.test\r\n\r\n", "/x", "B.test:8080"),
    ];
    for (request, uri, host) in cases {
        let mut buf = Vec::new();
        let mut stream = connect(&gw).await;
        stream.write_all(request).await.unwrap();
        let answer = read_response(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        let echo = answer.json();
        assert_eq!(echo["uri"], uri);
        assert_eq!(echo["version"], "HTTP/1.1");
        assert_eq!(echo["headers"]["host"], host, "{}", String::from_utf8_lossy(request));
    }
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
    let (gw, up) = setup().await;
    // Idle, and half a head: both closed after header_read_timeout (1 s here).
    let mut idle = connect(&gw).await;
    let mut slow = connect(&gw).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.te").await.unwrap();
    let started = std::time::Instant::now();
    assert!(closes(&mut idle, &[]).await, "an idle connection is closed");
    assert!(closes(&mut slow, &[]).await, "a connection with half a head is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
    assert_eq!(up.hits(), 0);
    // A connection that keeps sending requests is not cut by the timer.
    let mut busy = connect(&gw).await;
    let mut buf = Vec::new();
    for _ in 0..6 {
        busy.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        assert_eq!(read_response(&mut busy, &mut buf, false).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn at_shutdown_keep_alive_connections_get_one_last_answer_then_close() {
    let (gw, _up) = setup().await;
    let mut buf = Vec::new();
    let mut busy = connect(&gw).await;
    let mut idle = connect(&gw).await;
    busy.write_all(b"GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut busy, &mut buf, false).await.header("connection"), None);
    idle.write_all(b"GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    read_response(&mut idle, &mut buf, false).await;

    gw.gateway().shared().begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A request already on its way is answered, with `connection: close`.
    busy.write_all(b"GET /last HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let answer = read_response(&mut busy, &mut buf, false).await;
    assert_eq!((answer.status, answer.header("connection")), (200, Some("close")));
    assert!(closes(&mut busy, &buf).await);
    // An idle one is closed after a short linger.
    assert!(closes(&mut idle, &buf).await, "an idle keep-alive connection is closed at shutdown");
}
