//! Fuzzes loading, compiling and running rules: any bytes, read as a rule file, are refused
//! with errors that say where, or compiled and evaluated against a few requests and a response;
//! nothing may panic. The harness is `crates/waf/tests/rule_robustness.rs` (its `check`),
//! shared with `cargo test`, which also runs it over rules recombined at random. Run:
//! `cargo +nightly fuzz run rules_eval` in `fuzz/` (seed it with CRS rule files:
//! `cargo +nightly fuzz run rules_eval corpus/rules_eval ../../shared/crs/v4.28.0/rules`); add
//! what it finds to `fuzz_finds_stay_fixed` in that file.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/waf/tests/rule_robustness.rs"]
#[allow(dead_code, unused_imports)]
mod rule_robustness;

fuzz_target!(|data: &[u8]| {
    rule_robustness::check(data);
});
