//! One request (and its response) going through a compiled [`RuleSet`]: the per-request state
//! and the evaluation loop.
//!
//! ```text
//! Request ──headers──▶ phase 1 ──body processor──▶ phase 2 ─┐
//! Response ─headers──▶ phase 3 ──body (if inspected)──▶ phase 4 ──▶ phase 5 ──▶ Outcome
//! ```
//!
//! Within a phase, rules and markers run in file order. A rule part collects the values of its
//! targets (minus `!` exclusions and runtime `ctl:ruleRemoveTarget*`), applies its
//! transformation chain (every step with `multiMatch`), runs its operator, and for each match
//! updates `MATCHED_VAR(S)`, `TX:0..9` (with `capture`) and runs its `setvar`s, as
//! libmodsecurity3 does. When every part of a chain matched, the rule's `ctl:` actions run, its
//! `msg`/`logdata` are expanded, it is recorded, and its disruptive action applies when the
//! engine is `On` (`DetectionOnly` records but never interrupts).
//!
//! `variables` holds what the request and response give and resolves a target to values.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regex_automata::PatternSet;
use smallvec::{smallvec, SmallVec};

use crate::seclang::ast::{
    ActionKind, AllowScope, BodyProcessor, Ctl, EngineMode, IdRange, LimitAction, MacroPart, MacroString, MacroVar,
    Phase, SetVarOp, Severity, Target, Variable,
};

use super::body::{json, multipart, urlencoded, xml, Pair};
use super::compile::{Disruptive, Exclusion, Part, Rule, RuleSet, Sel, SetVarSpec, Step, TargetSpec, TxName, TxNames};
use super::fast_hash::{FastHash, SeededHash};
use super::memo::{self, Memo};
use super::operator::{self, Captures, NumArg, Op, Rx};
use super::prescan::{self, Gate, Scans};
use super::request::{self, Request, Response};
use super::text;
use super::transform;

/// A rule that matched and logs: what the audit log and `POST /api/v1/waf/evaluate` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    /// The rule id.
    pub id: u64,
    /// The phase it ran in.
    pub phase: u8,
    /// `msg`, expanded.
    pub msg: String,
    /// `logdata`, expanded.
    pub data: String,
    /// `severity`.
    pub severity: Option<Severity>,
    /// `tag`s, expanded.
    pub tags: Arc<[String]>,
    /// The variable of the last match (`ARGS:id`).
    pub matched_var_name: String,
    /// Where the rule is written (`file:line`).
    pub location: Arc<str>,
    /// Whether the rule's disruptive action interrupted the transaction.
    pub disruptive: bool,
}

impl MatchedRule {
    /// One line in the shape libmodsecurity3 writes to the error log: bytes outside printable
    /// ASCII, `"` and `\` in `msg` and `data` are written `\xHH`.
    pub fn log_line(&self) -> String {
        let mut s = format!(
            "ModSecurity: Warning. Matched against variable `{}' [file \"{}\"] [id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            self.matched_var_name,
            self.location,
            self.id,
            hex_if_needed(&self.msg),
            hex_if_needed(&self.data)
        );
        if let Some(sev) = self.severity {
            s.push_str(&format!(" [severity \"{}\"]", sev.number()));
        }
        for t in self.tags.iter() {
            s.push_str(&format!(" [tag \"{t}\"]"));
        }
        s
    }
}

/// libmodsecurity3's `toHexIfNeeded` with escaping of `"` and `\`.
fn hex_if_needed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(32..=126).contains(&b) || b == b'"' || b == b'\\' {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Room made in advance for what a transaction collects (`MATCHED_VARS`, a part's hits, the
/// `TX` values it sets): benign requests collect a few of each (920450, one per request
/// header), and growing each vector from nothing cost three reallocations per request.
const ROOM: usize = 16;

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through.
    Pass,
    /// Refuse it with this status (`deny`, `drop` (status 0 asks to close the connection),
    /// `redirect`).
    Block {
        /// The HTTP status.
        status: u16,
        /// The rule that decided.
        rule_id: u64,
    },
}

/// What a transaction ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Pass or block.
    pub verdict: Verdict,
    /// `TX:blocking_inbound_anomaly_score` (CRS 4), or `TX:inbound_anomaly_score` /
    /// `TX:anomaly_score` (CRS 3).
    pub inbound_anomaly_score: i64,
    /// `TX:blocking_outbound_anomaly_score` (CRS 4), or `TX:outbound_anomaly_score`.
    pub outbound_anomaly_score: i64,
    /// The rules that matched and log, in order.
    pub matched: Vec<MatchedRule>,
}

/// A request and response being evaluated. Create one per request with
/// [`Transaction::new`], feed it, then call [`Transaction::finish`].
#[derive(Debug)]
pub struct Transaction<'r> {
    rules: &'r RuleSet,
    v: Vars,
    /// `TX`; the few rules that walk it sort what they take (`values`).
    tx: TxVars<'r>,
    /// IP, GLOBAL, SESSION, USER, RESOURCE: kept for this transaction only.
    stores: BTreeMap<(u8, String), Arc<[u8]>>,
    env: BTreeMap<String, Vec<u8>>,
    /// `MATCHED_VARS`; the last one is `MATCHED_VAR_NAME` and `MATCHED_VAR` (none: empty).
    /// What folded steps matched is borrowed from the rule set, without reference counts.
    matched_vars: Vec<Seen<'r>>,
    /// Room for the hits of a part (see [`Hits`]).
    hits: Hits,
    engine: EngineMode,
    request_body_access: bool,
    response_body_access: bool,
    processor: Option<BodyProcessor>,
    removed_ids: Vec<IdRange>,
    removed_tags: Vec<String>,
    removed_msgs: Vec<String>,
    removed_targets: Vec<(RuleRef, Exclusion)>,
    request_body_limit: u64,
    response_body_limit: u64,
    matches: Vec<MatchedRule>,
    interruption: Option<(u16, u64)>,
    /// The phases that ran on the folded steps to their end: 1 to this one. A phase that
    /// leaves them (see `fold`) ends the count, and the phases after it run as written.
    folded_through: u8,
    /// Whether `ctl:ruleRemove*` removed a rule that folding ran at compile time.
    baked_removed: bool,
    /// Request phases are skipped up to and including this phase (`allow`).
    allowed_through: u8,
    highest_severity: Option<u8>,
    /// `UNIQUE_ID`, as a number (written in hex when read).
    unique_id: u64,
    /// Seconds since the Unix epoch when the transaction began (`TIME*`).
    started: u64,
    /// Transformed values by chain and original value, and the bytes they hold.
    transformed: RefCell<TransformCache>,
    cached_bytes: Cell<usize>,
    /// Prescan bitsets by scope, dropped when the scope's values may change: when the request
    /// body or response data is loaded (see [`prescan::Prescan::forget_body`]).
    prescanned: Scans,
    /// Scratch space for prescanning.
    found: RefCell<PatternSet>,
    /// How many more transitions the prescan's automata may compute (`Prescan::transitions`).
    transitions: Cell<usize>,
}

