//! Any text as a config file: the body of the `config` fuzz target
//! (`fuzz/fuzz_targets/config.rs`) and of the unit test that runs it over mangled configs.
//!
//! [`check`] validates the text as `barbican validate` and a reload do ([`super::validate`]),
//! in a folder holding a small rule file and a CRS setup, so that WAF rule sets compile too.
//! Nothing may panic, and a refused config must say what is wrong and where: every error has
//! a message, and one the compiler finds names its field. Built for tests and for fuzzing
//! (`--cfg fuzzing`) only.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{compiles, ConfigError, Source};

/// A config using every section this version compiles, with the files it names in [`folder`].
pub const FULL: &str = r#"
workers: 2
shutdown_timeout: 5s
listeners:
  - name: public
    bind: 127.0.0.1:18080
    limits: { max_header_bytes: 16KiB, max_body_bytes: 1MiB, header_read_timeout: 10s }
admin:
  bind: 127.0.0.1:19901
real_ip:
  trusted_proxies: [127.0.0.1/32, 10.0.0.0/8, "::1"]
  header: x-forwarded-for
upstreams:
  - name: orders
    targets:
      - { addr: 127.0.0.1:9001, weight: 3, labels: { stage: stable } }
      - { addr: "[::1]:9002", weight: 1, labels: { stage: canary } }
    balance: hash
    hash_on: header:x-user-id
    health_check: { path: /healthz, interval: 2s, timeout: 1s, unhealthy_after: 3, healthy_after: 2 }
    passive_health: { failures: 3, eject_for: 10s }
    timeouts: { connect: 1s, request: 30s }
    retries: 1
    dns_refresh: 30s
  - name: chat
    targets: [{ addr: "localhost:9101", labels: { stage: blue } }]
    balance: least_request
routes:
  - name: orders-api
    match:
      hosts: [api.example.com, "*.example.com"]
      path_prefix: /api/orders
      methods: [GET, POST]
      headers: { x-env: prod }
    upstream: orders
    subset: { stage: stable }
    canary:
      - match: { headers: { x-canary: "true" } }
        subset: { stage: canary }
      - weight: 5
        subset: { stage: canary }
    waf: { ruleset: own, mode: block }
    strip_path_prefix: true
    request_headers: { set: { x-gateway: barbican }, remove: [x-debug] }
  - name: versioned
    match: { path_regex: "^/api/v[0-9]+/items$" }
    upstream: orders
    waf: { ruleset: own, mode: detect, expose_rule_ids: true }
  - name: chat-ws
    match: { path: /ws }
    upstream: chat
    websocket: { max_message: 1MiB, idle_timeout: 300s, drain: 60s }
  - name: hello
    match: { path_prefix: / }
    respond: { status: 200, content_type: text/plain, body: "hello\n" }
ip_rules:
  deny: [203.0.113.0/24]
  allow: []
bot_detect:
  deny_user_agents: ["(?i)sqlmap", "(?i)nikto"]
  allow_user_agents: []
  block_empty_user_agent: true
