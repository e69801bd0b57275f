//! Live changes: the config file watched on disk, the admin API, listeners added and removed,
//! and state (pools, health) kept across reloads. Nothing in flight is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::harness::{config, eventually, gateway, upstream};

fn routed_to(addr: std::net::SocketAddr) -> String {
    config(&format!(
        "admin: {{ bind: 127.0.0.1:0, tokens: [{{ name: root, token_env: BARBICAN_IT_ADMIN_TOKEN, role: admin }}, {{ name: v, token_env: BARBICAN_IT_VIEW_TOKEN, role: viewer }}] }}
upstreams: [{{ name: u, targets: [{{ addr: {addr} }}] }}]
routes: [{{ name: r, upstream: u }}]
"
    ))
}

fn tokens() {
    std::env::set_var("BARBICAN_IT_ADMIN_TOKEN", "admin-secret");
    std::env::set_var("BARBICAN_IT_VIEW_TOKEN", "view-secret");
}

#[tokio::test]
async fn a_changed_file_serves_within_a_second_and_a_broken_one_is_refused() {
    tokens();
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let gw = gateway(&routed_to(a.addr)).await;
    assert_eq!(gw.get("/").await.upstream(), "a");

    let written = std::time::Instant::now();
    gw.write_config(&routed_to(b.addr));
    eventually(Duration::from_secs(2), "the new upstream to serve", || async { gw.get("/").await.upstream() == "b" })
        .await;
    assert!(written.elapsed() < Duration::from_millis(1500), "took {:?}", written.elapsed());
    assert_eq!(gw.revision(), 2);

    gw.write_config("routes: [ this is not: valid");
    let shared = gw.gateway().shared().clone();
    eventually(Duration::from_secs(2), "the broken file to be counted", || {
        let text = shared.metrics.render(&shared.snapshot());
        async move { text.contains("barbican_config_reloads_total{result=\"error\"} 1") }
    })
    .await;
    assert_eq!(gw.get("/").await.upstream(), "b", "the last good config keeps serving");
    assert_eq!(gw.revision(), 2);
}

