/* The control thread's work: admin endpoints, log flushing, span export,
 * the Postgres poller and the metrics hooks that read shared state.
 *
 * Owner: main. sg_control_init/destroy run on the main thread; the start
 * and stop callbacks are handed to sg_server_start (sg_server_opts_t) and
 * run on the control thread's loop. */
#ifndef SG_CONTROL_H
#define SG_CONTROL_H

#include "sg/admin.h"
#include "sg/runtime.h"

#include <uv.h>

struct sg_spans_exporter;
struct sg_pg;
struct sg_upstream_health;
struct sg_certs;

typedef struct sg_control {
    sg_runtime_t *rt;
    sg_admin_t admin;
    uv_timer_t flush_timer;
    uv_timer_t pg_state_timer;
    uv_timer_t snapshot_timer;
    struct sg_spans_exporter *exporter;
    struct sg_pg *pg;
    uint64_t pg_restart_ms;              /* a reload restarted the poller then; 0 once it has tried */
    struct sg_upstream_health *uphealth; /* active checks (upstream_health.h) */
    struct sg_certs *certs;              /* listeners' certificate dates (certs.h), rendered by a collector */
    bool is_certs_collector;             /* collect_certs is registered */
    bool is_started;
} sg_control_t;

/* Main thread, after the runtime and metrics exist. 0 or a negative errno. */
int sg_control_init(sg_control_t *c, sg_runtime_t *rt) SG_MUST_CHECK;
/* Main thread, after sg_server_join. */
void sg_control_destroy(sg_control_t *c);

/* Control thread (sg_server_opts_t.control_start / control_stop). */
void sg_control_on_start(uv_loop_t *loop, void *ud);
void sg_control_on_stop(uv_loop_t *loop, void *ud);
/* After a successful reload (sg_server_opts_t.control_reload): a changed
 * `postgres` section restarts the poller with it (its counters start
 * again from zero); a changed `trace.export` restarts the span exporter
 * when export stays on (turning it on or off needs a restart: the workers'
 * span queues are sized at start). The listeners' certificates are read
 * again for the expiry gauge (a renewed file shows its new date). */
void sg_control_on_reload(uv_loop_t *loop, void *ud, const sg_config_t *old_cfg, const sg_config_t *new_cfg);

#endif /* SG_CONTROL_H */
