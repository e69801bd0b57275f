//! Request bodies that try to break the engine: malformed, unterminated, deeply nested, huge in
//! argument count, or shaped so that a careless parser does quadratic work or multiplies memory.
//! None may panic, malformed ones must raise `REQBODY_ERROR`, and the bounds the processors
//! promise (nesting, names repeated into arguments, time linear in the body) must hold.
//!
//! The first half of this file is also the body of the `request_body` fuzz target
//! (`fuzz/fuzz_targets/request_body.rs` includes it as a module): [`check`] turns any bytes into
//! a `Content-Type` and a body, evaluates them against [`RULES`], and checks the engine against
//! the body processors called directly. The tests below run it over a generated corpus, so the
//! fuzz target's logic is exercised by `cargo test` too; add any input the fuzzer finds to
//! [`fuzz_finds_stay_fixed`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use barbican_waf::engine::body::{json, multipart, urlencoded, xml};
use barbican_waf::seclang::Loader;
use barbican_waf::{Outcome, Request, RuleSet, Verdict};

/// A small rule set touching every body processor and the variables they fill. Rule ids:
/// 1-2 choose XML and JSON as the reference `modsecurity.conf` does; 100 is `REQBODY_ERROR`.
pub const RULES: &str = r#"
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRequestBodyLimit 8388608
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 64
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" \
    "id:1,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \
    "id:2,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:100,phase:2,t:none,pass,log,msg:'body error',logdata:'%{REQBODY_ERROR_MSG}'"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:101,phase:2,t:none,pass,log,\
    msg:'BQ %{MULTIPART_BOUNDARY_QUOTED} BW %{MULTIPART_BOUNDARY_WHITESPACE} DB %{MULTIPART_DATA_BEFORE} \
DA %{MULTIPART_DATA_AFTER} HF %{MULTIPART_HEADER_FOLDING} LF %{MULTIPART_LF_LINE} \
SM %{MULTIPART_MISSING_SEMICOLON} IQ %{MULTIPART_INVALID_QUOTING} IP %{MULTIPART_INVALID_PART} \
IH %{MULTIPART_INVALID_HEADER_FOLDING} FL %{MULTIPART_FILE_LIMIT_EXCEEDED}'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" "id:102,phase:2,t:none,pass,log"
SecRule MULTIPART_CRLF_LF_LINES "@eq 1" "id:103,phase:2,t:none,pass,log"
SecRule URLENCODED_ERROR "@eq 1" "id:104,phase:2,t:none,pass,log"
SecRule ARGS|ARGS_NAMES "@rx (?i)union\s+select|<script|\.\./" \
    "id:110,phase:2,pass,log,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:lowercase,msg:'%{MATCHED_VAR_NAME}'"
