//! `RawConfig` → [`Snapshot`]: every check the config needs, all errors collected with their
//! paths, warnings for settings that have no effect, and live state (targets, route counters)
//! attached from the registries so that a reload keeps what it does not change.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use regex::Regex;

use super::raw::{self, RawConfig};
use super::{ConfigError, Limits, ListenerSpec, Snapshot};
use crate::access_log::LogTarget;
use crate::admin::{AdminSpec, Token};
use crate::metrics::Metrics;
use crate::real_ip::RealIp;
use crate::route::{canary::CanaryWhen, Action, CanaryRule, Fixed, HostMatch, PathMatch, Proxy, Route, Router};
use crate::secret::Secret;
use crate::server::tls;
use crate::stages::bot::BotRules;
use crate::stages::ip_rules::IpRules;
use crate::upstream::{BackendSet, Balancer, HashOn, HealthCheck, Member, PassiveHealth, Targets, Upstream};
use crate::waf::{RoutePolicy, WafConfig};
use crate::websocket::{AdmissionSpec, WsPolicy};

/// The live state a compiled snapshot attaches to.
pub struct Registries<'a> {
    pub targets: &'a Targets,
    pub metrics: &'a Metrics,
    pub waf: &'a crate::waf::Rulesets,
}

/// Compiles `raw` (relative paths against `base_dir`) into revision `revision`.
pub fn compile(
    raw: &RawConfig,
    base_dir: &Path,
    revision: u64,
    registries: &Registries<'_>,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut cx = Compiler {
        errors: Vec::new(),
        warnings: Vec::new(),
        broken: Broken::default(),
        files: Vec::new(),
        base_dir,
        registries,
    };
    cx.reject_pending(raw);
    let workers = cx.workers(raw.worker_count());
    let listeners = cx.listeners(&raw.listeners);
    let admin = raw.admin.as_ref().and_then(|a| cx.admin(a));
    let real_ip = raw.real_ip.as_ref().map(|r| cx.real_ip(r)).unwrap_or_default();
    let upstreams = cx.upstreams(&raw.upstreams);
    let waf = cx.waf(raw.waf.as_ref());
    let routes = cx.routes(&raw.routes, &upstreams, &waf);
    let ip_rules = raw.ip_rules.as_ref().map(|r| cx.ip_rules(r)).unwrap_or_default();
    let bot = raw.bot_detect.as_ref().map(|b| cx.bot(b)).unwrap_or_default();
    let access_log = raw.access_log.as_deref().map(|target| cx.log_target(target));
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Snapshot {
        revision,
        workers,
        listeners,
        admin,
        real_ip,
        router: Router::new(routes),
        upstreams,
        ip_rules,
        bot,
        access_log,
        waf,
        shutdown_timeout: raw.shutdown_timeout.map_or(Duration::from_secs(30), |d| d.0),
        files: cx.files,
        warnings: cx.warnings,
    })
}

struct Compiler<'a> {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    broken: Broken,
    files: Vec<std::path::PathBuf>,
    base_dir: &'a Path,
    registries: &'a Registries<'a>,
}

/// Upstreams and WAF rule sets that are declared but did not compile. Their own errors say
/// why; a route naming one gets no second error claiming that it does not exist.
#[derive(Default)]
struct Broken {
    upstreams: HashSet<String>,
    rulesets: HashSet<String>,
}

