/* Upstream pools at their defaults (#18): the pool keeps what recent load
 * needed. 100 requests in flight at once open 100 upstream connections;
 * the next 100 at once reuse every one of them (a fixed cap of 64 closed
 * 36 and opened them again on every burst). */
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CLIENTS 100

static void burst(const char *addr)
{
    static hc_conn_t c[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        cr_assert_eq(hc_connect(&c[i], addr, 3000), 0);
        cr_assert(hc_send_str(&c[i], "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n", 3000));
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c[i], &r, 10000), HC_OK, "client %d", i);
        cr_assert_eq(r.status, 200);
        hc_response_free(&r);
        hc_close(&c[i]);
    }
}

Test(pool_defaults, a_burst_reuses_every_connection_of_the_last, .timeout = 60)
{
    us_server_t *up = us_start("u1", false);
    cr_assert(up);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    burst(addr);
    int first = us_connections(up);
    /* every request was in flight at once (each waits 300 ms upstream) */
    cr_assert_geq(first, N_CLIENTS * 9 / 10, "%d upstream connections for %d concurrent requests", first, N_CLIENTS);
    burst(addr);
    int second = us_connections(up) - first;
    cr_assert_eq(second, 0, "the second burst opened %d new upstream connections", second);
    gw_stop(&gw);
    us_stop(up);
}
