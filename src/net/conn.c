/* Client connections: accept, read (alloc_cb lends a freelist buffer),
 * request-head collection, body hand-off, keep-alive, pipelining (one
 * request at a time: later requests wait, unparsed, in the read buffer),
 * timeouts, proxy-made error responses and lingering close. */
#include "net/net_int.h"

#include <assert.h>

#include <arpa/inet.h>
#include <stdio.h>

enum {
    T_NONE = 0,
    T_HEADER,    /* client_header_timeout -> 408 (or silent close with no byte) */
    T_KEEPALIVE, /* idle between requests -> close */
    T_BODY,      /* client_body_timeout -> 408 */
    T_KICK,      /* process pipelined bytes on the next loop turn */
    T_LINGER,    /* after FIN: discard input for a while, then close */
    T_SEND,      /* writes pending and none completed for send_timeout -> close */
};

static void conn_process(sg_conn_t *c);
static void conn_close_why(sg_conn_t *c, const char *why);
static void start_shutdown(sg_conn_t *c);
static void on_conn_read(sg_tp_t *tp, ssize_t nread);
static void on_conn_write(sg_tp_t *tp, int status);
static void on_conn_shutdown(sg_tp_t *tp, int status);
static void on_conn_closed(sg_tp_t *tp);
static void on_conn_secure(sg_tp_t *tp, int status);
static const sg_tp_cbs_t k_conn_tp_cbs = {.on_read = on_conn_read,
                                          .on_write = on_conn_write,
                                          .on_shutdown = on_conn_shutdown,
                                          .on_closed = on_conn_closed,
                                          .on_secure = on_conn_secure};

/* A TLS connection's handshake, counted once: when it ends, or when the
 * connection closes before it did (timeout, the client went away). */
static void tls_report(sg_conn_t *c)
{
    sg_tls_conn_t *tc = sg__tp_tls_conn(&c->tp);
    if (!tc || (c->flags & SG_CONN_F_TLS_REPORTED))
        return;
    c->flags |= SG_CONN_F_TLS_REPORTED;
    bool is_done = sg_tls_conn_is_handshake_done(tc);
    sg_tls_error_t e = is_done ? SG_TLS_OK : sg_tls_conn_error(tc);
    if (!is_done && e == SG_TLS_OK)
        e = SG_TLS_E_CLOSED;
    sg_obs_tls_handshake(sg__tp_w(&c->tp)->obs, c->lidx, e, sg_tls_conn_version(tc), sg_tls_conn_handshake_ns(tc),
                         is_done && sg_tls_conn_is_resumed(tc));
    if (!is_done && e != SG_TLS_E_CLOSED && e != SG_TLS_E_TIMEOUT) {
        char ip[INET6_ADDRSTRLEN], ipport[INET6_ADDRSTRLEN + 8];
        sg__conn_peer_text(c, ip, ipport);
        sg_obs_log(sg__tp_w(&c->tp)->obs, SG_LOG_INFO, NULL, "listener %s: TLS handshake with %s failed: %s",
                   c->lst->conf->name, ipport, sg_tls_conn_error_text(tc));
    }
}

static void on_conn_secure(sg_tp_t *tp, int status)
{
    sg_conn_t *c = sg_container_of(tp, sg_conn_t, tp);
    tls_report(c);
    if (status < 0)
        sg__conn_close(c);
}

const char *sg__conn_state_name(sg_conn_state_t s)
{
    static const char *const names[] = {"idle", "head", "body", "wait", "tunnel", "linger", "closed"};
    return s < SG_CONN__COUNT ? names[s] : "?";
}

/* Legal moves of a client connection: bit `to` set in k_conn_moves[from].
 * A request moves forward (HEAD, then BODY or straight to WAIT), back to
 * IDLE once answered on a kept connection; to LINGER when its response is
 * the last one (the rest of the input is discarded, FIN after the bytes);
 * to TUNNEL after a 101 or a CONNECT (a 101 may come while an upgrade
 * request's body is still read); to CLOSED from anywhere. Nothing leaves
 * LINGER but the close, and nothing leaves CLOSED. */
