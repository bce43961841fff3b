/* A loop thread: a proxy worker or the control thread (sg_worker_role_t).
 * Its loop, freelists, heartbeat and memory trim, its listener set across
 * generations, and the drain that ends it. The process around the threads
 * (start, signals' drain and reload, join) is server.c's, reached through
 * the hooks it gives each worker. */
#include "net/generation.h"
#include "net/net_int.h"
#include "sg/log.h"

#include <assert.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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
 * objects (head buffers of ~82 KiB, 32 KiB read buffers, conns, txns) past
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
    if (w->role == SG_WORKER_CONTROL)
        sg__runtime_reap(w->rt); /* retired generations every worker is past */
}

static void on_prepare(uv_prepare_t *p)
{
    heartbeat(p->data);
    sg__upconn_run_ready(p->data); /* before the reap: a ready callback may end a transaction */
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
            sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "%s: listener %s: %s", w->label, w->listeners[i]->conf->name,
                       uv_strerror(r));
    }
    atomic_store_explicit(&w->pub->is_listening, true, memory_order_relaxed);
}

/* w->notify->resolved: the start-up name resolutions are done. */
static void on_resolved(sg_worker_t *w)
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
    sg__egress_close(w->gen);
    sg__tq_close(w, on_handle_closed);
    uv_close((uv_handle_t *)&w->tick, on_handle_closed);
    uv_close((uv_handle_t *)&w->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    pthread_mutex_lock(&w->post_mu);
    w->is_async_closed = true;
    pthread_mutex_unlock(&w->post_mu);
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
}

static void worker_maybe_finish(sg_worker_t *w)
{
    if (w->drain_phase >= SG_DRAIN_ACTIVE && w->n_conns == 0)
        worker_stop_handles(w);
}

/* w->notify->conn_gone: a connection closed. */
static void on_conn_gone(sg_worker_t *w, sg_listener_t *l)
{
    if (w->drain_phase >= SG_DRAIN_ACTIVE)
        worker_maybe_finish(w);
    else
        sg__listener_resume(w);
    sg__listener_unref(l);
}

static const sg_worker_notify_t worker_notify = {
    .conn_gone = on_conn_gone,
    .resolved = on_resolved,
    .gen_unref = sg__wgen_release,
    .gen_resolved = sg__wgen_resolution_done,
};

void sg__worker_post(sg_worker_t *w, unsigned cmd)
{
    pthread_mutex_lock(&w->post_mu);
    if (!w->is_async_closed) {
        atomic_fetch_or(&w->cmd, cmd);
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->post_mu);
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
    SG_UNUSED(drain_legal); /* NDEBUG builds */
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
            sg_obs_log(w->obs, SG_LOG_WARN, NULL, "%s: drain timeout, closing %u connections", w->label, w->n_conns);
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

/* The control thread's commands: it outlives the workers' drain (readiness
 * must answer 503 meanwhile) and stops once they are all gone. */
static void control_async(sg_worker_t *w, unsigned cmd)
{
    if ((cmd & SG_WORKER_CMD_RELOAD) && w->drain_phase < SG_DRAIN_FORCED)
        w->hooks->on_reload(w);
    if ((cmd & SG_WORKER_CMD_STOP) && w->drain_phase < SG_DRAIN_FORCED) {
        w->hooks->on_stop(w);
        set_drain(w, SG_DRAIN_FORCED);
        w->is_draining = true;
        for (size_t i = 0; i < w->n_listeners; i++)
            sg__listener_close(w->listeners[i]);
        force_close_all(w);
        worker_maybe_finish(w);
    }
}

static void on_async(uv_async_t *a)
{
    sg_worker_t *w = a->data;
    unsigned cmd = atomic_exchange(&w->cmd, 0u);
    if (cmd & SG_WORKER_CMD_REPORT)
        report(w);
    if (w->role == SG_WORKER_CONTROL) {
        control_async(w, cmd);
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

void *sg__worker_main(void *arg)
{
    sg_worker_t *w = arg;
    bool is_ctl = w->role == SG_WORKER_CONTROL;
    /* Thread names for top -H, perf and /proc/PID/task/TID/comm (15 bytes). */
    char name[16];
    if (is_ctl)
        snprintf(name, sizeof(name), "sg-control");
    else
        snprintf(name, sizeof(name), "sg-worker-%u", w->idx & 0xffffu); /* workers <= 256 */
    pthread_setname_np(pthread_self(), name);
    if (is_ctl) {
        /* The control thread's work (log writing, scrapes, the poller) can
         * wait a little; a worker's request cannot: a lower priority keeps
         * it from preempting a worker on a shared CPU (the p99 tail,
         * docs/performance.md). Linux: nice is per thread. */
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    }
    heartbeat(w);
    w->hooks->on_start(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sg__txn_reap(w); /* ended in the last turn, after the prepare handle closed */
    if (uv_loop_close(&w->loop) != 0)
        fprintf(stderr, "swarmgate: %s: loop closed with open handles\n", w->label);
    if (getenv("SG_DEBUG_POOLS") && !is_ctl)
        report(w);
    if (!is_ctl) /* past every generation: nothing to wait for here */
        atomic_store_explicit(&w->pub->generation, UINT32_MAX, memory_order_release);
    w->hooks->on_exit(w); /* last: the server may free w once every thread is out */
    return NULL;
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
            sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "%s: out of memory: listener %s not opened", w->label,
                       cfg->listeners[i].name);
        }
        if (!l) /* its socket moved on to a newer generation: this worker adopts that one next */
            continue;
        sg__listener_set_conf(l, rg->cfg, &cfg->listeners[i], rg->listener_metric[i],
                              rg->tls_servers ? rg->tls_servers[i] : NULL);
        l->health_cb = w->health_cb;
        l->health_ud = w->health_ud;
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
                sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "%s: listener %s: %s", w->label, set[i]->conf->name,
                           uv_strerror(r));
        }
    }
    return 0;
}

