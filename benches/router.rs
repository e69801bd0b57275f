//! Route matching: `Router::find` over a 200-route table shaped like a multi-tenant edge.
//!
//! The table is written as YAML and compiled through the public config API, so it is exactly
//! what `barbican run` would serve. It mixes exact tenant hosts (prefix and exact paths), one- and
//! two-level wildcard hosts, routes for any host (prefixes, regexes, header and method conditions)
//! and a catch-all. Each case is checked for the route it must find before it is measured, so
//! `cargo bench --bench router -- --test` also checks the precedence rules.
//!
//! Run with `cargo bench --bench router`; compare against a saved baseline with
//! `-- --save-baseline main` and `-- --baseline main`.

use std::hint::black_box;
use std::path::PathBuf;

use barbican::config::{compile, Registries, Snapshot, Source};
use barbican::metrics::Metrics;
use barbican::upstream::Targets;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, Method};

const TENANTS: usize = 30;
const SHOPS: usize = 15;
const SERVICES: usize = 20;
const BETA_TENANTS: usize = 10;
const ROUTES: usize = 200;

/// The YAML of the table: `ROUTES` routes, most specific kinds first, the catch-all last.
fn table() -> String {
    let mut y = String::from(
        "upstreams:\n\
         \x20 - { name: api, targets: [{ addr: 10.0.0.1:8080 }, { addr: 10.0.0.2:8080 }] }\n\
         \x20 - { name: web, targets: [{ addr: 10.0.1.1:8080 }] }\n\
         \x20 - { name: legacy, targets: [{ addr: 10.0.2.1:8080 }] }\n\
         routes:\n",
    );
    let mut routes: Vec<String> = Vec::with_capacity(ROUTES);
    // Exact hosts: each tenant has its API under /v1/ and a health page at an exact path.
    for t in 0..TENANTS {
        routes.push(format!(
            "  - {{ name: tenant{t}-api, match: {{ hosts: [tenant{t}.api.example.com], path_prefix: /v1/ }}, \
                 upstream: api, strip_path_prefix: true }}\n"
        ));
        routes.push(format!(
            "  - {{ name: tenant{t}-health, match: {{ hosts: [tenant{t}.api.example.com], path: /v1/health }}, \
                 respond: {{ body: ok }} }}\n"
        ));
    }
    // Wildcard hosts: each shop's storefront, with its cart limited to GET and POST.
    for s in 0..SHOPS {
        routes.push(format!(
            "  - {{ name: shop{s}-cart, match: {{ hosts: ['*.shop{s}.example.net'], path_prefix: /cart/, \
                 methods: [GET, POST] }}, upstream: web }}\n"
        ));
        routes.push(format!(
            "  - {{ name: shop{s}-store, match: {{ hosts: ['*.shop{s}.example.net'], path_prefix: / }}, \
                 upstream: web }}\n"
        ));
    }
    // A two-level wildcard that must beat the shorter one above.
    routes.push(
        "  - { name: eu-shop3, match: { hosts: ['*.eu.shop3.example.net'], path_prefix: / }, upstream: legacy }\n"
            .into(),
    );
    // Any host: regexes for item pages with numeric ids.
    for k in 0..SERVICES {
        routes.push(format!(
            "  - {{ name: svc{k}-items, match: {{ path_regex: '^/svc{k}/items/[0-9]+(/reviews)?$' }}, \
                 upstream: api }}\n"
        ));
    }
    // Any host: a beta API chosen by header.
    for k in 0..BETA_TENANTS {
        routes.push(format!(
            "  - {{ name: beta-t{k}, match: {{ path_prefix: /beta/, headers: {{ x-tenant: t{k} }} }}, \
                 upstream: api }}\n"
        ));
    }
    // Any host: versioned API resources and static assets, until the table is full.
    let resources = ["orders", "users", "invoices", "products", "carts", "payments", "reports", "search"];
    let mut n = 0;
    while routes.len() < ROUTES - 1 {
        let text = if n % 4 == 3 {
            format!("  - {{ name: static-{n}, match: {{ path_prefix: /static/{n}/ }}, upstream: legacy }}\n")
        } else {
            let (version, resource) = (n % 3 + 1, resources[n % resources.len()]);
            format!(
                "  - {{ name: api-v{version}-{resource}-{n}, match: {{ path_prefix: /api/v{version}/{resource}{n}/ }}, \
                 upstream: api }}\n"
            )
        };
        routes.push(text);
        n += 1;
    }
    // No path condition rather than `path_prefix: /`: any prefix, even `/`, outranks a regex.
    routes.push("  - { name: catch-all, upstream: web }\n".into());
    y.push_str(&routes.concat());
    y
}

fn snapshot() -> Snapshot {
    let base_dir = PathBuf::from(".");
    let source = Source { text: table(), base_dir: base_dir.clone(), file: None };
    let raw = source.parse().unwrap_or_else(|errors| panic!("the table does not parse: {errors:?}"));
    let targets = Targets::new(1);
    let metrics = Metrics::default();
    let snapshot =
        compile(&raw, &base_dir, 1, &Registries { targets: &targets, metrics: &metrics, waf: &Default::default() })
            .unwrap_or_else(|errors| panic!("the table does not compile: {errors:?}"));
    assert_eq!(snapshot.router.routes().len(), ROUTES);
    snapshot
}

/// One lookup and the route it must find.
struct Case {
    name: &'static str,
    host: &'static str,
    path: &'static str,
    headers: HeaderMap,
    expect: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |name, host, path, expect| Case { name, host, path, headers: HeaderMap::new(), expect };
    let mut beta = HeaderMap::new();
    beta.insert("x-tenant", HeaderValue::from_static("t7"));
    vec![
        case("exact host, prefix", "tenant17.api.example.com", "/v1/accounts/991", "tenant17-api"),
        case("exact host, exact path", "tenant17.api.example.com", "/v1/health", "tenant17-health"),
        case("exact host, falls to any host", "tenant3.api.example.com", "/static/7/app.js", "static-7"),
        case("wildcard host, prefix and method", "www.shop9.example.net", "/cart/items", "shop9-cart"),
        case("longer wildcard wins", "m.eu.shop3.example.net", "/cart/items", "eu-shop3"),
        case("any host, prefix", "gateway.example.org", "/api/v2/users1/42", "api-v2-users-1"),
        case("any host, regex", "gateway.example.org", "/svc13/items/42/reviews", "svc13-items"),
        Case {
            name: "any host, header",
            host: "gateway.example.org",
            path: "/beta/feature",
            headers: beta,
            expect: "beta-t7",
        },
        case("unknown host, catch-all", "unknown.example.org", "/nothing/here", "catch-all"),
    ]
}

fn find(c: &mut Criterion) {
    let snapshot = snapshot();
    let router = &snapshot.router;
    let cases = cases();
    for case in &cases {
        let found = router.find(case.host, case.path, &Method::GET, &case.headers).map(|r| &*r.name);
        assert_eq!(found, Some(case.expect), "{}: {} {}", case.name, case.host, case.path);
    }

    let mut group = c.benchmark_group("router/find");
    for case in &cases {
        group.bench_function(case.name, |b| {
            b.iter(|| router.find(black_box(case.host), black_box(case.path), &Method::GET, &case.headers))
        });
    }
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.bench_function("all cases", |b| {
        b.iter(|| {
            for case in &cases {
                black_box(router.find(black_box(case.host), black_box(case.path), &Method::GET, &case.headers));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, find);
criterion_main!(benches);
