/* Config generations (STYLE.md section 8).
 *
 * Process level (sg_rtgen_t, include/sg/runtime.h): a validated config and
 * the health slots of its upstream servers, published together in rt->gen
 * by the control thread. Worker level (sg_wgen_t, net_int.h): the router
 * and upstream pools a worker built for one sg_rtgen_t; every transaction
 * holds the one it started with.
 *
 * Reclamation of rt->gen's reference: readers on worker threads (readiness
 * on serve_health listeners, the access log's route names) load rt->gen or
 * rt->config without taking a reference, always inside one loop callback.
 * So a retired generation keeps rt's reference until every worker has
 * adopted a newer one (sg_worker_pub_t.generation): at that point no
 * worker can still hold the old pointer (quiescent-state reclamation, as
 * RCU does). The control thread checks this on its tick. */
#include "net/generation.h"

#include "net/net_int.h"

#include "sg/log.h"
#include "sg/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* One server health slot of the registry (see sg_rtgen_t). */
struct sg_slot_entry {
    char *key; /* "<upstream>\n<host:port>" */
    sg_server_pub_t *pub;
    bool is_owned; /* allocated here, not part of rt->servers */
};

/* ---- process-level generations ---------------------------------------------- */

sg_rtgen_t *sg_rtgen_retain(sg_rtgen_t *g)
{
    if (g)
        atomic_fetch_add_explicit(&g->refcount, 1, memory_order_relaxed);
    return g;
}

static void rtgen_free(sg_rtgen_t *g)
{
    if (g->lfds && g->cfg)
        for (size_t i = 0; i < g->cfg->n_listeners * g->n_lfd_workers; i++) {
            int fd = atomic_exchange_explicit(&g->lfds[i], -1, memory_order_acq_rel);
            if (fd >= 0)
                close(fd); /* never adopted: the listener went away first */
        }
    if (g->tls_servers && g->cfg)
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            sg_tls_server_release(g->tls_servers[i]);
    free(g->tls_servers);
    if (g->tls_clients && g->cfg)
        for (size_t u = 0; u < g->cfg->n_upstreams; u++)
            sg_tls_client_release(g->tls_clients[u]);
    free(g->tls_clients);
    sg_tls_client_release(g->egress_tls);
    free(g->lfds);
    free(g->laddr);
    free(g->listener_metric);
    free(g->dest_metric);
    if (g->servers && g->cfg)
        for (size_t u = 0; u < g->cfg->n_upstreams; u++)
            free(g->servers[u]);
    free(g->servers);
    free(g->route_metric);
    free(g->upstream_metric);
    sg_config_release(g->cfg);
    free(g);
}

void sg_rtgen_release(sg_rtgen_t *g)
{
    /* acq_rel: the thread that frees sees every other thread's last use. */
    if (g && atomic_fetch_sub_explicit(&g->refcount, 1, memory_order_acq_rel) == 1)
        rtgen_free(g);
}

static char *slot_key(const char *ups, const sg_hostport_t *hp)
{
    size_t n = strlen(ups) + strlen(hp->host) + 16;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s\n%s:%u", ups, hp->host, hp->port);
    return k;
}

static sg_server_pub_t *slot_find(const sg_runtime_t *rt, const char *key)
{
    for (size_t i = 0; i < rt->_n_slots; i++)
        if (strcmp(rt->_slots[i].key, key) == 0)
            return rt->_slots[i].pub;
    return NULL;
}

/* Registers pub (or a new slot when pub is NULL) under key; takes key. */
static sg_server_pub_t *slot_add(sg_runtime_t *rt, char *key, sg_server_pub_t *pub)
{
    if (rt->_n_slots == rt->_cap_slots) {
        size_t cap = rt->_cap_slots ? rt->_cap_slots * 2 : 16;
        struct sg_slot_entry *n = realloc(rt->_slots, cap * sizeof(*n));
        if (!n)
            goto fail;
        rt->_slots = n;
        rt->_cap_slots = cap;
    }
    bool is_owned = pub == NULL;
    if (!pub) {
        pub = aligned_alloc(SG_CACHELINE, sizeof(*pub));
        if (!pub)
            goto fail;
        memset(pub, 0, sizeof(*pub));
    }
    rt->_slots[rt->_n_slots++] = (struct sg_slot_entry){.key = key, .pub = pub, .is_owned = is_owned};
    return pub;
fail:
    free(key);
    return NULL;
}

