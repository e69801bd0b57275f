//! `multipart/form-data` bodies, parsed the way ModSecurity's multipart parser reads them:
//! the boundary comes from the `Content-Type` header, every part needs a
//! `Content-Disposition: form-data` with a `name` (and a `filename` for files), and every
//! irregularity that ModSecurity flags is flagged here too (`MULTIPART_*` variables, folded
//! into `MULTIPART_STRICT_ERROR`). Fatal problems (no boundary, no final boundary, a part
//! without a usable `Content-Disposition`) are errors for `REQBODY_ERROR`.
//!
//! Work stays linear in the body: each part's end is searched from the part's start only, and
//! `MULTIPART_PART_HEADERS`, which repeats the part's name for every header line, may hold at
//! most [`HEADER_NAME_BYTES_PER_BODY_BYTE`] times the body's size in names (at least
//! [`MIN_HEADER_NAME_BUDGET`]); past that the body is an error.

use super::{Pair, Text};

/// How many bytes of part names `MULTIPART_PART_HEADERS` may repeat per byte of body: a long
/// name followed by many short header lines must not turn 256 KiB into 200 MiB.
pub const HEADER_NAME_BYTES_PER_BODY_BYTE: usize = 16;

/// The part-header name budget of a small body.
pub const MIN_HEADER_NAME_BUDGET: usize = 1 << 20;

/// An uploaded file part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilePart {
    /// The form field name.
    pub name: Vec<u8>,
    /// The `filename` parameter.
    pub filename: Vec<u8>,
    /// The content.
    pub content: Vec<u8>,
}

/// The irregularities ModSecurity reports in `MULTIPART_*` variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `MULTIPART_BOUNDARY_QUOTED`.
    pub boundary_quoted: bool,
    /// `MULTIPART_BOUNDARY_WHITESPACE`.
    pub boundary_whitespace: bool,
    /// `MULTIPART_DATA_BEFORE`.
    pub data_before: bool,
    /// `MULTIPART_DATA_AFTER`.
    pub data_after: bool,
    /// `MULTIPART_HEADER_FOLDING`.
    pub header_folding: bool,
    /// `MULTIPART_LF_LINE`.
    pub lf_line: bool,
    /// `MULTIPART_CRLF_LF_LINES`.
    pub crlf_lf_lines: bool,
    /// `MULTIPART_MISSING_SEMICOLON`.
    pub missing_semicolon: bool,
    /// `MULTIPART_INVALID_QUOTING`.
    pub invalid_quoting: bool,
    /// `MULTIPART_INVALID_PART`.
    pub invalid_part: bool,
    /// `MULTIPART_INVALID_HEADER_FOLDING`.
    pub invalid_header_folding: bool,
    /// `MULTIPART_FILE_LIMIT_EXCEEDED`.
    pub file_limit_exceeded: bool,
    /// `MULTIPART_UNMATCHED_BOUNDARY`.
    pub unmatched_boundary: bool,
}

impl Flags {
    /// `MULTIPART_STRICT_ERROR`: any flag raised.
    pub fn strict_error(&self) -> bool {
        self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
            || self.unmatched_boundary
    }
}

/// A parsed multipart body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Fields that are not files: name and value.
    pub args: Vec<Pair>,
    /// File parts.
    pub files: Vec<FilePart>,
    /// Every header line of every part, keyed by the part's name.
    pub part_headers: Vec<Pair>,
    /// Irregularities.
    pub flags: Flags,
    /// A fatal error, for `REQBODY_ERROR_MSG`.
    pub error: Option<String>,
}

/// Reads the boundary out of a `Content-Type` value.
fn boundary(content_type: &[u8], flags: &mut Flags) -> Result<Vec<u8>, String> {
    // Case-sensitive, as ModSecurity's strstr.
    let Some(pos) = find(content_type, b"boundary") else { return Err("Multipart: Boundary not found in C-T".into()) };
    if find(&content_type[pos + 8..], b"boundary=").is_some() {
        return Err("Multipart: Multiple boundary parameters in C-T".into());
    }
    let mut i = pos + 8;
    while i < content_type.len() && matches!(content_type[i], b' ' | b'\t') {
        flags.boundary_whitespace = true;
        i += 1;
    }
    if content_type.get(i) != Some(&b'=') {
        return Err("Multipart: Invalid boundary in C-T (malformed)".into());
    }
    i += 1;
    while i < content_type.len() && matches!(content_type[i], b' ' | b'\t') {
        flags.boundary_whitespace = true;
        i += 1;
    }
    let mut b = &content_type[i..];
    if let Some(q @ (b'"' | b'\'')) = b.first().copied() {
        flags.boundary_quoted = true;
        let Some(end) = b[1..].iter().position(|&c| c == q) else {
            return Err("Multipart: Invalid boundary in C-T (quote)".into());
        };
        b = &b[1..1 + end];
    } else {
        let end = b.iter().position(|&c| c == b';' || c == b',').unwrap_or(b.len());
        b = &b[..end];
        while let Some((&last, rest)) = b.split_last() {
            if last == b' ' || last == b'\t' {
                flags.boundary_whitespace = true;
                b = rest;
            } else {
                break;
            }
        }
    }
    let valid = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if b.is_empty() || b.len() > 70 || !b.iter().all(|&c| valid(c)) {
        return Err("Multipart: Invalid boundary in C-T (characters)".into());
    }
    Ok(b.to_vec())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    h.windows(n.len()).position(|w| w == n)
}

