//! Route precedence, host and header matching, request rewriting and the gateway's own errors.

use crate::harness::{config, gateway, request_path, scripted_upstream, upstream};

/// Five routes that overlap on purpose; each answers from its own upstream.
async fn precedence_gateway() -> (crate::harness::TestGateway, Vec<crate::harness::TestUpstream>) {
    let names = ["exact-host", "wild-host", "long-wild", "any-prefix", "any-exact", "any-regex", "header", "post-only"];
    let mut ups = Vec::new();
    for name in names {
        ups.push(upstream(name).run().await);
    }
    let upstreams: String = names
        .iter()
        .zip(&ups)
        .map(|(n, u)| format!("  - {{ name: {n}, targets: [{{ addr: {} }}] }}\n", u.addr))
        .collect();
    // Written least specific first: the file order must not decide.
    let yaml = config(&format!(
        "upstreams:\n{upstreams}routes:
  - {{ name: any-regex, match: {{ path_regex: '^/api/v[0-9]+/' }}, upstream: any-regex }}
  - {{ name: any-prefix, match: {{ path_prefix: /api }}, upstream: any-prefix }}
  - {{ name: any-exact, match: {{ path: /api/v1/exact }}, upstream: any-exact }}
  - {{ name: wild-host, match: {{ hosts: ['*.example.com'] }}, upstream: wild-host }}
  - {{ name: long-wild, match: {{ hosts: ['*.eu.example.com'] }}, upstream: long-wild }}
  - {{ name: exact-host, match: {{ hosts: [api.example.com] }}, upstream: exact-host }}
  - {{ name: header, match: {{ path_prefix: /api, headers: {{ x-env: prod }} }}, upstream: header }}
  - {{ name: post-only, match: {{ path_prefix: /api/orders, methods: [POST] }}, upstream: post-only }}
"
    ));
    (gateway(&yaml).await, ups)
}

#[tokio::test]
async fn the_most_specific_route_wins_whatever_the_file_order() {
    let (gw, _ups) = precedence_gateway().await;
    let cases = [
        ("api.example.com", "/api/v1/exact", &[][..], "exact-host"),
        ("API.Example.com:8080", "/anything", &[][..], "exact-host"),
        ("shop.example.com", "/api/v1/exact", &[][..], "wild-host"),
        ("a.b.example.com", "/", &[][..], "wild-host"),
        ("shop.eu.example.com", "/", &[][..], "long-wild"),
        ("other.test", "/api/v1/exact", &[][..], "any-exact"),
        ("other.test", "/api/v2/list", &[][..], "any-regex"),
        ("other.test", "/api/list", &[][..], "any-prefix"),
        ("other.test", "/api/list", &[("x-env", "prod")][..], "header"),
        ("other.test", "/api/list", &[("x-env", "staging")][..], "any-prefix"),
        ("other.test", "/apiary", &[][..], "any-prefix"),
    ];
    for (host, path, headers, expected) in cases {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        let answer = gw.get_with(path, &all).await;
        assert_eq!(answer.status, 200, "{host}{path}");
        assert_eq!(answer.upstream(), expected, "{host}{path} {headers:?}");
    }
}

#[tokio::test]
async fn methods_narrow_a_route_and_a_regex_beats_a_prefix() {
    let (gw, _ups) = precedence_gateway().await;
    let post = http::Request::post("/api/orders/1").header("host", "x.test").body(Default::default()).unwrap();
    assert_eq!(gw.send(post).await.upstream(), "post-only");
    assert_eq!(gw.get_with("/api/orders/1", &[("host", "x.test")]).await.upstream(), "any-prefix");
    assert_eq!(gw.get_with("/api/v3/orders", &[("host", "x.test")]).await.upstream(), "any-regex");
}

#[tokio::test]
async fn no_route_is_a_json_404_with_the_request_id() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, match: {{ path_prefix: /api }}, upstream: a }}]\n",
        up.addr
    )))
    .await;
    let answer = gw.get_with("/elsewhere", &[("x-request-id", "req-42")]).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.headers["x-request-id"], "req-42");
    let body = answer.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["request_id"], "req-42");
    assert!(body["message"].is_string());
    // A generated id when the client sent none.
    let answer = gw.get("/elsewhere").await;
    assert_eq!(answer.headers["x-request-id"].len(), 32);
}

