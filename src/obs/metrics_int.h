/* Internals of metrics.c shared with its unit tests. */
#ifndef SG_OBS_METRICS_INT_H
#define SG_OBS_METRICS_INT_H

#include "sg/metrics.h"

#include <stdatomic.h>

/* The largest integer count of nanoseconds n with n / 1e9 <= bound (as
 * doubles), so integer compares place an observation exactly as a float
 * compare of its seconds against `bound` would (le is inclusive). -1 for a
 * negative bound (nothing goes there), INT64_MAX for huge ones. */
int64_t sg__metrics_bound_ns(double bound);
/* Index of the first bucket with v_ns <= bounds_ns[i]; n (the +Inf bucket)
 * when none. */
size_t sg__metrics_bucket(const int64_t *bounds_ns, size_t n, uint64_t v_ns);

/* One exemplar slot: a seqlock (single writer: the shard's owner). The
 * sequence is odd while a write is in progress; 0 = never written. Every
 * field is an atomic word so a concurrent read is not a data race. */
typedef struct sg__exemplar_slot {
    _Atomic uint64_t seq;
    _Atomic uint64_t value_ns;
    _Atomic uint64_t ts_unix_ms;
    _Atomic uint64_t id[5]; /* 36 id chars, zero padded */
} sg__exemplar_slot_t;

void sg__exemplar_write(sg__exemplar_slot_t *e, const char *trace_id, uint64_t value_ns, uint64_t ts_unix_ms);
/* Reads a consistent copy (bounded retries). false when never written or
 * when the writer kept it busy through every retry. */
bool sg__exemplar_read(const sg__exemplar_slot_t *e, char trace_id[37], uint64_t *value_ns, uint64_t *ts_unix_ms);

/* Bytes of one shard's arrays (counters, exemplar slots, error-rate
 * rings), before cache-line rounding: what each worker pays for the
 * registry's layout, spare label room included (docs/metrics.md). */
size_t sg__metrics_shard_bytes(const sg_metrics_t *m);

#endif /* SG_OBS_METRICS_INT_H */