#define CONN_TO(s) (1u << (s))
static const unsigned k_conn_moves[SG_CONN__COUNT] = {
    [SG_CONN_IDLE] = CONN_TO(SG_CONN_HEAD) | CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_HEAD] = CONN_TO(SG_CONN_BODY) | CONN_TO(SG_CONN_WAIT) | CONN_TO(SG_CONN_LINGER) | CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_BODY] =
        CONN_TO(SG_CONN_WAIT) | CONN_TO(SG_CONN_TUNNEL) | CONN_TO(SG_CONN_LINGER) | CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_WAIT] =
        CONN_TO(SG_CONN_IDLE) | CONN_TO(SG_CONN_TUNNEL) | CONN_TO(SG_CONN_LINGER) | CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_TUNNEL] = CONN_TO(SG_CONN_LINGER) | CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_LINGER] = CONN_TO(SG_CONN_CLOSED),
    [SG_CONN_CLOSED] = 0,
};

#ifndef NDEBUG
_Thread_local unsigned sg__conn_moves_taken[SG_CONN__COUNT];
#endif

bool sg__conn_can_move(sg_conn_state_t from, sg_conn_state_t to)
{
    return from < SG_CONN__COUNT && to < SG_CONN__COUNT && (k_conn_moves[from] & CONN_TO(to)) != 0;
}

void sg__conn_set_state(sg_conn_t *c, sg_conn_state_t to)
{
    assert(sg__conn_can_move(c->state, to));
#ifndef NDEBUG
    sg__conn_moves_taken[c->state] |= CONN_TO(to);
#endif
    c->state = to;
}

static void on_conn_timer(sg_tmo_t *t);

static void conn_timer(sg_conn_t *c, uint8_t kind, uint64_t ms)
{
    c->timer_kind = kind;
    sg__tmo_start(sg__tp_w(&c->tp), &c->tmo, ms);
}

static void conn_timer_stop(sg_conn_t *c)
{
    c->timer_kind = T_NONE;
    sg__tmo_stop(&c->tmo);
}

/* The current request's head reader, in the stream's transaction. */
static inline sg_h1_reader_t *conn_rd(const sg_conn_t *c)
{
    return (sg_h1_reader_t *)(void *)((char *)c->txn + c->lst->conn_ops->rd_offset);
}

static bool has_pending(const sg_conn_t *c)
{
    return sg__tp_pending(&c->tp);
}

/* ---- close ------------------------------------------------------------- */

static void on_conn_closed(sg_tp_t *tp)
{
    sg_conn_t *c = sg_container_of(tp, sg_conn_t, tp);
    sg_worker_t *w = sg__tp_w(&c->tp);
    sg_listener_t *l = c->lst;
    sg_freelist_put(&w->fl_conn, c);
    sg__worker_conn_gone(w, l); /* and the listener reference goes back */
}

void sg__conn_close(sg_conn_t *c)
{
    if (c->state == SG_CONN_CLOSED)
        return;
    conn_close_why(c, NULL);
}

static void conn_close_why(sg_conn_t *c, const char *why)
{
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (c->txn) {
        sg_txn_t *t = c->txn;
        c->txn = NULL;
        c->lst->conn_ops->on_close(t, why);
    }
    sg__conn_set_state(c, SG_CONN_CLOSED);
    conn_timer_stop(c);
    tls_report(c);
    sg_list_remove(&c->link);
    w->n_conns--;
    atomic_store_explicit(&w->pub->connections, w->n_conns, memory_order_relaxed);
    sg_obs_conn_close(w->obs, c->lidx);
    sg__tp_close(&c->tp);
}

void sg__conn_abort(sg_conn_t *c, const char *why)
{
    if (c->state != SG_CONN_CLOSED)
        conn_close_why(c, why);
}

