#include "sg/health.h"

#include "sg/pg.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct out {
    char *p;
    size_t cap;
    size_t len;
} out_t;

SG_PRINTF(2, 3) static void put(out_t *o, const char *fmt, ...)
{
    if (o->len >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    o->len += (size_t)n;
    if (o->len >= o->cap)
        o->len = o->cap - 1;
}

/* Liveness: every worker loop ticked within stale_ms. */
static bool render_live(const sg_runtime_t *rt, const sg_health_inputs_t *in, out_t *o)
{
    bool ok = true;
    put(o, "{\"workers\":[");
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        uint64_t hb = atomic_load_explicit(&rt->workers[i].heartbeat_ms, memory_order_relaxed);
        uint64_t age = in->now_ms > hb ? in->now_ms - hb : 0;
        bool w_ok = hb != 0 && age <= in->stale_ms;
        ok = ok && w_ok;
        put(o, "%s{\"worker\":%u,\"ok\":%s,\"last_tick_ms_ago\":%llu}", i ? "," : "", i, w_ok ? "true" : "false",
            (unsigned long long)(hb ? age : 0));
    }
    put(o, "]");
    if (!ok) {
        put(o, ",\"stuck\":[");
        bool first = true;
        for (uint32_t i = 0; i < rt->n_workers; i++) {
            uint64_t hb = atomic_load_explicit(&rt->workers[i].heartbeat_ms, memory_order_relaxed);
            if (hb == 0 || in->now_ms - hb > in->stale_ms) {
                put(o, "%s\"worker %u\"", first ? "" : ",", i);
                first = false;
            }
        }
        put(o, "]");
    }
    put(o, "}");
    return ok;
}

static bool server_healthy(const sg_server_pub_t *s, uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&s->ejected_until_ms, memory_order_relaxed);
    bool down = atomic_load_explicit(&s->active_down, memory_order_relaxed);
    return !down && (until == 0 || until <= now_ms);
}

static const sg_server_pub_t *slot(const sg_runtime_t *rt, const sg_rtgen_t *gen, size_t u, size_t s)
{
    if (gen)
        return gen->servers[u][s];
    return rt->servers ? &rt->servers[u][s] : NULL; /* a runtime built by hand (unit tests) */
}

