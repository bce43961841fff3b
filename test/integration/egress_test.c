/* Egress mode (forward proxy) through the real binary, loopback only: curl
 * with -x, absolute-form forwarding with trace stamping, CONNECT tunnels
 * over a raw TCP origin (bytes both ways, close from either side,
 * back-pressure with bounded RSS), the allow-list's refusals (403 with a
 * reason, no connection attempted), IPv6 literals, bad targets, proxy auth,
 * access log and /metrics. The allow-list names 127.0.0.1/[::1] ports
 * explicitly: loopback is refused otherwise. */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/jsoncheck.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 7 + i / 251) & 0xff);
}

/* ---- a raw TCP origin ----------------------------------------------------- */

typedef enum raw_mode {
    RAW_ECHO = 0,  /* echoes; "QUIT\n" -> echo it and close; EOF -> FIN back */
    RAW_SOURCE,    /* sends `n` pattern bytes at full speed, then closes */
    RAW_SLOW_SINK, /* reads slowly, checks the pattern; at EOF answers "OK <bytes> <bad>\n" */
} raw_mode_t;

#define RAW_MAX_CONNS 16

typedef struct raw_srv {
    int lfd;
    uint16_t port;
    raw_mode_t mode;
    uint64_t n;
    pthread_t th;
    atomic_bool stop;
    atomic_int conns;
    atomic_int eofs; /* EOF seen from the proxy */
    pthread_t cth[RAW_MAX_CONNS];
    int cfd[RAW_MAX_CONNS];
} raw_srv_t;

typedef struct raw_conn_arg {
    raw_srv_t *s;
    int fd;
} raw_conn_arg_t;

static bool raw_wait(raw_srv_t *s, int fd, short ev)
{
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, 50);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
    return false;
}

static bool raw_send(raw_srv_t *s, int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n) {
        if (!raw_wait(s, fd, POLLOUT))
            return false;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void *raw_conn(void *arg)
{
    raw_conn_arg_t a = *(raw_conn_arg_t *)arg;
    free(arg);
    raw_srv_t *s = a.s;
    char *buf = malloc(65536);
    if (s->mode == RAW_SOURCE) {
        for (uint64_t off = 0; off < s->n;) {
            size_t k = s->n - off < 65536 ? (size_t)(s->n - off) : 65536;
            for (size_t i = 0; i < k; i++)
                buf[i] = (char)pat(off + i);
            if (!raw_send(s, a.fd, buf, k))
                break;
            off += k;
        }
        shutdown(a.fd, SHUT_WR);
    } else {
        uint64_t total = 0, bad = 0;
        for (;;) {
            if (!raw_wait(s, a.fd, POLLIN))
                break;
            ssize_t r = recv(a.fd, buf, 65536, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r == 0) {
                atomic_fetch_add(&s->eofs, 1);
                if (s->mode == RAW_SLOW_SINK) {
                    char line[96];
                    int n = snprintf(line, sizeof(line), "OK %llu %llu\n", (unsigned long long)total,
                                     (unsigned long long)bad);
                    raw_send(s, a.fd, line, (size_t)n);
                }
                shutdown(a.fd, SHUT_WR);
                break;
            }
            if (r < 0)
                break;
            if (s->mode == RAW_SLOW_SINK) {
                for (ssize_t i = 0; i < r; i++)
                    bad += (uint8_t)buf[i] != pat(total + (uint64_t)i);
                total += (uint64_t)r;
                sgt_nap_ms(1);
                continue;
            }
            total += (uint64_t)r;
            if (!raw_send(s, a.fd, buf, (size_t)r))
                break;
            if (r >= 5 && memcmp(buf + r - 5, "QUIT\n", 5) == 0)
                break; /* the origin closes first */
        }
    }
    free(buf);
    close(a.fd);
    return NULL;
}

static void *raw_accept(void *arg)
{
    raw_srv_t *s = arg;
    while (raw_wait(s, s->lfd, POLLIN)) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int i = atomic_fetch_add(&s->conns, 1);
        if (i >= RAW_MAX_CONNS) {
            close(fd);
            continue;
        }
        raw_conn_arg_t *a = malloc(sizeof(*a));
        a->s = s;
        a->fd = fd;
        s->cfd[i] = fd;
        pthread_create(&s->cth[i], NULL, raw_conn, a);
    }
    return NULL;
}

static raw_srv_t *raw_start(raw_mode_t mode, uint64_t n)
{
    raw_srv_t *s = calloc(1, sizeof(*s));
    s->mode = mode;
    s->n = n;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s->lfd, 64), 0);
    socklen_t len = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, raw_accept, s);
    return s;
}

