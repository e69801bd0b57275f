#!/usr/bin/env bash
# Whole-gateway load: Barbican as a plain reverse proxy against nginx as one, in the same run.
#
#   upstream nginx :18080 (CPU 1) <- nginx proxy :18081 (CPU 0)               <- wrk (CPU 1)
#                                 <- nginx proxy, same headers :18086 (CPU 0)  <-
#                                 <- barbican    :18090 (CPU 0)               <-
#
# The reference nginx forwards only Host. Barbican also sends the upstream x-forwarded-for,
# x-forwarded-proto and x-request-id, and answers with x-request-id; "nginx+hdr" is the same
# nginx doing that too (proxy_set_header, add_header $request_id), the like-for-like proxy.
# Rounds are interleaved (nginx, nginx+hdr, barbican, ...) and compared as ratios, of the
# medians and of each round's figures: single runs drift by ±15 %, a ratio within one run does
# not. On a VM whose speed swings within seconds, use many short rounds (ROUNDS=25
# DURATION=1s). See bench/README.md.
#
# Environment:
#   ROUNDS=3               rounds per workload (each round runs nginx, nginx+hdr, then barbican)
#   DURATION=5s            wrk -d of each measured run
#   WARMUP=1s              one unmeasured wrk run per system before the rounds; 0 skips it
#   CARGO_TARGET_DIR=target
#   PGO=1                  1: the profile-guided build that ships (pgo/build.sh); 0: cargo build --release
#   BARBICAN_REFERENCE     the reference stack's run.sh (default ../shared/reference/run.sh)
#   REF_DIR                where run.sh keeps its files (its default: /tmp/barbican-reference)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
reference=${BARBICAN_REFERENCE:-$(dirname "$0")/../../shared/reference/run.sh}
reference=$(cd "$(dirname "$reference")" && pwd)/$(basename "$reference")
post_lua=$(dirname "$reference")/post.lua
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
warmup=${WARMUP:-1s}
path='/api/v1/users?id=42&name=alice'
nginx_port=18081
headers_port=18086
barbican_port=18090

die() { echo "proxy.sh: $*" >&2; exit 1; }

[[ -x $reference ]] || die "no reference stack at $reference (set BARBICAN_REFERENCE)"
[[ -f $post_lua ]] || die "no post.lua beside $reference"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not $rounds"
for tool in wrk nginx taskset curl awk; do
    command -v "$tool" >/dev/null || die "needs $tool (apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs wrk)"
done
taskset -c 0,1 true 2>/dev/null || die "needs CPUs 0 and 1: the systems under test run on 0, wrk and the upstream on 1"

# --- build ------------------------------------------------------------------------------------
cd "$repo"
. "$repo/bench/binary.sh"
build_barbican || die "no barbican binary"

# --- start ------------------------------------------------------------------------------------
stamp=$(date +%Y%m%d-%H%M%S)
results=$repo/bench/results/proxy-$stamp
mkdir -p "$results"
work=$(mktemp -d "${TMPDIR:-/tmp}/barbican-bench.XXXXXX")
barbican_pid=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -f $work/nginx-hdr/nginx.pid ]]; then
        nginx -p "$work/nginx-hdr" -c "$work/nginx-hdr/nginx.conf" -s stop 2>/dev/null || true
    fi
    if [[ -n $barbican_pid ]] && kill -0 "$barbican_pid" 2>/dev/null; then
        kill -TERM "$barbican_pid" 2>/dev/null || true
        wait "$barbican_pid" 2>/dev/null || true
    fi
    "$reference" stop >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if curl -s -o /dev/null "http://127.0.0.1:$barbican_port/"; then
    die "something already answers on 127.0.0.1:$barbican_port"
fi

echo "== starting the reference stack ($reference)"
. "$repo/bench/reference.sh"
start_reference

echo "== starting nginx with Barbican's forwarding headers on 127.0.0.1:$headers_port (CPU 0)"
mkdir -p "$work/nginx-hdr/logs"
cat >"$work/nginx-hdr/nginx.conf" <<EOF
pid $work/nginx-hdr/nginx.pid; worker_processes 1; error_log $work/nginx-hdr/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; client_body_temp_path $work/nginx-hdr/body; proxy_temp_path $work/nginx-hdr/proxy;
  keepalive_requests 1000000;
  upstream upstream { server 127.0.0.1:18080; keepalive 256; }
  server {
    listen 127.0.0.1:$headers_port backlog=4096;
    location / {
      proxy_pass http://upstream; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id; add_header X-Request-Id \$request_id;
    }
  }
}
EOF
cp "$work/nginx-hdr/nginx.conf" "$results/nginx-hdr.conf"
taskset -c 0 nginx -p "$work/nginx-hdr" -c "$work/nginx-hdr/nginx.conf" || die "nginx with headers did not start"

