/* Workers and the process-level server: threads, loops, freelists,
 * heartbeat, drain and shutdown. */
#include "sg/worker.h"

#include "net/net_int.h"
#include "sg/log.h"
#include "sg/metrics.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct sg_server {
    sg_runtime_t *rt;
    sg_config_t *cfg;
    sg_server_opts_t opts;
    uint32_t n_workers;
    sg_worker_t *workers;
    size_t n_listeners; /* at start-up */
    char (*addrs)[64];  /* bound addresses at start-up */
    pthread_mutex_t mu; /* guards async sends vs. a worker closing its async handle */
    bool *async_closed;
    _Atomic uint32_t n_running;
    bool drain_requested; /* guarded by mu */
    /* The control thread: a worker with the admin listener only. */
    sg_worker_t *ctl;
    sg_worker_pub_t ctl_pub;
    /* The admin listener: its socket until the control thread takes it,
     * its bound address, and the configured one (a reload that changes it
     * binds a new socket). */
    sg_listener_conf_t admin_conf;
    int admin_fd;
    char admin_addr[64]; /* "" when disabled */
    bool admin_enabled;
    char admin_host[256];
    uint16_t admin_port;
    bool ctl_async_closed; /* guarded by mu */
};

#define SG_CTL_IDX UINT32_MAX

/* generation.c */
int sg__runtime_boot(sg_runtime_t *rt, sg_config_t *cfg);
void sg__runtime_unboot(sg_runtime_t *rt);
void sg__runtime_reap(sg_runtime_t *rt);
sg_rtgen_t *sg__runtime_prepare(sg_runtime_t *rt, sg_config_t *cfg, char *err, size_t errlen);
void sg__runtime_commit(sg_runtime_t *rt, sg_rtgen_t *g);

/* ---- runtime ------------------------------------------------------------ */

int sg_runtime_init(sg_runtime_t *rt, sg_config_t *cfg)
{
    memset(rt, 0, sizeof(*rt));
    uint32_t n = cfg->workers ? cfg->workers : 1;
    rt->n_workers = n;
    rt->workers = aligned_alloc(SG_CACHELINE, sizeof(sg_worker_pub_t) * n);
    if (!rt->workers)
        goto fail;
    memset(rt->workers, 0, sizeof(sg_worker_pub_t) * n);
    uint64_t now = sg_now_ms();
    for (uint32_t i = 0; i < n; i++)
        atomic_store_explicit(&rt->workers[i].heartbeat_ms, now, memory_order_relaxed);
    rt->servers = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*rt->servers));
    if (!rt->servers)
        goto fail;
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        size_t ns = cfg->upstreams[u].n_servers ? cfg->upstreams[u].n_servers : 1;
        rt->servers[u] = aligned_alloc(SG_CACHELINE, sizeof(sg_server_pub_t) * ns);
        if (!rt->servers[u])
            goto fail;
        memset(rt->servers[u], 0, sizeof(sg_server_pub_t) * ns);
    }
    rt->_n_boot_upstreams = cfg->n_upstreams;
    rt->start_unix_ms = sg_unix_ns() / 1000000u;
    if (sg__runtime_boot(rt, cfg) < 0)
        goto fail;
    return 0;
fail:
    sg_runtime_destroy(rt);
    return -ENOMEM;
}

void sg_runtime_destroy(sg_runtime_t *rt)
{
    sg__runtime_unboot(rt);
    sg_config_t *cfg = atomic_load(&rt->config);
    if (rt->servers) {
        size_t n = rt->_n_boot_upstreams;
        for (size_t u = 0; u < n; u++)
            free(rt->servers[u]);
        free(rt->servers);
    }
    free(rt->workers);
    if (cfg)
        sg_config_release(cfg);
    memset(rt, 0, sizeof(*rt));
}

bool sg__worker_over_conn_cap(const sg_worker_t *w)
{
    const sg_runtime_t *rt = w->rt;
    if (w->idx == SG_CTL_IDX)
        return rt->admin_conn_cap && w->n_conns >= rt->admin_conn_cap;
    if (!rt->client_conn_cap)
        return false;
    /* Every worker's own count (relaxed: each publishes it at accept and
     * close). Workers accepting at the same moment can pass the cap by at
     * most one connection each; the reserve covers that. */
    uint64_t n = 0;
    for (uint32_t i = 0; i < rt->n_workers; i++)
        n += atomic_load_explicit(&rt->workers[i].connections, memory_order_relaxed);
    return n >= rt->client_conn_cap;
}

bool sg__worker_can_accept(const sg_worker_t *w)
{
    return !w->is_draining && w->n_conns < w->gen->cfg->limits.max_connections;
}

/* ---- worker lifecycle ------------------------------------------------------ */

static void worker_maybe_finish(sg_worker_t *w);

static void on_handle_closed(uv_handle_t *h)
{
    SG_UNUSED(h);
}

static void heartbeat(sg_worker_t *w)
{
    atomic_store_explicit(&w->pub->heartbeat_ms, sg_now_ms(), memory_order_relaxed);
}

