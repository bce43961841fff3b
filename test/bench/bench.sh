#!/bin/sh
# make bench: Release build (with the test helpers), then the driver. Needs
# nginx, haproxy, wrk and postgresql (make deps installs them). Bounded:
# about 8 minutes (12 with SG_BENCH_ALT).
#   SG_BENCH_ARGS   more driver options, e.g. "--scenarios 16k-64 --rounds 9"
#   SG_BENCH_ALT    one more swarmgate contender with this config line,
#                   e.g. SG_BENCH_ALT="busy_poll: 50us" (in-run A/B)
set -eu
BIN=${1:-build/bench/swarmgate}
DIR=$(dirname "$BIN")
mkdir -p build
# shellcheck disable=SC2086 # SG_BENCH_ARGS is a list of options
exec "$DIR/sgbench" --swarmgate "$BIN" --out build/bench.json ${SG_BENCH_ARGS:-} ${SG_BENCH_ALT:+--alt-config "$SG_BENCH_ALT"}