/// `/public/../admin` is `/admin` to an upstream that resolves paths itself: it must be routed,
/// and forwarded, as `/admin`, or one route's policies would guard another's backend.
#[tokio::test]
async fn paths_are_routed_and_forwarded_normalized() {
    let public = upstream("public").run().await;
    let admin = upstream("admin").run().await;
    let gw = gateway(&config(&format!(
        "upstreams:
  - {{ name: public, targets: [{{ addr: {} }}] }}
  - {{ name: admin, targets: [{{ addr: {} }}] }}
routes:
  - {{ name: public, match: {{ path_prefix: /public }}, upstream: public }}
  - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: admin }}
",
        public.addr, admin.addr
    )))
    .await;
    let cases = [
        ("/public/../admin/users?id=1", "admin", "/admin/users?id=1"),
        ("/public/%2e%2E/admin", "admin", "/admin"),
        ("/public/./x/..//admin", "public", "/public/admin"),
        ("//admin//users", "admin", "/admin/users"),
        ("/%61dmin/x", "admin", "/admin/x"),
        ("/public/a%2Fb/../c", "public", "/public/c"),
        ("/public/a%2F..%2Fb", "public", "/public/a%2F..%2Fb"),
        ("/public/ok?next=/../admin", "public", "/public/ok?next=/../admin"),
    ];
    for (sent, route, forwarded) in cases {
        let answer = gw.get(sent).await;
        assert_eq!(answer.status, 200, "{sent}");
        assert_eq!(answer.upstream(), route, "{sent}");
        assert_eq!(answer.json()["uri"], forwarded, "{sent}");
    }
    assert_eq!(gw.get("/public/../nowhere").await.status, 404);
}

#[tokio::test]
async fn requests_are_rewritten_for_the_upstream() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes:
  - name: r
    match: {{ path_prefix: /svc }}
    upstream: a
    strip_path_prefix: true
    request_headers: {{ set: {{ x-gateway: barbican }}, remove: [x-debug] }}
",
        up.addr
    )))
    .await;
    let answer = gw
        .get_with(
            "/svc/orders?id=7",
            &[
                ("x-debug", "1"),
                ("x-forwarded-for", "203.0.113.9"),
                ("connection", "x-secret, keep-alive"),
                ("x-secret", "s"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    assert_eq!(echo["uri"], "/orders?id=7");
    let headers = &echo["headers"];
    assert_eq!(headers["x-gateway"], "barbican");
    assert!(headers.get("x-debug").is_none());
    assert!(headers.get("x-secret").is_none(), "headers named in connection are hop-by-hop");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-request-id"], answer.headers["x-request-id"].to_str().unwrap());
    assert!(headers["host"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(echo["version"], "HTTP/1.1");
}

#[tokio::test]
async fn responses_reach_the_client_without_hop_by_hop_headers() {
    use tokio::io::AsyncWriteExt;
    // By path: a plain answer (written from the upstream's head as it is), one with no reason
    // phrase, one whose `connection` names a header to drop, and a chunked one with
    // connection options.
    let up = scripted_upstream(|head, mut stream| async move {
        let answer: &[u8] = match request_path(&head) {
            "/plain" => b"HTTP/1.1 200 OK\r\nX-Kept: 1\r\nX-Request-Id: upstream's\r\nContent-Length: 2\r\n\r\nok",
            "/reasonless" => b"HTTP/1.1 200\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok",
            "/named" => {
                b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: s\r\nUpgrade: h2c\r\n\
                X-Kept: 1\r\nContent-Length: 2\r\n\r\nok"
            }
            _ => {
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                Transfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            }
        };
        stream.write_all(answer).await.ok()?;
        Some(stream)
    })
    .await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: a }}]\n",
        up.addr
    )))
    .await;
    for path in ["/plain", "/reasonless", "/named", "/chunked"] {
        let answer = gw.get(path).await;
        assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"ok"[..]), "{path}");
        let headers = &answer.headers;
        assert_eq!(headers["x-kept"], "1", "{path}");
        assert_eq!(
            headers.get_all("x-request-id").iter().count(),
            1,
            "{path}: the gateway's id replaces the upstream's"
        );
        assert_ne!(headers["x-request-id"], "upstream's", "{path}");
        for hop in ["connection", "keep-alive", "x-secret", "upgrade"] {
            assert!(headers.get(hop).is_none(), "{path}: {hop} is hop-by-hop");
        }
    }
}