static int32_t index_by_name(const char *name, const void *arr, size_t n, size_t stride)
{
    for (size_t i = 0; i < n; i++) {
        const char *other = *(const char *const *)(const void *)((const char *)arr + i * stride);
        if (other && name && strcmp(other, name) == 0)
            return (int32_t)i;
    }
    return INT32_MAX;
}

/* Builds the generation for cfg (retained). Boot: the slots are
 * rt->servers. Main at start-up or the control thread. The metric index
 * maps are filled by name against the start-up config here (the registry
 * is built from it, in the same order); a reload's generation gets its
 * final maps from map_metrics() at commit. */
/* The start-up registry's destination label of an allow rule's text: the
 * index among the boot rules' distinct texts, in order (INT32_MAX: none
 * there; map_metrics interns it at commit). */
static int32_t dest_label(const sg_egress_conf_t *boot, const char *text)
{
    int32_t distinct = 0;
    for (size_t k = 0; k < boot->n_allow; k++) {
        size_t j = 0;
        while (j < k && strcmp(boot->allow[j].text, boot->allow[k].text) != 0)
            j++;
        if (j < k)
            continue; /* a repeat of an earlier text */
        if (strcmp(boot->allow[k].text, text ? text : "") == 0)
            return distinct;
        distinct++;
    }
    return INT32_MAX;
}

/* The TLS contexts of g's listeners, from their certificate files (read
 * now: a reload picks up renewed files), with the process' ticket keys. */
static int rtgen_tls(sg_runtime_t *rt, sg_rtgen_t *g, char *err, size_t errlen)
{
    const sg_config_t *cfg = g->cfg;
    g->tls_servers = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*g->tls_servers));
    g->tls_clients = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*g->tls_clients));
    if (!g->tls_servers || !g->tls_clients) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const sg_listener_conf_t *lc = &cfg->listeners[i];
        if (!lc->tls.enabled)
            continue;
        if (!rt->tls_keys) {
            rt->tls_keys = sg_tls_ticket_keys_new(cfg->tls.ticket_key_rotation_ms ? cfg->tls.ticket_key_rotation_ms
                                                                                  : SG_TLS_DEFAULT_TICKET_ROTATION_MS);
            if (!rt->tls_keys) {
                snprintf(err, errlen, "TLS session ticket keys: out of memory or no random bytes");
                return -1;
            }
        } else if (cfg->tls.ticket_key_rotation_ms) {
            sg_tls_ticket_keys_set_rotation(rt->tls_keys, cfg->tls.ticket_key_rotation_ms);
        }
        char why[512];
        g->tls_servers[i] =
            sg_tls_server_new(&lc->tls, lc->name, lc->tls.session_tickets ? rt->tls_keys : NULL, why, sizeof(why));
        if (!g->tls_servers[i]) {
            snprintf(err, errlen, "listener %s: %s", lc->name, why);
            return -1;
        }
    }
    bool has_egress = false;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        has_egress |= cfg->listeners[i].mode == SG_LISTENER_EGRESS;
    const sg_tls_client_conf_t *etc = &cfg->egress.tls;
    const sg_tls_client_conf_t egress_default = {.enabled = true, .verify = true, .min_version = SG_TLS_VERSION_1_2};
    if (etc->min_version == SG_TLS_VERSION_NONE) /* no egress.tls section: the defaults */
        etc = &egress_default;
    sg_tls_client_conf_t etc_copy = *etc;
    etc_copy.server_name = NULL; /* each target's host is the name (docs/configuration.md) */
    etc = &etc_copy;
    if (has_egress && etc->enabled) {
        char why[512];
        g->egress_tls = sg_tls_client_new(etc, why, sizeof(why));
        if (!g->egress_tls) {
            snprintf(err, errlen, "egress.tls: %s", why);
            return -1;
        }
    }
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        const sg_upstream_conf_t *uc = &cfg->upstreams[u];
        if (!uc->tls.enabled)
            continue;
        char why[512];
        g->tls_clients[u] = sg_tls_client_new(&uc->tls, why, sizeof(why));
        if (!g->tls_clients[u]) {
            snprintf(err, errlen, "upstream %s: %s", uc->name, why);
            return -1;
        }
    }
    return 0;
}