/// Splits `s` at its first line end; returns the line, the rest and whether the end was a bare
/// LF. `None` when there is no line end.
fn line(s: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let p = s.iter().position(|&b| b == b'\n')?;
    if p > 0 && s[p - 1] == b'\r' {
        Some((&s[..p - 1], &s[p + 1..], false))
    } else {
        Some((&s[..p], &s[p + 1..], true))
    }
}

/// Parses a multipart body with the boundary named in `content_type`.
pub fn parse(content_type: &[u8], body: &[u8]) -> Multipart {
    let mut m = Multipart::default();
    let mut flags = Flags::default();
    match run(content_type, body, &mut m, &mut flags) {
        Ok(()) => {}
        Err(e) => m.error = Some(format!("Multipart parsing error: {e}")),
    }
    m.flags = flags;
    m
}

fn run(content_type: &[u8], body: &[u8], m: &mut Multipart, flags: &mut Flags) -> Result<(), String> {
    let b = boundary(content_type, flags)?;
    let mut marker = b"--".to_vec();
    marker.extend_from_slice(&b);
    // The first boundary: at the start or at the start of a line.
    let first = if body.starts_with(&marker) {
        0
    } else {
        let mut nl = marker.clone();
        nl.insert(0, b'\n');
        match find(body, &nl) {
            Some(p) => p + 1,
            None => return Err("Multipart: Boundary not found in the body".into()),
        }
    };
    if body[..first].iter().any(|b| !b.is_ascii_whitespace()) {
        flags.data_before = true;
    }
    let mut rest = &body[first + marker.len()..];
    let mut name_budget = body.len().saturating_mul(HEADER_NAME_BYTES_PER_BODY_BYTE).max(MIN_HEADER_NAME_BUDGET);
    let mut saw_crlf = false;
    let mut saw_lf = false;
    loop {
        // After a boundary: `--` for the last one, else the end of the line.
        if rest.starts_with(b"--") {
            let after = &rest[2..];
            if after.iter().any(|b| !b.is_ascii_whitespace()) {
                flags.data_after = true;
            }
            break;
        }
        let Some((tail, next, lf)) = line(rest) else {
            return Err("Multipart: Final boundary missing".into());
        };
        if tail.iter().any(|&c| c != b' ' && c != b'\t') {
            flags.invalid_part = true;
        }
        note_line_end(lf, &mut saw_crlf, &mut saw_lf);
        rest = next;
        // Headers.
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let Some((l, next, lf)) = line(rest) else {
                return Err("Multipart: Final boundary missing".into());
            };
            note_line_end(lf, &mut saw_crlf, &mut saw_lf);
            rest = next;
            if l.is_empty() {
                break;
            }
            if matches!(l[0], b' ' | b'\t') {
                flags.header_folding = true;
                match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(b' ');
                        v.extend_from_slice(trim(l));
                    }
                    None => flags.invalid_header_folding = true,
                }
                continue;
            }
            let Some(colon) = l.iter().position(|&c| c == b':') else {
                return Err("Multipart: Invalid part header (colon missing)".into());
            };
            headers.push((trim(&l[..colon]).to_vec(), trim(&l[colon + 1..]).to_vec()));
        }
        // Content: up to the next boundary line. The first `\r\n--boundary` is the first
        // `\n--boundary` with a CR before it: one search, which stops at the part's end (a
        // search for a CRLF marker that a LF-only body never has would read to the end of the
        // body for every part).
        let mut lf_marker = b"\n".to_vec();
        lf_marker.extend_from_slice(&marker);
        let (content, after) = match find(rest, &lf_marker) {
            Some(l) if l > 0 && rest[l - 1] == b'\r' => (&rest[..l - 1], &rest[l + lf_marker.len()..]),
            Some(l) => {
                note_line_end(true, &mut saw_crlf, &mut saw_lf);
                (&rest[..l], &rest[l + lf_marker.len()..])
            }
            None => {
                flags.unmatched_boundary = true;
                return Err("Multipart: Final boundary missing".into());
            }
        };
        if content.windows(marker.len() + 2).any(|w| w[..2] == *b"\r\n" && w[2..] == marker[..]) {
            flags.unmatched_boundary = true;
        }
        add_part(m, flags, headers, content, &mut name_budget)?;
        rest = after;
    }
    flags.lf_line = saw_lf && !saw_crlf;
    flags.crlf_lf_lines = saw_lf && saw_crlf;
    Ok(())
}

