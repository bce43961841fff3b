/* Strict HTTP/1 framing through the real binary (#15): what a strict
 * reader would refuse never crosses swarmgate, in either direction.
 * Requests: refused with 400 (505 for another major version) and nothing
 * reaches the recording upstream; what is forwarded carries exactly the
 * framing swarmgate used. Responses: a scripted raw upstream sends the bad
 * bytes; the client gets 502 (or, once the head went out, a closed
 * connection) and the upstream connection is never reused. */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/scripted_upstream.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- request side ---------------------------------------------------------------------- */

static us_server_t *up;
static sg_proc_t gw;
static const char *addr, *admin;

static void start_req(void)
{
    up = us_start("u1", false);
    cr_assert(up);
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 1s, response_timeout: 3s}\n"
             "routes: [{match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    addr = sg_proc_addr(&gw, "api");
    admin = sg_proc_addr(&gw, "admin");
}

static void stop_req(void)
{
    gw_stop(&gw);
    us_stop(up);
}

TestSuite(framing, .init = start_req, .fini = stop_req, .timeout = 30);

struct req_case {
    char text[700];
    int status;
};

/* Sends the bytes in one write, expects status, then the connection
 * closed, and asserts that the upstream never received a request. */
static void refused(const char *raw, size_t n, int status)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send(&c, raw, n, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK, "no answer for:\n%.*s", (int)n, raw);
    cr_assert_eq(r.status, status, "got %d want %d for:\n%.*s", r.status, status, (int)n, raw);
    char tid[64];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    cr_assert(hc_wait_closed(&c, 2000), "connection left open after %d", status);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_eq(us_requests(up), 0, "the upstream received a request for:\n%.*s", (int)n, raw);
}

