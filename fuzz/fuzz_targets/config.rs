//! Fuzzes config validation: any text, read as a config file (in a folder holding the rule
//! files it may name), is accepted, or refused with errors that say what and where; nothing
//! may panic. The harness is `src/config/robustness.rs` (its `check`), shared with the unit
//! test that runs it over mangled configs. Run: `cargo +nightly fuzz run config` in `fuzz/`
//! (seed it with `src/config/embedded.yaml` and the `FULL` config of that file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    barbican::config::robustness::check(data);
});
