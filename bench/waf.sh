#!/usr/bin/env bash
# The WAF under load, side by side in one run (each proxy pinned to CPU 0; wrk and the
# upstream on CPU 1):
#   nginx plain proxy (:18081), nginx + libmodsecurity3 + CRS 4.28.0 (:18083), and Barbican
#   with CRS 4.28.0 at paranoia 1, blocking, threshold 5 (:18093).
# Workloads: benign GET and the 1 KiB JSON POST of ../shared/reference/post.lua, wrk -t1 -c32;
# then both again with no value repeated across requests (bench/distinct.lua: "GET*", "POST*"),
# the worst case for the values Barbican's WAF remembers.
# Prints req/s and the ratios Barbican/ModSecurity (goal >= 20x) and Barbican/nginx plain
# (goal >= 0.5x); checks that attacks are blocked while it runs; and reports how long
# Barbican takes to load and compile CRS and its resident memory afterwards.
#
#   bench/waf.sh      Environment: ROUNDS=3, DURATION=5 (s), CARGO_TARGET_DIR=target, BARBICAN_CRS_DIR,
#                     PGO=1 (the profile-guided build that ships, pgo/build.sh; 0: cargo build --release)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
reference=${BARBICAN_REFERENCE:-$repo/../shared/reference/run.sh}
crs=${BARBICAN_CRS_DIR:-$repo/../shared/crs}
post_lua=$(dirname "$reference")/post.lua
distinct_lua=$repo/bench/distinct.lua
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; "$reference" stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
for tool in wrk nginx taskset curl; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs wrk)" >&2; exit 1; }; done
[[ -d $crs/v4.28.0/rules ]] || { echo "no CRS 4.28.0 at $crs (set BARBICAN_CRS_DIR)" >&2; exit 1; }

. "$repo/bench/binary.sh"
build_barbican
. "$repo/bench/reference.sh"
start_reference
cat > "$work/barbican.yaml" <<YAML
listeners: [{ name: public, bind: 127.0.0.1:18093 }]
workers: 1
upstreams: [{ name: u, targets: [{ addr: 127.0.0.1:18080 }] }]
waf:
  rulesets:
    crs:
      setup: $repo/rules/crs-setup.conf
      include: ['$crs/v4.28.0/rules/*.conf']
      paranoia_level: 1
      inbound_anomaly_threshold: 5
routes: [{ name: api, upstream: u, waf: { ruleset: crs, mode: block } }]
YAML
started=$(date +%s.%N)
RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/barbican.yaml" & gateway=$!; pids+=($gateway)
until curl -fs -o /dev/null -A bench -H 'accept: */*' 'http://127.0.0.1:18093/'; do
    kill -0 "$gateway" 2>/dev/null || { echo "barbican did not start" >&2; exit 1; }
    sleep 0.02
done
load_s=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
rss_mib=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$gateway/status")
echo "CRS 4.28.0: started and compiled in ${load_s} s (process start to first answer), resident ${rss_mib} MiB (goals: < 2 s, < 200 MiB)"

attack='http://127.0.0.1:18093/api/v1/users?id=1%27%20OR%20%271%27%3D%271'
url_path='/api/v1/users?id=42&name=alice'
ua='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
check_attack() {
    local code; code=$(curl -s -o /dev/null -w '%{http_code}' -A "$ua" "$attack")
    [[ $code == 403 ]] || { echo "an attack got $code, not 403" >&2; exit 1; }
}
rps() {  # port, extra wrk args... (and the script's own, from $script_args)
    local port=$1; shift
    taskset -c 1 wrk -t1 -c32 -d"${duration}s" -H "User-Agent: $ua" -H 'Accept: */*' "$@" "http://127.0.0.1:$port$url_path" "${script_args[@]}" |
        awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non2xx " $4 > "/dev/stderr"}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for workload in GET POST 'GET*' 'POST*'; do
    script_args=()
    case $workload in
        GET) args=() ;;
        POST) args=(-s "$post_lua") ;;
        'GET*') args=(-s "$distinct_lua") ;;
        'POST*') args=(-s "$distinct_lua"); script_args=(-- "$post_lua") ;;
    esac
    plain=(); modsec=(); ours=()
    for r in $(seq "$rounds"); do
        plain+=("$(rps 18081 "${args[@]}")")
        modsec+=("$(rps 18083 "${args[@]}")")
        ( for _ in $(seq 20); do check_attack; sleep 0.2; done ) & checker=$!
        taskset -cp 1 "$checker" >/dev/null
        ours+=("$(rps 18093 "${args[@]}")")
        wait "$checker" || { echo "attacks were not blocked during the run" >&2; exit 1; }
        echo "$workload round $r: nginx ${plain[-1]}, nginx+ModSecurity ${modsec[-1]}, barbican ${ours[-1]} req/s"
    done
    p=$(median "${plain[@]}"); m=$(median "${modsec[@]}"); o=$(median "${ours[@]}")
    echo "$workload median: nginx $p, nginx+ModSecurity $m, barbican+CRS $o req/s; barbican/ModSecurity $(awk -v o="$o" -v m="$m" 'BEGIN {printf "%.1f", o/m}')x (goal >= 20x), barbican/nginx $(awk -v o="$o" -v p="$p" 'BEGIN {printf "%.3f", o/p}')x (goal >= 0.5x)"
done
echo "GET* and POST*: no value repeats across requests (bench/distinct.lua)"
echo "attacks were blocked (403) throughout the Barbican runs"
