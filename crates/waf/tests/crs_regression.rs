//! The OWASP CRS 4.28.0 regression suite (go-ftw YAML), run in-process against the engine.
//!
//! Set-up, as the CRS project runs the suite for nginx + libmodsecurity3 (its
//! `tests/docker-compose.yml`, `x-common-env`):
//! - engine settings from `shared/reference/modsecurity.conf` (body access, limits, the
//!   XML/JSON processor rules 200000/200001 and the REQBODY_ERROR rule 200002);
//! - then `crs-setup.conf.example`, then the test harness settings below, then `rules/*.conf`;
//! - harness settings (the container's environment): `SecRuleEngine DetectionOnly`, response
//!   body access on for `text/plain text/html text/xml application/json`,
//!   `tx.blocking_paranoia_level=4` (so detection paranoia is 4 too: every rule runs),
//!   `tx.crs_validate_utf8_encoding=1`, `tx.arg_length=400`, `tx.total_arg_length=6400`,
//!   `tx.max_file_size=64100`, `tx.combined_file_sizes=65535`.
//!
//! Each stage's input becomes the request go-ftw would send (its header completion, form
//! encoding of `data`, LF to CRLF in multipart bodies, `encoded_request` as raw bytes), passed
//! through what nginx does before ModSecurity sees it (headers with invalid names dropped,
//! absolute-form targets reduced to their path, chunked bodies decoded). The response comes
//! from an emulation of the suite's backend (albedo: `/reflect` answers with the body, status
//! and headers given in the request's JSON). The expected output is checked as go-ftw checks
//! it against the error log: `expect_ids`, `no_expect_ids`, `match_regex`, `no_match_regex`
//! and `status`. `tests/nginx-overrides.yaml` replaces the output of the tests it names.
//!
//! Debian's CRS 3.3.4 runs against its own suite the same way (its README's set-up). That suite
//! was written for Apache and ModSecurity 2 and has no nginx overrides: its tests that are also
//! 4.28.0 tests take 4.28.0's (`shared_test_overrides`).
//!
//! Every test that fails is listed, with the reason, in `crs-4.28.0-known-failures.txt` (and
//! `crs-3.3.4-known-failures.txt`) beside this file. The test fails when a test not in that list fails, or when the pass rate falls
//! below the one recorded there: the list can only shrink. `BARBICAN_UPDATE_KNOWN_FAILURES=1`
//! rewrites the file (reasons are kept for tests already listed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use barbican_waf::engine::{Outcome, Request, Response, RuleSet, Transaction};
use barbican_waf::seclang::{self, Loader};
use serde_yaml::Value;

#[path = "common/mod.rs"]
mod common;

use common::CRS_TAG;
const KNOWN_FAILURES: &str = "crs-4.28.0-known-failures.txt";

/// The harness settings: what the CRS test containers set through their environment (the
/// file is shared with the differential run's nginx + libmodsecurity3, `differential/run.sh`).
const HARNESS: &str = include_str!("differential/harness-4.28.0.conf");

fn shared_dir() -> PathBuf {
    common::crs_dir("tests/tests")
}

fn reference_conf(crs: &Path) -> PathBuf {
    let conf = crs.join("../reference/modsecurity.conf");
    assert!(
        conf.is_file(),
        "the reference engine settings are not at {} (they sit beside the CRS folder, in \
         shared/reference/modsecurity.conf)",
        conf.display()
    );
    conf
}

fn rule_set() -> &'static RuleSet {
    static RS: OnceLock<RuleSet> = OnceLock::new();
    RS.get_or_init(|| {
        let crs = shared_dir();
        let base = crs.join(CRS_TAG);
        compile(&reference_conf(&crs), &base.join("crs-setup.conf.example"), HARNESS, &base.join("rules/*.conf"))
    })
}

/// Loads the engine settings, a CRS setup file, the harness settings and the rules, in that
/// order, and compiles them.
fn compile(reference: &Path, setup: &Path, harness: &str, rules: &Path) -> RuleSet {
    let rs = RuleSet::compile(&load(reference, setup, harness, rules));
    for f in rs.fallbacks() {
        eprintln!("rule {} runs on the backtracking engine: {}", f.rule_id, f.pattern);
    }
    for u in rs.unsupported() {
        eprintln!("rule {} cannot run: {}", u.rule_id, u.reason);
    }
    rs
}

/// Reads what [`compile`] compiles.
fn load(reference: &Path, setup: &Path, harness: &str, rules: &Path) -> seclang::RuleSet {
    let mut loader = Loader::new();
    loader.load_file(reference);
    loader.load_file(setup);
    loader.load_str(&setup.with_file_name("harness.conf"), harness);
    loader.load_file(rules);
    loader.finish().unwrap_or_else(|e| panic!("{e:?}"))
}

/// One stage's expectations.
#[derive(Clone, Debug, Default)]
struct Expect {
    ids: Vec<u64>,
    no_ids: Vec<u64>,
    match_regex: Option<String>,
    no_match_regex: Option<String>,
    status: Vec<u16>,
    expect_error: bool,
}

fn ids(v: Option<&Value>) -> Vec<u64> {
    match v {
        Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_u64).collect(),
        Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
        _ => Vec::new(),
    }
}

