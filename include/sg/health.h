/* Health: liveness and readiness computed from state kept current by the
 * workers and the control thread (DESIGN.md section 6). Never waits on a
 * /metrics render or a Postgres query: every input is an atomic or a plain
 * value read in O(workers + servers). Called on the control thread (admin
 * listener) or a worker (proxy listener with serve_health). */
#ifndef SG_HEALTH_H
#define SG_HEALTH_H

#include "sg/common.h"
#include "sg/listener.h"
#include "sg/runtime.h"

/* Inputs that are not in sg_runtime_t. */
typedef struct sg_health_inputs {
    uint64_t now_ms;     /* sg_now_ms() */
    uint64_t stale_ms;   /* a worker not ticking this long is stuck */
    bool pg_enabled;     /* postgres.conninfo set */
    bool pg_required;    /* postgres.required */
    bool pg_up;          /* connected to Postgres */
    uint32_t pg_failing; /* built-in queries whose last run failed, 1u << sg_pg_builtin_t */
} sg_health_inputs_t;

/* sg_health_kind_t and sg_health_kind_for_path: sg/listener.h (the paths a
 * listener answers locally are the data path's contract). */

/* Writes the JSON body into out (always NUL-terminated, truncated to cap) and
 * returns the HTTP status (200 or 503). *len gets the body length. */
int sg_health_render(const sg_runtime_t *rt, const sg_health_inputs_t *in, sg_health_kind_t kind, char *out, size_t cap,
                     size_t *len);

#endif /* SG_HEALTH_H */
