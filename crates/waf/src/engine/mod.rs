//! The evaluation engine: compiled rules and per-request transactions.
//!
//! ```text
//! seclang::RuleSet (AST) ──compile──▶ RuleSet (Send + Sync, built once, shared)
//!                                        │
//! Request / Response ──▶ Transaction ────┴──▶ phases 1..5 ──▶ Outcome (verdict, scores, matches)
//! ```
//!
//! - [`compile`] turns the AST into [`RuleSet`]: settings, default actions folded in,
//!   load-time exceptions applied, operators compiled (`operator`), phases ordered, and the
//!   `@rx` patterns of each transformation chain joined into one automaton (`prescan`).
//! - [`transaction`] runs one request: variables, transformations ([`transform`]), operators,
//!   actions, `ctl:` at run time, and the body processors of [`body`]. The rules whose outcome
//!   is the same for every request are run once at compile time (`transaction::fold`).
//! - [`request`] is the request/response model the gateway and the regression runner fill.
//! - [`support`] says, name by name, what is evaluated (the source of `docs/waf-coverage.md`).

pub mod body;
mod caseless;
pub mod compile;
mod fast_hash;
mod memo;
pub(crate) mod operator;
mod per_thread;
pub(crate) mod prescan;
pub mod request;
mod required;
pub mod support;
pub mod transaction;
pub mod transform;

pub use body::{Pair, Text};
pub use compile::{Fallback, RuleSet, Settings, Unsupported};
pub use request::{media_type, Request, Response};
pub use transaction::{MatchedRule, Outcome, Transaction, Verdict};

/// `bytes` as text: borrowed when they are UTF-8 (the standard library's fast check), else
/// with U+FFFD for what is not (`String::from_utf8_lossy` alone walks them far more slowly).
pub(crate) fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl RuleSet {
    /// Evaluates a copy of a request (phases 1 and 2), of the response when given (phases 3
    /// and 4), then phase 5.
    pub fn evaluate(&self, request: &Request, response: Option<&Response>) -> Outcome {
        let mut tx = Transaction::new(self);
        tx.process_request(request.clone());
        if let Some(r) = response {
            tx.process_response(r.clone());
        }
        tx.finish()
    }

    /// Whether any rule runs on the response (phase 3 or 4). A gateway that finds none can
    /// end a transaction with the request instead of keeping it for the response.
    pub fn has_response_rules(&self) -> bool {
        self.phases[2..4].iter().flatten().any(|s| matches!(s, compile::Step::Rule(..)))
    }
}

#[cfg(test)]
mod tests;
