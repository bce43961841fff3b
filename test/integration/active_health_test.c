/* Active upstream health checks through the real binary (DESIGN.md
 * section 2): a server that stops is marked down by the control thread's
 * checks before any request is routed to it, a failing check (bad status,
 * timeout, garbage) makes readiness fail, and recovery (server restarted,
 * or the check fixed by a reload) brings it back. */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/jsoncheck.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_OPTS "health_check: {enabled: true, path: \"%s\", interval: 100ms, timeout: 100ms, fall: 2, rise: 2}"

static us_server_t *ua, *ub;
static sg_proc_t gw;

static void teardown(void)
{
    if (gw.pid > 0)
        sg_proc_stop(&gw, 10000);
    if (gw.dir[0])
        sg_proc_cleanup(&gw);
    us_stop(ua);
    us_stop(ub);
    ua = ub = NULL;
}

TestSuite(active_health, .fini = teardown, .timeout = 30);

static void series_of(char *out, size_t cap, const char *ups, unsigned port)
{
    snprintf(out, cap, "swarm_upstream_server_up{upstream=\"%s\",server=\"127.0.0.1:%u\"}", ups, port);
}

/* Clean exit: status 0 (ASan finds no leak) and the control loop had no
 * check handle left open. */
static void stop_clean(void)
{
    int st = sg_proc_stop(&gw, 10000);
    char *err = sg_proc_stderr(&gw);
    cr_assert_eq(st, 0, "exit status %d, stderr:\n%s", st, err);
    cr_assert(!strstr(err, "open handles"), "%s", err);
    free(err);
}

/* X-Upstream of GET path through the proxy ("" on a non-200). */
static int get_via(const char *api, const char *path, char *who, size_t cap)
{
    hc_response_t r;
    cr_assert_eq(obs_get(api, path, NULL, &r, 3000), HC_OK, "GET %s", path);
    int st = r.status;
    who[0] = '\0';
    if (!hc_header(&r, "X-Upstream", who, cap))
        who[0] = '\0';
    hc_response_free(&r);
    return st;
}

/* Polls /health/ready until it answers status; its last body into body. */
static bool wait_ready(const char *admin, int status, char *body, size_t cap, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        hc_response_t r;
        if (obs_get(admin, "/health/ready", NULL, &r, 2000) == HC_OK) {
            int st = r.status;
            snprintf(body, cap, "%s", r.body ? r.body : "");
            hc_response_free(&r);
            if (st == status)
                return true;
        }
    } while (sgt_now_ms() < deadline);
    return false;
}

Test(active_health, stopped_server_is_down_before_any_request)
{
    ua = us_start("A", false);
    ub = us_start("B", false);
    cr_assert(ua && ub);
    unsigned pb = us_port(ub);
    gw_start(&gw,
             "workers: 2\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", flush_interval: 10ms}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], connect_timeout: 300ms, " HC_OPTS "}\n"
             "routes: [{name: all, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(ua), pb, "/health");
    const char *api = sg_proc_addr(&gw, "api"), *admin = sg_proc_addr(&gw, "admin");
    cr_assert(api && admin);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 10000), "gateway ready");

    /* The check's exact request, on a connection of its own. */
    cr_assert(us_wait_requests(ub, 2, 3000), "B was checked");
    us_request_t q;
    cr_assert(us_request(ub, 0, &q));
    char want[256], v[128];
    snprintf(want, sizeof(want),
             "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\nUser-Agent: swarmgate-health\r\n\r\n",
             pb);
    cr_assert_str_eq(q.head, want);
    us_request_free(&q);
    cr_assert_geq(us_connections(ub), us_requests(ub), "one connection per check");
    char sa[160], sb[160];
    series_of(sa, sizeof(sa), "app", us_port(ua));
    series_of(sb, sizeof(sb), "app", pb);
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, sb, 1, 2000, &got), "B up: %g", got);

    /* B goes away: known down within ~1 s, before any request. */
    us_stop(ub);
    ub = NULL;
    long long t0 = sgt_now_ms();
    cr_assert(obs_wait_metric_eq(admin, sb, 0, 1500, &got), "B still %g", got);
    long long took = sgt_now_ms() - t0;
    cr_expect_leq(took, 1000, "down after %lld ms", took);
    cr_assert(obs_scrape_value(admin, sa, &got) && got == 1, "A %g", got);
    char tag[200];
    snprintf(tag, sizeof(tag), "upstream app server 127.0.0.1:%u: active check failed 2 times: down", pb);
    cr_assert(sg_proc_wait_stderr(&gw, tag, 1, 2000), "down logged");
    /* Readiness: one healthy server is enough. */
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 2000));

    /* Every request goes to A: no 502, no retry needed. */
    int base = us_requests(ua);
    for (int i = 0; i < 20; i++) {
        int st = get_via(api, "/x", v, sizeof(v));
        cr_assert_eq(st, 200, "request %d: %d", i, st);
        cr_assert_str_eq(v, "A", "request %d went to %s", i, v);
    }
    cr_assert_geq(us_requests(ua) - base, 20);
    cr_assert(obs_scrape_value(admin, "swarm_upstream_connect_errors_total{upstream=\"app\"}", &got) ? got == 0 : true,
              "connect errors %g", got);

    /* B comes back where it was: up after `rise` good checks, and used. */
    ub = us_start_port("B", false, (uint16_t)pb);
    cr_assert(ub, "B restarted on %u", pb);
    cr_assert(obs_wait_metric_eq(admin, sb, 1, 3000, &got), "B back: %g", got);
    snprintf(tag, sizeof(tag), "upstream app server 127.0.0.1:%u: active check passed 2 times: up", pb);
    cr_assert(sg_proc_wait_stderr(&gw, tag, 1, 2000), "up logged");
    bool saw_b = false;
    for (int i = 0; i < 20 && !saw_b; i++) {
        cr_assert_eq(get_via(api, "/x", v, sizeof(v)), 200);
        saw_b = strcmp(v, "B") == 0;
    }
    cr_assert(saw_b, "B serves again");
    stop_clean();
}

