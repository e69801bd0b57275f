//! `application/json` bodies, flattened into arguments the way libmodsecurity3 names them:
//! `{"a":{"b":"c"}}` gives `json.a.b = c`; array elements are `json.a.array_0`,
//! `json.a.array_1`, ... Strings are unescaped, numbers keep their text, `true`/`false` are
//! words and `null` is empty. Nesting deeper than the limit
//! (`SecRequestBodyJsonDepthLimit`) and malformed documents are errors.
//!
//! Every value's name repeats the whole path to it, so a long key or deep nesting over many
//! values would make the arguments far larger than the document (`{"<100 KiB key>":[0,0,...]}`
//! turned 256 KiB into 8 GiB). Their names may add up to [`NAME_BYTES_PER_BODY_BYTE`] times the
//! document's size (at least [`MIN_NAME_BUDGET`]); past that the document is an error, so memory
//! and the time rules spend on `ARGS_NAMES` stay linear in the body.

use std::ops::Range;

use super::super::operator::Decimal;
use super::{Pair, Text, TEXT_INLINE};

/// The deepest nesting parsed whatever the setting: the parser recurses, and a gateway thread's
/// stack must hold it.
pub const MAX_DEPTH: usize = 1000;

/// How many bytes of argument names one byte of document may produce. Ordinary documents stay
/// well below it (under 4 for a typical API payload, about 10 for GeoJSON-like arrays of
/// coordinate pairs).
pub const NAME_BYTES_PER_BODY_BYTE: usize = 16;

/// The name budget of a small document.
pub const MIN_NAME_BUDGET: usize = 1 << 20;

/// The most values room is made for before parsing.
const PRESIZED: usize = 512;

/// Room made for the current value's name before parsing: enough for ordinary documents,
/// which then never grow it.
const NAME_ROOM: usize = 256;

/// Room made for the steps to the current value (its nesting) before parsing.
const DEPTH_ROOM: usize = 32;

/// Parses `data`; `Err` holds the message for `REQBODY_ERROR_MSG`. Nesting deeper than
/// `depth_limit` (or [`MAX_DEPTH`]) is an error.
pub fn parse(data: &[u8], depth_limit: usize) -> Result<Vec<Pair>, String> {
    let depth_limit = depth_limit.min(MAX_DEPTH);
    // An empty body is no document and no error; blanks alone are an unfinished one (yajl).
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = Parser {
        s: data,
        i: 0,
        // Each value but the last ends at a comma: room for all those of an ordinary document
        // at once (a hostile one of commas must not reserve gigabytes before it fails).
        out: Vec::with_capacity((memchr::memchr_iter(b',', data).count() + 1).min(PRESIZED)),
        text: Vec::new(),
        depth_limit,
        name: Vec::with_capacity(NAME_ROOM),
        marks: Vec::with_capacity(DEPTH_ROOM),
        name_bytes: 0,
        name_limit: data.len().saturating_mul(NAME_BYTES_PER_BODY_BYTE).max(MIN_NAME_BUDGET),
        error: String::new(),
    };
    p.name.extend_from_slice(b"json");
    p.ws();
    if p.i >= p.s.len() {
        return Err("JSON parsing error: parse error: premature EOF\n".into());
    }
    if p.value(0).is_err() {
        return Err(p.error);
    }
    p.ws();
    if p.i < p.s.len() {
        return Err(format!("JSON parsing error: parse error: trailing garbage at offset {}", p.i));
    }
    Ok(p.out)
}

/// A parse that failed; the message is in [`Parser::error`]. Nothing but a byte travels back
/// up the recursion: a `String` in each `Result` was written to memory and read back at
/// every return of every value.
struct Failed;

/// `buf[start..start + len]` as a [`Text`]. When it is short and `buf` holds [`TEXT_INLINE`]
/// bytes from `start`, they are copied as one fixed-size block, and the length says how many
/// count: a few moves instead of a call to `memcpy`, twice per value.
#[inline(always)]
fn text_at(buf: &[u8], start: usize, len: usize) -> Text {
    if len <= TEXT_INLINE {
        if let Some(Ok(block)) = buf.get(start..start + TEXT_INLINE).map(<[u8; TEXT_INLINE]>::try_from) {
            return Text::from_buf_and_len(block, len);
        }
    }
    Text::from_slice(&buf[start..start + len])
}