void sg__conn_close_idle(sg_worker_t *w)
{
    sg_link_t *n = w->conns.next;
    while (n != &w->conns) {
        sg_link_t *next = n->next;
        sg_conn_t *c = sg_container_of(n, sg_conn_t, link);
        if (c->state == SG_CONN_IDLE && !c->txn && !has_pending(c) && c->tp.n_writes == 0)
            sg__conn_close(c);
        n = next;
    }
}

/* ---- reading ------------------------------------------------------------- */

static void on_eof(sg_conn_t *c, ssize_t err)
{
    c->flags |= SG_CONN_F_EOF;
    switch (c->state) {
    case SG_CONN_TUNNEL:
        /* A FIN is passed on (half-close); a reset closes both sides of
         * the tunnel. */
        if (err == UV_EOF && c->txn)
            c->lst->conn_ops->on_tunnel_eof(c->txn);
        else
            sg__conn_abort(c, NULL);
        break;
    case SG_CONN_BODY:
        sg__conn_abort(c, "client closed during the request body");
        break;
    case SG_CONN_WAIT:
        sg__conn_abort(c, "client closed before the response");
        break;
    default:
        sg__conn_close(c);
        break;
    }
}

static void on_conn_read(sg_tp_t *tp, ssize_t nread)
{
    sg_conn_t *c = sg_container_of(tp, sg_conn_t, tp);
    if (nread > 0) {
        if (c->state == SG_CONN_LINGER)
            c->tp.rpos = c->tp.rlen; /* discard */
        else
            conn_process(c);
    } else if (nread < 0) {
        on_eof(c, nread);
        return;
    }
    if (c->state != SG_CONN_CLOSED) {
        sg__tp_release_rbuf_if_empty(&c->tp);
        sg__conn_update_read(c);
    }
}

void sg__conn_update_read(sg_conn_t *c)
{
    bool want;
    switch (c->state) {
    case SG_CONN_IDLE:
    case SG_CONN_HEAD:
    case SG_CONN_LINGER:
        want = !has_pending(c) || c->state == SG_CONN_LINGER;
        break;
    case SG_CONN_BODY:
        want = c->txn && c->lst->conn_ops->can_take_body(c->txn);
        break;
    case SG_CONN_WAIT:
        want = !has_pending(c); /* notice EOF; pipelined bytes wait */
        break;
    case SG_CONN_TUNNEL:
        want = c->txn && !(c->flags & SG_CONN_F_EOF) && c->lst->conn_ops->can_take_body(c->txn);
        break;
    default:
        want = false;
        break;
    }
    if (c->state == SG_CONN_LINGER && !(c->flags & SG_CONN_F_SHUTDOWN))
        want = false; /* until our last bytes are out */
    sg__tp_want_read(&c->tp, want);
    if (c->state == SG_CONN_BODY) {
        /* The body timeout runs only while we wait for the client. */
        if (want && c->timer_kind != T_BODY)
            conn_timer(c, T_BODY, sg__tp_w(&c->tp)->gen->cfg->limits.client_body_timeout_ms);
        else if (!want && c->timer_kind == T_BODY)
            conn_timer_stop(c);
    }
}

void sg__conn_resume(sg_conn_t *c)
{
    if (c->state == SG_CONN_CLOSED)
        return;
    if (has_pending(c) && !c->is_processing)
        conn_process(c);
    if (c->state != SG_CONN_CLOSED) {
        sg__tp_release_rbuf_if_empty(&c->tp);
        sg__conn_update_read(c);
    }
}

/* ---- request processing -------------------------------------------------- */

static bool begin_request(sg_conn_t *c)
{
    sg_txn_t *t = c->lst->conn_ops->begin(c);
    if (!t) {
        sg__conn_close(c);
        return false;
    }
    c->txn = t;
    sg__conn_set_state(c, SG_CONN_HEAD);
    c->flags |= SG_CONN_F_GOT_BYTES;
    if (c->n_requests > 0 || c->timer_kind != T_HEADER)
        conn_timer(c, T_HEADER, sg__tp_w(&c->tp)->gen->cfg->limits.client_header_timeout_ms);
    return true;
}

