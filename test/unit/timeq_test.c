/* The worker's timeout queues (src/net/timeq.c) on a private loop: one FIFO
 * per distinct duration for the first SG_TQ_QUEUES - 1 durations, then a
 * catch-all queue kept sorted on insert. With more distinct durations than
 * that, every timeout still fires once, in deadline order, never before its
 * deadline; restarts and stops work in the catch-all too. */
#include "net/net_int.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define N_TMO 48 /* 3x the number of queues: most land in the catch-all */

typedef struct probe {
    sg_tmo_t tmo;
    uint64_t deadline_ms;
    uint64_t fired_ms;
    int n_fired;
    int order;
} probe_t;

static sg_worker_t *w;
static probe_t probes[N_TMO];
static int n_fired;

static void on_tmo(sg_tmo_t *t)
{
    probe_t *p = sg_container_of(t, probe_t, tmo);
    p->fired_ms = uv_now(&w->loop);
    p->n_fired++;
    p->order = n_fired++;
}

static void setup(void)
{
    w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    cr_assert_eq(uv_loop_init(&w->loop), 0);
    sg__tq_init(w);
    n_fired = 0;
    memset(probes, 0, sizeof(probes));
    for (int i = 0; i < N_TMO; i++)
        sg__tmo_init(&probes[i].tmo, on_tmo);
}

static void teardown(void)
{
    for (int i = 0; i < N_TMO; i++)
        sg__tmo_stop(&probes[i].tmo);
    sg__tq_close(w, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "every handle closed");
    free(w);
}

TestSuite(timeq, .init = setup, .fini = teardown, .timeout = 20);

static void start(int i, uint64_t ms)
{
    sg__tmo_start(w, &probes[i].tmo, ms);
    probes[i].deadline_ms = uv_now(&w->loop) + ms;
}

/* Every probe fired once, in deadline order (ties in any order), never
 * before its deadline, and within `late_ms` after it. */
static void check_fired(const bool *expect, uint64_t late_ms)
{
    for (int i = 0; i < N_TMO; i++) {
        if (!expect[i]) {
            cr_assert_eq(probes[i].n_fired, 0, "stopped timeout %d fired", i);
            continue;
        }
        cr_assert_eq(probes[i].n_fired, 1, "timeout %d fired %d times", i, probes[i].n_fired);
        cr_assert_geq(probes[i].fired_ms, probes[i].deadline_ms, "timeout %d fired %llu ms early", i,
                      (unsigned long long)(probes[i].deadline_ms - probes[i].fired_ms));
        cr_assert_leq(probes[i].fired_ms, probes[i].deadline_ms + late_ms, "timeout %d fired %llu ms late", i,
                      (unsigned long long)(probes[i].fired_ms - probes[i].deadline_ms));
        for (int j = 0; j < N_TMO; j++)
            if (expect[j] && probes[j].deadline_ms < probes[i].deadline_ms)
                cr_assert_lt(probes[j].order, probes[i].order,
                             "timeout %d (deadline %llu) fired after timeout %d (deadline %llu)", j,
                             (unsigned long long)probes[j].deadline_ms, i, (unsigned long long)probes[i].deadline_ms);
    }
}

/* A scrambled order of N_TMO distinct durations: 2..(2 + 5 * (N_TMO-1)) ms. */
static uint64_t duration(int i)
{
    return 2 + 5 * (uint64_t)((i * 29) % N_TMO); /* 29 is prime to N_TMO: a permutation */
}

Test(timeq, more_distinct_durations_than_queues_fire_in_deadline_order)
{
    cr_assert_gt(N_TMO, (int)SG_TQ_QUEUES * 2);
    for (int i = 0; i < N_TMO; i++)
        start(i, duration(i));
    cr_assert_eq(w->tq.n_queues, SG_TQ_QUEUES - 1, "the distinct queues are all taken");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    bool all[N_TMO];
    for (int i = 0; i < N_TMO; i++)
        all[i] = true;
    /* A loaded machine may run the loop late; never early. */
    check_fired(all, 1000);
    cr_assert_eq(n_fired, N_TMO);
}

Test(timeq, restart_and_stop_in_the_catch_all)
{
    for (int i = 0; i < N_TMO; i++)
        start(i, duration(i));
    /* Later in the catch-all: restart some with other durations (shorter
     * and longer; the walk back from the tail must find their place), stop
     * others. */
    bool expect[N_TMO];
    for (int i = 0; i < N_TMO; i++)
        expect[i] = true;
    for (int i = SG_TQ_QUEUES; i < N_TMO; i += 3)
        start(i, 1 + (uint64_t)(N_TMO - i) * 7); /* reversed: the last ones first */
    for (int i = SG_TQ_QUEUES + 1; i < N_TMO; i += 5) {
        sg__tmo_stop(&probes[i].tmo);
        expect[i] = false;
    }
    /* A restart of an entry in a distinct queue moves it to its tail. */
    start(0, duration(0));
    uv_run(&w->loop, UV_RUN_DEFAULT);
    check_fired(expect, 1000);
}

Test(timeq, zero_duration_runs_on_the_next_turn_not_inside_the_caller)
{
    start(0, 0);
    cr_assert_eq(probes[0].n_fired, 0, "not inside sg__tmo_start");
    start(1, 30);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    cr_assert_eq(probes[0].n_fired, 1, "on the next loop turn");
    cr_assert_eq(probes[1].n_fired, 0);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_eq(probes[1].n_fired, 1);
    cr_assert_geq(probes[1].fired_ms, probes[1].deadline_ms);
}
