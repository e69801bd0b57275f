//! Fuzzes the SecLang parser: any bytes, read as a rule file, must never panic, and whatever
//! parses must print back (`Display`) to text that parses to an equal tree, with printing a
//! fixpoint. Run: `cargo +nightly fuzz run seclang_parse` in `fuzz/` (seed it with CRS rule
//! files: `cargo +nightly fuzz run seclang_parse corpus/seclang_parse ../../shared/crs/v4.28.0/rules`).
#![no_main]

use barbican_waf::seclang::{parse, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_bytes(data, "fuzz.conf") else { return };
    let printed = file.to_string();
    let again = match parse(&printed, "printed.conf") {
        Ok(f) => f,
        Err(errors) => panic!("printed rules do not parse: {errors:?}\n{printed}"),
    };
    assert_eq!(file, again, "printed rules read differently:\n{printed}");
    assert_eq!(printed, again.to_string(), "printing is not a fixpoint");
});
