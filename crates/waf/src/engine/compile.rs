//! From the loaded AST to the compiled [`RuleSet`]: built once, immutable, shared by every
//! transaction (`Send + Sync`).
//!
//! Compiling resolves everything that does not depend on a request:
//! - engine settings (`SecRuleEngine`, body access and limits, argument separator, ...);
//! - `SecDefaultAction` per phase, folded into each rule that follows it (log flags,
//!   transformations, what `block` means, the status);
//! - load-time exceptions: `SecRuleRemoveById/ByTag/ByMsg`, `SecRuleUpdateTargetById/ByTag/ByMsg`
//!   and `SecRuleUpdateActionById`;
//! - operators (`operator`): regexes, phrase automata, byte tables, networks;
//! - the order of evaluation: per phase, rules and `SecMarker`s in file order.
//!
//! Each rule part keeps its targets, transformation chain and operator side by side; the
//! literal `@rx` patterns of one transformation chain are then joined into one multi-pattern
//! automaton ([`super::prescan`]) that tells, per request, which rules cannot match. Rules whose operator cannot run
//! are kept (never matching) and listed by [`RuleSet::unsupported`]; rules whose regex needed
//! the backtracking engine are listed by [`RuleSet::fallbacks`].

use std::sync::Arc;

use crate::seclang::ast::{
    ActionKind, AllowScope, BodyProcessor, DirectiveKind, EngineMode, LimitAction, ListDirective, MacroPart,
    MacroString, MacroVar, NumberDirective, Phase, RuleKind, RuleSelector, SetVar, SetVarOp, Setting, Severity,
    SwitchDirective, Target, TargetModifier, TextDirective, Transformation, Variable,
};
use crate::seclang::{self, DataFile, FileId};

use super::fast_hash::FastHash;
use super::memo::Memo;
use super::operator::{self, Op, Regex};
use super::prescan::{Gate, Prescan};
use super::transaction::fold::{fold, Baked, Effects, Folded};
use super::transaction::variables::pairs_of;
use super::transaction::Matched;
use super::transform;

/// Engine settings read from `Sec*` directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `SecRuleEngine` (`DetectionOnly` when not set, as libmodsecurity3 behaves).
    pub engine: EngineMode,
    /// `SecRequestBodyAccess`.
    pub request_body_access: bool,
    /// `SecResponseBodyAccess`.
    pub response_body_access: bool,
    /// `SecRequestBodyLimit`.
    pub request_body_limit: u64,
    /// `SecRequestBodyLimitAction`.
    pub request_body_limit_action: LimitAction,
    /// `SecResponseBodyLimit`.
    pub response_body_limit: u64,
    /// `SecResponseBodyLimitAction`.
    pub response_body_limit_action: LimitAction,
    /// `SecResponseBodyMimeType` (lowercase).
    pub response_mime_types: Vec<String>,
    /// `SecRequestBodyJsonDepthLimit`.
    pub json_depth_limit: usize,
    /// `SecArgumentSeparator`.
    pub argument_separator: u8,
    /// `SecArgumentsLimit` (0: none).
    pub arguments_limit: usize,
    /// `SecPcreMatchLimit`, used as the backtracking engine's limit.
    pub backtrack_limit: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            // libmodsecurity3 without `SecRuleEngine` runs rules but never disrupts.
            engine: EngineMode::DetectionOnly,
            request_body_access: false,
            response_body_access: false,
            request_body_limit: 134_217_728,
            request_body_limit_action: LimitAction::Reject,
            response_body_limit: 524_288,
            response_body_limit_action: LimitAction::ProcessPartial,
            response_mime_types: vec!["text/plain".into(), "text/html".into()],
            json_depth_limit: 10_000,
            argument_separator: b'&',
            arguments_limit: 0,
            backtrack_limit: 1_000_000,
        }
    }
}

impl Settings {
    /// Whether `SecResponseBodyMimeType` names `media_type` (see [`media_type`]): the rules
    /// read the bodies of responses of that type (with `SecResponseBodyAccess On`).
    ///
    /// [`media_type`]: super::request::media_type
    pub fn reads_body_of(&self, media_type: &[u8]) -> bool {
        self.response_mime_types.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(media_type))
    }
}

/// A rule whose `@rx` pattern needed the backtracking engine (look-around, back-references...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The rule id (of the chain's head).
    pub rule_id: u64,
    /// The pattern.
    pub pattern: String,
    /// Whether a linear-time prefilter (the pattern without look-around and back-references)
    /// screens values before the backtracking engine runs.
    pub prefilter: bool,
}

/// A rule part that cannot run in this engine; the rule never matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The rule id (of the chain's head).
    pub rule_id: u64,
    /// What is missing.
    pub reason: String,
}

/// What a full match does to the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Disruptive {
    Pass,
    Deny,
    Drop,
    Allow(AllowScope),
    Redirect,
}

/// Which members of a collection a target takes. With a tag of its own (no niche in a
/// field), read in one load by [`Sel::matches`], which runs hundreds of times a request.
#[derive(Clone, Debug)]
#[repr(u8)]
pub(crate) enum Sel {
    All,
    /// Lowercase key, compared without case.
    Key(String),
    /// Key regex, case-insensitive, and a literal every key it takes holds: a key without
    /// it is not run.
    Regex(Regex, KeyLiteral),
    /// A key regex that is a literal prefix (`/^header_name_920450_/`), lowercase, compared
    /// without case.
    Prefix(String),
    /// `XML:/xpath`.
    XPath(String),
}

