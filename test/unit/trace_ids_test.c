/* New trace ids (#18): UUIDv4 from a per-thread getrandom() buffer,
 * formatted by libuuid. A million ids: all distinct, all version 4 and
 * variant 10 as libuuid reads them back, each of the 122 random bits set
 * about half the time, and one refill per 32 ids. */
#include "sg/trace.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#define N_IDS 1000000

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

Test(trace_ids, a_million_are_v4_distinct_and_balanced, .timeout = 300)
{
    unsigned char(*ids)[16] = malloc((size_t)N_IDS * 16);
    static uint32_t ones[128];
    uint64_t refills0 = sg_trace_id_refills();
    char s[SG_TRACE_ID_LEN + 1];
    /* Counted, then asserted once: a million cr_assert calls are slow
     * under ASan on a loaded machine. */
    size_t n_bad_form = 0, n_bad_parse = 0, n_bad_version = 0, n_bad_variant = 0;
    for (size_t i = 0; i < N_IDS; i++) {
        sg_trace_id_generate(s);
        bool is_lower = strlen(s) == SG_TRACE_ID_LEN;
        for (size_t k = 0; k < SG_TRACE_ID_LEN && is_lower; k++)
            is_lower = !(s[k] >= 'A' && s[k] <= 'F');
        n_bad_form += !is_lower;
        if (uuid_parse(s, ids[i]) != 0) {
            n_bad_parse++;
            continue;
        }
        n_bad_version += uuid_type(ids[i]) != UUID_TYPE_DCE_RANDOM;
        n_bad_variant += uuid_variant(ids[i]) != UUID_VARIANT_DCE;
        for (size_t b = 0; b < 128; b++)
            ones[b] += (ids[i][b / 8] >> (7 - b % 8)) & 1u;
    }
    cr_assert_eq(n_bad_form, 0, "ids not 36 lower-case characters");
    cr_assert_eq(n_bad_parse, 0, "ids libuuid cannot parse");
    cr_assert_eq(n_bad_version, 0, "ids not version 4");
    cr_assert_eq(n_bad_variant, 0, "ids not variant 10");
    /* one getrandom() per 32 ids on this thread */
    uint64_t refills = sg_trace_id_refills() - refills0;
    cr_assert(refills >= N_IDS / 32 && refills <= N_IDS / 32 + 1, "refills %llu", (unsigned long long)refills);
    qsort(ids, N_IDS, 16, cmp16);
    size_t n_dup = 0;
    for (size_t i = 1; i < N_IDS; i++)
        n_dup += memcmp(ids[i - 1], ids[i], 16) == 0;
    cr_assert_eq(n_dup, 0, "duplicate ids");
    /* fixed bits: version 0100 (bits 48-51), variant 10 (bits 64-65) */
    for (size_t b = 0; b < 128; b++) {
        bool is_fixed = (b >= 48 && b < 52) || b == 64 || b == 65;
        if (is_fixed)
            continue;
        /* binomial(1e6, 0.5): sd 500; 6 sd is 3000 */
        cr_assert(ones[b] > N_IDS / 2 - 3000 && ones[b] < N_IDS / 2 + 3000, "bit %zu set %u times", b, ones[b]);
    }
    cr_assert_eq(ones[48], 0);
    cr_assert_eq(ones[49], N_IDS);
    cr_assert_eq(ones[64], N_IDS);
    cr_assert_eq(ones[65], 0);
    free(ids);
}

Test(trace_ids, refill_happens_when_the_buffer_runs_out, .timeout = 30)
{
    char s[SG_TRACE_ID_LEN + 1];
    sg_trace_id_generate(s); /* the buffer now holds 31 or fewer */
    uint64_t r0 = sg_trace_id_refills();
    int n_until = 0;
    while (sg_trace_id_refills() == r0 && n_until <= 32) {
        sg_trace_id_generate(s);
        n_until++;
    }
    cr_assert(n_until >= 1 && n_until <= 32, "a refill within 32 ids, got %d", n_until);
    uint64_t r1 = sg_trace_id_refills();
    for (int i = 0; i < 31; i++)
        sg_trace_id_generate(s);
    cr_assert_eq(sg_trace_id_refills(), r1, "32 ids per refill");
    sg_trace_id_generate(s);
    cr_assert_eq(sg_trace_id_refills(), r1 + 1);
}
