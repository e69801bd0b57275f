//! The OWASP Core Rule Set loads unchanged: every rule file of CRS 4.28.0 and of Debian's CRS
//! 3.3.4 parses with zero errors, yields as many rules as an independent count of the text finds,
//! and prints back to SecLang that parses to the same tree.
//!
//! The CRS 4.28.0 folder comes from one setting, `BARBICAN_CRS_DIR` (default
//! `<workspace>/../shared/crs`); Debian's rules come from the `modsecurity-crs` package. When
//! either is missing the tests fail and say how to get it: they never pass by skipping.

use std::path::{Path, PathBuf};

use barbican_waf::seclang::ast::{ActionKind, OperatorKind, RuleKind};
use barbican_waf::seclang::{parse, Loader, RuleSet};

#[path = "common/mod.rs"]
mod common;

use common::CRS_TAG;

fn crs_dir() -> PathBuf {
    common::crs_dir("rules")
}

/// The files of one CRS version, in load order: the setup file, then the rules by name.
fn crs4_files() -> Vec<PathBuf> {
    let base = crs_dir().join(CRS_TAG);
    let mut files = vec![base.join("crs-setup.conf.example")];
    files.extend(conf_files(&base.join("rules")));
    files
}

const DEBIAN_RULES: &str = "/usr/share/modsecurity-crs/rules";
const DEBIAN_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

fn crs3_files() -> Vec<PathBuf> {
    assert!(
        Path::new(DEBIAN_RULES).is_dir() && Path::new(DEBIAN_SETUP).is_file(),
        "Debian's CRS 3.3.4 is not installed ({DEBIAN_RULES}, {DEBIAN_SETUP}): run `apt-get install modsecurity-crs`"
    );
    let mut files = vec![PathBuf::from(DEBIAN_SETUP)];
    files.extend(conf_files(Path::new(DEBIAN_RULES)));
    files
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "only {} rule files in {}", files.len(), dir.display());
    files
}

fn load(files: &[PathBuf]) -> RuleSet {
    let mut loader = Loader::new();
    for f in files {
        loader.load_file(f);
    }
    loader.finish().unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!("{} errors:\n{}", errors.len(), text.join("\n"))
    })
}

/// Counts taken from the text alone, without the parser: `id:N` in actions and directive
/// lines starting with `SecRule`/`SecAction`, both outside comment lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TextCount {
    ids: usize,
    rule_lines: usize,
}

fn count_text(files: &[PathBuf]) -> TextCount {
    let mut count = TextCount::default();
    for f in files {
        let text = std::fs::read_to_string(f).expect("rule file");
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with('#')) {
            if line.starts_with("SecRule ") || line.starts_with("SecAction") {
                count.rule_lines += 1;
            }
            let bytes = line.as_bytes();
            for (at, _) in line.match_indices("id:") {
                let before_ok = at == 0 || matches!(bytes[at - 1], b'"' | b',' | b' ' | b'\t');
                let after = line[at + 3..].trim_start_matches('\'');
                if before_ok && after.starts_with(|c: char| c.is_ascii_digit()) {
                    count.ids += 1;
                }
            }
        }
    }
    count
}

fn check_counts(set: &RuleSet, files: &[PathBuf]) -> TextCount {
    let text = count_text(files);
    let parsed = TextCount {
        ids: set.rules().filter(|(_, r)| r.id().is_some()).count(),
        rule_lines: set.rules().map(|(_, r)| r.parts().count()).sum(),
    };
    assert_eq!(parsed, text, "parsed rules differ from the count of the text");
    assert!(text.ids > 500, "{text:?}");
    text
}

/// Every `@pmFromFile`/`@ipMatchFromFile` resolved to a data file with entries.
fn check_data_files(set: &RuleSet) -> usize {
    let mut refs = 0;
    for (file, rule) in set.rules() {
        for part in rule.parts() {
            let RuleKind::SecRule { operator, .. } = &part.kind else { continue };
            if operator.kind.reads_files() {
                for name in operator.words() {
                    let data = set.data_file(file, &name).unwrap_or_else(|| panic!("{name} not loaded"));
                    assert!(!data.entries.is_empty(), "{} is empty", data.path.display());
                    refs += 1;
                }
            }
        }
    }
    refs
}

