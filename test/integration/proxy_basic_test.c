/* Reverse proxy basics against the real binary and real loopback upstreams:
 * forwarding, keep-alive on both sides, pipelining, routing, header rewrite,
 * trace ids, HEAD/204/304, bodies. */
#include "support/gw_fixture.h"
#include "support/http_client.h"
#include "support/proc.h"
#include "support/upstream_server.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static us_server_t *up;
static sg_proc_t gw;
static const char *addr;

static void start(void)
{
    up = us_start("u1", false);
    cr_assert(up);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "workers: 2\n"
             "listeners:\n"
             "  - {name: api, address: \"127.0.0.1:0\", serve_health: true}\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 2s, keepalive: 8}\n"
             "routes:\n"
             "  - {name: strip, match: {prefix: /strip/}, upstream: app, strip_prefix: /strip}\n"
             "  - {name: sethost, match: {prefix: /sethost}, upstream: app, set_host: internal.example}\n"
             "  - {name: vhost, match: {host: only.example, prefix: /}, upstream: app}\n"
             "  - {name: app, match: {prefix: /a}, upstream: app}\n"
             "  - {name: misc, match: {prefix: /echo}, upstream: app}\n"
             "  - {name: st, match: {prefix: /status}, upstream: app}\n"
             "  - {name: gen, match: {prefix: /gen}, upstream: app}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    gw_start(&gw, "%s", yaml);
    addr = sg_proc_addr(&gw, "api");
    cr_assert(addr);
}

static void stop(void)
{
    int st = sg_proc_stop(&gw, 5000);
    char *err = sg_proc_stderr(&gw);
    cr_expect_eq(st, 0, "exit status %d, stderr:\n%s", st, err);
    free(err);
    sg_proc_cleanup(&gw);
    us_stop(up);
}

TestSuite(proxy_basic, .init = start, .fini = stop, .timeout = 30);

Test(proxy_basic, forwards_get_with_trace_id)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr, "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello");
    char tid[64];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    cr_assert_eq(strlen(tid), 36);
    us_request_t q;
    cr_assert(us_wait_requests(up, 1, 2000));
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /a/b?x=1 HTTP/1.1\r\n", 23) == 0, "%s", q.head);
    char v[128];
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_str_eq(v, "example.com");
    cr_assert(us_header(q.head, "X-Forwarded-For", v, sizeof(v)));
    cr_assert_str_eq(v, "127.0.0.1");
    cr_assert(us_header(q.head, "X-Forwarded-Proto", v, sizeof(v)));
    cr_assert_str_eq(v, "http");
    cr_assert(us_header(q.head, "X-Forwarded-Host", v, sizeof(v)));
    cr_assert_str_eq(v, "example.com");
    cr_assert(us_header(q.head, "Via", v, sizeof(v)));
    cr_assert_str_eq(v, "1.1 swarmgate");
    cr_assert_eq(us_header_count(q.head, "X-Trace-Id"), 1);
    cr_assert(us_header(q.head, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, tid, "same id both ways");
    cr_assert_eq(us_header_count(q.head, "traceparent"), 1);
    us_request_free(&q);
    hc_response_free(&r);
}

Test(proxy_basic, keepalive_reused_on_both_sides)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert(hc_send_str(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK, "request %d", i);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(hc_header_count(&r, "Connection"), 0);
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_assert_eq(us_requests(up), 20);
    /* One client connection lands on one worker: one upstream connection. */
    cr_assert_eq(us_connections(up), 1, "upstream connections: %d", us_connections(up));
}

Test(proxy_basic, pipelined_answered_in_order)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    const char *reqs = "GET /gen?n=3 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                       "GET /gen?n=7 HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert(hc_send_str(&c, reqs, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_str_eq(r.body, "abc");
    hc_response_free(&r);
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_str_eq(r.body, "abcde");
    hc_response_free(&r);
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_str_eq(r.body, "abcdefg");
    hc_response_free(&r);
    hc_close(&c);
}

Test(proxy_basic, no_route_is_404_json)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 404);
    char tid[64];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    char want[200];
    snprintf(want, sizeof(want), "{\"error\":\"no route\",\"status\":404,\"trace_id\":\"%s\"}\n", tid);
    cr_assert_str_eq(r.body, want);
    cr_assert_eq(us_requests(up), 0);
    hc_response_free(&r);
}
