//! Folding (`transaction::fold`): rules whose outcome is the same for every request are run
//! at compile time, and transactions get what the rules as written give.

use super::*;

/// The rule set as written, nothing folded.
fn unfolded(mut rs: RuleSet) -> RuleSet {
    rs.folded = Default::default();
    rs
}

/// The ids of the rules a phase's folded steps still run, and of those they replay.
fn step_ids(rs: &RuleSet, phase: usize) -> (Vec<u64>, Vec<u64>) {
    let f = rs.folded[phase].as_ref().expect("the phase is folded");
    let (mut run, mut replayed) = (Vec::new(), Vec::new());
    for step in &f.steps {
        match step {
            compile::Step::Rule(i, _) => run.push(rs.rules[*i].id),
            compile::Step::Replay(i, _) => replayed.push(rs.rules[*i].id),
            compile::Step::Set(_) | compile::Step::Marker(_) => {}
        }
    }
    (run, replayed)
}

fn folded_ids(rs: &RuleSet, phase: usize) -> Vec<u64> {
    step_ids(rs, phase).0
}

fn replayed_ids(rs: &RuleSet, phase: usize) -> Vec<u64> {
    step_ids(rs, phase).1
}

fn get(uri: &str) -> Request {
    Request::new("GET", uri)
}

#[test]
fn a_paranoia_check_folds_away_with_the_rules_it_skips() {
    let text = r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=PL"
SecRule TX:PL "@lt 2" "id:2,phase:1,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@rx attack" "id:3,phase:1,pass,log"
SecMarker END-PL2
SecRule ARGS "@rx attack" "id:4,phase:1,pass,log""#;
    let at_1 = rules(&text.replace("PL\"", "1\""));
    assert_eq!(folded_ids(&at_1, 0), vec![4], "the SecAction, the check and the rule it skips are folded");
    assert_eq!(ids(&at_1.evaluate(&get("/?a=attack"), None)), vec![4]);
    assert_eq!(pl_after(&at_1, &get("/")).as_deref(), Some(&b"1"[..]));
    let at_2 = rules(&text.replace("PL\"", "2\""));
    assert_eq!(folded_ids(&at_2, 0), vec![3, 4]);
    assert_eq!(ids(&at_2.evaluate(&get("/?a=attack"), None)), vec![3, 4]);
}

/// `TX:pl` once the request phases ran.
fn pl_after(rs: &RuleSet, req: &Request) -> Option<Vec<u8>> {
    let mut t = Transaction::new(rs);
    t.process_request(req.clone());
    t.tx("pl").map(<[u8]>::to_vec)
}

#[test]
fn a_rule_left_to_run_makes_what_it_sets_unknown() {
    // Rule 3 reads tx.a after rule 2 may have changed it: it cannot be folded. Rule 5 reads
    // tx.b, set again by a SecAction after rule 2 (known again), and folds.
    let rs = rules(
        r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1,setvar:tx.b=1"
SecRule ARGS:x "@rx y" "id:2,phase:1,pass,nolog,setvar:tx.a=2,setvar:tx.b=2"
SecRule TX:a "@eq 2" "id:3,phase:1,pass,nolog,setvar:tx.hit=1"
SecAction "id:4,phase:1,pass,nolog,setvar:tx.b=3"
SecRule TX:b "@eq 3" "id:5,phase:2,pass,nolog,setvar:tx.c=1"
SecRule TX:hit "@eq 1" "id:6,phase:2,pass,log"
SecRule TX:c "@eq 1" "id:7,phase:2,pass,log""#,
    );
    assert_eq!(folded_ids(&rs, 0), vec![2, 3]);
    assert_eq!(folded_ids(&rs, 1), vec![6, 7], "rules that log run; rule 5 folds");
    assert_eq!(ids(&rs.evaluate(&get("/?x=y"), None)), vec![6, 7]);
    assert_eq!(ids(&rs.evaluate(&get("/?x=z"), None)), vec![7]);
}

