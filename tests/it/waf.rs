//! The WAF in the gateway: OWASP CRS 4.28.0 from `BARBICAN_CRS_DIR` and Barbican's own rules,
//! block and detect modes, the audit log, metrics, the evaluate API, rule files that reload
//! like config, and response inspection (phases 3 and 4: leaks, body limits, streams).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::harness::{
    chunk, config, eventually, gateway, http_response, request_path, scripted_upstream, upstream, ScriptedUpstream,
    TestGateway,
};

/// The CRS folder: one setting, `BARBICAN_CRS_DIR`, defaulting to `../shared/crs`.
fn crs_dir() -> PathBuf {
    let dir = std::env::var_os("BARBICAN_CRS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/crs"));
    assert!(
        dir.join("v4.28.0/rules").is_dir(),
        "OWASP CRS not found at {}: git clone https://github.com/coreruleset/coreruleset at tag v4.28.0 into \
         <dir>/v4.28.0 and set BARBICAN_CRS_DIR=<dir>",
        dir.display()
    );
    dir
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn waf_config(upstream: std::net::SocketAddr, custom_rules: &str) -> String {
    config(&format!(
        "admin: {{ bind: 127.0.0.1:0, tokens: [{{ name: sec, token_env: BARBICAN_IT_SEC_TOKEN, role: security }}, {{ name: view, token_env: BARBICAN_IT_VIEW_TOKEN, role: viewer }}] }}
upstreams: [{{ name: a, targets: [{{ addr: {upstream} }}] }}]
waf:
  rulesets:
    crs:
      setup: {repo}/rules/crs-setup.conf
      include: ['{crs}/v4.28.0/rules/*.conf']
      paranoia_level: 1
      inbound_anomaly_threshold: 5
      exclusions:
        - {{ remove_target: {{ rule: 942100, target: 'ARGS:search' }} }}
    api:
      include: ['{custom_rules}']
  audit_log: '{{dir}}/audit.jsonl'
routes:
  - {{ name: guarded, match: {{ path_prefix: /guarded }}, upstream: a, waf: {{ ruleset: crs, mode: block, expose_rule_ids: true }} }}
  - {{ name: watched, match: {{ path_prefix: /watched }}, upstream: a, waf: {{ ruleset: crs, mode: detect }} }}
  - {{ name: api, match: {{ path_prefix: /api }}, upstream: a, waf: {{ ruleset: api }} }}
  - {{ name: open, upstream: a }}
",
        repo = repo().display(),
        crs = crs_dir().display(),
    ))
}

const BROWSER: [(&str, &str); 2] =
    [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), ("accept", "text/html")];

async fn get(gw: &TestGateway, path: &str, extra: &[(&str, &str)]) -> crate::harness::Answer {
    let mut headers = BROWSER.to_vec();
    headers.extend_from_slice(extra);
    gw.get_with(path, &headers).await
}

fn tokens() {
    std::env::set_var("BARBICAN_IT_SEC_TOKEN", "sec-secret");
    std::env::set_var("BARBICAN_IT_VIEW_TOKEN", "view-secret");
}

