/* Failing upstreams through the real binary, beyond proxy_upstream_test.c:
 * a reset while the client is still sending its body, a response with more
 * bytes than its Content-Length (at once, or later on the pooled idle
 * connection: they must never become the next client's response), and an
 * upstream that hangs after the head. Each ends with a documented status
 * or a closed client connection (docs/routing.md), never a hang, a crash
 * or cross-talk.
 *
 * The upstream here is scripted at the byte level (the shared
 * upstream_server speaks correct HTTP only): support/scripted_upstream.h
 * with a script per mode below. */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/scripted_upstream.h"
#include "support/upstream_server.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum mode {
    M_RESET_MID_BODY = 0, /* read the head and 64 KiB of body, then RST */
    M_EXTRA_AT_ONCE,      /* 1st response: CL 5 + 5 bytes + a whole fake response in the same write */
    M_EXTRA_LATER,        /* 1st response: CL 5 + 5 bytes; the fake response when the test says so */
    M_HANG_AFTER_HEAD,    /* CL 100 + 10 bytes, then silence */
    M_HANG_CHUNKED,       /* chunked, one chunk, then silence */
    M_EXTRA_RACE,         /* body = the request's path; the fake response on whichever connection answered last */
    M_TE_TAB,             /* "Transfer-Encoding: chunked<TAB>" (fuzz_response finding) */
    M_CLOSE_SECOND,       /* 1st request on a connection: CL 5 "hello"; 2nd: close, no byte */
    M_CLOSE_ALL,          /* every request: close, no byte (a server going away) */
} mode_t_;

#define FAKE_RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSMUGGL"

/* The scripted upstream (support/scripted_upstream.h) in one of the modes. */
typedef struct raw_up {
    su_server_t *su;
    atomic_int mode; /* mode_t_; the test may switch it while the server runs */
} raw_up_t;

static su_action_t ru_script(void *ud, const su_request_t *q, su_reply_t *out)
{
    raw_up_t *u = ud;
    mode_t_ mode = (mode_t_)atomic_load(&u->mode);
    if (mode == M_RESET_MID_BODY)
        return q->body_len >= 65536 ? SU_RESET : SU_WAIT;
    if ((mode == M_CLOSE_SECOND && q->nth > 0) || mode == M_CLOSE_ALL)
        return SU_CLOSE;
    switch (mode) {
    case M_CLOSE_SECOND:
        su_reply_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        break;
    case M_EXTRA_RACE: /* the body names the request: a response given to another one shows */
        su_reply_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(q->target), q->target);
        break;
    case M_EXTRA_AT_ONCE:
    case M_EXTRA_LATER:
        if (q->nth == 0 && q->conn_serial == 0)
            su_reply_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello%s",
                            mode == M_EXTRA_AT_ONCE ? FAKE_RESPONSE : "");
        else
            su_reply_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok-%c", 'A' + q->conn_serial % 26);
        break;
    case M_HANG_AFTER_HEAD:
        su_reply_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        break;
    case M_TE_TAB:
        su_reply_printf(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        break;
    case M_HANG_CHUNKED:
    default:
        su_reply_printf(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        break;
    }
    return SU_ANSWER;
}

static raw_up_t *ru_start(mode_t_ mode)
{
    raw_up_t *u = calloc(1, sizeof(*u));
    cr_assert_not_null(u);
    atomic_init(&u->mode, mode);
    u->su = su_start_fn(ru_script, u);
    cr_assert_not_null(u->su);
    return u;
}

static unsigned ru_port(const raw_up_t *u)
{
    return su_port(u->su);
}

/* 'x': the fake response on the connection that answered last; 'c': from
 * now on every request is closed unanswered; 'l': stop listening (new
 * connections are refused). */
static void ru_cmd(raw_up_t *u, char c)
{
    if (c == 'x')
        su_inject(u->su, FAKE_RESPONSE, sizeof(FAKE_RESPONSE) - 1);
    else if (c == 'c')
        atomic_store(&u->mode, M_CLOSE_ALL);
    else if (c == 'l')
        su_stop_listening(u->su);
    else
        cr_assert_fail("unknown command %c", c);
}