#[test]
fn a_rule_reading_a_variable_before_a_folded_rule_sets_it_sees_the_old_value() {
    let rs = rules(
        r#"SecRule ARGS:x "@rx ." "id:1,phase:1,pass,nolog,setvar:tx.n=%{tx.v}"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.v=late"
SecRule TX:n "@streq late" "id:3,phase:1,pass,log"
SecRule TX:v "@streq late" "id:4,phase:1,pass,log""#,
    );
    assert_eq!(ids(&rs.evaluate(&get("/?x=1"), None)), vec![4]);
}

/// The outcome, checked against the rules as written, and whether the transaction stayed on
/// the folded steps to the end (of both request phases).
fn run_both(rs: &RuleSet, written: &RuleSet, req: &Request) -> (Vec<u64>, bool) {
    let mut t = Transaction::new(rs);
    t.process_request(req.clone());
    let stayed = t.folded_through() == 2;
    let outcome = t.finish();
    assert_eq!(outcome, written.evaluate(req, None), "{req:?}");
    (ids(&outcome), stayed)
}

#[test]
fn a_rule_that_jumps_at_run_time_lands_in_the_folded_steps() {
    // Rule 2 may skip the SecAction 3: at END tx.a is 1 or 2 and tx.b unset or 1, so rules 4
    // and 10 run, while the SecAction 5 after END folds. Rule 6 may skip the SecAction 7: tx.c
    // is 1 or 2 after it, so rule 8 runs.
    let text = r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1"
SecRule ARGS:skip "@eq 1" "id:2,phase:1,pass,nolog,skipAfter:END"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.a=2,setvar:tx.b=1"
SecMarker END
SecRule TX:a "@eq 2" "id:4,phase:1,pass,nolog,setvar:tx.hit=1"
SecAction "id:5,phase:1,pass,nolog,setvar:tx.c=1"
SecRule ARGS:skip "@eq 2" "id:6,phase:1,pass,nolog,skip:1"
SecAction "id:7,phase:1,pass,nolog,setvar:tx.c=2"
SecRule TX:c "@eq 2" "id:8,phase:2,pass,log"
SecRule &TX:hit "@eq 0" "id:9,phase:2,pass,log"
SecRule TX:b "@eq 1" "id:10,phase:2,pass,log""#;
    let (rs, written) = (rules(text), unfolded(rules(text)));
    assert_eq!(folded_ids(&rs, 0), vec![2, 4, 6]);
    assert_eq!(folded_ids(&rs, 1), vec![8, 9, 10]);
    assert_eq!(run_both(&rs, &written, &get("/?skip=0")), (vec![8, 10], true));
    assert_eq!(run_both(&rs, &written, &get("/?skip=1")), (vec![8, 9], true));
    assert_eq!(run_both(&rs, &written, &get("/?skip=2")), (vec![10], true));
}

#[test]
fn a_jump_past_where_the_folded_steps_go_leaves_them_for_good() {
    // Rule 3 skips rule 4 in every transaction (folded), so the folded steps never come to
    // MID: a transaction whose rule 1 jumps there runs the rules as written from there on,
    // in the later phase too (there rule 7 logs: folded, it would not).
    let text = r#"SecAction "id:2,phase:1,pass,nolog,setvar:tx.pl=1"
SecRule ARGS:skip "@eq 1" "id:1,phase:1,pass,nolog,skipAfter:MID"
SecRule TX:pl "@lt 2" "id:3,phase:1,pass,nolog,setvar:tx.checked=1,skipAfter:END"
SecAction "id:4,phase:1,pass,nolog,setvar:tx.pl=2"
SecMarker MID
SecRule ARGS "@rx ." "id:5,phase:1,pass,log"
SecMarker END
SecRule &TX:checked "@eq 0" "id:7,phase:2,pass,log""#;
    let (rs, written) = (rules(text), unfolded(rules(text)));
    assert_eq!(folded_ids(&rs, 0), vec![1]);
    assert_eq!(folded_ids(&rs, 1), Vec::<u64>::new());
    assert_eq!(run_both(&rs, &written, &get("/?skip=0")), (vec![], true));
    assert_eq!(run_both(&rs, &written, &get("/?skip=1")), (vec![5, 7], false));
}

