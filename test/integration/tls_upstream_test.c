/* TLS origination to upstreams, through two real swarmgates: the origin is
 * a swarmgate with a TLS listener (certificates made by the test, signed
 * by the test CA) in front of a plain scripted upstream; the proxy under
 * test has `upstreams.<name>.tls` pointing at it. Checked: verification
 * with the test CA passes and requests arrive over TLS (the origin sees
 * X-Forwarded-Proto: https), pooled TLS connections (a handshake per
 * connection, none per request), an /ext/-style route with strip_prefix,
 * and the failures: the system store (unknown CA) and a wrong server name
 * are 502 with their own failure kind in the metrics and the log. */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/tls_pki.h"
#include "support/upstream_server.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static sg_test_pki_t pki;
static us_server_t *up;
static sg_proc_t origin, gw;

static void start_origin(void)
{
    cr_assert_eq(sg_test_pki_make(&pki), 0);
    up = us_start("app", false);
    cr_assert_not_null(up);
    gw_start(&origin,
             "workers: 1\n"
             "listeners: [{name: tls, address: \"127.0.0.1:0\", tls: {cert: %s, key: %s}}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: all, match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             pki.server.cert, pki.server.key, us_port(up));
}

/* The proxy under test, its upstream `ext` on the origin's TLS port with
 * the given tls mapping. */
static void start_gw(const char *tls)
{
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {ext: {servers: [\"%s\"], connect_timeout: 2s, tls: %s}}\n"
             "routes: [{name: ext, match: {prefix: /ext/app/}, strip_prefix: true, upstream: ext}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             sg_proc_addr(&origin, "tls"), tls);
}

static void stop(void)
{
    gw_stop(&gw);
    gw_stop(&origin);
    us_stop(up);
    sg_test_pki_remove(&pki);
}

TestSuite(tls_upstream, .init = start_origin, .fini = stop, .timeout = 60);

static int get(const char *path, hc_response_t *r, hc_conn_t *c)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: api.test\r\n\r\n", path);
    if (!hc_send_str(c, raw, 3000))
        return -1;
    return hc_read_response(c, r, 5000);
}

Test(tls_upstream, verified_with_the_test_ca_pooled_and_marked_https)
{
    char tls[512];
    snprintf(tls, sizeof(tls), "{server_name: server.test, ca_file: %s}", pki.ca);
    start_gw(tls);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    for (int i = 0; i < 5; i++) {
        hc_response_t r;
        cr_assert_eq(get("/ext/app/echo", &r, &c), HC_OK, "request %d", i);
        cr_assert_eq(r.status, 200, "request %d: %d %s", i, r.status, r.body);
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_assert(us_wait_requests(up, 5, 5000));
    us_request_t rq;
    cr_assert(us_request(up, 0, &rq));
    char v[64];
    cr_assert(us_header(rq.head, "X-Forwarded-Proto", v, sizeof(v)));
    cr_expect_str_eq(v, "https", "the origin got the request over TLS");
    cr_expect(strncmp(rq.head, "GET /echo ", 10) == 0, "the prefix was stripped: %.40s", rq.head);
    us_request_free(&rq);
    double got = 0;
    cr_assert(obs_wait_metric_ge(sg_proc_addr(&gw, "admin"),
                                 "swarm_upstream_tls_handshakes_total{upstream=\"ext\",result=\"success\"}", 1, 3000,
                                 &got));
    cr_expect_eq(got, 1, "five requests, one pooled TLS connection: %g handshakes", got);
    cr_assert(obs_scrape_value(sg_proc_addr(&origin, "admin"),
                               "swarm_tls_handshakes_total{listener=\"tls\",result=\"success\",version=\"TLSv1.3\"}",
                               &got));
    cr_expect_eq(got, 1, "the origin saw one handshake: %g", got);
}

Test(tls_upstream, the_system_store_does_not_know_the_test_ca)
{
    start_gw("{server_name: server.test}");
    hc_response_t r;
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    cr_assert_eq(get("/ext/app/", &r, &c), HC_OK);
    cr_expect_eq(r.status, 502);
    hc_response_free(&r);
    hc_close(&c);
    double got = 0;
    cr_assert(obs_wait_metric_ge(sg_proc_addr(&gw, "admin"),
                                 "swarm_upstream_tls_handshakes_total{upstream=\"ext\",result=\"unknown_ca\"}", 1, 3000,
                                 &got));
    cr_assert(sg_proc_wait_stderr(&gw, "TLS handshake failed: unknown_ca", 1, 3000));
    cr_expect_eq(us_requests(up), 0, "nothing reached the origin's upstream");
}

Test(tls_upstream, a_wrong_server_name_is_refused)
{
    char tls[512];
    snprintf(tls, sizeof(tls), "{server_name: wrong.test, ca_file: %s}", pki.ca);
    start_gw(tls);
    hc_response_t r;
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    cr_assert_eq(get("/ext/app/", &r, &c), HC_OK);
    cr_expect_eq(r.status, 502);
    hc_response_free(&r);
    hc_close(&c);
    double got = 0;
    cr_assert(obs_wait_metric_ge(sg_proc_addr(&gw, "admin"),
                                 "swarm_upstream_tls_handshakes_total{upstream=\"ext\",result=\"hostname_mismatch\"}",
                                 1, 3000, &got));
    cr_expect_eq(us_requests(up), 0);
}
