/* Upstream groups of one worker: name resolution (uv_getaddrinfo, never
 * blocking), balancing (round-robin, least-in-flight), per-server
 * keep-alive pools, connect, timers and passive health (consecutive
 * failures eject a server for fail_timeout, never the last available one of
 * its group; shared by all workers through runtime servers[][] atomics). */
#include "net/net_int.h"

#include <stdio.h>
#include <stdlib.h>

static void on_upc_read(sg_tp_t *tp, ssize_t nread);
static void on_upc_write(sg_tp_t *tp, int status);
static void on_upc_shutdown(sg_tp_t *tp, int status);
static void on_upc_closed(sg_tp_t *tp);
static void on_upc_secure(sg_tp_t *tp, int status);
static void on_upc_connect(sg_tp_t *tp, int status);
static void read_loop(sg_upconn_t *u, sg_txn_t *t);
static void on_upc_eof(sg_upconn_t *u, sg_txn_t *t);
static const sg_tp_cbs_t k_upc_tp_cbs = {.on_read = on_upc_read,
                                         .on_write = on_upc_write,
                                         .on_shutdown = on_upc_shutdown,
                                         .on_closed = on_upc_closed,
                                         .on_secure = on_upc_secure,
                                         .on_connect = on_upc_connect};

/* The TLS handshake with the server ended: the connection is ready, or the
 * lessee hears of a failure of its own kind (SG_FAIL_TLS: verification,
 * protocol), with the reason in the log. */
static void on_upc_secure(sg_tp_t *tp, int status)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    sg_tls_conn_t *tc = sg__tp_tls_conn(tp);
    sg_tls_error_t e = status == 0 ? SG_TLS_OK : sg_tls_conn_error(tc);
    if (status < 0 && e == SG_TLS_OK)
        e = SG_TLS_E_INTERNAL;
    sg_obs_upstream_tls_handshake(u->w->obs, sg__wgen_ups_metric(u->ups->gen, u->ups->idx), e);
    sg_txn_t *t = u->txn;
    if (status < 0) {
        sg_obs_log(u->w->obs, SG_LOG_WARN, NULL, "upstream %s server %s: TLS handshake failed: %s", u->ups->conf->name,
                   u->srv->name, sg_tls_conn_error_text(tc));
        u->flags |= SG_UPC_F_NO_REUSE;
        if (t)
            u->ops->on_error(t, SG_FAIL_TLS, sg_tls_error_name(e)); /* a static string: the record keeps it */
        else
            sg__upconn_close(u);
        return;
    }
    u->state = SG_UPC_ACTIVE;
    sg__upconn_timer(u, SG_UPC_T_NONE, 0);
    if (t)
        u->ops->on_ready(t);
    else
        sg__upconn_release(u, false);
}

/* Keeps the newest resumable session the server gave on this connection
 * (TLS 1.3 tickets come after the handshake) for the next one. */
static void keep_session(sg_upconn_t *u)
{
    sg_tls_conn_t *tc = sg__tp_tls_conn(&u->tp);
    if (!tc || !sg_tls_conn_is_handshake_done(tc))
        return;
    sg_tls_session_t *s = sg_tls_conn_session(tc);
    if (!s)
        return;
    sg_tls_session_free(u->srv->tls_session);
    u->srv->tls_session = s;
}

const char *sg__upc_state_name(sg_upc_state_t s)
{
    static const char *const names[] = {"connecting", "active", "idle", "closed"};
    return s < SG_UPC__COUNT ? names[s] : "?";
}

/* ---- resolution --------------------------------------------------------- */

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sg_upserver_t *s = req->data;
    sg_worker_t *w = s->ups->w;
    sg_wgen_t *g = s->ups->gen;
    s->is_resolving = false;
    if (status == 0 && res) {
        /* First address (getaddrinfo's RFC 6724 order). */
        memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
        if (s->addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&s->addr)->sin_port = htons(s->hp->port);
        else
            ((struct sockaddr_in6 *)&s->addr)->sin6_port = htons(s->hp->port);
        s->is_resolved = true;
    } else if (status != UV_ECANCELED) {
        sg_obs_log(w->obs, SG_LOG_WARN, NULL, "upstream %s: cannot resolve %s: %s", s->ups->conf->name, s->hp->host,
                   uv_strerror(status));
    }
    if (res)
        uv_freeaddrinfo(res);
    if (w->n_resolving > 0 && --w->n_resolving == 0)
        sg__worker_resolved(w);
    sg__wgen_resolved(g); /* last: may free a retired generation (and s) */
}

