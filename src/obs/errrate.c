#include "sg/errrate.h"

#include <errno.h>
#include <stdlib.h>

#define NEVER UINT64_MAX /* epoch of a slot never written */

enum { F_EPOCH = 0, F_TOTAL, F_ERRORS, F__COUNT };

int sg_errrate_init(sg_errrate_t *e, uint64_t window_ms, uint64_t resolution_ms, size_t n_keys)
{
    memset(e, 0, sizeof(*e));
    if (!window_ms)
        window_ms = 5 * 60 * 1000;
    if (!resolution_ms)
        resolution_ms = 1000;
    if (resolution_ms > window_ms)
        resolution_ms = window_ms;
    uint64_t n = (window_ms + resolution_ms - 1) / resolution_ms;
    if (n > SG_ERRRATE_MAX_SLOTS) {
        /* keep the window, widen the slots */
        resolution_ms = (window_ms + SG_ERRRATE_MAX_SLOTS - 1) / SG_ERRRATE_MAX_SLOTS;
        n = (window_ms + resolution_ms - 1) / resolution_ms;
    }
    if (n_keys == 0)
        n_keys = 1;
    size_t words = n_keys * (size_t)n * F__COUNT;
    size_t bytes = (words * sizeof(uint64_t) + SG_CACHELINE - 1) / SG_CACHELINE * SG_CACHELINE;
    _Atomic uint64_t *s = aligned_alloc(SG_CACHELINE, bytes);
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < words; i++)
        atomic_init(&s[i], (i % F__COUNT) == F_EPOCH ? NEVER : 0);
    e->resolution_ms = resolution_ms;
    e->n_slots = (uint32_t)n;
    e->n_keys = (uint32_t)n_keys;
    e->_slots = s;
    return 0;
}

void sg_errrate_destroy(sg_errrate_t *e)
{
    free((void *)e->_slots);
    e->_slots = NULL;
}

static inline void bump(_Atomic uint64_t *w)
{
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) + 1, memory_order_relaxed);
}

void sg_errrate_record(sg_errrate_t *e, size_t key, uint64_t now_ms, bool is_error)
{
    if (SG_UNLIKELY(key >= e->n_keys))
        return;
    uint64_t epoch = now_ms / e->resolution_ms;
    _Atomic uint64_t *slot = e->_slots + ((size_t)key * e->n_slots + (size_t)(epoch % e->n_slots)) * F__COUNT;
    if (atomic_load_explicit(&slot[F_EPOCH], memory_order_relaxed) != epoch) {
        /* A new second lands on this slot: what it held is a whole window
         * old. Zero the counts, then publish the epoch (release), so a reader
         * that sees the new epoch sees the zeroed counts. */
        atomic_store_explicit(&slot[F_TOTAL], 0, memory_order_relaxed);
        atomic_store_explicit(&slot[F_ERRORS], 0, memory_order_relaxed);
        atomic_store_explicit(&slot[F_EPOCH], epoch, memory_order_release);
    }
    bump(&slot[F_TOTAL]);
    if (is_error)
        bump(&slot[F_ERRORS]);
}

void sg_errrate_collect(const sg_errrate_t *e, size_t key, uint64_t now_ms, sg_errrate_sum_t *acc)
{
    if (key >= e->n_keys)
        return;
    uint64_t now_epoch = now_ms / e->resolution_ms;
    /* window: epochs in (now_epoch - n_slots, now_epoch] */
    uint64_t oldest = now_epoch >= e->n_slots ? now_epoch - e->n_slots + 1 : 0;
    _Atomic uint64_t *base = e->_slots + (size_t)key * e->n_slots * F__COUNT;
    for (uint32_t i = 0; i < e->n_slots; i++) {
        _Atomic uint64_t *slot = base + (size_t)i * F__COUNT;
        uint64_t ep = atomic_load_explicit(&slot[F_EPOCH], memory_order_acquire);
        if (ep == NEVER || ep < oldest || ep > now_epoch)
            continue;
        uint64_t total = atomic_load_explicit(&slot[F_TOTAL], memory_order_relaxed);
        uint64_t errors = atomic_load_explicit(&slot[F_ERRORS], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        /* reset under our feet: the slot now belongs to a newer second whose
         * counts we may have half-read; skip it rather than mix two seconds */
        if (atomic_load_explicit(&slot[F_EPOCH], memory_order_relaxed) != ep)
            continue;
        if (errors > total) /* the writer bumps total first; never report > 1 */
            errors = total;
        acc->total += total;
        acc->errors += errors;
    }
}

double sg_errrate_ratio(const sg_errrate_sum_t *s)
{
    return s->total ? (double)s->errors / (double)s->total : 0.0;
}
