//! Prescanning: the `@rx` patterns that look at values after the same transformation chain are
//! compiled together into one multi-pattern automaton, so that a request value is scanned once
//! per chain instead of once per rule.
//!
//! ```text
//! compile:      rules ──(chain id, pattern)──▶ one regex-automata set per chain (MatchKind::All)
//! transaction:  (chain, variable) ──every value, transformed, scanned once──▶ bitset of patterns
//!               rule part ──its pattern's bit in the bitsets of its target variables──▶ 0: no match
//! ```
//!
//! The bitset of a (chain, variable) is the union over every member of the collection, so it
//! over-approximates what a part with a key selector or exclusions sees: a clear bit proves
//! the part cannot match and it is skipped; a set bit sends the part through the ordinary
//! per-value evaluation, which decides. Benign traffic clears nearly every bit, so most rules
//! cost a few bit tests. Only parts whose answer is a pure function of request data take
//! part: a literal, non-negated `@rx` on the linear engine, no `multiMatch`, no counting, and
//! targets whose values do not change within a phase (not `TX`, `MATCHED_VAR`, ...).

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use crate::seclang::ast::Variable;

use super::compile::Part;
use super::operator::{Op, Rx};

/// The prescan automata of a rule set, by transformation chain id.
#[derive(Debug, Default)]
pub(crate) struct Prescan {
    sets: Vec<Option<Regex>>,
}

/// A bitset of the patterns of one chain that matched some value.
pub(crate) type Bits = Box<[u64]>;

impl Prescan {
    /// Assigns every eligible part its pattern index (`Part::prescan`) and compiles one
    /// automaton per chain. A chain whose automaton cannot be built keeps per-rule evaluation.
    pub(crate) fn build<'a>(parts: impl Iterator<Item = &'a mut Part>, chains: usize) -> Prescan {
        let mut patterns: Vec<Vec<String>> = vec![Vec::new(); chains];
        let mut members: Vec<(&'a mut Part, usize)> = Vec::new();
        for part in parts {
            let Some(pattern) = eligible(part) else { continue };
            let list = &mut patterns[part.chain_id];
            let index = match list.iter().position(|p| *p == pattern) {
                Some(i) => i,
                None => {
                    list.push(pattern);
                    list.len() - 1
                }
            };
            members.push((part, index));
        }
        let sets: Vec<Option<Regex>> = patterns.iter().map(|p| (!p.is_empty()).then(|| compile(p)).flatten()).collect();
        for (part, index) in members {
            if sets[part.chain_id].is_some() {
                part.prescan = Some(index);
            }
        }
        Prescan { sets }
    }

    /// How many 64-bit words a bitset of this chain takes (0: the chain has no automaton).
    pub(crate) fn words(&self, chain: usize) -> usize {
        self.sets.get(chain).and_then(Option::as_ref).map_or(0, |r| r.pattern_len().div_ceil(64))
    }

    /// Adds the patterns of `chain` that match somewhere in `value` to `bits`.
    pub(crate) fn scan(&self, chain: usize, value: &[u8], found: &mut PatternSet, bits: &mut [u64]) {
        let Some(Some(re)) = self.sets.get(chain) else { return };
        found.clear();
        re.which_overlapping_matches(&Input::new(value), found);
        for p in found.iter() {
            bits[p.as_usize() / 64] |= 1 << (p.as_usize() % 64);
        }
    }

    /// A pattern set sized for the largest automaton.
    pub(crate) fn pattern_set(&self) -> PatternSet {
        PatternSet::new(self.sets.iter().flatten().map(Regex::pattern_len).max().unwrap_or(0))
    }
}

/// Whether a bit is set.
pub(crate) fn has(bits: &[u64], index: usize) -> bool {
    bits.get(index / 64).is_some_and(|w| w & (1 << (index % 64)) != 0)
}

/// The pattern (with its flags) of a part that may be prescanned.
fn eligible(part: &Part) -> Option<String> {
    let Some(Op::Rx(Rx::Linear(re))) = &part.op else { return None };
    if part.negated || part.multi_match || part.targets.is_empty() {
        return None;
    }
    part.targets.iter().all(|t| !t.count && stable(t.variable)).then(|| re.as_str().to_string())
}

/// Variables whose values only change when the transaction loads request or response data
/// (when the prescan bitsets are dropped), never while rules run.
pub(crate) fn stable(v: Variable) -> bool {
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

/// One automaton for the patterns of a chain: every pattern that matches anywhere is reported
/// (`MatchKind::All`, overlapping search); no capture groups are kept.
fn compile(patterns: &[String]) -> Option<Regex> {
    let built = Regex::builder()
        .syntax(syntax::Config::new().utf8(false))
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(false)
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                .nfa_size_limit(Some(512 << 20))
                .hybrid_cache_capacity(64 << 20),
        )
        .build_many(patterns);
    built.ok()
}