fn expect_of(out: &Value) -> Expect {
    let log = out.get("log");
    let get = |k: &str| log.and_then(|l| l.get(k));
    let status = match out.get("status") {
        Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_u64).map(|n| n as u16).collect(),
        Some(v) => v.as_u64().map(|n| n as u16).into_iter().collect(),
        None => Vec::new(),
    };
    // The older format (CRS 3) says `log_contains` / `no_log_contains` beside `log`.
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    Expect {
        ids: ids(get("expect_ids")),
        no_ids: ids(get("no_expect_ids")),
        match_regex: text(get("match_regex")).or_else(|| text(out.get("log_contains"))),
        no_match_regex: text(get("no_match_regex")).or_else(|| text(out.get("no_log_contains"))),
        status,
        expect_error: out.get("expect_error").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// A test case: its name (`920100-4`), rule and test id, its stages' inputs and expectations.
struct Case {
    name: String,
    rule: u64,
    id: u64,
    stages: Vec<(Value, Expect)>,
}

/// The outputs an overrides file (`nginx-overrides.yaml`) puts in place of its tests', by rule
/// and test id (`None`: every test of the rule).
type Overrides = HashMap<(u64, Option<u64>), Value>;

fn read_overrides(path: &Path) -> Overrides {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let overrides: Value = serde_yaml::from_str(&text).expect("overrides parse");
    let mut over = Overrides::new();
    if let Some(Value::Sequence(list)) = overrides.get("test_overrides") {
        for o in list {
            let rule = o.get("rule_id").and_then(Value::as_u64).unwrap_or(0);
            let output = o.get("output").cloned().unwrap_or(Value::Null);
            match o.get("test_ids") {
                Some(Value::Sequence(t)) => {
                    for id in t.iter().filter_map(Value::as_u64) {
                        over.insert((rule, Some(id)), output.clone());
                    }
                }
                _ => {
                    over.insert((rule, None), output.clone());
                }
            }
        }
    }
    over
}

/// The override of test `id` of `rule`.
fn override_of(over: &Overrides, rule: u64, id: u64) -> Option<&Value> {
    over.get(&(rule, Some(id))).or_else(|| over.get(&(rule, None)))
}

/// The test cases under `tests`, with `over` applied.
fn load_cases(tests: &Path, over: &Overrides) -> Vec<Case> {
    let mut files = Vec::new();
    collect_yaml(tests, &mut files);
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // go-ftw takes the rule id from the file name when the file does not say it.
        let from_name = || {
            let stem = f.file_stem()?.to_string_lossy().into_owned();
            stem.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        };
        let Some(rule) = doc.get("rule_id").and_then(Value::as_u64).or_else(from_name) else { continue };
        let Some(Value::Sequence(tests)) = doc.get("tests") else { continue };
        for (i, t) in tests.iter().enumerate() {
            let id = t.get("test_id").and_then(Value::as_u64).unwrap_or(i as u64 + 1);
            let overridden = override_of(over, rule, id);
            let mut stages = Vec::new();
            if let Some(Value::Sequence(ss)) = t.get("stages") {
                for s in ss {
                    // Older files nest the stage under `stage:`.
                    let s = s.get("stage").unwrap_or(s);
                    let input = s.get("input").cloned().unwrap_or(Value::Null);
                    let out = overridden.cloned().unwrap_or_else(|| s.get("output").cloned().unwrap_or(Value::Null));
                    stages.push((input, expect_of(&out)));
                }
            }
            let name =
                t.get("test_title").and_then(Value::as_str).map_or_else(|| format!("{rule}-{id}"), str::to_string);
            cases.push(Case { name, rule, id, stages });
        }
    }
    cases
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("entry").path();
        if p.is_dir() {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b);
        } else if b == b' ' {
            o.push(b'+');
        } else {
            o.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    o
}

/// Go's `url.QueryUnescape`: `None` on a bad escape.
fn query_unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut o = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let h = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                o.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                o.push(b' ');
                i += 1;
            }
            b => {
                o.push(b);
                i += 1;
            }
        }
    }
    Some(o)
}

/// The raw request go-ftw sends for a stage input.
fn raw_request(input: &Value) -> Vec<u8> {
    if let Some(enc) = text(input.get("encoded_request")) {
        let clean: String = enc.chars().filter(|c| !c.is_whitespace()).collect();
        return base64(&clean);
    }
    let method = text(input.get("method")).unwrap_or_else(|| "GET".into());
    let uri = text(input.get("uri")).unwrap_or_else(|| "/".into());
    let version = text(input.get("version")).unwrap_or_else(|| "HTTP/1.1".into());
    let mut headers: Vec<(String, String)> = Vec::new();
    match input.get("headers") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (text(Some(k)), text(Some(v))) {
                    headers.push((k, v));
                }
            }
        }
        Some(Value::Sequence(list)) => {
            for h in list {
                if let (Some(k), Some(v)) = (text(h.get("name")), text(h.get("value"))) {
                    headers.push((k, v));
                }
            }
        }
        _ => {}
    }
    let auto = input.get("autocomplete_headers").and_then(Value::as_bool).unwrap_or(true)
        && !input.get("stop_magic").and_then(Value::as_bool).unwrap_or(false);
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    // CRS 3's files may give `data` as a list of lines, sent joined by CRLF (the python ftw of
    // that time), without go-ftw's LF to CRLF rewriting.
    let listed = matches!(input.get("data"), Some(Value::Sequence(_)));
    let data_text = match input.get("data") {
        Some(Value::Sequence(lines)) => {
            Some(lines.iter().filter_map(|l| text(Some(l))).collect::<Vec<_>>().join("\r\n"))
        }
        d => text(d),
    };
    let mut data = data_text.map(|d| render_template(&d).into_bytes()).unwrap_or_default();
    if !data.is_empty() && auto {
        if !has(&headers, "Content-Type") {
            headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
        }
        let form = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("Content-Type") && v == "application/x-www-form-urlencoded");
        if form && query_unescape(&data).as_deref() == Some(&data[..]) {
            let mut esc = Vec::new();
            for (i, tok) in data.split(|&b| b == b'&').enumerate() {
                if i > 0 {
                    esc.push(b'&');
                }
                match tok.iter().position(|&b| b == b'=') {
                    Some(p) => {
                        esc.extend(query_escape(&tok[..p]));
                        esc.push(b'=');
                        esc.extend(query_escape(&tok[p + 1..]));
                    }
                    None => esc.extend(query_escape(tok)),
                }
            }
            data = esc;
        }
    }
    if !listed
        && headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Content-Type") && v.contains("multipart/form-data;"))
    {
        let mut o = Vec::with_capacity(data.len());
        for &b in &data {
            if b == b'\n' {
                o.push(b'\r');
            }
            o.push(b);
        }
        data = o;
    }
    if auto {
        if !has(&headers, "Connection") {
            headers.push(("Connection".into(), "close".into()));
        }
        if !has(&headers, "Content-Length") && (!data.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH"))
        {
            headers.push(("Content-Length".into(), data.len().to_string()));
        }
    }
    let mut raw = format!("{method} {uri} {version}\r\n").into_bytes();
    for (k, v) in &headers {
        raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&data);
    raw
}