/// The bytes that end a plain run of a string: the closing quote, an escape, a control
/// character (an error).
const STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        stops[c] = true;
        c += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// Where a value's bytes are: in the document, in [`Parser::text`] (a string with escapes), or
/// a word (`true`, `false`, and the empty value of `null`).
enum Value {
    Document(Range<usize>),
    Unescaped,
    Word(&'static [u8]),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    out: Vec<Pair>,
    /// The last string read that held escapes, unescaped.
    text: Vec<u8>,
    depth_limit: usize,
    /// The current value's name: `json`, then `.key` or `.array_N` for each step to it.
    name: Vec<u8>,
    /// Where each step's segment begins in `name`.
    marks: Vec<usize>,
    /// Bytes of names emitted so far, and how many are allowed.
    name_bytes: usize,
    name_limit: usize,
    /// Why the parse failed.
    error: String,
}

impl Parser<'_> {
    /// Skips blanks: one compare when there are none, as in most API payloads.
    #[inline(always)]
    fn ws(&mut self) {
        if self.s.get(self.i).is_some_and(|&c| c <= b' ') {
            self.blanks();
        }
    }

    fn blanks(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[cold]
    fn err<T>(&mut self, what: &str) -> Result<T, Failed> {
        self.fail(format!("JSON parsing error: parse error: {what} at offset {}", self.i))
    }

    #[cold]
    fn fail<T>(&mut self, message: String) -> Result<T, Failed> {
        self.error = message;
        Err(Failed)
    }

    fn emit(&mut self, value: Value) -> Result<(), Failed> {
        self.name_bytes += self.name.len();
        if self.name_bytes > self.name_limit {
            return self.err(&format!("argument names longer than {} bytes in all", self.name_limit));
        }
        let name = Text::from_slice(&self.name);
        let value = match value {
            Value::Document(at) => text_at(self.s, at.start, at.len()),
            Value::Unescaped => Text::from_slice(&self.text),
            Value::Word(w) => Text::from_slice(w),
        };
        self.out.push((name, value));
        Ok(())
    }

    /// Steps into a member by its key (where [`Parser::string`] read it, or `None`: in
    /// [`Parser::text`]): `.key`.
    fn push(&mut self, key: Option<Range<usize>>) {
        self.marks.push(self.name.len());
        self.name.push(b'.');
        match key {
            Some(raw) => self.name.extend_from_slice(&self.s[raw]),
            None => self.name.extend_from_slice(&self.text),
        }
    }

    fn pop(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.name.truncate(mark);
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Failed> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else { return self.err("unexpected end") };
        match c {
            b'{' | b'[' => {
                if depth >= self.depth_limit {
                    let message = format!("JSON depth limit of {} exceeded", self.depth_limit);
                    return self.fail(message);
                }
                self.i += 1;
                if c == b'{' {
                    self.object(depth + 1)
                } else {
                    self.array(depth + 1)
                }
            }
            b'"' => {
                let value = match self.string()? {
                    Some(raw) => Value::Document(raw),
                    None => Value::Unescaped,
                };
                self.emit(value)
            }
            b't' | b'f' | b'n' => {
                let (word, val): (&[u8], &'static [u8]) = match c {
                    b't' => (b"true", b"true"),
                    b'f' => (b"false", b"false"),
                    _ => (b"null", b""),
                };
                if !self.s[self.i..].starts_with(word) {
                    return self.err("invalid literal");
                }
                self.i += word.len();
                self.emit(Value::Word(val))
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len() && matches!(self.s[self.i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    self.i += 1;
                }
                self.emit(Value::Document(start..self.i))
            }
            _ => self.err("unexpected character"),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Failed> {
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return self.err("expected a key");
            }
            let key = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return self.err("expected `:`");
            }
            self.i += 1;
            self.push(key);
            let r = self.value(depth);
            self.pop();
            r?;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected `,` or `}`"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Failed> {
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        // `.array_` once; each element's index after it.
        self.marks.push(self.name.len());
        self.name.extend_from_slice(b".array_");
        let at = self.name.len();
        let mut n = 0usize;
        loop {
            self.name.truncate(at);
            match u8::try_from(n) {
                // Most arrays are short: their indexes without the number formatting.
                Ok(digit @ 0..10) => self.name.push(b'0' + digit),
                Ok(two @ 10..100) => self.name.extend_from_slice(&[b'0' + two / 10, b'0' + two % 10]),
                _ => self.name.extend_from_slice(Decimal::new(i64::try_from(n).unwrap_or(i64::MAX)).as_bytes()),
            }
            // A failed parse leaves the name as it is: nothing reads it after.
            self.value(depth)?;
            n += 1;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.pop();
                    return Ok(());
                }
                _ => return self.err("expected `,` or `]`"),
            }
        }
    }

