//! The stages a routed request passes before it is proxied, and the interface they share.
//!
//! A stage looks at the request and the [`Exchange`] (what earlier steps learned) and returns a
//! [`Verdict`]: go on, or answer now. Denials are answers, not errors. The order in which stages
//! run is fixed in `pipeline.rs`; a new capability is one module here and one line there.

pub mod bot;
pub mod ip_rules;
pub mod waf;

use std::future::Future;
use std::net::IpAddr;

use http::{HeaderValue, Request};

use crate::body::Body;
use crate::config::Snapshot;
use crate::pipeline::BoxedResponse;
use crate::respond::{self, Rejection};
use crate::route::Route;

/// What a stage decided.
pub enum Verdict {
    /// Let the request go on to the next stage.
    Continue,
    /// Answer the client with this response; nothing goes upstream. Boxed, as it travels on
    /// (a response in place would widen every stage's future, and be moved out of each).
    Respond(BoxedResponse),
}

/// One request as the stages see it: the snapshot and route it was matched against, who sent
/// it, and what stages have learned so far (for later stages and the access log).
pub struct Exchange<'a> {
    pub snapshot: &'a Snapshot,
    pub route: &'a Route,
    pub client_ip: IpAddr,
    pub request_id: &'a HeaderValue,
    pub tenant: Option<String>,
    pub consumer: Option<String>,
    pub waf_action: Option<&'static str>,
    /// The WAF transaction of a request whose response the rules inspect too (phases 3 and
    /// 4); `None` on routes without a WAF or whose rule set has no response rules.
    pub waf_response: Option<Box<waf::ResponseCheck<'a>>>,
    pub limited: bool,
}

impl Exchange<'_> {
    /// The gateway's answer for `rejection`, as a verdict.
    pub fn reject(&self, rejection: Rejection) -> Verdict {
        Verdict::Respond(Box::new(respond::reject(rejection, self.request_id)))
    }
}

/// A step of the pipeline. Implemented by each stage's compiled policy, held in the snapshot.
pub trait Stage {
    fn check(&self, request: &mut Request<Body>, exchange: &mut Exchange<'_>) -> impl Future<Output = Verdict> + Send;
}
