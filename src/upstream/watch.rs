//! Background watching of targets: active HTTP health checks and DNS re-resolution.
//!
//! [`Watchers::sync`] runs after every snapshot swap: it starts tasks for new targets, restarts
//! those whose spec changed and stops those that left. Health and addresses live on the
//! [`Target`], so a restarted task picks up where the old one left off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, Request};
use tokio::task::AbortHandle;

use super::pool;
use super::target::{Target, TargetKey};
use super::{HealthCheck, Upstream};
use crate::body::Body;

/// The background tasks of every target, by kind.
#[derive(Default)]
pub struct Watchers {
    health: TaskSet<HealthCheck>,
    dns: TaskSet<Duration>,
}

impl Watchers {
    /// Brings the tasks in line with `upstreams`. Must run inside the control runtime.
    pub fn sync(&self, upstreams: &[Arc<Upstream>]) {
        let mut health = Vec::new();
        let mut dns = Vec::new();
        for upstream in upstreams {
            for member in &upstream.members {
                let target = &member.target;
                match &upstream.health_check {
                    Some(spec) => health.push((target.clone(), spec.clone())),
                    // A check that was removed must not leave its target marked down.
                    None => {
                        target.set_healthy(true);
                    }
                }
                if target.dns_name.is_some() {
                    dns.push((target.clone(), upstream.dns_refresh));
                }
            }
        }
        self.health.sync(health, health_loop);
        self.dns.sync(dns, dns_loop);
    }

    /// Resolves, now, every host-name target that has no address yet.
    pub async fn resolve_unresolved(upstreams: &[Arc<Upstream>]) {
        for upstream in upstreams {
            for member in &upstream.members {
                let target = &member.target;
                if target.dns_name.is_some() && target.addrs().is_empty() {
                    resolve(target).await;
                }
            }
        }
    }

    pub fn stop(&self) {
        self.health.sync(Vec::new(), |_, _| async {});
        self.dns.sync(Vec::new(), |_, _| async {});
    }
}

/// One task per target, restarted when its spec changes.
struct TaskSet<S> {
    tasks: Mutex<HashMap<TargetKey, (S, AbortHandle)>>,
}

impl<S> Default for TaskSet<S> {
    fn default() -> Self {
        Self { tasks: Mutex::new(HashMap::new()) }
    }
}

impl<S: Clone + PartialEq + Send + 'static> TaskSet<S> {
    fn sync<F, Fut>(&self, wanted: Vec<(Arc<Target>, S)>, start: F)
    where
        F: Fn(Arc<Target>, S) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::with_capacity(wanted.len());
        for (target, spec) in wanted {
            let key = target.key.clone();
            match tasks.remove(&key) {
                Some((old, handle)) if old == spec => {
                    next.insert(key, (old, handle));
                }
                previous => {
                    if let Some((_, handle)) = previous {
                        handle.abort();
                    }
                    let handle = tokio::spawn(start(target, spec.clone())).abort_handle();
                    next.insert(key, (spec, handle));
                }
            }
        }
        for (_, (_, handle)) in tasks.drain() {
            handle.abort();
        }
        *tasks = next;
    }
}

async fn health_loop(target: Arc<Target>, spec: HealthCheck) {
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        ticker.tick().await;
        let ok = probe(&target, &spec).await;
        if ok {
            failures = 0;
            successes = successes.saturating_add(1);
            if !target.is_healthy() && successes >= spec.healthy_after && target.set_healthy(true) {
                tracing::info!(upstream = %target.key.upstream, target = %target.key.addr, "target healthy again");
            }
        } else {
            successes = 0;
            failures = failures.saturating_add(1);
            if target.is_healthy() && failures >= spec.unhealthy_after && target.set_healthy(false) {
                tracing::warn!(upstream = %target.key.upstream, target = %target.key.addr, failures, "target unhealthy");
                target.pool.clear();
            }
        }
    }
}

/// One health probe: `GET path` on a fresh connection; any 2xx or 3xx within the timeout passes.
async fn probe(target: &Target, spec: &HealthCheck) -> bool {
    let Some(addr) = target.next_addr() else {
        return false;
    };
    let attempt = async {
        let mut sender = pool::connect(addr).await.ok()?;
        let request = Request::get(spec.path.as_str())
            .header(header::HOST, target.key.addr.as_ref())
            .header(header::USER_AGENT, "barbican-health-check")
            .header(header::CONNECTION, "close")
            .body(Body::empty())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status();
        Some(status.is_success() || status.is_redirection())
    };
    matches!(tokio::time::timeout(spec.timeout, attempt).await, Ok(Some(true)))
}

async fn dns_loop(target: Arc<Target>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        resolve(&target).await;
    }
}

/// Resolves the target's host name; on failure the last good addresses stay in use.
async fn resolve(target: &Target) {
    let Some((host, port)) = &target.dns_name else {
        return;
    };
    match tokio::net::lookup_host((host.as_str(), *port)).await {
        Ok(found) => {
            let mut addrs: Vec<SocketAddr> = found.collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                tracing::warn!(target = %target.key.addr, "DNS returned no address; keeping the last ones");
            } else if *target.addrs() != addrs {
                tracing::info!(target = %target.key.addr, ?addrs, "resolved");
                target.set_addrs(addrs);
            }
        }
        Err(error) => {
            tracing::warn!(target = %target.key.addr, %error, "DNS resolution failed; keeping the last addresses")
        }
    }
}