#[tokio::test]
async fn crs_blocks_attacks_passes_the_rest_and_tells_the_audit_log() {
    tokens();
    let up = upstream("a").run().await;
    let custom = format!("{}/rules/custom/*.conf", repo().display());
    let gw = gateway(&waf_config(up.addr, &custom)).await;

    assert_eq!(get(&gw, "/guarded/users?id=42&name=alice", &[]).await.status, 200);
    let attack = "/guarded/users?id=1%27%20OR%20%271%27%3D%271";
    let blocked = get(&gw, attack, &[("x-request-id", "attack-1")]).await;
    assert_eq!(blocked.status, 403);
    let body = blocked.json();
    assert_eq!(body["error"], "waf_blocked");
    let ids: Vec<u64> = body["rule_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(ids.iter().any(|id| (942000..943000).contains(id)), "an SQL injection rule matched: {ids:?}");
    assert!(ids.contains(&949110), "the inbound anomaly score decided: {ids:?}");
    assert_eq!(up.hits(), 1, "the attack never reached the upstream");

    // Detect mode lets it through and says so in the audit log.
    let detected = get(&gw, &attack.replace("/guarded", "/watched"), &[("x-request-id", "attack-2")]).await;
    assert_eq!(detected.status, 200);
    // The exclusion takes ARGS:search out of 942100 (libinjection): the same payload there passes.
    let excluded = get(&gw, "/guarded/find?search=1%27%20OR%20%271%27%3D%271", &[]).await;
    assert_ne!(excluded.json()["error"], "waf_blocked", "excluded target still blocked");
    // No WAF on the open route.
    assert_eq!(get(&gw, &attack.replace("/guarded", "/open"), &[]).await.status, 200);

    let audit = gw.dir.path().join("audit.jsonl");
    eventually(Duration::from_secs(5), "audit lines", || {
        let audit = audit.clone();
        async move { std::fs::read_to_string(audit).is_ok_and(|t| t.contains("attack-2")) }
    })
    .await;
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let blocked_line = lines.iter().find(|l| l["request_id"] == "attack-1").expect("the block is audited");
    assert_eq!(blocked_line["action"], "block");
    assert_eq!(blocked_line["route"], "guarded");
    assert_eq!(blocked_line["ruleset"], "crs");
    assert!(blocked_line["anomaly_score"].as_i64().unwrap() >= 5);
    assert!(blocked_line["matched"].as_array().unwrap().iter().any(|m| m["id"] == 949110 && m["msg"].is_string()));
    let detected_line = lines.iter().find(|l| l["request_id"] == "attack-2").expect("the detection is audited");
    assert_eq!(detected_line["action"], "detect");

    let metrics = gw.admin_get("/metrics", Some("view-secret")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("barbican_waf_decisions_total{ruleset=\"crs\",action=\"block\"} 1"), "{text}");
    assert!(text.contains("barbican_waf_decisions_total{ruleset=\"crs\",action=\"detect\"} 1"), "{text}");
}

/// The rule set's paranoia level is config: the engine decides at compile time which rules
/// a level leaves out (`transaction::fold`), and a reload to another level brings them in.
#[tokio::test]
async fn a_reload_to_a_higher_paranoia_level_brings_its_rules_in() {
    tokens();
    let up = upstream("a").run().await;
    let custom = format!("{}/rules/custom/*.conf", repo().display());
    let at_1 = waf_config(up.addr, &custom);
    let gw = gateway(&at_1).await;
    // An off-domain URL in a parameter: only paranoia level 2 calls it remote file inclusion
    // (931130, critical).
    let link = "/guarded/fetch?src=https://files.example.net/avatar.png";
    assert_eq!(get(&gw, link, &[]).await.status, 200, "level 1 lets it through");

    let at_2 = at_1.replace("paranoia_level: 1", "paranoia_level: 2");
    assert_ne!(at_1, at_2);
    gw.rewrite_and_reload(&at_2).await.expect("the level 2 config loads");
    let blocked = get(&gw, link, &[]).await;
    assert_eq!(blocked.status, 403, "level 2 blocks it");
    let ids = blocked.json()["rule_ids"].clone();
    assert!(ids.as_array().unwrap().iter().any(|id| id == 931130), "{ids}");

    gw.rewrite_and_reload(&at_1).await.expect("back to level 1");
    assert_eq!(get(&gw, link, &[]).await.status, 200, "and back");
}

#[tokio::test]
async fn barbicans_own_api_rules_refuse_method_overrides_and_repository_paths() {
    tokens();
    let up = upstream("a").run().await;
    let custom = format!("{}/rules/custom/*.conf", repo().display());
    let gw = gateway(&waf_config(up.addr, &custom)).await;
    assert_eq!(get(&gw, "/api/orders", &[]).await.status, 200);
    assert_eq!(get(&gw, "/api/orders", &[("x-http-method-override", "TRACE")]).await.status, 403);
    assert_eq!(get(&gw, "/api/orders", &[("x-http-method-override", "PATCH")]).await.status, 200);
    assert_eq!(get(&gw, "/api/.git/config", &[]).await.status, 403);
    let post = http::Request::post("/api/orders")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"id\": 1,")))
        .unwrap();
    assert_eq!(gw.send(post).await.status, 403, "a malformed JSON body is refused");
    let post = http::Request::post("/api/orders")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"id\": 1}")))
        .unwrap();
    assert_eq!(gw.send(post).await.status, 200);
}