/// go-ftw renders `data` as a Go template with sprig functions; the suite uses one form,
/// `{{ "x" | repeat N }}`.
fn render_template(d: &str) -> String {
    let re = regex::Regex::new(r#"\{\{\s*"([^"]*)"\s*\|\s*repeat\s+(\d+)\s*\}\}"#).expect("template regex");
    re.replace_all(d, |c: &regex::Captures<'_>| c[1].repeat(c[2].parse().unwrap_or(0))).into_owned()
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let Some(x) = val(c) else { continue };
        acc = (acc << 6) | u32::from(x);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// What nginx makes of the raw request before libmodsecurity3 sees it; `Err(status)` when
/// nginx answers by itself (`Err(0)`: it never answers, the client times out).
fn nginx(raw: &[u8]) -> Result<(Request, bool), u16> {
    let head_end = find(raw, b"\r\n\r\n").map(|p| (p, p + 4)).or_else(|| find(raw, b"\n\n").map(|p| (p, p + 2)));
    let (head, body) = match head_end {
        Some((h, b)) => (&raw[..h], &raw[b..]),
        None => (raw, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().ok_or(400u16)?;
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if !(2..=3).contains(&parts.len())
        || parts[0].is_empty()
        || !parts[0].iter().all(|b| b.is_ascii_uppercase() || *b == b'_' || *b == b'-')
    {
        return Err(400);
    }
    // nginx does not proxy CONNECT.
    if parts[0] == b"CONNECT" {
        return Err(400);
    }
    let (method, mut uri) = (parts[0], parts[1].to_vec());
    // No version: an HTTP/0.9 simple request, answered without a status line, which go-ftw
    // reports as an error.
    let Some(&version) = parts.get(2).filter(|v| !v.is_empty()) else {
        return Ok((Request::new(method.to_vec(), uri).protocol("HTTP/0.9"), true));
    };
    let Some(v) = version.strip_prefix(b"HTTP/") else { return Err(400) };
    let ver = match v {
        b"1.1" => "HTTP/1.1",
        b"1.0" => "HTTP/1.0",
        [b'1', b'.', d] if d.is_ascii_digit() => "HTTP/1.1",
        [d, b'.', e] if d.is_ascii_digit() && e.is_ascii_digit() && *d >= b'2' => return Err(505),
        _ => return Err(400),
    };
    // Absolute-form targets: nginx keeps the path (or `/`).
    if let Some(p) = find(&uri, b"://") {
        if uri[..p].iter().all(|b| b.is_ascii_alphabetic()) {
            let after = &uri[p + 3..];
            uri = match after.iter().position(|&b| b == b'/' || b == b'?') {
                Some(s) if after[s] == b'/' => after[s..].to_vec(),
                Some(s) => [b"/", &after[s..]].concat(),
                None => b"/".to_vec(),
            };
        }
    }
    if uri.first() != Some(&b'/') && method != b"CONNECT" && uri != b"*" {
        return Err(400);
    }
    let mut req = Request::new(method.to_vec(), uri).protocol(ver);
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let Some(c) = l.iter().position(|&b| b == b':') else { return Err(400) };
        let name = &l[..c];
        let value = trim(&l[c + 1..]);
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) || value.contains(&b'\r') {
            return Err(400);
        }
        if name.eq_ignore_ascii_case(b"host") && value.is_empty() {
            return Err(400);
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") && value.eq_ignore_ascii_case(b"chunked") {
            chunked = true;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or(400u16)?;
            if length.is_some() {
                return Err(400);
            }
            length = Some(n);
        }
        // ignore_invalid_headers: names outside [A-Za-z0-9-] are dropped.
        if !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
            continue;
        }
        req.headers.push((name.into(), value.into()));
    }
    if chunked && length.is_some() {
        return Err(400);
    }
    if ver == "HTTP/1.1" && req.header_value("host").is_none() {
        return Err(400);
    }
    // A body shorter than its Content-Length never completes: nginx waits, the client times
    // out, and libmodsecurity3 (run once the body is read) sees nothing. Status 0 says so.
    if length.is_some_and(|n| n > body.len()) {
        return Err(0);
    }
    req.body =
        if chunked { dechunk(body).ok_or(400u16)? } else { body[..length.unwrap_or(0).min(body.len())].to_vec() };
    Ok((req, false))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let p = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..p]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[p + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |p| p + 1);
    &v[s..e]
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The suite's backend: `/reflect` answers with the JSON body's `status`, `headers` and
/// `body` (or base64 `encodedBody`); everything else gets `200` and a short text.
fn backend(req: &Request) -> Response {
    let path = req.uri.split(|&b| b == b'?').next().unwrap_or(b"");
    if path == b"/reflect" {
        if let Ok(v) = serde_yaml::from_slice::<Value>(&req.body) {
            let mut r = Response::new(v.get("status").and_then(Value::as_u64).unwrap_or(200) as u16);
            if let Some(Value::Mapping(h)) = v.get("headers") {
                for (k, val) in h {
                    if let (Some(k), Some(val)) = (text(Some(k)), text(Some(val))) {
                        r.headers.push((k.as_bytes().into(), val.as_bytes().into()));
                    }
                }
            }
            let body = match (text(v.get("body")), text(v.get("encodedBody"))) {
                (Some(b), _) => b.into_bytes(),
                (None, Some(e)) => base64(&e),
                _ => Vec::new(),
            };
            if !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(b"content-type")) {
                let sniffed =
                    if body.starts_with(b"<") { "text/html; charset=utf-8" } else { "text/plain; charset=utf-8" };
                r.headers.push((b"Content-Type"[..].into(), sniffed.as_bytes().into()));
            }
            return r.body(body);
        }
    }
    Response::new(200).header("Content-Type", "text/plain; charset=utf-8").body("ok")
}

/// Runs one case; `Err` says why it failed.
fn run_case(rs: &RuleSet, case: &Case) -> Result<(), String> {
    for (input, exp) in &case.stages {
        let raw = raw_request(input);
        let (status, ids, log, client_error) = match nginx(&raw) {
            Err(0) => (0, Vec::new(), String::new(), true),
            Err(status) => (status, Vec::new(), String::new(), false),
            Ok((req, client_error)) => {
                let (status, o) = exchange(rs, req);
                let ids: Vec<u64> = o.matched.iter().map(|m| m.id).collect();
                let log: Vec<String> = o.matched.iter().map(|m| m.log_line()).collect();
                (status, ids, log.join("\n"), client_error)
            }
        };
        // As go-ftw: an expected client-side error passes the stage without further checks.
        if exp.expect_error && client_error {
            continue;
        }
        if exp.expect_error != client_error {
            return Err(format!("client error {client_error}, expected {}", exp.expect_error));
        }
        if !exp.status.is_empty() && !exp.status.contains(&status) {
            return Err(format!("status {status}, expected {:?}", exp.status));
        }
        let missing: Vec<u64> = exp.ids.iter().copied().filter(|i| !ids.contains(i)).collect();
        if !missing.is_empty() {
            return Err(format!("expected {missing:?} not logged"));
        }
        let unexpected: Vec<u64> = exp.no_ids.iter().copied().filter(|i| ids.contains(i)).collect();
        if !unexpected.is_empty() {
            return Err(format!("unexpected {unexpected:?} logged"));
        }
        if let Some(r) = &exp.match_regex {
            if !regex::Regex::new(r).map(|r| r.is_match(&log)).unwrap_or(false) {
                return Err(format!("log does not match /{r}/"));
            }
        }
        if let Some(r) = &exp.no_match_regex {
            if regex::Regex::new(r).map(|r| r.is_match(&log)).unwrap_or(true) {
                return Err(format!("log matches /{r}/"));
            }
        }
    }
    Ok(())
}

/// Runs a request and the backend's answer to it through one transaction: the status the
/// client would get and the outcome.
fn exchange(rs: &RuleSet, req: Request) -> (u16, Outcome) {
    let resp = backend(&req);
    let mut tx = Transaction::new(rs);
    tx.process_request(req);
    let status = tx.interruption().map_or(resp.status, |(s, _)| s);
    tx.process_response(resp);
    (status, tx.finish())
}

/// The engine's shortcuts (folded steps, prescan gates, remembered verdicts, chains reordered)
/// change no answer: every stage of both suites gets the same status, the same matches in the
/// same order, the same scores and the same messages with them as without
/// ([`RuleSet::without_shortcuts`]). The rule set with shortcuts is shared across the stages
/// (CRS 4.28.0's is the suite test's own), as in the gateway, so later stages also see what
/// earlier ones left in its memos.
#[test]
fn shortcuts_change_no_answer_in_the_suites() {
    let crs = shared_dir();
    let base = crs.join(CRS_TAG);
    let tests = base.join("tests");
    let (crs3, tests3) = debian_crs_3();
    let loaded3 =
        load(&reference_conf(&crs3), Path::new(DEBIAN_SETUP), HARNESS_3, &Path::new(DEBIAN_RULES).join("*.conf"));
    let with3 = RuleSet::compile(&loaded3);
    let suites = [
        (
            rule_set(),
            load(&reference_conf(&crs), &base.join("crs-setup.conf.example"), HARNESS, &base.join("rules/*.conf")),
            load_cases(&tests.join("tests"), &read_overrides(&tests.join("nginx-overrides.yaml"))),
        ),
        (&with3, loaded3, load_cases(&tests3, &Overrides::new())),
    ];
    for (with, loaded, cases) in suites {
        let without = RuleSet::compile(&loaded).without_shortcuts();
        let mut stages = 0;
        for case in &cases {
            for (input, _) in &case.stages {
                let Ok((req, _)) = nginx(&raw_request(input)) else { continue };
                let answer = |rs| {
                    let (status, o) = exchange(rs, req.clone());
                    let logged: Vec<String> = o.matched.iter().map(|m| m.log_line()).collect();
                    (status, o.verdict, o.inbound_anomaly_score, o.outbound_anomaly_score, logged)
                };
                assert_eq!(answer(with), answer(&without), "{}: the shortcuts changed the answer", case.name);
                stages += 1;
            }
        }
        assert!(stages > 2000, "only {stages} stages compared");
    }
}

/// The known failures: name to reason, and the recorded pass rate.
fn read_known(path: &Path) -> (BTreeMap<String, String>, f64) {
    let mut known = BTreeMap::new();
    let mut rate = 0.0;
    let Ok(text) = std::fs::read_to_string(path) else { return (known, rate) };
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# pass rate: ") {
            // `99.66 % (4949/4966)`: the exact fraction, not the rounded figure.
            let frac = r.split_once('(').and_then(|(_, f)| f.trim_end_matches(')').split_once('/'));
            rate = match frac.and_then(|(p, t)| Some((p.parse::<f64>().ok()?, t.parse::<f64>().ok()?))) {
                Some((p, t)) if t > 0.0 => p * 100.0 / t,
                _ => r.split('%').next().and_then(|x| x.trim().parse().ok()).unwrap_or(0.0),
            };
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let (name, reason) = line.split_once(' ').unwrap_or((line, ""));
            known.insert(name.to_string(), reason.trim().to_string());
        }
    }
    (known, rate)
}

