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

/* ---- the checker on a private loop -------------------------------------------- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static sg_config_t cfg;
static sg_upstream_conf_t upc;
static sg_hostport_t hps[1];
static sg_server_pub_t pubs[1];
static sg_server_pub_t *row[1] = {&pubs[0]};
static sg_server_pub_t **rows[1] = {row};
static sg_rtgen_t gen;
static sg_runtime_t rt;
static uv_timer_t poll_t;
static int n_polls;

/* A loopback port nothing listens on (bound, then closed). */
static uint16_t dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void loop_setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&pubs, 0, sizeof(pubs));
    hps[0] = (sg_hostport_t){.host = "127.0.0.1", .port = dead_port(), .is_ip_literal = true};
    upc = (sg_upstream_conf_t){.name = "app", .servers = hps, .n_servers = 1};
    upc.health_check = (sg_health_check_conf_t){
        .enabled = true, .path = "/health", .interval_ms = 20, .timeout_ms = 20, .rise = 2, .fall = 2};
    cfg = (sg_config_t){.upstreams = &upc, .n_upstreams = 1};
    memset(&gen, 0, sizeof(gen));
    atomic_store(&gen.refcount, 1u); /* the test's: never released */
    gen.id = 1;
    gen.cfg = &cfg;
    gen.servers = rows;
    memset(&rt, 0, sizeof(rt));
    atomic_store(&rt.gen, &gen);
    n_polls = 0;
}

static void loop_teardown(void)
{
    cr_assert_eq(uv_loop_close(&loop), 0, "loop closed clean");
}

static sg_upstream_health_t *checker;

static void on_poll(uv_timer_t *t)
{
    n_polls++;
    if (atomic_load(&pubs[0].active_down) || n_polls > 200) { /* 2 s deadline */
        sg_upstream_health_stop(checker);
        checker = NULL;
        uv_close((uv_handle_t *)t, NULL);
    }
}

Test(upstream_health, refused_server_goes_down_and_loop_closes_clean, .init = loop_setup, .fini = loop_teardown,
     .timeout = 10)
{
    checker = sg_upstream_health_start(&loop, &rt);
    cr_assert(checker);
    uv_timer_init(&loop, &poll_t);
    uv_timer_start(&poll_t, on_poll, 10, 10);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns only once every handle is closed */
    cr_assert(atomic_load(&pubs[0].active_down), "down after %d polls", n_polls);
    cr_assert_eq(atomic_load(&gen.refcount), 1u, "probes released the generation");
}

Test(upstream_health, stop_with_checks_in_flight_closes_clean, .init = loop_setup, .fini = loop_teardown, .timeout = 10)
{
    sg_upstream_health_t *h = sg_upstream_health_start(&loop, &rt);
    cr_assert(h);
    uv_run(&loop, UV_RUN_NOWAIT); /* the first check starts connecting */
    sg_upstream_health_stop(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(atomic_load(&gen.refcount), 1u);
    cr_assert(!atomic_load(&pubs[0].active_down), "an abandoned check records nothing");
}
