//! Folding: the rules whose outcome is the same for every request are run once, when the rule
//! set is compiled, and replaced by what they do. In CRS these are about half the rules a
//! benign request goes through: the initialization (`SecAction`s, `&TX:x "@eq 0"` defaults),
//! in every file the paranoia-level checks (`TX:DETECTION_PARANOIA_LEVEL "@lt 2"` with
//! `skipAfter`), and the anomaly sums of the levels above the configured one.
//!
//! ```text
//! compile:  phases 1..5 in order, with a scratch transaction and which TX variables are known
//!           (hold the same value in every transaction at that point)
//!           rule reading only known TX ──run on the scratch──▶ its TX and MATCHED_VAR(S) effects
//!                                                              (consecutive ones merged: Step::Set),
//!                                                              the rules its skipAfter skips dropped
//!           rule with a part that reads only known TX ──────▶ clears MATCHED_VARS, whatever
//!           (or RESPONSE_BODY, when no response body is        its setvars would read
//!           read) and misses, the parts before it only
//!           matching
//!           quiet one-part rule reading known TX that matches ──▶ Step::Replay: its matches
//!                                                              recorded, its setvars run
//!           any other rule ──kept──▶ the TX variables it may set become unknown; where its
//!                                    skipAfter or skip lands, a landing, and there only what
//!                                    every path brings is known
//! run time: the folded steps, while every rule kept goes on to the next step or jumps to a
//!           landing, no ctl:ruleRemove* removed a rule and no ctl:ruleRemoveTarget* a TX
//!           (or RESPONSE_BODY) target; from the first rule that does otherwise (allows,
//!           blocks, jumps where the folded steps do not come), the rules as written, from
//!           the same place
//! ```
//!
//! A folded rule reads known TX variables, the rule's own properties and its own match only,
//! and has neither `capture` nor `multiMatch` (unless it misses: then neither does anything);
//! if it matches, it neither logs, nor has a severity, a disruptive action or `ctl:`. Phase 5
//! runs on its folded steps only after the four phases before it ran on theirs to their end:
//! it also runs after an interruption, and when the response phases did not run, and then
//! what they set is not what folding saw.

use std::sync::Arc;

use crate::seclang::ast::{ActionKind, Ctl, IdRange, MacroString, MacroVar, SetVarOp, Variable};

use super::super::compile::{Disruptive, Part, Rule, RuleSet, Step};
use super::variables::VarName;
use super::{Flow, Hits, Matched, MatchedRef, Seen, Transaction};

/// A phase's steps with the folded rules replaced, and for each step its index in the phase
/// as written (where a transaction goes on when the folded steps stop holding).
#[derive(Clone, Debug, Default)]
pub(crate) struct Folded {
    pub(crate) steps: Vec<Step>,
    pub(crate) origin: Vec<usize>,
    /// Where the jumps (`skipAfter`, `skip`) of rules left to run land in `steps`: by the
    /// index in the phase as written they go to, sorted. A jump elsewhere leaves the folded
    /// steps.
    landings: Vec<(usize, usize)>,
}

impl Folded {
    /// The index in `steps` where a jump to step `written` of the phase as written goes on.
    pub(crate) fn landing(&self, written: usize) -> Option<usize> {
        let i = self.landings.binary_search_by_key(&written, |&(w, _)| w).ok()?;
        Some(self.landings[i].1)
    }
}

/// The rules run at compile time (folded away or replayed): removing one of them at run time
/// (`ctl:ruleRemove*`) changes what the folded steps do, while removing a rule left to run
/// does not (the folding already allowed for it doing nothing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Baked {
    /// Sorted.
    ids: Vec<u64>,
    tags: Vec<String>,
    msgs: Vec<String>,
}

impl Baked {
    fn add(&mut self, rule: &Rule) {
        self.ids.push(rule.id);
        self.tags.extend(rule.tag_text.iter().cloned());
        self.msgs.extend(rule.msg.as_ref().map(ToString::to_string));
    }

    fn seal(&mut self) {
        for list in [&mut self.tags, &mut self.msgs] {
            list.sort_unstable();
            list.dedup();
        }
        self.ids.sort_unstable();
        self.ids.dedup();
    }

