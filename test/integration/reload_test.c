/* Live reload and graceful drain through the real binary: SIGHUP and
 * POST /-/reload under keep-alive load (no failed request, new requests
 * follow the new routes), broken and restart-only configs refused and
 * counted, an in-flight request finishing on its old generation, no leak
 * of old generations (LeakSanitizer at exit in the Debug build), and the
 * drain: readiness 503, Connection: close, in-flight request done,
 * listener closed after the delay, exit 0. */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* /a/ goes to `a_to` (strip_prefix: the upstream sees the rest); the rest
 * to A. `listeners` is the YAML flow list, `admin` the admin address, `log`
 * the log mapping, `extra` more top-level YAML (may be NULL). */
static char *config_full(unsigned port_a, unsigned port_b, const char *a_to, const char *listeners, const char *admin,
                         const char *log, const char *extra)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "workers: 2\n"
                     "listeners: %s\n"
                     "admin: {address: \"%s\"}\n"
                     "log: %s\n"
                     "upstreams:\n"
                     "  A: {servers: [\"127.0.0.1:%u\"]}\n"
                     "  B: {servers: [\"127.0.0.1:%u\"]}\n"
                     "routes:\n"
                     "  - {name: a, match: {prefix: /a/}, strip_prefix: true, upstream: %s}\n"
                     "  - {name: rest, upstream: A}\n"
                     "%s",
                     listeners, admin, log, port_a, port_b, a_to, extra ? extra : "");
    cr_assert(n > 0);
    return s;
}

static char *config_listeners(unsigned port_a, unsigned port_b, const char *a_to, const char *listeners,
                              const char *admin)
{
    return config_full(port_a, port_b, a_to, listeners, admin, "{access: \"off\"}", NULL);
}

static char *config_text(unsigned port_a, unsigned port_b, const char *a_to, const char *extra)
{
    return config_full(port_a, port_b, a_to, "[{name: api, address: \"127.0.0.1:0\"}]", "127.0.0.1:0",
                       "{access: \"off\"}", extra);
}

/* Replaces the config file the process was started with (atomically). */
static void write_config(sg_proc_t *gw, const char *text)
{
    char tmp[256], out[256];
    cr_assert_eq(sg_proc_write_file(gw, "next.yaml", text, tmp, sizeof(tmp)), 0);
    snprintf(out, sizeof(out), "%s", gw->cfg_path);
    cr_assert_eq(rename(tmp, out), 0);
}

/* POST /-/reload. The binary writes its ports file (sg_proc_start's
 * signal) a moment before the admin listener takes reloads: until then it
 * answers 503 "starting", and the request is sent again (deadline). */
static int post_reload(sg_proc_t *gw, hc_response_t *r)
{
    long long deadline = sgt_now_ms() + 5000;
    for (;;) {
        int e = hc_request(sg_proc_addr(gw, "admin"),
                           "POST /-/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n", r, 10000);
        if (e != HC_OK || r->status != 503 || !strstr(r->body, "\"starting\"") || sgt_now_ms() >= deadline)
            return e;
        hc_response_free(r);
        sgt_nap_ms(10); /* polling interval */
    }
}

/* Which upstream answered a fresh-connection GET of path ("" on failure). */
static void upstream_of(sg_proc_t *gw, const char *path, char *who, size_t cap)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    hc_response_t r;
    who[0] = '\0';
    if (hc_request(sg_proc_addr(gw, "api"), raw, &r, 5000) != HC_OK)
        return;
    if (r.status == 200)
        hc_header(&r, "X-Upstream", who, cap);
    hc_response_free(&r);
}

/* Whether upstream s recorded a request for `path` (searched from the end). */
static bool server_saw(us_server_t *s, const char *path)
{
    char line[256];
    snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\n", path);
    int n = us_requests(s);
    for (int i = n - 1; i >= 0 && i >= n - 5000; i--) {
        us_request_t q;
        if (!us_request(s, i, &q))
            continue;
        bool hit = strncmp(q.head, line, strlen(line)) == 0;
        us_request_free(&q);
        if (hit)
            return true;
    }
    return false;
}

/* Waits (deadline) until fresh requests to /a/<tag> reach `want`, then
 * checks a few more land there too and that `want` recorded them. */
