/* Per-agent egress accounting through the real binary (issue 19), loopback
 * only: who sent a request (per-agent Proxy-Authorization users from the
 * config and from a users file, else the agent header, else "unknown"),
 * the header never forwarded, the agent label on
 * swarm_egress_requests_total and swarm_egress_bytes_total (bytes of a GET,
 * a POST and a CONNECT tunnel, both directions) with the egress.max_agents
 * cap ("other"), the agent in the access log, and the per-agent rate limit
 * (429 with Retry-After, swarm_egress_rate_limited_total). */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- an echo origin for CONNECT ----------------------------------------------- */

typedef struct echo_srv {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_bool stop;
} echo_srv_t;

/* One connection at a time: echoes until EOF, then closes. */
static void *echo_main(void *arg)
{
    echo_srv_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char buf[16384];
        while (!atomic_load(&s->stop)) {
            struct pollfd q = {.fd = fd, .events = POLLIN};
            if (poll(&q, 1, 50) <= 0)
                continue;
            ssize_t r = recv(fd, buf, sizeof(buf), 0);
            if (r <= 0)
                break;
            if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) != r)
                break;
        }
        close(fd);
    }
    return NULL;
}

static echo_srv_t *echo_start(void)
{
    echo_srv_t *s = calloc(1, sizeof(*s));
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s->lfd, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, echo_main, s);
    return s;
}

static void echo_stop(echo_srv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s);
}

/* ---- gateway ------------------------------------------------------------------------ */

static sg_proc_t gw;
static us_server_t *up;
static echo_srv_t *echo;
static const char *eaddr;
static char users_dir[64] = "";

static void start_with(const char *workers, const char *extra_egress)
{
    up = us_start("origin", false);
    echo = echo_start();
    cr_assert(up && echo);
    gw_start(&gw,
             "workers: %s\n"
             "listeners:\n"
             "  - {name: egress, address: \"127.0.0.1:0\", mode: egress}\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: stdout, format: json}\n"
             "egress:\n"
             "  allow: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"]\n"
             "%s"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             workers, us_port(up), echo->port, extra_egress);
    eaddr = sg_proc_addr(&gw, "egress");
    cr_assert(eaddr);
}

static void stop(void)
{
    gw_stop(&gw);
    us_stop(up);
    echo_stop(echo);
    if (users_dir[0]) {
        char p[128];
        snprintf(p, sizeof(p), "%s/agents.txt", users_dir);
        unlink(p);
        rmdir(users_dir);
        users_dir[0] = '\0';
    }
}

static char *scrape(void)
{
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "admin"), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    char *body = r.body;
    r.body = NULL;
    hc_response_free(&r);
    return body;
}

static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

/* Waits until a series reaches `want` (a request is counted when it ends). */
static bool wait_metric(const char *series, double want, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    for (;;) {
        char *m = scrape();
        double v = metric(m, series);
        free(m);
        if (v >= want)
            return true;
        if (sgt_now_ms() > deadline)
            return false;
        sgt_nap_ms(20);
    }
}

static const char *req_series(char *buf, size_t cap, const char *agent, const char *method, int code)
{
    snprintf(buf, cap,
             "swarm_egress_requests_total{agent=\"%s\",destination=\"127.0.0.1:%u\",method=\"%s\",code=\"%d\"}", agent,
             us_port(up), method, code);
    return buf;
}

static const char *bytes_series(char *buf, size_t cap, const char *agent, const char *dir)
{
    snprintf(buf, cap, "swarm_egress_bytes_total{agent=\"%s\",direction=\"%s\"}", agent, dir);
    return buf;
}

/* GET http://origin/path with extra header lines; returns the status. */
static int get(const char *path, const char *extra)
{
    char raw[1024];
    snprintf(raw, sizeof(raw), "GET http://127.0.0.1:%u%s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s\r\n", us_port(up), path,
             us_port(up), extra ? extra : "");
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, raw, &r, 5000), HC_OK);
    int status = r.status;
    hc_response_free(&r);
    return status;
}

/* The access-log line of the request with this trace id. */
static void log_line(const char *trace_id, char *line, size_t cap)
{
    cr_assert(sg_proc_stdout_line(&gw, trace_id, line, cap, 5000), "no access-log line for %s", trace_id);
}