#[test]
fn crs_4_28_0_regression_suite() {
    let crs = shared_dir();
    let tests = crs.join(CRS_TAG).join("tests");
    let cases = load_cases(&tests.join("tests"), &read_overrides(&tests.join("nginx-overrides.yaml")));
    run_suite(&format!("CRS {CRS_TAG}"), rule_set(), cases, 4000, KNOWN_FAILURES);
}

/// The harness settings of CRS 3.3.4's suite (its `tests/regression/README.md`; shared with
/// `differential/run.sh`).
const HARNESS_3: &str = include_str!("differential/harness-3.3.4.conf");

/// Where Debian's package `modsecurity-crs` installs CRS 3.3.4.
const DEBIAN_RULES: &str = "/usr/share/modsecurity-crs/rules";
const DEBIAN_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

/// The shared directory and CRS 3.3.4's regression tests, after checking that Debian's rules
/// are installed.
fn debian_crs_3() -> (PathBuf, PathBuf) {
    assert!(
        Path::new(DEBIAN_RULES).is_dir() && Path::new(DEBIAN_SETUP).is_file(),
        "Debian's CRS 3.3.4 is not installed ({DEBIAN_RULES}, {DEBIAN_SETUP}): run `apt-get install modsecurity-crs`"
    );
    let crs = shared_dir();
    let tests = crs.join("v3.3.4/tests/regression/tests");
    assert!(tests.is_dir(), "the CRS 3.3.4 regression suite is not at {}", tests.display());
    (crs, tests)
}

