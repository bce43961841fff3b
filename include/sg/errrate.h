/* Rolling-window error rate (swarm_error_rate, swarm_upstream_error_rate).
 *
 * Time is cut into slots of `resolution_ms`; the window holds
 * n_slots = ceil(window / resolution) of them (at most SG_ERRRATE_MAX_SLOTS:
 * beyond that the resolution is widened so the window still holds). Each
 * key (0 = all responses, 1.. = one upstream each, as the caller numbers
 * them) has a ring of slots {epoch, total, errors}, epoch being
 * now_ms / resolution_ms of the slot's second. A writer that finds an old
 * epoch in the slot it lands on resets it first, so stale slots never need
 * sweeping; a reader ignores slots whose epoch is outside the window.
 *
 * One sg_errrate_t belongs to one writer thread (it lives in a metrics
 * shard): sg_errrate_record() uses relaxed load + store, no RMW. Readers on
 * any thread call sg_errrate_collect() over every shard and add up. Time is
 * passed in (monotonic ms), so tests drive it with a fake clock. */
#ifndef SG_ERRRATE_H
#define SG_ERRRATE_H

#include "sg/common.h"

#include <stdatomic.h>

#define SG_ERRRATE_MAX_SLOTS 3600

typedef struct sg_errrate {
    uint64_t resolution_ms;
    uint32_t n_slots;
    uint32_t n_keys;
    _Atomic uint64_t *_slots; /* [key][slot][3]: epoch, total, errors; cache-line aligned */
} sg_errrate_t;

typedef struct sg_errrate_sum {
    uint64_t total;
    uint64_t errors;
} sg_errrate_sum_t;

/* Sets up an empty window. window_ms 0 means 5 minutes, resolution_ms 0
 * means 1 second. Returns 0 or -ENOMEM. Any thread, before use. */
int sg_errrate_init(sg_errrate_t *e, uint64_t window_ms, uint64_t resolution_ms, size_t n_keys) SG_MUST_CHECK;
void sg_errrate_destroy(sg_errrate_t *e);

/* Counts one response for `key` at now_ms (is_error: a 5xx). Owner thread
 * only; O(1), no allocation. Out-of-range keys are ignored. */
void sg_errrate_record(sg_errrate_t *e, size_t key, uint64_t now_ms, bool is_error);

/* Adds the window ending at now_ms (slots whose epoch is within the last
 * n_slots, the current one included) of `key` into *acc. Any thread. */
void sg_errrate_collect(const sg_errrate_t *e, size_t key, uint64_t now_ms, sg_errrate_sum_t *acc);

/* errors / total, 0 when total is 0. */
double sg_errrate_ratio(const sg_errrate_sum_t *s);

#endif /* SG_ERRRATE_H */