static unsigned long long log_u64(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(line, k);
    cr_assert(p, "%s not in %s", key, line);
    return strtoull(p + strlen(k), NULL, 10);
}

#define ID(n) "4bf92f35-77b3-4da6-a3ce-929d0e0e47" n

/* ---- identity from the agent header ------------------------------------------------- */

static void start_header(void)
{
    start_with("2", "  max_agents: 3\n");
}

TestSuite(egress_agent_header, .init = start_header, .fini = stop, .timeout = 60);

Test(egress_agent_header, names_the_agent_and_is_not_forwarded)
{
    cr_assert_eq(get("/a", "X-Agent-Id: planner-1\r\nX-Trace-Id: " ID("01") "\r\n"), 200);
    cr_assert(us_wait_requests(up, 1, 3000));
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert_eq(us_header_count(q.head, "X-Agent-Id"), 0, "the agent header stays with the proxy: %s", q.head);
    us_request_free(&q);
    char line[2048], s[256];
    log_line(ID("01"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"planner-1\""), "%s", line);
    cr_assert(wait_metric(req_series(s, sizeof(s), "planner-1", "GET", 200), 1, 5000), "%s", s);
}

Test(egress_agent_header, missing_or_invalid_is_unknown)
{
    cr_assert_eq(get("/a", "X-Trace-Id: " ID("02") "\r\n"), 200);
    cr_assert_eq(get("/a", "X-Agent-Id: not a token\r\nX-Trace-Id: " ID("03") "\r\n"), 200);
    cr_assert_eq(get("/a", "X-Agent-Id: a\r\nX-Agent-Id: b\r\nX-Trace-Id: " ID("04") "\r\n"), 200);
    char long_name[128];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    char extra[256];
    snprintf(extra, sizeof(extra), "X-Agent-Id: %s\r\nX-Trace-Id: " ID("05") "\r\n", long_name);
    cr_assert_eq(get("/a", extra), 200);
    static const char *const ids[] = {ID("02"), ID("03"), ID("04"), ID("05")};
    for (size_t i = 0; i < 4; i++) {
        char line[2048];
        log_line(ids[i], line, sizeof(line));
        cr_assert(strstr(line, "\"agent\":\"unknown\""), "%s", line);
    }
    char s[256];
    cr_assert(wait_metric(req_series(s, sizeof(s), "unknown", "GET", 200), 4, 5000), "%s", s);
    char *m = scrape();
    cr_assert(!strstr(m, "agent=\"a\""), "two header lines name no agent");
    cr_assert(!strstr(m, "not a token"));
    free(m);
    /* Each was forwarded without the header all the same. */
    cr_assert(us_wait_requests(up, 4, 3000));
    for (int i = 0; i < 4; i++) {
        us_request_t q;
        cr_assert(us_request(up, i, &q));
        cr_assert_eq(us_header_count(q.head, "X-Agent-Id"), 0, "%s", q.head);
        us_request_free(&q);
    }
}

Test(egress_agent_header, beyond_max_agents_is_other)
{
    static const char *const agents[] = {"a1", "a2", "a3", "a4", "a5"};
    char extra[128], s[256];
    for (size_t i = 0; i < 5; i++) {
        snprintf(extra, sizeof(extra), "X-Agent-Id: %s\r\n", agents[i]);
        cr_assert_eq(get("/a", extra), 200);
        /* In order: the label values go to the first three names. */
        cr_assert(
            wait_metric(req_series(s, sizeof(s), i < 3 ? agents[i] : "other", "GET", 200), i < 3 ? 1 : i - 2, 5000),
            "%s", s);
    }
    cr_assert_eq(get("/a", "X-Agent-Id: a2\r\n"), 200);
    cr_assert(wait_metric(req_series(s, sizeof(s), "a2", "GET", 200), 2, 5000), "a known name keeps its label");
    char *m = scrape();
    cr_assert(!strstr(m, "agent=\"a4\"") && !strstr(m, "agent=\"a5\""), "%s", m);
    cr_assert_eq(metric(m, req_series(s, sizeof(s), "other", "GET", 200)), 2, "%s", m);
    cr_assert_gt(metric(m, bytes_series(s, sizeof(s), "other", "in")), 0);
    free(m);
    char *err = sg_proc_stderr(&gw);
    cr_assert(strstr(err, "more than 3 agents (egress.max_agents)"), "one warning: %s", err);
    free(err);
}

