//! The configuration file as written: serde types that mirror `reference.yaml` one to one.
//!
//! Every struct denies unknown fields, so a typo is an error with its path, never a silently
//! ignored key. Sections whose capability has not landed yet are accepted here as opaque values
//! and rejected by `compile` with a "not supported yet" error naming their path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::units::{Dur, Size};

/// An opaque YAML value, for sections that `compile` rejects until their capability lands.
pub type Pending = Option<serde_yaml::Value>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    /// Worker threads serving the listeners; default: the CPUs this process may run on.
    pub workers: Option<usize>,
    pub real_ip: Option<RealIp>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub ip_rules: Option<IpRules>,
    pub bot_detect: Option<BotDetect>,
    /// `stdout`, a file path, or absent for no access log.
    pub access_log: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Option<Dur>,

    pub cluster: Pending,
    pub consumers: Pending,
    pub auth: Pending,
    pub tenants: Pending,
    pub rate_limits: Pending,
    pub cc: Pending,
    pub waf: Option<Waf>,
}

/// The WAF: rule sets in SecLang (OWASP CRS loads unchanged) and where matches are logged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    #[serde(default)]
    pub rulesets: BTreeMap<String, WafRuleset>,
    /// One JSON line per request that matched any rule: a file path or `stdout`.
    pub audit_log: Option<String>,
    /// Largest request body the WAF reads; a larger one is refused with 413.
    pub request_body_limit: Option<Size>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafRuleset {
    /// Rule files or globs, read in order after `setup`.
    #[serde(default)]
    pub include: Vec<String>,
    /// SecLang read first (for CRS: its crs-setup.conf).
    pub setup: Option<String>,
    pub paranoia_level: Option<u8>,
    pub inbound_anomaly_threshold: Option<u32>,
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
}

/// A tuning of a rule set, one key each: `{ remove_rule: ID }`, `{ remove_tag: TAG }`, or
/// `{ remove_target: { rule: ID, target: "ARGS:name" } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub remove_rule: Option<u64>,
    pub remove_tag: Option<String>,
    pub remove_target: Option<RemoveTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveTarget {
    pub rule: u64,
    pub target: String,
}

/// A route's WAF: which rule set, and whether it blocks or only detects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWaf {
    pub ruleset: String,
    #[serde(default)]
    pub mode: WafMode,
    /// Whether a block answer lists the ids of the rules that matched.
    #[serde(default)]
    pub expose_rule_ids: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WafMode {
    #[default]
    Block,
    Detect,
    Off,
}

impl RawConfig {
    /// Worker threads to run: as configured, else one per CPU this process may use.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    pub tls: Option<Tls>,
    #[serde(default)]
    pub limits: ListenerLimits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: Option<Size>,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: Option<Size>,
    /// How long a client may take to send a request head, counted from when the connection
    /// is ready for one: it also closes idle keep-alive connections.
    pub header_read_timeout: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificates: Vec<Certificate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub bind: String,
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub name: String,
    pub token_env: String,
    pub role: Role,
}

/// What an admin token may do; each role includes `viewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Security,
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealIp {
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub balance: Balance,
    pub hash_on: Option<String>,
    pub health_check: Option<HealthCheck>,
    pub passive_health: Option<PassiveHealth>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retries: u32,
    /// How often host names in `addr` are resolved again.
    pub dns_refresh: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub addr: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequest,
    Hash,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    /// Consecutive failed connects that eject a target.
    pub failures: Option<u32>,
    /// How long an ejected target is left out before it is tried again.
    pub eject_for: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect: Option<Dur>,
    pub request: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: Match,
    /// Where matched requests go; or, instead, `respond` answers them directly.
    pub upstream: Option<String>,
    pub respond: Option<FixedResponse>,
    #[serde(default)]
    pub subset: BTreeMap<String, String>,
    #[serde(default)]
    pub canary: Vec<Canary>,
    #[serde(default)]
    pub strip_path_prefix: bool,
    #[serde(default)]
    pub request_headers: HeaderEdits,

    pub auth: Pending,
    pub allow_consumers: Pending,
    pub waf: Option<RouteWaf>,
    pub rate_limits: Pending,
    pub cc: Pending,
    pub websocket: Option<WebSocket>,
}

/// A route that accepts WebSocket upgrades.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocket {
    /// Largest message (all its frames together); larger closes the connection with 1009.
    pub max_message: Option<Size>,
    /// No frame either way for this long closes the connection with 1001.
    pub idle_timeout: Option<Dur>,
    /// When a connection's target leaves, it is closed at a random point of this window.
    pub drain: Option<Dur>,
    /// How long a target may fail health checks before its connections are drained.
    pub health_grace: Option<Dur>,
    /// Also drain open connections when a subset change leaves their target out.
    #[serde(default)]
    pub drain_on_subset_change: bool,
    /// New handshakes admitted per second on this route (absent: no cap).
    pub handshakes_per_second: Option<f64>,
    /// Handshakes admitted at once above the rate; default: one second's worth.
    pub handshake_burst: Option<u32>,
    /// How long a handshake may wait for admission before a 503.
    pub handshake_queue: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedResponse {
    #[serde(default = "ok")]
    pub status: u16,
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub hosts: Option<Vec<String>>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    #[serde(rename = "match")]
    pub matcher: Option<CanaryMatch>,
    /// Percent of requests, 0 to 100.
    pub weight: Option<f64>,
    pub subset: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryMatch {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotDetect {
    #[serde(default)]
    pub deny_user_agents: Vec<String>,
    #[serde(default)]
    pub allow_user_agents: Vec<String>,
    #[serde(default)]
    pub block_empty_user_agent: bool,
}