static void expect_routed(sg_proc_t *gw, us_server_t *want, const char *want_name, int round)
{
    char path[128], who[32];
    long long deadline = sgt_now_ms() + 3000;
    int k = 0;
    do {
        snprintf(path, sizeof(path), "/a/probe-%d-%d", round, k++);
        upstream_of(gw, path, who, sizeof(who));
    } while (strcmp(who, want_name) != 0 && sgt_now_ms() < deadline);
    cr_assert_str_eq(who, want_name, "round %d: /a/ should reach %s", round, want_name);
    for (int j = 0; j < 4; j++) {
        snprintf(path, sizeof(path), "/a/after-%d-%d", round, j);
        upstream_of(gw, path, who, sizeof(who));
        cr_assert_str_eq(who, want_name, "round %d: request %d after the switch went to %s", round, j, who);
        char seen[128];
        snprintf(seen, sizeof(seen), "/after-%d-%d", round, j); /* strip_prefix */
        cr_assert(server_saw(want, seen), "round %d: %s did not record %s", round, want_name, seen);
    }
}

/* Value of one sample line of /metrics ("name{labels} value"), -1 when absent. */
static double metric(sg_proc_t *gw, const char *series)
{
    hc_response_t r;
    if (hc_request(sg_proc_addr(gw, "admin"), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r, 5000) != HC_OK)
        return -2;
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p;) {
        const char *e = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
        p = e ? e + 1 : NULL;
    }
    hc_response_free(&r);
    return v;
}

static void expect_no_leak_report(sg_proc_t *gw)
{
    char *err = sg_proc_stderr(gw);
    cr_assert(err);
    cr_expect_eq(sg_proc_sanitizer_reports(err), 0, "sanitizer report:\n%s", err);
    free(err);
}

/* Stops the binary (exit 0, no sanitizer report) and the upstreams. */
static void finish(sg_proc_t *gw, us_server_t *a, us_server_t *b)
{
    cr_assert_eq(sg_proc_stop(gw, 10000), 0, "exit status");
    expect_no_leak_report(gw);
    sg_proc_cleanup(gw);
    us_stop(a);
    if (b)
        us_stop(b);
}

/* ---- load ------------------------------------------------------------------ */

typedef struct load {
    const char *addr;
    atomic_bool stop;
    atomic_int ok, failed, reconnects;
    char last_error[160];
} load_t;

/* Keep-alive requests back to back on one connection; any failure counts. */
static void *load_main(void *arg)
{
    load_t *l = arg;
    hc_conn_t c;
    if (hc_connect(&c, l->addr, 2000) != 0) {
        atomic_fetch_add(&l->failed, 1);
        snprintf(l->last_error, sizeof(l->last_error), "connect failed");
        return NULL;
    }
    unsigned i = 0;
    while (!atomic_load(&l->stop)) {
        char raw[128];
        snprintf(raw, sizeof(raw), "GET /a/load-%u HTTP/1.1\r\nHost: t\r\n\r\n", i++);
        hc_response_t r;
        int rc = hc_send_str(&c, raw, 5000) ? hc_read_response(&c, &r, 5000) : HC_CLOSED;
        if (rc != HC_OK) {
            atomic_fetch_add(&l->failed, 1);
            snprintf(l->last_error, sizeof(l->last_error), "request %u: rc %d", i, rc);
            hc_close(&c);
            if (hc_connect(&c, l->addr, 2000) != 0)
                break;
            atomic_fetch_add(&l->reconnects, 1);
            continue;
        }
        char conn[32] = "";
        hc_header(&r, "Connection", conn, sizeof(conn));
        if (r.status != 200 || strcmp(conn, "close") == 0) {
            atomic_fetch_add(&l->failed, 1);
            snprintf(l->last_error, sizeof(l->last_error), "request %u: status %d connection '%s'", i, r.status, conn);
        } else {
            atomic_fetch_add(&l->ok, 1);
        }
        hc_response_free(&r);
    }
    hc_close(&c);
    return NULL;
}

/* ---- tests ------------------------------------------------------------------- */