static int start_resolve(sg_upserver_t *s)
{
    sg_worker_t *w = s->ups->w;
    if (s->is_resolving || w->is_stopping)
        return 0;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    s->gai.data = s;
    int r = uv_getaddrinfo(&w->loop, &s->gai, on_resolved, s->hp->host, NULL, &hints);
    if (r == 0) {
        s->is_resolving = true;
        w->n_resolving++;
        s->ups->gen->n_resolving++;
    }
    return r;
}

int sg__upstreams_init(sg_wgen_t *g)
{
    sg_worker_t *w = g->w;
    const sg_config_t *cfg = g->cfg;
    g->n_ups = cfg->n_upstreams;
    g->ups = calloc(g->n_ups ? g->n_ups : 1, sizeof(sg_upstream_t));
    if (!g->ups)
        return UV_ENOMEM;
    for (size_t i = 0; i < g->n_ups; i++) {
        sg_upstream_t *u = &g->ups[i];
        u->w = w;
        u->gen = g;
        u->idx = (int32_t)i;
        u->conf = &cfg->upstreams[i];
        u->n_servers = u->conf->n_servers;
        u->tls = g->rg->tls_clients ? g->rg->tls_clients[i] : NULL;
        u->servers = calloc(u->n_servers ? u->n_servers : 1, sizeof(sg_upserver_t));
        if (!u->servers)
            return UV_ENOMEM;
        /* Spread the workers' round-robin starting points. */
        u->rr = w->idx;
        for (size_t k = 0; k < u->n_servers; k++) {
            sg_upserver_t *s = &u->servers[k];
            s->hp = &u->conf->servers[k];
            s->ups = u;
            s->idx = (int32_t)k;
            s->pub = g->rg->servers[i][k];
            s->tls_host = s->hp->host;
            sg_list_init(&s->idle);
            snprintf(s->name, sizeof(s->name), s->hp->is_ipv6_literal ? "[%s]:%u" : "%s:%u", s->hp->host, s->hp->port);
            if (s->hp->is_ip_literal) {
                int r = s->hp->is_ipv6_literal ? uv_ip6_addr(s->hp->host, s->hp->port, (struct sockaddr_in6 *)&s->addr)
                                               : uv_ip4_addr(s->hp->host, s->hp->port, (struct sockaddr_in *)&s->addr);
                s->is_resolved = r == 0;
            } else {
                (void)start_resolve(s);
            }
        }
    }
    return 0;
}

void sg__upstreams_close(sg_wgen_t *g)
{
    for (size_t i = 0; g->ups && i < g->n_ups; i++) {
        sg_upstream_t *u = &g->ups[i];
        for (size_t k = 0; u->servers && k < u->n_servers; k++) {
            sg_upserver_t *s = &u->servers[k];
            if (s->is_resolving)
                uv_cancel((uv_req_t *)&s->gai);
            while (!sg_list_empty(&s->idle)) {
                sg_upconn_t *c = sg_container_of(s->idle.next, sg_upconn_t, link);
                sg__upconn_close(c);
            }
        }
    }
}

/* Frees what sg__upstreams_init allocated. */
void sg__upstreams_free(sg_wgen_t *g)
{
    for (size_t i = 0; g->ups && i < g->n_ups; i++) {
        for (size_t k = 0; g->ups[i].servers && k < g->ups[i].n_servers; k++)
            sg_tls_session_free(g->ups[i].servers[k].tls_session);
        free(g->ups[i].servers);
    }
    free(g->ups);
    g->ups = NULL;
}

/* ---- health ------------------------------------------------------------------ */

static bool is_healthy(const sg_upserver_t *s, uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&s->pub->ejected_until_ms, memory_order_relaxed);
    if (until && until > now_ms)
        return false;
    return !atomic_load_explicit(&s->pub->active_down, memory_order_relaxed);
}

/* Another server of s's group can take requests now: in service for every
 * worker (shared slots) and resolved for this one. Sequentially consistent
 * loads: see sg__server_fail. */
