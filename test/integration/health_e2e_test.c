/* Issue 5, health end to end through the real binary: readiness holds
 * while the only upstream server fails (passive health never ejects it)
 * and follows the drain, liveness holds
 * under load, HEAD works, and /health* is served on a proxy listener only
 * with serve_health (DESIGN.md section 6). */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/jsoncheck.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static us_server_t *up;
static sg_proc_t gw;
static const char *api, *admin;

static void boot(const char *upstream_opts, const char *shutdown_opts, const char *listeners)
{
    if (!up)
        up = us_start("u1", false);
    cr_assert(up);
    gw_start(&gw,
             "workers: 2\n"
             "listeners: %s\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", flush_interval: 10ms}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 3s%s}\n"
             "routes: [{name: all, upstream: app}]\n"
             "shutdown: %s\n",
             listeners ? listeners : "[{name: api, address: \"127.0.0.1:0\"}]", us_port(up),
             upstream_opts ? upstream_opts : "",
             shutdown_opts ? shutdown_opts : "{drain_delay: 0ms, drain_timeout: 2s}");
    api = sg_proc_addr(&gw, "api");
    admin = sg_proc_addr(&gw, "admin");
    cr_assert(api && admin);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 10000), "gateway ready");
}

static void stop_clean(void)
{
    int st = sg_proc_stop(&gw, 10000);
    char *err = sg_proc_stderr(&gw);
    cr_assert_eq(st, 0, "exit status %d, stderr:\n%s", st, err);
    free(err);
}

static void teardown(void)
{
    if (gw.dir[0])
        sg_proc_cleanup(&gw);
    us_stop(up);
    up = NULL;
}

TestSuite(health_e2e, .fini = teardown, .timeout = 40);

/* GET path on addr: status, JSON body checked strictly (copied to body). */
static int health_get(const char *addr, const char *path, char *body, size_t cap)
{
    hc_response_t r;
    cr_assert_eq(obs_get(addr, path, NULL, &r, 3000), HC_OK, "GET %s", path);
    char err[128], ct[64];
    cr_assert(hc_header(&r, "Content-Type", ct, sizeof(ct)) && !strcmp(ct, "application/json"), "%s", r.head);
    cr_assert(sg_test_json_valid(r.body, r.body_len, err, sizeof(err)), "%s: %s: %s", path, err, r.body);
    if (body)
        snprintf(body, cap, "%s", r.body);
    int st = r.status;
    hc_response_free(&r);
    return st;
}

/* Polls ready until it answers `status`; the last body into body. */
static bool wait_ready(int status, char *body, size_t cap, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        if (health_get(admin, "/health/ready", body, cap) == status)
            return true;
    } while (sgt_now_ms() < deadline);
    return false;
}

/* Passive health never ejects the only server of a group (issue #15: a
 * client could make every instance unready with a few bad requests), so
 * readiness holds while it fails; active checks are what take it out. */
Test(health_e2e, ready_holds_while_the_only_server_fails_and_comes_back)
{
    boot(", max_fails: 1, fail_timeout: 1500ms", NULL, NULL);
    uint16_t port = us_port(up);
    char body[4096];
    cr_assert_eq(health_get(admin, "/health/ready", body, sizeof(body)), 200);
    cr_assert(strstr(body, "\"name\":\"upstream:app\",\"ok\":true"), "%s", body);

    us_stop(up); /* the only server goes away */
    up = NULL;
    hc_response_t r;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(obs_get(api, "/x", NULL, &r, 3000), HC_OK);
        cr_assert_eq(r.status, 502, "a failing request is tried, not refused with 503");
        hc_response_free(&r);
    }
    cr_assert(sg_proc_wait_stderr(&gw, "kept in service after 1 failures", 1, 3000));
    cr_assert_eq(health_get(admin, "/health/ready", body, sizeof(body)), 200, "%s", body);
    cr_assert_eq(health_get(admin, "/health/live", NULL, 0), 200);
    char series[128];
    snprintf(series, sizeof(series), "swarm_upstream_server_up{upstream=\"app\",server=\"127.0.0.1:%u\"}", port);
    double got = -1;
    cr_assert(obs_scrape_value(admin, series, &got) && got == 1, "%s = %g", series, got);

    up = us_start_port("u1", false, port); /* back where it was */
    cr_assert(up, "upstream restarted on port %u", port);
    cr_assert_eq(obs_get(api, "/x", NULL, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "served at once: the server was never out");
    hc_response_free(&r);
    cr_assert(wait_ready(200, body, sizeof(body), 1000), "%s", body);
    stop_clean();
}

typedef struct load {
    const char *addr;
    atomic_bool stop;
    atomic_int done;
    atomic_int bad;
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    hc_conn_t c;
    if (hc_connect(&c, l->addr, 2000) != 0) {
        atomic_fetch_add(&l->bad, 1);
        return NULL;
    }
    while (!atomic_load(&l->stop)) {
        hc_response_t r;
        if (!hc_send_str(&c, "GET /gen?n=65536 HTTP/1.1\r\nHost: t\r\n\r\n", 2000) ||
            hc_read_response(&c, &r, 3000) != HC_OK || r.status != 200 || r.body_len != 65536) {
            atomic_fetch_add(&l->bad, 1);
            hc_response_free(&r);
            break;
        }
        hc_response_free(&r);
        atomic_fetch_add(&l->done, 1);
    }
    hc_close(&c);
    return NULL;
}

