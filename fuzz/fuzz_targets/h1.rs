//! Fuzzes the gateway's HTTP/1.1 parsers: a request head (what clients send) or a response head
//! (what upstreams send), then a chunked body when the head says so, read at once and in small
//! reads; nothing may panic and both reads must agree. The harness is `barbican::h1::robustness`
//! (its `check`), built for `cargo test` and for fuzzing only; its unit tests run it over
//! mangled messages. Run: `cargo +nightly fuzz run h1 -- -max_len=4096` in `fuzz/`; turn what it
//! finds into a test in `src/h1/tests.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    barbican::h1::robustness::check(data);
});
