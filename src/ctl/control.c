#include "sg/control.h"

#include "sg/certs.h"
#include "sg/log.h"
#include "sg/metrics.h"
#include "sg/pg.h"
#include "sg/spans.h"
#include "sg/upstream_health.h"

#include <stdio.h>
#include <time.h>

/* swarm_upstream_server_up: a server is up unless an active check says
 * down or passive health has it ejected right now. */
static bool slot_up(const sg_server_pub_t *p, uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&p->ejected_until_ms, memory_order_relaxed);
    bool down = atomic_load_explicit(&p->active_down, memory_order_relaxed);
    return !down && (until == 0 || until <= now_ms);
}

/* The servers of the generation in force, so upstreams and servers a
 * reload added are listed and removed ones are not (a gauge of current
 * state). rt->gen is read without a reference: a render runs inside one
 * loop callback of the control thread (which alone frees generations) or
 * of a worker (which holds back their reclamation until its next
 * callback; see generation.c). */
static void each_server(void *ud, sg_metrics_server_cb emit, void *ctx)
{
    sg_runtime_t *rt = ud;
    const sg_rtgen_t *g = atomic_load_explicit(&rt->gen, memory_order_acquire);
    if (!g || !g->servers)
        return;
    uint64_t now_ms = sg_now_ms();
    for (size_t u = 0; u < g->cfg->n_upstreams; u++) {
        const sg_upstream_conf_t *uc = &g->cfg->upstreams[u];
        for (size_t s = 0; s < uc->n_servers; s++) {
            const sg_hostport_t *hp = &uc->servers[s];
            char text[300];
            snprintf(text, sizeof(text), hp->is_ipv6_literal ? "[%s]:%u" : "%s:%u", hp->host ? hp->host : "",
                     (unsigned)hp->port);
            if (g->servers[u] && g->servers[u][s])
                emit(ctx, uc->name, text, slot_up(g->servers[u][s], now_ms));
        }
    }
}

static uint64_t spans_exported(void *ud, size_t reason)
{
    SG_UNUSED(ud);
    return sg_spans_exported_reason((sg_span_reason_t)reason);
}

static uint64_t spans_dropped(void *ud)
{
    SG_UNUSED(ud);
    return sg_spans_dropped_total();
}

int sg_control_init(sg_control_t *c, sg_runtime_t *rt)
{
    memset(c, 0, sizeof(*c));
    c->rt = rt;
    c->admin.rt = rt;
    c->admin.metrics = rt->metrics;
    if (rt->metrics) {
        sg_metrics_hooks_t hooks = {
            .each_server = each_server, .spans_exported = spans_exported, .spans_dropped = spans_dropped, .ud = rt};
        sg_metrics_set_hooks(rt->metrics, &hooks);
    }
    return 0;
}

void sg_control_destroy(sg_control_t *c)
{
    SG_UNUSED(c);
}

static void on_flush(uv_timer_t *t)
{
    SG_UNUSED(t);
    sg_log_flush_all();
}

static void pg_log(void *arg, sg_log_level_t level, const char *msg)
{
    SG_UNUSED(arg);
    sg_log(level, NULL, "%s", msg); /* pg.c's messages start with "postgres: " */
}

/* Readiness reads Postgres state from any thread: mirror it into the
 * runtime's atomic a few times a second. */
static void on_pg_state(uv_timer_t *t)
{
    sg_control_t *c = t->data;
    if (c->pg && c->pg_restart_ms) {
        /* Restarted by a reload: keep the last state (readiness) until the
         * new poller's first connection attempt ends, 5 s at most. */
        sg_pg_stats_t st;
        sg_pg_get_stats(c->pg, &st);
        if (st.connects + st.connect_errors == 0 && sg_now_ms() - c->pg_restart_ms < 5000)
            return;
        c->pg_restart_ms = 0;
    }
    atomic_store_explicit(&c->rt->pg_up, c->pg && sg_pg_is_up(c->pg), memory_order_relaxed);
    atomic_store_explicit(&c->rt->pg_failing, c->pg ? sg_pg_failing_builtins(c->pg) : 0, memory_order_relaxed);
}

/* Proxy listeners with serve_metrics render on their worker: refresh the
 * collectors' (Postgres) text for them once a second. */
static void on_snapshot(uv_timer_t *t)
{
    sg_control_t *c = t->data;
    if (c->rt->metrics)
        sg_metrics_snapshot_collectors(c->rt->metrics);
}

static void exporter_begin(sg_control_t *c, uv_loop_t *loop, const sg_config_t *cfg)
{
    if (cfg->trace.export.format == SG_EXPORT_NONE)
        return;
    int r = sg_spans_exporter_start(loop, &cfg->trace, NULL, &c->exporter);
    if (r < 0)
        sg_log(SG_LOG_ERROR, NULL, "span exporter not started: %s", uv_strerror(r));
}

static void exporter_end(sg_control_t *c)
{
    if (c->exporter) {
        sg_spans_exporter_stop(c->exporter);
        c->exporter = NULL;
    }
}

/* The poller copies what it needs of cfg (sg_pg_start). */
static void pg_begin(sg_control_t *c, uv_loop_t *loop, const sg_config_t *cfg)
{
    if (!cfg->postgres.conninfo || !cfg->postgres.conninfo[0])
        return;
    char err[512];
    c->pg = sg_pg_start(loop, &cfg->postgres, &cfg->metrics, pg_log, c, err, sizeof(err));
    if (!c->pg) {
        sg_log(SG_LOG_ERROR, NULL, "postgres poller not started: %s", err);
    } else if (c->rt->metrics && sg_metrics_add_collector(c->rt->metrics, sg_pg_collect, c->pg) != 0) {
        sg_log(SG_LOG_ERROR, NULL, "postgres metrics not registered: out of memory");
    }
    if (!c->pg_state_timer.loop) {
        uv_timer_init(loop, &c->pg_state_timer);
        c->pg_state_timer.data = c;
        uv_timer_start(&c->pg_state_timer, on_pg_state, 100, 250);
    }
}

