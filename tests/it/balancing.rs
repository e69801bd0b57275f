//! Weighted splits, subsets, canaries and hash stickiness, measured over real requests.

use std::collections::HashMap;

use crate::harness::{config, gateway, upstream, TestGateway, TestUpstream};

async fn count(gw: &TestGateway, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let answer = gw.get_with("/", headers).await;
        assert_eq!(answer.status, 200);
        *seen.entry(answer.upstream()).or_default() += 1;
    }
    seen
}

async fn labelled() -> (TestUpstream, TestUpstream, String) {
    let stable = upstream("stable").run().await;
    let canary = upstream("canary").run().await;
    let upstreams = format!(
        "upstreams:
  - name: orders
    targets:
      - {{ addr: {}, weight: 3, labels: {{ stage: stable }} }}
      - {{ addr: {}, weight: 1, labels: {{ stage: canary }} }}
",
        stable.addr, canary.addr
    );
    (stable, canary, upstreams)
}

#[tokio::test]
async fn round_robin_follows_target_weights() {
    let (_s, _c, upstreams) = labelled().await;
    let gw = gateway(&config(&format!("{upstreams}routes: [{{ name: r, upstream: orders }}]\n"))).await;
    let seen = count(&gw, 2000, &[]).await;
    // Weighted round robin is exact, not statistical: 3:1.
    assert_eq!(seen["stable"], 1500, "{seen:?}");
    assert_eq!(seen["canary"], 500, "{seen:?}");
}

#[tokio::test]
async fn canary_weight_splits_within_a_few_percent() {
    let (_s, _c, upstreams) = labelled().await;
    let gw = gateway(&config(&format!(
        "{upstreams}routes:
  - name: r
    upstream: orders
    subset: {{ stage: stable }}
    canary: [{{ weight: 30, subset: {{ stage: canary }} }}]
"
    )))
    .await;
    let seen = count(&gw, 2000, &[]).await;
    let share = seen.get("canary").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((0.27..=0.33).contains(&share), "canary share {share} from {seen:?}");
}

#[tokio::test]
async fn subset_and_header_canary_pick_their_targets() {
    let (_s, _c, upstreams) = labelled().await;
    let gw = gateway(&config(&format!(
        "{upstreams}routes:
  - name: r
    upstream: orders
    subset: {{ stage: stable }}
    canary: [{{ match: {{ headers: {{ x-canary: 'true' }} }}, subset: {{ stage: canary }} }}]
"
    )))
    .await;
    let plain = count(&gw, 50, &[]).await;
    assert_eq!(plain.get("stable"), Some(&50), "{plain:?}");
    let flagged = count(&gw, 50, &[("x-canary", "true")]).await;
    assert_eq!(flagged.get("canary"), Some(&50), "{flagged:?}");
    let other = count(&gw, 20, &[("x-canary", "false")]).await;
    assert_eq!(other.get("stable"), Some(&20), "{other:?}");
}

#[tokio::test]
async fn hashing_on_a_header_sticks_and_spreads() {
    let ups = [upstream("a").run().await, upstream("b").run().await, upstream("c").run().await];
    let targets: String = ups.iter().map(|u| format!("{{ addr: {} }}, ", u.addr)).collect();
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, balance: hash, hash_on: 'header:x-user-id', targets: [{targets}] }}]\nroutes: [{{ name: r, upstream: u }}]\n"
    )))
    .await;
    let mut owners = HashMap::new();
    for user in 0..60 {
        let id = format!("user-{user}");
        let first = gw.get_with("/", &[("x-user-id", &id)]).await.upstream();
        for _ in 0..5 {
            assert_eq!(gw.get_with("/", &[("x-user-id", &id)]).await.upstream(), first, "{id} moved");
        }
        *owners.entry(first).or_insert(0) += 1;
    }
    assert_eq!(owners.len(), 3, "60 users should land on all 3 targets: {owners:?}");
}

#[tokio::test]
async fn hashing_on_a_cookie_sticks() {
    let ups = [upstream("a").run().await, upstream("b").run().await];
    let targets: String = ups.iter().map(|u| format!("{{ addr: {} }}, ", u.addr)).collect();
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, balance: hash, hash_on: 'cookie:session', targets: [{targets}] }}]\nroutes: [{{ name: r, upstream: u }}]\n"
    )))
    .await;
    for session in ["s1", "s2", "s3", "s4"] {
        let cookie = format!("theme=dark; session={session}");
        let first = gw.get_with("/", &[("cookie", &cookie)]).await.upstream();
        for _ in 0..5 {
            assert_eq!(gw.get_with("/", &[("cookie", &cookie)]).await.upstream(), first);
        }
    }
}

#[tokio::test]
async fn least_request_prefers_the_idle_target() {
    let slow = upstream("slow").delay(std::time::Duration::from_millis(400)).run().await;
    let fast = upstream("fast").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, balance: least_request, targets: [{{ addr: {} }}, {{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        slow.addr, fast.addr
    )))
    .await;
    // Occupy the slow target, then the next requests go to the fast one.
    let url = gw.url("/");
    let client = gw.client.clone();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let req = http::Request::get(url.clone()).body(Default::default()).unwrap();
        pending.push(tokio::spawn(client.request(req)));
    }
    crate::harness::eventually(std::time::Duration::from_secs(2), "the slow target to be busy", || async {
        slow.hits() >= 1
    })
    .await;
    let seen = count(&gw, 10, &[]).await;
    assert_eq!(seen.get("fast"), Some(&10), "{seen:?}");
    for p in pending {
        let _ = p.await;
    }
}
