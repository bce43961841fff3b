/* Issue 5, metrics end to end: known traffic through the real binary must
 * show up exactly in /metrics on the admin listener (counts, histogram
 * buckets, error rates, gauges), in both exposition formats, and be
 * accepted by promtool and by a real Prometheus server (docs/metrics.md). */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static us_server_t *up;
static sg_proc_t gw;
static const char *api, *admin;
static char dir[64];
static pid_t prom_pid = -1;

/* The default request buckets (docs/configuration.md, metrics). */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};
static const char *bucket_txt[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                   "0.5",    "1",     "2.5",    "5",     "10",   "30",    "60",   "120", "300"};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static void boot(const char *extra_yaml)
{
    up = us_start("u1", false);
    cr_assert(up);
    cr_assert(obs_mkdtemp(dir, sizeof(dir)));
    gw_start(&gw,
             "workers: 2\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", flush_interval: 10ms}\n"
             "upstreams:\n"
             "  app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 2s}\n"
             "  dead: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, max_fails: 0}\n"
             "routes:\n"
             "  - {name: slow, match: {prefix: /slow}, upstream: app}\n"
             "  - {name: dead, match: {prefix: /dead}, upstream: dead}\n"
             "  - {name: app, match: {prefix: /status}, upstream: app}\n"
             "  - {name: gen, match: {prefix: /gen}, upstream: app}\n"
             "%s"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up), gw_dead_port(), extra_yaml ? extra_yaml : "");
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
    if (prom_pid > 0) {
        kill(prom_pid, SIGKILL);
        waitpid(prom_pid, NULL, 0);
        prom_pid = -1;
    }
    if (gw.dir[0])
        sg_proc_cleanup(&gw);
    us_stop(up);
    up = NULL;
    obs_rmdir(dir);
}

TestSuite(metrics_e2e, .fini = teardown, .timeout = 40);

static int get_status(const char *path)
{
    hc_response_t r;
    cr_assert_eq(obs_get(api, path, NULL, &r, 5000), HC_OK, "GET %s", path);
    int st = r.status;
    hc_response_free(&r);
    return st;
}

static char *scrape(const char *accept, char *ctype, size_t cap)
{
    char hdr[160] = "";
    if (accept)
        snprintf(hdr, sizeof(hdr), "Accept: %s\r\n", accept);
    hc_response_t r;
    cr_assert_eq(obs_get(admin, "/metrics", hdr, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    if (ctype)
        cr_assert(hc_header(&r, "Content-Type", ctype, cap));
    char *body = r.body;
    r.body = NULL;
    hc_response_free(&r);
    return body;
}

static double value(const char *text, const char *series)
{
    double v = NAN;
    cr_assert(obs_metric(text, series, &v), "sample %s in:\n%s", series, text);
    return v;
}

static void wait_eq(const char *series, double want)
{
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, series, want, 5000, &got), "%s = %.17g, want %.17g", series, got, want);
}

/* Cumulative buckets never decrease and _count equals the +Inf bucket. */
static void check_histogram(const char *text, const char *name, const char *labels, double want_count)
{
    char s[256];
    double prev = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        snprintf(s, sizeof(s), "%s_bucket{%s,le=\"%s\"}", name, labels, bucket_txt[i]);
        double b = value(text, s);
        cr_assert_geq(b, prev, "%s cumulative", s);
        prev = b;
    }
    snprintf(s, sizeof(s), "%s_bucket{%s,le=\"+Inf\"}", name, labels);
    double inf = value(text, s);
    cr_assert_geq(inf, prev);
    snprintf(s, sizeof(s), "%s_count{%s}", name, labels);
    cr_assert_eq(value(text, s), inf, "%s = the +Inf bucket", s);
    cr_assert_eq(inf, want_count, "%s: %g observations", name, inf);
}

