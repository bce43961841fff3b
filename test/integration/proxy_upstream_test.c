/* Upstream failures and balancing through the real binary: refused
 * connections (502 within the connect timeout), slow upstreams (504), bad
 * responses, a close mid-body, retry on another server, passive-health
 * ejection and restore, round-robin, least-in-flight, IPv6 and host names. */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BASE                                                                                                           \
    "workers: 1\n"                                                                                                     \
    "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"                                                             \
    "admin: {enabled: false}\n"                                                                                        \
    "log: {access: \"off\"}\n"                                                                                         \
    "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"

/* BASE with the admin listener on (for /metrics). */
#define BASE_ADMIN                                                                                                     \
    "workers: 1\n"                                                                                                     \
    "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"                                                             \
    "admin: {address: \"127.0.0.1:0\"}\n"                                                                              \
    "log: {access: \"off\", flush_interval: 10ms}\n"                                                                   \
    "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"

#define CONNECT_ERRORS "swarm_upstream_connect_errors_total{upstream=\"app\"}"

static int get_status(const char *addr, const char *path, char *upstream_name, size_t cap)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    hc_response_t r;
    int e = hc_request(addr, req, &r, 5000);
    cr_assert_eq(e, HC_OK, "request %s failed: %d", path, e);
    int st = r.status;
    if (upstream_name) {
        upstream_name[0] = '\0';
        hc_header(&r, "X-Upstream", upstream_name, cap);
    }
    if (st >= 500 || st == 404) {
        char tid[64];
        cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)), "proxy error without X-Trace-Id");
        cr_assert(strstr(r.body, tid), "error body without the trace id: %s", r.body);
    }
    hc_response_free(&r);
    return st;
}

Test(proxy_upstream, refused_is_502_fast, .timeout = 30)
{
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 2s}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             gw_dead_port());
    long long t0 = sgt_now_ms();
    cr_assert_eq(get_status(sg_proc_addr(&gw, "api"), "/", NULL, 0), 502);
    cr_assert_lt(sgt_now_ms() - t0, 1500, "502 must not wait for the connect timeout");
    gw_stop(&gw);
}

Test(proxy_upstream, slow_is_504_and_bad_is_502, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"], response_timeout: 300ms}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    long long t0 = sgt_now_ms();
    cr_assert_eq(get_status(addr, "/slow?ms=1500", NULL, 0), 504);
    long long dt = sgt_now_ms() - t0;
    cr_assert(dt >= 250 && dt < 1400, "504 after %lld ms", dt);
    cr_assert_eq(get_status(addr, "/bad", NULL, 0), 502);
    cr_assert_eq(get_status(addr, "/slow?ms=10", NULL, 0), 200);
    gw_stop(&gw);
    us_stop(up);
}

