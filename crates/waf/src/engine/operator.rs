//! Operators (`@rx`, `@pm`, `@detectSQLi`, ...): compiled once from the AST, run per value.
//!
//! `@rx` patterns are read with libmodsecurity3's flags (PCRE `DOTALL | MULTILINE`, no UTF:
//! bytes in, bytes matched) and compiled with the `regex` crate's bytes API with Unicode off,
//! which runs in linear time; a short one whose DFA is small also gets that DFA, fully built,
//! to say whether it matches. A pattern `regex` refuses (look-around, back-references,
//! possessive quantifiers, atomic groups) is compiled by `fancy-regex` instead, on a Latin-1 view
//! of the bytes so that byte semantics hold, with a backtrack limit
//! (`SecPcreMatchLimit`); [`Compiled::fallback`] says which. `@pm` phrase lists become one
//! case-insensitive Aho-Corasick automaton. `@detectSQLi` / `@detectXSS` call `libinjectionrs`,
//! a Rust port of libinjection.
//!
//! Arguments holding `%{...}` macros are expanded per transaction by the caller
//! ([`Op::macro_arg`]); everything else is prepared here.

use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use memchr::memmem;
use regex_automata::dfa::{dense, Automaton};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::Input;
use smallvec::{smallvec, SmallVec};

use super::memo::Memo;
use super::per_thread::PerThread;
use crate::seclang::ast::{MacroString, OperatorKind};

/// How a regex was compiled.
#[derive(Clone, Debug)]
pub(crate) enum Rx {
    /// `regex` crate, linear time.
    Linear(Regex),
    /// A small pattern (most of those CRS runs on every request: the method, a header's
    /// syntax): a fully built DFA says whether it matches, with no cache to take from a pool
    /// and no prefilter to start, in a few nanoseconds on a short value; the regex finds
    /// what it captures.
    Small(Regex, Box<dense::DFA<Vec<u32>>>),
    /// `fancy-regex` on a Latin-1 view, with a backtrack limit, behind a linear-time
    /// prefilter: a relaxed form of the pattern (see [`relax`]) that matches whenever the
    /// pattern does, so a value it rejects never reaches the backtracking engine.
    Backtracking(fancy_regex::Regex, Option<Regex>),
    /// `^.*$`, CRS's way to capture a whole value (30 rules of 4.28.0): with libmodsecurity3's
    /// flags (`.` takes newlines too) it matches every value, whole, so no automaton runs.
    Whole,
}

/// A regex of the linear engine, with the size limits that let CRS's largest patterns in.
pub(crate) fn linear(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern).size_limit(256 << 20).dfa_size_limit(32 << 20).build()
}

/// A regex the workers search each with their own copy.
pub(crate) type Regex = PerThread<regex::bytes::Regex>;

/// What a successful regex match captured: group 0..=9 (`None` for groups that did not take
/// part), each as `TX:0`..`TX:9` will hold it.
pub(crate) type Captures = SmallVec<[Option<Arc<[u8]>>; 2]>;

impl Rx {
    /// Compiles `pattern` with libmodsecurity3's flags. `Err` holds why neither engine took it.
    pub(crate) fn compile(pattern: &str, backtrack_limit: usize) -> Result<Rx, String> {
        if pattern == "^.*$" {
            return Ok(Rx::Whole);
        }
        let translated = translate(pattern);
        match linear(&format!("(?sm-u){translated}")) {
            Ok(r) => Ok(match small_dfa(&translated) {
                Some(dfa) => Rx::Small(r.into(), Box::new(dfa)),
                None => Rx::Linear(r.into()),
            }),
            Err(linear_err) => {
                let latin1: String = translated.bytes().map(char::from).collect();
                let fancy = fancy_regex::RegexBuilder::new(&format!("(?sm){latin1}"))
                    .backtrack_limit(backtrack_limit)
                    .delegate_size_limit(256 << 20)
                    .build()
                    .map_err(|e| format!("regex: {linear_err}; fancy-regex: {e}"))?;
                let prefilter = regex::bytes::RegexBuilder::new(&format!("(?sm-u){}", relax(&translated)))
                    .size_limit(256 << 20)
                    .build()
                    .ok()
                    .map(Regex::from);
                Ok(Rx::Backtracking(fancy, prefilter))
            }
        }
    }

    /// Drops the threads' copies of its regexes (see [`PerThread::forget_copies`]).
    fn forget_copies(&mut self) {
        match self {
            Rx::Linear(r) | Rx::Small(r, _) | Rx::Backtracking(_, Some(r)) => r.forget_copies(),
            Rx::Backtracking(_, None) | Rx::Whole => {}
        }
    }

