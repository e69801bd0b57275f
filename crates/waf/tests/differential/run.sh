#!/bin/sh
# Starts nginx + libmodsecurity3 with CRS 4.28.0 set up as crates/waf/tests/crs_regression.rs
# sets up the engine (reference modsecurity.conf, crs-setup, the harness settings, a marker
# rule), for the differential test:
#
#   crates/waf/tests/differential/run.sh            # start on 127.0.0.1:28791 (backend 28790)
#   BARBICAN_DIFF_ADDR=127.0.0.1:28791 BARBICAN_DIFF_LOG=$DIFF_DIR/logs/error.log \
#     cargo test -p barbican-waf --test crs_regression -- --ignored --nocapture
#   crates/waf/tests/differential/run.sh stop
#
# Needs the Debian packages nginx and libnginx-mod-http-modsecurity. Files go to $DIFF_DIR
# (default /tmp/barbican-diff).
set -e
here=$(cd "$(dirname "$0")" && pwd)
shared=${BARBICAN_SHARED_DIR:-$(cd "$here/../../../../../shared" && pwd)}
crs=$shared/crs/v4.28.0
dir=${DIFF_DIR:-/tmp/barbican-diff}
if [ "$1" = stop ]; then
  [ -f "$dir/nginx.pid" ] && nginx -p "$dir" -c "$dir/nginx.conf" -s stop
  exit 0
fi
mkdir -p "$dir/logs"
{
  cat "$shared/reference/modsecurity.conf"
  echo "Include $crs/crs-setup.conf.example"
  # The harness settings of crs_regression.rs (the CRS test containers' environment).
  echo 'SecRuleEngine DetectionOnly'
  echo 'SecResponseBodyAccess On'
  echo 'SecResponseBodyMimeType text/plain text/html text/xml application/json'
  echo 'SecAction "id:900005,phase:1,nolog,pass,t:none,setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_length=400,setvar:tx.total_arg_length=6400,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"'
  echo "SecRule REQUEST_HEADERS:X-Diff-Marker \"@rx ^(.*)\$\" \"id:999999,phase:1,pass,log,capture,t:none,msg:'marker %{TX.1}'\""
  echo "Include $crs/rules/*.conf"
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
nginx -p "$dir" -c "$dir/nginx.conf"
echo "reference on 127.0.0.1:28791, log $dir/logs/error.log"
