//! Replays inputs that once broke the `seclang_parse` fuzz target (`fuzz/`): each file in
//! `tests/fuzz/seclang_parse/` must parse or fail without panicking, and what parses must print
//! back to text that parses to the same tree. Add a crash here whenever the fuzzer finds one.

use std::path::Path;

use barbican_waf::seclang::{parse, parse_bytes};

#[test]
fn seclang_parse_crashes_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seclang_parse");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz/seclang_parse") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("crash file");
        if let Ok(file) = parse_bytes(&data, "fuzz.conf") {
            let printed = file.to_string();
            let again = parse(&printed, "printed.conf")
                .unwrap_or_else(|e| panic!("{}: printed rules do not parse: {e:?}\n{printed}", path.display()));
            assert_eq!(file, again, "{}: printed rules read differently:\n{printed}", path.display());
            assert_eq!(printed, again.to_string(), "{}: printing is not a fixpoint", path.display());
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs in {}", dir.display());
}