static void ru_stop(raw_up_t *u)
{
    su_stop(u->su);
    free(u);
}

static void gw_start_for(sg_proc_t *gw, const raw_up_t *u, const char *extra_ups)
{
    gw_start(gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]%s}}\n"
             "routes: [{upstream: app}]\n",
             ru_port(u), extra_ups);
}

/* ---- reset while the client still sends ------------------------------------------- */

Test(faults, upstream_reset_mid_request_body, .timeout = 30)
{
    raw_up_t *u = ru_start(M_RESET_MID_BODY);
    sg_proc_t gw;
    gw_start_for(&gw, u, "");
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    const size_t total = 64u << 20;
    char head[128];
    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", total);
    cr_assert(hc_send_str(&c, head, 2000));
    char *block = gw_pattern(64 * 1024);
    long long t0 = sgt_now_ms();
    size_t sent = 0;
    /* Keep sending until the proxy answers or stops taking bytes. */
    while (sent < total && sgt_now_ms() - t0 < 10000) {
        struct pollfd pf = {.fd = c.fd, .events = POLLIN};
        if (poll(&pf, 1, 0) > 0)
            break;
        if (!hc_send(&c, block, 64 * 1024, 300))
            break;
        sent += 64 * 1024;
    }
    free(block);
    cr_assert_lt(sent, total, "the whole body went through a reset upstream");
    cr_assert_geq(su_requests(u->su), 1, "upstream never saw the request");
    hc_response_t r;
    int e = hc_read_response(&c, &r, 5000);
    cr_assert(e == HC_OK || e == HC_CLOSED, "neither a status nor a close: %d", e);
    if (e == HC_OK) {
        cr_assert_eq(r.status, 502, "status %d", r.status);
        char tid[64];
        cr_assert(hc_header(&r, "X-Trace-Id", tid, sizeof(tid)));
        cr_assert(hc_wait_closed(&c, 3000), "connection kept after a failed request body");
    } else {
        cr_assert_eq(r.status, 0, "a partial response %d", r.status);
    }
    cr_assert_lt(sgt_now_ms() - t0, 8000);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_eq(kill(gw.pid, 0), 0);
    gw_stop(&gw);
    ru_stop(u);
}

/* ---- more bytes than Content-Length ------------------------------------------------- */

/* Two requests on one client connection; the upstream's first answer has
 * a fake response glued after its 5 declared bytes. */
