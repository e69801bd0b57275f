# Sourced by the benchmark scripts: builds the barbican binary they measure; sets $bin to it
# and $build to what kind of build it is, and says both.
#
# By default the binary that ships, the profile-guided build of pgo/build.sh (what the
# Dockerfile installs); PGO=0 measures a plain `cargo build --release` instead. Either way
# with CARGO_TARGET_DIR (default target/). $repo must be set.
build_barbican() {
    local target=${CARGO_TARGET_DIR:-$repo/target}
    case ${PGO:-1} in
        1)
            echo "== building barbican: profile-guided release build (pgo/build.sh; PGO=0 for a plain one)" >&2
            bin=$(CARGO_TARGET_DIR=$target "$repo/pgo/build.sh" | tail -n 1)
            build="profile-guided build"
            ;;
        0)
            echo "== building barbican: release build (cargo build --release)" >&2
            (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release --locked --quiet -p barbican --bin barbican)
            case $target in /*) bin=$target/release/barbican ;; *) bin=$repo/$target/release/barbican ;; esac
            build="release build without PGO"
            ;;
        *)
            echo "PGO must be 1 or 0, not ${PGO}" >&2
            return 1
            ;;
    esac
    [[ -x $bin ]] || { echo "the build left no binary at $bin" >&2; return 1; }
    echo "barbican: $bin ($build)"
}