impl Sel {
    pub(crate) fn of(t: &Target) -> Result<Sel, String> {
        Ok(match &t.selector {
            None => Sel::All,
            Some(seclang::ast::Selector::Key(k)) => Sel::Key(k.to_ascii_lowercase()),
            Some(seclang::ast::Selector::Regex(r))
                if r.len() > 1
                    && r.starts_with('^')
                    && r[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Sel::Prefix(r[1..].to_ascii_lowercase())
            }
            Some(seclang::ast::Selector::Regex(r)) => Sel::Regex(
                regex::bytes::RegexBuilder::new(r)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| format!("key regex /{r}/: {e}"))?
                    .into(),
                KeyLiteral::of(r),
            ),
            Some(seclang::ast::Selector::XPath(x)) => Sel::XPath(x.clone()),
        })
    }

    /// Drops the threads' copies of its regex (see [`PerThread`](super::per_thread::PerThread)).
    fn forget_copies(&mut self) {
        if let Sel::Regex(r, _) = self {
            r.forget_copies();
        }
    }

    /// Whether a key is selected. In line where it is called (hundreds of times a request,
    /// mostly on keys of another length); only the patterns (regex, prefix, XPath) are a call.
    #[inline(always)]
    pub(crate) fn matches(&self, key: &[u8]) -> bool {
        match self {
            Sel::All => true,
            Sel::Key(k) => key.len() == k.len() && key.eq_ignore_ascii_case(k.as_bytes()),
            Sel::Regex(..) | Sel::Prefix(_) | Sel::XPath(_) => self.matches_pattern(key),
        }
    }

    /// [`Sel::matches`] for the selectors that are patterns.
    #[inline(never)]
    fn matches_pattern(&self, key: &[u8]) -> bool {
        match self {
            Sel::All | Sel::Key(_) => self.matches(key),
            Sel::Regex(r, literal) => literal.held_by(key) && r.is_match(key),
            Sel::Prefix(p) => starts_with_caseless(key, p),
            Sel::XPath(x) => key == x.as_bytes(),
        }
    }
}

/// Whether `key` starts with `start` (lowercase), ASCII letters in either case.
fn starts_with_caseless(key: &[u8], start: &str) -> bool {
    key.get(..start.len()).is_some_and(|k| k.eq_ignore_ascii_case(start.as_bytes()))
}

/// A literal that every key a key regex takes holds, lowercase, found without case as the
/// regex is: `pbjs-` at the start of `/^pbjs-\w+$/`'s keys, `multipart_headers_content_types`
/// anywhere in `/MULTIPART_HEADERS_CONTENT_TYPES_*/`'s (which CRS runs on every `TX` name).
/// Looking for it costs a fraction of running the regex, on keys that mostly lack it.
#[derive(Clone, Debug)]
pub(crate) struct KeyLiteral {
    text: Box<str>,
    /// At the start of the key.
    anchored: bool,
}

impl KeyLiteral {
    /// The letters, digits, `_` and `-` a regex starts with (after its `^`), less the last one
    /// when a quantifier that allows none of it follows; empty (held by every key) when the
    /// regex has an alternative (`|`) or starts otherwise.
    pub(crate) fn of(regex: &str) -> KeyLiteral {
        let rest = regex.strip_prefix('^').unwrap_or(regex);
        let anchored = rest.len() < regex.len();
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
        let text = match rest[end..].chars().next() {
            _ if regex.contains('|') => "",
            Some('?' | '*' | '{') => &rest[..end.saturating_sub(1)],
            _ => &rest[..end],
        };
        KeyLiteral { text: text.to_ascii_lowercase().into(), anchored }
    }

    /// Whether `key` holds the literal (where it must).
    pub(crate) fn held_by(&self, key: &[u8]) -> bool {
        match self.text.as_bytes().first() {
            None => true,
            Some(_) if self.anchored => starts_with_caseless(key, &self.text),
            // Keys are short: a loop, not `memchr` (whose setup costs more than the regex).
            Some(&first) => (0..key.len().saturating_sub(self.text.len() - 1))
                .any(|at| key[at].to_ascii_lowercase() == first && starts_with_caseless(&key[at..], &self.text)),
        }
    }
}

/// A `setvar`, with the number of the `TX` variable it sets when its name is literal, and its
/// value built in advance when that is literal too, so that running it copies nothing.
#[derive(Clone, Debug)]
pub(crate) struct SetVarSpec {
    pub setvar: SetVar,
    /// The [`TxNames`] number of a `TX` variable with a literal name.
    pub tx_slot: Option<u32>,
    /// The value of a `=` with a literal value.
    pub value: Option<Arc<[u8]>>,
    /// For a `TX` name made at run time: whether it begins with a literal that no numbered
    /// name begins with (`tx.header_name_920450_%{tx.0}`), so that it is looked up by key alone.
    pub unnumbered: bool,
}

/// A `TX` variable's name as a match records it, `TX:key`, which holds its lowercase key: maps
/// find it by the key (`Borrow<str>`), so that one string serves both (920450 makes one per
/// request header).
#[derive(Clone, Debug)]
pub(crate) struct TxName(Arc<str>);

impl TxName {
    /// What a `TX` variable's name adds to its key.
    pub(crate) const PREFIX: &'static str = "TX:";

    /// The name of the variable of `key` (lowercase).
    pub(crate) fn new(key: &str) -> TxName {
        // Made on the stack and copied once.
        let mut name: smallvec::SmallVec<[u8; 128]> = smallvec::SmallVec::new();
        name.extend_from_slice(TxName::PREFIX.as_bytes());
        name.extend_from_slice(key.as_bytes());
        TxName(Arc::from(&*super::text(&name)))
    }

    /// The variable of `name`, made already: [`TxName::PREFIX`] and a lowercase key.
    pub(crate) fn made(name: &str) -> TxName {
        debug_assert!(name.starts_with(TxName::PREFIX));
        TxName(Arc::from(name))
    }

    /// The lowercase key.
    pub(crate) fn key(&self) -> &str {
        &self.0[TxName::PREFIX.len()..]
    }

    /// `TX:key`.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TxName {
    fn borrow(&self) -> &str {
        self.key()
    }
}

