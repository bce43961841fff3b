/* Observability hooks. This first version only keeps the error log (stderr);
 * metrics, access log and spans are wired in as their modules land. */
#include "sg/obs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct sg_obs_worker {
    sg_runtime_t *rt;
    uint32_t worker_idx;
};

sg_obs_worker_t *sg_obs_worker_new(sg_runtime_t *rt, uint32_t worker_idx)
{
    sg_obs_worker_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->rt = rt;
    o->worker_idx = worker_idx;
    return o;
}

void sg_obs_worker_free(sg_obs_worker_t *o)
{
    free(o);
}

void sg_obs_request_done(sg_obs_worker_t *o, const sg_reqrec_t *rec)
{
    SG_UNUSED(o);
    SG_UNUSED(rec);
}

void sg_obs_conn_open(sg_obs_worker_t *o, int32_t listener_idx)
{
    SG_UNUSED(o);
    SG_UNUSED(listener_idx);
}

void sg_obs_conn_close(sg_obs_worker_t *o, int32_t listener_idx)
{
    SG_UNUSED(o);
    SG_UNUSED(listener_idx);
}

void sg_obs_inflight(sg_obs_worker_t *o, int delta)
{
    SG_UNUSED(o);
    SG_UNUSED(delta);
}

void sg_obs_trace_resolved(sg_obs_worker_t *o, const sg_trace_ctx_t *t)
{
    SG_UNUSED(o);
    SG_UNUSED(t);
}

void sg_obs_upstream_connect_error(sg_obs_worker_t *o, int32_t upstream_idx)
{
    SG_UNUSED(o);
    SG_UNUSED(upstream_idx);
}

void sg_obs_upstream_timeout(sg_obs_worker_t *o, int32_t upstream_idx)
{
    SG_UNUSED(o);
    SG_UNUSED(upstream_idx);
}

bool sg_obs_sample_new(sg_obs_worker_t *o)
{
    SG_UNUSED(o);
    return true;
}

void sg_obs_log(sg_obs_worker_t *o, sg_log_level_t level, const char *trace_id, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    SG_UNUSED(o);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s trace_id=%s %s\n", names[level < SG_LOG_LEVEL__COUNT ? level : 0],
            trace_id ? trace_id : "-", msg);
}
