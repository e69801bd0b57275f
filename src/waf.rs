//! The gateway side of the WAF: rule sets built from the config, the per-route policy, the
//! decision counters and the audit log record. The engine itself (SecLang, evaluation) is the
//! pure crate `barbican-waf`; the stage that runs it is `stages::waf`.
//!
//! A rule set is read in this order: Barbican's engine settings (`rules/engine.conf`, built
//! in), the rule set's `setup`, the paranoia level and anomaly threshold from the config, the
//! `include`d rule files, then the `exclusions` (as `SecRuleRemove*` / `SecRuleUpdateTarget*`).
//! Compiling CRS takes a moment, so a compiled rule set is kept and reused by later configs
//! while its text and every file it read are unchanged; a reload that touches no rule file
//! costs nothing, and editing a rule file recompiles that rule set alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use barbican_waf::seclang::Loader;
use barbican_waf::RuleSet;
use serde::Serialize;

use crate::access_log::LogTarget;
use crate::config::raw::{self, Exclusion, WafMode};

const ENGINE_SETTINGS: &str = include_str!("../rules/engine.conf");

/// A compiled rule set as routes use it.
pub struct WafRuleset {
    pub name: Arc<str>,
    pub rules: Arc<RuleSet>,
    pub stats: Arc<WafStats>,
}

/// A route's WAF.
pub struct RoutePolicy {
    pub ruleset: Arc<WafRuleset>,
    pub mode: WafMode,
    pub expose_rule_ids: bool,
}

/// The WAF part of a snapshot.
pub struct WafConfig {
    pub rulesets: BTreeMap<String, Arc<WafRuleset>>,
    pub audit_log: Option<LogTarget>,
    pub request_body_limit: u64,
    /// The open audit log, set when the snapshot is applied.
    pub audit: std::sync::OnceLock<Arc<crate::access_log::Sink>>,
}

/// Request bodies the WAF reads by default.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            rulesets: BTreeMap::new(),
            audit_log: None,
            request_body_limit: DEFAULT_BODY_LIMIT,
            audit: std::sync::OnceLock::new(),
        }
    }
}

/// Decisions of one rule set, for `barbican_waf_decisions_total{ruleset,action}`.
#[derive(Default)]
pub struct WafStats {
    pass: AtomicU64,
    detect: AtomicU64,
    block: AtomicU64,
}

/// What the WAF did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    /// The rules would block, and the route only detects.
    Detect,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Detect => "detect",
            Action::Block => "block",
        }
    }
}