static int head_step(sg_conn_t *c)
{
    sg_worker_t *w = sg__tp_w(&c->tp);
    sg_h1_reader_t *rd = conn_rd(c);
    if (!rd->head) {
        char *head = sg__head_get(w);
        if (!head) {
            sg__conn_close(c);
            return -1;
        }
        sg_h1_read_begin(rd, head, w->head_bytes, w->head_max_hdrs);
    }
    size_t used = 0;
    const char *why = NULL;
    int r = sg_h1_read_head(rd, rd->ro, c->tp.rbuf + c->tp.rpos, c->tp.rlen - c->tp.rpos, &used, &why);
    if (r < 0) { /* the refused bytes stay in the head for the error's trace id */
        c->lst->conn_ops->on_head_error(c->txn, -r, why);
        return -1;
    }
    c->tp.rpos += (uint32_t)used;
    if (r == SG_H1_READ_MORE)
        return 0;
    conn_timer_stop(c);
    sg__conn_set_state(c, rd->parser.head.has_body ? SG_CONN_BODY : SG_CONN_WAIT);
    c->lst->conn_ops->on_head(c->txn); /* may answer at once, and releases rd->head */
    return 0;
}

int sg__conn_check_body(const sg_conn_t *c)
{
    if (c->state != SG_CONN_BODY || !sg__tp_pending(&c->tp) || !c->txn)
        return 0;
    return sg_h1_check_body(&conn_rd(c)->parser, c->tp.rbuf + c->tp.rpos, c->tp.rlen - c->tp.rpos);
}

static bool body_step(sg_conn_t *c)
{
    sg_txn_t *t = c->txn;
    if (!t || !c->lst->conn_ops->can_take_body(t))
        return false;
    size_t avail = c->tp.rlen - c->tp.rpos, used = 0;
    int r = sg_h1_parse_body(&conn_rd(c)->parser, c->tp.rbuf + c->tp.rpos, avail, &used);
    if (r < 0) {
        c->lst->conn_ops->on_error(t, -r, r == -413 ? "request body too large" : "malformed request body");
        return false;
    }
    if (used) {
        char *buf;
        const char *p;
        if (sg__tp_take(&c->tp, used, &buf, &p) < 0) { /* pipelined bytes after it stay */
            sg__conn_abort(c, "out of memory");
            return false;
        }
        uint32_t n_req = c->n_requests;
        c->lst->conn_ops->on_body(t, buf, p, used); /* buf's ownership moves to the upstream write */
        /* A synchronous upstream write failure answers 502 and ends t (its
         * memory may already serve another request: compare the count, not
         * only the pointer); nothing below may touch it then (#17). */
        if (c->state == SG_CONN_CLOSED || c->txn != t || c->n_requests != n_req)
            return false;
    }
    if (r == SG_H1_BODY_DONE) {
        sg__conn_set_state(c, SG_CONN_WAIT);
        if (c->timer_kind == T_BODY)
            conn_timer_stop(c);
        c->lst->conn_ops->on_body_done(t);
    } else if (c->timer_kind == T_BODY) {
        conn_timer(c, T_BODY, sg__tp_w(&c->tp)->gen->cfg->limits.client_body_timeout_ms);
    }
    return c->state != SG_CONN_CLOSED;
}

static bool tunnel_step(sg_conn_t *c)
{
    sg_txn_t *t = c->txn;
    if (!t || !c->lst->conn_ops->can_take_body(t))
        return false;
    size_t n = c->tp.rlen - c->tp.rpos;
    char *buf;
    const char *p;
    if (sg__tp_take(&c->tp, n, &buf, &p) < 0) /* takes all: cannot fail */
        return false;
    c->lst->conn_ops->on_tunnel(t, buf, p, n);
    return c->state != SG_CONN_CLOSED;
}

