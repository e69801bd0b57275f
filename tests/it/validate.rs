//! `barbican validate` and `barbican --version`, run as the operator runs them.

use std::process::Command;

fn barbican() -> Command {
    Command::new(env!("CARGO_BIN_EXE_barbican"))
}

fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = barbican().arg("validate").arg(&path).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

const GOOD: &str = "
listeners: [{ name: public, bind: 127.0.0.1:8080 }]
upstreams: [{ name: orders, targets: [{ addr: 127.0.0.1:9001 }] }]
routes: [{ name: orders-api, match: { path_prefix: /api/orders }, upstream: orders }]
";

#[test]
fn a_good_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let output = barbican().arg("validate").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn each_broken_config_exits_1_with_a_located_message() {
    let cases = [
        ("unknown key", GOOD.replace("path_prefix:", "path_prefx:"), "routes[0].match", "unknown field `path_prefx`"),
        (
            "dangling upstream",
            GOOD.replace("upstream: orders", "upstream: ordrs"),
            "routes[0].upstream",
            "no upstream named \"ordrs\"",
        ),
        (
            "bad CIDR",
            format!("{GOOD}real_ip: {{ trusted_proxies: [10.0.0.0/40] }}\n"),
            "real_ip.trusted_proxies[0]",
            "not an IP address or CIDR",
        ),
        (
            "bad regex",
            GOOD.replace("path_prefix: /api/orders", "path_regex: '^/api/(v1'"),
            "routes[0].match.path_regex",
            "invalid regex",
        ),
    ];
    for (what, yaml, path, message) in cases {
        let (code, stderr) = validate(&yaml);
        assert_eq!(code, 1, "{what}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("{what}: no line for {path} in {stderr}"));
        assert!(line.contains(message), "{what}: {line}");
    }
}

#[test]
fn every_error_is_printed_not_just_the_first() {
    let yaml = GOOD.replace("upstream: orders", "upstream: ordrs") + "ip_rules: { deny: [bogus] }\nrate_limits: []\n";
    let (code, stderr) = validate(&yaml);
    assert_eq!(code, 1);
    for path in ["routes[0].upstream", "ip_rules.deny[0]", "rate_limits"] {
        assert!(stderr.lines().any(|l| l.starts_with(path)), "missing {path}: {stderr}");
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let output = barbican().args(["validate", "/nonexistent/barbican.yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

#[test]
fn version_prints_the_version() {
    let output = barbican().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}
