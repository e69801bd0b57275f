//! The SecLang lexer: source text to logical lines to arguments, with byte-exact positions.
//!
//! Rules of the language as libmodsecurity3 and Apache read it:
//! - a backslash right before a line end joins the next physical line (the newline and the
//!   backslash vanish; the next line's indentation stays), also inside quotes and comments;
//! - a logical line whose first non-blank character is `#` is a comment;
//! - arguments are separated by blanks; an argument is double-quoted, single-quoted or bare;
//! - inside quotes, `\` before the quote character escapes it, and `\\` stays `\\` (so that
//!   regular expressions keep their backslashes); nothing else is an escape;
//! - a bare argument runs to the next blank, but a single-quoted part inside it (a variable key
//!   such as `ARGS:'a b'`, a value such as `msg:'x y'`) is kept whole, quotes included;
//! - a bare argument may not hold `"` nor end in a lone backslash (Barbican is stricter than
//!   libmodsecurity3 here, so that every parsed tree prints back to text that reads the same).
//!
//! Each [`Token`] keeps, for every byte of its (unescaped) text, the source offset it came from,
//! so the parser can report any sub-part of an argument at its exact line and column.

use super::ast::{Position, Span};
use super::error::ErrorKind;

/// Maps byte offsets of one source text to line and column positions.
#[derive(Debug)]
pub struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// The last (offset, column) computed, so that positions asked for in increasing order on
    /// one long line cost linear time in total rather than quadratic.
    last: std::cell::Cell<(usize, usize)>,
}

impl<'a> SourceMap<'a> {
    /// Indexes the line starts of `text`.
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        SourceMap { text, line_starts, last: std::cell::Cell::new((0, 1)) }
    }

    /// The position of byte `offset` (clamped to the text); columns count characters from 1.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let (last_offset, last_column) = self.last.get();
        let (from, base) =
            if last_offset >= start && last_offset <= offset { (last_offset, last_column) } else { (start, 1) };
        let counted = self.text.get(from..offset).map(|s| base + s.chars().count());
        let column = match counted.or_else(|| self.text.get(start..offset).map(|s| s.chars().count() + 1)) {
            Some(c) => {
                self.last.set((offset, c));
                c
            }
            None => offset - start + 1,
        };
        Position { offset, line, column }
    }

    /// The span between two byte offsets.
    pub fn span(&self, start: usize, end: usize) -> Span {
        Span { start: self.position(start), end: self.position(end.max(start)) }
    }
}

/// How an argument was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    /// Bare: up to the next blank.
    None,
    /// `"..."`.
    Double,
    /// `'...'`.
    Single,
}

/// One argument of a directive (the directive name is the first).
#[derive(Clone, Debug)]
pub struct Token {
    /// The text, quotes removed and escapes resolved.
    pub text: String,
    /// For each byte of `text`, the source offset it came from.
    pub offsets: Vec<usize>,
    /// How the argument was quoted.
    pub quote: Quote,
    /// Source offset of the first character (the opening quote, if any).
    pub start: usize,
    /// Source offset just past the last character (the closing quote, if any).
    pub end: usize,
}

/// A directive's logical line, split into arguments.
#[derive(Clone, Debug)]
pub struct Line {
    /// The arguments; the first is the directive name. Never empty.
    pub tokens: Vec<Token>,
    /// Source offset of the first character of the directive.
    pub start: usize,
    /// Source offset of the end of the logical line.
    pub end: usize,
}

/// A lexical error with the source offsets it covers.
#[derive(Clone, Debug)]
pub struct LexError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Source offset where it starts.
    pub start: usize,
    /// Source offset where it ends.
    pub end: usize,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// Splits `src` into logical lines of arguments, skipping blank lines and comments. A line with