SecRule ARGS "@detectSQLi" "id:111,phase:2,pass,log,t:none"
SecRule ARGS_POST|ARGS_POST_NAMES "@detectXSS" "id:112,phase:2,pass,log,t:none,t:utf8toUnicode,t:jsDecode"
SecRule FILES|FILES_NAMES "@rx \.(?:php\d*|phtml|jsp)$" "id:113,phase:2,pass,log,t:none,t:lowercase"
SecRule FILES_SIZES "@gt 64" "id:114,phase:2,pass,log"
SecRule FILES_COMBINED_SIZE "@gt 256" "id:115,phase:2,pass,log"
SecRule FILES_TMP_CONTENT "@rx <\?php" "id:116,phase:2,pass,log"
SecRule MULTIPART_PART_HEADERS "@rx (?i)^content-type\s*:\s*(.*)$" "id:117,phase:2,pass,log,capture,msg:'%{TX.1}'"
SecRule MULTIPART_NAME|MULTIPART_FILENAME "@rx [\x00-\x1f]" "id:118,phase:2,pass,log"
SecRule XML:/* "@pm evil <script passwd" "id:120,phase:2,pass,log,t:none,t:lowercase"
SecRule XML://@* "@rx (?i)javascript:" "id:121,phase:2,pass,log"
SecRule &ARGS "@gt 100" "id:122,phase:2,pass,log"
SecRule ARGS_COMBINED_SIZE "@gt 4096" "id:123,phase:2,pass,log"
SecRule REQUEST_BODY "@rx \x00" "id:124,phase:2,pass,log"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:125,phase:2,pass,log,chain"
    SecRule ARGS_POST_NAMES "!@beginsWith json" "t:none"
SecRule ARGS_POST_NAMES "@rx ^json(?:\.[^.]*)*\.array_\d+$" "id:126,phase:2,pass,log"
"#;

/// `SecRequestBodyJsonDepthLimit` in [`RULES`].
pub const JSON_DEPTH: usize = 64;

/// [`RULES`], compiled once.
pub fn rules() -> &'static RuleSet {
    static RULESET: OnceLock<RuleSet> = OnceLock::new();
    RULESET.get_or_init(|| {
        let mut l = Loader::new();
        l.load_str(std::path::Path::new("body_robustness.conf"), RULES);
        RuleSet::compile(&l.finish().unwrap_or_else(|e| panic!("{e:?}")))
    })
}

/// The body processor [`RULES`] make the engine choose for a `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    /// `application/x-www-form-urlencoded`
    UrlEncoded,
    /// `multipart/form-data`
    Multipart,
    /// `ctl:requestBodyProcessor=JSON`
    Json,
    /// `ctl:requestBodyProcessor=XML`
    Xml,
    /// No processor: the body is only `REQUEST_BODY`.
    None,
}

/// Mirrors rules 1 and 2 and the engine's choice by `Content-Type` prefix.
pub fn processor_for(content_type: &[u8]) -> Processor {
    let l = content_type.to_ascii_lowercase();
    let starts = |p: &[u8]| l.starts_with(p);
    if starts(b"application/xml") || starts(b"application/soap+xml") || starts(b"text/xml") {
        Processor::Xml
    } else if starts(b"application/json") {
        Processor::Json
    } else if starts(b"multipart/form-data") {
        Processor::Multipart
    } else if starts(b"application/x-www-form-urlencoded") {
        Processor::UrlEncoded
    } else {
        Processor::None
    }
}

/// Splits fuzz input into a `Content-Type` and a body. The first byte picks the type; for the
/// choices that read parameters from the input (a multipart boundary, or the whole header),
/// they are the bytes up to the first `\n`, the body is the rest.
pub fn split(data: &[u8]) -> (Vec<u8>, &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return (b"text/plain".to_vec(), data) };
    let line = |rest: &[u8]| -> (Vec<u8>, usize) {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        (rest[..end].to_vec(), (end + 1).min(rest.len()))
    };
    match selector % 10 {
        0 => (b"application/x-www-form-urlencoded".to_vec(), rest),
        1 => (b"multipart/form-data; boundary=B".to_vec(), rest),
        2 | 3 => {
            let (params, skip) = line(rest);
            let mut ct = b"multipart/form-data; ".to_vec();
            ct.extend_from_slice(&params);
            (ct, &rest[skip..])
        }
        4 | 5 => (b"application/json".to_vec(), rest),
        6 => (b"text/xml; charset=utf-8".to_vec(), rest),
        7 => (b"application/soap+xml".to_vec(), rest),
        8 => {
            let (ct, skip) = line(rest);
            (ct, &rest[skip..])
        }
        _ => (b"text/plain".to_vec(), rest),
    }
}

fn ids(o: &Outcome) -> Vec<u64> {
    o.matched.iter().map(|m| m.id).collect()
}

/// The fuzz target's body: evaluates `data` as a request and checks the outcome against the
/// body processors called directly. Returns the outcome for tests that look further.
pub fn check(data: &[u8]) -> Outcome {
    let (content_type, body) = split(data);
    let request = Request::new("POST", "/upload?via=fuzz")
        .header("Host", "fuzz.example")
        .header("Content-Type", content_type.clone())
        .header("Content-Length", body.len().to_string())
        .body(body);
    let outcome = rules().evaluate(&request, None);
    assert_eq!(outcome.verdict, Verdict::Pass, "DetectionOnly never blocks");
    let fired = ids(&outcome);
    let processor = processor_for(&content_type);
    // The engine's REQBODY_ERROR agrees with the processor run directly.
    let error = match processor {
        Processor::Json => {
            let r = json::parse(body, JSON_DEPTH);
            if let Ok(args) = &r {
                assert!(args.iter().all(|(k, _)| k.starts_with(b"json")), "JSON argument outside json.*");
            }
            r.err()
        }
        Processor::Xml => xml::parse(body).err(),
        Processor::Multipart if body.is_empty() => None,
        Processor::Multipart => {
            let m = multipart::parse(&content_type, body);
            if m.error.is_none() {
                assert!(m.args.iter().all(|(k, _)| !k.is_empty()), "multipart field without a name");
                assert!(m.files.iter().all(|f| !f.name.is_empty()), "file part without a name");
            }
            m.error
        }
        Processor::UrlEncoded | Processor::None => None,
    };
    assert_eq!(fired.contains(&100), error.is_some(), "REQBODY_ERROR vs {error:?} for {:?}", processor);
    if let Some(e) = &error {
        let m = outcome.matched.iter().find(|m| m.id == 100).expect("rule 100");
        assert!(!e.is_empty() && m.data.contains(e.get(..20).unwrap_or(e)), "{:?} vs {e:?}", m.data);
    }
    // JSON names all start with `json`; multipart flags only come with a multipart body.
    assert!(!fired.contains(&125), "a JSON argument not under json.*");
    if processor != Processor::Multipart {
        assert!(!fired.iter().any(|id| (101..=103).contains(id)), "multipart flags without multipart: {fired:?}");
    }
    if processor != Processor::UrlEncoded {
        // The query string is clean, so URLENCODED_ERROR can only come from a urlencoded body.
        assert!(!fired.contains(&104));
    }
    // The processors with other settings than the rule set's.
    let depth = usize::from(data.first().copied().unwrap_or(0) % 8);
    let _ = json::parse(body, depth);
    let (pairs, _) = urlencoded::parse(body, b';');
    assert!(pairs.iter().all(|(k, v)| k.len() + v.len() <= body.len()));
    outcome
}

/// A tiny deterministic generator for the test corpus (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Seeds in the fuzz target's input format: one per processor and shape.
pub fn seeds() -> Vec<Vec<u8>> {
    let with = |selector: u8, rest: &[u8]| {
        let mut v = vec![selector];
        v.extend_from_slice(rest);
        v
    };
    vec![
        with(0, b"a=1&b=%41+c&&flag&x=%zz&q=1%20union%20select%202&n[]=<script>"),
        with(
            1,
            b"--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nvalue\r\n--B\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.php\"\r\nContent-Type: text/plain\r\n\r\n<?php echo 'a file part longer than sixty-four bytes, for FILES_SIZES';\r\n--B--\r\n",
        ),
        with(
            2,
            b"boundary=\"x y\"; charset=utf-8\n--x y\nContent-Disposition: form-data; name=a\nX-H: 1\n folded\n\nv\r\n--x y\r\nContent-Disposition: form-data; name='q'; filename=\"b\x01\"\r\n\r\n\r\n--x y--\r\ntrailer",
        ),
        with(
            4,
            br#"{"a":{"b":["c",1.5e3,{"d":null}]},"e":"\ud83d\ude00\u0041","s":"1 union select 2","t":[true,false,[[[]]],{}]}"#,
        ),
        with(5, b"[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]"),
        with(4, b"{\"a\":[1,2,}"),
        with(
            6,
            b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r a=\"javascript:1&amp;2\"><b c='3'>evil &x; &#x41;&#65;</b><![CDATA[<script>]]><!-- c --></r>",
        ),
        with(7, b"<soap:Envelope xmlns:soap=\"urn:x\"><soap:Body><q>passwd</q></soap:Body></soap:Envelope>"),
        with(8, b"application/json; charset=utf-8\n{\"x\":\"../../etc\"}"),
        with(8, b"Multipart/Form-Data; boundary=--a\n----a\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n----a--"),
        with(9, b"\x00\xff raw"),
    ]
}

/// Random byte edits of `seed`: flips, insertions of interesting tokens, deletions, splices.
fn mutate(rng: &mut Rng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    const TOKENS: [&[u8]; 16] =
        [b"\r\n", b"\n", b"--B", b"--", b"\"", b"'", b"{", b"[", b"]", b"}", b"<", b">", b"&", b"%", b"\\u", b";"];
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = if v.is_empty() { 0 } else { rng.below(v.len() + 1) };
        match rng.below(5) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => {
                let n = rng.below(v.len() - at + 1);
                v.drain(at..at + n);
            }
            3 => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len());
                v.splice(at..at, other[from..].iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v
}

#[test]
fn rule_set_is_fully_supported() {
    assert!(rules().unsupported().is_empty(), "{:?}", rules().unsupported());
}

#[test]
fn seeds_exercise_every_processor_and_variable() {
    let mut all = Vec::new();
    for s in seeds() {
        all.extend(ids(&check(&s)));
    }
    for id in [100, 101, 104, 110, 111, 112, 113, 114, 116, 117, 118, 120, 121, 124, 126] {
        assert!(all.contains(&id), "no seed fires rule {id}: {all:?}");
    }
}

/// The fuzz target's body over every prefix of each seed and a few thousand mutations.
#[test]
fn generated_corpus_through_the_fuzz_target() {
    let seeds = seeds();
    for s in &seeds {
        for end in 0..=s.len() {
            check(&s[..end]);
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, &seeds);
        check(&input);
    }
}

/// Inputs the `request_body` fuzz target found (none so far: 1.6 million runs found no
/// failure), after the edges of its input format: no input, and each selector without a body.
#[test]
fn fuzz_finds_stay_fixed() {
    let finds: [&[u8]; 0] = [];
    check(b"");
    for selector in 0..10u8 {
        check(&[selector]);
        check(&[selector, b'\n']);
    }
    for f in finds {
        check(f);
    }
}

// ---------------------------------------------------------------------------------------------
// Adversarial bodies, processor by processor.

fn post(content_type: &str, body: impl Into<Vec<u8>>) -> Outcome {
    let body = body.into();
    let r = Request::new("POST", "/")
        .header("Host", "x")
        .header("Content-Type", content_type)
        .header("Content-Length", body.len().to_string())
        .body(body);
    rules().evaluate(&r, None)
}

fn body_error(o: &Outcome) -> Option<&str> {
    o.matched.iter().find(|m| m.id == 100).map(|m| m.data.as_str())
}

/// Bounds a run that must be linear: generous enough for a debug build on a busy machine, far
/// below what the quadratic versions took (minutes, or tens of GiB, at these sizes).
fn linear<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < Duration::from_secs(20), "{what} took {:?}", t.elapsed());
    r
}

const MIB: usize = 1 << 20;

#[test]
fn malformed_documents_raise_reqbody_error() {
    let cases: [(&str, &[u8], &str); 12] = [
        ("application/json", b"{\"a\":", "JSON parsing error"),
        ("application/json", b"{\"a\" 1}", "JSON parsing error"),
        ("application/json", b"[1,]", "JSON parsing error"),
        ("application/json", b"\"\\uZZZZ\"", "JSON parsing error"),
        ("application/json", b"{} {}", "trailing garbage"),
        ("application/json", b"   ", "premature EOF"),
        ("text/xml", b"<a><b></a>", "XML parsing error"),
        ("text/xml", b"<a>&undefined;</a>", "XML parsing error"),
        ("text/xml", b"", "XML parsing error"),
        ("multipart/form-data", b"--x\r\n", "Boundary not found in C-T"),
        ("multipart/form-data; boundary=x", b"no boundary here", "Boundary not found in the body"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: attachment\r\n\r\nv\r\n--x--", "form-data"),
    ];
    for (ct, body, msg) in cases {
        let o = post(ct, body);
        let e = body_error(&o).unwrap_or_else(|| panic!("{ct} {:?}: no REQBODY_ERROR", String::from_utf8_lossy(body)));
        assert!(e.contains(msg), "{ct} {:?}: {e}", String::from_utf8_lossy(body));
    }
    // Well-formed documents do not.
    assert_eq!(body_error(&post("application/json", r#"{"a":[1,{"b":null}]}"#)), None);
    assert_eq!(body_error(&post("text/xml", "<a><b x='1'/></a>")), None);
}

#[test]
fn json_nesting_at_and_past_the_limits() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let doc = |depth: usize| format!("{}1{}", open.repeat(depth), close.repeat(depth));
        // The rule set's SecRequestBodyJsonDepthLimit 64.
        assert_eq!(body_error(&post("application/json", doc(64))), None, "{open} at 64");
        let e = body_error(&post("application/json", doc(65))).map(str::to_owned);
        assert!(e.is_some_and(|e| e.contains("depth limit of 64")), "{open} at 65");
        // Whatever the setting, at most json::MAX_DEPTH levels: the parser recurses.
        assert!(json::parse(doc(json::MAX_DEPTH).as_bytes(), usize::MAX).is_ok(), "{open} at MAX_DEPTH");
        assert!(json::parse(doc(json::MAX_DEPTH + 1).as_bytes(), usize::MAX).is_err());
        // 100 000 levels: an error, not a stack overflow; likewise unclosed and through the engine.
        let deep = doc(100_000);
        assert!(json::parse(deep.as_bytes(), usize::MAX).is_err());
        assert!(json::parse(open.repeat(100_000).as_bytes(), usize::MAX).is_err());
        assert!(body_error(&post("application/json", deep)).is_some());
    }
}

#[test]
fn json_argument_names_stay_proportionate_to_the_document() {
    let budget = |len: usize| (len * json::NAME_BYTES_PER_BODY_BYTE).max(json::MIN_NAME_BUDGET);
    // A long key repeated into the name of every array element: 256 KiB once made 8 GiB.
    let key = "k".repeat(128 * 1024);
    let mut doc = format!("{{\"{key}\":[");
    while doc.len() < 256 * 1024 {
        doc.push_str("0,");
    }
    doc.push_str("0]}");
    let e = linear("long key", || json::parse(doc.as_bytes(), 512)).unwrap_err();
    assert!(e.contains("argument names longer than"), "{e}");
    // Deep nesting over many scalars: names of 8 KB for two bytes each.
    let mut doc = "[".repeat(999);
    while doc.len() < MIB {
        doc.push_str("0,");
    }
    doc.push('0');
    doc.push_str(&"]".repeat(999));
    assert!(linear("deep arrays", || json::parse(doc.as_bytes(), usize::MAX)).is_err());
    // Ordinary documents are far from the limit, even nested arrays of coordinates.
    let mut geo = String::from(
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon","coordinates":[["#,
    );
    for i in 0..20_000 {
        geo.push_str(&format!("[{}.5,{}.25],", i % 180, i % 90));
    }
    geo.push_str("[0,0]]]}}]}");
    let args = json::parse(geo.as_bytes(), 512).expect("GeoJSON");
    let names: usize = args.iter().map(|(k, _)| k.len()).sum();
    assert!(names < budget(geo.len()), "GeoJSON names {names} for {} bytes", geo.len());
    assert!(names > MIB, "the example should exceed the minimum budget");
    let api = br#"{"order":{"id":"ord-1","customer":{"id":42,"name":"Alice","address":{"city":"Philadelphia","country":"US"}},"items":[{"sku":"A-1","qty":2,"unit_price":39.99},{"sku":"B-2","qty":1,"unit_price":12.5}],"tags":["gift","priority"]}}"#;
    let names: usize = json::parse(api, 512).unwrap().iter().map(|(k, _)| k.len()).sum();
    assert!(names < 4 * api.len(), "API payload names {names} for {} bytes", api.len());
}

#[test]
fn json_huge_numbers_of_values() {
    let mut doc = String::from("[");
    while doc.len() < MIB {
        doc.push_str("1,");
    }
    doc.push_str("1]");
    let args = linear("1 MiB array", || json::parse(doc.as_bytes(), 512)).unwrap();
    assert_eq!(args.len(), MIB / 2 + 1);
    // Through the engine a quarter of it (every value meets every ARGS rule: a debug build
    // needs seconds for half a million).
    let doc = format!("[{}1]", "1,".repeat(MIB / 8));
    let o = linear("128 Ki values through the engine", || post("application/json", doc));
    assert_eq!(body_error(&o), None);
    assert!(o.matched.iter().any(|m| m.id == 122), "&ARGS > 100");
}

#[test]
fn urlencoded_huge_numbers_of_args() {
    let many = "a&".repeat(MIB / 2);
    let (pairs, bad) = linear("half a million names", || urlencoded::parse(many.as_bytes(), b'&'));
    assert_eq!((pairs.len(), bad), (MIB / 2, false));
    let many = "a&".repeat(MIB / 8);
    let o = linear("128 Ki args through the engine", || post("application/x-www-form-urlencoded", many));
    assert!(o.matched.iter().any(|m| m.id == 122));
    // One argument of 1 MiB, and nothing but separators and broken escapes.
    let one = format!("q={}", "%".repeat(MIB));
    let (pairs, bad) = urlencoded::parse(one.as_bytes(), b'&');
    assert_eq!((pairs.len(), pairs[0].1.len(), bad), (1, MIB, true));
    assert!(urlencoded::parse("&".repeat(MIB).as_bytes(), b'&').0.is_empty());
    let o = post("application/x-www-form-urlencoded", one);
    assert!(o.matched.iter().any(|m| m.id == 104), "URLENCODED_ERROR");
}

const MP: &[u8] = b"multipart/form-data; boundary=B";

#[test]
fn multipart_unterminated_and_unmatched_boundaries() {
    let part = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n";
    // No final boundary, at every cut of a valid body.
    let full = [&part[..], b"value\r\n--B--\r\n"].concat();
    for end in 0..full.len() - 4 {
        let m = multipart::parse(MP, &full[..end]);
        assert!(m.error.is_some(), "cut at {end}: {:?}", String::from_utf8_lossy(&full[..end]));
    }
    assert_eq!(multipart::parse(MP, &full).error, None);
    // A part that never ends: 1 MiB of content, no closing boundary.
    let mut open = part.to_vec();
    open.resize(MIB, b'x');
    let m = linear("unterminated part", || multipart::parse(MP, &open));
    assert!(m.error.as_deref().is_some_and(|e| e.contains("Final boundary missing")));
    assert!(m.flags.unmatched_boundary);
    let o = post("multipart/form-data; boundary=B", open);
    assert!(body_error(&o).is_some() && o.matched.iter().any(|m| m.id == 102));
    // Headers that never end, a boundary line that never ends.
    assert!(multipart::parse(MP, &[&b"--B\r\n"[..], &b"X: y\r\n".repeat(10_000)].concat()).error.is_some());
    assert!(multipart::parse(MP, &[&b"--B"[..], &b" ".repeat(MIB)].concat()).error.is_some());
    // The longest boundary allowed is fine, one more character is not.
    let long = "b".repeat(70);
    let body = format!("--{long}\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--{long}--");
    assert_eq!(
        multipart::parse(format!("multipart/form-data; boundary={long}").as_bytes(), body.as_bytes()).error,
        None
    );
    let too_long = "b".repeat(71);
    assert!(multipart::parse(format!("multipart/form-data; boundary={too_long}").as_bytes(), b"x").error.is_some());
}

#[test]
fn multipart_many_parts_stay_linear() {
    // LF-only parts: each part's end was searched for as CRLF through the rest of the body
    // first (quadratic: 256 KiB took 1.2 s in release).
    for eol in ["\n", "\r\n"] {
        let one = format!("--B{eol}Content-Disposition: form-data; name=\"a\"{eol}{eol}x{eol}");
        let mut body = one.repeat(MIB / one.len());
        body.push_str(&format!("--B--{eol}"));
        let m = linear("many parts", || multipart::parse(MP, body.as_bytes()));
        assert_eq!((m.error, m.args.len()), (None, MIB / one.len()));
        assert_eq!(m.flags.lf_line, eol == "\n");
        let quarter = [one.repeat(MIB / 4 / one.len()), format!("--B--{eol}")].concat();
        let o = linear("many parts through the engine", || post("multipart/form-data; boundary=B", quarter));
        assert_eq!(body_error(&o), None);
    }
    // Many file parts.
    let one = "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php\r\n";
    let mut body = one.repeat(MIB / one.len());
    body.push_str("--B--\r\n");
    let m = linear("many files", || multipart::parse(MP, body.as_bytes()));
    assert_eq!((m.error, m.files.len()), (None, MIB / one.len()));
}

#[test]
fn multipart_part_headers_stay_proportionate_to_the_body() {
    // A long name and many short header lines: MULTIPART_PART_HEADERS repeats the name per
    // line (256 KiB made 200 MiB).
    let mut body = format!("--B\r\nContent-Disposition: form-data; name=\"{}\"\r\n", "n".repeat(4000));
    while body.len() < 256 * 1024 {
        body.push_str("a:1\r\n");
    }
    body.push_str("\r\nv\r\n--B--\r\n");
    let m = linear("many headers", || multipart::parse(MP, body.as_bytes()));
    assert!(m.error.as_deref().is_some_and(|e| e.contains("repeat part names")), "{:?}", m.error);
    // A few headers on parts with ordinary names are fine, however many parts.
    let one =
        "--B\r\nContent-Disposition: form-data; name=\"field\"\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nv\r\n";
    let mut body = one.repeat(MIB / one.len());
    body.push_str("--B--\r\n");
    let m = multipart::parse(MP, body.as_bytes());
    assert_eq!((m.error, m.part_headers.len()), (None, 3 * (MIB / one.len())));
}

#[test]
fn xml_deep_wide_and_entity_heavy_documents() {
    // 100 000 levels: the parser keeps its own stack.
    let deep = format!("{}x{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let d = linear("deep XML", || xml::parse(deep.as_bytes())).unwrap();
    assert_eq!(d.text, b"x");
    assert!(xml::parse("<a>".repeat(100_000).as_bytes()).is_err());
    let o = post("text/xml", deep);
    assert_eq!(body_error(&o), None);
    // Many declared entities, each referenced: a set lookup, not a scan of the declarations.
    let n = 40_000;
    let mut doc = String::from("<!DOCTYPE r [");
    for i in 0..n {
        doc.push_str(&format!("<!ENTITY e{i} \"\">"));
    }
    doc.push_str("]><r>");
    for _ in 0..n {
        doc.push_str(&format!("&e{};", n - 1));
    }
    doc.push_str("</r>");
    assert!(linear("entity references", || xml::parse(doc.as_bytes())).is_ok());
    // `<!ENTITY` over and over: the name ends where a name must, not at the next blank.
    let chain = format!("<!DOCTYPE r [{}]><r/>", "<!ENTITY".repeat(MIB / 8));
    assert!(linear("ENTITY chain", || xml::parse(chain.as_bytes())).is_ok());
    // Many attributes, a huge text node, unterminated constructs.
    let attrs = format!("<r {}/>", (0..50_000).map(|i| format!("a{i}='javascript:{i}'")).collect::<Vec<_>>().join(" "));
    assert_eq!(linear("many attributes", || xml::parse(attrs.as_bytes())).unwrap().attributes.len(), 50_000);
    let text = format!("<r>{}</r>", "&amp;".repeat(MIB / 5));
    assert_eq!(xml::parse(text.as_bytes()).unwrap().text.len(), MIB / 5);
    for broken in ["<r><!-- x", "<r><![CDATA[x", "<?xml", "<!DOCTYPE [[[[", "<r a='1", "<r>&amp", "</r>"] {
        let long = format!("{broken}{}", "y".repeat(MIB));
        assert!(linear(broken, || xml::parse(long.as_bytes())).is_err(), "{broken}");
    }
}
