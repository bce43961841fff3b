#include "sg/mem.h"

#include <stdlib.h>
#include <string.h>

struct sg_arena_chunk {
    sg_arena_chunk_t *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
};

static sg_arena_chunk_t *chunk_new(size_t size)
{
    sg_arena_chunk_t *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void sg_arena_init(sg_arena_t *a, size_t chunk_size)
{
    a->_head = NULL;
    a->_chunk_size = chunk_size ? chunk_size : 4096;
    a->bytes_used = 0;
}

void sg_arena_reset(sg_arena_t *a)
{
    sg_arena_chunk_t *c = a->_head;
    if (!c)
        return;
    /* Keep the last (oldest, first allocated) chunk. */
    while (c->next) {
        sg_arena_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    c->used = 0;
    a->_head = c;
    a->bytes_used = 0;
}

void sg_arena_destroy(sg_arena_t *a)
{
    sg_arena_chunk_t *c = a->_head;
    while (c) {
        sg_arena_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    a->_head = NULL;
    a->bytes_used = 0;
}

void *sg_arena_alloc(sg_arena_t *a, size_t size)
{
    size_t need = (size + 15u) & ~(size_t)15u;
    if (need < size)
        return NULL;
    sg_arena_chunk_t *c = a->_head;
    if (!c || c->size - c->used < need) {
        size_t csize = need > a->_chunk_size ? need : a->_chunk_size;
        sg_arena_chunk_t *n = chunk_new(csize);
        if (!n)
            return NULL;
        n->next = c;
        a->_head = n;
        c = n;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->bytes_used += need;
    return p;
}

void *sg_arena_zalloc(sg_arena_t *a, size_t size)
{
    void *p = sg_arena_alloc(a, size);
    if (p)
        memset(p, 0, size);
    return p;
}

char *sg_arena_strndup(sg_arena_t *a, const char *s, size_t len)
{
    char *p = sg_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *sg_arena_strdup(sg_arena_t *a, const char *s)
{
    return sg_arena_strndup(a, s, strlen(s));
}

/* Pools off: every object comes from malloc and goes back to free, so
 * ASan sees a use after free of a conn, txn or buffer instead of a recycled
 * object (and valgrind sees each one). Built in with -DSG_NO_POOLS, or
 * chosen at start-up with SG_POOLS=off in the environment (the pools-off
 * test run, test/CMakeLists.txt). Read when a freelist is set up; a
 * freelist that keeps no free object costs nothing more on the hot path. */
static bool is_pools_off(void)
{
#ifdef SG_NO_POOLS
    return true;
#else
    const char *v = getenv("SG_POOLS");
    return v && strcmp(v, "off") == 0;
#endif
}

void sg_freelist_init(sg_freelist_t *fl, size_t obj_size, size_t max_free)
{
    fl->_head = NULL;
    fl->obj_size = obj_size < sizeof(void *) ? sizeof(void *) : obj_size;
    fl->max_free = is_pools_off() ? 0 : max_free;
    fl->n_free = 0;
    fl->grows = 0;
    fl->in_use = 0;
    fl->released_bytes = 0;
}

void sg_freelist_destroy(sg_freelist_t *fl)
{
    while (fl->_head) {
        void *n = *(void **)fl->_head;
        free(fl->_head);
        fl->_head = n;
    }
    fl->n_free = 0;
}

void *sg_freelist_get(sg_freelist_t *fl)
{
    void *p;
    if (fl->_head) {
        p = fl->_head;
        fl->_head = *(void **)p;
        fl->n_free--;
        fl->in_use++;
        return p;
    }
    p = malloc(fl->obj_size);
    if (p) {
        fl->grows++;
        fl->in_use++;
    }
    return p;
}

void sg_freelist_put(sg_freelist_t *fl, void *obj)
{
    if (!obj)
        return;
    fl->in_use--;
    if (fl->n_free < fl->max_free) {
        *(void **)obj = fl->_head;
        fl->_head = obj;
        fl->n_free++;
        return;
    }
    fl->released_bytes += fl->obj_size;
    free(obj);
}