#[test]
fn a_check_decided_at_compile_time_folds_whatever_its_setvars_read() {
    // The anomaly sums of CRS: `TX:paranoia "@ge 2"` misses at paranoia 1, and its setvar,
    // which reads a score only known at run time, never runs: the rule folds away. At
    // paranoia 2 it matches in every transaction: it is replayed, its match recorded and its
    // setvar run, without its check.
    let text = r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.paranoia=PL"
SecRule ARGS:x "@rx ." "id:2,phase:1,pass,nolog,setvar:tx.score_pl2=+5"
SecRule TX:paranoia "@ge 2" "id:3,phase:1,pass,nolog,setvar:tx.sum=+%{tx.score_pl2},setvar:tx.var=%{matched_var_name}"
SecRule TX:sum "@gt 0" "id:4,phase:2,pass,log,logdata:%{tx.var}""#;
    let at = |pl: &str| {
        (rules(&text.replace("PL\"", &format!("{pl}\""))), unfolded(rules(&text.replace("PL\"", &format!("{pl}\"")))))
    };
    let (at_1, written_1) = at("1");
    assert_eq!(folded_ids(&at_1, 0), vec![2]);
    assert_eq!(replayed_ids(&at_1, 0), Vec::<u64>::new());
    assert_eq!(run_both(&at_1, &written_1, &get("/?x=1")), (vec![], true));
    let (at_2, written_2) = at("2");
    assert_eq!(folded_ids(&at_2, 0), vec![2]);
    assert_eq!(replayed_ids(&at_2, 0), vec![3]);
    assert_eq!(run_both(&at_2, &written_2, &get("/?x=1")), (vec![4], true));
    assert_eq!(at_2.evaluate(&get("/?x=1"), None).matched[0].data, "TX:paranoia");
    assert_eq!(run_both(&at_2, &written_2, &get("/?y=1")), (vec![], true));
}

#[test]
fn removing_a_folded_rule_at_run_time_goes_back_to_the_rules_as_written() {
    let rs = rules(
        r#"SecRule ARGS:rm "@eq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=2"
SecRule ARGS:rm "@eq 2" "id:3,phase:1,pass,nolog,ctl:ruleRemoveTargetById=4;TX:c"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.c=1"
SecRule TX:c "@eq 1" "id:4,phase:1,pass,log"
SecRule &TX:c "@eq 1" "id:5,phase:2,pass,log""#,
    );
    assert_eq!(folded_ids(&rs, 0), vec![1, 3, 4]);
    assert_eq!(ids(&rs.evaluate(&get("/?rm=0"), None)), vec![4, 5]);
    // In phase 2 as well, the phases as written run.
    assert_eq!(ids(&rs.evaluate(&get("/?rm=1"), None)), Vec::<u64>::new());
    assert_eq!(ids(&rs.evaluate(&get("/?rm=2"), None)), vec![5]);
}

#[test]
fn removing_a_rule_left_to_run_keeps_the_folded_steps() {
    // CRS removes 920540 for every JSON request (920539): a rule the folding left to run, so
    // the folded steps, which allowed for it doing nothing, still hold.
    let text = r#"SecRule ARGS:rm "@eq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=3"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.c=1"
SecRule ARGS:x "@rx ." "id:3,phase:1,pass,log,setvar:tx.c=2"
SecRule TX:c "@eq 2" "id:4,phase:2,pass,log"
SecAction "id:5,phase:2,pass,nolog,setvar:tx.d=1"
SecRule TX:d "@eq 1" "id:6,phase:2,pass,log""#;
    let (rs, written) = (rules(text), unfolded(rules(text)));
    assert_eq!(folded_ids(&rs, 0), vec![1, 3]);
    assert_eq!(folded_ids(&rs, 1), vec![4, 6]);
    assert_eq!(run_both(&rs, &written, &get("/?rm=0&x=1")), (vec![3, 4, 6], true));
    assert_eq!(run_both(&rs, &written, &get("/?rm=1&x=1")), (vec![6], true));
}