    /// Whether a rule with an id in one of these ranges was run at compile time.
    pub(crate) fn any_id(&self, ranges: &[IdRange]) -> bool {
        ranges.iter().any(|r| self.ids.get(self.ids.partition_point(|&id| id < r.start)).is_some_and(|&id| id <= r.end))
    }

    /// Whether a rule with this tag was run at compile time.
    pub(crate) fn any_tag(&self, tag: &str) -> bool {
        self.tags.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
    }

    /// Whether a rule with this message was run at compile time.
    pub(crate) fn any_msg(&self, msg: &str) -> bool {
        self.msgs.binary_search_by(|m| m.as_str().cmp(msg)).is_ok()
    }
}

/// What the folding knows at a point of a phase: by `TX` number, whether the variable is
/// known, and the scratch's value.
struct Known {
    known: Vec<bool>,
    values: Vec<Option<Arc<[u8]>>>,
}

/// What a run of folded rules does: to `MATCHED_VAR(S)` (cleared by a part that did not match,
/// added to by matches) and to numbered `TX` variables (set, or deleted: `None`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Effects {
    pub(crate) clear_matched: bool,
    pub(crate) matched: Vec<Matched>,
    /// The numbered `TX` variables set (named as [`TxNames`] names them) or deleted.
    pub(crate) tx: Vec<(u32, Option<Matched>)>,
}

impl Effects {
    /// These effects followed by `next`.
    fn then(&mut self, next: Effects) {
        if next.clear_matched {
            self.clear_matched = true;
            self.matched = next.matched;
        } else {
            self.matched.extend(next.matched);
        }
        for (n, v) in next.tx {
            match self.tx.iter_mut().find(|(m, _)| *m == n) {
                Some(e) => e.1 = v,
                None => self.tx.push((n, v)),
            }
        }
    }
}

/// The folded steps of each phase, up to the one where folding ended (`None` after it), and
/// the rules they run at compile time.
pub(crate) fn fold(rs: &RuleSet) -> ([Option<Folded>; 5], Baked) {
    let mut folder = Folder::new(rs);
    let mut folded: [Option<Folded>; 5] = Default::default();
    for (p, slot) in folded.iter_mut().enumerate() {
        if folder.ended {
            break;
        }
        *slot = Some(folder.phase(&rs.phases[p]));
    }
    folder.baked.seal();
    (folded, folder.baked)
}

struct Folder<'r> {
    rs: &'r RuleSet,
    /// Holds the values of the known variables; the others hold `poison`, so that any write
    /// to them shows.
    scratch: Transaction<'r>,
    /// Bytes no rule writes: random, made for this folding.
    poison: Arc<[u8]>,
    /// By `TX` number: whether every transaction holds the scratch's value at this point.
    known: Vec<bool>,
    /// Folding has ended: a constant rule matched, and its match does more than a folded
    /// step can (it logs, blocks or runs `ctl:` in every transaction).
    ended: bool,
    /// No transaction reads a response body: `RESPONSE_BODY` is empty in every one.
    no_body: bool,
    baked: Baked,
}

