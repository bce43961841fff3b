#include "sg/errrate.h"

#include <criterion/criterion.h>

static sg_errrate_sum_t window(const sg_errrate_t *e, size_t key, uint64_t now_ms)
{
    sg_errrate_sum_t s = {0, 0};
    sg_errrate_collect(e, key, now_ms, &s);
    return s;
}

Test(errrate, no_traffic_is_zero, .timeout = 5)
{
    sg_errrate_t e;
    cr_assert_eq(sg_errrate_init(&e, 300000, 1000, 2), 0);
    sg_errrate_sum_t s = window(&e, 0, 123456789);
    cr_assert_eq(s.total, 0);
    cr_assert_eq(s.errors, 0);
    cr_assert_eq(sg_errrate_ratio(&s), 0.0);
    /* a clock at 0 (epoch 0) must not mistake never-written slots for traffic */
    s = window(&e, 0, 0);
    cr_assert_eq(s.total, 0);
    sg_errrate_destroy(&e);
}

Test(errrate, defaults_and_slot_count, .timeout = 5)
{
    sg_errrate_t e;
    cr_assert_eq(sg_errrate_init(&e, 0, 0, 1), 0);
    cr_assert_eq(e.resolution_ms, 1000);
    cr_assert_eq(e.n_slots, 300);
    sg_errrate_destroy(&e);
    /* 1 h at 1 ms would be 3.6 M slots: the resolution widens instead */
    cr_assert_eq(sg_errrate_init(&e, 3600000, 1, 1), 0);
    cr_assert_leq(e.n_slots, SG_ERRRATE_MAX_SLOTS);
    cr_assert_geq((uint64_t)e.n_slots * e.resolution_ms, 3600000);
    sg_errrate_destroy(&e);
}

Test(errrate, ratio_over_window, .timeout = 5)
{
    sg_errrate_t e;
    cr_assert_eq(sg_errrate_init(&e, 10000, 1000, 3), 0); /* 10 slots of 1 s */
    uint64_t t0 = 1000000;
    for (int i = 0; i < 8; i++)
        sg_errrate_record(&e, 0, t0 + 100, i < 2);
    for (int i = 0; i < 2; i++)
        sg_errrate_record(&e, 0, t0 + 3500, true);
    sg_errrate_record(&e, 1, t0 + 3500, false);
    sg_errrate_sum_t s = window(&e, 0, t0 + 4000);
    cr_assert_eq(s.total, 10);
    cr_assert_eq(s.errors, 4);
    cr_assert_float_eq(sg_errrate_ratio(&s), 0.4, 1e-12);
    /* keys are separate */
    s = window(&e, 1, t0 + 4000);
    cr_assert_eq(s.total, 1);
    cr_assert_eq(s.errors, 0);
    s = window(&e, 2, t0 + 4000);
    cr_assert_eq(s.total, 0);
    /* out-of-range keys are ignored, not a crash */
    sg_errrate_record(&e, 3, t0, true);
    s = window(&e, 3, t0);
    cr_assert_eq(s.total, 0);
    sg_errrate_destroy(&e);
}

Test(errrate, slots_expire, .timeout = 5)
{
    sg_errrate_t e;
    cr_assert_eq(sg_errrate_init(&e, 10000, 1000, 1), 0);
    uint64_t t0 = 50000; /* epoch 50 */
    sg_errrate_record(&e, 0, t0, true);
    sg_errrate_record(&e, 0, t0 + 5000, false); /* epoch 55 */
    /* window at epoch 59: (49, 59] holds both */
    sg_errrate_sum_t s = window(&e, 0, t0 + 9999);
    cr_assert_eq(s.total, 2);
    cr_assert_eq(s.errors, 1);
    /* at epoch 60 the epoch-50 slot is a whole window old */
    s = window(&e, 0, t0 + 10000);
    cr_assert_eq(s.total, 1);
    cr_assert_eq(s.errors, 0);
    /* at epoch 65 nothing is left, without any writer sweeping */
    s = window(&e, 0, t0 + 15000);
    cr_assert_eq(s.total, 0);
    cr_assert_eq(sg_errrate_ratio(&s), 0.0);
    /* a reader behind the writer's clock ignores slots from its future */
    s = window(&e, 0, t0 + 1000);
    cr_assert_eq(s.total, 1);
    sg_errrate_destroy(&e);
}

Test(errrate, ring_wraps_and_resets_old_slot, .timeout = 5)
{
    sg_errrate_t e;
    cr_assert_eq(sg_errrate_init(&e, 5000, 1000, 1), 0); /* 5 slots */
    /* go round the ring three times, one error per second */
    for (uint64_t sec = 0; sec < 15; sec++)
        sg_errrate_record(&e, 0, sec * 1000 + 10, true);
    sg_errrate_sum_t s = window(&e, 0, 14 * 1000 + 999);
    cr_assert_eq(s.total, 5);
    cr_assert_eq(s.errors, 5);
    /* epoch 17 lands on epoch 12's slot: that slot restarts from zero */
    for (int i = 0; i < 3; i++)
        sg_errrate_record(&e, 0, 17 * 1000, false);
    s = window(&e, 0, 17 * 1000);
    /* window (12, 17]: epochs 13 and 14 (1 error each) + epoch 17 (3 ok) */
    cr_assert_eq(s.total, 5);
    cr_assert_eq(s.errors, 2);
    sg_errrate_destroy(&e);
}

Test(errrate, shards_add_up, .timeout = 5)
{
    sg_errrate_t a, b;
    cr_assert_eq(sg_errrate_init(&a, 60000, 1000, 1), 0);
    cr_assert_eq(sg_errrate_init(&b, 60000, 1000, 1), 0);
    for (int i = 0; i < 30; i++)
        sg_errrate_record(&a, 0, 100000 + (uint64_t)i * 1000, false);
    for (int i = 0; i < 10; i++)
        sg_errrate_record(&b, 0, 100000 + (uint64_t)i * 1000, true);
    sg_errrate_sum_t s = {0, 0};
    sg_errrate_collect(&a, 0, 140000, &s);
    sg_errrate_collect(&b, 0, 140000, &s);
    cr_assert_eq(s.total, 40);
    cr_assert_eq(s.errors, 10);
    cr_assert_float_eq(sg_errrate_ratio(&s), 0.25, 1e-12);
    sg_errrate_destroy(&a);
    sg_errrate_destroy(&b);
}