static void raw_stop(raw_srv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    int n = atomic_load(&s->conns);
    for (int i = 0; i < n && i < RAW_MAX_CONNS; i++)
        pthread_join(s->cth[i], NULL);
    close(s->lfd);
    free(s);
}

static bool wait_atomic(atomic_int *v, int want, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    while (atomic_load(v) < want) {
        if (sgt_now_ms() > deadline)
            return false;
        sgt_nap_ms(5); /* polling interval of a deadline-bounded wait */
    }
    return true;
}

/* ---- curl ------------------------------------------------------------------- */

/* Runs curl with args (NULL-terminated, no argv[0]) in a clean environment
 * (no *_proxy variables, no .curlrc); stdout+stderr into out. Returns the
 * exit code, -1 on a timeout (the child is killed by its PID). */
static int run_curl(const char *const *args, char *out, size_t cap, int timeout_ms)
{
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    const char *argv[48] = {"curl", "-q", "-sS", "--max-time", "10"};
    size_t n = 5;
    for (size_t i = 0; args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) { /* no Criterion call in the child: it would report as a stranger */
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        char *const env[] = {"PATH=/usr/bin:/bin", "HOME=/nonexistent", NULL};
        execve("/usr/bin/curl", (char *const *)(uintptr_t)argv, env);
        _exit(127);
    }
    cr_assert(pid > 0);
    close(pfd[1]);
    size_t len = 0;
    long long deadline = sgt_now_ms() + timeout_ms;
    bool timed_out = false;
    for (;;) {
        int left = (int)(deadline - sgt_now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t r = read(pfd[0], out + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len + 1 >= cap)
            break;
    }
    out[len] = '\0';
    close(pfd[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    if (timed_out)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Header value in curl's -D - output (the last response's), into v. */
static bool resp_header(const char *out, const char *name, char *v, size_t cap)
{
    const char *last = NULL;
    for (const char *p = strstr(out, "HTTP/1.1 "); p; p = strstr(p + 1, "HTTP/1.1 "))
        last = p;
    size_t nl = strlen(name);
    for (const char *l = last ? strstr(last, "\r\n") : NULL; l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *s = h + nl + 1;
            while (*s == ' ')
                s++;
            const char *e = strstr(s, "\r\n");
            snprintf(v, cap, "%.*s", (int)(e - s), s);
            return true;
        }
    }
    return false;
}

/* ---- gateway -------------------------------------------------------------------- */

static sg_proc_t gw;
static us_server_t *up, *up6, *uplocal;
static raw_srv_t *echo;
static const char *eaddr; /* the egress listener */

#define VALID_ID "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"

static void start_with(const char *extra_egress)
{
    up = us_start("origin", false);
    up6 = us_start("origin6", true);
    uplocal = us_start("local", false);
    echo = raw_start(RAW_ECHO, 0);
    cr_assert(up && up6 && uplocal && echo);
    gw_start(&gw,
             "workers: 2\n"
             "listeners:\n"
             "  - {name: egress, address: \"127.0.0.1:0\", mode: egress, serve_health: true}\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: stdout, format: json}\n"
             "egress:\n"
             "  allow:\n"
             "    - \"127.0.0.1:%u\"\n"
             "    - \"127.0.0.1:%u\"\n"
             "    - \"[::1]:%u\"\n"
             "    - localhost\n"
             "    - \"*.example.test:443\"\n"
             "%s"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             us_port(up), echo->port, us_port(up6), extra_egress);
    eaddr = sg_proc_addr(&gw, "egress");
    cr_assert(eaddr);
}

static void start(void)
{
    start_with("");
}

static void start_auth(void)
{
    start_with("  auth_user: agent\n  auth_password: \"s3cret:x\"\n");
}

static void stop(void)
{
    gw_stop(&gw);
    us_stop(up);
    us_stop(up6);
    us_stop(uplocal);
    raw_stop(echo);
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

/* Waits until a series reaches `want` (values are summed at scrape time). */
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

/* CONNECT on a fresh connection; returns the response (head only). */
static int do_connect(hc_conn_t *c, const char *target, const char *extra, hc_response_t *r)
{
    cr_assert_eq(hc_connect(c, eaddr, 2000), 0);
    char req[512];
    snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, extra ? extra : "");
    cr_assert(hc_send_str(c, req, 2000));
    int e = hc_read_response_ex(c, r, true, false, 5000);
    char cl[32];
    if (e == HC_OK && r->status != 200 && hc_header(r, "Content-Length", cl, sizeof(cl))) {
        /* An answer other than 200 has a body: read it (a 200 is the tunnel). */
        size_t n = (size_t)strtoul(cl, NULL, 10), got = 0;
        free(r->body);
        r->body = calloc(1, n + 1);
        while (got < n) {
            ssize_t k = hc_read_some(c, r->body + got, n - got, 5000);
            if (k <= 0)
                return HC_CLOSED;
            got += (size_t)k;
        }
        r->body_len = n;
    }
    return e;
}

static void read_exact(hc_conn_t *c, char *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = hc_read_some(c, out + got, n - got, 5000);
        cr_assert_gt(k, 0, "tunnel read: %zd after %zu of %zu bytes", k, got, n);
        got += (size_t)k;
    }
}

static void check_refusal(const hc_response_t *r, int status, const char *reason)
{
    cr_assert_eq(r->status, status, "status %d: %s", r->status, r->body);
    /* Issue 16: the proxy's own 403 went out as "403 Unknown". */
    char line[64];
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status,
             status == 403   ? "Forbidden"
             : status == 400 ? "Bad Request"
             : status == 407 ? "Proxy Authentication Required"
                             : "?");
    cr_assert(!strncmp(r->head, line, strlen(line)), "status line: %.*s", (int)strcspn(r->head, "\r"), r->head);
    char tid[64], v[128];
    cr_assert(hc_header(r, "X-Trace-Id", tid, sizeof(tid)));
    cr_assert_eq(strlen(tid), 36);
    char err[200];
    cr_assert(sg_test_json_valid(r->body, r->body_len, err, sizeof(err)), "%s: %s", err, r->body);
    cr_assert_gt(sg_test_json_get(r->body, r->body_len, "trace_id", 0, v, sizeof(v)), 0);
    cr_assert_str_eq(v, tid);
    cr_assert_gt(sg_test_json_get(r->body, r->body_len, "reason", 0, v, sizeof(v)), 0, "%s", r->body);
    cr_assert_str_eq(v, reason, "%s", r->body);
}