fn note_line_end(lf: bool, saw_crlf: &mut bool, saw_lf: &mut bool) {
    if lf {
        *saw_lf = true;
    } else {
        *saw_crlf = true;
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(s, |p| p + 1);
    &v[s..e]
}

fn add_part(
    m: &mut Multipart,
    flags: &mut Flags,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    content: &[u8],
    name_budget: &mut usize,
) -> Result<(), String> {
    let Some((_, cd)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"content-disposition")) else {
        return Err("Multipart: Part missing Content-Disposition header".into());
    };
    let (name, filename) = content_disposition(cd, flags)?;
    let name = name.unwrap_or_default();
    if name.is_empty() {
        // libmodsecurity3 3.0.9 gives up on a part named "" with this very message.
        return Err("Multipart: Final boundary missing.".into());
    }
    let repeated = name.len().saturating_mul(headers.len());
    *name_budget = name_budget
        .checked_sub(repeated)
        .ok_or_else(|| String::from("Multipart: Part headers repeat part names over the size limit"))?;
    for (k, v) in &headers {
        let mut l = Text::from_slice(k);
        l.extend_from_slice(b": ");
        l.extend_from_slice(v);
        m.part_headers.push((Text::from_slice(&name), l));
    }
    match filename {
        Some(f) => m.files.push(FilePart { name, filename: f, content: content.to_vec() }),
        None => m.args.push((Text::from_vec(name), Text::from_slice(content))),
    }
    Ok(())
}

/// Reads `form-data; name="x"; filename="y"`.
/// The `name` and `filename` parameters of a part.
type NameAndFile = (Option<Vec<u8>>, Option<Vec<u8>>);

fn content_disposition(cd: &[u8], flags: &mut Flags) -> Result<NameAndFile, String> {
    let lower = cd.to_ascii_lowercase();
    if !lower.starts_with(b"form-data") {
        return Err("Multipart: Invalid Content-Disposition header (not form-data)".into());
    }
    let mut i = 9;
    let mut name = None;
    let mut filename = None;
    loop {
        while i < cd.len() && matches!(cd[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= cd.len() {
            break;
        }
        if cd[i] == b';' {
            i += 1;
        } else {
            flags.missing_semicolon = true;
        }
        while i < cd.len() && matches!(cd[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= cd.len() {
            break;
        }
        let Some(eq) = cd[i..].iter().position(|&c| c == b'=') else {
            return Err("Multipart: Invalid Content-Disposition header (parameter without value)".into());
        };
        let pname = trim(&cd[i..i + eq]).to_ascii_lowercase();
        i += eq + 1;
        while i < cd.len() && matches!(cd[i], b' ' | b'\t') {
            i += 1;
        }
        let mut value = Vec::new();
        if cd.get(i) == Some(&b'"') {
            i += 1;
            let mut closed = false;
            while i < cd.len() {
                match cd[i] {
                    b'\\' if matches!(cd.get(i + 1), Some(b'"' | b'\\')) => {
                        value.push(cd[i + 1]);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err("Multipart: Invalid Content-Disposition header (unterminated quote)".into());
            }
        } else {
            while i < cd.len() && !matches!(cd[i], b';' | b' ' | b'\t') {
                if matches!(cd[i], b'"' | b'\'' | b'\\') {
                    flags.invalid_quoting = true;
                }
                value.push(cd[i]);
                i += 1;
            }
            if value.first() == Some(&b'\'') {
                flags.invalid_quoting = true;
            }
        }
        match pname.as_slice() {
            b"name" => {
                if name.replace(value).is_some() {
                    return Err("Multipart: Duplicate Content-Disposition name".into());
                }
            }
            b"filename" => {
                if filename.replace(value).is_some() {
                    return Err("Multipart: Duplicate Content-Disposition filename".into());
                }
            }
            b"filename*" => {
                // RFC 5987 form: ModSecurity refuses it.
                return Err("Multipart: Invalid Content-Disposition header (filename*)".into());
            }
            _ => flags.invalid_part = true,
        }
    }
    if name.is_none() {
        return Err("Multipart: Content-Disposition header without name".into());
    }
    Ok((name, filename))
}
