//! The WAF's cost against input size: CRS 4.28.0 at paranoia 1 over bodies of 64 KiB to 1 MiB
//! and single headers of 1 to 8 KiB, benign and adversarial, to show that evaluation time grows
//! linearly with the input (no regex backtracks, no processor or transformation goes quadratic).
//!
//! ```text
//! cargo bench -p barbican-waf --bench size                 # criterion, Throughput::Bytes
//! cargo bench -p barbican-waf --bench size -- --table      # size → time → ns/byte, every shape
//! cargo bench -p barbican-waf --bench size -- --table run  # only shapes whose name has "run"
//! ```
//!
//! The rules are those of the reference benchmark (`../shared/reference/modsecurity.conf`, then
//! `crs-setup.conf.example` and `rules/*.conf`), with three changes so that every byte is
//! evaluated: `SecRuleEngine DetectionOnly` (nothing stops at the first block, not even rule
//! 200002's deny on a body error), and `SecRequestBodyLimit` / `SecRequestBodyNoFilesLimit` of
//! 2 MiB (the reference's 12.5 MiB would do too, and the engine does not enforce the no-files
//! limit, but the bench must not depend on either). Before measuring, each request is checked
//! to have been read whole: `REQUEST_BODY_LENGTH` is the body's length and no `REQBODY_ERROR`.
//!
//! The CRS is read from `BARBICAN_CRS_DIR` (default `<repo>/../shared/crs`) as in
//! `examples/crs_eval_speed.rs`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barbican_waf::engine::{Request, RuleSet};
use barbican_waf::seclang::Loader;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

const KIB: usize = 1024;
const BODY_SIZES: [usize; 5] = [64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, 1024 * KIB];
const HEADER_SIZES: [usize; 4] = [KIB, 2 * KIB, 4 * KIB, 8 * KIB];

/// Appended to the reference configuration and the CRS: evaluate everything, read 1 MiB bodies
/// whole, and report what was read (ids 1999001-1999002) for the check before measuring.
const BENCH_CONF: &str = r#"
SecRuleEngine DetectionOnly
SecRequestBodyLimit 2097152
SecRequestBodyNoFilesLimit 2097152
SecRule REQUEST_BODY_LENGTH "@ge 0" "id:1999001,phase:2,pass,log,t:none,logdata:'%{REQUEST_BODY_LENGTH}'"
SecRule REQBODY_ERROR "!@eq 0" "id:1999002,phase:2,pass,log,t:none,logdata:'%{REQBODY_ERROR_MSG}'"
"#;