Test(proxy_upstream, close_mid_body_closes_client, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             us_port(up));
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    cr_assert(hc_send_str(&c, "GET /close-mid HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_CLOSED, "truncated body must end with a close");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 10);
    hc_response_free(&r);
    hc_close(&c);
    gw_stop(&gw);
    us_stop(up);
}

Test(proxy_upstream, retry_on_other_server_then_eject_and_restore, .timeout = 30)
{
    us_server_t *up = us_start("good", false);
    unsigned dead = gw_dead_port();
    sg_proc_t gw;
    gw_start(&gw,
             BASE_ADMIN
             "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], max_fails: 2, fail_timeout: 700ms,\n"
             "                  balance: round_robin}}\n"
             "routes: [{match: {prefix: /}, upstream: app}]\n",
             dead, us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    const char *admin = sg_proc_addr(&gw, "admin");
    char name[64];
    /* Every request succeeds: a refused connect is retried on the other server. */
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(get_status(addr, "/", name, sizeof(name)), 200, "request %d", i);
        cr_assert_str_eq(name, "good");
    }
    /* The log ring is flushed every flush_interval: wait for the line. */
    cr_assert(sg_proc_wait_stderr(&gw, "ejected", 1, 3000), "dead server not ejected");
    /* Once ejected, the dead server is skipped: the connect-error counter
     * (bumped by the worker at each refused connect, read at scrape time
     * without a flush) stays where it is. */
    double fails_before = -1, fails_after = -1;
    cr_assert(obs_scrape_value(admin, CONNECT_ERRORS, &fails_before));
    cr_assert_eq(fails_before, 2, "max_fails: 2 refused connects eject the server");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(get_status(addr, "/", NULL, 0), 200);
    cr_assert(obs_scrape_value(admin, CONNECT_ERRORS, &fails_after));
    cr_assert_eq(fails_after, fails_before, "an ejected server was tried");
    /* After fail_timeout it is tried again (restored), and fails again. */
    long long t_ejected = sgt_now_ms();
    long long deadline = t_ejected + 5000;
    double n = fails_after;
    while (n == fails_after && sgt_now_ms() < deadline) {
        cr_assert_eq(get_status(addr, "/", NULL, 0), 200);
        cr_assert(obs_scrape_value(admin, CONNECT_ERRORS, &n));
        if (n == fails_after) {
            sgt_nap_ms(20); /* pacing requests while time passes, not synchronization */
        }
    }
    cr_assert_gt(n, fails_after, "the ejected server was never restored");
    gw_stop(&gw);
    us_stop(up);
}

/* The only server is never ejected by passive health (issue #15; more in
 * passive_health_test.c): every request is tried, none gets 503. */
Test(proxy_upstream, only_server_is_never_ejected, .timeout = 30)
{
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"], max_fails: 1, fail_timeout: 10s}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             gw_dead_port());
    const char *addr = sg_proc_addr(&gw, "api");
    cr_assert_eq(get_status(addr, "/", NULL, 0), 502);
    cr_assert_eq(get_status(addr, "/", NULL, 0), 502);
    gw_stop(&gw);
}

Test(proxy_upstream, round_robin_spreads, .timeout = 30)
{
    us_server_t *a = us_start("a", false), *b = us_start("b", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"]}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             us_port(a), us_port(b));
    for (int i = 0; i < 10; i++)
        cr_assert_eq(get_status(sg_proc_addr(&gw, "api"), "/", NULL, 0), 200);
    cr_assert_eq(us_requests(a), 5);
    cr_assert_eq(us_requests(b), 5);
    gw_stop(&gw);
    us_stop(a);
    us_stop(b);
}

Test(proxy_upstream, least_in_flight_avoids_busy_server, .timeout = 30)
{
    us_server_t *a = us_start("a", false), *b = us_start("b", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], balance: least_in_flight}}\n"
                  "routes: [{match: {prefix: /}, upstream: app}]\n",
             us_port(a), us_port(b));
    const char *addr = sg_proc_addr(&gw, "api");
    /* Two SSE streams stay open; with least-in-flight they land on different servers. */
    hc_conn_t c1, c2;
    cr_assert_eq(hc_connect(&c1, addr, 2000), 0);
    cr_assert(hc_send_str(&c1, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    char buf[512];
    cr_assert_gt(hc_read_some(&c1, buf, sizeof(buf), 3000), 0);
    cr_assert_eq(hc_connect(&c2, addr, 2000), 0);
    cr_assert(hc_send_str(&c2, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_gt(hc_read_some(&c2, buf, sizeof(buf), 3000), 0);
    cr_assert_eq(us_requests(a), 1);
    cr_assert_eq(us_requests(b), 1);
    us_release(a);
    us_release(b);
    hc_close(&c1);
    hc_close(&c2);
    gw_stop(&gw);
    us_stop(a);
    us_stop(b);
}

Test(proxy_upstream, ipv6_and_hostname_servers, .timeout = 30)
{
    us_server_t *v6 = us_start("v6", true), *named = us_start("named", false);
    sg_proc_t gw;
    gw_start(&gw,
             BASE "upstreams:\n"
                  "  six: {servers: [\"[::1]:%u\"]}\n"
                  "  name: {servers: [\"localhost:%u\"]}\n"
                  "routes: [{match: {prefix: /six}, upstream: six}, {match: {prefix: /}, upstream: name}]\n",
             us_port(v6), us_port(named));
    char name[64];
    cr_assert_eq(get_status(sg_proc_addr(&gw, "api"), "/six", name, sizeof(name)), 200);
    cr_assert_str_eq(name, "v6");
    cr_assert_eq(get_status(sg_proc_addr(&gw, "api"), "/x", name, sizeof(name)), 200);
    cr_assert_str_eq(name, "named");
    gw_stop(&gw);
    us_stop(v6);
    us_stop(named);
}