#[derive(Clone, Debug)]
enum RuleRef {
    Ids(Vec<IdRange>),
    Tag(String),
    Msg(String),
}

/// One successful operator run.
#[derive(Debug)]
struct Hit {
    name: VarName,
    value: Arc<[u8]>,
    captures: Option<Captures>,
}

/// The hits of a rule part: most parts have none or one. Filled in place, in a vector each
/// transaction keeps for its parts (a list of hits returned by value was copied out at every
/// part).
type Hits = Vec<Hit>;

/// A matched variable's name and value, shared by `MATCHED_VAR` and `MATCHED_VARS`.
pub(crate) type Matched = (Arc<str>, Arc<[u8]>);

/// A variable's name and value where they are kept (read without reference counts).
pub(crate) type MatchedRef<'a> = (&'a Arc<str>, &'a Arc<[u8]>);

/// A member of `MATCHED_VARS`: what a folded step matched, borrowed from the rule set without
/// reference counts, or what the transaction matched.
#[derive(Clone, Debug)]
enum Seen<'r> {
    Folded(&'r Matched),
    Hit(VarName, Arc<[u8]>),
}

impl Seen<'_> {
    fn name(&self) -> Cow<'_, str> {
        match self {
            Seen::Folded((name, _)) => Cow::Borrowed(name),
            Seen::Hit(name, _) => name.text(),
        }
    }

    /// [`Seen::name`] as bytes, as a variable's value reads it.
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        match self.name() {
            Cow::Borrowed(name) => Cow::Borrowed(name.as_bytes()),
            Cow::Owned(name) => Cow::Owned(name.into_bytes()),
        }
    }

    fn value(&self) -> &Arc<[u8]> {
        match self {
            Seen::Folded((_, value)) | Seen::Hit(_, value) => value,
        }
    }

    /// As the rule set keeps a match (folding).
    fn to_matched(&self) -> Matched {
        match self {
            Seen::Folded(m) => (*m).clone(),
            Seen::Hit(name, value) => (name.clone().into_made(), value.clone()),
        }
    }
}

enum Flow {
    Next,
    /// Resume after the rule's `skipAfter` marker.
    SkipAfter,
    Skip(u32),
    EndPhase,
    Stop,
}

mod expansion;
pub(crate) mod fold;
mod tx;
pub(crate) mod variables;

use expansion::Expansion;
use tx::TxVars;
use variables::{store_index, tx_val, Val, Vals, VarName, Vars};

/// The keys of `TX:0`..`TX:9`, which `capture` sets, and the usual counts (`&ARGS`).
pub(crate) const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// At most this many bytes (originals and results) in a transaction's transformation cache.
const CACHE_BUDGET: usize = 4 << 20;

/// Values up to this long are transformed again rather than kept (see `transformed`).
const SHORT_VALUE: usize = 64;

/// A new `UNIQUE_ID`: unique in the process. Each thread takes a block of numbers at a time,
/// so that the gateway's workers do not write one counter in turn for every request.
fn unique_id() -> u64 {
    const BLOCK: u64 = 1024;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) });
    RANGE.with(|r| {
        let (mut at, mut end) = r.get();
        if at == end {
            at = NEXT.fetch_add(BLOCK, Ordering::Relaxed);
            end = at + BLOCK;
        }
        r.set((at + 1, end));
        at
    })
}

