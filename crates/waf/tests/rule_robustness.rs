//! Rule files that try to break the engine: any text, read as a rule file, is refused with
//! errors that say where, or compiled and evaluated against a few requests and a response;
//! nothing may panic (the security team's rule files are config, and a broken one must leave
//! the gateway running on the rules it had).
//!
//! The first half of this file is also the body of the `rules_eval` fuzz target
//! (`fuzz/fuzz_targets/rules_eval.rs` includes it as a module): [`check`] loads any bytes as a
//! rule file. The tests below run it over rules that use every kind of operator, variable,
//! transformation and action, recombined word by word at random, so the fuzz target's logic is
//! exercised by `cargo test` too; add any input the fuzzer finds to [`fuzz_finds_stay_fixed`].

use std::path::Path;

use barbican_waf::seclang::Loader;
use barbican_waf::{Request, Response, RuleSet};

/// What every rule set is evaluated against: a browser's GET with a query and cookies, a JSON
/// POST, a urlencoded POST and a multipart upload, each with a response.
fn requests() -> Vec<(Request, Response)> {
    let get = Request::new("GET", "/a/b.php?id=1%27%20or%201=1&q=%3Cscript%3E&q=x")
        .header("Host", "example.com")
        .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .header("Cookie", "session=abc; theme=dark")
        .header("Accept", "text/html,*/*;q=0.8");
    let json = Request::new("POST", "/api/v1/orders")
        .header("Host", "example.com")
        .header("Content-Type", "application/json")
        .body(r#"{"a":{"b":["c",1,true,null]},"s":"1 union select 2","x":"<img src=x onerror=alert(1)>"}"#);
    let form = Request::new("POST", "/login")
        .header("Host", "example.com")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("user=admin&pass=%27--&next=..%2f..%2fetc%2fpasswd");
    let upload = Request::new("POST", "/upload")
        .header("Host", "example.com")
        .header("Content-Type", "multipart/form-data; boundary=B")
        .body("--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.php\"\r\n\r\n<?php ?>\r\n--B--\r\n");
    let response = Response::new(200)
        .header("Content-Type", "text/html")
        .body("<html>ORA-01756: quoted string not properly terminated</html>");
    [get, json, form, upload].into_iter().map(|r| (r, response.clone())).collect()
}

/// Loads and compiles a rule file.
fn load(text: &str) -> Result<RuleSet, Vec<barbican_waf::seclang::Error>> {
    let mut loader = Loader::new();
    loader.load_str(Path::new("fuzz.conf"), text);
    loader.finish().map(|loaded| RuleSet::compile(&loaded))
}

/// The fuzz target's body: loads `data` as a rule file; errors must say where they are (a line
/// of the file), a rule set that loads is compiled and evaluated, and nothing may panic.
/// Returns whether it loaded.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let rules = match load(&text) {
        Ok(rules) => rules,
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load without errors");
            let lines = text.lines().count().max(1);
            for e in &errors {
                assert!((1..=lines + 1).contains(&e.line()) && e.column() >= 1, "{e} of {lines} lines");
            }
            return false;
        }
    };
    for (request, response) in requests() {
        let outcome = rules.evaluate(&request, Some(&response));
        assert!(outcome.matched.iter().all(|m| !m.location.is_empty()), "a match without its rule's location");
    }
    true
}

/// Rules that, between them, use every kind of operator, variable collection,
/// transformation and action CRS uses, with macros, chains, markers and `ctl:`.
const SEEDS: &str = r#"SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess On
SecDefaultAction "phase:2,log,auditlog,pass"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.score=0,setvar:'tx.allowed=|GET| |POST|',setvar:tx.n=5"
SecRule REQUEST_METHOD "!@within %{tx.allowed}" "id:2,phase:1,deny,status:405,msg:'method %{MATCHED_VAR}'"
SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:3,phase:1,pass,capture,t:none,t:lowercase,setvar:'tx.h_%{tx.0}=/%{tx.0}/',chain"
    SecRule TX:/^h_/ "@within /proxy/ /if/" "setvar:'tx.score=+%{tx.n}'"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|!REQUEST_COOKIES:theme "@detectSQLi" "id:4,phase:2,block,t:none,t:urlDecodeUni,multiMatch,setvar:tx.score=+5,logdata:'%{MATCHED_VAR_NAME}=%{MATCHED_VAR}'"