static void conn_process(sg_conn_t *c)
{
    c->is_processing = true;
    while (c->state != SG_CONN_CLOSED && has_pending(c)) {
        bool go_on = true;
        switch (c->state) {
        case SG_CONN_IDLE:
            if (sg__tp_w(&c->tp)->is_draining) {
                sg__conn_close(c);
                go_on = false;
                break;
            }
            go_on = begin_request(c);
            break;
        case SG_CONN_HEAD:
            go_on = head_step(c) == 0;
            break;
        case SG_CONN_BODY:
            go_on = body_step(c);
            break;
        case SG_CONN_TUNNEL:
            go_on = tunnel_step(c);
            break;
        case SG_CONN_LINGER:
            c->tp.rpos = c->tp.rlen;
            break;
        default: /* WAIT: the next request waits for this response */
            go_on = false;
            break;
        }
        if (!go_on)
            break;
    }
    c->is_processing = false;
    if (c->state != SG_CONN_CLOSED) {
        sg__tp_release_rbuf_if_empty(&c->tp);
        sg__conn_update_read(c);
    }
}

/* ---- timers ----------------------------------------------------------------- */

static void on_conn_timer(sg_tmo_t *tm)
{
    sg_conn_t *c = sg_container_of(tm, sg_conn_t, tmo);
    uint8_t kind = c->timer_kind;
    c->timer_kind = T_NONE;
    switch (kind) {
    case T_KICK:
        sg__conn_resume(c);
        if (c->state == SG_CONN_IDLE && !has_pending(c) && c->timer_kind == T_NONE)
            conn_timer(c, T_KEEPALIVE, sg__tp_w(&c->tp)->gen->cfg->limits.keepalive_timeout_ms);
        break;
    case T_HEADER:
        if (sg__tp_tls_conn(&c->tp) && !sg_tls_conn_is_handshake_done(sg__tp_tls_conn(&c->tp)))
            sg_tls_conn_set_error(sg__tp_tls_conn(&c->tp), SG_TLS_E_TIMEOUT);
        if (c->state == SG_CONN_HEAD && c->txn)
            c->lst->conn_ops->on_head_error(c->txn, 408, "request header timeout");
        else
            sg__conn_close(c);
        break;
    case T_BODY:
        if (c->txn)
            c->lst->conn_ops->on_error(c->txn, 408, "request body timeout");
        else
            sg__conn_close(c);
        break;
    case T_SEND:
        sg__conn_abort(c, "send timeout");
        break;
    case T_KEEPALIVE:
    case T_LINGER:
    default:
        sg__conn_close(c);
        break;
    }
}

/* limits.send_timeout (hardening): a client that stops reading would
 * otherwise hold its connection, the upstream one and their descriptors
 * for ever (memory is bounded by buffer_bytes, descriptors are not). The
 * timer runs only while writes are pending and no other timer does, and
 * restarts whenever a write completes (like nginx's send_timeout). */
static void send_timer_arm(sg_conn_t *c)
{
    if (c->tp.n_writes > 0 && (c->timer_kind == T_NONE || c->timer_kind == T_SEND))
        conn_timer(c, T_SEND, sg__tp_w(&c->tp)->gen->cfg->limits.send_timeout_ms);
    else if (c->tp.n_writes == 0 && c->timer_kind == T_SEND)
        conn_timer_stop(c);
}

/* ---- writing ---------------------------------------------------------------- */

static void on_conn_write(sg_tp_t *tp, int status)
{
    sg_conn_t *c = sg_container_of(tp, sg_conn_t, tp);
    if (c->state == SG_CONN_CLOSED)
        return;
    if (status < 0) {
        sg__conn_abort(c, "client write failed");
        return;
    }
    send_timer_arm(c); /* progress */
    if (c->txn)
        c->lst->conn_ops->on_drained(c->txn);
    if (c->state == SG_CONN_LINGER && c->tp.n_writes == 0 && !(c->flags & SG_CONN_F_SHUTDOWN))
        start_shutdown(c);
}

int sg__conn_write(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind)
{
    int r = sg__tp_write(&c->tp, iov, n, hold, kind);
    if (r == 0) {
        if (c->timer_kind == T_NONE)
            send_timer_arm(c);
    }
    return r;
}

