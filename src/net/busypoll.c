/* Busy polling: while a worker's sockets are busy, its loop polls epoll
 * with a zero timeout instead of sleeping between two reads.
 *
 * Why (docs/performance.md, 16 KiB bodies): a worker that finishes its work
 * quickly goes to sleep in epoll_wait between bursts, often only a few
 * microseconds before the next packet arrives. The peer that sends that
 * packet (an upstream or a client, on another CPU) then wakes the worker
 * from inside its own send: ep_poll_callback -> try_to_wake_up, which takes
 * the worker CPU's run-queue lock, often while that CPU is itself in
 * schedule() putting the worker to sleep. On a virtual machine without
 * guest halt polling that wake-up costs the sender microseconds (lock
 * spinning and an IPI that exits to the hypervisor), paid by the peers'
 * CPU. Measured on the bench machine at 16 KiB x 64 connections: origin
 * wake-up lock contention 0.014 per request (nginx as the proxy: 0.002),
 * and ~0.7 us more CPU per request in the origin's sock_def_readable than
 * with nginx as the proxy. A worker that is polling when the packet comes
 * is not on the wait queue, so the sender only queues the event.
 *
 * The spin is bounded: it starts only when a read comes less than the
 * configured window (`busy_poll`, off by default) after the previous one
 * (traffic is dense) and stops when no read came for that long, so a quiet
 * worker sleeps as before and a worker spins at most one window after its
 * last read. It costs CPU time on a loaded worker (the idle time between
 * bursts becomes polling), as HAProxy's `busy-polling` does, which is why
 * it is off unless configured. The handle is an idle handle (libuv polls
 * with a zero timeout while one is active), opened when a spin starts and
 * closed when it ends, so a stopping worker's loop closes cleanly without a
 * hook in worker.c. */
#include "net/net_int.h"

static void on_idle_closed(uv_handle_t *h)
{
    sg_worker_t *w = h->data;
    w->busypoll.is_closing = false;
}

static void on_idle(uv_idle_t *h)
{
    sg_worker_t *w = h->data;
    sg_busypoll_t *bp = &w->busypoll;
    if (uv_hrtime() - bp->last_io_ns <= bp->max_ns && !w->is_stopping)
        return; /* keep polling */
    bp->is_spinning = false;
    bp->is_closing = true;
    uv_close((uv_handle_t *)h, on_idle_closed);
}

void sg__busypoll_set(sg_worker_t *w, uint32_t window_us)
{
    w->busypoll.max_ns = (uint64_t)window_us * 1000u;
}

void sg__busypoll_io_slow(sg_worker_t *w)
{
    sg_busypoll_t *bp = &w->busypoll;
    uint64_t now = uv_hrtime();
    uint64_t gap = now - bp->last_io_ns;
    bp->last_io_ns = now;
    if (bp->is_spinning || bp->is_closing || gap > bp->max_ns || w->is_stopping)
        return;
    if (uv_idle_init(&w->loop, &bp->idle) < 0)
        return;
    bp->idle.data = w;
    if (uv_idle_start(&bp->idle, on_idle) < 0) {
        bp->is_closing = true;
        uv_close((uv_handle_t *)&bp->idle, on_idle_closed);
        return;
    }
    bp->is_spinning = true;
}