/* Memory under connection churn (issue #15, item 9; docs/operations.md,
 * "Memory under connection churn"). A burst of connections takes pooled
 * objects (head buffers of ~82 KiB, 16 KiB read buffers, conns, txns) past
 * the freelists' caps; when it ends the surplus goes back to malloc. glibc
 * keeps those chunks in the worker's arena with the pages they touched, and
 * the next burst carves its objects at other offsets of the same free
 * space, touching new pages: RSS grew by megabytes per burst for dozens of
 * bursts (measured with test/soak/churn.c). malloc_trim(0) gives the free
 * pages of every arena back to the kernel (MADV_DONTNEED), so RSS returns
 * to what is live plus the freelists after each burst. Done from the tick
 * (never inside a request) once the burst is over: this thread gave back
 * at least SG_TRIM_AFTER_BYTES since its last trim and nothing during the
 * last tick (or SG_TRIM_FORCE_BYTES under churn that never stops). Steady
 * traffic within the caps never trims. */
#define SG_TRIM_AFTER_BYTES (1u << 20)
#define SG_TRIM_FORCE_BYTES (64u << 20)

static void trim_maybe(sg_worker_t *w)
{
#ifdef __GLIBC__
    const sg_freelist_t *fls[] = {&w->fl_conn, &w->fl_txn, &w->fl_upconn, &w->fl_buf, &w->fl_head, &w->fl_wreq};
    uint64_t released = 0;
    for (size_t i = 0; i < SG_ARRAY_SIZE(fls); i++)
        released += fls[i]->released_bytes;
    bool is_quiet = released == w->trim_seen;
    w->trim_seen = released;
    uint64_t pending = released - w->trim_released;
    if (pending < SG_TRIM_AFTER_BYTES || (!is_quiet && pending < SG_TRIM_FORCE_BYTES))
        return;
    w->trim_released = released;
    w->n_trims++;
    malloc_trim(0);
    sg_obs_memory_trim(w->obs);
#else
    SG_UNUSED(w);
#endif
}

static void on_tick(uv_timer_t *t)
{
    sg_worker_t *w = t->data;
    heartbeat(w);
    trim_maybe(w);
    if (w->idx == SG_CTL_IDX)
        sg__runtime_reap(w->rt); /* retired generations every worker is past */
}

static void on_prepare(uv_prepare_t *p)
{
    heartbeat(p->data);
    sg__txn_reap(p->data);
}

static void start_listeners(sg_worker_t *w)
{
    if (w->is_started)
        return;
    w->is_started = true;
    for (size_t i = 0; i < w->n_listeners; i++) {
        int r = sg__listener_start(w->listeners[i]);
        if (r < 0)
            sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "worker %u: listener %s: %s", w->idx, w->listeners[i]->conf->name,
                       uv_strerror(r));
    }
    atomic_store_explicit(&w->pub->is_listening, true, memory_order_relaxed);
}

/* Called by upstream.c when the start-up name resolutions are done. */
void sg__worker_resolved(sg_worker_t *w);
void sg__worker_resolved(sg_worker_t *w)
{
    if (w->n_resolving == 0 && !w->is_stopping && w->drain_phase < SG_DRAIN_ACTIVE)
        start_listeners(w);
}