fn shared() -> PathBuf {
    match std::env::var_os("BARBICAN_CRS_DIR") {
        Some(d) => PathBuf::from(d).join(".."),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn load_crs() -> RuleSet {
    let shared = shared();
    let crs = shared.join("crs/v4.28.0");
    let reference = shared.join("reference/modsecurity.conf");
    if !crs.join("rules").is_dir() || !reference.is_file() {
        eprintln!(
            "this benchmark needs the OWASP CRS 4.28.0 at {} and the reference modsecurity.conf at {}: \
             set BARBICAN_CRS_DIR to a folder holding v4.28.0/{{rules,crs-setup.conf.example}} (e.g. \
             `git clone --branch v4.28.0 https://github.com/coreruleset/coreruleset $BARBICAN_CRS_DIR/v4.28.0`), \
             beside a reference/ folder with modsecurity.conf",
            crs.display(),
            reference.display()
        );
        std::process::exit(2);
    }
    let mut loader = Loader::new();
    loader.load_file(&reference);
    loader.load_file(&crs.join("crs-setup.conf.example"));
    loader.load_file(&crs.join("rules/*.conf"));
    loader.load_str(Path::new("bench-size.conf"), BENCH_CONF);
    match loader.finish() {
        Ok(l) => RuleSet::compile(&l),
        Err(e) => {
            eprintln!("cannot load CRS 4.28.0 from {}: {e:?}", crs.display());
            std::process::exit(2);
        }
    }
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

fn base(method: &str, uri: &str) -> Request {
    Request::new(method, uri).header("Host", "bench.example").header("Accept", "*/*")
}

fn post(content_type: &str, body: Vec<u8>) -> Request {
    base("POST", "/api/v1/upload")
        .header("User-Agent", UA)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len().to_string())
        .body(body)
}

/// `unit` repeated to `n` bytes exactly.
fn repeat_to(unit: &str, n: usize) -> Vec<u8> {
    unit.bytes().cycle().take(n).collect()
}

/// Deterministic printable text with some punctuation, like a long comment field.
fn prose(n: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the",
        "order",
        "ships",
        "after",
        "5pm;",
        "leave",
        "it",
        "with",
        "the",
        "concierge,",
        "please",
        "(door",
        "B)",
        "thanks!",
        "ref:",
        "A-1001",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut x: u32 = 12345;
    while out.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(WORDS[(x >> 16) as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(n);
    out
}

/// Deterministic random printable bytes (no `%`, `&`, `+` or `=`, so that form encoding
/// leaves them as they are): the worst case for a lazy DFA, which meets a new state at nearly
/// every byte.
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = 0x21 + (x % 94) as u8;
        if !matches!(b, b'%' | b'&' | b'+' | b'=') {
            out.push(b);
        }
    }
    out
}

/// The value of one huge argument, by shape: the classic ReDoS shapes for CRS's regexes.
/// `(name, what it is)`; [`shape`] makes the bytes.
const SHAPES: [(&str, &str); 23] = [
    ("run-a", "aaaa…"),
    ("run-a-bang", "aaaa…!"),
    ("run-space", "one long run of spaces"),
    ("run-digit", "1111…"),
    ("nested-parens", "((((…))))"),
    ("nested-brackets", "[[[[…]]]]"),
    ("nested-braces", "{{{{…}}}}"),
    ("quotes", "''''…"),
    ("dashes", "----…"),
    ("quote-dash", "'--'--…"),
    ("sqli-tautology", "' or 1=1-- ' or 1=1-- …"),
    ("sql-comments", "/**//**/…"),
    ("union-select", "union select union select …"),
    ("xss-tags", "<a<a<a…"),
    ("script-tags", "<script><script>…"),
    ("template", "${${${…"),
    ("shell", ";|`$(;|`$(…"),
    ("path-traversal", "../../../…"),
    ("backslashes", "\\\\\\\\…"),
    ("html-entities", "&#x41;&#x41;…"),
    ("php-open", "<?php <?php …"),
    ("prose", "words and punctuation"),
    ("random", "random printable bytes"),
];

/// The bytes of shape `name`, `n` of them; `seed` picks the random bytes of `random`.
fn shape(name: &str, n: usize, seed: u64) -> Vec<u8> {
    let half = |open: &str, close: &str| {
        let mut v = repeat_to(open, n / 2);
        v.extend(repeat_to(close, n - n / 2));
        v
    };
    match name {
        "run-a" => repeat_to("a", n),
        "run-a-bang" => {
            let mut v = repeat_to("a", n - 1);
            v.push(b'!');
            v
        }
        "run-space" => repeat_to(" ", n),
        "run-digit" => repeat_to("1", n),
        "nested-parens" => half("(", ")"),
        "nested-brackets" => half("[", "]"),
        "nested-braces" => half("{", "}"),
        "quotes" => repeat_to("'", n),
        "dashes" => repeat_to("-", n),
        "quote-dash" => repeat_to("'--", n),
        "sqli-tautology" => repeat_to("' or 1=1-- ", n),
        "sql-comments" => repeat_to("/**/", n),
        "union-select" => repeat_to("union select ", n),
        "xss-tags" => repeat_to("<a", n),
        "script-tags" => repeat_to("<script>", n),
        "template" => repeat_to("${", n),
        "shell" => repeat_to(";|`$(", n),
        "path-traversal" => repeat_to("../", n),
        "backslashes" => repeat_to("\\", n),
        "html-entities" => repeat_to("&#x41;", n),
        "php-open" => repeat_to("<?php ", n),
        "prose" => prose(n),
        "random" => random(n, 0x1234_5678_9abc_def1 ^ seed),
        _ => unreachable!("{name}"),
    }
}

/// Percent-encodes what `application/x-www-form-urlencoded` would: the decoded value is `v`.
fn form_encode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3 / 2);
    for &b in v {
        match b {
            b' ' => out.push(b'+'),
            b'&' | b'=' | b'+' | b'%' | b'#' | 0..=0x1f | 0x7f.. => {
                out.extend_from_slice(format!("%{b:02X}").as_bytes())
            }
            _ => out.push(b),
        }
    }
    out
}