// As the key alone, which `Borrow` lends.
impl std::hash::Hash for TxName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for TxName {
    fn eq(&self, other: &TxName) -> bool {
        self.key() == other.key()
    }
}

impl Eq for TxName {}

impl SetVarSpec {
    fn of(sv: &SetVar) -> SetVarSpec {
        let value = match &sv.op {
            SetVarOp::Set(v) => v.as_literal().map(|l| Arc::from(l.as_bytes())),
            _ => None,
        };
        SetVarSpec { setvar: sv.clone(), tx_slot: None, value, unnumbered: false }
    }

    /// The lowercase key of the `TX` variable it sets, when literal.
    fn literal_tx_key(&self) -> Option<String> {
        let sv = &self.setvar;
        sv.var.name.as_literal().filter(|_| sv.var.collection == Variable::Tx).map(str::to_ascii_lowercase)
    }
}

/// The `TX` variables a rule set names literally (in targets such as `TX:key` and in
/// `setvar:tx.key`), numbered: a transaction keeps their values in a vector by number, so
/// that the rules reading and setting them hash nothing.
#[derive(Debug, Default)]
pub(crate) struct TxNames {
    numbers: std::collections::HashMap<TxName, u32, FastHash>,
    keys: Vec<TxName>,
}

impl TxNames {
    /// The number of `key` (lowercase), given one if it has none.
    fn intern(&mut self, key: &str) -> u32 {
        if let Some(&n) = self.numbers.get(key) {
            return n;
        }
        let n = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        let k = TxName::new(key);
        self.numbers.insert(k.clone(), n);
        self.keys.push(k);
        n
    }

    /// Numbers the `TX` variables that the parts' targets and `setvar`s name literally, and
    /// marks the parts that only read numbered ones. The captures `TX:0` to `TX:9` come first,
    /// numbered 0 to 9 (see [`TxNames::capture`]).
    fn number<'a>(parts: impl Iterator<Item = &'a mut Part>) -> TxNames {
        let mut names = TxNames::default();
        for d in super::transaction::DIGITS {
            names.intern(d);
        }
        for part in parts {
            for t in &mut part.targets {
                if let (Variable::Tx, Sel::Key(k)) = (t.variable, &t.sel) {
                    t.tx_slot = Some(names.intern(k));
                }
            }
            for sv in &mut part.setvars {
                sv.tx_slot = sv.literal_tx_key().map(|k| names.intern(&k));
                names.number_macros(&mut sv.setvar.var.name);
                if let SetVarOp::Set(v) | SetVarOp::Add(v) | SetVarOp::Sub(v) = &mut sv.setvar.op {
                    names.number_macros(v);
                }
            }
            // Still the only owner: the prescan shares operators later.
            if let Some(arg) = part.op.as_mut().and_then(Arc::get_mut).and_then(Op::macro_arg_mut) {
                names.number_macros(arg);
            }
            part.numbered_tx = !part.targets.is_empty()
                && part.targets.iter().all(|t| t.tx_slot.is_some() && !t.count)
                && part.exclusions.is_empty()
                && part.transforms.is_empty()
                && !part.multi_match;
        }
        names
    }

    /// Numbers the `TX` variables that `m`'s macros read.
    fn number_macros(&mut self, m: &mut MacroString) {
        for p in &mut m.parts {
            if let MacroPart::Var(MacroVar { variable: Variable::Tx, key: Some(key), tx_slot }) = p {
                *tx_slot = Some(self.intern(&key.to_ascii_lowercase()));
            }
        }
    }

    /// Lists, for each `TX` target with a key regex, the numbered variables it takes, and
    /// marks the `setvar`s whose names made at run time cannot be numbered ones
    /// (`SetVarSpec::unnumbered`).
    fn select<'a>(&self, parts: impl Iterator<Item = &'a mut Part>) {
        for part in parts {
            for t in &mut part.targets {
                if t.variable == Variable::Tx && matches!(t.sel, Sel::Regex(..) | Sel::Prefix(_)) {
                    let taken = (0..self.keys.len()).filter(|&n| t.sel.matches(self.keys[n].key().as_bytes()));
                    t.tx_selected = Some(taken.map(|n| n as u32).collect());
                }
            }
            for sv in
                part.setvars.iter_mut().filter(|sv| sv.tx_slot.is_none() && sv.setvar.var.collection == Variable::Tx)
            {
                if let Some(MacroPart::Literal(start)) = sv.setvar.var.name.parts.first() {
                    let start = start.to_ascii_lowercase();
                    sv.unnumbered = !start.is_empty() && !self.keys.iter().any(|k| k.key().starts_with(&start));
                }
            }
        }
    }

    /// The number of capture `TX:i` (0 to 9), which every rule set numbers.
    pub(crate) fn capture(i: usize) -> u32 {
        debug_assert!(i < 10);
        i as u32
    }

    /// The number of `key` (lowercase), if the rule set names it.
    pub(crate) fn number_of(&self, key: &str) -> Option<u32> {
        self.numbers.get(key).copied()
    }

    /// The name (and key) of a number.
    pub(crate) fn at(&self, n: u32) -> &TxName {
        &self.keys[n as usize]
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// One target of a rule part.
#[derive(Clone, Debug)]
pub(crate) struct TargetSpec {
    pub variable: Variable,
    pub sel: Sel,
    pub count: bool,
    /// For `TX:key`: the key's [`TxNames`] number.
    pub tx_slot: Option<u32>,
    /// For `TX:/regex/`: the numbered variables whose keys the regex takes (the others, named
    /// at run time, are looked through one by one).
    pub tx_selected: Option<Box<[u32]>>,
}

/// A `!VAR[:key]` exclusion.
#[derive(Clone, Debug)]
pub(crate) struct Exclusion {
    pub variable: Variable,
    pub sel: Sel,
}

impl Exclusion {
    pub(crate) fn excludes(&self, variable: Variable, key: Option<&[u8]>) -> bool {
        self.variable == variable
            && match (&self.sel, key) {
                (Sel::All, _) => true,
                (sel, Some(k)) => sel.matches(k),
                (_, None) => false,
            }
    }
}

/// One `SecRule` (or `SecAction`) of a chain.
#[derive(Debug)]
pub(crate) struct Part {
    pub targets: Vec<TargetSpec>,
    pub exclusions: Vec<Exclusion>,
    /// `None` for `SecAction` (matches once, unconditionally).
    pub op: Option<Arc<Op>>,
    pub negated: bool,
    pub transforms: Vec<Transformation>,
    /// The chain's index among the rule set's distinct chains: transactions cache
    /// transformed values by (chain, value), so that rules sharing a chain transform once.
    pub chain_id: usize,
    /// This part's pattern and variables in the prescan, when it takes part.
    pub prescan: Option<Gate>,
    pub multi_match: bool,
    pub capture: bool,
    /// For a phrase list too long for the automata that the prescan does not check either
    /// (`@pmFromFile` on `MATCHED_VARS`, or in a rule most requests skip): whether a short value,
    /// through the part's transformations, holds a phrase, remembered across transactions
    /// (most values come again and hold none).
    pub verdicts: Option<Memo<bool>>,
    /// Whether the part cannot match when its variables hold no value: its targets are request
    /// collections or named `TX` variables, and a counted one refuses the count 0 (see
    /// [`Rule::quiet`]).
    pub guard: bool,
    /// Whether the part reads counts alone (`&ARGS`, `&REQUEST_HEADERS:Content-Type`), not of
    /// `MATCHED_VARS`, with a literal argument: cheap, and answering the same before the parts
    /// before it in [`Rule::quiet`] as after them, since those change nothing it reads.
    pub counted: bool,
    /// Whether the part reads numbered `TX` variables only, as they are (no counting,
    /// exclusions, transformations or `multiMatch`): it is evaluated without collecting values.
    pub numbered_tx: bool,
    /// Run on every matching value, whatever the rest of the chain does (as libmodsecurity3).
    pub setvars: Vec<SetVarSpec>,
    /// Run once the whole chain matched (`ctl:`, `setenv`, `initcol`, ...).
    pub after: Vec<ActionKind>,
}

/// A rule with its chain: one unit of evaluation.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: u64,
    pub phase: Phase,
    pub parts: Vec<Part>,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub severity: Option<Severity>,
    pub tags: Vec<MacroString>,
    /// The tags, when none has a macro: what every match of the rule records, shared.
    pub literal_tags: Option<Arc<[String]>>,
    /// Tags as written, for `ctl:ruleRemoveByTag` and friends.
    pub tag_text: Vec<String>,
    pub ver: Option<String>,
    pub log: bool,
    pub auditlog: bool,
    pub disruptive: Disruptive,
    pub status: u16,
    pub redirect: Option<MacroString>,
    pub skip_after: Option<String>,
    /// With `skip_after`: the index, in the rule's phase, of the step after the marker (the
    /// phase's length when the marker does not follow the rule).
    pub resume_at: usize,
    pub skip: u32,
    /// Set when a part cannot run: the rule never matches.
    pub broken: bool,
    /// How many of its parts, from the first, can rule it out before it does anything: up to
    /// the first that acts when it matches (`Part::acts_when_it_matches`), included. A
    /// chained part among them that the prescan rules out (`Part::prescan`) or whose variables
    /// hold nothing (`Part::guard`) fails the rule at once, as running it would: 920170 asks
    /// whether a `GET` has a `Content-Length`, and most have none; 920180 whether a request
    /// without one is a `POST`. A chained part among them that counts (`Part::counted`) is
    /// evaluated first: 920340 and 920640 ask whether a request with a body lacks a
    /// `Content-Type`, and most have one.
    pub quiet: usize,
    /// Where it was written: `file:line`.
    pub location: Arc<str>,
}

