//! Choosing a target among a route's backend set: weighted round robin, least request, and
//! consistent hashing on the client IP, a header or a cookie.
//!
//! A [`BackendSet`] is computed when the config compiles (the upstream's targets filtered by a
//! subset's labels); per request only availability is checked, so picking never allocates.
//! Hashing is rendezvous (highest random weight): adding a target moves only the keys that the
//! new target wins, and an unavailable target's keys spread over the rest.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::header::{HeaderName, COOKIE};
use http::HeaderMap;

use super::target::Target;

/// A target as one upstream uses it.
pub struct Member {
    pub target: Arc<Target>,
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    /// Stable hash of the target's address, for rendezvous hashing.
    addr_hash: u64,
}

impl Member {
    pub fn new(target: Arc<Target>, weight: u32, labels: BTreeMap<String, String>) -> Self {
        let addr_hash = fnv1a(target.key.addr.as_bytes());
        Self { target, weight, labels, addr_hash }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Ip,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balancer {
    RoundRobin,
    LeastRequest,
    Hash(HashOn),
}

/// The members a route (or one of its canary rules) may send to.
pub struct BackendSet {
    /// Indices into the upstream's members.
    members: Vec<usize>,
    /// Smooth weighted round-robin order over `members` (positions in `members`).
    wheel: Vec<u32>,
    next: AtomicUsize,
}

impl BackendSet {
    /// The members whose labels include every `subset` label.
    pub fn select(all: &[Member], subset: &BTreeMap<String, String>) -> Self {
        let members: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, m)| subset.iter().all(|(k, v)| m.labels.get(k) == Some(v)))
            .map(|(i, _)| i)
            .collect();
        let weights: Vec<u32> = members.iter().map(|&i| all[i].weight).collect();
        Self { wheel: smooth_wheel(&weights), members, next: AtomicUsize::new(fastrand::usize(..1024)) }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> &[usize] {
        &self.members
    }
}

/// What a balancer needs to know of a request: for hashing, the hash of its key.
pub struct PickInput {
    key: u64,
}

impl PickInput {
    pub fn new(balancer: &Balancer, client_ip: IpAddr, headers: &HeaderMap) -> Self {
        let key = match balancer {
            Balancer::Hash(on) => hash_key(on, client_ip, headers),
            _ => 0,
        };
        Self { key }
    }
}

impl Balancer {
    /// Picks an available member of `set`, skipping those in `tried`; `None` when none is left.
    pub fn pick(&self, all: &[Member], set: &BackendSet, input: &PickInput, tried: &[usize]) -> Option<usize> {
        let usable = |i: usize| all[i].target.is_available() && !tried.contains(&i);
        match self {
            Balancer::RoundRobin => {
                let len = set.wheel.len();
                if len == 0 {
                    return None;
                }
                let start = set.next.fetch_add(1, Ordering::Relaxed);
                (0..len).map(|step| set.members[set.wheel[(start + step) % len] as usize]).find(|&i| usable(i))
            }
            Balancer::LeastRequest => {
                let mut best: Option<(usize, u64)> = None;
                // Start at a random member so that ties do not all go to the first one.
                let n = set.members.len();
                let offset = if n > 1 { fastrand::usize(..n) } else { 0 };
                for step in 0..n {
                    let i = set.members[(offset + step) % n];
                    if !usable(i) {
                        continue;
                    }
                    // Load per unit of weight, scaled to stay in integers.
                    let load = (u64::from(all[i].target.in_flight()) + 1) * 1_000_000 / u64::from(all[i].weight.max(1));
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                best.map(|(i, _)| i)
            }
            Balancer::Hash(_) => {
                let key = input.key;
                set.members.iter().copied().filter(|&i| usable(i)).max_by(|&a, &b| {
                    rendezvous_score(key, &all[a])
                        .partial_cmp(&rendezvous_score(key, &all[b]))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
            }
        }
    }
}

/// The hash of what the request is pinned by; a request without the header or cookie falls back
/// to its client IP, so it still sticks somewhere.
fn hash_key(on: &HashOn, client_ip: IpAddr, headers: &HeaderMap) -> u64 {
    let found = match on {
        HashOn::Ip => None,
        HashOn::Header(name) => headers.get(name).map(|v| fnv1a(v.as_bytes())),
        HashOn::Cookie(name) => cookie(headers, name).map(fnv1a),
    };
    found.unwrap_or_else(|| match client_ip {
        IpAddr::V4(ip) => fnv1a(&ip.octets()),
        IpAddr::V6(ip) => fnv1a(&ip.octets()),
    })
}

/// The value of cookie `name`, from any `cookie` header.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1) from the key and target.
fn rendezvous_score(key: u64, member: &Member) -> f64 {
    let mixed = splitmix64(key ^ member.addr_hash);
    let unit = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(member.weight.max(1)) / unit.ln()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The smooth weighted round-robin order (nginx's): targets interleave in proportion to their
/// weights instead of running in bursts. Weights are reduced by their common divisor first.
fn smooth_wheel(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    // Bound the wheel: beyond this length, proportions are kept to within 0.01 %.
    let total_capped = total.min(10_000);
    let mut current = vec![0i64; weights.len()];
    let mut wheel = Vec::with_capacity(total_capped as usize);
    for _ in 0..total_capped {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        wheel.push(best as u32);
    }
    wheel
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::target::Targets;

    fn members(weights: &[u32]) -> Vec<Member> {
        let targets = Targets::new(1);
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let t = targets.get_or_create("u", &format!("127.0.0.1:{}", 9000 + i)).unwrap();
                Member::new(t, w, BTreeMap::new())
            })
            .collect()
    }

    fn input(headers: &HeaderMap) -> PickInput {
        let on = Balancer::Hash(HashOn::Header(HeaderName::from_static("x-user-id")));
        PickInput::new(&on, "10.0.0.1".parse().unwrap(), headers)
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        let all = members(&[3, 1]);
        let set = BackendSet::select(&all, &BTreeMap::new());
        let headers = HeaderMap::new();
        let picks: Vec<usize> =
            (0..8).map(|_| Balancer::RoundRobin.pick(&all, &set, &input(&headers), &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
        // Smooth: the light target is never picked twice in a row.
        assert!(picks.windows(2).all(|w| !(w[0] == 1 && w[1] == 1)));
    }

    #[test]
    fn unavailable_and_tried_targets_are_skipped() {
        let all = members(&[1, 1, 1]);
        let set = BackendSet::select(&all, &BTreeMap::new());
        all[0].target.set_healthy(false);
        let headers = HeaderMap::new();
        for _ in 0..10 {
            let pick = Balancer::RoundRobin.pick(&all, &set, &input(&headers), &[1]).unwrap();
            assert_eq!(pick, 2);
        }
        all[2].target.set_healthy(false);
        assert_eq!(Balancer::RoundRobin.pick(&all, &set, &input(&headers), &[1]), None);
    }

    #[test]
    fn subsets_select_by_labels() {
        let targets = Targets::new(1);
        let mk = |port: u16, stage: &str| {
            let t = targets.get_or_create("u", &format!("127.0.0.1:{port}")).unwrap();
            Member::new(t, 1, BTreeMap::from([("stage".to_string(), stage.to_string())]))
        };
        let all = vec![mk(1, "blue"), mk(2, "green"), mk(3, "blue")];
        let set = BackendSet::select(&all, &BTreeMap::from([("stage".into(), "blue".into())]));
        assert_eq!(set.members(), &[0, 2]);
        let none = BackendSet::select(&all, &BTreeMap::from([("stage".into(), "red".into())]));
        assert!(none.is_empty());
    }

    #[test]
    fn hashing_moves_few_keys_when_a_target_is_added() {
        let all = members(&[1, 1, 1, 1, 1]);
        let four = BackendSet { members: vec![0, 1, 2, 3], wheel: vec![], next: AtomicUsize::new(0) };
        let five = BackendSet::select(&all, &BTreeMap::new());
        let balancer = Balancer::Hash(HashOn::Header(HeaderName::from_static("x-user-id")));
        let mut moved = 0;
        for user in 0..2000 {
            let mut headers = HeaderMap::new();
            headers.insert("x-user-id", user.to_string().parse().unwrap());
            let before = balancer.pick(&all, &four, &input(&headers), &[]).unwrap();
            let after = balancer.pick(&all, &five, &input(&headers), &[]).unwrap();
            assert_eq!(before, balancer.pick(&all, &four, &input(&headers), &[]).unwrap(), "sticky");
            if before != after {
                assert_eq!(after, 4, "a key only moves to the new target");
                moved += 1;
            }
        }
        // Ideal is 1/5 of the keys; allow sampling noise.
        assert!((300..=500).contains(&moved), "moved {moved} of 2000");
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie(&headers, "sess"), None);
    }
}