impl<'r> Transaction<'r> {
    /// A fresh transaction over `rules`.
    pub fn new(rules: &'r RuleSet) -> Transaction<'r> {
        let s = &rules.settings;
        Transaction {
            rules,
            v: Vars::default(),
            tx: TxVars::new(&rules.tx_names),
            stores: BTreeMap::new(),
            env: BTreeMap::new(),
            matched_vars: Vec::with_capacity(ROOM),
            hits: Vec::with_capacity(ROOM),
            engine: s.engine,
            request_body_access: s.request_body_access,
            response_body_access: s.response_body_access,
            processor: None,
            removed_ids: Vec::new(),
            removed_tags: Vec::new(),
            removed_msgs: Vec::new(),
            removed_targets: Vec::new(),
            request_body_limit: s.request_body_limit,
            response_body_limit: s.response_body_limit,
            matches: Vec::new(),
            interruption: None,
            folded_through: 0,
            baked_removed: false,
            allowed_through: 0,
            highest_severity: None,
            unique_id: unique_id(),
            started: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            transformed: RefCell::new(HashMap::default()),
            cached_bytes: Cell::new(0),
            prescanned: rules.prescan.scans(),
            found: RefCell::new(rules.prescan.pattern_set()),
            transitions: Cell::new(rules.prescan.transitions),
        }
    }

    /// Whether a disruptive action stopped the transaction, and with which status and rule.
    pub fn interruption(&self) -> Option<(u16, u64)> {
        self.interruption
    }

    /// A `TX` variable, by case-insensitive name.
    pub fn tx(&self, name: &str) -> Option<&[u8]> {
        self.tx.value(&lowercase(name)).map(|v| &v[..])
    }

    /// Runs phases 1 and 2 over a request, which the transaction keeps (its headers and body
    /// become the variables as they are, without a copy).
    pub fn process_request(&mut self, mut req: Request) {
        self.prescanned.clear();
        let body = std::mem::take(&mut req.body);
        self.load_request(req);
        self.run_phase(Phase::RequestHeaders);
        if self.interruption.is_some() {
            return;
        }
        self.process_request_body(body);
        if self.interruption.is_some() {
            return;
        }
        self.forget_prescan();
        self.run_phase(Phase::RequestBody);
    }

    /// Runs phases 3 and 4 over a response (skipped after an interruption), which the
    /// transaction keeps: its headers, and its body when the rule set reads bodies of its
    /// type (up to `SecResponseBodyLimit`).
    pub fn process_response(&mut self, resp: Response) {
        if self.interruption.is_some() {
            return;
        }
        let Response { status, protocol, headers, mut body } = resp;
        self.v.status = Some(status);
        self.v.response_protocol = protocol;
        self.v.response_headers = headers;
        self.forget_prescan();
        self.run_phase(Phase::ResponseHeaders);
        if self.interruption.is_some() {
            return;
        }
        if self.response_body_access {
            let ct = request::header_value(&self.v.response_headers, "content-type").unwrap_or(b"");
            if self.rules.settings.reads_body_of(request::media_type(ct)) {
                let limit = usize::try_from(self.response_body_limit).unwrap_or(usize::MAX);
                self.v.outbound_data_error = body.len() > limit;
                body.truncate(limit);
                self.v.response_body = Some(body);
            }
        }
        self.forget_prescan();
        self.run_phase(Phase::ResponseBody);
    }

    /// Drops the prescan bitsets of the variables that loading a body or a response may
    /// change: all but those of the request head.
    fn forget_prescan(&mut self) {
        self.rules.prescan.forget_body(&mut self.prescanned);
    }

    /// Runs phase 5 and returns the outcome.
    pub fn finish(mut self) -> Outcome {
        self.run_phase(Phase::Logging);
        let score =
            |names: &[&str]| names.iter().find_map(|n| self.tx.value(n)).map(|v| operator::to_int(v)).unwrap_or(0);
        Outcome {
            verdict: match self.interruption {
                Some((status, rule_id)) => Verdict::Block { status, rule_id },
                None => Verdict::Pass,
            },
            inbound_anomaly_score: score(&["blocking_inbound_anomaly_score", "inbound_anomaly_score", "anomaly_score"]),
            outbound_anomaly_score: score(&["blocking_outbound_anomaly_score", "outbound_anomaly_score"]),
            matched: self.matches,
        }
    }

    fn process_request_body(&mut self, mut body: Vec<u8>) {
        if !self.request_body_access {
            return;
        }
        let s = &self.rules.settings;
        let limit = usize::try_from(self.request_body_limit).unwrap_or(usize::MAX);
        if body.len() > limit {
            self.v.inbound_data_error = true;
            if s.request_body_limit_action == LimitAction::Reject && self.engine == EngineMode::On {
                self.interruption = Some((413, 0));
                return;
            }
            body.truncate(limit);
        }
        self.v.body_length = body.len();
        let body: &[u8] = self.v.body.insert(body);
        let ct = request::header_value(&self.v.headers, "content-type").unwrap_or(b"");
        // An empty multipart body is not parsed (no error); JSON and XML see it (XML fails).
        let processor = self.processor;
        self.v.reqbody_processed =
            matches!(processor, Some(BodyProcessor::Json | BodyProcessor::Xml | BodyProcessor::Multipart));
        let result: Result<(), String> = match processor {
            Some(BodyProcessor::Multipart) if body.is_empty() => Ok(()),
            Some(BodyProcessor::UrlEncoded) => {
                let (args, bad) = urlencoded::parse(body, s.argument_separator);
                self.v.args_post = args;
                self.v.urlencoded_error |= bad;
                Ok(())
            }
            Some(BodyProcessor::Multipart) => {
                let m = multipart::parse(ct, body);
                self.v.args_post = m.args;
                self.v.files = m.files;
                self.v.part_headers = m.part_headers;
                self.v.multipart = Some(m.flags);
                m.error.map_or(Ok(()), Err)
            }
            Some(BodyProcessor::Json) => json::parse(body, s.json_depth_limit).map(|args| self.v.args_post = args),
            Some(BodyProcessor::Xml) => xml::parse(body).map(|doc| self.v.xml = Some(doc)),
            _ => Ok(()),
        };
        self.v.reqbody_error = result.err();
    }

    fn run_phase(&mut self, phase: Phase) {
        let n = phase.number();
        if self.engine == EngineMode::Off || (n <= 4 && n <= self.allowed_through) {
            return;
        }
        if self.interruption.is_some() && phase != Phase::Logging {
            return;
        }
        let rs: &'r RuleSet = self.rules;
        let written = &rs.phases[usize::from(n - 1)];
        // The folded steps while they hold and every phase before ran on them to its end,
        // else the phase as written.
        let mut folded =
            rs.folded[usize::from(n - 1)].as_ref().filter(|_| self.folding_holds() && self.folded_through == n - 1);
        let mut steps = folded.map_or(written, |f| &f.steps);
        let mut skip_n = 0u32;
        let mut at = 0;
        while let Some(step) = steps.get(at) {
            at += 1;
            let (i, gate) = match step {
                Step::Rule(i, gate) => (i, gate),
                Step::Set(effects) => {
                    self.apply(effects);
                    continue;
                }
                Step::Replay(i, matched) => {
                    self.replay(&rs.rules[*i], matched);
                    continue;
                }
                Step::Marker(_) => continue,
            };
            if skip_n > 0 {
                skip_n -= 1;
                continue;
            }
            let rule: &'r Rule = &rs.rules[*i];
            // Most rules fail at a first part the prescan rules out: what `eval_rule` would do
            // then (the part matched nothing), read from the step alone, without the rule's
            // parts and bookkeeping; a rule `ctl` removed does nothing at all.
            if let Some(gate) = gate {
                if !self.may_match(rule, *gate) {
                    if !self.matched_vars.is_empty() && !self.removed(rule) {
                        self.matched_vars.clear();
                    }
                    continue;
                }
            }
            if rule.broken || self.removed(rule) {
                continue;
            }
            let flow = self.eval_rule(rule);
            if let Some(f) = folded {
                // The folded steps hold while this rule goes on to the next step or jumps to a
                // landing in them, and removes no rule folding ran (nor a TX target): else the
                // rules as written, from here.
                let landing = match flow {
                    Flow::Next => Some(at),
                    Flow::SkipAfter | Flow::Skip(_) => {
                        fold::jump(rule, written, f.origin[at - 1]).and_then(|to| f.landing(to))
                    }
                    Flow::EndPhase | Flow::Stop => None,
                };
                match landing.filter(|_| self.folding_holds()) {
                    Some(next) => {
                        at = next;
                        if self.engine == EngineMode::Off {
                            return;
                        }
                        continue;
                    }
                    None => {
                        at = f.origin[at - 1] + 1;
                        steps = written;
                        folded = None;
                    }
                }
            }
            match flow {
                Flow::Next => {}
                Flow::SkipAfter => at = rule.resume_at,
                Flow::Skip(k) => skip_n = k,
                Flow::EndPhase => break,
                Flow::Stop => return,
            }
            if self.engine == EngineMode::Off {
                return;
            }
        }
        if folded.is_some() {
            self.folded_through = n;
        }
    }

    /// The phases that ran on the folded steps to their end: 1 to this one.
    #[cfg(test)]
    pub(crate) fn folded_through(&self) -> u8 {
        self.folded_through
    }

    /// Whether the folded steps still give what the phases as written would: no rule run at
    /// compile time was removed, nor a `TX` target (all folded rules read). That the
    /// transaction kept to their path is `folded_through`'s part.
    fn folding_holds(&self) -> bool {
        // Folding reads TX and (when no response body is read) RESPONSE_BODY as constants.
        !self.baked_removed && !self.target_removed(|v| matches!(v, Variable::Tx | Variable::ResponseBody))
    }

    /// Whether `ctl:ruleRemoveTarget*` took a `TX` target from some rule.
    fn tx_target_removed(&self) -> bool {
        self.target_removed(|v| v == Variable::Tx)
    }

    /// Whether `ctl:ruleRemoveTarget*` took a target of such a variable from some rule.
    fn target_removed(&self, of: impl Fn(Variable) -> bool) -> bool {
        self.removed_targets.iter().any(|(_, e)| of(e.variable))
    }

    /// Does what a run of folded rules did.
    fn apply(&mut self, effects: &'r fold::Effects) {
        if effects.clear_matched {
            self.matched_vars.clear();
        }
        self.matched_vars.extend(effects.matched.iter().map(Seen::Folded));
        for (n, value) in &effects.tx {
            match value {
                Some(m) => self.tx.set_baked(*n, m),
                None => self.tx.remove(*n),
            }
        }
    }

    /// Does what a rule that matches in every transaction does with its matches: records
    /// each in `MATCHED_VAR(S)` and runs the `setvar`s (see `fold`).
    fn replay(&mut self, rule: &Rule, matched: &'r [Matched]) {
        for m in matched {
            self.matched_vars.push(Seen::Folded(m));
            for sv in &rule.parts[0].setvars {
                self.setvar(rule, sv);
            }
        }
    }

    /// Whether no `ctl:ruleRemove*` has removed rules in this transaction.
    fn nothing_removed(&self) -> bool {
        self.removed_ids.is_empty() && self.removed_tags.is_empty() && self.removed_msgs.is_empty()
    }

    /// Whether `ctl:ruleRemove*` removed the rule: asked for each rule a request evaluates,
    /// so the common answer (nothing was removed) is read from three lengths, in line.
    #[inline]
    fn removed(&self, rule: &Rule) -> bool {
        !self.nothing_removed() && self.removed_by_ctl(rule)
    }

    fn removed_by_ctl(&self, rule: &Rule) -> bool {
        self.removed_ids.iter().any(|r| r.contains(rule.id))
            || (!self.removed_tags.is_empty() && rule.tag_text.iter().any(|t| self.removed_tags.contains(t)))
            || (!self.removed_msgs.is_empty()
                && rule.msg.as_ref().is_some_and(|m| self.removed_msgs.contains(&m.to_string())))
    }

    fn eval_rule(&mut self, rule: &'r Rule) -> Flow {
        // A chained part that cannot match, reached through parts that do nothing: the rule
        // fails there, whatever the parts before find (see `Rule::quiet`).
        let mut hits = std::mem::take(&mut self.hits);
        for part in rule.parts.iter().take(rule.quiet).skip(1) {
            let empty = part.guard && part.targets.iter().all(|t| self.holds_nothing(t));
            let fails = empty
                || part.prescan.is_some_and(|gate| !self.may_match(rule, gate))
                || part.counted && {
                    hits.clear();
                    self.eval_part(rule, part, &mut hits);
                    hits.is_empty()
                };
            if fails {
                self.matched_vars.clear();
                self.hits = hits;
                return Flow::Next;
            }
        }
        for part in &rule.parts {
            hits.clear();
            self.eval_part(rule, part, &mut hits);
            if hits.is_empty() {
                // libmodsecurity3 clears MATCHED_VAR(S) when a rule part does not match, and
                // only then: the matches of consecutive matching rules accumulate (checked
                // against 3.0.9; CRS chains that inspect MATCHED_VARS count them all).
                self.matched_vars.clear();
                self.hits = hits;
                return Flow::Next;
            }
            for h in hits.drain(..) {
                if let Some(caps) = &h.captures {
                    for (i, c) in caps.iter().enumerate().take(DIGITS.len()) {
                        if let Some(c) = c {
                            self.tx.set(TxNames::capture(i), c.clone());
                        }
                    }
                }
                self.matched_vars.push(Seen::Hit(h.name, h.value));
                for sv in &part.setvars {
                    self.setvar(rule, sv);
                }
                // libmodsecurity3 logs every match of a `multiMatch` part at once, whether or
                // not the rest of the chain matches (the nginx overrides of 942131 rely on it).
                if part.multi_match {
                    self.record(rule, false);
                }
            }
        }
        self.hits = hits;
        for part in rule.parts.iter().rev() {
            for a in &part.after {
                self.after_action(rule, a);
            }
        }
        if let Some(sev) = rule.severity {
            let n = sev.number();
            self.highest_severity = Some(self.highest_severity.map_or(n, |h| h.min(n)));
        }
        let intervene = self.engine == EngineMode::On;
        let mut disrupted = false;
        let mut flow = Flow::Next;
        match &rule.disruptive {
            Disruptive::Pass => {}
            Disruptive::Deny | Disruptive::Redirect if intervene => {
                self.interruption = Some((rule.status, rule.id));
                disrupted = true;
                flow = Flow::Stop;
            }
            Disruptive::Drop if intervene => {
                self.interruption = Some((0, rule.id));
                disrupted = true;
                flow = Flow::Stop;
            }
            Disruptive::Allow(scope) if intervene => {
                flow = Flow::EndPhase;
                match scope {
                    AllowScope::All => self.allowed_through = 4,
                    AllowScope::Request => self.allowed_through = 2,
                    AllowScope::Phase => {}
                }
            }
            _ => {}
        }
        if !rule.parts.first().is_some_and(|p| p.multi_match) {
            self.record(rule, disrupted);
        }
        if let Flow::Next = flow {
            if rule.skip_after.is_some() {
                return Flow::SkipAfter;
            }
            if rule.skip > 0 {
                return Flow::Skip(rule.skip);
            }
        }
        flow
    }

    /// Whether a guard's target (see `Part::guard`) holds no value.
    fn holds_nothing(&self, t: &TargetSpec) -> bool {
        if let Some(n) = t.tx_slot {
            return self.tx.numbered(n).is_none();
        }
        match self.v.pair_lists(t.variable) {
            Some((lists, _)) => !lists.iter().any(|l| l.iter().any(|(k, _)| t.sel.matches(k))),
            None => false,
        }
    }

    /// The last of `MATCHED_VARS`: `MATCHED_VAR_NAME` and `MATCHED_VAR`.
    fn last_match(&self) -> Option<&Seen<'r>> {
        self.matched_vars.last()
    }

