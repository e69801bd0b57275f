//! Configuration: the YAML file (`raw`), its units (`units`), and the immutable [`Snapshot`] that
//! `compile` makes of it. Only snapshots reach the data plane; one validating constructor serves
//! start-up, reloads and `barbican validate`.

pub mod compile;
pub mod raw;
#[cfg(any(test, fuzzing))]
pub mod robustness;
pub mod units;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use compile::{compile, Registries};
pub use raw::RawConfig;

use crate::access_log::LogTarget;
use crate::admin::AdminSpec;
use crate::real_ip::RealIp;
use crate::route::Router;
use crate::stages::bot::BotRules;
use crate::stages::ip_rules::IpRules;
use crate::upstream::Upstream;

/// The configuration served when `barbican run` is given no `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("embedded.yaml");

/// One problem in a config, located by its field path (`routes[2].upstream`) or file position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config's text and the folder its relative paths resolve against.
#[derive(Debug, Clone)]
pub struct Source {
    pub text: String,
    pub base_dir: PathBuf,
    /// The file it came from, if any: watched and re-read on reload.
    pub file: Option<PathBuf>,
}

impl Source {
    pub fn embedded() -> Self {
        Self { text: EMBEDDED_DEFAULT.to_string(), base_dir: PathBuf::from("."), file: None }
    }

    pub fn read(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))])?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        Ok(Self { text, base_dir, file: Some(path.to_path_buf()) })
    }

    /// Reads the file again, for a reload.
    pub fn reread(&self) -> Result<Self, Vec<ConfigError>> {
        match &self.file {
            Some(path) => Self::read(path),
            None => Ok(self.clone()),
        }
    }

    /// Parses the YAML; an unknown key or a wrong type is an error naming its field path.
    pub fn parse(&self) -> Result<RawConfig, Vec<ConfigError>> {
        let origin = self.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "config".into());
        let deserializer = serde_yaml::Deserializer::from_str(&self.text);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let location =
                inner.location().map(|l| format!(" (at {origin}:{}:{})", l.line(), l.column())).unwrap_or_default();
            let path = if path == "." { String::new() } else { path };
            let message = inner.to_string();
            let message = message.strip_prefix(&format!("{path}: ")).unwrap_or(&message);
            vec![ConfigError::new(path, format!("{message}{location}"))]
        })
    }
}

/// An immutable, compiled configuration. Requests load one and use it to the end.
pub struct Snapshot {
    pub revision: u64,
    pub workers: usize,
    pub listeners: Vec<ListenerSpec>,
    pub admin: Option<AdminSpec>,
    pub real_ip: RealIp,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub ip_rules: IpRules,
    pub bot: BotRules,
    pub access_log: Option<LogTarget>,
    pub waf: crate::waf::WafConfig,
    pub shutdown_timeout: Duration,
    /// Files besides the config file that this snapshot was built from (certificates, keys):
    /// a change to any of them reloads the config.
    pub files: Vec<PathBuf>,
    /// Settings that loaded but have no effect where they stand, logged when the snapshot is
    /// applied and printed by `barbican validate`.
    pub warnings: Vec<ConfigError>,
}

impl Snapshot {
    /// Serves nothing; what a gateway holds before its first config is applied.
    pub fn empty() -> Self {
        Self {
            revision: 0,
            workers: 1,
            listeners: Vec::new(),
            admin: None,
            real_ip: RealIp::default(),
            router: Router::new(Vec::new()),
            upstreams: Vec::new(),
            ip_rules: IpRules::default(),
            bot: BotRules::default(),
            access_log: None,
            waf: crate::waf::WafConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// A listening socket and how connections on it are served.
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// Also the idle timeout of keep-alive connections.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything `barbican validate` checks: the file parses and compiles (certificates, regexes,
/// secrets in the environment), without binding or starting anything. `Ok` holds the
/// warnings.
pub fn check(path: &Path) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    validate(&Source::read(path)?)
}

/// [`check`] on a config's text.
pub fn validate(source: &Source) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    compiles(&source.parse()?, &source.base_dir)
}

/// Whether a parsed config compiles, with registries of its own (nothing is shared with a
/// running gateway); `Ok` holds the warnings.
fn compiles(raw: &RawConfig, base_dir: &Path) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    let targets = crate::upstream::Targets::new(1);
    let metrics = crate::metrics::Metrics::default();
    let waf = crate::waf::Rulesets::default();
    compile(raw, base_dir, 1, &Registries { targets: &targets, metrics: &metrics, waf: &waf }).map(|s| s.warnings)
}
