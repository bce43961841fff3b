/* TLS over TCP: the transport's table for a TLS connection (sg_tp_vt_t).
 * The socket's ciphertext goes into the record driver (sg/tls.h: two
 * memory BIOs, no I/O of its own); the handshake runs as bytes come;
 * plaintext lands in the transport's read buffer as if the socket had given
 * it, so the HTTP/1 endpoint above cannot tell TLS from TCP. A write is
 * encrypted whole and its ciphertext goes out through the worker's write
 * primitive in one uv_write; records the driver makes on its own (the
 * handshake, session tickets, alerts, close_notify) go out the same way but
 * are not counted as the owner's writes.
 *
 * Plaintext that OpenSSL holds while the owner does not want to read (back-
 * pressure) is handed over on the next loop turn after it asks again: never
 * inside its call, so the owner's processing is never re-entered. */
#include "net/net_int.h"

#include <stdlib.h>
#include <string.h>

struct sg_tp_tls {
    sg_tls_conn_t *c;
    sg_tp_t *tp;
    sg_tmo_t kick;      /* deliver held plaintext on the next loop turn */
    bool is_secure;     /* handshake done */
    bool has_failed;    /* handshake failed or the record layer broke: reads see the end */
    bool is_socket_eof; /* the socket gave EOF (fed to the driver) */
    bool is_sock_reading;
};

/* A TLS transport's state hangs off its socket handle's data (one pointer
 * less in every connection, sg_tp_t); valid while the TLS table is in use
 * and the state not freed (sg__tp_tls_free puts the transport back). */
static inline sg_tp_tls_t *tls_of(const sg_tp_t *tp)
{
    return (sg_tp_tls_t *)tp->tcp.data;
}

static const sg_tp_vt_t k_tls_vt;

static void on_ext_free(void *ud, const char *p)
{
    SG_UNUSED(ud);
    free((void *)(uintptr_t)p);
}

static void on_ctrl_write(void *owner, int status)
{
    SG_UNUSED(owner);
    SG_UNUSED(status); /* a failed socket shows up as a read error or a failed data write */
}

static void on_data_write(void *owner, int status)
{
    sg__tp_on_write(owner, status);
}

/* Sends the ciphertext pending in the driver. cb: NULL for records the
 * driver made on its own, else the owner's write callback. Returns
 * sg__write's value (1 when nothing was pending). */
static int flush(sg_tp_t *tp, sg_wreq_cb cb)
{
    sg_tp_tls_t *s = tls_of(tp);
    size_t n = sg_tls_conn_pending(s->c);
    if (n == 0)
        return 1;
    if (n <= SG_BUF_SIZE) { /* the common case: a pooled buffer, no allocation */
        char *pb = sg__buf_get(sg__tp_w(tp));
        if (!pb)
            return UV_ENOMEM;
        size_t took = sg_tls_conn_take(s->c, pb, SG_BUF_SIZE);
        uv_buf_t piov = uv_buf_init(pb, (unsigned)took);
        return sg__write(sg__tp_w(tp), (uv_stream_t *)&tp->tcp, &piov, 1, pb, SG_BK_BUF, cb ? cb : on_ctrl_write, tp);
    }
    char *b = malloc(n);
    if (!b)
        return UV_ENOMEM;
    size_t got = sg_tls_conn_take(s->c, b, n);
    uv_buf_t iov = uv_buf_init(b, (unsigned)got);
    return sg__write_ext(sg__tp_w(tp), (uv_stream_t *)&tp->tcp, &iov, 1, NULL, b, on_ext_free, NULL,
                         cb ? cb : on_ctrl_write, tp);
}

static void stop_socket_read(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    if (s->is_sock_reading) {
        uv_read_stop((uv_stream_t *)&tp->tcp);
        s->is_sock_reading = false;
    }
}

