//! Prescanning: every literal `@rx` pattern of the rule set is compiled into one multi-pattern
//! automaton, so that a request value is scanned once per distinct transformed form instead of
//! once per rule.
//!
//! ```text
//! compile:      (chain, pattern) of every eligible rule part ──▶ one regex-automata set (MatchKind::All)
//!               + per chain: the mask of its patterns; per variable: the chains that look at it
//! transaction:  variable ──each value × its chains' transformations──▶ distinct forms (most values
//!               leave most chains unchanged: one form) ──one scan each──▶ bitset of patterns
//!               rule part ──its pattern's bit in its targets' bitsets──▶ clear: cannot match
//! ```
//!
//! A pattern's bit is set when it matches some member of the variable transformed by the
//! pattern's chain. The bitset covers the whole collection, so it over-approximates what a part
//! with a key selector or exclusions sees: a clear bit proves the part cannot match and it is
//! skipped; a set bit sends the part through the ordinary per-value evaluation, which decides.
//! Benign traffic clears nearly every bit, so most rules cost a few bit tests. Only parts whose
//! answer is a pure function of request data take part: a literal, non-negated `@rx` on the
//! linear engine that does not match ordinary short values, no `multiMatch`, no counting, and
//! targets whose values do not change within a phase (not `TX`, `MATCHED_VAR`, ...).

use std::collections::HashMap;

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use crate::seclang::ast::{Transformation, Variable};

use super::compile::Part;
use super::operator::{Op, Rx};

/// The prescan automaton of a rule set and what its patterns belong to.
#[derive(Debug, Default)]
pub(crate) struct Prescan {
    re: Option<Regex>,
    /// Each pattern alone, for long values (see [`Prescan::scan`]).
    singles: Vec<regex::bytes::Regex>,
    /// By chain id: the transformations.
    chains: Vec<Vec<Transformation>>,
    /// By variable: the chains whose prescanned parts look at it, each with the bits of the
    /// patterns those parts use.
    by_variable: HashMap<Variable, Vec<(usize, Bits)>>,
}

/// Values longer than this are scanned pattern by pattern: a long value (a request body)
/// makes the joint automaton report the matches of many patterns at many positions, while
/// each pattern alone stops at its first match and skips ahead with its own literal
/// prefilter.
const LONG: usize = 256;

/// A bitset of patterns.
pub(crate) type Bits = Box<[u64]>;

impl Prescan {
    /// Assigns every eligible part its pattern index (`Part::prescan`) and compiles the
    /// automaton. When it cannot be built, every part keeps per-rule evaluation.
    pub(crate) fn build<'a>(parts: impl Iterator<Item = &'a mut Part>) -> Prescan {
        let mut patterns: Vec<(usize, regex::bytes::Regex)> = Vec::new();
        let mut members: Vec<(&'a mut Part, usize)> = Vec::new();
        for part in parts {
            let Some(re) = eligible(part) else { continue };
            let index = match patterns.iter().position(|(c, p)| *c == part.chain_id && p.as_str() == re.as_str()) {
                Some(i) => i,
                None => {
                    patterns.push((part.chain_id, re));
                    patterns.len() - 1
                }
            };
            members.push((part, index));
        }
        let Some(re) = compile(patterns.iter().map(|(_, p)| p.as_str())) else {
            return Prescan::default();
        };
        let words = patterns.len().div_ceil(64);
        let singles = patterns.into_iter().map(|(_, p)| p).collect();
        let mut chains: Vec<Vec<Transformation>> = Vec::new();
        let mut by_variable: HashMap<Variable, Vec<(usize, Bits)>> = HashMap::new();
        for (part, index) in members {
            if chains.len() <= part.chain_id {
                chains.resize(part.chain_id + 1, Vec::new());
            }
            chains[part.chain_id].clone_from(&part.transforms);
            for t in &part.targets {
                let list = by_variable.entry(t.variable).or_default();
                let at = match list.iter().position(|(c, _)| *c == part.chain_id) {
                    Some(at) => at,
                    None => {
                        list.push((part.chain_id, zeros(words)));
                        list.len() - 1
                    }
                };
                set(&mut list[at].1, index);
            }
            part.prescan = Some(index);
        }
        Prescan { re: Some(re), singles, chains, by_variable }
    }

    /// An empty bitset.
    pub(crate) fn empty(&self) -> Bits {
        zeros(self.re.as_ref().map_or(0, |r| r.pattern_len().div_ceil(64)))
    }

    /// The chains whose prescanned parts look at `var`: id, transformations, and the bits of
    /// the patterns those parts use.
    pub(crate) fn chains_of(&self, var: Variable) -> impl Iterator<Item = (usize, &[Transformation], &[u64])> {
        let list = self.by_variable.get(&var).map_or(&[][..], Vec::as_slice);
        list.iter().map(|(c, mask)| (*c, self.chains[*c].as_slice(), &mask[..]))
    }

    /// Sets in `bits` the patterns of `mask` that match somewhere in `value`.
    pub(crate) fn scan(&self, value: &[u8], mask: &[u64], found: &mut PatternSet, bits: &mut [u64]) {
        let Some(re) = &self.re else { return };
        if value.len() > LONG {
            let wanted = mask
                .iter()
                .enumerate()
                .flat_map(|(w, &m)| (0..64).filter(move |b| m & (1 << b) != 0).map(move |b| w * 64 + b));
            for p in wanted {
                if !has(bits, p) && self.singles[p].is_match(value) {
                    set(bits, p);
                }
            }
            return;
        }
        found.clear();
        re.which_overlapping_matches(&Input::new(value), found);
        for p in found.iter().map(|p| p.as_usize()) {
            if has(mask, p) {
                set(bits, p);
            }
        }
    }

    /// A pattern set for [`Prescan::scan`].
    pub(crate) fn pattern_set(&self) -> PatternSet {
        PatternSet::new(self.re.as_ref().map_or(0, Regex::pattern_len))
    }
}