    /// Records a match of a rule that logs.
    fn record(&mut self, rule: &Rule, disruptive: bool) {
        if !(rule.log && rule.auditlog) {
            return;
        }
        let m = MatchedRule {
            id: rule.id,
            phase: rule.phase.number(),
            msg: rule.msg.as_ref().map(|m| lossy(self.expand(m, rule).into_owned())).unwrap_or_default(),
            data: rule.logdata.as_ref().map(|m| lossy(self.expand(m, rule).into_owned())).unwrap_or_default(),
            severity: rule.severity,
            tags: match &rule.literal_tags {
                Some(tags) => tags.clone(),
                None => rule.tags.iter().map(|t| lossy(self.expand(t, rule).into_owned())).collect(),
            },
            matched_var_name: self.last_match().map(|m| m.name().into_owned()).unwrap_or_default(),
            location: rule.location.clone(),
            disruptive,
        };
        self.matches.push(m);
    }

    /// Adds to `hits` the matches of a rule part.
    fn eval_part(&self, rule: &Rule, part: &Part, hits: &mut Hits) {
        let Some(op) = &part.op else {
            let (name, value) = variables::blank();
            hits.push(Hit { name: VarName::Made(name), value, captures: None });
            return;
        };
        if let Some(gate) = part.prescan {
            if !self.may_match(rule, gate) {
                return;
            }
        }
        // `ctl:ruleRemoveTarget*` can only take TX values from such a part by naming TX.
        if part.numbered_tx && !self.tx_target_removed() {
            return self.eval_numbered_tx(rule, part, op, hits);
        }
        // Most parts exclude nothing: no list is made for them.
        let mut excluded: SmallVec<[&Exclusion; 4]> = SmallVec::new();
        if !part.exclusions.is_empty() {
            excluded.extend(part.exclusions.iter());
        }
        if !self.removed_targets.is_empty() {
            excluded.extend(self.removed_targets(rule));
        }
        let (expanded, dynamic_rx) = self.operand(op, rule);
        let operand = Operand { op, expanded: expanded.as_deref(), dynamic_rx: dynamic_rx.as_deref() };
        let mut vals = Vals::new();
        for t in &part.targets {
            // The members of a request collection go to the operator as they are read, when
            // nothing is excluded (most targets: a JSON body's ARGS hold hundreds); a count of
            // them (`&REQUEST_HEADERS:Content-Type`, a dozen CRS parts a request) is counted so.
            if let Some((lists, names)) = self.v.pair_lists(t.variable).filter(|_| excluded.is_empty()) {
                let members = lists.into_iter().flatten().filter(|(k, _)| t.sel.matches(k));
                if t.count {
                    self.eval_value(part, &operand, &count_val(t.variable, members.count()), hits);
                    continue;
                }
                for p in members {
                    let val = Val::new(t.variable, Some(Cow::Borrowed(&p.0)), Cow::Borrowed(member(p, names)));
                    self.eval_value(part, &operand, &val, hits);
                }
                continue;
            }
            vals.clear();
            self.collect(t, rule, &excluded, &mut vals);
            let first = hits.len();
            for val in &vals {
                self.eval_value(part, &operand, val, hits);
            }
            // `TX` by key pattern matches in key order, as libmodsecurity3 keeps the collection:
            // the matches are put in order, the few there are, rather than every member (920450
            // looks through one per request header). Names are `TX:key`; a key's `multiMatch`
            // variants keep theirs.
            if t.tx_selected.is_some() && hits.len() - first > 1 {
                hits[first..].sort_by(|a, b| a.name.text().cmp(&b.name.text()));
            }
        }
    }