Test(egress_agent_header, bytes_both_ways_for_get_post_and_connect)
{
    /* GET: in = the request as sent; out = what the access log counted. */
    char raw[1024];
    snprintf(raw, sizeof(raw),
             "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Agent-Id: getter\r\nX-Trace-Id: " ID(
                 "10") "\r\n\r\n",
             us_port(up), us_port(up));
    size_t get_in = strlen(raw);
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, raw, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    char line[2048], s[256];
    log_line(ID("10"), line, sizeof(line));
    cr_assert_eq(log_u64(line, "req_bytes"), get_in, "%s", line);
    unsigned long long get_out = log_u64(line, "resp_bytes");
    cr_assert_gt(get_out, 0);

    /* POST with a body: the body counts in, its echo counts out. */
    enum { BODY = 50000 };
    char *body = gw_pattern(BODY);
    char head[512];
    snprintf(head, sizeof(head),
             "POST http://127.0.0.1:%u/echo HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Agent-Id: poster\r\nX-Trace-Id: " ID(
                 "11") "\r\nContent-Length: %d\r\n\r\n",
             us_port(up), us_port(up), BODY);
    size_t post_in = strlen(head) + BODY;
    char *post = malloc(post_in + 1);
    memcpy(post, head, strlen(head));
    memcpy(post + strlen(head), body, BODY);
    post[post_in] = '\0';
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, eaddr, 2000), 0);
    cr_assert(hc_send(&c, post, post_in, 5000));
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, BODY);
    hc_response_free(&r);
    hc_close(&c);
    free(post);
    free(body);
    log_line(ID("11"), line, sizeof(line));
    cr_assert_eq(log_u64(line, "req_bytes"), post_in, "%s", line);
    unsigned long long post_out = log_u64(line, "resp_bytes");
    cr_assert_gt(post_out, BODY);

    /* CONNECT: the request head and every tunnel byte in; the 200 head and
     * the echo out; counted when the tunnel ends. */
    char target[64], req[512];
    snprintf(target, sizeof(target), "127.0.0.1:%u", echo->port);
    snprintf(req, sizeof(req),
             "CONNECT %s HTTP/1.1\r\nHost: %s\r\nX-Agent-Id: tunneler\r\nX-Trace-Id: " ID("12") "\r\n\r\n", target,
             target);
    cr_assert_eq(hc_connect(&c, eaddr, 2000), 0);
    cr_assert(hc_send_str(&c, req, 2000));
    cr_assert_eq(hc_read_response_ex(&c, &r, true, false, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    enum { N = 100000 };
    char *data = gw_pattern(N), *back = malloc(N);
    cr_assert(hc_send(&c, data, N, 5000));
    for (size_t got = 0; got < N;) {
        ssize_t k = hc_read_some(&c, back + got, N - got, 5000);
        cr_assert_gt(k, 0);
        got += (size_t)k;
    }
    cr_assert_eq(memcmp(data, back, N), 0);
    shutdown(c.fd, SHUT_WR);
    cr_assert(hc_wait_closed(&c, 5000));
    hc_close(&c);
    free(data);
    free(back);
    size_t connect_in = strlen(req) + N;
    size_t connect_out = strlen("HTTP/1.1 200 Connection Established\r\nX-Trace-Id: " ID("12") "\r\n\r\n") + N;

    cr_assert(wait_metric(bytes_series(s, sizeof(s), "tunneler", "out"), (double)connect_out, 5000), "%s", s);
    char *m = scrape();
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "getter", "in")), (double)get_in, "%s", m);
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "getter", "out")), (double)get_out);
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "poster", "in")), (double)post_in);
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "poster", "out")), (double)post_out);
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "tunneler", "in")), (double)connect_in);
    cr_assert_eq(metric(m, bytes_series(s, sizeof(s), "tunneler", "out")), (double)connect_out);
    snprintf(s, sizeof(s),
             "swarm_egress_requests_total{agent=\"tunneler\",destination=\"%s\",method=\"CONNECT\",code=\"200\"}",
             target);
    cr_assert_eq(metric(m, s), 1, "%s", m);
    free(m);
    log_line(ID("12"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"tunneler\""), "%s", line);
}

