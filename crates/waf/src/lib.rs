//! Barbican's web application firewall engine, kept pure so that it can be fuzzed and benchmarked
//! alone: no tokio, and no I/O except the rule loader reading rule and data files.
//!
//! ```text
//! rule files ──loader──▶ text ──lexer──▶ logical lines, tokens ──parser──▶ typed AST (seclang::ast)
//!      ▲ Include, @pmFromFile data                                            │
//!      └──────────────────────────────────────────────────────────────────────┘
//!                    engine::compile ─▶ RuleSet (shared) ─▶ Transaction per request ─▶ Outcome
//! ```
//!
//! [`seclang`] reads ModSecurity rule files (the OWASP Core Rule Set loads unchanged) into a
//! typed syntax tree; [`engine`] compiles that tree once into a [`RuleSet`] and evaluates
//! requests and responses against it with libmodsecurity3's semantics, giving an [`Outcome`]:
//! pass or block, anomaly scores and the rules that matched.
#![forbid(unsafe_code)]

pub mod civil;
pub mod engine;
pub mod seclang;

pub use engine::{MatchedRule, Outcome, Request, Response, RuleSet, Transaction, Verdict};
