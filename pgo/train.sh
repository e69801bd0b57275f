#!/usr/bin/env bash
# The training load of pgo/build.sh: runs BINARY (instrumented) as an origin and as a gateway in
# front of it, sends the gateway a mix of requests with curl, and stops both with SIGTERM, so
# that each writes its profile (to LLVM_PROFILE_FILE) as it exits.
#
# The gateway proxies `/static/` and `/hooks/` plainly and inspects everything else with the
# OWASP CRS at paranoia 1, blocking, plus Barbican's own rules (rules/custom). The mix:
# browser-like GETs, JSON, form, XML and multipart bodies, other methods, attacks (blocked),
# over HTTP/1.1 and TLS (HTTP/1.1, and h2 by ALPN; not h2c, whose connections curl before 8.0
# cannot reuse, curl/curl#10634, and which differs from h2 over TLS only in how a connection
# starts). Most values differ from one request to the next within a round (the rounds repeat
# them), so that the WAF's work on unseen values is trained as well as its memos.
#
# With WS_LOAD (examples/ws_load.rs, built), WebSocket connections also go through the gateway
# to its echo server, exchanging small messages for two seconds.
#
#   pgo/train.sh BINARY [WS_LOAD]
#
# Environment: BARBICAN_PGO_CRS, a folder of CRS rule files (default: Debian's CRS 3.3.4,
# /usr/share/modsecurity-crs/rules, else $BARBICAN_CRS_DIR/v4.28.0/rules, BARBICAN_CRS_DIR
# defaulting to ../shared/crs); PGO_ROUNDS (default 8): how many times the mix is sent.
set -euo pipefail
binary=${1:?usage: pgo/train.sh BINARY [WS_LOAD]}
ws_load=${2:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${PGO_ROUNDS:-8}
die() { echo "pgo/train.sh: $*" >&2; exit 1; }

crs=${BARBICAN_PGO_CRS:-}
if [[ -z $crs ]]; then
    for dir in /usr/share/modsecurity-crs/rules "${BARBICAN_CRS_DIR:-$repo/../shared/crs}/v4.28.0/rules"; do
        [[ -d $dir ]] && { crs=$dir; break; }
    done
fi
[[ -n $crs && -d $crs ]] || die "no CRS rules: apt-get install modsecurity-crs, or set BARBICAN_PGO_CRS to a rules folder"

work=$(mktemp -d)
pids=()
echo_server=
cleanup() { for p in "${pids[@]}" $echo_server; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A free loopback port (nothing answers a connection to it), not one taken before.
taken=" "
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        [[ $taken == *" $port "* ]] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        taken+="$port "
        printf -v "$1" '%s' "$port"
        return
    done
}
free_port origin
free_port http
free_port echo_port
https=
if command -v openssl >/dev/null; then
    free_port https
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
else
    echo "pgo/train.sh: no openssl, so no TLS in the training load (apt-get install openssl)" >&2
fi

cat >"$work/origin.yaml" <<YAML
listeners: [{ name: origin, bind: 127.0.0.1:$origin }]
workers: 1
routes:
  - name: api
    match: { path_prefix: /api/ }
    respond:
      status: 200
      content_type: application/json
      body: '{"id":7,"status":"accepted","items":[{"sku":"X-1","qty":1}],"next":"/api/v2/orders?page=2"}'
  - name: page
    match: { path_prefix: / }
    respond:
      status: 200
      content_type: text/html; charset=utf-8
      body: "<!doctype html><html><head><title>Shop</title></head><body><h1>Orders</h1><p>Nothing to see.</p></body></html>"
YAML
{
    echo "listeners:"
    echo "  - { name: public, bind: 127.0.0.1:$http }"
    [[ -n $https ]] && echo "  - { name: secure, bind: 127.0.0.1:$https, tls: { certificates: [{ cert: cert.pem, key: key.pem }] } }"
    cat <<YAML
workers: 1
access_log: access.log
upstreams:
  - { name: origin, targets: [{ addr: 127.0.0.1:$origin }] }
  - { name: echo, targets: [{ addr: 127.0.0.1:$echo_port }] }
waf:
  rulesets:
    crs:
      setup: $repo/rules/crs-setup.conf
      include: ['$crs/*.conf', '$repo/rules/custom/*.conf']
      paranoia_level: 1
routes:
  - { name: assets, match: { path_prefix: /static/ }, upstream: origin }
  - { name: hooks, match: { path_prefix: /hooks/ }, upstream: origin }
  - { name: live, match: { path_prefix: /live/ }, upstream: echo, websocket: { max_message: 1MiB, idle_timeout: 60s } }
  - { name: app, match: { path_prefix: / }, upstream: origin, waf: { ruleset: crs, mode: block } }
YAML
} >"$work/gateway.yaml"

# Quiet: CRS 3.3.4 has rules whose operators (@geoLookup, @rbl) are reported at start-up.
export RUST_LOG=error
"$binary" validate "$work/gateway.yaml" >/dev/null || die "the training config does not validate"
"$binary" run --config "$work/origin.yaml" & pids+=($!)
"$binary" run --config "$work/gateway.yaml" & gateway=$!; pids+=($gateway)
for _ in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$http/static/ready" && break
    kill -0 "$gateway" 2>/dev/null || die "the gateway did not start"
    sleep 0.05
done
if [[ -n $ws_load ]]; then
    # The tool's own counts are not the gateway's.
    LLVM_PROFILE_FILE="$work/ws_load-%p.profraw" "$ws_load" echo "127.0.0.1:$echo_port" & echo_server=$!
fi

ua='Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15'
# One curl config of N requests of every kind (curl reads it with --parallel, keeping its
# connections alive); $1 is where they go, $2 extra options for every request (the protocol),
# $3 is N.
mix() {
    local base=$1 extra=$2 n=$3 i
    for i in $(seq "$n"); do
        # Options do not outlive a `next`: each request names its own.
        local each="silent
output = \"/dev/null\"
write-out = \"%{http_version} %{response_code}\\n\"
$extra"
        cat <<CURL
next
$each
url = "$base/static/css/site-$((i % 7)).css?v=$i"
header = "User-Agent: $ua"
header = "Accept: text/css,*/*;q=0.1"
next
$each
url = "$base/static/img/p$((i % 40)).webp"
header = "User-Agent: $ua"
header = "Accept: image/avif,image/webp,*/*"
header = "If-None-Match: \"v$((i % 3))\""
next
$each
url = "$base/hooks/payments/$i"
header = "User-Agent: payments-webhook/2.1"
header = "Content-Type: application/json"
header = "X-Signature: sha256=$i$i$i"
data = "{\"event\":\"charge.succeeded\",\"id\":\"ch_$i\",\"amount\":$((i * 7 % 1000)),\"currency\":\"eur\",\"metadata\":{\"order\":\"$i\"}}"
next
$each
url = "$base/account/orders?page=$((i % 9))&sort=date&q=red+boots+$i"
header = "User-Agent: $ua"
header = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
header = "Accept-Language: de-DE,de;q=0.9,en;q=0.6"
header = "Cookie: sid=a8f$i; theme=light; consent=1"
header = "Referer: https://shop.example.org/account"
next
$each
url = "$base/api/v3/carts/$i/items"
header = "User-Agent: shop-app/5.$((i % 4)) (Android 14)"
header = "Content-Type: application/json"
header = "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1JHtpfSJ9.c2lnbmF0dXJl$i"
data = "{\"cart\":$i,\"lines\":[{\"sku\":\"K-$i\",\"qty\":$((i % 5 + 1)),\"gift\":false,\"note\":\"wrap it, please\"},{\"sku\":\"M-2\",\"qty\":1,\"price\":12.5}],\"address\":{\"city\":\"Lyon\",\"zip\":\"6900$((i % 10))\"},\"tags\":[\"a\",\"b$i\"],\"coupon\":null}"
next
$each
url = "$base/session/login"
header = "User-Agent: $ua"
data = "username=user$i%40example.org&password=Secr3t-$i&remember=on&next=%2Faccount"
next
$each
url = "$base/api/v3/feeds/import"
header = "Content-Type: application/xml"
data = "<?xml version=\"1.0\"?><feed><item id=\"$i\"><title>Item $i</title><price currency=\"EUR\">9.90</price></item></feed>"
next
$each
url = "$base/profile/avatar"
form = "name=avatar-$i"
form = "file=@$work/origin.yaml;type=text/plain"
next
$each
url = "$base/api/v3/carts/$i"
request = "$( ((i % 3 == 0)) && echo DELETE || echo PUT )"
header = "Content-Type: application/json"
data = "{\"state\":\"closed\",\"reason\":\"r$i\"}"
next
$each
url = "$base/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--%20$i"
header = "User-Agent: $ua"
next
$each
url = "$base/api/v3/comments"
header = "Content-Type: application/json"
data = "{\"text\":\"<script>alert(document.cookie)</script> $i\"}"
next
$each
url = "$base/static/../../etc/passwd"
path-as-is
next
$each
url = "$base/download?file=..%2F..%2F..%2Fetc%2Fshadow&n=$i"
header = "User-Agent: sqlmap/1.7"
CURL
    done
}
# A mix per protocol, written once and sent every round.
mix "http://127.0.0.1:$http" "" 60 >"$work/http1.curl"
if [[ -n $https ]]; then
    tls="cacert = \"$work/cert.pem\"
resolve = \"localhost:$https:127.0.0.1\""
    mix "https://localhost:$https" "$tls
http1.1" 60 >"$work/tls-http1.curl"
    mix "https://localhost:$https" "$tls
http2" 60 >"$work/tls-h2.curl"
fi
for _ in $(seq "$rounds"); do
    for load in "$work"/*.curl; do
        # The answers, tallied by protocol and status below.
        curl --no-progress-meter --parallel --parallel-max 16 -K "$load" >>"$work/answers" || true
    done
done

if [[ -n $ws_load ]]; then
    LLVM_PROFILE_FILE="$work/ws_load-%p.profraw" "$ws_load" pingpong "ws://127.0.0.1:$http/live/feed" 16 2 \
        >"$work/pingpong" || die "the WebSocket load failed"
    read -r _ rate _ <"$work/pingpong"
    ((rate > 0)) || die "no WebSocket message went through: $(cat "$work/pingpong")"
    echo "pgo/train.sh: WebSocket messages relayed at $rate/s" >&2
    kill "$echo_server"
fi

# The load did what it should: attacks blocked, the rest answered.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[[ $(code "http://127.0.0.1:$http/search?q=1%27%20OR%20%271%27%3D%271") == 403 ]] || die "an attack was not blocked"
[[ $(code -H 'Content-Type: application/json' -d '{"a":1}' "http://127.0.0.1:$http/api/v3/x") == 200 ]] || die "a benign request was not answered"
echo "pgo/train.sh: answers by HTTP version and status:" >&2
sort "$work/answers" | uniq -c >&2
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || die "barbican exited with $?"; done
pids=()