TestSuite(egress, .init = start, .fini = stop, .timeout = 60);

/* ---- forwarding ------------------------------------------------------------------- */

Test(egress, curl_http_is_stamped_pooled_and_logged)
{
    char url[128], url2[128], out[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/a?x=1", us_port(up));
    snprintf(url2, sizeof(url2), "http://127.0.0.1:%u/gen?n=3", us_port(up));
    char proxy[96];
    snprintf(proxy, sizeof(proxy), "http://%s", eaddr);
    const char *args[] = {"-D", "-",
                          "-x", proxy,
                          "-H", "Proxy-Extra: secret",
                          "-H", "Proxy-Authorization: Basic Zm9vOmJhcg==",
                          "-H", "X-Forwarded-For: 10.9.9.9",
                          url,  url2,
                          NULL};
    int rc = run_curl(args, out, sizeof(out), 15000);
    cr_assert_eq(rc, 0, "curl: %d\n%s", rc, out);
    cr_assert(strstr(out, "HTTP/1.1 200"), "%s", out);
    cr_assert(strstr(out, "hello"), "%s", out);
    cr_assert(strstr(out, "\r\n\r\nabc"), "second response body: %s", out);
    char tid[64];
    cr_assert(resp_header(out, "X-Trace-Id", tid, sizeof(tid)), "%s", out);

    cr_assert(us_wait_requests(up, 2, 3000));
    cr_assert_eq(us_connections(up), 1, "two requests, one pooled origin connection (%d)", us_connections(up));
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /a?x=1 HTTP/1.1\r\n", 21) == 0, "origin-form upstream: %s", q.head);
    char v[128], want_host[64];
    snprintf(want_host, sizeof(want_host), "127.0.0.1:%u", us_port(up));
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_str_eq(v, want_host);
    cr_assert_eq(us_header_count(q.head, "X-Trace-Id"), 1, "%s", q.head);
    cr_assert_eq(us_header_count(q.head, "traceparent"), 1, "%s", q.head);
    cr_assert(us_header(q.head, "traceparent", v, sizeof(v)));
    cr_assert_eq(strlen(v), 55);
    cr_assert_eq(us_header_count(q.head, "Proxy-Extra"), 0, "%s", q.head);
    cr_assert_eq(us_header_count(q.head, "Proxy-Authorization"), 0, "%s", q.head);
    cr_assert_eq(us_header_count(q.head, "Proxy-Connection"), 0, "%s", q.head);
    cr_assert(us_header(q.head, "X-Forwarded-For", v, sizeof(v)));
    cr_assert_str_eq(v, "10.9.9.9", "the agent's own value, no address added");
    cr_assert(us_header(q.head, "Via", v, sizeof(v)));
    cr_assert_str_eq(v, "1.1 swarmgate");
    us_request_free(&q);
    cr_assert(us_request(up, 1, &q));
    cr_assert(us_header(q.head, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, tid, "response id = the id the origin saw");
    us_request_free(&q);

    char line[2048];
    cr_assert(sg_proc_stdout_line(&gw, tid, line, sizeof(line), 5000), "no access-log line with %s", tid);
    cr_assert(strstr(line, "\"method\":\"GET\""), "%s", line);
    cr_assert(strstr(line, "\"path\":\"/gen\""), "%s", line);
    cr_assert(strstr(line, "\"status\":200"), "%s", line);
    char want_up[96];
    snprintf(want_up, sizeof(want_up), "\"upstream\":\"127.0.0.1:%u\"", us_port(up));
    cr_assert(strstr(line, want_up), "%s", line);

    char series[160];
    snprintf(series, sizeof(series),
             "swarm_egress_requests_total{agent=\"unknown\",destination=\"127.0.0.1:%u\",method=\"GET\",code=\"200\"}",
             us_port(up));
    cr_assert(wait_metric(series, 2, 3000), "%s", series);
    char *m = scrape();
    cr_assert(isnan(metric(m, "swarm_http_requests_total{route=\"none\",method=\"GET\",code=\"200\"}")),
              "egress traffic stays out of the route families");
    free(m);
}

Test(egress, incoming_trace_id_is_kept)
{
    hc_response_t r;
    char req[256];
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: ignored.example\r\nX-Trace-Id: %s\r\n\r\n",
             us_port(up), VALID_ID);
    cr_assert_eq(hc_request(eaddr, req, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char v[128];
    cr_assert(hc_header(&r, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, VALID_ID);
    hc_response_free(&r);
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(us_header(q.head, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, VALID_ID);
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_neq(strcmp(v, "ignored.example"), 0, "Host comes from the target (RFC 9112 3.2.2)");
    us_request_free(&q);
}

Test(egress, ipv6_literal_targets)
{
    char url[128], out[8192], proxy[96];
    snprintf(url, sizeof(url), "http://[::1]:%u/v6path", us_port(up6));
    snprintf(proxy, sizeof(proxy), "http://%s", eaddr);
    const char *args[] = {"-g", "-D", "-", "-x", proxy, url, NULL};
    cr_assert_eq(run_curl(args, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200"), "%s", out);
    cr_assert(us_wait_requests(up6, 1, 3000));
    us_request_t q;
    cr_assert(us_request(up6, 0, &q));
    cr_assert(strncmp(q.head, "GET /v6path HTTP/1.1\r\n", 22) == 0, "%s", q.head);
    char v[64], want[64];
    snprintf(want, sizeof(want), "[::1]:%u", us_port(up6));
    cr_assert(us_header(q.head, "Host", v, sizeof(v)));
    cr_assert_str_eq(v, want);
    us_request_free(&q);

    /* CONNECT to an IPv6 literal, and [::1] on a port no rule names. */
    hc_conn_t c;
    hc_response_t r;
    char target[64];
    snprintf(target, sizeof(target), "[::1]:%u", us_port(up6));
    cr_assert_eq(do_connect(&c, target, NULL, &r), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, "GET /in-tunnel HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello");
    cr_assert_eq(hc_header_count(&r, "X-Trace-Id"), 0, "bytes in a tunnel are not touched");
    hc_response_free(&r);
    hc_close(&c);
    snprintf(target, sizeof(target), "[::1]:%u", us_port(uplocal));
    cr_assert_eq(do_connect(&c, target, NULL, &r), HC_OK);
    check_refusal(&r, 403, "port_not_allowed");
    hc_response_free(&r);
    hc_close(&c);
}

Test(egress, origin_form_is_400_and_health_is_served)
{
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    check_refusal(&r, 400, "origin_form");
    hc_response_free(&r);
    cr_assert_eq(hc_request(eaddr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.body);
    hc_response_free(&r);
    /* https:// targets: egress_https_test.c (TLS originated by swarmgate). */
    cr_assert_eq(us_requests(up), 0);
}

/* ---- CONNECT tunnels ----------------------------------------------------------------- */

Test(egress, connect_tunnel_bytes_both_ways_closed_by_either_side)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%u", echo->port);
    /* 1: every byte value both ways, then the client half-closes. */
    hc_conn_t c;
    hc_response_t r;
    cr_assert_eq(do_connect(&c, target, "X-Trace-Id: " VALID_ID "\r\n", &r), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert(strncmp(r.head, "HTTP/1.1 200 Connection Established\r\n", 37) == 0, "%s", r.head);
    char v[64];
    cr_assert(hc_header(&r, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, VALID_ID, "the agent's id comes back");
    cr_assert_eq(hc_header_count(&r, "Content-Length"), 0);
    cr_assert_eq(hc_header_count(&r, "Transfer-Encoding"), 0);
    hc_response_free(&r);
    enum { N = 256 * 1024 };
    char *data = malloc(N), *back = malloc(N);
    for (size_t i = 0; i < N; i++)
        data[i] = (char)(i & 0xff);
    cr_assert(hc_send(&c, data, N, 5000));
    read_exact(&c, back, N);
    cr_assert_eq(memcmp(data, back, N), 0);
    cr_assert(hc_send(&c, "tail", 4, 2000));
    shutdown(c.fd, SHUT_WR); /* half-close: the origin still answers */
    read_exact(&c, back, 4);
    cr_assert_eq(memcmp(back, "tail", 4), 0);
    cr_assert(hc_wait_closed(&c, 5000), "the origin's FIN reached the client");
    cr_assert(wait_atomic(&echo->eofs, 1, 3000), "the client's FIN reached the origin");
    hc_close(&c);

    /* 2: the origin closes first. */
    cr_assert_eq(do_connect(&c, target, "X-Trace-Id: not-a-valid-id\r\n", &r), HC_OK);
    cr_assert_eq(r.status, 200);
    char tid[64];
    cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
    cr_assert_eq(strlen(tid), 36);
    cr_assert_neq(strcmp(tid, "not-a-valid-id"), 0, "an invalid id is replaced");
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, "ping\n", 2000));
    read_exact(&c, back, 5);
    cr_assert_eq(memcmp(back, "ping\n", 5), 0);
    cr_assert(hc_send_str(&c, "QUIT\n", 2000));
    read_exact(&c, back, 5);
    cr_assert_eq(memcmp(back, "QUIT\n", 5), 0);
    cr_assert(hc_wait_closed(&c, 5000), "origin close reaches the client");
    hc_close(&c);
    free(data);
    free(back);

    /* Recorded when each tunnel ended: metrics and access log. */
    char series[160];
    snprintf(series, sizeof(series), "swarm_egress_tunnels_total{destination=\"127.0.0.1:%u\"}", echo->port);
    cr_assert(wait_metric(series, 2, 5000), "%s", series);
    char *m = scrape();
    snprintf(series, sizeof(series), "swarm_egress_tunnel_duration_seconds_count{destination=\"127.0.0.1:%u\"}",
             echo->port);
    cr_assert_eq(metric(m, series), 2, "%s", m);
    snprintf(
        series, sizeof(series),
        "swarm_egress_requests_total{agent=\"unknown\",destination=\"127.0.0.1:%u\",method=\"CONNECT\",code=\"200\"}",
        echo->port);
    cr_assert_eq(metric(m, series), 2);
    free(m);
    char line[2048];
    cr_assert(sg_proc_stdout_line(&gw, VALID_ID, line, sizeof(line), 5000));
    cr_assert(strstr(line, "\"method\":\"CONNECT\""), "%s", line);
    cr_assert(strstr(line, "\"status\":200"), "%s", line);
    char want[64];
    snprintf(want, sizeof(want), "\"resp_bytes\":%u,", (unsigned)(N + 4 + 37 + 12 + 36 + 2 + 2));
    cr_assert(strstr(line, want), "tunnel bytes and the 200 head counted (%s): %s", want, line);
    cr_assert(!strstr(line, "\"error\""), "a clean close is not an error: %s", line);
}

Test(egress, curl_proxytunnel)
{
    char url[128], out[8192], proxy[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/through", us_port(up));
    snprintf(proxy, sizeof(proxy), "http://%s", eaddr);
    const char *args[] = {"-p", "-D", "-", "-x", proxy, url, NULL};
    cr_assert_eq(run_curl(args, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "200 Connection Established"), "%s", out);
    cr_assert(strstr(out, "hello"), "%s", out);
    cr_assert(us_wait_requests(up, 1, 3000));
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert(strncmp(q.head, "GET /through HTTP/1.1\r\n", 23) == 0, "%s", q.head);
    us_request_free(&q);
}

Test(egress, tunnel_backpressure_bounded_rss, .timeout = 180)
{
    if (sg_proc_pools_off())
        cr_skip_test("pools off: freed buffers sit in ASan's quarantine, so RSS bounds nothing");
    raw_srv_t *src = raw_start(RAW_SOURCE, 100u << 20), *sink = raw_start(RAW_SLOW_SINK, 0);
    gw_stop(&gw);
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: egress, address: \"127.0.0.1:0\", mode: egress}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "egress: {allow: [\"127.0.0.1:%u\", \"127.0.0.1:%u\", \"127.0.0.1:%u\"]}\n"
             "shutdown: {drain_delay: 0ms}\n",
             src->port, sink->port, echo->port);
    eaddr = sg_proc_addr(&gw, "egress");
    char target[64];
    hc_conn_t c;
    hc_response_t r;
    snprintf(target, sizeof(target), "127.0.0.1:%u", echo->port);
    cr_assert_eq(do_connect(&c, target, NULL, &r), HC_OK);
    hc_response_free(&r);
    hc_close(&c);
    long base = sg_proc_status_kb(&gw, "VmHWM");
    cr_assert_gt(base, 0);

    /* origin -> client: 100 MiB to a client that reads slowly */
    snprintf(target, sizeof(target), "127.0.0.1:%u", src->port);
    cr_assert_eq(do_connect(&c, target, NULL, &r), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    char *buf = malloc(65536);
    uint64_t got = 0, bad = 0;
    for (;;) {
        ssize_t k = hc_read_some(&c, buf, 65536, 10000);
        if (k == 0)
            break;
        cr_assert_gt(k, 0, "stalled after %llu bytes", (unsigned long long)got);
        for (ssize_t i = 0; i < k; i++)
            bad += (uint8_t)buf[i] != pat(got + (uint64_t)i);
        got += (uint64_t)k;
        sgt_nap_ms(1);
    }
    hc_close(&c);
    cr_assert_eq(got, 100u << 20);
    cr_assert_eq(bad, 0);

    /* client -> origin: 100 MiB pushed at full speed to an origin that reads slowly */
    snprintf(target, sizeof(target), "127.0.0.1:%u", sink->port);
    cr_assert_eq(do_connect(&c, target, NULL, &r), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    for (uint64_t off = 0; off < (100u << 20); off += 65536) {
        for (size_t i = 0; i < 65536; i++)
            buf[i] = (char)pat(off + i);
        cr_assert(hc_send(&c, buf, 65536, 20000), "push stalled at %llu", (unsigned long long)off);
    }
    shutdown(c.fd, SHUT_WR);
    char line[96] = "";
    size_t ll = 0;
    while (ll < sizeof(line) - 1 && !memchr(line, '\n', ll)) {
        ssize_t k = hc_read_some(&c, line + ll, sizeof(line) - 1 - ll, 20000);
        cr_assert_gt(k, 0);
        ll += (size_t)k;
    }
    line[ll] = '\0';
    char want[64];
    snprintf(want, sizeof(want), "OK %llu 0\n", (unsigned long long)(100u << 20));
    cr_assert_str_eq(line, want);
    cr_assert(hc_wait_closed(&c, 5000));
    hc_close(&c);
    free(buf);

    long peak = sg_proc_status_kb(&gw, "VmHWM");
    cr_assert_lt(peak - base, 32 * 1024, "RSS grew by %ld kB while tunnelling 2 x 100 MiB", peak - base);
    raw_stop(src);
    raw_stop(sink);
}

/* ---- refusals ------------------------------------------------------------------------- */

Test(egress, refusals_are_403_with_a_reason_and_no_connection)
{
    hc_response_t r;
    char req[256];
    /* A name that resolves to 127.0.0.1 when only the name is allowed. */
    snprintf(req, sizeof(req), "GET http://localhost:%u/x HTTP/1.1\r\nHost: localhost\r\n\r\n", us_port(uplocal));
    cr_assert_eq(hc_request(eaddr, req, &r, 5000), HC_OK);
    check_refusal(&r, 403, "loopback");
    hc_response_free(&r);
    /* The same address on a port no rule names. */
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/x HTTP/1.1\r\n\r\n", us_port(uplocal));
    cr_assert_eq(hc_request(eaddr, req, &r, 5000), HC_OK);
    check_refusal(&r, 403, "port_not_allowed");
    hc_response_free(&r);
    cr_assert_eq(us_connections(uplocal), 0, "nothing reached the origin");

    /* Cloud metadata: refused at once, no connection attempted (a connect
     * to that address from here would hang until the connect timeout). */
    long long t0 = sgt_now_ms();
    cr_assert_eq(hc_request(eaddr, "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n", &r, 5000), HC_OK);
    check_refusal(&r, 403, "link_local");
    hc_response_free(&r);
    hc_conn_t c;
    cr_assert_eq(do_connect(&c, "169.254.169.254:80", NULL, &r), HC_OK);
    check_refusal(&r, 403, "link_local");
    char v[32];
    cr_assert(hc_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close", "a refused CONNECT closes the connection");
    hc_response_free(&r);
    cr_assert(hc_wait_closed(&c, 3000));
    hc_close(&c);
    cr_assert_eq(do_connect(&c, "[::ffff:169.254.169.254]:80", NULL, &r), HC_OK);
    check_refusal(&r, 403, "link_local");
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_lt(sgt_now_ms() - t0, 3000, "refusals are immediate");

    /* Host and port not allowed (decided on the name: no lookup). */
    cr_assert_eq(do_connect(&c, "not-allowed.invalid:81", NULL, &r), HC_OK);
    check_refusal(&r, 403, "host_not_allowed");
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_eq(do_connect(&c, "api.example.test:8443", NULL, &r), HC_OK);
    check_refusal(&r, 403, "port_not_allowed");
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_eq(do_connect(&c, "10.1.2.3:443", NULL, &r), HC_OK);
    check_refusal(&r, 403, "private");
    hc_response_free(&r);
    hc_close(&c);

    char *m = scrape();
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"link_local\"}"), 3, "%s", m);
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"loopback\"}"), 1);
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"port_not_allowed\"}"), 2);
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"host_not_allowed\"}"), 1);
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"private\"}"), 1);
    cr_assert_eq(
        metric(m,
               "swarm_egress_requests_total{agent=\"unknown\",destination=\"localhost\",method=\"GET\",code=\"403\"}"),
        1, "a refusal after the name matched counts under that rule");
    free(m);
}

Test(egress, bad_connect_targets_are_400)
{
    static const char *const bad[] = {"example.test",    ":443", "user@127.0.0.1:80", "127.0.0.1:0",
                                      "127.0.0.1:99999", "[::1", "127.1:80",          "a..b:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hc_conn_t c;
        hc_response_t r;
        cr_assert_eq(do_connect(&c, bad[i], NULL, &r), HC_OK, "%s", bad[i]);
        cr_assert_eq(r.status, 400, "%s: %d", bad[i], r.status);
        cr_assert(hc_header(&r, "X-Trace-Id", NULL, 0));
        hc_response_free(&r);
        hc_close(&c);
    }
    cr_assert_eq(atomic_load(&echo->conns), 0);
}

/* ---- proxy authentication ------------------------------------------------------------ */

/* ---- configured timeouts ------------------------------------------------------------ */

static void start_timeouts(void)
{
    start_with("  response_timeout: 300ms\n  keepalive: 0\n");
}

TestSuite(egress_timeouts, .init = start_timeouts, .fini = stop, .timeout = 60);

Test(egress_timeouts, response_timeout_is_504_at_the_configured_time)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET http://127.0.0.1:%u/slow?ms=3000 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             us_port(up), us_port(up));
    long long t0 = sgt_now_ms();
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, raw, &r, 10000), HC_OK);
    long ms = (long)(sgt_now_ms() - t0);
    cr_expect_eq(r.status, 504, "%d %s", r.status, r.body);
    cr_expect(ms >= 250 && ms < 2500, "504 after %ld ms (egress.response_timeout: 300ms; default 300s)", ms);
    hc_response_free(&r);
    /* A fast request on the same destination still works (keepalive: 0). */
    snprintf(raw, sizeof(raw), "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", us_port(up),
             us_port(up));
    cr_assert_eq(hc_request(eaddr, raw, &r, 5000), HC_OK);
    cr_expect_eq(r.status, 200);
    hc_response_free(&r);
}