    /// Whether the pattern needed the backtracking engine.
    pub(crate) fn is_fallback(&self) -> bool {
        matches!(self, Rx::Backtracking(..))
    }

    /// Whether a backtracking pattern has a linear-time prefilter.
    pub(crate) fn has_prefilter(&self) -> bool {
        matches!(self, Rx::Backtracking(_, Some(_)))
    }

    /// Whether the pattern matches anywhere in `v`.
    pub(crate) fn is_match(&self, v: &[u8]) -> bool {
        match self {
            Rx::Linear(r) => r.is_match(v),
            Rx::Small(r, dfa) => match dfa.try_search_fwd(&Input::new(v).earliest(true)) {
                Ok(found) => found.is_some(),
                Err(_) => r.is_match(v),
            },
            Rx::Whole => true,
            Rx::Backtracking(_, Some(pre)) if !pre.is_match(v) => false,
            // A pattern that exceeds the backtrack limit does not match, as in libmodsecurity3.
            Rx::Backtracking(r, _) => r.is_match(&latin1(v)).unwrap_or(false),
        }
    }

    /// The first match and its groups 0..=9.
    pub(crate) fn captures(&self, v: &[u8]) -> Option<Captures> {
        match self {
            // Without groups, the match alone (found by the DFAs, no capture engine).
            Rx::Linear(r) | Rx::Small(r, _) if r.captures_len() == 1 => {
                Some(smallvec![Some(Arc::from(r.find(v)?.as_bytes()))])
            }
            Rx::Whole => Some(smallvec![Some(Arc::from(v))]),
            Rx::Linear(r) | Rx::Small(r, _) => {
                let c = r.captures(v)?;
                Some((0..c.len().min(10)).map(|i| c.get(i).map(|m| Arc::from(m.as_bytes()))).collect())
            }
            Rx::Backtracking(_, Some(pre)) if !pre.is_match(v) => None,
            Rx::Backtracking(r, _) => {
                let s = latin1(v);
                let c = r.captures(&s).ok()??;
                Some((0..c.len().min(10)).map(|i| c.get(i).map(|m| Arc::from(from_latin1(m.as_str())))).collect())
            }
        }
    }
}

/// Patterns longer than this are not tried as a [`Rx::Small`] DFA: building it would mostly
/// run into the size limit, and cost load time for nothing.
const SMALL_PATTERN: usize = 256;

/// A DFA, fully built, for a short pattern (as [`Rx::compile`] translated it) whose DFA is
/// small: at most 64 KiB.
fn small_dfa(translated: &str) -> Option<dense::DFA<Vec<u32>>> {
    if translated.len() > SMALL_PATTERN {
        return None;
    }
    dense::Builder::new()
        .configure(dense::Config::new().dfa_size_limit(Some(64 << 10)).determinize_size_limit(Some(256 << 10)))
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build(&format!("(?sm-u){translated}"))
        .ok()
}

