#!/bin/sh
# make demo: a throwaway Postgres with sample swarm data, a sample upstream and
# swarmgate, then traced requests, health and /metrics. Ctrl-C stops all.
# SG_DEMO_ONESHOT=1 (or no terminal) shows everything once and exits.
set -eu
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
API_PORT=${SG_DEMO_API_PORT:-8080}
ADMIN_PORT=${SG_DEMO_ADMIN_PORT:-9464}
UP_PORT=${SG_DEMO_UPSTREAM_PORT:-3002}
PG_PORT=${SG_DEMO_PG_PORT:-55432}
TMP=$(mktemp -d /tmp/swarmgate-demo.XXXXXX)
PIDS=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; sh -c "$*" || true; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "demo: PostgreSQL server binaries not found (make deps)"; exit 1; }
AS_PG=""
if [ "$(id -u)" -eq 0 ]; then chown postgres "$TMP"; AS_PG="runuser -u postgres --"; fi

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    [ -f "$TMP/pg/postmaster.pid" ] && $AS_PG "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "PostgreSQL (throwaway, $TMP/pg, port $PG_PORT) with the reference schema and sample data"
$AS_PG "$PGBIN/initdb" -D "$TMP/pg" -U postgres -A trust >/dev/null
$AS_PG "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w \
    -o "-p $PG_PORT -k $TMP -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
psql -q -h "$TMP" -p "$PG_PORT" -U postgres -c "CREATE DATABASE swarm" >/dev/null
for f in "$ROOT/config/sql/schema.sql" "$ROOT/config/sql/sample_data.sql"; do
    [ -f "$f" ] && psql -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PG_PORT" -U postgres -d swarm -f "$f" >/dev/null
done
psql -h "$TMP" -p "$PG_PORT" -U postgres -d swarm -c "SELECT state, count(*) FROM tickets GROUP BY state ORDER BY 1" 2>/dev/null || true

say "Sample upstream on 127.0.0.1:$UP_PORT"
"$(dirname "$BIN")/demo_upstream" "$UP_PORT" 2>"$TMP/upstream.log" &
PIDS="$PIDS $!"

cat > "$TMP/swarmgate.yaml" <<YAML
workers: 2
listeners:
  - {name: api, address: "127.0.0.1:$API_PORT", mode: reverse}
admin: {address: "127.0.0.1:$ADMIN_PORT"}
upstreams:
  platform: {servers: ["127.0.0.1:$UP_PORT"], balance: round_robin, keepalive: 16}
routes:
  - {name: api, match: {prefix: /api/}, upstream: platform}
trace: {header: X-Trace-Id, traceparent: true}
metrics: {error_rate_window: 5m}
postgres: {conninfo: "host=127.0.0.1 port=$PG_PORT dbname=swarm user=postgres", interval: 2s, required: false}
log: {access: "$TMP/access.log", level: info}
YAML
say "swarmgate: proxy on 127.0.0.1:$API_PORT, admin on 127.0.0.1:$ADMIN_PORT"
"$BIN" --check-config "$TMP/swarmgate.yaml"
"$BIN" --config "$TMP/swarmgate.yaml" 2>"$TMP/swarmgate.log" &
SG=$!
PIDS="$PIDS $SG"
i=0
until curl -fs "http://127.0.0.1:$ADMIN_PORT/health/ready" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $SG 2>/dev/null; then
        echo "demo: swarmgate did not become ready; its log:"; cat "$TMP/swarmgate.log"; exit 1
    fi
    sleep 0.1
done

say "A request without a trace id: swarmgate makes one, sends it upstream and back"
run "curl -si http://127.0.0.1:$API_PORT/api/tickets"
say "A request with the platform's X-Trace-Id: forwarded unchanged (normalized to lower case)"
run "curl -si -H 'X-Trace-Id: 3F2504E0-4F89-41D3-9A0C-0305E82C3301' http://127.0.0.1:$API_PORT/api/tickets/42"
say "A W3C traceparent only: X-Trace-Id derived from its trace-id, the trace continued"
run "curl -si -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' http://127.0.0.1:$API_PORT/api/agents"
say "An invalid id is replaced (never echoed), and a proxy-made 404 still carries the id"
run "curl -si -H 'X-Trace-Id: not-a-uuid\"' http://127.0.0.1:$API_PORT/nowhere"
say "An upstream 500 counts in the error rate"
run "curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:$API_PORT/api/fail"
sleep 0.3
say "Access log (JSON lines, one per request, each with its trace_id)"
run "tail -n 5 '$TMP/access.log'"
say "Health (liveness and readiness, for orchestrators)"
run "curl -si http://127.0.0.1:$ADMIN_PORT/health"
say "Waiting for a Postgres poll, then /metrics (swarm_* families)"
sleep 2.5
run "curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep -E '^swarm_(tickets|circuit|vm|db_up|error_rate|http_requests_total|trace_ids)'"

if [ "${SG_DEMO_ONESHOT:-}" = "1" ] || [ ! -t 0 ]; then
    say "Done (one-shot)."
    exit 0
fi
say "Running. Try: curl -si http://127.0.0.1:$API_PORT/api/x ; curl -s http://127.0.0.1:$ADMIN_PORT/metrics. Ctrl-C stops everything."
wait $SG