/// a lexical error is reported and left out; the other lines are still returned.
pub fn lex(src: &str) -> (Vec<Line>, Vec<LexError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (text, offsets, end) in logical_lines(src) {
        match split(&text, &offsets, end) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    (lines, errors)
}

/// Joins continuation lines: yields each logical line's bytes, their source offsets and the
/// source offset of the line's end.
fn logical_lines(src: &str) -> Vec<(Vec<u8>, Vec<usize>, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let (mut text, mut offs) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if b.get(i + 1) == Some(&b'\n') => i += 2,
            // A backslash at the very end continues into nothing.
            b'\\' if i + 1 == b.len() || (i + 2 == b.len() && b[i + 1] == b'\r') => i = b.len(),
            b'\\' if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') => i += 3,
            b'\n' => {
                out.push((std::mem::take(&mut text), std::mem::take(&mut offs), i));
                i += 1;
            }
            c => {
                text.push(c);
                offs.push(i);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        out.push((text, offs, b.len()));
    }
    out
}

/// Splits one logical line into tokens; `Ok(None)` for blank and comment lines.
fn split(text: &[u8], offs: &[usize], line_end: usize) -> Result<Option<Line>, LexError> {
    let at = |i: usize| offs.get(i).copied().unwrap_or(line_end);
    let mut i = 0;
    while i < text.len() && is_blank(text[i]) {
        i += 1;
    }
    if i == text.len() || text[i] == b'#' {
        return Ok(None);
    }
    let start = at(i);
    let mut tokens = Vec::new();
    while i < text.len() {
        if is_blank(text[i]) {
            i += 1;
            continue;
        }
        let tok_start = i;
        let (mut bytes, mut map) = (Vec::new(), Vec::new());
        let quote = match text[i] {
            b'"' => Quote::Double,
            b'\'' => Quote::Single,
            _ => Quote::None,
        };
        if quote == Quote::None {
            while i < text.len() && !is_blank(text[i]) {
                if text[i] == b'\'' {
                    // A quoted part inside a bare argument is kept whole, quotes and all.
                    let open = i;
                    bytes.push(b'\'');
                    map.push(at(i));
                    i += 1;
                    let mut closed = false;
                    while i < text.len() {
                        let c = text[i];
                        bytes.push(c);
                        map.push(at(i));
                        i += 1;
                        if c == b'\\' && i < text.len() && (text[i] == b'\\' || text[i] == b'\'') {
                            bytes.push(text[i]);
                            map.push(at(i));
                            i += 1;
                        } else if c == b'\'' {
                            closed = true;
                            break;
                        }
                    }
                    if !closed {
                        return Err(LexError {
                            kind: ErrorKind::UnterminatedQuote('\''),
                            start: at(open),
                            end: at(open) + 1,
                        });
                    }
                } else {
                    if text[i] == b'"' {
                        return Err(LexError { kind: ErrorKind::QuoteInBareArgument, start: at(i), end: at(i) + 1 });
                    }
                    bytes.push(text[i]);
                    map.push(at(i));
                    i += 1;
                }
            }
            if ends_in_lone_backslash(std::str::from_utf8(&bytes).unwrap_or_default()) {
                return Err(LexError { kind: ErrorKind::TrailingBackslash, start: at(i - 1), end: at(i - 1) + 1 });
            }
        } else {
            let q = text[i];
            i += 1;
            let mut closed = false;
            while i < text.len() {
                let c = text[i];
                if c == b'\\' && text.get(i + 1) == Some(&b'\\') {
                    bytes.extend_from_slice(b"\\\\");
                    map.extend([at(i), at(i + 1)]);
                    i += 2;
                } else if c == b'\\' && text.get(i + 1) == Some(&q) {
                    bytes.push(q);
                    map.push(at(i + 1));
                    i += 2;
                } else if c == q {
                    i += 1;
                    closed = true;
                    break;
                } else {
                    bytes.push(c);
                    map.push(at(i));
                    i += 1;
                }
            }
            if !closed {
                let open = at(tok_start);
                return Err(LexError { kind: ErrorKind::UnterminatedQuote(q as char), start: open, end: open + 1 });
            }
            if i < text.len() && !is_blank(text[i]) {
                return Err(LexError { kind: ErrorKind::TextAfterQuote, start: at(i), end: at(i) + 1 });
            }
        }
        let end = if i > 0 { at(i - 1) + 1 } else { at(0) };
        // Only ASCII bytes were dropped, so the text stays UTF-8; lossy keeps this panic-free.
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        if text.len() != map.len() {
            map.resize(text.len(), end);
        }
        tokens.push(Token { text, offsets: map, quote, start: at(tok_start), end });
    }
    let end = tokens.last().map_or(start, |t| t.end);
    Ok(Some(Line { tokens, start, end }))
}

/// Whether `s` survives being written between `q` quotes with [`write_quoted`]: no run of
/// backslashes of odd length right before a `q` or at the end.
pub fn quotable(s: &str, q: char) -> bool {
    let mut run = 0usize;
    for c in s.chars() {
        if c == '\\' {
            run += 1;
            continue;
        }
        if c == q && run % 2 == 1 {
            return false;
        }
        run = 0;
    }
    run % 2 == 0
}

/// Whether `s` ends in an odd run of backslashes (one that would escape what follows).
pub fn ends_in_lone_backslash(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Whether `s` can be written as a bare argument: not empty, no blanks, no leading quote.
pub fn bare_ok(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(['"', '\'']) && !s.bytes().any(|b| is_blank(b) || b == b'\n')
}

/// Writes `s` between `q` quotes, escaping `q`; falls back to bare when the quoted form would
/// not read back as `s` (an odd run of backslashes before a quote or at the end).
pub fn write_quoted(out: &mut impl std::fmt::Write, s: &str, q: char) -> std::fmt::Result {
    if !quotable(s, q) && bare_ok(s) {
        return out.write_str(s);
    }
    out.write_char(q)?;
    for c in s.chars() {
        if c == q {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char(q)
}