    /// The matches of a rule part, in a list of their own (for folding, at load time).
    fn part_hits(&self, rule: &Rule, part: &Part) -> Hits {
        let mut hits = Hits::new();
        self.eval_part(rule, part, &mut hits);
        hits
    }

    /// Runs a part's operator on one value of its targets (on every variant with
    /// `multiMatch`), adding the matches to `hits`.
    fn eval_value(&self, part: &Part, operand: &Operand<'_>, val: &Val<'_>, hits: &mut Hits) {
        let capture = part.capture && !part.negated;
        let run = |v: &[u8]| operand.op.run(v, capture, operand.expanded, operand.dynamic_rx);
        if part.multi_match {
            for tv in transform::variants(&part.transforms, &val.value) {
                let (hit, captures) = run(&tv);
                if hit != part.negated {
                    let value = Arc::from(tv.as_ref());
                    hits.push(Hit { name: val.name(), value, captures });
                }
            }
            return;
        }
        if let Some(verdicts) = &part.verdicts {
            let holds = || operand.op.run(&self.transformed(part, &val.value), false, None, None).0;
            if !verdicts.get_or(&val.value, holds) {
                return;
            }
        }
        let tv = self.transformed(part, &val.value);
        // `^.*$` captures the value whole (920450, once per request header): the one copy
        // serves as both.
        let whole = capture && matches!(operand.op, Op::Rx(Rx::Whole));
        let (hit, captures) = if whole { (true, None) } else { run(&tv) };
        if hit != part.negated {
            let value = match (tv, val.shared) {
                (Transformed::Same(_), Some((_, shared))) => shared.clone(),
                (Transformed::Same(v), None) => Arc::from(v),
                (Transformed::Changed(v), _) => v,
            };
            let captures = if whole { Some(smallvec![Some(value.clone())]) } else { captures };
            hits.push(Hit { name: val.name(), value, captures });
        }
    }

