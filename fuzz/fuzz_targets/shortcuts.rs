//! Fuzzes the engine's shortcuts: any bytes, read as a request, get the same answer from CRS
//! 4.28.0 (at paranoia level 4 detecting, and at 1 blocking) with the shortcuts (folded steps,
//! prescan gates, memos, chains reordered) as without them. The harness is
//! `crates/waf/tests/shortcuts.rs` (its `check`), shared with `cargo test`, which also runs it
//! over recombined requests. Run:
//! `cargo +nightly fuzz run shortcuts -- -max_len=4096` in `fuzz/`; add what it finds to the
//! seeds in that file.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/waf/tests/shortcuts.rs"]
#[allow(dead_code, unused_imports)]
mod shortcuts;

fuzz_target!(|data: &[u8]| {
    shortcuts::check(data);
});
