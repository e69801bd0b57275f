//! The variables of a transaction: what the request and response give (`Vars`, filled by
//! `load_request`) and how a variable with its selector resolves to values (`values`):
//! collections, scalars that are always present (empty when unset, as libmodsecurity3's
//! anchored variables), `MATCHED_VAR(S)`, `TX` and the other stores, multipart flags, XML, time.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::seclang::ast::Variable;

use super::super::body::{multipart, urlencoded, xml, Pair, Text};
use super::super::compile::{processor_for, Rule, Sel};
use super::super::operator::Decimal;
use super::super::request::Request;
use super::super::{text, transform};
use super::{Matched, MatchedRef, Seen, Transaction};

/// The variables taken from the request and response.
#[derive(Debug, Default)]
pub(super) struct Vars {
    pub(super) method: Vec<u8>,
    pub(super) uri_raw: Vec<u8>,
    pub(super) uri: Vec<u8>,
    pub(super) filename: Vec<u8>,
    pub(super) basename: Option<Vec<u8>>,
    pub(super) query: Vec<u8>,
    pub(super) protocol: Vec<u8>,
    pub(super) line: Vec<u8>,
    pub(super) headers: Vec<Pair>,
    pub(super) cookies: Vec<Pair>,
    pub(super) args_get: Vec<Pair>,
    pub(super) args_post: Vec<Pair>,
    pub(super) body: Option<Vec<u8>>,
    pub(super) body_length: usize,
    pub(super) files: Vec<multipart::FilePart>,
    pub(super) part_headers: Vec<Pair>,
    pub(super) multipart: Option<multipart::Flags>,
    pub(super) xml: Option<xml::Document>,
    pub(super) reqbody_error: Option<String>,
    pub(super) inbound_data_error: bool,
    pub(super) outbound_data_error: bool,
    /// Whether a JSON, XML or multipart processor ran (`REQBODY_ERROR` is then `0` or `1`;
    /// it is empty otherwise, as in libmodsecurity3).
    pub(super) reqbody_processed: bool,
    pub(super) urlencoded_error: bool,
    pub(super) remote_addr: Vec<u8>,
    pub(super) remote_port: Vec<u8>,
    pub(super) server_addr: Vec<u8>,
    pub(super) server_port: Vec<u8>,
    pub(super) server_name: Vec<u8>,
    pub(super) status: Option<u16>,
    pub(super) response_protocol: Vec<u8>,
    pub(super) response_headers: Vec<Pair>,
    pub(super) response_body: Option<Vec<u8>>,
}

/// A value of a target: which variable, which key, what value.
pub(super) struct Val<'a> {
    pub(super) var: Variable,
    pub(super) key: Option<Cow<'a, [u8]>>,
    pub(super) value: Cow<'a, [u8]>,
    /// The name and value as a match records them, when they are already built (`TX`).
    pub(super) shared: Option<MatchedRef<'a>>,
}

/// The values of a target: most targets have a few.
pub(super) type Vals<'a> = SmallVec<[Val<'a>; 8]>;

impl<'a> Val<'a> {
    pub(super) fn new(var: Variable, key: Option<Cow<'a, [u8]>>, value: Cow<'a, [u8]>) -> Self {
        Val { var, key, value, shared: None }
    }

    /// `VAR:key`, or `VAR` for a scalar (shared from this thread's [`SHARED`]): a member's
    /// name is its variable and key, written out when read.
    pub(super) fn name(&self) -> VarName {
        if let Some((name, _)) = self.shared {
            return VarName::Made(name.clone());
        }
        match &self.key {
            Some(k) => VarName::Member(self.var, Text::from_slice(k)),
            None => VarName::Made(SHARED.with(|s| s.names[self.var as usize].clone())),
        }
    }
}

/// The name of a matched variable. Most are never read (only `MATCHED_VAR_NAME`, `MATCHED_VARS`
/// and a logged match read them), so a collection member's is kept as its variable and key
/// and written out as `VAR:key` when read: 920450 matches every request header.
#[derive(Clone, Debug)]
pub(crate) enum VarName {
    /// Made already: a scalar's, a `TX` variable's, one the rule set keeps.
    Made(Arc<str>),
    /// A member of a collection, by its key.
    Member(Variable, Text),
}