    /// The operator's argument when it holds macros, expanded (once per rule part), and the
    /// regex of an `@rx` with macros, compiled from it (boxed: most parts have none, and
    /// the pair stays small to return).
    fn operand<'a>(&'a self, op: &'a Op, rule: &Rule) -> (Option<Cow<'a, [u8]>>, Option<Box<Rx>>) {
        let expanded = match op {
            Op::RxMacro(m) | Op::Str(_, m) | Op::Num(_, NumArg::Macro(m)) => Some(self.expand(m, rule)),
            _ => return (None, None),
        };
        let dynamic_rx = match (op, &expanded) {
            (Op::RxMacro(_), Some(p)) => {
                Rx::compile(&String::from_utf8_lossy(p), self.rules.settings.backtrack_limit).ok().map(Box::new)
            }
            _ => None,
        };
        (expanded, dynamic_rx)
    }

    /// [`Transaction::eval_part`] for a part that reads numbered `TX` variables as they are
    /// (`Part::numbered_tx`): each value is taken from its slot and matched as it is.
    fn eval_numbered_tx(&self, rule: &Rule, part: &Part, op: &Op, hits: &mut Hits) {
        let (expanded, dynamic_rx) = self.operand(op, rule);
        for n in part.targets.iter().filter_map(|t| t.tx_slot) {
            let Some((_, (name, value))) = self.tx.numbered(n) else { continue };
            let (hit, captures) =
                op.run(value, part.capture && !part.negated, expanded.as_deref(), dynamic_rx.as_deref());
            if hit != part.negated {
                hits.push(Hit { name: VarName::Made(name.clone()), value: value.clone(), captures });
            }
        }
    }

    /// Whether the prescan leaves it possible that the part's pattern matches a value of one
    /// of its targets (see `prescan`).
    #[inline]
    fn may_match(&self, rule: &Rule, gate: Gate) -> bool {
        let checked = self.prescanned.check(gate);
        match checked {
            (true, _) => true,
            (false, 0) => false,
            (false, unscanned) => self.scan_until_found(rule, gate, unscanned),
        }
    }

    /// Scans the scopes not scanned yet, in order, until one holds the gate's pattern.
    #[inline(never)]
    fn scan_until_found(&self, rule: &Rule, gate: Gate, mut unscanned: u64) -> bool {
        while unscanned != 0 {
            let n = unscanned.trailing_zeros() as usize;
            unscanned &= unscanned - 1;
            let bits = self.prescan_scope(rule, n);
            self.prescanned.store(n, &bits);
            if prescan::has(&bits, gate.pattern) {
                return true;
            }
        }
        false
    }

    /// Scans every member of prescan scope `n` with the prescan automaton, once per distinct
    /// form the member takes through the chains that look at the scope. What a short member
    /// matches is remembered across transactions (`memo`), and so is what a collection of many
    /// members matches as a whole (`whole`). In line in its one caller.
    #[inline(always)]
    fn prescan_scope(&self, rule: &Rule, n: usize) -> prescan::Found {
        let prescan = &self.rules.prescan;
        let mut bits = prescan.nothing_found();
        let (var, sel, _) = prescan.scope(n);
        let work = |value: &[u8]| self.prescan_member(n, value);
        let mut answer = |found: &Option<Box<[u64]>>| {
            if let Some(found) = found {
                or_into(&mut bits, found);
            }
        };
        // The whole of a collection of pairs (a JSON body's hundred ARGS) goes to the memo as
        // it is kept, without making a list of its values first, unless the memo of whole
        // collections knows it; the members of one key (a scope such as
        // `REQUEST_HEADERS:User-Agent`, of which CRS has dozens) as a list of their bytes alone.
        if let Some((lists, names)) = self.v.pair_lists(var) {
            if let Sel::All = sel {
                let known = prescan.whole(n).and_then(|whole| Some((whole, contents(&lists, names, whole)?)));
                match known {
                    Some((whole, contents)) => {
                        whole.get_each(&[contents], |c| c, answer, |_| self.prescan_collection(n, &lists, names))
                    }
                    None => self.prescan_members(n, &lists, names, answer),
                }
            } else {
                let mut picked: SmallVec<[&[u8]; 4]> = SmallVec::new();
                for p in lists.into_iter().flatten() {
                    if sel.matches(&p.0) {
                        picked.push(member(p, names));
                    }
                }
                prescan.memo(n).get_each(&picked, |v| v, &mut answer, |v| work(v));
            }
            return bits;
        }
        let mut vals = Vals::new();
        self.values(var, sel, rule, &mut vals);
        if var == Variable::Xml {
            // `XML:/*` is the text, `XML://@*` the attribute values: both, for any selector.
            self.values(var, &Sel::XPath("//@*".into()), rule, &mut vals);
        }
        // A body too long for the memo of short values goes to the scope's memo of whole
        // values (only a body's scope has one here).
        let long = vals.iter().all(|v| v.value.len() > memo::LONGEST);
        let kept = prescan.whole(n).filter(|_| long).unwrap_or(prescan.memo(n));
        kept.get_each(&vals, |v| &v.value, answer, |v| work(&v.value));
        bits
    }

    /// Gives `answer` what each member of a collection in prescan scope `n` matches (its
    /// keys with `names`, else its values).
    #[inline]
    fn prescan_members(
        &self,
        n: usize,
        lists: &[&[Pair]; 2],
        names: bool,
        mut answer: impl FnMut(&Option<Box<[u64]>>),
    ) {
        let memo = self.rules.prescan.memo(n);
        for list in lists {
            memo.get_each(list, |p| member(p, names), &mut answer, |p| self.prescan_member(n, member(p, names)));
        }
    }

    /// What the members of a collection in prescan scope `n` match, together.
    fn prescan_collection(&self, n: usize, lists: &[&[Pair]; 2], names: bool) -> Option<Box<[u64]>> {
        let mut found = self.rules.prescan.nothing_found();
        self.prescan_members(n, lists, names, |f| {
            if let Some(f) = f {
                or_into(&mut found, f);
            }
        });
        any_found(found)
    }

    /// The patterns that match a member of prescan scope `n`: `None` for none.
    fn prescan_member(&self, n: usize, value: &[u8]) -> Option<Box<[u64]>> {
        let prescan = &self.rules.prescan;
        let mut bits = prescan.nothing_found();
        let (_, _, group) = prescan.scope(n);
        // The distinct forms the member takes, each with the patterns of the chains giving it.
        // Steps that leave the member as it is are skipped, so a chain gives the same form as
        // any other chain from its first step that changes the member (the plan, by what the
        // member holds): most members have one form, themselves.
        let mut forms: SmallVec<[Form<'_>; 4]> = SmallVec::new();
        let features = transform::Features::of(value);
        for &(at, multi, ref mask) in prescan.plan(n, features).iter() {
            let steps = prescan.steps(at);
            if multi {
                for form in transform::variants(steps, value) {
                    add_form(&mut forms, form, mask);
                }
                continue;
            }
            add_form(&mut forms, transform::apply_chain(steps, value, features), mask);
        }
        let mut found = self.found.borrow_mut();
        for (form, mask) in &forms {
            let mut budget = self.transitions.get();
            prescan.scan(group, form, mask, &mut budget, &mut found, &mut bits);
            self.transitions.set(budget);
        }
        any_found(bits)
    }

    /// A value at the end of the part's transformation chain. A value no step changes is
    /// returned as it is (told by a cheap scan of it); the others are computed once per
    /// transaction for each (chain, value), but for short ones, which cost less to transform
    /// again than to look up.
    fn transformed<'v>(&self, part: &Part, v: &'v [u8]) -> Transformed<'v> {
        let transforms = &part.transforms;
        if transforms.is_empty() {
            return Transformed::Same(v);
        }
        let features = transform::Features::of(v);
        let first = features.first_change(transforms);
        if first == transforms.len() {
            return Transformed::Same(v);
        }
        let apply = || Arc::<[u8]>::from(transform::apply_chain(&transforms[first..], v, features).as_ref());
        if v.len() <= SHORT_VALUE {
            return Transformed::Changed(apply());
        }
        let mut cache = self.transformed.borrow_mut();
        let per_chain = cache.entry(part.chain_id).or_default();
        if let Some(t) = per_chain.get(v) {
            return Transformed::Changed(t.clone());
        }
        let out = apply();
        // Bounded: past a budget (many values, or one huge value through many chains) the
        // transaction recomputes instead of growing.
        let cost = v.len() + out.len();
        if self.cached_bytes.get() + cost <= CACHE_BUDGET {
            self.cached_bytes.set(self.cached_bytes.get() + cost);
            per_chain.insert(v.to_vec(), out.clone());
        }
        Transformed::Changed(out)
    }

    /// The targets `ctl:ruleRemoveTarget*` took from this rule.
    fn removed_targets(&self, rule: &Rule) -> SmallVec<[&Exclusion; 4]> {
        let applies = |r: &RuleRef| match r {
            RuleRef::Ids(ids) => ids.iter().any(|g| g.contains(rule.id)),
            RuleRef::Tag(tag) => rule.tag_text.iter().any(|x| x == tag),
            RuleRef::Msg(msg) => rule.msg.as_ref().is_some_and(|m| m.to_string() == *msg),
        };
        self.removed_targets.iter().filter(|(r, _)| applies(r)).map(|(_, e)| e).collect()
    }

    /// Pushes the values of one target, without the excluded ones (`excl`: the part's own
    /// `!` exclusions, then those `ctl:` removed).
    fn collect<'a>(&'a self, t: &TargetSpec, rule: &Rule, excl: &[&Exclusion], out: &mut Vals<'a>) {
        let start = out.len();
        match (t.tx_slot, &t.tx_selected) {
            (Some(n), _) => out.extend(self.tx.numbered(n).map(|(k, m)| tx_val(k, m))),
            (None, Some(slots)) => {
                // In no particular order: `eval_part` puts the matches in key order.
                out.extend(slots.iter().filter_map(|&n| self.tx.numbered(n)).map(|(k, m)| tx_val(k, m)));
                out.extend(
                    self.tx.unnumbered().filter(|(k, _)| t.sel.matches(k.as_bytes())).map(|(k, m)| tx_val(k, m)),
                );
            }
            (None, None) => self.values(t.variable, &t.sel, rule, out),
        }
        if !excl.is_empty() {
            let mut i = start;
            while i < out.len() {
                let key = out[i].key.as_deref();
                let var = out[i].var;
                if excl.iter().any(|e| e.excludes(var, key)) {
                    out.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if t.count {
            let n = out.len() - start;
            out.truncate(start);
            out.push(count_val(t.variable, n));
        }
    }

    /// Expands `%{...}` macros. A lone `TX` macro (`%{tx.allowed_methods}`, the usual operand)
    /// is the variable's value, borrowed.
    fn expand<'a>(&'a self, m: &'a MacroString, rule: &Rule) -> Cow<'a, [u8]> {
        if let Some(v) = self.expand_borrowed(m) {
            return Cow::Borrowed(v);
        }
        let mut out = Expansion::new();
        self.expand_into(m, rule, &mut out);
        Cow::Owned(out.into_vec())
    }

    /// The expansion of `m` when it needs no buffer: a literal, or a lone `TX` macro.
    fn expand_borrowed<'a>(&'a self, m: &'a MacroString) -> Option<&'a [u8]> {
        if let Some(l) = m.as_literal() {
            return Some(l.as_bytes());
        }
        lone_tx(m).map(|mv| self.tx_macro(mv).map_or(&[][..], |v| &v[..]))
    }

    /// Appends the expansion of `m` to `out`: on the stack when short, as most `setvar` names
    /// and values made per match are (`tx.header_name_920450_%{tx.0}`).
    fn expand_into(&self, m: &MacroString, rule: &Rule, out: &mut Expansion) {
        for p in &m.parts {
            match p {
                MacroPart::Literal(s) => out.push(s.as_bytes()),
                MacroPart::Var(mv) => self.push_macro_value(mv, rule, out),
            }
        }
    }

    /// The value of a `%{tx.key}` macro: by its number when the rule set gave it one.
    fn tx_macro(&self, mv: &MacroVar) -> Option<&Arc<[u8]>> {
        match mv.tx_slot {
            Some(n) => self.tx.numbered(n).map(|(_, (_, v))| v),
            None => self.tx.value(&lowercase(mv.key.as_deref()?)),
        }
    }

    /// Appends the value of a macro (nothing when unset).
    fn push_macro_value(&self, mv: &MacroVar, rule: &Rule, out: &mut Expansion) {
        if mv.variable == Variable::Tx && mv.key.is_some() {
            if let Some(v) = self.tx_macro(mv) {
                out.push(v);
            }
            return;
        }
        let sel = match &mv.key {
            Some(k) => Sel::Key(k.to_ascii_lowercase()),
            None => Sel::All,
        };
        let mut vals = Vals::new();
        self.values(mv.variable, &sel, rule, &mut vals);
        if let Some(v) = vals.first() {
            out.push(&v.value);
        }
    }

    fn setvar(&mut self, rule: &Rule, spec: &SetVarSpec) {
        let sv = &spec.setvar;
        let tx = sv.var.collection == Variable::Tx;
        // A `TX` name made at run time (920450 makes one per request header) is made as a
        // match records it, `TX:key`: looked up by its key, kept as it is when new. The
        // buffers are made only when a name or value is expanded (most `setvar`s are literal).
        let mut made;
        let name: Cow<'_, str> = match spec.tx_slot {
            Some(n) => Cow::Borrowed(self.rules.tx_names.at(n).key()),
            None => {
                let prefix = if tx { TxName::PREFIX } else { "" };
                made = Expansion::new();
                made.push(prefix.as_bytes());
                self.expand_into(&sv.var.name, rule, &mut made);
                made[prefix.len()..].make_ascii_lowercase();
                text(&made)
            }
        };
        let mut expanded;
        // A lone `TX` macro's value is held, not borrowed: the transaction's `TX` changes next.
        let held: Option<Arc<[u8]>>;
        let value = match &sv.op {
            SetVarOp::Set(v) | SetVarOp::Add(v) | SetVarOp::Sub(v) => match (v.as_literal(), lone_tx(v)) {
                (Some(l), _) => Some(l.as_bytes()),
                (None, Some(mv)) => {
                    held = self.tx_macro(mv).cloned();
                    Some(held.as_deref().unwrap_or_default())
                }
                (None, None) => {
                    expanded = Expansion::new();
                    self.expand_into(v, rule, &mut expanded);
                    Some(&expanded[..])
                }
            },
            _ => None,
        };
        if tx {
            let apply = |cur: Option<&Arc<[u8]>>| apply_setvar(spec, cur, value);
            match spec.tx_slot {
                Some(n) => self.tx.update_numbered(n, apply),
                None => self.tx.update_made(&name, !spec.unnumbered, apply),
            }
            return;
        }
        // Persistent collections live for this transaction only.
        let key = (store_index(sv.var.collection), name.into_owned());
        match apply_setvar(spec, self.stores.get(&key), value) {
            Some(n) => {
                self.stores.insert(key, n);
            }
            None => {
                self.stores.remove(&key);
            }
        }
    }

    fn after_action(&mut self, rule: &Rule, a: &ActionKind) {
        match a {
            ActionKind::Ctl(c) => match c {
                Ctl::RuleEngine(m) => self.engine = *m,
                Ctl::RuleRemoveById(ids) => {
                    self.baked_removed |= self.rules.baked.any_id(ids);
                    self.removed_ids.extend(ids.iter().copied());
                }
                Ctl::RuleRemoveByTag(t) => {
                    self.baked_removed |= self.rules.baked.any_tag(t);
                    self.removed_tags.push(t.clone());
                }
                Ctl::RuleRemoveByMsg(m) => {
                    self.baked_removed |= self.rules.baked.any_msg(m);
                    self.removed_msgs.push(m.clone());
                }
                Ctl::RuleRemoveTargetByMsg(msg, targets) => {
                    for t in targets {
                        if let Some(e) = exclusion(t) {
                            self.removed_targets.push((RuleRef::Msg(msg.clone()), e));
                        }
                    }
                }
                Ctl::RequestBodyLimit(n) => self.request_body_limit = *n,
                Ctl::ResponseBodyLimit(n) => self.response_body_limit = *n,
                Ctl::RuleRemoveTargetById(ids, targets) => {
                    for t in targets {
                        if let Some(e) = exclusion(t) {
                            self.removed_targets.push((RuleRef::Ids(ids.clone()), e));
                        }
                    }
                }
                Ctl::RuleRemoveTargetByTag(tag, targets) => {
                    for t in targets {
                        if let Some(e) = exclusion(t) {
                            self.removed_targets.push((RuleRef::Tag(tag.clone()), e));
                        }
                    }
                }
                Ctl::RequestBodyProcessor(p) => self.processor = Some(*p),
                Ctl::RequestBodyAccess(b) => self.request_body_access = *b,
                Ctl::ResponseBodyAccess(b) => self.response_body_access = *b,
                _ => {}
            },
            ActionKind::SetEnv(name, value) => {
                let v = self.expand(value, rule).into_owned();
                self.env.insert(name.clone(), v);
            }
            _ => {}
        }
    }
}