impl Compiler<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// A setting that loads but does nothing where it stands: the config still applies.
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError::new(path, message));
    }

    /// `Ok` of the value, or the error recorded at `path` and `None`.
    fn check<T>(&mut self, path: impl FnOnce() -> String, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(path(), message)).ok()
    }

    fn reject_pending(&mut self, raw: &RawConfig) {
        let sections = [
            ("cluster", &raw.cluster),
            ("consumers", &raw.consumers),
            ("auth", &raw.auth),
            ("tenants", &raw.tenants),
            ("rate_limits", &raw.rate_limits),
            ("cc", &raw.cc),
        ];
        for (name, value) in sections {
            if value.is_some() {
                self.error(name, "not supported yet by this version of barbican; remove the section");
            }
        }
        for (i, route) in raw.routes.iter().enumerate() {
            let keys = [
                ("auth", &route.auth),
                ("allow_consumers", &route.allow_consumers),
                ("rate_limits", &route.rate_limits),
                ("cc", &route.cc),
            ];
            for (key, value) in keys {
                if value.is_some() {
                    self.error(
                        format!("routes[{i}].{key}"),
                        "not supported yet by this version of barbican; remove the key",
                    );
                }
            }
        }
    }

    fn workers(&mut self, workers: usize) -> usize {
        if !(1..=1024).contains(&workers) {
            self.error("workers", "must be between 1 and 1024");
        }
        workers
    }

    fn listeners(&mut self, raw: &[raw::Listener]) -> Vec<ListenerSpec> {
        let mut names = HashSet::new();
        let mut binds = HashSet::new();
        let mut out = Vec::new();
        for (i, listener) in raw.iter().enumerate() {
            let path = format!("listeners[{i}]");
            if !names.insert(listener.name.as_str()) {
                self.error(format!("{path}.name"), format!("another listener is named {:?}", listener.name));
            }
            let bind = self.check(|| format!("{path}.bind"), parse_bind(&listener.bind));
            if let Some(bind) = bind {
                if bind.port() != 0 && !binds.insert(bind) {
                    self.error(format!("{path}.bind"), format!("{bind} is bound by another listener"));
                }
            }
            let tls = listener.tls.as_ref().and_then(|tls| {
                if tls.certificates.is_empty() {
                    self.error(format!("{path}.tls.certificates"), "needs at least one certificate");
                    return None;
                }
                let pairs: Vec<_> = tls
                    .certificates
                    .iter()
                    .map(|c| (self.base_dir.join(&c.cert), self.base_dir.join(&c.key)))
                    .collect();
                self.files.extend(pairs.iter().flat_map(|(cert, key)| [cert.clone(), key.clone()]));
                self.check(|| format!("{path}.tls.certificates"), tls::server_config(&pairs))
            });
            let limits = self.limits(&path, &listener.limits);
            if let Some(bind) = bind {
                out.push(ListenerSpec { name: listener.name.clone(), bind, tls, limits });
            }
        }
        out
    }

    fn limits(&mut self, path: &str, raw: &raw::ListenerLimits) -> Limits {
        let default = Limits::default();
        let limits = Limits {
            max_header_bytes: raw.max_header_bytes.map_or(default.max_header_bytes, |s| s.0 as usize),
            max_body_bytes: raw.max_body_bytes.map_or(default.max_body_bytes, |s| s.0),
            header_read_timeout: raw.header_read_timeout.map_or(default.header_read_timeout, |d| d.0),
        };
        if !(1024..=1 << 20).contains(&limits.max_header_bytes) {
            self.error(format!("{path}.limits.max_header_bytes"), "must be between 1KiB and 1MiB");
        }
        if limits.header_read_timeout.is_zero() {
            self.error(format!("{path}.limits.header_read_timeout"), "must be more than zero");
        }
        limits
    }

    fn admin(&mut self, raw: &raw::Admin) -> Option<AdminSpec> {
        let bind = self.check(|| "admin.bind".into(), parse_bind(&raw.bind));
        let mut tokens = Vec::new();
        for (i, token) in raw.tokens.iter().enumerate() {
            let secret = self.check(|| format!("admin.tokens[{i}].token_env"), Secret::from_env(&token.token_env));
            if let Some(secret) = secret {
                tokens.push(Token { name: token.name.clone(), secret, role: token.role });
            }
        }
        Some(AdminSpec { bind: bind?, tokens })
    }

    fn real_ip(&mut self, raw: &raw::RealIp) -> RealIp {
        let trusted = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, net)| self.check(|| format!("real_ip.trusted_proxies[{i}]"), parse_net(net)))
            .collect();
        let header = match &raw.header {
            Some(name) => self.check(|| "real_ip.header".into(), parse_header_name(name)),
            None => None,
        };
        if header.is_some() && raw.trusted_proxies.is_empty() {
            self.warn("real_ip.header", "has no effect without trusted_proxies: the client IP is the peer's address");
        }
        let default = RealIp::default();
        RealIp { trusted, header: header.unwrap_or(default.header) }
    }

    fn upstreams(&mut self, raw: &[raw::Upstream]) -> Vec<Arc<Upstream>> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, up) in raw.iter().enumerate() {
            let path = format!("upstreams[{i}]");
            if !names.insert(up.name.as_str()) {
                self.error(format!("{path}.name"), format!("another upstream is named {:?}", up.name));
            }
            match self.upstream(&path, up) {
                Some(upstream) => out.push(Arc::new(upstream)),
                None => {
                    self.broken.upstreams.insert(up.name.clone());
                }
            }
        }
        out
    }

    fn upstream(&mut self, path: &str, raw: &raw::Upstream) -> Option<Upstream> {
        let errors_before = self.errors.len();
        if raw.targets.is_empty() {
            self.error(format!("{path}.targets"), "needs at least one target");
        }
        let mut addrs = HashSet::new();
        let mut members = Vec::new();
        for (j, t) in raw.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{j}]");
            if !addrs.insert(t.addr.as_str()) {
                self.error(format!("{tpath}.addr"), format!("{} is listed twice", t.addr));
            }
            if !(1..=10_000).contains(&t.weight) {
                self.error(format!("{tpath}.weight"), "must be between 1 and 10000");
            }
            if let Some(target) =
                self.check(|| format!("{tpath}.addr"), self.registries.targets.get_or_create(&raw.name, &t.addr))
            {
                members.push(Member::new(target, t.weight, t.labels.clone()));
            }
        }
        let hash_on = raw.hash_on.as_ref().and_then(|on| self.check(|| format!("{path}.hash_on"), parse_hash_on(on)));
        // Kept, and checked, for when the upstream turns to `balance: hash`.
        if hash_on.is_some() && !matches!(raw.balance, raw::Balance::Hash) {
            self.warn(format!("{path}.hash_on"), "has no effect until balance is hash");
        }
        let balancer = match raw.balance {
            raw::Balance::RoundRobin => Balancer::RoundRobin,
            raw::Balance::LeastRequest => Balancer::LeastRequest,
            raw::Balance::Hash => Balancer::Hash(hash_on.unwrap_or(HashOn::Ip)),
        };
        let health_check = raw.health_check.as_ref().map(|hc| {
            let check = HealthCheck {
                path: hc.path.clone(),
                interval: hc.interval.map_or(Duration::from_secs(5), |d| d.0),
                timeout: hc.timeout.map_or(Duration::from_secs(2), |d| d.0),
                unhealthy_after: hc.unhealthy_after.unwrap_or(3),
                healthy_after: hc.healthy_after.unwrap_or(2),
            };
            if !check.path.starts_with('/') || check.path.parse::<http::uri::PathAndQuery>().is_err() {
                self.error(format!("{path}.health_check.path"), "must be a path starting with /");
            }
            if check.interval < Duration::from_millis(10) || check.timeout.is_zero() {
                self.error(format!("{path}.health_check"), "interval must be at least 10ms and timeout more than zero");
            }
            if check.unhealthy_after == 0 || check.healthy_after == 0 {
                self.error(format!("{path}.health_check"), "unhealthy_after and healthy_after must be at least 1");
            }
            check
        });
        let passive = raw.passive_health.as_ref().map_or(PassiveHealth::default(), |p| {
            let default = PassiveHealth::default();
            let passive = PassiveHealth {
                failures: p.failures.unwrap_or(default.failures),
                eject_for: p.eject_for.map_or(default.eject_for, |d| d.0),
            };
            if passive.failures == 0 {
                self.error(format!("{path}.passive_health.failures"), "must be at least 1");
            }
            passive
        });
        let connect_timeout = raw.timeouts.connect.map_or(Duration::from_secs(5), |d| d.0);
        let request_timeout = raw.timeouts.request.map_or(Duration::from_secs(60), |d| d.0);
        if connect_timeout.is_zero() || request_timeout.is_zero() {
            self.error(format!("{path}.timeouts"), "timeouts must be more than zero");
        }
        if raw.retries > 10 {
            self.error(format!("{path}.retries"), "must be at most 10");
        }
        let dns_refresh = raw.dns_refresh.map_or(Duration::from_secs(30), |d| d.0);
        if dns_refresh < Duration::from_secs(1) {
            self.error(format!("{path}.dns_refresh"), "must be at least 1s");
        }
        (self.errors.len() == errors_before).then(|| Upstream {
            name: raw.name.as_str().into(),
            members,
            balancer,
            health_check,
            passive,
            connect_timeout,
            request_timeout,
            retries: raw.retries,
            dns_refresh,
        })
    }

    fn routes(&mut self, raw: &[raw::Route], upstreams: &[Arc<Upstream>], waf: &WafConfig) -> Vec<Route> {
        let mut names = HashSet::new();
        let mut matches: HashMap<MatchKey, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, route) in raw.iter().enumerate() {
            let path = format!("routes[{i}]");
            if !names.insert(route.name.as_str()) {
                self.error(format!("{path}.name"), format!("another route is named {:?}", route.name));
            }
            // Equal matches tie, and file order breaks ties: the later route never wins.
            match matches.entry(MatchKey::of(&route.matcher)) {
                Entry::Occupied(first) => {
                    let first = *first.get();
                    let message = format!(
                        "never matches: routes[{first}] ({:?}) has the same match and comes first",
                        raw[first].name
                    );
                    self.warn(format!("{path}.match"), message);
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            if let Some(route) = self.route(&path, route, upstreams, waf) {
                out.push(route);
            }
        }
        out
    }

    fn route(&mut self, path: &str, raw: &raw::Route, upstreams: &[Arc<Upstream>], waf: &WafConfig) -> Option<Route> {
        let errors_before = self.errors.len();
        let m = &raw.matcher;
        let hosts: Vec<HostMatch> = m
            .hosts
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(j, h)| self.check(|| format!("{path}.match.hosts[{j}]"), HostMatch::parse(h)))
            .collect();
        if m.hosts.as_ref().is_some_and(Vec::is_empty) {
            self.error(format!("{path}.match.hosts"), "is empty; leave it out to match any host");
        }
        let path_match = match (&m.path, &m.path_prefix, &m.path_regex) {
            (None, None, None) => PathMatch::Any,
            (Some(p), None, None) => {
                self.check_path(&format!("{path}.match.path"), p);
                PathMatch::Exact(p.clone())
            }
            (None, Some(p), None) => {
                self.check_path(&format!("{path}.match.path_prefix"), p);
                PathMatch::Prefix(p.clone())
            }
            (None, None, Some(re)) => match Regex::new(re) {
                Ok(re) => PathMatch::Regex(re),
                Err(e) => {
                    self.error(format!("{path}.match.path_regex"), format!("invalid regex: {e}"));
                    PathMatch::Any
                }
            },
            _ => {
                self.error(format!("{path}.match"), "use only one of path, path_prefix and path_regex");
                PathMatch::Any
            }
        };
        let methods = m.methods.as_ref().map(|methods| {
            methods
                .iter()
                .enumerate()
                .filter_map(|(j, name)| {
                    let parsed = Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("{name:?} is not an HTTP method"));
                    self.check(|| format!("{path}.match.methods[{j}]"), parsed)
                })
                .collect::<Vec<_>>()
        });
        let headers = self.header_matches(&format!("{path}.match.headers"), &m.headers);
        if raw.strip_path_prefix && !matches!(path_match, PathMatch::Prefix(_)) {
            self.error(format!("{path}.strip_path_prefix"), "needs match.path_prefix");
        }
        let set_headers = self.header_matches(&format!("{path}.request_headers.set"), &raw.request_headers.set);
        let remove_headers = raw
            .request_headers
            .remove
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                let name = self.check(|| format!("{path}.request_headers.remove[{j}]"), parse_header_name(name))?;
                if gateway_writes(&name) {
                    let at = format!("{path}.request_headers.remove[{j}]");
                    self.warn(at, "has no effect: the gateway writes the framing and connection headers for each hop");
                }
                Some(name)
            })
            .collect();
        // The framing and the connection headers are written by the gateway for each hop: a
        // `content-length` of the route's would tell the upstream to wait for a body that is
        // not there, or take the next request as this one's.
        for (name, _) in set_headers.iter().filter(|(name, _)| gateway_writes(name)) {
            let at = format!("{path}.request_headers.set.{name}");
            self.error(at, "cannot be set: the gateway writes the framing and connection headers for each hop");
        }

        let action = match (&raw.upstream, &raw.respond) {
            (Some(name), None) => self.proxy(path, raw, name, upstreams),
            (None, Some(fixed)) => self.fixed(path, fixed),
            _ => {
                self.error(path, "needs exactly one of upstream and respond");
                None
            }
        };
        if raw.respond.is_some() && (!raw.subset.is_empty() || !raw.canary.is_empty()) {
            self.error(path, "subset and canary need an upstream, not respond");
        }
        let route_waf = raw.waf.as_ref().and_then(|w| match waf.rulesets.get(&w.ruleset) {
            Some(ruleset) => {
                Some(RoutePolicy { ruleset: ruleset.clone(), mode: w.mode, expose_rule_ids: w.expose_rule_ids })
            }
            None => {
                if !self.broken.rulesets.contains(&w.ruleset) {
                    self.error(format!("{path}.waf.ruleset"), format!("no WAF rule set named {:?}", w.ruleset));
                }
                None
            }
        });
        let action = action?;
        (self.errors.len() == errors_before).then(|| Route {
            name: raw.name.as_str().into(),
            hosts,
            path: path_match,
            methods,
            headers,
            waf: route_waf,
            websocket: raw.websocket.as_ref().and_then(|ws| self.websocket(path, ws)),
            action,
            strip_path_prefix: raw.strip_path_prefix,
            set_headers,
            remove_headers,
            stats: self.registries.metrics.route(&raw.name),
        })
    }

    fn proxy(&mut self, path: &str, raw: &raw::Route, name: &str, upstreams: &[Arc<Upstream>]) -> Option<Action> {
        let Some(upstream) = upstreams.iter().find(|u| *u.name == *name) else {
            if !self.broken.upstreams.contains(name) {
                self.error(format!("{path}.upstream"), format!("no upstream named {name:?}"));
            }
            return None;
        };
        let backends = self.backend_set(&format!("{path}.subset"), upstream, &raw.subset);
        let mut canary = Vec::new();
        let mut total_weight = 0.0;
        for (j, rule) in raw.canary.iter().enumerate() {
            let cpath = format!("{path}.canary[{j}]");
            let when = match (&rule.matcher, rule.weight) {
                (Some(matcher), None) => {
                    if matcher.headers.is_empty() {
                        self.error(format!("{cpath}.match.headers"), "needs at least one header");
                    }
                    CanaryWhen::Headers(self.header_matches(&format!("{cpath}.match.headers"), &matcher.headers))
                }
                (None, Some(weight)) if (0.0..=100.0).contains(&weight) => {
                    total_weight += weight;
                    CanaryWhen::Weight((weight * 100.0).round() as u32)
                }
                (None, Some(_)) => {
                    self.error(format!("{cpath}.weight"), "must be a percentage from 0 to 100");
                    continue;
                }
                _ => {
                    self.error(cpath, "needs exactly one of match and weight");
                    continue;
                }
            };
            if rule.subset.is_empty() {
                self.error(format!("{cpath}.subset"), "needs at least one label");
            }
            let backends = self.backend_set(&format!("{cpath}.subset"), upstream, &rule.subset);
            canary.push(CanaryRule { when, backends });
        }
        if total_weight > 100.0 {
            self.error(format!("{path}.canary"), format!("weights add up to {total_weight}%, more than 100%"));
        }
        Some(Action::Proxy(Proxy { upstream: upstream.clone(), backends, canary }))
    }

    fn fixed(&mut self, path: &str, raw: &raw::FixedResponse) -> Option<Action> {
        let status = self.check(
            || format!("{path}.respond.status"),
            StatusCode::from_u16(raw.status).map_err(|_| "is not an HTTP status".into()),
        );
        let content_type = raw.content_type.as_deref().unwrap_or("text/plain; charset=utf-8");
        let content_type = self.check(
            || format!("{path}.respond.content_type"),
            HeaderValue::from_str(content_type).map_err(|_| "is not a valid header value".into()),
        );
        Some(Action::Respond(Fixed { status: status?, content_type: content_type?, body: raw.body.clone().into() }))
    }

    fn websocket(&mut self, path: &str, raw: &raw::WebSocket) -> Option<Arc<WsPolicy>> {
        let policy = WsPolicy {
            max_message: raw.max_message.map_or(1 << 20, |s| s.0),
            idle_timeout: raw.idle_timeout.map_or(Duration::from_secs(300), |d| d.0),
            drain: raw.drain.map_or(Duration::from_secs(60), |d| d.0),
            health_grace: raw.health_grace.map_or(Duration::from_secs(10), |d| d.0),
            drain_on_subset_change: raw.drain_on_subset_change,
            admission: raw.handshakes_per_second.map(|per_second| AdmissionSpec {
                per_second,
                burst: f64::from(raw.handshake_burst.unwrap_or(per_second.ceil().max(1.0) as u32)),
                queue: raw.handshake_queue.map_or(Duration::from_secs(1), |d| d.0),
            }),
        };
        if policy.max_message == 0 || policy.idle_timeout.is_zero() {
            self.error(format!("{path}.websocket"), "max_message and idle_timeout must be more than zero");
        }
        if raw.handshakes_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            self.error(format!("{path}.websocket.handshakes_per_second"), "must be a positive number");
        }
        if raw.handshake_burst == Some(0) {
            self.error(format!("{path}.websocket.handshake_burst"), "must be at least 1");
        }
        Some(Arc::new(policy))
    }

    fn waf(&mut self, raw: Option<&raw::Waf>) -> WafConfig {
        let Some(raw) = raw else {
            return WafConfig::default();
        };
        let request_body_limit = raw.request_body_limit.map_or(crate::waf::DEFAULT_BODY_LIMIT, |s| s.0);
        let mut rulesets = BTreeMap::new();
        for (name, spec) in &raw.rulesets {
            if let Some(level) = spec.paranoia_level.filter(|l| !(1..=4).contains(l)) {
                self.error(format!("waf.rulesets.{name}.paranoia_level"), format!("{level} is not 1 to 4"));
            }
            for i in crate::waf::malformed_exclusions(&spec.exclusions) {
                self.error(
                    format!("waf.rulesets.{name}.exclusions[{i}]"),
                    "needs exactly one of remove_rule, remove_tag and remove_target",
                );
            }
            if spec.include.is_empty() && spec.setup.is_none() {
                self.error(format!("waf.rulesets.{name}.include"), "needs at least one rule file");
                self.broken.rulesets.insert(name.clone());
                continue;
            }
            match self.registries.waf.build(name, spec, self.base_dir, request_body_limit) {
                Ok(built) => {
                    self.files.extend(built.files);
                    rulesets.insert(name.clone(), built.ruleset);
                }
                Err(errors) => {
                    for error in errors {
                        self.error(format!("waf.rulesets.{name}"), error);
                    }
                    self.broken.rulesets.insert(name.clone());
                }
            }
        }
        let audit_log = raw.audit_log.as_deref().map(|target| self.log_target(target));
        WafConfig { rulesets, audit_log, request_body_limit, ..WafConfig::default() }
    }

    fn log_target(&self, target: &str) -> LogTarget {
        match target {
            "stdout" | "-" => LogTarget::Stdout,
            path => LogTarget::File(self.base_dir.join(path)),
        }
    }

    fn check_path(&mut self, at: &str, path: &str) {
        if !path.starts_with('/') {
            self.error(at, format!("{path:?} must start with /"));
        }
    }

    /// Header names and values, each checked (for matches and for `request_headers.set`).
    fn header_matches(&mut self, at: &str, raw: &BTreeMap<String, String>) -> Vec<(HeaderName, HeaderValue)> {
        raw.iter()
            .filter_map(|(name, value)| {
                let hpath = format!("{at}.{name}");
                let name = self.check(|| hpath.clone(), parse_header_name(name))?;
                let value = self.check(
                    || hpath,
                    HeaderValue::from_str(value).map_err(|_| "is not a valid header value".to_string()),
                )?;
                Some((name, value))
            })
            .collect()
    }

    fn backend_set(&mut self, at: &str, upstream: &Upstream, subset: &BTreeMap<String, String>) -> BackendSet {
        let set = BackendSet::select(&upstream.members, subset);
        if set.is_empty() {
            self.error(at, format!("selects no target of upstream {:?}", upstream.name));
        }
        set
    }

    fn ip_rules(&mut self, raw: &raw::IpRules) -> IpRules {
        let mut parse = |list: &[String], key: &str| -> Vec<IpNet> {
            list.iter()
                .enumerate()
                .filter_map(|(i, net)| self.check(|| format!("ip_rules.{key}[{i}]"), parse_net(net)))
                .collect()
        };
        let deny = parse(&raw.deny, "deny");
        let allow = parse(&raw.allow, "allow");
        IpRules { deny, allow }
    }

    fn bot(&mut self, raw: &raw::BotDetect) -> BotRules {
        let mut set = |patterns: &[String], key: &str| {
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = regex::bytes::Regex::new(p) {
                    self.error(format!("bot_detect.{key}[{i}]"), format!("invalid regex: {e}"));
                }
            }
            regex::bytes::RegexSet::new(patterns).unwrap_or_else(|_| regex::bytes::RegexSet::empty())
        };
        BotRules {
            deny: set(&raw.deny_user_agents, "deny_user_agents"),
            allow: set(&raw.allow_user_agents, "allow_user_agents"),
            block_empty: raw.block_empty_user_agent,
        }
    }
}

fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:8080 or [::]:8443"))
}

/// A CIDR (`10.0.0.0/8`) or a single address (`192.0.2.1`).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an IP address or CIDR"))
}

fn parse_header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))
}

/// What a route's match takes, written one way: host names and methods in any case and
/// order, header names in any case.
#[derive(PartialEq, Eq, Hash)]
struct MatchKey {
    hosts: Option<BTreeSet<String>>,
    paths: [Option<String>; 3],
    methods: Option<BTreeSet<String>>,
    headers: BTreeMap<String, String>,
}

impl MatchKey {
    fn of(m: &raw::Match) -> Self {
        let folded = |list: &Option<Vec<String>>, upper: bool| {
            list.as_ref().map(|items| {
                items
                    .iter()
                    .map(|i| if upper { i.to_ascii_uppercase() } else { i.trim().to_ascii_lowercase() })
                    .collect()
            })
        };
        Self {
            hosts: folded(&m.hosts, false),
            paths: [m.path.clone(), m.path_prefix.clone(), m.path_regex.clone()],
            methods: folded(&m.methods, true),
            headers: m.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.clone())).collect(),
        }
    }
}

/// Headers the gateway writes itself on the way upstream, never as a route edits them.
fn gateway_writes(name: &HeaderName) -> bool {
    *name == http::header::CONTENT_LENGTH || crate::pipeline::HOP_BY_HOP.contains(name)
}

fn parse_hash_on(text: &str) -> Result<HashOn, String> {
    match text.split_once(':') {
        None if text == "ip" => Ok(HashOn::Ip),
        Some(("header", name)) => parse_header_name(name).map(HashOn::Header),
        Some(("cookie", name)) if !name.is_empty() => Ok(HashOn::Cookie(name.to_string())),
        _ => Err(format!("{text:?} is not ip, header:NAME or cookie:NAME")),
    }
}

#[cfg(test)]
mod tests;
