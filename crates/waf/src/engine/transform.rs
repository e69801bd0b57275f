//! Transformations (`t:`), byte for byte as libmodsecurity3 performs them.
//!
//! Each function takes the value and returns the transformed bytes; [`apply`] dispatches on
//! the AST's [`Transformation`]. A transformation never fails: malformed escapes are kept as
//! they are, the way ModSecurity keeps them. `md5` is the one transformation this engine does
//! not implement (no rule set in use needs it); [`supported`] says so and the compiler refuses
//! rules that ask for it.

use sha1::{Digest, Sha1};

use crate::seclang::ast::Transformation;

/// Whether the engine implements a transformation.
pub fn supported(t: Transformation) -> bool {
    !matches!(t, Transformation::Md5)
}

/// Applies one transformation.
pub fn apply(t: Transformation, v: &[u8]) -> Vec<u8> {
    use Transformation as T;
    match t {
        T::Base64Decode => base64_decode(v, false),
        T::Base64DecodeExt => base64_decode(v, true),
        T::Base64Encode => base64_encode(v),
        T::CmdLine => cmd_line(v),
        T::CompressWhitespace => compress_whitespace(v),
        T::CssDecode => css_decode(v),
        T::EscapeSeqDecode => escape_seq_decode(v),
        T::HexDecode => hex_decode(v),
        T::HexEncode => hex_encode(v),
        T::HtmlEntityDecode => html_entity_decode(v),
        T::JsDecode => js_decode(v),
        T::Length => v.len().to_string().into_bytes(),
        T::Lowercase => v.to_ascii_lowercase(),
        T::Uppercase => v.to_ascii_uppercase(),
        T::None | T::Md5 => v.to_vec(),
        T::NormalizePath => normalize_path(v, false),
        T::NormalizePathWin => normalize_path(v, true),
        T::ParityEven7bit => v.iter().map(|&b| parity(b, true)).collect(),
        T::ParityOdd7bit => v.iter().map(|&b| parity(b, false)).collect(),
        T::ParityZero7bit => v.iter().map(|&b| b & 0x7f).collect(),
        T::RemoveComments => remove_comments(v),
        T::RemoveCommentsChar => remove_comments_char(v),
        T::RemoveNulls => v.iter().copied().filter(|&b| b != 0).collect(),
        T::RemoveWhitespace => v.iter().copied().filter(|&b| !is_space(b) && b != 0xa0).collect(),
        T::ReplaceComments => replace_comments(v),
        T::ReplaceNulls => v.iter().map(|&b| if b == 0 { b' ' } else { b }).collect(),
        T::Sha1 => Sha1::digest(v).to_vec(),
        T::SqlHexDecode => sql_hex_decode(v),
        T::Trim => trim(v, true, true),
        T::TrimLeft => trim(v, true, false),
        T::TrimRight => trim(v, false, true),
        T::UrlDecode => url_decode(v),
        T::UrlDecodeUni => url_decode_uni(v),
        T::UrlEncode => url_encode(v),
        T::Utf8ToUnicode => utf8_to_unicode(v),
    }
}

/// Applies a chain of transformations, skipping the steps that cannot change the value
/// (`features`: those of `v`, which callers have at hand).
pub fn apply_chain<'v>(steps: &[Transformation], v: &'v [u8], features: Features) -> std::borrow::Cow<'v, [u8]> {
    let mut cur = std::borrow::Cow::Borrowed(v);
    let mut features = features;
    for (i, &t) in steps.iter().enumerate() {
        if !features.unchanged(t) {
            cur = std::borrow::Cow::Owned(apply(t, &cur));
            // The new value's features, for the steps after this one (a scan of the value).
            if i + 1 < steps.len() {
                features = Features::of(&cur);
            }
        }
    }
    cur
}

