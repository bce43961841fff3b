#!/bin/sh
# make demo: a throwaway Postgres with sample swarm data, a sample upstream
# (test/demo/demo_upstream.c, playing the platform: tickets in Postgres, a span
# sink) and swarmgate, then traced requests, one trace id followed from the
# access log to the ticket, its events, the span and the metrics exemplar,
# health and /metrics. Ctrl-C stops all (swarmgate drains first).
# SG_DEMO_ONESHOT=1, or no terminal on standard input, shows everything once
# and exits.
set -eu
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
API_PORT=${SG_DEMO_API_PORT:-8080}
ADMIN_PORT=${SG_DEMO_ADMIN_PORT:-9464}
UP_PORT=${SG_DEMO_UPSTREAM_PORT:-3002}
PG_PORT=${SG_DEMO_PG_PORT:-55432}
TMP=$(mktemp -d /tmp/swarmgate-demo.XXXXXX)
PIDS=""
SG=""
INTERRUPTED=""
DRAIN_DELAY=1s
# psql must never page: a pager waits for a key and swallows Ctrl-C.
export PAGER=cat PSQL_PAGER=cat

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; sh -c "$*" || true; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "demo: PostgreSQL server binaries not found (make deps)"; exit 1; }
AS_PG=""
if [ "$(id -u)" -eq 0 ]; then chown postgres "$TMP"; AS_PG="runuser -u postgres --"; fi