Test(reload, twenty_reloads_under_keepalive_load, .timeout = 60)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *to_a = config_text(us_port(a), us_port(b), "A", NULL);
    char *to_b = config_text(us_port(a), us_port(b), "B", NULL);
    /* Static, like the load's state: a failed assertion leaves this frame
     * while the load thread still reads them (it was a UBSan report). */
    static sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, to_a, 10000), 0);
    expect_routed(&gw, a, "A", 0);

    static load_t l;
    memset(&l, 0, sizeof(l));
    l.addr = sg_proc_addr(&gw, "api");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, load_main, &l), 0);
    for (int i = 1; i <= 20; i++) {
        bool to_b_now = i % 2 == 1;
        write_config(&gw, to_b_now ? to_b : to_a);
        if (i % 2 == 0) {
            cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
            cr_assert(sg_proc_wait_stderr(&gw, "config reloaded from", i, 5000), "reload %d not logged", i);
        } else {
            hc_response_t r;
            cr_assert_eq(post_reload(&gw, &r), HC_OK);
            cr_assert_eq(r.status, 200, "%s", r.body);
            char want[64];
            snprintf(want, sizeof(want), "{\"status\":\"ok\",\"generation\":%d}", i + 1);
            cr_assert(strstr(r.body, want), "reload %d answered %s", i, r.body);
            hc_response_free(&r);
        }
        expect_routed(&gw, to_b_now ? b : a, to_b_now ? "B" : "A", i);
    }
    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    cr_expect_eq(atomic_load(&l.failed), 0, "failed keep-alive requests: %d (%s)", atomic_load(&l.failed),
                 l.last_error);
    cr_expect(atomic_load(&l.ok) > 20, "load ran: %d requests", atomic_load(&l.ok));
    cr_expect_eq(atomic_load(&l.reconnects), 0);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 20);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"failure\"}"), 0);

    free(to_a);
    free(to_b);
    finish(&gw, a, b);
}

Test(reload, broken_or_restart_only_config_changes_nothing, .timeout = 40)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *good = config_text(us_port(a), us_port(b), "A", NULL);
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, good, 10000), 0);

    /* SIGHUP with a broken file: logged with its error, counted, old config serves. */
    write_config(&gw, "workers: 2\nlisteners: [{name: api, address: \"127.0.0.1:0\"}]\nroutes: [{upstream: nope}]\n");
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(&gw, "config reload failed", 1, 5000));
    char *err = sg_proc_stderr(&gw);
    cr_expect(strstr(err, "nope"), "the error names the problem: %s", err);
    free(err);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"failure\"}"), 1);
    char who[32];
    upstream_of(&gw, "/a/still", who, sizeof(who));
    cr_expect_str_eq(who, "A");

    /* POST /-/reload answers the loader's file:line:col message. */
    write_config(&gw, "workers: 2\nlisteners: [{name: api, address: \"127.0.0.1:0\"}]\nbogus_key: 1\n");
    hc_response_t r;
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_expect_eq(r.status, 400);
    char want[300];
    snprintf(want, sizeof(want), "{\"status\":\"error\",\"error\":\"%s:3:1", gw.cfg_path);
    cr_expect(strstr(r.body, want), "want %s in %s", want, r.body);
    cr_expect(strstr(r.body, "bogus_key"), "%s", r.body);
    hc_response_free(&r);

    /* Restart-only changes are refused with a clear reason. */
    char *three = config_text(us_port(a), us_port(b), "B", NULL);
    three[strlen("workers: ")] = '3';
    write_config(&gw, three);
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_expect_eq(r.status, 400);
    cr_expect(strstr(r.body, "workers: 2 -> 3 needs a restart"), "%s", r.body);
    hc_response_free(&r);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"failure\"}"), 3);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 0);
    upstream_of(&gw, "/a/still2", who, sizeof(who));
    cr_expect_str_eq(who, "A", "nothing changed");

    /* GET is not a reload. */
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "admin"), "GET /-/reload HTTP/1.1\r\nHost: a\r\n\r\n", &r, 5000), HC_OK);
    cr_expect_eq(r.status, 405);
    hc_response_free(&r);

    free(good);
    free(three);
    finish(&gw, a, b);
}