static void worker_stop_handles(sg_worker_t *w)
{
    if (w->is_stopping)
        return;
    w->is_stopping = true;
    for (size_t i = 0; i < w->n_listeners; i++)
        sg__listener_close(w->listeners[i]);
    sg__upstreams_close(w->gen);
    sg__tq_close(w, on_handle_closed);
    uv_close((uv_handle_t *)&w->tick, on_handle_closed);
    uv_close((uv_handle_t *)&w->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    pthread_mutex_lock(&w->server->mu);
    if (w->idx == SG_CTL_IDX)
        w->server->ctl_async_closed = true;
    else
        w->server->async_closed[w->idx] = true;
    pthread_mutex_unlock(&w->server->mu);
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
}

static void worker_maybe_finish(sg_worker_t *w)
{
    if (w->drain_phase >= SG_DRAIN_ACTIVE && w->n_conns == 0)
        worker_stop_handles(w);
}

void sg__worker_conn_gone(sg_worker_t *w)
{
    if (w->drain_phase >= SG_DRAIN_ACTIVE)
        worker_maybe_finish(w);
    else
        sg__listener_resume(w);
}

/* The moves of sg_drain_phase_t: forward only. The control thread goes from
 * NONE to FORCED at once (it stops after the workers, never drains). */
static const unsigned drain_legal[SG_DRAIN__COUNT] = {
    [SG_DRAIN_NONE] = 1u << SG_DRAIN_DELAY | 1u << SG_DRAIN_ACTIVE | 1u << SG_DRAIN_FORCED,
    [SG_DRAIN_DELAY] = 1u << SG_DRAIN_ACTIVE,
    [SG_DRAIN_ACTIVE] = 1u << SG_DRAIN_FORCED,
    [SG_DRAIN_FORCED] = 0,
};

static void set_drain(sg_worker_t *w, sg_drain_phase_t to)
{
    assert(drain_legal[w->drain_phase] & (1u << to));
    w->drain_phase = to;
}

static void force_close_all(sg_worker_t *w)
{
    sg_link_t *n = w->conns.next;
    while (n != &w->conns) {
        sg_link_t *next = n->next;
        sg_conn_t *c = sg_container_of(n, sg_conn_t, link);
        sg__conn_close(c);
        n = next;
    }
}

static void on_drain_timer(uv_timer_t *t);

static void drain_begin(sg_worker_t *w)
{
    set_drain(w, SG_DRAIN_ACTIVE);
    w->is_draining = true;
    atomic_store_explicit(&w->pub->is_listening, false, memory_order_relaxed);
    for (size_t i = 0; i < w->n_listeners; i++)
        sg__listener_close(w->listeners[i]);
    sg__conn_close_idle(w);
    uint64_t to = w->gen->cfg->shutdown.drain_timeout_ms;
    uv_timer_start(&w->drain_timer, on_drain_timer, to, 0);
    worker_maybe_finish(w);
}

static void on_drain_timer(uv_timer_t *t)
{
    sg_worker_t *w = t->data;
    if (w->drain_phase == SG_DRAIN_DELAY) {
        drain_begin(w);
    } else if (w->drain_phase == SG_DRAIN_ACTIVE) {
        set_drain(w, SG_DRAIN_FORCED);
        if (w->n_conns)
            sg_obs_log(w->obs, SG_LOG_WARN, NULL, "worker %u: drain timeout, closing %u connections", w->idx,
                       w->n_conns);
        force_close_all(w);
        worker_maybe_finish(w);
    }
}

static void report(sg_worker_t *w)
{
    fprintf(stderr,
            "swarmgate: pools worker=%u conn_grows=%llu txn_grows=%llu upconn_grows=%llu buf_grows=%llu "
            "head_grows=%llu wreq_grows=%llu requests=%llu conns=%u in_use=%llu/%llu/%llu/%llu/%llu/%llu\n",
            w->idx, (unsigned long long)w->fl_conn.grows, (unsigned long long)w->fl_txn.grows,
            (unsigned long long)w->fl_upconn.grows, (unsigned long long)w->fl_buf.grows,
            (unsigned long long)w->fl_head.grows, (unsigned long long)w->fl_wreq.grows,
            (unsigned long long)w->n_requests, w->n_conns, (unsigned long long)w->fl_conn.in_use,
            (unsigned long long)w->fl_txn.in_use, (unsigned long long)w->fl_upconn.in_use,
            (unsigned long long)w->fl_buf.in_use, (unsigned long long)w->fl_head.in_use,
            (unsigned long long)w->fl_wreq.in_use);
    fflush(stderr);
}

static void reload_on_ctl(sg_server_t *s);

static void on_async(uv_async_t *a)
{
    sg_worker_t *w = a->data;
    unsigned cmd = atomic_exchange(&w->cmd, 0u);
    if (cmd & SG_WORKER_CMD_REPORT)
        report(w);
    if (w->idx == SG_CTL_IDX) {
        if ((cmd & SG_WORKER_CMD_RELOAD) && w->drain_phase < SG_DRAIN_FORCED)
            reload_on_ctl(w->server);
        /* The control thread outlives the workers' drain (readiness must
         * answer 503 meanwhile) and stops once they are all gone. */
        if ((cmd & SG_WORKER_CMD_STOP) && w->drain_phase < SG_DRAIN_FORCED) {
            sg_server_t *s = w->server;
            if (s->opts.control_stop)
                s->opts.control_stop(&w->loop, s->opts.control_ud);
            set_drain(w, SG_DRAIN_FORCED);
            w->is_draining = true;
            for (size_t i = 0; i < w->n_listeners; i++)
                sg__listener_close(w->listeners[i]);
            force_close_all(w);
            worker_maybe_finish(w);
        }
        return;
    }
    if (cmd & SG_WORKER_CMD_RELOAD)
        sg__worker_adopt_gen(w);
    if (cmd & (SG_WORKER_CMD_DRAIN | SG_WORKER_CMD_DRAIN_NOW)) {
        uint64_t delay_ms = w->gen->cfg->shutdown.drain_delay_ms;
        if (w->drain_phase == SG_DRAIN_NONE && delay_ms > 0 && !(cmd & SG_WORKER_CMD_DRAIN_NOW)) {
            /* Readiness fails now; keep serving, but every response asks
             * the client to close (Connection: close) so keep-alive clients
             * move elsewhere before the listeners close. */
            set_drain(w, SG_DRAIN_DELAY);
            uv_timer_start(&w->drain_timer, on_drain_timer, delay_ms, 0);
        } else if (w->drain_phase <= SG_DRAIN_DELAY) {
            uv_timer_stop(&w->drain_timer);
            drain_begin(w);
        }
    }
    if ((cmd & SG_WORKER_CMD_FORCE) && w->drain_phase < SG_DRAIN_FORCED) {
        /* The operator asked twice: close everything now, no timeout. */
        if (w->drain_phase < SG_DRAIN_ACTIVE)
            drain_begin(w);
        uv_timer_stop(&w->drain_timer);
        set_drain(w, SG_DRAIN_FORCED);
        force_close_all(w);
        worker_maybe_finish(w);
    }
}

static void post_ctl(sg_server_t *s, unsigned cmd);

static void *worker_main(void *arg)
{
    sg_worker_t *w = arg;
    sg_server_t *s = w->server;
    bool is_ctl = w->idx == SG_CTL_IDX;
    /* Thread names for top -H, perf and /proc/PID/task/TID/comm (15 bytes). */
    char name[16];
    if (is_ctl)
        snprintf(name, sizeof(name), "sg-control");
    else
        snprintf(name, sizeof(name), "sg-worker-%u", w->idx & 0xffffu); /* workers <= 256 */
    pthread_setname_np(pthread_self(), name);
    heartbeat(w);
    if (is_ctl && s->opts.control_start)
        s->opts.control_start(&w->loop, s->opts.control_ud);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sg__txn_reap(w); /* ended in the last turn, after the prepare handle closed */
    int r = uv_loop_close(&w->loop);
    if (r != 0) {
        if (is_ctl)
            fprintf(stderr, "swarmgate: control thread: loop closed with open handles\n");
        else
            fprintf(stderr, "swarmgate: worker %u: loop closed with open handles\n", w->idx);
    }
    if (getenv("SG_DEBUG_POOLS") && !is_ctl)
        report(w);
    if (!is_ctl) /* past every generation: nothing to wait for here */
        atomic_store_explicit(&w->pub->generation, UINT32_MAX, memory_order_release);
    uint32_t left = atomic_fetch_sub(&s->n_running, 1u) - 1u;
    if (left == 1u && !is_ctl && s->ctl)
        post_ctl(s, SG_WORKER_CMD_STOP); /* the last worker is gone: stop the control thread */
    if (left == 0u && s->opts.on_stopped)
        uv_async_send(s->opts.on_stopped);
    return NULL;
}

static sg_listener_t *admin_listener_new(sg_server_t *s, sg_worker_t *w, int fd)
{
    sg_listener_t *l = sg__listener_new(w, fd, s->admin_addr);
    if (!l)
        return NULL;
    sg__listener_set_conf(l, NULL, &s->admin_conf, -1);
    l->responder = s->opts.admin_responder;
    l->responder_ud = s->opts.admin_ud;
    return l;
}

/* Worker thread (or main before the worker runs): makes w's listener set
 * rg's. A listener whose socket rg hands over (lfds) is new; one without
 * keeps the socket w has open for the same bound address, with rg's
 * settings; w's other listeners are closed (their connections stay).
 * Returns 0 or -1 (out of memory: the set is unchanged, rg's sockets for
 * w are closed when rg is freed). */
int sg__worker_sync_listeners(sg_worker_t *w, sg_rtgen_t *rg)
{
    const sg_config_t *cfg = rg->cfg;
    sg_listener_t **set = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*set));
    if (!set)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        int fd = atomic_exchange_explicit(&rg->lfds[i * rg->n_lfd_workers + w->idx], -1, memory_order_acq_rel);
        sg_listener_t *l = NULL;
        for (size_t j = 0; j < w->n_listeners && !l; j++) {
            if (w->listeners[j] && strcmp(w->listeners[j]->addr, rg->laddr[i]) == 0 && fd < 0) {
                l = w->listeners[j];
                w->listeners[j] = NULL;
            }
        }
        if (!l && fd >= 0 && !(l = sg__listener_new(w, fd, rg->laddr[i]))) {
            close(fd);
            sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "worker %u: out of memory: listener %s not opened", w->idx,
                       cfg->listeners[i].name);
        }
        if (!l) /* its socket moved on to a newer generation: this worker adopts that one next */
            continue;
        sg__listener_set_conf(l, rg->cfg, &cfg->listeners[i], rg->listener_metric[i]);
        l->health_cb = w->server->opts.health_cb;
        l->health_ud = w->server->opts.health_ud;
        set[n++] = l;
    }
    for (size_t j = 0; j < w->n_listeners; j++) {
        if (w->listeners[j]) {
            sg__listener_close(w->listeners[j]);
            sg__listener_unref(w->listeners[j]);
        }
    }
    free(w->listeners);
    w->listeners = set;
    w->n_listeners = n;
    if (w->is_started) {
        for (size_t i = 0; i < n; i++) {
            int r = sg__listener_start(set[i]);
            if (r < 0)
                sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "worker %u: listener %s: %s", w->idx, set[i]->conf->name,
                           uv_strerror(r));
        }
    }
    return 0;
}

