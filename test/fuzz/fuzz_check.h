/* Shared by the fuzz targets. Under libFuzzer a failed invariant aborts
 * (a crash the fuzzer saves); the same sources are compiled into
 * test/unit/fuzz_replay_test.c with SG_FUZZ_REPLAY defined, where the abort
 * fails the Criterion test that replays the corpus. */
#ifndef SG_FUZZ_CHECK_H
#define SG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);                          \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