Test(reload, http_reload_needs_loopback_admin, .timeout = 30)
{
    us_server_t *a = us_start("A", false);
    char *cfg = config_text(us_port(a), us_port(a), "A", NULL);
    char *p = strstr(cfg, "admin: {address: \"127.0.0.1:0\"}");
    cr_assert(p);
    /* Same port space, every address: not loopback. */
    char *c2 = NULL;
    cr_assert(asprintf(&c2, "%.*sadmin: {address: \"0.0.0.0:0\"}%s", (int)(p - cfg), cfg,
                       p + strlen("admin: {address: \"127.0.0.1:0\"}")) > 0);
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, c2, 10000), 0);
    const char *admin = sg_proc_addr(&gw, "admin");
    char local[80];
    snprintf(local, sizeof(local), "127.0.0.1:%s", strrchr(admin, ':') + 1);
    hc_response_t r;
    cr_assert_eq(hc_request(local, "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &r, 5000), HC_OK);
    cr_expect_eq(r.status, 403, "%s", r.body);
    hc_response_free(&r);
    cr_assert_eq(sg_proc_stop(&gw, 10000), 0);
    sg_proc_cleanup(&gw);
    free(cfg);
    free(c2);
    us_stop(a);
}

Test(reload, inflight_request_finishes_on_its_generation, .timeout = 30)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *to_a = config_text(us_port(a), us_port(b), "A", NULL);
    char *to_b = config_text(us_port(a), us_port(b), "B", NULL);
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, to_a, 10000), 0);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    cr_assert(hc_send_str(&c, "GET /a/slow?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert(us_wait_requests(a, 1, 3000));
    long long t0 = sgt_now_ms();

    write_config(&gw, to_b);
    hc_response_t r;
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);
    expect_routed(&gw, b, "B", 1);
    cr_expect(sgt_now_ms() - t0 < 900, "the switch did not wait for the slow request");

    /* The slow request completes on generation 1 (upstream A)... */
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "slow");
    char v[32] = "";
    hc_header(&r, "X-Upstream", v, sizeof(v));
    cr_expect_str_eq(v, "A");
    cr_expect(!hc_header(&r, "Connection", v, sizeof(v)) || strcmp(v, "close") != 0, "keep-alive kept");
    hc_response_free(&r);
    /* ...and the same keep-alive connection's next request uses generation 2. */
    cr_assert(hc_send_str(&c, "GET /a/next HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    hc_header(&r, "X-Upstream", v, sizeof(v));
    cr_expect_str_eq(v, "B");
    hc_response_free(&r);
    hc_close(&c);

    free(to_a);
    free(to_b);
    finish(&gw, a, b);
}

/* ---- listener changes ------------------------------------------------------ */

/* A listening socket on 127.0.0.1 with a kernel-chosen port (no
 * SO_REUSEPORT: nobody else can bind that port while it is open). */
static int hold_port(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Whether a fresh connection to addr is refused within the deadline (a
 * listener closes on every worker asynchronously after the reload). */
static bool becomes_refused(const char *addr, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        hc_conn_t c;
        if (hc_connect(&c, addr, 500) != 0)
            return true;
        hc_close(&c);
        sgt_nap_ms(10);
    } while (sgt_now_ms() < deadline);
    return false;
}

static int get_status(const char *addr, const char *path)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    hc_response_t r;
    if (hc_request(addr, raw, &r, 5000) != HC_OK)
        return -1;
    int st = r.status;
    hc_response_free(&r);
    return st;
}

