/* Bodies and special responses through the real binary: chunked and
 * Content-Length bodies both ways (byte-exact), HEAD/204/304, SSE streaming,
 * 100-continue, upgrade tunnels, HTTP/1.0, absolute-form targets, header
 * rewriting. */
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
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
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "trace: {accept_headers: [X-Request-Id]}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 3s}\n"
             "routes:\n"
             "  - {match: {prefix: /strip/}, upstream: app, strip_prefix: /strip}\n"
             "  - {match: {prefix: /sethost}, upstream: app, set_host: internal.example}\n"
             "  - {match: {prefix: /}, upstream: app}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    addr = sg_proc_addr(&gw, "api");
}

static void stop(void)
{
    gw_stop(&gw);
    us_stop(up);
}

TestSuite(proxy_stream, .init = start, .fini = stop, .timeout = 60);

static void chunked_roundtrip(size_t n, const char *path)
{
    char *body = gw_pattern(n);
    size_t clen;
    char *chunked = gw_chunked(body, n, n > 100000 ? 65521 : 3, &clen);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char head[256];
    snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path);
    cr_assert(hc_send_str(&c, head, 2000));
    cr_assert(hc_send(&c, chunked, clen, 10000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 20000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, n, "got %zu want %zu", r.body_len, n);
    cr_assert(memcmp(r.body, body, n) == 0, "body differs");
    us_request_t q;
    cr_assert(us_request(up, us_requests(up) - 1, &q));
    cr_assert_eq(q.body_len, n);
    cr_assert(n == 0 || memcmp(q.body, body, n) == 0, "upstream saw other bytes");
    char v[64];
    cr_assert(us_header(q.head, "Transfer-Encoding", v, sizeof(v)));
    us_request_free(&q);
    hc_response_free(&r);
    hc_close(&c);
    free(body);
    free(chunked);
}

Test(proxy_stream, chunked_request_0_bytes)
{
    chunked_roundtrip(0, "/echo-chunked");
}
Test(proxy_stream, chunked_request_1_byte)
{
    chunked_roundtrip(1, "/echo-chunked");
}
Test(proxy_stream, chunked_request_10_mib)
{
    chunked_roundtrip(10u << 20, "/echo-chunked");
}
Test(proxy_stream, chunked_request_cl_response_10_mib)
{
    chunked_roundtrip(10u << 20, "/echo");
}

static void gen(size_t n, bool chunked, bool close)
{
    char req[256];
    snprintf(req, sizeof(req), "GET /gen?n=%zu&chunked=%d&close=%d HTTP/1.1\r\nHost: x\r\n\r\n", n, chunked, close);
    hc_response_t r;
    cr_assert_eq(hc_request(addr, req, &r, 20000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, n);
    cr_assert_eq(r.is_chunked, chunked);
    for (size_t i = 0; i < n; i++)
        if (r.body[i] != (char)('a' + i % 26))
            cr_assert_fail("byte %zu differs", i);
    hc_response_free(&r);
}

Test(proxy_stream, chunked_response_0_1_10mib)
{
    gen(0, true, false);
    gen(1, true, false);
    gen(10u << 20, true, false);
}

Test(proxy_stream, length_and_close_delimited_responses)
{
    gen(0, false, false);
    gen(100000, false, false);
    gen(100000, false, true);
}

Test(proxy_stream, head_204_304_have_no_body)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c,
                          "HEAD /gen?n=100 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /status?code=304 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /gen?n=2 HTTP/1.1\r\nHost: x\r\n\r\n",
                          2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, true, false, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    char v[32];
    cr_assert(hc_header(&r, "Content-Length", v, sizeof(v)));
    cr_assert_str_eq(v, "100");
    hc_response_free(&r);
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 204);
    hc_response_free(&r);
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 304);
    hc_response_free(&r);
    /* The next response starts right after: no stray body bytes before it. */
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ab");
    hc_response_free(&r);
    hc_close(&c);
}

Test(proxy_stream, sse_first_event_before_upstream_ends)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    char buf[4096];
    size_t got = 0;
    /* The upstream holds its second event until us_release(): the first must arrive alone. */
    while (!memmem(buf, got, "data: one", 9)) {
        ssize_t n = hc_read_some(&c, buf + got, sizeof(buf) - got - 1, 3000);
        cr_assert_gt(n, 0, "first event did not arrive while the upstream was still open");
        got += (size_t)n;
    }
    cr_assert_null(memmem(buf, got, "data: two", 9));
    us_release(up);
    while (!memmem(buf, got, "0\r\n\r\n", 5)) {
        ssize_t n = hc_read_some(&c, buf + got, sizeof(buf) - got - 1, 3000);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    cr_assert(memmem(buf, got, "data: two", 9));
    hc_close(&c);
}