cleanup() {
    if [ -n "$SG" ] && kill -0 "$SG" 2>/dev/null; then
        # Ctrl-C reached swarmgate too (same process group): a second signal
        # would skip the drain, so only signal it when it got none.
        [ -n "$INTERRUPTED" ] || kill -TERM "$SG" 2>/dev/null || true
        printf '\nswarmgate drains: /health/ready fails at once, the listeners close after\n'
        printf 'shutdown.drain_delay (%s here, 5s by default), in-flight requests get up to\n' "$DRAIN_DELAY"
        printf 'shutdown.drain_timeout to finish.\n'
        i=0
        while kill -0 "$SG" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    [ -f "$TMP/pg/postmaster.pid" ] && $AS_PG "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT TERM

say "PostgreSQL (throwaway, $TMP/pg, port $PG_PORT) with the reference schema and sample data"
$AS_PG "$PGBIN/initdb" -D "$TMP/pg" -U postgres -A trust >/dev/null
$AS_PG "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w \
    -o "-p $PG_PORT -k $TMP -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
PSQL="psql -X -P pager=off -h $TMP -p $PG_PORT -U postgres"
$PSQL -q -c "CREATE DATABASE swarm" >/dev/null
for f in "$ROOT/config/sql/schema.sql" "$ROOT/config/sql/sample_data.sql"; do
    # -q hides results; client_min_messages hides the NOTICEs of idempotent statements (IF NOT EXISTS).
    [ -f "$f" ] && PGOPTIONS="-c client_min_messages=warning" $PSQL -q -v ON_ERROR_STOP=1 -d swarm -f "$f" >/dev/null
done
$PSQL -d swarm -c "SELECT state, count(*) FROM tickets GROUP BY state ORDER BY 1" 2>/dev/null || true

say "Sample upstream on 127.0.0.1:$UP_PORT (plays the platform: tickets in Postgres, spans to a file)"
"$(dirname "$BIN")/demo_upstream" "$UP_PORT" --pg "host=$TMP port=$PG_PORT dbname=swarm user=postgres" \
    --spans "$TMP/spans.jsonl" 2>"$TMP/upstream.log" &
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
trace:
  header: X-Trace-Id
  traceparent: true
  # Spans (OTLP/HTTP JSON) go to the sample upstream, which appends them to $TMP/spans.jsonl.
  export: {otlp_http: "http://127.0.0.1:$UP_PORT/v1/traces", batch_delay: 200ms}
metrics: {error_rate_window: 5m}
postgres: {conninfo: "host=127.0.0.1 port=$PG_PORT dbname=swarm user=postgres", interval: 2s, required: false}
log: {access: "$TMP/access.log", level: info}
shutdown: {drain_delay: $DRAIN_DELAY, drain_timeout: 5s}
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

say "One trace id end to end: the platform makes a ticket with the request's X-Trace-Id"
TID=$(cat /proc/sys/kernel/random/uuid)
HEX=$(printf '%s' "$TID" | tr -d -)
printf '$ curl -s -X POST -H "X-Trace-Id: %s" -d '"'"'{"title": "demo: follow my trace id"}'"'"' http://127.0.0.1:%s/api/tickets\n' "$TID" "$API_PORT"
CREATED=$(curl -s -X POST -H "X-Trace-Id: $TID" -d '{"title": "demo: follow my trace id"}' "http://127.0.0.1:$API_PORT/api/tickets" || true)
echo "$CREATED"
ID=$(printf '%s' "$CREATED" | sed -n 's/.*"id" *: *\([0-9][0-9]*\).*/\1/p')
if [ -n "$ID" ]; then
    say "An agent works on ticket $ID: its state changes carry the same X-Trace-Id"
    run "curl -s -X POST -H 'X-Trace-Id: $TID' -d '{\"state\": \"in_progress\"}' http://127.0.0.1:$API_PORT/api/tickets/$ID/state"
    run "curl -s -X POST -H 'X-Trace-Id: $TID' -d '{\"state\": \"review\"}' http://127.0.0.1:$API_PORT/api/tickets/$ID/state"
    sleep 0.5
    say "Following $TID: swarmgate's access log"
    run "grep '$TID' '$TMP/access.log'"
    say "... the platform's log lines"
    run "grep 'trace_id=$TID' '$TMP/upstream.log'"
    say "... the ticket row (tickets.trace_id)"
    run "$PSQL -d swarm -c \"SELECT id, title, state, trace_id FROM tickets WHERE trace_id = '$TID'\""
    say "... its events (ticket_events.trace_id: the id of the request that made each change)"
    run "$PSQL -d swarm -c \"SELECT id, ticket_id, from_state, to_state, trace_id FROM ticket_events WHERE trace_id = '$TID' ORDER BY id\""
    say "... the spans swarmgate exported (OTLP traceId: the same 128 bits as 32 hex digits, $HEX)"
    run "grep -oE '\"traceId\":\"$HEX\",\"spanId\":\"[0-9a-f]+\"(,\"parentSpanId\":\"[0-9a-f]+\")?,\"name\":\"[^\"]*\"' '$TMP/spans.jsonl'"
    say "... and the metrics exemplar (OpenMetrics: Accept: application/openmetrics-text)"
    run "curl -s -H 'Accept: application/openmetrics-text' http://127.0.0.1:$ADMIN_PORT/metrics | grep -E 'trace_id=\"($TID|$HEX)\"' | head -n 3"
else
    echo "demo: the sample upstream made no ticket; its log:"; cat "$TMP/upstream.log"
fi
say "Health (liveness and readiness, for orchestrators)"
run "curl -si http://127.0.0.1:$ADMIN_PORT/health"
say "Waiting for a Postgres poll, then /metrics (swarm_* families)"
sleep 2.5
run "curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep -E '^swarm_(tickets|circuit|vm|db_up|error_rate|http_requests_total|trace_ids)'"

if [ "${SG_DEMO_ONESHOT:-}" = "1" ] || [ ! -t 0 ]; then
    say "Done (one-shot)."
    exit 0
fi
say "Running. Try: curl -si http://127.0.0.1:$API_PORT/api/x ; curl -s http://127.0.0.1:$ADMIN_PORT/metrics"
echo "Ctrl-C stops everything: swarmgate drains first (the listeners close after shutdown.drain_delay, $DRAIN_DELAY here)."
wait $SG