SecRule ARGS "@detectXSS" "id:5,phase:2,block,t:none,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:removeNulls"
SecRule REQUEST_FILENAME "@pm .php .asp ../" "id:6,phase:1,pass,t:none,t:normalizePath,t:lowercase,ctl:ruleRemoveTargetById=4;ARGS:q"
SecRule &ARGS "@gt %{tx.n}" "id:7,phase:2,pass,skipAfter:END"
SecRule REQUEST_URI "@validateUrlEncoding" "id:8,phase:1,pass,t:none"
SecRule ARGS "@validateUtf8Encoding" "id:9,phase:2,pass"
SecRule REQUEST_BODY "@validateByteRange 9,10,13,32-126" "id:10,phase:2,pass,t:none,t:base64Decode,t:hexDecode"
SecRule REMOTE_ADDR "@ipMatch 127.0.0.1,10.0.0.0/8,::1" "id:11,phase:1,pass,ctl:ruleEngine=DetectionOnly"
SecRule REQUEST_HEADERS:Content-Type "@beginsWith application/json" "id:12,phase:1,pass,ctl:requestBodyProcessor=JSON"
SecRule XML:/* "@contains evil" "id:13,phase:2,pass,t:none,t:compressWhitespace,t:replaceComments"
SecRule FILES|FILES_NAMES|MULTIPART_STRICT_ERROR "@endsWith .php" "id:14,phase:2,deny,t:none,t:trim,t:length"
SecRule RESPONSE_BODY "@rx (?i)ORA-\d{5}" "id:15,phase:4,block,t:none,t:cmdLine,t:sha1,t:hexEncode"
SecRule RESPONSE_STATUS "@streq 500" "id:16,phase:3,pass,chain"
    SecRule RESPONSE_HEADERS:Content-Type "@endsWith html" "t:lowercase"
SecRule TX:score "@ge 5" "id:17,phase:2,deny,status:403,msg:'score %{tx.score}',setenv:blocked=1,expirevar:tx.score=60"
SecRule REQBODY_ERROR "!@eq 0" "id:18,phase:2,deny,t:none,t:urlDecode,t:removeWhitespace,t:escapeSeqDecode,t:utf8toUnicode"
SecMarker END
SecRule ARGS:/^u/ "@rx (?:a|b){2,}?(?=x)" "id:19,phase:2,pass,t:none,t:sqlHexDecode,t:replaceNulls,t:normalizePathWin"
SecRuleUpdateTargetById 4 "!ARGS:user"
SecRuleRemoveById 9
SecComponentSignature "fuzz"
"#;

/// The words [`SEEDS`] is recombined from.
fn words() -> Vec<&'static str> {
    let mut words: Vec<&str> = SEEDS.split(|c: char| c.is_whitespace() || c == ',' || c == '|').collect();
    words.extend(["\\\n", "\"", "'", "%{", "}", "!", "&", ":", ";", "=+", "=-", "chain", "t:", "@", "/"]);
    words.retain(|w| !w.is_empty());
    words
}

/// [`SEEDS`] with a word or two put in, put in place of a few characters, or a few characters
/// cut, where `draw` says: rules that are nearly right, the kind a hand-edited file holds.
fn recombined(draw: &mut impl FnMut(usize) -> usize, words: &[&str]) -> String {
    let mut text = SEEDS.to_string();
    for _ in 0..=draw(2) {
        let at = (0..=draw(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let word = words[draw(words.len())];
        let (span, with) = match draw(3) {
            0 => {
                text.insert_str(at, word);
                continue;
            }
            1 => (draw(12), word),
            _ => (draw(4), ""),
        };
        let end = ((at + span).min(text.len())..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text.replace_range(at..end, with);
    }
    text
}

#[test]
fn the_seeds_load_and_match() {
    let rules = load(SEEDS).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(rules.unsupported().is_empty(), "{:?}", rules.unsupported());
    let matched: Vec<u64> = requests()
        .iter()
        .flat_map(|(req, resp)| rules.evaluate(req, Some(resp)).matched.into_iter().map(|m| m.id))
        .collect();
    for id in [4, 5, 6, 11, 12, 17] {
        assert!(matched.contains(&id), "rule {id} matched none of the requests: {matched:?}");
    }
}

/// The fuzz target's body over the seeds recombined a few thousand times.
#[test]
fn recombined_rules_are_refused_or_run_never_panic() {
    let words = words();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let (mut refused, mut ran) = (0, 0);
    for _ in 0..5000 {
        let text = recombined(&mut |n| rng.usize(..n.max(1)), &words);
        if check(text.as_bytes()) {
            ran += 1;
        } else {
            refused += 1;
        }
    }
    // Both halves are exercised: most edits break a rule, some leave one that still runs.
    assert!(refused > 100 && ran > 100, "{refused} refused, {ran} ran");
}

/// Inputs the `rules_eval` fuzz target found.
#[test]
fn fuzz_finds_stay_fixed() {
    let finds: [&[u8]; 3] = [b"", b"\0", b"SecRule ARGS \"@rx (\" \"id:1\""];
    for data in finds {
        check(data);
    }
}