static bool others_available(const sg_upserver_t *s, uint64_t now_ms)
{
    const sg_upstream_t *u = s->ups;
    for (size_t k = 0; k < u->n_servers; k++) {
        const sg_upserver_t *o = &u->servers[k];
        if (o == s || !o->is_resolved)
            continue;
        uint64_t until = atomic_load(&o->pub->ejected_until_ms);
        if ((!until || until <= now_ms) && !atomic_load(&o->pub->active_down))
            return true;
    }
    return false;
}

/* Passive health: a failure of s (the caller decides which failures count,
 * proxy.c). max_fails consecutive ones eject it for fail_timeout, except
 * when no other server of the group is available: like nginx, passive
 * checks never take out the last server (a client could otherwise turn
 * three bad requests into a group-wide 503 for fail_timeout, again and
 * again). Workers share the slots: two of them may eject the last two
 * servers at the same moment. Each stores its ejection, then looks at the
 * others (all sequentially consistent), so at least one of them sees the
 * other's ejection and takes its own back. */
void sg__server_fail(sg_upserver_t *s, uint64_t now_ms)
{
    const sg_upstream_conf_t *uc = s->ups->conf;
    uint32_t f = atomic_fetch_add_explicit(&s->pub->consecutive_fails, 1u, memory_order_relaxed) + 1u;
    if (!uc->max_fails || f < uc->max_fails)
        return;
    uint64_t until = now_ms + uc->fail_timeout_ms;
    bool ejected = false;
    if (others_available(s, now_ms)) {
        atomic_store(&s->pub->ejected_until_ms, until);
        ejected = others_available(s, now_ms);
        if (!ejected) /* the other one went at the same time: this one stays */
            atomic_compare_exchange_strong(&s->pub->ejected_until_ms, &until, 0u);
    }
    if (ejected) {
        atomic_store_explicit(&s->pub->consecutive_fails, 0u, memory_order_relaxed);
        sg_obs_log(s->ups->w->obs, SG_LOG_WARN, NULL, "upstream %s: server %s ejected for %llu ms after %u failures",
                   uc->name, s->name, (unsigned long long)uc->fail_timeout_ms, f);
    } else if (f == uc->max_fails) {
        /* The count keeps going (a response resets it): logged once per run of failures. */
        sg_obs_log(
            s->ups->w->obs, SG_LOG_WARN, NULL,
            "upstream %s: server %s kept in service after %u failures: no other server of the group is available",
            uc->name, s->name, f);
    }
}

void sg__server_ok(sg_upserver_t *s)
{
    if (atomic_load_explicit(&s->pub->consecutive_fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->pub->consecutive_fails, 0u, memory_order_relaxed);
}

static bool was_tried(const int32_t *tried, size_t n_tried, size_t i)
{
    for (size_t k = 0; k < n_tried; k++)
        if (tried[k] == (int32_t)i)
            return true;
    return false;
}

int32_t sg__upstream_pick(sg_upstream_t *u, const int32_t *tried, size_t n_tried, uint64_t now_ms, bool *all_down)
{
    size_t n = u->n_servers;
    int32_t best = -1;
    uint32_t best_load = UINT32_MAX;
    size_t n_healthy = 0;
    uint32_t start = u->rr++;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        sg_upserver_t *s = &u->servers[i];
        if (!is_healthy(s, now_ms))
            continue;
        n_healthy++;
        if (was_tried(tried, n_tried, i))
            continue;
        if (!s->is_resolved) {
            if (!s->is_resolving)
                (void)start_resolve(s);
            continue;
        }
        if (u->conf->balance == SG_BALANCE_ROUND_ROBIN) {
            best = (int32_t)i;
            break;
        }
        if (s->in_flight < best_load) {
            best_load = s->in_flight;
            best = (int32_t)i;
        }
    }
    *all_down = n_healthy == 0;
    return best;
}

/* ---- connections ---------------------------------------------------------------- */

static void on_upc_closed(sg_tp_t *tp)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    sg_freelist_put(&u->w->fl_upconn, u);
}

static void unlease(sg_upconn_t *u)
{
    if (u->flags & SG_UPC_F_READY_PENDING) { /* given back before its turn came */
        sg_list_remove(&u->link);
        u->flags &= ~SG_UPC_F_READY_PENDING;
    }
    if (u->is_leased) {
        u->is_leased = false;
        u->srv->in_flight--;
    }
}