/// Debian's CRS 3.3.4 (package `modsecurity-crs`) against its own regression suite. That suite
/// was written for Apache and ModSecurity 2 and ships no nginx overrides; CRS 4.28.0's apply
/// to the tests both suites share (see [`shared_test_overrides`]).
#[test]
fn crs_3_3_4_regression_suite() {
    let (crs, tests) = debian_crs_3();
    let rs =
        compile(&reference_conf(&crs), Path::new(DEBIAN_SETUP), HARNESS_3, &Path::new(DEBIAN_RULES).join("*.conf"));
    let mut cases = load_cases(&tests, &Overrides::new());
    let applied = shared_test_overrides(&crs, &mut cases);
    println!("CRS v3.3.4: {applied} tests take CRS {CRS_TAG}'s nginx override of the same test");
    run_suite("CRS v3.3.4", &rs, cases, 2000, "crs-3.3.4-known-failures.txt");
}

/// Applies CRS 4.28.0's nginx overrides to the CRS 3.3.4 tests that are the same test: a 3.3.4
/// test takes the override of the 4.28.0 test of the same rule that sends the same requests, up
/// to the conventions of each suite's harness ([`test_request`]); the suites number some tests
/// apart. The overrides record how nginx + libmodsecurity3 differs from Apache + ModSecurity 2
/// on a request (nginx refusing it before the WAF or taking what Apache refuses, dropping header
/// names with `_`, libmodsecurity3 filling `REQUEST_BODY` for XML), which does not depend on the
/// CRS version. Those about settings the 4.28.0 harness leaves out ([`SETTING_OVERRIDES`]) are
/// not taken: 3.3.4's harness has its own. Returns how many tests took one.
fn shared_test_overrides(crs: &Path, cases: &mut [Case]) -> usize {
    let tests = crs.join(CRS_TAG).join("tests");
    let over = read_overrides(&tests.join("nginx-overrides.yaml"));
    let requests = |c: &Case| c.stages.iter().map(|(input, _)| test_request(&raw_request(input))).collect::<Vec<_>>();
    let newer: HashMap<(u64, Vec<Vec<u8>>), &Value> = load_cases(&tests.join("tests"), &Overrides::new())
        .iter()
        .filter(|c| !SETTING_OVERRIDES.contains(&(c.rule, c.id)))
        .filter_map(|c| Some(((c.rule, requests(c)), override_of(&over, c.rule, c.id)?)))
        .collect();
    let mut applied = 0;
    for c in cases {
        if let Some(out) = newer.get(&(c.rule, requests(c))) {
            c.stages.iter_mut().for_each(|(_, expect)| *expect = expect_of(out));
            applied += 1;
        }
    }
    applied
}

/// CRS 4.28.0's nginx overrides of tests that need a setting its harness does not make
/// (`tx.arg_name_length`, `tx.max_num_args`), rather than nginx.
const SETTING_OVERRIDES: [(u64, u64); 2] = [(920360, 1), (920380, 1)];

/// What a suite's request tests, without what the two suites' harnesses set their own way:
/// HTTP/1.0 or 1.1 (3.3.4's tests mostly send 1.0, 4.28.0's 1.1; other versions are kept), the
/// default `User-Agent` and `Accept*` headers, and the backend path 4.28.0 puts in front of the
/// target (`/get`, `/post`, `/anything`, for its albedo backend).
fn test_request(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target, version) = (words.next().unwrap_or_default(), words.next().unwrap_or_default(), words.next());
    let version = version.filter(|v| !["HTTP/1.0", "HTTP/1.1"].contains(v)).unwrap_or_default();
    let target = ["/get", "/post", "/anything"]
        .iter()
        .find_map(|p| target.strip_prefix(p).filter(|rest| rest.is_empty() || rest.starts_with(['/', '?'])))
        .map_or(target.to_string(), |rest| format!("/{}", rest.trim_start_matches('/')));
    let harness = ["user-agent:", "accept:", "accept-charset:", "accept-encoding:", "accept-language:"];
    let headers = lines.filter(|h| !harness.iter().any(|p| h.to_ascii_lowercase().starts_with(p)));
    let mut out = format!("{method} {target} {version}\n");
    headers.for_each(|h| out.push_str(&format!("{h}\n")));
    out.push('\n');
    out.push_str(body);
    out.into_bytes()
}