impl VarName {
    /// `VAR:key` (a key that is not UTF-8 written lossily).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            VarName::Made(name) => Cow::Borrowed(name),
            // Pieces pushed, not `format!`: its machinery cost as much as the rest of a match.
            VarName::Member(var, key) => {
                let (var, key) = (var.name(), text(key));
                let mut name = String::with_capacity(var.len() + 1 + key.len());
                name.push_str(var);
                name.push(':');
                name.push_str(&key);
                Cow::Owned(name)
            }
        }
    }

    /// The name as a shared string.
    pub(crate) fn into_made(self) -> Arc<str> {
        match self {
            VarName::Made(name) => name,
            member => Arc::from(member.text().as_ref()),
        }
    }
}

/// What matches record again and again, built once per thread rather than per match.
struct Shared {
    /// Every variable's name, by variable.
    names: Box<[Arc<str>]>,
    /// The empty name and value of a `SecAction`'s match.
    blank: Matched,
}

thread_local! {
    /// Each thread's own copies: values the rule set held would be reference counts that
    /// every worker's core writes in turn.
    static SHARED: Shared = Shared {
        names: Variable::ALL.iter().map(|v| Arc::from(v.name())).collect(),
        blank: (Arc::from(""), Arc::from(&b""[..])),
    };
}

/// The match of a rule part without an operator (`SecAction`): empty name and value.
pub(super) fn blank() -> Matched {
    SHARED.with(|s| s.blank.clone())
}

/// `TX:key`, sharing the name and value the transaction keeps.
pub(super) fn tx_val<'a>(key: &'a str, m: MatchedRef<'a>) -> Val<'a> {
    let value = Cow::Borrowed(&m.1[..]);
    Val { var: Variable::Tx, key: Some(Cow::Borrowed(key.as_bytes())), value, shared: Some(m) }
}

pub(super) fn store_index(v: Variable) -> u8 {
    match v {
        Variable::Ip => 1,
        Variable::Global => 2,
        Variable::Session => 3,
        Variable::User => 4,
        _ => 5,
    }
}

impl Transaction<'_> {
    pub(super) fn load_request(&mut self, req: Request) {
        self.processor = req.header_value("content-type").and_then(processor_for);
        let v = &mut self.v;
        // The fragment (from the first `#` as sent) is not part of the path or the query; the
        // raw URI and the request line keep it, as in libmodsecurity3.
        let target = match req.uri.iter().position(|&b| b == b'#') {
            Some(f) => &req.uri[..f],
            None => &req.uri[..],
        };
        let decoded = uri_decode(target);
        let qpos_raw = target.iter().position(|&b| b == b'?');
        let qpos = decoded.iter().position(|&b| b == b'?');
        let path = match qpos {
            Some(p) => decoded[..p].to_vec(),
            None => decoded.clone(),
        };
        v.basename = path
            .iter()
            .rposition(|&b| b == b'/' || b == b'\\')
            .filter(|&p| p + 1 < path.len())
            .map(|p| path[p + 1..].to_vec());
        v.filename = path;
        v.uri = strip_authority(&decoded);
        v.query = qpos_raw.map(|p| target[p + 1..].to_vec()).unwrap_or_default();
        let mut line = Vec::with_capacity(req.method.len() + req.uri.len() + req.protocol.len() + 2);
        line.extend_from_slice(&req.method);
        line.push(b' ');
        line.extend_from_slice(&req.uri);
        line.push(b' ');
        line.extend_from_slice(&req.protocol);
        v.line = line;
        let (args, bad) = urlencoded::parse(&v.query, self.rules.settings.argument_separator);
        v.args_get = args;
        v.urlencoded_error |= bad;
        v.cookies.clear();
        for (k, val) in &req.headers {
            if k.eq_ignore_ascii_case(b"cookie") {
                parse_cookies(val, &mut v.cookies);
            }
            if k.eq_ignore_ascii_case(b"host") {
                v.server_name = val.split(|&b| b == b':').next().unwrap_or(b"").to_vec();
            }
        }
        v.remote_addr = ip_text(req.remote_addr);
        v.remote_port = Decimal::new(i64::from(req.remote_port)).as_bytes().to_vec();
        v.server_addr = ip_text(req.server_addr);
        v.server_port = Decimal::new(i64::from(req.server_port)).as_bytes().to_vec();
        v.method = req.method;
        v.uri_raw = req.uri;
        v.protocol = req.protocol;
        v.headers = req.headers;
    }
}