static void two_requests(const char *addr, raw_up_t *u, bool extra_later)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    hc_response_t r;
    cr_assert(hc_send_str(&c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 5);
    cr_assert_str_eq(r.body, "hello");
    hc_response_free(&r);
    if (extra_later) {
        /* The fake response lands on the idle pooled connection: the proxy
         * must drop that connection, not keep the bytes for the next txn. */
        ru_cmd(u, 'x');
        cr_assert(su_wait_eofs(u->su, 1, 3000), "pooled connection with stray bytes not closed");
    }
    cr_assert(hc_send_str(&c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    int e = hc_read_response(&c, &r, 3000);
    cr_assert_eq(e, HC_OK, "second response: %d", e);
    cr_assert_eq(r.status, 200);
    cr_assert(!strstr(r.body, "SMUGGL"), "cross-talk: the first upstream's extra bytes answered request 2");
    cr_assert_str_eq(r.body, "ok-B", "request 2 answered by %s", r.body);
    hc_response_free(&r);
    /* Nothing else was sent on the client connection: bytes after the
     * second response would be read as the third one's head. */
    cr_assert(hc_send_str(&c, "GET /three HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    e = hc_read_response(&c, &r, 3000);
    cr_assert_eq(e, HC_OK, "third response: %d", e);
    cr_assert_eq(r.status, 200);
    cr_assert(!strncmp(r.body, "ok-", 3) && r.body_len == 4, "request 3 answered by %s", r.body);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert_eq(su_connections(u->su), 2, "the tainted upstream connection was reused");
}

/* A pooled connection whose upstream closes before answering the next
 * request (its keep-alive timeout racing the reuse). An idempotent request
 * without a body goes out again on a new connection and succeeds; a POST is
 * not sent twice: 502, classed and logged as "closed before responding" (a
 * reset), not as a broken response head left over from the previous
 * response (soak finding: the head length of the last response was read). */
Test(faults, pooled_connection_closed_before_responding_is_retried_when_idempotent, .timeout = 30)
{
    raw_up_t *u = ru_start(M_CLOSE_SECOND);
    sg_proc_t gw;
    gw_start_for(&gw, u, ", max_fails: 1");
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    hc_response_t r;
    /* GET, GET (retried), OPTIONS (retried), DELETE (retried): the
     * upstream closes each connection at its second request. */
    static const char *const reqs[] = {"GET /one", "GET /two", "OPTIONS /three", "DELETE /four"};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        char raw[128];
        snprintf(raw, sizeof(raw), "%s HTTP/1.1\r\nHost: x\r\n\r\n", reqs[i]);
        cr_assert(hc_send_str(&c, raw, 2000));
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK, "%s", reqs[i]);
        cr_expect_eq(r.status, 200, "%s: %d %s", reqs[i], r.status, r.body);
        hc_response_free(&r);
    }
    cr_expect_eq(su_connections(u->su), 4, "one new upstream connection per retried request");
    if (!sg_proc_wait_stderr(&gw, "on a reused connection; sending the request again on a new one", 3, 3000)) {
        char *e = sg_proc_stderr(&gw);
        cr_assert_fail("three retries not logged:\n%s", e);
    }

    /* A POST (not idempotent) and a PUT with a body are not sent twice. */
    cr_assert(hc_send_str(&c, "GET /five HTTP/1.1\r\nHost: x\r\n\r\n", 2000)); /* fresh pooled conn, answered */
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, "POST /six HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_expect_eq(r.status, 502, "%d %s", r.status, r.body);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert(hc_connect(&c, addr, 2000) == 0);
    cr_assert(hc_send_str(&c, "GET /seven HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    hc_response_free(&r);
    cr_assert(hc_send_str(&c, "PUT /eight HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 2000));
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_expect_eq(r.status, 502, "%d %s", r.status, r.body);
    hc_response_free(&r);
    hc_close(&c);
    cr_assert(sg_proc_wait_stderr(&gw, "upstream closed before responding", 5, 3000));
    char *err = sg_proc_stderr(&gw);
    cr_expect(!strstr(err, "inside the response head"), "misclassified:\n%s", err);
    cr_expect(!strstr(err, "ejected"), "a stale pooled connection is not a server failure:\n%s", err);
    free(err);
    /* The server was never marked failed (max_fails: 1): a new request works. */
    hc_response_t r2;
    cr_assert_eq(hc_request(addr, "GET /nine HTTP/1.1\r\nHost: x\r\n\r\n", &r2, 3000), HC_OK);
    cr_expect_eq(r2.status, 200);
    hc_response_free(&r2);
    gw_stop(&gw);
    ru_stop(u);
}

/* The same race on an egress listener: the pool to a destination is reused
 * by the agents' next call; a GET is sent again on a new connection. */
Test(faults, egress_pooled_connection_closed_before_responding_is_retried, .timeout = 30)
{
    raw_up_t *u = ru_start(M_CLOSE_SECOND);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n"
             "listeners: [{name: eg, address: \"127.0.0.1:0\", mode: egress}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"
             "egress: {allow: [\"127.0.0.1:%u\"]}\n",
             ru_port(u));
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "eg"), 2000), 0);
    hc_response_t r;
    for (int i = 0; i < 3; i++) {
        char raw[160];
        snprintf(raw, sizeof(raw), "GET http://127.0.0.1:%u/r%d HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", ru_port(u), i,
                 ru_port(u));
        cr_assert(hc_send_str(&c, raw, 2000));
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK, "request %d", i);
        cr_expect_eq(r.status, 200, "request %d: %d %s", i, r.status, r.body);
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_expect_eq(su_connections(u->su), 3, "one new connection per retried request");
    cr_expect(sg_proc_wait_stderr(&gw, "sending the request again on a new one", 2, 3000));
    gw_stop(&gw);
    ru_stop(u);
}

/* Two servers, round robin: the raw one (M_CLOSE_SECOND) and "b". */
typedef struct two_srv {
    raw_up_t *u;
    us_server_t *b;
    sg_proc_t gw;
    const char *addr;
} two_srv_t;

static void two_start(two_srv_t *t)
{
    t->u = ru_start(M_CLOSE_SECOND);
    t->b = us_start("b", false);
    cr_assert(t->b);
    gw_start(&t->gw,
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {enabled: false}\n"
             "log: {access: \"off\"}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], balance: round_robin}}\n"
             "routes: [{upstream: app}]\n",
             ru_port(t->u), us_port(t->b));
    t->addr = sg_proc_addr(&t->gw, "api");
}

static void two_stop(two_srv_t *t)
{
    gw_stop(&t->gw);
    us_stop(t->b);
    ru_stop(t->u);
}

/* GETs until the raw server answered once (round robin: at most 2), so a
 * connection to it is pooled; then `cmd` changes the raw server, and two
 * GETs follow: one goes to b, one to the raw server's pooled connection,
 * which it closes. Both must be answered by b. */
static void two_gets_end_at_b(two_srv_t *t, char cmd)
{
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, t->addr, 2000), 0);
    hc_response_t r;
    for (int i = 0; i < 2 && su_requests(t->u->su) == 0; i++) {
        cr_assert(hc_send_str(&c, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        cr_assert_eq(r.status, 200);
        hc_response_free(&r);
    }
    cr_assert_eq(su_requests(t->u->su), 1);
    ru_cmd(t->u, cmd);
    for (int i = 0; i < 2; i++) {
        cr_assert(hc_send_str(&c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        cr_expect_eq(r.status, 200, "request %d: %d %s", i, r.status, r.body);
        char who[16] = "";
        cr_expect(hc_header(&r, "X-Upstream", who, sizeof(who)) && strcmp(who, "b") == 0, "request %d from '%s'", i,
                  who);
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_expect(sg_proc_wait_stderr(&t->gw, "sending the request again on a new one", 1, 3000));
}

/* The same race while the server also stopped accepting (it is going away):
 * the request sent again cannot connect there and goes to the other server. */
Test(faults, retried_request_that_cannot_reconnect_goes_to_another_server, .timeout = 30)
{
    two_srv_t t;
    two_start(&t);
    two_gets_end_at_b(&t, 'l'); /* 'l': the raw server stops listening */
    cr_expect(sg_proc_wait_stderr(&t.gw, "connection refused", 1, 3000));
    cr_expect_eq(su_connections(t.u->su), 1);
    two_stop(&t);
}

/* A server going away that still accepts connections but closes them
 * unanswered: the request sent again on a new connection fails there too,
 * and goes to the other server. A request that fails on a connection
 * opened for it (not a reused one) is not sent again: the server may have
 * processed it. */
Test(faults, retried_request_closed_again_goes_to_another_server, .timeout = 30)
{
    two_srv_t t;
    two_start(&t);
    two_gets_end_at_b(&t, 'c'); /* 'c': the raw server closes every request unanswered */
    cr_expect_eq(su_connections(t.u->su), 2, "the pooled connection and one new one");

    int b_before = us_requests(t.b);
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, t.addr, 2000), 0);
    int n_502 = 0, n_200 = 0;
    for (int i = 0; i < 2; i++) { /* round robin: one of the two goes to the closing server */
        hc_response_t r;
        cr_assert(hc_send_str(&c, "GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        n_502 += r.status == 502;
        n_200 += r.status == 200;
        hc_response_free(&r);
    }
    hc_close(&c);
    cr_expect_eq(n_502, 1, "the GET to the closing server (on a new connection: its pool is empty) fails");
    cr_expect_eq(n_200, 1);
    cr_expect_eq(us_requests(t.b) - b_before, 1, "and is not sent to the other server");
    two_stop(&t);
}

Test(faults, extra_bytes_in_the_same_read_never_reach_next_request, .timeout = 30)
{
    raw_up_t *u = ru_start(M_EXTRA_AT_ONCE);
    sg_proc_t gw;
    gw_start_for(&gw, u, ", keepalive: 8");
    two_requests(sg_proc_addr(&gw, "api"), u, false);
    gw_stop(&gw);
    ru_stop(u);
}

Test(faults, extra_bytes_on_idle_pooled_conn_never_reach_next_request, .timeout = 30)
{
    raw_up_t *u = ru_start(M_EXTRA_LATER);
    sg_proc_t gw;
    gw_start_for(&gw, u, ", keepalive: 8");
    two_requests(sg_proc_addr(&gw, "api"), u, true);
    gw_stop(&gw);
    ru_stop(u);
}

/* ---- hangs after the head ------------------------------------------------------------- */

static void hang_case(mode_t_ mode, size_t want_body)
{
    raw_up_t *u = ru_start(mode);
    sg_proc_t gw;
    gw_start_for(&gw, u, ", read_timeout: 500ms, response_timeout: 5s");
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    long long t0 = sgt_now_ms();
    cr_assert(hc_send_str(&c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t r;
    int e = hc_read_response(&c, &r, 5000);
    long long dt = sgt_now_ms() - t0;
    cr_assert_eq(e, HC_CLOSED, "a hung body must end with a close (got %d)", e);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, want_body);
    cr_assert(dt >= 400 && dt < 3000, "closed after %lld ms (read_timeout 500ms)", dt);
    hc_response_free(&r);
    hc_close(&c);
    /* The proxy closed its side of the hung upstream connection too. */
    cr_assert(su_wait_eofs(u->su, 1, 3000), "hung upstream connection left open");
    cr_assert_eq(kill(gw.pid, 0), 0);
    gw_stop(&gw);
    ru_stop(u);
}

Test(faults, upstream_hangs_after_head_content_length, .timeout = 30)
{
    hang_case(M_HANG_AFTER_HEAD, 10);
}

Test(faults, upstream_hangs_after_head_chunked, .timeout = 30)
{
    hang_case(M_HANG_CHUNKED, 5);
}

/* What the requests of race_trials() got. */
typedef struct race_counts {
    int n502, n_early, n_smuggled, n_own, n_foreign;
} race_counts_t;

/* `trials` rounds of GET /one, GET /two on one client connection; after
 * each /two the upstream writes a whole stray response (SMUGGL) on the
 * connection that answered last. Every answer is classified; anything but
 * 200 or 502, or a body that is none of the three, fails. */
static race_counts_t race_trials(int trials)
{
    raw_up_t *u = ru_start(M_EXTRA_RACE);
    sg_proc_t gw;
    gw_start_for(&gw, u, ", keepalive: 8");
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    race_counts_t n = {0};
    for (int trial = 0; trial < trials; trial++) {
        const char *paths[] = {"/one", "/two"};
        for (int k = 0; k < 2; k++) {
            char req[64];
            snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[k]);
            cr_assert(hc_send_str(&c, req, 2000));
            if (k == 1)
                ru_cmd(u, 'x');
            hc_response_t r;
            cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK, "trial %d %s", trial, paths[k]);
            cr_assert(r.status == 200 || r.status == 502, "trial %d: status %d", trial, r.status);
            if (r.status == 502) {
                n.n502++;
                n.n_early += strstr(r.body, "upstream sent bytes before the request") != NULL;
            } else if (!strcmp(r.body, "SMUGGL")) {
                n.n_smuggled++;
            } else if (!strcmp(r.body, paths[k])) {
                n.n_own++;
            } else {
                cr_assert(!strcmp(r.body, paths[1 - k]), "trial %d %s: body \"%s\"", trial, paths[k], r.body);
                n.n_foreign++;
            }
            hc_response_free(&r);
        }
    }
    /* Nothing extra on the client connection: bytes after the last answer
     * would be read as the head of this one's. */
    cr_assert(hc_send_str(&c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t last;
    cr_assert_eq(hc_read_response(&c, &last, 3000), HC_OK, "the answer after the last trial");
    cr_assert(last.status == 502 || (last.status == 200 && (!strcmp(last.body, "/one") || !strcmp(last.body, "/two") ||
                                                            !strcmp(last.body, "SMUGGL"))),
              "after the last trial: %d %s", last.status, last.body);
    hc_response_free(&last);
    cr_log_info("of %d requests: %d got 502 (%d for bytes before the request), %d took the stray response, %d their "
                "own answer, %d an earlier request's late answer",
                2 * trials, n.n502, n.n_early, n.n_smuggled, n.n_own, n.n_foreign);
    hc_close(&c);
    cr_assert_eq(kill(gw.pid, 0), 0);
    gw_stop(&gw);
    ru_stop(u);
    return n;
}

/* The stray bytes race the next request: sent right after the client's
 * request, they may reach the proxy before it leased the pooled connection
 * (closed as idle), after it leased it but before it wrote the request
 * (upstream.c: failed, 502), or after the request was written (then they
 * are indistinguishable from a response, as for any HTTP/1.1 client).
 * Whatever the order: one complete answer per request (200 or 502, a body
 * that is one of the upstream's), no hang, no crash, nothing extra on the
 * client connection, and the stray response taken at most once per write. */
Test(faults, extra_bytes_racing_connection_reuse, .timeout = 60)
{
    const int trials = 300;
    race_counts_t n = race_trials(trials);
    cr_assert_eq(n.n502 + n.n_smuggled + n.n_own + n.n_foreign, 2 * trials);
    cr_assert_leq(n.n_smuggled, trials, "%d answers from %d stray writes", n.n_smuggled, trials);
    cr_assert_geq(n.n_own, trials / 4, "%d of %d requests got their own answer", n.n_own, 2 * trials);
}

/* Stricter, and not met (found by issue #20): once the stray response has
 * taken a request's place, that request's real answer comes on the pooled
 * connection with no request outstanding. Bytes on an idle pooled
 * connection close it, and bytes that come between a lease and the write
 * of the request make the stream take a new connection; what remains is
 * the answer coming after the next request was written on the connection
 * (the scripted upstream is slow to write it on a loaded machine): about
 * 200 of 600 requests then get the previous request's answer. Checked:
 * looking into the socket (recv MSG_PEEK) just before the write finds
 * nothing in any of those cases, so the bytes are not there yet, and HTTP/1
 * gives no way to tell them from the answer. An upstream that answers
 * twice desynchronizes any HTTP/1 proxy's reused connection (docs/security.md).
 * Runs with SG_TEST_KNOWN_BUGS=1. */
Test(faults, late_answer_never_answers_a_later_request, .timeout = 60)
{
    if (!getenv("SG_TEST_KNOWN_BUGS"))
        cr_skip_test();
    race_counts_t n = race_trials(300);
    cr_assert_eq(n.n_foreign, 0, "%d requests got an earlier request's answer (%d stray responses taken)", n.n_foreign,
                 n.n_smuggled);
}

/* An upstream head that llhttp and the client would frame differently is a
 * bad response (502), never passed on (http1.c, fuzz_response finding). */
Test(faults, ambiguous_transfer_encoding_from_upstream_is_502, .timeout = 30)
{
    raw_up_t *u = ru_start(M_TE_TAB);
    sg_proc_t gw;
    gw_start_for(&gw, u, "");
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "api"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 502, "status %d", r.status);
    cr_assert(strstr(r.body, "invalid response head"), "%s", r.body);
    hc_response_free(&r);
    gw_stop(&gw);
    ru_stop(u);
}