impl Rule {
    /// Sets [`Rule::quiet`] and each part's [`Part::guard`] and [`Part::counted`].
    fn find_guards(&mut self) {
        let checkable = |t: &TargetSpec| match t.variable {
            Variable::Tx => t.tx_slot.is_some(),
            v => pairs_of(v).is_some() && matches!(t.sel, Sel::All | Sel::Key(_)),
        };
        self.quiet = self.parts.len();
        for (i, part) in self.parts.iter_mut().enumerate() {
            part.guard = part.op.is_some()
                && !part.multi_match
                && !part.targets.is_empty()
                && part.targets.iter().all(checkable)
                && (!part.targets.iter().any(|t| t.count) || part.refuses_zero());
            part.counted = !part.multi_match
                && !part.targets.is_empty()
                && part
                    .targets
                    .iter()
                    .all(|t| t.count && !matches!(t.variable, Variable::MatchedVars | Variable::MatchedVarsNames))
                && part.op.as_deref().is_some_and(Op::literal);
            if part.acts_when_it_matches() {
                self.quiet = self.quiet.min(i + 1);
            }
        }
    }
}

impl Part {
    /// Whether a match of the part does something that stays when the rest of the chain then
    /// fails: a `setvar`, a capture (`TX:0..9`), a `multiMatch` match logged. A part that
    /// does none of these leaves nothing behind but `MATCHED_VARS`, which the failure clears.
    pub(crate) fn acts_when_it_matches(&self) -> bool {
        !self.setvars.is_empty() || (self.capture && !self.negated) || self.multi_match
    }

    /// Whether the part refuses the count of an empty collection, `0`, through its
    /// transformations (`false` when its operator's argument is only known at run time).
    fn refuses_zero(&self) -> bool {
        let zero = transform::apply_chain(&self.transforms, b"0", transform::Features::of(b"0"));
        self.op.as_deref().and_then(|op| op.holds_alone(&zero)).is_some_and(|holds| holds == self.negated)
    }
}