Test(proxy_stream, expect_100_continue)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(
        hc_send_str(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, false, true, 3000), HC_OK);
    cr_assert_eq(r.status, 100, "100 Continue before the body");
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, "data", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "data");
    hc_response_free(&r);
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert_not(us_header(q.head, "Expect", NULL, 0), "Expect is answered by the proxy, not forwarded");
    us_request_free(&q);
    hc_close(&c);
}

Test(proxy_stream, upgrade_tunnel_echo)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c,
                          "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                          2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 101);
    char v[64];
    cr_assert(hc_header(&r, "Upgrade", v, sizeof(v)));
    cr_assert_str_eq(v, "websocket");
    cr_assert(hc_header(&r, "X-Trace-Id", v, sizeof(v)));
    hc_response_free(&r);
    for (int i = 0; i < 3; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "ping %d", i);
        cr_assert(hc_send(&c, msg, (size_t)n, 2000));
        char got[64];
        size_t have = 0;
        while (have < (size_t)n) {
            ssize_t k = hc_read_some(&c, got + have, sizeof(got) - have, 3000);
            cr_assert_gt(k, 0);
            have += (size_t)k;
        }
        cr_assert(memcmp(got, msg, (size_t)n) == 0);
    }
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(us_header(q.head, "Upgrade", v, sizeof(v)));
    cr_assert_str_eq(v, "websocket");
    cr_assert(us_header(q.head, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "upgrade");
    us_request_free(&q);
    hc_close(&c);
}

Test(proxy_stream, http10_client)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET /gen?n=40000&chunked=1 HTTP/1.0\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_not(r.is_chunked, "HTTP/1.0 client gets no chunked body");
    cr_assert_eq(r.body_len, 40000);
    char v[64];
    cr_assert(hc_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    cr_assert(hc_wait_closed(&c, 3000));
    hc_response_free(&r);
    hc_close(&c);
}

Test(proxy_stream, absolute_form_authority_replaces_host)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr, "GET http://abs.example:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", &r, 3000),
                 HC_OK);
    cr_assert_eq(r.status, 200);
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /a/b?q=1 HTTP/1.1\r\n", 23) == 0, "%s", q.head);
    char v[64];
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_str_eq(v, "abs.example:8080");
    cr_assert_eq(us_header_count(q.head, "Host"), 1);
    us_request_free(&q);
    hc_response_free(&r);
}

Test(proxy_stream, route_rewrites_and_hop_by_hop)
{
    hc_response_t r;
    cr_assert_eq(hc_request(addr,
                            "GET /strip/users?id=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n"
                            "X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: a\r\nTE: trailers\r\n"
                            "X-Forwarded-For: 10.0.0.1\r\nVia: 1.1 edge\r\nX-Keep: yes\r\n"
                            "X-Trace-Id: 0AF7651916CD43DD8448EB211C80319C\r\nX-Request-Id: abc\r\n\r\n",
                            &r, 3000),
                 HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    cr_assert_eq(hc_request(addr, "GET /sethost HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    hc_response_free(&r);
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /users?id=1 HTTP/1.1\r\n", 26) == 0, "%s", q.head);
    const char *gone[] = {"Connection", "X-Secret", "Keep-Alive", "Proxy-Authorization", "TE"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        cr_assert_not(us_header(q.head, gone[i], NULL, 0), "%s forwarded:\n%s", gone[i], q.head);
    char v[128];
    cr_assert(us_header(q.head, "X-Keep", v, sizeof(v)));
    /* An accepted alias is read, not owned: it goes upstream unchanged. */
    cr_assert(us_header(q.head, "X-Request-Id", v, sizeof(v)));
    cr_assert_str_eq(v, "abc");
    cr_assert(us_header(q.head, "X-Forwarded-For", v, sizeof(v)));
    cr_assert_str_eq(v, "10.0.0.1, 127.0.0.1");
    cr_assert(us_header(q.head, "Via", v, sizeof(v)));
    cr_assert_str_eq(v, "1.1 edge, 1.1 swarmgate");
    cr_assert_eq(us_header_count(q.head, "X-Trace-Id"), 1);
    us_request_free(&q);
    cr_assert(us_request(up, 1, &q));
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_str_eq(v, "internal.example");
    cr_assert(us_header(q.head, "X-Forwarded-Host", v, sizeof(v)));
    cr_assert_str_eq(v, "x");
    us_request_free(&q);
}