int sg__conn_write2(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0, char *hold1,
                    sg_buf_kind_t kind1)
{
    return sg__tp_write2(&c->tp, iov, n, hold0, kind0, hold1, kind1);
}

int sg__conn_write_ext(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                       void (*ext_free)(void *, const char *), void *ext_ud)
{
    int r = sg__tp_write_ext(&c->tp, iov, n, hold, ext, ext_free, ext_ud);
    if (r == 0) {
        if (c->timer_kind == T_NONE)
            send_timer_arm(c);
    }
    return r;
}

static void on_conn_shutdown(sg_tp_t *tp, int status)
{
    sg_conn_t *c = sg_container_of(tp, sg_conn_t, tp);
    if (c->state == SG_CONN_CLOSED)
        return;
    if (c->state == SG_CONN_TUNNEL) { /* half-close: the other direction goes on */
        if (status < 0)
            sg__conn_abort(c, NULL);
        return;
    }
    if (status < 0) {
        sg__conn_close(c);
        return;
    }
    /* Lingering close: read and drop what the client still sends so the
     * kernel does not answer with a RST that could destroy our response
     * before the client read it. */
    conn_timer(c, T_LINGER, SG_LINGER_MS);
    sg__conn_update_read(c);
}

int sg__conn_shutdown(sg_conn_t *c)
{
    c->flags |= SG_CONN_F_SHUTDOWN;
    return sg__tp_shutdown(&c->tp);
}

static void start_shutdown(sg_conn_t *c)
{
    if (sg__conn_shutdown(c) < 0)
        sg__conn_close(c);
}

/* ---- end of a request ---------------------------------------------------------- */

void sg__conn_txn_done(sg_conn_t *c, bool must_close)
{
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (!c->txn)
        return;
    if (c->state == SG_CONN_BODY || c->state == SG_CONN_HEAD)
        c->flags |= SG_CONN_F_CLOSE_AFTER; /* the rest of the request was not read */
    if (must_close || w->drain_phase > 0)
        c->flags |= SG_CONN_F_CLOSE_AFTER;
    c->txn = NULL;
    c->n_requests++;
    w->n_requests++;
    c->flags &= ~(SG_CONN_F_GOT_BYTES | SG_CONN_F_PAUSED_UP);
    if (c->flags & SG_CONN_F_CLOSE_AFTER) {
        sg__conn_set_state(c, SG_CONN_LINGER);
        conn_timer_stop(c);
        send_timer_arm(c); /* the last bytes must still leave within send_timeout */
        if (c->tp.rbuf)
            c->tp.rpos = c->tp.rlen;
        if (c->tp.n_writes == 0)
            start_shutdown(c);
        sg__conn_update_read(c);
        return;
    }
    sg__conn_set_state(c, SG_CONN_IDLE);
    if (has_pending(c) && !c->is_processing)
        conn_timer(c, T_KICK, 0);
    else
        conn_timer(c, T_KEEPALIVE, w->gen->cfg->limits.keepalive_timeout_ms);
    sg__conn_update_read(c);
}

void sg__conn_tunnel_start(sg_conn_t *c)
{
    sg__conn_set_state(c, SG_CONN_TUNNEL);
    conn_timer_stop(c);
    if (has_pending(c) && !c->is_processing)
        conn_timer(c, T_KICK, 0);
    sg__conn_update_read(c);
}

/* ---- peer address text -------------------------------------------------------------- */

/* Decimal without a loop or a reversal: a byte in at most 3 digits, a port
 * in at most 5 (this runs for every request). */
static size_t put_u8(char *o, unsigned v)
{
    if (v >= 100) {
        o[0] = (char)('0' + v / 100);
        o[1] = (char)('0' + v / 10 % 10);
        o[2] = (char)('0' + v % 10);
        return 3;
    }
    if (v >= 10) {
        o[0] = (char)('0' + v / 10);
        o[1] = (char)('0' + v % 10);
        return 2;
    }
    o[0] = (char)('0' + v);
    return 1;
}

