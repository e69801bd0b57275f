//! IP rules: client addresses that are denied, and, when an allow list is set, the only ones
//! that may pass. Checked first because it is the cheapest refusal there is.

use std::net::IpAddr;

use http::Request;
use ipnet::IpNet;

use super::{Exchange, Stage, Verdict};
use crate::body::Body;
use crate::respond::Rejection;

#[derive(Debug, Default)]
pub struct IpRules {
    pub deny: Vec<IpNet>,
    /// Non-empty: only these may pass.
    pub allow: Vec<IpNet>,
}

impl IpRules {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Stage for IpRules {
    async fn check(&self, _request: &mut Request<Body>, exchange: &mut Exchange<'_>) -> Verdict {
        if self.permits(exchange.client_ip) {
            Verdict::Continue
        } else {
            exchange.reject(Rejection::IpDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_allow_restricts() {
        let rules = IpRules {
            deny: vec!["203.0.113.0/24".parse().unwrap()],
            allow: vec!["203.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(!rules.permits("203.0.113.9".parse().unwrap()));
        assert!(rules.permits("203.1.1.1".parse().unwrap()));
        assert!(!rules.permits("198.51.100.1".parse().unwrap()));
        assert!(!rules.permits("::ffff:203.0.113.9".parse().unwrap()));
        assert!(rules.permits("::1".parse().unwrap()));
    }
}
