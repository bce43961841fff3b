#!/usr/bin/env bash
# ctest w3c_trace_context: the public W3C Trace Context suite (suite/, see
# README.md) through the built binary over two hops: harness -> reverse
# listener -> relay.py, whose callbacks go through the egress listener back
# to the harness. Offline; needs python3-aiohttp (tools/deps.sh).
#
#   ctest.sh SWARMGATE_BINARY [run.sh options and test names...]
#
# Ports: five free ones in 21000-21099 (run.sh's range), probed from a
# random start so parallel runs rarely meet. Every process started here is
# stopped by PID on exit. Exit status: run.sh's (0 = 41 of 41 passed).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${1:?usage: ctest.sh SWARMGATE_BINARY}"
shift
[ -x "$BIN" ] || { echo "w3c: $BIN is not executable" >&2; exit 2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORTS=()
start=$((RANDOM % 100))
for i in $(seq 0 99); do
    p=$((21000 + (start + i) % 100))
    port_open "$p" || PORTS+=("$p")
    [ "${#PORTS[@]}" -ge 5 ] && break
done
[ "${#PORTS[@]}" -ge 5 ] || { echo "w3c: no five free ports in 21000-21099" >&2; exit 2; }
HARNESS_PORT=${PORTS[0]} RELAY_PORT=${PORTS[1]} API=${PORTS[2]} EGRESS=${PORTS[3]} ADMIN=${PORTS[4]}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/w3c-ctest.XXXXXX")" || exit 2
SGPID=""
cleanup() {
    local rc=$?
    if [ -n "$SGPID" ]; then
        kill -TERM "$SGPID" 2>/dev/null
        wait "$SGPID" 2>/dev/null
    fi
    [ "$rc" = 0 ] || { echo "--- swarmgate log"; tail -n 40 "$TMP/swarmgate.log"; } >&2
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$TMP/w3c.yaml" <<YAML
workers: 1
listeners:
  - {name: api, address: "127.0.0.1:$API", mode: reverse}
  - {name: egress, address: "127.0.0.1:$EGRESS", mode: egress}
admin: {address: "127.0.0.1:$ADMIN"}
upstreams:
  relay: {servers: ["127.0.0.1:$RELAY_PORT"]}
routes:
  - {match: {prefix: /}, upstream: relay}
egress: {allow: ["127.0.0.1:$HARNESS_PORT"]}
log: {access: "$TMP/access.log"}
YAML

"$BIN" --config "$TMP/w3c.yaml" >"$TMP/swarmgate.log" 2>&1 &
SGPID=$!
ready=0
for _ in $(seq 1 200); do            # up to 20 s under ASan on a busy host
    if (exec 3<>"/dev/tcp/127.0.0.1/$ADMIN" && printf 'GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 &&
        head -c 12 <&3 | grep -q ' 200') 2>/dev/null; then
        ready=1; break
    fi
    kill -0 "$SGPID" 2>/dev/null || break
    sleep 0.1
done
[ "$ready" = 1 ] || { echo "w3c: swarmgate did not become ready on 127.0.0.1:$ADMIN" >&2; exit 2; }

HARNESS_PORT=$HARNESS_PORT RELAY_PORT=$RELAY_PORT PROXY_URL="http://127.0.0.1:$API" \
    "$HERE/run.sh" --via-proxy "127.0.0.1:$EGRESS" "$@"
