#!/bin/sh
# nginx + libmodsecurity3 set up as crates/waf/tests/crs_regression.rs sets up Barbican's engine
# (the reference modsecurity.conf, the CRS setup, the suite's harness settings from
# harness-<version>.conf beside this script, the rules), for the differential tests
# `differential_crs_4_28_0` and `differential_crs_3_3_4`, which start and stop it themselves on
# a free port in a temporary folder:
#
#   cargo test -p barbican-waf --test crs_regression differential -- --nocapture
#
# By hand, to send requests of your own:
#
#   crates/waf/tests/differential/run.sh [4.28.0|3.3.4]   # start (or reload); CRS 4.28.0 by default
#   crates/waf/tests/differential/run.sh stop             # stop; returns once nginx has exited
#
# Settings (environment):
#   DIFF_DIR          generated files and logs (default /tmp/barbican-diff)
#   DIFF_PORT         the ModSecurity listener on 127.0.0.1 (default 28791)
#   DIFF_OWNER        a process id: nginx is stopped once that process is gone (the tests give
#                     theirs, so that a test killed before it could stop nginx leaves none)
#   BARBICAN_CRS_DIR  as for the tests (default <workspace>/../shared/crs): CRS 4.28.0 in
#                     $BARBICAN_CRS_DIR/v4.28.0, the engine settings in
#                     $BARBICAN_CRS_DIR/../reference/modsecurity.conf
#
# What listens:
#   127.0.0.1:$DIFF_PORT     nginx + libmodsecurity3, proxying to the backend
#   $DIFF_DIR/backend.sock   the backend: `200 ok\n`, text/plain, for every request
#   $DIFF_DIR/marker.sock    no ModSecurity; `GET /<name>` logs `open() "$DIFF_DIR/markers/<name>"
#                            failed` (the tests' separators between requests)
# ModSecurity's matches go to $DIFF_DIR/logs/error.log (level info), one line per rule, each
# with nginx's connection number (`*123`).
#
# Needs the Debian packages nginx and libnginx-mod-http-modsecurity (and modsecurity-crs for
# 3.3.4); exits 2 saying so when they are missing.
set -e
here=$(cd "$(dirname "$0")" && pwd)
dir=${DIFF_DIR:-/tmp/barbican-diff}
port=${DIFF_PORT:-28791}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
module=/usr/share/nginx/modules/ngx_http_modsecurity_module.so
install="apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs"

if [ "$1" = stop ]; then
  [ -f "$dir/nginx.pid" ] || exit 0
  pid=$(cat "$dir/nginx.pid")
  kill -QUIT "$pid" 2>/dev/null || { rm -f "$dir/nginx.pid"; exit 0; }
  # A graceful stop is quick (the clients are gone); wait for it, so that the log is complete.
  alive() { kill -0 "$1" 2>/dev/null && ! grep -qs ') Z' "/proc/$1/stat"; }
  i=0
  while alive "$pid"; do
    i=$((i + 1))
    if [ $i -eq 100 ]; then kill -TERM "$pid" 2>/dev/null || true; fi
    if [ $i -ge 200 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.05
  done
  exit 0
fi

if [ ! -x "$nginx" ] || [ ! -f "$module" ]; then
  echo "nginx with its ModSecurity module is not installed ($nginx, $module): run \`$install\`" >&2
  exit 2
fi
crs=${BARBICAN_CRS_DIR:-$here/../../../../../shared/crs}
reference=$crs/../reference/modsecurity.conf
[ -f "$reference" ] || { echo "the reference engine settings are not at $reference" >&2; exit 2; }
case "${1:-4.28.0}" in
  4.28.0)
    setup=$crs/v4.28.0/crs-setup.conf.example
    rules=$crs/v4.28.0/rules
    [ -f "$setup" ] || { echo "the OWASP CRS 4.28.0 is not at $crs/v4.28.0 (see README.md)" >&2; exit 2; }
    harness=$here/harness-4.28.0.conf ;;
  3.3.4)
    setup=/etc/modsecurity/crs/crs-setup.conf
    rules=/usr/share/modsecurity-crs/rules
    [ -f "$setup" ] || { echo "Debian's CRS 3.3.4 is not installed ($setup): run \`$install\`" >&2; exit 2; }
    harness=$here/harness-3.3.4.conf ;;
  *) echo "usage: $0 [4.28.0|3.3.4|stop]" >&2; exit 64 ;;
esac

mkdir -p "$dir/logs" "$dir/markers"
{
  cat "$reference"
  echo "Include $setup"
  cat "$harness"
  echo "Include $rules/*.conf"
} > "$dir/modsec.conf"
cat > "$dir/nginx.conf" <<EOC
load_module $module;
pid $dir/nginx.pid; worker_processes 1; error_log $dir/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  upstream backend { server unix:$dir/backend.sock; keepalive 4; }
  server { listen unix:$dir/backend.sock; location / { default_type text/plain; return 200 "ok\n"; } }
  server { listen unix:$dir/marker.sock; location / { root $dir/markers; } }
  server { listen 127.0.0.1:$port; modsecurity on; modsecurity_rules_file $dir/modsec.conf;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOC
if [ -f "$dir/nginx.pid" ] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null; then
  "$nginx" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -s reload
else
  rm -f "$dir/backend.sock" "$dir/marker.sock"
  "$nginx" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf"
  if [ -n "$DIFF_OWNER" ]; then
    DIFF_DIR=$dir nohup sh -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec sh "$2" stop' \
      watch "$DIFF_OWNER" "$here/run.sh" >/dev/null 2>&1 </dev/null &
  fi
fi
echo "nginx + libmodsecurity3 (CRS ${1:-4.28.0}) on 127.0.0.1:$port, log $dir/logs/error.log"