/* How many free objects each freelist of a worker keeps for the next burst
 * (sg_freelist_t.max_free). An object freed past its cap goes back to
 * malloc, and trim_maybe() returns those pages to the kernel, so a cap
 * bounds what an idle worker holds after a burst (sizes on x86-64):
 * - connections (~400 B), transactions (~2.5 KiB) and upstream connections
 *   (~1 KiB): 1024 each, a busy worker's steady concurrency, ~4 MiB
 *   together;
 * - read buffers: 1024 of SG_BUF_SIZE (32 KiB), at most 32 MiB (it was
 *   4096 of 16 KiB before the buffers doubled);
 * - head buffers: 256, fewer because each is large (request line + header
 *   limits + header slots: ~82 KiB at the default limits, ~21 MiB for 256)
 *   and held only while a head is read or a serialized head waits to be
 *   written;
 * - write requests: 4096 (256 B each, 1 MiB), more because a connection
 *   can have several writes queued at once (both directions, a head and
 *   body chunks under back-pressure). */
#define SG_POOL_KEEP_CONNS 1024u
#define SG_POOL_KEEP_TXNS 1024u
#define SG_POOL_KEEP_UPCONNS 1024u
#define SG_POOL_KEEP_BUFS 1024u
#define SG_POOL_KEEP_HEADS 256u
#define SG_POOL_KEEP_WREQS 4096u