#[tokio::test]
async fn the_real_client_ip_is_the_right_most_untrusted_hop() {
    let up = upstream("a").run().await;
    // The gateway trusts loopback (the test client) and 10/8; 198.51.100.0/24 is denied.
    let gw = gateway(&config(&format!(
        "real_ip: {{ trusted_proxies: [127.0.0.1/32, 10.0.0.0/8] }}
ip_rules: {{ deny: [198.51.100.0/24] }}
upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: a }}]
access_log: {{dir}}/access.jsonl
",
        up.addr
    )))
    .await;
    // The left-most hop is a lie the client wrote; 198.51.100.7 is who reached our proxy.
    let denied = gw.get_with("/", &[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.5")]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"], "ip_denied");
    // Writing a denied address at the left does not get anyone denied, or allowed.
    let allowed = gw.get_with("/", &[("x-forwarded-for", "198.51.100.7, 203.0.113.1")]).await;
    assert_eq!(allowed.status, 200);

    // The access log has the real client IP.
    let path = gw.dir.path().join("access.jsonl");
    crate::harness::eventually(std::time::Duration::from_secs(5), "access log lines", || {
        let path = path.clone();
        async move { std::fs::read_to_string(path).map(|t| t.lines().count() >= 2).unwrap_or(false) }
    })
    .await;
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let denied_line = lines.iter().find(|l| l["status"] == 403).expect("a 403 line");
    assert_eq!(denied_line["client_ip"], "198.51.100.7");
    assert_eq!(denied_line["route"], "r");
    let ok_line = lines.iter().find(|l| l["status"] == 200).expect("a 200 line");
    assert_eq!(ok_line["client_ip"], "203.0.113.1");
    assert_eq!(ok_line["upstream"], "a");
    assert_eq!(ok_line["target"], up.addr.to_string());
    for field in [
        "ts",
        "request_id",
        "method",
        "host",
        "path",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "tenant",
        "consumer",
        "waf_action",
        "limited",
    ] {
        assert!(ok_line.get(field).is_some(), "access log lacks {field}: {ok_line}");
    }
    assert!(ok_line["bytes_out"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bots_are_refused_by_user_agent() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "bot_detect: {{ deny_user_agents: ['(?i)sqlmap'], block_empty_user_agent: true }}
upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: a }}]
",
        up.addr
    )))
    .await;
    let bot = gw.get_with("/", &[("user-agent", "sqlmap/1.7.2#stable")]).await;
    assert_eq!(bot.status, 403);
    assert_eq!(bot.json()["error"], "bot_denied");
    assert_eq!(gw.get("/").await.status, 403, "empty user agent");
    assert_eq!(gw.get_with("/", &[("user-agent", "Mozilla/5.0")]).await.status, 200);
}

#[tokio::test]
async fn host_names_in_targets_are_resolved() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: 'localhost:{}' }}], dns_refresh: 1s }}]\nroutes: [{{ name: r, upstream: a }}]\n",
        up.addr.port()
    )))
    .await;
    assert_eq!(gw.get("/").await.status, 200);
}

#[tokio::test]
async fn route_header_edits_win_over_the_forwarding_headers() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes:
  - name: r
    upstream: a
    request_headers: {{ set: {{ x-forwarded-proto: https }}, remove: [x-forwarded-for] }}
",
        up.addr
    )))
    .await;
    let answer = gw.get_with("/", &[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "gopher")]).await;
    let headers = &answer.json()["headers"];
    assert!(headers.get("x-forwarded-for").is_none(), "{headers}");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-request-id"], answer.headers["x-request-id"].to_str().unwrap());
}
