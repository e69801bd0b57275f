//! The real client address: the peer, or, when the peer is a trusted proxy, the right-most
//! address in `x-forwarded-for` that is not itself a trusted proxy.
//!
//! Never the left-most: anyone can write anything at the left of that header, and only the hops
//! added by proxies we trust can be believed.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::stages::ip_rules::canonical;

#[derive(Debug)]
pub struct RealIp {
    pub trusted: Vec<IpNet>,
    pub header: HeaderName,
}

impl Default for RealIp {
    fn default() -> Self {
        Self { trusted: Vec::new(), header: HeaderName::from_static("x-forwarded-for") }
    }
}

impl RealIp {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        // Later header lines were appended later: walk all hops from the right.
        let hops: Vec<&str> =
            headers.get_all(&self.header).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        return ip;
                    }
                }
                // A hop we cannot read: stop at the last one we could.
                None => return client,
            }
        }
        client
    }
}

/// One `x-forwarded-for` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_ip(trusted: &[&str]) -> RealIp {
        RealIp { trusted: trusted.iter().map(|n| n.parse().unwrap()).collect(), ..Default::default() }
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let r = real_ip(&["10.0.0.0/8"]);
        assert_eq!(
            r.client_ip("198.51.100.7".parse().unwrap(), &headers(&["1.1.1.1"])),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let r = real_ip(&["10.0.0.0/8", "127.0.0.1/32"]);
        let h = headers(&["6.6.6.6, 203.0.113.5", "10.1.2.3"]);
        assert_eq!(r.client_ip("127.0.0.1".parse().unwrap(), &h), "203.0.113.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_stops_the_walk_and_all_trusted_gives_left_most() {
        let r = real_ip(&["10.0.0.0/8"]);
        let h = headers(&["not-an-ip, 10.0.0.2"]);
        assert_eq!(r.client_ip("10.0.0.1".parse().unwrap(), &h), "10.0.0.2".parse::<IpAddr>().unwrap());
        let h = headers(&["10.0.0.3, [::ffff:10.0.0.2]:80"]);
        assert_eq!(r.client_ip("10.0.0.1".parse().unwrap(), &h), "10.0.0.3".parse::<IpAddr>().unwrap());
    }
}