/// A part's operator with its argument expanded (see [`Transaction::operand`]).
struct Operand<'a> {
    op: &'a Op,
    expanded: Option<&'a [u8]>,
    dynamic_rx: Option<&'a Rx>,
}

/// A form a value takes in the prescan: the transformed bytes, and the patterns to scan it for.
type Form<'a> = (Cow<'a, [u8]>, SmallVec<[u64; 8]>);

fn or_into(bits: &mut [u64], mask: &[u64]) {
    bits.iter_mut().zip(mask).for_each(|(a, b)| *a |= b);
}

/// Patterns found, as a memo keeps them: `None` for none (most members of benign requests).
fn any_found(found: prescan::Found) -> Option<Box<[u64]>> {
    found.iter().any(|&w| w != 0).then(|| Box::from(&found[..]))
}

/// A collection with fewer members is prescanned member by member, without looking it up
/// whole first (see [`prescan::Prescan::whole`]).
const WHOLE_MEMBERS: usize = 8;

/// A member of a collection of pairs: its key for a variable of names (`ARGS_NAMES`), else its
/// value.
#[inline(always)]
fn member(pair: &Pair, names: bool) -> &[u8] {
    if names {
        &pair.0
    } else {
        &pair.1
    }
}

/// The members of a collection one after the other, each after its length: its key in the
/// memo of whole collections, when it has [`WHOLE_MEMBERS`] or more and that memo keeps its
/// length.
fn contents<V>(lists: &[&[Pair]; 2], names: bool, whole: &Memo<V>) -> Option<Vec<u8>> {
    if lists[0].len() + lists[1].len() < WHOLE_MEMBERS {
        return None;
    }
    let members = || lists.iter().flat_map(|l| l.iter()).map(|p| member(p, names));
    let len = members().map(|m| 4 + m.len()).sum();
    if !whole.keeps(len) {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for m in members() {
        out.extend_from_slice(&u32::try_from(m.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(m);
    }
    Some(out)
}

/// The value of a count target (`&ARGS`): the number, as text.
fn count_val(variable: Variable, n: usize) -> Val<'static> {
    let count = DIGITS.get(n).map_or_else(|| Cow::Owned(n.to_string().into_bytes()), |d| Cow::Borrowed(d.as_bytes()));
    Val::new(variable, None, count)
}

/// Adds the patterns of `mask` to the form with these bytes, or adds the form.
fn add_form<'a>(forms: &mut SmallVec<[Form<'a>; 4]>, form: Cow<'a, [u8]>, mask: &[u64]) {
    match forms.iter_mut().find(|(f, _)| *f == form) {
        Some((_, m)) => or_into(m, mask),
        None => forms.push((form, SmallVec::from_slice(mask))),
    }
}