impl Vars {
    /// `FULL_REQUEST`: the request line, the headers and the body loaded so far. Built when a
    /// rule reads it (CRS never does), not for every request.
    fn full_request(&self) -> Vec<u8> {
        let mut full = self.line.clone();
        full.push(b'\n');
        for (k, val) in &self.headers {
            full.extend_from_slice(k);
            full.extend_from_slice(b": ");
            full.extend_from_slice(val);
            full.push(b'\n');
        }
        full.push(b'\n');
        full.extend_from_slice(self.body.as_deref().unwrap_or_default());
        full
    }

    /// The lists of a collection of request pairs, and whether the variable is their names
    /// (`ARGS_NAMES`) rather than their values: the collections evaluated most, which a rule
    /// part can read in place.
    pub(super) fn pair_lists(&self, var: Variable) -> Option<([&[Pair]; 2], bool)> {
        let v = self;
        let none: &[Pair] = &[];
        let (lists, names) = pairs_of(var)?;
        Some((
            match lists {
                PairLists::Args => [&v.args_get, &v.args_post],
                PairLists::ArgsGet => [&v.args_get, none],
                PairLists::ArgsPost => [&v.args_post, none],
                PairLists::Headers => [&v.headers, none],
                PairLists::Cookies => [&v.cookies, none],
            },
            names,
        ))
    }
}

/// Which lists of request pairs a collection reads (see [`Vars::pair_lists`]).
pub(crate) enum PairLists {
    Args,
    ArgsGet,
    ArgsPost,
    Headers,
    Cookies,
}

/// The lists of request pairs `var` reads, and whether it reads their names: `None` for the
/// variables that are not such a collection.
pub(crate) fn pairs_of(var: Variable) -> Option<(PairLists, bool)> {
    use Variable as V;
    Some(match var {
        V::Args => (PairLists::Args, false),
        V::ArgsNames => (PairLists::Args, true),
        V::ArgsGet => (PairLists::ArgsGet, false),
        V::ArgsGetNames => (PairLists::ArgsGet, true),
        V::ArgsPost => (PairLists::ArgsPost, false),
        V::ArgsPostNames => (PairLists::ArgsPost, true),
        V::RequestHeaders => (PairLists::Headers, false),
        V::RequestHeadersNames => (PairLists::Headers, true),
        V::RequestCookies => (PairLists::Cookies, false),
        V::RequestCookiesNames => (PairLists::Cookies, true),
        _ => return None,
    })
}

