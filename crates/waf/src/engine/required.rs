//! Literals that every match of a pattern contains, to rule the pattern out of a long value
//! with one fast search.
//!
//! The regex crate's prefilter looks for the literals a match *starts* with. For many CRS
//! patterns those are common words, while a rarer literal is required further in: 921110
//! starts with any of 17 HTTP methods (`get`, `post`, `put`, ...) but needs `http/`, 931110
//! starts with dozens of PHP names but needs `://`. On a 1 KiB JSON body such a pattern spends
//! its time on candidates its prefix finds; a search for the required literal answers at once.
//! [`Needles::of`] finds such a set of literals (every match contains one of them) and keeps it
//! only when it is more selective than the prefixes.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use memchr::memmem;
use regex_syntax::hir::{Class, Hir, HirKind};

use super::caseless::prefixes;

/// The most literals a set may hold: more say little about a value.
const MAX_SET: usize = 16;

/// The longest literal a set keeps whole (a prefix of a required literal is required too).
const MAX_LEN: usize = 16;

/// The longest string an exact set (below) may hold.
const MAX_EXACT_LEN: usize = 64;

/// A set of literals. When `folded`, they are lowercase and found in either case (some came
/// from a case-insensitive part of the pattern).
#[derive(Clone, Debug, PartialEq)]
struct Set {
    literals: Vec<Vec<u8>>,
    folded: bool,
}

impl Set {
    fn one(literal: Vec<u8>, folded: bool) -> Set {
        Set { literals: vec![literal], folded }
    }

    fn fold(mut self) -> Set {
        if !self.folded {
            self.literals.iter_mut().for_each(|l| l.make_ascii_lowercase());
            self.folded = true;
        }
        self.dedup()
    }

    fn dedup(mut self) -> Set {
        self.literals.sort();
        self.literals.dedup();
        self
    }

    /// Both sets' literals, folded when either is.
    fn union(a: Set, b: Set) -> Set {
        let (a, b) = match a.folded || b.folded {
            true => (a.fold(), b.fold()),
            false => (a, b),
        };
        let folded = a.folded;
        let mut literals = a.literals;
        literals.extend(b.literals);
        Set { literals, folded }.dedup()
    }

    /// Every literal of `a` followed by every literal of `b`: `None` past the limits.
    fn product(a: &Set, b: &Set) -> Option<Set> {
        if a.literals.len() * b.literals.len() > MAX_SET {
            return None;
        }
        let (a, b) = match a.folded || b.folded {
            true => (a.clone().fold(), b.clone().fold()),
            false => (a.clone(), b.clone()),
        };
        let mut literals = Vec::new();
        for x in &a.literals {
            for y in &b.literals {
                if x.len() + y.len() > MAX_EXACT_LEN {
                    return None;
                }
                literals.push([&x[..], &y[..]].concat());
            }
        }
        Some(Set { literals, folded: a.folded }.dedup())
    }

    fn has_empty(&self) -> bool {
        self.literals.iter().any(Vec::is_empty)
    }