/// A step of a phase: a rule (index into the rule table) or a marker.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// A rule by index, with the prescan gate of its first part (`None` for a broken rule):
    /// the phase loop skips a rule it rules out without reading the rule.
    Rule(usize, Option<Gate>),
    Marker(String),
    /// What a run of folded rules does (only in [`RuleSet::folded`] steps).
    Set(Box<Effects>),
    /// A folded rule that matches in every transaction, with these matches, but whose
    /// `setvar`s read what only the transaction knows: they run (only in folded steps).
    Replay(usize, Box<[Matched]>),
}

/// A compiled rule set: built once from loaded SecLang, shared by every transaction.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) phases: [Vec<Step>; 5],
    /// By phase, the steps with the rules whose outcome is the same for every request folded
    /// (`None`: nothing folded), which transactions run while they hold (`fold`).
    pub(crate) folded: [Option<Folded>; 5],
    /// The rules the folded steps ran at compile time.
    pub(crate) baked: Baked,
    pub(crate) settings: Settings,
    pub(crate) prescan: Prescan,
    pub(crate) tx_names: TxNames,
    fallbacks: Vec<Fallback>,
    unsupported: Vec<Unsupported>,
}

/// Defaults of one phase from `SecDefaultAction`.
#[derive(Clone, Debug)]
struct Defaults {
    log: bool,
    auditlog: bool,
    disruptive: Disruptive,
    status: Option<u16>,
    transforms: Vec<Transformation>,
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults { log: true, auditlog: true, disruptive: Disruptive::Pass, status: None, transforms: Vec::new() }
    }
}

fn disruptive_of(a: &ActionKind) -> Option<Disruptive> {
    Some(match a {
        ActionKind::Pass => Disruptive::Pass,
        ActionKind::Deny => Disruptive::Deny,
        ActionKind::Drop => Disruptive::Drop,
        ActionKind::Allow(s) => Disruptive::Allow(*s),
        ActionKind::Redirect(_) | ActionKind::Proxy(_) => Disruptive::Redirect,
        _ => return None,
    })
}

impl RuleSet {
    /// Compiles loaded rules. Never fails: rules that cannot run are kept, never match, and
    /// are listed by [`RuleSet::unsupported`].
    pub fn compile(loaded: &seclang::RuleSet) -> RuleSet {
        let mut settings = Settings::default();
        let mut defaults: [Defaults; 5] = Default::default();
        let mut rules: Vec<Rule> = Vec::new();
        let mut order: Vec<Result<usize, String>> = Vec::new();
        let mut fallbacks = Vec::new();
        let mut unsupported = Vec::new();
        // Exceptions are applied once everything is read, as libmodsecurity3 applies them to
        // every rule whatever its position.
        let mut exceptions: Vec<&DirectiveKind> = Vec::new();
        let mut mime_cleared = false;

        // Settings first: the backtrack limit is needed while compiling regexes.
        for d in &loaded.directives {
            if let DirectiveKind::Setting(s) = &d.directive.kind {
                apply_setting(&mut settings, s, &mut mime_cleared);
            }
        }

        for d in &loaded.directives {
            match &d.directive.kind {
                DirectiveKind::Rule(r) => {
                    let location = format!(
                        "{}:{}",
                        loaded.path(d.file).map(|p| p.display().to_string()).unwrap_or_default(),
                        d.directive.span.start.line
                    );
                    let rule = compile_rule(r, d.file, loaded, &defaults, &settings, location);
                    for (p, prefilter) in &rule.1 {
                        fallbacks.push(Fallback { rule_id: rule.0.id, pattern: p.clone(), prefilter: *prefilter });
                    }
                    if let Some(reason) = &rule.2 {
                        unsupported.push(Unsupported { rule_id: rule.0.id, reason: reason.clone() });
                    }
                    order.push(Ok(rules.len()));
                    rules.push(rule.0);
                }
                DirectiveKind::DefaultAction(actions) => {
                    let phase = actions
                        .iter()
                        .find_map(|a| match a.kind {
                            ActionKind::Phase(p) => Some(p),
                            _ => None,
                        })
                        .unwrap_or(Phase::RequestBody);
                    let mut def = Defaults::default();
                    for a in actions {
                        match &a.kind {
                            ActionKind::Log => def.log = true,
                            ActionKind::NoLog => def.log = false,
                            ActionKind::AuditLog => def.auditlog = true,
                            ActionKind::NoAuditLog => def.auditlog = false,
                            ActionKind::Status(s) => def.status = Some(*s),
                            ActionKind::Transformation(Transformation::None) => def.transforms.clear(),
                            ActionKind::Transformation(t) => def.transforms.push(*t),
                            k => {
                                if let Some(dis) = disruptive_of(k) {
                                    def.disruptive = dis;
                                }
                            }
                        }
                    }
                    defaults[usize::from(phase.number() - 1)] = def;
                }
                DirectiveKind::Marker(m) => order.push(Err(m.clone())),
                k @ (DirectiveKind::RemoveById(_)
                | DirectiveKind::RemoveByTag(_)
                | DirectiveKind::RemoveByMsg(_)
                | DirectiveKind::UpdateTarget { .. }
                | DirectiveKind::UpdateActionById { .. }) => exceptions.push(k),
                _ => {}
            }
        }

        let mut removed = vec![false; rules.len()];
        for k in exceptions {
            apply_exception(k, &mut rules, &mut removed, &defaults);
        }
        let mut chains: std::collections::HashMap<Vec<Transformation>, usize> = std::collections::HashMap::new();
        for part in rules.iter_mut().flat_map(|r| r.parts.iter_mut()) {
            let next = chains.len();
            part.chain_id = *chains.entry(part.transforms.clone()).or_insert(next);
        }
        let tx_names = TxNames::number(rules.iter_mut().flat_map(|r| r.parts.iter_mut()));
        tx_names.select(rules.iter_mut().flat_map(|r| r.parts.iter_mut()));
        rules.iter_mut().for_each(Rule::find_guards);

        let mut phases: [Vec<Step>; 5] = Default::default();
        for o in order {
            match o {
                // The gates come with the prescan, after folding (`set_gates`).
                Ok(i) if !removed[i] => phases[usize::from(rules[i].phase.number() - 1)].push(Step::Rule(i, None)),
                Ok(_) => {}
                Err(m) => {
                    // Markers stand in every phase: skipAfter looks for them in its own.
                    for p in &mut phases {
                        p.push(Step::Marker(m.clone()));
                    }
                }
            }
        }
        for steps in &phases {
            for (at, step) in steps.iter().enumerate() {
                let Step::Rule(i, _) = step else { continue };
                let Some(marker) = &rules[*i].skip_after else { continue };
                let found = steps[at..].iter().position(|s| matches!(s, Step::Marker(m) if m == marker));
                rules[*i].resume_at = found.map_or(steps.len(), |k| at + k + 1);
            }
        }
        fallbacks.retain(|f: &Fallback| rules.iter().zip(&removed).any(|(r, &gone)| !gone && r.id == f.rule_id));
        unsupported.retain(|u: &Unsupported| rules.iter().zip(&removed).any(|(r, &gone)| !gone && r.id == u.rule_id));
        let mut rs = RuleSet {
            rules,
            phases,
            folded: Default::default(),
            baked: Baked::default(),
            settings,
            prescan: Prescan::default(),
            tx_names,
            fallbacks,
            unsupported,
        };
        (rs.folded, rs.baked) = fold(&rs);
        // Folding ran rules on this thread, which made its own copies of their regexes; the
        // threads that evaluate requests make theirs.
        for part in rs.rules.iter_mut().flat_map(|r| r.parts.iter_mut()) {
            if let Some(op) = part.op.as_mut().and_then(Arc::get_mut) {
                op.forget_copies();
            }
            let exclusions = part.exclusions.iter_mut().map(|e| &mut e.sel);
            part.targets.iter_mut().map(|t| &mut t.sel).chain(exclusions).for_each(Sel::forget_copies);
        }
        // The prescan comes after folding, which tells the rules that run in most
        // transactions: those left in the folded steps (all of a phase that does not fold).
        // Only their parts are prescanned: the others (CRS's above the paranoia level) are
        // skipped by every transaction that keeps to the folded steps, and one that leaves
        // them runs such a rule without a gate.
        let mut runs = vec![false; rs.rules.len()];
        for (written, folded) in rs.phases.iter().zip(&rs.folded) {
            for step in folded.as_ref().map_or(written, |f| &f.steps) {
                if let Step::Rule(i, _) = step {
                    runs[*i] = true;
                }
            }
        }
        let live = rs.rules.iter_mut().zip(removed).zip(runs).filter(|((r, gone), runs)| *runs && !gone && !r.broken);
        rs.prescan = Prescan::build(live.flat_map(|((r, _), _)| r.parts.iter_mut()));
        rs.set_gates();
        // A phrase list too long for the automata that the prescan does not check either
        // keeps its own verdicts.
        for p in rs.rules.iter_mut().flat_map(|r| r.parts.iter_mut()).filter(|p| p.prescan.is_none()) {
            if !p.negated && !p.multi_match && matches!(p.op.as_deref(), Some(Op::Pm(ph)) if ph.regex.is_none()) {
                p.verdicts = Some(Memo::default());
            }
        }
        rs
    }