TestSuite(egress_auth, .init = start_auth, .fini = stop, .timeout = 60);

Test(egress_auth, required_and_accepted)
{
    char url[128], out[8192], proxy[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/a", us_port(up));
    snprintf(proxy, sizeof(proxy), "http://%s", eaddr);
    const char *none[] = {"-D", "-", "-x", proxy, url, NULL};
    cr_assert_eq(run_curl(none, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 407 Proxy Authentication Required\r\n"), "%s", out);
    char v[128];
    cr_assert(resp_header(out, "Proxy-Authenticate", v, sizeof(v)), "%s", out);
    cr_assert_str_eq(v, "Basic realm=\"swarmgate\"");
    cr_assert(resp_header(out, "X-Trace-Id", v, sizeof(v)));
    const char *wrong[] = {"-D", "-", "-x", proxy, "-U", "agent:nope", url, NULL};
    cr_assert_eq(run_curl(wrong, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 407 Proxy Authentication Required\r\n"), "%s", out);
    cr_assert_eq(us_connections(up), 0);

    const char *good[] = {"-D", "-", "-x", proxy, "-U", "agent:s3cret:x", url, NULL};
    cr_assert_eq(run_curl(good, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200"), "%s", out);
    cr_assert(us_wait_requests(up, 1, 3000));
    us_request_t q;
    cr_assert(us_request(up, 0, &q));
    cr_assert_eq(us_header_count(q.head, "Proxy-Authorization"), 0, "credentials stay with the proxy: %s", q.head);
    us_request_free(&q);

    /* CONNECT too. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/t", us_port(up));
    const char *tunnel_none[] = {"-p", "-x", proxy, url, NULL};
    cr_assert_neq(run_curl(tunnel_none, out, sizeof(out), 15000), 0, "tunnel without credentials: %s", out);
    cr_assert(strstr(out, "407"), "%s", out);
    const char *tunnel_good[] = {"-p", "-x", proxy, "-U", "agent:s3cret:x", url, NULL};
    cr_assert_eq(run_curl(tunnel_good, out, sizeof(out), 15000), 0, "%s", out);
    cr_assert(strstr(out, "hello"), "%s", out);

    char *m = scrape();
    cr_assert_eq(metric(m, "swarm_egress_refused_total{reason=\"auth\"}"), 3, "%s", m);
    free(m);
}

/* ---- the DNS cache --------------------------------------------------------------------- */

#define DNS_TTL_MS 1000

static void start_dns(void)
{
    uplocal = us_start("local", false);
    cr_assert(uplocal);
    /* One worker: one cache. The child logs its getaddrinfo() calls. */
    gw_start_env(&gw, GW_GAI_LOG_ENV,
                 "workers: 1\n"
                 "listeners:\n"
                 "  - {name: egress, address: \"127.0.0.1:0\", mode: egress}\n"
                 "admin: {enabled: false}\n"
                 "log: {access: \"off\"}\n"
                 "egress:\n"
                 "  dns_ttl: %dms\n"
                 "  allow: [localhost]\n"
                 "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
                 DNS_TTL_MS);
    eaddr = sg_proc_addr(&gw, "egress");
    cr_assert(eaddr);
}

static void stop_dns(void)
{
    gw_stop(&gw);
    us_stop(uplocal);
}

/* getaddrinfo("localhost") calls of the gateway so far. */
static int lookups(void)
{
    char *err = sg_proc_stderr(&gw);
    int n = 0;
    for (const char *p = strstr(err, "sgtest-getaddrinfo: localhost\n"); p;
         p = strstr(p + 1, "sgtest-getaddrinfo: localhost\n"))
        n++;
    free(err);
    return n;
}

/* One request for a name the allow-list names (it resolves to loopback:
 * refused after the lookup, which is what the cache keeps). */
static void request_localhost(void)
{
    char req[256];
    snprintf(req, sizeof(req), "GET http://localhost:%u/x HTTP/1.1\r\nHost: localhost\r\n\r\n", us_port(uplocal));
    hc_response_t r;
    cr_assert_eq(hc_request(eaddr, req, &r, 5000), HC_OK);
    check_refusal(&r, 403, "loopback");
    hc_response_free(&r);
}

TestSuite(egress_dns, .init = start_dns, .fini = stop_dns, .timeout = 60);

/* egress.dns_ttl: an answer is reused until it is dns_ttl old, then looked
 * up again. */
Test(egress_dns, answers_are_cached_for_dns_ttl)
{
    long long t0 = sgt_now_ms();
    request_localhost();
    long long t1 = sgt_now_ms(); /* the answer was cached before this (the request was served) */
    cr_assert(sg_proc_wait_stderr(&gw, "sgtest-getaddrinfo: localhost\n", 1, 3000), "the first request looks it up");
    /* Within the TTL (counted from before the first lookup, so a request
     * done before t0 + dns_ttl surely is): from the cache. */
    int n = 0;
    long long done = sgt_now_ms();
    while (done - t0 < DNS_TTL_MS / 2 && n < 20) {
        request_localhost();
        done = sgt_now_ms();
        n++;
    }
    cr_assert_lt(done - t0, DNS_TTL_MS, "%d requests took %lld ms", n, done - t0);
    cr_assert_eq(lookups(), 1, "%d requests within dns_ttl looked the name up again", n);
    /* Past the TTL, counted from after the first request (its answer may
     * have been cached late on a loaded machine): looked up again, once. */
    long long deadline = t1 + DNS_TTL_MS + 5000;
    while (sgt_now_ms() - t1 <= DNS_TTL_MS + 20 && sgt_now_ms() < deadline) {
        sgt_nap_ms(20); /* letting the TTL pass: time is the event here */
    }
    request_localhost();
    request_localhost();
    cr_assert(sg_proc_wait_stderr(&gw, "sgtest-getaddrinfo: localhost\n", 2, 3000),
              "not looked up again after dns_ttl");
    cr_assert_eq(lookups(), 2, "two requests after the TTL: one lookup");
}
