/* Memory: bump arenas (config generations, transactions) and fixed-size
 * freelists (per-worker pools of conns, txns, buffers).
 *
 * Neither is thread-safe: an arena or freelist belongs to one thread.
 * Build with -DSG_NO_POOLS=1 to send every freelist object to malloc/free, so
 * ASan and valgrind see each one. */
#ifndef SG_MEM_H
#define SG_MEM_H

#include "sg/common.h"

typedef struct sg_arena_chunk sg_arena_chunk_t;

/* A bump allocator. Owner: whoever embeds it; freed by sg_arena_destroy(). */
typedef struct sg_arena {
    sg_arena_chunk_t *_head;
    size_t _chunk_size;
    size_t bytes_used;
} sg_arena_t;

void sg_arena_init(sg_arena_t *a, size_t chunk_size);
/* Frees every chunk but the first, which is kept for reuse. */
void sg_arena_reset(sg_arena_t *a);
void sg_arena_destroy(sg_arena_t *a);
/* 16-byte aligned; NULL on out-of-memory. */
void *sg_arena_alloc(sg_arena_t *a, size_t size) SG_MUST_CHECK;
void *sg_arena_zalloc(sg_arena_t *a, size_t size) SG_MUST_CHECK;
char *sg_arena_strndup(sg_arena_t *a, const char *s, size_t len) SG_MUST_CHECK;
char *sg_arena_strdup(sg_arena_t *a, const char *s) SG_MUST_CHECK;

/* A freelist of equally sized objects. `grows` counts objects that had to be
 * malloc'ed: after warm-up it stays still (the hot-path no-malloc proof). */
typedef struct sg_freelist {
    void *_head;
    size_t obj_size;
    size_t max_free; /* objects kept beyond this are given back to malloc */
    size_t n_free;
    uint64_t grows;
    uint64_t in_use;
    uint64_t released_bytes; /* objects given back to malloc (past max_free), in bytes */
} sg_freelist_t;

void sg_freelist_init(sg_freelist_t *fl, size_t obj_size, size_t max_free);
void sg_freelist_destroy(sg_freelist_t *fl);
void *sg_freelist_get(sg_freelist_t *fl) SG_MUST_CHECK;
void sg_freelist_put(sg_freelist_t *fl, void *obj);

#endif /* SG_MEM_H */
