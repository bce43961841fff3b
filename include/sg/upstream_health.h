/* Active upstream health checks (DESIGN.md section 2): for every server of
 * every upstream whose health_check is enabled, the control thread sends
 * `GET <path>` over a fresh non-blocking TCP connection every `interval`,
 * with a `timeout` deadline. A 2xx/3xx status line is a success; anything
 * else (resolve or connect error, timeout, other status, garbage, EOF) is a
 * failure. `fall` consecutive failures set the server's shared slot
 * active_down (the balancer skips it, readiness counts it unhealthy);
 * `rise` consecutive successes clear it.
 *
 * The checks follow rt->gen: when a reload publishes a new generation, the
 * checks are re-planned from it (a server kept across the reload keeps its
 * slot and its counters; a server whose upstream no longer checks gets
 * active_down cleared).
 *
 * Owner: the caller of sg_upstream_health_start (the control thread);
 * sg_upstream_health_stop closes every handle and the object frees itself
 * in its last close callback. */
#ifndef SG_UPSTREAM_HEALTH_H
#define SG_UPSTREAM_HEALTH_H

#include "sg/common.h"
#include "sg/runtime.h"

#include <uv.h>

/* Bytes of the response read before a status line must be complete. */
#define SG_UPSTREAM_HEALTH_MAX_LINE 1024

typedef struct sg_upstream_health sg_upstream_health_t;

typedef enum sg_uh_verdict {
    SG_UH_PENDING = 0, /* need more bytes */
    SG_UH_OK,          /* well-formed HTTP/1.x status line, 2xx or 3xx */
    SG_UH_FAIL,        /* another status, or not an HTTP/1.x status line */
    SG_UH_VERDICT__COUNT
} sg_uh_verdict_t;

/* Classifies the first `len` bytes of a response: only its status line
 * ("HTTP/1.x SSS[ reason]\r\n"; a bare "\n" ends it too) is looked at.
 * PENDING while the line is incomplete and shorter than
 * SG_UPSTREAM_HEALTH_MAX_LINE and what was seen can still become a status
 * line. Pure; any thread. */
sg_uh_verdict_t sg_upstream_health_classify(const char *buf, size_t len);

/* Control thread: plans the checks from rt->gen and starts them on loop
 * (a watch timer keeps running even with no check configured, so a reload
 * that enables checks is picked up). NULL when out of memory. */
sg_upstream_health_t *sg_upstream_health_start(uv_loop_t *loop, sg_runtime_t *rt) SG_MUST_CHECK;

/* Control thread: stops every check and closes every handle; in-flight
 * probes are abandoned (their results are not recorded). The memory goes
 * in the close callbacks, so the loop must run once more. NULL is a no-op. */
void sg_upstream_health_stop(sg_upstream_health_t *h);

#endif /* SG_UPSTREAM_HEALTH_H */