fn check_round_trip(files: &[PathBuf]) {
    for f in files {
        let text = std::fs::read_to_string(f).expect("rule file");
        let origin = f.display().to_string();
        let first = parse(&text, &origin).unwrap_or_else(|e| panic!("{origin}: {e:?}"));
        let printed = first.to_string();
        let second = parse(&printed, &origin).unwrap_or_else(|e| panic!("{origin} printed: {e:?}\n{printed}"));
        assert_eq!(first, second, "{origin}: the printed rules read differently");
        assert_eq!(printed, second.to_string(), "{origin}: printing is not a fixpoint");
    }
}

/// Spans point into the real files: each rule starts on a `SecRule`/`SecAction` line and its
/// `id` action sits where the text says `id:N`.
fn check_spans(set: &RuleSet) {
    let mut texts = std::collections::HashMap::new();
    for (file, rule) in set.rules() {
        let path = set.path(file).expect("file of a rule");
        let text: &String = texts.entry(file).or_insert_with(|| std::fs::read_to_string(path).expect("rule file"));
        let head = &rule.head.span;
        let at = &text[head.start.offset..];
        assert!(at.starts_with("SecRule") || at.starts_with("SecAction"), "{}:{}", path.display(), head.start.line);
        let line = text.lines().nth(head.start.line - 1).expect("line");
        assert_eq!(line.chars().nth(head.start.column - 1), Some('S'), "{}:{}", path.display(), head.start.line);
        for action in &rule.head.actions {
            if let ActionKind::Id(id) = action.kind {
                let want = format!("id:{id}");
                let got = &text[action.span.start.offset..action.span.end.offset];
                assert_eq!(got.replace('\'', ""), want, "{}:{}", path.display(), action.span.start.line);
            }
        }
    }
}

#[test]
fn crs_spans_point_into_the_files() {
    check_spans(&load(&crs4_files()));
    check_spans(&load(&crs3_files()));
}

#[test]
fn crs_4_28_parses_completely() {
    let files = crs4_files();
    let set = load(&files);
    let counts = check_counts(&set, &files);
    let refs = check_data_files(&set);
    assert!(refs > 10, "only {refs} data file references");
    // Spot checks that the tree means what the text says.
    let rule = |id: u64| set.rules().find(|(_, r)| r.id() == Some(id)).map(|(_, r)| r).expect("rule");
    let RuleKind::SecRule { operator, .. } = &rule(942100).head.kind else { panic!("942100 is a SecRule") };
    assert_eq!(operator.kind, OperatorKind::DetectSqli);
    let RuleKind::SecRule { operator, .. } = &rule(911100).head.kind else { panic!("911100 is a SecRule") };
    assert!(operator.negated && operator.kind == OperatorKind::Within && operator.argument.has_macros());
    assert!(set.rules().filter(|(_, r)| !r.chain.is_empty()).count() > 20);
    assert!(set.rules().any(|(_, r)| r.head.actions.iter().any(|a| matches!(a.kind, ActionKind::SkipAfter(_)))));
    eprintln!("CRS {CRS_TAG}: {} files, {counts:?}, {refs} data file references", files.len());
}

#[test]
fn crs_3_3_4_from_debian_parses_completely() {
    let files = crs3_files();
    let set = load(&files);
    let counts = check_counts(&set, &files);
    let refs = check_data_files(&set);
    assert!(refs > 10, "only {refs} data file references");
    eprintln!("CRS 3.3.4 (Debian): {} files, {counts:?}, {refs} data file references", files.len());
}

#[test]
fn debian_load_file_with_includes_parses() {
    crs3_files();
    let mut loader = Loader::new();
    loader.load_file(Path::new("/usr/share/modsecurity-crs/owasp-crs.load"));
    let set = loader.finish().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(set.rules().count(), load(&crs3_files()).rules().count());
}

#[test]
fn crs_rules_print_back_to_the_same_tree() {
    check_round_trip(&crs4_files());
    check_round_trip(&crs3_files());
}