Test(reload, listener_changes_open_new_sockets_and_close_old, .timeout = 60)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *before =
        config_listeners(us_port(a), us_port(b), "A", "[{name: api, address: \"127.0.0.1:0\"}]", "127.0.0.1:0");
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, before, 10000), 0);
    char old_api[80], old_admin[80];
    snprintf(old_api, sizeof(old_api), "%s", sg_proc_addr(&gw, "api"));
    snprintf(old_admin, sizeof(old_admin), "%s", sg_proc_addr(&gw, "admin"));

    /* A keep-alive connection and a slow request on the old api socket. */
    hc_conn_t ka, slow;
    cr_assert_eq(hc_connect(&ka, old_api, 2000), 0);
    hc_response_t r;
    cr_assert(hc_send_str(&ka, "GET /a/first HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&ka, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    cr_assert_eq(hc_connect(&slow, old_api, 2000), 0);
    cr_assert(hc_send_str(&slow, "GET /a/slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert(us_wait_requests(a, 2, 3000));

    /* api moves to a port of our choosing, a new listener appears, the
     * admin listener moves to 127.0.0.2; the reload itself is asked on the
     * old admin socket and answered there. */
    unsigned api_port;
    int hold = hold_port(&api_port);
    close(hold); /* free again: swarmgate binds it */
    char lst[256];
    snprintf(lst, sizeof(lst),
             "[{name: api, address: \"127.0.0.1:%u\"}, {name: extra, address: \"127.0.0.1:0\", serve_health: true}]",
             api_port);
    char *after = config_listeners(us_port(a), us_port(b), "B", lst, "127.0.0.2:0");
    write_config(&gw, after);
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);

    cr_assert(sg_proc_reread_ports(&gw));
    char new_api[80];
    snprintf(new_api, sizeof(new_api), "127.0.0.1:%u", api_port);
    cr_expect_str_eq(sg_proc_addr(&gw, "api"), new_api, "ports file rewritten");
    char extra[80]; /* copies: sg_proc_reread_ports() rewrites gw's table */
    cr_assert(sg_proc_addr(&gw, "extra"), "the new listener is in the ports file");
    snprintf(extra, sizeof(extra), "%s", sg_proc_addr(&gw, "extra"));
    const char *new_admin = sg_proc_addr(&gw, "admin");
    cr_assert(new_admin && strncmp(new_admin, "127.0.0.2:", 10) == 0, "admin moved: %s", new_admin);

    /* New sockets serve on every worker (fresh connections spread over the
     * SO_REUSEPORT group) with the new routes; the old ones are closed. */
    for (int i = 0; i < 40; i++) {
        char path[64], who[32] = "";
        snprintf(path, sizeof(path), "/a/new-%d", i);
        char raw[128];
        snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
        cr_assert_eq(hc_request(new_api, raw, &r, 5000), HC_OK, "request %d to the new api socket", i);
        cr_expect_eq(r.status, 200);
        hc_header(&r, "X-Upstream", who, sizeof(who));
        cr_expect_str_eq(who, "B");
        hc_response_free(&r);
    }
    cr_expect_eq(get_status(extra, "/health/live"), 200, "the added listener answers with its settings");
    cr_expect_eq(get_status(extra, "/a/x"), 200);
    cr_expect(becomes_refused(old_api, 5000), "old api socket %s still accepts", old_api);
    cr_expect(becomes_refused(old_admin, 5000), "old admin socket %s still accepts", old_admin);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 1, "scraped on the new admin");

    /* Connections accepted on the old socket keep working. */
    cr_assert_eq(hc_read_response(&slow, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "slow");
    hc_response_free(&r);
    hc_close(&slow);
    cr_assert(hc_send_str(&ka, "GET /a/second HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&ka, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    char who[32] = "";
    hc_header(&r, "X-Upstream", who, sizeof(who));
    cr_expect_str_eq(who, "B", "the old connection's next request uses the new generation");
    hc_response_free(&r);
    hc_close(&ka);

    /* Back: extra removed, api to an ephemeral port again, admin home. */
    write_config(&gw, before);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(&gw, "config reloaded from", 2, 5000));
    cr_assert(sg_proc_reread_ports(&gw));
    cr_expect(sg_proc_addr(&gw, "extra") == NULL);
    cr_expect(becomes_refused(extra, 5000), "removed listener %s still accepts", extra);
    cr_expect(becomes_refused(new_api, 5000));
    cr_expect_eq(get_status(sg_proc_addr(&gw, "api"), "/a/back"), 200);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 2);

    free(before);
    free(after);
    finish(&gw, a, b);
}

Test(reload, listener_bind_failure_changes_nothing, .timeout = 40)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *good =
        config_listeners(us_port(a), us_port(b), "A", "[{name: api, address: \"127.0.0.1:0\"}]", "127.0.0.1:0");
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, good, 10000), 0);
    char api[80];
    snprintf(api, sizeof(api), "%s", sg_proc_addr(&gw, "api"));

    /* The new address is taken by another socket: refused, counted, and
     * the routes of the same file are not applied either. */
    unsigned taken;
    int hold = hold_port(&taken);
    char lst[256];
    snprintf(lst, sizeof(lst), "[{name: api, address: \"127.0.0.1:0\"}, {name: two, address: \"127.0.0.1:%u\"}]",
             taken);
    char *bad = config_listeners(us_port(a), us_port(b), "B", lst, "127.0.0.1:0");
    write_config(&gw, bad);
    hc_response_t r;
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_expect_eq(r.status, 400);
    char want[128];
    snprintf(want, sizeof(want), "listener two: bind 127.0.0.1:%u: Address already in use", taken);
    cr_expect(strstr(r.body, want), "want %s in %s", want, r.body);
    hc_response_free(&r);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"failure\"}"), 1);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 0);
    char who[32];
    upstream_of(&gw, "/a/still", who, sizeof(who));
    cr_expect_str_eq(who, "A", "nothing changed");
    cr_assert(sg_proc_reread_ports(&gw));
    cr_expect_str_eq(sg_proc_addr(&gw, "api"), api);
    cr_expect(sg_proc_addr(&gw, "two") == NULL);

    /* Once the address is free the same file applies. */
    close(hold);
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_expect_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);
    cr_assert(sg_proc_reread_ports(&gw));
    char two[80];
    snprintf(two, sizeof(two), "127.0.0.1:%u", taken);
    cr_expect_str_eq(sg_proc_addr(&gw, "two"), two);
    cr_expect_str_eq(sg_proc_addr(&gw, "api"), api, "the unchanged listener kept its socket");
    cr_expect_eq(get_status(two, "/a/x"), 200);

    free(good);
    free(bad);
    finish(&gw, a, b);
}