/// Runs a suite and holds it to its failure list (see the module documentation).
fn run_suite(label: &str, rs: &RuleSet, mut cases: Vec<Case>, min_cases: usize, known_file: &str) {
    if let Ok(only) = std::env::var("BARBICAN_CRS_ONLY") {
        // Debugging aid: run the named tests (comma-separated) and print what they logged.
        cases.retain(|c| only.split(',').any(|o| o == c.name));
        for c in &cases {
            for (input, _) in &c.stages {
                let raw = raw_request(input);
                println!("{}: {}", c.name, String::from_utf8_lossy(&raw));
                if let Ok((req, _)) = nginx(&raw) {
                    let o = rs.evaluate(&req, Some(&backend(&req)));
                    for m in &o.matched {
                        println!("  {}", m.log_line());
                    }
                }
            }
            println!("{:?}", run_case(rs, c));
        }
        return;
    }
    assert!(cases.len() > min_cases, "only {} test cases found", cases.len());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let chunk = cases.len().div_ceil(threads);
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|c| (c.name.clone(), run_case(rs, c))).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    let total = results.len();
    let failed: BTreeMap<String, String> =
        results.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone()))).collect();
    let passed = total - failed.len();
    let rate = passed as f64 * 100.0 / total as f64;
    println!("{label} regression: {passed}/{total} passed ({rate:.2} %), {} failed", failed.len());

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(known_file);
    let (known, recorded) = read_known(&path);
    if std::env::var_os("BARBICAN_UPDATE_KNOWN_FAILURES").is_some() {
        let mut out = String::new();
        out.push_str(&format!(
            "# {label} regression tests that fail on Barbican's engine, with the reason.\n\
             # Written by `BARBICAN_UPDATE_KNOWN_FAILURES=1 cargo test -p barbican-waf --test crs_regression`\n\
             # (a reason starting with `[` is kept); crs_regression.rs fails when a test outside this\n\
             # list fails or the rate drops.\n\
             # pass rate: {rate:.2} % ({passed}/{total})\n"
        ));
        for (name, reason) in &failed {
            let kept = known.get(name).filter(|r| r.starts_with('[')).cloned();
            out.push_str(&format!("{name} {}\n", kept.unwrap_or_else(|| reason.clone())));
        }
        std::fs::write(&path, out).expect("write known failures");
        return;
    }
    let new: Vec<String> =
        failed.iter().filter(|(n, _)| !known.contains_key(*n)).map(|(n, r)| format!("{n}: {r}")).collect();
    let fixed: Vec<&String> = known.keys().filter(|n| !failed.contains_key(*n)).collect();
    if !fixed.is_empty() {
        println!("{} listed failures now pass, remove them from {known_file}: {fixed:?}", fixed.len());
    }
    assert!(new.is_empty(), "{} tests fail that are not in {known_file}:\n{}", new.len(), new.join("\n"));
    assert!(rate + 1e-9 >= recorded, "pass rate {rate:.2} % fell below the recorded {recorded:.2} %");
}

/// Differential run of the CRS 4.28.0 suite (nginx overrides applied) against nginx +
/// libmodsecurity3 3.0.9 (Debian 12) with the same settings and rules; see [`differential`].
/// Seen: 4962 of 4972 stages log the same ids and all 4972 reach the same verdict (4583 block);
/// the others are 3.0.9 defects the CRS suite does not share (3.0.9 keeps the CRLF at the end
/// of `MULTIPART_PART_HEADERS` values, so 922110 fires on legal charsets; its Aho-Corasick
/// misses `.env` in `/.a0proj/secrets.env`, 930130).
#[test]
fn differential_crs_4_28_0() {
    let started = std::time::Instant::now();
    let crs = shared_dir();
    let base = crs.join(CRS_TAG);
    let tests = base.join("tests");
    let cases = load_cases(&tests.join("tests"), &read_overrides(&tests.join("nginx-overrides.yaml")));
    let loaded = load(&reference_conf(&crs), &base.join("crs-setup.conf.example"), HARNESS, &base.join("rules/*.conf"));
    differential(started, "4.28.0", &crs, rule_set(), &blocking_rules(&loaded), cases, 4000);
}

/// Differential run of Debian's CRS 3.3.4 against its own suite (no overrides) on nginx +
/// libmodsecurity3; see [`differential`]. Seen: 2402 of 2403 stages log the same ids (922110
/// again) and all 2403 reach the same verdict (2292 block).
#[test]
fn differential_crs_3_3_4() {
    let started = std::time::Instant::now();
    let (crs, tests) = debian_crs_3();
    let loaded =
        load(&reference_conf(&crs), Path::new(DEBIAN_SETUP), HARNESS_3, &Path::new(DEBIAN_RULES).join("*.conf"));
    let rs = RuleSet::compile(&loaded);
    differential(started, "3.3.4", &crs, &rs, &blocking_rules(&loaded), load_cases(&tests, &Overrides::new()), 2000);
}

