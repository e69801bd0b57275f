//! Barbican: a security-edge gateway.
//!
//! ```text
//!             ┌──────────── server: listeners, TLS (SNI, ALPN), HTTP/1.1 + HTTP/2, workers ───────────┐
//! client ──▶  │ pipeline: head limits → route → body limit → ip rules → bot → … → upstream::proxy     │ ──▶ upstream
//!             └──────────────── config::Snapshot (immutable, swapped whole on reload) ─────────────────┘
//!                         admin: /healthz /readyz /metrics     upstream::watch: health checks, DNS
//! ```
//!
//! A request loads the current [`config::Snapshot`] once and keeps it to the end; state that
//! must outlive snapshots (targets' health and pools, route counters) lives in registries that
//! compiled snapshots attach to by name.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod config;
pub mod deadline;
pub mod h1;
pub mod metrics;
pub mod pipeline;
pub mod real_ip;
pub mod respond;
pub mod route;
pub mod secret;
pub mod server;
pub mod stages;
pub mod upstream;
pub mod waf;
pub mod websocket;

/// mimalloc rather than the system allocator: the proxy path allocates and frees buffers, header
/// maps and bodies on every request, and glibc's malloc cost about 8 % of the throughput of plain
/// proxying (bench/proxy.sh). Set in the library, so that tests and benches run on the
/// allocator the binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use config::{ConfigError, Source};
pub use server::{Gateway, StartError};