    fn min_len(&self) -> usize {
        self.literals.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// How selective a search for the set is: longer literals (up to four bytes, past which
    /// length matters little), then fewer of them. Greater is better.
    fn score(&self) -> (usize, std::cmp::Reverse<usize>, usize) {
        (self.min_len().min(4), std::cmp::Reverse(self.literals.len()), self.min_len())
    }
}

/// Every string `hir` matches, when they are few and short.
fn exact(hir: &Hir) -> Option<Set> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(Set::one(Vec::new(), false)),
        HirKind::Literal(lit) => (lit.0.len() <= MAX_EXACT_LEN).then(|| Set::one(lit.0.to_vec(), false)),
        HirKind::Class(class) => class_set(class),
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(r) => match (r.min, r.max) {
            (0, Some(1)) => Some(Set::union(exact(&r.sub)?, Set::one(Vec::new(), false))),
            (1, Some(1)) => exact(&r.sub),
            _ => None,
        },
        HirKind::Concat(subs) => {
            let mut acc = Set::one(Vec::new(), false);
            for s in subs {
                acc = Set::product(&acc, &exact(s)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(subs) => union_of(subs, exact),
    }
}

/// The union of what `f` gives each alternative, when each gives a set and the union is small.
fn union_of(subs: &[Hir], f: fn(&Hir) -> Option<Set>) -> Option<Set> {
    let mut acc: Option<Set> = None;
    for s in subs {
        let e = f(s)?;
        acc = Some(match acc {
            Some(a) => Set::union(a, e),
            None => e,
        });
        if acc.as_ref().is_some_and(|a| a.literals.len() > MAX_SET) {
            return None;
        }
    }
    acc
}

/// The bytes of a small class: one byte, a letter in both cases (folded), or up to four bytes.
fn class_set(class: &Class) -> Option<Set> {
    let class = match class {
        Class::Bytes(b) => b.clone(),
        Class::Unicode(u) => u.to_byte_class()?,
    };
    let bytes: Vec<u8> = class.iter().flat_map(|r| r.start()..=r.end()).take(5).collect();
    match bytes[..] {
        [b] => Some(Set::one(vec![b], false)),
        [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(&b) => {
            Some(Set::one(vec![a.to_ascii_lowercase()], true))
        }
        _ if bytes.len() <= 4 => Some(Set { literals: bytes.into_iter().map(|b| vec![b]).collect(), folded: false }),
        _ => None,
    }
}

/// A set of literals one of which every match of `hir` contains, the most selective found;
/// `None` when none is known.
fn required(hir: &Hir) -> Option<Set> {
    match exact(hir) {
        // Every string it matches is known: one of them is required, unless it is empty.
        Some(e) => (!e.has_empty()).then_some(e),
        None => inexact_required(hir),
    }
}

/// [`required`] for a part whose strings are not all known.
fn inexact_required(hir: &Hir) -> Option<Set> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) | HirKind::Literal(_) | HirKind::Class(_) => None,
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Repetition(_) => None,
        HirKind::Alternation(subs) => union_of(subs, required),
        HirKind::Concat(subs) => {
            let mut best: Option<Set> = None;
            let mut consider = |s: Set| {
                if !s.has_empty() && best.as_ref().is_none_or(|b| s.score() > b.score()) {
                    best = Some(s);
                }
            };
            // Runs of children whose strings are known, joined while the product stays small.
            let mut run: Option<Set> = None;
            for s in subs {
                match exact(s) {
                    Some(e) => {
                        run = Some(match run.take() {
                            None => e,
                            Some(r) => match Set::product(&r, &e) {
                                Some(p) => p,
                                None => {
                                    consider(r);
                                    e
                                }
                            },
                        });
                    }
                    None => {
                        if let Some(r) = run.take() {
                            consider(r);
                        }
                        if let Some(r) = inexact_required(s) {
                            consider(r);
                        }
                    }
                }
            }
            if let Some(r) = run {
                consider(r);
            }
            best
        }
    }
}

/// A search for literals every match of a pattern contains.
#[derive(Debug)]
pub(crate) enum Needles {
    /// One literal, exactly.
    One(Box<memmem::Finder<'static>>),
    /// Several, or letters in either case.
    Many(AhoCorasick),
}

impl Needles {
    /// The required literals of a pattern (`hir`), when they are more selective than the
    /// literals its matches start with, which the regex's own prefilter looks for.
    pub(crate) fn of(hir: &Hir) -> Option<Needles> {
        let mut set = required(hir)?;
        set.literals.iter_mut().for_each(|l| l.truncate(MAX_LEN));
        let set = set.dedup();
        if set.min_len() < 2 {
            return None;
        }
        // Prefixes in both cases count once per literal, as the set's folded ones do.
        if let Some(literals) = prefixes(hir).literals() {
            let theirs =
                Set { literals: literals.iter().map(|l| l.as_bytes().to_vec()).collect(), folded: false }.fold();
            if !theirs.literals.is_empty() && theirs.score() >= set.score() {
                return None;
            }
        }
        match (&set.literals[..], set.folded) {
            ([one], false) => Some(Needles::One(Box::new(memmem::Finder::new(one).into_owned()))),
            (literals, folded) => AhoCorasickBuilder::new()
                .ascii_case_insensitive(folded)
                .match_kind(MatchKind::LeftmostFirst)
                .build(literals)
                .ok()
                .map(Needles::Many),
        }
    }

