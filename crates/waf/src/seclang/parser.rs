//! The SecLang parser: logical lines from the [`lexer`](super::lexer) to a typed [`File`].
//!
//! Each directive is read on its own, so one broken directive does not hide the errors of the
//! next: [`parse`] returns every error of the file. Inside a directive the parser reads the
//! variable list, the operator and the action list with their own small grammars; every value
//! that has a fixed set of meanings (variables, operators, transformations, actions, `ctl:`
//! options, phases, severities, engine settings) is checked here, so an unknown name is an
//! error at its `file:line:col` and never reaches the engine. A rule with `chain` takes the
//! next `SecRule` as part of itself.

use std::net::IpAddr;
use std::sync::Arc;

use super::ast::*;
use super::error::{Error, ErrorKind};
use super::lexer::{lex, Line, SourceMap, Token};

/// Parses SecLang text. `origin` names the source in errors (a file path).
pub fn parse(source: &str, origin: &str) -> Result<File, Vec<Error>> {
    let mut p = Parser { map: SourceMap::new(source), origin: Arc::from(origin), errors: Vec::new() };
    let (lines, lex_errors) = lex(source);
    for e in lex_errors {
        p.error(e.kind, (e.start, e.end));
    }
    let mut directives: Vec<Directive> = Vec::new();
    let mut open_chain: Option<usize> = None;
    for line in &lines {
        match p.directive(line) {
            Parsed::Rule(part) => {
                let chains = part.chains();
                match open_chain.and_then(|i| directives.get_mut(i)) {
                    Some(d) => {
                        d.span.end = part.span.end;
                        if let DirectiveKind::Rule(rule) = &mut d.kind {
                            rule.chain.push(part);
                        }
                        if !chains {
                            open_chain = None;
                        }
                    }
                    None => {
                        let span = part.span;
                        directives
                            .push(Directive { kind: DirectiveKind::Rule(Rule { head: part, chain: vec![] }), span });
                        open_chain = chains.then(|| directives.len() - 1);
                    }
                }
            }
            Parsed::Failed { rule: true } => open_chain = None,
            Parsed::Failed { rule: false } => p.dangling(open_chain.take(), &directives),
            Parsed::Directive(d) => {
                p.dangling(open_chain.take(), &directives);
                directives.push(d);
            }
        }
    }
    p.dangling(open_chain, &directives);
    if p.errors.is_empty() {
        Ok(File { directives })
    } else {
        p.errors.sort_by_key(|e| e.span.start.offset);
        Err(p.errors)
    }
}

/// Parses SecLang bytes; text that is not UTF-8 is an error at the first bad byte.
pub fn parse_bytes(source: &[u8], origin: &str) -> Result<File, Vec<Error>> {
    match std::str::from_utf8(source) {
        Ok(s) => parse(s, origin),
        Err(e) => {
            let valid = std::str::from_utf8(source.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default();
            let map = SourceMap::new(valid);
            let at = map.position(valid.len());
            Err(vec![Error {
                origin: Arc::from(origin),
                span: Span { start: at, end: at },
                kind: ErrorKind::InvalidUtf8,
            }])
        }
    }
}

enum Parsed {
    Directive(Directive),
    Rule(RulePart),
    Failed { rule: bool },
}

/// A piece of argument text and, when known, the source offset of each of its bytes.
#[derive(Clone, Copy)]
struct Piece<'t> {
    text: &'t str,
    offsets: Option<&'t [usize]>,
    /// Source offsets to report when `offsets` is unknown (the enclosing action).
    whole: (usize, usize),
}

impl<'t> Piece<'t> {
    fn of(tok: &'t Token) -> Piece<'t> {
        Piece { text: &tok.text, offsets: Some(&tok.offsets), whole: (tok.start, tok.end) }
    }

    fn at(&self, from: usize, to: usize) -> (usize, usize) {
        let Some(offs) = self.offsets else { return self.whole };
        let start = offs.get(from).copied().unwrap_or(self.whole.1);
        let end = if to > from { offs.get(to - 1).map_or(self.whole.1, |&o| o + 1) } else { start };
        (start, end.max(start))
    }
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads a `q`-quoted string starting at `b[i] == q`; returns the unescaped text and the index
/// after the closing quote, or `None` when it is not closed.
fn quoted(s: &str, i: usize, q: u8) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if b.get(j + 1) == Some(&b'\\') => {
                out.extend_from_slice(b"\\\\");
                j += 2;
            }
            b'\\' if b.get(j + 1) == Some(&q) => {
                out.push(q);
                j += 2;
            }
            c if c == q => return Some((String::from_utf8_lossy(&out).into_owned(), j + 1)),
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    None
}

fn parse_switch(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("on") {
        Some(true)
    } else if s.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

struct Parser<'a> {
    map: SourceMap<'a>,
    origin: Arc<str>,
    errors: Vec<Error>,
}

impl Parser<'_> {
    fn error(&mut self, kind: ErrorKind, (start, end): (usize, usize)) {
        let span = self.map.span(start, end);
        self.errors.push(Error { origin: self.origin.clone(), span, kind });
    }

