/* Observability hooks: the data path's one door to metrics, the error-rate
 * windows, the access log and span export. */
#include "sg/obs.h"

#include "sg/log.h"
#include "sg/metrics.h"
#include "sg/spans.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sg_obs_worker {
    sg_runtime_t *rt;
    bool is_control;           /* the control thread's (sg_obs_control_new) */
    sg_metrics_shard_t *shard; /* NULL: metrics off (unit tests) */
    sg_log_ring_t *ring;       /* access and error lines of this thread */
    sg_span_queue_t *spans;    /* NULL: span export off */
    bool has_access_log;
};

static const char *route_name(const sg_obs_worker_t *o, int32_t idx)
{
    const sg_config_t *cfg = o->rt ? atomic_load_explicit(&o->rt->config, memory_order_acquire) : NULL;
    if (idx < 0 || !cfg || (size_t)idx >= cfg->n_routes)
        return NULL;
    return cfg->routes[idx].name;
}

static sg_obs_worker_t *obs_new(sg_runtime_t *rt, bool is_control, uint32_t worker_idx)
{
    sg_obs_worker_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->rt = rt;
    o->is_control = is_control;
    if (rt && rt->metrics)
        o->shard =
            is_control ? sg_metrics_control_shard(rt->metrics) : sg_metrics_worker_shard(rt->metrics, worker_idx);
    const sg_config_t *cfg = rt ? atomic_load_explicit(&rt->config, memory_order_acquire) : NULL;
    if (cfg) {
        o->ring = sg_log_ring_new(cfg->log.ring_bytes);
        if (!o->ring)
            goto fail;
        sg_log_thread_attach(o->ring);
        o->has_access_log = cfg->log.access && strcmp(cfg->log.access, "off") != 0;
        if (cfg->trace.export.format != SG_EXPORT_NONE) {
            o->spans = sg_span_queue_new(cfg->trace.export.queue_size);
            if (!o->spans)
                goto fail;
        }
    }
    return o;
fail:
    sg_obs_worker_free(o);
    return NULL;
}

sg_obs_worker_t *sg_obs_worker_new(sg_runtime_t *rt, uint32_t worker_idx)
{
    return obs_new(rt, false, worker_idx);
}

sg_obs_worker_t *sg_obs_control_new(sg_runtime_t *rt)
{
    return obs_new(rt, true, 0);
}

void sg_obs_worker_free(sg_obs_worker_t *o)
{
    if (!o)
        return;
    if (o->ring && sg_log_thread_ring() == o->ring)
        sg_log_thread_attach(NULL);
    sg_log_ring_free(o->ring);
    sg_span_queue_free(o->spans);
    free(o);
}

void sg_obs_request_done(sg_obs_worker_t *o, const sg_reqrec_t *rec)
{
    /* The admin listener (index -1) is not proxy traffic: its scrapes and
     * probes stay out of the request metrics, error rate and access log. */
    if (rec->listener_idx < 0)
        return;
    if (o->shard) {
        if (rec->is_egress)
            sg_metrics_record_egress(o->shard, rec);
        else
            sg_metrics_record_request(o->shard, rec);
    }
    if (o->has_access_log || o->spans) {
        const char *rn = rec->route_name ? rec->route_name : route_name(o, rec->route_idx);
        if (o->has_access_log && o->ring)
            sg_log_access(o->ring, rec, rn);
        if (o->spans) /* tail sampling: sg_spans_export_reason() */
            sg_spans_record(o->spans, rec, rn);
    }
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

void sg_obs_conn_refused(sg_obs_worker_t *o, int32_t listener_idx, unsigned reason)
{
    if (o->shard)
        sg_metrics_conn_refused(o->shard, listener_idx, (sg_conn_refused_t)reason);
}

void sg_obs_memory_trim(sg_obs_worker_t *o)
{
    if (o->shard)
        sg_metrics_memory_trim(o->shard);
}

void sg_obs_inflight(sg_obs_worker_t *o, int delta)
{
    /* The control thread serves only the admin listener: a scrape must not
     * count itself in swarm_http_requests_in_flight (admin traffic is kept
     * out of the request metrics, see sg_obs_request_done). */
    if (!o->shard || o->is_control)
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

void sg_obs_egress_refused(sg_obs_worker_t *o, unsigned reason)
{
    if (o->shard)
        sg_metrics_egress_refused(o->shard, reason);
}

int32_t sg_obs_egress_agent(sg_obs_worker_t *o, const char *name, size_t len)
{
    if (!o->rt || !o->rt->metrics)
        return -1;
    return sg_metrics_agent(o->rt->metrics, name, len);
}

void sg_obs_egress_rate_limited(sg_obs_worker_t *o, int32_t agent_idx)
{
    if (o->shard)
        sg_metrics_egress_rate_limited(o->shard, agent_idx);
}

void sg_obs_header_fields_dropped(sg_obs_worker_t *o, int32_t listener_idx, uint64_t n)
{
    if (o->shard && listener_idx >= 0)
        sg_metrics_header_fields_dropped(o->shard, (size_t)listener_idx, n);
}

void sg_obs_config_reload(sg_obs_worker_t *o, bool is_success)
{
    if (o->shard)
        sg_metrics_config_reload(o->shard, is_success);
}

bool sg_obs_sample_new(sg_obs_worker_t *o)
{
    SG_UNUSED(o);
    return sg_spans_sample_new();
}

void sg_obs_log(sg_obs_worker_t *o, sg_log_level_t level, const char *trace_id, const char *fmt, ...)
{
    SG_UNUSED(o);
    if (!sg_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sg_log(level, trace_id, "%s", msg);
}

void sg_obs_tls_handshake(sg_obs_worker_t *o, int32_t listener_idx, sg_tls_error_t result, sg_tls_version_t version,
                          uint64_t dur_ns, bool is_resumed)
{
    if (o->shard && listener_idx >= 0)
        sg_metrics_tls_handshake(o->shard, (size_t)listener_idx, result, version, dur_ns, is_resumed);
}

void sg_obs_upstream_tls_handshake(sg_obs_worker_t *o, int32_t upstream_idx, sg_tls_error_t result)
{
    if (o->shard && upstream_idx >= 0)
        sg_metrics_upstream_tls_handshake(o->shard, (size_t)upstream_idx, result);
}