static void pg_end(sg_control_t *c)
{
    if (!c->pg)
        return;
    if (c->rt->metrics)
        sg_metrics_remove_collector(c->rt->metrics, sg_pg_collect, c->pg);
    sg_pg_stop(c->pg);
    c->pg = NULL;
}

/* ---- certificate expiry (sg/certs.h) ---- */

/* Certificates that expire within this many days are logged (the shipped
 * alert, SwarmTLSCertificateExpiringSoon, fires at 14). */
#define CERT_WARN_DAYS 14

static void collect_certs(sg_expose_t *x, void *ud)
{
    sg_certs_render(((sg_control_t *)ud)->certs, x);
}

static void log_expiring(void *ud, const char *line)
{
    SG_UNUSED(ud);
    sg_log(SG_LOG_WARN, NULL, "%s", line);
}

/* Reads the listeners' certificates into a new table (the old one is
 * dropped: renders run on this thread only). */
static void certs_load(sg_control_t *c, const sg_config_t *cfg)
{
    char err[512];
    sg_certs_t *t = sg_certs_load(cfg, err, sizeof(err));
    if (!t) {
        sg_log(SG_LOG_ERROR, NULL, "tls: certificate expiry gauge not updated: out of memory");
        return;
    }
    if (err[0])
        sg_log(SG_LOG_ERROR, NULL, "tls: certificate expiry gauge: %s", err);
    sg_certs_each_expiring(t, (int64_t)time(NULL), CERT_WARN_DAYS, log_expiring, c);
    sg_certs_free(c->certs);
    c->certs = t;
    if (!c->is_certs_collector && c->rt->metrics) {
        if (sg_metrics_add_collector(c->rt->metrics, collect_certs, c) == 0)
            c->is_certs_collector = true;
        else
            sg_log(SG_LOG_ERROR, NULL, "tls: certificate expiry gauge not registered: out of memory");
    }
}

static void certs_end(sg_control_t *c)
{
    if (c->is_certs_collector)
        sg_metrics_remove_collector(c->rt->metrics, collect_certs, c);
    c->is_certs_collector = false;
    sg_certs_free(c->certs);
    c->certs = NULL;
}

void sg_control_on_start(uv_loop_t *loop, void *ud)
{
    sg_control_t *c = ud;
    const sg_config_t *cfg = atomic_load_explicit(&c->rt->config, memory_order_acquire);
    uv_timer_init(loop, &c->flush_timer);
    c->flush_timer.data = c;
    uint64_t every = cfg->log.flush_interval_ms ? cfg->log.flush_interval_ms : 100;
    uv_timer_start(&c->flush_timer, on_flush, every, every);
    exporter_begin(c, loop, cfg);
    pg_begin(c, loop, cfg);
    certs_load(c, cfg);
    bool any_serve_metrics = false;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        any_serve_metrics = any_serve_metrics || cfg->listeners[i].serve_metrics;
    if (any_serve_metrics) {
        uv_timer_init(loop, &c->snapshot_timer);
        c->snapshot_timer.data = c;
        uv_timer_start(&c->snapshot_timer, on_snapshot, 0, 1000);
    }
    c->uphealth = sg_upstream_health_start(loop, c->rt);
    if (!c->uphealth)
        sg_log(SG_LOG_ERROR, NULL, "active health checks not started: out of memory");
    c->is_started = true;
}

void sg_control_on_stop(uv_loop_t *loop, void *ud)
{
    SG_UNUSED(loop);
    sg_control_t *c = ud;
    if (!c->is_started)
        return;
    c->is_started = false;
    exporter_end(c);
    pg_end(c);
    certs_end(c);
    sg_upstream_health_stop(c->uphealth);
    c->uphealth = NULL;
    if (c->pg_state_timer.loop) /* initialized: Postgres was configured */
        uv_close((uv_handle_t *)&c->pg_state_timer, NULL);
    if (c->snapshot_timer.loop)
        uv_close((uv_handle_t *)&c->snapshot_timer, NULL);
    uv_close((uv_handle_t *)&c->flush_timer, NULL);
    sg_log_flush_all();
}

void sg_control_on_reload(uv_loop_t *loop, void *ud, const sg_config_t *old_cfg, const sg_config_t *new_cfg)
{
    sg_control_t *c = ud;
    if (!c->is_started)
        return;
    if (old_cfg->fp_postgres != new_cfg->fp_postgres) {
        pg_end(c);
        pg_begin(c, loop, new_cfg);
        c->pg_restart_ms = sg_now_ms();
        sg_log(SG_LOG_INFO, NULL, "postgres: settings changed, poller %s", c->pg ? "restarted" : "stopped");
    }
    certs_load(c, new_cfg);
    if (old_cfg->fp_trace_export != new_cfg->fp_trace_export) {
        bool was_on = old_cfg->trace.export.format != SG_EXPORT_NONE;
        bool is_on = new_cfg->trace.export.format != SG_EXPORT_NONE;
        if (was_on && is_on) {
            exporter_end(c);
            exporter_begin(c, loop, new_cfg);
            sg_log(SG_LOG_INFO, NULL, "span exporter: settings changed, restarted");
        } else if (was_on != is_on) {
            sg_log(SG_LOG_WARN, NULL, "trace.export: turning span export %s needs a restart; unchanged",
                   is_on ? "on" : "off");
        }
    }
}
