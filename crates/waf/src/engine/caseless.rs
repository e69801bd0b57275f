//! Case-insensitive patterns run on lowercased values.
//!
//! A pattern whose every literal and class takes a letter in both cases (`(?i)` throughout,
//! with no case-sensitive part) matches a value exactly when it matches the value lowercased
//! (ASCII): each byte it reads is accepted or refused together with its other case. On
//! lowercased values, the pattern with the uppercase letters taken out of its classes gives the
//! same answers, and the regex crate finds a literal prefilter for it that it mostly cannot
//! find for dozens of case-insensitive alternatives (CRS's RFI rule 931120 on a 1 KiB body:
//! 456 ns as written, 105 ns so; a short `@pm` list, an alternation of case-insensitive
//! phrases, is one too). The prescan runs such patterns so where it runs them alone,
//! lowercasing each value once for all of them.

use regex_syntax::hir::literal::{Extractor, Seq};
use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, Hir, HirKind};

/// The lowercase form of a pattern (`hir`, from [`syntax`]), for values lowercased first:
/// `None` when some part of the pattern tells the cases apart, or when the lowercase form would
/// not search faster: when it does not start with fewer literals than the pattern (the regex
/// crate's prefilter looks for those). A pattern that starts with one literal, whatever the
/// case (`(?i)%uff`), is found as fast (its rare `%`) and its value need not be lowercased.
pub(crate) fn lowercase_form(hir: &Hir) -> Option<regex::bytes::Regex> {
    let lower = rewrite(hir)?;
    let count = |hir: &Hir| prefixes(hir).len().unwrap_or(usize::MAX);
    if count(&lower) >= count(hir) {
        return None;
    }
    build(&lower)
}

/// The lowercase form of `pattern` whether or not it searches faster (for tests of the
/// rewrite on every pattern that has one).
#[cfg(test)]
pub(crate) fn any_lowercase_form(pattern: &str) -> Option<regex::bytes::Regex> {
    build(&rewrite(&syntax(pattern)?)?)
}

/// The syntax of `pattern`, a regex crate pattern with its flags as
/// [`regex::bytes::Regex::as_str`] gives it (bytes, not UTF-8).
pub(crate) fn syntax(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new().utf8(false).build().parse(pattern).ok()
}

/// The pattern without its uppercase letters: `None` when some part of it tells the cases
/// apart, or no part takes a letter in both.
fn rewrite(hir: &Hir) -> Option<Hir> {
    let mut changed = false;
    let lower = lowercase(hir, &mut changed)?;
    changed.then_some(lower)
}

fn build(hir: &Hir) -> Option<regex::bytes::Regex> {
    super::operator::linear(&hir.to_string()).ok()
}

/// The literals every match of `hir` starts with, as a prefilter would take them (no list:
/// too many).
pub(crate) fn prefixes(hir: &Hir) -> Seq {
    let mut seq = Extractor::new().extract(hir);
    seq.optimize_for_prefix_by_preference();
    seq
}

/// `hir` without its uppercase letters, or `None` when it tells the cases apart; `changed`
/// says whether some class lost a letter.
fn lowercase(hir: &Hir, changed: &mut bool) -> Option<Hir> {
    let all = |subs: &[Hir], changed: &mut bool| subs.iter().map(|h| lowercase(h, changed)).collect::<Option<Vec<_>>>();
    Some(match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => hir.clone(),
        HirKind::Literal(lit) => {
            // A case-insensitive letter is a class: a letter in a literal is case-sensitive.
            if lit.0.iter().any(u8::is_ascii_alphabetic) {
                return None;
            }
            hir.clone()
        }
        HirKind::Class(Class::Bytes(class)) => Hir::class(Class::Bytes(lowercase_class(class, changed)?)),
        HirKind::Class(Class::Unicode(class)) => {
            let class = class.to_byte_class()?;
            Hir::class(Class::Bytes(lowercase_class(&class, changed)?))
        }
        HirKind::Repetition(r) => {
            let mut r = r.clone();
            r.sub = Box::new(lowercase(&r.sub, changed)?);
            Hir::repetition(r)
        }
        HirKind::Capture(c) => {
            let mut c = c.clone();
            c.sub = Box::new(lowercase(&c.sub, changed)?);
            Hir::capture(c)
        }
        HirKind::Concat(subs) => Hir::concat(all(subs, changed)?),
        HirKind::Alternation(subs) => Hir::alternation(all(subs, changed)?),
    })
}