#[tokio::test]
async fn the_admin_api_shows_and_replaces_the_config() {
    tokens();
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let gw = gateway(&routed_to(a.addr)).await;

    let shown = gw.admin("GET", "/api/v1/config", "view-secret", &[], "").await;
    assert_eq!(shown.status, 200);
    let shown = shown.json();
    assert_eq!(shown["revision"], 1);
    assert_eq!(shown["config"]["routes"][0]["name"], "r");
    assert!(!shown.to_string().contains("admin-secret"));

    let next = routed_to(b.addr);
    assert_eq!(gw.admin("PUT", "/api/v1/config", "view-secret", &[], &next).await.status, 403);
    let stale = gw.admin("PUT", "/api/v1/config", "admin-secret", &[("if-match", "7")], &next).await;
    assert_eq!(stale.status, 409);
    assert_eq!(gw.get("/").await.upstream(), "a");

    let broken = next.replace("upstream: u", "upstream: nope");
    let refused = gw.admin("PUT", "/api/v1/config", "admin-secret", &[], &broken).await;
    assert_eq!(refused.status, 400);
    let body = refused.json();
    assert_eq!(body["error"], "invalid_config");
    assert_eq!(body["errors"][0]["path"], "routes[0].upstream");
    assert_eq!(gw.get("/").await.upstream(), "a");

    let applied = gw.admin("PUT", "/api/v1/config", "admin-secret", &[("if-match", "1")], &next).await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(applied.json()["revision"], 2);
    assert_eq!(applied.json()["warnings"], serde_json::json!([]));
    assert_eq!(gw.get("/").await.upstream(), "b", "visible to the very next request");
    // Written back, so a restart (and the file watcher) see the same config.
    let on_disk = std::fs::read_to_string(gw.dir.path().join("barbican.yaml")).unwrap();
    assert!(on_disk.contains(&b.addr.to_string()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(gw.revision(), 2, "writing the file back must not count as another change");

    // JSON is YAML too.
    let as_json =
        serde_json::to_string(&serde_yaml::from_str::<serde_json::Value>(&routed_to(a.addr)).unwrap()).unwrap();
    let applied =
        gw.admin("PUT", "/api/v1/config", "admin-secret", &[("content-type", "application/json")], &as_json).await;
    assert_eq!(applied.status, 200);
    assert_eq!(gw.get("/").await.upstream(), "a");

    // A setting that does nothing where it stands applies, and the answer says so.
    let idle = routed_to(b.addr).replace("targets:", "hash_on: ip, targets:");
    assert!(idle.contains("hash_on"), "{idle}");
    let applied = gw.admin("PUT", "/api/v1/config", "admin-secret", &[], &idle).await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    let warnings = &applied.json()["warnings"];
    assert_eq!(warnings[0]["path"], "upstreams[0].hash_on", "{warnings}");
    assert_eq!(warnings[0]["message"], "has no effect until balance is hash");
    assert_eq!(gw.get("/").await.upstream(), "b");
}

#[tokio::test]
async fn listeners_come_and_go_without_touching_open_connections() {
    let a = upstream("a").run().await;
    let base = config(&format!(
        "upstreams: [{{ name: u, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        a.addr
    ));
    let gw = gateway(&base).await;
    // One keep-alive connection held open across every reload below.
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut held, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut ask = async move || {
        let req = http::Request::get("/").header("host", "x").body(Full::<Bytes>::default()).unwrap();
        let response = held.send_request(req).await.expect("the held connection still works");
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    };
    assert_eq!(ask().await, 200);

    let with_extra = base.replace(
        "listeners: [{ name: public, bind: 127.0.0.1:0 }]",
        "listeners: [{ name: public, bind: 127.0.0.1:0 }, { name: extra, bind: 127.0.0.1:0 }]",
    );
    assert_eq!(gw.rewrite_and_reload(&with_extra).await, Ok(2));
    let extra = gw.gateway().listener_addr("extra").expect("the new listener is bound");
    assert_eq!(gw.gateway().listener_addr("public"), Some(gw.addr), "the kept listener was not re-bound");
    let via_extra =
        gw.client.request(http::Request::get(format!("http://{extra}/")).body(Full::default()).unwrap()).await;
    assert_eq!(via_extra.unwrap().status(), 200);
    assert_eq!(ask().await, 200);

    assert_eq!(gw.rewrite_and_reload(&base).await, Ok(3));
    eventually(Duration::from_secs(2), "the removed listener to close", || async move {
        tokio::net::TcpStream::connect(extra).await.is_err()
    })
    .await;
    assert_eq!(ask().await, 200);
}

#[tokio::test]
async fn upstream_pools_and_health_survive_reloads() {
    let a = upstream("a").run().await;
    let yaml = |route: &str| {
        config(&format!(
            "upstreams: [{{ name: u, targets: [{{ addr: {} }}], health_check: {{ path: /healthz, interval: 50ms, unhealthy_after: 1, healthy_after: 50 }} }}]
routes: [{{ name: {route}, upstream: u }}]
",
            a.addr
        ))
    };
    let gw = gateway(&yaml("r1")).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    let before = a.connections();
    for i in 0..5 {
        assert!(gw.rewrite_and_reload(&yaml(&format!("r{}", i + 2))).await.is_ok());
        assert_eq!(gw.get("/").await.status, 200);
    }
    // Health checks open their own connections; requests reuse the pooled one.
    let health_connections = a.connections() - before;
    let hits_before = a.hits();
    for _ in 0..20 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(a.hits() - hits_before, 20);
    assert!(a.connections() - before <= health_connections + 40, "requests opened new upstream connections");

    // Health state carries over: a target marked down stays down through a reload.
    a.set_healthy(false);
    let shared = gw.gateway().shared().clone();
    eventually(Duration::from_secs(3), "a marked down", || {
        let s = shared.snapshot();
        async move { !s.upstreams[0].members[0].target.is_healthy() }
    })
    .await;
    a.set_healthy(true);
    assert!(gw.rewrite_and_reload(&yaml("r9")).await.is_ok());
    assert_eq!(gw.get("/").await.status, 502, "healthy_after is 50 checks: still down after the reload");
}

#[tokio::test]
async fn fifty_rewrites_under_load_fail_no_request() {
    let blue = upstream("blue").run().await;
    let green = upstream("green").run().await;
    let variant = |i: usize| {
        let (route_path, subset, weight) = match i % 3 {
            0 => ("/", "blue", 1),
            1 => ("/", "green", 3),
            _ => ("/api", "blue", 5),
        };
        config(&format!(
            "upstreams:
  - name: u
    targets:
      - {{ addr: {}, weight: {weight}, labels: {{ stage: blue }} }}
      - {{ addr: {}, labels: {{ stage: green }} }}
routes:
  - {{ name: main-{i}, match: {{ path_prefix: {route_path} }}, upstream: u, subset: {{ stage: {subset} }} }}
  - {{ name: fallback, upstream: u }}
",
            blue.addr, green.addr
        ))
    };
    let gw = Arc::new(gateway(&variant(0)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = if (i + c) % 2 == 0 { "/api/x" } else { "/y" };
                let req = http::Request::get(gw.url(path)).body(Full::<Bytes>::default()).unwrap();
                match gw.client.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.into_body().collect().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        }));
    }
    for i in 1..=50 {
        gw.write_config(&variant(i));
        let expected = i as u64 + 1;
        eventually(Duration::from_secs(3), &format!("revision {expected}"), || async { gw.revision() == expected })
            .await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} requests failed of {}", ok + failed);
    assert!(ok > 1000, "too little load to mean anything: {ok} requests");
}
