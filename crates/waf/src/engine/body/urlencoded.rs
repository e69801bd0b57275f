//! `application/x-www-form-urlencoded` (and query strings): `name=value` pairs split on the
//! argument separator, both halves URL-decoded (`+` is a space, invalid `%` escapes are kept
//! and flagged).

use super::Pair;

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
        out.push((decode(name, &mut invalid), decode(value, &mut invalid)));
    }
    (out, invalid)
}

/// URL-decodes `v` the non-strict way: `+` is a space, `%HH` a byte, anything else is kept;
/// sets `invalid` on a `%` without two hex digits.
pub fn decode(v: &[u8], invalid: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' => {
                if i + 2 < v.len() && v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit() {
                    out.push(hex(v[i + 1]) << 4 | hex(v[i + 2]));
                    i += 3;
                } else {
                    *invalid = true;
                    out.push(b'%');
                    i += 1;
                }
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

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.to_ascii_lowercase().wrapping_sub(b'a').wrapping_add(10),
    }
}
