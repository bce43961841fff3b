/* Admin endpoints (/metrics, /health*), served on the control thread. */
#ifndef SG_ADMIN_H
#define SG_ADMIN_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/listener.h"
#include "sg/metrics.h"
#include "sg/runtime.h"

/* Owner: the control thread (sg_control_t). */
typedef struct sg_admin {
    sg_runtime_t *rt;
    sg_metrics_t *metrics;
    uint64_t scrapes;
    uint64_t last_render_ns;
    /* POST /-/reload runs sg_server_reload on it; NULL until main stores
     * it after sg_server_start (answered 503 meanwhile). */
    _Atomic(struct sg_server *) server;
} sg_admin_t;

/* Whether the admin listener's configured address is a loopback one
 * (127.0.0.0/8, ::1, ::ffff:127.x, "localhost"): POST /-/reload is served
 * only then (403 otherwise). */
bool sg_admin_is_loopback(const sg_hostport_t *hp);

/* sg_local_responder_cb for the admin listener (control thread). */
void sg_admin_respond(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp);
/* Health answer (kind from sg_health_kind_for_path) from atomics only:
 * safe on any thread. */
void sg_admin_health(sg_admin_t *a, int kind, sg_local_resp_t *resp);
/* sg_local_responder_cb for proxy listeners (worker threads): /health*
 * (serve_health) and /metrics (serve_metrics, rendered with
 * sg_metrics_render_any_thread); ud is the sg_admin_t. Other paths: 404. */
void sg_admin_local_respond(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp);

#endif /* SG_ADMIN_H */
