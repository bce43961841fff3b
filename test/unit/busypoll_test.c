/* Busy polling of a worker loop (src/net/busypoll.c) on a private loop: the
 * spin starts only for reads that come close together, the loop polls
 * without sleeping while it lasts, it ends by itself and the loop closes
 * clean. */
#include "net/net_int.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static sg_worker_t *w;
static int n_checks;
static uv_check_t check;

static void on_check(uv_check_t *h)
{
    SG_UNUSED(h);
    n_checks++;
}

static void setup(void)
{
    w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    cr_assert_eq(uv_loop_init(&w->loop), 0);
    n_checks = 0;
    /* Counts loop iterations (one check per poll); unreferenced, so it does
     * not keep the loop running by itself. */
    uv_check_init(&w->loop, &check);
    uv_check_start(&check, on_check);
    uv_unref((uv_handle_t *)&check);
}

static void teardown(void)
{
    uv_close((uv_handle_t *)&check, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "every handle closed");
    free(w);
}

TestSuite(busypoll, .init = setup, .fini = teardown, .timeout = 10);

Test(busypoll, off_by_default)
{
    for (int i = 0; i < 10; i++)
        sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning);
    cr_assert_eq(w->busypoll.last_io_ns, 0, "not even the clock is read");
    cr_assert_eq(uv_run(&w->loop, UV_RUN_NOWAIT), 0, "nothing keeps the loop alive");
}

Test(busypoll, isolated_read_does_not_spin)
{
    sg__busypoll_set(w, 50);
    sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning, "the first read has no predecessor: nothing says traffic is dense");
    /* A read long after the previous one: still no spin. */
    w->busypoll.last_io_ns = uv_hrtime() - 10 * w->busypoll.max_ns;
    sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning);
    cr_assert_eq(uv_run(&w->loop, UV_RUN_NOWAIT), 0, "nothing keeps the loop alive");
}

Test(busypoll, close_reads_spin_until_quiet_then_close)
{
    /* 100 ms: many loop turns even on a slow sanitizer build, and two calls
     * in a row stay "close" even if the test is preempted between them. */
    sg__busypoll_set(w, 100000);
    sg__busypoll_io(w);
    sg__busypoll_io(w); /* right after: dense traffic */
    cr_assert(w->busypoll.is_spinning);
    cr_assert(uv_is_active((uv_handle_t *)&w->busypoll.idle));
    /* The idle handle keeps the loop alive and polling with a zero timeout
     * until no read came for max_ns; then it closes and the run returns. */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uint64_t spun = uv_hrtime() - w->busypoll.last_io_ns; /* from the last read to the end of the run */
    cr_assert_not(w->busypoll.is_spinning);
    cr_assert_not(w->busypoll.is_closing, "close callback ran");
    cr_assert_gt(n_checks, 1, "the loop went round while spinning (%d polls)", n_checks);
    cr_assert_geq(spun, 100u * 1000u * 1000u, "spun for the window after the last read: %llu ns",
                  (unsigned long long)spun);
    cr_assert_lt(spun, 2000u * 1000u * 1000u, "and ended: %llu ns", (unsigned long long)spun);
    /* And it starts again with the next two close reads. */
    sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning, "long after the last read: no spin");
    sg__busypoll_io(w);
    cr_assert(w->busypoll.is_spinning);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_not(w->busypoll.is_spinning);
}

/* Windows of 200 ms below: a preempted test thread (2 cores shared by
 * several builds) must not end a spin between two of its own calls. */
Test(busypoll, reads_while_spinning_extend_the_spin)
{
    sg__busypoll_set(w, 200000);
    sg__busypoll_io(w);
    sg__busypoll_io(w);
    cr_assert(w->busypoll.is_spinning);
    /* Ten more loop turns with a read each: the spin stays on. */
    for (int i = 0; i < 10; i++) {
        sg__busypoll_io(w);
        cr_assert_neq(uv_run(&w->loop, UV_RUN_NOWAIT), 0, "turn %d: still spinning", i);
        cr_assert(w->busypoll.is_spinning);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_not(w->busypoll.is_spinning);
}

Test(busypoll, stopping_worker_stops_spinning)
{
    sg__busypoll_set(w, 200000);
    sg__busypoll_io(w);
    sg__busypoll_io(w);
    cr_assert(w->busypoll.is_spinning);
    w->is_stopping = true;
    sg__busypoll_io(w); /* a read while stopping neither extends nor restarts */
    uv_run(&w->loop, UV_RUN_NOWAIT);
    cr_assert_not(w->busypoll.is_spinning, "ends on the next turn, not after max_ns");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sg__busypoll_io(w);
    sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning);
}

Test(busypoll, turning_it_off_ends_a_spin)
{
    sg__busypoll_set(w, 1000000); /* 1 s: would outlast the test's patience */
    sg__busypoll_io(w);
    sg__busypoll_io(w);
    cr_assert(w->busypoll.is_spinning);
    sg__busypoll_set(w, 0); /* a reload turned it off */
    uv_run(&w->loop, UV_RUN_NOWAIT);
    cr_assert_not(w->busypoll.is_spinning, "ends on the next turn");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sg__busypoll_io(w);
    sg__busypoll_io(w);
    cr_assert_not(w->busypoll.is_spinning);
}