Test(metrics_e2e, known_traffic_exact_counts_buckets_and_error_rates)
{
    boot(NULL);
    static const struct {
        const char *path;
        int status;
        int times;
    } plan[] = {{"/status?code=200", 200, 3}, {"/status?code=404", 404, 2}, {"/status?code=500", 500, 2}};
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++)
        for (int k = 0; k < plan[i].times; k++)
            cr_assert_eq(get_status(plan[i].path), plan[i].status);
    long long t0 = sgt_now_ms();
    cr_assert_eq(get_status("/slow?ms=30"), 200);
    long long slow_client_ms = sgt_now_ms() - t0;

    /* Recording happens as each exchange ends: wait for the last one. */
    wait_eq("swarm_http_requests_total{route=\"slow\",method=\"GET\",code=\"200\"}", 1);
    wait_eq("swarm_http_requests_total{route=\"app\",method=\"GET\",code=\"500\"}", 2);
    char *t = scrape(NULL, NULL, 0);
    cr_assert_eq(value(t, "swarm_http_requests_total{route=\"app\",method=\"GET\",code=\"200\"}"), 3);
    cr_assert_eq(value(t, "swarm_http_requests_total{route=\"app\",method=\"GET\",code=\"404\"}"), 2);
    cr_assert_eq(value(t, "swarm_http_requests_total{route=\"app\",method=\"GET\",code=\"500\"}"), 2);
    cr_assert_eq(value(t, "swarm_http_requests_total{route=\"slow\",method=\"GET\",code=\"200\"}"), 1);
    cr_assert_eq(obs_count_lines(t, "swarm_http_requests_total{"), 4, "no other series (admin probes not counted)");
    cr_assert_eq(obs_count_lines(t, "swarm_http_requests_total{route=\"none\""), 0);

    check_histogram(t, "swarm_http_request_duration_seconds", "route=\"app\",method=\"GET\"", 7);
    check_histogram(t, "swarm_http_request_duration_seconds", "route=\"slow\",method=\"GET\"", 1);
    check_histogram(t, "swarm_upstream_response_duration_seconds", "upstream=\"app\"", 8);
    /* One observation: its value is the _sum, and it sits in exactly the
     * buckets whose bound is >= it (le is inclusive). */
    double slow = value(t, "swarm_http_request_duration_seconds_sum{route=\"slow\",method=\"GET\"}");
    cr_assert_geq(slow, 0.030, "the upstream waited 30 ms: %g", slow);
    cr_assert_leq(slow, slow_client_ms / 1000.0 + 0.001, "not longer than the client saw");
    for (size_t i = 0; i < N_BUCKETS; i++) {
        char s[160];
        snprintf(s, sizeof(s), "swarm_http_request_duration_seconds_bucket{route=\"slow\",method=\"GET\",le=\"%s\"}",
                 bucket_txt[i]);
        cr_assert_eq(value(t, s), slow <= buckets[i] ? 1 : 0, "%s with one observation of %g s", s, slow);
    }
    cr_assert_eq(value(t, "swarm_http_request_duration_seconds_bucket{route=\"slow\",method=\"GET\",le=\"0.025\"}"), 0);
    if (slow_client_ms < 50) /* the client saw < 50 ms, so the proxy measured less */
        cr_assert_eq(value(t, "swarm_http_request_duration_seconds_bucket{route=\"slow\",method=\"GET\",le=\"0.05\"}"),
                     1);

    cr_assert_eq(value(t, "swarm_error_rate"), 0.25, "2 of 8 were 5xx");
    cr_assert_eq(value(t, "swarm_upstream_error_rate{upstream=\"app\"}"), 0.25);
    cr_assert_eq(value(t, "swarm_upstream_error_rate{upstream=\"dead\"}"), 0);
    cr_assert_eq(value(t, "swarm_trace_ids_total{source=\"generated\"}"), 8);
    cr_assert_eq(value(t, "swarm_http_requests_in_flight"), 0, "the scrape does not count itself");
    char s[160];
    snprintf(s, sizeof(s), "swarm_upstream_server_up{upstream=\"app\",server=\"127.0.0.1:%u\"}", us_port(up));
    cr_assert_eq(value(t, s), 1);
    cr_assert_eq(obs_count_lines(t, "swarmgate_build_info{version=\""), 1);
    const char *bi = strstr(t, "\nswarmgate_build_info{");
    cr_assert(bi && strstr(bi, "} 1\n") == strchr(bi, '}'), "build info is 1");
    free(t);
    stop_clean();
}

