//! Bot rules on the `user-agent`: known scanners are denied, an allow list overrides, and an
//! empty user agent may be refused. All patterns are compiled into one regex set, so a request
//! is scanned once however many patterns there are.

use http::header::USER_AGENT;
use http::Request;
use regex::bytes::RegexSet;

use super::{Exchange, Stage, Verdict};
use crate::body::Body;
use crate::respond::Rejection;

#[derive(Debug)]
pub struct BotRules {
    pub deny: RegexSet,
    pub allow: RegexSet,
    pub block_empty: bool,
}

impl Default for BotRules {
    fn default() -> Self {
        Self { deny: RegexSet::empty(), allow: RegexSet::empty(), block_empty: false }
    }
}

impl BotRules {
    pub fn permits(&self, user_agent: Option<&[u8]>) -> bool {
        match user_agent {
            None | Some(b"") => !self.block_empty,
            Some(agent) => self.deny.is_empty() || self.allow.is_match(agent) || !self.deny.is_match(agent),
        }
    }
}

impl Stage for BotRules {
    async fn check(&self, request: &mut Request<Body>, exchange: &mut Exchange<'_>) -> Verdict {
        let agent = request.headers().get(USER_AGENT).map(|v| v.as_bytes());
        if self.permits(agent) {
            Verdict::Continue
        } else {
            exchange.reject(Rejection::BotDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_denied_unless_allowed() {
        let rules = BotRules {
            deny: RegexSet::new(["(?i)sqlmap", "(?i)nikto"]).unwrap(),
            allow: RegexSet::new(["^internal-nikto-probe$"]).unwrap(),
            block_empty: true,
        };
        assert!(!rules.permits(Some(b"SQLMap/1.7")));
        assert!(rules.permits(Some(b"Mozilla/5.0")));
        assert!(rules.permits(Some(b"internal-nikto-probe")));
        assert!(!rules.permits(None));
        assert!(!rules.permits(Some(b"")));
    }
}
