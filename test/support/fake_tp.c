/* The fake transport of the endpoint and stream unit tests (fake_tp.h). */
#include "support/fake_tp.h"

#include <criterion/criterion.h>
#include <string.h>

static sg_fake_tp_t g_recs[SG_FAKE_TP_MAX];
static int g_n;

void sg_fake_tp_reset(void)
{
    memset(g_recs, 0, sizeof(g_recs));
    g_n = 0;
}

sg_fake_tp_t *sg_fake_tp_nth(int n)
{
    return n >= 0 && n < g_n ? &g_recs[n] : NULL;
}

int sg_fake_tp_count(void)
{
    return g_n;
}

static sg_fake_tp_t *find(const sg_tp_t *tp)
{
    /* The newest first: a freed connection's memory comes back for the next one. */
    for (int i = g_n - 1; i >= 0; i--)
        if (g_recs[i].tp == tp && !g_recs[i].is_freed)
            return &g_recs[i];
    return NULL;
}

sg_fake_tp_t *sg_fake_tp_of(sg_tp_t *tp)
{
    sg_fake_tp_t *f = find(tp);
    if (f)
        return f;
    cr_assert_lt(g_n, SG_FAKE_TP_MAX, "too many fake transports in one test");
    f = &g_recs[g_n++];
    memset(f, 0, sizeof(*f));
    f->tp = tp;
    f->write_result = 1;
    return f;
}

void sg_fake_tp_clear_out(sg_fake_tp_t *f)
{
    f->out_len = 0;
}

static void release(sg_worker_t *w, const sg_tp_hold_t *h)
{
    for (int i = 0; i < 2; i++) {
        char *p = h->p[i];
        if (!p)
            continue;
        switch ((sg_buf_kind_t)h->kind[i]) {
        case SG_BK_BUF:
            sg__buf_put(w, p);
            break;
        case SG_BK_HEAD:
            sg__head_put(w, p);
            break;
        case SG_BK_EXT:
            if (h->ext_free)
                h->ext_free(h->ext_ud, p);
            break;
        default:
            break;
        }
    }
}

static void fake_want_read(sg_tp_t *tp, bool want)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    tp->is_reading = want;
    if (want)
        f->n_want_read_on++;
}

static int fake_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, const sg_tp_hold_t *h)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    cr_assert_not(f->has_closed, "a write after the close");
    if (f->write_result < 0) {
        release(sg__tp_w(tp), h);
        return f->write_result;
    }
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        cr_assert_leq(f->out_len + iov[i].len, sizeof(f->out), "fake transport: more than %d bytes written",
                      SG_FAKE_TP_OUT);
        memcpy(f->out + f->out_len, iov[i].base, iov[i].len);
        f->out_len += iov[i].len;
        len += iov[i].len;
    }
    f->n_writes++;
    if (!f->is_slow) {
        release(sg__tp_w(tp), h);
        return 1; /* written at once */
    }
    cr_assert_lt(f->n_pending_writes, (int)SG_ARRAY_SIZE(f->holds));
    f->holds[f->n_pending_writes++] = *h;
    f->queued += len;
    return 0;
}

static int fake_shutdown(sg_tp_t *tp)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    f->has_shutdown = true;
    f->pending_shutdown = true;
    return 0;
}

static size_t fake_queued(const sg_tp_t *tp)
{
    const sg_fake_tp_t *f = find(tp);
    return f ? f->queued : 0;
}

static void fake_close(sg_tp_t *tp)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    cr_assert_not(f->has_closed, "closed twice");
    f->has_closed = true;
    f->pending_close = true;
}

static int fake_open(sg_tp_t *tp)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    f->is_open = true;
    return 0;
}

static int fake_connect(sg_tp_t *tp, const struct sockaddr *addr)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    cr_assert(f->is_open, "connect before open");
    f->has_connect = true;
    f->pending_connect = true;
    memcpy(&f->peer, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    return 0;
}

const sg_tp_vt_t sg_fake_tp_vt = {
    .want_read = fake_want_read,
    .write = fake_write,
    .shutdown = fake_shutdown,
    .queued = fake_queued,
    .close = fake_close,
    .open = fake_open,
    .connect = fake_connect,
};

int sg_fake_tp_turn(void)
{
    int n = 0;
    /* Transports made by these reports wait for the next turn, as a
     * connect started inside a libuv callback ends on a later one. */
    const int n_recs = g_n;
    for (int i = 0; i < n_recs; i++) {
        sg_fake_tp_t *f = &g_recs[i];
        sg_tp_t *tp = f->tp;
        if (f->is_freed)
            continue;
        if (f->pending_connect) {
            /* libuv reports a connect cancelled by the close too. */
            f->pending_connect = false;
            n++;
            tp->cbs->on_connect(tp, f->has_closed ? UV_ECANCELED : f->connect_result);
        }
        while (f->n_pending_writes > 0 && !f->is_freed) {
            sg_tp_hold_t h = f->holds[0];
            memmove(f->holds, f->holds + 1, (size_t)(--f->n_pending_writes) * sizeof(h));
            if (f->n_pending_writes == 0)
                f->queued = 0;
            release(sg__tp_w(tp), &h);
            n++;
            sg__tp_on_write(tp, f->has_closed ? UV_ECANCELED : f->write_end);
        }
        if (f->pending_shutdown && !f->has_closed) {
            f->pending_shutdown = false;
            n++;
            tp->cbs->on_shutdown(tp, 0);
        }
        if (f->pending_close) {
            f->pending_close = false;
            f->is_freed = true;
            n++;
            tp->cbs->on_closed(tp); /* the owner's memory goes back */
        }
    }
    return n;
}

size_t sg_fake_tp_feed(sg_tp_t *tp, const char *p, size_t n)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    if (!tp->is_reading || f->has_closed || n == 0)
        return 0;
    size_t room = 0;
    char *at = sg__tp_read_room(tp, &room);
    if (!at || room == 0)
        return 0;
    size_t k = SG_MIN(room, n);
    memcpy(at, p, k);
    sg__tp_on_read(tp, (ssize_t)k);
    return k;
}

void sg_fake_tp_end(sg_tp_t *tp, int status)
{
    cr_assert_lt(status, 0);
    tp->is_reading = false; /* reading stops, as on_tcp_read does */
    sg__tp_on_read(tp, status);
}
