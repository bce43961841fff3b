/* Absolute-form https:// targets on an egress listener (#19): the agent
 * sends `GET https://host/path` over its plain proxy connection and
 * swarmgate originates TLS to the target itself, after the allow-list, so
 * the call is traced and counted like any other instead of being a blind
 * CONNECT tunnel. The origin is a swarmgate with a TLS listener
 * (certificates from support/tls_pki.h) in front of a scripted upstream. */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/tls_pki.h"
#include "support/upstream_server.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sg_test_pki_t pki;
static us_server_t *up;
static sg_proc_t origin, gw;
static unsigned origin_port;

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
    const char *a = sg_proc_addr(&origin, "tls");
    origin_port = (unsigned)atoi(strrchr(a, ':') + 1);
}

static void start_egress(const char *tls)
{
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: egress, address: \"127.0.0.1:0\", mode: egress}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "egress: {allow: [\"127.0.0.1:%u\"]%s%s}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             origin_port, tls ? ", tls: " : "", tls ? tls : "");
}

static void stop(void)
{
    gw_stop(&gw);
    gw_stop(&origin);
    us_stop(up);
    sg_test_pki_remove(&pki);
}

TestSuite(egress_https, .init = start_origin, .fini = stop, .timeout = 60);

static int get(hc_conn_t *c, const char *path, hc_response_t *r)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET https://127.0.0.1:%u%s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", origin_port, path,
             origin_port);
    if (!hc_send_str(c, raw, 3000))
        return -1;
    return hc_read_response(c, r, 5000);
}

Test(egress_https, traced_over_verified_tls_on_pooled_connections)
{
    char tls[300];
    snprintf(tls, sizeof(tls), "{ca_file: %s}", pki.ca);
    start_egress(tls);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "egress"), 2000), 0);
    char first_id[64] = "";
    for (int i = 0; i < 3; i++) {
        hc_response_t r;
        cr_assert_eq(get(&c, "/echo", &r), HC_OK, "request %d", i);
        cr_assert_eq(r.status, 200, "request %d: %d %s", i, r.status, r.body);
        char id[64];
        cr_assert(hc_header(&r, "X-Trace-Id", id, sizeof(id)), "the agent gets a trace id");
        if (i == 0)
            snprintf(first_id, sizeof(first_id), "%s", id);
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_assert(us_wait_requests(up, 3, 5000));
    us_request_t rq;
    cr_assert(us_request(up, 0, &rq));
    char v[64];
    cr_assert(us_header(rq.head, "X-Trace-Id", v, sizeof(v)));
    cr_expect_str_eq(v, first_id, "the id went all the way to the origin's upstream");
    cr_assert(us_header(rq.head, "X-Forwarded-Proto", v, sizeof(v)));
    cr_expect_str_eq(v, "https", "the origin received TLS");
    us_request_free(&rq);
    double got = 0;
    cr_assert(obs_scrape_value(sg_proc_addr(&origin, "admin"),
                               "swarm_tls_handshakes_total{listener=\"tls\",result=\"success\",version=\"TLSv1.3\"}",
                               &got));
    cr_expect_eq(got, 1, "three requests, one pooled TLS connection: %g handshakes", got);
}

Test(egress_https, the_system_store_refuses_the_test_ca)
{
    start_egress(NULL);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "egress"), 2000), 0);
    hc_response_t r;
    cr_assert_eq(get(&c, "/", &r), HC_OK);
    cr_expect_eq(r.status, 502, "%d %s", r.status, r.body);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert(sg_proc_wait_stderr(&gw, "TLS handshake failed: unknown_ca", 1, 3000));
    cr_expect_eq(us_requests(up), 0);
}

Test(egress_https, tls_off_leaves_connect_as_the_only_way)
{
    start_egress("{enabled: false}");
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "egress"), 2000), 0);
    hc_response_t r;
    cr_assert_eq(get(&c, "/", &r), HC_OK);
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "https_target"), "%s", r.body);
    hc_response_free(&r);
    hc_close(&c);
}