static sg_rtgen_t *rtgen_new(sg_runtime_t *rt, sg_config_t *cfg, bool is_boot, char *err, size_t errlen)
{
    sg_rtgen_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    atomic_init(&g->refcount, 1);
    g->id = cfg->generation;
    g->cfg = sg_config_retain(cfg);
    g->servers = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*g->servers));
    g->route_metric = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(int32_t));
    g->upstream_metric = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(int32_t));
    size_t nl = cfg->n_listeners ? cfg->n_listeners : 1;
    g->n_lfd_workers = rt->n_workers;
    g->listener_metric = calloc(nl, sizeof(int32_t));
    g->dest_metric = calloc(cfg->egress.n_allow ? cfg->egress.n_allow : 1, sizeof(int32_t));
    g->laddr = calloc(nl, sizeof(*g->laddr));
    g->lfds = malloc(nl * rt->n_workers * sizeof(*g->lfds));
    if (!g->servers || !g->route_metric || !g->upstream_metric || !g->listener_metric || !g->dest_metric || !g->laddr ||
        !g->lfds)
        goto fail;
    for (size_t i = 0; i < nl * rt->n_workers; i++)
        atomic_init(&g->lfds[i], -1);
    const sg_config_t *boot = is_boot ? cfg : rt->_boot->cfg;
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        const sg_upstream_conf_t *uc = &cfg->upstreams[u];
        g->servers[u] = calloc(uc->n_servers ? uc->n_servers : 1, sizeof(sg_server_pub_t *));
        if (!g->servers[u])
            goto fail;
        for (size_t s = 0; s < uc->n_servers; s++) {
            char *key = slot_key(uc->name, &uc->servers[s]);
            if (!key)
                goto fail;
            sg_server_pub_t *pub = slot_find(rt, key);
            if (pub)
                free(key);
            else if (!(pub = slot_add(rt, key, is_boot ? &rt->servers[u][s] : NULL)))
                goto fail;
            g->servers[u][s] = pub;
        }
        g->upstream_metric[u] = index_by_name(uc->name, boot->upstreams, boot->n_upstreams, sizeof(sg_upstream_conf_t));
    }
    for (size_t r = 0; r < cfg->n_routes; r++)
        g->route_metric[r] = index_by_name(cfg->routes[r].name, boot->routes, boot->n_routes, sizeof(sg_route_conf_t));
    for (size_t i = 0; i < cfg->n_listeners; i++)
        g->listener_metric[i] =
            index_by_name(cfg->listeners[i].name, boot->listeners, boot->n_listeners, sizeof(sg_listener_conf_t));
    for (size_t i = 0; i < cfg->egress.n_allow; i++)
        g->dest_metric[i] = dest_label(&boot->egress, cfg->egress.allow[i].text);
    if (rtgen_tls(rt, g, err, errlen) < 0) {
        rtgen_free(g);
        return NULL;
    }
    return g;
fail:
    rtgen_free(g);
    return NULL;
}

int sg__runtime_boot(sg_runtime_t *rt, sg_config_t *cfg)
{
    if (cfg->generation == 0)
        cfg->generation = 1;
    char err[600] = "out of memory";
    sg_rtgen_t *g = rtgen_new(rt, cfg, true, err, sizeof(err));
    if (!g) {
        fprintf(stderr, "swarmgate: %s\n", err);
        return -ENOMEM;
    }
    rt->_boot = g; /* its own reference, dropped in sg__runtime_unboot */
    atomic_store(&rt->gen, sg_rtgen_retain(g));
    atomic_store(&rt->config, sg_config_retain(cfg));
    for (uint32_t i = 0; i < rt->n_workers; i++)
        atomic_store_explicit(&rt->workers[i].generation, g->id, memory_order_relaxed);
    return 0;
}

/* Frees every generation rt still holds (main, after the threads joined). */
void sg__runtime_unboot(sg_runtime_t *rt)
{
    while (rt->_retired) {
        sg_rtgen_t *g = rt->_retired;
        rt->_retired = g->_next_retired;
        sg_rtgen_release(g);
    }
    sg_rtgen_release(atomic_exchange(&rt->gen, NULL));
    sg_rtgen_release(rt->_boot);
    rt->_boot = NULL;
    for (size_t i = 0; i < rt->_n_slots; i++) {
        if (rt->_slots[i].is_owned)
            free(rt->_slots[i].pub);
        free(rt->_slots[i].key);
    }
    free(rt->_slots);
    rt->_slots = NULL;
    rt->_n_slots = rt->_cap_slots = 0;
}

/* Control thread: drops rt's reference of retired generations every worker
 * has moved past. */
void sg__runtime_reap(sg_runtime_t *rt)
{
    if (!rt->_retired)
        return;
    uint32_t min_gen = UINT32_MAX;
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        uint32_t gi = atomic_load_explicit(&rt->workers[i].generation, memory_order_acquire);
        if (gi < min_gen)
            min_gen = gi;
    }
    sg_rtgen_t **pp = &rt->_retired;
    while (*pp) {
        sg_rtgen_t *g = *pp;
        /* g was replaced by a generation > g->id: a worker at min_gen > g->id
         * has run its reload callback since, so it holds no bare pointer. */
        if (g->id < min_gen) {
            *pp = g->_next_retired;
            sg_rtgen_release(g);
        } else {
            pp = &g->_next_retired;
        }
    }
}

