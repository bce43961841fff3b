/* The descriptor cap through the real binary (issue #15, item 8): client
 * connections are capped below RLIMIT_NOFILE, with a reserve for upstream
 * connections, the admin listener and files. The binary is started with a
 * low soft RLIMIT_NOFILE (inherited from this process, lowered only around
 * the start), so filling the cap takes few connections. At the cap: new
 * client connections are reset at once and counted, the admin listener
 * still answers /health/live, and requests on connections already open
 * still reach the upstream (new upstream connections included). */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define NOFILE 256
#define MAX_CONNS 256

Test(conn_cap, clients_capped_below_rlimit_admin_and_requests_still_served, .timeout = 60)
{
    us_server_t *up = us_start("u1", false);
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_geq(old.rlim_cur, (rlim_t)(2 * MAX_CONNS), "this test needs %d descriptors", 2 * MAX_CONNS);
    low = old;
    low.rlim_cur = NOFILE;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 2\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\", backlog: 1024}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", flush_interval: 10ms}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"], keepalive: 1}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    const char *api = sg_proc_addr(&gw, "api"), *admin = sg_proc_addr(&gw, "admin");

    /* The cap: logged and exported, well below the limit. */
    double cap = 0;
    cr_assert(obs_scrape_value(admin, "swarm_connections_limit", &cap), "swarm_connections_limit missing");
    cr_log_info("connection cap %g under RLIMIT_NOFILE %d", cap, NOFILE);
    cr_assert(cap >= 16 && cap <= NOFILE / 2, "cap %g with RLIMIT_NOFILE %d", cap, NOFILE);
    cr_assert(sg_proc_wait_stderr(&gw, "client connections at once (RLIMIT_NOFILE 256", 1, 3000));
    int n_cap = (int)cap;
    cr_assert_leq(n_cap + 8, MAX_CONNS);

    /* Fill it: each connection makes one request (so both workers hold some
     * and the pooled upstream connections exist), then stays open. */
    static hc_conn_t c[MAX_CONNS];
    for (int i = 0; i < n_cap; i++) {
        cr_assert_eq(hc_connect(&c[i], api, 2000), 0, "connection %d of %d", i, n_cap);
        cr_assert(hc_send_str(&c[i], "GET /fill HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c[i], &r, 3000), HC_OK, "connection %d of %d served", i, n_cap);
        cr_assert_eq(r.status, 200);
        hc_response_free(&r);
    }
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, "swarm_http_connections_active{listener=\"api\"}", cap, 3000, &got),
              "%g connections held, cap %g", got, cap);

    /* Beyond the cap: reset at once, counted. */
    enum { EXTRA = 5 };
    hc_conn_t x[EXTRA];
    for (int i = 0; i < EXTRA; i++) {
        /* The kernel completes the handshake; the reset may come before
         * hc_connect returns (then it reports the error). */
        if (hc_connect(&x[i], api, 2000) != 0)
            continue;
        hc_send_str(&x[i], "GET /over HTTP/1.1\r\nHost: x\r\n\r\n", 500); /* may already fail: reset */
        cr_assert(hc_wait_closed(&x[i], 3000), "connection %d over the cap was not closed", i);
        hc_close(&x[i]);
    }
    cr_assert(obs_wait_metric_ge(admin, "swarm_connections_refused_total{listener=\"api\",reason=\"limit\"}", EXTRA,
                                 3000, &got),
              "refused %g", got);
    cr_assert(sg_proc_wait_stderr(&gw, "connection cap reached", 1, 3000));

    /* The admin listener keeps answering. */
    for (int i = 0; i < 10; i++)
        cr_assert(obs_wait_status(admin, "/health/live", 200, 2000), "/health/live at the cap");

    /* Requests on open connections still reach the upstream, several at
     * once: more upstream connections than the pools hold (keepalive 1). */
    enum { BUSY = 12 };
    for (int i = 0; i < BUSY; i++)
        cr_assert(hc_send_str(&c[i], "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    for (int i = 0; i < BUSY; i++) {
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c[i], &r, 5000), HC_OK, "request %d at the cap", i);
        cr_assert_eq(r.status, 200, "request %d at the cap: %d %s", i, r.status, r.body);
        hc_response_free(&r);
    }

    /* A slot freed: a new connection is served again. */
    hc_close(&c[n_cap - 1]);
    cr_assert(obs_wait_metric_eq(admin, "swarm_http_connections_active{listener=\"api\"}", cap - 1, 3000, &got));
    hc_response_t r;
    cr_assert_eq(hc_request(api, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);

    for (int i = 0; i < n_cap - 1; i++)
        hc_close(&c[i]);
    gw_stop(&gw);
    us_stop(up);
}