Test(health_e2e, live_stays_200_under_load)
{
    boot(NULL, NULL, NULL);
    load_t l = {.addr = api};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, load_main, &l);
    /* Polls while the load runs: wait (deadline) until the load made 40
     * requests after the first poll and at least 20 polls were made, so the
     * polls really overlapped the load; each is answered within a second
     * (the control thread answers, never a busy worker). */
    long long deadline = sgt_now_ms() + 20000, worst = 0;
    while (atomic_load(&l.done) < 1 && !atomic_load(&l.bad) && sgt_now_ms() < deadline)
        cr_assert_eq(health_get(admin, "/health/live", NULL, 0), 200, "before the load");
    int polls = 0, done0 = atomic_load(&l.done);
    while ((polls < 20 || atomic_load(&l.done) - done0 < 40) && !atomic_load(&l.bad) && sgt_now_ms() < deadline) {
        long long t0 = sgt_now_ms();
        cr_assert_eq(health_get(admin, polls % 2 ? "/livez" : "/health/live", NULL, 0), 200, "poll %d", polls);
        long long dt = sgt_now_ms() - t0;
        worst = dt > worst ? dt : worst;
        cr_assert_lt(dt, 1000, "poll %d answered in %lld ms", polls, dt);
        polls++;
    }
    int during = atomic_load(&l.done) - done0;
    atomic_store(&l.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_log_info("%d polls (worst %lld ms) during %d load requests", polls, worst, during);
    cr_assert_eq(atomic_load(&l.bad), 0, "load requests all fine");
    cr_assert_geq(during, 40, "load ran during the polls: %d requests", during);
    cr_assert_geq(polls, 20);
    stop_clean();
}

Test(health_e2e, head_ready_has_no_body)
{
    boot(NULL, NULL, NULL);
    hc_response_t g;
    cr_assert_eq(obs_get(admin, "/health/ready", NULL, &g, 3000), HC_OK);
    char glen[32];
    cr_assert(hc_header(&g, "Content-Length", glen, sizeof(glen)));
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, admin, 2000), 0);
    cr_assert(hc_send_str(
        &c, "HEAD /health/ready HTTP/1.1\r\nHost: t\r\n\r\nGET /health/live HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, true, false, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    char v[64];
    cr_assert(hc_header(&r, "Content-Length", v, sizeof(v)));
    cr_assert_str_eq(v, glen, "HEAD announces the GET's length");
    cr_assert(hc_header(&r, "X-Trace-Id", v, sizeof(v)));
    hc_response_free(&r);
    /* The next bytes are the next response's head: no body after the HEAD. */
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert(!strncmp(r.body, "{\"status\":\"ok\"", 14), "%s", r.body);
    hc_response_free(&r);
    hc_close(&c);
    hc_response_free(&g);
    /* Other methods are refused. */
    cr_assert_eq(hc_request(admin, "POST /health/ready HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", &r, 3000),
                 HC_OK);
    cr_assert_eq(r.status, 405);
    hc_response_free(&r);
    stop_clean();
}

Test(health_e2e, served_on_proxy_listener_only_with_serve_health)
{
    boot(NULL, NULL,
         "[{name: api, address: \"127.0.0.1:0\", serve_health: true}, {name: plain, address: \"127.0.0.1:0\"}]");
    static const char *paths[] = {"/health", "/health/live", "/health/ready", "/livez", "/readyz"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char body[4096];
        cr_assert_eq(health_get(api, paths[i], body, sizeof(body)), 200, "%s", paths[i]);
        cr_assert(!strncmp(body, "{\"status\":\"ok\"", 14), "%s: %s", paths[i], body);
    }
    cr_assert_eq(us_requests(up), 0, "answered locally");
    /* Without serve_health the path is proxied like any other. */
    const char *plain = sg_proc_addr(&gw, "plain");
    hc_response_t r;
    cr_assert_eq(obs_get(plain, "/health/ready", NULL, &r, 3000), HC_OK);
    char v[32];
    cr_assert(hc_header(&r, "X-Upstream", v, sizeof(v)), "%s", r.head);
    cr_assert_str_eq(r.body, "hello");
    hc_response_free(&r);
    cr_assert_eq(us_requests(up), 1);
    stop_clean();
}

Test(health_e2e, draining_is_unready_but_live)
{
    boot(NULL, "{drain_delay: 1s, drain_timeout: 2s}", NULL);
    cr_assert_eq(sg_proc_signal(&gw, SIGTERM), 0);
    long long t0 = sgt_now_ms();
    char body[4096];
    cr_assert(wait_ready(503, body, sizeof(body), 900), "unready at once after SIGTERM: %s", body);
    char v[256];
    cr_assert(sg_test_json_get(body, strlen(body), "failing", 0, v, sizeof(v)) > 0, "%s", body);
    cr_assert(strstr(v, "\"draining\""), "draining in the failing list: %s", v);
    cr_assert_eq(health_get(admin, "/health/live", NULL, 0), 200, "a draining process is alive");
    hc_response_t r;
    cr_assert_eq(obs_get(admin, "/metrics", NULL, &r, 2000), HC_OK);
    cr_assert_eq(r.status, 200, "the admin listener answers during the drain");
    hc_response_free(&r);
    cr_assert_eq(obs_get(api, "/x", NULL, &r, 2000), HC_OK);
    cr_assert_eq(r.status, 200, "listeners stay open during drain_delay");
    hc_response_free(&r);
    cr_assert_lt(sgt_now_ms() - t0, 1000, "all of that within the drain delay");
    cr_assert(sg_proc_wait_exit(&gw, 8000), "exits after the drain");
    cr_assert_eq(gw.exit_status, 0);
}