impl<'r> Folder<'r> {
    fn new(rs: &'r RuleSet) -> Folder<'r> {
        let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), rs.rules.len());
        Folder {
            rs,
            scratch: Transaction::new(rs),
            poison: Arc::from(format!("\0unknown {random:016x}").as_bytes()),
            known: vec![true; rs.tx_names.len()],
            ended: false,
            no_body: !reads_response_bodies(rs),
            baked: Baked::default(),
        }
    }

    /// The folded steps of one phase: those of the paths where every rule left to run goes on
    /// to the next step or jumps to where the walk comes too (a transaction leaves the folded
    /// steps at any other). Where jumps land, what is known is what all the paths there know.
    fn phase(&mut self, written: &[Step]) -> Folded {
        let mut out = Folded::default();
        let mut pending: Option<Effects> = None;
        // The jumps of rules left to run: where they go, and what was known as they left.
        let mut jumps: Vec<(usize, Known)> = Vec::new();
        let mut at = 0;
        loop {
            self.land(&mut jumps, at, &mut out, &mut pending);
            if at >= written.len() {
                break;
            }
            if self.ended {
                flush(&mut out, &mut pending, at);
                out.steps.extend(written[at..].iter().cloned());
                out.origin.extend(at..written.len());
                return out;
            }
            let Step::Rule(i, gate) = &written[at] else {
                at += 1;
                continue;
            };
            let rule = &self.rs.rules[*i];
            if rule.broken {
                // Never matches and does nothing, as the phase loop skips it.
                at += 1;
                continue;
            }
            let constant = self.constant(rule);
            if self.misses(rule) {
                // It clears MATCHED_VARS and goes on, whatever its setvars read.
                let miss = Effects { clear_matched: true, ..Effects::default() };
                pending.get_or_insert_with(Effects::default).then(miss);
                self.baked.add(rule);
                at += 1;
                continue;
            }
            match self.first_part_hits(rule) {
                Some(hits) if rule.parts.len() == 1 && quiet(rule) && !constant => {
                    // It matches in every transaction, but its setvars read what only the
                    // transaction knows (949052 adds the run-time score of paranoia level 1).
                    flush(&mut out, &mut pending, at);
                    out.steps.push(Step::Replay(*i, hits.into_iter().map(|h| (h.name.into_made(), h.value)).collect()));
                    out.origin.push(at);
                    self.baked.add(rule);
                    self.left_to_run(rule);
                    at = jump(rule, written, at).unwrap_or(at + 1);
                    continue;
                }
                _ => {}
            }
            if constant {
                let (effects, flow, matched) = self.run(rule);
                if !matched || quiet(rule) {
                    pending.get_or_insert_with(Effects::default).then(effects);
                    self.baked.add(rule);
                    at = match flow {
                        Flow::SkipAfter | Flow::Skip(_) => jump(rule, written, at).unwrap_or(at + 1),
                        _ => at + 1,
                    };
                    continue;
                }
                // A rule set so configured is not folded further.
                self.ended = true;
            }
            flush(&mut out, &mut pending, at);
            out.steps.push(Step::Rule(*i, *gate));
            out.origin.push(at);
            self.left_to_run(rule);
            if let Some(to) = jump(rule, written, at) {
                jumps.push((to, self.known()));
            }
            at += 1;
        }
        flush(&mut out, &mut pending, written.len());
        out
    }

    /// The walk is at step `at`: the jumps that land here make unknown what they do not know
    /// alike, and the folded steps get a landing; those that went to a step the walk skipped
    /// never land (a transaction taking one leaves the folded steps).
    fn land(&mut self, jumps: &mut Vec<(usize, Known)>, at: usize, out: &mut Folded, pending: &mut Option<Effects>) {
        jumps.retain(|(to, _)| *to >= at);
        if !jumps.iter().any(|(to, _)| *to == at) {
            return;
        }
        for (_, k) in jumps.iter().filter(|(to, _)| *to == at) {
            for n in 0..self.known.len() {
                let value = self.scratch.tx.numbered(n as u32).map(|(_, (_, v))| v);
                if self.known[n] && !(k.known[n] && k.values[n].as_ref() == value) {
                    self.forget(n as u32);
                }
            }
        }
        jumps.retain(|(to, _)| *to != at);
        // The effects folded so far belong to the path walked, not to the jumps.
        flush(out, pending, at);
        out.landings.push((at, out.steps.len()));
    }

    /// What is known now.
    fn known(&self) -> Known {
        let values = self.scratch.tx.numbered_slots().map(|m| m.map(|(_, v)| v.clone())).collect();
        Known { known: self.known.clone(), values }
    }

    /// What the rule's first part matches, when that is the same in every transaction (see
    /// [`Folder::decided`]).
    fn first_part_hits(&self, rule: &Rule) -> Option<Hits> {
        let part = rule.parts.first()?;
        self.decided(part).then(|| self.scratch.part_hits(rule, part))
    }

    /// Whether the rule misses in every transaction: one of its parts reads only what is
    /// known and misses, and the parts before it do nothing a miss would not undo (their
    /// matches go to MATCHED_VARS, which the miss clears). A part's own `capture` or
    /// `multiMatch` changes nothing when it misses.
    fn misses(&self, rule: &Rule) -> bool {
        for part in &rule.parts {
            if self.inputs_known(part) && self.scratch.part_hits(rule, part).is_empty() {
                return true;
            }
            if part.acts_when_it_matches() {
                return false;
            }
        }
        false
    }

    /// Whether the rule's outcome and effects are the same in every transaction at this point:
    /// it reads known `TX` variables only, and no match of it does more than one folded step
    /// can (`capture`, `multiMatch`).
    fn constant(&self, rule: &Rule) -> bool {
        rule.parts.iter().all(|p| self.constant_part(p))
    }

    fn constant_part(&self, part: &Part) -> bool {
        let setvars = part.setvars.iter().all(|sv| {
            let reads_current = matches!(sv.setvar.op, SetVarOp::Add(_) | SetVarOp::Sub(_));
            let value = match &sv.setvar.op {
                SetVarOp::Set(v) | SetVarOp::Add(v) | SetVarOp::Sub(v) => Some(v),
                SetVarOp::Delete | SetVarOp::Define => None,
            };
            sv.tx_slot.is_some_and(|n| !reads_current || self.known[n as usize])
                && value.is_none_or(|v| self.known_macros(v, true))
        });
        self.decided(part) && setvars
    }

    /// Whether the part matches, and what it matches, is the same in every transaction: it
    /// reads known `TX` variables only, and a match does no more than one folded step can
    /// (`capture`, `multiMatch`).
    fn decided(&self, part: &Part) -> bool {
        !part.multi_match && !part.capture && self.inputs_known(part)
    }

    /// Whether the part reads the same values in every transaction: known `TX` variables, and
    /// `RESPONSE_BODY` when no response body is read.
    fn inputs_known(&self, part: &Part) -> bool {
        let targets = part.targets.iter().all(|t| {
            t.tx_slot.is_some_and(|n| self.known[n as usize]) || (t.variable == Variable::ResponseBody && self.no_body)
        });
        let operand = part.op.as_ref().and_then(|op| op.macro_arg()).is_none_or(|m| self.known_macros(m, false));
        targets && operand
    }

    /// Whether a macro string expands to the same bytes in every transaction: it reads known
    /// `TX` variables and the rule's properties, and (`own_match`: in a `setvar`, which runs
    /// after its match) `MATCHED_VAR` and `MATCHED_VAR_NAME`.
    fn known_macros(&self, m: &MacroString, own_match: bool) -> bool {
        m.vars().all(|v: &MacroVar| match v.variable {
            Variable::Tx => v.key.as_ref().is_some_and(|k| {
                let n = self.rs.tx_names.number_of(&k.to_ascii_lowercase());
                n.is_some_and(|n| self.known[n as usize])
            }),
            Variable::Rule => true,
            Variable::MatchedVar | Variable::MatchedVarName => own_match,
            _ => false,
        })
    }

    /// Runs a constant rule on the scratch transaction: what it did, where the phase goes, and
    /// whether it matched.
    fn run(&mut self, rule: &'r Rule) -> (Effects, Flow, bool) {
        let s = &mut self.scratch;
        let owned = |m: Option<MatchedRef<'_>>| m.map(|(name, value)| (name.clone(), value.clone()));
        let before: Vec<Option<Matched>> = s.tx.numbered_slots().map(owned).collect();
        let mark: Arc<str> = Arc::from("fold mark");
        s.matched_vars = vec![Seen::Hit(VarName::Made(mark.clone()), Arc::from(&b""[..]))];
        let flow = s.eval_rule(rule);
        // A part that does not match clears MATCHED_VARS, mark and all.
        let kept_mark = s
            .matched_vars
            .first()
            .is_some_and(|m| matches!(m, Seen::Hit(VarName::Made(n), _) if Arc::ptr_eq(n, &mark)));
        let mut effects = Effects {
            clear_matched: !kept_mark,
            matched: s.matched_vars[usize::from(kept_mark)..].iter().map(Seen::to_matched).collect(),
            tx: Vec::new(),
        };
        for (n, (old, new)) in before.iter().zip(s.tx.numbered_slots()).enumerate() {
            // A setvar keeps the allocation of a value it leaves as it was.
            let same = match (old, new) {
                (Some(a), Some(b)) => Arc::ptr_eq(&a.1, b.1),
                (None, None) => true,
                _ => false,
            };
            if !same {
                effects.tx.push((n as u32, owned(new)));
                self.known[n] = true;
            }
        }
        (effects, flow, kept_mark)
    }

    /// A rule left to run: the variables it may set become unknown.
    fn left_to_run(&mut self, rule: &Rule) {
        for part in &rule.parts {
            for sv in part.setvars.iter().filter(|sv| sv.setvar.var.collection == Variable::Tx) {
                match sv.tx_slot {
                    Some(n) => self.forget(n),
                    None => {
                        let name = name_pattern(&sv.setvar.var.name);
                        let taken: Vec<u32> = (0..self.rs.tx_names.len() as u32)
                            .filter(|&n| name.as_ref().is_none_or(|re| re.is_match(self.rs.tx_names.at(n).key())))
                            .collect();
                        taken.into_iter().for_each(|n| self.forget(n));
                    }
                }
            }
            if part.capture {
                for d in super::DIGITS {
                    if let Some(n) = self.rs.tx_names.number_of(d) {
                        self.forget(n);
                    }
                }
            }
        }
    }

    /// Makes a variable unknown, giving the scratch a value there that no rule writes (a
    /// `setvar` of the same bytes would keep it, and the write would not show).
    fn forget(&mut self, n: u32) {
        self.known[n as usize] = false;
        self.scratch.tx.set(n, self.poison.clone());
    }
}

