//! Tables of broken configs and the error each must produce, and of settings that load but
//! do nothing and the warning each gets.

use std::path::PathBuf;

use crate::config::{ConfigError, Source};
use crate::metrics::Metrics;
use crate::upstream::Targets;

use super::{compile, Registries};

/// The warnings of a config that compiles, or its errors.
fn compiled(yaml: &str) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    let source = Source { text: yaml.to_string(), base_dir: PathBuf::from("."), file: None };
    let raw = source.parse()?;
    let (targets, metrics) = (Targets::new(1), Metrics::default());
    compile(&raw, &source.base_dir, 1, &Registries { targets: &targets, metrics: &metrics, waf: &Default::default() })
        .map(|snapshot| snapshot.warnings)
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    compiled(yaml).err().unwrap_or_default()
}

const BASE: &str = "
listeners: [{ name: public, bind: 127.0.0.1:0 }]
upstreams:
  - name: orders
    targets:
      - { addr: 127.0.0.1:9001, labels: { stage: stable } }
      - { addr: 127.0.0.1:9002, labels: { stage: canary } }
routes:
";

fn with_route(route: &str) -> String {
    format!("{BASE}{route}")
}

#[test]
fn a_good_config_compiles() {
    let yaml = with_route(
        "  - name: r
    match: { hosts: [api.example.com, '*.example.com'], path_prefix: /api, methods: [get], headers: { x-env: prod } }
    upstream: orders
    subset: { stage: stable }
    canary:
      - match: { headers: { x-canary: 'true' } }
        subset: { stage: canary }
      - weight: 5
        subset: { stage: canary }
    strip_path_prefix: true
    request_headers: { set: { x-gateway: barbican }, remove: [x-debug] }
",
    );
    assert_eq!(errors(&yaml), vec![]);
}

#[test]
fn each_broken_config_names_its_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown key", "  - name: r\n    upstream: orders\n    matchh: {}\n", "routes[0]"),
        ("dangling upstream", "  - name: r\n    upstream: ordrs\n", "routes[0].upstream"),
        (
            "bad regex",
            "  - name: r\n    upstream: orders\n    match: { path_regex: '^/api/(' }\n",
            "routes[0].match.path_regex",
        ),
        ("empty subset", "  - name: r\n    upstream: orders\n    subset: { stage: gone }\n", "routes[0].subset"),
        (
            "two path kinds",
            "  - name: r\n    upstream: orders\n    match: { path: /a, path_prefix: /b }\n",
            "routes[0].match",
        ),
        (
            "bad host",
            "  - name: r\n    upstream: orders\n    match: { hosts: ['bad host'] }\n",
            "routes[0].match.hosts[0]",
        ),
        (
            "bad method",
            "  - name: r\n    upstream: orders\n    match: { methods: ['G T'] }\n",
            "routes[0].match.methods[0]",
        ),
        (
            "canary over 100",
            "  - name: r\n    upstream: orders\n    canary: [{ weight: 101, subset: { stage: canary } }]\n",
            "routes[0].canary[0].weight",
        ),
        ("pending section", "  - name: r\n    upstream: orders\n    waf: { ruleset: crs }\n", "routes[0].waf"),
        (
            "strip without prefix",
            "  - name: r\n    upstream: orders\n    strip_path_prefix: true\n",
            "routes[0].strip_path_prefix",
        ),
        (
            "a length of the route's",
            "  - name: r\n    upstream: orders\n    request_headers: { set: { Content-Length: '5' } }\n",
            "routes[0].request_headers.set.content-length",
        ),
        (
            "a connection header of the route's",
            "  - name: r\n    upstream: orders\n    request_headers: { set: { x-a: b, connection: close } }\n",
            "routes[0].request_headers.set.connection",
        ),
    ];
    for (what, route, path) in cases {
        let found = errors(&with_route(route));
        assert!(found.iter().any(|e| e.path.starts_with(path)), "{what}: expected an error at {path}, got {found:?}");
    }
}