fn zeros(words: usize) -> Bits {
    vec![0; words].into_boxed_slice()
}

fn set(bits: &mut [u64], index: usize) {
    bits[index / 64] |= 1 << (index % 64);
}

/// Whether a bit is set.
pub(crate) fn has(bits: &[u64], index: usize) -> bool {
    bits.get(index / 64).is_some_and(|w| w & (1 << (index % 64)) != 0)
}

/// The regex of a part that may be prescanned.
fn eligible(part: &Part) -> Option<regex::bytes::Regex> {
    let Some(Op::Rx(Rx::Linear(re))) = &part.op else { return None };
    // A pattern that matches ordinary short values (`.`, `^[^;\s]+`) matches nearly every
    // value, so its bit would always be set, and it would report a match at nearly every
    // position of every scan: it is left to per-rule evaluation.
    let common = [&b""[..], b"a", b"0", b"id", b"42"].iter().any(|v| re.is_match(v));
    if part.negated || part.multi_match || part.targets.is_empty() || common {
        return None;
    }
    part.targets.iter().all(|t| !t.count && stable(t.variable)).then(|| re.clone())
}

/// Variables whose values only change when the transaction loads request or response data
/// (when the prescan bitsets are dropped), never while rules run.
fn stable(v: Variable) -> bool {
    use Variable as V;
    matches!(
        v,
        V::Args
            | V::ArgsGet
            | V::ArgsPost
            | V::ArgsNames
            | V::ArgsGetNames
            | V::ArgsPostNames
            | V::RequestHeaders
            | V::RequestHeadersNames
            | V::RequestCookies
            | V::RequestCookiesNames
            | V::ResponseHeaders
            | V::ResponseHeadersNames
            | V::MultipartPartHeaders
            | V::Files
            | V::FilesNames
            | V::MultipartFilename
            | V::MultipartName
            | V::FilesTmpContent
            | V::Xml
            | V::QueryString
            | V::RequestBasename
            | V::RequestBody
            | V::RequestFilename
            | V::PathInfo
            | V::RequestLine
            | V::RequestMethod
            | V::RequestProtocol
            | V::RequestUri
            | V::RequestUriRaw
            | V::FullRequest
            | V::ResponseBody
            | V::ResponseProtocol
            | V::ResponseContentType
    )
}

/// One automaton for all patterns: every pattern that matches anywhere is reported
/// (`MatchKind::All`, overlapping search); no capture groups are kept.
fn compile<'p>(patterns: impl Iterator<Item = &'p str>) -> Option<Regex> {
    let patterns: Vec<&str> = patterns.collect();
    if patterns.is_empty() {
        return None;
    }
    Regex::builder()
        .syntax(syntax::Config::new().utf8(false))
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(false)
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(512 << 20))
                .hybrid_cache_capacity(128 << 20),
        )
        .build_many(&patterns)
        .ok()
}
