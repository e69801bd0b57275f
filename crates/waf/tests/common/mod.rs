//! What the CRS tests share: where the CRS checkouts are, from one setting.

use std::path::{Path, PathBuf};

/// The CRS version the tests run.
pub const CRS_TAG: &str = "v4.28.0";

/// The folder of CRS checkouts: `BARBICAN_CRS_DIR`, by default `<workspace>/../shared/crs`
/// (found going up from the crate, so that the fuzz targets, a workspace of their own in
/// `fuzz/`, find it too).
/// Fails, saying how to get it, when CRS 4.28.0 there lacks `needs` (`rules`, `tests/tests`):
/// the tests never pass by skipping.
pub fn crs_dir(needs: &str) -> PathBuf {
    let dir = match std::env::var_os("BARBICAN_CRS_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let mut above = crate_dir.ancestors().map(|d| d.join("shared/crs"));
            above.find(|d| d.is_dir()).unwrap_or_else(|| crate_dir.join("../../../shared/crs"))
        }
    };
    let wanted = dir.join(CRS_TAG).join(needs);
    assert!(
        wanted.is_dir(),
        "the OWASP CRS {CRS_TAG} is not at {}: run `git clone --branch {CRS_TAG} --depth 1 \
         https://github.com/coreruleset/coreruleset <dir>/{CRS_TAG}` and set BARBICAN_CRS_DIR=<dir> \
         (the default is <workspace>/../shared/crs)",
        wanted.display()
    );
    dir
}