    fn span(&self, (start, end): (usize, usize)) -> Span {
        self.map.span(start, end)
    }

    fn dangling(&mut self, open: Option<usize>, directives: &[Directive]) {
        if let Some(d) = open.and_then(|i| directives.get(i)) {
            self.errors.push(Error { origin: self.origin.clone(), span: d.span, kind: ErrorKind::DanglingChain });
        }
    }

    fn tok(&self, t: &Token) -> (usize, usize) {
        (t.start, t.end)
    }

    /// Checks the argument count; reports at the first extra argument or at the directive name.
    fn arity(&mut self, line: &Line, directive: &'static str, min: usize, max: usize, expected: &'static str) -> bool {
        let found = line.tokens.len() - 1;
        if (min..=max).contains(&found) {
            return true;
        }
        let at = line.tokens.get(max.saturating_add(1)).unwrap_or(&line.tokens[0]);
        self.error(ErrorKind::ArgumentCount { directive, expected, found }, (at.start, at.end));
        false
    }

    fn directive(&mut self, line: &Line) -> Parsed {
        let errors_before = self.errors.len();
        let name = line.tokens[0].text.as_str();
        let lower = name.to_ascii_lowercase();
        let span = self.span((line.start, line.end));
        let args = &line.tokens[1..];
        let is_rule = matches!(lower.as_str(), "secrule" | "secaction");
        let kind = match lower.as_str() {
            "secrule" => {
                if !self.arity(line, "SecRule", 2, 3, "2 or 3 arguments (variables, operator, actions)") {
                    return Parsed::Failed { rule: true };
                }
                let targets = self.targets(Piece::of(&args[0]));
                let operator = self.operator(Piece::of(&args[1]));
                let actions = args.get(2).map(|t| self.actions(Piece::of(t))).unwrap_or_default();
                match (targets, operator) {
                    (Some(targets), Some(operator)) if self.errors.len() == errors_before => {
                        return Parsed::Rule(RulePart { kind: RuleKind::SecRule { targets, operator }, actions, span });
                    }
                    _ => return Parsed::Failed { rule: true },
                }
            }
            "secaction" => {
                if !self.arity(line, "SecAction", 1, 1, "1 argument (actions)") {
                    return Parsed::Failed { rule: true };
                }
                let actions = self.actions(Piece::of(&args[0]));
                if self.errors.len() > errors_before {
                    return Parsed::Failed { rule: true };
                }
                return Parsed::Rule(RulePart { kind: RuleKind::SecAction, actions, span });
            }
            "secdefaultaction" => {
                if !self.arity(line, "SecDefaultAction", 1, 1, "1 argument (actions)") {
                    return Parsed::Failed { rule: false };
                }
                Some(DirectiveKind::DefaultAction(self.actions(Piece::of(&args[0]))))
            }
            "secmarker" => self.single(line, "SecMarker").map(DirectiveKind::Marker),
            "seccomponentsignature" => {
                self.single(line, "SecComponentSignature").map(DirectiveKind::ComponentSignature)
            }
            "include" => self.single(line, "Include").map(|path| DirectiveKind::Include { path, optional: false }),
            "includeoptional" => {
                self.single(line, "IncludeOptional").map(|path| DirectiveKind::Include { path, optional: true })
            }
            "secruleremovebyid" => {
                if !self.arity(line, "SecRuleRemoveById", 1, usize::MAX, "1 or more ids or ranges") {
                    return Parsed::Failed { rule: false };
                }
                let mut ids = Vec::new();
                for t in args {
                    ids.extend(self.ids(&t.text, self.tok(t)));
                }
                Some(DirectiveKind::RemoveById(ids))
            }
            "secruleremovebytag" => self.single(line, "SecRuleRemoveByTag").map(DirectiveKind::RemoveByTag),
            "secruleremovebymsg" => self.single(line, "SecRuleRemoveByMsg").map(DirectiveKind::RemoveByMsg),
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
                let dname = match lower.as_str() {
                    "secruleupdatetargetbyid" => "SecRuleUpdateTargetById",
                    "secruleupdatetargetbytag" => "SecRuleUpdateTargetByTag",
                    _ => "SecRuleUpdateTargetByMsg",
                };
                if !self.arity(line, dname, 2, 3, "2 or 3 arguments (rules, variables[, replaced variables])") {
                    return Parsed::Failed { rule: false };
                }
                let selector = match dname {
                    "SecRuleUpdateTargetById" => RuleSelector::Ids(self.ids(&args[0].text, self.tok(&args[0]))),
                    "SecRuleUpdateTargetByTag" => RuleSelector::Tag(args[0].text.clone()),
                    _ => RuleSelector::Msg(args[0].text.clone()),
                };
                let targets = self.targets(Piece::of(&args[1]));
                let replaced = args.get(2).map(|t| self.targets(Piece::of(t)));
                match (targets, replaced) {
                    (Some(targets), None) => Some(DirectiveKind::UpdateTarget { selector, targets, replaced: None }),
                    (Some(targets), Some(Some(r))) => {
                        Some(DirectiveKind::UpdateTarget { selector, targets, replaced: Some(r) })
                    }
                    _ => None,
                }
            }
            "secruleupdateactionbyid" => {
                if !self.arity(line, "SecRuleUpdateActionById", 2, 2, "2 arguments (id, actions)") {
                    return Parsed::Failed { rule: false };
                }
                let text = args[0].text.as_str();
                let (id, offset) = match text.split_once(':') {
                    Some((id, off)) => (id, Some(off)),
                    None => (text, None),
                };
                let id = parse_number(id).filter(|&n| n > 0);
                let offset = offset.map(|o| parse_number(o).and_then(|n| u32::try_from(n).ok()));
                let actions = self.actions(Piece::of(&args[1]));
                match (id, offset) {
                    (Some(id), None) => Some(DirectiveKind::UpdateActionById { id, chain_offset: None, actions }),
                    (Some(id), Some(Some(o))) => {
                        Some(DirectiveKind::UpdateActionById { id, chain_offset: Some(o), actions })
                    }
                    _ => {
                        self.error(ErrorKind::InvalidId(text.to_string()), self.tok(&args[0]));
                        None
                    }
                }
            }
            "secrulescript" => {
                let kind = ErrorKind::Unsupported("SecRuleScript: Lua rules are not supported".into());
                self.error(kind, self.tok(&line.tokens[0]));
                None
            }
            _ => self.setting(line, name).map(DirectiveKind::Setting),
        };
        match kind {
            Some(kind) if self.errors.len() == errors_before => Parsed::Directive(Directive { kind, span }),
            _ => Parsed::Failed { rule: is_rule },
        }
    }

    fn single(&mut self, line: &Line, directive: &'static str) -> Option<String> {
        self.arity(line, directive, 1, 1, "1 argument").then(|| line.tokens[1].text.clone())
    }

    fn ids(&mut self, text: &str, at: (usize, usize)) -> Vec<IdRange> {
        let mut out = Vec::new();
        for part in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
            match IdRange::parse(part).filter(|r| r.start > 0) {
                Some(r) => out.push(r),
                None => self.error(ErrorKind::InvalidId(part.to_string()), at),
            }
        }
        if out.is_empty() && text.trim().is_empty() {
            self.error(ErrorKind::InvalidId(text.to_string()), at);
        }
        out
    }

    fn setting(&mut self, line: &Line, name: &str) -> Option<Setting> {
        let args = &line.tokens[1..];
        let lower = name.to_ascii_lowercase();
        let fixed: Option<(&'static str, &'static str)> = match lower.as_str() {
            "secruleengine" => Some(("SecRuleEngine", "On, Off or DetectionOnly")),
            "secauditengine" => Some(("SecAuditEngine", "On, Off or RelevantOnly")),
            "secrequestbodylimitaction" => Some(("SecRequestBodyLimitAction", "Reject or ProcessPartial")),
            "secresponsebodylimitaction" => Some(("SecResponseBodyLimitAction", "Reject or ProcessPartial")),
            "secauditlogtype" => Some(("SecAuditLogType", "Serial, Concurrent or HTTPS")),
            "secauditlogformat" => Some(("SecAuditLogFormat", "JSON or Native")),
            "secremoterulesfailaction" => Some(("SecRemoteRulesFailAction", "Abort or Warn")),
            "secresponsebodymimetypesclear" => {
                return self
                    .arity(line, "SecResponseBodyMimeTypesClear", 0, 0, "no argument")
                    .then_some(Setting::ResponseBodyMimeTypesClear);
            }
            _ => None,
        };
        if let Some((directive, expected)) = fixed {
            if !self.arity(line, directive, 1, 1, "1 argument") {
                return None;
            }
            let v = args[0].text.as_str();
            let setting = match directive {
                "SecRuleEngine" => EngineMode::from_name(v).map(Setting::RuleEngine),
                "SecAuditEngine" => AuditEngineMode::from_name(v).map(Setting::AuditEngine),
                "SecRequestBodyLimitAction" => LimitAction::from_name(v).map(Setting::RequestBodyLimitAction),
                "SecResponseBodyLimitAction" => LimitAction::from_name(v).map(Setting::ResponseBodyLimitAction),
                "SecAuditLogType" => AuditLogType::from_name(v).map(Setting::AuditLogType),
                "SecAuditLogFormat" => AuditLogFormat::from_name(v).map(Setting::AuditLogFormat),
                _ => FailAction::from_name(v).map(Setting::RemoteRulesFailAction),
            };
            if setting.is_none() {
                let kind = ErrorKind::InvalidDirectiveValue { directive, value: v.to_string(), expected };
                self.error(kind, self.tok(&args[0]));
            }
            return setting;
        }
        if let Some(d) = SwitchDirective::from_name(name) {
            if !self.arity(line, d.name(), 1, 1, "1 argument (On or Off)") {
                return None;
            }
            let v = &args[0];
            let on = parse_switch(&v.text);
            if on.is_none() {
                let kind = ErrorKind::InvalidDirectiveValue {
                    directive: d.name(),
                    value: v.text.clone(),
                    expected: "On or Off",
                };
                self.error(kind, self.tok(v));
            }
            return on.map(|b| Setting::Switch(d, b));
        }
        if let Some(d) = NumberDirective::from_name(name) {
            if !self.arity(line, d.name(), 1, 1, "1 argument (a number)") {
                return None;
            }
            let v = &args[0];
            let n = parse_number(&v.text);
            if n.is_none() {
                let kind = ErrorKind::InvalidDirectiveValue {
                    directive: d.name(),
                    value: v.text.clone(),
                    expected: "a number",
                };
                self.error(kind, self.tok(v));
            }
            return n.map(|n| Setting::Number(d, n));
        }
        if let Some(d) = TextDirective::from_name(name) {
            return self.arity(line, d.name(), 1, 1, "1 argument").then(|| Setting::Text(d, args[0].text.clone()));
        }
        if let Some(d) = ListDirective::from_name(name) {
            let ok = self.arity(line, d.name(), 1, usize::MAX, "1 or more arguments");
            return ok.then(|| Setting::List(d, args.iter().map(|t| t.text.clone()).collect()));
        }
        self.error(ErrorKind::UnknownDirective(name.to_string()), self.tok(&line.tokens[0]));
        None
    }

    /// Reads `ARGS|!ARGS:foo|&TX:bar|REQUEST_HEADERS:/^x-/|XML:/*`.
    fn targets(&mut self, p: Piece<'_>) -> Option<Vec<Target>> {
        let s = p.text;
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = skip_blanks(b, 0);
        if i == b.len() {
            self.error(ErrorKind::InvalidVariable("no variable".into()), p.at(0, b.len()));
            return None;
        }
        loop {
            let start = i;
            let modifier = match b.get(i) {
                Some(b'!') => TargetModifier::Exclude,
                Some(b'&') => TargetModifier::Count,
                _ => TargetModifier::None,
            };
            if modifier != TargetModifier::None {
                i += 1;
            }
            let name_start = i;
            while i < b.len() && is_word(b[i]) {
                i += 1;
            }
            let name = s.get(name_start..i).unwrap_or_default();
            if name.is_empty() {
                let what = format!("expected a variable name at `{}`", s.get(i..).unwrap_or_default());
                self.error(ErrorKind::InvalidVariable(what), p.at(i, i + 1));
                return None;
            }
            let Some(variable) = Variable::from_name(name) else {
                self.error(ErrorKind::UnknownVariable(name.to_string()), p.at(name_start, i));
                return None;
            };
            let mut selector = None;
            if b.get(i) == Some(&b':') {
                i += 1;
                let key_start = i;
                let (key, quoted_key) = if b.get(i) == Some(&b'\'') {
                    let Some((k, next)) = quoted(s, i, b'\'') else {
                        self.error(ErrorKind::UnterminatedQuote('\''), p.at(i, i + 1));
                        return None;
                    };
                    i = next;
                    (k, true)
                } else if b.get(i) == Some(&b'/') && variable != Variable::Xml {
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'/' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    if j >= b.len() {
                        self.error(
                            ErrorKind::InvalidVariable("regular expression key lacks its closing `/`".into()),
                            p.at(i, i + 1),
                        );
                        return None;
                    }
                    i = j + 1;
                    (s.get(key_start..i).unwrap_or_default().to_string(), false)
                } else {
                    while i < b.len() && b[i] != b'|' && !is_blank(b[i]) {
                        i += 1;
                    }
                    (s.get(key_start..i).unwrap_or_default().to_string(), false)
                };
                if key.is_empty() && !quoted_key {
                    self.error(ErrorKind::InvalidVariable(format!("empty key after `{name}:`")), p.at(start, i));
                    return None;
                }
                selector = Some(if variable == Variable::Xml {
                    Selector::XPath(key)
                } else if key.len() >= 2 && key.starts_with('/') && key.ends_with('/') {
                    Selector::Regex(key[1..key.len() - 1].to_string())
                } else {
                    Selector::Key(key)
                });
            }
            if selector.is_some() && !variable.is_collection() {
                let what = format!("`{}` is not a collection and takes no key", variable.name());
                self.error(ErrorKind::InvalidVariable(what), p.at(start, i));
                return None;
            }
            if modifier == TargetModifier::Exclude && selector.is_none() {
                let what =
                    format!("`!{}` excludes nothing: name a key, as in `!{}:name`", variable.name(), variable.name());
                self.error(ErrorKind::InvalidVariable(what), p.at(start, i));
                return None;
            }
            out.push(Target { modifier, variable, selector, span: self.span(p.at(start, i)) });
            i = skip_blanks(b, i);
            if i >= b.len() {
                return Some(out);
            }
            if b[i] != b'|' {
                let what = format!("expected `|` between variables, found `{}`", s.get(i..).unwrap_or_default());
                self.error(ErrorKind::InvalidVariable(what), p.at(i, i + 1));
                return None;
            }
            i = skip_blanks(b, i + 1);
        }
    }

    /// Reads `@op argument`, `!@op argument` or a bare regex (implicit `@rx`).
    fn operator(&mut self, p: Piece<'_>) -> Option<Operator> {
        let s = p.text;
        let b = s.as_bytes();
        let mut i = skip_blanks(b, 0);
        let negated = b.get(i) == Some(&b'!');
        if negated {
            i = skip_blanks(b, i + 1);
        }
        let (kind, arg_start) = if b.get(i) == Some(&b'@') {
            let mut j = i + 1;
            while j < b.len() && !is_blank(b[j]) {
                j += 1;
            }
            let name = s.get(i + 1..j).unwrap_or_default();
            let Some(kind) = OperatorKind::from_name(name) else {
                self.error(ErrorKind::UnknownOperator(name.to_string()), p.at(i, j));
                return None;
            };
            (kind, (j + 1).min(b.len()))
        } else {
            (OperatorKind::Rx, i)
        };
        let mut arg = s.get(arg_start..).unwrap_or_default();
        let at = p.at(arg_start, b.len());
        let invalid = |message: String| ErrorKind::InvalidOperatorArgument { operator: kind.name(), message };
        if !kind.takes_argument() {
            if !arg.trim().is_empty() {
                self.error(invalid("this operator takes no argument".into()), at);
                return None;
            }
            arg = "";
        } else if arg.trim().is_empty() {
            self.error(invalid("missing argument".into()), p.at(0, b.len()));
            return None;
        }
        let argument = MacroString::parse(arg, false).unwrap_or_else(|_| MacroString::literal(arg));
        if let Err(message) = check_operator_argument(kind, arg, argument.has_macros()) {
            self.error(invalid(message), at);
            return None;
        }
        Some(Operator { negated, kind, argument, span: self.span(p.at(0, b.len())) })
    }

    /// Reads `id:1,phase:2,t:none,msg:'a, b',setvar:'tx.x=+1'`.
    fn actions(&mut self, p: Piece<'_>) -> Vec<Action> {
        let s = p.text;
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = skip_blanks(b, 0);
        if i == b.len() {
            return out;
        }
        let next_comma = |from: usize| b[from.min(b.len())..].iter().position(|&c| c == b',').map(|k| from + k);
        loop {
            i = skip_blanks(b, i);
            let start = i;
            while i < b.len() && is_word(b[i]) {
                i += 1;
            }
            let name = s.get(start..i).unwrap_or_default();
            if name.is_empty() {
                let found = if i < b.len() { "expected an action name" } else { "trailing comma" };
                self.error(ErrorKind::InvalidActionList(found.into()), p.at(i, i + 1));
                match next_comma(i) {
                    Some(c) => {
                        i = c + 1;
                        continue;
                    }
                    None => return out,
                }
            }
            i = skip_blanks(b, i);
            let mut value = None;
            if b.get(i) == Some(&b':') {
                i = skip_blanks(b, i + 1);
                if b.get(i) == Some(&b'\'') {
                    let Some((v, next)) = quoted(s, i, b'\'') else {
                        self.error(ErrorKind::UnterminatedQuote('\''), p.at(i, i + 1));
                        return out;
                    };
                    value = Some(v);
                    i = next;
                } else {
                    let vs = i;
                    i = next_comma(i).unwrap_or(b.len());
                    let v = s.get(vs..i).unwrap_or_default().trim_end();
                    if super::lexer::ends_in_lone_backslash(v) {
                        self.error(ErrorKind::TrailingBackslash, p.at(vs, vs + v.len()));
                        return out;
                    }
                    value = Some(v.to_string());
                }
            }
            let end = i;
            i = skip_blanks(b, i);
            if i < b.len() && b[i] != b',' {
                let what = format!("expected `,` after action `{name}`");
                self.error(ErrorKind::InvalidActionList(what), p.at(i, i + 1));
                match next_comma(i) {
                    Some(c) => {
                        i = c + 1;
                        continue;
                    }
                    None => return out,
                }
            }
            let at = p.at(start, end);
            if let Some(kind) = self.action(name, value, at) {
                out.push(Action { kind, span: self.span(at) });
            }
            if i >= b.len() {
                return out;
            }
            i += 1;
            if skip_blanks(b, i) == b.len() {
                self.error(ErrorKind::InvalidActionList("trailing comma".into()), p.at(i - 1, i));
                return out;
            }
        }
    }

    fn action(&mut self, name: &str, value: Option<String>, at: (usize, usize)) -> Option<ActionKind> {
        match self.action_kind(name, value, at) {
            Ok(kind) => Some(kind),
            Err(kind) => {
                self.error(kind, at);
                None
            }
        }
    }

    fn action_kind(&mut self, name: &str, value: Option<String>, at: (usize, usize)) -> Result<ActionKind, ErrorKind> {
        use ActionKind as K;
        use ActionName as N;
        let Some(an) = ActionName::from_name(name) else {
            return Err(ErrorKind::UnknownAction(name.to_string()));
        };
        let action = an.name();
        let invalid = |message: &str| ErrorKind::InvalidActionValue { action, message: message.to_string() };
        let flag = |k: ActionKind| if value.is_some() { Err(ErrorKind::UnexpectedActionValue(action)) } else { Ok(k) };
        let need = || value.clone().ok_or(ErrorKind::MissingActionValue(action));
        let text = || -> Result<MacroString, ErrorKind> {
            MacroString::parse(&need()?, true).map_err(ErrorKind::UnknownMacroVariable)
        };
        let word = || -> Result<String, ErrorKind> {
            let v = need()?;
            if v.trim().is_empty() {
                return Err(invalid("empty value"));
            }
            Ok(v)
        };
        let digit = || -> Result<u8, ErrorKind> {
            need()?
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= 9)
                .ok_or_else(|| invalid("expected a number from 0 to 9"))
        };
        Ok(match an {
            N::Accuracy => K::Accuracy(digit()?),
            N::Maturity => K::Maturity(digit()?),
            N::Allow => match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => K::Allow(AllowScope::All),
                Some("phase") => K::Allow(AllowScope::Phase),
                Some("request") => K::Allow(AllowScope::Request),
                Some(_) => return Err(invalid("expected nothing, `phase` or `request`")),
            },
            N::Append => K::Append(text()?),
            N::LogData => K::LogData(text()?),
            N::Msg => K::Msg(text()?),
            N::Prepend => K::Prepend(text()?),
            N::Proxy => K::Proxy(text()?),
            N::Redirect => K::Redirect(text()?),
            N::SetRsc => K::SetRsc(text()?),
            N::SetSid => K::SetSid(text()?),
            N::SetUid => K::SetUid(text()?),
            N::Tag => K::Tag(text()?),
            N::AuditLog => flag(K::AuditLog)?,
            N::Block => flag(K::Block)?,
            N::Capture => flag(K::Capture)?,
            N::Chain => flag(K::Chain)?,
            N::Deny => flag(K::Deny)?,
            N::Drop => flag(K::Drop)?,
            N::Log => flag(K::Log)?,
            N::MultiMatch => flag(K::MultiMatch)?,
            N::NoAuditLog => flag(K::NoAuditLog)?,
            N::NoLog => flag(K::NoLog)?,
            N::Pass => flag(K::Pass)?,
            N::SanitiseMatched => flag(K::SanitiseMatched)?,
            N::SanitiseMatchedBytes => K::SanitiseMatchedBytes(value.clone()),
            N::Ctl => K::Ctl(self.ctl(&need()?, at)?),
            N::DeprecateVar => {
                let v = need()?;
                let (var, rest) = v.split_once('=').ok_or_else(|| invalid("expected `collection.name=N/M`"))?;
                K::DeprecateVar(var_ref(var).map_err(|m| invalid(&m))?, rest.to_string())
            }
            N::ExpireVar => {
                let v = need()?;
                let (var, secs) = v.split_once('=').ok_or_else(|| invalid("expected `collection.name=seconds`"))?;
                let secs = MacroString::parse(secs, true).map_err(ErrorKind::UnknownMacroVariable)?;
                if !secs.has_macros() && parse_number(secs.to_string().trim()).is_none() {
                    return Err(invalid("expected a number of seconds"));
                }
                K::ExpireVar(var_ref(var).map_err(|m| invalid(&m))?, secs)
            }
            N::Exec => K::Exec(word()?),
            N::Rev => K::Rev(word()?),
            N::Ver => K::Ver(word()?),
            N::SanitiseArg => K::SanitiseArg(word()?),
            N::SanitiseRequestHeader => K::SanitiseRequestHeader(word()?),
            N::SanitiseResponseHeader => K::SanitiseResponseHeader(word()?),
            N::SkipAfter => K::SkipAfter(word()?),
            N::Id => K::Id(
                parse_number(need()?.trim()).filter(|&n| n > 0).ok_or_else(|| invalid("expected a positive number"))?,
            ),
            N::InitCol => {
                let v = need()?;
                let (col, key) = v.split_once('=').ok_or_else(|| invalid("expected `collection=key`"))?;
                let col = Variable::from_name(col)
                    .filter(|c| c.is_writable() && *c != Variable::Tx)
                    .ok_or_else(|| invalid("expected ip, global, session, user or resource"))?;
                K::InitCol(col, MacroString::parse(key, true).map_err(ErrorKind::UnknownMacroVariable)?)
            }
            N::Pause => K::Pause(parse_number(need()?.trim()).ok_or_else(|| invalid("expected milliseconds"))?),
            N::Phase => K::Phase(
                Phase::parse(need()?.trim()).ok_or_else(|| invalid("expected 1-5, request, response or logging"))?,
            ),
            N::SetEnv => {
                let v = need()?;
                let (n, val) = v.split_once('=').ok_or_else(|| invalid("expected `name=value`"))?;
                if n.trim().is_empty() {
                    return Err(invalid("empty name"));
                }
                K::SetEnv(n.to_string(), MacroString::parse(val, true).map_err(ErrorKind::UnknownMacroVariable)?)
            }
            N::SetVar => K::SetVar(set_var(&need()?).map_err(|m| match m {
                SetVarError::Macro(name) => ErrorKind::UnknownMacroVariable(name),
                SetVarError::Invalid(m) => invalid(&m),
            })?),
            N::Severity => {
                let v = need()?;
                let v = v.trim();
                let sev = match v.parse::<u8>() {
                    Ok(n) => Severity::from_number(n),
                    Err(_) => Severity::from_name(v),
                };
                K::Severity(sev.ok_or_else(|| invalid("expected 0-7 or EMERGENCY..DEBUG"))?)
            }
            N::Skip => K::Skip(
                need()?
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid("expected a positive number"))?,
            ),
            N::Status => K::Status(
                need()?
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|n| (100..=999).contains(n))
                    .ok_or_else(|| invalid("expected an HTTP status"))?,
            ),
            N::T => {
                let v = need()?;
                K::Transformation(
                    Transformation::from_name(v.trim()).ok_or_else(|| ErrorKind::UnknownTransformation(v.clone()))?,
                )
            }
            N::Xmlns => {
                let v = need()?;
                let (prefix, url) = v.split_once('=').ok_or_else(|| invalid("expected `prefix=url`"))?;
                K::Xmlns(prefix.to_string(), url.to_string())
            }
        })
    }

    fn ctl(&mut self, v: &str, at: (usize, usize)) -> Result<Ctl, ErrorKind> {
        let (opt, val) = v.split_once('=').ok_or_else(|| ErrorKind::InvalidActionValue {
            action: "ctl",
            message: format!("expected `option=value`, found `{v}`"),
        })?;
        let option = CtlOption::from_name(opt.trim()).ok_or_else(|| ErrorKind::UnknownCtlOption(opt.to_string()))?;
        let invalid = |expected: &str| ErrorKind::InvalidActionValue {
            action: "ctl",
            message: format!("`{}` expects {expected}, found `{val}`", option.name()),
        };
        let switch = || parse_switch(val.trim()).ok_or_else(|| invalid("On or Off"));
        let number = || parse_number(val.trim()).ok_or_else(|| invalid("a number"));
        let ids = |text: &str, parser: &mut Self| -> Result<Vec<IdRange>, ErrorKind> {
            let before = parser.errors.len();
            let ids = parser.ids(text, at);
            if parser.errors.len() > before {
                parser.errors.truncate(before);
                return Err(invalid("rule ids or ranges"));
            }
            Ok(ids)
        };
        let with_targets = |parser: &mut Self| -> Result<(String, Vec<Target>), ErrorKind> {
            let (rules, targets) = val.split_once(';').ok_or_else(|| invalid("`rules;VARIABLES`"))?;
            let before = parser.errors.len();
            let targets = parser.targets(Piece { text: targets, offsets: None, whole: at });
            match targets {
                Some(t) if parser.errors.len() == before => Ok((rules.to_string(), t)),
                _ => {
                    let first = parser.errors.drain(before..).next();
                    Err(first.map(|e| e.kind).unwrap_or_else(|| invalid("`rules;VARIABLES`")))
                }
            }
        };
        Ok(match option {
            CtlOption::AuditEngine => Ctl::AuditEngine(
                AuditEngineMode::from_name(val.trim()).ok_or_else(|| invalid("On, Off or RelevantOnly"))?,
            ),
            CtlOption::AuditLogParts => {
                let parts = val.trim().trim_start_matches(['+', '-']);
                if parts.is_empty() || !parts.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid("audit log parts such as `+E` or `ABIJDEFHZ`"));
                }
                Ctl::AuditLogParts(val.trim().to_string())
            }
            CtlOption::DebugLogLevel => {
                Ctl::DebugLogLevel(u32::try_from(number()?).map_err(|_| invalid("a number from 0 to 9"))?)
            }
            CtlOption::ForceRequestBodyVariable => Ctl::ForceRequestBodyVariable(switch()?),
            CtlOption::HashEnforcement => Ctl::HashEnforcement(switch()?),
            CtlOption::HashEngine => Ctl::HashEngine(switch()?),
            CtlOption::ParseXmlIntoArgs => {
                Ctl::ParseXmlIntoArgs(XmlArgsMode::from_name(val.trim()).ok_or_else(|| invalid("On, Off or OnlyArgs"))?)
            }
            CtlOption::RequestBodyAccess => Ctl::RequestBodyAccess(switch()?),
            CtlOption::RequestBodyLimit => Ctl::RequestBodyLimit(number()?),
            CtlOption::RequestBodyProcessor => Ctl::RequestBodyProcessor(
                BodyProcessor::from_name(val.trim()).ok_or_else(|| invalid("XML, JSON, URLENCODED or MULTIPART"))?,
            ),
            CtlOption::ResponseBodyAccess => Ctl::ResponseBodyAccess(switch()?),
            CtlOption::ResponseBodyLimit => Ctl::ResponseBodyLimit(number()?),
            CtlOption::RuleEngine => {
                Ctl::RuleEngine(EngineMode::from_name(val.trim()).ok_or_else(|| invalid("On, Off or DetectionOnly"))?)
            }
            CtlOption::RuleRemoveById => Ctl::RuleRemoveById(ids(val, self)?),
            CtlOption::RuleRemoveByMsg => Ctl::RuleRemoveByMsg(non_empty(val).ok_or_else(|| invalid("a message"))?),
            CtlOption::RuleRemoveByTag => Ctl::RuleRemoveByTag(non_empty(val).ok_or_else(|| invalid("a tag"))?),
            CtlOption::RuleRemoveTargetById => {
                let (rules, targets) = with_targets(self)?;
                Ctl::RuleRemoveTargetById(ids(&rules, self)?, targets)
            }
            CtlOption::RuleRemoveTargetByMsg => {
                let (rules, targets) = with_targets(self)?;
                Ctl::RuleRemoveTargetByMsg(non_empty(&rules).ok_or_else(|| invalid("a message"))?, targets)
            }
            CtlOption::RuleRemoveTargetByTag => {
                let (rules, targets) = with_targets(self)?;
                Ctl::RuleRemoveTargetByTag(non_empty(&rules).ok_or_else(|| invalid("a tag"))?, targets)
            }
        })
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Reads `collection.name` for `setvar`, `expirevar`, `deprecatevar`.
fn var_ref(s: &str) -> Result<VarRef, String> {
    let (col, name) = s.split_once('.').ok_or_else(|| format!("expected `collection.name`, found `{s}`"))?;
    let collection = Variable::from_name(col)
        .filter(|c| c.is_writable())
        .ok_or_else(|| format!("`{col}` is not a writable collection (tx, ip, global, session, user, resource)"))?;
    if name.is_empty() {
        return Err("empty variable name".into());
    }
    let name = MacroString::parse(name, true).map_err(|m| format!("unknown variable `{m}` in macro"))?;
    Ok(VarRef { collection, name })
}