Test(metrics_e2e, proxy_made_502_counts_as_5xx)
{
    boot(NULL);
    cr_assert_eq(get_status("/status?code=200"), 200);
    cr_assert_eq(get_status("/dead"), 502);
    cr_assert_eq(get_status("/nowhere"), 404);
    wait_eq("swarm_http_requests_total{route=\"none\",method=\"GET\",code=\"404\"}", 1);
    wait_eq("swarm_http_requests_total{route=\"dead\",method=\"GET\",code=\"502\"}", 1);
    char *t = scrape(NULL, NULL, 0);
    cr_assert_eq(value(t, "swarm_http_requests_total{route=\"app\",method=\"GET\",code=\"200\"}"), 1);
    /* Shortest round-trip float: 1/3 reads back as exactly 1.0/3. */
    cr_assert_eq(value(t, "swarm_error_rate"), 1.0 / 3.0, "1 of 3 was 5xx");
    cr_assert_eq(value(t, "swarm_upstream_error_rate{upstream=\"dead\"}"), 1);
    cr_assert_eq(value(t, "swarm_upstream_error_rate{upstream=\"app\"}"), 0);
    cr_assert_geq(value(t, "swarm_upstream_connect_errors_total{upstream=\"dead\"}"), 1);
    cr_assert_eq(value(t, "swarm_upstream_connect_errors_total{upstream=\"app\"}"), 0);
    check_histogram(t, "swarm_http_request_duration_seconds", "route=\"dead\",method=\"GET\"", 1);
    free(t);
    stop_clean();
}

