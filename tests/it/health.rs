//! Failover: active health checks, passive ejection, retries and timeouts.

use std::time::Duration;

use http_body_util::Full;

use crate::harness::{config, eventually, gateway, upstream};

#[tokio::test]
async fn after_a_killed_target_is_detected_no_request_fails() {
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let gw = gateway(&config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}
upstreams:
  - name: u
    targets: [{{ addr: {} }}, {{ addr: {} }}]
    health_check: {{ path: /healthz, interval: 50ms, timeout: 200ms, unhealthy_after: 2, healthy_after: 2 }}
    passive_health: {{ failures: 1000 }}
routes: [{{ name: r, upstream: u }}]
",
        a.addr, b.addr
    )))
    .await;
    assert_eq!(gw.get("/").await.status, 200);
    a.kill();
    let shared = gw.gateway().shared().clone();
    eventually(Duration::from_secs(5), "the health check to mark a down", || {
        let snapshot = shared.snapshot();
        async move { snapshot.upstreams[0].members.iter().filter(|m| m.target.is_healthy()).count() == 1 }
    })
    .await;
    for _ in 0..200 {
        let answer = gw.get("/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.upstream(), "b");
    }

    // A target that fails its check but still listens comes back after `healthy_after` passes.
    b.set_healthy(false);
    eventually(Duration::from_secs(5), "b marked down too", || {
        let snapshot = shared.snapshot();
        async move { snapshot.upstreams[0].members.iter().all(|m| !m.target.is_healthy()) }
    })
    .await;
    let none = gw.get("/").await;
    assert_eq!(none.status, 502);
    assert_eq!(none.json()["error"], "upstream_unavailable");
    b.set_healthy(true);
    eventually(Duration::from_secs(5), "b healthy again", || async { gw.get("/").await.status == 200 }).await;
}

#[tokio::test]
async fn a_target_refusing_connections_is_ejected() {
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let gw = gateway(&config(&format!(
        "upstreams:
  - name: u
    targets: [{{ addr: {} }}, {{ addr: {} }}]
    passive_health: {{ failures: 1, eject_for: 30s }}
routes: [{{ name: r, upstream: u }}]
",
        a.addr, b.addr
    )))
    .await;
    a.kill();
    // No retries, no health check: the first request to `a` fails, and ejects it.
    let mut failures = 0;
    for _ in 0..100 {
        let answer = gw.get("/").await;
        if answer.status != 200 {
            assert_eq!(answer.status, 502);
            assert_eq!(answer.json()["error"], "upstream_error");
            failures += 1;
        }
    }
    assert!(failures <= 1, "{failures} requests failed; ejection should stop them after the first");
}

#[tokio::test]
async fn idempotent_requests_are_retried_elsewhere_and_others_are_not() {
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let gw = gateway(&config(&format!(
        "upstreams:
  - name: u
    targets: [{{ addr: {} }}, {{ addr: {} }}]
    retries: 1
    passive_health: {{ failures: 1000000 }}
routes: [{{ name: r, upstream: u }}]
",
        a.addr, b.addr
    )))
    .await;
    a.kill();
    for _ in 0..20 {
        let answer = gw.get("/").await;
        assert_eq!(answer.status, 200, "GET must be retried on b");
        let put = http::Request::put("/").body(Full::new(bytes::Bytes::from_static(b"{\"x\":1}"))).unwrap();
        let answer = gw.send(put).await;
        assert_eq!(answer.status, 200, "PUT with a small body must be retried on b");
        assert_eq!(answer.json()["body_len"], 7);
    }
    let mut post_failures = 0;
    for _ in 0..20 {
        let post = http::Request::post("/").body(Full::new(bytes::Bytes::from_static(b"x"))).unwrap();
        if gw.send(post).await.status == 502 {
            post_failures += 1;
        }
    }
    assert!(post_failures >= 5, "POST is not idempotent and must not be retried ({post_failures} failed)");
}

#[tokio::test]
async fn a_503_answer_is_retried_for_idempotent_requests() {
    let sick = upstream("sick").status(503).run().await;
    let well = upstream("well").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, retries: 1, targets: [{{ addr: {} }}, {{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        sick.addr, well.addr
    )))
    .await;
    for _ in 0..10 {
        let answer = gw.get("/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.upstream(), "well");
    }
    assert!(sick.hits() >= 4, "the sick target was tried first about half the time");
    // Without retries, the upstream's own 503 is passed through as it is.
    well.set_status(503);
    let answer = gw.get("/").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["name"].as_str().map(|n| n == "well" || n == "sick"), Some(true));
}

#[tokio::test]
async fn a_slow_upstream_gets_a_504() {
    let slow = upstream("slow").delay(Duration::from_secs(3)).run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, timeouts: {{ connect: 1s, request: 300ms }}, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        slow.addr
    )))
    .await;
    let started = std::time::Instant::now();
    let answer = gw.get("/").await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
}

#[tokio::test]
async fn an_unreachable_upstream_gets_a_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, targets: [{{ addr: '127.0.0.1:{port}' }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n"
    )))
    .await;
    let answer = gw.get("/").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"], "upstream_error");
    // Now ejected: no target left.
    let answer = gw.get("/").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"], "upstream_unavailable");
}
