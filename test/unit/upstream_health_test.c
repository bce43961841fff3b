/* The active check's status-line classifier (upstream_health.h). */
#include "sg/upstream_health.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

typedef struct cls_case {
    char in[48]; /* inline: the table is copied into the test process */
    sg_uh_verdict_t want;
} cls_case_t;

ParameterizedTestParameters(upstream_health, classify_table)
{
    static cls_case_t cases[] = {
        {"HTTP/1.1 200 OK\r\n", SG_UH_OK},
        {"HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n", SG_UH_OK},
        {"HTTP/1.1 301 Moved\r\n", SG_UH_OK},
        {"HTTP/1.1 399\r\n", SG_UH_OK},
        {"HTTP/1.1 200\n", SG_UH_OK},
        {"HTTP/1.1 500 Internal Server Error\r\n", SG_UH_FAIL},
        {"HTTP/1.1 404 Not Found\r\n", SG_UH_FAIL},
        {"HTTP/1.1 199 x\r\n", SG_UH_FAIL},
        {"HTTP/1.1 400 Bad\r\n", SG_UH_FAIL},
        {"HTTP/1.1 101 Switching\r\n", SG_UH_FAIL},
        {"HTTP/2 200\r\n", SG_UH_FAIL},
        {"HTTP/1.1 20 OK\r\n", SG_UH_FAIL},
        {"HTTP/1.1 2000 OK\r\n", SG_UH_FAIL},
        {"HTTP/1.1  200 OK\r\n", SG_UH_FAIL},
        {"HTTP/1.x 200 OK\r\n", SG_UH_FAIL},
        {"http/1.1 200 OK\r\n", SG_UH_FAIL},
        {"garbage\r\n", SG_UH_FAIL},
        {"SSH-2.0-OpenSSH\r\n", SG_UH_FAIL},
        {"\r\n", SG_UH_FAIL},
        {"G", SG_UH_FAIL},
        {"", SG_UH_PENDING},
        {"H", SG_UH_PENDING},
        {"HTTP/1.", SG_UH_PENDING},
        {"HTTP/1.1 200 OK", SG_UH_PENDING},
        {"HTTP/1.1 200 OK\r", SG_UH_PENDING},
    };
    return cr_make_param_array(cls_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(cls_case_t *c, upstream_health, classify_table, .timeout = 5)
{
    sg_uh_verdict_t got = sg_upstream_health_classify(c->in, strlen(c->in));
    cr_assert_eq(got, c->want, "classify(\"%s\") = %d, want %d", c->in, got, c->want);
}

/* A status line that never ends is cut at the cap, not read forever. */
Test(upstream_health, overlong_status_line_fails_at_cap, .timeout = 5)
{
    static char buf[SG_UPSTREAM_HEALTH_MAX_LINE + 16];
    memcpy(buf, "HTTP/1.1 200 ", 13);
    memset(buf + 13, 'x', sizeof(buf) - 13);
    cr_assert_eq(sg_upstream_health_classify(buf, SG_UPSTREAM_HEALTH_MAX_LINE - 1), SG_UH_PENDING);
    cr_assert_eq(sg_upstream_health_classify(buf, SG_UPSTREAM_HEALTH_MAX_LINE), SG_UH_FAIL);
    /* The same reason ending just inside the cap is fine. */
    buf[SG_UPSTREAM_HEALTH_MAX_LINE - 1] = '\n';
    cr_assert_eq(sg_upstream_health_classify(buf, SG_UPSTREAM_HEALTH_MAX_LINE), SG_UH_OK);
}
