/* Per-worker timeouts without a uv_timer per connection.
 *
 * Every client and upstream connection has a few timeouts (header, body,
 * keep-alive, connect, response, read, pool idle), restarted several times
 * per request. With one uv_timer_t each, every restart is a libuv heap
 * removal and insertion over all the worker's connections (about a tenth of
 * a proxied request's instructions in a callgrind profile) and each handle
 * costs 152 bytes per connection. Here a timeout is a list link: the worker
 * keeps one FIFO queue per distinct duration, so a restart is an O(1) unlink
 * and append with deadlines in order (the clock never goes back), and one
 * uv_timer per worker is armed for the earliest queue head. It is re-armed
 * only when a new deadline is earlier than the armed one, so a stop or a
 * later restart costs no libuv call at all; an early fire finds nothing due
 * and re-arms. Nginx keeps one red-black tree of timers and HAProxy one
 * ebtree per thread for the same reason.
 *
 * A zero duration means "on the next loop turn" (deferred work that must not
 * run inside the caller's stack); those entries are detached as a batch
 * before running, so work added meanwhile waits for the next turn. */
#include "net/net_int.h"

static void on_tq_timer(uv_timer_t *h);

void sg__tq_init(sg_worker_t *w)
{
    sg_timeq_t *q = &w->tq;
    memset(q->queues, 0, sizeof(q->queues));
    for (size_t i = 0; i < SG_TQ_QUEUES; i++)
        sg_list_init(&q->queues[i].head);
    q->n_queues = 0;
    q->armed_ms = 0;
    q->is_armed = false;
    uv_timer_init(&w->loop, &q->timer);
    q->timer.data = w;
}

void sg__tmo_init(sg_tmo_t *t, sg_tmo_cb cb)
{
    sg_list_init(&t->link);
    t->deadline_ms = 0;
    t->cb = cb;
}

void sg__tq_close(sg_worker_t *w, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&w->tq.timer, cb);
}

static sg_tq_queue_t *queue_for(sg_timeq_t *q, uint64_t ms)
{
    for (uint32_t i = 0; i < q->n_queues; i++)
        if (q->queues[i].ms == ms)
            return &q->queues[i];
    if (q->n_queues < SG_TQ_QUEUES - 1) {
        sg_tq_queue_t *n = &q->queues[q->n_queues++];
        n->ms = ms;
        return n;
    }
    return &q->queues[SG_TQ_QUEUES - 1]; /* catch-all: kept sorted on insert */
}

static void arm(sg_worker_t *w, uint64_t deadline)
{
    sg_timeq_t *q = &w->tq;
    if (q->is_armed && q->armed_ms <= deadline)
        return;
    uint64_t now = uv_now(&w->loop);
    q->armed_ms = deadline;
    q->is_armed = true;
    uv_timer_start(&q->timer, on_tq_timer, deadline > now ? deadline - now : 0, 0);
}

void sg__tmo_start(sg_worker_t *w, sg_tmo_t *t, uint64_t ms)
{
    sg_timeq_t *q = &w->tq;
    if (t->link.next != &t->link)
        sg_list_remove(&t->link);
    t->deadline_ms = uv_now(&w->loop) + ms;
    sg_tq_queue_t *qq = queue_for(q, ms);
    sg_link_t *h = &qq->head;
    if (qq == &q->queues[SG_TQ_QUEUES - 1]) {
        /* Mixed durations: walk back from the tail to keep the order. */
        sg_link_t *p = h->prev;
        while (p != h && sg_container_of(p, sg_tmo_t, link)->deadline_ms > t->deadline_ms)
            p = p->prev;
        sg_list_push(p, &t->link);
    } else {
        sg_list_push(h->prev, &t->link); /* append: deadlines in order */
    }
    arm(w, t->deadline_ms);
}

void sg__tmo_stop(sg_tmo_t *t)
{
    if (t->link.next != &t->link)
        sg_list_remove(&t->link);
}

/* The pending entry due by now with the earliest deadline over every queue
 * but the deferred one (ties: the lower queue), or NULL. */
static sg_tmo_t *next_due(sg_timeq_t *q, uint64_t now)
{
    sg_tmo_t *best = NULL;
    for (uint32_t i = 0; i < SG_TQ_QUEUES; i++) {
        sg_link_t *head = &q->queues[i].head;
        if (sg_list_empty(head) || (i < q->n_queues && q->queues[i].ms == 0))
            continue;
        sg_tmo_t *t = sg_container_of(head->next, sg_tmo_t, link);
        if (t->deadline_ms <= now && (!best || t->deadline_ms < best->deadline_ms))
            best = t;
    }
    return best;
}

static void on_tq_timer(uv_timer_t *h)
{
    sg_worker_t *w = h->data;
    sg_timeq_t *q = &w->tq;
    q->is_armed = false;
    uint64_t now = uv_now(&w->loop);
    for (uint32_t i = 0; i < q->n_queues; i++) {
        sg_link_t *head = &q->queues[i].head;
        if (q->queues[i].ms != 0 || sg_list_empty(head))
            continue;
        /* Deferred work: this batch only. */
        sg_link_t batch;
        sg_list_init(&batch);
        batch.next = head->next;
        batch.prev = head->prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        sg_list_init(head);
        while (!sg_list_empty(&batch)) {
            sg_tmo_t *t = sg_container_of(batch.next, sg_tmo_t, link);
            sg_list_remove(&t->link);
            t->cb(t);
        }
    }
    /* Then what is due, earliest deadline first across the queues: a loop
     * that runs late (a loaded machine) finds several queues due at once,
     * and each queue alone is in deadline order only within itself. Picked
     * one at a time, since a callback may stop or restart other entries. */
    sg_tmo_t *t;
    while ((t = next_due(q, now)) != NULL) {
        sg_list_remove(&t->link);
        t->cb(t);
    }
    /* Re-arm for the earliest pending deadline (callbacks may have armed
     * already). */
    for (uint32_t i = 0; i < SG_TQ_QUEUES; i++) {
        sg_link_t *head = &q->queues[i].head;
        if (!sg_list_empty(head))
            arm(w, sg_container_of(head->next, sg_tmo_t, link)->deadline_ms);
    }
}