/* Reloads back to back (workers adopt asynchronously, so some skip
 * generations): no socket is leaked or left listening, the last config's
 * listeners serve. Only local answers (/health/live): pooled upstream
 * connections would move the descriptor count. */
Test(reload, rapid_listener_reloads_leak_no_socket, .timeout = 60)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    char *x = config_listeners(us_port(a), us_port(b), "A",
                               "[{name: api, address: \"127.0.0.1:0\", serve_health: true}]", "127.0.0.1:0");
    char *y = config_listeners(us_port(a), us_port(b), "B",
                               "[{name: api2, address: \"127.0.0.1:0\"}, {name: extra, address: \"127.0.0.1:0\"}]",
                               "127.0.0.1:0");
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, x, 10000), 0);
    cr_assert_eq(get_status(sg_proc_addr(&gw, "api"), "/health/live"), 200);
    /* Base: the descriptor count once it settled (the start-up probe's and
     * the request's connections close asynchronously). */
    int base = sg_proc_stable_fds(gw.pid, 5000);
    cr_assert(base > 0, "the descriptor count does not settle");
    char seen[8][80];
    int n_seen = 0;
    for (int i = 1; i <= 20; i++) {
        write_config(&gw, i % 2 ? y : x);
        hc_response_t r;
        cr_assert_eq(post_reload(&gw, &r), HC_OK);
        cr_assert_eq(r.status, 200, "reload %d: %s", i, r.body);
        hc_response_free(&r);
        if (i <= 4) { /* remember a few addresses that must be closed at the end */
            cr_assert(sg_proc_reread_ports(&gw));
            for (int k = 0; k < gw.n_listeners && n_seen < 8; k++)
                if (strcmp(gw.names[k], "admin") != 0)
                    snprintf(seen[n_seen++], sizeof(seen[0]), "%s", gw.addrs[k]);
        }
    }
    cr_assert(sg_proc_reread_ports(&gw));
    const char *api = sg_proc_addr(&gw, "api");
    cr_assert(api && !sg_proc_addr(&gw, "extra"));
    for (int i = 0; i < 20; i++)
        cr_expect_eq(get_status(api, "/health/live"), 200);
    for (int k = 0; k < n_seen; k++)
        if (strcmp(seen[k], api) != 0)
            cr_expect(becomes_refused(seen[k], 5000), "%s still accepts", seen[k]);
    /* Retired generations close what no worker took on the next reap. */
    long long deadline = sgt_now_ms() + 5000;
    int n = sg_proc_count_fds(gw.pid);
    while (n > base && sgt_now_ms() < deadline) {
        sgt_nap_ms(50);
        n = sg_proc_count_fds(gw.pid);
    }
    cr_expect_eq(n, base, "descriptors: %d at start, %d after 20 listener reloads", base, n);
    cr_expect_eq(metric(&gw, "swarm_config_reload_total{result=\"success\"}"), 20);

    free(x);
    free(y);
    finish(&gw, a, b);
}

/* log.level applies at once: the success line of a reload to `warn` is not
 * logged (info), the one of the reload back to `info` is. */
