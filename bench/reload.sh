#!/usr/bin/env bash
# Requests/s while the config reloads every 100 ms, against the same gateway at rest.
# Goal: >= 0.9x the steady figure. Barbican on CPU 0; wrk, the upstream and the reloader on CPU 1.
#
#   bench/reload.sh          Environment: ROUNDS=3, DURATION=5 (seconds), CARGO_TARGET_DIR=target,
#                            PGO=1 (the profile-guided build that ships; 0: cargo build --release)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
reference=${BARBICAN_REFERENCE:-$repo/../shared/reference/run.sh}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; "$reference" stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
for tool in wrk nginx taskset; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install nginx wrk)" >&2; exit 1; }; done

. "$repo/bench/binary.sh"
build_barbican
. "$repo/bench/reference.sh"
start_reference            # upstream on 127.0.0.1:18080
config() {  # $1: which of two configs (they differ in route, weights and a header edit)
    cat > "$work/barbican.yaml.tmp" <<YAML
listeners: [{ name: public, bind: 127.0.0.1:18092 }]
admin: { bind: 127.0.0.1:18099 }
workers: 1
upstreams: [{ name: u, targets: [{ addr: 127.0.0.1:18080, weight: $((1 + $1)) }] }]
routes:
  - { name: api-$1, match: { path_prefix: /api/ }, upstream: u, request_headers: { set: { x-variant: "v$1" } } }
  - { name: rest, upstream: u }
YAML
    mv "$work/barbican.yaml.tmp" "$work/barbican.yaml"
}
config 0
RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/barbican.yaml" & gateway=$!; pids+=($gateway)
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18092/api/x && break; sleep 0.1; done

url='http://127.0.0.1:18092/api/v1/users?id=42&name=alice'
rps() { taskset -c 1 wrk -t1 -c32 -d"${duration}s" "$url" | awk '/Requests\/sec/ {print $2}'; }
declare -a steady reloading
for r in $(seq "$rounds"); do
    s=$(rps)
    ( i=0; while true; do i=$((1 - i)); config $i; kill -HUP "$gateway"; sleep 0.1; done ) & reloader=$!
    taskset -cp 1 "$reloader" >/dev/null
    l=$(rps)
    kill "$reloader"; wait "$reloader" 2>/dev/null || true
    echo "round $r: steady $s req/s, reloading every 100 ms $l req/s"
    steady+=("$s"); reloading+=("$l")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
sm=$(median "${steady[@]}"); lm=$(median "${reloading[@]}")
echo "revision now serving: $(curl -s http://127.0.0.1:18099/readyz) (each reload is one revision)"
echo "median: steady $sm req/s, reloading $lm req/s, ratio $(awk -v l="$lm" -v s="$sm" 'BEGIN {printf "%.2f", l/s}')x (goal >= 0.90x)"
