//! Body processor tests, hostile inputs included: none of them may panic.

use super::*;

/// Pairs as byte slices, to compare with literals.
fn plain(pairs: &[Pair]) -> Vec<(&[u8], &[u8])> {
    pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect()
}

#[test]
fn urlencoded_pairs() {
    let (p, bad) = urlencoded::parse(b"a=1&b=%41+c&&flag&x=%zz", b'&');
    let expected: [(&[u8], &[u8]); 4] = [(b"a", b"1"), (b"b", b"A c"), (b"flag", b""), (b"x", b"%zz")];
    assert_eq!(plain(&p), expected);
    assert!(bad);
    // Names and values longer than a pair keeps in place.
    let long = format!("{}={}", "n".repeat(100), "v%41".repeat(50));
    let (p, bad) = urlencoded::parse(long.as_bytes(), b'&');
    assert_eq!(plain(&p), [("n".repeat(100).as_bytes(), "vA".repeat(50).as_bytes())]);
    assert!(!bad);
}

#[test]
fn json_names_as_libmodsecurity3() {
    let p = json::parse(br#"{"a":{"b":"c"},"n":[1,true,null,{"d":"e"}],"s":"\u0041\n"}"#, 512).unwrap();
    let names: Vec<String> =
        p.iter().map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))).collect();
    assert_eq!(
        names,
        vec![
            "json.a.b=c",
            "json.n.array_0=1",
            "json.n.array_1=true",
            "json.n.array_2=",
            "json.n.array_3.d=e",
            "json.s=A\n"
        ]
    );
    // Indexes of one, two and three digits, and the names' steps undone after each element
    // and each array (nested ones too).
    let p = json::parse(format!("{{\"t\":[{}],\"u\":0}}", ["0"; 101].join(",")).as_bytes(), 512).unwrap();
    let names: Vec<&[u8]> = p.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(names[9..12], [&b"json.t.array_9"[..], b"json.t.array_10", b"json.t.array_11"]);
    assert_eq!(names[99..], [&b"json.t.array_99"[..], b"json.t.array_100", b"json.u"]);
    let p = json::parse(br#"[[1,[2]],{"a":[3]},4]"#, 512).unwrap();
    let names: Vec<&[u8]> = p.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(
        names,
        [&b"json.array_0.array_0"[..], b"json.array_0.array_1.array_0", b"json.array_1.a.array_0", b"json.array_2"]
    );
    // Names and values longer than a pair keeps in place.
    let (key, value) = ("k".repeat(60), r"\u0041".repeat(50));
    let p = json::parse(format!("{{\"{key}\":\"{value}\"}}").as_bytes(), 512).unwrap();
    assert_eq!(plain(&p), [(format!("json.{key}").as_bytes(), "A".repeat(50).as_bytes())]);
    // Strings read where they lie and strings unescaped, as keys and as values, side by side.
    let p = json::parse(br#"{"k\"ey":"v\\1","plain":"a b","x\u0041":"\/"}"#, 512).unwrap();
    assert_eq!(plain(&p), [(&b"json.k\"ey"[..], &b"v\\1"[..]), (b"json.plain", b"a b"), (b"json.xA", b"/")]);
    // A control character is an error, in a plain string or after an escape.
    assert!(json::parse(b"{\"a\":\"x\x01y\"}", 10).is_err());
    assert!(json::parse(b"{\"a\":\"\\n\ty\"}", 10).is_err());
    assert!(json::parse(b"{\"a\":\"unterminated}", 10).is_err());
    assert!(json::parse(b"[[[[1]]]]", 3).is_err());
    assert!(json::parse(b"{\"a\":", 10).is_err());
    assert!(json::parse(b"{} x", 10).is_err());
}

/// Strings are read eight bytes at a time: a quote, an escape or a control character ends
/// the plain run wherever it falls in a word, and bytes above 127 never do.
#[test]
fn json_strings_end_where_they_end_at_any_offset() {
    for len in 0..20 {
        let text = "é".repeat(len / 2) + &"a".repeat(len % 2);
        let p = json::parse(format!(r#"{{"k":"{text}"}}"#).as_bytes(), 512).unwrap();
        assert_eq!(plain(&p), [(&b"json.k"[..], text.as_bytes())], "{len}");
        let escaped = format!(r#"{{"k":"{text}\"x"}}"#);
        let p = json::parse(escaped.as_bytes(), 512).unwrap();
        assert_eq!(p[0].1[..], *format!("{text}\"x").as_bytes(), "{len}");
        let control = format!("{{\"k\":\"{text}\u{1}\"}}");
        assert!(json::parse(control.as_bytes(), 512).is_err(), "{len}");
    }
}

#[test]
fn xml_text_and_attributes() {
    let d = xml::parse(b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r a=\"1&amp;2\"><b c='3'>hi &x;</b><![CDATA[<raw>]]></r>").unwrap();
    assert_eq!(d.text, b"hi <raw>");
    assert_eq!(d.attributes, vec![b"1&2".to_vec(), b"3".to_vec()]);
    assert!(xml::parse(b"<a><b></a>").is_err());
    assert!(xml::parse(b"not xml").is_err());
    assert!(xml::parse(b"<a>&unknown;</a>").is_err());
}

#[test]
fn multipart_fields_files_and_flags() {
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nvalue\r\n--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XyZ--\r\n";
    let m = multipart::parse(b"multipart/form-data; boundary=XyZ", body);
    assert_eq!(m.error, None);
    assert_eq!(plain(&m.args), [(&b"f"[..], &b"value"[..])]);
    assert_eq!(m.files[0].filename, b"a.php");
    assert_eq!(m.files[0].content, b"<?php");
    assert!(plain(&m.part_headers).contains(&(b"up", b"Content-Type: text/plain")));
    assert!(!m.flags.strict_error());
    let lf = multipart::parse(
        b"multipart/form-data; boundary=\"XyZ\"",
        b"--XyZ\nContent-Disposition: form-data; name=a\n\nv\n--XyZ--\n",
    );
    assert!(lf.flags.lf_line && lf.flags.boundary_quoted);
    assert!(multipart::parse(b"multipart/form-data", b"x").error.is_some());
    assert!(multipart::parse(
        b"multipart/form-data; boundary=a",
        b"--a\r\nContent-Disposition: form-data; name=x\r\n\r\nno end"
    )
    .error
    .is_some());
}

/// Every prefix and some mutations of valid bodies: no processor may panic.
#[test]
fn hostile_inputs_never_panic() {
    let samples: [&[u8]; 5] = [
        br#"{"a":{"b":["c",1.5e3,{"d":null}]},"e":"\ud83d\ude00\u00"}"#,
        b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY % p SYSTEM 'x'>]><a x='1'><b>&lt;&#x41;&#65;</b><!-- c --></a>",
        b"--B\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename='x'\r\n folded\r\n\r\nv\n--B\r\nContent-Disposition: form-data\r\n\r\n--B--",
        b"a=%&b==&=c&%%%&+&;",
        b"\xff\xfe\x00<\"'{[",
    ];
    for s in samples {
        for end in 0..=s.len() {
            let cut = &s[..end];
            let _ = json::parse(cut, 4);
            let _ = xml::parse(cut);
            let _ = multipart::parse(b"multipart/form-data; boundary=B", cut);
            let _ = multipart::parse(cut, s);
            let _ = urlencoded::parse(cut, b'&');
        }
        let mut m = s.to_vec();
        for i in 0..m.len() {
            m[i] = m[i].wrapping_add(37);
            let _ = json::parse(&m, 4);
            let _ = xml::parse(&m);
            let _ = multipart::parse(b"multipart/form-data; boundary=B", &m);
        }
    }
}

#[test]
fn json_nesting_is_bounded_whatever_the_setting() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(json::parse(deep.as_bytes(), usize::MAX).is_err());
    let ok = format!("{}1{}", "[".repeat(900), "]".repeat(900));
    assert!(json::parse(ok.as_bytes(), usize::MAX).is_ok());
}