#[test]
fn folded_matches_count_in_matched_vars() {
    // libmodsecurity3 keeps the matches of consecutive matching rules in MATCHED_VARS: the
    // SecAction's, ARGS:a, TX:k, ARGS:b.
    let rs = rules(
        r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.k=v"
SecRule ARGS:a "@rx ." "id:2,phase:1,pass,nolog"
SecRule TX:k "@rx v" "id:3,phase:1,pass,nolog"
SecRule ARGS:b "@rx ." "id:4,phase:1,pass,log,chain"
    SecRule &MATCHED_VARS "@eq 4" "t:none""#,
    );
    assert_eq!(folded_ids(&rs, 0), vec![2, 4]);
    assert_eq!(ids(&rs.evaluate(&get("/?a=1&b=1"), None)), vec![4]);
    assert_eq!(ids(&rs.evaluate(&get("/?b=1"), None)), Vec::<u64>::new());
}

#[test]
fn a_setvar_with_a_macro_name_makes_every_key_it_can_make_unknown() {
    let rs = rules(
        r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.lvl=1,setvar:tx.other=1"
SecRule ARGS:m "@rx ^(\w+)$" "id:2,phase:1,pass,nolog,capture,setvar:tx.x_%{tx.1}=2"
SecRule TX:other "@eq 1" "id:3,phase:1,pass,nolog,setvar:tx.ok=1"
SecRule ARGS:n "@rx ^(\w+)$" "id:4,phase:1,pass,nolog,capture,setvar:tx.%{tx.1}=2"
SecRule TX:lvl "@eq 2" "id:5,phase:1,pass,log"
SecRule TX:ok "@eq 1" "id:6,phase:1,pass,log""#,
    );
    // `x_...` cannot make tx.other: rule 3 folds; any name can come of rule 4's.
    assert_eq!(folded_ids(&rs, 0), vec![2, 4, 5, 6]);
    assert_eq!(ids(&rs.evaluate(&get("/?n=lvl"), None)), vec![5, 6]);
    assert_eq!(ids(&rs.evaluate(&get("/?m=other&n=ok"), None)), Vec::<u64>::new());
}

#[test]
fn phase_five_runs_as_written_unless_every_phase_ran_on_the_folded_steps() {
    // Phase 5 also runs after an interruption, and when the response phases did not run:
    // then what the phases before it set is not what the folding saw.
    let rs = rules(
        r#"SecRuleEngine On
SecRule ARGS:deny "@eq 1" "id:1,phase:1,deny,status:403,log"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.ran=1"
SecAction "id:3,phase:3,pass,nolog,setvar:tx.response=1"
SecRule &TX:ran "@eq 0" "id:4,phase:5,pass,nolog,setvar:tx.short=1"
SecRule &TX:response "@eq 0" "id:5,phase:5,pass,nolog,setvar:tx.short=1"
SecRule TX:short "@eq 1" "id:6,phase:5,pass,log""#,
    );
    assert_eq!(folded_ids(&rs, 4), Vec::<u64>::new(), "on the folded path, phase 5 does nothing");
    let response = Response::new(200);
    assert_eq!(ids(&rs.evaluate(&get("/?deny=0"), Some(&response))), Vec::<u64>::new());
    assert_eq!(ids(&rs.evaluate(&get("/?deny=1"), Some(&response))), vec![1, 6]);
    assert_eq!(ids(&rs.evaluate(&get("/?deny=0"), None)), vec![6]);
}

/// CRS folded and as written give the same outcomes (verdicts, scores, every matched rule
/// with its message and data), 4.28.0 and Debian's 3.3.4 at paranoia levels 1 and 4, on
/// attacks, benign requests, a response, and a request whose `ctl:ruleRemoveByTag` removes
/// folded rules (905100).
#[test]
fn folding_changes_no_outcome_on_crs() {
    let mut requests = crs_requests();
    requests.push(Request::new("GET", "/").remote_addr([127, 0, 0, 1].into()));
    let response = Response::new(200).header("Content-Type", "text/html").body("<b>Warning</b>: mysql_connect()");
    let load = |version, paranoia| if version == "4.28.0" { crs(paranoia) } else { crs3(paranoia) };
    for (version, paranoia) in [("4.28.0", 1), ("4.28.0", 4), ("3.3.4", 1), ("3.3.4", 4)] {
        let folded = load(version, paranoia);
        let written = unfolded(load(version, paranoia));
        let kept: usize = folded.folded.iter().flatten().map(|f| f.steps.len()).sum();
        let all: usize = written.phases[..4].iter().map(Vec::len).sum();
        // The paranoia checks drop the rules above the level (seen: 4.28.0 keeps 302 of 741
        // steps at 1 and 478 at 4, 3.3.4 213 and 311 of 782).
        let most = if paranoia == 1 { all / 2 } else { all * 9 / 10 };
        assert!(kept < most, "CRS {version} at paranoia {paranoia}: {kept} of {all} steps kept");
        for (i, req) in requests.iter().enumerate() {
            for resp in [None, Some(&response)] {
                let (a, b) = (folded.evaluate(req, resp), written.evaluate(req, resp));
                assert_eq!(a, b, "CRS {version} at paranoia {paranoia}, request {i}, response {}", resp.is_some());
            }
        }
    }
}