/// `class` without `A-Z`, or `None` when it takes a letter in one case only.
fn lowercase_class(class: &ClassBytes, changed: &mut bool) -> Option<ClassBytes> {
    let has = |b: u8| class.ranges().iter().any(|r| (r.start()..=r.end()).contains(&b));
    for upper in b'A'..=b'Z' {
        match (has(upper), has(upper.to_ascii_lowercase())) {
            (true, true) => *changed = true,
            (false, false) => {}
            _ => return None,
        }
    }
    let mut lower = class.clone();
    lower.difference(&ClassBytes::new([ClassBytesRange::new(b'A', b'Z')]));
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_answers(pattern: &str, values: &[&[u8]]) {
        let re = regex::bytes::RegexBuilder::new(pattern).build().expect("compiles");
        let lower = any_lowercase_form(re.as_str()).expect("takes a lowercase form");
        let mut matched = 0;
        for v in values {
            let holds = re.is_match(v);
            let on_lower = lower.is_match(&v.to_ascii_lowercase());
            assert_eq!(holds, on_lower, "{pattern} on {:?}", String::from_utf8_lossy(v));
            matched += usize::from(holds);
        }
        assert!(matched > 0, "{pattern} matches none of the values");
    }

    #[test]
    fn caseless_patterns_answer_the_same_on_lowercased_values() {
        let values: &[&[u8]] = &[
            b"",
            b"include(",
            b"INCLUDE (x)",
            b"InClUdE\t(/etc/passwd)",
            b"mosConfig_absolute_path=http://x",
            b"MOSCONFIG_ABSOLUTE_PATH",
            b"plain text, nothing here",
            b"\xff\xfeInclude(\x00)",
            b"a_b-C.d",
            b"A_b-C",
            b"\xffABC def",
        ];
        same_answers(r"(?sm-u)(?i)(?:\binclude[\s\x0b]*\([^\)]*|mosconfig_absolute_path)", values);
        same_answers(r"(?i-u)^[a-z_]+[-.][0-9a-z]$", values);
        same_answers(r"(?i-u)\bpasswd\b|[^a-z]{3,}", values);
        same_answers(r"(?i-u)\xff[a-z]+\b", values);
    }

    #[test]
    fn the_lowercase_form_is_taken_when_it_starts_with_fewer_literals() {
        // Dozens of alternatives, each a few ways in each case: a prefilter for the lowercase
        // ones only. One literal whatever the case: the same prefilter either way.
        let form = |pattern| lowercase_form(&syntax(pattern).expect("parses"));
        assert!(form(r"(?i-u)\b(?:include|require|mosconfig_absolute_path|gallery_basedir)\s*=").is_some());
        assert!(form(r"(?i-u)%uff[0-9a-f]{2}").is_none());
    }

    #[test]
    fn patterns_that_tell_cases_apart_have_no_lowercase_form() {
        for pattern in [r"(?-u)include", r"(?-u)(?i:include)X", r"(?-u)[A-Z]+", r"(?i-u)[a-z](?-i:b)"] {
            assert!(any_lowercase_form(pattern).is_none(), "{pattern}");
        }
    }

    #[test]
    fn patterns_without_letters_are_left_as_they_are() {
        for pattern in [r"(?i-u)%[0-9]{2}", r"(?i-u)\x25", r"(?-u)^$"] {
            assert!(any_lowercase_form(pattern).is_none(), "{pattern}");
        }
    }
}
