//! Fuzzes request-body processing through the public API: the first byte picks a
//! `Content-Type` (urlencoded, multipart with a fixed or fuzzed boundary, JSON, XML, a fuzzed
//! header, none), the rest is the body; the request is evaluated against a small rule set over
//! ARGS, ARGS_NAMES, FILES, FILES_NAMES, MULTIPART_*, REQBODY_ERROR and XML, and the engine's
//! REQBODY_ERROR must agree with the body processor called directly. Nothing may panic.
//!
//! The harness is `crates/waf/tests/body_robustness.rs` (its `check`), shared with `cargo test`,
//! which also runs it over a generated corpus. Run:
//! `cargo +nightly fuzz run request_body -- -max_len=65536` in `fuzz/`; add what it finds to
//! `fuzz_finds_stay_fixed` in that file.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/waf/tests/body_robustness.rs"]
#[allow(dead_code, unused_imports)]
mod body_robustness;

fuzz_target!(|data: &[u8]| {
    body_robustness::check(data);
});