#[test]
fn bad_cidrs_and_binds_are_reported_together() {
    let yaml = "
listeners: [{ name: public, bind: 'localhost:80' }]
real_ip: { trusted_proxies: [10.0.0.0/33, 127.0.0.1] }
ip_rules: { deny: [not-an-ip] }
upstreams: [{ name: u, targets: [{ addr: 'bad host:80' }], balance: round_robin, hash_on: 'header:bad name' }]
";
    let found = errors(yaml);
    let paths: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
    for wanted in [
        "listeners[0].bind",
        "real_ip.trusted_proxies[0]",
        "ip_rules.deny[0]",
        "upstreams[0].targets[0].addr",
        "upstreams[0].hash_on",
    ] {
        assert!(paths.contains(&wanted), "missing {wanted} in {found:?}");
    }
}

#[test]
fn sections_not_built_yet_are_refused_not_ignored() {
    let found = errors("rate_limits: [{ name: x, key: ip, per_second: 1 }]\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "rate_limits");
    assert!(found[0].message.contains("not supported yet"));
}

#[test]
fn missing_secret_names_the_variable() {
    let found = errors(
        "admin: { bind: 127.0.0.1:0, tokens: [{ name: a, token_env: BARBICAN_TEST_SURELY_UNSET, role: viewer }] }\n",
    );
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("BARBICAN_TEST_SURELY_UNSET"), "{found:?}");
}

#[test]
fn settings_that_do_nothing_where_they_stand_are_warnings() {
    let route = |name: &str, matcher: &str| format!("  - {{ name: {name}, match: {matcher}, upstream: orders }}\n");
    let cases = [
        (
            "the same match twice",
            with_route(&(route("a", "{ path_prefix: /api }") + &route("b", "{ path_prefix: /api }"))),
            vec![("routes[1].match", "never matches: routes[0] (\"a\") has the same match and comes first")],
        ),
        (
            "the same match, written another way",
            with_route(
                &(route(
                    "a",
                    "{ hosts: [A.example.com, b.example.com], methods: [get, POST], headers: { X-Env: prod } }",
                ) + &route("b", "{ path_prefix: /x }")
                    + &route(
                        "c",
                        "{ hosts: [b.example.com, a.example.com], methods: [post, GET], headers: { x-env: prod } }",
                    )),
            ),
            vec![("routes[2].match", "never matches: routes[0] (\"a\")")],
        ),
        (
            "a header the gateway never believes",
            with_route(&route("a", "{}")) + "real_ip: { header: x-real-ip }\n",
            vec![("real_ip.header", "has no effect without trusted_proxies")],
        ),
        (
            "removing what the gateway writes anyway",
            with_route(
                "  - { name: a, upstream: orders, request_headers: { remove: [x-debug, Content-Length, te] } }\n",
            ),
            vec![
                ("routes[0].request_headers.remove[1]", "has no effect"),
                ("routes[0].request_headers.remove[2]", "has no effect"),
            ],
        ),
        (
            "hash_on without hash",
            BASE.replace("  - name: orders\n", "  - name: orders\n    hash_on: ip\n") + &route("a", "{}"),
            vec![("upstreams[0].hash_on", "has no effect until balance is hash")],
        ),
        // Near misses: each of these routes can win a request.
        (
            "matches that differ",
            with_route(
                &(route("a", "{ path_prefix: /api }")
                    + &route("b", "{ path: /api }")
                    + &route("c", "{ path_prefix: /api, methods: [GET] }")
                    + &route("d", "{ path_prefix: /api, headers: { x-env: Prod } }")
                    + &route("e", "{ path_prefix: /api, hosts: [a.example.com] }")
                    + &route("f", "{ path_prefix: /API }")),
            ) + "real_ip: { trusted_proxies: [10.0.0.0/8], header: x-real-ip }\n",
            vec![],
        ),
    ];
    for (what, yaml, wanted) in cases {
        let warnings = compiled(&yaml).unwrap_or_else(|errors| panic!("{what}: {errors:?}"));
        assert_eq!(warnings.len(), wanted.len(), "{what}: {warnings:?}");
        for ((path, message), warning) in wanted.iter().zip(&warnings) {
            assert_eq!(warning.path, *path, "{what}: {warning:?}");
            assert!(warning.message.starts_with(message), "{what}: {warning:?}");
        }
    }
}

#[test]
fn the_embedded_default_compiles() {
    let source = Source::embedded();
    let raw = source.parse().unwrap();
    let (targets, metrics) = (Targets::new(1), Metrics::default());
    let snapshot = compile(
        &raw,
        &source.base_dir,
        1,
        &Registries { targets: &targets, metrics: &metrics, waf: &Default::default() },
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
}