/// The differential run: every stage of a suite goes to nginx + libmodsecurity3, started by
/// `differential/run.sh` with the engine settings, CRS setup, harness settings and rules
/// Barbican's engine gets here, and to Barbican's engine, and the two are compared stage by
/// stage on
///
/// - the **rule ids**: the sets of ids each logs (libmodsecurity3's error log, Barbican's
///   `Outcome::matched`);
/// - the **verdict**, block or pass. Both engines run in `DetectionOnly` (the suites' harness
///   settings), so neither refuses anything; the verdict is what `SecRuleEngine On` would
///   decide: **block** when a rule logged whose disruptive action is `deny`, `drop` or
///   `redirect` (`block` counts as its phase's `SecDefaultAction`), as [`blocking_rules`]
///   reads them from the rule files. With the CRS scoring anomalies these are 949110 "Inbound
///   Anomaly Score Exceeded" (the inbound score reached `tx.inbound_anomaly_score_threshold`,
///   5, at paranoia level 4) and 959100 (the outbound score), besides the CRS's set-up checks
///   (901001, 901500) and the engine settings' 200002 (a request body that does not parse);
///   every other rule passes and adds to the score. A stage nginx itself refuses (400) passes
///   on both sides, since neither WAF decided. At paranoia level 4 and threshold 5 most of the
///   suites' stages block, so the ids are the finer comparison.
///
/// The run fails when the ids agree for less than 99 % of the stages or the verdicts for less
/// than 99.5 %. It prints both figures and writes every difference (ids, verdicts, and the
/// score in 949110's message where the two differ) to `<target>/tmp/differential-crs-<version>.txt`.
/// When nginx or its ModSecurity module is missing it fails, saying what to install.
/// `BARBICAN_CRS_ONLY=920100-1,942` runs only the tests whose names start so.
///
/// The reference gets the requests one at a time, each followed by a marker request on a
/// socket without ModSecurity (`GET /<n>`, logged as `open() ".../markers/<n>" failed`). nginx
/// numbers connections in the order it accepts them and puts the number on every log line
/// (`*123`), so stage n's lines are those whose connection number lies between marker n-1's
/// and marker n's, in whatever order nginx writes them. The log is read once, after nginx has
/// stopped; Barbican evaluates the stages on other threads meanwhile. The backend answers
/// `200 ok` (`text/plain`) to everything, so the `/reflect` tests of the response rules see
/// that answer on both sides.
fn differential(
    started: std::time::Instant,
    version: &str,
    crs: &Path,
    rs: &RuleSet,
    blocking: &BTreeSet<u64>,
    mut cases: Vec<Case>,
    min: usize,
) {
    let label = format!("CRS {version}");
    if let Ok(only) = std::env::var("BARBICAN_CRS_ONLY") {
        cases.retain(|c| only.split(',').any(|o| c.name.starts_with(o)));
    } else {
        assert!(cases.len() > min, "only {} test cases found", cases.len());
    }
    let stages: Vec<(&str, usize, Vec<u8>)> = cases
        .iter()
        .flat_map(|c| c.stages.iter().enumerate().map(|(k, (input, _))| (c.name.as_str(), k, raw_request(input))))
        .collect();
    let mut reference = Reference::start(version, crs);

    // The reference is driven from one thread while Barbican evaluates on the others.
    let evaluate = |raw: &[u8]| match nginx(raw) {
        Ok((req, _)) => {
            let resp = Response::new(200).header("Content-Type", "text/plain").body("ok\n");
            let o = rs.evaluate(&req, Some(&resp));
            let mut logged = Logged::default();
            for m in &o.matched {
                logged.ids.push(m.id);
                if m.id == 949110 {
                    logged.score = total_score(&m.msg);
                }
            }
            logged
        }
        Err(_) => Logged::default(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let ours: Vec<Logged> = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            for (n, (_, _, raw)) in stages.iter().enumerate() {
                reference.send(raw);
                reference.mark(n);
            }
        });
        let workers: Vec<_> = stages
            .chunks(stages.len().div_ceil(threads).max(1))
            .map(|part| s.spawn(move || part.iter().map(|(_, _, raw)| evaluate(raw)).collect::<Vec<_>>()))
            .collect();
        let ours = workers.into_iter().flat_map(|w| w.join().expect("an evaluating thread")).collect();
        sender.join().expect("the sender");
        ours
    });
    reference.stop();
    let theirs = reference.read_log(stages.len());

    let (mut same_ids, mut same_verdict, mut blocked, mut scores_differ) = (0usize, 0usize, 0usize, 0usize);
    let mut report = String::new();
    for (((name, k, _), ours), theirs) in stages.iter().zip(ours).zip(theirs) {
        let (ours_ids, theirs_ids) = (sorted(ours.ids), sorted(theirs.ids));
        if ours_ids == theirs_ids {
            same_ids += 1;
        } else {
            let only_ref: Vec<u64> = theirs_ids.iter().copied().filter(|i| !ours_ids.contains(i)).collect();
            let only_ours: Vec<u64> = ours_ids.iter().copied().filter(|i| !theirs_ids.contains(i)).collect();
            report.push_str(&format!(
                "{name} stage {k}: ids only in libmodsecurity3 {only_ref:?}, only in Barbican {only_ours:?}\n"
            ));
        }
        let verdict = |ids: &[u64]| if ids.iter().any(|i| blocking.contains(i)) { "block" } else { "pass" };
        blocked += usize::from(verdict(&theirs_ids) == "block");
        if verdict(&ours_ids) == verdict(&theirs_ids) {
            same_verdict += 1;
        } else {
            report.push_str(&format!(
                "{name} stage {k}: verdict {} in libmodsecurity3, {} in Barbican\n",
                verdict(&theirs_ids),
                verdict(&ours_ids)
            ));
        }
        if ours.score != theirs.score {
            scores_differ += 1;
            report.push_str(&format!(
                "{name} stage {k}: 949110's score {:?} in libmodsecurity3, {:?} in Barbican\n",
                theirs.score, ours.score
            ));
        }
    }
    let total = stages.len();
    let pct = |n: usize| n as f64 * 100.0 / total.max(1) as f64;
    let summary = format!(
        "{label}: {same_ids}/{total} ids agree ({:.2} %), verdicts {same_verdict}/{total} ({:.2} %; \
         libmodsecurity3 blocks {blocked}), in {:.1} s",
        pct(same_ids),
        pct(same_verdict),
        started.elapsed().as_secs_f64()
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("differential-crs-{version}.txt"));
    let blocking: Vec<String> = blocking.iter().map(u64::to_string).collect();
    std::fs::write(
        &out,
        format!(
            "# {summary}\n# rules that block (with SecRuleEngine On): {}\n# stages where 949110's score differs: \
             {scores_differ}\n{report}",
            blocking.join(" ")
        ),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("{summary}; differences in {}", out.display());
    assert!(
        same_ids * 100 >= total * 99 && same_verdict * 1000 >= total * 995,
        "{summary}: below 99 % (ids) or 99.5 % (verdicts); differences in {}",
        out.display()
    );
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The score in 949110's message (`Inbound Anomaly Score Exceeded (Total Score: 30)`).
fn total_score(msg: &str) -> Option<u64> {
    let (_, rest) = msg.split_once("Total Score: ")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// What one engine logged for a stage: the rule ids, and 949110's score.
#[derive(Debug, Default)]
struct Logged {
    ids: Vec<u64>,
    score: Option<u64>,
}

/// The rules that end the transaction when `SecRuleEngine` is `On`: those whose disruptive
/// action (the last one, on the chain's first rule) is `deny`, `drop` or `redirect`, or `block`
/// where their phase's `SecDefaultAction` is one of those.
fn blocking_rules(loaded: &seclang::RuleSet) -> BTreeSet<u64> {
    use barbican_waf::seclang::ast::{Action, ActionKind, DirectiveKind};
    let refuses = |a: &ActionKind| matches!(a, ActionKind::Deny | ActionKind::Drop | ActionKind::Redirect(_));
    let phase = |actions: &[Action]| {
        actions.iter().find_map(|a| match a.kind {
            ActionKind::Phase(p) => Some(p.number()),
            _ => None,
        })
    };
    let mut default_refuses: HashMap<u8, bool> = HashMap::new();
    let mut out = BTreeSet::new();
    for d in &loaded.directives {
        match &d.directive.kind {
            DirectiveKind::DefaultAction(actions) => {
                let last = actions.iter().rev().find(|a| a.kind.is_disruptive());
                default_refuses.insert(phase(actions).unwrap_or(2), last.is_some_and(|a| refuses(&a.kind)));
            }
            DirectiveKind::Rule(rule) => {
                let actions = &rule.head.actions;
                let ends = match actions.iter().rev().find(|a| a.kind.is_disruptive()).map(|a| &a.kind) {
                    Some(ActionKind::Block) => {
                        default_refuses.get(&phase(actions).unwrap_or(2)).copied().unwrap_or(false)
                    }
                    Some(k) => refuses(k),
                    None => false,
                };
                if let (true, Some(id)) = (ends, rule.id()) {
                    out.insert(id);
                }
            }
            _ => {}
        }
    }
    out
}

/// nginx + libmodsecurity3 started by `differential/run.sh` in a folder of its own, on a free
/// loopback port. Dropping it stops nginx, also when the test fails (and should the test
/// process be killed first, run.sh's watcher stops nginx within a second); the folder is
/// removed after a passing run and kept (for its `logs/error.log`) after a failing one.
struct Reference {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl Reference {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/run.sh")
    }

    fn start(version: &str, crs: &Path) -> Reference {
        let dir = std::env::temp_dir().join(format!("barbican-diff-{version}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut failure = String::new();
        // The port is free when asked for; should something take it before nginx binds it, try
        // another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let out = std::process::Command::new("sh")
                .arg(Self::script())
                .arg(version)
                .env("DIFF_DIR", &dir)
                .env("DIFF_PORT", port.to_string())
                .env("BARBICAN_CRS_DIR", crs)
                .env("DIFF_OWNER", std::process::id().to_string())
                .output()
                .expect("run differential/run.sh with sh");
            if out.status.success() {
                return Reference { dir, port, running: true };
            }
            failure = String::from_utf8_lossy(&out.stderr).into_owned();
            if !failure.contains("Address already in use") {
                break;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("differential/run.sh could not start nginx + libmodsecurity3: {failure}");
    }

    /// Sends a raw request and reads the answer until nginx closes the connection. The first
    /// bytes of the answer say that nginx has taken the connection (so it is numbered before
    /// the next marker's); after them, a connection nginx keeps open (lingering on a body it
    /// refused) is left after 200 ms instead of 5 s.
    fn send(&self, raw: &[u8]) {
        use std::io::{Read, Write};
        use std::time::Duration;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(raw);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut buf = [0u8; 16 * 1024];
            while let Ok(1..) = s.read(&mut buf) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            }
        }
    }

    /// Logs marker `n`: `GET /n` on the socket without ModSecurity.
    fn mark(&self, n: usize) {
        use std::io::{Read, Write};
        let path = self.dir.join("marker.sock");
        let mut s =
            std::os::unix::net::UnixStream::connect(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.write_all(format!("GET /{n} HTTP/1.0\r\n\r\n").as_bytes()).expect("send a marker");
        let _ = s.read_to_end(&mut Vec::new());
    }

    /// Stops nginx and waits for it to exit.
    fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let status =
                std::process::Command::new("sh").arg(Self::script()).arg("stop").env("DIFF_DIR", &self.dir).status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("differential/run.sh stop failed for {}", self.dir.display());
            }
        }
    }

    /// The rule ids (and 949110's score) logged for each of `stages` stages, read from the
    /// error log by marker (see [`differential`]).
    fn read_log(&self, stages: usize) -> Vec<Logged> {
        let path = self.dir.join("logs/error.log");
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .into_owned();
        let marker = format!("open() \"{}/", self.dir.join("markers").display());
        let id_re = regex::Regex::new(r#"\[line "\d+"\] \[id "(\d+)"\]"#).expect("regex");
        let mut markers: Vec<Option<u64>> = vec![None; stages];
        let mut lines: Vec<(u64, u64, Option<u64>)> = Vec::new();
        for line in text.lines() {
            // `2026/11/25 21:59:10 [info] 2905#2905: *4 ModSecurity: Warning. Matched ...`
            let Some((_, rest)) = line.split_once(": *") else { continue };
            let Some((conn, rest)) = rest.split_once(' ') else { continue };
            let Ok(conn) = conn.parse::<u64>() else { continue };
            if let Some(m) = rest.strip_prefix(&marker) {
                if let Some(n) = m.split('"').next().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n < stages) {
                    markers[n] = Some(conn);
                }
            } else if rest.starts_with("ModSecurity: ") {
                if let Some(c) = id_re.captures(rest) {
                    let id: u64 = c[1].parse().unwrap_or(0);
                    lines.push((conn, id, if id == 949110 { total_score(rest) } else { None }));
                }
            }
        }
        let markers: Vec<u64> = markers
            .iter()
            .enumerate()
            .map(|(n, m)| m.unwrap_or_else(|| panic!("marker {n} is not in {}", path.display())))
            .collect();
        assert!(markers.windows(2).all(|w| w[0] < w[1]), "the markers in {} are out of order", path.display());
        let mut logged: Vec<Logged> = (0..stages).map(|_| Logged::default()).collect();
        for (conn, id, score) in lines {
            let n = markers.partition_point(|&m| m < conn);
            if let Some(l) = logged.get_mut(n) {
                l.ids.push(id);
                if score.is_some() {
                    l.score = score;
                }
            }
        }
        logged
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("nginx + libmodsecurity3's files are kept in {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}
