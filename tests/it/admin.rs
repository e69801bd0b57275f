//! The admin listener: probes without a token, metrics only with one, and the figures in them.

use crate::harness::{config, gateway, upstream};

#[tokio::test]
async fn probes_are_open_and_metrics_need_a_token() {
    std::env::set_var("BARBICAN_IT_VIEWER_TOKEN", "viewer-secret-1");
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "admin: {{ bind: 127.0.0.1:0, tokens: [{{ name: v, token_env: BARBICAN_IT_VIEWER_TOKEN, role: viewer }}] }}
upstreams: [{{ name: a, targets: [{{ addr: {} }}], health_check: {{ path: /healthz, interval: 1s }} }}]
routes: [{{ name: orders, match: {{ path_prefix: /orders }}, upstream: a }}]
",
        up.addr
    )))
    .await;
    assert_eq!(gw.admin_get("/healthz", None).await.status, 200);
    let ready = gw.admin_get("/readyz", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["revision"], 1);

    let anonymous = gw.admin_get("/metrics", None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"], "unauthenticated");
    assert_eq!(gw.admin_get("/metrics", Some("wrong")).await.status, 401);

    for _ in 0..3 {
        assert_eq!(gw.get("/orders/1").await.status, 200);
    }
    assert_eq!(gw.get("/nowhere").await.status, 404);
    let metrics = gw.admin_get("/metrics", Some("viewer-secret-1")).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("barbican_requests_total{route=\"orders\",code=\"200\"} 3"), "{text}");
    assert!(text.contains("barbican_requests_total{route=\"\",code=\"404\"} 1"), "{text}");
    assert!(text.contains("barbican_request_duration_seconds_count{route=\"orders\"} 3"), "{text}");
    assert!(text.contains(&format!("barbican_upstream_healthy{{upstream=\"a\",target=\"{}\"}} 1", up.addr)), "{text}");
    assert!(text.contains("barbican_config_revision 1"), "{text}");
    assert!(text.contains("barbican_config_reloads_total{result=\"error\"} 0"), "{text}");
    assert!(!text.contains("viewer-secret-1"), "a secret leaked into metrics");
    assert!(!text.contains("/orders/1"), "raw paths must not become labels");
}

#[tokio::test]
async fn a_reload_swaps_the_config_and_a_broken_one_keeps_the_old() {
    let a = upstream("a").run().await;
    let b = upstream("b").run().await;
    let first = config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}\nupstreams: [{{ name: u, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        a.addr
    ));
    let gw = gateway(&first).await;
    assert_eq!(gw.get("/").await.upstream(), "a");

    let second = first.replace(&a.addr.to_string(), &b.addr.to_string());
    assert_eq!(gw.rewrite_and_reload(&second).await, Ok(2));
    assert_eq!(gw.get("/").await.upstream(), "b");

    let broken = second.replace("upstream: u", "upstream: nothing");
    let errors = gw.rewrite_and_reload(&broken).await.expect_err("a broken config must be refused");
    assert_eq!(errors[0].path, "routes[0].upstream");
    assert_eq!(gw.get("/").await.upstream(), "b", "the old config keeps serving");
    let ready = gw.admin_get("/readyz", None).await;
    assert_eq!(ready.json()["revision"], 2);

    let moved_admin = second.replace("admin: { bind: 127.0.0.1:0 }", "admin: { bind: 127.0.0.2:0 }");
    let errors = gw.rewrite_and_reload(&moved_admin).await.expect_err("admin changes need a restart");
    assert_eq!(errors[0].path, "admin.bind");
}
