/* Listening sockets of one worker: accept with a connection limit
 * (limits.max_connections: wait in the backlog) and the descriptor cap
 * (refused at once, see worker.c set_conn_caps). The
 * socket itself was bound (SO_REUSEPORT) and put into listening state
 * before the worker took it (worker.c: at start-up, or by the control
 * thread for a reload that adds or moves a listener). */
#include "net/net_int.h"
#include "sg/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_refused_closed(uv_handle_t *h)
{
    sg_conn_t *c = sg_container_of((sg_tp_t *)h->data, sg_conn_t, tp);
    sg_freelist_put(&sg__tp_w(&c->tp)->fl_conn, c);
}

/* The descriptor cap is reached (sg__worker_over_conn_cap): the connection
 * libuv accepted for l is reset at once (SO_LINGER 0: RST, no TIME_WAIT),
 * so its client learns now instead of waiting in the backlog, and counted.
 * The pooled conn object only carries the handle until it is closed. */
static void refuse(sg_listener_t *l)
{
    sg_worker_t *w = l->w;
    sg_conn_t *c = sg_freelist_get(&w->fl_conn);
    if (!c) {
        l->pending_accepts++; /* out of memory: libuv keeps it queued; retried at the next close */
        return;
    }
    memset(c, 0, sizeof(*c));
    uv_tcp_init(&w->loop, &c->tp.tcp);
    c->tp.tcp.data = &c->tp;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tp.tcp) == 0) {
        uv_os_fd_t fd;
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (uv_fileno((uv_handle_t *)&c->tp.tcp, &fd) == 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    uv_close((uv_handle_t *)&c->tp.tcp, on_refused_closed);
    sg_obs_conn_refused(w->obs, l->idx, SG_CONN_REFUSED_LIMIT);
    static _Thread_local uint64_t last_ms;
    uint64_t now = sg_now_ms();
    if (now - last_ms >= 1000) { /* at most once a second per thread */
        last_ms = now;
        const sg_runtime_t *rt = w->rt;
        sg_obs_log(w->obs, SG_LOG_WARN, NULL,
                   "listener %s: connection cap reached (%u %s connections): refusing new connections", l->conf->name,
                   l->idx < 0 ? rt->admin_conn_cap : rt->client_conn_cap, l->idx < 0 ? "admin" : "client");
    }
}

/* One connection libuv holds for l: refused at the cap, left queued while
 * the worker is at max_connections (or draining), else served. */
static void accept_one(sg_listener_t *l)
{
    sg_worker_t *w = l->w;
    if (!sg__worker_can_accept(w)) {
        /* Not calling uv_accept() makes libuv stop polling this socket until
         * we do (uv__server_io): the kernel backlog holds the rest. */
        l->pending_accepts++;
        return;
    }
    if (sg__worker_over_conn_cap(w)) {
        refuse(l);
        return;
    }
    sg__conn_accepted(l);
}

static void on_connection(uv_stream_t *server, int status)
{
    sg_listener_t *l = server->data;
    sg_worker_t *w = l->w;
    if (status < 0) {
        /* EMFILE/ENFILE: libuv already dropped the queued connection with
         * its reserve descriptor; we keep running. Logged at most 1/s. */
        sg_obs_conn_refused(w->obs, l->idx, SG_CONN_REFUSED_ACCEPT_ERROR);
        static _Thread_local uint64_t last_ms;
        uint64_t now = sg_now_ms();
        if (now - last_ms >= 1000) {
            last_ms = now;
            sg_obs_log(w->obs, SG_LOG_WARN, NULL, "listener %s: accept: %s", l->conf->name, uv_strerror(status));
        }
        return;
    }
    accept_one(l);
}

sg_listener_t *sg__listener_new(sg_worker_t *w, int fd, const char *addr)
{
    sg_listener_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->w = w;
    l->fd = fd;
    l->refs = 1;
    l->conn_ops = &sg__stream_conn_ops; /* every mode's requests go through the stream */
    l->handler = &sg__reverse_handler;
    snprintf(l->addr, sizeof(l->addr), "%s", addr ? addr : "");
    return l;
}

void sg__listener_set_conf(sg_listener_t *l, sg_config_t *cfg, const sg_listener_conf_t *conf, int32_t idx,
                           sg_tls_server_t *tls)
{
    int old_backlog = l->conf ? l->conf->backlog : conf->backlog;
    sg_config_t *old = l->cfg;
    /* New connections take the new certificates; open ones keep theirs
     * (a TLS connection retains the contexts it was made from). */
    sg_tls_server_t *old_tls = l->tls;
    l->tls = tls ? sg_tls_server_retain(tls) : NULL;
    sg_tls_server_release(old_tls);
    l->cfg = sg_config_retain(cfg);
    l->conf = conf;
    l->idx = idx;
    l->handler = conf->mode == SG_LISTENER_EGRESS ? &sg__egress_handler : &sg__reverse_handler;
    sg_config_release(old);
    if (l->is_open && !l->is_closed && conf->backlog != old_backlog) {
        /* Linux: listen() again on a listening socket resizes its backlog. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0)
            (void)listen(fd, conf->backlog > 0 ? conf->backlog : 511);
    }
}

int sg__listener_start(sg_listener_t *l)
{
    if (l->is_open || l->is_closed)
        return 0;
    sg_worker_t *w = l->w;
    int r = uv_tcp_init(&w->loop, &l->tcp);
    if (r < 0)
        return r;
    l->tcp.data = l;
    l->is_open = true;
    r = uv_tcp_open(&l->tcp, l->fd);
    if (r < 0)
        return r;
    l->fd = -1;
    return uv_listen((uv_stream_t *)&l->tcp, l->conf->backlog > 0 ? l->conf->backlog : 511, on_connection);
}

static void listener_free_maybe(sg_listener_t *l)
{
    if (l->refs > 0 || l->is_closing)
        return;
    if (l->fd >= 0)
        close(l->fd);
    sg_tls_server_release(l->tls);
    sg_config_release(l->cfg);
    free(l);
}

static void on_listener_closed(uv_handle_t *h)
{
    sg_listener_t *l = h->data;
    l->is_closing = false;
    listener_free_maybe(l);
}

void sg__listener_close(sg_listener_t *l)
{
    if (l->is_closed)
        return;
    l->is_closed = true;
    if (l->is_open) {
        l->is_closing = true;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    } else if (l->fd >= 0) {
        uv_os_sock_t fd = l->fd;
        l->fd = -1;
        close(fd);
    }
}

void sg__listener_unref(sg_listener_t *l)
{
    if (--l->refs == 0)
        listener_free_maybe(l);
}

void sg__listener_resume(sg_worker_t *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        sg_listener_t *l = w->listeners[i];
        if (l->pending_accepts && !l->is_closed && sg__worker_can_accept(w)) {
            l->pending_accepts = 0;
            accept_one(l);
        }
    }
}
