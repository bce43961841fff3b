#!/bin/sh
# make bench-profile: instructions per request under callgrind (#18), a
# figure this noisy 2-core machine cannot move. The Release swarmgate runs
# under valgrind --tool=callgrind with observability on (trace stamping,
# histograms, access log to a file, error-rate window) in front of an nginx
# origin on loopback; curl sends N requests over one keep-alive connection.
# Two runs (N1 and N2 requests) per scenario; (Ir(N2) - Ir(N1)) / (N2 - N1)
# removes start-up and shutdown. Scenarios: with an incoming X-Trace-Id
# (the platform's normal case) and without one (swarmgate makes the id).
# Bounded: about a minute. Needs valgrind, nginx, curl (make deps).
#   SG_PROFILE_N1 / SG_PROFILE_N2   request counts (default 300 / 1300)
#   SG_PROFILE_KEEP=DIR             keep the callgrind files there (callgrind_annotate)
set -eu
BIN=${1:-build/release/swarmgate}
N1=${SG_PROFILE_N1:-300}
N2=${SG_PROFILE_N2:-1300}
command -v valgrind >/dev/null || { echo "bench-profile: valgrind missing (apt-get install valgrind)" >&2; exit 2; }
T=$(mktemp -d)
ORIGIN_PID=""
SG_PID=""
cleanup() {
    [ -n "$SG_PID" ] && kill "$SG_PID" 2>/dev/null || true
    [ -n "$ORIGIN_PID" ] && kill "$ORIGIN_PID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 port
    i=0
    while ! curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "bench-profile: nothing on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

OPORT=$(free_port)
mkdir -p "$T/nginx"
cat > "$T/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $T/nginx.pid; error_log $T/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $T/nginx;
  server { listen 127.0.0.1:$OPORT; location / { return 200 "hello from origin\n"; } } }
NGX
nginx -c "$T/nginx.conf" -p "$T" &
ORIGIN_PID=$!
wait_port "$OPORT"

# One run: $1 requests, $2 = 1 to send X-Trace-Id. Prints the total Ir.
run() {
    port=$(free_port)
    cat > "$T/sg.yaml" <<YML
workers: 1
listeners: [{name: api, address: "127.0.0.1:$port"}]
admin: {enabled: false}
log: {access: "$T/access.log", level: warn}
upstreams: {app: {servers: ["127.0.0.1:$OPORT"]}}
routes: [{match: {prefix: /}, upstream: app}]
shutdown: {drain_delay: 0ms, drain_timeout: 2s}
YML
    rm -f "$T/cg.out"
    valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" "$BIN" --config "$T/sg.yaml" 2>"$T/vg.err" &
    SG_PID=$!
    wait_port "$port"
    : > "$T/curl.cfg"
    # curl's config options are global: the header once, then the URLs.
    [ "$2" = 1 ] && echo 'header = "X-Trace-Id: 3f2504e0-4f89-41d3-9a0c-0305e82c3301"' >> "$T/curl.cfg"
    i=0
    while [ $i -lt "$1" ]; do
        printf 'url = "http://127.0.0.1:%s/api/x"\noutput = "/dev/null"\n' "$port" >> "$T/curl.cfg"
        i=$((i + 1))
    done
    curl -s -K "$T/curl.cfg"
    kill -TERM "$SG_PID"
    wait "$SG_PID" || true
    SG_PID=""
    [ -n "${SG_PROFILE_KEEP:-}" ] && mkdir -p "$SG_PROFILE_KEEP" && cp "$T/cg.out" "$SG_PROFILE_KEEP/callgrind.id$2.n$1"
    awk '/^(summary|totals):/ { print $2; exit }' "$T/cg.out"
}

printf '%-22s %14s\n' "scenario" "instr/request"
for id in 1 0; do
    # The readiness probe (wait_port) is one more request in each run: it cancels out.
    a=$(run "$N1" "$id")
    b=$(run "$N2" "$id")
    per=$(( (b - a) / (N2 - N1) ))
    name="small, incoming id"
    [ "$id" = 0 ] && name="small, no incoming id"
    printf '%-22s %14s\n' "$name" "$per"
done
