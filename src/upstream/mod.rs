//! Upstreams: their targets, how one is chosen, how requests reach it, and how its health and
//! addresses are watched.
//!
//! `target` keeps per-target state across reloads, `pool` its idle connections, `balance` picks a
//! target for a request, `proxy` sends the request (timeouts, retries, passive ejection) through
//! `client`, which speaks HTTP/1.1 ([`crate::h1`]) inline in the request's task, and `watch` runs the
//! background tasks: active health checks and DNS re-resolution.

pub mod balance;
pub mod client;
pub mod pool;
pub mod proxy;
pub mod target;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

pub use balance::{BackendSet, Balancer, HashOn, Member, PickInput};
pub use target::{Target, Targets};

/// An upstream as compiled from the config, with its targets' live state attached.
pub struct Upstream {
    pub name: Arc<str>,
    pub members: Vec<Member>,
    pub balancer: Balancer,
    pub health_check: Option<HealthCheck>,
    pub passive: PassiveHealth,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra attempts for idempotent requests, on connect errors and 502/503 answers.
    pub retries: u32,
    pub dns_refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Consecutive failed connects that eject a target.
    pub failures: u32,
    pub eject_for: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self { failures: 1, eject_for: Duration::from_secs(10) }
    }
}