static int worker_init(sg_server_t *s, sg_worker_t *w, uint32_t idx)
{
    sg_config_t *cfg = s->cfg;
    bool is_ctl = idx == SG_CTL_IDX;
    w->idx = idx;
    w->server = s;
    w->boot_cfg = cfg;
    w->rt = s->rt;
    w->pub = is_ctl ? &s->ctl_pub : &s->rt->workers[idx];
    sg_list_init(&w->conns);
    const sg_limits_conf_t *lim = &cfg->limits;
    w->req_limits.start_line_bytes = lim->request_line_bytes;
    w->req_limits.header_bytes = lim->header_bytes;
    w->req_limits.header_count = lim->header_count;
    w->resp_limits = w->req_limits;
    w->head_max_hdrs = lim->header_count + 1;
    w->head_bytes = (size_t)lim->request_line_bytes + lim->header_bytes + 64;
    w->head_bytes = (w->head_bytes + 15u) & ~(size_t)15u;
    w->head_size = w->head_bytes + w->head_max_hdrs * sizeof(sg_h1_header_t);
    sg_freelist_init(&w->fl_conn, sizeof(sg_conn_t), SG_POOL_KEEP_CONNS);
    sg_freelist_init(&w->fl_txn, sizeof(sg_txn_t), SG_POOL_KEEP_TXNS);
    sg_freelist_init(&w->fl_upconn, sizeof(sg_upconn_t), SG_POOL_KEEP_UPCONNS);
    sg_freelist_init(&w->fl_buf, SG_BUF_SIZE, SG_POOL_KEEP_BUFS);
    sg_freelist_init(&w->fl_head, w->head_size, SG_POOL_KEEP_HEADS);
    sg_freelist_init(&w->fl_wreq, sizeof(sg_wreq_t), SG_POOL_KEEP_WREQS);
    int r = uv_loop_init(&w->loop);
    if (r < 0)
        return r;
    w->loop.data = w;
    w->obs = sg_obs_worker_new(s->rt, idx);
    if (!w->obs)
        return UV_ENOMEM;
    sg__tq_init(w);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 250, 250);
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_unref((uv_handle_t *)&w->prepare);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    if (is_ctl) {
        /* Only the admin listener; every request is answered locally. */
        w->listeners = calloc(1, sizeof(sg_listener_t *));
        if (!w->listeners)
            return UV_ENOMEM;
        if (s->admin_fd >= 0) {
            sg_listener_t *l = admin_listener_new(s, w, s->admin_fd);
            if (!l)
                return UV_ENOMEM;
            s->admin_fd = -1;
            w->listeners[0] = l;
            w->n_listeners = 1;
        }
        sg_wgen_t *g = sg__wgen_new(w, atomic_load(&s->rt->gen));
        if (!g)
            return UV_ENOMEM;
        sg__wgen_set_current(w, g);
        start_listeners(w);
        return 0;
    }
    sg_wgen_t *g = sg__wgen_new(w, atomic_load(&s->rt->gen));
    if (!g)
        return UV_ENOMEM;
    sg__wgen_set_current(w, g);
    if (sg__worker_sync_listeners(w, g->rg) < 0)
        return UV_ENOMEM;
    if (w->n_resolving == 0)
        start_listeners(w);
    return 0;
}