cat >"$work/barbican.yaml" <<EOF
# Plain proxy, like the reference nginx on :$nginx_port: one worker, no access log.
listeners:
  - name: bench
    bind: 127.0.0.1:$barbican_port
workers: 1
shutdown_timeout: 2s
upstreams:
  - name: origin
    targets:
      - { addr: 127.0.0.1:18080 }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: origin
EOF
cp "$work/barbican.yaml" "$results/barbican.yaml"

echo "== starting barbican on 127.0.0.1:$barbican_port (CPU 0)"
RUST_LOG=${RUST_LOG:-warn} taskset -c 0 "$bin" run --config "$work/barbican.yaml" 2>"$results/barbican.log" &
barbican_pid=$!
tries=0
until curl -fs -o /dev/null "http://127.0.0.1:$barbican_port/"; do
    kill -0 "$barbican_pid" 2>/dev/null || die "barbican exited; see $results/barbican.log"
    tries=$((tries + 1))
    ((tries <= 100)) || die "barbican did not answer within 10s; see $results/barbican.log"
    sleep 0.1
done

# Both proxies must answer the workloads with the upstream's 200 "ok", or the figures mean nothing.
for port in $nginx_port $headers_port $barbican_port; do
    body=$(curl -fsS "http://127.0.0.1:$port$path") || die "GET on :$port failed"
    [[ $body == ok ]] || die "GET on :$port answered ${body@Q}, not ok"
    body=$(curl -fsS -H 'Content-Type: application/json' --data-binary @<(
        sed -n "s/^wrk.body *= *'\(.*\)'$/\1/p" "$post_lua"
    ) "http://127.0.0.1:$port$path") || die "POST on :$port failed"
    [[ $body == ok ]] || die "POST on :$port answered ${body@Q}, not ok"
done

# CPU time used by others over half a second, in percent of all CPUs: a build or test run on
# this 2-core machine lands on the proxies' or wrk's core and skews the figures.
busy_percent() {
    local a b
    a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep 0.5
    b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; total = busy + y[2] - x[2]
        printf "%.0f", (total > 0 ? 100 * busy / total : 0)
    }'
}
busy=$(busy_percent)
{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:    $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (dirty)'), $build"
    echo "host:      $(uname -srm), $(nproc) CPUs, ${busy}% busy just before the runs"
    echo "nginx:     $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk:       $(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
    echo "load:      taskset -c 1 wrk -t1 -c32 -d$duration --latency, $rounds rounds, warm-up $warmup"
} >"$results/meta.txt"
if ((busy > 5)); then
    echo "warning: CPUs ${busy}% busy before the runs; other work on CPUs 0-1 makes the figures noisy" >&2
fi

# --- measure ----------------------------------------------------------------------------------
# wrk's p99 ("99%    1.23ms") in milliseconds.
p99_ms() {
    awk '$1 == "99%" {
        v = $2
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /m$/) { sub(/m$/, "", v); v = v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        printf "%.3f", v
    }' "$1"
}
requests_per_s() { awk '$1 == "Requests/sec:" { print $2 }' "$1"; }
# Non-2xx answers plus socket errors: anything but zero makes the run suspect.
errors() {
    awk '/Non-2xx or 3xx responses:/ { n += $NF }
         /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i }
         END { print n + 0 }' "$1"
}

# run_wrk FILE PORT [wrk args...]
run_wrk() {
    local file=$1 port=$2
    shift 2
    taskset -c 1 wrk -t1 -c32 "$@" --latency "http://127.0.0.1:$port$path" >"$file" 2>&1 ||
        die "wrk failed; see $file"
}

declare -A rps p99 errs
systems=(nginx nginx+hdr barbican)
declare -A port_of=([nginx]=$nginx_port [nginx+hdr]=$headers_port [barbican]=$barbican_port)
workloads=(get post)
declare -A args_of=([get]="" [post]="-s $post_lua")

if [[ $warmup != 0 ]]; then
    echo "== warm-up ($warmup each)"
    for sys in "${systems[@]}"; do
        # shellcheck disable=SC2086
        run_wrk "$results/warmup-$sys.txt" "${port_of[$sys]}" -d"$warmup" ${args_of[post]}
    done
