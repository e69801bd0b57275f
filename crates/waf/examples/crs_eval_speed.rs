//! Times the engine on the requests the reference benchmark sends (shared/reference/README.md):
//! `GET /api/v1/users?id=42&name=alice` and the 1 KiB JSON POST of `post.lua`, through CRS
//! 4.28.0 at paranoia 1 with the reference engine settings, on one thread. `GET*` and `POST*`
//! number every value (user agent, query values, JSON strings), as `bench/distinct.lua` does,
//! so that no request repeats a value: the engine's memos never help. `TEXT*` is a JSON POST
//! of one 1 KiB field of prose (a comment, a description), numbered the same way: a long
//! parameter, which the prescan treats apart. `BROWSER` is the GET with the 15 headers a
//! browser sends instead of 3.
//!
//! ```text
//! cargo run --release -p barbican-waf --example crs_eval_speed [-- SECONDS [GET|POST|GET*|POST*|TEXT*|BROWSER|all [THREADS [own]]]]
//! ```
//!
//! It prints evaluations per second per request kind; compare with the nginx +
//! libmodsecurity3 figures of the reference README, measured on the same machine. With
//! `THREADS` above 1, that many threads evaluate at once, sharing one compiled rule set as the
//! gateway's workers do (or, with `own`, each with a rule set of its own: the difference is
//! what sharing costs), and each prints its own figure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barbican_waf::engine::{Request, Response, RuleSet, Verdict};
use barbican_waf::seclang::Loader;

/// The gateway's allocator, so that the figures are the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POST_BODY: &str = r#"{"order":{"id":"ord-2026-11-25-000417","customer":{"id":42,"name":"Alice Smith","email":"alice@example.com","phone":"+1-202-555-0143","address":{"line1":"1600 Market Street","line2":"Suite 400","city":"Philadelphia","region":"PA","postal_code":"19103","country":"US"}},"items":[{"sku":"A-1001","title":"Wireless keyboard","qty":2,"unit_price":39.99},{"sku":"B-2002","title":"USB-C charging cable, 2 m","qty":1,"unit_price":12.5},{"sku":"C-3003","title":"Laptop stand (aluminium)","qty":1,"unit_price":54.0}],"note":"Please deliver after 5pm. Leave the parcel with the concierge if nobody answers the door.","coupon":"WINTER-2026","currency":"USD","channel":"web","created_at":"2026-11-25T10:41:07Z","tags":["gift","priority","t2","t3","t4","t5","t6","t7","t8","t9","t10","t11","t12","t13","t14","t15","t16","t17","t18","t19","t20","t21","t22","t23","t24","t25","t26","t27","t28","t29","t30","t31","t32","t33","t34"],"metadata":{"utm_source":"newsletter","utm_campaign":"black-friday","ab_bucket":"b"}}}"#;

/// A sentence of the `TEXT*` field.
const PROSE: &str = "The customer's order (#4521) arrived late; please refund the shipping fee - she paid $12.50 \
                     on 2026-11-20. Thanks! ";