/// What a `multiMatch` rule checks: the value, then the value after each step that changed
/// it.
pub fn variants<'v>(steps: &[Transformation], v: &'v [u8]) -> smallvec::SmallVec<[std::borrow::Cow<'v, [u8]>; 4]> {
    let mut out = smallvec::SmallVec::new();
    out.push(std::borrow::Cow::Borrowed(v));
    let mut features = Features::of(v);
    for (i, &t) in steps.iter().enumerate() {
        if features.unchanged(t) {
            continue;
        }
        let cur: &[u8] = out.last().map_or(v, |c: &std::borrow::Cow<'v, [u8]>| c.as_ref());
        let next = apply(t, cur);
        if next != cur {
            if i + 1 < steps.len() {
                features = Features::of(&next);
            }
            out.push(std::borrow::Cow::Owned(next));
        }
    }
    out
}

/// Which bytes a value holds, as far as the transformations that usually leave a value
/// unchanged care: computed in one pass, it tells for each step of a chain whether the step
/// can change the value ([`Features::unchanged`]).
#[derive(Clone, Copy, Debug)]
pub struct Features(u32);

/// Whether `b` comes twice in a row in `v`. A `memmem` search first builds a searcher, which
/// on the short values most requests hold costs more than walking them.
fn doubled(v: &[u8], b: u8) -> bool {
    match v.len() {
        0..64 => v.windows(2).any(|w| w == [b, b]),
        _ => memchr::memmem::find(v, &[b, b]).is_some(),
    }
}

impl Features {
    const PERCENT_PLUS: u32 = 1;
    const AMPERSAND: u32 = 1 << 1;
    const BACKSLASH: u32 = 1 << 2;
    const UPPER: u32 = 1 << 3;
    const LOWER: u32 = 1 << 4;
    const NUL: u32 = 1 << 5;
    const NON_ASCII: u32 = 1 << 6;
    /// Whitespace other than a plain space, or 0xa0.
    const ODD_SPACE: u32 = 1 << 7;
    const SPACE: u32 = 1 << 8;
    const DOUBLE_SPACE: u32 = 1 << 9;
    const LEADING_SPACE: u32 = 1 << 10;
    const TRAILING_SPACE: u32 = 1 << 11;
    const SLASH: u32 = 1 << 12;
    /// `*` and `#`: comment syntax.
    const COMMENT: u32 = 1 << 13;
    const DOUBLE_DASH: u32 = 1 << 14;
    /// `"`, `'`, `^`, `,`, `;`: what `cmdLine` drops or turns into a space.
    const SHELL: u32 = 1 << 15;
    /// The value is `.` or `..`.
    const DOTS: u32 = 1 << 16;

    /// A single `-` (what `DOUBLE_DASH` looks for).
    const DASH: u32 = 1 << 17;

    /// The class bits of each byte.
    const CLASS: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = match c {
                b'-' => Self::DASH,
                b'/' => Self::SLASH,
                b'*' | b'#' => Self::COMMENT,
                b'"' | b'\'' | b'^' | b',' | b';' => Self::SHELL,
                b'%' | b'+' => Self::PERCENT_PLUS,
                b'&' => Self::AMPERSAND,
                b'\\' => Self::BACKSLASH,
                b'A'..=b'Z' => Self::UPPER,
                b'a'..=b'z' => Self::LOWER,
                0 => Self::NUL,
                b' ' => Self::SPACE,
                0xa0 => Self::ODD_SPACE | Self::NON_ASCII,
                0x80.. => Self::NON_ASCII,
                b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => Self::ODD_SPACE,
                _ => 0,
            };
            b += 1;
        }
        t
    };

    /// Scans a value.
    pub fn of(v: &[u8]) -> Features {
        // Four bytes at a time into four accumulators, so that the lookups do not wait on
        // one another.
        let mut acc = [0u32; 4];
        let mut quads = v.chunks_exact(4);
        for q in &mut quads {
            for (a, &b) in acc.iter_mut().zip(q) {
                *a |= Self::CLASS[usize::from(b)];
            }
        }
        let rest = quads.remainder().iter().fold(0, |f, &b| f | Self::CLASS[usize::from(b)]);
        let mut f = acc.iter().fold(rest, |f, a| f | a);
        if f & Self::SPACE != 0 && doubled(v, b' ') {
            f |= Self::DOUBLE_SPACE;
        }
        if f & Self::DASH != 0 && doubled(v, b'-') {
            f |= Self::DOUBLE_DASH;
        }
        if v == b"." || v == b".." {
            f |= Self::DOTS;
        }
        if v.first().is_some_and(|&b| is_space(b)) {
            f |= Self::LEADING_SPACE;
        }
        if v.last().is_some_and(|&b| is_space(b)) {
            f |= Self::TRAILING_SPACE;
        }
        Features(f)
    }

    /// The bits, as a key: values with the same features take the same steps.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Where in `steps` the first that may change the value is (`steps.len()`: none): a chain
    /// gives the same result as its rest from there.
    pub fn first_change(self, steps: &[Transformation]) -> usize {
        steps.iter().position(|&t| !self.unchanged(t)).unwrap_or(steps.len())
    }

    /// Whether `apply(t, v)` certainly returns `v` unchanged. `false` means "maybe changed":
    /// the caller applies it.
    pub fn unchanged(self, t: Transformation) -> bool {
        use Transformation as T;
        let none = |bits: u32| self.0 & bits == 0;
        match t {
            T::None => true,
            T::UrlDecode | T::UrlDecodeUni => none(Self::PERCENT_PLUS),
            T::HtmlEntityDecode => none(Self::AMPERSAND),
            T::JsDecode | T::CssDecode | T::EscapeSeqDecode => none(Self::BACKSLASH),
            T::Lowercase => none(Self::UPPER),
            T::Uppercase => none(Self::LOWER),
            T::RemoveNulls | T::ReplaceNulls => none(Self::NUL),
            T::Utf8ToUnicode => none(Self::NON_ASCII),
            T::RemoveWhitespace => none(Self::SPACE | Self::ODD_SPACE),
            T::CompressWhitespace => none(Self::ODD_SPACE | Self::DOUBLE_SPACE),
            T::Trim => none(Self::LEADING_SPACE | Self::TRAILING_SPACE),
            T::TrimLeft => none(Self::LEADING_SPACE),
            T::TrimRight => none(Self::TRAILING_SPACE),
            T::NormalizePath => none(Self::SLASH | Self::DOTS),
            T::NormalizePathWin => none(Self::SLASH | Self::BACKSLASH | Self::DOTS),
            T::ReplaceComments => none(Self::COMMENT),
            T::RemoveComments | T::RemoveCommentsChar => none(Self::COMMENT | Self::DOUBLE_DASH),
            T::CmdLine => none(Self::SHELL | Self::BACKSLASH | Self::UPPER | Self::SPACE | Self::ODD_SPACE),
            _ => false,
        }
    }
}

