//! Unit tests of the SecLang front end: the grammar piece by piece, error locations, the
//! Display round trip, hostile inputs, and the loader's Include and data file handling.

use std::path::PathBuf;

use super::ast::*;
use super::{parse, parse_bytes, ErrorKind, Loader};

fn one_rule(src: &str) -> Rule {
    let file = parse(src, "t.conf").unwrap_or_else(|e| panic!("{src}: {}", errors_text(&e)));
    assert_eq!(file.directives.len(), 1, "{file:?}");
    match file.directives.into_iter().next().map(|d| d.kind) {
        Some(DirectiveKind::Rule(r)) => r,
        other => panic!("not a rule: {other:?}"),
    }
}

fn errors_text(e: &[super::Error]) -> String {
    e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

fn errors(src: &str) -> Vec<super::Error> {
    match parse(src, "t.conf") {
        Ok(f) => panic!("expected errors for {src:?}, parsed {f:?}"),
        Err(e) => e,
    }
}

fn targets(rule: &Rule) -> &[Target] {
    match &rule.head.kind {
        RuleKind::SecRule { targets, .. } => targets,
        RuleKind::SecAction => &[],
    }
}

fn operator(rule: &Rule) -> &Operator {
    match &rule.head.kind {
        RuleKind::SecRule { operator, .. } => operator,
        RuleKind::SecAction => panic!("SecAction has no operator"),
    }
}

fn kinds(rule: &Rule) -> Vec<ActionKind> {
    rule.head.actions.iter().map(|a| a.kind.clone()).collect()
}

/// Parse, print, parse again: the trees are equal and printing is a fixpoint.
fn assert_round_trip(src: &str) {
    let first = parse(src, "t.conf").unwrap_or_else(|e| panic!("{src}: {}", errors_text(&e)));
    let printed = first.to_string();
    let second = parse(&printed, "printed.conf").unwrap_or_else(|e| panic!("{printed}: {}", errors_text(&e)));
    assert_eq!(first, second, "round trip changed the tree:\n{src}\n---\n{printed}");
    assert_eq!(printed, second.to_string());
}

#[test]
fn continued_lines_and_quoted_arguments() {
    let rule = one_rule(
        "SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:a|b)\\\"x\" \\\n    \"id:920100,\\\n    phase:1,\\\n    block,\\\n    t:none,t:lowercase,\\\n    msg:'Invalid, really',\\\n    ver:'OWASP_CRS/4.28.0'\"\n",
    );
    assert_eq!(rule.id(), Some(920100));
    assert_eq!(rule.phase(), Some(Phase::RequestHeaders));
    assert_eq!(operator(&rule).literal_argument(), Some("^(?:a|b)\"x"));
    let t: Vec<_> = rule.head.transformations().collect();
    assert_eq!(t, [Transformation::None, Transformation::Lowercase]);
    assert!(kinds(&rule).contains(&ActionKind::Msg(MacroString::literal("Invalid, really"))));
    assert_eq!(rule.head.span.start.line, 1);
    assert_eq!(rule.head.span.end.line, 7);
}

#[test]
fn double_backslashes_stay_for_regexes() {
    let rule = one_rule(r#"SecRule ARGS "@rx a\\" "id:1""#);
    assert_eq!(operator(&rule).literal_argument(), Some(r"a\\"));
    let rule = one_rule(r#"SecRule ARGS "@rx [\\/]\d" "id:1""#);
    assert_eq!(operator(&rule).literal_argument(), Some(r"[\\/]\d"));
}

#[test]
fn comments_and_blank_lines_are_skipped() {
    let file = parse("# a comment \\\n still the comment\n\n   # indented\nSecMarker END\n", "t").unwrap();
    assert_eq!(file.directives.len(), 1);
    assert_eq!(file.directives[0].kind, DirectiveKind::Marker("END".into()));
    assert_eq!(file.directives[0].span.start.line, 5);
}

#[test]
fn variable_lists() {
    let rule = one_rule(
        "SecRule ARGS|!ARGS:foo|&TX:bar|REQUEST_HEADERS:/^(x-a|x-b)$/|XML:/*|REQUEST_COOKIES:'/__utm/'|ARGS_NAMES|args:'a b' \"@rx x\" \"id:1\"",
    );
    let t = targets(&rule);
    assert_eq!(t.len(), 8);
    assert_eq!((t[0].modifier, t[0].variable, &t[0].selector), (TargetModifier::None, Variable::Args, &None));
    assert_eq!(t[1].modifier, TargetModifier::Exclude);
    assert_eq!(t[1].selector, Some(Selector::Key("foo".into())));
    assert_eq!((t[2].modifier, t[2].variable), (TargetModifier::Count, Variable::Tx));
    assert_eq!(t[3].selector, Some(Selector::Regex("^(x-a|x-b)$".into())));
    assert_eq!(t[4].selector, Some(Selector::XPath("/*".into())));
    assert_eq!(t[5].selector, Some(Selector::Regex("__utm".into())));
    assert_eq!(t[6].variable, Variable::ArgsNames);
    assert_eq!((t[7].variable, &t[7].selector), (Variable::Args, &Some(Selector::Key("a b".into()))));
    assert_eq!(t[1].span.start.column, 14);
}

#[test]
fn operators() {
    let op = |src: &str| operator(&one_rule(&format!("SecRule ARGS {src} \"id:1\""))).clone();
    let o = op("\"foo|bar\"");
    assert_eq!((o.negated, o.kind, o.literal_argument()), (false, OperatorKind::Rx, Some("foo|bar")));
    let o = op("\"!@pm a b  c\"");
    assert_eq!((o.negated, o.kind), (true, OperatorKind::Pm));
    assert_eq!(o.words(), ["a", "b", "c"]);
    let o = op("\"@detectSQLi\"");
    assert_eq!((o.kind, o.literal_argument()), (OperatorKind::DetectSqli, Some("")));
    let o = op("\"!@within %{tx.allowed_methods}\"");
    assert!(o.negated);
    assert_eq!(
        o.argument.parts,
        [MacroPart::Var(MacroVar { variable: Variable::Tx, key: Some("allowed_methods".into()), tx_slot: None })]
    );
    let o = op("\"@pmf words.data\"");
    assert_eq!(o.kind, OperatorKind::PmFromFile);
    let e = errors("SecRule ARGS @eq \"id:1\"");
    assert!(matches!(e[0].kind, ErrorKind::InvalidOperatorArgument { operator: "eq", .. }));
}

#[test]
fn operator_argument_checks() {
    for bad in ["\"@eq x\"", "\"@validateByteRange 1-300\"", "\"@ipMatch 10.0.0.0/40\"", "\"@rx \"", "\"@detectXSS x\""]
    {
        let e = errors(&format!("SecRule ARGS {bad} \"id:1\""));
        assert!(matches!(e[0].kind, ErrorKind::InvalidOperatorArgument { .. }), "{bad}: {e:?}");
    }
    let e = errors("SecRule ARGS \"@nosuch x\" \"id:1\"");
    assert_eq!(e[0].kind, ErrorKind::UnknownOperator("nosuch".into()));
    assert_eq!(e[0].column(), 15);
}

#[test]
fn actions_are_typed() {
    let rule = one_rule(
        "SecAction \"id:900000,phase:request,pass,nolog,t:none,severity:'CRITICAL',\
         setvar:'tx.a=%{tx.b}',setvar:tx.score=+5,setvar:tx.x=-%{tx.y},setvar:!tx.gone,setvar:tx.flag,\
         ctl:ruleRemoveTargetById=942100;ARGS:foo,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=1-5,\
         skipAfter:END-X,status:403,capture,multiMatch,expirevar:ip.block=60,initcol:ip=%{remote_addr}_%{tx.ua_hash},\
         logdata:'Matched %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',tag:'paranoia-level/1',allow:phase\"",
    );
    let k = kinds(&rule);
    let tx = |k: &str| VarRef { collection: Variable::Tx, name: MacroString::literal(k) };
    let var = |v: Variable, key: &str| MacroPart::Var(MacroVar { variable: v, key: Some(key.into()), tx_slot: None });
    assert!(k.contains(&ActionKind::Phase(Phase::RequestBody)));
    assert!(k.contains(&ActionKind::Severity(Severity::Critical)));
    let b = MacroString { parts: vec![var(Variable::Tx, "b")] };
    assert!(k.contains(&ActionKind::SetVar(SetVar { var: tx("a"), op: SetVarOp::Set(b) })));
    assert!(k.contains(&ActionKind::SetVar(SetVar { var: tx("score"), op: SetVarOp::Add(MacroString::literal("5")) })));
    let y = MacroString { parts: vec![var(Variable::Tx, "y")] };
    assert!(k.contains(&ActionKind::SetVar(SetVar { var: tx("x"), op: SetVarOp::Sub(y) })));
    assert!(k.contains(&ActionKind::SetVar(SetVar { var: tx("gone"), op: SetVarOp::Delete })));
    assert!(k.contains(&ActionKind::SetVar(SetVar { var: tx("flag"), op: SetVarOp::Define })));
    let remove = k.iter().find_map(|a| match a {
        ActionKind::Ctl(Ctl::RuleRemoveTargetById(ids, t)) => Some((ids.clone(), t.clone())),
        _ => None,
    });
    let (ids, t) = remove.expect("ctl:ruleRemoveTargetById");
    assert_eq!(ids, [IdRange { start: 942100, end: 942100 }]);
    assert_eq!((t[0].variable, &t[0].selector), (Variable::Args, &Some(Selector::Key("foo".into()))));
    assert!(k.contains(&ActionKind::Ctl(Ctl::RuleEngine(EngineMode::DetectionOnly))));
    assert!(k.contains(&ActionKind::Ctl(Ctl::RuleRemoveById(vec![IdRange { start: 1, end: 5 }]))));
    assert!(k.contains(&ActionKind::SkipAfter("END-X".into())));
    assert!(k.contains(&ActionKind::Status(403)));
    assert!(k.contains(&ActionKind::Allow(AllowScope::Phase)));
    let logdata = k.iter().find_map(|a| match a {
        ActionKind::LogData(m) => Some(m.clone()),
        _ => None,
    });
    let logdata = logdata.expect("logdata");
    let vars: Vec<_> = logdata.vars().map(|v| v.variable).collect();
    assert_eq!(vars, [Variable::MatchedVarName, Variable::MatchedVar]);
    assert!(rule.head.actions.iter().any(|a| a.kind.is_disruptive()));
}

#[test]
fn chains_are_grouped() {
    let file = parse(
        "SecRule ARGS \"@rx a\" \"id:1,phase:2,deny,chain\"\n  SecRule ARGS \"@rx b\" \"chain\"\n  SecRule &TX:x \"@eq 0\" \"\"\nSecRule ARGS \"c\" \"id:2\"\n",
        "t",
    )
    .unwrap();
    let rules: Vec<_> = file.rules().collect();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].chain.len(), 2);
    assert_eq!(rules[0].parts().count(), 3);
    assert_eq!(file.directives[0].span.end.line, 3);
    assert!(rules[1].chain.is_empty());
    let e = errors("SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecMarker X\n");
    assert_eq!(e[0].kind, ErrorKind::DanglingChain);
    assert_eq!(e[0].line(), 1);
    let e = errors("SecRule ARGS \"@rx a\" \"id:1,chain\"\n");
    assert_eq!(e[0].kind, ErrorKind::DanglingChain);
}

#[test]
fn engine_settings_are_typed() {
    let file = parse(
        "SecRuleEngine DetectionOnly\nSecRequestBodyAccess On\nSecRequestBodyLimit 13107200\nSecRequestBodyLimitAction Reject\n\
         SecArgumentSeparator &\nSecCollectionTimeout 600\nSecComponentSignature \"OWASP_CRS/4.28.0\"\nSecAuditLogParts ABIJDEFHZ\n\
         SecDefaultAction \"phase:1,log,auditlog,pass\"\nSecResponseBodyMimeType text/plain text/html\nsecruleengine on\n",
        "t",
    )
    .unwrap();
    let k: Vec<_> = file.directives.iter().map(|d| d.kind.clone()).collect();
    assert_eq!(k[0], DirectiveKind::Setting(Setting::RuleEngine(EngineMode::DetectionOnly)));
    assert_eq!(k[1], DirectiveKind::Setting(Setting::Switch(SwitchDirective::RequestBodyAccess, true)));
    assert_eq!(k[2], DirectiveKind::Setting(Setting::Number(NumberDirective::RequestBodyLimit, 13107200)));
    assert_eq!(k[3], DirectiveKind::Setting(Setting::RequestBodyLimitAction(LimitAction::Reject)));
    assert_eq!(k[4], DirectiveKind::Setting(Setting::Text(TextDirective::ArgumentSeparator, "&".into())));
    assert_eq!(k[6], DirectiveKind::ComponentSignature("OWASP_CRS/4.28.0".into()));
    assert!(matches!(&k[8], DirectiveKind::DefaultAction(a) if a.len() == 4));
    assert_eq!(k[10], DirectiveKind::Setting(Setting::RuleEngine(EngineMode::On)));
    let e = errors("SecRuleEngine Maybe\nSecRequestBodyLimit lots\n");
    assert_eq!(e.len(), 2);
    assert!(matches!(e[0].kind, ErrorKind::InvalidDirectiveValue { directive: "SecRuleEngine", .. }));
}

/// The engine settings of the reference libmodsecurity3 setup (shared/reference/modsecurity.conf).
#[test]
fn reference_engine_configuration_parses() {
    let src = r#"SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecResponseBodyAccess Off
SecPcreMatchLimit 100000
SecPcreMatchLimitRecursion 100000
SecArgumentSeparator &
SecCookieFormat 0
SecTmpDir /tmp/
SecDataDir /tmp/
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" \
  "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \
  "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" \
  "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
"#;
    let file = parse(src, "modsecurity.conf").unwrap_or_else(|e| panic!("{}", errors_text(&e)));
    assert_eq!(file.directives.len(), 17);
    assert_eq!(file.rules().filter_map(Rule::id).collect::<Vec<_>>(), [200000, 200001, 200002]);
    assert_round_trip(src);
}

#[test]
fn rule_maintenance_directives() {
    let file = parse(
        "SecRuleRemoveById 920100 920200-920299\nSecRuleRemoveByTag attack-sqli\n\
         SecRuleUpdateTargetById 942100 \"!ARGS:password\"\nSecRuleUpdateTargetByTag attack-xss !REQUEST_COOKIES:/^_ga/\n\
         SecRuleUpdateActionById 949110 \"t:none,deny,status:403\"\nInclude rules/*.conf\n",
        "t",
    )
    .unwrap();
    let k: Vec<_> = file.directives.iter().map(|d| d.kind.clone()).collect();
    assert_eq!(
        k[0],
        DirectiveKind::RemoveById(vec![IdRange { start: 920100, end: 920100 }, IdRange { start: 920200, end: 920299 }])
    );
    assert!(matches!(&k[2], DirectiveKind::UpdateTarget { selector: RuleSelector::Ids(ids), targets, .. }
        if ids[0].start == 942100 && targets[0].modifier == TargetModifier::Exclude));
    assert!(matches!(&k[3], DirectiveKind::UpdateTarget { selector: RuleSelector::Tag(t), .. } if t == "attack-xss"));
    assert!(matches!(&k[4], DirectiveKind::UpdateActionById { id: 949110, actions, .. } if actions.len() == 3));
    assert_eq!(k[5], DirectiveKind::Include { path: "rules/*.conf".into(), optional: false });
}

#[test]
fn errors_point_at_the_broken_spot() {
    let src = "SecRuleEngine On\n\nSecRule ARGS \"@rx x\" \\\n    \"id:1,\\\n    phase:2,\\\n    frobnicate,\\\n    t:lowercase\"\nSecRul ARGS \"x\"\nSecRule ARGS|NOPE \"x\" \"id:3\"\nSecRule ARGS \"x\" \"id:4,t:upcase\"\nSecAction \"id:5,msg:'open\"\n";
    let e = errors(src);
    let got: Vec<(usize, usize, String)> = e.iter().map(|e| (e.line(), e.column(), e.kind.to_string())).collect();
    assert_eq!(
        got,
        [
            (6, 5, "unknown action `frobnicate`".to_string()),
            (8, 1, "unknown directive `SecRul`".to_string()),
            (9, 14, "unknown variable `NOPE`".to_string()),
            (10, 24, "unknown transformation `upcase`".to_string()),
            (11, 21, "missing closing ' quote".to_string()),
        ]
    );
    assert_eq!(e[0].to_string(), "t.conf:6:5: unknown action `frobnicate`");
}

#[test]
fn more_error_kinds() {
    let cases: &[(&str, usize, usize)] = &[
        ("SecRule ARGS \"x\" \"id:1", 1, 18),
        ("SecRule ARGS \"x\"\"id:1\"", 1, 17),
        ("SecRule ARGS", 1, 1),
        ("SecRule ARGS \"x\" \"id:1\" extra", 1, 25),
        ("SecRule ARGS a\"b \"id:1\"", 1, 15),
        ("SecRule ARGS a\\ \"id:1\"", 1, 15),
        ("SecRule ARGS \"x\" \"id:1,msg:a\\ \"", 1, 28),
        ("SecRule ARGS \"x\" \"id:0\"", 1, 19),
        ("SecRule ARGS \"x\" \"id:1,\"", 1, 23),
        ("SecRule ARGS \"x\" \"id:1,phase:9\"", 1, 24),
        ("SecRule ARGS \"x\" \"id:1,setvar:tx\"", 1, 24),
        ("SecRule ARGS \"x\" \"id:1,msg:'%{nope.x}'\"", 1, 24),
        ("SecRule ARGS \"x\" \"id:1,ctl:nope=1\"", 1, 24),
        ("SecRule ARGS \"x\" \"id:1,deny:now\"", 1, 24),
        ("SecRule !ARGS \"x\" \"id:1\"", 1, 9),
        ("SecRule REQUEST_URI:x \"x\" \"id:1\"", 1, 9),
        ("SecRule ARGS:/x \"x\" \"id:1\"", 1, 14),
        ("SecRule ARGS||ARGS \"x\" \"id:1\"", 1, 14),
    ];
    for &(src, line, column) in cases {
        let e = errors(src);
        assert_eq!((e[0].line(), e[0].column()), (line, column), "{src}: {}", errors_text(&e));
    }
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let e = errors("Foo\nBar\nSecRule ARGS \"x\" \"id:1,a,b\"\n");
    assert_eq!(e.len(), 4, "{}", errors_text(&e));
}

#[test]
fn invalid_utf8_is_an_error_with_a_position() {
    let e = parse_bytes(b"SecMarker A\nSecMarker \xff\n", "t").unwrap_err();
    assert_eq!((e[0].kind.clone(), e[0].line(), e[0].column()), (ErrorKind::InvalidUtf8, 2, 11));
}

#[test]
fn round_trip_of_a_rich_file() {
    assert_round_trip(
        r#"
SecRuleEngine On
SecComponentSignature "OWASP_CRS/4.28.0"
SecDefaultAction "phase:2,log,auditlog,pass"
SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1"
SecRule REQUEST_HEADERS:User-Agent|!REQUEST_HEADERS:Referer|&ARGS:x|REQUEST_COOKIES:/__utm/|XML:/* "!@pm foo bar" \
    "id:913100,phase:2,block,capture,t:none,t:lowercase,msg:'It\'s %{tx.0}, ok',\
    logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',\
    tag:'application-multi',ver:'OWASP_CRS/4.28.0',severity:'CRITICAL',\
    ctl:ruleRemoveTargetById=942100;ARGS:foo,\
    setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}',chain"
    SecRule MATCHED_VARS "@rx \"quoted\" \\ and \\\\" "setvar:!tx.x,expirevar:ip.block=60"
SecMarker "END-HOST-CHECK"
SecRuleUpdateTargetById 942100-942200 "!ARGS:'a b'"
SecRuleRemoveByTag "attack-sqli"
Include "other file.conf"
"#,
    );
}

/// Inputs that have broken parsers before; none may panic, whatever the result.
#[test]
fn hostile_inputs_do_not_panic() {
    let inputs: &[&[u8]] = &[
        b"",
        b"\\",
        b"\\\n",
        b"\"",
        b"'",
        b"SecRule",
        b"SecRule \"",
        b"SecRule '",
        b"SecRule A\\\n",
        b"SecRule ARGS:' \"x\"",
        b"SecRule ARGS:/ \"x\"",
        b"SecRule ARGS:/\\ \"x\"",
        b"SecRule ARGS \"@\" \"id:1\"",
        b"SecRule ARGS \"!\" \"id:1\"",
        b"SecRule ARGS \"@rx\" \"id:1\"",
        b"SecRule ARGS \"x\" \":\"",
        b"SecRule ARGS \"x\" \"id:'\"",
        b"SecRule ARGS \"x\" \"msg:%{\"",
        b"SecRule ARGS \"x\" \"msg:%{tx.\"",
        b"SecRule ARGS \"x\" \"msg:%{}\"",
        b"SecRule ARGS \"x\" \"setvar:=\"",
        b"SecRule ARGS \"x\" \"setvar:!\"",
        b"SecRule ARGS \"x\" \"ctl:=\"",
        b"SecRule ARGS \"x\" \"ctl:ruleRemoveTargetById=;\"",
        b"SecRule ARGS \"x\" \"ctl:ruleRemoveTargetById=1;\"",
        b"SecRule ARGS \"x\" \"severity:999999999999\"",
        b"SecRule ARGS \"x\" \"id:99999999999999999999999\"",
        b"SecRule ARGS \"@validateByteRange -\" \"id:1\"",
        b"SecRule ARGS \"@ipMatch /\" \"id:1\"",
        b"SecRule ARGS \"@eq \xc3\xa9\" \"id:1\"",
        b"SecRule ARGS:\xc3\xa9 \"x\xe2\x82\xac\" \"msg:'\xf0\x9f\x92\xa5,',id:1\"",
        b"SecRule ARGS:/\\\xc3\xa9/ \"x\" \"id:1\"",
        b"SecRuleRemoveById -",
        b"SecRuleRemoveById",
        b"SecResponseBodyMimeType",
        b"SecRuleUpdateTargetById",
        b"SecResponseBodyMimeTypesClear x",
        b"SecRuleRemoveById 5-1",
        b"SecRuleUpdateActionById 1: \"id:1\"",
        b"SecRuleUpdateActionById 1:x \"id:1\"",
        b"\xff\xfe",
        b"SecAction \"chain\"\nSecAction \"chain\"",
        b"SecRule ARGS \"x\" \"id:1,chain\"\nSecRule ARGS \"x\" \"bad\"\nSecMarker A",
        b"\r\n\r\n\\\r\n",
        b"SecMarker \"\\\\\"",
        b"SecMarker a\\",
        b"SecAction msg:a\\",
    ];
    for input in inputs {
        if let Ok(file) = parse_bytes(input, "hostile") {
            let printed = file.to_string();
            let again = parse(&printed, "printed").unwrap_or_else(|e| panic!("{input:?} -> {printed:?}: {e:?}"));
            assert_eq!(file, again, "{input:?} -> {printed:?}");
        }
    }
}

/// A small deterministic fuzzer: mutate a rule file byte by byte, check no panic and the round
/// trip of whatever parses. The cargo-fuzz target does the same without bounds.
#[test]
fn mutated_rules_never_panic_and_round_trip() {
    let seed = br#"SecRule REQUEST_HEADERS:User-Agent|!ARGS:'a b'|&TX:x|ARGS:/^x/ "!@pm a b" \
    "id:1,phase:2,t:none,msg:'m, %{tx.0}',setvar:'tx.s=+%{tx.c}',ctl:ruleRemoveTargetById=1;ARGS:x,chain"
    SecRule ARGS "@rx \"q\" \\" "capture"
SecAction "id:2,nolog,pass,setvar:!tx.x"
SecMarker END
"#;
    let alphabet = b"\"'\\\n :,|!&@%{}/=-+;#xX\t";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut input = seed.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() % input.len() as u64) as usize;
            match next() % 3 {
                0 => input[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => {
                    input.remove(at);
                }
                _ => input.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
            }
        }
        if let Ok(file) = parse_bytes(&input, "mutant") {
            let printed = file.to_string();
            let input = String::from_utf8_lossy(&input);
            let again = parse(&printed, "printed").unwrap_or_else(|e| panic!("{input}\n->\n{printed}\n{e:?}"));
            assert_eq!(file, again, "{input}\n->\n{printed}");
        }
    }
}

#[test]
fn macro_strings() {
    let m = MacroString::parse("a %{tx.x} b %{MATCHED_VAR} %{ %{2} %{tx.}", true).unwrap();
    assert_eq!(m.vars().count(), 2);
    assert_eq!(m.to_string(), "a %{TX.x} b %{MATCHED_VAR} %{ %{2} %{tx.}");
    assert_eq!(MacroString::parse("%{nope}", true), Err("nope".to_string()));
    assert_eq!(MacroString::parse("%{nope}", false).unwrap().as_literal(), Some("%{nope}"));
    assert_eq!(MacroString::parse("%{request_uri.x}", false).unwrap().as_literal(), Some("%{request_uri.x}"));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("barbican-waf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn loader_expands_includes_and_reads_data_files() {
    let dir = TempDir::new("include");
    let main = dir
        .write("main.conf", "SecRuleEngine On\nInclude rules/*.conf\nIncludeOptional nothing/*.conf\nSecMarker END\n");
    dir.write("rules/b.conf", "SecRule ARGS \"@pmFromFile words.data\" \"id:2\"\n");
    dir.write("rules/a.conf", "SecRule REMOTE_ADDR \"@ipMatchFromFile ips.data\" \"id:1\"\n");
    dir.write("rules/ignored.txt", "not rules");
    dir.write("rules/words.data", "# comment\nfoo\r\n\nbar baz\n");
    dir.write("rules/ips.data", "10.0.0.0/8\n::1\n");
    let set = super::load(&main).unwrap_or_else(|e| panic!("{}", errors_text(&e)));
    let ids: Vec<_> = set.rules().map(|(_, r)| r.id()).collect();
    assert_eq!(ids, [Some(1), Some(2)]);
    assert_eq!(set.directives.len(), 4);
    let (file, _) = set.rules().nth(1).unwrap();
    assert!(set.path(file).unwrap().ends_with("rules/b.conf"));
    let words = set.data_file(file, "words.data").expect("data file");
    assert_eq!(words.entries, ["foo", "bar baz"]);
    assert_eq!(set.data_files.len(), 2);
}

#[test]
fn loader_reports_cycles_missing_files_and_duplicate_ids() {
    let dir = TempDir::new("cycle");
    let a = dir.write("a.conf", "SecRule ARGS \"x\" \"id:1\"\nInclude b.conf\n");
    dir.write("b.conf", "SecMarker B\n\nInclude a.conf\n");
    let e = super::load(&a).unwrap_err();
    assert!(matches!(&e[0].kind, ErrorKind::IncludeCycle(_)), "{}", errors_text(&e));
    assert!(e[0].origin.ends_with("b.conf"));
    assert_eq!(e[0].line(), 3);

    let c = dir.write("c.conf", "Include missing/*.conf\nSecRule ARGS \"@pmFromFile nope.data\" \"id:1\"\n");
    let e = super::load(&c).unwrap_err();
    assert_eq!(e.len(), 2, "{}", errors_text(&e));
    assert!(matches!(&e[0].kind, ErrorKind::IncludeNotFound(_)));
    assert!(matches!(&e[1].kind, ErrorKind::Io { .. }));
    assert_eq!(e[1].line(), 2);

    let d = dir.write("d.conf", "SecRule ARGS \"x\" \"id:7\"\nSecAction \"id:7\"\n");
    let e = super::load(&d).unwrap_err();
    assert_eq!(e[0].line(), 2, "{}", errors_text(&e));
    assert!(matches!(&e[0].kind, ErrorKind::DuplicateId { id: 7, first } if first.ends_with("d.conf:1:1")));

    let mut loader = Loader::new();
    loader.load_str(&dir.0.join("inline.conf"), "SecRule ARGS \"x\" \"id:8\"");
    assert_eq!(loader.finish().unwrap().rules().count(), 1);
}

#[test]
fn wildcards() {
    use super::loader::wildcard;
    assert!(wildcard("*.conf", "REQUEST-901.conf"));
    assert!(!wildcard("*.conf", "x.conf.example"));
    assert!(!wildcard("*.conf", ".hidden.conf"));
    assert!(wildcard("REQUEST-9[0-4]?-*.conf", "REQUEST-942-X.conf"));
    assert!(!wildcard("REQUEST-9[!0-4]?-*.conf", "REQUEST-942-X.conf"));
    assert!(wildcard("a[", "a["));
    assert!(wildcard("*", ""));
}

/// Every directive the parser lists as known is accepted by name (case-insensitively); its
/// argument may be wrong, but it is never an unknown directive.
#[test]
fn every_known_directive_is_recognised() {
    for name in directive_names() {
        for spelled in [name.to_string(), name.to_ascii_lowercase()] {
            let src = format!("{spelled} On\n");
            if let Err(e) = parse(&src, "t") {
                assert!(
                    e.iter().all(|e| !matches!(e.kind, ErrorKind::UnknownDirective(_))),
                    "{spelled}: {}",
                    errors_text(&e)
                );
            }
        }
    }
    assert!(matches!(&errors("SecRuleScript x.lua")[0].kind, ErrorKind::Unsupported(_)));
}

#[test]
fn operator_arguments_have_typed_views() {
    let typed = |src: &str| operator(&one_rule(&format!("SecRule ARGS \"{src}\" \"id:1\""))).clone();
    assert_eq!(typed("@rx ^a+$").typed(), OperatorArg::Regex("^a+$"));
    assert_eq!(typed("@pm a  b").typed(), OperatorArg::Phrases(vec!["a", "b"]));
    assert_eq!(typed("@pmFromFile x.data y.data").typed(), OperatorArg::Files(vec!["x.data", "y.data"]));
    assert_eq!(typed("@ipMatch 10.0.0.0/8,::1").typed(), OperatorArg::Networks(vec!["10.0.0.0/8", "::1"]));
    assert_eq!(
        typed("@validateByteRange 9,10-13,32-126").typed(),
        OperatorArg::ByteRanges(vec![9..=9, 10..=13, 32..=126])
    );
    assert_eq!(typed("@ge 5").typed(), OperatorArg::Integer(5));
    assert_eq!(typed("@detectSQLi").typed(), OperatorArg::None);
    let o = typed("@eq %{tx.limit}");
    assert!(matches!(o.typed(), OperatorArg::Text(m) if m.has_macros()));
}

/// A huge one-line rule parses in linear time (positions are counted incrementally).
#[test]
fn long_lines_parse_in_linear_time() {
    let actions: Vec<String> = (0..20_000).map(|i| format!("tag:'t{i}'")).collect();
    let src = format!("SecRule ARGS \"@rx x\" \"id:1,{}\"", actions.join(","));
    let started = std::time::Instant::now();
    let rule = one_rule(&src);
    assert_eq!(rule.head.actions.len(), 20_001);
    assert!(rule.head.actions[20_000].span.start.column > 200_000);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}
