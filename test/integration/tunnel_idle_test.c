/* Tunnel idle timeout through the real binary, loopback only: an upgrade
 * tunnel (101) on a reverse listener and a CONNECT tunnel on an egress
 * listener are closed on both sides once no byte moved either way for
 * limits.tunnel_idle_timeout / egress.tunnel_idle_timeout (300 ms and 500 ms
 * here, different so each key is seen to be the one used); traffic in one
 * direction only (client -> upstream, upstream -> client) keeps a tunnel
 * open past the timeout; the end is logged and recorded (access log, egress
 * tunnel metrics); a reload applies a new value to new tunnels. The origin
 * is a raw TCP server that records when it saw the proxy close. */
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
#include <time.h>
#include <unistd.h>

#define LIMITS_IDLE_MS 300
#define EGRESS_IDLE_MS 500
/* Bounds of a close measured by the test against the configured timeout:
 * at most EARLY_MS before it (the test's clock starts after the proxy saw
 * the last byte) and at most LATE_MS after it (the timeout queue fires on
 * time; the rest is scheduling on a loaded machine). */
#define EARLY_MS 50
#define LATE_MS 1000
#define CLOCK_SLACK_MS 2 /* the loop clock is whole milliseconds, read once per turn */
#define expect_close_at(ms, idle, what)                                                                                \
    cr_expect((ms) >= (idle)-EARLY_MS && (ms) < (idle) + LATE_MS, "%s after %lld ms (timeout %d ms)", what,            \
              (long long)(ms), (int)(idle))
#define TALK_ROUNDS 11 /* one byte every 100 ms: ~1.1 s, well past both timeouts */

/* ---- a raw origin ------------------------------------------------------------ */

/* HTTP mode: reads a request head and answers 101; then by path
 *   /silent  reads and drops what comes, sends nothing;
 *   /talk    sends one byte every 100 ms TALK_ROUNDS times, then as /silent.
 * Raw mode (CONNECT destination): as /silent from the first byte.
 * Each connection records when the proxy closed it (EOF or reset). */
#define TS_MAX_CONNS 16

typedef struct ts_conn {
    int fd;
    pthread_t th;
    atomic_llong closed_ms; /* 0: still open */
    atomic_int rx;          /* tunnel bytes received */
    atomic_int tx;          /* tunnel bytes sent */
    struct ts_srv *s;
} ts_conn_t;

typedef struct ts_srv {
    int lfd;
    uint16_t port;
    bool is_http;
    pthread_t th;
    atomic_bool stop;
    atomic_int n_conns;
    ts_conn_t conns[TS_MAX_CONNS];
} ts_srv_t;

