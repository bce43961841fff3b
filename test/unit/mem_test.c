/* Freelists (src/core/mem.c): objects go back to the list and come out
 * again; with pools off (SG_POOLS=off at start-up, or a SG_NO_POOLS build)
 * every object comes from malloc and goes back to free. Each test runs in
 * a process of its own, so the environment set here stays here. */
#include "sg/mem.h"

#include <criterion/criterion.h>
#include <stdlib.h>

Test(mem, freelist_gives_back_the_freed_object)
{
#ifdef SG_NO_POOLS
    cr_skip_test("a SG_NO_POOLS build keeps no object");
#endif
    unsetenv("SG_POOLS");
    sg_freelist_t fl;
    sg_freelist_init(&fl, 64, 4);
    void *a = sg_freelist_get(&fl);
    cr_assert_not_null(a);
    sg_freelist_put(&fl, a);
    cr_assert_eq(fl.n_free, 1);
    void *b = sg_freelist_get(&fl);
    cr_assert_eq(b, a, "the freed object was not reused");
    cr_assert_eq(fl.grows, 1);
    cr_assert_eq(fl.released_bytes, 0);
    sg_freelist_put(&fl, b);
    sg_freelist_destroy(&fl);
}

Test(mem, freelist_keeps_at_most_max_free)
{
#ifdef SG_NO_POOLS
    cr_skip_test("a SG_NO_POOLS build keeps no object");
#endif
    unsetenv("SG_POOLS");
    sg_freelist_t fl;
    sg_freelist_init(&fl, 64, 2);
    void *o[3];
    for (int i = 0; i < 3; i++)
        o[i] = sg_freelist_get(&fl);
    for (int i = 0; i < 3; i++)
        sg_freelist_put(&fl, o[i]);
    cr_assert_eq(fl.n_free, 2);
    cr_assert_eq(fl.released_bytes, 64);
    cr_assert_eq(fl.in_use, 0);
    sg_freelist_destroy(&fl);
}

Test(mem, pools_off_in_the_environment_sends_every_object_to_malloc)
{
    cr_assert_eq(setenv("SG_POOLS", "off", 1), 0);
    sg_freelist_t fl;
    sg_freelist_init(&fl, 64, 1024);
    for (int i = 0; i < 3; i++) {
        void *a = sg_freelist_get(&fl);
        cr_assert_not_null(a);
        sg_freelist_put(&fl, a);
        cr_assert_eq(fl.n_free, 0, "an object was kept with pools off");
    }
    cr_assert_eq(fl.grows, 3, "each get must malloc");
    cr_assert_eq(fl.released_bytes, 3 * 64);
    cr_assert_eq(fl.in_use, 0);
    sg_freelist_destroy(&fl);
}

Test(mem, other_values_of_sg_pools_keep_the_pools)
{
#ifdef SG_NO_POOLS
    cr_skip_test("a SG_NO_POOLS build keeps no object");
#endif
    static const char *const values[] = {"on", "", "OFF", "0"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        cr_assert_eq(setenv("SG_POOLS", values[i], 1), 0);
        sg_freelist_t fl;
        sg_freelist_init(&fl, 64, 4);
        sg_freelist_put(&fl, sg_freelist_get(&fl));
        cr_assert_eq(fl.n_free, 1, "SG_POOLS=\"%s\" turned the pools off", values[i]);
        sg_freelist_destroy(&fl);
    }
}
