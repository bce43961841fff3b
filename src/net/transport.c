/* Transport: one stream socket's bytes. Owns the read buffer (lent by the
 * worker's freelist only while bytes are pending: an idle connection holds
 * none), read start/stop, the count of queued writes, the half-close and
 * the close. Its owner (a client connection or an upstream connection)
 * hears of reads, finished writes, the half-close and the close through the
 * callback table it gave; the transport never looks at its owner. The
 * bytes themselves move through a table of operations (sg_tp_vt_t): plain
 * TCP here (sg__tp_tcp); TLS goes in as another table under the HTTP/1
 * code, which only ever sees plaintext (DESIGN.md section 2); the unit
 * tests drive the endpoints through a fake one (test/unit/endpoint_test.c). */
#include "net/net_int.h"

void sg__tp_init(sg_tp_t *tp, sg_worker_t *w, const sg_tp_vt_t *vt, const sg_tp_cbs_t *cbs)
{
    tp->tcp.loop = &w->loop; /* set again by uv_tcp_init; the worker is found through it */
    tp->vt = vt;
    tp->cbs = cbs;
    tp->rbuf = NULL;
    tp->rpos = tp->rlen = 0;
    tp->n_writes = 0;
    tp->is_reading = false;
    tp->is_closing = false;
    tp->tcp.data = tp;
}

void sg__tp_drop_rbuf(sg_tp_t *tp)
{
    if (tp->rbuf) {
        sg__buf_put(sg__tp_w(tp), tp->rbuf);
        tp->rbuf = NULL;
    }
    tp->rpos = tp->rlen = 0;
}

int sg__tp_take_rest(sg_tp_t *tp, size_t n, char **buf, const char **p)
{
    char *b = tp->rbuf;
    const char *at = b + tp->rpos;
    size_t rest = tp->rlen - tp->rpos - n;
    if (rest) {
        /* What follows (pipelined bytes, the next message) stays here. */
        char *nb = sg__buf_get(sg__tp_w(tp));
        if (!nb)
            return UV_ENOMEM;
        memcpy(nb, at + n, rest);
        tp->rbuf = nb;
        tp->rpos = 0;
        tp->rlen = (uint32_t)rest;
    } else {
        tp->rbuf = NULL;
        tp->rpos = tp->rlen = 0;
    }
    *buf = b;
    *p = at;
    return 0;
}

char *sg__tp_read_room(sg_tp_t *tp, size_t *room)
{
    if (!tp->rbuf) {
        tp->rbuf = sg__buf_get(sg__tp_w(tp));
        tp->rpos = tp->rlen = 0;
        if (!tp->rbuf) {
            *room = 0;
            return NULL;
        }
    }
    if (tp->rpos == tp->rlen) {
        tp->rpos = tp->rlen = 0;
    } else if (tp->rpos > 0 && tp->rlen == SG_BUF_SIZE) {
        memmove(tp->rbuf, tp->rbuf + tp->rpos, tp->rlen - tp->rpos);
        tp->rlen -= tp->rpos;
        tp->rpos = 0;
    }
    *room = SG_BUF_SIZE - tp->rlen;
    return tp->rbuf + tp->rlen;
}

void sg__tp_on_read(sg_tp_t *tp, ssize_t status)
{
    if (status > 0) {
        tp->rlen += (uint32_t)status;
        sg__busypoll_io(sg__tp_w(tp));
    }
    tp->cbs->on_read(tp, status);
}

void sg__tp_on_write(sg_tp_t *tp, int status)
{
    tp->n_writes--;
    tp->cbs->on_write(tp, status);
}

static int counted(sg_tp_t *tp, int r)
{
    if (r == 0)
        tp->n_writes++;
    return r;
}

static void on_tcp_write(void *owner, int status);

/* Plain TCP, the common case, goes to the write primitive without the
 * table's indirection (the same calls tcp_write makes). */
int sg__tp_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind)
{
    if (tp->vt == &sg__tp_tcp)
        return counted(tp, sg__write(sg__tp_w(tp), (uv_stream_t *)&tp->tcp, iov, n, hold, kind, on_tcp_write, tp));
    const sg_tp_hold_t h = {.p = {hold, NULL}, .kind = {(uint8_t)kind, SG_BK_NONE}};
    return counted(tp, tp->vt->write(tp, iov, n, &h));
}

int sg__tp_write2(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0, char *hold1,
                  sg_buf_kind_t kind1)
{
    if (tp->vt == &sg__tp_tcp)
        return counted(tp, sg__write2(sg__tp_w(tp), (uv_stream_t *)&tp->tcp, iov, n, hold0, kind0, hold1, kind1,
                                      on_tcp_write, tp));
    const sg_tp_hold_t h = {.p = {hold0, hold1}, .kind = {(uint8_t)kind0, (uint8_t)kind1}};
    return counted(tp, tp->vt->write(tp, iov, n, &h));
}

int sg__tp_write_ext(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                     void (*ext_free)(void *, const char *), void *ext_ud)
{
    const sg_tp_hold_t h = {.p = {hold, (char *)(uintptr_t)ext},
                            .kind = {SG_BK_BUF, ext ? SG_BK_EXT : SG_BK_NONE},
                            .ext_free = ext_free,
                            .ext_ud = ext_ud};
    return counted(tp, tp->vt->write(tp, iov, n, &h));
}

