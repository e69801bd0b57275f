//! The WAF in the gateway: OWASP CRS 4.28.0 from `BARBICAN_CRS_DIR` and Barbican's own rules,
//! block and detect modes, the audit log, metrics, the evaluate API, and rule files that
//! reload like config.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{config, eventually, gateway, upstream, TestGateway};

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