impl Transaction<'_> {
    /// The values of a variable (with its selector).
    pub(super) fn values<'a>(&'a self, var: Variable, sel: &Sel, rule: &Rule, out: &mut Vals<'a>) {
        use Variable as V;
        let v = &self.v;
        // A whole collection (a JSON body's ARGS) is reserved at once.
        let room = |list: &[Pair], out: &mut Vals<'a>| {
            if matches!(sel, Sel::All) {
                out.reserve(list.len());
            }
        };
        let pairs = |list: &'a [Pair], out: &mut Vals<'a>| {
            room(list, out);
            for (k, val) in list {
                if sel.matches(k) {
                    out.push(Val::new(var, Some(Cow::Borrowed(k)), Cow::Borrowed(val)));
                }
            }
        };
        let names = |list: &'a [Pair], out: &mut Vals<'a>| {
            room(list, out);
            for (k, _) in list {
                if sel.matches(k) {
                    out.push(Val::new(var, Some(Cow::Borrowed(k)), Cow::Borrowed(k)));
                }
            }
        };
        let scalar = |val: &'a [u8], out: &mut Vals<'a>| out.push(Val::new(var, None, Cow::Borrowed(val)));
        let owned = |val: Vec<u8>, out: &mut Vals<'a>| out.push(Val::new(var, None, Cow::Owned(val)));
        let flag =
            |b: bool, out: &mut Vals<'a>| out.push(Val::new(var, None, Cow::Borrowed(if b { b"1" } else { b"0" })));
        if let Some((lists, of_names)) = v.pair_lists(var) {
            for list in lists {
                if of_names {
                    names(list, out);
                } else {
                    pairs(list, out);
                }
            }
            return;
        }
        let mp = v.multipart.unwrap_or_default();
        match var {
            V::ArgsCombinedSize => {
                let n: usize = v.args_get.iter().chain(&v.args_post).map(|(k, x)| k.len() + x.len()).sum();
                owned(n.to_string().into_bytes(), out)
            }
            V::ResponseHeaders => pairs(&v.response_headers, out),
            V::ResponseHeadersNames => names(&v.response_headers, out),
            V::MultipartPartHeaders => pairs(&v.part_headers, out),
            V::Files | V::MultipartFilename => {
                for f in &v.files {
                    if sel.matches(&f.name) {
                        out.push(Val::new(var, Some(Cow::Borrowed(&f.name)), Cow::Borrowed(&f.filename)));
                    }
                }
            }
            V::FilesNames | V::MultipartName => {
                for f in &v.files {
                    if sel.matches(&f.name) {
                        out.push(Val::new(var, Some(Cow::Borrowed(&f.name)), Cow::Borrowed(&f.name)));
                    }
                }
            }
            V::FilesSizes => {
                for f in &v.files {
                    if sel.matches(&f.name) {
                        let size = f.content.len().to_string().into_bytes();
                        out.push(Val::new(var, Some(Cow::Borrowed(&f.name)), Cow::Owned(size)));
                    }
                }
            }
            V::FilesTmpContent => {
                for f in &v.files {
                    if sel.matches(&f.name) {
                        out.push(Val::new(var, Some(Cow::Borrowed(&f.name)), Cow::Borrowed(&f.content)));
                    }
                }
            }
            V::FilesCombinedSize => {
                owned(v.files.iter().map(|f| f.content.len()).sum::<usize>().to_string().into_bytes(), out)
            }
            V::Tx if matches!(sel, Sel::Key(_)) => {
                // A named TX variable: one lookup instead of a walk over the collection.
                if let Sel::Key(k) = sel {
                    if let Some((k, m)) = self.tx.get(k) {
                        out.push(tx_val(k, m));
                    }
                }
            }
            V::Tx => {
                // In key order, as libmodsecurity3 keeps the collection.
                let start = out.len();
                for (k, m) in self.tx.iter() {
                    if sel.matches(k.as_bytes()) {
                        out.push(tx_val(k, m));
                    }
                }
                out[start..].sort_unstable_by(|a, b| a.key.cmp(&b.key));
            }
            V::Ip | V::Global | V::Session | V::User | V::Resource => {
                let idx = store_index(var);
                for ((s, k), val) in &self.stores {
                    if *s == idx && sel.matches(k.as_bytes()) {
                        out.push(Val::new(var, Some(Cow::Borrowed(k.as_bytes())), Cow::Borrowed(val)));
                    }
                }
            }
            V::Env => {
                for (k, val) in &self.env {
                    if sel.matches(k.as_bytes()) {
                        out.push(Val::new(var, Some(Cow::Borrowed(k.as_bytes())), Cow::Borrowed(val)));
                    }
                }
            }
            V::MatchedVar => scalar(self.last_match().map_or(&[][..], |m| m.value()), out),
            V::MatchedVarName => {
                let name = self.last_match().map_or(Cow::Borrowed(&[][..]), Seen::name_bytes);
                out.push(Val::new(var, None, name));
            }
            V::MatchedVars | V::MatchedVarsNames => {
                for m in &self.matched_vars {
                    let key = m.name_bytes();
                    if !sel.matches(&key) {
                        continue;
                    }
                    let value = if var == V::MatchedVars { Cow::Borrowed(&m.value()[..]) } else { key.clone() };
                    out.push(Val::new(var, Some(key), value));
                }
            }
            V::Xml => {
                if let Some(doc) = &v.xml {
                    let key = |x: &str| Some(Cow::Owned(x.as_bytes().to_vec()));
                    match sel {
                        Sel::XPath(x) if x.contains('@') => {
                            for a in &doc.attributes {
                                out.push(Val::new(var, key(x), Cow::Borrowed(a)));
                            }
                        }
                        Sel::XPath(x) => out.push(Val::new(var, key(x), Cow::Borrowed(&doc.text))),
                        _ => scalar(&doc.text, out),
                    }
                }
            }
            V::QueryString => scalar(&v.query, out),
            V::RemoteAddr | V::RemoteHost => scalar(&v.remote_addr, out),
            V::RemotePort => scalar(&v.remote_port, out),
            V::ServerAddr => scalar(&v.server_addr, out),
            V::ServerPort => scalar(&v.server_port, out),
            V::ServerName => scalar(&v.server_name, out),
            V::ReqbodyProcessor => scalar(self.processor.map_or("", |p| p.name()).as_bytes(), out),
            V::ReqbodyError | V::ReqbodyProcessorError if v.reqbody_processed => flag(v.reqbody_error.is_some(), out),
            V::ReqbodyError | V::ReqbodyProcessorError => scalar(b"", out),
            V::ReqbodyErrorMsg | V::ReqbodyProcessorErrorMsg => {
                scalar(v.reqbody_error.as_deref().unwrap_or("").as_bytes(), out)
            }
            V::UrlencodedError => flag(v.urlencoded_error, out),
            V::RequestBasename => scalar(v.basename.as_deref().unwrap_or_default(), out),
            V::RequestBody => scalar(v.body.as_deref().unwrap_or_default(), out),
            V::RequestBodyLength => owned(v.body_length.to_string().into_bytes(), out),
            V::RequestFilename | V::PathInfo => scalar(&v.filename, out),
            V::RequestLine => scalar(&v.line, out),
            V::RequestMethod => scalar(&v.method, out),
            V::RequestProtocol => scalar(&v.protocol, out),
            V::RequestUri => scalar(&v.uri, out),
            V::RequestUriRaw => scalar(&v.uri_raw, out),
            V::FullRequest => owned(v.full_request(), out),
            V::FullRequestLength => owned(v.full_request().len().to_string().into_bytes(), out),
            V::ResponseBody => scalar(v.response_body.as_deref().unwrap_or_default(), out),
            V::ResponseStatus => {
                if let Some(s) = v.status {
                    owned(s.to_string().into_bytes(), out)
                }
            }
            V::ResponseProtocol => scalar(&v.response_protocol, out),
            V::ResponseContentType => {
                if let Some((_, ct)) = v.response_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
                {
                    scalar(ct, out)
                }
            }
            V::ResponseContentLength => {
                if let Some((_, cl)) =
                    v.response_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"content-length"))
                {
                    scalar(cl, out)
                }
            }
            V::StatusLine => {
                if let Some(s) = v.status {
                    let mut l = v.response_protocol.clone();
                    l.extend_from_slice(format!(" {s}").as_bytes());
                    owned(l, out)
                }
            }
            V::UniqueId => owned(transform::hex_encode(&self.unique_id.to_be_bytes()), out),
            V::HighestSeverity => {
                if let Some(h) = self.highest_severity {
                    owned(h.to_string().into_bytes(), out)
                }
            }
            V::Duration => scalar(b"0", out),
            V::InboundDataError => flag(v.inbound_data_error, out),
            V::OutboundDataError => flag(v.outbound_data_error, out),
            V::Time
            | V::TimeDay
            | V::TimeEpoch
            | V::TimeHour
            | V::TimeMin
            | V::TimeMon
            | V::TimeSec
            | V::TimeWday
            | V::TimeYear => owned(time_var(var, self.started), out),
            V::ModsecBuild => scalar(b"030009", out),
            V::AuthType => {
                if let Some((_, a)) = v.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"authorization")) {
                    owned(a.split(|&b| b == b' ').next().unwrap_or(b"").to_vec(), out)
                }
            }
            V::MultipartStrictError => flag(mp.strict_error(), out),
            V::MultipartBoundaryQuoted => flag(mp.boundary_quoted, out),
            V::MultipartBoundaryWhitespace => flag(mp.boundary_whitespace, out),
            V::MultipartDataBefore => flag(mp.data_before, out),
            V::MultipartDataAfter => flag(mp.data_after, out),
            V::MultipartHeaderFolding => flag(mp.header_folding, out),
            V::MultipartLfLine => flag(mp.lf_line, out),
            V::MultipartCrlfLfLines => flag(mp.crlf_lf_lines, out),
            V::MultipartMissingSemicolon | V::MultipartSemicolonMissing => flag(mp.missing_semicolon, out),
            V::MultipartInvalidQuoting => flag(mp.invalid_quoting, out),
            V::MultipartInvalidPart => flag(mp.invalid_part, out),
            V::MultipartInvalidHeaderFolding => flag(mp.invalid_header_folding, out),
            V::MultipartFileLimitExceeded => flag(mp.file_limit_exceeded, out),
            V::MultipartUnmatchedBoundary => flag(mp.unmatched_boundary, out),
            V::Rule => {
                let fields: [(&'static [u8], Option<Vec<u8>>); 5] = [
                    (b"id", Some(rule.id.to_string().into_bytes())),
                    (b"msg", rule.msg.as_ref().map(|m| m.to_string().into_bytes())),
                    (b"logdata", rule.logdata.as_ref().map(|m| m.to_string().into_bytes())),
                    (b"severity", rule.severity.map(|s| s.number().to_string().into_bytes())),
                    (b"phase", Some(rule.phase.number().to_string().into_bytes())),
                ];
                for (k, val) in fields {
                    if let Some(val) = val {
                        if sel.matches(k) {
                            out.push(Val::new(var, Some(Cow::Borrowed(k)), Cow::Owned(val)));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `TIME`, `TIME_EPOCH`, `TIME_YEAR`... of a Unix time, in UTC.
fn time_var(var: Variable, epoch: u64) -> Vec<u8> {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let (year, month, day) = crate::civil::date_from_days(days);
    let wday = (days + 4).rem_euclid(7);
    let text = match var {
        Variable::TimeEpoch => epoch.to_string(),
        Variable::TimeYear => year.to_string(),
        Variable::TimeMon => (month - 1).to_string(),
        Variable::TimeDay => format!("{day:02}"),
        Variable::TimeHour => format!("{h:02}"),
        Variable::TimeMin => format!("{m:02}"),
        Variable::TimeSec => format!("{s:02}"),
        Variable::TimeWday => wday.to_string(),
        _ => format!("{h:02}:{m:02}:{s:02}"),
    };
    text.into_bytes()
}

/// An address as text (IPv4 without the formatting machinery: two per request).
fn ip_text(ip: IpAddr) -> Vec<u8> {
    let IpAddr::V4(v4) = ip else { return ip.to_string().into_bytes() };
    let mut out = Vec::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(Decimal::new(i64::from(octet)).as_bytes());
    }
    out
}

/// libmodsecurity3's `uri_decode`: `%HH` only (no `+`), invalid escapes kept.
fn uri_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() && v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit() {
            let h = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(h(v[i + 1]) << 4 | h(v[i + 2]));
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

/// `REQUEST_URI` of an absolute-form target (`http://host/path`) is its path.
fn strip_authority(decoded: &[u8]) -> Vec<u8> {
    if decoded.first() == Some(&b'/') {
        return decoded.to_vec();
    }
    if let Some(p) = decoded.windows(3).position(|w| w == b"://") {
        let after = &decoded[p + 3..];
        return match after.iter().position(|&b| b == b'/') {
            Some(s) => after[s..].to_vec(),
            None => Vec::new(),
        };
    }
    decoded.to_vec()
}

/// `Cookie` header parsing as libmodsecurity3 does it: `;`-separated `name=value` pairs,
/// leading blanks dropped, values not decoded.
fn parse_cookies(v: &[u8], out: &mut Vec<Pair>) {
    let mut parts: Vec<&[u8]> = v.split(|&b| b == b';').collect();
    if let Some(last) = parts.last_mut() {
        while let Some((&b, rest)) = last.split_last() {
            if transform::is_space(b) {
                *last = rest;
            } else {
                break;
            }
        }
    }
    for c in parts {
        if c.is_empty() {
            continue;
        }
        let ws = c.iter().take_while(|&&b| transform::is_space(b)).count();
        let c = &c[ws..];
        let (k, val) = match c.iter().position(|&b| b == b'=') {
            Some(p) => (&c[..p], &c[p + 1..]),
            None => (c, &b""[..]),
        };
        if !k.is_empty() {
            out.push((Text::from_slice(k), Text::from_slice(val)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::ast::Variable;

    #[test]
    fn time_variables_in_utc() {
        let t = |v| String::from_utf8(time_var(v, 1_700_000_000)).unwrap_or_default();
        assert_eq!(t(Variable::Time), "22:13:20");
        assert_eq!(t(Variable::TimeYear), "2023");
        assert_eq!(t(Variable::TimeMon), "10");
        assert_eq!(t(Variable::TimeDay), "14");
        assert_eq!(t(Variable::TimeWday), "2");
        assert_eq!(t(Variable::TimeEpoch), "1700000000");
    }

    #[test]
    fn fragments_and_absolute_targets() {
        assert_eq!(strip_authority(b"http://h/p?q"), b"/p?q");
        assert_eq!(strip_authority(b"http://h"), b"");
        assert_eq!(uri_decode(b"/a%2fb%zz%4"), b"/a/b%zz%4");
        let mut c = Vec::new();
        parse_cookies(b" a=1; b = 2;;c; ", &mut c);
        let c: Vec<(&[u8], &[u8])> = c.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(c, [(&b"a"[..], &b"1"[..]), (b"b ", b" 2"), (b"c", b"")]);
    }
}
