//! WebSocket proxying: relay, limits, admission, connections kept across reloads, and drains
//! spread over the route's window.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{config, eventually, gateway, TestGateway};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket echo server that prefixes every answer with its name.
struct EchoServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_server(name: &'static str) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(message)) = ws.next().await {
                    let reply = match message {
                        Message::Text(text) => Message::text(format!("{name}:{text}")),
                        Message::Binary(bytes) => Message::binary(bytes),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    EchoServer { addr, task }
}

fn chat_config(blue: SocketAddr, green: SocketAddr, stage: &str, ws: &str) -> String {
    config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}
upstreams:
  - name: chat
    targets:
      - {{ addr: {blue}, labels: {{ stage: blue }} }}
      - {{ addr: {green}, labels: {{ stage: green }} }}
routes:
  - name: chat-ws
    match: {{ path_prefix: /ws/ }}
    upstream: chat
    subset: {{ stage: {stage} }}
    websocket: {{ max_message: 64KiB, {ws} }}
"
    ))
}

async fn open(gw: &TestGateway) -> Ws {
    let (ws, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/room", gw.addr)).await.expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

async fn ask(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(reply)))) => reply.to_string(),
        other => panic!("no echo for {text}: {other:?}"),
    }
}

/// Waits for the server's close frame and returns its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn frames_are_relayed_both_ways() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(blue.addr, green.addr, "blue", "idle_timeout: 30s, drain: 2s")).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "hello").await, "blue:hello");
    ws.send(Message::binary(vec![7u8; 40_000])).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(bytes.len(), 40_000),
        other => panic!("{other:?}"),
    }
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"p"),
        other => panic!("expected a pong, got {other:?}"),
    }
    let metrics = gw.admin_get("/metrics", None).await;
    assert_eq!(metrics.status, 401, "metrics need a token even with websockets");
    let counts = gw.gateway().shared().websockets.counts();
    assert_eq!(counts.values().sum::<usize>(), 1);
    ws.close(None).await.unwrap();
    eventually(Duration::from_secs(2), "the registry to forget the closed connection", || async {
        gw.gateway().shared().websockets.counts().is_empty()
    })
    .await;
    // A plain request on the WebSocket route is proxied as HTTP.
    assert_ne!(gw.get("/ws/room").await.status, 101);
}

#[tokio::test]
async fn connections_survive_reloads_keep_their_target_and_drain_gently() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(blue.addr, green.addr, "blue", "idle_timeout: 30s, drain: 2s")).await;
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(open(&gw).await);
    }
    // 50 reloads that change other things: all stay open and keep echoing.
    for i in 0..50 {
        let yaml = chat_config(blue.addr, green.addr, "blue", &format!("idle_timeout: {}s, drain: 2s", 30 + i));
        assert!(gw.rewrite_and_reload(&yaml).await.is_ok());
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        assert_eq!(ask(ws, &format!("m{i}")).await, format!("blue:m{i}"));
    }

    // Flip the subset: old connections stay on blue, new ones land on green.
    assert!(gw
        .rewrite_and_reload(&chat_config(blue.addr, green.addr, "green", "idle_timeout: 30s, drain: 2s"))
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(600)).await;
    for ws in conns.iter_mut().take(20) {
        assert_eq!(ask(ws, "still").await, "blue:still");
    }
    let mut fresh = open(&gw).await;
    assert_eq!(ask(&mut fresh, "new").await, "green:new");

    // Remove blue: its connections close with 1001, spread over the 2 s drain window.
    let without_blue = config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}
upstreams: [{{ name: chat, targets: [{{ addr: {}, labels: {{ stage: green }} }}] }}]
routes:
  - {{ name: chat-ws, match: {{ path_prefix: /ws/ }}, upstream: chat, subset: {{ stage: green }}, websocket: {{ drain: 2s }} }}
