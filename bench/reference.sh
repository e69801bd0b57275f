# Sourced by the benchmark scripts: starts the reference stack ($reference, ../shared/reference/run.sh).
#
# run.sh stops a stack it started before by its pid files, and exits with status 1 and no
# message when a pid file outlived its nginx (a killed run, a rebooted machine): such files are
# removed first. When the stack still does not come up, nginx's error log says why.
start_reference() {
    local dir=${REF_DIR:-/tmp/barbican-reference} pid_file pid
    for pid_file in "$dir/upstream.pid" "$dir/proxies.pid"; do
        [[ -f $pid_file ]] || continue
        pid=$(<"$pid_file")
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "removing $pid_file: its nginx ($pid) is gone" >&2
            rm -f "$pid_file"
        fi
    done
    if ! "$reference" >/dev/null; then
        echo "the reference stack did not start; the end of $dir/logs/error.log:" >&2
        tail -n 5 "$dir/logs/error.log" >&2 2>/dev/null || true
        return 1
    fi
}
