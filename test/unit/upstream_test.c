/* Server choice and passive health of src/net/upstream.c, through the
 * folder-private API (net_int.h): no sockets, a hand-built upstream. */
#include "net/net_int.h"

#include <criterion/criterion.h>

#define N 3

static sg_worker_t w;
static sg_upstream_conf_t conf;
static sg_hostport_t hps[N];
static sg_upstream_t ups;
static sg_upserver_t servers[N];
static _Alignas(SG_CACHELINE) sg_server_pub_t pubs[N];

static void setup(void)
{
    memset(&w, 0, sizeof(w));
    memset(&conf, 0, sizeof(conf));
    memset(&ups, 0, sizeof(ups));
    memset(servers, 0, sizeof(servers));
    memset(pubs, 0, sizeof(pubs));
    conf.name = "app";
    conf.servers = hps;
    conf.n_servers = N;
    conf.max_fails = 2;
    conf.fail_timeout_ms = 1000;
    ups.w = &w;
    ups.conf = &conf;
    ups.servers = servers;
    ups.n_servers = N;
    for (int i = 0; i < N; i++) {
        hps[i].host = "127.0.0.1";
        hps[i].port = (uint16_t)(1000 + i);
        hps[i].is_ip_literal = true;
        servers[i].hp = &hps[i];
        servers[i].ups = &ups;
        servers[i].idx = i;
        servers[i].pub = &pubs[i];
        servers[i].is_resolved = true;
        sg_list_init(&servers[i].idle);
        snprintf(servers[i].name, sizeof(servers[i].name), "s%d", i);
    }
}

TestSuite(upstream, .init = setup, .timeout = 5);

Test(upstream, round_robin_cycles_all_servers)
{
    bool down;
    int seen[N] = {0};
    for (int i = 0; i < 3 * N; i++) {
        int32_t s = sg__upstream_pick(&ups, NULL, 0, 100, &down);
        cr_assert_geq(s, 0);
        cr_assert_not(down);
        seen[s]++;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 3);
}

Test(upstream, tried_servers_are_skipped)
{
    bool down;
    int32_t tried[N];
    size_t n_tried = 0;
    for (int i = 0; i < N; i++) {
        int32_t s = sg__upstream_pick(&ups, tried, n_tried, 100, &down);
        cr_assert_geq(s, 0);
        for (size_t k = 0; k < n_tried; k++)
            cr_assert_neq(tried[k], s);
        tried[n_tried++] = s;
    }
    cr_assert_eq(sg__upstream_pick(&ups, tried, n_tried, 100, &down), -1);
    cr_assert_not(down, "servers are healthy, only tried");
}

Test(upstream, least_in_flight_prefers_idle_server)
{
    conf.balance = SG_BALANCE_LEAST_IN_FLIGHT;
    servers[0].in_flight = 5;
    servers[1].in_flight = 1;
    servers[2].in_flight = 3;
    bool down;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(sg__upstream_pick(&ups, NULL, 0, 100, &down), 1);
    const int32_t tried1[] = {1};
    cr_assert_eq(sg__upstream_pick(&ups, tried1, 1, 100, &down), 2);
}

Test(upstream, consecutive_failures_eject_until_fail_timeout)
{
    sg__server_fail(&servers[0], 1000);
    cr_assert_eq(atomic_load(&pubs[0].ejected_until_ms), 0, "one failure is not enough");
    sg__server_ok(&servers[0]);
    sg__server_fail(&servers[0], 1000);
    cr_assert_eq(atomic_load(&pubs[0].ejected_until_ms), 0, "success reset the count");
    sg__server_fail(&servers[0], 1000);
    cr_assert_eq(atomic_load(&pubs[0].ejected_until_ms), 2000);
    bool down;
    for (int i = 0; i < 6; i++)
        cr_assert_neq(sg__upstream_pick(&ups, NULL, 0, 1500, &down), 0, "ejected server picked");
    /* restored after fail_timeout */
    int hits = 0;
    for (int i = 0; i < 6; i++)
        hits += sg__upstream_pick(&ups, NULL, 0, 2000, &down) == 0;
    cr_assert_eq(hits, 2);
}

Test(upstream, all_ejected_or_down_reports_all_down)
{
    for (int i = 0; i < N; i++)
        atomic_store(&pubs[i].ejected_until_ms, 5000);
    atomic_store(&pubs[0].ejected_until_ms, 0);
    atomic_store(&pubs[0].active_down, true);
    bool down = false;
    cr_assert_eq(sg__upstream_pick(&ups, NULL, 0, 100, &down), -1);
    cr_assert(down);
}

/* The tried set names servers exactly: with a bit mask taken modulo 32,
 * trying server 1 also skipped server 33 (#17). */
Test(upstream, tried_set_does_not_alias_servers_32_apart)
{
    enum { M = 40 };
    static sg_hostport_t mhps[M];
    static sg_upserver_t ms[M];
    static _Alignas(SG_CACHELINE) sg_server_pub_t mpubs[M];
    memset(ms, 0, sizeof(ms));
    memset(mpubs, 0, sizeof(mpubs));
    for (int i = 0; i < M; i++) {
        mhps[i] = hps[0];
        ms[i].hp = &mhps[i];
        ms[i].ups = &ups;
        ms[i].idx = i;
        ms[i].pub = &mpubs[i];
        ms[i].is_resolved = true;
        sg_list_init(&ms[i].idle);
        /* only servers 1 and 33 are healthy */
        if (i != 1 && i != 33)
            atomic_store(&mpubs[i].active_down, true);
    }
    conf.n_servers = M;
    ups.servers = ms;
    ups.n_servers = M;
    bool down;
    const int32_t tried[] = {1};
    for (int k = 0; k < 3; k++)
        cr_assert_eq(sg__upstream_pick(&ups, tried, 1, 100, &down), 33, "server 33 is not server 1");
    const int32_t both[] = {1, 33};
    cr_assert_eq(sg__upstream_pick(&ups, both, 2, 100, &down), -1);
    cr_assert_not(down);
}
