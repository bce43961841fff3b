/* Observability hooks: the data path's one door to metrics, the error-rate
 * windows, the access log and span export. */
#include "sg/obs.h"

#include "sg/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct sg_obs_worker {
    sg_runtime_t *rt;
    uint32_t worker_idx;
    sg_metrics_shard_t *shard; /* NULL: metrics off (unit tests) */
};

sg_obs_worker_t *sg_obs_worker_new(sg_runtime_t *rt, uint32_t worker_idx)
{
    sg_obs_worker_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->rt = rt;
    o->worker_idx = worker_idx;
    if (rt && rt->metrics)
        o->shard = worker_idx == UINT32_MAX ? sg_metrics_control_shard(rt->metrics)
                                            : sg_metrics_worker_shard(rt->metrics, worker_idx);
    return o;
}

void sg_obs_worker_free(sg_obs_worker_t *o)
{
    free(o);
}

void sg_obs_request_done(sg_obs_worker_t *o, const sg_reqrec_t *rec)
{
    if (o->shard)
        sg_metrics_record_request(o->shard, rec);
}

void sg_obs_conn_open(sg_obs_worker_t *o, int32_t listener_idx)
{
    if (o->shard && listener_idx >= 0)
        sg_metrics_conn_open(o->shard, (size_t)listener_idx);
}

void sg_obs_conn_close(sg_obs_worker_t *o, int32_t listener_idx)
{
    if (o->shard && listener_idx >= 0)
        sg_metrics_conn_close(o->shard, (size_t)listener_idx);
}

void sg_obs_inflight(sg_obs_worker_t *o, int delta)
{
    if (!o->shard)
        return;
    if (delta > 0)
        sg_metrics_inflight_inc(o->shard);
    else if (delta < 0)
        sg_metrics_inflight_dec(o->shard);
}

void sg_obs_trace_resolved(sg_obs_worker_t *o, const sg_trace_ctx_t *t)
{
    if (o->shard)
        sg_metrics_trace_source(o->shard, t->source);
}

void sg_obs_upstream_connect_error(sg_obs_worker_t *o, int32_t upstream_idx)
{
    if (o->shard && upstream_idx >= 0)
        sg_metrics_upstream_connect_error(o->shard, (size_t)upstream_idx);
}

void sg_obs_upstream_timeout(sg_obs_worker_t *o, int32_t upstream_idx)
{
    if (o->shard && upstream_idx >= 0)
        sg_metrics_upstream_timeout(o->shard, (size_t)upstream_idx);
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