/// With no response body ever read, `RESPONSE_BODY` is empty in every transaction: the rules
/// that look for something in it miss whatever the response, chained ones too, and fold away.
/// A rule that can turn body access on (`ctl:responseBodyAccess=On`) keeps them.
#[test]
fn response_body_rules_fold_away_only_when_no_body_is_read() {
    let body_rules = r#"SecRuleEngine On
SecRule RESPONSE_BODY "@contains secret" "id:1,phase:4,deny,status:403,capture"
SecRule RESPONSE_STATUS "!@rx ^404$" "id:2,phase:4,deny,status:502,capture,chain"
    SecRule RESPONSE_BODY "@contains leak" "t:none"
"#;
    let leaking = Response::new(200).header("Content-Type", "text/html").body("a secret leak");
    let inspect = get("/").header("X-Inspect", "1");

    let off = rules(&format!("SecResponseBodyAccess Off\n{body_rules}"));
    assert_eq!(folded_ids(&off, 3), Vec::<u64>::new());
    assert_eq!(off.evaluate(&inspect, Some(&leaking)).verdict, Verdict::Pass);

    let on = rules(&format!("SecResponseBodyAccess On\n{body_rules}"));
    assert_eq!(folded_ids(&on, 3), vec![1, 2]);
    assert_eq!(on.evaluate(&inspect, Some(&leaking)).verdict, Verdict::Block { status: 403, rule_id: 1 });

    let switched = rules(&format!(
        "SecResponseBodyAccess Off\n{body_rules}\
         SecRule REQUEST_HEADERS:X-Inspect \"@streq 1\" \"id:3,phase:1,pass,nolog,ctl:responseBodyAccess=On\""
    ));
    assert_eq!(folded_ids(&switched, 3), vec![1, 2]);
    assert_eq!(switched.evaluate(&get("/"), Some(&leaking)).verdict, Verdict::Pass);
    let second = Response::new(200).header("Content-Type", "text/html").body("a leak");
    assert_eq!(switched.evaluate(&inspect, Some(&second)).verdict, Verdict::Block { status: 502, rule_id: 2 });
}

/// A chain whose later part misses in every transaction misses as a whole and folds away,
/// unless an earlier part does what the miss leaves in place: rule 2's capture sets TX:1,
/// which rule 3 reads.
#[test]
fn a_chain_missing_at_a_later_part_folds_unless_an_earlier_part_captures() {
    let text = r#"SecRuleEngine On
SecRule REQUEST_METHOD "@rx ^(G)ET$" "id:1,phase:1,pass,nolog,chain"
    SecRule TX:never "@eq 1" "t:none"
SecRule REQUEST_METHOD "@rx ^(G)ET$" "id:2,phase:1,pass,nolog,capture,chain"
    SecRule TX:never "@eq 1" "t:none"
SecRule TX:1 "@streq G" "id:3,phase:1,deny,status:403""#;
    let (rs, written) = (rules(text), unfolded(rules(text)));
    assert_eq!(folded_ids(&rs, 0), vec![2, 3]);
    for method in ["GET", "POST"] {
        let req = Request::new(method, "/");
        assert_eq!(rs.evaluate(&req, None), written.evaluate(&req, None), "{method}");
    }
    assert_eq!(rs.evaluate(&get("/"), None).verdict, Verdict::Block { status: 403, rule_id: 3 });
}
