/* The write primitive of src/net: a client's or an upstream's bytes go out
 * with sg__write() and the buffers they live in go back to the worker's
 * freelists when the kernel has them. The worker's read and head buffers
 * are lent here too (sg__buf_get, sg__head_get). Worker thread only. */
#include "net/net_int.h"

char *sg__buf_get(sg_worker_t *w)
{
    return sg_freelist_get(&w->fl_buf);
}

void sg__buf_put(sg_worker_t *w, char *b)
{
    sg_freelist_put(&w->fl_buf, b);
}

char *sg__head_get(sg_worker_t *w)
{
    return sg_freelist_get(&w->fl_head);
}

void sg__head_put(sg_worker_t *w, char *b)
{
    sg_freelist_put(&w->fl_head, b);
}

static void release_hold(sg_worker_t *w, sg_wreq_t *wr, int i)
{
    char *b = wr->hold[i];
    if (!b)
        return;
    switch ((sg_buf_kind_t)wr->hold_kind[i]) {
    case SG_BK_BUF:
        sg__buf_put(w, b);
        break;
    case SG_BK_HEAD:
        sg__head_put(w, b);
        break;
    case SG_BK_EXT:
        if (wr->ext_free)
            wr->ext_free(wr->ext_ud, b);
        break;
    default:
        break;
    }
    wr->hold[i] = NULL;
}

static void on_write(uv_write_t *req, int status)
{
    sg_wreq_t *wr = sg_container_of(req, sg_wreq_t, req);
    sg_worker_t *w = wr->w;
    release_hold(w, wr, 0);
    release_hold(w, wr, 1);
    sg_wreq_cb cb = wr->cb;
    void *owner = wr->owner;
    sg_freelist_put(&w->fl_wreq, wr);
    if (cb)
        cb(owner, status);
}

static void release_kind(sg_worker_t *w, char *b, sg_buf_kind_t kind, void (*ext_free)(void *, const char *),
                         void *ext_ud)
{
    if (!b)
        return;
    if (kind == SG_BK_BUF)
        sg__buf_put(w, b);
    else if (kind == SG_BK_HEAD)
        sg__head_put(w, b);
    else if (kind == SG_BK_EXT && ext_free)
        ext_free(ext_ud, b);
}

#define SG_MAX_IOV 8

/* Writes at once when nothing is queued on the stream (the common case on a
 * keep-alive connection): uv_try_write is one writev(2), with no request, no
 * deferred callback and no POLLOUT bookkeeping (libuv's uv_write, even when
 * it completes in place, queues the callback and re-registers the fd with
 * epoll_ctl afterwards: one system call per write). Only a remainder goes
 * through uv_write. Returns 1 when everything was written (holds released,
 * cb not called), 0 when queued (cb called later), or a UV error (holds
 * released). */
static int do_write(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0,
                    char *hold1, sg_buf_kind_t kind1, void (*ext_free)(void *, const char *), void *ext_ud,
                    sg_wreq_cb cb, void *owner)
{
    uv_buf_t rest[SG_MAX_IOV];
    if (s->write_queue_size == 0 && n <= SG_MAX_IOV) {
        int r = uv_try_write(s, iov, n);
        if (r >= 0) {
            size_t done = (size_t)r, total = 0;
            for (unsigned i = 0; i < n; i++)
                total += iov[i].len;
            if (done == total) {
                release_kind(w, hold0, kind0, ext_free, ext_ud);
                release_kind(w, hold1, kind1, ext_free, ext_ud);
                return 1;
            }
            unsigned k = 0;
            for (unsigned i = 0; i < n; i++) {
                if (done >= iov[i].len) {
                    done -= iov[i].len;
                    continue;
                }
                rest[k] = uv_buf_init(iov[i].base + done, (unsigned)(iov[i].len - done));
                done = 0;
                k++;
            }
            iov = rest;
            n = k;
        }
        /* UV_EAGAIN: queue it all; another error: uv_write reports it
         * through the callback like any write failure. */
    }
    sg_wreq_t *wr = sg_freelist_get(&w->fl_wreq);
    if (!wr) {
        release_kind(w, hold0, kind0, ext_free, ext_ud);
        release_kind(w, hold1, kind1, ext_free, ext_ud);
        return UV_ENOMEM;
    }
    wr->w = w;
    wr->owner = owner;
    wr->cb = cb;
    wr->hold[0] = hold0;
    wr->hold_kind[0] = (uint8_t)kind0;
    wr->hold[1] = hold1;
    wr->hold_kind[1] = (uint8_t)kind1;
    wr->ext_free = ext_free;
    wr->ext_ud = ext_ud;
    wr->req.data = owner;
    int r = uv_write(&wr->req, s, iov, n, on_write);
    if (r < 0) {
        release_hold(w, wr, 0);
        release_hold(w, wr, 1);
        sg_freelist_put(&w->fl_wreq, wr);
    }
    return r;
}

int sg__write(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind,
              sg_wreq_cb cb, void *owner)
{
    return do_write(w, s, iov, n, hold, kind, NULL, SG_BK_NONE, NULL, NULL, cb, owner);
}

int sg__write2(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0,
               char *hold1, sg_buf_kind_t kind1, sg_wreq_cb cb, void *owner)
{
    return do_write(w, s, iov, n, hold0, kind0, hold1, kind1, NULL, NULL, cb, owner);
}

int sg__write_ext(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                  void (*ext_free)(void *, const char *), void *ext_ud, sg_wreq_cb cb, void *owner)
{
    return do_write(w, s, iov, n, hold, SG_BK_BUF, (char *)(uintptr_t)ext, ext ? SG_BK_EXT : SG_BK_NONE, ext_free,
                    ext_ud, cb, owner);
}