/* The gateway config of the readiness test: one server, four groups whose
 * checks ask it different things. */
static char *bad_checks_yaml(unsigned port, const char *p500, const char *pslow, const char *pbad)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "workers: 1\n"
                     "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
                     "admin: {address: \"127.0.0.1:0\"}\n"
                     "log: {access: \"off\", flush_interval: 10ms}\n"
                     "upstreams:\n"
                     "  good: {servers: [\"127.0.0.1:%u\"], " HC_OPTS "}\n"
                     "  e500: {servers: [\"127.0.0.1:%u\"], " HC_OPTS "}\n"
                     "  slow: {servers: [\"127.0.0.1:%u\"], " HC_OPTS "}\n"
                     "  junk: {servers: [\"127.0.0.1:%u\"], " HC_OPTS "}\n"
                     "routes: [{name: all, upstream: good}]\n"
                     "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
                     port, "/health", port, p500, port, pslow, port, pbad);
    cr_assert(n > 0);
    return s;
}

Test(active_health, failing_checks_make_unready_until_fixed)
{
    ua = us_start("A", false);
    cr_assert(ua);
    unsigned port = us_port(ua);
    char *yaml = bad_checks_yaml(port, "/status?code=500", "/slow?ms=1500", "/bad");
    sg_proc_t *p = &gw;
    cr_assert_eq(sg_proc_start(p, yaml, 10000), 0, "gateway started");
    free(yaml);
    const char *admin = sg_proc_addr(p, "admin");
    cr_assert(admin);

    /* 500, a timeout and garbage are all failures; readiness names them. */
    char body[4096], v[512];
    cr_assert(wait_ready(admin, 503, body, sizeof(body), 3000), "ready: %s", body);
    const char *names[] = {"e500", "slow", "junk"};
    char series[160];
    double got = -1;
    for (size_t i = 0; i < 3; i++) {
        series_of(series, sizeof(series), names[i], port);
        cr_assert(obs_wait_metric_eq(admin, series, 0, 3000, &got), "%s: %g", names[i], got);
    }
    cr_assert(wait_ready(admin, 503, body, sizeof(body), 3000));
    cr_assert(sg_test_json_get(body, strlen(body), "failing", 0, v, sizeof(v)) > 0, "%s", body);
    cr_assert_str_eq(v, "[\"upstream:e500\",\"upstream:slow\",\"upstream:junk\"]", "%s", body);
    series_of(series, sizeof(series), "good", port);
    cr_assert(obs_scrape_value(admin, series, &got) && got == 1, "good %g", got);

    /* Fix the checks by a reload: the plan follows the new generation,
     * the servers keep their slots and come up after `rise` successes. */
    yaml = bad_checks_yaml(port, "/health", "/health", "/health");
    char tmp[256];
    cr_assert_eq(sg_proc_write_file(p, "next.yaml", yaml, tmp, sizeof(tmp)), 0);
    free(yaml);
    cr_assert_eq(rename(tmp, p->cfg_path), 0);
    cr_assert_eq(sg_proc_signal(p, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(p, "config reloaded from", 1, 5000), "reload logged");
    cr_assert(wait_ready(admin, 200, body, sizeof(body), 3000), "ready again: %s", body);
    for (size_t i = 0; i < 3; i++) {
        series_of(series, sizeof(series), names[i], port);
        cr_assert(obs_wait_metric_eq(admin, series, 1, 2000, &got), "%s: %g", names[i], got);
    }
    char tag[200];
    snprintf(tag, sizeof(tag), "upstream e500 server 127.0.0.1:%u: active check passed 2 times: up", port);
    cr_assert(sg_proc_wait_stderr(p, tag, 1, 2000), "up logged");
    stop_clean();
}