enum SetVarError {
    Macro(String),
    Invalid(String),
}

fn set_var(v: &str) -> Result<SetVar, SetVarError> {
    let v = v.trim_start();
    let (delete, v) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (lhs, rhs) = match v.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (v, None),
    };
    let var = var_ref(lhs).map_err(SetVarError::Invalid)?;
    let value = |s: &str| MacroString::parse(s, true).map_err(SetVarError::Macro);
    let op = match (delete, rhs) {
        (true, None) => SetVarOp::Delete,
        (true, Some(_)) => return Err(SetVarError::Invalid("`!` deletes a variable and takes no value".into())),
        (false, None) => SetVarOp::Define,
        (false, Some(r)) => match r.as_bytes().first() {
            Some(b'+') => SetVarOp::Add(value(&r[1..])?),
            Some(b'-') => SetVarOp::Sub(value(&r[1..])?),
            _ => SetVarOp::Set(value(r)?),
        },
    };
    Ok(SetVar { var, op })
}

/// Checks the argument of operators whose argument has a fixed shape.
fn check_operator_argument(kind: OperatorKind, arg: &str, has_macros: bool) -> Result<(), String> {
    use OperatorKind as O;
    match kind {
        O::Eq | O::Ge | O::Gt | O::Le | O::Lt if !has_macros => {
            arg.trim().parse::<i64>().map(|_| ()).map_err(|_| format!("expected an integer, found `{arg}`"))
        }
        O::ValidateByteRange => {
            for item in arg.split(',') {
                let item = item.trim();
                let byte =
                    |s: &str| s.trim().parse::<u8>().map_err(|_| format!("`{item}` is not a byte or byte range"));
                let (lo, hi) = match item.split_once('-') {
                    Some((a, b)) => (byte(a)?, byte(b)?),
                    None => (byte(item)?, byte(item)?),
                };
                if lo > hi {
                    return Err(format!("`{item}` is an empty range"));
                }
            }
            Ok(())
        }
        O::IpMatch => {
            for item in arg.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
                check_network(item)?;
            }
            Ok(())
        }
        O::PmFromFile | O::IpMatchFromFile if has_macros => Err("data file names cannot hold macros".into()),
        _ => Ok(()),
    }
}

/// Checks `1.2.3.4`, `10.0.0.0/8`, `::1`, `2001:db8::/32`.
pub(crate) fn check_network(item: &str) -> Result<(), String> {
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("`{item}` is not an IP address or network"))?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("`{item}` has an invalid prefix length")),
        }
    }
    Ok(())
}
