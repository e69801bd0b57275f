#!/usr/bin/env bash
# The release binary, optimized with a profile of its own work (profile-guided optimization):
# the binary the Dockerfile ships and the benchmarks measure.
#
#   1. build `barbican` instrumented (-Cprofile-generate);
#   2. run it on a training load (`pgo/train.sh`: plain proxying and CRS-inspected traffic over
#      HTTP/1.1 and over TLS with h2, benign and attacking, to an origin it serves itself, and
#      WebSocket messages relayed to an echo server);
#   3. merge the counts (llvm-profdata, from `rustup component add llvm-tools`);
#   4. build `barbican` again with them (-Cprofile-use): hot paths laid out together, inlined
#      where they are hot, cold ones kept small.
#
# The training load is not the benchmarks' requests: other paths, headers and bodies, and the
# CRS of the Debian package (3.3.4) when it is installed. Code the load never reaches is
# treated as cold (optimized for size), so the load covers every listener kind and body type.
#
#   pgo/build.sh      prints the optimized binary's path as its last line
#
# Environment: CARGO_TARGET_DIR (default target/; the builds use its pgo/ folder), RUSTFLAGS
# (kept, the PGO flags added), BARBICAN_PGO_CRS (a CRS rules folder; see pgo/train.sh).
# Needs curl; openssl for the TLS part of the load (skipped, with a warning, without it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target/pgo"
target=$(cd "$target" && pwd)
die() { echo "pgo/build.sh: $*" >&2; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[[ -x $profdata ]] || die "needs llvm-profdata of this toolchain: rustup component add llvm-tools"
command -v curl >/dev/null || die "needs curl (apt-get install curl)"

raw=$target/pgo/raw
flags=${RUSTFLAGS:-}
echo "== instrumented build" >&2
# With the WebSocket load tool (examples/ws_load.rs), built alongside to share the compiled
# dependencies; its own counts are not kept.
RUSTFLAGS="$flags -Cprofile-generate=$raw" CARGO_TARGET_DIR=$target/pgo/instrumented \
    cargo build --release --locked --quiet -p barbican --bin barbican --example ws_load >&2
instrumented=$target/pgo/instrumented/release/barbican

# A profile is named by what made it, the instrumented binary and the training: the same code
# and load reuse it (and the optimized build is then up to date), a change trains anew and,
# through RUSTFLAGS, rebuilds with the new profile.
key=$(cat "$instrumented" "$repo/pgo/train.sh" | sha256sum | cut -c1-16)
profile=$target/pgo/profile-$key.profdata
if [[ -f $profile ]]; then
    echo "== training: done before for this code and load ($profile)" >&2
else
    echo "== training" >&2
    # Only the training's counts: build scripts ran instrumented too.
    rm -rf "$raw"
    LLVM_PROFILE_FILE="$raw/barbican-%p-%m.profraw" "$repo/pgo/train.sh" "$instrumented" \
        "$target/pgo/instrumented/release/examples/ws_load" >&2
    compgen -G "$raw/*.profraw" >/dev/null || die "the training wrote no profile"
    "$profdata" merge -o "$profile.part" "$raw"
    mv "$profile.part" "$profile"
    find "$target/pgo" -maxdepth 1 -name 'profile-*.profdata' ! -path "$profile" -delete
fi

echo "== optimized build" >&2
RUSTFLAGS="$flags -Cprofile-use=$profile" CARGO_TARGET_DIR=$target/pgo/optimized \
    cargo build --release --locked --quiet -p barbican --bin barbican >&2
echo "$target/pgo/optimized/release/barbican"
