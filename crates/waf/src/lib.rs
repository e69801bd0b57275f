//! Barbican's web application firewall engine, kept pure so that it can be fuzzed and benchmarked
//! alone: no tokio, and no I/O except the rule loader reading rule and data files.
//!
//! ```text
//! rule files ──loader──▶ text ──lexer──▶ logical lines, tokens ──parser──▶ typed AST (seclang::ast)
//!      ▲ Include, @pmFromFile data                                            │
//!      └──────────────────────────────────────────────────────────────────────┘
//!                              later: compile (automata by phase/variable/transforms) ─▶ eval
//! ```
//!
//! Today the crate holds the SecLang front end ([`seclang`]): it reads ModSecurity rule files
//! (the OWASP Core Rule Set loads unchanged) into a typed syntax tree whose variables, operators,
//! transformations and actions are enums that a compiler can group and inspect.
#![forbid(unsafe_code)]

pub mod seclang;