/// Whether some transaction may read a response body: `SecResponseBodyAccess On`, or a rule
/// that can turn it on (`ctl:responseBodyAccess=On`).
fn reads_response_bodies(rs: &RuleSet) -> bool {
    let turns_on = |a: &ActionKind| matches!(a, ActionKind::Ctl(Ctl::ResponseBodyAccess(true)));
    rs.settings.response_body_access || rs.rules.iter().flat_map(|r| &r.parts).flat_map(|p| &p.after).any(turns_on)
}

/// Whether a match of the rule does nothing but set `TX` and `MATCHED_VAR(S)`.
fn quiet(rule: &Rule) -> bool {
    !(rule.log && rule.auditlog)
        && rule.severity.is_none()
        && rule.disruptive == Disruptive::Pass
        && rule.parts.iter().all(|p| p.after.is_empty())
}

/// Where a rule left to run at step `at` jumps when it matches.
pub(crate) fn jump(rule: &Rule, written: &[Step], at: usize) -> Option<usize> {
    match (&rule.skip_after, rule.skip) {
        (Some(_), _) => Some(rule.resume_at),
        (None, 0) => None,
        (None, k) => Some(skip_rules(written, at + 1, k)),
    }
}

/// Ends a run of folded rules: their merged effects become one step (`origin`: where the phase
/// as written goes on).
fn flush(out: &mut Folded, pending: &mut Option<Effects>, origin: usize) {
    if let Some(e) = pending.take() {
        if e.clear_matched || !e.matched.is_empty() || !e.tx.is_empty() {
            out.steps.push(Step::Set(Box::new(e)));
            out.origin.push(origin);
        }
    }
}

/// The index after `from` once `k` rules are skipped (markers do not count, as in the phase
/// loop).
fn skip_rules(steps: &[Step], from: usize, k: u32) -> usize {
    let mut left = k;
    let mut at = from;
    while at < steps.len() && left > 0 {
        if matches!(steps[at], Step::Rule(..)) {
            left -= 1;
        }
        at += 1;
    }
    at
}

/// The lowercase `TX` keys a `setvar` name with macros can make: its literal text in order,
/// anything where a macro stands (`None` when no regex can be built: every key).
fn name_pattern(name: &MacroString) -> Option<regex::Regex> {
    use crate::seclang::ast::MacroPart;
    let mut re = String::from("^");
    for p in &name.parts {
        match p {
            MacroPart::Literal(s) => re.push_str(&regex::escape(&s.to_ascii_lowercase())),
            MacroPart::Var(_) => re.push_str("(?s:.*)"),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}