void sg__tp_close(sg_tp_t *tp)
{
    if (tp->is_closing)
        return;
    tp->is_closing = true;
    sg__tp_want_read(tp, false);
    sg__tp_drop_rbuf(tp);
    tp->vt->close(tp);
}

/* ---- plain TCP -------------------------------------------------------------- */

static void on_tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    SG_UNUSED(suggested);
    size_t room = 0;
    char *p = sg__tp_read_room(h->data, &room);
    *buf = uv_buf_init(p, (unsigned)room);
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    SG_UNUSED(buf);
    sg_tp_t *tp = s->data;
    if (nread == UV_ENOBUFS) {
        /* No buffer to lend: reading stops until the owner asks again. */
        uv_read_stop(s);
        tp->is_reading = false;
        nread = 0;
    } else if (nread < 0 && tp->is_reading) {
        uv_read_stop(s);
        tp->is_reading = false;
    }
    sg__tp_on_read(tp, nread);
}

static void tcp_want_read(sg_tp_t *tp, bool want)
{
    if (want && !tp->is_reading) {
        if (uv_read_start((uv_stream_t *)&tp->tcp, on_tcp_alloc, on_tcp_read) == 0)
            tp->is_reading = true;
    } else if (!want && tp->is_reading) {
        uv_read_stop((uv_stream_t *)&tp->tcp);
        tp->is_reading = false;
    }
}

static void on_tcp_write(void *owner, int status)
{
    sg__tp_on_write(owner, status);
}

static int tcp_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, const sg_tp_hold_t *h)
{
    uv_stream_t *s = (uv_stream_t *)&tp->tcp;
    if (h->kind[1] == SG_BK_EXT)
        return sg__write_ext(sg__tp_w(tp), s, iov, n, h->p[0], h->p[1], h->ext_free, h->ext_ud, on_tcp_write, tp);
    if (h->p[1])
        return sg__write2(sg__tp_w(tp), s, iov, n, h->p[0], (sg_buf_kind_t)h->kind[0], h->p[1],
                          (sg_buf_kind_t)h->kind[1], on_tcp_write, tp);
    return sg__write(sg__tp_w(tp), s, iov, n, h->p[0], (sg_buf_kind_t)h->kind[0], on_tcp_write, tp);
}

static void on_tcp_shutdown(uv_shutdown_t *req, int status)
{
    sg_wreq_t *wr = sg_container_of(req, sg_wreq_t, sreq);
    sg_tp_t *tp = req->data;
    sg_freelist_put(&wr->w->fl_wreq, wr);
    tp->cbs->on_shutdown(tp, status);
}

static int tcp_shutdown(sg_tp_t *tp)
{
    /* The request comes from the write-request pool: an idle connection
     * does not carry one. */
    sg_wreq_t *wr = sg_freelist_get(&sg__tp_w(tp)->fl_wreq);
    if (!wr)
        return UV_ENOMEM;
    wr->w = sg__tp_w(tp);
    wr->sreq.data = tp;
    int r = uv_shutdown(&wr->sreq, (uv_stream_t *)&tp->tcp, on_tcp_shutdown);
    if (r < 0)
        sg_freelist_put(&sg__tp_w(tp)->fl_wreq, wr);
    return r;
}

static size_t tcp_queued(const sg_tp_t *tp)
{
    return tp->tcp.write_queue_size;
}

static void on_tcp_closed(uv_handle_t *h)
{
    sg_tp_t *tp = h->data;
    tp->cbs->on_closed(tp);
}

static void tcp_close(sg_tp_t *tp)
{
    uv_close((uv_handle_t *)&tp->tcp, on_tcp_closed);
}

static int tcp_open(sg_tp_t *tp)
{
    int r = uv_tcp_init(tp->tcp.loop, &tp->tcp);
    tp->tcp.data = tp;
    return r;
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
    sg_wreq_t *wr = sg_container_of(req, sg_wreq_t, creq);
    sg_tp_t *tp = req->data;
    sg_freelist_put(&wr->w->fl_wreq, wr);
    if (status == 0 && !tp->is_closing)
        uv_tcp_nodelay(&tp->tcp, 1);
    tp->cbs->on_connect(tp, status); /* UV_ECANCELED after a close: the owner knows it closed */
}

static int tcp_connect(sg_tp_t *tp, const struct sockaddr *addr)
{
    /* The request comes from the write-request pool, like the shutdown's:
     * a connection carries none once connected. */
    sg_wreq_t *wr = sg_freelist_get(&sg__tp_w(tp)->fl_wreq);
    if (!wr)
        return UV_ENOMEM;
    wr->w = sg__tp_w(tp);
    wr->creq.data = tp;
    int r = uv_tcp_connect(&wr->creq, &tp->tcp, addr, on_tcp_connect);
    if (r < 0)
        sg_freelist_put(&sg__tp_w(tp)->fl_wreq, wr);
    return r;
}

const sg_tp_vt_t sg__tp_tcp = {
    .want_read = tcp_want_read,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .queued = tcp_queued,
    .close = tcp_close,
    .open = tcp_open,
    .connect = tcp_connect,
};