void sg__upconn_close(sg_upconn_t *u)
{
    if (u->state == SG_UPC_CLOSED)
        return;
    sg_worker_t *w = u->w;
    if (u->state == SG_UPC_IDLE) {
        sg_list_remove(&u->link);
        u->srv->n_idle--;
    }
    unlease(u);
    keep_session(u);
    u->state = SG_UPC_CLOSED;
    u->txn = NULL;
    sg__tmo_stop(&u->tmo);
    if (u->rd.head) {
        sg__head_put(w, u->rd.head);
        u->rd.head = NULL;
    }
    if (u->dbuf) {
        sg__buf_put(w, u->dbuf);
        u->dbuf = NULL;
    }
    sg__tp_close(&u->tp);
}

static void on_upc_timer(sg_tmo_t *tm)
{
    sg_upconn_t *u = sg_container_of(tm, sg_upconn_t, tmo);
    uint8_t kind = u->timer_kind;
    u->timer_kind = SG_UPC_T_NONE;
    switch (kind) {
    case SG_UPC_T_IDLE:
        sg__upconn_close(u);
        break;
    case SG_UPC_T_CONNECT:
    case SG_UPC_T_RESPONSE:
    case SG_UPC_T_READ:
        if (u->txn)
            u->ops->on_timeout(u->txn);
        else
            sg__upconn_close(u);
        break;
    default:
        break;
    }
}

void sg__upconn_timer(sg_upconn_t *u, uint8_t kind, uint64_t ms)
{
    u->timer_kind = kind;
    if (kind == SG_UPC_T_NONE)
        sg__tmo_stop(&u->tmo);
    else
        sg__tmo_start(u->w, &u->tmo, ms);
}

/* ---- reading responses: the upstream-side HTTP/1 endpoint ---------------------- */

static void on_decoded(void *ud, const char *p, size_t n)
{
    sg_upconn_t *u = ud;
    /* Decoded bytes are never more than the raw bytes of one read pass. */
    if (u->dbuf && u->dlen + n <= SG_BUF_SIZE) {
        memcpy(u->dbuf + u->dlen, p, n);
        u->dlen += n;
    }
}

/* Reads a response head; false: stop (more bytes needed, or the owner
 * ended or failed the exchange). */
static bool head_step(sg_upconn_t *u, sg_txn_t *t)
{
    sg_worker_t *w = u->w;
    if (!u->rd.head) {
        char *head = sg__head_get(w);
        if (!head) {
            u->ops->on_error(t, SG_FAIL_BAD_RESPONSE, "out of memory");
            return false;
        }
        sg_h1_read_begin(&u->rd, head, w->head_bytes, w->head_max_hdrs);
    }
    const sg_h1_read_opts_t *o = &u->ups->gen->resp_ro[(u->flags & SG_UPC_F_HEAD_REQ) != 0];
    size_t used = 0;
    const char *why = NULL;
    int r = sg_h1_read_head(&u->rd, o, u->tp.rbuf + u->tp.rpos, u->tp.rlen - u->tp.rpos, &used, &why);
    if (r < 0) {
        u->flags |= SG_UPC_F_NO_REUSE;
        u->ops->on_error(t, SG_FAIL_BAD_RESPONSE, "invalid response head from upstream");
        return false;
    }
    u->tp.rpos += (uint32_t)used;
    if (r == SG_H1_READ_MORE)
        return true;
    sg_uphead_next_t next = u->ops->on_head(t, &u->rd.parser.head);
    if (u->rd.head) { /* the head dies here (a release on the way gave it back already) */
        sg__head_put(w, u->rd.head);
        u->rd.head = NULL;
    }
    switch (next) {
    case SG_UPH_AGAIN: /* interim: the final head follows */
        return true;
    case SG_UPH_DONE:
        u->phase = SG_UPC_P_DONE;
        u->ops->on_done(t);
        return false;
    case SG_UPH_BODY:
    case SG_UPH_BODY_DECODED:
        u->phase = SG_UPC_P_BODY;
        if (next == SG_UPH_BODY_DECODED) {
            u->flags |= SG_UPC_F_DECODE;
            u->rd.parser.on_body = on_decoded;
            u->rd.parser.ud = u;
        }
        sg__upconn_timer(u, SG_UPC_T_READ, u->ups->conf->read_timeout_ms);
        return true;
    case SG_UPH_TUNNEL: /* the owner called sg__upconn_tunnel */
        return true;
    default:
        return false;
    }
}