/* ---- identity from per-agent credentials ---------------------------------------------- */

static void start_users(void)
{
    snprintf(users_dir, sizeof(users_dir), "/tmp/sg_agents_XXXXXX");
    cr_assert_not_null(mkdtemp(users_dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/agents.txt", users_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("# one agent a line\nbuilder:pw-builder\n", f);
    fclose(f);
    cr_assert_eq(chmod(path, 0600), 0);
    char extra[512];
    snprintf(extra, sizeof(extra),
             "  users: [{name: scout, password: pw-scout}]\n"
             "  users_file: %s\n",
             path);
    start_with("2", extra);
}

TestSuite(egress_agent_users, .init = start_users, .fini = stop, .timeout = 60);

#define AUTH_SCOUT "Proxy-Authorization: Basic c2NvdXQ6cHctc2NvdXQ=\r\n"       /* scout:pw-scout */
#define AUTH_BUILDER "Proxy-Authorization: Basic YnVpbGRlcjpwdy1idWlsZGVy\r\n" /* builder:pw-builder */
#define AUTH_WRONG "Proxy-Authorization: Basic c2NvdXQ6d3Jvbmc=\r\n"           /* scout:wrong */

Test(egress_agent_users, proxy_authorization_names_the_agent)
{
    cr_assert_eq(get("/a", AUTH_SCOUT "X-Trace-Id: " ID("20") "\r\n"), 200);
    cr_assert_eq(get("/a", AUTH_BUILDER "X-Trace-Id: " ID("21") "\r\n"), 200, "a user from users_file");
    /* The header does not override the credentials, and is not forwarded. */
    cr_assert_eq(get("/a", AUTH_SCOUT "X-Agent-Id: builder\r\nX-Trace-Id: " ID("22") "\r\n"), 200);
    cr_assert_eq(get("/a", AUTH_WRONG "X-Trace-Id: " ID("23") "\r\n"), 407);
    cr_assert_eq(get("/a", "X-Agent-Id: scout\r\nX-Trace-Id: " ID("24") "\r\n"), 407, "credentials required");

    char line[2048], s[256];
    log_line(ID("20"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"scout\""), "%s", line);
    log_line(ID("21"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"builder\""), "%s", line);
    log_line(ID("22"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"scout\""), "%s", line);
    log_line(ID("23"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"unknown\""), "%s", line);
    cr_assert(strstr(line, "\"status\":407"), "%s", line);

    cr_assert(us_wait_requests(up, 3, 3000));
    for (int i = 0; i < 3; i++) {
        us_request_t q;
        cr_assert(us_request(up, i, &q));
        cr_assert_eq(us_header_count(q.head, "X-Agent-Id"), 0, "%s", q.head);
        cr_assert_eq(us_header_count(q.head, "Proxy-Authorization"), 0, "%s", q.head);
        us_request_free(&q);
    }
    cr_assert(wait_metric(req_series(s, sizeof(s), "scout", "GET", 200), 2, 5000), "%s", s);
    char *m = scrape();
    cr_assert_eq(metric(m, req_series(s, sizeof(s), "builder", "GET", 200)), 1, "%s", m);
    snprintf(
        s, sizeof(s),
        "swarm_egress_requests_total{agent=\"unknown\",destination=\"none\",method=\"GET\",code=\"4xx\"}"); /* 407 is
                                                                                                               not one
                                                                                                               of the
                                                                                                               exact
                                                                                                               codes */
    cr_assert_eq(metric(m, s), 2, "%s", m);
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"auth\"}"), 2);
    free(m);
}

