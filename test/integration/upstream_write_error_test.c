/* A synchronous upstream write failure through the real binary (#17). A
 * write to the upstream that fails at once (UV_ENOMEM: nothing queued, no
 * callback) ends the transaction under the caller: in the request body
 * path, sg__proxy_body answers 502 and frees the transaction, and before
 * the deferred free (the worker's graveyard) body_step then marked the
 * freed transaction done, a use after free that ASan cannot see while
 * pooled objects are recycled instead of freed. So swarmgate runs here with
 * its pools off (SG_POOLS=off, every conn, txn and buffer from malloc) and
 * with test/shim/write_fail.c preloaded: writes to the upstream's port
 * whose bytes hold MARK fail synchronously, every other write goes through.
 *
 * What a client sees is documented (docs/routing.md, Retry and the status
 * table): a write failure is a reset, and a request whose bytes were sent
 * is not sent twice: 502 with the trace id. A request whose body was not
 * all sent leaves the connection unusable (Connection: close, pipelined
 * requests behind it are not answered); a bodiless one keeps it. In every
 * case swarmgate keeps serving, the failure was injected (the shim's line
 * in its stderr) and it exits 0 without a sanitizer report (gw_stop). */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK "sgtest-fail-this-write"
#define INJECTED "sgtest-write-fail: port"

static us_server_t *up;
static sg_proc_t gw;
static const char *addr;
static char port_env[64];

static void start(void)
{
    up = us_start("u1", false);
    cr_assert(up);
    snprintf(port_env, sizeof(port_env), "SGTEST_WRITE_FAIL_PORT=%u", us_port(up));
    const char *const env[] = {"LD_PRELOAD=" SG_WRITE_FAIL_SHIM,
                               "ASAN_OPTIONS=verify_asan_link_order=0",
                               port_env,
                               "SGTEST_WRITE_FAIL_MATCH=" MARK,
                               "SG_POOLS=off",
                               NULL};
    gw_start_env(&gw, env,
                 "workers: 1\n"
                 "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
                 "admin: {enabled: false}\n"
                 "log: {access: \"off\"}\n"
                 "upstreams: {app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 1s, response_timeout: 3s}}\n"
                 "routes: [{upstream: app}]\n"
                 "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
                 us_port(up));
    addr = sg_proc_addr(&gw, "api");
}

static void stop(void)
{
    gw_stop(&gw); /* exit status 0, no sanitizer report in its stderr */
    us_stop(up);
}

TestSuite(upstream_write_error, .init = start, .fini = stop, .timeout = 30);

/* Reads one response: 502 from swarmgate, with its trace id. */
static void expect_502(hc_conn_t *c, bool must_close)
{
    hc_response_t r;
    int e = hc_read_response(c, &r, 3000);
    cr_assert_eq(e, HC_OK, "no answer to the failed request: %d", e);
    cr_assert_eq(r.status, 502, "status %d: %s", r.status, r.body);
    cr_assert(strstr(r.body, "upstream write failed"), "%s", r.body);
    cr_assert(hc_header(&r, "X-Trace-Id", NULL, 0), "%s", r.head);
    char conn[32] = "";
    bool has_close = hc_header(&r, "Connection", conn, sizeof(conn)) && strcmp(conn, "close") == 0;
    cr_assert_eq(has_close, must_close, "Connection: \"%s\"\n%s", conn, r.head);
    hc_response_free(&r);
    if (must_close)
        cr_assert(hc_wait_closed(c, 3000), "connection kept after a request body that was not sent");
}

/* The failure was injected exactly n times so far (a request sent again
 * would fail once more), swarmgate still runs, and a new request with a
 * body goes through the upstream. */