static void worker_free(sg_worker_t *w)
{
    if (w->gen)
        sg__wgen_unref(w->gen);
    w->gen = NULL;
    for (size_t i = 0; i < w->n_listeners; i++) {
        sg__listener_close(w->listeners[i]); /* only sockets never started are left */
        sg__listener_unref(w->listeners[i]);
    }
    free(w->listeners);
    if (w->obs)
        sg_obs_worker_free(w->obs);
    sg_freelist_destroy(&w->fl_conn);
    sg_freelist_destroy(&w->fl_txn);
    sg_freelist_destroy(&w->fl_upconn);
    sg_freelist_destroy(&w->fl_buf);
    sg_freelist_destroy(&w->fl_head);
    sg_freelist_destroy(&w->fl_wreq);
}

/* ---- the server ---------------------------------------------------------------- */

static void admin_remember(sg_server_t *s, const sg_config_t *cfg)
{
    s->admin_enabled = cfg->admin.enabled;
    snprintf(s->admin_host, sizeof(s->admin_host), "%s", cfg->admin.addr.host ? cfg->admin.addr.host : "");
    s->admin_port = cfg->admin.addr.port;
}

static bool admin_changed(const sg_server_t *s, const sg_config_t *cfg)
{
    if (s->admin_enabled != cfg->admin.enabled)
        return true;
    return cfg->admin.enabled && (s->admin_port != cfg->admin.addr.port ||
                                  strcmp(s->admin_host, cfg->admin.addr.host ? cfg->admin.addr.host : "") != 0);
}

/* "<name> <address>\n" per listener of g, then the admin listener. */
static int write_ports_file(sg_server_t *s, const sg_rtgen_t *g, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    for (size_t i = 0; i < g->cfg->n_listeners; i++)
        fprintf(f, "%s %s\n", g->cfg->listeners[i].name, g->laddr[i]);
    if (s->admin_addr[0])
        fprintf(f, "admin %s\n", s->admin_addr);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* ---- descriptor budget --------------------------------------------------------- */

/* Descriptors open in this process now (/proc/self/fd less the one that
 * reads it); -1 when /proc cannot be read. */
static long fds_in_use(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Connection caps from RLIMIT_NOFILE (issue #15, item 8): ~20,300 idle
 * connections from one host used to take every descriptor of a process
 * with a limit of 20,000, so new requests hung or were reset and the admin
 * listener's /health/live was reset too (an orchestrator kills such a
 * process). Computed once every socket, loop and log file of the start is
 * open (they are `in_use`):
 *   spare  = limit - in_use
 *   admin  = spare / 64, within 4..128: the admin listener's own cap
 *   other  = admin + 64 (Postgres, span export, DNS, log reopen, /proc
 *            reads) + one per listener socket (a reload binds new ones
 *            before closing old ones) + one per actively checked server,
 *            at most spare / 4
 *   client = (spare - other) / 2, at least 1
 * Half of what is left goes to upstream connections: a client connection
 * with a request in flight holds one (HAProxy sizes maxconn from the same
 * rule). Idle clients alone therefore cannot take the descriptors that
 * requests, the admin listener or a reload need. Called by
 * sg_server_start before any thread runs; the caps never change (the
 * limit is read at start only). */
static void set_conn_caps(sg_runtime_t *rt, const sg_config_t *cfg, uint32_t n_workers)
{
    struct rlimit rl;
    long in_use = fds_in_use();
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || in_use < 0)
        return; /* no cap: as before */
    uint64_t limit = rl.rlim_cur;
    uint64_t spare = limit > (uint64_t)in_use ? limit - (uint64_t)in_use : 0;
    uint64_t admin = SG_MIN(SG_MAX(spare / 64, (uint64_t)4), (uint64_t)128);
    uint64_t other = admin + 64 + (uint64_t)cfg->n_listeners * n_workers;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (cfg->upstreams[i].health_check.enabled)
            other += cfg->upstreams[i].n_servers;
    other = SG_MIN(other, spare / 4);
    uint64_t client = spare > other ? (spare - other) / 2 : 0;
    client = SG_MIN(SG_MAX(client, (uint64_t)1), (uint64_t)UINT32_MAX);
    rt->client_conn_cap = (uint32_t)client;
    rt->admin_conn_cap = (uint32_t)admin;
    if (rt->metrics)
        sg_metrics_set_conn_limit(rt->metrics, client);
    sg_log(SG_LOG_INFO, NULL,
           "connections: at most %llu client connections at once (RLIMIT_NOFILE %llu, %ld descriptors in use at "
           "start, %llu kept for the admin listener (at most %llu connections), files and reloads, half of the "
           "rest for upstream connections)",
           (unsigned long long)client, (unsigned long long)limit, in_use, (unsigned long long)other,
           (unsigned long long)admin);
}

int sg_server_start(sg_runtime_t *rt, sg_config_t *cfg, const sg_server_opts_t *opts, sg_server_t **out, char *err,
                    size_t errlen)
{
    sg_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->rt = rt;
    s->cfg = cfg;
    if (opts)
        s->opts = *opts;
    s->n_workers = rt->n_workers;
    s->n_listeners = cfg->n_listeners;
    pthread_mutex_init(&s->mu, NULL);
    s->admin_fd = -1;
    s->admin_conf.name = "admin";
    s->admin_conf.mode = SG_LISTENER_REVERSE;
    admin_remember(s, cfg);
    s->addrs = calloc(s->n_listeners ? s->n_listeners : 1, sizeof(*s->addrs));
    s->workers = calloc(s->n_workers, sizeof(sg_worker_t));
    s->async_closed = calloc(s->n_workers, sizeof(bool));
    if (!s->addrs || !s->workers || !s->async_closed) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sg_rtgen_t *boot = atomic_load(&rt->gen); /* its sockets go to the workers in worker_init */
    if (sg__bind_gen(boot, NULL, s->n_workers, err, errlen) < 0 ||
        sg__bind_admin(cfg, &s->admin_fd, s->admin_addr, sizeof(s->admin_addr), err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < s->n_listeners; i++) {
        memcpy(s->addrs[i], boot->laddr[i], sizeof(s->addrs[i]));
        fprintf(stderr, "swarmgate: listening name=%s address=%s\n", cfg->listeners[i].name, s->addrs[i]);
    }
    if (s->admin_fd >= 0)
        fprintf(stderr, "swarmgate: listening name=admin address=%s\n", s->admin_addr);
    fflush(stderr);
    if (s->opts.ports_file && write_ports_file(s, boot, s->opts.ports_file) < 0) {
        snprintf(err, errlen, "cannot write ports file %s: %s", s->opts.ports_file, strerror(errno));
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        int r = worker_init(s, &s->workers[i], i);
        if (r < 0) {
            snprintf(err, errlen, "worker %u: %s", i, uv_strerror(r));
            goto fail; /* workers not started: their loops are dropped with the process */
        }
    }
    s->ctl = calloc(1, sizeof(sg_worker_t));
    if (!s->ctl) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int cr = worker_init(s, s->ctl, SG_CTL_IDX);
    if (cr < 0) {
        snprintf(err, errlen, "control thread: %s", uv_strerror(cr));
        goto fail;
    }
    set_conn_caps(rt, cfg, s->n_workers);
    atomic_store(&s->n_running, s->n_workers + 1u);
    if (pthread_create(&s->ctl->thread, NULL, worker_main, s->ctl) != 0) {
        snprintf(err, errlen, "cannot start the control thread");
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            /* Earlier threads run; the caller exits the process. */
            snprintf(err, errlen, "cannot start worker thread %u", i);
            return -1;
        }
    }
    *out = s;
    return 0;
fail:
    /* Listener sockets no worker took close with the boot generation. */
    if (s->admin_fd >= 0)
        close(s->admin_fd);
    free(s->ctl);
    free(s->addrs);
    free(s->workers);
    free(s->async_closed);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return -1;
}

static void post_ctl(sg_server_t *s, unsigned cmd)
{
    pthread_mutex_lock(&s->mu);
    if (!s->ctl_async_closed) {
        atomic_fetch_or(&s->ctl->cmd, cmd);
        uv_async_send(&s->ctl->async);
    }
    pthread_mutex_unlock(&s->mu);
}

static void post(sg_server_t *s, unsigned cmd)
{
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (s->async_closed[i])
            continue;
        atomic_fetch_or(&s->workers[i].cmd, cmd);
        uv_async_send(&s->workers[i].async);
    }
    pthread_mutex_unlock(&s->mu);
}

