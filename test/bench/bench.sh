#!/bin/sh
# make bench: Release build, then the driver. Needs nginx, haproxy and wrk
# (make deps installs them). Bounded: about 6 minutes.
set -eu
BIN=${1:-build/release/swarmgate}
DIR=$(dirname "$BIN")
mkdir -p build
exec "$DIR/sgbench" --swarmgate "$BIN" --out build/bench.json ${SG_BENCH_ARGS:-}
