//! Counters and histograms that outlive config snapshots, rendered in Prometheus text format.
//!
//! Each route's figures live in a [`RouteStats`] that the compiled route holds directly, so the
//! hot path counts with plain atomics and no label lookup. Labels stay bounded: route names,
//! upstream names and target addresses come from the config, never from requests.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Snapshot;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Requests and their durations for one route.
pub struct RouteStats {
    /// Responses by status code, indexed by `code - 100`.
    codes: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            codes: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Some(counter) = status.checked_sub(100).and_then(|i| self.codes.get(usize::from(i))) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&upper| seconds <= upper) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests answered so far, whatever their status.
    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Every metric of one gateway.
pub struct Metrics {
    routes: Mutex<BTreeMap<Arc<str>, Arc<RouteStats>>>,
    /// Requests that matched no route (`route=""`).
    pub unmatched: Arc<RouteStats>,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            routes: Mutex::new(BTreeMap::new()),
            unmatched: Arc::new(RouteStats::new()),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// The stats of route `name`, the same across reloads.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(name.into()).or_insert_with(|| Arc::new(RouteStats::new())).clone()
    }

    pub fn reload(&self, ok: bool) {
        let counter = if ok { &self.reloads_ok } else { &self.reloads_error };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything, with upstream health from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let all: Vec<(&str, &RouteStats)> =
            std::iter::once(("", &*self.unmatched)).chain(routes.iter().map(|(n, s)| (&**n, &**s))).collect();

        header(&mut out, "barbican_requests_total", "counter", "Requests answered, by route and status code.");
        for (route, stats) in &all {
            for (i, counter) in stats.codes.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "barbican_requests_total{{route=\"{}\",code=\"{}\"}} {n}",
                        escape(route),
                        i + 100
                    );
                }
            }
        }

        header(
            &mut out,
            "barbican_request_duration_seconds",
            "histogram",
            "Time from request head to response head, by route.",
        );
        for (route, stats) in &all {
            let route = escape(route);
            let mut cumulative = 0;
            for (upper, bucket) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "barbican_request_duration_seconds_bucket{{route=\"{route}\",le=\"{upper}\"}} {cumulative}"
                );
            }
            let count = stats.count.load(Ordering::Relaxed);
            let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "barbican_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "barbican_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "barbican_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }

        header(
            &mut out,
            "barbican_upstream_healthy",
            "gauge",
            "1 when a target may receive requests (health checked, not ejected, resolved).",
        );
        for upstream in &snapshot.upstreams {
            for member in &upstream.members {
                let _ = writeln!(
                    out,
                    "barbican_upstream_healthy{{upstream=\"{}\",target=\"{}\"}} {}",
                    escape(&upstream.name),
                    escape(&member.target.key.addr),
                    u8::from(member.target.is_available())
                );
            }
        }

        header(
            &mut out,
            "barbican_waf_decisions_total",
            "counter",
            "WAF decisions, by rule set and action (pass, detect, block).",
        );
        for (name, ruleset) in &snapshot.waf.rulesets {
            for (action, n) in ruleset.stats.counts() {
                let _ = writeln!(
                    out,
                    "barbican_waf_decisions_total{{ruleset=\"{}\",action=\"{}\"}} {n}",
                    escape(name),
                    action.as_str()
                );
            }
        }

        header(&mut out, "barbican_config_reloads_total", "counter", "Config reloads, by result.");
        let _ =
            writeln!(out, "barbican_config_reloads_total{{result=\"ok\"}} {}", self.reloads_ok.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "barbican_config_reloads_total{{result=\"error\"}} {}",
            self.reloads_error.load(Ordering::Relaxed)
        );

        header(&mut out, "barbican_config_revision", "gauge", "The config revision now serving.");
        let _ = writeln!(out, "barbican_config_revision {}", snapshot.revision);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_stats_survive_lookups_and_count_codes() {
        let metrics = Metrics::default();
        let a = metrics.route("orders");
        a.observe(200, Duration::from_millis(3));
        a.observe(503, Duration::from_secs(20));
        let again = metrics.route("orders");
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.requests(), 2);
        assert_eq!(a.codes[100].load(Ordering::Relaxed), 1);
        assert_eq!(a.codes[403].load(Ordering::Relaxed), 1);
    }
}