ParameterizedTestParameters(framing, request_refused)
{
    static struct req_case cases[] = {
        /* the chunk-data hole (loose llhttp): any two bytes after the data */
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX3\r\nBBB\r\n0\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX43\r\n0\r\n\r\n"
         "GET /admin/delete-all HTTP/1.1\r\nHost: x\r\n\r\n",
         400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAA\n0\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n", 400},
        /* Transfer-Encoding that is not exactly one final chunked */
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nAAAAA", 400},
        {"POST /x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nAAAAA", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nA", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400},
        /* trailers: the head's grammar */
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n z\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX Y: z\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n: z\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 50\r\n\r\n", 400},
        /* request line */
        {"GET /caf\xC3\xA9 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET /\xC0\xAF HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
        {"GET / HTTP/9.1\r\nHost: x\r\n\r\n", 505},
        /* found by the differential fuzz targets (test/fuzz/regressions/diff_*) */
        {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n", 405},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;;x=y\r\nhello\r\n0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\"c\"\r\nhello\r\n0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\r\nhello\r\n0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nhello\r\n0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\nhello", 400},
    };
    return cr_make_param_array(struct req_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct req_case *c, framing, request_refused)
{
    refused(c->text, strlen(c->text), c->status);
}

Test(framing, many_trailer_lines_refused)
{
    size_t cap = 64 * 1024, n = 0;
    char *req = malloc(cap);
    n += (size_t)sprintf(req, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 500; i++)
        n += (size_t)sprintf(req + n, "X-T%d: v\r\n", i);
    n += (size_t)sprintf(req + n, "\r\n");
    refused(req, n, 431);
    free(req);
}

Test(framing, huge_method_is_400_not_414)
{
    size_t n = 100000;
    char *req = malloc(n + 64);
    memset(req, 'A', n);
    size_t k = n + (size_t)sprintf(req + n, " / HTTP/1.1\r\nHost: x\r\n\r\n");
    refused(req, k, 400);
    free(req);
}

/* Bad chunk framing that arrives after the head went upstream: the
 * upstream connection is aborted, so it never sees a complete request. */
Test(framing, late_bad_chunk_never_completes_upstream)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAA", 2000));
    /* the head goes upstream before the rest of the body arrives */
    for (int i = 0; i < 300 && us_connections(up) == 0; i++)
        hc_read_some(&c, (char[1]){0}, 1, 10);
    cr_assert_eq(us_connections(up), 1, "the head was not forwarded: this test wants the late path");
    cr_assert(hc_send_str(&c, "XX3\r\nBBB\r\n0\r\n\r\n", 2000));
    hc_response_t r;
    int rr = hc_read_response(&c, &r, 3000);
    if (rr == HC_OK) {
        cr_assert_eq(r.status, 400);
        hc_response_free(&r);
    }
    cr_assert(hc_wait_closed(&c, 3000));
    hc_close(&c);
    /* the GET below must be the upstream's first complete request */
    hc_response_t ok;
    cr_assert_eq(hc_request(addr, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n", &ok, 3000), 0);
    cr_assert_eq(ok.status, 200);
    hc_response_free(&ok);
    cr_assert_eq(us_requests(up), 1);
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /after ", 11) == 0, "%s", q.head);
    us_request_free(&q);
}

static us_request_t forwarded(const char *raw, int want_status)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr, raw, &r, 3000), 0, "%s", raw);
    cr_assert_eq(r.status, want_status, "%d for %s", r.status, raw);
    hc_response_free(&r);
    int n = us_requests(up);
    cr_assert(n >= 1);
    us_request_t q;
    cr_assert(us_request(up, n - 1, &q));
    return q;
}

Test(framing, forwarded_framing_is_the_one_used)
{
    us_request_t q = forwarded("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
                               "3;q=\"a b\"\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
                               200);
    cr_assert_eq(us_header_count(q.head, "Transfer-Encoding"), 1, "%s", q.head);
    cr_assert_eq(us_header_count(q.head, "Content-Length"), 0, "%s", q.head);
    char v[64];
    cr_assert(us_header(q.head, "Transfer-Encoding", v, sizeof(v)));
    cr_assert_str_eq(v, "chunked");
    cr_assert_eq(q.body_len, 3);
    us_request_free(&q);
    q = forwarded("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 200);
    cr_assert_eq(us_header_count(q.head, "Content-Length"), 1, "%s", q.head);
    cr_assert_eq(us_header_count(q.head, "Transfer-Encoding"), 0, "%s", q.head);
    us_request_free(&q);
}

Test(framing, long_target_is_forwarded)
{
    /* 12 KiB: over the old 4 KiB scratch buffer, under request_line_bytes (16k) */
    size_t n = 12 * 1024;
    char *req = malloc(n + 128);
    size_t k = (size_t)sprintf(req, "GET /");
    memset(req + k, 'p', n);
    k += n;
    sprintf(req + k, " HTTP/1.1\r\nHost: x\r\n\r\n");
    us_request_t q = forwarded(req, 200);
    cr_assert(strncmp(q.head, req, k) == 0, "the target went upstream unchanged");
    us_request_free(&q);
    free(req);
}

Test(framing, higher_minor_version_is_http_1_1)
{
    us_request_t q = forwarded("GET /v HTTP/1.2\r\nHost: x\r\n\r\n", 200);
    cr_assert(strncmp(q.head, "GET /v HTTP/1.1\r\n", 17) == 0, "%s", q.head);
    us_request_free(&q);
}

Test(framing, options_star_is_answered_here)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), 0);
    cr_assert_eq(r.status, 200);
    char allow[200];
    cr_assert(hc_header(&r, "Allow", allow, sizeof(allow)));
    cr_assert(strstr(allow, "GET") && !strstr(allow, "CONNECT"), "%s", allow);
    cr_assert(hc_header(&r, "X-Trace-Id", allow, sizeof(allow)));
    hc_response_free(&r);
    cr_assert_eq(us_requests(up), 0);
}