/// A value at the end of a transformation chain.
enum Transformed<'v> {
    /// No step changed it.
    Same(&'v [u8]),
    /// Computed (and cached).
    Changed(Arc<[u8]>),
}

impl std::ops::Deref for Transformed<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Transformed::Same(v) => v,
            Transformed::Changed(v) => v,
        }
    }
}

/// Transformed values: chain id, then original value.
type TransformCache = HashMap<usize, HashMap<Vec<u8>, Arc<[u8]>, SeededHash>, FastHash>;

/// The new value of a variable after a `setvar` (`value`: its operand expanded), or `None` to
/// delete it. An unchanged value keeps its allocation, a literal one is shared.
fn apply_setvar(spec: &SetVarSpec, cur: Option<&Arc<[u8]>>, value: Option<&[u8]>) -> Option<Arc<[u8]>> {
    let op = &spec.setvar.op;
    let digits;
    let new: &[u8] = match op {
        SetVarOp::Set(_) => value.unwrap_or_default(),
        SetVarOp::Add(_) | SetVarOp::Sub(_) => {
            let a = cur.map_or(0, |c| operator::to_int(c));
            let b = value.map(operator::to_int).unwrap_or(0);
            let n = if matches!(op, SetVarOp::Add(_)) { a.saturating_add(b) } else { a.saturating_sub(b) };
            digits = operator::Decimal::new(n);
            digits.as_bytes()
        }
        SetVarOp::Delete => return None,
        SetVarOp::Define => b"1",
    };
    match cur {
        Some(c) if **c == *new => Some(c.clone()),
        _ => Some(spec.value.clone().unwrap_or_else(|| Arc::from(new))),
    }
}

/// The `TX` macro that is the whole of `m` (`%{tx.critical_anomaly_score}`), if it is one.
fn lone_tx(m: &MacroString) -> Option<&MacroVar> {
    match &m.parts[..] {
        [MacroPart::Var(mv @ MacroVar { variable: Variable::Tx, key: Some(_), .. })] => Some(mv),
        _ => None,
    }
}

fn exclusion(t: &Target) -> Option<Exclusion> {
    Some(Exclusion { variable: t.variable, sel: Sel::of(t).ok()? })
}

/// `s` in ASCII lowercase, borrowed when it already is.
fn lowercase(s: &str) -> Cow<'_, str> {
    match s.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(s.to_ascii_lowercase()),
        false => Cow::Borrowed(s),
    }
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
