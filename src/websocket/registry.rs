//! Every open WebSocket connection, so that the gateway can close them gently: when their
//! target leaves the config or their route's subsets, when their target stays unhealthy past a
//! grace period, and at shutdown. Closes are spread uniformly at random over the route's
//! `drain` window, so clients reconnect a few at a time instead of all at once.
//!
//! Also holds each route's handshake admission bucket, which survives reloads while its spec
//! is unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Admission, AdmissionSpec, WsPolicy};
use crate::config::Snapshot;
use crate::route::{Action, Route};
use crate::upstream::Target;

struct Entry {
    route: Arc<str>,
    target: Arc<Target>,
    drain: Duration,
    health_grace: Duration,
    unhealthy_since: Option<Instant>,
    close_at: watch::Sender<Option<Instant>>,
}

impl Entry {
    /// Schedules the close at a uniformly random point of the window; once only.
    fn schedule(&self, window: Duration) {
        let offset = window.mul_f64(fastrand::f64());
        self.close_at.send_if_modified(|at| {
            let first = at.is_none();
            if first {
                *at = Some(Instant::now() + offset);
            }
            first
        });
    }

    fn is_scheduled(&self) -> bool {
        self.close_at.borrow().is_some()
    }
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
    admissions: Mutex<HashMap<Arc<str>, Arc<Admission>>>,
}

/// An open connection's place in the registry; dropping it removes the connection.
pub struct Registration {
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection of `route` to `target`; the receiver tells the relay when to close.
    pub fn register(
        self: &Arc<Self>,
        route: Arc<str>,
        target: Arc<Target>,
        policy: &WsPolicy,
    ) -> (Registration, watch::Receiver<Option<Instant>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close_at, receiver) = watch::channel(None);
        let entry = Entry {
            route,
            target,
            drain: policy.drain,
            health_grace: policy.health_grace,
            unhealthy_since: None,
            close_at,
        };
        self.lock().insert(id, entry);
        (Registration { id, registry: self.clone() }, receiver)
    }

    /// Schedules the drain of every connection whose target its route no longer sends new
    /// connections to, or whose target has been unavailable for longer than the grace period.
    pub fn sweep(&self, snapshot: &Snapshot) {
        let routes: HashMap<&str, &Route> = snapshot.router.routes().iter().map(|r| (&*r.name, r)).collect();
        let now = Instant::now();
        let mut open = self.lock();
        let mut drained = 0;
        for entry in open.values_mut().filter(|e| !e.is_scheduled()) {
            let route = routes.get(&*entry.route).copied();
            if let Some(policy) = route.and_then(|r| r.websocket.as_ref()) {
                entry.drain = policy.drain;
                entry.health_grace = policy.health_grace;
            }
            if !route.is_some_and(|r| still_serves(r, &entry.target)) {
                entry.schedule(entry.drain);
                drained += 1;
                continue;
            }
            if entry.target.is_available() {
                entry.unhealthy_since = None;
            } else if now.duration_since(*entry.unhealthy_since.get_or_insert(now)) >= entry.health_grace {
                entry.schedule(entry.drain);
                drained += 1;
            }
        }
        if drained > 0 {
            tracing::info!(connections = drained, "draining WebSocket connections whose target left or failed");
        }
    }

    /// Closes every connection, spread over its route's drain window capped at `at_most`.
    pub fn drain_all(&self, at_most: Duration) {
        for entry in self.lock().values() {
            entry.schedule(entry.drain.min(at_most));
        }
    }

    /// Open connections by route.
    pub fn counts(&self) -> BTreeMap<Arc<str>, usize> {
        let mut counts = BTreeMap::new();
        for entry in self.lock().values() {
            *counts.entry(entry.route.clone()).or_default() += 1;
        }
        counts
    }

    /// The handshake bucket of `route`, kept while its spec stays the same.
    pub fn admission(&self, route: &Arc<str>, spec: AdmissionSpec) -> Arc<Admission> {
        let mut admissions = self.admissions.lock().unwrap_or_else(|e| e.into_inner());
        match admissions.get(route) {
            Some(bucket) if bucket.spec == spec => bucket.clone(),
            _ => {
                let bucket = Arc::new(Admission::new(spec));
                admissions.insert(route.clone(), bucket.clone());
                bucket
            }
        }
    }

    /// `barbican_websocket_connections{route}` in Prometheus text format.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut counts = self.counts();
        for route in snapshot.router.routes().iter().filter(|r| r.websocket.is_some()) {
            counts.entry(route.name.clone()).or_default();
        }
        let mut out = String::from(
            "# HELP barbican_websocket_connections Open WebSocket connections, by route.\n# TYPE barbican_websocket_connections gauge\n",
        );
        for (route, n) in counts {
            let _ = writeln!(
                out,
                "barbican_websocket_connections{{route=\"{}\"}} {n}",
                route.replace(['"', '\\', '\n'], "_")
            );
        }
        out
    }
}

/// Whether an open connection of `route` to `target` may stay. It may while the route still
/// proxies WebSockets to the target's upstream and the target is still in it: a subset flip
/// sends new connections elsewhere but leaves open ones be (blue/green), unless the route asks
/// for `drain_on_subset_change`, when the target must also be in its subset or a canary's.
fn still_serves(route: &Route, target: &Arc<Target>) -> bool {
    let (Action::Proxy(proxy), Some(policy)) = (&route.action, &route.websocket) else {
        return false;
    };
    let members = &proxy.upstream.members;
    if !policy.drain_on_subset_change {
        return members.iter().any(|m| Arc::ptr_eq(&m.target, target));
    }
    std::iter::once(&proxy.backends)
        .chain(proxy.canary.iter().map(|c| &c.backends))
        .flat_map(|set| set.members())
        .any(|&i| Arc::ptr_eq(&members[i].target, target))
}
