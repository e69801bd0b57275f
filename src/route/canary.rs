//! Canary rules: send some requests to another subset of the upstream, by header or by weight.
//!
//! Rules are tried in order and the first that takes a request wins. Weight rules share one
//! random roll per request: `[weight: 5, weight: 10]` sends 5 % to the first and the next 10 %
//! to the second, so the weights written are the shares that result.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::upstream::BackendSet;

pub enum CanaryWhen {
    /// Every header equals its value.
    Headers(Vec<(HeaderName, HeaderValue)>),
    /// This share of requests, in hundredths of a percent (0..=10000).
    Weight(u32),
}

pub struct CanaryRule {
    pub when: CanaryWhen,
    pub backends: BackendSet,
}

/// The backend set of the first rule that takes this request.
pub fn choose<'r>(rules: &'r [CanaryRule], headers: &HeaderMap) -> Option<&'r BackendSet> {
    let mut roll: Option<u32> = None;
    let mut below = 0u32;
    for rule in rules {
        let taken = match &rule.when {
            CanaryWhen::Headers(wanted) => wanted.iter().all(|(name, value)| headers.get(name) == Some(value)),
            CanaryWhen::Weight(share) => {
                let roll = *roll.get_or_insert_with(|| fastrand::u32(..10_000));
                below += share;
                roll < below
            }
        };
        if taken {
            return Some(&rule.backends);
        }
    }
    None
}