/* The worker count and the head buffer sizes are fixed at start (threads
 * and freelists are sized for them); a reload that changes them is refused.
 * Listener changes are applied (server.c: new sockets bound before the
 * generation is published; worker.c: old ones closed by each worker). */
static int check_fixed(const sg_config_t *a, const sg_config_t *b, char *err, size_t errlen)
{
    if (a->workers != b->workers) {
        snprintf(err, errlen, "%s: workers: %u -> %u needs a restart", b->path ? b->path : "config", a->workers,
                 b->workers);
        return -1;
    }
    if (a->limits.request_line_bytes != b->limits.request_line_bytes ||
        a->limits.header_bytes != b->limits.header_bytes || a->limits.header_count != b->limits.header_count) {
        snprintf(err, errlen,
                 "%s: limits.request_line_bytes, limits.header_bytes and limits.header_count changes need a restart",
                 b->path ? b->path : "config");
        return -1;
    }
    return 0;
}

/* Control thread: validates cfg against the running process and builds its
 * generation (not yet published; its listener sockets are bound by the
 * caller). Takes cfg's reference. Returns the generation, or NULL with a
 * message in err (nothing changed). */
sg_rtgen_t *sg__runtime_prepare(sg_runtime_t *rt, sg_config_t *cfg, char *err, size_t errlen)
{
    sg_rtgen_t *cur = atomic_load_explicit(&rt->gen, memory_order_acquire);
    if (check_fixed(rt->_boot->cfg, cfg, err, errlen) < 0) {
        sg_config_release(cfg);
        return NULL;
    }
    cfg->generation = cur->id + 1;
    snprintf(err, errlen, "out of memory building the new generation");
    sg_rtgen_t *g = rtgen_new(rt, cfg, false, err, errlen);
    sg_config_release(cfg); /* g holds it now */
    return g;
}

/* Appends `what "name"` to the list of names that found no label room. */
static void note_full(char *buf, size_t cap, size_t *len, size_t *n, const char *what, const char *name)
{
    (*n)++;
    if (*len >= cap)
        return;
    int w = snprintf(buf + *len, cap - *len, "%s%s \"%s\"", *n > 1 ? ", " : "", what, name);
    if (w > 0)
        *len = SG_MIN(cap, *len + (size_t)w);
}

static int32_t intern_or_other(sg_metrics_t *m, sg_metrics_dim_t dim, const char *name, const char *what, char *buf,
                               size_t cap, size_t *len, size_t *n)
{
    int32_t i = sg_metrics_intern(m, dim, name);
    if (i >= 0)
        return i;
    note_full(buf, cap, len, n, what, name ? name : "");
    return INT32_MAX; /* "other" */
}

/* Registry label indices for g's routes, upstreams and listeners: a name
 * the registry knows (from the start-up config or an earlier reload) keeps
 * its index and its series; a new one is interned into the registry's
 * spare room. Runs on the control thread before g is published, so every
 * index a worker reads from g is already visible to the renderer; the
 * request path only reads these maps. Done at commit rather than in
 * prepare so a reload refused later (a bind that fails) interns nothing.
 * When the room is used up the name counts as "other", said once per
 * reload in the log. */
static void map_metrics(sg_runtime_t *rt, sg_rtgen_t *g)
{
    sg_metrics_t *m = rt->metrics;
    const sg_config_t *cfg = g->cfg;
    if (!m)
        return; /* no registry (unit tests): the start-up maps stand */
    char full[512];
    size_t len = 0, n_full = 0;
    full[0] = '\0';
    for (size_t r = 0; r < cfg->n_routes; r++)
        g->route_metric[r] =
            intern_or_other(m, SG_METRICS_DIM_ROUTE, cfg->routes[r].name, "route", full, sizeof(full), &len, &n_full);
    for (size_t u = 0; u < cfg->n_upstreams; u++)
        g->upstream_metric[u] = intern_or_other(m, SG_METRICS_DIM_UPSTREAM, cfg->upstreams[u].name, "upstream", full,
                                                sizeof(full), &len, &n_full);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        g->listener_metric[i] = intern_or_other(m, SG_METRICS_DIM_LISTENER, cfg->listeners[i].name, "listener", full,
                                                sizeof(full), &len, &n_full);
    for (size_t i = 0; i < cfg->egress.n_allow; i++)
        g->dest_metric[i] = intern_or_other(m, SG_METRICS_DIM_DEST, cfg->egress.allow[i].text, "egress destination",
                                            full, sizeof(full), &len, &n_full);
    if (n_full)
        sg_log(SG_LOG_WARN, NULL,
               "metrics: no label room left for %zu new name(s) (%s; each dimension holds the start-up names + %d); "
               "their requests count as \"other\" until restart",
               n_full, full, SG_METRICS_SPARE_LABELS);
}