    /// The same rules evaluated as written, with none of the shortcuts: no folded steps, no
    /// prescan gates, no remembered verdicts, every part of a chain in order, every value
    /// collected, no transformed value shared between parts. Many times slower; it is what
    /// the shortcuts are checked against (the CRS suites' test of them and the `shortcuts` fuzz
    /// target): a shortcut that changes an answer lets an attack through or blocks a benign
    /// request.
    pub fn without_shortcuts(mut self) -> RuleSet {
        self.folded = Default::default();
        self.baked = Baked::default();
        self.prescan = Prescan::default();
        // A chain id of its own per part: the transaction's cache of transformed values is
        // by chain id.
        let mut chain_ids = 0..;
        for rule in &mut self.rules {
            rule.quiet = 0;
            for (part, chain_id) in rule.parts.iter_mut().zip(&mut chain_ids) {
                part.chain_id = chain_id;
                part.prescan = None;
                part.verdicts = None;
                part.guard = false;
                part.counted = false;
                part.numbered_tx = false;
            }
        }
        self.set_gates();
        self
    }

    /// Gives each step of a rule the gate of the rule's first part (only live rules' parts
    /// have gates: a broken rule gets none).
    fn set_gates(&mut self) {
        let rules = &self.rules;
        let folded = self.folded.iter_mut().flatten().map(|f| &mut f.steps);
        for steps in self.phases.iter_mut().chain(folded) {
            for step in steps {
                if let Step::Rule(i, gate) = step {
                    *gate = rules[*i].parts.first().and_then(|p| p.prescan);
                }
            }
        }
    }

    /// Rules whose regex runs on the backtracking engine (bounded by `SecPcreMatchLimit`).
    pub fn fallbacks(&self) -> &[Fallback] {
        &self.fallbacks
    }

    /// Rules that cannot run here (they never match), with the reason.
    pub fn unsupported(&self) -> &[Unsupported] {
        &self.unsupported
    }

    /// The engine settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many rules are active (after load-time removals).
    pub fn rule_count(&self) -> usize {
        self.phases.iter().flatten().filter(|s| matches!(s, Step::Rule(..))).count()
    }
}