/* Hands decrypted bytes to the owner while it wants them. */
static void deliver(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    while (tp->is_reading && !tp->is_closing && s->is_secure) {
        size_t room = 0;
        char *p = sg__tp_read_room(tp, &room);
        if (!p || room == 0) {
            stop_socket_read(tp); /* the owner must take what it has first, then ask again */
            tp->is_reading = false;
            return;
        }
        size_t n = 0;
        sg_tls_status_t st = s->has_failed ? SG_TLS_FAILED : sg_tls_conn_read(s->c, p, room, &n);
        (void)flush(tp, NULL); /* tickets, key updates, an alert */
        if (st == SG_TLS_DONE && n > 0) {
            sg__tp_on_read(tp, (ssize_t)n);
            continue;
        }
        sg__tp_release_rbuf_if_empty(tp);
        if (st == SG_TLS_WANT_INPUT) {
            if (!s->is_socket_eof)
                return;
            st = SG_TLS_CLOSED;
        }
        /* The peer's close_notify, an EOF or a broken record: the end. */
        s->has_failed = s->has_failed || st == SG_TLS_FAILED;
        stop_socket_read(tp);
        tp->is_reading = false;
        sg__tp_on_read(tp, st == SG_TLS_CLOSED ? UV_EOF : UV_EPROTO);
        return;
    }
}

static void handshake(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    sg_tls_status_t st = sg_tls_conn_handshake(s->c);
    (void)flush(tp, NULL);
    if (st == SG_TLS_WANT_INPUT)
        return;
    if (st == SG_TLS_DONE) {
        s->is_secure = true;
        tp->cbs->on_secure(tp, 0);
        return;
    }
    s->has_failed = true;
    stop_socket_read(tp);
    tp->cbs->on_secure(tp, UV_EPROTO); /* the owner closes; the alert is queued before the close */
}

static void on_tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    SG_UNUSED(suggested);
    sg_tp_t *tp = ((sg_tp_tls_t *)h->data)->tp;
    char *b = sg__buf_get(sg__tp_w(tp)); /* ciphertext only until it is fed: back at once */
    *buf = uv_buf_init(b, b ? SG_BUF_SIZE : 0);
}

static void on_tls_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sg_tp_tls_t *s = stream->data;
    sg_tp_t *tp = s->tp;
    int fed = 0;
    if (nread > 0) {
        sg__busypoll_io(sg__tp_w(tp));
        fed = sg_tls_conn_feed(s->c, buf->base, (size_t)nread);
    }
    if (buf->base)
        sg__buf_put(sg__tp_w(tp), buf->base);
    if (nread == UV_ENOBUFS) {
        stop_socket_read(tp); /* no buffer to lend: again when the owner asks */
        return;
    }
    if (nread < 0) {
        s->is_socket_eof = true;
        sg_tls_conn_feed_eof(s->c);
        stop_socket_read(tp);
    }
    if (fed < 0)
        s->has_failed = true;
    if (nread == 0)
        return;
    if (!s->is_secure) {
        if (s->has_failed) {
            tp->cbs->on_secure(tp, UV_ENOMEM);
            return;
        }
        handshake(tp);
        if (tp->is_closing || !s->is_secure)
            return;
    }
    deliver(tp);
}

static void sock_read(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    if (!s->is_sock_reading && !s->is_socket_eof && !s->has_failed &&
        uv_read_start((uv_stream_t *)&tp->tcp, on_tls_alloc, on_tls_read) == 0)
        s->is_sock_reading = true;
}

static void on_kick(sg_tmo_t *t)
{
    sg_tp_tls_t *s = sg_container_of(t, sg_tp_tls_t, kick);
    deliver(s->tp);
}

static void tls_want_read(sg_tp_t *tp, bool want)
{
    sg_tp_tls_t *s = tls_of(tp);
    tp->is_reading = want;
    if (!want) {
        /* During the handshake the socket is read for the driver's sake. */
        if (s->is_secure)
            stop_socket_read(tp);
        return;
    }
    sock_read(tp);
    if (s->is_secure && sg_tls_conn_has_input(s->c))
        sg__tmo_start(sg__tp_w(tp), &s->kick, 0); /* what OpenSSL already holds */
}

