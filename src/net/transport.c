/* Transport: one stream socket's bytes. Owns the uv_tcp_t, the read
 * buffer (lent by the worker's freelist only while bytes are pending: an
 * idle connection holds none), read start/stop and the count of queued
 * writes. Its owner (a client connection or an upstream connection) hears
 * of reads and finished writes through the callback table it gave; the
 * transport never looks at its owner. Plain TCP today; TLS goes here, under
 * the HTTP/1 code, which only ever sees plaintext (DESIGN.md section 2). */
#include "net/net_int.h"

void sg__tp_init(sg_tp_t *tp, sg_worker_t *w, const sg_tp_cbs_t *cbs)
{
    tp->w = w;
    tp->cbs = cbs;
    tp->rbuf = NULL;
    tp->rpos = tp->rlen = 0;
    tp->n_writes = 0;
    tp->is_reading = false;
    tp->tcp.data = tp;
}

void sg__tp_release_rbuf_if_empty(sg_tp_t *tp)
{
    if (tp->rbuf && tp->rpos >= tp->rlen) {
        sg__buf_put(tp->w, tp->rbuf);
        tp->rbuf = NULL;
        tp->rpos = tp->rlen = 0;
    }
}

void sg__tp_drop_rbuf(sg_tp_t *tp)
{
    if (tp->rbuf) {
        sg__buf_put(tp->w, tp->rbuf);
        tp->rbuf = NULL;
    }
    tp->rpos = tp->rlen = 0;
}

int sg__tp_take(sg_tp_t *tp, size_t n, char **buf, const char **p)
{
    char *b = tp->rbuf;
    const char *at = b + tp->rpos;
    size_t rest = tp->rlen - tp->rpos - n;
    if (rest) {
        /* What follows (pipelined bytes, the next message) stays here. */
        char *nb = sg__buf_get(tp->w);
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

/* ---- reading ------------------------------------------------------------- */

static void on_tp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    SG_UNUSED(suggested);
    sg_tp_t *tp = h->data;
    if (!tp->rbuf) {
        tp->rbuf = sg__buf_get(tp->w);
        tp->rpos = tp->rlen = 0;
        if (!tp->rbuf) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    if (tp->rpos == tp->rlen) {
        tp->rpos = tp->rlen = 0;
    } else if (tp->rpos > 0 && tp->rlen == SG_BUF_SIZE) {
        memmove(tp->rbuf, tp->rbuf + tp->rpos, tp->rlen - tp->rpos);
        tp->rlen -= tp->rpos;
        tp->rpos = 0;
    }
    *buf = uv_buf_init(tp->rbuf + tp->rlen, (unsigned)(SG_BUF_SIZE - tp->rlen));
}

static void on_tp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    SG_UNUSED(buf);
    sg_tp_t *tp = s->data;
    if (nread > 0) {
        tp->rlen += (uint32_t)nread;
        sg__busypoll_io(tp->w);
    } else if (nread == UV_ENOBUFS) {
        /* No buffer to lend: reading stops until the owner asks again. */
        uv_read_stop(s);
        tp->is_reading = false;
        nread = 0;
    } else if (nread < 0 && tp->is_reading) {
        uv_read_stop(s);
        tp->is_reading = false;
    }
    tp->cbs->on_read(tp, nread);
}

void sg__tp_want_read(sg_tp_t *tp, bool want)
{
    if (want && !tp->is_reading) {
        if (uv_read_start((uv_stream_t *)&tp->tcp, on_tp_alloc, on_tp_read) == 0)
            tp->is_reading = true;
    } else if (!want && tp->is_reading) {
        uv_read_stop((uv_stream_t *)&tp->tcp);
        tp->is_reading = false;
    }
}

/* ---- writing --------------------------------------------------------------- */

static void on_tp_write(void *owner, int status)
{
    sg_tp_t *tp = owner;
    tp->n_writes--;
    tp->cbs->on_write(tp, status);
}

static int counted(sg_tp_t *tp, int r)
{
    if (r == 0)
        tp->n_writes++;
    return r;
}

int sg__tp_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind)
{
    return counted(tp, sg__write(tp->w, (uv_stream_t *)&tp->tcp, iov, n, hold, kind, on_tp_write, tp));
}

int sg__tp_write2(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0, char *hold1,
                  sg_buf_kind_t kind1)
{
    return counted(tp, sg__write2(tp->w, (uv_stream_t *)&tp->tcp, iov, n, hold0, kind0, hold1, kind1, on_tp_write, tp));
}

int sg__tp_write_ext(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                     void (*ext_free)(void *, const char *), void *ext_ud)
{
    return counted(tp,
                   sg__write_ext(tp->w, (uv_stream_t *)&tp->tcp, iov, n, hold, ext, ext_free, ext_ud, on_tp_write, tp));
}

/* ---- closing ----------------------------------------------------------------- */

void sg__tp_close(sg_tp_t *tp, uv_close_cb cb)
{
    sg__tp_want_read(tp, false);
    sg__tp_drop_rbuf(tp);
    uv_close((uv_handle_t *)&tp->tcp, cb);
}
