/* Proxy-made errors through the real binary: request smuggling shapes,
 * size limits and client timeouts. Each answer is a JSON body with the
 * trace id, and a refused request never reaches the upstream. */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static us_server_t *up;
static sg_proc_t gw;
static const char *addr;

static void start(void)
{
    up = us_start("u1", false);
    cr_assert(up);
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "limits: {request_line_bytes: 256, header_bytes: 1k, header_count: 10, body_bytes: 100,\n"
             "         client_header_timeout: 300ms, client_body_timeout: 300ms, keepalive_timeout: 300ms}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 2s}\n"
             "routes: [{match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    addr = sg_proc_addr(&gw, "api");
}

static void stop(void)
{
    gw_stop(&gw);
    us_stop(up);
}

TestSuite(proxy_errors, .init = start, .fini = stop, .timeout = 30);

/* Sends raw bytes, expects `status` with a JSON body naming the trace id,
 * (when must_close) the connection closed after it, and no connection nor
 * request at the upstream (the proxy would connect before answering). */
static void expect_error(const void *raw, size_t n, int status, bool must_close)
{
    int conns0 = us_connections(up), reqs0 = us_requests(up);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send(&c, raw, n, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, status, "got %d want %d for:\n%.*s", r.status, status, (int)n, (const char *)raw);
    char tid[64], want[100];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    snprintf(want, sizeof(want), "\"status\":%d,\"trace_id\":\"%s\"}", status, tid);
    cr_assert(strstr(r.body, want), "body: %s", r.body);
    char ct[64];
    cr_assert(hc_header(&r, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    if (must_close)
        cr_assert(hc_wait_closed(&c, 3000), "connection left open after %d", status);
    cr_assert_eq(us_connections(up), conns0, "the upstream saw a connection for a %d", status);
    cr_assert_eq(us_requests(up), reqs0, "the upstream saw the request of a %d", status);
    hc_response_free(&r);
    hc_close(&c);
}

struct raw_case {
    char text[400];
};

ParameterizedTestParameters(proxy_errors, smuggling_shapes_get_400)
{
    static struct raw_case cases[] = {
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd"},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"},
        {"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n"},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n"},
        {"GET / HTTP/1.1\nHost: x\n\n"},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\n\r\n"},
        {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
        {"GET / HTTP/1.1\r\n\r\n"},
        {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"},
    };
    return cr_make_param_array(struct raw_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct raw_case *c, proxy_errors, smuggling_shapes_get_400)
{
    expect_error(c->text, strlen(c->text), 400, true);
    cr_assert_eq(us_connections(up), 0, "the upstream saw a connection for:\n%s", c->text);
}

Test(proxy_errors, nul_in_header_400)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n";
    expect_error(req, sizeof(req) - 1, 400, true);
    cr_assert_eq(us_connections(up), 0);
}

Test(proxy_errors, request_line_too_long_414)
{
    char req[600];
    int n = snprintf(req, sizeof(req), "GET /%0300d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    expect_error(req, (size_t)n, 414, true);
}

Test(proxy_errors, header_too_large_431)
{
    char req[3000] = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ";
    size_t n = strlen(req);
    memset(req + n, 'a', 1100);
    strcpy(req + n + 1100, "\r\n\r\n");
    expect_error(req, strlen(req), 431, true);
}

Test(proxy_errors, too_many_headers_431)
{
    char req[2000] = "GET / HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 11; i++)
        sprintf(req + strlen(req), "X-H%d: v\r\n", i);
    strcat(req, "\r\n");
    expect_error(req, strlen(req), 431, true);
    cr_assert_eq(us_connections(up), 0);
}

Test(proxy_errors, body_limit_413)
{
    const char *big = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
    expect_error(big, strlen(big), 413, true);
    char req[1000] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    strcat(req, "64\r\n");
    size_t n = strlen(req);
    memset(req + n, 'a', 100);
    strcpy(req + n + 100, "\r\n1\r\nb\r\n0\r\n\r\n");
    expect_error(req, strlen(req), 413, true);
    cr_assert_eq(us_connections(up), 0);
    /* exactly at the limit passes */
    hc_response_t r;
    char ok[400] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    n = strlen(ok);
    memset(ok + n, 'z', 100);
    ok[n + 100] = '\0';
    cr_assert_eq(hc_request(addr, ok, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 100);
    hc_response_free(&r);
}

Test(proxy_errors, slow_head_408)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    long long t0 = sgt_now_ms();
    cr_assert(hc_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 408);
    long long dt = sgt_now_ms() - t0;
    cr_assert(dt >= 250 && dt < 2000, "408 after %lld ms", dt);
    cr_assert(hc_header(&r, "X-Trace-Id", NULL, 0));
    cr_assert(hc_wait_closed(&c, 2000));
    hc_response_free(&r);
    hc_close(&c);
}

Test(proxy_errors, silent_connection_closed_without_bytes)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char b[64];
    cr_assert_eq(hc_read_some(&c, b, sizeof(b), 3000), 0, "closed without a response");
    hc_close(&c);
}

Test(proxy_errors, idle_keepalive_closed)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    long long t0 = sgt_now_ms();
    cr_assert(hc_wait_closed(&c, 3000));
    cr_assert_geq(sgt_now_ms() - t0, 200);
    hc_close(&c);
}

Test(proxy_errors, slow_body_408)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 408);
    cr_assert(hc_wait_closed(&c, 2000));
    hc_response_free(&r);
    hc_close(&c);
}

Test(proxy_errors, connection_close_honoured)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                          2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    char v[32];
    cr_assert(hc_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    cr_assert(hc_wait_closed(&c, 2000), "the pipelined second request is not answered");
    cr_assert_eq(us_requests(up), 1);
    hc_response_free(&r);
    hc_close(&c);
}
