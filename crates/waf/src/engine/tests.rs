//! Engine tests on small rule sets written inline.

use super::*;
use crate::seclang::Loader;

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
