#include "sg/health.h"
#include "sg/pg.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>

/* A runtime with two workers and one upstream group of two servers. */
static sg_config_t cfg;
static sg_upstream_conf_t up;
static sg_hostport_t servers[2];
static sg_worker_pub_t workers[2];
static sg_server_pub_t srv[2];
static sg_server_pub_t *srv_rows[1] = {srv};
static sg_runtime_t rt;
static char body[8192];
static size_t len;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    memset(workers, 0, sizeof(workers));
    memset(srv, 0, sizeof(srv));
    memset(&rt, 0, sizeof(rt));
    up.name = "platform";
    up.servers = servers;
    up.n_servers = 2;
    cfg.upstreams = &up;
    cfg.n_upstreams = 1;
    atomic_store(&rt.config, &cfg);
    rt.n_workers = 2;
    rt.workers = workers;
    rt.servers = srv_rows;
    for (int i = 0; i < 2; i++) {
        atomic_store(&workers[i].heartbeat_ms, 1000);
        atomic_store(&workers[i].is_listening, true);
    }
}

static sg_health_inputs_t inputs(void)
{
    sg_health_inputs_t in = {.now_ms = 1500, .stale_ms = 1000, .pg_enabled = false};
    return in;
}

TestSuite(health, .init = setup, .timeout = 10);

Test(health, paths_map_to_kinds)
{
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/health")), SG_HEALTH_ALL);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/health/live")), SG_HEALTH_LIVE);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/livez")), SG_HEALTH_LIVE);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/health/ready")), SG_HEALTH_READY);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/readyz?verbose")), SG_HEALTH_READY);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/healthz")), -1);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/health/readyx")), -1);
    cr_assert_eq(sg_health_kind_for_path(SG_STR("/metrics")), -1);
}

Test(health, all_fine_is_200_everywhere)
{
    sg_health_inputs_t in = inputs();
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_LIVE, body, sizeof(body), &len), 200);
    cr_assert(strstr(body, "\"status\":\"ok\""), "%s", body);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
    cr_assert(strstr(body, "\"status\":\"ok\""), "%s", body);
    cr_assert(strstr(body, "upstream:platform"), "%s", body);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_ALL, body, sizeof(body), &len), 200);
    cr_assert_eq(strlen(body), len);
}

Test(health, stuck_worker_is_named_and_not_live)
{
    sg_health_inputs_t in = inputs();
    in.now_ms = 1000 + 1001; /* worker heartbeats at 1000, stale after 1000 ms */
    atomic_store(&workers[0].heartbeat_ms, in.now_ms);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_LIVE, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"stuck\":[\"worker 1\"]"), "%s", body);
    /* Liveness is not readiness. */
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
}

Test(health, draining_is_unready_but_live)
{
    sg_health_inputs_t in = inputs();
    atomic_store(&rt.is_draining, true);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"failing\":[\"draining\"]"), "%s", body);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_LIVE, body, sizeof(body), &len), 200);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_ALL, body, sizeof(body), &len), 503);
}

Test(health, postgres_counts_only_when_required)
{
    sg_health_inputs_t in = inputs();
    in.pg_enabled = true;
    in.pg_up = false;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
    in.pg_required = true;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"failing\":[\"postgres\"]"), "%s", body);
    in.pg_up = true;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
}

/* A built-in query that fails is as bad as no database when Postgres is
 * required; it is shown, but not failing, when it is not. */
Test(health, failing_builtin_query_is_unready_only_when_required)
{
    sg_health_inputs_t in = inputs();
    in.pg_enabled = true;
    in.pg_up = true;
    in.pg_failing = 1u << SG_PG_Q_TICKETS_TOTAL | 1u << SG_PG_Q_VM_MAX;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200, "%s", body);
    cr_assert(strstr(body, "{\"name\":\"postgres:swarm_vm_max\",\"ok\":true,\"last_run_ok\":false,\"required\":false}"),
              "%s", body);
    in.pg_required = true;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"failing\":[\"postgres:swarm_tickets_total\",\"postgres:swarm_vm_max\"]"), "%s", body);
    cr_assert(strstr(body, "{\"name\":\"postgres\",\"ok\":true,\"up\":true"), "%s", body);
    in.pg_failing = 0;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
}

Test(health, upstream_with_no_healthy_server_is_unready)
{
    sg_health_inputs_t in = inputs();
    atomic_store(&srv[0].ejected_until_ms, in.now_ms + 10);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
    atomic_store(&srv[1].active_down, true);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"failing\":[\"upstream:platform\"]"), "%s", body);
    cr_assert(strstr(body, "\"healthy_servers\":0"), "%s", body);
    /* The ejection runs out: ready again. */
    in.now_ms += 10;
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 200);
}

Test(health, not_listening_is_unready)
{
    sg_health_inputs_t in = inputs();
    atomic_store(&workers[1].is_listening, false);
    cr_assert_eq(sg_health_render(&rt, &in, SG_HEALTH_READY, body, sizeof(body), &len), 503);
    cr_assert(strstr(body, "\"listening\""), "%s", body);
}

Test(health, output_is_truncated_safely)
{
    sg_health_inputs_t in = inputs();
    char small[16];
    sg_health_render(&rt, &in, SG_HEALTH_ALL, small, sizeof(small), &len);
    cr_assert_lt(len, sizeof(small));
    cr_assert_eq(small[len], '\0');
}
