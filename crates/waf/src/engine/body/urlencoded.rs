//! `application/x-www-form-urlencoded` (and query strings): `name=value` pairs split on the
//! argument separator, both halves URL-decoded (`+` is a space, invalid `%` escapes are kept
//! and flagged).

use super::{Pair, Text};
use crate::engine::transform::{fold_full_width, hex_val, two_hex};

/// The pairs of `data`, and whether any `%` escape was invalid (`URLENCODED_ERROR`).
pub fn parse(data: &[u8], separator: u8) -> (Vec<Pair>, bool) {
    let mut out = Vec::new();
    let mut invalid = false;
    for part in data.split(|&b| b == separator) {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        out.push((decode_text(name, &mut invalid), decode_text(value, &mut invalid)));
    }
    (out, invalid)
}

/// As [`decode`], for a pair: most names and values have nothing to decode and are copied.
fn decode_text(v: &[u8], invalid: &mut bool) -> Text {
    match v.iter().any(|&b| b == b'%' || b == b'+') {
        true => Text::from_vec(decode(v, invalid)),
        false => Text::from_slice(v),
    }
}

/// URL-decodes `v` the non-strict way: `+` is a space, `%HH` a byte, anything else is kept;
/// sets `invalid` on a `%` without two hex digits.
pub fn decode(v: &[u8], invalid: &mut bool) -> Vec<u8> {
    decode_with(v, invalid, false)
}

/// As [`decode`], plus IIS-style `%uHHHH` (full-width ASCII folded to ASCII, otherwise the low
/// byte): `t:urlDecodeUni`.
pub fn decode_unicode(v: &[u8]) -> Vec<u8> {
    decode_with(v, &mut false, true)
}

fn decode_with(v: &[u8], invalid: &mut bool, unicode: bool) -> Vec<u8> {
    let hex = |d: &[u8]| d.iter().all(|&b| hex_val(b).is_some());
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        // Runs of bytes kept as they are go over at once (most of most values).
        let run = memchr::memchr2(b'%', b'+', &v[i..]).unwrap_or(v.len() - i);
        out.extend_from_slice(&v[i..i + run]);
        i += run;
        let Some(&c) = v.get(i) else { break };
        match c {
            b'%' if unicode
                && matches!(v.get(i + 1), Some(b'u' | b'U'))
                && i + 5 < v.len()
                && hex(&v[i + 2..i + 6]) =>
            {
                out.push(fold_full_width(two_hex(&v[i + 2..i + 4]), two_hex(&v[i + 4..i + 6])));
                i += 6;
            }
            b'%' if i + 2 < v.len() && hex(&v[i + 1..i + 3]) => {
                out.push(two_hex(&v[i + 1..i + 3]));
                i += 3;
            }
            b'%' => {
                *invalid = true;
                out.push(b'%');
                i += 1;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