static size_t put_u16(char *o, unsigned v)
{
    if (v < 1000)
        return put_u8(o, v); /* also below 256: the same three digits at most */
    size_t n = v >= 10000 ? 5 : 4;
    for (size_t i = n; i-- > 0; v /= 10)
        o[i] = (char)('0' + v % 10);
    return n;
}

void sg__conn_peer_text(const sg_conn_t *c, char ip[INET6_ADDRSTRLEN], char ipport[INET6_ADDRSTRLEN + 8])
{
    /* Kept binary in the connection (20 bytes, not two strings) and spelled
     * out once per request. */
    size_t n = 0;
    if (c->peer.family == AF_INET) {
        for (int i = 0; i < 4; i++) {
            if (i)
                ip[n++] = '.';
            n += put_u8(ip + n, c->peer.addr[i]);
        }
        ip[n] = '\0';
        memcpy(ipport, ip, n);
    } else if (c->peer.family == AF_INET6) {
        if (!inet_ntop(AF_INET6, c->peer.addr, ip, INET6_ADDRSTRLEN))
            ip[0] = '\0';
        size_t l = strlen(ip);
        ipport[0] = '[';
        memcpy(ipport + 1, ip, l);
        n = l + 1;
        ipport[n++] = ']';
    } else {
        ip[0] = ipport[0] = '\0';
        return;
    }
    ipport[n++] = ':';
    n += put_u16(ipport + n, c->peer.port);
    ipport[n] = '\0';
}

/* ---- accept ------------------------------------------------------------------------- */

static void on_early_close(uv_handle_t *h)
{
    sg_conn_t *c = sg_container_of((sg_tp_t *)h->data, sg_conn_t, tp);
    sg_freelist_put(&sg__tp_w(&c->tp)->fl_conn, c);
}

void sg__conn_accepted(sg_listener_t *l)
{
    sg_worker_t *w = l->w;
    sg_conn_t *c = sg_freelist_get(&w->fl_conn);
    if (!c)
        return; /* libuv keeps the connection queued until we accept */
    memset(c, 0, sizeof(*c));
    uv_tcp_init(&w->loop, &c->tp.tcp);
    c->tp.tcp.data = &c->tp;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tp.tcp) < 0) {
        uv_close((uv_handle_t *)&c->tp.tcp, on_early_close);
        return;
    }
    uv_tcp_nodelay(&c->tp.tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tp.tcp, (struct sockaddr *)&ss, &len) == 0) {
        c->peer.family = (uint8_t)ss.ss_family;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            memcpy(c->peer.addr, &a->sin_addr, 4);
            c->peer.port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            memcpy(c->peer.addr, &a->sin6_addr, 16);
            c->peer.port = ntohs(a->sin6_port);
        }
    }
    sg_tls_conn_t *tls = NULL;
    if (l->tls && !(tls = sg_tls_conn_new_server(l->tls))) {
        uv_close((uv_handle_t *)&c->tp.tcp, on_early_close);
        return;
    }
    sg__conn_start(c, l, &sg__tp_tcp, tls);
}

void sg__conn_start(sg_conn_t *c, sg_listener_t *l, const sg_tp_vt_t *vt, sg_tls_conn_t *tls)
{
    sg_worker_t *w = l->w;
    c->lst = l;
    sg__tmo_init(&c->tmo, on_conn_timer);
    sg__tp_init(&c->tp, w, vt, &k_conn_tp_cbs);
    if (tls && sg__tp_tls_start(&c->tp, tls) < 0) {
        uv_close((uv_handle_t *)&c->tp.tcp, on_early_close);
        return;
    }
    l->refs++;
    c->lidx = l->idx;
    sg_list_push(&w->conns, &c->link);
    w->n_conns++;
    atomic_store_explicit(&w->pub->connections, w->n_conns, memory_order_relaxed);
    sg_obs_conn_open(w->obs, c->lidx);
    c->state = SG_CONN_IDLE;
    conn_timer(c, T_HEADER, w->gen->cfg->limits.client_header_timeout_ms);
    sg__conn_update_read(c);
}