    /// Whether one of the literals is in `value`: when not, the pattern cannot match it.
    pub(crate) fn found_in(&self, value: &[u8]) -> bool {
        match self {
            Needles::One(f) => f.find(value).is_some(),
            Needles::Many(ac) => ac.is_match(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::caseless::syntax;

    /// The literals `pattern` requires, and whether they are folded.
    fn lits(pattern: &str) -> Option<(Vec<String>, bool)> {
        let set = required(&syntax(pattern)?)?;
        Some((set.literals.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect(), set.folded))
    }

    fn needles(pattern: &str) -> Option<Needles> {
        Needles::of(&syntax(pattern).expect("parses"))
    }

    #[test]
    fn a_rare_literal_inside_is_preferred_to_common_prefixes() {
        let p = r"(?sm-u)(?:get|p(?:(?:os|u)t|atch|rop(?:find|atch))|head|options|co(?:nnect|py)|delete|trac[ek]|m(?:kcol|ove)|(?:un)?lock)[\s\x0b]+[^\s\x0b]+[\s\x0b]+http/[0-9]";
        assert_eq!(lits(p), Some((vec!["http/".into()], false)));
        assert!(matches!(needles(p), Some(Needles::One(_))));
    }

    #[test]
    fn case_insensitive_parts_fold() {
        assert_eq!(lits(r"(?i-u)%uff[0-9a-f]{2}"), Some((vec!["%uff".into()], true)));
        assert_eq!(lits(r"(?-u)x(?i:ab)y"), Some((vec!["xaby".into()], true)));
    }

    #[test]
    fn alternatives_each_give_their_literals() {
        assert_eq!(lits(r"(?-u)(?:abc\d+|[a-z]+def)"), Some((vec!["abc".into(), "def".into()], false)));
        // An alternative that requires nothing: nothing is required.
        assert_eq!(lits(r"(?-u)(?:abc|\d+)"), None);
    }

    #[test]
    fn optional_and_repeated_parts() {
        assert_eq!(lits(r"(?-u)ab?c"), Some((vec!["abc".into(), "ac".into()], false)));
        assert_eq!(lits(r"(?-u)a*"), None);
        assert_eq!(lits(r"(?-u)(?:xy)+z"), Some((vec!["xy".into()], false)));
        assert_eq!(lits(r"(?-u)^$"), None);
    }

    #[test]
    fn prefixes_as_good_keep_the_regex_prefilter() {
        // The literal the match starts with is the rarest there is.
        assert!(needles(r"(?-u)java\.lang\.(?:runtime|processbuilder)").is_none());
        assert!(needles(r"(?-u)[a-z]+").is_none());
    }

    /// Soundness: wherever a pattern matches, its needles are found (on CRS's patterns and
    /// values that match them, and on hand-written ones).
    #[test]
    fn needles_are_found_wherever_the_pattern_matches() {
        let cases: &[(&str, &[&[u8]])] = &[
            (
                r"(?sm-u)(?i)(?:\binclude[\s\x0b]*\x28[^\x29]*|mosConfig_absolute_path|(?:_(?:CONF\[path|SERVER\[DOCUMENT_ROOT)|path\[docroot|config\[root_dir)\]|GALLERY_BASEDIR|appserv_root)=(?:f(?:ile|tps?)|https?)://",
                &[b"x=1&mosconfig_absolute_path=HTTP://evil", b"INCLUDE(a=FTPS://x"],
            ),
            (
                r"(?sm-u)__[^\x22&=]*__(?:i?(?:startswith|e(?:ndswith|xact)|contains|regex)|i(?:snull|n)|range|[gl]te?|has_(?:keys?|any_keys)|contained_by)(?:$|\x22[\s\x0b]*:)",
                &[b"{\"__a__regex\": 1}", b"__x__in"],
            ),
            (r"(?sm-u)(?:rO0ABQ|KztAAU|Cs7QAF)", &[b"xxrO0ABQ", b"Cs7QAF"]),
            (r"(?-u)x(?i:ab)y", &[b"xABy", b"xaBy"]),
        ];
        for (pattern, values) in cases {
            let re = regex::bytes::Regex::new(pattern).expect("compiles");
            let (literals, folded) = lits(pattern).expect("requires literals");
            for v in *values {
                assert!(re.is_match(v), "{pattern} on {:?}", String::from_utf8_lossy(v));
                let hay = if folded { v.to_ascii_lowercase() } else { v.to_vec() };
                let found =
                    literals.iter().any(|l| memmem::find(&hay, &l.as_bytes()[..l.len().min(MAX_LEN)]).is_some());
                assert!(found, "{pattern}: none of {literals:?} in {:?}", String::from_utf8_lossy(v));
                if let Some(n) = needles(pattern) {
                    assert!(n.found_in(v));
                }
            }
        }
    }
}