static int tls_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, const sg_tp_hold_t *h)
{
    sg_tp_tls_t *s = tls_of(tp);
    int r = 0;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += iov[i].len;
    char *one = n > 1 && total <= SG_BUF_SIZE ? sg__buf_get(sg__tp_w(tp)) : NULL;
    if (one) {
        /* A head and its body in one record (up to the record size): the
         * peer decrypts one record, not one per piece. */
        size_t at = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(one + at, iov[i].base, iov[i].len);
            at += iov[i].len;
        }
        if (sg_tls_conn_write(s->c, one, total) != SG_TLS_DONE)
            r = UV_EPROTO;
        sg__buf_put(sg__tp_w(tp), one);
    } else {
        for (unsigned i = 0; i < n && r == 0; i++)
            if (iov[i].len && sg_tls_conn_write(s->c, iov[i].base, iov[i].len) != SG_TLS_DONE)
                r = UV_EPROTO;
    }
    /* The plaintext is in the records now: its buffers go back at once. */
    for (int k = 0; k < 2; k++) {
        char *p = h->p[k];
        if (!p)
            continue;
        if (h->kind[k] == SG_BK_BUF)
            sg__buf_put(sg__tp_w(tp), p);
        else if (h->kind[k] == SG_BK_HEAD)
            sg__head_put(sg__tp_w(tp), p);
        else if (h->kind[k] == SG_BK_EXT && h->ext_free)
            h->ext_free(h->ext_ud, p);
    }
    if (r < 0)
        return r;
    return flush(tp, on_data_write);
}

static int tls_shutdown(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    if (s->is_secure && !s->has_failed && sg_tls_conn_shutdown(s->c) == SG_TLS_DONE)
        (void)flush(tp, NULL); /* close_notify, then the FIN */
    return sg__tp_tcp.shutdown(tp);
}

static size_t tls_queued(const sg_tp_t *tp)
{
    return sg__tp_tcp.queued(tp);
}

static void on_tls_closed(uv_handle_t *h)
{
    sg_tp_t *tp = ((sg_tp_tls_t *)h->data)->tp;
    sg__tp_tls_free(tp); /* callers up the stack of the close may still have looked at it */
    tp->cbs->on_closed(tp);
}

static void tls_close(sg_tp_t *tp)
{
    sg_tp_tls_t *s = tls_of(tp);
    if (s->has_failed && !s->is_secure)
        (void)flush(tp, NULL); /* the handshake's alert, if one is pending */
    sg__tmo_stop(&s->kick);
    stop_socket_read(tp);
    uv_close((uv_handle_t *)&tp->tcp, on_tls_closed); /* writes still queued are cancelled */
}

static const sg_tp_vt_t k_tls_vt = {
    .want_read = tls_want_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .queued = tls_queued,
    .close = tls_close,
};

int sg__tp_tls_start(sg_tp_t *tp, sg_tls_conn_t *c)
{
    sg_tp_tls_t *s = calloc(1, sizeof(*s));
    if (!s) {
        sg_tls_conn_free(c);
        return UV_ENOMEM;
    }
    s->c = c;
    s->tp = tp;
    sg__tmo_init(&s->kick, on_kick);
    tp->tcp.data = s; /* the socket's callbacks find the TLS state; tls_of() */
    tp->vt = &k_tls_vt;
    sock_read(tp); /* the ClientHello (server side) or the ServerHello (client side) */
    return 0;
}

int sg__tp_tls_connect(sg_tp_t *tp)
{
    handshake(tp); /* the ClientHello goes out */
    return tls_of(tp)->has_failed ? UV_EPROTO : 0;
}

sg_tls_conn_t *sg__tp_tls_conn(const sg_tp_t *tp)
{
    return tp->vt == &k_tls_vt && tp->tcp.data != (void *)tp ? tls_of(tp)->c : NULL;
}

void sg__tp_tls_free(sg_tp_t *tp)
{
    if (tp->vt != &k_tls_vt || tp->tcp.data == (void *)tp)
        return;
    sg_tp_tls_t *s = tls_of(tp);
    sg_tls_conn_free(s->c);
    free(s);
    tp->tcp.data = tp; /* freed: sg__tp_tls_conn() says NULL from now on */
}
