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

/// `reference.yaml` keeps `hash_on` beside `balance: round_robin`, ready for a switch to
/// `hash`: it loads, with a warning that it does nothing yet, and is still checked.
#[test]
fn hash_on_without_balance_hash_is_a_warning_and_still_checked() {
    for balance in ["round_robin", "least_request"] {
        let yaml = GOOD.replace("targets:", &format!("balance: {balance}, hash_on: header:x-user-id, targets:"));
        let (code, stderr) = validate(&yaml);
        assert_eq!(code, 0, "{balance}: {stderr}");
        assert!(
            stderr.contains("warning: upstreams[0].hash_on: has no effect until balance is hash"),
            "{balance}: {stderr}"
        );
        let (code, stderr) = validate(&yaml.replace("header:x-user-id", "header:bad name"));
        assert_eq!(code, 1, "{balance}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("upstreams[0].hash_on")), "{balance}: {stderr}");
    }
    let (code, stderr) = validate(GOOD);
    assert_eq!(code, 0);
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// The running gateway logs the same warning when it applies the config.
#[test]
fn the_gateway_logs_warnings_when_it_applies_the_config() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let yaml = GOOD.replace("targets:", "hash_on: 'cookie:sid', targets:").replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(&path, yaml).unwrap();
    let mut child = barbican()
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut got = Vec::new();
    let logged = loop {
        match seen.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(line) if line.contains("upstreams[0].hash_on: has no effect until balance is hash") => break true,
            Ok(line) => got.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged, "no warning logged: {got:?}");
}

/// A route naming an upstream or a rule set that failed to compile gets no second error
/// saying that it does not exist: the operator sees the one thing to fix.
#[test]
fn what_a_route_names_is_reported_broken_once_not_missing() {
    let dir = tempfile::tempdir().unwrap();
    let broken = GOOD.replace("{ addr: 127.0.0.1:9001 }", "{ addr: 127.0.0.1:9001, weight: 0 }").replace(
        "upstream: orders }]",
        &format!(
            "upstream: orders, waf: {{ ruleset: crs }} }}]\nwaf: {{ rulesets: {{ crs: {{ include: [{}/none/*.conf] }} }} }}",
            dir.path().display()
        ),
    );
    let (code, stderr) = validate(&broken);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("upstreams[0].targets[0].weight")), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("waf.rulesets.crs")), "{stderr}");
    assert!(!stderr.contains("routes[0]"), "{stderr}");
    assert!(stderr.contains(": 2 errors"), "{stderr}");
}

/// What `validate` prints is what to fix: no progress lines, even where the config compiles a
/// WAF rule set (which `run` logs at info).
#[test]
fn validate_prints_findings_not_progress() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.conf"), "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n").unwrap();
    let path = dir.path().join("config.yaml");
    let yaml = GOOD.replace("upstream: orders }]", "upstream: orders, waf: { ruleset: own } }]")
        + "waf: { rulesets: { own: { include: [rules.conf] } } }\n";
    std::fs::write(&path, yaml).unwrap();
    let output = barbican().arg("validate").arg(&path).env_remove("RUST_LOG").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "only findings on stderr");
    assert!(String::from_utf8_lossy(&output.stdout).ends_with(": ok\n"));
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
