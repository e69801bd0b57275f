#!/bin/sh
# Starts nginx + libmodsecurity3 set up as crates/waf/tests/crs_regression.rs sets up the
# engine (reference modsecurity.conf, CRS setup, the harness settings, a marker rule, the
# rules), for the differential test:
#
#   crates/waf/tests/differential/run.sh            # CRS 4.28.0 on 127.0.0.1:28791 (backend 28790)
#   crates/waf/tests/differential/run.sh 3.3.4      # Debian's CRS 3.3.4 instead
#   BARBICAN_DIFF_ADDR=127.0.0.1:28791 BARBICAN_DIFF_LOG=$DIFF_DIR/logs/error.log \
#     [BARBICAN_DIFF_SUITE=3.3.4] cargo test -p barbican-waf --test crs_regression -- --ignored --nocapture
#   crates/waf/tests/differential/run.sh stop
#
# Needs the Debian packages nginx, libnginx-mod-http-modsecurity (and modsecurity-crs for
# 3.3.4). Files go to $DIFF_DIR (default /tmp/barbican-diff).
set -e
here=$(cd "$(dirname "$0")" && pwd)
shared=${BARBICAN_SHARED_DIR:-$(cd "$here/../../../../../shared" && pwd)}
dir=${DIFF_DIR:-/tmp/barbican-diff}
if [ "$1" = stop ]; then
  [ -f "$dir/nginx.pid" ] && nginx -p "$dir" -c "$dir/nginx.conf" -s stop
  exit 0
fi
mkdir -p "$dir/logs"
marker="SecRule REQUEST_HEADERS:X-Diff-Marker \"@rx ^(.*)\$\" \"id:999999,phase:1,pass,log,capture,t:none,msg:'marker %{TX.1}'\""
{
  cat "$shared/reference/modsecurity.conf"
  if [ "$1" = 3.3.4 ]; then
    echo "Include /etc/modsecurity/crs/crs-setup.conf"
    # HARNESS_3 of crs_regression.rs (the CRS 3.3.4 suite README's set-up).
    echo 'SecRuleEngine DetectionOnly'
    echo 'SecResponseBodyAccess On'
    echo 'SecAction "id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,setvar:tx.paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400"'
    echo "$marker"
    echo "Include /usr/share/modsecurity-crs/rules/*.conf"
  else
    crs=$shared/crs/v4.28.0
    echo "Include $crs/crs-setup.conf.example"
    # HARNESS of crs_regression.rs (the CRS test containers' environment).
    echo 'SecRuleEngine DetectionOnly'
    echo 'SecResponseBodyAccess On'
    echo 'SecResponseBodyMimeType text/plain text/html text/xml application/json'
    echo 'SecAction "id:900005,phase:1,nolog,pass,t:none,setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_length=400,setvar:tx.total_arg_length=6400,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"'
    echo "$marker"
    echo "Include $crs/rules/*.conf"
  fi
} > "$dir/modsec.conf"
cat > "$dir/nginx.conf" <<EOC
load_module /usr/share/nginx/modules/ngx_http_modsecurity_module.so;
pid $dir/nginx.pid; worker_processes 1; error_log $dir/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  server { listen 127.0.0.1:28790; location / { default_type text/plain; return 200 "ok\n"; } }
  server { listen 127.0.0.1:28791; modsecurity on; modsecurity_rules_file $dir/modsec.conf;
    location / { proxy_pass http://127.0.0.1:28790; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOC
if [ -f "$dir/nginx.pid" ] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null; then
  nginx -p "$dir" -c "$dir/nginx.conf" -s reload
else
  nginx -p "$dir" -c "$dir/nginx.conf"
fi
echo "reference on 127.0.0.1:28791, log $dir/logs/error.log"