Test(reload, log_level_applies_at_once, .timeout = 30)
{
    us_server_t *a = us_start("A", false);
    char *info = config_text(us_port(a), us_port(a), "A", NULL);
    char *warn = config_full(us_port(a), us_port(a), "A", "[{name: api, address: \"127.0.0.1:0\"}]", "127.0.0.1:0",
                             "{access: \"off\", level: warn}", NULL);
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, info, 10000), 0);
    hc_response_t r;
    write_config(&gw, warn);
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);
    write_config(&gw, info);
    cr_assert_eq(post_reload(&gw, &r), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);
    cr_assert(sg_proc_wait_stderr(&gw, "generation 3", 1, 5000), "the reload back to info is logged");
    char *err = sg_proc_stderr(&gw);
    cr_expect(!strstr(err, "generation 2"), "logged at warn level:\n%s", err);
    free(err);
    free(info);
    free(warn);
    finish(&gw, a, NULL);
}

static int ready_status(sg_proc_t *gw)
{
    hc_response_t r;
    if (hc_request(sg_proc_addr(gw, "admin"), "GET /health/ready HTTP/1.1\r\nHost: a\r\n\r\n", &r, 2000) != HC_OK)
        return -1;
    int s = r.status;
    hc_response_free(&r);
    return s;
}

Test(drain, sigterm_drains_gracefully, .timeout = 40)
{
    us_server_t *a = us_start("A", false);
    char *cfg = config_text(us_port(a), us_port(a), "A", "shutdown: {drain_delay: 1s, drain_timeout: 10s}\n");
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, cfg, 10000), 0);
    const char *api = sg_proc_addr(&gw, "api");
    cr_assert_eq(ready_status(&gw), 200);

    hc_conn_t ka, slow;
    hc_response_t r;
    cr_assert_eq(hc_connect(&ka, api, 2000), 0);
    cr_assert(hc_send_str(&ka, "GET /a/one HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&ka, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    char v[32] = "";
    cr_expect(!hc_header(&r, "Connection", v, sizeof(v)), "keep-alive before the drain");
    hc_response_free(&r);

    cr_assert_eq(hc_connect(&slow, api, 2000), 0);
    cr_assert(hc_send_str(&slow, "GET /a/slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert(us_wait_requests(a, 2, 3000));
    long long t_term = sgt_now_ms();
    cr_assert_eq(sg_proc_signal(&gw, SIGTERM), 0);

    /* Unready at once (admin stays up until the workers are done). */
    long long deadline = sgt_now_ms() + 2000;
    int st;
    while ((st = ready_status(&gw)) != 503 && sgt_now_ms() < deadline)
        ;
    cr_expect_eq(st, 503, "readiness during the drain");

    /* During the drain delay a keep-alive request is served, with Connection: close. */
    cr_assert(hc_send_str(&ka, "GET /a/two HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&ka, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    cr_expect(hc_header(&r, "Connection", v, sizeof(v)) && strcmp(v, "close") == 0, "Connection: close in the drain");
    hc_response_free(&r);
    cr_expect(hc_wait_closed(&ka, 2000), "the keep-alive connection is closed after that response");
    cr_expect(sgt_now_ms() - t_term < 1000, "served within the drain delay");

    /* After the delay: new connections are refused. */
    deadline = sgt_now_ms() + 4000;
    bool refused = false;
    while (!refused && sgt_now_ms() < deadline) {
        hc_conn_t late;
        if (hc_connect(&late, api, 300) != 0) {
            refused = true;
        } else {
            hc_close(&late);
            poll(NULL, 0, 20); /* a probe every 20 ms, not a connection flood (ASan workers are slow) */
        }
    }
    cr_expect(refused, "listener closed after the drain delay");
    cr_expect(sgt_now_ms() - t_term >= 900, "not before the delay (%lld ms)", sgt_now_ms() - t_term);
    cr_expect_eq(ready_status(&gw), 503);

    /* The in-flight request completes; then the process exits 0. */
    cr_assert_eq(hc_read_response(&slow, &r, 6000), HC_OK);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "slow");
    cr_expect(hc_header(&r, "Connection", v, sizeof(v)) && strcmp(v, "close") == 0);
    hc_response_free(&r);
    cr_assert(sg_proc_wait_exit(&gw, 5000));
    cr_expect_eq(gw.exit_status, 0);
    expect_no_leak_report(&gw);
    hc_close(&ka);
    hc_close(&slow);
    sg_proc_cleanup(&gw);
    free(cfg);
    us_stop(a);
}