fn apply_setting(s: &mut Settings, setting: &Setting, mime_cleared: &mut bool) {
    match setting {
        Setting::RuleEngine(m) => s.engine = *m,
        Setting::RequestBodyLimitAction(a) => s.request_body_limit_action = *a,
        Setting::ResponseBodyLimitAction(a) => s.response_body_limit_action = *a,
        Setting::ResponseBodyMimeTypesClear => {
            s.response_mime_types.clear();
            *mime_cleared = true;
        }
        Setting::Switch(SwitchDirective::RequestBodyAccess, b) => s.request_body_access = *b,
        Setting::Switch(SwitchDirective::ResponseBodyAccess, b) => s.response_body_access = *b,
        Setting::Number(d, n) => {
            let n = *n;
            match d {
                NumberDirective::RequestBodyLimit => s.request_body_limit = n,
                NumberDirective::ResponseBodyLimit => s.response_body_limit = n,
                NumberDirective::RequestBodyJsonDepthLimit => s.json_depth_limit = n as usize,
                NumberDirective::ArgumentsLimit => s.arguments_limit = n as usize,
                NumberDirective::PcreMatchLimit => s.backtrack_limit = n as usize,
                _ => {}
            }
        }
        Setting::Text(TextDirective::ArgumentSeparator, sep) => {
            if let Some(&b) = sep.as_bytes().first() {
                s.argument_separator = b;
            }
        }
        Setting::List(ListDirective::ResponseBodyMimeType, types) => {
            if !*mime_cleared {
                s.response_mime_types.clear();
                *mime_cleared = true;
            }
            s.response_mime_types.extend(types.iter().map(|t| t.to_ascii_lowercase()));
        }
        _ => {}
    }
}

/// A compiled rule, the patterns that fell back (with whether they have a prefilter), and why
/// it cannot run (if it cannot).
type Compiled = (Rule, Vec<(String, bool)>, Option<String>);

fn compile_rule(
    r: &seclang::ast::Rule,
    file: FileId,
    loaded: &seclang::RuleSet,
    defaults: &[Defaults; 5],
    settings: &Settings,
    location: String,
) -> Compiled {
    let phase = r.phase().unwrap_or(Phase::RequestBody);
    let def = &defaults[usize::from(phase.number() - 1)];
    let mut rule = Rule {
        id: r.id().unwrap_or(0),
        phase,
        parts: Vec::new(),
        msg: None,
        logdata: None,
        severity: None,
        tags: Vec::new(),
        literal_tags: None,
        tag_text: Vec::new(),
        ver: None,
        log: def.log,
        auditlog: def.auditlog,
        disruptive: Disruptive::Pass,
        status: def.status.unwrap_or(403),
        redirect: None,
        skip_after: None,
        resume_at: 0,
        skip: 0,
        broken: false,
        quiet: 0,
        location: location.into(),
    };
    let mut fallbacks = Vec::new();
    let mut problem: Option<String> = None;
    for (i, part) in r.parts().enumerate() {
        let mut p = Part { transforms: def.transforms.clone(), ..empty_part() };
        for a in &part.actions {
            apply_action(&mut rule, &mut p, &a.kind, def, i == 0, &mut problem);
        }
        if let RuleKind::SecRule { targets, operator } = &part.kind {
            for t in targets {
                if let Err(e) = add_target(&mut p, t) {
                    problem.get_or_insert(e);
                }
            }
            p.negated = operator.negated;
            let files: Vec<&[String]> = if operator.kind.reads_files() {
                operator
                    .words()
                    .iter()
                    .filter_map(|w| loaded.data_file(file, w))
                    .map(|f: &DataFile| f.entries.as_slice())
                    .collect()
            } else {
                Vec::new()
            };
            match operator::compile(operator.kind, &operator.argument, &files, settings.backtrack_limit) {
                Ok(c) => {
                    if c.fallback {
                        fallbacks.push((operator.argument.to_string(), c.prefilter));
                    }
                    p.op = Some(Arc::new(c.op));
                }
                Err(e) => {
                    problem.get_or_insert(e);
                }
            }
        }
        if let Some(t) = p.transforms.iter().find(|t| !transform::supported(**t)) {
            problem.get_or_insert(format!("transformation t:{} is not implemented", t.name()));
        }
        rule.parts.push(p);
    }
    rule.broken = problem.is_some();
    rule.literal_tags =
        rule.tags.iter().map(|t| t.as_literal().map(str::to_string)).collect::<Option<Vec<_>>>().map(Arc::from);
    (rule, fallbacks, problem)
}

fn add_target(p: &mut Part, t: &Target) -> Result<(), String> {
    let sel = Sel::of(t)?;
    match t.modifier {
        TargetModifier::Exclude => p.exclusions.push(Exclusion { variable: t.variable, sel }),
        TargetModifier::Count | TargetModifier::None => {
            let count = t.modifier == TargetModifier::Count;
            p.targets.push(TargetSpec { variable: t.variable, sel, count, tx_slot: None, tx_selected: None })
        }
    }
    Ok(())
}

