/* The process-level server (sg/worker.h): the runtime, the listening
 * sockets bound before any thread runs, the worker threads and the control
 * thread (worker.c), their drain, the config reload and the join. The
 * threads report back through sg_worker_hooks_t. */
#include "sg/worker.h"

#include "net/generation.h"
#include "net/net_int.h"
#include "sg/log.h"
#include "sg/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

struct sg_server {
    sg_runtime_t *rt;
    sg_config_t *cfg;
    sg_server_opts_t opts;
    uint32_t n_workers;
    sg_worker_t *workers;
    size_t n_listeners; /* at start-up */
    char (*addrs)[64];  /* bound addresses at start-up */
    pthread_mutex_t mu; /* guards drain_requested and admin_addr */
    _Atomic uint32_t n_running;
    bool drain_requested;
    /* The control thread (role SG_WORKER_CONTROL): the admin listener only. */
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
};

static void post_ctl(sg_server_t *s, unsigned cmd);

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
    sg_tls_ticket_keys_free(rt->tls_keys); /* after every context that used them */
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

/* ---- what the threads report (sg_worker_hooks_t) ----------------------------- */

static void on_worker_start(sg_worker_t *w)
{
    sg_server_t *s = w->server;
    if (w->role == SG_WORKER_CONTROL && s->opts.control_start)
        s->opts.control_start(&w->loop, s->opts.control_ud);
}

/* Control thread: SIGHUP's reload. */
static void on_worker_reload(sg_worker_t *w)
{
    char err[1024];
    uint32_t gen = 0;
    (void)sg_server_reload(w->server, &gen, err, sizeof(err));
}

/* Control thread: every worker is gone. */
static void on_worker_stop(sg_worker_t *w)
{
    sg_server_t *s = w->server;
    if (s->opts.control_stop)
        s->opts.control_stop(&w->loop, s->opts.control_ud);
}

static void on_worker_exit(sg_worker_t *w)
{
    sg_server_t *s = w->server;
    uint32_t left = atomic_fetch_sub(&s->n_running, 1u) - 1u;
    if (left == 1u && w->role == SG_WORKER_PROXY && s->ctl)
        post_ctl(s, SG_WORKER_CMD_STOP); /* the last worker is gone: stop the control thread */
    if (left == 0u && s->opts.on_stopped)
        uv_async_send(s->opts.on_stopped);
}

static const sg_worker_hooks_t worker_hooks = {
    .on_start = on_worker_start,
    .on_reload = on_worker_reload,
    .on_stop = on_worker_stop,
    .on_exit = on_worker_exit,
};

static sg_worker_conf_t worker_conf(sg_server_t *s, sg_worker_role_t role, uint32_t idx, sg_worker_pub_t *pub)
{
    return (sg_worker_conf_t){
        .role = role,
        .idx = idx,
        .server = s,
        .hooks = &worker_hooks,
        .rt = s->rt,
        .cfg = s->cfg,
        .pub = pub,
        .health_cb = s->opts.health_cb,
        .health_ud = s->opts.health_ud,
    };
}

static sg_listener_t *admin_listener_new(sg_server_t *s, sg_worker_t *w, int fd)
{
    sg_listener_t *l = sg__listener_new(w, fd, s->admin_addr);
    if (!l)
        return NULL;
    sg__listener_set_conf(l, NULL, &s->admin_conf, -1, NULL);
    l->responder = s->opts.admin_responder;
    l->responder_ud = s->opts.admin_ud;
    return l;
}

/* The control thread's listener set becomes l alone, started at once (the
 * set counts as started from sg__worker_init on). Main before the thread
 * runs, or the control thread. */
static void admin_set(sg_server_t *s, sg_listener_t *l)
{
    sg_worker_t *w = s->ctl;
    w->listeners[0] = l;
    w->n_listeners = 1;
    int r = sg__listener_start(l);
    if (r < 0)
        sg_obs_log(w->obs, SG_LOG_ERROR, NULL, "admin listener: %s", uv_strerror(r));
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
    if (!s->addrs || !s->workers) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sg_rtgen_t *boot = atomic_load(&rt->gen); /* its sockets go to the workers in sg__worker_init */
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
        sg_worker_conf_t wc = worker_conf(s, SG_WORKER_PROXY, i, &rt->workers[i]);
        int r = sg__worker_init(&s->workers[i], &wc);
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
    sg_worker_conf_t cc = worker_conf(s, SG_WORKER_CONTROL, 0, &s->ctl_pub);
    int cr = sg__worker_init(s->ctl, &cc);
    if (cr < 0) {
        snprintf(err, errlen, "control thread: %s", uv_strerror(cr));
        goto fail;
    }
    if (s->admin_fd >= 0) {
        /* Every request on it is answered locally (admin_responder). */
        sg_listener_t *l = admin_listener_new(s, s->ctl, s->admin_fd);
        if (!l) {
            snprintf(err, errlen, "control thread: %s", uv_strerror(UV_ENOMEM));
            goto fail;
        }
        s->admin_fd = -1;
        admin_set(s, l);
    }
    set_conn_caps(rt, cfg, s->n_workers);
    atomic_store(&s->n_running, s->n_workers + 1u);
    if (pthread_create(&s->ctl->thread, NULL, sg__worker_main, s->ctl) != 0) {
        snprintf(err, errlen, "cannot start the control thread");
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, sg__worker_main, &s->workers[i]) != 0) {
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
    pthread_mutex_destroy(&s->mu);
    free(s);
    return -1;
}

static void post_ctl(sg_server_t *s, unsigned cmd)
{
    sg__worker_post(s->ctl, cmd);
}

/* Every proxy worker. */
static void post(sg_server_t *s, unsigned cmd)
{
    for (uint32_t i = 0; i < s->n_workers; i++)
        sg__worker_post(&s->workers[i], cmd);
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
    admin_set(s, l);
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
        sg__worker_free(&s->workers[i]);
    sg__worker_free(s->ctl);
    free(s->ctl);
    free(s->addrs);
    free(s->workers);
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