Test(egress_agent_users, users_file_is_read_again_on_reload)
{
    cr_assert_eq(get("/a", "Proxy-Authorization: Basic dGVzdGVyOnB3LXRlc3Rlcg==\r\n"), 407,
                 "tester:pw-tester unknown yet");
    char path[128];
    snprintf(path, sizeof(path), "%s/agents.txt", users_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("builder:pw-builder\ntester:pw-tester\n", f);
    fclose(f);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(wait_metric("swarm_config_reload_total{result=\"success\"}", 1, 10000), "the reload took");
    cr_assert_eq(get("/a", "Proxy-Authorization: Basic dGVzdGVyOnB3LXRlc3Rlcg==\r\nX-Trace-Id: " ID("25") "\r\n"), 200);
    char line[2048];
    log_line(ID("25"), line, sizeof(line));
    cr_assert(strstr(line, "\"agent\":\"tester\""), "%s", line);

    /* A file made readable by others is refused: the old users stay. */
    cr_assert_eq(chmod(path, 0644), 0);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(wait_metric("swarm_config_reload_total{result=\"failure\"}", 1, 10000), "the reload was refused");
    cr_assert(sg_proc_wait_stderr(&gw, "is readable or writable by group or others", 1, 5000));
    cr_assert_eq(get("/a", "Proxy-Authorization: Basic dGVzdGVyOnB3LXRlc3Rlcg==\r\n"), 200);
}

/* ---- the per-agent rate limit ------------------------------------------------------------ */

static void start_rate(void)
{
    /* One worker: the limit is per worker (docs/egress.md). */
    start_with("1", "  rate_limit: {requests_per_second: 0.1, burst: 2}\n");
}

TestSuite(egress_agent_rate, .init = start_rate, .fini = stop, .timeout = 60);

Test(egress_agent_rate, bucket_empty_is_429_with_retry_after)
{
    cr_assert_eq(get("/a", "X-Agent-Id: fast\r\n"), 200);
    cr_assert_eq(get("/a", "X-Agent-Id: fast\r\n"), 200);
    char raw[512];
    snprintf(raw, sizeof(raw),
             "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Agent-Id: fast\r\nX-Trace-Id: " ID(
                 "30") "\r\n\r\n",
             us_port(up), us_port(up));
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, raw, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 429, "%d %s", r.status, r.body);
    cr_assert(strncmp(r.head, "HTTP/1.1 429 Too Many Requests\r\n", 32) == 0, "%s", r.head);
    char v[64];
    cr_assert(hc_header(&r, "Retry-After", v, sizeof(v)), "%s", r.head);
    /* Two tokens taken, refilled at 0.1/s: the next one in 10 s less the
     * time the requests took, in whole seconds rounded up (10 when they
     * took under a second; a slow machine gets 9 or 8). */
    int retry = atoi(v);
    cr_assert(retry >= 8 && retry <= 10, "Retry-After: %s", v);
    cr_assert(hc_header(&r, "Content-Type", v, sizeof(v)));
    cr_assert_str_eq(v, "application/json");
    cr_assert(hc_header(&r, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, ID("30"));
    cr_assert(strstr(r.body, "\"reason\":\"rate_limited\""), "%s", r.body);
    cr_assert(strstr(r.body, "\"status\":429"), "%s", r.body);
    cr_assert(strstr(r.body, "\"trace_id\":\"" ID("30") "\""), "%s", r.body);
    hc_response_free(&r);
    cr_assert_eq(us_requests(up), 2, "a refused request never reaches the origin");

    /* Another agent has its own bucket. */
    cr_assert_eq(get("/a", "X-Agent-Id: calm\r\n"), 200);

    char s[256];
    cr_assert(wait_metric("swarm_egress_rate_limited_total{agent=\"fast\"}", 1, 5000));
    cr_assert(wait_metric(req_series(s, sizeof(s), "calm", "GET", 200), 1, 5000));
    char *m = scrape();
    snprintf(s, sizeof(s),
             "swarm_egress_requests_total{agent=\"fast\",destination=\"none\",method=\"GET\",code=\"429\"}");
    cr_assert_eq(metric(m, s), 1, "%s", m);
    cr_assert_eq(metric(m, req_series(s, sizeof(s), "fast", "GET", 200)), 2);
    cr_assert(isnan(metric(m, "swarm_egress_rate_limited_total{agent=\"calm\"}")), "%s", m);
    free(m);
}
