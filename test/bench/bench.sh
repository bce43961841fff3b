#!/bin/sh
# make bench: Release build (with the test helpers), then the driver. Needs
# nginx, haproxy, h2o, squid, wrk and postgresql (make deps installs them);
# https-resume runs the driver's own load generator (libssl), wrk having no
# TLS session resumption.
# Bounded: 11 scenarios x 3 rounds, each contender a 1 s warm-up and a 4 s
# measured run (135 runs), then idle connections and /metrics: about 15
# minutes (18 with SG_BENCH_ALT); the driver prints its estimate first.
#   SG_BENCH_ARGS   more driver options, e.g. "--scenarios 16k-64 --rounds 9"
#                   (--scenarios skips the idle-connection part; --no-scrape
#                   the /metrics one)
#   SG_BENCH_ALT    one more swarmgate contender with this config line,
#                   e.g. SG_BENCH_ALT="busy_poll: 50us" (in-run A/B)
set -eu
BIN=${1:-build/bench/swarmgate}
DIR=$(dirname "$BIN")
mkdir -p build
# shellcheck disable=SC2086 # SG_BENCH_ARGS is a list of options
exec "$DIR/sgbench" --swarmgate "$BIN" --out build/bench.json ${SG_BENCH_ARGS:-} ${SG_BENCH_ALT:+--alt-config "$SG_BENCH_ALT"}
