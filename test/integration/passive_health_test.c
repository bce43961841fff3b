/* Passive health through the real binary (issue #15, item 7): a response
 * timeout is a slow request, not a dead server, so it does not count toward
 * max_fails unless the upstream says count_timeouts; broken responses and
 * refused connects do count; and passive checks never eject the last
 * available server of a group (a client could otherwise turn a few
 * requests to a slow endpoint into a 503 for everyone, over and over). */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE                                                                                                           \
    "workers: 1\n"                                                                                                     \
    "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"                                                             \
    "admin: {address: \"127.0.0.1:0\"}\n"                                                                              \
    "log: {access: \"off\", flush_interval: 10ms}\n"                                                                   \
    "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"

/* GET path on a new connection: the status, and X-Upstream into name. */
static int get(const char *addr, const char *path, char *name, size_t cap)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    hc_response_t r;
    int e = hc_request(addr, req, &r, 5000);
    cr_assert_eq(e, HC_OK, "GET %s: %d", path, e);
    int st = r.status;
    if (name) {
        name[0] = '\0';
        hc_header(&r, "X-Upstream", name, cap);
    }
    hc_response_free(&r);
    return st;
}

static double server_up(const char *admin, unsigned port)
{
    char series[160];
    snprintf(series, sizeof(series), "swarm_upstream_server_up{upstream=\"app\",server=\"127.0.0.1:%u\"}", port);
    double v = -1;
    cr_assert(obs_scrape_value(admin, series, &v), "no %s", series);
    return v;
}

/* Two servers a and b (max_fails 1, fail_timeout 30s, plus opts). */
typedef struct two {
    us_server_t *a, *b;
    sg_proc_t gw;
    const char *api, *admin;
} two_t;

static void start_two(two_t *t, const char *opts)
{
    t->a = us_start("a", false);
    t->b = us_start("b", false);
    gw_start(&t->gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], max_fails: 1,"
                  " fail_timeout: 30s%s}}\n"
                  "routes: [{upstream: app}]\n",
             us_port(t->a), us_port(t->b), opts);
    t->api = sg_proc_addr(&t->gw, "api");
    t->admin = sg_proc_addr(&t->gw, "admin");
}

static void stop_two(two_t *t)
{
    gw_stop(&t->gw);
    us_stop(t->a);
    us_stop(t->b);
}

/* Server a is out (ejected, swarm_upstream_server_up 0): b takes every request. */
static void expect_only_b(two_t *t)
{
    char name[32];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(get(t->api, "/", name, sizeof(name)), 200);
        cr_assert_str_eq(name, "b", "request %d went to the ejected server", i);
    }
    cr_assert_eq(server_up(t->admin, us_port(t->a)), 0);
}

/* The case: the only server of a group, an endpoint that never
 * answers in time. Three 504s used to eject it: every other client got
 * 503 for fail_timeout. */
Test(passive_health, response_timeouts_do_not_eject, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"], response_timeout: 200ms, max_fails: 2,"
                  " fail_timeout: 30s}}\n"
                  "routes: [{upstream: app}]\n",
             us_port(up));
    const char *api = sg_proc_addr(&gw, "api"), *admin = sg_proc_addr(&gw, "admin");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(get(api, "/slow?ms=1500", NULL, 0), 504, "timeout %d", i);
    cr_assert_eq(get(api, "/", NULL, 0), 200, "a slow endpoint took the server out");
    cr_assert_eq(server_up(admin, us_port(up)), 1);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 2000));
    char *err = sg_proc_stderr(&gw);
    cr_assert(!strstr(err, "ejected") && !strstr(err, "kept in service"), "timeouts counted:\n%s", err);
    free(err);
    gw_stop(&gw);
    us_stop(up);
}

/* count_timeouts: true restores counting; the other server takes over. */
Test(passive_health, count_timeouts_opts_in, .timeout = 30)
{
    two_t t;
    start_two(&t, ", response_timeout: 200ms, count_timeouts: true");
    /* One worker, round-robin from the first server: this goes to a. */
    cr_assert_eq(get(t.api, "/slow?ms=1500", NULL, 0), 504);
    expect_only_b(&t);
    cr_assert(sg_proc_wait_stderr(&t.gw, "ejected for 30000 ms after 1 failures", 1, 3000));
    stop_two(&t);
}

/* A broken response counts (it did not before): with another server
 * available the broken one is ejected. */
Test(passive_health, broken_response_counts, .timeout = 30)
{
    two_t t;
    start_two(&t, "");
    cr_assert_eq(get(t.api, "/bad", NULL, 0), 502); /* to a: an invalid status line */
    cr_assert_eq(us_requests(t.a), 1);
    expect_only_b(&t);
    stop_two(&t);
}

/* The last available server stays in: two dead servers, max_fails 1. The
 * first is ejected (the other is still available), the second never is:
 * every request is tried (502), none gets "no healthy upstream" (503), and
 * readiness holds. */
Test(passive_health, last_available_server_is_never_ejected, .timeout = 30)
{
    unsigned d1 = gw_dead_port(), d2 = gw_dead_port();
    while (d2 == d1)
        d2 = gw_dead_port();
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], max_fails: 1,"
                  " fail_timeout: 30s}}\n"
                  "routes: [{upstream: app}]\n",
             d1, d2);
    const char *api = sg_proc_addr(&gw, "api"), *admin = sg_proc_addr(&gw, "admin");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(get(api, "/", NULL, 0), 502, "request %d", i);
    cr_assert(sg_proc_wait_stderr(&gw, "kept in service after 1 failures", 1, 3000));
    cr_assert_eq(server_up(admin, d1) + server_up(admin, d2), 1, "exactly one server left in service");
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 2000), "the group still has a server");
    gw_stop(&gw);
}
