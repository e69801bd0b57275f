//! XML bodies, parsed enough to answer the two XPath expressions rules use: `XML:/*` (the text
//! of the document: every text and CDATA node, in order, as libxml2's node content) and
//! `XML://@*` (every attribute value). The parser checks well-formedness (one root, tags
//! closed in order, quoted attributes, known entities) so that broken documents raise
//! `REQBODY_ERROR` as libxml2 would; it never fetches external entities.
//!
//! Work is linear in the document: declared entity names are looked up in a set, and each is
//! read up to the first byte that cannot be in a name.

use std::collections::HashSet;

/// What rules can read of a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    /// The concatenated text content of the root element.
    pub text: Vec<u8>,
    /// Every attribute value, in document order.
    pub attributes: Vec<Vec<u8>>,
}

/// Parses `data`; `Err` holds the message for `REQBODY_ERROR_MSG`, libmodsecurity3's one
/// message for any XML failure (the detail follows for the debug log).
pub fn parse(data: &[u8]) -> Result<Document, String> {
    parse_detailed(data).map_err(|detail| format!("XML parsing error: XML: Failed parsing document. ({detail})"))
}

fn parse_detailed(data: &[u8]) -> Result<Document, String> {
    let mut doc = Document::default();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut seen_root = false;
    // Entities declared in the DOCTYPE: references to them read as empty (never resolved).
    let mut entities: HashSet<Vec<u8>> = HashSet::new();
    let mut i = 0;
    fn err<T>(what: &str, at: usize) -> Result<T, String> {
        Err(format!("{what} at offset {at}"))
    }
    let s = data;
    while i < s.len() {
        if s[i] != b'<' {
            let end = s[i..].iter().position(|&b| b == b'<').map_or(s.len(), |p| i + p);
            let chunk = &s[i..end];
            if stack.is_empty() {
                if chunk.iter().any(|b| !b.is_ascii_whitespace()) {
                    return err("text outside the root element", i);
                }
            } else {
                let Some(t) = decode_entities(chunk, &entities) else { return err("undefined or malformed entity", i) };
                doc.text.extend(t);
            }
            i = end;
            continue;
        }
        let rest = &s[i..];
        if rest.starts_with(b"<?") {
            let Some(p) = find(rest, b"?>") else { return err("unterminated processing instruction", i) };
            i += p + 2;
        } else if rest.starts_with(b"<!--") {
            let Some(p) = find(&rest[4..], b"-->") else { return err("unterminated comment", i) };
            i += 4 + p + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            if stack.is_empty() {
                return err("CDATA outside the root element", i);
            }
            let Some(p) = find(&rest[9..], b"]]>") else { return err("unterminated CDATA", i) };
            doc.text.extend_from_slice(&rest[9..9 + p]);
            i += 9 + p + 3;
        } else if rest.starts_with(b"<!") {
            // DOCTYPE (with an internal subset in brackets): skipped, never resolved.
            let mut depth = 0i32;
            let mut j = 2;
            loop {
                match rest.get(j) {
                    None => return err("unterminated declaration", i),
                    Some(b'[') => depth += 1,
                    Some(b']') => depth -= 1,
                    Some(b'>') if depth <= 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let decl = &rest[..j];
            let mut k = 0;
            while let Some(p) = find(&decl[k..], b"<!ENTITY") {
                k += p + 8;
                // Up to a byte no name has: `<!ENTITY<!ENTITY...` must not copy the rest of the
                // declaration once per occurrence.
                let name: Vec<u8> = decl[k..]
                    .iter()
                    .skip_while(|b| b.is_ascii_whitespace() || **b == b'%')
                    .take_while(|b| !b.is_ascii_whitespace() && !matches!(b, b'<' | b'>' | b'"' | b'\'' | b'[' | b']'))
                    .copied()
                    .collect();
                entities.insert(name);
            }
            i += j + 1;
        } else if rest.starts_with(b"</") {
            let Some(p) = rest.iter().position(|&b| b == b'>') else { return err("unterminated end tag", i) };
            let name = trim(&rest[2..p]);
            match stack.pop() {
                Some(open) if open == name => {}
                _ => return err("mismatched end tag", i),
            }
            i += p + 1;
        } else {
            // Start tag.
            let mut j = 1;
            let name_end = rest[j..].iter().position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>');
            let Some(ne) = name_end else { return err("unterminated start tag", i) };
            let name = rest[j..j + ne].to_vec();
            if name.is_empty() || !valid_name(&name) {
                return err("invalid element name", i);
            }
            if stack.is_empty() && seen_root {
                return err("extra content after the root element", i);
            }
            j += ne;
            let mut self_closing = false;
            loop {
                while j < rest.len() && rest[j].is_ascii_whitespace() {
                    j += 1;
                }
                match rest.get(j) {
                    None => return err("unterminated start tag", i),
                    Some(b'>') => {
                        j += 1;
                        break;
                    }
                    Some(b'/') if rest.get(j + 1) == Some(&b'>') => {
                        self_closing = true;
                        j += 2;
                        break;
                    }
                    Some(_) => {
                        let an = rest[j..].iter().position(|&b| b == b'=' || b.is_ascii_whitespace() || b == b'>');
                        let Some(an) = an else { return err("unterminated attribute", i) };
                        if an == 0 || !valid_name(&rest[j..j + an]) {
                            return err("invalid attribute", i + j);
                        }
                        j += an;
                        while j < rest.len() && rest[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        if rest.get(j) != Some(&b'=') {
                            return err("attribute without value", i + j);
                        }
                        j += 1;
                        while j < rest.len() && rest[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        let q = match rest.get(j) {
                            Some(&q @ (b'"' | b'\'')) => q,
                            _ => return err("unquoted attribute value", i + j),
                        };
                        let Some(e) = rest[j + 1..].iter().position(|&b| b == q) else {
                            return err("unterminated attribute value", i + j);
                        };
                        let raw = &rest[j + 1..j + 1 + e];
                        if raw.contains(&b'<') {
                            return err("`<` in attribute value", i + j);
                        }
                        let Some(v) = decode_entities(raw, &entities) else {
                            return err("undefined or malformed entity", i + j);
                        };
                        doc.attributes.push(v);
                        j += e + 2;
                    }
                }
            }
            seen_root = true;
            if !self_closing {
                stack.push(name);
            }
            i += j;
        }
    }
    if !stack.is_empty() {
        return err("unclosed element", s.len());
    }
    if !seen_root {
        return err("no root element", s.len());
    }
    Ok(doc)
}

fn valid_name(n: &[u8]) -> bool {
    let first = n[0];
    (first.is_ascii_alphabetic() || first == b'_' || first == b':' || first >= 0x80)
        && n.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.') || b >= 0x80)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |p| p + 1);
    &v[s..e]
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Decodes the five predefined entities and character references; `None` for anything else.
fn decode_entities(v: &[u8], declared: &HashSet<Vec<u8>>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'&' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let end = v[i..].iter().position(|&b| b == b';')? + i;
        let name = &v[i + 1..end];
        match name {
            b"lt" => out.push(b'<'),
            b"gt" => out.push(b'>'),
            b"amp" => out.push(b'&'),
            b"quot" => out.push(b'"'),
            b"apos" => out.push(b'\''),
            _ if name.first() == Some(&b'#') => {
                let text = std::str::from_utf8(&name[1..]).ok()?;
                let cp = match text.strip_prefix('x').or_else(|| text.strip_prefix('X')) {
                    Some(h) => u32::from_str_radix(h, 16).ok()?,
                    None => text.parse().ok()?,
                };
                let ch = char::from_u32(cp)?;
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ if declared.contains(name) => {}
            _ => return None,
        }
        i = end + 1;
    }
    Some(out)
}