/* Waits for POLLIN up to ms (or until stop). 1 readable, 0 timeout, -1 stop. */
static int ts_poll_in(ts_srv_t *s, int fd, int ms)
{
    long long deadline = sgt_now_ms() + ms;
    for (;;) {
        if (atomic_load(&s->stop))
            return -1;
        long long left = deadline - sgt_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left < 50 ? (int)left : 50);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Reads what is there; false once the peer closed (closed_ms set). */
static bool ts_drain(ts_conn_t *c)
{
    char buf[4096];
    ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (r <= 0) {
        atomic_store(&c->closed_ms, sgt_now_ms());
        return false;
    }
    atomic_fetch_add(&c->rx, (int)r);
    return true;
}

static void *ts_conn_main(void *arg)
{
    ts_conn_t *c = arg;
    ts_srv_t *s = c->s;
    bool talk = false;
    if (s->is_http) {
        char head[4096];
        size_t len = 0;
        while (!memmem(head, len, "\r\n\r\n", 4)) {
            if (len == sizeof(head) || ts_poll_in(s, c->fd, 5000) <= 0)
                goto out;
            ssize_t r = recv(c->fd, head + len, sizeof(head) - len, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        talk = len > 9 && memcmp(head, "GET /talk", 9) == 0;
        static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n";
        if (send(c->fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(resp) - 1)
            goto out;
    }
    for (int i = 0; talk && i < TALK_ROUNDS; i++) {
        if (send(c->fd, "t", 1, MSG_NOSIGNAL) != 1) {
            atomic_store(&c->closed_ms, sgt_now_ms());
            goto out;
        }
        atomic_fetch_add(&c->tx, 1);
        /* The pace of the talk; a close meanwhile is noticed. */
        long long until = sgt_now_ms() + 100;
        for (int k; (k = ts_poll_in(s, c->fd, (int)(until - sgt_now_ms()))) != 0;) {
            if (k < 0 || !ts_drain(c))
                goto out;
        }
    }
    for (;;) {
        int k = ts_poll_in(s, c->fd, 1000);
        if (k < 0 || (k > 0 && !ts_drain(c)))
            break;
    }
out:
    close(c->fd);
    return NULL;
}

static void *ts_accept_main(void *arg)
{
    ts_srv_t *s = arg;
    for (int k; (k = ts_poll_in(s, s->lfd, 1000)) >= 0;) {
        if (k == 0)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int i = atomic_load(&s->n_conns);
        if (i >= TS_MAX_CONNS) {
            close(fd);
            continue;
        }
        ts_conn_t *c = &s->conns[i];
        c->fd = fd;
        c->s = s;
        pthread_create(&c->th, NULL, ts_conn_main, c);
        atomic_store(&s->n_conns, i + 1);
    }
    return NULL;
}

static ts_srv_t *ts_start(bool is_http)
{
    ts_srv_t *s = calloc(1, sizeof(*s));
    s->is_http = is_http;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s->lfd, 64), 0);
    socklen_t len = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, ts_accept_main, s);
    return s;
}

static void ts_stop(ts_srv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    for (int i = 0; i < atomic_load(&s->n_conns); i++)
        pthread_join(s->conns[i].th, NULL);
    close(s->lfd);
    free(s);
}

/* The i-th connection the origin accepted (waits for it). */
static ts_conn_t *ts_conn(ts_srv_t *s, int i)
{
    long long deadline = sgt_now_ms() + 3000;
    while (atomic_load(&s->n_conns) <= i) {
        cr_assert_lt(sgt_now_ms(), deadline, "the origin got no connection %d", i);
        sgt_nap_ms(5);
    }
    return &s->conns[i];
}

/* When the proxy closed the origin's side of connection c (waits). */
static long long ts_wait_closed(ts_conn_t *c, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    long long v;
    while ((v = atomic_load(&c->closed_ms)) == 0) {
        if (sgt_now_ms() > deadline)
            return 0;
        sgt_nap_ms(5);
    }
    return v;
}

/* ---- gateway ------------------------------------------------------------------ */

static sg_proc_t gw;
static ts_srv_t *ws, *dest;
static const char *api, *eaddr;

static void start(void)
{
    ws = ts_start(true);
    dest = ts_start(false);
    gw_start(&gw,
             "workers: 2\n"
             "listeners:\n"
             "  - {name: api, address: \"127.0.0.1:0\"}\n"
             "  - {name: egress, address: \"127.0.0.1:0\", mode: egress}\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: stdout, format: json, level: info}\n"
             "upstreams:\n"
             "  ws: {servers: [\"127.0.0.1:%u\"]}\n"
             "routes: [{upstream: ws}]\n"
             "limits: {tunnel_idle_timeout: %dms}\n"
             "egress:\n"
             "  allow: [\"127.0.0.1:%u\"]\n"
             "  tunnel_idle_timeout: %dms\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             ws->port, LIMITS_IDLE_MS, dest->port, EGRESS_IDLE_MS);
    api = sg_proc_addr(&gw, "api");
    eaddr = sg_proc_addr(&gw, "egress");
    cr_assert(api && eaddr);
}

static void stop(void)
{
    gw_stop(&gw);
    ts_stop(ws);
    ts_stop(dest);
}

TestSuite(tunnel_idle, .init = start, .fini = stop, .timeout = 60);

static double json_num(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static double metric(const char *series)
{
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "admin"), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    double v = NAN;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    hc_response_free(&r);
    return v;
}

/* Opens an upgrade tunnel to `path` with trace id `tid`; returns when the 101 is read. */
static void open_upgrade(hc_conn_t *c, const char *path, const char *tid)
{
    cr_assert_eq(hc_connect(c, api, 2000), 0);
    char req[512];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\nX-Trace-Id: %s\r\n\r\n", path, tid);
    cr_assert(hc_send_str(c, req, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(c, &r, true, true, 3000), HC_OK);
    cr_assert_eq(r.status, 101, "%s", r.head);
    hc_response_free(&r);
}

/* Sends one byte every 100 ms, TALK_ROUNDS times; the client side must stay
 * open throughout (the wait for readability is the pace). Returns when the
 * last byte was sent. */
static long long talk_to(hc_conn_t *c)
{
    long long last = 0;
    for (int i = 0; i < TALK_ROUNDS; i++) {
        cr_assert(hc_send(c, "x", 1, 1000), "send %d failed: the tunnel closed while busy", i);
        last = sgt_now_ms();
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, 100);
        cr_assert_eq(r, 0, "round %d: the tunnel closed (or sent bytes) while the client was talking", i);
    }
    return last;
}

#define TID_IDLE "11111111-2222-4333-8444-555555555501"
#define TID_CLI "11111111-2222-4333-8444-555555555502"
#define TID_UP "11111111-2222-4333-8444-555555555503"
#define TID_EG "11111111-2222-4333-8444-555555555504"
#define TID_RELOAD "11111111-2222-4333-8444-555555555505"

Test(tunnel_idle, upgrade_idle_closes_both_sides_at_the_timeout)
{
    hc_conn_t c;
    open_upgrade(&c, "/silent", TID_IDLE);
    long long t0 = sgt_now_ms();
    ts_conn_t *oc = ts_conn(ws, 0);
    cr_assert(hc_wait_closed(&c, 3000), "the client side was not closed within 3 s");
    long long cli_ms = sgt_now_ms() - t0;
    long long up_at = ts_wait_closed(oc, 3000);
    cr_assert_neq(up_at, 0, "the upstream side was not closed");
    long long up_ms = up_at - t0;
    expect_close_at(cli_ms, LIMITS_IDLE_MS, "client side closed");
    expect_close_at(up_ms, LIMITS_IDLE_MS, "upstream side closed");
    hc_close(&c);

    /* One log line, and the tunnel's record: status 101 as for any tunnel
     * end, its life as the duration, the reason as the error. */
    char want[96];
    snprintf(want, sizeof(want), "tunnel idle for %d ms, closed", LIMITS_IDLE_MS);
    cr_assert(sg_proc_wait_stderr(&gw, want, 1, 3000), "no log line \"%s\"", want);
    char *err = sg_proc_stderr(&gw);
    cr_expect(strstr(err, TID_IDLE), "the log line names the tunnel's trace id: %s", err);
    free(err);
    char line[2048];
    cr_assert(sg_proc_stdout_line(&gw, TID_IDLE, line, sizeof(line), 3000), "no access-log line");
    cr_expect(strstr(line, "\"status\":101"), "%s", line);
    cr_expect(strstr(line, "\"error\":\"tunnel idle timeout\""), "%s", line);
    double dur = json_num(line, "\"dur_ms\":");
    /* The proxy's own clock: never before the timeout. */
    /* The idle timer runs on libuv's loop clock (whole milliseconds, read
     * once per loop turn), so it may fire up to a millisecond before the
     * precise clock of dur_ms says the timeout is over (seen: 499.7 for
     * 500). */
    cr_expect(dur >= LIMITS_IDLE_MS - CLOCK_SLACK_MS && dur < LIMITS_IDLE_MS + LATE_MS, "dur_ms %g: %s", dur, line);
}

Test(tunnel_idle, client_to_upstream_traffic_keeps_it_open)
{
    hc_conn_t c;
    open_upgrade(&c, "/silent", TID_CLI);
    long long t0 = sgt_now_ms();
    ts_conn_t *oc = ts_conn(ws, 0);
    long long last = talk_to(&c);
    cr_assert_geq(last - t0, 3 * LIMITS_IDLE_MS, "the test talked for %lld ms only", last - t0);
    cr_assert_eq(atomic_load(&oc->closed_ms), 0, "the upstream side was closed while the client talked");
    /* Then silence: closed one timeout after the last byte. */
    cr_assert(hc_wait_closed(&c, 3000), "not closed once idle");
    long long idle = sgt_now_ms() - last;
    expect_close_at(idle, LIMITS_IDLE_MS, "closed, from the last byte,");
    cr_assert_neq(ts_wait_closed(oc, 3000), 0);
    cr_expect_eq(atomic_load(&oc->rx), TALK_ROUNDS, "every byte reached the upstream");
    hc_close(&c);
}

Test(tunnel_idle, upstream_to_client_traffic_keeps_it_open)
{
    hc_conn_t c;
    open_upgrade(&c, "/talk", TID_UP);
    long long t0 = sgt_now_ms();
    ts_conn_t *oc = ts_conn(ws, 0);
    int got = 0;
    while (got < TALK_ROUNDS) {
        char b[16];
        ssize_t k = hc_read_some(&c, b, sizeof(b), 1000);
        cr_assert_gt(k, 0, "after %d bytes: the tunnel closed while the upstream talked (%zd)", got, k);
        got += (int)k;
    }
    long long last = sgt_now_ms();
    cr_assert_geq(last - t0, 3 * LIMITS_IDLE_MS, "the upstream talked for %lld ms only", last - t0);
    cr_assert_eq(atomic_load(&oc->closed_ms), 0, "the upstream side was closed while it talked");
    cr_assert(hc_wait_closed(&c, 3000), "not closed once idle");
    long long idle = sgt_now_ms() - last;
    expect_close_at(idle, LIMITS_IDLE_MS, "closed, from the last byte,");
    cr_assert_neq(ts_wait_closed(oc, 3000), 0);
    hc_close(&c);
}

Test(tunnel_idle, egress_connect_idle_closes_both_sides)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, eaddr, 2000), 0);
    char req[256];
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Trace-Id: %s\r\n\r\n",
             dest->port, dest->port, TID_EG);
    cr_assert(hc_send_str(&c, req, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, true, false, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.head);
    hc_response_free(&r);
    long long t0 = sgt_now_ms();
    ts_conn_t *oc = ts_conn(dest, 0);
    cr_assert(hc_wait_closed(&c, 3000), "the client side was not closed within 3 s");
    long long cli_ms = sgt_now_ms() - t0;
    long long up_at = ts_wait_closed(oc, 3000);
    cr_assert_neq(up_at, 0, "the destination side was not closed");
    /* egress.tunnel_idle_timeout (500 ms), not limits.tunnel_idle_timeout (300 ms). */
    expect_close_at(cli_ms, EGRESS_IDLE_MS, "client side closed");
    expect_close_at(up_at - t0, EGRESS_IDLE_MS, "destination side closed");
    hc_close(&c);

    char want[96];
    snprintf(want, sizeof(want), "egress 127.0.0.1:%u: tunnel idle for %d ms, closed", dest->port, EGRESS_IDLE_MS);
    cr_assert(sg_proc_wait_stderr(&gw, want, 1, 3000), "no log line \"%s\"", want);
    char line[2048];
    cr_assert(sg_proc_stdout_line(&gw, TID_EG, line, sizeof(line), 3000), "no access-log line");
    cr_expect(strstr(line, "\"method\":\"CONNECT\""), "%s", line);
    cr_expect(strstr(line, "\"status\":200"), "%s", line);
    cr_expect(strstr(line, "\"error\":\"tunnel idle timeout\""), "%s", line);
    double dur = json_num(line, "\"dur_ms\":");
    cr_expect(dur >= EGRESS_IDLE_MS - CLOCK_SLACK_MS && dur < EGRESS_IDLE_MS + LATE_MS, "dur_ms %g: %s", dur, line);
    char series[160];
    snprintf(series, sizeof(series), "swarm_egress_tunnels_total{destination=\"127.0.0.1:%u\"}", dest->port);
    long long deadline = sgt_now_ms() + 3000;
    double v;
    while (!((v = metric(series)) >= 1) && sgt_now_ms() < deadline)
        sgt_nap_ms(20);
    cr_expect_eq(v, 1, "%s", series);
}