impl WafStats {
    pub fn count(&self, action: Action) {
        let counter = match action {
            Action::Pass => &self.pass,
            Action::Detect => &self.detect,
            Action::Block => &self.block,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> [(Action, u64); 3] {
        [
            (Action::Pass, self.pass.load(Ordering::Relaxed)),
            (Action::Detect, self.detect.load(Ordering::Relaxed)),
            (Action::Block, self.block.load(Ordering::Relaxed)),
        ]
    }
}

/// A file a compiled rule set was read from, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok();
    FileStamp {
        path: path.to_path_buf(),
        modified: meta.as_ref().and_then(|m| m.modified().ok()),
        len: meta.map_or(0, |m| m.len()),
    }
}

struct Cached {
    text: String,
    files: Vec<FileStamp>,
    rules: Arc<RuleSet>,
    stats: Arc<WafStats>,
}

/// Compiled rule sets by name, reused while nothing they were built from changed.
#[derive(Default)]
pub struct Rulesets {
    cached: Mutex<HashMap<String, Cached>>,
}

/// A rule set ready for a snapshot, and the files to watch for it.
pub struct Built {
    pub ruleset: Arc<WafRuleset>,
    pub files: Vec<PathBuf>,
}

impl Rulesets {
    /// Builds rule set `name` from `spec` (paths against `base_dir`), or reuses the last build.
    /// Errors are `file:line:col: message` lines.
    pub fn build(
        &self,
        name: &str,
        spec: &raw::WafRuleset,
        base_dir: &Path,
        body_limit: u64,
    ) -> Result<Built, Vec<String>> {
        let text = preamble(spec, body_limit);
        let includes: Vec<PathBuf> = spec.include.iter().map(|p| base_dir.join(p)).collect();
        let setup = spec.setup.as_ref().map(|p| base_dir.join(p));
        let key_text =
            format!("{text}\n#setup {setup:?}\n#include {includes:?}\n#after {}", exclusions(&spec.exclusions));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cached.get(name) {
            if hit.text == key_text
                && hit.files.iter().all(|f| stamp(&f.path) == *f)
                && still_expands(&includes, &hit.files)
            {
                return Ok(Built {
                    ruleset: Arc::new(WafRuleset {
                        name: name.into(),
                        rules: hit.rules.clone(),
                        stats: hit.stats.clone(),
                    }),
                    files: hit.files.iter().map(|f| f.path.clone()).collect(),
                });
            }
        }
        let origin = base_dir.join(format!("<waf.rulesets.{name}>"));
        let mut loader = Loader::new();
        loader.load_str(&origin, &text);
        if let Some(setup) = &setup {
            loader.load_file(setup);
        }
        for include in &includes {
            loader.load_file(include);
        }
        loader.load_str(&origin, &exclusions(&spec.exclusions));
        let loaded = loader.finish().map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        // Stamped before compiling, so that a file edited during the compile is stale next time.
        let files: Vec<FileStamp> =
            loaded.files.iter().chain(loaded.data_files.keys()).filter(|p| p.is_file()).map(|p| stamp(p)).collect();
        let started = std::time::Instant::now();
        let rules = Arc::new(RuleSet::compile(&loaded));
        for fallback in rules.fallbacks() {
            tracing::info!(
                ruleset = name,
                rule = fallback.rule_id,
                prefilter = fallback.prefilter,
                "pattern runs on the backtracking engine"
            );
        }
        for unsupported in rules.unsupported() {
            tracing::warn!(ruleset = name, rule = unsupported.rule_id, reason = %unsupported.reason, "rule part not supported; it never matches");
        }
        tracing::info!(ruleset = name, rules = rules.rule_count(), elapsed = ?started.elapsed(), "WAF rule set compiled");
        let stats = cached.get(name).map(|c| c.stats.clone()).unwrap_or_default();
        let built = Built {
            ruleset: Arc::new(WafRuleset { name: name.into(), rules: rules.clone(), stats: stats.clone() }),
            files: files.iter().map(|f| f.path.clone()).collect(),
        };
        cached.insert(name.to_string(), Cached { text: key_text, files, rules, stats });
        Ok(built)
    }
}

/// Whether the include globs still match only files the cached build read (a new file that
/// a glob now matches must rebuild).
fn still_expands(includes: &[PathBuf], files: &[FileStamp]) -> bool {
    includes.iter().all(|pattern| {
        barbican_waf::seclang::loader::expand(pattern)
            .map(|paths| paths.iter().all(|p| files.iter().any(|f| f.path == *p)))
            .unwrap_or(false)
    })
}

/// The engine settings and the config's tuning, as SecLang read before the rule files.
fn preamble(spec: &raw::WafRuleset, body_limit: u64) -> String {
    let mut text = String::from(ENGINE_SETTINGS);
    text.push_str(&format!("\nSecRequestBodyLimit {body_limit}\nSecRequestBodyNoFilesLimit {body_limit}\n"));
    // Set before CRS's initialization rules run, which keep values already set.
    if let Some(level) = spec.paranoia_level {
        text.push_str(&format!(
            "SecAction \"id:9990001,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level={level},setvar:tx.paranoia_level={level}\"\n"
        ));
    }
    if let Some(threshold) = spec.inbound_anomaly_threshold {
        text.push_str(&format!(
            "SecAction \"id:9990002,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold={threshold}\"\n"
        ));
    }
    text
}

/// The exclusions as SecLang; one that is not exactly one kind is a config error (see `check`).
fn exclusions(exclusions: &[Exclusion]) -> String {
    let quote = |text: &str| text.replace('"', "\\\"");
    let mut text = String::new();
    for exclusion in exclusions {
        if let Some(id) = exclusion.remove_rule {
            text.push_str(&format!("SecRuleRemoveById {id}\n"));
        }
        if let Some(tag) = &exclusion.remove_tag {
            text.push_str(&format!("SecRuleRemoveByTag \"{}\"\n", quote(tag)));
        }
        if let Some(target) = &exclusion.remove_target {
            text.push_str(&format!("SecRuleUpdateTargetById {} \"!{}\"\n", target.rule, quote(&target.target)));
        }
    }
    text
}

/// Exclusions that are not exactly one of `remove_rule`, `remove_tag`, `remove_target`.
pub fn malformed_exclusions(exclusions: &[Exclusion]) -> Vec<usize> {
    exclusions
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            usize::from(e.remove_rule.is_some())
                + usize::from(e.remove_tag.is_some())
                + usize::from(e.remove_target.is_some())
                != 1
        })
        .map(|(i, _)| i)
        .collect()
}

/// One audit-log line: a request that matched any rule (in its request or its response).
#[derive(Serialize)]
pub struct AuditRecord<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub client_ip: std::net::IpAddr,
    pub route: &'a str,
    pub tenant: Option<&'a str>,
    pub method: &'a str,
    pub uri: &'a str,
    pub ruleset: &'a str,
    pub matched: Vec<AuditMatch<'a>>,
    /// The inbound (request) anomaly score.
    pub anomaly_score: i64,
    /// The outbound (response) anomaly score.
    pub outbound_anomaly_score: i64,
    /// Set when a limit, not a rule, refused: `response_body_limit` (`SecResponseBodyLimitAction
    /// Reject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub action: &'static str,
}

#[derive(Serialize)]
pub struct AuditMatch<'a> {
    pub id: u64,
    /// 1 and 2 for the request, 3 and 4 for the response, 5 for logging.
    pub phase: u8,
    pub msg: &'a str,
    pub data: &'a str,
    pub severity: Option<u8>,
}

impl<'a> AuditMatch<'a> {
    pub fn of(rule: &'a barbican_waf::MatchedRule) -> Self {
        Self {
            id: rule.id,
            phase: rule.phase,
            msg: &rule.msg,
            data: &rule.data,
            severity: rule.severity.map(|s| s.number()),
        }
    }
}