fn shared() -> PathBuf {
    match std::env::var_os("BARBICAN_CRS_DIR") {
        Some(d) => PathBuf::from(d).join(".."),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let only = std::env::args().nth(2).filter(|k| k != "all");
    let threads: usize = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let own = std::env::args().nth(4).is_some_and(|a| a == "own");
    let shared = shared();
    let crs = shared.join("crs/v4.28.0");
    let started = Instant::now();
    let mut loader = Loader::new();
    loader.load_file(&shared.join("reference/modsecurity.conf"));
    loader.load_file(&crs.join("crs-setup.conf.example"));
    loader.load_file(&crs.join("rules/*.conf"));
    let loaded = match loader.finish() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot load CRS 4.28.0 from {}: {} errors", crs.display(), e.len());
            std::process::exit(1);
        }
    };
    let sets: Vec<RuleSet> = (0..if own { threads } else { 1 }).map(|_| RuleSet::compile(&loaded)).collect();
    println!("compiled {} rules in {:?}", sets[0].rule_count(), started.elapsed() / sets.len() as u32);
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    // Request `n` of a kind; the starred kinds number every value, as bench/distinct.lua does.
    let make = |kind: &str, n: usize| {
        let (ua, uri) = match kind.ends_with('*') {
            true => (format!("{ua} r/{n}"), format!("/api/v1/users?id=42{n}&name=alice{n}")),
            false => (ua.to_string(), "/api/v1/users?id=42&name=alice".to_string()),
        };
        let req =
            |method, uri| Request::new(method, uri).header("Host", "127.0.0.1:18083").header("User-Agent", ua.clone());
        match kind {
            "BROWSER" => browser(req("GET", uri)),
            _ if kind.starts_with("GET") => req("GET", uri).header("Accept", "*/*"),
            _ => {
                let body = match kind {
                    "POST*" => numbered_strings(POST_BODY, n),
                    "TEXT*" => format!(r#"{{"text":"{} ({n})"}}"#, PROSE.repeat(9)),
                    _ => POST_BODY.to_string(),
                };
                req("POST", "/".to_string())
                    .header("Accept", "*/*")
                    .header("Content-Type", "application/json")
                    .header("Content-Length", body.len().to_string())
                    .body(body)
            }
        }
    };
    let resp = Response::new(200).header("Content-Type", "text/plain").body("ok\n");
    let kinds: Vec<(&str, Vec<Request>)> = ["GET", "POST", "GET*", "POST*", "TEXT*", "BROWSER"]
        .into_iter()
        .filter(|kind| only.as_deref().is_none_or(|o| o == *kind))
        .map(|kind| {
            // Distinct requests are made in advance, more than the memos keep.
            let requests = match kind.ends_with('*') {
                true => (0..DISTINCT).map(|n| make(kind, n)).collect(),
                false => vec![make(kind, 0)],
            };
            (kind, requests)
        })
        .collect();
    // Each thread times every kind in turn, the threads together, as the gateway's workers
    // evaluate side by side.
    let together = std::sync::Barrier::new(threads);
    let run = |rs: &RuleSet, thread: usize| {
        for (kind, requests) in &kinds {
            for req in &requests[..2.min(requests.len())] {
                let o = rs.evaluate(req, Some(&resp));
                assert_eq!(o.verdict, Verdict::Pass, "{kind}: {:?}", o.matched);
            }
            together.wait();
            let until = Instant::now() + Duration::from_secs(secs);
            let (mut n, t0) = (0usize, Instant::now());
            while Instant::now() < until {
                std::hint::black_box(rs.evaluate(&requests[n % requests.len()], Some(&resp)));
                n += 1;
            }
            let per = t0.elapsed() / n.max(1) as u32;
            let who = if threads > 1 { format!(" (thread {thread})") } else { String::new() };
            println!(
                "{kind}{who}: {:.0} evaluations/s ({per:?} each, {n} in all)",
                n as f64 / t0.elapsed().as_secs_f64()
            );
        }
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            let (rs, run) = (&sets[if own { t } else { 0 }], &run);
            s.spawn(move || run(rs, t));
        }
    });
}

/// The headers a browser adds to a page request (Chrome's, 13 besides `Host` and
/// `User-Agent`). Each header costs the engine more than its bytes: CRS 4.28.0's rule 920450
/// (restricted headers) captures every header name, makes a `TX` variable of it and looks it
/// up in a list, about 0.45 µs a header.
fn browser(r: Request) -> Request {
    r.header("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
        .header("Accept-Language", "en-US,en;q=0.9")
        .header("Accept-Encoding", "gzip, deflate, br")
        .header("Connection", "keep-alive")
        .header("Referer", "https://app.example.com/dashboard")
        .header("Cookie", "session=3f2a9c1e7b; theme=dark; lang=en")
        .header("Upgrade-Insecure-Requests", "1")
        .header("Sec-Fetch-Dest", "document")
        .header("Sec-Fetch-Mode", "navigate")
        .header("Sec-Fetch-Site", "same-origin")
        .header("Sec-Fetch-User", "?1")
        .header("Cache-Control", "max-age=0")
        .header("Sec-Ch-Ua", "\"Chromium\";v=\"120\"")
}

/// How many distinct requests the starred kinds cycle through.
const DISTINCT: usize = 50_000;

/// The JSON body with `-n` appended to every string value (those followed by `,`, `]` or `}`).
fn numbered_strings(body: &str, n: usize) -> String {
    let mut out = String::with_capacity(body.len() + 256);
    let mut parts = body.split('"').peekable();
    let mut inside = false;
    while let Some(p) = parts.next() {
        out.push_str(p);
        if inside && parts.peek().is_some_and(|next| next.starts_with([',', ']', '}'])) {
            out.push_str(&format!("-{n}"));
        }
        if parts.peek().is_some() {
            out.push('"');
        }
        inside = !inside;
    }
    out
}