fn latin1(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

fn from_latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// Copies `chars` from `i` through the first `close` (or to the end); returns the index after it.
fn copy_through(chars: &[char], mut i: usize, close: char, out: &mut String) -> usize {
    while let Some(&d) = chars.get(i) {
        out.push(d);
        i += 1;
        if d == close {
            break;
        }
    }
    i
}

/// Rewrites PCRE (no UTF) spellings that the `regex` crate reads differently or refuses, so
/// that the pattern keeps PCRE's meaning on bytes:
/// - every non-ASCII character becomes its UTF-8 bytes, `\xhh` each (PCRE reads the pattern
///   byte by byte: in a class each byte is a member);
/// - `\x{hh}` becomes `\xhh` (a byte; the regex crate reads a code point);
/// - an escaped ASCII punctuation character becomes `\xhh` (PCRE: that character; the regex
///   crate refuses some and reads `\<`, `\>` as word boundaries);
/// - `\e`, octal `\0oo`, `\h` and `\Z` are spelled out;
/// - a `{` that does not start a `{n}`, `{n,}` or `{n,m}` quantifier is literal;
/// - `&&`, `~~`, `--` inside a class are literal (set operations for the regex crate).
///
/// Back-references and look-around are left alone: the regex crate refuses them and the
/// pattern goes to the backtracking engine, which reads this same translation.
fn translate(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    let byte = |out: &mut String, b: u8| out.push_str(&format!("\\x{b:02x}"));
    let non_ascii = |out: &mut String, c: char| {
        let mut buf = [0; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            byte(out, b);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                let Some(&n) = chars.get(i) else {
                    out.push_str(r"\\");
                    break;
                };
                i += 1;
                match n {
                    'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
                    'e' => byte(&mut out, 0x1b),
                    'h' if in_class => out.push_str(r"\t \xa0"),
                    'h' => out.push_str(r"[\t \xa0]"),
                    'x' if chars.get(i) == Some(&'{') => {
                        let digits: String = chars[i + 1..].iter().take_while(|c| **c != '}').collect();
                        match u8::from_str_radix(&digits, 16) {
                            Ok(b)
                                if !digits.is_empty()
                                    && digits.len() <= 2
                                    && chars.get(i + 1 + digits.len()) == Some(&'}') =>
                            {
                                byte(&mut out, b);
                                i += digits.len() + 2;
                            }
                            _ => out.push_str(r"\x"),
                        }
                    }
                    '0' => {
                        let mut v: u32 = 0;
                        let mut k = 0;
                        while k < 2 && chars.get(i + k).is_some_and(|d| ('0'..='7').contains(d)) {
                            v = v * 8 + chars[i + k].to_digit(8).unwrap_or(0);
                            k += 1;
                        }
                        i += k;
                        byte(&mut out, v as u8);
                    }
                    n if n.is_ascii() && !n.is_ascii_alphanumeric() => byte(&mut out, n as u8),
                    n if !n.is_ascii() => non_ascii(&mut out, n),
                    n => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            c if !c.is_ascii() => non_ascii(&mut out, c),
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` or `^]` right after the opening bracket is literal in both dialects.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            '[' => {
                // POSIX classes inside a class: copy through to the closing `:]`.
                if chars.get(i) == Some(&':') {
                    out.push('[');
                    i = copy_through(&chars, i, ']', &mut out);
                } else {
                    out.push_str(r"\[");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' | '-' if in_class && chars.get(i) == Some(&c) => byte(&mut out, c as u8),
            '{' if !in_class && quantifier(&chars[i..]) => {
                // Copy the quantifier through its closing `}`.
                out.push('{');
                i = copy_through(&chars, i, '}', &mut out);
            }
            '{' | '}' if !in_class => byte(&mut out, c as u8),
            _ => out.push(c),
        }
    }
    out
}

/// A relaxed form of a translated pattern that the regex crate can take and that matches
/// every input the pattern matches: look-around groups are dropped, back-references become
/// `.*?`, atomic groups plain groups, possessive quantifiers greedy ones.
pub(crate) fn relax(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some(d) if !in_class && d.is_ascii_digit() && *d != '0' => {
                    out.push_str("(?:.*?)");
                    i += 2;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                }
                Some(&d) => {
                    out.push('\\');
                    out.push(d);
                    i += 2;
                }
                None => i += 1,
            }
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
        if rest.starts_with("(?=") || rest.starts_with("(?!") || rest.starts_with("(?<=") || rest.starts_with("(?<!") {
            i = group_end(&chars, i);
            continue;
        }
        if rest.starts_with("(?>") {
            out.push_str("(?:");
            i += 3;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                // A leading `]` (or `^]`) is a member, not the end.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            '+' if matches!(out.chars().last(), Some('*' | '+' | '?' | '}')) && !out.ends_with("\\+") => i += 1,
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The index just past the group opening at `chars[start]`.
fn group_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Whether `rest` (after a `{`) is `n}`, `n,}` or `n,m}`.
fn quantifier(rest: &[char]) -> bool {
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    match rest.get(digits) {
        Some('}') => true,
        Some(',') => {
            let more = rest[digits + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            rest.get(digits + 1 + more) == Some(&'}')
        }
        _ => false,
    }
}

/// A compiled operator.
#[derive(Debug)]
pub(crate) enum Op {
    /// `@rx`, `@rxGlobal` with a literal pattern.
    Rx(Rx),
    /// `@rx` whose pattern holds macros: compiled per transaction.
    RxMacro(MacroString),
    /// `@pm`, `@pmFromFile`: case-insensitive phrases.
    Pm(Phrases),
    /// `@beginsWith`, `@endsWith`, `@contains`, `@containsWord`, `@streq`, `@within`,
    /// `@strmatch`, compared with the expanded argument.
    Str(StrOp, MacroString),
    /// `@eq`, `@ge`, `@gt`, `@le`, `@lt`.
    Num(NumOp, NumArg),
    /// `@ipMatch`, `@ipMatchFromFile`.
    IpMatch(Vec<Net>),
    /// `@detectSQLi`, with the fingerprints of recent short values (`None`: not SQL).
    DetectSqli(Memo<Option<Arc<[u8]>>>),
    /// `@detectXSS`, with the verdicts on recent short values.
    DetectXss(Memo<bool>),
    /// `@validateByteRange`: the allowed bytes.
    ValidateByteRange(Box<[bool; 256]>),
    /// `@validateUrlEncoding`.
    ValidateUrlEncoding,
    /// `@validateUtf8Encoding`.
    ValidateUtf8Encoding,
    /// `@unconditionalMatch`.
    Always,
    /// `@noMatch`.
    Never,
}

impl Op {
    /// Drops the threads' copies of its regexes (see [`PerThread::forget_copies`]).
    pub(crate) fn forget_copies(&mut self) {
        if let Op::Rx(rx) = self {
            rx.forget_copies();
        }
    }

    /// Whether the operator holds for `v` (captures aside), when that needs no transaction:
    /// its argument, if any, is literal. `None` when only a transaction can expand it.
    pub(crate) fn holds_alone(&self, v: &[u8]) -> Option<bool> {
        if !self.literal() {
            return None;
        }
        let arg = self.macro_arg().and_then(MacroString::as_literal).map(str::as_bytes);
        Some(self.run(v, false, arg, None).0)
    }

    /// Whether its argument, if any, is literal: it answers alike in every transaction.
    pub(crate) fn literal(&self) -> bool {
        !matches!(self, Op::RxMacro(_)) && self.macro_arg().is_none_or(|m| m.as_literal().is_some())
    }

    /// The argument, when it holds macros (expanded per rule part).
    pub(crate) fn macro_arg(&self) -> Option<&MacroString> {
        match self {
            Op::RxMacro(m) | Op::Str(_, m) | Op::Num(_, NumArg::Macro(m)) => Some(m),
            _ => None,
        }
    }

    /// The argument, when it holds macros, to number its `TX` macros (see [`TxNames`]).
    ///
    /// [`TxNames`]: super::compile::TxNames
    pub(crate) fn macro_arg_mut(&mut self) -> Option<&mut MacroString> {
        match self {
            Op::RxMacro(m) | Op::Str(_, m) | Op::Num(_, NumArg::Macro(m)) => Some(m),
            _ => None,
        }
    }

    /// Runs the operator on a (transformed) value: whether it matches, and with `capture`
    /// what it captured. `expanded` is the argument with its macros expanded, `dynamic_rx`
    /// the regex compiled from it (`RxMacro`).
    pub(crate) fn run(
        &self,
        v: &[u8],
        capture: bool,
        expanded: Option<&[u8]>,
        dynamic_rx: Option<&Rx>,
    ) -> (bool, Option<Captures>) {
        match self {
            Op::Rx(rx) => rx_run(rx, v, capture),
            Op::RxMacro(_) => match dynamic_rx {
                Some(rx) => rx_run(rx, v, capture),
                None => (false, None),
            },
            Op::Pm(ac) => match pm(ac, v) {
                Some(p) => (true, capture.then(|| smallvec![Some(Arc::from(p))])),
                None => (false, None),
            },
            Op::Str(s, _) => (str_op(*s, v, expanded.unwrap_or_default()), None),
            Op::Num(n, arg) => {
                let arg = match arg {
                    NumArg::Literal(n) => *n,
                    NumArg::Macro(_) => to_int(expanded.unwrap_or_default()),
                };
                (num_op(*n, v, arg), None)
            }
            Op::IpMatch(nets) => (ip_match(nets, v), None),
            Op::DetectSqli(memo) => match memo.get_or(v, || detect_sqli(v)) {
                Some(fp) => (true, capture.then(|| smallvec![Some(fp)])),
                None => (false, None),
            },
            Op::DetectXss(memo) => (memo.get_or(v, || detect_xss(v)), None),
            Op::ValidateByteRange(allowed) => (v.iter().any(|&b| !allowed[usize::from(b)]), None),
            Op::ValidateUrlEncoding => (invalid_url_encoding(v), None),
            Op::ValidateUtf8Encoding => (invalid_utf8(v), None),
            Op::Always => (true, None),
            Op::Never => (false, None),
        }
    }
}

fn rx_run(rx: &Rx, v: &[u8], capture: bool) -> (bool, Option<Captures>) {
    // Most values do not match: the DFA answers that alone, groups are only resolved on a match.
    if !rx.is_match(v) {
        return (false, None);
    }
    if capture {
        match rx.captures(v) {
            Some(c) => (true, Some(c)),
            None => (false, None),
        }
    } else {
        (true, None)
    }
}

/// The argument of an integer comparison: read once when literal, expanded per rule part
/// when it holds macros.
#[derive(Clone, Debug)]
pub(crate) enum NumArg {
    Literal(i64),
    Macro(MacroString),
}

/// String comparisons.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StrOp {
    BeginsWith,
    EndsWith,
    Contains,
    ContainsWord,
    Streq,
    Within,
}

/// Integer comparisons.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NumOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

/// An address or network of `@ipMatch`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = p.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The result of compiling one operator.
pub(crate) struct Compiled {
    pub op: Op,
    /// Set when the regex needed the backtracking engine.
    pub fallback: bool,
    /// Set when that backtracking regex has a linear-time prefilter.
    pub prefilter: bool,
}

/// Compiles an operator; `files` holds the entries of its data files (`@pmFromFile`).
/// `Err` says why the operator cannot run (unsupported operator, bad pattern).
pub(crate) fn compile(
    kind: OperatorKind,
    arg: &MacroString,
    files: &[&[String]],
    backtrack_limit: usize,
) -> Result<Compiled, String> {
    use OperatorKind as O;
    let plain = |op| Ok(Compiled { op, fallback: false, prefilter: false });
    let literal = arg.as_literal();
    let number = || match literal {
        Some(l) => NumArg::Literal(to_int(l.as_bytes())),
        None => NumArg::Macro(arg.clone()),
    };
    match kind {
        O::Rx | O::RxGlobal => match literal {
            Some(p) => {
                let rx = Rx::compile(p, backtrack_limit)?;
                let (fallback, prefilter) = (rx.is_fallback(), rx.has_prefilter());
                Ok(Compiled { op: Op::Rx(rx), fallback, prefilter })
            }
            None => plain(Op::RxMacro(arg.clone())),
        },
        O::Pm => {
            let text = arg.to_string();
            plain(Op::Pm(phrases(text.split_whitespace().map(str::as_bytes))?))
        }
        O::PmFromFile => {
            let words = files.iter().flat_map(|f| f.iter()).map(|s| s.trim().as_bytes()).filter(|s| !s.is_empty());
            plain(Op::Pm(phrases(words)?))
        }
        O::BeginsWith => plain(Op::Str(StrOp::BeginsWith, arg.clone())),
        O::EndsWith => plain(Op::Str(StrOp::EndsWith, arg.clone())),
        O::Contains | O::Strmatch => plain(Op::Str(StrOp::Contains, arg.clone())),
        O::ContainsWord => plain(Op::Str(StrOp::ContainsWord, arg.clone())),
        O::Streq => plain(Op::Str(StrOp::Streq, arg.clone())),
        O::Within => plain(Op::Str(StrOp::Within, arg.clone())),
        O::Eq => plain(Op::Num(NumOp::Eq, number())),
        O::Ge => plain(Op::Num(NumOp::Ge, number())),
        O::Gt => plain(Op::Num(NumOp::Gt, number())),
        O::Le => plain(Op::Num(NumOp::Le, number())),
        O::Lt => plain(Op::Num(NumOp::Lt, number())),
        O::IpMatch | O::IpMatchFromFile => {
            let text = arg.to_string();
            let entries: Vec<String> = if kind == O::IpMatch {
                text.split(|c: char| c == ',' || c.is_whitespace()).map(str::to_string).collect()
            } else {
                files.iter().flat_map(|f| f.iter().cloned()).collect()
            };
            let nets: Option<Vec<Net>> =
                entries.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(Net::parse).collect();
            plain(Op::IpMatch(nets.ok_or_else(|| format!("bad address in `{text}`"))?))
        }
        O::DetectSqli => plain(Op::DetectSqli(Memo::default())),
        O::DetectXss => plain(Op::DetectXss(Memo::default())),
        O::ValidateByteRange => {
            let mut allowed = Box::new([false; 256]);
            for item in arg.to_string().split(',') {
                let byte = |s: &str| s.trim().parse::<u8>().map_err(|_| format!("bad byte range `{item}`"));
                let (a, b) = match item.split_once('-') {
                    Some((a, b)) => (byte(a)?, byte(b)?),
                    None => (byte(item)?, byte(item)?),
                };
                for x in a..=b {
                    allowed[usize::from(x)] = true;
                }
            }
            plain(Op::ValidateByteRange(allowed))
        }
        O::ValidateUrlEncoding => plain(Op::ValidateUrlEncoding),
        O::ValidateUtf8Encoding => plain(Op::ValidateUtf8Encoding),
        O::UnconditionalMatch => plain(Op::Always),
        O::NoMatch => plain(Op::Never),
        other => Err(format!("operator @{} is not implemented", other.name())),
    }
}

/// The phrases of a `@pm`: their automaton, and the same test as a regex (any phrase, ASCII
/// case-insensitively) for the prescan when the list is short enough to join the prescan's
/// automata without swelling them.
#[derive(Debug)]
pub(crate) struct Phrases {
    pub(crate) automaton: AhoCorasick,
    pub(crate) regex: Option<regex::bytes::Regex>,
}

/// Lists longer than this stay out of the prescan (CRS's file lists run to 2,127 phrases).
const PRESCAN_PHRASES: usize = 300;

fn phrases<'a>(words: impl Iterator<Item = &'a [u8]>) -> Result<Phrases, String> {
    let words: Vec<&[u8]> = words.collect();
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&words)
        .map_err(|e| e.to_string())?;
    let regex = (words.len() <= PRESCAN_PHRASES)
        .then(|| {
            let escaped: Option<Vec<String>> =
                words.iter().map(|w| std::str::from_utf8(w).ok().map(regex::escape)).collect();
            regex::bytes::RegexBuilder::new(&format!("(?si-u)(?:{})", escaped?.join("|"))).build().ok()
        })
        .flatten();
    Ok(Phrases { automaton, regex })
}

/// Whether a string comparison holds (`arg` already expanded).
pub(crate) fn str_op(op: StrOp, v: &[u8], arg: &[u8]) -> bool {
    match op {
        StrOp::BeginsWith => v.starts_with(arg),
        StrOp::EndsWith => v.ends_with(arg),
        StrOp::Contains => occurs(v, arg),
        StrOp::Streq => v == arg,
        StrOp::Within => occurs(arg, v),
        StrOp::ContainsWord => contains_word(v, arg),
    }
}

/// The longest haystack [`occurs`] walks itself.
const SHORT_HAYSTACK: usize = 256;

/// Whether `needle` occurs in `hay`. `memmem` first builds a searcher for its needle, which
/// costs more than the search in the short lists `@within` reads (a header name in
/// `tx.restricted_headers_basic`, once per request header): a haystack up to
/// [`SHORT_HAYSTACK`] bytes is searched for the needle's second byte (the first is often the
/// list's separator) and compared there.
fn occurs(hay: &[u8], needle: &[u8]) -> bool {
    let second = match *needle {
        [_, second, ..] if hay.len() <= SHORT_HAYSTACK => second,
        _ => return memmem::find(hay, needle).is_some(),
    };
    let mut from = 1;
    while let Some(at) = hay.get(from..).and_then(|h| memchr::memchr(second, h)) {
        if hay[from + at - 1..].starts_with(needle) {
            return true;
        }
        from += at + 1;
    }
    false
}

/// `@containsWord`: `w` occurs in `v` with no word character on either side.
fn contains_word(v: &[u8], w: &[u8]) -> bool {
    if w.is_empty() {
        return true;
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut start = 0;
    while let Some(p) = memmem::find(&v[start..], w) {
        let i = start + p;
        let before = i == 0 || !word(v[i - 1]);
        let after = i + w.len() >= v.len() || !word(v[i + w.len()]);
        if before && after {
            return true;
        }
        start = i + 1;
    }
    false
}

/// libmodsecurity3 reads operands like C's `atoi`: leading blanks and sign, then digits; text
/// that is not a number counts as 0.
pub(crate) fn to_int(v: &[u8]) -> i64 {
    let s = v.iter().position(|&b| !crate::engine::transform::is_space(b)).map_or(&[][..], |i| &v[i..]);
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &b in s.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// The decimal digits of an integer, written without the formatting machinery: `setvar`
/// arithmetic and the request's addresses make some on every request.
pub(crate) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(n: i64) -> Decimal {
        // i64::MIN takes 19 digits and its sign.
        let mut d = Decimal { buf: [0; 20], start: 20 };
        let mut m = n.unsigned_abs();
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        if n < 0 {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Runs an integer comparison of a value with the operator's argument.
pub(crate) fn num_op(op: NumOp, v: &[u8], b: i64) -> bool {
    let a = to_int(v);
    match op {
        NumOp::Eq => a == b,
        NumOp::Ge => a >= b,
        NumOp::Gt => a > b,
        NumOp::Le => a <= b,
        NumOp::Lt => a < b,
    }
}

/// `@pm`: the first phrase found.
pub(crate) fn pm<'v>(phrases: &Phrases, v: &'v [u8]) -> Option<&'v [u8]> {
    phrases.automaton.find(v).map(|m| &v[m.range()])
}

/// `@ipMatch`.
pub(crate) fn ip_match(nets: &[Net], v: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(v) else { return false };
    let Ok(ip) = s.trim().parse::<IpAddr>() else { return false };
    nets.iter().any(|n| n.contains(ip))
}

/// `@detectSQLi`: the libinjection fingerprint when the value is SQL injection.
pub(crate) fn detect_sqli(v: &[u8]) -> Option<Arc<[u8]>> {
    let r = libinjectionrs::detect_sqli(v);
    if r.is_injection() {
        Some(r.fingerprint.map(|f| Arc::from(f.to_string().as_bytes())).unwrap_or_else(|| Arc::from(&b""[..])))
    } else {
        None
    }
}

/// `@detectXSS`.
pub(crate) fn detect_xss(v: &[u8]) -> bool {
    libinjectionrs::detect_xss(v).is_injection()
}

/// `@validateUrlEncoding`: a `%` not followed by two hex digits.
pub(crate) fn invalid_url_encoding(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if i + 2 >= v.len() || !v[i + 1].is_ascii_hexdigit() || !v[i + 2].is_ascii_hexdigit() {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// `@validateUtf8Encoding`: not well-formed UTF-8 (overlong forms, surrogates and code points
/// past U+10FFFF included).
pub(crate) fn invalid_utf8(v: &[u8]) -> bool {
    std::str::from_utf8(v).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short haystacks are walked by the needle's second byte, long ones go to `memmem`:
    /// both answer as a plain search does, needles at the ends and overlapping included.
    #[test]
    fn substrings_are_found_in_short_and_long_haystacks() {
        let list = b"/content-encoding/ /proxy/ /lock-token/ /if/ /x-http-method/ /expect/ //";
        let long = [&b"x".repeat(300)[..], list].concat();
        for hay in [&list[..], &long[..], b"", b"a", b"ab"] {
            let mut needles: Vec<&[u8]> =
                vec![b"", b"/", b"//", b"/if/", b"/expect/", b"/proxy", b"/host/", b"xx", b"ab"];
            needles.extend((0..hay.len()).flat_map(|i| [&hay[i..], &hay[..i], &hay[i..(i + 3).min(hay.len())]]));
            for needle in needles {
                let expected = needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle);
                assert_eq!(occurs(hay, needle), expected, "{needle:?} in {:?}", String::from_utf8_lossy(hay));
            }
        }
        assert!(str_op(StrOp::Within, b"/if/", list) && !str_op(StrOp::Within, b"/host/", list));
        assert!(str_op(StrOp::Contains, b"a /expect/ b", b"/expect/"));
    }

    #[test]
    fn regex_is_byte_oriented() {
        let rx = Rx::compile(r"\xbc[\s\x0b]*/", 1000).unwrap();
        assert!(!rx.is_fallback());
        assert!(rx.is_match(b"a\xbc /"));
        let rx = Rx::compile(r"(?i)ab(?=c)", 1000).unwrap();
        assert!(rx.is_fallback() && rx.has_prefilter());
        assert!(rx.is_match(b"\xffABc"));
        assert!(!rx.is_match(b"abd"));
        let caps = rx.captures(b"\xfeabc").unwrap();
        assert_eq!(caps[0].as_deref(), Some(&b"ab"[..]));
    }

    /// A small pattern's DFA answers as the regex does, with libmodsecurity3's flags: lines
    /// anchor `^` and `$`, `.` takes newlines, `\b` and classes read bytes.
    #[test]
    fn small_patterns_match_as_the_regex_does() {
        let values: [&[u8]; 9] =
            [b"GET", b"x\nGET", b"GET\r", b"a select b", b"selected", b"\xffselect", b"12\n34", b"a\nb", b""];
        for pattern in [r"^(?:GET|HEAD)$", r"(?i)\bselect\b", r"^\d+$", r"[^\x00-\x7f]", r"a.b", r"^$"] {
            let rx = Rx::compile(pattern, 1000).unwrap();
            assert!(matches!(rx, Rx::Small(..)), "{pattern} has a small DFA");
            let re = regex::bytes::Regex::new(&format!("(?sm-u){pattern}")).unwrap();
            for v in values {
                assert_eq!(rx.is_match(v), re.is_match(v), "{pattern} on {:?}", v.escape_ascii().to_string());
                assert_eq!(rx.captures(v).map(|c| c[0].clone()), re.find(v).map(|m| Some(Arc::from(m.as_bytes()))));
            }
        }
        let long = format!("(?:{})", (0..40).map(|i| format!("word{i}")).collect::<Vec<_>>().join("|"));
        assert!(matches!(Rx::compile(&long, 1000).unwrap(), Rx::Linear(_)), "too long to try");
    }

    #[test]
    fn captures_without_groups_are_the_match() {
        // `^.*$` (matched without an automaton) as the regex itself answers, compiled as
        // libmodsecurity3 compiles, with DOTALL and MULTILINE.
        let spelled = Rx::compile(r"^(?:.*)$", 1000).unwrap();
        for rx in [Rx::compile(r"^.*$", 1000).unwrap(), spelled.clone()] {
            for v in [&b"x-header"[..], b"a\nb", b"", b"\n\n\xff"] {
                assert!(rx.is_match(v));
                assert_eq!(rx.captures(v), Some(smallvec![Some(Arc::from(v))]));
            }
        }
        assert!(matches!(spelled, Rx::Small(..)), "spelled otherwise, an automaton runs");
        assert_eq!(Rx::compile(r"b+", 1000).unwrap().captures(b"abbc"), Some(smallvec![Some(Arc::from(&b"bb"[..]))]));
        let rx = Rx::compile(r"b(c)?", 1000).unwrap();
        assert_eq!(rx.captures(b"abd"), Some(smallvec![Some(Arc::from(&b"b"[..])), None]));
    }

    #[test]
    fn decimals_as_libmodsecurity3_writes_them() {
        for n in [0, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn pcre_spellings() {
        for (p, yes, no) in [
            (r"[^]a]", &b"b"[..], &b"]"[..]),
            (r"a\Z", b"a\n", b"a\nb"),
            (r"[a&&b]", b"&", b"c"),
            (r"^b$", b"a\nb\nc", b"ab"),
            (r"[[:digit:]]x", b"1x", b"ax"),
            (r"\/x", b"/x", b"x"),
            (r"\x{e2}\x80[\x{98}\x99]", b"\xe2\x80\x99", b"\xc3\xa2\x80\x99"),
            (r"[´]", b"\xb4", b"a"),
            (r"\${x}", b"${x}", b"$x"),
            (r"{{.*?}}", b"{{a}}", b"{a}"),
            (r"a{2}b{,3}", b"aab{,3}", b"ab"),
            (r"\<\!\e", b"<!\x1b", b"<!"),
            (r"\h\0411", b"\t!1", b"!1"),
        ] {
            let rx = Rx::compile(p, 1000).unwrap();
            assert!(rx.is_match(yes), "{p} on {yes:?}");
            assert!(!rx.is_match(no), "{p} on {no:?}");
        }
    }

    #[test]
    fn relaxed_patterns_accept_more() {
        assert_eq!(relax(r"<\?(?!xml)"), r"<\?");
        assert_eq!(relax(r#"(?<!&amp);|['"=]"#), r#";|['"=]"#);
        assert_eq!(relax(r"\b(\w+)\b=\1(?>a++)[(?!]"), r"\b(\w+)\b=(?:.*?)(?:a+)[(?!]");
        let rx = Rx::compile(r"<\?(?!xml)", 1000).unwrap();
        assert!(rx.has_prefilter());
        assert!(rx.is_match(b"a<?php") && !rx.is_match(b"<?xml") && !rx.is_match(b"plain"));
    }

    #[test]
    fn numbers_like_atoi() {
        assert_eq!(to_int(b" 42abc"), 42);
        assert_eq!(to_int(b"-7"), -7);
        assert_eq!(to_int(b"abc"), 0);
    }

    #[test]
    fn networks() {
        let nets =
            vec![Net::parse("127.0.0.1").unwrap(), Net::parse("10.0.0.0/8").unwrap(), Net::parse("::1").unwrap()];
        assert!(ip_match(&nets, b"10.2.3.4"));
        assert!(ip_match(&nets, b"::1"));
        assert!(!ip_match(&nets, b"11.0.0.1"));
    }

    #[test]
    fn libinjection_answers() {
        assert_eq!(detect_sqli(b"1' OR '1'='1").as_deref(), Some(&b"s&sos"[..]));
        assert_eq!(detect_sqli(b"1 UNION SELECT * FROM users").as_deref(), Some(&b"1UEok"[..]));
        assert!(detect_sqli(b"hello world").is_none());
        assert!(detect_xss(b"<script>alert(1)</script>"));
        assert!(detect_xss(b"<img src=x onerror=alert(1)>"));
        assert!(!detect_xss(b"benign text"));
    }

    #[test]
    fn encodings() {
        assert!(invalid_url_encoding(b"a%2"));
        assert!(invalid_url_encoding(b"%zz"));
        assert!(!invalid_url_encoding(b"%20a"));
        assert!(invalid_utf8(b"\xc0\xaf"));
        assert!(!invalid_utf8("é".as_bytes()));
    }
}
