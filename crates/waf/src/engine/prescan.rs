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
//! linear engine, no `multiMatch`, no counting, and targets whose values do not change within a
//! phase (not `TX`, `MATCHED_VAR`, ...).

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
    /// By chain id: the transformations, and the bits of the chain's patterns.
    chains: Vec<(Vec<Transformation>, Bits)>,
    /// By variable: the chains whose prescanned parts look at it.
    by_variable: HashMap<Variable, Vec<usize>>,
}

/// A bitset of patterns.
pub(crate) type Bits = Box<[u64]>;

impl Prescan {
    /// Assigns every eligible part its pattern index (`Part::prescan`) and compiles the
    /// automaton. When it cannot be built, every part keeps per-rule evaluation.
    pub(crate) fn build<'a>(parts: impl Iterator<Item = &'a mut Part>) -> Prescan {
        let mut patterns: Vec<(usize, String)> = Vec::new();
        let mut members: Vec<(&'a mut Part, usize)> = Vec::new();
        let mut transforms: HashMap<usize, Vec<Transformation>> = HashMap::new();
        let mut by_variable: HashMap<Variable, Vec<usize>> = HashMap::new();
        for part in parts {
            let Some(pattern) = eligible(part) else { continue };
            let key = (part.chain_id, pattern);
            let index = match patterns.iter().position(|p| *p == key) {
                Some(i) => i,
                None => {
                    patterns.push(key);
                    patterns.len() - 1
                }
            };
            transforms.entry(part.chain_id).or_insert_with(|| part.transforms.clone());
            for t in &part.targets {
                let chains = by_variable.entry(t.variable).or_default();
                if !chains.contains(&part.chain_id) {
                    chains.push(part.chain_id);
                }
            }
            members.push((part, index));
        }
        let Some(re) = compile(patterns.iter().map(|(_, p)| p.as_str())) else {
            return Prescan::default();
        };
        let words = patterns.len().div_ceil(64);
        let chain_count = transforms.keys().max().map_or(0, |m| m + 1);
        let mut chains: Vec<(Vec<Transformation>, Bits)> =
            (0..chain_count).map(|c| (transforms.remove(&c).unwrap_or_default(), zeros(words))).collect();
        for (i, (chain, _)) in patterns.iter().enumerate() {
            set(&mut chains[*chain].1, i);
        }
        for (part, index) in members {
            part.prescan = Some(index);
        }
        Prescan { re: Some(re), chains, by_variable }
    }

    /// An empty bitset.
    pub(crate) fn empty(&self) -> Bits {
        zeros(self.re.as_ref().map_or(0, |r| r.pattern_len().div_ceil(64)))
    }

    /// The chains (id and transformations) whose prescanned parts look at `var`.
    pub(crate) fn chains_of(&self, var: Variable) -> impl Iterator<Item = (usize, &[Transformation])> {
        let ids = self.by_variable.get(&var).map_or(&[][..], Vec::as_slice);
        ids.iter().map(|&c| (c, self.chains[c].0.as_slice()))
    }

    /// Sets in `bits` the patterns that match somewhere in `value` and belong to one of
    /// `chains` (the chains that turn the value into this form).
    pub(crate) fn scan(&self, value: &[u8], chains: &[usize], found: &mut PatternSet, bits: &mut [u64]) {
        let Some(re) = &self.re else { return };
        found.clear();
        re.which_overlapping_matches(&Input::new(value), found);
        for p in found.iter().map(|p| p.as_usize()) {
            if chains.iter().any(|&c| has(&self.chains[c].1, p)) {
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