    /// Reads the string at `i`: where it lies in the document when it holds no escape and no
    /// control character (most strings: found in one walk), else `None`, with the string
    /// unescaped in `text` (or the error).
    ///
    /// Inlined, with the rare unescaping apart: its result, returned through memory from a
    /// call, was read back before the writes had landed, a stall per string.
    #[inline(always)]
    fn string(&mut self) -> Result<Option<Range<usize>>, Failed> {
        let start = self.i + 1;
        let end = self.run_end(start);
        if self.s.get(end) == Some(&b'"') {
            self.i = end + 1;
            return Ok(Some(start..end));
        }
        self.escaped(start, end).map(|()| None)
    }

    /// [`Parser::string`] past the plain run `start..end`: the string unescaped into `text`.
    #[inline(never)]
    fn escaped(&mut self, start: usize, end: usize) -> Result<(), Failed> {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        text.extend_from_slice(&self.s[start..end]);
        self.i = end;
        let read = self.unescape(&mut text);
        self.text = text;
        read
    }

    /// Where the plain run from `from` ends: at the first of [`STOPS`], or the end. Eight
    /// bytes at a time: a walk byte by byte took a fifth of the parse.
    fn run_end(&self, from: usize) -> usize {
        const ONES: u64 = u64::from_le_bytes([1; 8]);
        const HIGH: u64 = ONES << 7;
        // The high bit of each byte below `n` (at most 128) of `w`. Past the first such byte
        // (in memory order) a borrow may mark others: only the lowest mark is exact.
        let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
        let rest = &self.s[from..];
        let mut chunks = rest.chunks_exact(8);
        for (k, chunk) in chunks.by_ref().enumerate() {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(chunk);
            let w = u64::from_le_bytes(bytes);
            let stops =
                below(w, 0x20) | below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1);
            if stops != 0 {
                return from + k * 8 + stops.trailing_zeros() as usize / 8;
            }
        }
        let tail = rest.len() - chunks.remainder().len();
        rest[tail..].iter().position(|&c| STOPS[usize::from(c)]).map_or(self.s.len(), |n| from + tail + n)
    }

    /// Unescapes the rest of a string into `out`, from a stop byte at `i` to the closing quote;
    /// the plain runs between escapes are copied at once.
    fn unescape(&mut self, out: &mut Vec<u8>) -> Result<(), Failed> {
        loop {
            let Some(&c) = self.s.get(self.i) else { return self.err("unterminated string") };
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return self.err("unterminated escape") };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("invalid escape"),
                    }
                }
                // The only other stop: a control character.
                _ => return self.err("control character in string"),
            }
            let end = self.run_end(self.i);
            out.extend_from_slice(&self.s[self.i..end]);
            self.i = end;
        }
    }

    fn hex4(&mut self) -> Result<u32, Failed> {
        let Some(h) = self.s.get(self.i..self.i + 4) else { return self.err("short \\u escape") };
        let Ok(t) = std::str::from_utf8(h) else { return self.err("bad \\u escape") };
        let Ok(n) = u32::from_str_radix(t, 16) else { return self.err("bad \\u escape") };
        self.i += 4;
        Ok(n)
    }
}