/// `b` followed by records 0, 1, 2, ... for as long as it is shorter than `until`.
fn records(mut b: Vec<u8>, until: usize, record: impl Fn(usize) -> String) -> Vec<u8> {
    let mut i = 0;
    while b.len() < until {
        b.extend_from_slice(record(i).as_bytes());
        i += 1;
    }
    b
}

/// A body of about `n` bytes (within a few bytes) and its Content-Type; `seed` picks the
/// random bytes of the random kinds (see [`fresh`]).
fn body(kind: &str, n: usize, seed: u64) -> (&'static str, Vec<u8>) {
    const FORM: &str = "application/x-www-form-urlencoded";
    match kind {
        "form-many-args" => {
            let mut b = records(Vec::with_capacity(n + 32), n, |i| format!("field{i}=value+{i}&"));
            b.truncate(n);
            (FORM, b)
        }
        "form-random-args" => {
            // Arguments of 100 random bytes: each short enough for the prescan's joint
            // automata, and each new to them; more of them, even at 64 KiB, than the memos
            // keep.
            let mut b = records(Vec::with_capacity(n + 256), n, |i| {
                let value = random(100, (seed << 32) + i as u64 + 1);
                format!("a{i}={}&", String::from_utf8_lossy(&value))
            });
            b.truncate(n);
            (FORM, b)
        }
        "form-colliding-args" => {
            // An SQL injection, so that rules look at every argument, then arguments of 72
            // bytes that share their FxHash (an unseeded hash anyone can invert: the first
            // word picks the value, the second undoes it) and that `t:lowercase` changes, so
            // each goes into the transformation cache. Keyed with FxHash, the cache compared
            // every key before each insertion.
            const K: u64 = 0x517c_c1b7_2722_0a95;
            let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
            let length = step(0, 72);
            let mut b = b"q=select+*+from+users+where+1%3D1+union+select+password&".to_vec();
            b = records(b, n, |i| {
                let first = ((seed << 32) | (i as u64 + 1)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let second = step(length, 0).rotate_left(5) ^ step(length, first).rotate_left(5);
                let value = [&first.to_le_bytes()[..], &second.to_le_bytes(), &b"ABCDEFGH".repeat(7)].concat();
                format!("a{i}={}&", String::from_utf8_lossy(&form_encode(&value)))
            });
            b.truncate(n);
            (FORM, b)
        }
        "json-records" => {
            let mut b = records(b"[".to_vec(), n.saturating_sub(120), |i| {
                format!(
                    r#"{{"id":{i},"name":"user {i}","email":"user{i}@example.com","tags":["a","b"],"active":true}},"#
                )
            });
            b.extend_from_slice(br#"{"id":-1,"name":"last"}]"#);
            ("application/json", b)
        }
        "json-one-string" => {
            let mut b = br#"{"comment":""#.to_vec();
            b.extend(prose(n.saturating_sub(14)));
            b.extend_from_slice(br#""}"#);
            ("application/json", b)
        }
        "xml-records" => {
            let mut b = records(b"<?xml version=\"1.0\"?><orders>".to_vec(), n.saturating_sub(120), |i| {
                format!(
                    "<order id=\"{i}\" status=\"open\"><customer>user {i}</customer><note>call first</note></order>"
                )
            });
            b.extend_from_slice(b"</orders>");
            ("text/xml", b)
        }
        "multipart-fields" => {
            let mut b = records(Vec::with_capacity(n + 128), n.saturating_sub(100), |i| {
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"field{i}\"\r\n\r\nvalue {i}\r\n")
            });
            b.extend_from_slice(b"--XyZ--\r\n");
            ("multipart/form-data; boundary=XyZ", b)
        }
        "multipart-file" => {
            let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"report.txt\"\r\nContent-Type: text/plain\r\n\r\n".to_vec();
            b.extend(prose(n.saturating_sub(b.len() + 16)));
            b.extend_from_slice(b"\r\n--XyZ--\r\n");
            ("multipart/form-data; boundary=XyZ", b)
        }
        shaped => {
            // `form-<shape>`: one argument, `q`, whose decoded value has the shape.
            let name = shaped.strip_prefix("form-").expect("a form- shape");
            let mut b = b"q=".to_vec();
            b.extend(form_encode(&shape(name, n, seed)));
            (FORM, b)
        }
    }
}

/// The body kinds: realistic documents first, then one argument per ReDoS shape.
fn body_kinds() -> Vec<String> {
    let mut k: Vec<String> = [
        "form-many-args",
        "form-random-args",
        "form-colliding-args",
        "json-records",
        "json-one-string",
        "xml-records",
        "multipart-fields",
        "multipart-file",
    ]
    .map(String::from)
    .to_vec();
    k.extend(SHAPES.iter().map(|(s, _)| format!("form-{s}")));
    k
}

const HEADERS: [&str; 3] = ["User-Agent", "Cookie", "Referer"];
const HEADER_SHAPES: [&str; 8] =
    ["run-a-bang", "quote-dash", "nested-parens", "xss-tags", "template", "shell", "sqli-tautology", "prose"];

/// A GET whose header `name` is `n` bytes of `shape` (a Cookie is `session=` and the shape, a
/// Referer a URL whose query is the shape).
fn header_request(name: &str, shape_name: &str, n: usize) -> Request {
    let value = match name {
        "Cookie" => [b"session=".to_vec(), shape(shape_name, n - 8, 0)].concat(),
        "Referer" => [b"https://example.com/?q=".to_vec(), shape(shape_name, n - 23, 0)].concat(),
        _ => shape(shape_name, n, 0),
    };
    let mut r = base("GET", "/api/v1/users?id=42");
    if name != "User-Agent" {
        r = r.header("User-Agent", UA);
    }
    r.header(name, value)
}

/// Evaluates once and checks the body was read whole and without a processor error.
fn check_read_whole(rs: &RuleSet, label: &str, req: &Request) {
    let o = rs.evaluate(req, None);
    if req.body.is_empty() {
        return;
    }
    let len = o.matched.iter().find(|m| m.id == 1999001).map(|m| m.data.clone());
    assert_eq!(len, Some(req.body.len().to_string()), "{label}: REQUEST_BODY_LENGTH");
    let err = o.matched.iter().find(|m| m.id == 1999002).map(|m| m.data.clone());
    assert_eq!(err, None, "{label}: REQBODY_ERROR");
}

fn criterion_benches(c: &mut Criterion, rs: &RuleSet) {
    let mut g = c.benchmark_group("waf_body");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for kind in
        ["form-many-args", "json-records", "multipart-fields", "form-run-a-bang", "form-quote-dash", "form-prose"]
    {
        for n in BODY_SIZES {
            let (ct, b) = body(kind, n, 0);
            let req = post(ct, b);
            check_read_whole(rs, kind, &req);
            g.throughput(Throughput::Bytes(req.body.len() as u64));
            g.bench_with_input(BenchmarkId::new(kind, n / KIB), &req, |bench, req| {
                bench.iter(|| black_box(rs.evaluate(req, None)))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("waf_header");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for name in HEADERS {
        for n in HEADER_SIZES {
            let req = header_request(name, "quote-dash", n);
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_with_input(BenchmarkId::new(format!("{name}/quote-dash"), n / KIB), &req, |bench, req| {
                bench.iter(|| black_box(rs.evaluate(req, None)))
            });
        }
    }
    g.finish();
}

/// The best of a few runs (at least 3, more while under `budget`): noise only ever adds time.
fn best_time(rs: &RuleSet, req: &Request, budget: Duration) -> Duration {
    best_of(budget, |_| time(rs, req))
}

/// [`best_time`] of a new request each run, made by `make` from the run's number (not timed).
fn best_time_fresh(rs: &RuleSet, make: impl Fn(u64) -> Request, budget: Duration) -> Duration {
    best_of(budget, |run| time(rs, &make(run)))
}

fn time(rs: &RuleSet, req: &Request) -> Duration {
    let t = Instant::now();
    black_box(rs.evaluate(req, None));
    t.elapsed()
}

fn best_of(budget: Duration, mut run: impl FnMut(u64) -> Duration) -> Duration {
    let mut best = Duration::MAX;
    let started = Instant::now();
    let mut runs = 0;
    while runs < 3 || (started.elapsed() < budget && runs < 50) {
        best = best.min(run(runs));
        runs += 1;
    }
    best
}

/// Whether a body kind is random bytes: the automata of the prescan keep the transitions a
/// run computes, so the same random body, run again and again, would soon take transitions
/// ready where a new one computes them. Such kinds are timed on new bytes each run.
fn fresh(kind: &str) -> bool {
    kind.contains("random")
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Prints, per shape, time and ns/byte at each size, then time(largest) / time(smallest)
/// against the size ratio: linear growth gives about the size ratio.
fn table(rs: &RuleSet, filter: Option<&str>) {
    let wanted = |k: &str| filter.is_none_or(|f| k.contains(f));
    let empty = base("GET", "/api/v1/users?id=42").header("User-Agent", UA);
    let floor = best_time(rs, &empty, Duration::from_millis(300));
    println!("CRS 4.28.0, paranoia 1, DetectionOnly; best of >= 3 runs; a bare GET takes {} ms", fmt_ms(floor));
    println!();
    println!("bodies (POST, one request each): time in ms and ns/byte at each size");
    print!("{:<22}", "shape");
    for n in BODY_SIZES {
        print!(" {:>9} {:>6}", format!("{}K ms", n / KIB), "ns/B");
    }
    println!(" {:>9}", "t1M/t64K");
    let mut worst: (f64, String) = (0.0, String::new());
    let mut totals = [Duration::ZERO; BODY_SIZES.len()];
    for kind in body_kinds().iter().filter(|k| wanted(k)) {
        print!("{kind:<22}");
        let mut times = Vec::new();
        for n in BODY_SIZES {
            let make = |seed| {
                let (ct, b) = body(kind, n, seed);
                post(ct, b)
            };
            let req = make(0);
            check_read_whole(rs, kind, &req);
            let budget = Duration::from_millis(500);
            let t = match fresh(kind) {
                true => best_time_fresh(rs, |run| make(run + 1), budget),
                false => best_time(rs, &req, budget),
            };
            print!(" {:>9} {:>6.1}", fmt_ms(t), t.as_nanos() as f64 / req.body.len() as f64);
            totals[times.len()] += t;
            times.push(t);
        }
        let ratio = times[times.len() - 1].as_secs_f64() / times[0].as_secs_f64();
        if ratio > worst.0 {
            worst = (ratio, kind.clone());
        }
        println!(" {ratio:>8.1}x");
    }
    let size_ratio = BODY_SIZES[BODY_SIZES.len() - 1] / BODY_SIZES[0];
    let all = totals[totals.len() - 1].as_secs_f64() / totals[0].as_secs_f64();
    println!("size ratio 1 MiB / 64 KiB = {size_ratio}; all shapes together: 1 MiB takes {all:.1}x 64 KiB");
    println!("the largest time ratio: {:.1}x ({})", worst.0, worst.1);
    println!();
    println!("single headers (GET): time in ms at each size, and the ratio above the bare GET's time");
    print!("{:<30}", "header/shape");
    for n in HEADER_SIZES {
        print!(" {:>8}", format!("{}K ms", n / KIB));
    }
    println!(" {:>8} {:>10}", "t8K/t1K", "net ratio");
    let mut worst: (f64, String) = (0.0, String::new());
    for name in HEADERS {
        for s in HEADER_SHAPES {
            let label = format!("{name}/{s}");
            if !wanted(&label) {
                continue;
            }
            print!("{label:<30}");
            let mut times = Vec::new();
            for n in HEADER_SIZES {
                let t = best_time(rs, &header_request(name, s, n), Duration::from_millis(200));
                print!(" {:>8}", fmt_ms(t));
                times.push(t);
            }
            let (first, last) = (times[0], times[times.len() - 1]);
            let net = last.saturating_sub(floor).as_secs_f64() / first.saturating_sub(floor).as_secs_f64().max(1e-9);
            if net > worst.0 {
                worst = (net, label.clone());
            }
            println!(" {:>7.1}x {:>9.1}x", last.as_secs_f64() / first.as_secs_f64(), net);
        }
    }
    let size_ratio = HEADER_SIZES[HEADER_SIZES.len() - 1] / HEADER_SIZES[0];
    println!("size ratio 8 KiB / 1 KiB = {size_ratio}; the largest net ratio: {:.1}x ({})", worst.0, worst.1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rs = load_crs();
    if let Some(i) = args.iter().position(|a| a == "--table") {
        let filter = args.get(i + 1).filter(|a| !a.starts_with('-')).map(String::as_str);
        table(&rs, filter);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &rs);
    c.final_summary();
}