/* Control thread: publishes g (from sg__runtime_prepare) as rt->gen and
 * retires the current generation. Takes g's reference. */
void sg__runtime_commit(sg_runtime_t *rt, sg_rtgen_t *g)
{
    map_metrics(rt, g); /* before the release exchange below publishes g */
    sg_config_t *old_cfg = atomic_exchange_explicit(&rt->config, sg_config_retain(g->cfg), memory_order_acq_rel);
    sg_rtgen_t *old = atomic_exchange_explicit(&rt->gen, g, memory_order_acq_rel);
    /* old_cfg stays alive through old's reference until old is reaped. */
    sg_config_release(old_cfg);
    old->_next_retired = rt->_retired;
    rt->_retired = old;
}

/* ---- worker-level generations ------------------------------------------------ */

static void wgen_free(sg_wgen_t *g)
{
    sg__upstreams_free(g);
    sg__egress_free(g);
    if (g->router)
        sg_router_free(g->router);
    sg_rtgen_release(g->rg);
    free(g);
}

sg_wgen_t *sg__wgen_new(sg_worker_t *w, sg_rtgen_t *rg)
{
    sg_wgen_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->w = w;
    g->rg = sg_rtgen_retain(rg);
    g->cfg = rg->cfg;
    g->refs = 1;
    g->router = sg_router_new(g->cfg);
    if (!g->router)
        goto fail;
    /* How heads are read under this generation's limits (built once: the
     * endpoints only point at them). */
    const sg_limits_conf_t *lim = &g->cfg->limits;
    g->req_ro = (sg_h1_read_opts_t){.kind = SG_H1_REQUEST,
                                    .limits = &w->req_limits,
                                    .max_body = lim->body_bytes,
                                    .max_trailer_bytes = lim->header_bytes,
                                    .max_trailer_count = lim->header_count};
    for (int skip = 0; skip < 2; skip++)
        g->resp_ro[skip] = (sg_h1_read_opts_t){.kind = SG_H1_RESPONSE,
                                               .limits = &w->resp_limits,
                                               .max_trailer_bytes = lim->header_bytes,
                                               .max_trailer_count = lim->header_count,
                                               .skip_body = skip != 0};
    if (w->role == SG_WORKER_CONTROL) {
        /* The control thread answers everything locally: no pools. */
        g->ups = calloc(1, sizeof(sg_upstream_t));
        if (!g->ups)
            goto fail;
        return g;
    }
    if (sg__upstreams_init(g) < 0 || sg__egress_init(g) < 0)
        goto fail;
    return g;
fail:
    if (g->n_resolving) {
        /* Resolutions already started: let their callbacks free it. */
        g->refs = 0;
        sg__upstreams_close(g);
        sg__egress_close(g);
        return NULL;
    }
    wgen_free(g);
    return NULL;
}

void sg__wgen_release(sg_wgen_t *g)
{
    if (--g->refs > 0 || g->n_resolving > 0)
        return;
    sg__upstreams_close(g); /* nothing idle is left; cancels nothing: n_resolving is 0 */
    sg__egress_close(g);
    wgen_free(g);
}

void sg__wgen_resolution_done(sg_wgen_t *g)
{
    if (g->n_resolving > 0)
        g->n_resolving--;
    if (g->refs == 0 && g->n_resolving == 0)
        wgen_free(g);
}

void sg__wgen_set_current(sg_worker_t *w, sg_wgen_t *g)
{
    sg_wgen_t *old = w->gen;
    g->is_current = true;
    w->gen = g;
    atomic_store_explicit(&w->pub->generation, g->rg->id, memory_order_release);
    if (w->role == SG_WORKER_PROXY) /* the control thread never polls busily */
        sg__busypoll_set(w, g->rg->cfg->busy_poll_us);
    if (!old)
        return;
    old->is_current = false;
    /* Its pools will not be used again: close what idles there now; the
     * connections its transactions still lease close when released. */
    sg__upstreams_close(old);
    sg__egress_close(old);
    sg__wgen_release(old);
}