static bool body_step(sg_upconn_t *u, sg_txn_t *t)
{
    sg_worker_t *w = u->w;
    bool decode = (u->flags & SG_UPC_F_DECODE) != 0;
    if (decode) {
        u->dbuf = sg__buf_get(w);
        u->dlen = 0;
        if (!u->dbuf) {
            u->ops->on_broken(t, "out of memory");
            return false;
        }
    }
    size_t avail = u->tp.rlen - u->tp.rpos, used = 0;
    int r = sg_h1_parse_body(&u->rd.parser, u->tp.rbuf + u->tp.rpos, avail, &used);
    if (r < 0) {
        if (u->dbuf) {
            sg__buf_put(w, u->dbuf);
            u->dbuf = NULL;
        }
        u->ops->on_broken(t, "invalid response body from upstream");
        return false;
    }
    if (decode) {
        char *d = u->dbuf;
        u->dbuf = NULL;
        u->tp.rpos += (uint32_t)used;
        u->ops->on_body(t, d, d, u->dlen); /* d goes with it */
    } else if (used) {
        char *buf;
        const char *p;
        if (sg__tp_take(&u->tp, used, &buf, &p) < 0) {
            u->ops->on_broken(t, "out of memory");
            return false;
        }
        u->ops->on_body(t, buf, p, used);
    }
    if (u->txn != t)
        return false;
    if (r == SG_H1_BODY_DONE) {
        u->phase = SG_UPC_P_DONE;
        u->ops->on_done(t);
        return false;
    }
    sg__upconn_timer(u, SG_UPC_T_READ, u->ups->conf->read_timeout_ms);
    return true;
}

static bool tunnel_step(sg_upconn_t *u, sg_txn_t *t)
{
    if (!u->ops->can_tunnel(t))
        return false;
    char *buf;
    const char *p;
    size_t n = u->tp.rlen - u->tp.rpos;
    if (sg__tp_take(&u->tp, n, &buf, &p) < 0) /* takes all: cannot fail */
        return false;
    u->ops->on_tunnel(t, buf, p, n);
    return true;
}

static void read_loop(sg_upconn_t *u, sg_txn_t *t)
{
    while (u->txn == t && u->state == SG_UPC_ACTIVE && sg__tp_pending(&u->tp)) {
        bool go_on;
        switch (u->phase) {
        case SG_UPC_P_HEAD:
            go_on = head_step(u, t);
            break;
        case SG_UPC_P_BODY:
            go_on = body_step(u, t);
            break;
        case SG_UPC_P_TUNNEL:
            go_on = tunnel_step(u, t);
            break;
        default:
            u->flags |= SG_UPC_F_NO_REUSE; /* bytes after the response */
            u->tp.rpos = u->tp.rlen;
            go_on = false;
            break;
        }
        if (!go_on)
            break;
    }
}

/* The upstream closed (or reset) its side. */
static void on_upc_eof(sg_upconn_t *u, sg_txn_t *t)
{
    switch (u->phase) {
    case SG_UPC_P_HEAD:
        /* u->rd.head is released once a head is complete, so a pooled
         * connection reused for this request has none yet. */
        if (u->rd.head && u->rd.head_len)
            u->ops->on_error(t, SG_FAIL_BAD_RESPONSE, "upstream closed inside the response head");
        else
            u->ops->on_error(t, SG_FAIL_RESET, "upstream closed before responding");
        break;
    case SG_UPC_P_BODY:
        if (sg_h1_finish(&u->rd.parser) == SG_H1_BODY_DONE) {
            u->phase = SG_UPC_P_DONE;
            u->ops->on_done(t);
        } else {
            /* Mid-body: the client must see the connection end, never a
             * second response appended. */
            u->ops->on_broken(t, "upstream closed mid-body");
        }
        break;
    case SG_UPC_P_TUNNEL:
        u->ops->on_tunnel_eof(t, (u->flags & SG_UPC_F_RESET) != 0);
        break;
    default:
        u->ops->on_broken(t, NULL);
        break;
    }
}

bool sg__upconn_can_reuse(const sg_upconn_t *u)
{
    return u->rd.parser.head.is_keep_alive && !(u->flags & (SG_UPC_F_NO_REUSE | SG_UPC_F_EOF)) &&
           !sg__tp_pending(&u->tp) && u->phase != SG_UPC_P_TUNNEL;
}

void sg__upconn_pause(sg_upconn_t *u)
{
    u->flags |= SG_UPC_F_PAUSED;
    sg__upconn_update_read(u);
}