Test(framing, underscore_fields_are_dropped_and_counted)
{
    us_request_t q = forwarded("GET /u HTTP/1.1\r\nHost: x\r\nX_Trace_Id: 00000000-0000-4000-8000-000000000001\r\n"
                               "X_Forwarded_For: 6.6.6.6\r\nX-Keep: 1\r\n\r\n",
                               200);
    cr_assert(!strstr(q.head, "X_Trace_Id") && !strstr(q.head, "X_Forwarded_For"), "%s", q.head);
    cr_assert(!strstr(q.head, "6.6.6.6"), "%s", q.head);
    cr_assert(strstr(q.head, "X-Keep: 1"), "%s", q.head);
    us_request_free(&q);
    double v = 0;
    cr_assert(obs_wait_metric_eq(admin, "swarm_http_header_fields_dropped_total{listener=\"api\"}", 2, 3000, &v),
              "dropped: %g", v);
}

Test(framing, underscore_fields_rejected_or_allowed_by_config)
{
    us_server_t *up2 = us_start("u2", false);
    sg_proc_t gw2;
    for (int mode = 0; mode < 2; mode++) {
        gw_start(&gw2,
                 "workers: 1\n"
                 "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
                 "admin: {enabled: false}\n"
                 "log: {access: \"off\"}\n"
                 "limits: {underscores_in_headers: %s}\n"
                 "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
                 "routes: [{match: {prefix: /}, upstream: app}]\n"
                 "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
                 mode == 0 ? "reject" : "allow", us_port(up2));
        hc_response_t r;
        cr_assert_eq(hc_request(sg_proc_addr(&gw2, "api"), "GET / HTTP/1.1\r\nHost: x\r\nX_A: 1\r\n\r\n", &r, 3000), 0);
        cr_assert_eq(r.status, mode == 0 ? 400 : 200);
        hc_response_free(&r);
        gw_stop(&gw2);
    }
    cr_assert_eq(us_requests(up2), 1, "only the allowed one went upstream");
    us_request_t q;
    cr_assert(us_request(up2, 0, &q));
    cr_assert(strstr(q.head, "X_A: 1"), "%s", q.head);
    us_request_free(&q);
    us_stop(up2);
}

/* ---- response side ---------------------------------------------------------------------- */

struct resp_case {
    char script[300];
    bool is_head_sent; /* the head is fine: the client may see it, then a close */
};

ParameterizedTestParameters(framing_resp, response_refused)
{
    static struct resp_case cases[] = {
        {"HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 0200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 2\r\n\r\nok", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: a\r\n b\r\n\r\n", true},
        {"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\"c\"\r\nok\r\n0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nok\r\n0\r\n\r\n", true},
    };
    return cr_make_param_array(struct resp_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct resp_case *c, framing_resp, response_refused, .timeout = 30)
{
    su_server_t *su = su_start(c->script, strlen(c->script), false);
    cr_assert(su);
    sg_proc_t g;
    gw_start(&g,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"], response_timeout: 3s}}\n"
             "routes: [{match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             su_port(su));
    const char *a = sg_proc_addr(&g, "api");
    for (int i = 0; i < 2; i++) {
        hc_conn_t cc;
        cr_assert_eq(hc_connect(&cc, a, 2000), 0);
        cr_assert(hc_send_str(&cc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        hc_response_t r;
        int rr = hc_read_response(&cc, &r, 4000);
        if (!c->is_head_sent || rr == HC_OK) {
            cr_assert_eq(rr, HC_OK, "no 502 for:\n%s", c->script);
            cr_assert_eq(r.status, 502, "got %d for:\n%s", r.status, c->script);
            hc_response_free(&r);
        } else {
            cr_assert(rr == HC_CLOSED || rr == HC_BAD, "a refused body must not end well: %d", rr);
        }
        hc_close(&cc);
    }
    cr_assert_eq(su_requests(su), 2);
    cr_assert_eq(su_reuses(su), 0, "an upstream connection was reused after a refused response");
    gw_stop(&g);
    su_stop(su);
}