/// C `isspace` in the "C" locale.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parity(b: u8, even: bool) -> u8 {
    let c = b & 0x7f;
    let ones = c.count_ones();
    let set = if even { ones % 2 == 1 } else { ones % 2 == 0 };
    if set {
        c | 0x80
    } else {
        c
    }
}

fn trim(v: &[u8], left: bool, right: bool) -> Vec<u8> {
    let mut s = 0;
    let mut e = v.len();
    if left {
        while s < e && is_space(v[s]) {
            s += 1;
        }
    }
    if right {
        while e > s && is_space(v[e - 1]) {
            e -= 1;
        }
    }
    v[s..e].to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_val(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Base64 decoding. Strict mode (`base64Decode`, mbedtls as libmodsecurity3 calls it) gives
/// nothing for input with a character outside the alphabet; forgiving mode
/// (`base64DecodeExt`) skips such characters.
pub fn base64_decode(v: &[u8], forgiving: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for &b in v {
        if b == b'=' {
            padding = true;
            continue;
        }
        if matches!(b, b'\r' | b'\n' | b' ') && !forgiving {
            continue;
        }
        let Some(x) = b64_val(b) else {
            if forgiving {
                continue;
            }
            return Vec::new();
        };
        if padding && !forgiving {
            return Vec::new();
        }
        acc = (acc << 6) | u32::from(x);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn base64_encode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len().div_ceil(3) * 4);
    for chunk in v.chunks(3) {
        let n = chunk.len();
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let x = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(x >> 18) as usize & 63]);
        out.push(B64[(x >> 12) as usize & 63]);
        out.push(if n > 1 { B64[(x >> 6) as usize & 63] } else { b'=' });
        out.push(if n > 2 { B64[x as usize & 63] } else { b'=' });
    }
    out
}

