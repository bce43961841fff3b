#!/bin/sh
# make fuzz: builds the libFuzzer targets with clang and runs each for
# SG_FUZZ_SECONDS (default 60) on a copy of its seed corpus (plus the inputs
# of past findings in test/fuzz/regressions/<target>/). Findings (crash-*,
# leak-*, timeout-*) stop the run with a non-zero exit: fix the bug, then
# copy the input into test/fuzz/regressions/<target>/ (replayed by
# `make test`, test/unit/fuzz_replay_test.c).
# SG_FUZZ_TARGETS="request response" runs only those targets.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B="$ROOT/build/fuzz"
SECS=${SG_FUZZ_SECONDS:-60}
CC=clang cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Debug -DSG_FUZZ=ON -DSG_TESTS=OFF >/dev/null
cmake --build "$B" -j "$(nproc)" >/dev/null
status=0
for f in "$ROOT"/test/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    name=${n#fuzz_}
    if [ -n "${SG_FUZZ_TARGETS:-}" ]; then
        case " $SG_FUZZ_TARGETS " in *" $name "*) ;; *) continue ;; esac
    fi
    corpus="$B/corpus-$name"
    mkdir -p "$corpus" "$B/findings-$name"
    for d in seeds regressions; do
        [ -d "$ROOT/test/fuzz/$d/$name" ] && cp -n "$ROOT/test/fuzz/$d/$name"/* "$corpus"/ 2>/dev/null || true
    done
    dict=""
    case $name in request | response | diff_request | diff_response) dict="-dict=$ROOT/test/fuzz/http.dict" ;; esac
    echo "fuzz: $name for ${SECS}s"
    # shellcheck disable=SC2086
    if ! "$B/test/fuzz/$n" $dict -max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$B/findings-$name/" -print_final_stats=0 "$corpus" >"$B/$name.log" 2>&1; then
        echo "fuzz: $name FOUND A PROBLEM: see $B/$name.log and $B/findings-$name/"; tail -30 "$B/$name.log"
        status=1
    else
        grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$B/$name.log" | tail -1 || true
    fi
done
exit $status