void sg_server_drain(sg_server_t *s)
{
    atomic_store(&s->rt->is_draining, true);
    pthread_mutex_lock(&s->mu);
    bool again = s->drain_requested;
    s->drain_requested = true; /* a second call skips the delay */
    pthread_mutex_unlock(&s->mu);
    post(s, again ? SG_WORKER_CMD_DRAIN_NOW | SG_WORKER_CMD_FORCE : SG_WORKER_CMD_DRAIN);
}

/* Control thread: SIGHUP's reload. */
static void reload_on_ctl(sg_server_t *s)
{
    char err[1024];
    uint32_t gen = 0;
    (void)sg_server_reload(s, &gen, err, sizeof(err));
}

/* Control thread: the admin listener moves to the socket fd (-1: none). */
static void admin_replace(sg_server_t *s, int fd)
{
    sg_worker_t *w = s->ctl;
    if (w->n_listeners) {
        sg__listener_close(w->listeners[0]); /* its connections (maybe this reload's) stay */
        sg__listener_unref(w->listeners[0]);
        w->n_listeners = 0;
    }
    if (fd < 0)
        return;
    sg_listener_t *l = admin_listener_new(s, w, fd);
    if (!l) {
        close(fd);
        sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "out of memory: admin listener not opened");
        return;
    }
    w->listeners[0] = l;
    w->n_listeners = 1;
    int r = sg__listener_start(l);
    if (r < 0)
        sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "admin listener: %s", uv_strerror(r));
}

