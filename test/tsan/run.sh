#!/bin/sh
# make tsan: builds swarmgate (and the sample upstream) with clang and
# ThreadSanitizer in build/tsan, runs it with `workers: 2` under concurrent
# keep-alive traffic (wrk), short connections and failing upstream requests
# (curl), /metrics scrapes in both formats and /health probes on the admin
# listener (control thread) and on the proxy listener (workers), TLS
# traffic on a second listener (wrk over HTTPS: handshakes on both workers
# with the shared ticket keys; curl makes a new handshake each round), and
# reloads (SIGHUP) that add and remove a listener and move a route (new
# sockets handed from the control thread to the workers), then drains it
# with SIGTERM. Any ThreadSanitizer report, a non-zero exit or a
# failed scrape fails the run.
# SG_TSAN_SECONDS (default 10): length of the traffic phase.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B="$ROOT/build/tsan"
SECS=${SG_TSAN_SECONDS:-10}
CC=clang cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Debug -DSG_TSAN=ON -DSG_TESTS=OFF >/dev/null
cmake --build "$B" -j "$(nproc)" --target swarmgate demo_upstream >/dev/null

TMP=$(mktemp -d /tmp/sgtsan.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    if [ -n "${SG_TSAN_KEEP:-}" ]; then echo "tsan: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
fail() { echo "tsan: FAIL: $*"; exit 1; }

# Wait for a condition, with a deadline (tenths of a second).
wait_for() {
    n=$1; shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}

# The sample upstream needs a fixed port: take one the kernel hands out.
UP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/demo_upstream" "$UP_PORT" 2>"$TMP/upstream.log" &
PIDS="$PIDS $!"
wait_for 50 curl -sf "http://127.0.0.1:$UP_PORT/" || fail "sample upstream did not start"

# A self-signed certificate for the TLS listener (the clients do not verify).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/tls.key" -out "$TMP/tls.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 \
    || fail "openssl could not make a certificate"
chmod 600 "$TMP/tls.key"

cat >"$TMP/swarmgate.yaml" <<YAML
workers: 2
listeners:
  - {name: api, address: "127.0.0.1:0", serve_health: true}
  - {name: tls, address: "127.0.0.1:0", tls: {cert: "$TMP/tls.pem", key: "$TMP/tls.key"}}
admin: {address: "127.0.0.1:0"}
upstreams:
  app: {servers: ["127.0.0.1:$UP_PORT"], keepalive: 8}
  dead: {servers: ["127.0.0.1:1"], connect_timeout: 200ms, max_fails: 2, fail_timeout: 300ms}
routes:
  - {match: {prefix: /dead/}, upstream: dead}
  - {match: {prefix: /}, upstream: app}
log: {access: "$TMP/access.log", level: info, flush_interval: 10ms}
shutdown: {drain_delay: 0ms, drain_timeout: 5s}
YAML
# The reload variant: one more listener, the /dead/ route gone.
sed -e 's|^  - {name: api, address: "127.0.0.1:0", serve_health: true}$|&\
  - {name: extra, address: "127.0.0.1:0"}|' -e '/prefix: \/dead\//d' "$TMP/swarmgate.yaml" >"$TMP/b.yaml"
cp "$TMP/swarmgate.yaml" "$TMP/a.yaml"
grep -q 'name: extra' "$TMP/b.yaml" || fail "reload variant not built"

TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4 log_path=$TMP/tsan suppressions=$ROOT/test/tsan/suppressions.txt" \
    "$B/swarmgate" --config "$TMP/swarmgate.yaml" --ports-file "$TMP/ports" 2>"$TMP/stderr" &
GW=$!
PIDS="$PIDS $GW"
wait_for 300 grep -q '^admin ' "$TMP/ports" || { cat "$TMP/stderr"; fail "swarmgate did not start"; }
API=$(awk '$1=="api"{print $2}' "$TMP/ports")
TLS=$(awk '$1=="tls"{print $2}' "$TMP/ports")
ADMIN=$(awk '$1=="admin"{print $2}' "$TMP/ports")
wait_for 100 curl -sf "http://$API/health" || fail "proxy listener not answering"

echo "tsan: ${SECS}s of traffic on $API (workers: 2), scrapes on $ADMIN"
wrk -t2 -c32 -d"${SECS}s" -H "X-Trace-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736" "http://$API/api/x" >"$TMP/wrk.log" 2>&1 &
WRK=$!
PIDS="$PIDS $WRK"
wrk -t1 -c8 -d"${SECS}s" "https://$TLS/tls/x" >"$TMP/wrk-tls.log" 2>&1 &
WRKTLS=$!
PIDS="$PIDS $WRKTLS"
end=$(( $(date +%s) + SECS ))
scrapes=0
while [ "$(date +%s)" -lt "$end" ]; do
    curl -sf -o /dev/null "http://$ADMIN/metrics" || fail "/metrics scrape failed"
    curl -sf -o /dev/null -H "Accept: application/openmetrics-text; version=1.0.0" "http://$ADMIN/metrics" \
        || fail "OpenMetrics scrape failed"
    curl -s -o /dev/null "http://$ADMIN/health/ready" || fail "/health/ready failed"
    curl -s -o /dev/null "http://$API/health/ready" || fail "/health/ready on a worker failed"
    curl -s -o /dev/null "http://$API/dead/x" || true            # 502/503: passive health across workers
    curl -s -o /dev/null -H "Connection: close" "http://$API/short" || true
    curl -sk -o /dev/null "https://$TLS/new-handshake" || fail "HTTPS request failed"
    curl -s -o /dev/null -H "X-Trace-Id: bad\"id" "http://$API/bad" || true
    if [ $((scrapes % 2)) -eq 0 ]; then cp "$TMP/b.yaml" "$TMP/next.yaml"; else cp "$TMP/a.yaml" "$TMP/next.yaml"; fi
    mv "$TMP/next.yaml" "$TMP/swarmgate.yaml"
    kill -HUP "$GW"
    scrapes=$((scrapes + 1))
done
wait "$WRK" || fail "wrk failed: $(cat "$TMP/wrk.log")"
grep -E "Requests/sec|requests in" "$TMP/wrk.log" | sed 's/^/tsan: wrk: /'
wait "$WRKTLS" || fail "wrk (TLS) failed: $(cat "$TMP/wrk-tls.log")"
grep -E "Requests/sec|requests in" "$TMP/wrk-tls.log" | sed 's/^/tsan: wrk (TLS): /'
echo "tsan: $scrapes scrape rounds, $(grep -c 'config reloaded' "$TMP/stderr" || true) reloads"

kill -TERM "$GW"
rc=0
wait "$GW" || rc=$?
PIDS=$(echo "$PIDS" | sed "s/ $GW//")
reports=$(cat "$TMP"/tsan.* 2>/dev/null | grep -c "WARNING: ThreadSanitizer" || true)
if [ "$reports" -gt 0 ]; then
    cat "$TMP"/tsan.*
    fail "$reports ThreadSanitizer report(s)"
fi
[ "$rc" -eq 0 ] || { tail -20 "$TMP/stderr"; fail "swarmgate exited with $rc"; }
lines=$(wc -l <"$TMP/access.log")
echo "tsan: OK: no ThreadSanitizer report; clean exit; $lines access-log lines"