/* Runs promtool check metrics on text; returns its exit code, output in out. */
static int promtool(const char *text, char *out, size_t cap)
{
    char path[128], cmd[256];
    snprintf(path, sizeof(path), "%s/metrics.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(metrics_e2e, text_format_passes_promtool)
{
    boot(NULL);
    cr_assert_eq(get_status("/status?code=200"), 200);
    cr_assert_eq(get_status("/status?code=503"), 503);
    cr_assert_eq(get_status("/dead"), 502);
    cr_assert_eq(get_status("/nowhere"), 404);
    wait_eq("swarm_http_requests_total{route=\"none\",method=\"GET\",code=\"404\"}", 1);
    char ct[128];
    char *t = scrape(NULL, ct, sizeof(ct));
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_null(strstr(t, "# EOF"));
    cr_assert_null(strstr(t, "trace_id="), "no exemplars in the text format");
    cr_assert(obs_count_lines(t, "process_open_fds ") == 1 && obs_count_lines(t, "process_start_time_seconds ") == 1);
    char out[8192];
    int rc = promtool(t, out, sizeof(out));
    cr_assert_eq(rc, 0, "promtool exit %d:\n%s", rc, out);
    cr_assert_str_eq(out, "", "promtool found problems:\n%s", out);
    free(t);
    /* text/plain explicitly, and an unknown type, also get the text format. */
    free(scrape("text/plain;version=0.0.4", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    free(scrape("application/json", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    stop_clean();
}

Test(metrics_e2e, openmetrics_negotiated_with_exemplars)
{
    boot(NULL);
    hc_response_t r;
    cr_assert_eq(obs_get(api, "/slow?ms=30", NULL, &r, 5000), HC_OK);
    char tid[64];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    hc_response_free(&r);
    wait_eq("swarm_http_requests_total{route=\"slow\",method=\"GET\",code=\"200\"}", 1);
    char ct[128];
    char *t =
        scrape("application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", ct, sizeof(ct));
    cr_assert_str_eq(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    size_t n = strlen(t);
    cr_assert(n > 6 && !strcmp(t + n - 6, "# EOF\n"), "ends with # EOF: ...%s", n > 40 ? t + n - 40 : t);
    cr_assert_eq(obs_count_lines(t, "# EOF"), 1);
    /* Counter families are named without _total in OpenMetrics. */
    cr_assert_eq(obs_count_lines(t, "# TYPE swarm_http_requests counter"), 1);
    /* The request-duration histogram of route "slow" carries an exemplar
     * with the request's trace id as the exported spans carry it: 32
     * lower-case hex digits (#16 item 4), and the observation in seconds. */
    static const char k_slow_bucket[] = "swarm_http_request_duration_seconds_bucket{route=\"slow\"";
    static const char k_exemplar[] = "# {trace_id=\"";
    char hex[33];
    obs_uuid_hex(tid, hex);
    int n_exemplars = 0;
    for (const char *line = t; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *eol = strchr(line, '\n');
        int len = (int)(eol ? eol - line : (long)strlen(line));
        if (strncmp(line, k_slow_bucket, strlen(k_slow_bucket)) != 0)
            continue;
        const char *ex = strstr(line, k_exemplar);
        if (!ex || ex > line + len)
            continue;
        n_exemplars++;
        const char *id = ex + strlen(k_exemplar);
        size_t id_len = strcspn(id, "\"");
        cr_assert(id_len == 32 && !strncmp(id, hex, 32), "the exemplar names the request %s: %.*s", tid, len, line);
        const char *after = strstr(id, "} ");
        cr_assert(after && after < line + len, "exemplar value: %.*s", len, line);
        double v = strtod(after + 2, NULL);
        cr_assert_geq(v, 0.030, "request exemplar %g s >= the 30 ms wait: %.*s", v, len, line);
        cr_assert_lt(v, 5.0, "request exemplar %g s: %.*s", v, len, line);
    }
    cr_assert_eq(n_exemplars, 1, "one exemplar on route slow's request-duration buckets (one request):\n%s", t);
    free(t);
    /* A q=0 clause is never chosen. */
    free(scrape("application/openmetrics-text;q=0, text/plain", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    stop_clean();
}

/* Starts /usr/bin/prometheus scraping target every second; returns its
 * web address. */
static void prom_start(const char *target, char *web, size_t cap)
{
    unsigned port = obs_free_port();
    snprintf(web, cap, "127.0.0.1:%u", port);
    char cfg[128], data[128], log[128], yaml[512];
    snprintf(cfg, sizeof(cfg), "%s/prometheus.yml", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(log, sizeof(log), "%s/prometheus.log", dir);
    snprintf(yaml, sizeof(yaml),
             "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
             "scrape_configs:\n"
             "  - job_name: swarmgate\n"
             "    static_configs: [{targets: [\"%s\"]}]\n",
             target);
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fputs(yaml, f);
    fclose(f);
    char a_cfg[160], a_data[160], a_web[80];
    snprintf(a_cfg, sizeof(a_cfg), "--config.file=%s", cfg);
    snprintf(a_data, sizeof(a_data), "--storage.tsdb.path=%s", data);
    snprintf(a_web, sizeof(a_web), "--web.listen-address=%s", web);
    pid_t pid = fork();
    if (pid == 0) {
        /* No criterion call in the child: with --full-stats every assert is
         * a message to the runner, and the child would wait for its answer. */
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a timed-out test */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/usr/bin/prometheus", "prometheus", a_cfg, a_data, a_web, "--log.level=warn", (char *)NULL);
        _exit(127);
    }
    cr_assert_geq(pid, 0);
    prom_pid = pid;
}

static bool prom_get_has(const char *web, const char *path, const char *needle)
{
    hc_response_t r;
    bool ok = obs_get(web, path, NULL, &r, 2000) == HC_OK && r.status == 200 && strstr(r.body, needle);
    hc_response_free(&r);
    return ok;
}

Test(metrics_e2e, real_prometheus_scrapes_the_admin_listener)
{
    cr_assert(access("/usr/bin/prometheus", X_OK) == 0, "Debian's prometheus package is installed");
    boot(NULL);
    cr_assert_eq(get_status("/status?code=200"), 200);
    char web[64];
    prom_start(admin, web, sizeof(web));
    long long deadline = sgt_now_ms() + 20000;
    bool up_ok = false, series_ok = false;
    while (sgt_now_ms() < deadline && !(up_ok && series_ok)) {
        int st;
        cr_assert_eq(waitpid(prom_pid, &st, WNOHANG), 0, "prometheus exited early (log in %s)", dir);
        up_ok = up_ok || prom_get_has(web, "/api/v1/targets", "\"health\":\"up\"");
        series_ok =
            series_ok || prom_get_has(web, "/api/v1/query?query=swarm_http_requests_total", "\"route\":\"app\"");
        if (!(up_ok && series_ok)) {
            sgt_nap_ms(100); /* poll interval, not a sync sleep */
        }
    }
    if (!up_ok) {
        hc_response_t r;
        obs_get(web, "/api/v1/targets", NULL, &r, 2000);
        cr_assert_fail("target not up within 20 s: %s", r.body ? r.body : "(no answer)");
    }
    cr_assert(series_ok, "Prometheus ingested swarm_http_requests_total");
    cr_assert(prom_get_has(web, "/api/v1/targets", "\"lastError\":\"\""), "no scrape error");
    kill(prom_pid, SIGTERM);
    int st = 0;
    long long stop_deadline = sgt_now_ms() + 10000;
    while (waitpid(prom_pid, &st, WNOHANG) == 0 && sgt_now_ms() < stop_deadline) {
        sgt_nap_ms(20); /* polling for the exit, with a deadline */
    }
    if (sgt_now_ms() >= stop_deadline) {
        kill(prom_pid, SIGKILL);
        waitpid(prom_pid, &st, 0);
    }
    prom_pid = -1;
    stop_clean();
}

Test(metrics_e2e, in_flight_and_active_connections)
{
    boot(NULL);
    wait_eq("swarm_http_connections_active{listener=\"api\"}", 0);
    wait_eq("swarm_http_requests_in_flight", 0);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, api, 2000), 0);
    wait_eq("swarm_http_connections_active{listener=\"api\"}", 1);
    wait_eq("swarm_http_requests_in_flight", 0);
    cr_assert(hc_send_str(&c, "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    wait_eq("swarm_http_requests_in_flight", 1);
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    wait_eq("swarm_http_requests_in_flight", 0);
    wait_eq("swarm_http_connections_active{listener=\"api\"}", 1);
    hc_close(&c);
    wait_eq("swarm_http_connections_active{listener=\"api\"}", 0);
    stop_clean();
}

Test(metrics_e2e, metrics_not_served_on_a_proxy_listener)
{
    boot(NULL);
    stop_clean();
    sg_proc_cleanup(&gw);
    /* A catch-all route: /metrics on the proxy listener goes upstream. */
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\", serve_health: true}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: all, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    api = sg_proc_addr(&gw, "api");
    admin = sg_proc_addr(&gw, "admin");
    cr_assert(api && admin);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 10000));
    hc_response_t r;
    cr_assert_eq(obs_get(api, "/metrics", NULL, &r, 3000), HC_OK);
    char v[64];
    cr_assert(hc_header(&r, "X-Upstream", v, sizeof(v)), "proxied, not served: %s", r.head);
    cr_assert_str_eq(r.body, "hello");
    hc_response_free(&r);
    cr_assert(us_wait_requests(up, 1, 2000));
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(!strncmp(q.head, "GET /metrics ", 13));
    us_request_free(&q);
    /* Without a matching route it is a 404 like any unknown path. */
    stop_clean();
    sg_proc_cleanup(&gw);
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\", serve_health: true}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: a, match: {prefix: /a}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    api = sg_proc_addr(&gw, "api");
    cr_assert_eq(obs_get(api, "/metrics", NULL, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 404, "%s%s", r.head, r.body);
    cr_assert(strstr(r.body, "\"error\":\"no route\""), "%s", r.body);
    hc_response_free(&r);
    cr_assert_eq(us_requests(up), 1);
    stop_clean();
}

Test(metrics_e2e, metrics_served_on_a_proxy_listener_when_configured)
{
    boot(NULL);
    stop_clean();
    sg_proc_cleanup(&gw);
    gw_start(&gw,
             "workers: 2\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\", serve_metrics: true}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: all, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up));
    api = sg_proc_addr(&gw, "api");
    admin = sg_proc_addr(&gw, "admin");
    cr_assert(api && admin);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 10000));
    hc_response_t r;
    cr_assert_eq(obs_get(api, "/x", NULL, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    /* Served by the worker, not proxied: the upstream saw only /x. */
    cr_assert_eq(obs_get(api, "/metrics", NULL, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
    cr_assert(strstr(r.body, "swarm_http_requests_total{route=\"all\",method=\"GET\",code=\"200\"} 1\n"), "%s", r.body);
    cr_assert(strstr(r.body, "# TYPE swarm_error_rate gauge"), "%s", r.body);
    hc_response_free(&r);
    /* OpenMetrics negotiation works there too. */
    cr_assert_eq(obs_get(api, "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert(r.body_len >= 6 && !strcmp(r.body + r.body_len - 6, "# EOF\n"), "%s", r.body);
    hc_response_free(&r);
    cr_assert_eq(us_requests(up), 1);
    /* /health* is not served there: not configured, so it is proxied. */
    cr_assert_eq(obs_get(api, "/health", NULL, &r, 3000), HC_OK);
    hc_response_free(&r);
    cr_assert(us_wait_requests(up, 2, 2000));
    stop_clean();
}