",
        green.addr
    ));
    let removed = Instant::now();
    assert!(gw.rewrite_and_reload(&without_blue).await.is_ok());
    let mut waits = Vec::new();
    for ws in conns {
        waits.push(tokio::spawn(async move {
            let mut ws = ws;
            let code = close_code(&mut ws).await;
            (code, removed.elapsed())
        }));
    }
    let mut times = Vec::new();
    for wait in waits {
        let (code, after) = wait.await.unwrap();
        assert_eq!(code, Some(CloseCode::Away));
        times.push(after);
    }
    let window = Duration::from_secs(2);
    assert!(
        times.iter().all(|t| *t <= window + Duration::from_millis(700)),
        "a close came late: {:?}",
        times.iter().max()
    );
    let mut per_tenth = [0usize; 10];
    for t in &times {
        per_tenth[((t.as_secs_f64() / window.as_secs_f64()) * 10.0).min(9.0) as usize] += 1;
    }
    assert!(per_tenth.iter().all(|&n| n <= 200 / 3), "closes bunched: {per_tenth:?}");
    assert!(per_tenth.iter().filter(|&&n| n > 0).count() >= 7, "closes not spread: {per_tenth:?}");
    // The green connection was not touched.
    assert_eq!(ask(&mut fresh, "after").await, "green:after");
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(blue.addr, green.addr, "blue", "idle_timeout: 30s, drain: 2s")).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "small").await, "blue:small");
    ws.send(Message::binary(vec![0u8; 100 * 1024])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(blue.addr, green.addr, "blue", "idle_timeout: 400ms")).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "hi").await, "blue:hi");
    let started = Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    assert!(started.elapsed() >= Duration::from_millis(300), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn handshakes_over_the_cap_get_503_with_retry_after() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(
        blue.addr,
        green.addr,
        "blue",
        "handshakes_per_second: 5, handshake_burst: 5, handshake_queue: 100ms",
    ))
    .await;
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match tokio_tungstenite::connect_async(format!("ws://{}/ws/room", gw.addr)).await {
            Ok((ws, _)) => admitted.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(admitted.len() >= 5, "the burst is admitted: {}", admitted.len());
    assert!(refused >= 10, "a burst of 20 against 5/s must be refused in part: {refused} refused");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let mut gw = gateway(&chat_config(blue.addr, green.addr, "blue", "idle_timeout: 30s, drain: 2s")).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "x").await, "blue:x");
    let gateway = gw.gateway.take().unwrap();
    let stopping = tokio::task::spawn_blocking(move || gateway.shutdown());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_subset_change_drains_when_the_route_asks_for_it() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let gw = gateway(&chat_config(blue.addr, green.addr, "blue", "drain_on_subset_change: true, drain: 300ms")).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "a").await, "blue:a");
    let flipped = chat_config(blue.addr, green.addr, "green", "drain_on_subset_change: true, drain: 300ms");
    assert!(gw.rewrite_and_reload(&flipped).await.is_ok());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    let mut fresh = open(&gw).await;
    assert_eq!(ask(&mut fresh, "b").await, "green:b");
}

#[tokio::test]
async fn connections_to_a_failing_target_drain_after_the_grace_period() {
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let yaml = chat_config(blue.addr, green.addr, "blue", "health_grace: 300ms, drain: 200ms");
    let gw = gateway(&yaml).await;
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "a").await, "blue:a");
    // Now check health: the echo servers have no /healthz, so blue fails from the first check.
    let checked = yaml.replace(
        "  - name: chat\n",
        "  - name: chat\n    health_check: { path: /healthz, interval: 100ms, unhealthy_after: 1 }\n",
    );
    let reloaded = Instant::now();
    assert!(gw.rewrite_and_reload(&checked).await.is_ok());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    let after = reloaded.elapsed();
    assert!(after >= Duration::from_millis(300), "drained before the grace period: {after:?}");
    assert!(after <= Duration::from_secs(2), "drained too late: {after:?}");
}

#[tokio::test]
async fn the_handshake_passes_the_route_stages_first() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let blue = echo_server("blue").await;
    let green = echo_server("green").await;
    let yaml = chat_config(blue.addr, green.addr, "blue", "idle_timeout: 30s")
        .replace("upstreams:\n", "bot_detect: { deny_user_agents: ['(?i)sqlmap'] }\nupstreams:\n");
    let gw = gateway(&yaml).await;
    let mut request = format!("ws://{}/ws/room", gw.addr).into_client_request().unwrap();
    request.headers_mut().insert("user-agent", "sqlmap/1.8".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a denied client must not get a WebSocket: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut ws = open(&gw).await;
    assert_eq!(ask(&mut ws, "ok").await, "blue:ok");
}