fn apply_action(
    rule: &mut Rule,
    p: &mut Part,
    a: &ActionKind,
    def: &Defaults,
    head: bool,
    problem: &mut Option<String>,
) {
    match a {
        ActionKind::Msg(m) => rule.msg = Some(m.clone()),
        ActionKind::LogData(m) => rule.logdata = Some(m.clone()),
        ActionKind::Severity(s) => rule.severity = Some(*s),
        ActionKind::Tag(t) => {
            rule.tag_text.push(t.to_string());
            rule.tags.push(t.clone());
        }
        ActionKind::Ver(v) => rule.ver = Some(v.clone()),
        ActionKind::Log => rule.log = true,
        ActionKind::NoLog => rule.log = false,
        ActionKind::AuditLog => rule.auditlog = true,
        ActionKind::NoAuditLog => rule.auditlog = false,
        ActionKind::Status(s) => rule.status = *s,
        ActionKind::Block if head => rule.disruptive = def.disruptive.clone(),
        ActionKind::Redirect(u) | ActionKind::Proxy(u) if head => {
            rule.disruptive = Disruptive::Redirect;
            rule.redirect = Some(u.clone());
        }
        k if head && disruptive_of(k).is_some() => rule.disruptive = disruptive_of(k).unwrap_or(Disruptive::Pass),
        ActionKind::SkipAfter(m) => rule.skip_after = Some(m.clone()),
        ActionKind::Skip(n) => rule.skip = *n,
        ActionKind::Transformation(Transformation::None) => p.transforms.clear(),
        ActionKind::Transformation(t) => p.transforms.push(*t),
        ActionKind::MultiMatch => p.multi_match = true,
        ActionKind::Capture => p.capture = true,
        ActionKind::SetVar(sv) => p.setvars.push(SetVarSpec::of(sv)),
        k @ (ActionKind::Ctl(_)
        | ActionKind::SetEnv(..)
        | ActionKind::InitCol(..)
        | ActionKind::ExpireVar(..)
        | ActionKind::DeprecateVar(..)
        | ActionKind::SetUid(_)
        | ActionKind::SetSid(_)
        | ActionKind::SetRsc(_)) => p.after.push(k.clone()),
        ActionKind::Exec(_) => {
            problem.get_or_insert("action exec is not implemented".into());
        }
        _ => {}
    }
}

/// Applies a load-time exception directive.
fn apply_exception(k: &DirectiveKind, rules: &mut [Rule], removed: &mut [bool], defaults: &[Defaults; 5]) {
    let tag_matches = |r: &Rule, re: &str| match regex::Regex::new(re) {
        Ok(rx) => r.tag_text.iter().any(|t| rx.is_match(t)),
        Err(_) => r.tag_text.iter().any(|t| t == re),
    };
    let msg_matches = |r: &Rule, re: &str| {
        let msg = r.msg.as_ref().map(|m| m.to_string()).unwrap_or_default();
        match regex::Regex::new(re) {
            Ok(rx) => rx.is_match(&msg),
            Err(_) => msg == re,
        }
    };
    match k {
        DirectiveKind::RemoveById(ranges) => {
            for (i, r) in rules.iter().enumerate() {
                if ranges.iter().any(|g| g.contains(r.id)) {
                    removed[i] = true;
                }
            }
        }
        DirectiveKind::RemoveByTag(t) => {
            for (i, r) in rules.iter().enumerate() {
                if tag_matches(r, t) {
                    removed[i] = true;
                }
            }
        }
        DirectiveKind::RemoveByMsg(m) => {
            for (i, r) in rules.iter().enumerate() {
                if msg_matches(r, m) {
                    removed[i] = true;
                }
            }
        }
        DirectiveKind::UpdateTarget { selector, targets, replaced } => {
            for r in rules.iter_mut() {
                let hit = match selector {
                    RuleSelector::Ids(ids) => ids.iter().any(|g| g.contains(r.id)),
                    RuleSelector::Tag(t) => tag_matches(r, t),
                    RuleSelector::Msg(m) => msg_matches(r, m),
                };
                if !hit {
                    continue;
                }
                let Some(head) = r.parts.first_mut() else { continue };
                if let Some(old) = replaced {
                    for o in old {
                        let Ok(sel) = Sel::of(o) else { continue };
                        head.targets.retain(|t| !(t.variable == o.variable && same_sel(&t.sel, &sel)));
                    }
                }
                for t in targets {
                    if add_target(head, t).is_err() {
                        r.broken = true;
                    }
                }
            }
        }
        DirectiveKind::UpdateActionById { id, actions, .. } => {
            for r in rules.iter_mut().filter(|r| r.id == *id) {
                let def = defaults[usize::from(r.phase.number() - 1)].clone();
                // Replaced lists: a new msg/logdata/severity replaces the old; new tags, setvars
                // and transformations are added.
                let mut problem = None;
                if let Some(mut head) = r.parts.first_mut().map(|p| std::mem::replace(p, empty_part())) {
                    for a in actions {
                        apply_action(r, &mut head, &a.kind, &def, true, &mut problem);
                    }
                    if let Some(slot) = r.parts.first_mut() {
                        *slot = head;
                    }
                }
                if problem.is_some() {
                    r.broken = true;
                }
            }
        }
        _ => {}
    }
}

fn same_sel(a: &Sel, b: &Sel) -> bool {
    match (a, b) {
        (Sel::All, Sel::All) => true,
        (Sel::Key(x), Sel::Key(y)) | (Sel::XPath(x), Sel::XPath(y)) | (Sel::Prefix(x), Sel::Prefix(y)) => x == y,
        (Sel::Regex(x, _), Sel::Regex(y, _)) => x.as_str() == y.as_str(),
        _ => false,
    }
}

fn empty_part() -> Part {
    Part {
        targets: Vec::new(),
        exclusions: Vec::new(),
        op: None,
        negated: false,
        transforms: Vec::new(),
        chain_id: 0,
        prescan: None,
        multi_match: false,
        capture: false,
        verdicts: None,
        guard: false,
        counted: false,
        numbered_tx: false,
        setvars: Vec::new(),
        after: Vec::new(),
    }
}

/// The body processor a `Content-Type` selects (`multipart/form-data` and
/// `application/x-www-form-urlencoded`, compared without case as a prefix).
pub(crate) fn processor_for(content_type: &[u8]) -> Option<BodyProcessor> {
    let l = content_type.to_ascii_lowercase();
    if l.starts_with(b"multipart/form-data") {
        Some(BodyProcessor::Multipart)
    } else if l.starts_with(b"application/x-www-form-urlencoded") {
        Some(BodyProcessor::UrlEncoded)
    } else {
        None
    }
}