/// `cmdLine`: deletes `\ " ' ^`, turns `, ;` and whitespace runs into one space, drops a space
/// before `/` or `(`, lowercases.
pub fn cmd_line(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut space = false;
    for &a in v {
        match a {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(a);
            }
            _ => {
                out.push(a.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

fn compress_whitespace(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut in_ws = false;
    for &b in v {
        if is_space(b) || b == 0xa0 {
            if !in_ws {
                out.push(b' ');
                in_ws = true;
            }
        } else {
            out.push(b);
            in_ws = false;
        }
    }
    out
}

/// `cssDecode` (CSS 2.1 escapes: `\` followed by 1-6 hex digits and an optional space, or by any
/// other character, which stands for itself).
pub fn css_decode(v: &[u8]) -> Vec<u8> {
    // A lone backslash at the end is dropped.
    unescape(v, false, |e| {
        let digits = e[1..].iter().take(6).take_while(|&&b| hex_val(b).is_some()).count();
        if digits == 0 {
            // An escaped newline is removed; any other character stands for itself.
            return ((e[1] != b'\n').then_some(e[1]), 2);
        }
        let d = &e[1..1 + digits];
        let byte = match digits {
            1 => hex_val(d[0]).unwrap_or(0),
            4 => fold_full_width(two_hex(&d[..2]), two_hex(&d[2..])),
            _ => two_hex(&d[digits - 2..]),
        };
        // One whitespace after the digits ends the escape.
        let space = e.get(1 + digits).is_some_and(|&b| is_space(b));
        (Some(byte), 1 + digits + usize::from(space))
    })
}

/// The byte two hex digits spell.
pub(crate) fn two_hex(d: &[u8]) -> u8 {
    (hex_val(d[0]).unwrap_or(0) << 4) | hex_val(d[1]).unwrap_or(0)
}

/// The byte a `\uHHHH`-style escape decodes to, as libmodsecurity3 does: full-width ASCII
/// (U+FF01..U+FF5E) folds to ASCII, anything else keeps its low byte.
pub(crate) fn fold_full_width(hi: u8, lo: u8) -> u8 {
    if hi == 0xff && lo > 0x00 && lo < 0x5f {
        lo + 0x20
    } else {
        lo
    }
}

/// The backslash-escape decoders' common walk: bytes are copied, and at each `\` followed by
/// at least one byte, `escape` gets the input from the backslash on and returns the byte the
/// escape stands for (`None`: nothing) and how many bytes it spans. A `\` at the very end is
/// kept when `keep_trailing`.
fn unescape(v: &[u8], keep_trailing: bool, mut escape: impl FnMut(&[u8]) -> (Option<u8>, usize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 == v.len() {
            if v[i] != b'\\' || keep_trailing {
                out.push(v[i]);
            }
            i += 1;
            continue;
        }
        let (byte, len) = escape(&v[i..]);
        out.extend(byte);
        i += len;
    }
    out
}

fn escape_seq_decode(v: &[u8]) -> Vec<u8> {
    unescape(v, true, c_escape)
}

/// A C escape at the start of `e` (which begins with `\` and has a byte after it): `\xHH`,
/// octal, `\n` and the other letters; any other character stands for itself.
fn c_escape(e: &[u8]) -> (Option<u8>, usize) {
    if let Some((byte, len)) = hex_or_octal_escape(e, 0) {
        return (Some(byte), len);
    }
    let byte = match e[1] {
        b'a' => 7,
        b'b' => 8,
        b'f' => 12,
        b'n' => 10,
        b'r' => 13,
        b't' => 9,
        b'v' => 11,
        other => other,
    };
    (Some(byte), 2)
}

fn hex_decode(v: &[u8]) -> Vec<u8> {
    v.chunks(2).filter(|c| c.len() == 2).map(two_hex).collect()
}

pub(crate) fn hex_encode(v: &[u8]) -> Vec<u8> {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(v.len() * 2);
    for &b in v {
        out.push(H[usize::from(b >> 4)]);
        out.push(H[usize::from(b & 15)]);
    }
    out
}

/// `htmlEntityDecode`: `&#DDD;`, `&#xHH;` and `&quot; &amp; &lt; &gt; &nbsp;` (the `;` is
/// optional); a numeric entity keeps only its low byte.
pub fn html_entity_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'&' || i + 1 >= v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        if v[i + 1] == b'#' {
            let (hex, start) = match v.get(i + 2) {
                Some(b'x' | b'X') => (true, i + 3),
                _ => (false, i + 2),
            };
            let mut j = start;
            let mut n: u32 = 0;
            while j < v.len() {
                let d = if hex { hex_val(v[j]) } else { v[j].is_ascii_digit().then(|| v[j] - b'0') };
                let Some(d) = d else { break };
                n = n.saturating_mul(if hex { 16 } else { 10 }).saturating_add(u32::from(d));
                j += 1;
            }
            if j > start {
                out.push(n as u8);
                if v.get(j) == Some(&b';') {
                    j += 1;
                }
                i = j;
                continue;
            }
            out.push(v[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < v.len() && v[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let name = v[i + 1..j].to_ascii_lowercase();
        let rep = match name.as_slice() {
            b"quot" => Some(b'"'),
            b"amp" => Some(b'&'),
            b"lt" => Some(b'<'),
            b"gt" => Some(b'>'),
            b"nbsp" => Some(0xa0),
            _ => None,
        };
        match rep {
            Some(b) => {
                out.push(b);
                if v.get(j) == Some(&b';') {
                    j += 1;
                }
                i = j;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    out
}

/// `jsDecode`: `\uHHHH` (full-width ASCII folded to ASCII, otherwise the low byte), `\xHH`,
/// octal `\OOO`, the C escapes, and `\c` for any other `c`.
pub fn js_decode(v: &[u8]) -> Vec<u8> {
    unescape(v, true, |e| match e.get(2..6) {
        Some(d) if e[1] == b'u' && d.iter().all(|&b| hex_val(b).is_some()) => {
            (Some(fold_full_width(two_hex(&d[..2]), two_hex(&d[2..]))), 6)
        }
        _ => c_escape(e),
    })
}

/// `normalizePath` / `normalizePathWin`: removes `.` segments, resolves `..` and collapses
/// repeated slashes; the Windows form first turns `\` into `/`.
pub fn normalize_path(v: &[u8], win: bool) -> Vec<u8> {
    if v.is_empty() {
        return Vec::new();
    }
    let src: Vec<u8> = if win { v.iter().map(|&b| if b == b'\\' { b'/' } else { b }).collect() } else { v.to_vec() };
    let absolute = src.first() == Some(&b'/');
    let trailing =
        src.last() == Some(&b'/') || src.ends_with(b"/.") || src.ends_with(b"/..") || src == b"." || src == b"..";
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut leading_dotdot = 0usize;
    for seg in src.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() && !absolute {
                    leading_dotdot += 1;
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    let mut first = true;
    for _ in 0..leading_dotdot {
        if !first {
            out.push(b'/');
        }
        out.extend_from_slice(b"..");
        first = false;
    }
    for s in segs {
        if !first {
            out.push(b'/');
        }
        out.extend_from_slice(s);
        first = false;
    }
    if trailing && out.last() != Some(&b'/') && !first {
        out.push(b'/');
    }
    out
}

fn remove_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    let mut in_c = false;
    while i < v.len() {
        if in_c {
            if v[i] == b'*' && v.get(i + 1) == Some(&b'/') {
                in_c = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        if v[i] == b'/' && v.get(i + 1) == Some(&b'*') {
            in_c = true;
            i += 2;
        } else if v[i] == b'<' && v[i..].starts_with(b"<!--") {
            i += 4;
            while i < v.len() && !v[i..].starts_with(b"-->") {
                i += 1;
            }
            i = (i + 3).min(v.len());
        } else if (v[i] == b'-' && v.get(i + 1) == Some(&b'-')) || v[i] == b'#' {
            break;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments_char(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let rest = &v[i..];
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") || rest.starts_with(b"--") {
            i += 2;
        } else if rest.starts_with(b"<!--") {
            i += 4;
        } else if rest.starts_with(b"-->") {
            i += 3;
        } else if v[i] == b'#' {
            i += 1;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

/// `replaceComments`: each `/* ... */` (or an unterminated `/*` to the end) becomes one space.
pub fn replace_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'/' && v.get(i + 1) == Some(&b'*') {
            let j = match v[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i + 2 + p + 2,
                None => v.len(),
            };
            out.push(b' ');
            i = j;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn sql_hex_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'0' && matches!(v.get(i + 1), Some(b'x' | b'X')) {
            let mut j = i + 2;
            while j + 1 < v.len() && hex_val(v[j]).is_some() && hex_val(v[j + 1]).is_some() {
                out.push(two_hex(&v[j..j + 2]));
                j += 2;
            }
            if j > i + 2 {
                i = j;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// `urlDecode`: `%HH` and `+`; invalid escapes are kept (the same decoding as urlencoded
/// bodies and query strings).
pub fn url_decode(v: &[u8]) -> Vec<u8> {
    super::body::urlencoded::decode(v, &mut false)
}

/// `urlDecodeUni`: as `urlDecode`, plus `%uHHHH` (full-width ASCII folded, otherwise the low
/// byte).
pub fn url_decode_uni(v: &[u8]) -> Vec<u8> {
    super::body::urlencoded::decode_unicode(v)
}

fn url_encode(v: &[u8]) -> Vec<u8> {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b == b' ' {
            out.push(b'+');
        } else if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', H[usize::from(b >> 4)], H[usize::from(b & 15)]]);
        }
    }
    out
}

/// `utf8toUnicode`: every valid multi-byte UTF-8 sequence becomes `%uHHHH` (lowercase hex, at
/// least four digits); other bytes are kept.
pub fn utf8_to_unicode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        if len > 1 && i + len <= v.len() && v[i + 1..i + len].iter().all(|&c| c & 0xc0 == 0x80) {
            let mut cp: u32 = u32::from(b) & (0x7f >> len);
            for &c in &v[i + 1..i + len] {
                cp = (cp << 6) | u32::from(c & 0x3f);
            }
            out.extend_from_slice(format!("%u{cp:04x}").as_bytes());
            i += len;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// `\xHH` or up to three octal digits after the backslash at `i` (as `escapeSeqDecode` and
/// `jsDecode` read them): the byte and how many bytes the escape takes, backslash included.
fn hex_or_octal_escape(v: &[u8], i: usize) -> Option<(u8, usize)> {
    let c = *v.get(i + 1)?;
    if c == b'x' && i + 3 < v.len() {
        if let (Some(h), Some(l)) = (hex_val(v[i + 2]), hex_val(v[i + 3])) {
            return Some(((h << 4) | l, 4));
        }
    }
    if (b'0'..=b'7').contains(&c) {
        let digits = v[i + 1..].iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
        let n = v[i + 1..i + 1 + digits].iter().fold(0u32, |n, &d| n * 8 + u32::from(d - b'0'));
        return Some((n as u8, 1 + digits));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_only_skip_steps_that_change_nothing() {
        let samples: &[&[u8]] = &[
            b"",
            b"a",
            b"A",
            b"42",
            b"a b",
            b"a  b",
            b" a",
            b"a ",
            b"\ta",
            b"a\r\n",
            b"%41",
            b"a+b",
            b"&amp;",
            b"&#x41;",
            b"\\x41",
            b"\\u0041",
            b"\0",
            b"a\0b",
            b"\xc3\xa9",
            b"\xa0",
            b"x\x0by",
            b"Mozilla/5.0 (X11; Linux)",
            b"json.order.id",
            b"/a/./b/../c",
            b"/*c*/--#",
            // Longer values, the telling byte in each place of a four-byte group and after
            // the last group.
            b"abcdefg%",
            b"abcdefgh&",
            b"abcdE",
            b"abc  def",
            b"abcd\\efgh-",
            b"abcdefgh\t",
            // Pairs, in short values and in values long enough to be searched otherwise.
            b"a-b - c",
            b"a--b",
            b"a value longer than sixty-four bytes, where two spaces come at last:  x",
            b"a value longer than sixty-four bytes, where two dashes come at last: --x",
        ];
        let mut skipped = 0;
        for &v in samples {
            let f = Features::of(v);
            for &t in Transformation::ALL.iter().filter(|&&t| supported(t)) {
                if f.unchanged(t) {
                    skipped += 1;
                    assert_eq!(apply(t, v), v, "{t} claimed to leave {:?} unchanged", String::from_utf8_lossy(v));
                }
            }
        }
        assert!(skipped > 100, "the scan should spare most steps on plain values ({skipped})");
    }

    /// The same as the samples above, over random values made of the bytes the transformations
    /// care about, and over random chains: skipping the steps the features call idle gives what
    /// applying every step gives, for a chain and for `multiMatch`'s variants.
    #[test]
    fn skipping_idle_steps_changes_no_result_on_random_values() {
        const BYTES: &[u8] = b"aAzZ09 \t\n\r\x0b\x0c\xa0\xc3\xa9\x80\xff\0%+&#;\\/.*-\"'^,xXuU(<>!=";
        let supported: Vec<Transformation> = Transformation::ALL.iter().copied().filter(|&t| supported(t)).collect();
        let mut rng = fastrand::Rng::with_seed(0x7f0e);
        for _ in 0..20_000 {
            let len = if rng.u8(..10) == 0 { rng.usize(60..100) } else { rng.usize(..12) };
            let v: Vec<u8> = (0..len).map(|_| BYTES[rng.usize(..BYTES.len())]).collect();
            let features = Features::of(&v);
            for &t in supported.iter().filter(|&&t| features.unchanged(t)) {
                assert_eq!(apply(t, &v), v, "{t} claimed to leave {:?} unchanged", String::from_utf8_lossy(&v));
            }
            let steps: Vec<Transformation> =
                (0..rng.usize(1..5)).map(|_| supported[rng.usize(..supported.len())]).collect();
            let mut every = vec![v.clone()];
            for &t in &steps {
                let next = apply(t, every.last().unwrap_or(&v));
                if Some(&next) != every.last() {
                    every.push(next);
                }
            }
            let (whole, last) = (apply_chain(&steps, &v, features), every.last().unwrap_or(&v));
            assert_eq!(&*whole, &last[..], "{steps:?} on {:?}", String::from_utf8_lossy(&v));
            let variants: Vec<Vec<u8>> = variants(&steps, &v).into_iter().map(|c| c.into_owned()).collect();
            assert_eq!(variants, every, "{steps:?} variants of {:?}", String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn url_decoding_keeps_invalid_escapes() {
        assert_eq!(url_decode(b"a%20b+c%zz%4"), b"a b c%zz%4");
        assert_eq!(url_decode_uni(b"%u0041%uff01%41"), b"A!A");
    }

    #[test]
    fn cmd_line_as_modsecurity() {
        assert_eq!(cmd_line(b"C:\\WIN\"DOWS ; /bin/ls ,x"), b"c:windows/bin/ls x");
    }

    #[test]
    fn entities_and_js() {
        assert_eq!(html_entity_decode(b"&lt;a&#x41;&#66&quot;&foo;"), b"<aAB\"&foo;");
        assert_eq!(js_decode(b"\\x41\\u0042\\101\\n\\q"), b"ABA\nq");
        assert_eq!(css_decode(b"\\41 b\\\"c"), b"Ab\"c");
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path(b"/a/./b/../c//d", false), b"/a/c/d");
        assert_eq!(normalize_path(b"../../etc/passwd", false), b"../../etc/passwd");
        assert_eq!(normalize_path(b"/../../etc/", false), b"/etc/");
        assert_eq!(normalize_path(b"a\\..\\..\\b", true), b"../b");
    }

    #[test]
    fn comments_and_base64() {
        assert_eq!(replace_comments(b"a/*x*/b/*c"), b"a b ");
        assert_eq!(base64_decode(b"aGVsbG8=", false), b"hello");
        assert_eq!(base64_decode(b"aGV$sbG8=", false), b"");
        assert_eq!(base64_encode(b"hello"), b"aGVsbG8=");
        assert_eq!(utf8_to_unicode("aé".as_bytes()), b"a%u00e9");
    }

    #[test]
    fn no_panic_on_truncated_escapes() {
        for t in Transformation::ALL {
            for v in [&b"%"[..], b"%u12", b"\\", b"\\x4", b"\\u00", b"&#", b"&#x", b"/*", b"\xf0\x9f", b"0x4"] {
                let _ = apply(*t, v);
            }
        }
    }
}