waf:
  rulesets:
    own:
      include: [rules/*.conf]
      setup: setup.conf
      paranoia_level: 2
      inbound_anomaly_threshold: 5
      exclusions:
        - { remove_rule: 100 }
        - { remove_tag: attack-sqli }
        - { remove_target: { rule: 101, target: "ARGS:q" } }
  audit_log: stdout
  request_body_limit: 1MiB
access_log: stdout
"#;

/// The files of [`folder`], by path within it.
const FILES: [(&str, &str); 2] = [
    ("setup.conf", "SecRuleEngine On\nSecRequestBodyAccess On\nSecDefaultAction \"phase:2,log,pass\"\n"),
    (
        "rules/own.conf",
        "SecRule ARGS \"@rx (?i)union\\s+select\" \"id:100,phase:2,deny,status:403,tag:'attack-sqli'\"\n\
         SecRule ARGS|REQUEST_HEADERS \"@detectXSS\" \"id:101,phase:2,block,t:none,t:urlDecodeUni\"\n",
    ),
];

/// A folder with the files [`FULL`] names: `setup.conf` and `rules/own.conf`. Named by what it
/// holds, so that every test run and fuzzing process shares one (a folder per process left one
/// behind each time); each file is written whole under another name and renamed into place, so
/// that a process never reads one that another is writing.
pub fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        FILES.hash(&mut hasher);
        let dir = std::env::temp_dir().join(format!("barbican-config-robustness-{:016x}", hasher.finish()));
        for (name, text) in FILES {
            let path = dir.join(name);
            let part = path.with_extension(format!("part-{}", std::process::id()));
            std::fs::create_dir_all(path.parent().unwrap_or(&dir))
                .and_then(|()| std::fs::write(&part, text))
                .and_then(|()| std::fs::rename(&part, &path))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        dir
    })
}

/// Validates `data` (read as UTF-8, bad bytes replaced) as a config file in [`folder`], as
/// [`super::validate`] does. Returns whether it was accepted; panics when validation panics or
/// refuses without saying what and where. Texts naming the system's special files (`/dev`,
/// `/proc`, `/sys`) are refused unread: reading `/dev/zero` as a certificate never ends.
pub fn check(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    if ["/dev", "/proc", "/sys"].iter().any(|special| text.contains(special)) {
        return false;
    }
    let source = in_folder(text.into_owned());
    // Errors of the YAML itself may sit at no field (a syntax error has a position instead);
    // the compiler's must name theirs.
    let (errors, located) = match source.parse() {
        Err(errors) => (errors, false),
        Ok(raw) => match compiles(&raw, &source.base_dir) {
            Ok(_warnings) => return true,
            Err(errors) => (errors, true),
        },
    };
    assert!(!errors.is_empty(), "refused without an error: {:?}", source.text);
    for ConfigError { path, message } in &errors {
        assert!(!message.trim().is_empty(), "an error without a message at {path:?}: {:?}", source.text);
        assert!(!located || !path.is_empty(), "a compile error without a field: {message}\n{}", source.text);
    }
    false
}

/// A config's text, as if read from a file in [`folder`].
fn in_folder(text: String) -> Source {
    Source { text, base_dir: folder().to_path_buf(), file: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, EMBEDDED_DEFAULT};

    /// Values that break what expects something else: numbers out of range, malformed
    /// addresses, CIDRs, regexes, durations and sizes, names that dangle.
    const HOSTILE: &[&str] = &[
        "0",
        "-1",
        "65536",
        "18446744073709551616",
        "1e400",
        "",
        "~",
        "[]",
        "{}",
        "\"\"",
        "0s",
        "0ms",
        "999999999d",
        "1ZiB",
        "0B",
        "-5s",
        "1.5",
        "nan",
        "127.0.0.1:0",
        "[::1",
        "10.0.0.0/40",
        "::/129",
        "1.2.3.4/-1",
        "(",
        "[a-",
        "(?i",
        "*.",
        "*",
        "**.example.com",
        "/",
        "//",
        "header:",
        "cookie:",
        "ip",
        "header:x\u{0}",
        "bogus",
        "true",
        "no-such-upstream",
        "own",
        "rules/missing.conf",
        "rules/*.conf",
        "setup.conf",
        "\u{feff}",
        "é",
        "\t",
        "\"\\x\"",
    ];

    /// Mangles a config's lines: drops, repeats, moves, cuts, and puts hostile values after a
    /// key.
    fn mangle(rng: &mut fastrand::Rng, seed: &str) -> String {
        let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
        for _ in 0..rng.usize(1..5) {
            let at = rng.usize(..lines.len());
            match rng.u8(..6) {
                0 => drop(lines.remove(at)),
                1 => lines.insert(at, lines[rng.usize(..lines.len())].clone()),
                2 => {
                    let line = lines.remove(at);
                    lines.insert(rng.usize(..=lines.len()), line);
                }
                3 => {
                    let cut = rng.usize(..=lines[at].len());
                    let cut = (0..=cut).rev().find(|&c| lines[at].is_char_boundary(c)).unwrap_or(0);
                    lines[at].truncate(cut);
                }
                _ => {
                    // The value after a `key:` (the line's last one), replaced.
                    if let Some(colon) = lines[at].rfind(": ") {
                        let value = HOSTILE[rng.usize(..HOSTILE.len())];
                        let closing = if lines[at].ends_with(" }") { " }" } else { "" };
                        lines[at] = format!("{}: {value}{closing}", &lines[at][..colon]);
                    }
                }
            }
            if lines.is_empty() {
                lines.push(String::new());
            }
        }
        lines.join("\n")
    }

    #[test]
    fn the_full_config_and_the_embedded_default_validate() {
        assert!(check(FULL.as_bytes()), "{:?}", validate(&in_folder(FULL.into())));
        assert!(check(EMBEDDED_DEFAULT.as_bytes()));
    }

    /// 3,000 mangled configs: each accepted or refused with located errors, never a panic; and
    /// enough of both (about one in ten is accepted) that the mangling reaches the compiler.
    #[test]
    fn mangled_configs_are_refused_with_located_errors_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0xc0f1);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let seed = if rng.u8(..8) == 0 { EMBEDDED_DEFAULT } else { FULL };
            if check(mangle(&mut rng, seed).as_bytes()) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 100 && refused > 1000, "accepted {accepted}, refused {refused}");
    }
}