/* Readiness: listening, not draining, required dependencies fine. */
static bool render_ready(const sg_runtime_t *rt, const sg_health_inputs_t *in, out_t *o)
{
    /* One pointer for the config and its server slots: never a config
     * paired with another generation's slots. */
    const sg_rtgen_t *gen = atomic_load_explicit(&rt->gen, memory_order_acquire);
    const sg_config_t *cfg = gen ? gen->cfg : atomic_load_explicit(&rt->config, memory_order_acquire);
    bool listening = rt->n_workers > 0;
    for (uint32_t i = 0; i < rt->n_workers; i++)
        listening = listening && atomic_load_explicit(&rt->workers[i].is_listening, memory_order_relaxed);
    bool draining = atomic_load_explicit(&rt->is_draining, memory_order_relaxed);
    /* Required: connected, and every built-in query's last run succeeded
     * (a schema that does not fit is as bad as no database). */
    bool pg_conn_ok = !in->pg_enabled || !in->pg_required || in->pg_up;
    bool pg_queries_ok = !in->pg_enabled || !in->pg_required || !in->pg_failing;
    bool pg_ok = pg_conn_ok && pg_queries_ok;

    put(o, "{\"checks\":[{\"name\":\"listening\",\"ok\":%s}", listening ? "true" : "false");
    put(o, ",{\"name\":\"draining\",\"ok\":%s}", draining ? "false" : "true");
    if (in->pg_enabled)
        put(o, ",{\"name\":\"postgres\",\"ok\":%s,\"up\":%s,\"required\":%s}", pg_conn_ok ? "true" : "false",
            in->pg_up ? "true" : "false", in->pg_required ? "true" : "false");
    for (unsigned b = 0; in->pg_enabled && b < SG_PG_BUILTIN__COUNT; b++)
        if (in->pg_failing & (1u << b))
            put(o, ",{\"name\":\"postgres:%s\",\"ok\":%s,\"last_run_ok\":false,\"required\":%s}", sg_pg_builtin_name(b),
                in->pg_required ? "false" : "true", in->pg_required ? "true" : "false");
    bool ups_ok = true;
    size_t n_up = cfg ? cfg->n_upstreams : 0;
    for (size_t u = 0; u < n_up; u++) {
        const sg_upstream_conf_t *uc = &cfg->upstreams[u];
        size_t healthy = 0;
        for (size_t s = 0; s < uc->n_servers; s++)
            if (slot(rt, gen, u, s) && server_healthy(slot(rt, gen, u, s), in->now_ms))
                healthy++;
        bool u_ok = healthy > 0;
        ups_ok = ups_ok && u_ok;
        /* Upstream names are validated identifiers: no escaping needed. */
        put(o, ",{\"name\":\"upstream:%s\",\"ok\":%s,\"healthy_servers\":%zu,\"servers\":%zu}", uc->name,
            u_ok ? "true" : "false", healthy, uc->n_servers);
    }
    put(o, "]");
    bool ok = listening && !draining && pg_ok && ups_ok;
    if (!ok) {
        put(o, ",\"failing\":[");
        bool first = true;
#define FAIL(name)                                                                                                     \
    do {                                                                                                               \
        put(o, "%s\"%s\"", first ? "" : ",", name);                                                                    \
        first = false;                                                                                                 \
    } while (0)
        if (!listening)
            FAIL("listening");
        if (draining)
            FAIL("draining");
        if (!pg_conn_ok)
            FAIL("postgres");
        for (unsigned b = 0; !pg_queries_ok && b < SG_PG_BUILTIN__COUNT; b++)
            if (in->pg_failing & (1u << b)) {
                put(o, "%s\"postgres:%s\"", first ? "" : ",", sg_pg_builtin_name(b));
                first = false;
            }
        for (size_t u = 0; u < n_up; u++) {
            const sg_upstream_conf_t *uc = &cfg->upstreams[u];
            bool any = false;
            for (size_t s = 0; s < uc->n_servers && !any; s++)
                any = slot(rt, gen, u, s) && server_healthy(slot(rt, gen, u, s), in->now_ms);
            if (!any) {
                put(o, "%s\"upstream:%s\"", first ? "" : ",", uc->name);
                first = false;
            }
        }
#undef FAIL
        put(o, "]");
    }
    put(o, "}");
    return ok;
}

int sg_health_render(const sg_runtime_t *rt, const sg_health_inputs_t *in, sg_health_kind_t kind, char *out, size_t cap,
                     size_t *len)
{
    /* Each part is rendered first, so the status can lead the document. */
    char live_buf[2048], ready_buf[4096];
    out_t live = {live_buf, sizeof(live_buf), 0}, ready = {ready_buf, sizeof(ready_buf), 0};
    live_buf[0] = ready_buf[0] = '\0';
    bool live_ok = render_live(rt, in, &live);
    bool ready_ok = render_ready(rt, in, &ready);

    out_t o = {out, cap, 0};
    if (cap)
        out[0] = '\0';
    bool ok;
    switch (kind) {
    case SG_HEALTH_LIVE:
        ok = live_ok;
        put(&o, "{\"status\":\"%s\",\"live\":%s}\n", ok ? "ok" : "fail", live_buf);
        break;
    case SG_HEALTH_READY:
        ok = ready_ok;
        put(&o, "{\"status\":\"%s\",\"ready\":%s}\n", ok ? "ok" : "fail", ready_buf);
        break;
    default:
        ok = ready_ok;
        put(&o, "{\"status\":\"%s\",\"live\":{\"ok\":%s,\"detail\":%s},\"ready\":{\"ok\":%s,\"detail\":%s}}\n",
            ok ? "ok" : "fail", live_ok ? "true" : "false", live_buf, ready_ok ? "true" : "false", ready_buf);
        break;
    }
    *len = o.len;
    return ok ? 200 : 503;
}