void sg__upconn_tunnel(sg_upconn_t *u)
{
    u->phase = SG_UPC_P_TUNNEL;
    u->flags |= SG_UPC_F_NO_REUSE;
    sg__upconn_timer(u, SG_UPC_T_NONE, 0);
}

static void on_upc_read(sg_tp_t *tp, ssize_t nread)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    if (nread > 0) {
        if (u->state != SG_UPC_ACTIVE || !u->txn) {
            /* Bytes on an idle pooled connection: it cannot be reused. */
            sg__upconn_close(u);
            return;
        }
        if (u->flags & SG_UPC_F_READY_PENDING) {
            /* A pooled connection just leased: its request is written on the
             * next loop turn (the worker's ready queue), so these bytes answer nothing
             * we sent. Parsing them as the response would give this client
             * another request's answer (cross-talk). Same outcome as the
             * idle case above, failed like a pooled connection found closed
             * at reuse (hardening, docs/security.md). */
            u->flags |= SG_UPC_F_NO_REUSE;
            u->ops->on_error(u->txn, SG_FAIL_RESET, "upstream sent bytes before the request");
            return;
        }
        sg_txn_t *t = u->txn;
        read_loop(u, t);
        if (u->txn == t)
            u->ops->on_read_end(t);
    } else if (nread < 0) {
        u->flags |= SG_UPC_F_EOF | (nread != UV_EOF ? SG_UPC_F_RESET : 0u);
        if (u->state == SG_UPC_ACTIVE && u->txn)
            on_upc_eof(u, u->txn);
        else
            sg__upconn_close(u);
        return;
    }
    if (u->state != SG_UPC_CLOSED) {
        sg__tp_release_rbuf_if_empty(&u->tp);
        sg__upconn_update_read(u);
    }
}

void sg__upconn_update_read(sg_upconn_t *u)
{
    bool want = (u->state == SG_UPC_IDLE || (u->state == SG_UPC_ACTIVE && !(u->flags & SG_UPC_F_PAUSED))) &&
                !(u->flags & SG_UPC_F_EOF);
    sg__tp_want_read(&u->tp, want);
}

static void on_upc_write(sg_tp_t *tp, int status)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    if (u->state == SG_UPC_CLOSED)
        return;
    sg_txn_t *t = u->txn;
    if (status < 0) {
        u->flags |= SG_UPC_F_NO_REUSE;
        if (t)
            u->ops->on_write_failed(t, "upstream write failed");
        else
            sg__upconn_close(u);
        return;
    }
    if (t)
        u->ops->on_drained(t);
}

int sg__upconn_write(sg_upconn_t *u, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind)
{
    return sg__tp_write(&u->tp, iov, n, hold, kind);
}

static void on_upc_shutdown(sg_tp_t *tp, int status)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    if (u->state == SG_UPC_CLOSED || status == 0)
        return;
    if (u->txn)
        u->ops->on_write_failed(u->txn, "upstream shutdown failed");
    else
        sg__upconn_close(u);
}

int sg__upconn_shutdown(sg_upconn_t *u)
{
    u->flags |= SG_UPC_F_NO_REUSE;
    return sg__tp_shutdown(&u->tp);
}

static void on_upc_connect(sg_tp_t *tp, int status)
{
    sg_upconn_t *u = sg_container_of(tp, sg_upconn_t, tp);
    if (u->state == SG_UPC_CLOSED)
        return;
    sg_txn_t *t = u->txn;
    if (status < 0) {
        if (t)
            u->ops->on_error(t, SG_FAIL_CONNECT, uv_strerror(status)); /* the owner gives it back */
        else
            sg__upconn_close(u);
        return;
    }
    if (u->ups->tls) {
        /* TLS first; connect_timeout keeps running through the handshake. */
        sg_tls_conn_t *tc = sg_tls_conn_new_client(u->ups->tls, u->srv->tls_host, u->srv->tls_session);
        if (!tc || sg__tp_tls_start(&u->tp, tc) < 0 || sg__tp_tls_connect(&u->tp) < 0) {
            if (t)
                u->ops->on_error(t, SG_FAIL_TLS, "cannot start TLS");
            else
                sg__upconn_close(u);
        }
        return;
    }
    u->state = SG_UPC_ACTIVE;
    sg__upconn_timer(u, SG_UPC_T_NONE, 0);
    if (t)
        u->ops->on_ready(t);
    else
        sg__upconn_release(u, false);
}