Test(tunnel_idle, egress_connect_traffic_keeps_it_open)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, eaddr, 2000), 0);
    char req[256];
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", dest->port, dest->port);
    cr_assert(hc_send_str(&c, req, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response_ex(&c, &r, true, false, 3000), HC_OK);
    cr_assert_eq(r.status, 200, "%s", r.head);
    hc_response_free(&r);
    ts_conn_t *oc = ts_conn(dest, 0);
    long long last = talk_to(&c);
    cr_assert_eq(atomic_load(&oc->closed_ms), 0, "the destination side was closed while the client talked");
    cr_assert(hc_wait_closed(&c, 3000), "not closed once idle");
    long long idle = sgt_now_ms() - last;
    expect_close_at(idle, EGRESS_IDLE_MS, "closed, from the last byte,");
    cr_assert_neq(ts_wait_closed(oc, 3000), 0);
    cr_expect_eq(atomic_load(&oc->rx), TALK_ROUNDS);
    hc_close(&c);
}

Test(tunnel_idle, reload_applies_to_new_tunnels)
{
    char from[64], to[64];
    snprintf(from, sizeof(from), "limits: {tunnel_idle_timeout: %dms}", LIMITS_IDLE_MS);
    snprintf(to, sizeof(to), "limits: {tunnel_idle_timeout: %dms}", 3 * LIMITS_IDLE_MS);
    cr_assert_eq(sg_proc_edit_config(&gw, from, to), 0);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(&gw, "config reloaded from", 1, 5000), "reload not logged");
    hc_conn_t c;
    open_upgrade(&c, "/silent", TID_RELOAD);
    long long t0 = sgt_now_ms();
    cr_assert(hc_wait_closed(&c, 5000), "not closed within 5 s");
    long long ms = sgt_now_ms() - t0;
    expect_close_at(ms, 3 * LIMITS_IDLE_MS, "closed with the reloaded timeout");
    char want[96];
    snprintf(want, sizeof(want), "tunnel idle for %d ms, closed", 3 * LIMITS_IDLE_MS);
    cr_assert(sg_proc_wait_stderr(&gw, want, 1, 3000), "no log line \"%s\"", want);
    hc_close(&c);
}
