//! Request paths as routes match them and upstreams get them, normalized as RFC 3986 (section
//! 6.2.2) allows: percent-encoded unreserved characters decoded (`%2e` is `.`), dot segments
//! resolved, repeated slashes merged. Without it `/public/../admin` or `//admin` would be routed
//! by one route's policies and read as `/admin` by an upstream that normalizes for itself.
//! Encoded slashes (`%2F`) and every other escape stay as sent: they can carry meaning inside a
//! segment (`/projects/group%2Fname`).

/// `path` normalized, or `None` when it already is: almost every path, found in one pass over
/// its bytes without a copy. Paths not starting with `/` (`*`) are left alone.
pub fn normalize(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || !may_change(bytes) {
        return None;
    }
    let decoded = decode_unreserved(bytes)?;
    let mut segments: Vec<&str> = Vec::new();
    // Whether the path ends in a slash: after an empty segment or a dot segment.
    let mut trailing = false;
    for segment in decoded[1..].split('/') {
        match segment {
            "" | "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            segment => {
                segments.push(segment);
                trailing = false;
            }
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing || segments.is_empty() {
        normalized.push('/');
    }
    (normalized != path).then_some(normalized)
}

/// Whether `path` has an escape, a repeated slash or a segment starting with a dot. It runs on
/// every request: eight bytes at a time, each byte's match kept in its high bit.
fn may_change(path: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // The high bit of each byte of `word` that equals `byte`, and no other bit.
    let equal = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        !(((x & !HIGH) + !HIGH) | x) & HIGH
    };
    // Byte 0's high bit: the byte before this word was a slash.
    let mut after_slash = 0;
    let mut words = path.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let slashes = equal(word, b'/');
        let follows = slashes | equal(word, b'.');
        if equal(word, b'%') != 0 || ((slashes << 8) | after_slash) & follows != 0 {
            return true;
        }
        after_slash = slashes >> 56;
    }
    let mut previous = if after_slash != 0 { b'/' } else { 0 };
    for &byte in words.remainder() {
        if byte == b'%' || (previous == b'/' && matches!(byte, b'/' | b'.')) {
            return true;
        }
        previous = byte;
    }
    false
}

/// `path` with `%XX` decoded where it stands for an unreserved character (letters, digits,
/// `-._~`); `None` if that left it no longer UTF-8 (it cannot: only ASCII is decoded).
fn decode_unreserved(path: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while let Some((&byte, tail)) = rest.split_first() {
        let decoded = match tail {
            [high, low, ..] if byte == b'%' => hex(*high).zip(hex(*low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded.filter(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')) {
            Some(c) => {
                out.push(c);
                rest = &tail[2..];
            }
            None => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::{may_change, normalize};

    /// The word-wise search against the obvious one, with each telling pair at every offset
    /// (across the words' edges too) of paths of every length up to three words.
    #[test]
    fn the_quick_search_finds_what_the_obvious_one_finds() {
        let obvious = |path: &[u8]| path.contains(&b'%') || path.windows(2).any(|w| matches!(w, b"//" | b"/."));
        for len in 1..=24 {
            for at in 0..len {
                for pair in [&b"//"[..], b"/.", b"%2", b"./", b"a/", b"/a"] {
                    let mut path = vec![b'a'; len + 2];
                    path[0] = b'/';
                    path[at + 1..at + 3].copy_from_slice(pair);
                    assert_eq!(may_change(&path), obvious(&path), "{}", String::from_utf8_lossy(&path));
                }
            }
        }
    }

    #[test]
    fn paths_are_resolved_as_an_upstream_would_read_them() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../", "/a/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            ("/%61pi/%7Euser", "/api/~user"),
            ("/a/b/", "/a/b/"),
            ("/caf%C3%A9/./x", "/caf%C3%A9/x"),
        ];
        for (path, normalized) in cases {
            let got = normalize(path).unwrap_or_else(|| path.to_string());
            assert_eq!(got, normalized, "{path}");
        }
    }

    #[test]
    fn normal_paths_and_other_escapes_are_left_as_they_are() {
        for path in [
            "/",
            "/api/v1/users",
            "/a/b/",
            "/.well-known/acme-challenge/x",
            "/a/..b/c.",
            "/projects/group%2Fname",
            "/a/%2F../b",
            "/q%3Fx/%20/%zz/%4",
            "/%C3%A9t%C3%A9",
            "*",
            "",
        ] {
            assert_eq!(normalize(path), None, "{path}");
        }
    }
}