static void log_listener_changes(sg_server_t *s, const sg_rtgen_t *old, const sg_rtgen_t *g)
{
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        bool had = false;
        for (size_t j = 0; j < old->cfg->n_listeners && !had; j++)
            had = strcmp(old->laddr[j], g->laddr[i]) == 0;
        if (!had) {
            fprintf(stderr, "swarmgate: listening name=%s address=%s\n", g->cfg->listeners[i].name, g->laddr[i]);
            sg_obs_log(s->ctl->obs, SG_LOG_INFO, NULL, "listener %s: listening on %s", g->cfg->listeners[i].name,
                       g->laddr[i]);
        }
    }
    for (size_t j = 0; j < old->cfg->n_listeners; j++) {
        bool has = false;
        for (size_t i = 0; i < g->cfg->n_listeners && !has; i++)
            has = strcmp(old->laddr[j], g->laddr[i]) == 0;
        if (!has)
            sg_obs_log(s->ctl->obs, SG_LOG_INFO, NULL, "listener %s: closing %s", old->cfg->listeners[j].name,
                       old->laddr[j]);
    }
    fflush(stderr);
}

int sg_server_reload(sg_server_t *s, uint32_t *gen_out, char *err, size_t errlen)
{
    sg_runtime_t *rt = s->rt;
    const char *path = s->cfg->path;
    sg_config_t *cfg = NULL;
    sg_rtgen_t *g = NULL, *cur = atomic_load(&rt->gen);
    int admin_fd = -1;
    char admin_addr[64] = "";
    bool new_admin = false;
    if (sg_config_load(path, &cfg, err, errlen) == 0 && (g = sg__runtime_prepare(rt, cfg, err, errlen)) != NULL) {
        /* Sockets first: a bind that fails leaves everything as it was. */
        new_admin = admin_changed(s, g->cfg);
        if ((new_admin && sg__bind_admin(g->cfg, &admin_fd, admin_addr, sizeof(admin_addr), err, errlen) < 0) ||
            sg__bind_gen(g, cur, s->n_workers, err, errlen) < 0) {
            if (admin_fd >= 0)
                close(admin_fd);
            sg_rtgen_release(g); /* closes the sockets bound for it */
            g = NULL;
        }
    }
    sg_obs_config_reload(s->ctl->obs, g != NULL);
    if (!g) {
        sg_obs_log(s->ctl->obs, SG_LOG_ERROR, NULL, "config reload failed, keeping generation %u: %s", cur->id, err);
        return -1;
    }
    uint32_t gen = g->id;
    sg__runtime_commit(rt, g);           /* cur stays alive (retired) until the reap below */
    sg_log_set_level(g->cfg->log.level); /* the rest of log.* is read at start only */
    if (s->opts.control_reload)
        s->opts.control_reload(&s->ctl->loop, s->opts.control_ud, cur->cfg, g->cfg);
    log_listener_changes(s, cur, g);
    if (new_admin) {
        pthread_mutex_lock(&s->mu);
        memcpy(s->admin_addr, admin_addr, sizeof(s->admin_addr));
        pthread_mutex_unlock(&s->mu);
        admin_remember(s, g->cfg);
        admin_replace(s, admin_fd);
        if (admin_fd >= 0)
            fprintf(stderr, "swarmgate: listening name=admin address=%s\n", admin_addr);
    }
    if (s->opts.ports_file && write_ports_file(s, g, s->opts.ports_file) < 0)
        sg_obs_log(s->ctl->obs, SG_LOG_WARN, NULL, "cannot write ports file %s: %s", s->opts.ports_file,
                   strerror(errno));
    /* Every worker builds its router and pools for the new generation on
     * its own thread and takes its listener sockets; the control thread's
     * own (admin) generation now. */
    post(s, SG_WORKER_CMD_RELOAD);
    sg__worker_adopt_gen(s->ctl);
    sg__runtime_reap(rt);
    sg_obs_log(s->ctl->obs, SG_LOG_INFO, NULL, "config reloaded from %s: generation %u", path, gen);
    if (gen_out)
        *gen_out = gen;
    return 0;
}

void sg_server_request_reload(sg_server_t *s)
{
    post_ctl(s, SG_WORKER_CMD_RELOAD);
}

void sg_server_report(sg_server_t *s)
{
    post(s, SG_WORKER_CMD_REPORT);
}

void sg_server_join(sg_server_t *s)
{
    for (uint32_t i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i].thread, NULL);
    pthread_join(s->ctl->thread, NULL);
    atomic_store(&s->rt->is_stopping, true);
    for (uint32_t i = 0; i < s->n_workers; i++)
        worker_free(&s->workers[i]);
    worker_free(s->ctl);
    free(s->ctl);
    free(s->addrs);
    free(s->workers);
    free(s->async_closed);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

size_t sg_server_n_listeners(const sg_server_t *s)
{
    return s->n_listeners;
}

const char *sg_server_admin_address(const sg_server_t *s)
{
    return s->admin_addr[0] ? s->admin_addr : NULL;
}

const char *sg_server_listener_address(const sg_server_t *s, size_t i)
{
    return i < s->n_listeners ? s->addrs[i] : NULL;
}
