#!/usr/bin/env bash
# WebSocket benchmarks, Barbican beside nginx in the same run:
#   memory   RSS that each idle WebSocket connection adds to the gateway (goal: <= 32 KiB at 10 000)
#   relay    ping-pong throughput of small (64 B) messages through Barbican and through nginx
#            proxying the same echo backend, both pinned to CPU 0 (echo and clients on CPU 1)
#
#   bench/websocket.sh [memory|relay|all]      (default all)
# Environment: CONNECTIONS=10000 (memory), RELAY_CONNECTIONS=32, SECONDS=5, ROUNDS=3,
#              CARGO_TARGET_DIR=target, PGO=1 (the profile-guided build that ships; 0: cargo build --release)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
what=${1:-all}
connections=${CONNECTIONS:-10000}
relay_connections=${RELAY_CONNECTIONS:-32}
seconds=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 1; }
# Each proxied connection takes two descriptors in the gateway (client side, upstream side).
ulimit -n "$(ulimit -Hn)"
fd_room=$(( ($(ulimit -n) - 256) / 2 ))
if (( connections > fd_room )); then
    echo "note: the descriptor limit ($(ulimit -n)) allows $fd_room proxied connections, not $connections; measuring $fd_room" >&2
    connections=$fd_room
fi
. "$repo/bench/binary.sh"
build_barbican
(cd "$repo" && cargo build --release --locked --quiet -p barbican --example ws_load)
ws_load=$target/release/examples/ws_load

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

taskset -c 1 "$ws_load" echo 127.0.0.1:19100 & pids+=($!)
wait_port 19100
cat > "$work/barbican.yaml" <<YAML
listeners: [{ name: public, bind: 127.0.0.1:19090 }]
workers: 1
upstreams: [{ name: echo, targets: [{ addr: 127.0.0.1:19100 }] }]
routes:
  - { name: ws, match: { path_prefix: /ws/ }, upstream: echo, websocket: { max_message: 1MiB, idle_timeout: 300s, drain: 60s } }
YAML
RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/barbican.yaml" & gateway=$!; pids+=($gateway)
wait_port 19090

if [[ $what == memory || $what == all ]]; then
    before=$(rss_kib "$gateway")
    taskset -c 1 "$ws_load" idle ws://127.0.0.1:19090/ws/idle "$connections" > "$work/idle.out" & holder=$!; pids+=($holder)
    for _ in $(seq 600); do grep -q '^open' "$work/idle.out" 2>/dev/null && break; sleep 0.2; done
    grep -q '^open' "$work/idle.out" || { echo "the idle connections did not all open" >&2; exit 1; }
    sleep 2
    after=$(rss_kib "$gateway")
    per=$(( (after - before) * 1024 / connections ))
    echo "memory: $connections idle WebSocket connections: RSS ${before} KiB -> ${after} KiB, $((per / 1024)).$(( (per % 1024) * 10 / 1024 )) KiB per connection (goal <= 32 KiB)"
    kill "$holder"; wait "$holder" 2>/dev/null || true
fi

if [[ $what == relay || $what == all ]]; then
    mkdir -p "$work/nginx/logs"
    cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1; pid $work/nginx/nginx.pid; error_log $work/nginx/logs/error.log warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server { listen 127.0.0.1:19091; location /ws/ { proxy_pass http://127.0.0.1:19100;
    proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;
    proxy_read_timeout 300s; } } }
NGINX
    taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
    pids+=($(cat "$work/nginx/nginx.pid" 2>/dev/null || true))
    wait_port 19091
    declare -a n_runs b_runs
    for r in $(seq "$rounds"); do
        n=$(taskset -c 1 "$ws_load" pingpong ws://127.0.0.1:19091/ws/x "$relay_connections" "$seconds" | awk '{print $2}')
        b=$(taskset -c 1 "$ws_load" pingpong ws://127.0.0.1:19090/ws/x "$relay_connections" "$seconds" | awk '{print $2}')
        echo "relay round $r: nginx $n msg/s, barbican $b msg/s"
        n_runs+=("$n"); b_runs+=("$b")
    done
    nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -s stop || true
    median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
    nm=$(median "${n_runs[@]}"); bm=$(median "${b_runs[@]}")
    echo "relay: median nginx $nm msg/s, barbican $bm msg/s, ratio $(awk -v b="$bm" -v n="$nm" 'BEGIN {printf "%.2f", b/n}')x ($relay_connections connections, 64 B messages, one in flight each)"
fi