fi

for ((r = 1; r <= rounds; r++)); do
    for w in "${workloads[@]}"; do
        for sys in "${systems[@]}"; do
            file=$results/r$r-$w-$sys.txt
            printf '== round %d/%d  %-4s %-9s ' "$r" "$rounds" "${w^^}" "$sys"
            # shellcheck disable=SC2086
            run_wrk "$file" "${port_of[$sys]}" -d"$duration" ${args_of[$w]}
            rps[$r,$w,$sys]=$(requests_per_s "$file")
            p99[$r,$w,$sys]=$(p99_ms "$file")
            errs[$r,$w,$sys]=$(errors "$file")
            [[ -n ${rps[$r,$w,$sys]} && -n ${p99[$r,$w,$sys]} ]] || die "cannot read wrk's output in $file"
            printf '%10.0f req/s  p99 %7.3f ms  errors %s\n' "${rps[$r,$w,$sys]}" "${p99[$r,$w,$sys]}" "${errs[$r,$w,$sys]}"
        done
    done
done

# --- report -----------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# paired_ratios W SYS: Barbican's req/s over SYS's in each round of workload W, as "median,
# quartiles q1-q3" (nearest rank). A round's systems ran seconds apart, so the machine's drift
# between rounds cancels in each round's ratio where it does not in a ratio of medians.
paired_ratios() {
    local r
    for ((r = 1; r <= rounds; r++)); do
        awk -v a="${rps[$r,$1,barbican]}" -v b="${rps[$r,$1,$2]}" 'BEGIN { if (b > 0) print a / b }'
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        q1 = int((NR + 3) / 4); q3 = int((3 * NR + 3) / 4)
        printf "%.2fx, quartiles %.2f-%.2fx", m, v[q1], v[q3]
    }'
}

report() {
    local w title r sys e
    local -A median_rps median_p99
    local -a xs ys
    local total_errors=0
    echo "Barbican vs nginx, plain reverse proxy to 127.0.0.1:18080; proxies on CPU 0, wrk on CPU 1"
    echo "wrk -t1 -c32 -d$duration --latency, $rounds interleaved rounds; $(sed -n 's/^commit: *//p' "$results/meta.txt")"
    for w in "${workloads[@]}"; do
        case $w in
            get) title="GET $path" ;;
            post) title="POST $path, 1 KiB JSON (post.lua)" ;;
        esac
        echo
        echo "$title"
        printf '  %-8s' ""
        for sys in "${systems[@]}"; do printf ' %15s %7s' "$sys req/s" "p99 ms"; done
        printf ' %7s\n' "errors"
        for ((r = 1; r <= rounds; r++)); do
            printf '  %-8s' "round $r"
            e=0
            for sys in "${systems[@]}"; do
                printf ' %15.0f %7.3f' "${rps[$r,$w,$sys]}" "${p99[$r,$w,$sys]}"
                e=$((e + ${errs[$r,$w,$sys]}))
            done
            printf ' %7s\n' "$e"
            total_errors=$((total_errors + e))
        done
        printf '  %-8s' "median"
        for sys in "${systems[@]}"; do
            xs=() ys=()
            for ((r = 1; r <= rounds; r++)); do xs+=("${rps[$r,$w,$sys]}") ys+=("${p99[$r,$w,$sys]}"); done
            median_rps[$sys]=$(median "${xs[@]}") median_p99[$sys]=$(median "${ys[@]}")
            printf ' %15.0f %7.3f' "${median_rps[$sys]}" "${median_p99[$sys]}"
        done
        echo
        for sys in nginx nginx+hdr; do
            printf '  barbican/%-9s req/s %sx (higher is better)   p99 %sx (lower is better)\n' "$sys" \
                "$(ratio "${median_rps[barbican]}" "${median_rps[$sys]}")" \
                "$(ratio "${median_p99[barbican]}" "${median_p99[$sys]}")"
        done
        for sys in nginx nginx+hdr; do
            printf '  barbican/%-9s req/s per round %s\n' "$sys" "$(paired_ratios "$w" "$sys")"
        done
    done
    if ((total_errors > 0)); then
        echo
        echo "WARNING: $total_errors non-2xx answers or socket errors; see the r*-*.txt files"
    fi
}

echo
report | tee "$results/summary.txt"
echo
echo "raw wrk output, config and logs: ${results#"$repo"/}"