void sg__worker_adopt_gen(sg_worker_t *w)
{
    sg_rtgen_t *rg = atomic_load_explicit(&w->rt->gen, memory_order_acquire);
    if (!rg || (w->gen && w->gen->rg->id >= rg->id))
        return;
    if (w->is_stopping || w->drain_phase >= SG_DRAIN_ACTIVE) {
        /* Draining: no new requests come; just say we are past it. */
        atomic_store_explicit(&w->pub->generation, rg->id, memory_order_release);
        return;
    }
    sg_wgen_t *g = sg__wgen_new(w, rg);
    if (!g) {
        sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "%s: out of memory adopting config generation %u; keeping %u", w->label,
                   rg->id, w->gen ? w->gen->rg->id : 0u);
        atomic_store_explicit(&w->pub->generation, rg->id, memory_order_release);
        return;
    }
    sg__wgen_set_current(w, g);
    if (w->role == SG_WORKER_PROXY && sg__worker_sync_listeners(w, rg) < 0)
        sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "%s: out of memory adopting the listeners of generation %u", w->label,
                   rg->id);
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

int sg__worker_init(sg_worker_t *w, const sg_worker_conf_t *conf)
{
    const sg_config_t *cfg = conf->cfg;
    bool is_ctl = conf->role == SG_WORKER_CONTROL;
    w->role = conf->role;
    w->idx = is_ctl ? 0 : conf->idx;
    if (is_ctl)
        snprintf(w->label, sizeof(w->label), "control thread");
    else
        snprintf(w->label, sizeof(w->label), "worker %u", w->idx);
    w->server = conf->server;
    w->hooks = conf->hooks;
    w->notify = &worker_notify;
    w->health_cb = conf->health_cb;
    w->health_ud = conf->health_ud;
    w->boot_cfg = cfg;
    w->rt = conf->rt;
    w->pub = conf->pub;
    pthread_mutex_init(&w->post_mu, NULL);
    sg_list_init(&w->conns);
    sg_list_init(&w->ready_q);
    w->upstream_tp = &sg__tp_tcp;
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
    w->obs = is_ctl ? sg_obs_control_new(w->rt) : sg_obs_worker_new(w->rt, w->idx);
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
        /* Room for the admin listener (the server adds it), nothing else. */
        w->listeners = calloc(1, sizeof(sg_listener_t *));
        if (!w->listeners)
            return UV_ENOMEM;
        sg_wgen_t *g = sg__wgen_new(w, atomic_load(&w->rt->gen));
        if (!g)
            return UV_ENOMEM;
        sg__wgen_set_current(w, g);
        start_listeners(w);
        return 0;
    }
    sg_wgen_t *g = sg__wgen_new(w, atomic_load(&w->rt->gen));
    if (!g)
        return UV_ENOMEM;
    sg__wgen_set_current(w, g);
    if (sg__worker_sync_listeners(w, g->rg) < 0)
        return UV_ENOMEM;
    if (w->n_resolving == 0)
        start_listeners(w);
    return 0;
}

void sg__worker_free(sg_worker_t *w)
{
    if (w->gen)
        sg__wgen_release(w->gen);
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
    pthread_mutex_destroy(&w->post_mu);
}
