//! One backend address and the state that outlives config snapshots: resolved addresses, active
//! and passive health, requests in flight, and the idle connection pool.
//!
//! Targets live in [`Targets`], keyed by upstream name and configured address, so a reload that
//! keeps a target keeps its health and its pooled connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::pool::Pool;

/// Identifies a target across snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub upstream: Arc<str>,
    pub addr: Arc<str>,
}

/// Runtime state of one target, shared by every worker.
pub struct Target {
    pub key: TargetKey,
    /// Host name and port when `addr` names a host that DNS resolves; `None` for an IP literal.
    pub dns_name: Option<(String, u16)>,
    addrs: ArcSwap<Vec<SocketAddr>>,
    next_addr: AtomicUsize,
    healthy: AtomicBool,
    born: Instant,
    ejected_until_ms: AtomicU64,
    connect_failures: AtomicU32,
    in_flight: AtomicU32,
    pub pool: Pool,
}

impl Target {
    fn new(key: TargetKey, dns_name: Option<(String, u16)>, addrs: Vec<SocketAddr>, workers: usize) -> Self {
        Self {
            key,
            dns_name,
            addrs: ArcSwap::from_pointee(addrs),
            next_addr: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            born: Instant::now(),
            ejected_until_ms: AtomicU64::new(0),
            connect_failures: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            pool: Pool::new(workers),
        }
    }

    /// Healthy by the active check, not ejected by the passive one, and resolved.
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected() && !self.addrs.load().is_empty()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Counts a failed connect; ejects the target for `eject_for` once `threshold` failures
    /// follow each other. Returns true when this failure ejected it. Failures of connects
    /// that were under way when it was ejected count for nothing: they neither eject it again
    /// nor start the count towards the next ejection.
    pub fn connect_failed(&self, threshold: u32, eject_for: Duration) -> bool {
        if self.is_ejected() {
            return false;
        }
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= threshold {
            self.connect_failures.store(0, Ordering::Relaxed);
            let until = self.now_ms() + eject_for.as_millis() as u64;
            self.ejected_until_ms.store(until.max(1), Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn connect_succeeded(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
    }

    /// The next address to connect to, rotating over what DNS returned.
    pub fn next_addr(&self) -> Option<SocketAddr> {
        self.connect_order().into_iter().next()
    }

    /// Every address, starting at the next in rotation: try them in this order.
    pub fn connect_order(&self) -> Vec<SocketAddr> {
        let addrs = self.addrs.load();
        if addrs.len() <= 1 {
            return addrs.to_vec();
        }
        let start = self.next_addr.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs[start..].iter().chain(&addrs[..start]).copied().collect()
    }

    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.load_full()
    }

    pub fn set_addrs(&self, addrs: Vec<SocketAddr>) {
        self.addrs.store(Arc::new(addrs));
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks one request in flight until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight to a target; dropping it ends the request.
pub struct InFlight(Arc<Target>);

impl InFlight {
    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every live target, keyed so that reloads find the state of targets they keep.
pub struct Targets {
    workers: usize,
    by_key: Mutex<HashMap<TargetKey, Weak<Target>>>,
}

impl Targets {
    pub fn new(workers: usize) -> Self {
        Self { workers: workers.max(1), by_key: Mutex::new(HashMap::new()) }
    }

    /// The target for `key`, reusing live state; a new target starts healthy. `addr` is parsed
    /// as `ip:port`, else as `host:port` resolved now and then again by the DNS refresher.
    pub fn get_or_create(&self, upstream: &str, addr: &str) -> Result<Arc<Target>, String> {
        let key = TargetKey { upstream: upstream.into(), addr: addr.into() };
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let (dns_name, addrs) = match addr.parse::<SocketAddr>() {
            Ok(ip) => (None, vec![ip]),
            Err(_) => {
                let (host, port) = split_host_port(addr)?;
                (Some((host.to_string(), port)), Vec::new())
            }
        };
        let target = Arc::new(Target::new(key.clone(), dns_name, addrs, self.workers));
        map.retain(|_, t| t.strong_count() > 0);
        map.insert(key, Arc::downgrade(&target));
        Ok(target)
    }
}

/// Splits `host:port`, rejecting what cannot be an address.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{addr:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if !valid {
        return Err(format!("{addr:?} has an invalid host name"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_kept_while_a_snapshot_holds_the_target() {
        let targets = Targets::new(1);
        let a = targets.get_or_create("orders", "127.0.0.1:9001").unwrap();
        a.set_healthy(false);
        let again = targets.get_or_create("orders", "127.0.0.1:9001").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!again.is_healthy());
        let other = targets.get_or_create("billing", "127.0.0.1:9001").unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
    }

    #[test]
    fn ejection_follows_consecutive_failures() {
        let targets = Targets::new(1);
        let t = targets.get_or_create("u", "127.0.0.1:1").unwrap();
        assert!(!t.connect_failed(2, Duration::from_secs(10)));
        assert!(t.is_available());
        assert!(t.connect_failed(2, Duration::from_secs(10)));
        assert!(!t.is_available());
        // Connects that were under way fail too: the target is ejected once, not again.
        for _ in 0..31 {
            assert!(!t.connect_failed(2, Duration::from_secs(10)));
        }
    }

    #[test]
    fn host_names_are_checked() {
        assert!(split_host_port("backend.internal:8080").is_ok());
        assert!(split_host_port("backend.internal").is_err());
        assert!(split_host_port("bad host:80").is_err());
        assert!(split_host_port("x:99999").is_err());
    }
}