int sg__upconn_get(sg_upserver_t *srv, bool is_fresh, const sg_upconn_ops_t *ops, sg_txn_t *t, sg_upconn_t **out)
{
    sg_worker_t *w = srv->ups->w;
    if (!sg_list_empty(&srv->idle) && !is_fresh) {
        /* Most recently used first: the warmest connection. */
        sg_upconn_t *u = sg_container_of(srv->idle.next, sg_upconn_t, link);
        sg_list_remove(&u->link);
        srv->n_idle--;
        u->state = SG_UPC_ACTIVE;
        u->phase = SG_UPC_P_HEAD;
        u->flags = SG_UPC_F_REUSED | SG_UPC_F_READY_PENDING;
        u->txn = t;
        u->ops = ops;
        u->is_leased = true;
        srv->in_flight++;
        *out = u;
        /* Ready on the next loop turn, never inside the caller's stack: the
         * worker's ready queue, emptied before the loop polls again (no
         * timer per request). */
        sg__tmo_stop(&u->tmo);
        u->timer_kind = SG_UPC_T_NONE;
        sg_list_push(w->ready_q.prev, &u->link);
        return 0;
    }
    sg_upconn_t *u = sg_freelist_get(&w->fl_upconn);
    if (!u)
        return UV_ENOMEM;
    memset(u, 0, sizeof(*u));
    u->w = w;
    u->ups = srv->ups;
    u->srv = srv;
    sg_list_init(&u->link);
    sg__tmo_init(&u->tmo, on_upc_timer);
    sg__tp_init(&u->tp, w, w->upstream_tp, &k_upc_tp_cbs);
    int r = sg__tp_open(&u->tp);
    if (r < 0) {
        sg_freelist_put(&w->fl_upconn, u);
        return r;
    }
    u->state = SG_UPC_CONNECTING;
    u->phase = SG_UPC_P_HEAD;
    u->txn = t;
    u->ops = ops;
    u->is_leased = true;
    srv->in_flight++;
    r = sg__tp_connect(&u->tp, (const struct sockaddr *)&srv->addr);
    if (r < 0) {
        u->txn = NULL;
        sg__upconn_close(u);
        return r;
    }
    *out = u;
    sg__upconn_timer(u, SG_UPC_T_CONNECT, srv->ups->conf->connect_timeout_ms);
    return 0;
}

void sg__upconn_release(sg_upconn_t *u, bool reusable)
{
    sg_worker_t *w = u->w;
    sg_upserver_t *srv = u->srv;
    unlease(u);
    u->txn = NULL;
    if (u->rd.head) {
        sg__head_put(w, u->rd.head);
        u->rd.head = NULL;
    }
    if (u->dbuf) {
        sg__buf_put(w, u->dbuf);
        u->dbuf = NULL;
    }
    /* A retired generation's pools stay empty: its connections close. */
    /* Request bytes still queued (an upstream that answered before reading
     * the whole request): not reusable, and closing cancels the write. */
    if (!reusable || u->state != SG_UPC_ACTIVE || sg__tp_queued(&u->tp) > 0 ||
        srv->n_idle >= srv->ups->conf->keepalive || w->is_draining || w->is_stopping || !srv->ups->gen->is_current) {
        sg__upconn_close(u);
        return;
    }
    u->state = SG_UPC_IDLE;
    u->phase = SG_UPC_P_HEAD;
    u->flags = 0;
    sg_list_push(&srv->idle, &u->link);
    srv->n_idle++;
    sg__upconn_timer(u, SG_UPC_T_IDLE, srv->ups->conf->keepalive_timeout_ms);
    sg__tp_release_rbuf_if_empty(&u->tp);
    sg__upconn_update_read(u); /* notice the server closing it */
}

void sg__upconn_run_ready(sg_worker_t *w)
{
    /* Until empty: a ready callback may lease another pooled connection
     * (a retry); it is served in this same pass, never inside its caller. */
    while (!sg_list_empty(&w->ready_q)) {
        sg_upconn_t *u = sg_container_of(w->ready_q.next, sg_upconn_t, link);
        sg_list_remove(&u->link);
        u->flags &= ~SG_UPC_F_READY_PENDING;
        if (u->txn)
            u->ops->on_ready(u->txn);
    }
}