#[tokio::test]
async fn the_evaluate_api_runs_a_request_through_a_rule_set() {
    tokens();
    let up = upstream("a").run().await;
    let custom = format!("{}/rules/custom/*.conf", repo().display());
    let gw = gateway(&waf_config(up.addr, &custom)).await;
    let ask = serde_json::json!({
        "method": "GET",
        "uri": "/search?q=<script>alert(1)</script>",
        "headers": [["Host", "example.com"], ["User-Agent", "Mozilla/5.0"], ["Accept", "*/*"]],
        "body": "",
        "route": "guarded",
    })
    .to_string();
    let answer = gw.admin("POST", "/api/v1/waf/evaluate", "sec-secret", &[], &ask).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let verdict = answer.json();
    assert_eq!(verdict["action"], "block");
    assert!(verdict["anomaly_score"].as_i64().unwrap() >= 5);
    assert!(verdict["matched"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"].as_u64().is_some_and(|id| (941000..942000).contains(&id))));
    assert_eq!(up.hits(), 0, "evaluate sends nothing upstream");
    assert_eq!(gw.admin("POST", "/api/v1/waf/evaluate", "view-secret", &[], &ask).await.status, 403);
    let benign = ask.replace("<script>alert(1)</script>", "shoes");
    assert_eq!(gw.admin("POST", "/api/v1/waf/evaluate", "sec-secret", &[], &benign).await.json()["action"], "pass");
}

#[tokio::test]
async fn a_broken_rule_file_is_located_and_keeps_the_old_rules() {
    tokens();
    let up = upstream("a").run().await;
    let rules = tempfile::tempdir().unwrap();
    let file = rules.path().join("mine.conf");
    std::fs::write(&file, "SecRule ARGS \"@contains evil\" \"id:10900,phase:2,deny,status:403,msg:'evil'\"\n").unwrap();
    let gw = gateway(&waf_config(up.addr, &file.display().to_string())).await;
    assert_eq!(get(&gw, "/api/x?q=evil", &[]).await.status, 403);

    // A broken edit: reported with file:line:col, and the old rules keep serving.
    std::fs::write(&file, "# mine\nSecRule ARGS \"@contains evil\" \"id:10900,phase:2,deny,bogus_action\"\n").unwrap();
    let shared = gw.gateway().shared().clone();
    eventually(Duration::from_secs(3), "the broken rule file to be noticed", || {
        let text = shared.metrics.render(&shared.snapshot());
        async move { text.contains("barbican_config_reloads_total{result=\"error\"} 1") }
    })
    .await;
    let errors = gw.gateway().reload().await.expect_err("still broken");
    let located = errors.iter().map(ToString::to_string).find(|e| e.contains("mine.conf:2:")).unwrap_or_default();
    assert!(located.starts_with("waf.rulesets.api: ") && located.contains("bogus_action"), "{errors:?}");
    assert_eq!(get(&gw, "/api/x?q=evil", &[]).await.status, 403, "the old rules still serve");

    // A good edit applies on its own, without touching the config file.
    std::fs::write(&file, "SecRule ARGS \"@contains wicked\" \"id:10900,phase:2,deny,status:403,msg:'wicked'\"\n")
        .unwrap();
    eventually(Duration::from_secs(3), "the new rule to serve", || async {
        get(&gw, "/api/x?q=evil", &[]).await.status == 200
    })
    .await;
    assert_eq!(get(&gw, "/api/x?q=wicked", &[]).await.status, 403);
}

/// A MySQL error page, as an application that leaks its errors shows it (CRS 951230).
const SQL_ERROR: &str = "<html><body><h1>Error</h1><p>You have an error in your SQL syntax; check the manual that \
     corresponds to your MySQL server version for the right syntax to use near ''1'' at line 1</p></body></html>";
/// PHP source sent as text instead of run (CRS 953120).
const PHP_SOURCE: &str = "<?php\n$db = new PDO($dsn, 'app', $password);\n?>\n";
/// `SecResponseBodyLimit` of the `leaks` rule set.
const LIMIT: usize = 16 * 1024;

/// HTML that no rule minds, `len` bytes of it.
fn benign_page(len: usize) -> Vec<u8> {
    let mut page = b"<html><body>\n".to_vec();
    let mut line = 0;
    while page.len() < len {
        page.extend_from_slice(format!("<p>line {line}: the quick brown fox jumps over the lazy dog</p>\n").as_bytes());
        line += 1;
    }
    page.truncate(len);
    page
}

/// 64 KiB of HTML with the SQL error at 32 KiB, past the limit.
fn late_leak() -> Vec<u8> {
    let mut page = benign_page(32 * 1024);
    page.extend_from_slice(SQL_ERROR.as_bytes());
    page.extend_from_slice(&benign_page(64 * 1024 - page.len()));
    page
}

const LARGE: usize = 4 << 20;

/// What the streaming answers wait for before they go on.
#[derive(Clone, Default)]
struct Gates {
    large: Arc<Notify>,
    stream: Arc<Notify>,
    events: Arc<Notify>,
}

/// An application that answers by the last segment of the path: leaks, large pages, streams.
async fn leaky_upstream(gates: Gates) -> ScriptedUpstream {
    scripted_upstream(move |head, mut stream| {
        let gates = gates.clone();
        async move {
            let name = request_path(&head).rsplit('/').next().unwrap_or_default().to_string();
            let html = ("content-type", "text/html; charset=utf-8");
            let chunked = |content_type: &str| {
                format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n")
                    .into_bytes()
            };
            match name.as_str() {
                "sql" => stream.write_all(&http_response(200, &[html], SQL_ERROR.as_bytes())).await.ok()?,
                "source" => {
                    let answer = http_response(200, &[("content-type", "text/plain")], PHP_SOURCE.as_bytes());
                    stream.write_all(&answer).await.ok()?;
                }
                "gzip-sql" => {
                    let answer = http_response(200, &[html, ("content-encoding", "gzip")], SQL_ERROR.as_bytes());
                    stream.write_all(&answer).await.ok()?;
                }
                "php5" => {
                    let headers = [("content-type", "application/json"), ("x-powered-by", "PHP/5.6.40")];
                    stream.write_all(&http_response(200, &headers, b"{\"ok\": true}")).await.ok()?;
                }
                "late-leak" => {
                    stream.write_all(&chunked("text/html")).await.ok()?;
                    for part in late_leak().chunks(4096) {
                        stream.write_all(&chunk(part)).await.ok()?;
                    }
                    stream.write_all(&chunk(b"")).await.ok()?;
                }
                "large" => {
                    let answer = http_response(200, &[html], &benign_page(LARGE));
                    let (first, rest) = answer.split_at(64 * 1024);
                    stream.write_all(first).await.ok()?;
                    gates.large.notified().await;
                    stream.write_all(rest).await.ok()?;
                }
                "stream" => {
                    stream.write_all(&chunked("text/html")).await.ok()?;
                    stream.write_all(&chunk(b"<html><body><p>working on it</p>\n")).await.ok()?;
                    gates.stream.notified().await;
                    stream.write_all(&[chunk(b"</body></html>\n"), chunk(b"")].concat()).await.ok()?;
                }
                "events" => {
                    stream.write_all(&chunked("text/event-stream")).await.ok()?;
                    stream.write_all(&chunk(b"data: hello\n\n")).await.ok()?;
                    gates.events.notified().await;
                    stream.write_all(&[chunk(b"data: bye\n\n"), chunk(b"")].concat()).await.ok()?;
                }
                "small" => stream.write_all(&http_response(200, &[html], &benign_page(500))).await.ok()?,
                "big" => stream.write_all(&http_response(200, &[html], &benign_page(2048))).await.ok()?,
                _ => stream.write_all(&http_response(200, &[html], b"<html><body>fine</body></html>")).await.ok()?,
            }
            Some(stream)
        }
    })
    .await
}

/// Rule sets that read responses: `leaks` (CRS with response bodies read up to 16 KiB, and a
/// phase 3 rule of our own) and `strict` (no rules; a body over 1 KiB is refused).
fn response_config(upstream: std::net::SocketAddr, rules: &std::path::Path) -> String {
    std::fs::write(
        rules.join("response.conf"),
        format!(
            "SecResponseBodyAccess On\nSecResponseBodyMimeType text/plain text/html text/event-stream\n\
             SecResponseBodyLimit {LIMIT}\nSecResponseBodyLimitAction ProcessPartial\n\
             SecRule RESPONSE_HEADERS:X-Powered-By \"@beginsWith PHP/5.\" \
             \"id:10950,phase:3,deny,status:403,log,msg:'An end-of-life PHP answers'\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        rules.join("strict.conf"),
        "SecResponseBodyAccess On\nSecResponseBodyMimeType text/html\nSecResponseBodyLimit 1024\n\
         SecResponseBodyLimitAction Reject\n",
    )
    .unwrap();
    config(&format!(
        "admin: {{ bind: 127.0.0.1:0, tokens: [{{ name: view, token_env: BARBICAN_IT_VIEW_TOKEN, role: viewer }}] }}
upstreams:
  - {{ name: a, targets: [{{ addr: {upstream} }}], timeouts: {{ request: 60s }} }}
  - {{ name: impatient, targets: [{{ addr: {upstream} }}], timeouts: {{ request: 1s }} }}
waf:
  rulesets:
    leaks:
      setup: {repo}/rules/crs-setup.conf
      include: ['{rules}/response.conf', '{crs}/v4.28.0/rules/*.conf']
      paranoia_level: 1
    strict:
      include: ['{rules}/strict.conf']
  audit_log: '{{dir}}/audit.jsonl'
routes:
  - {{ name: leaky, match: {{ path_prefix: /leaky }}, upstream: a, waf: {{ ruleset: leaks, mode: block, expose_rule_ids: true }} }}
  - {{ name: watched, match: {{ path_prefix: /watched }}, upstream: a, waf: {{ ruleset: leaks, mode: detect }} }}
  - {{ name: impatient, match: {{ path_prefix: /impatient }}, upstream: impatient, waf: {{ ruleset: leaks, mode: block }} }}
  - {{ name: strict, match: {{ path_prefix: /strict }}, upstream: a, waf: {{ ruleset: strict, mode: block }} }}
",
        repo = repo().display(),
        rules = rules.display(),
        crs = crs_dir().display(),
    ))
}

fn rule_ids(answer: &crate::harness::Answer) -> Vec<u64> {
    answer.json()["rule_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

/// The audit lines of request `id`, once there are any.
async fn audit_lines(gw: &TestGateway, id: &str) -> Vec<serde_json::Value> {
    let audit = gw.dir.path().join("audit.jsonl");
    let quoted = format!("\"{id}\"");
    eventually(Duration::from_secs(5), "audit lines", || {
        let audit = audit.clone();
        let quoted = quoted.clone();
        async move { std::fs::read_to_string(audit).is_ok_and(|t| t.contains(&quoted)) }
    })
    .await;
    std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["request_id"] == id)
        .collect()
}

#[tokio::test]
async fn response_rules_block_leaks_and_detect_mode_audits_them() {
    tokens();
    let up = leaky_upstream(Gates::default()).await;
    let rules = tempfile::tempdir().unwrap();
    let gw = gateway(&response_config(up.addr, rules.path())).await;

    // A leaked SQL error: the response rules score it and RESPONSE-959 blocks.
    let blocked = get(&gw, "/leaky/sql", &[("x-request-id", "leak-1")]).await;
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.json()["error"], "waf_blocked");
    assert!(!String::from_utf8_lossy(&blocked.body).contains("SQL syntax"), "nothing of the page leaks");
    let ids = rule_ids(&blocked);
    assert!(ids.contains(&951230) && ids.contains(&959100), "{ids:?}");
    // PHP source sent as text.
    let source = get(&gw, "/leaky/source", &[]).await;
    assert_eq!(source.status, 403);
    assert!(rule_ids(&source).contains(&953120), "{:?}", rule_ids(&source));
    // A phase 3 rule: the header alone decides.
    let php5 = get(&gw, "/leaky/php5", &[]).await;
    assert_eq!(php5.status, 403);
    assert!(rule_ids(&php5).contains(&10950), "{:?}", rule_ids(&php5));
    // What leaks nothing passes; a compressed body is not read.
    let fine = get(&gw, "/leaky/ok", &[]).await;
    assert_eq!((fine.status.as_u16(), &fine.body[..]), (200, &b"<html><body>fine</body></html>"[..]));
    let gzip = get(&gw, "/leaky/gzip-sql", &[]).await;
    assert_eq!((gzip.status.as_u16(), &gzip.body[..]), (200, SQL_ERROR.as_bytes()));

    // Detect mode passes the page whole and tells the audit log.
    let detected = get(&gw, "/watched/sql", &[("x-request-id", "leak-2")]).await;
    assert_eq!((detected.status.as_u16(), &detected.body[..]), (200, SQL_ERROR.as_bytes()));
    // A body the rules do not read: the upstream's header lines go on as it wrote them.
    let php5 = get(&gw, "/watched/php5", &[]).await;
    assert_eq!((php5.status.as_u16(), &php5.body[..]), (200, &b"{\"ok\": true}"[..]));
    assert_eq!(php5.headers["x-powered-by"], "PHP/5.6.40");
    assert_eq!(php5.headers["content-type"], "application/json");

    // A rule set that refuses bodies over its limit: 403, with the reason in the audit log.
    assert_eq!(get(&gw, "/strict/small", &[]).await.status, 200);
    let refused = get(&gw, "/strict/big", &[("x-request-id", "too-long")]).await;
    assert_eq!((refused.status.as_u16(), &refused.json()["error"]), (403, &serde_json::json!("waf_blocked")));

    // One audit line per request, with the request's and the response's rules together.
    let lines = audit_lines(&gw, "leak-1").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(
        (&line["action"], &line["route"], &line["ruleset"]),
        (&"block".into(), &"leaky".into(), &"leaks".into())
    );
    let matched = line["matched"].as_array().unwrap();
    assert!(matched.iter().any(|m| m["id"] == 951230 && m["phase"] == 4 && m["msg"].is_string()), "{matched:?}");
    assert!(matched.iter().any(|m| m["phase"].as_u64().unwrap() <= 2), "the request's own matches too: {matched:?}");
    assert!(line["outbound_anomaly_score"].as_i64().unwrap() >= 4, "{line}");
    let lines = audit_lines(&gw, "leak-2").await;
    assert_eq!((lines.len(), &lines[0]["action"]), (1, &"detect".into()));
    let lines = audit_lines(&gw, "too-long").await;
    assert_eq!((&lines[0]["action"], &lines[0]["reason"]), (&"block".into(), &"response_body_limit".into()));

    let metrics = gw.admin_get("/metrics", Some("view-secret")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for counted in [
        "barbican_waf_decisions_total{ruleset=\"leaks\",action=\"block\"} 3",
        "barbican_waf_decisions_total{ruleset=\"leaks\",action=\"detect\"} 2",
        "barbican_waf_decisions_total{ruleset=\"leaks\",action=\"pass\"} 2",
        "barbican_waf_decisions_total{ruleset=\"strict\",action=\"block\"} 1",
        "barbican_waf_decisions_total{ruleset=\"strict\",action=\"pass\"} 1",
    ] {
        assert!(text.contains(counted), "{counted} in {text}");
    }
}

/// Sends `GET path` and returns as soon as the head is in.
async fn open(gw: &TestGateway, path: &str) -> http::Response<hyper::body::Incoming> {
    let mut request = http::Request::get(gw.url(path));
    for (name, value) in BROWSER {
        request = request.header(name, value);
    }
    let sent = gw.client.request(request.body(http_body_util::Full::default()).unwrap());
    tokio::time::timeout(Duration::from_secs(10), sent).await.expect("the head in time").unwrap()
}

async fn next_bytes(body: &mut hyper::body::Incoming) -> bytes::Bytes {
    use http_body_util::BodyExt;
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("bytes in time");
    frame.unwrap().unwrap().into_data().unwrap()
}

async fn the_rest(body: hyper::body::Incoming) -> Vec<u8> {
    use http_body_util::BodyExt;
    body.collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn response_bodies_are_read_only_to_the_limit_and_then_streamed() {
    tokens();
    let gates = Gates::default();
    let up = leaky_upstream(gates.clone()).await;
    let rules = tempfile::tempdir().unwrap();
    let gw = gateway(&response_config(up.addr, rules.path())).await;

    // The leak is past the limit: ProcessPartial reads the first 16 KiB, and the page goes
    // out whole (chunked from the upstream, so it was read in pieces).
    let late = get(&gw, "/leaky/late-leak", &[]).await;
    assert_eq!(late.status, 200);
    assert!(late.body[..] == late_leak()[..], "the page arrives whole and unchanged");

    // A large page: the client has its head and first bytes while the upstream still holds
    // back the rest, and then the rest, byte for byte.
    let response = open(&gw, "/leaky/large").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], LARGE.to_string().as_str());
    let mut body = response.into_body();
    let mut received = next_bytes(&mut body).await.to_vec();
    gates.large.notify_one();
    received.extend(the_rest(body).await);
    assert!(received == benign_page(LARGE), "the large page arrives byte for byte");

    // An HTML stream that stops short of the limit: inspected as far as it came within the
    // upstream's request timeout (1s here), then streamed.
    let response = open(&gw, "/impatient/stream").await;
    let mut body = response.into_body();
    assert_eq!(&next_bytes(&mut body).await[..], b"<html><body><p>working on it</p>\n");
    gates.stream.notify_one();
    assert_eq!(the_rest(body).await, b"</body></html>\n");

    // An event stream is never held back, whatever SecResponseBodyMimeType lists (the upstream
    // here waits 60s).
    let response = open(&gw, "/leaky/events").await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    assert_eq!(&next_bytes(&mut body).await[..], b"data: hello\n\n");
    gates.events.notify_one();
    assert_eq!(the_rest(body).await, b"data: bye\n\n");
}
