//! Routing: which route a request belongs to, and which backend set (main subset or a canary)
//! serves it.
//!
//! Precedence is by specificity, not by order in the file: an exact host beats a wildcard host
//! (a longer wildcard beats a shorter one), which beats a route for any host; within those, an
//! exact path beats a regex, which beats a prefix (a longer prefix a shorter one), as in nginx;
//! then routes with more header and method conditions win; the file order breaks what is left.
//! Paths are matched normalized ([`path`]).

pub mod canary;
pub mod path;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;

pub use canary::CanaryRule;

use crate::metrics::RouteStats;
use crate::upstream::{BackendSet, Upstream};

#[derive(Debug)]
pub enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }

    /// Higher is more specific.
    fn rank(&self) -> (u8, usize) {
        match self {
            PathMatch::Exact(p) => (3, p.len()),
            PathMatch::Regex(_) => (2, 0),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::Any => (0, 0),
        }
    }
}

/// A compiled route.
pub struct Route {
    pub name: Arc<str>,
    pub hosts: Vec<HostMatch>,
    pub path: PathMatch,
    pub methods: Option<Vec<Method>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub action: Action,
    /// The route's WAF rule set and mode.
    pub waf: Option<crate::waf::RoutePolicy>,
    /// Set when the route accepts WebSocket upgrades.
    pub websocket: Option<Arc<crate::websocket::WsPolicy>>,
    pub strip_path_prefix: bool,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub stats: Arc<RouteStats>,
}

impl Route {
    fn matches(&self, path: &str, method: &Method, headers: &HeaderMap) -> bool {
        self.path.matches(path)
            && self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.headers.iter().all(|(name, value)| headers.get(name) == Some(value))
    }

    /// The path to send upstream: with `strip_path_prefix`, the matched prefix is removed.
    pub fn upstream_path<'p>(&self, path: &'p str) -> std::borrow::Cow<'p, str> {
        match &self.path {
            PathMatch::Prefix(prefix) if self.strip_path_prefix => {
                let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
                if rest.starts_with('/') {
                    rest.into()
                } else {
                    format!("/{rest}").into()
                }
            }
            _ => path.into(),
        }
    }

    fn specificity(&self) -> impl Ord {
        (self.path.rank(), self.headers.len(), self.methods.is_some())
    }
}

/// What a route does with the requests it matches.
pub enum Action {
    Proxy(Proxy),
    /// Answer with a fixed response (a built-in page, a maintenance notice).
    Respond(Fixed),
}

pub struct Proxy {
    pub upstream: Arc<Upstream>,
    pub backends: BackendSet,
    pub canary: Vec<CanaryRule>,
}

impl Proxy {
    /// The backend set for this request: the first canary rule that takes it, else the route's.
    pub fn backends_for(&self, headers: &HeaderMap) -> &BackendSet {
        canary::choose(&self.canary, headers).unwrap_or(&self.backends)
    }
}

pub struct Fixed {
    pub status: http::StatusCode,
    pub content_type: HeaderValue,
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: any host ending so (at any depth).
    Wildcard(String),
}

impl HostMatch {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let lower = pattern.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("{pattern:?} is not a host name or a *.wildcard"));
        }
        Ok(if wild { HostMatch::Wildcard(format!(".{name}")) } else { HostMatch::Exact(name.to_string()) })
    }
}

/// All routes, indexed by host for matching.
pub struct Router {
    routes: Vec<Route>,
    exact: HashMap<String, Vec<usize>>,
    /// By suffix, longest first.
    wildcard: Vec<(String, Vec<usize>)>,
    any_host: Vec<usize>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_host = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            if route.hosts.is_empty() {
                any_host.push(i);
            }
            for host in &route.hosts {
                match host {
                    HostMatch::Exact(h) => exact.entry(h.clone()).or_default().push(i),
                    HostMatch::Wildcard(suffix) => wildcard.entry(suffix.clone()).or_default().push(i),
                }
            }
        }
        let by_specificity = |bucket: &mut Vec<usize>| {
            bucket.dedup();
            // Stable: file order breaks ties.
            bucket.sort_by(|&a, &b| routes[b].specificity().cmp(&routes[a].specificity()));
        };
        exact.values_mut().for_each(by_specificity);
        wildcard.values_mut().for_each(by_specificity);
        by_specificity(&mut any_host);
        let mut wildcard: Vec<(String, Vec<usize>)> = wildcard.into_iter().collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { routes, exact, wildcard, any_host }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for a request; `host` is already lower-case without its port.
    pub fn find(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> Option<&Route> {
        let exact = self.exact.get(host).into_iter();
        let wild = self
            .wildcard
            .iter()
            .filter(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, bucket)| bucket);
        exact
            .chain(wild)
            .chain(std::iter::once(&self.any_host))
            .flat_map(|bucket| bucket.iter())
            .map(|&i| &self.routes[i])
            .find(|route| route.matches(path, method, headers))
    }
}

/// The request's host, lower-case, without port or trailing dot: from the URI authority
/// (HTTP/2, absolute-form) or else the `host` header. Borrowed unless it had upper case.
pub fn request_host<'r>(uri: &'r http::Uri, headers: &'r HeaderMap) -> std::borrow::Cow<'r, str> {
    let raw = uri
        .authority()
        .map(|a| a.host())
        .or_else(|| headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let without_port = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        // A byte search: the `char` one cost more than the rest of this function.
        raw.bytes().rposition(|b| b == b':').map_or(raw, |colon| &raw[..colon])
    };
    let host = without_port.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_validated() {
        assert_eq!(HostMatch::parse("API.Example.com").unwrap(), HostMatch::Exact("api.example.com".into()));
        assert_eq!(HostMatch::parse("*.example.com").unwrap(), HostMatch::Wildcard(".example.com".into()));
        assert!(HostMatch::parse("*").is_err());
        assert!(HostMatch::parse("a..b").is_err());
        assert!(HostMatch::parse("a b").is_err());
    }

    #[test]
    fn request_host_drops_port_and_case() {
        let headers = HeaderMap::new();
        let uri: http::Uri = "https://API.example.com:8443/x".parse().unwrap();
        assert_eq!(request_host(&uri, &headers), "api.example.com");
        let mut headers = HeaderMap::new();
        headers.insert("host", "Shop.Example.com.:80".parse().unwrap());
        assert_eq!(request_host(&"/x".parse().unwrap(), &headers), "shop.example.com");
        headers.insert("host", "[::1]:8080".parse().unwrap());
        assert_eq!(request_host(&"/x".parse().unwrap(), &headers), "[::1]");
    }
}