static void still_serving(int n_injected)
{
    cr_assert(sg_proc_wait_stderr(&gw, INJECTED, n_injected, 3000), "%d write failure(s) not injected", n_injected);
    char *err = sg_proc_stderr(&gw);
    int n = 0;
    for (const char *p = strstr(err, INJECTED); p; p = strstr(p + 1, INJECTED))
        n++;
    cr_assert_eq(n, n_injected, "write failures injected:\n%s", err);
    free(err);
    cr_assert_eq(kill(gw.pid, 0), 0, "swarmgate is gone");
    hc_response_t r;
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nafter";
    cr_assert_eq(hc_request(addr, req, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "after");
    hc_response_free(&r);
}

/* The whole request in one write: the body is complete in the read that
 * makes the failing write (the path of the use after free). */
Test(upstream_write_error, content_length_body)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char req[256];
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen(MARK), MARK);
    cr_assert(hc_send_str(&c, req, 2000));
    expect_502(&c, true);
    hc_close(&c);
    still_serving(1);
}

Test(upstream_write_error, chunked_body)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char req[256];
    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n", strlen(MARK),
             MARK);
    cr_assert(hc_send_str(&c, req, 2000));
    expect_502(&c, true);
    hc_close(&c);
    still_serving(1);
}

/* Requests pipelined behind the failing one, in the same write: not
 * answered (the connection closes after the 502); one before it, on the
 * same connection, is answered first, and the failing body then goes out
 * on the pooled upstream connection that request left. */
Test(upstream_write_error, pipelined_requests_around_the_failure)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /before HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s"
             "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
             strlen(MARK), MARK);
    cr_assert(hc_send_str(&c, req, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    hc_response_free(&r);
    expect_502(&c, true);
    hc_close(&c);
    cr_assert_eq(us_connections(up), 1, "the failing body went out on a new upstream connection");
    still_serving(1);
}

/* The same after the 100 Continue: the body comes in a read of its own. */
Test(upstream_write_error, body_after_100_continue)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char req[256];
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\nExpect: 100-continue\r\n\r\n",
             strlen(MARK));
    cr_assert(hc_send_str(&c, req, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, false, true, 3000), HC_OK);
    cr_assert_eq(r.status, 100);
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, MARK, 2000));
    expect_502(&c, true);
    hc_close(&c);
    still_serving(1);
}

/* The failing write is the first part of a large body the client is still
 * sending: a 502 or, when the close came first, a closed connection. */
Test(upstream_write_error, body_still_arriving)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    const size_t total = 64u << 20, block = 64u * 1024;
    char head[128];
    snprintf(head, sizeof(head), "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", total);
    char *body = gw_pattern(block);
    memcpy(body, MARK, strlen(MARK));
    cr_assert(hc_send_str(&c, head, 2000));
    long long t0 = sgt_now_ms();
    size_t sent = 0;
    /* Keep sending until the proxy answers or stops taking bytes. */
    while (sent < total && sgt_now_ms() - t0 < 10000) {
        struct pollfd pf = {.fd = c.fd, .events = POLLIN};
        if (poll(&pf, 1, 0) > 0 || !hc_send(&c, body, block, 300))
            break;
        sent += block;
        memset(body, 'x', strlen(MARK)); /* the mark only at the start */
    }
    free(body);
    cr_assert_lt(sent, total, "the whole body was taken after its first write failed");
    hc_response_t r;
    int e = hc_read_response(&c, &r, 3000);
    cr_assert(e == HC_OK || e == HC_CLOSED, "neither a status nor a close: %d", e);
    if (e == HC_OK)
        cr_assert_eq(r.status, 502, "status %d", r.status);
    else
        cr_assert_eq(r.status, 0, "a partial response %d", r.status);
    hc_response_free(&r);
    hc_close(&c);
    still_serving(1);
}

/* The head write fails (the mark in the target) for a GET, on a new
 * upstream connection, then on a reused one (sent again on a new one,
 * which fails too): 502, and the client connection stays usable, since
 * the whole request was read. */
Test(upstream_write_error, head_write_of_a_bodiless_request)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c,
                          "GET /" MARK " HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /" MARK " HTTP/1.1\r\nHost: x\r\n\r\n",
                          2000));
    expect_502(&c, false);
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    hc_response_free(&r);
    expect_502(&c, false);
    hc_close(&c);
    still_serving(3);
}
