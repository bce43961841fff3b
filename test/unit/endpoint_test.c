/* The client-side HTTP/1 endpoint (src/net/conn.c) without sockets: a
 * fake transport below it (bytes in by hand, writes recorded, half-close
 * and close reported on the next loop turn, as libuv does) and a fake
 * stream above it (the sg_conn_ops_t table: it records what the endpoint
 * reports and answers each request), on a private loop for the timeouts.
 * Requests are fed split at every byte position. */
#include "net/net_int.h"
#include "support/fake_tp.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- fake stream ------------------------------------------------------------- */

typedef struct fake_txn {
    sg_h1_reader_t rd;
    sg_h1_read_opts_t ro;
    sg_conn_t *c;
    char target[64];
    size_t body;
    bool is_done;
    bool must_close; /* the request asked for the close (Connection: close) */
} fake_txn_t;

/* What the fake stream does with a request. */
typedef enum {
    ST_ANSWER = 0, /* answers once the request is complete */
    ST_HOLD,       /* never answers (the response is "under way") */
    ST_TUNNEL,     /* makes the connection a tunnel at the head (101, CONNECT) */
    ST_EARLY,      /* answers at the head, before any body is read */
} st_mode_t;

static st_mode_t g_mode;
static bool g_answer_errors; /* a refused head gets a response (the stream's 400), not a bare close */

typedef struct fake_stream {
    fake_txn_t txns[16];
    int n_begun;
    int n_heads;
    int n_head_errors;
    int last_error_status;
    int n_closed;
    char seen[256]; /* targets in the order their heads came, with bodies: "/a(5) /b " */
} fake_stream_t;

static fake_stream_t g_st;
static sg_worker_t *w;
static sg_listener_t lst;
static sg_config_t *cfg;
static sg_wgen_t gen;
static sg_worker_pub_t pub;

static fake_txn_t *ft(sg_txn_t *t)
{
    return (fake_txn_t *)(void *)t;
}

static void answer(fake_txn_t *x)
{
    /* What the stream does once a request is complete: write a response,
     * give the exchange back (keep-alive). */
    char *b = sg__buf_get(w);
    cr_assert_not_null(b);
    int n = snprintf(b, SG_BUF_SIZE, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(x->target), x->target);
    uv_buf_t iov = uv_buf_init(b, (unsigned)n);
    cr_assert_geq(sg__conn_write(x->c, &iov, 1, b, SG_BK_BUF), 0);
    x->is_done = true;
    size_t k = strlen(g_st.seen);
    snprintf(g_st.seen + k, sizeof(g_st.seen) - k, "%s(%zu) ", x->target, x->body);
    sg__conn_txn_done(x->c, x->must_close);
}

static sg_txn_t *st_begin(sg_conn_t *c)
{
    cr_assert_lt(g_st.n_begun, 16);
    fake_txn_t *x = &g_st.txns[g_st.n_begun++];
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->ro = (sg_h1_read_opts_t){.kind = SG_H1_REQUEST, .limits = &w->req_limits, .max_body = 1 << 20};
    x->rd.ro = &x->ro;
    return (sg_txn_t *)(void *)x;
}

static void st_on_head(sg_txn_t *t)
{
    fake_txn_t *x = ft(t);
    g_st.n_heads++;
    const sg_h1_head_t *h = &x->rd.parser.head;
    snprintf(x->target, sizeof(x->target), "%.*s", (int)h->target.len, h->target.p);
    bool has_body = h->has_body;
    x->must_close = !h->is_keep_alive;
    sg__head_put(w, x->rd.head); /* the stream releases the head once it is used */
    x->rd.head = NULL;
    switch (g_mode) {
    case ST_HOLD:
        break;
    case ST_TUNNEL:
        sg__conn_tunnel_start(x->c);
        break;
    case ST_EARLY:
        answer(x);
        break;
    default:
        if (!has_body)
            answer(x);
        break;
    }
}

static void st_on_head_error(sg_txn_t *t, int status, const char *why)
{
    SG_UNUSED(why);
    fake_txn_t *x = ft(t);
    g_st.n_head_errors++;
    g_st.last_error_status = status;
    if (x->rd.head) {
        sg__head_put(w, x->rd.head);
        x->rd.head = NULL;
    }
    if (g_answer_errors) {
        x->must_close = true; /* what the stream does: an error response, then the close */
        answer(x);
        return;
    }
    sg__conn_abort(x->c, why);
}

static bool st_can_take_body(const sg_txn_t *t)
{
    SG_UNUSED(t);
    return true;
}

static void st_on_body(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    SG_UNUSED(p);
    ft(t)->body += n;
    sg__buf_put(w, buf); /* the buffer's ownership came with the bytes */
}

static void st_on_body_done(sg_txn_t *t)
{
    if (g_mode == ST_ANSWER)
        answer(ft(t));
}

static void st_on_error(sg_txn_t *t, int status, const char *why)
{
    g_st.last_error_status = status;
    sg__conn_abort(ft(t)->c, why);
}

static void st_on_tunnel(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    SG_UNUSED(t);
    SG_UNUSED(p);
    SG_UNUSED(n);
    sg__buf_put(w, buf);
}

static void st_noop(sg_txn_t *t)
{
    SG_UNUSED(t);
}

static void st_on_close(sg_txn_t *t, const char *why)
{
    SG_UNUSED(why);
    fake_txn_t *x = ft(t);
    g_st.n_closed++;
    if (x->rd.head) {
        sg__head_put(w, x->rd.head);
        x->rd.head = NULL;
    }
}

static const sg_conn_ops_t k_fake_stream = {
    .begin = st_begin,
    .rd_offset = offsetof(fake_txn_t, rd),
    .on_head = st_on_head,
    .on_head_error = st_on_head_error,
    .can_take_body = st_can_take_body,
    .on_body = st_on_body,
    .on_body_done = st_on_body_done,
    .on_error = st_on_error,
    .on_tunnel = st_on_tunnel,
    .on_tunnel_eof = st_noop,
    .on_drained = st_noop,
    .on_close = st_on_close,
};

/* ---- harness ------------------------------------------------------------------- */

static sg_conn_t *conn;
static sg_fake_tp_t *ftp; /* conn's transport record (kept after its close) */
static int g_conns_gone;

static void on_conn_gone(sg_worker_t *wk, sg_listener_t *l)
{
    SG_UNUSED(wk);
    g_conns_gone++;
    l->refs--; /* what worker.c does through sg__listener_unref */
}

static const sg_worker_notify_t k_notify = {.conn_gone = on_conn_gone};

static void setup(void)
{
    sg_fake_tp_reset();
    memset(&g_st, 0, sizeof(g_st));
    g_mode = ST_ANSWER;
    g_answer_errors = false;
    static const char yaml[] =
        "listeners: [{name: a, address: \"127.0.0.1:0\"}]\n"
        "limits: {client_header_timeout: 200ms, keepalive_timeout: 300ms, client_body_timeout: 200ms}\n";
    char err[512];
    cr_assert_eq(sg_config_load_string("endpoint_test", yaml, sizeof(yaml) - 1, &cfg, err, sizeof(err)), 0, "%s", err);
    w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    cr_assert_eq(uv_loop_init(&w->loop), 0);
    w->loop.data = w; /* as sg__worker_init does: transports find their worker through it */
    sg__tq_init(w);
    sg_list_init(&w->conns);
    w->head_max_hdrs = 33;
    w->head_bytes = 8192;
    w->head_size = w->head_bytes + w->head_max_hdrs * sizeof(sg_h1_header_t);
    w->req_limits = (sg_h1_limits_t){.start_line_bytes = 4096, .header_bytes = 4096, .header_count = 32};
    sg_freelist_init(&w->fl_conn, sizeof(sg_conn_t), 4);
    sg_freelist_init(&w->fl_buf, SG_BUF_SIZE, 4);
    sg_freelist_init(&w->fl_head, w->head_size, 4);
    sg_freelist_init(&w->fl_wreq, sizeof(sg_wreq_t), 4);
    w->pub = &pub;
    w->notify = &k_notify;
    g_conns_gone = 0;
    w->obs = sg_obs_worker_new(NULL, 0);
    cr_assert_not_null(w->obs);
    memset(&gen, 0, sizeof(gen));
    gen.cfg = cfg;
    gen.w = w;
    w->gen = &gen;
    memset(&lst, 0, sizeof(lst));
    lst.w = w;
    lst.idx = -1;
    lst.refs = 1;
    lst.conn_ops = &k_fake_stream;
    conn = sg_freelist_get(&w->fl_conn);
    cr_assert_not_null(conn);
    memset(conn, 0, sizeof(*conn));
    sg__conn_start(conn, &lst, &sg_fake_tp_vt, NULL);
    ftp = sg_fake_tp_of(&conn->tp);
}

/* One loop turn, then what the fake transport owes: the half-close's and
 * the close's callbacks (never inside the call that asked for them). */
static void turn(void)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    sg_fake_tp_turn();
}

static void teardown(void)
{
    if (!ftp->has_closed)
        sg__conn_close(conn);
    turn();
    cr_assert(ftp->is_freed, "the connection closed");
    cr_assert_eq(g_conns_gone, 1, "the worker heard of the close once");
    cr_assert_eq(lst.refs, 1, "its listener reference went back");
    sg__tq_close(w, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "every handle closed");
    sg_obs_worker_free(w->obs);
    sg_freelist_destroy(&w->fl_conn);
    sg_freelist_destroy(&w->fl_buf);
    sg_freelist_destroy(&w->fl_head);
    sg_freelist_destroy(&w->fl_wreq);
    free(w);
    sg_config_release(cfg);
}

TestSuite(endpoint, .init = setup, .fini = teardown, .timeout = 20);

/* Delivers bytes as a read would, while the endpoint wants to read. */
static void deliver(const char *p, size_t n)
{
    while (n > 0 && !ftp->has_closed) {
        if (!conn->tp.is_reading) {
            turn(); /* e.g. a pipelined request waits for its turn (T_KICK) */
            cr_assert(conn->tp.is_reading || ftp->has_closed, "the endpoint never asked for more bytes");
            continue;
        }
        size_t k = sg_fake_tp_feed(&conn->tp, p, n);
        cr_assert_gt(k, 0);
        p += k;
        n -= k;
    }
}

static void settle(void)
{
    for (int i = 0; i < 8; i++)
        turn();
}

Test(endpoint, pipelined_requests_are_answered_in_order_at_every_split)
{
    static const char in[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                             "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                             "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                             "GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    const size_t len = sizeof(in) - 1;
    for (size_t cut = 1; cut < len; cut++) {
        if (cut > 1) { /* a fresh connection for each split */
            teardown();
            setup();
        }
        deliver(in, cut);
        settle();
        deliver(in + cut, len - cut);
        settle();
        cr_assert_str_eq(g_st.seen, "/a(0) /b(5) /c(13) /d(0) ", "cut %zu: %s", cut, g_st.seen);
        cr_assert_eq(g_st.n_heads, 4);
        cr_assert_eq(g_st.n_head_errors, 0);
        cr_assert_eq(conn->n_requests, 4);
        cr_assert_eq(conn->state, SG_CONN_IDLE, "cut %zu: keep-alive", cut);
        cr_assert_not(ftp->has_closed);
        /* every response went out, in order */
        const char *a = memmem(ftp->out, ftp->out_len, "\r\n\r\n/a", 6);
        const char *d = memmem(ftp->out, ftp->out_len, "\r\n\r\n/d", 6);
        cr_assert(a && d && a < d);
    }
}

Test(endpoint, a_refused_head_is_reported_once_and_the_rest_is_not_read)
{
    static const char in[] = "GET /a HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    deliver(in, sizeof(in) - 1);
    settle();
    cr_assert_eq(g_st.n_head_errors, 1);
    cr_assert_eq(g_st.last_error_status, 400);
    cr_assert_eq(g_st.n_heads, 0, "nothing after a refused head is a request");
    cr_assert(ftp->has_closed);
}

Test(endpoint, an_idle_keep_alive_connection_holds_no_buffer_and_times_out)
{
    static const char in[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    deliver(in, sizeof(in) - 1);
    settle();
    cr_assert_str_eq(g_st.seen, "/a(0) ");
    cr_assert_eq(conn->state, SG_CONN_IDLE);
    cr_assert_null(conn->tp.rbuf, "an idle connection holds no read buffer");
    cr_assert_null(conn->txn);
    /* keepalive_timeout (300 ms) closes it */
    for (int i = 0; i < 100 && !ftp->has_closed; i++) {
        uv_run(&w->loop, UV_RUN_ONCE);
    }
    cr_assert(ftp->has_closed, "keep-alive timeout");
}

Test(endpoint, a_slow_head_gets_the_header_timeout)
{
    static const char in[] = "GET /a HTTP/1.1\r\nHos";
    deliver(in, sizeof(in) - 1);
    for (int i = 0; i < 100 && !ftp->has_closed; i++)
        uv_run(&w->loop, UV_RUN_ONCE);
    cr_assert_eq(g_st.n_head_errors, 1);
    cr_assert_eq(g_st.last_error_status, 408);
}

Test(endpoint, end_of_stream_mid_body_closes_and_tells_the_stream)
{
    static const char in[] = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel";
    deliver(in, sizeof(in) - 1);
    settle();
    cr_assert_eq(g_st.n_heads, 1);
    sg_fake_tp_end(&conn->tp, UV_EOF);
    cr_assert(ftp->has_closed);
    cr_assert_eq(g_st.n_closed, 1, "the stream hears of the close once");
}

Test(endpoint, a_bad_chunked_body_is_an_error_of_the_exchange)
{
    static const char in[] = "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX3\r\n";
    deliver(in, sizeof(in) - 1);
    settle();
    cr_assert_eq(g_st.last_error_status, 400);
    cr_assert(ftp->has_closed);
}

/* The client address is spelled out once per request (X-Forwarded-For, the
 * access log) without a digit loop: every width of every part. */
Test(endpoint, peer_text_spells_every_width)
{
    static const struct {
        uint8_t a[4];
        uint16_t port;
    } cases[] = {{{0, 0, 0, 0}, 0},
                 {{1, 2, 3, 4}, 9},
                 {{9, 10, 99, 100}, 10},
                 {{127, 0, 0, 1}, 999},
                 {{199, 200, 249, 250}, 1000},
                 {{251, 252, 254, 255}, 9999},
                 {{10, 20, 30, 40}, 10000},
                 {{255, 255, 255, 255}, 65535}};
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        conn->peer.family = AF_INET;
        memcpy(conn->peer.addr, cases[i].a, 4);
        conn->peer.port = cases[i].port;
        char ip[INET6_ADDRSTRLEN], ipport[INET6_ADDRSTRLEN + 8], want[64];
        sg__conn_peer_text(conn, ip, ipport);
        snprintf(want, sizeof(want), "%u.%u.%u.%u", cases[i].a[0], cases[i].a[1], cases[i].a[2], cases[i].a[3]);
        cr_assert_str_eq(ip, want);
        snprintf(want + strlen(want), sizeof(want) - strlen(want), ":%u", cases[i].port);
        cr_assert_str_eq(ipport, want);
    }
    conn->peer.family = AF_INET6;
    memset(conn->peer.addr, 0, 16);
    conn->peer.addr[15] = 1;
    conn->peer.port = 54321;
    char ip[INET6_ADDRSTRLEN], ipport[INET6_ADDRSTRLEN + 8];
    sg__conn_peer_text(conn, ip, ipport);
    cr_assert_str_eq(ip, "::1");
    cr_assert_str_eq(ipport, "[::1]:54321");
}

/* ---- the connection's states ------------------------------------------------------ */

static const struct {
    sg_conn_state_t from, to;
} k_conn_legal[] = {
    {SG_CONN_IDLE, SG_CONN_HEAD},     /* a request's first byte */
    {SG_CONN_IDLE, SG_CONN_CLOSED},   /* keep-alive timeout, peer gone, drain */
    {SG_CONN_HEAD, SG_CONN_BODY},     /* a head with a body */
    {SG_CONN_HEAD, SG_CONN_WAIT},     /* a head without one */
    {SG_CONN_HEAD, SG_CONN_LINGER},   /* a refused head answered (400, 408, 431) */
    {SG_CONN_HEAD, SG_CONN_CLOSED},   /* a refused head, closed */
    {SG_CONN_BODY, SG_CONN_WAIT},     /* the body read */
    {SG_CONN_BODY, SG_CONN_TUNNEL},   /* 101 before the upgrade request's body ended */
    {SG_CONN_BODY, SG_CONN_LINGER},   /* answered before the body was read: the rest is dropped */
    {SG_CONN_BODY, SG_CONN_CLOSED},   /* end of stream or a bad body */
    {SG_CONN_WAIT, SG_CONN_IDLE},     /* answered, kept */
    {SG_CONN_WAIT, SG_CONN_TUNNEL},   /* 101, CONNECT */
    {SG_CONN_WAIT, SG_CONN_LINGER},   /* answered, the last one */
    {SG_CONN_WAIT, SG_CONN_CLOSED},   /* the response failed mid-way */
    {SG_CONN_TUNNEL, SG_CONN_LINGER}, /* the tunnel ended with a half-close */
    {SG_CONN_TUNNEL, SG_CONN_CLOSED}, /* the tunnel ended */
    {SG_CONN_LINGER, SG_CONN_CLOSED}, /* the last bytes went out */
};

static bool conn_listed(int from, int to)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(k_conn_legal); i++)
        if ((int)k_conn_legal[i].from == from && (int)k_conn_legal[i].to == to)
            return true;
    return false;
}

Test(endpoint, every_move_of_the_connection_is_legal_or_refused_as_listed)
{
    for (int from = 0; from < SG_CONN__COUNT; from++)
        for (int to = 0; to < SG_CONN__COUNT; to++)
            cr_assert_eq(sg__conn_can_move((sg_conn_state_t)from, (sg_conn_state_t)to), conn_listed(from, to),
                         "%s -> %s", sg__conn_state_name((sg_conn_state_t)from),
                         sg__conn_state_name((sg_conn_state_t)to));
}

/* A fresh connection for the next exchange. */
static void next_conn(st_mode_t mode, bool answer_errors)
{
    teardown();
    setup();
    g_mode = mode;
    g_answer_errors = answer_errors;
}

static void wait_closed(void)
{
    for (int i = 0; i < 200 && !ftp->is_freed; i++) {
        uv_run(&w->loop, UV_RUN_ONCE);
        sg_fake_tp_turn();
    }
}

#ifndef NDEBUG
/* Each legal move is taken by an exchange through the endpoint (the moves
 * recorded by sg__conn_set_state), so none is listed that cannot happen. */
Test(endpoint, every_legal_move_is_taken_by_a_real_exchange)
{
    static const char get[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char get_close[] = "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char post[] = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    static const char bad[] = "GET /a HTTP/1.1\r\nBad Name: y\r\n\r\n";
    memset(sg__conn_moves_taken, 0, sizeof(sg__conn_moves_taken));

    /* idle -> head -> wait -> idle; idle -> closed */
    deliver(get, sizeof(get) - 1);
    settle();
    cr_assert_eq(conn->state, SG_CONN_IDLE);
    /* head -> body -> wait -> linger -> closed (Connection: close after a body) */
    next_conn(ST_ANSWER, false);
    static const char post_close[] = "POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    deliver(post_close, sizeof(post_close) - 1);
    settle();
    cr_assert(ftp->has_shutdown, "the last response is followed by the FIN");
    sg_fake_tp_end(&conn->tp, UV_EOF);
    wait_closed();
    /* wait -> linger */
    next_conn(ST_ANSWER, false);
    deliver(get_close, sizeof(get_close) - 1);
    settle();
    /* head -> linger (a refused head answered), head -> closed (closed) */
    next_conn(ST_ANSWER, true);
    deliver(bad, sizeof(bad) - 1);
    settle();
    next_conn(ST_ANSWER, false);
    deliver(bad, sizeof(bad) - 1);
    settle();
    /* body -> linger (answered at the head), body -> closed (end of stream mid-body) */
    next_conn(ST_EARLY, false);
    deliver(post, sizeof(post) - 3); /* the head and part of the body */
    settle();
    next_conn(ST_HOLD, false);
    deliver(post, sizeof(post) - 3); /* the head and part of the body */
    sg_fake_tp_end(&conn->tp, UV_EOF);
    /* wait -> closed (the response failed mid-way) */
    next_conn(ST_HOLD, false);
    deliver(get, sizeof(get) - 1);
    settle();
    cr_assert_eq(conn->state, SG_CONN_WAIT);
    sg__conn_abort(conn, "upstream closed mid-body");
    /* wait -> tunnel -> linger; body -> tunnel -> closed */
    next_conn(ST_TUNNEL, false);
    deliver(get, sizeof(get) - 1);
    cr_assert_eq(conn->state, SG_CONN_TUNNEL);
    sg__conn_txn_done(conn, true);
    settle();
    next_conn(ST_TUNNEL, false);
    deliver(post, sizeof(post) - 3); /* the head and part of the body */
    cr_assert_eq(conn->state, SG_CONN_TUNNEL);
    next_conn(ST_ANSWER, false);

    for (int from = 0; from < SG_CONN__COUNT; from++)
        for (int to = 0; to < SG_CONN__COUNT; to++)
            cr_assert_eq((sg__conn_moves_taken[from] >> to) & 1u, conn_listed(from, to) ? 1u : 0u, "%s -> %s %s",
                         sg__conn_state_name((sg_conn_state_t)from), sg__conn_state_name((sg_conn_state_t)to),
                         conn_listed(from, to) ? "never taken" : "taken, but not legal");
}
#endif

Test(endpoint, an_illegal_move_of_the_connection_is_caught, .signal = SIGABRT)
{
    sg__conn_close(conn);
    sg__conn_set_state(conn, SG_CONN_IDLE); /* nothing leaves CLOSED */
}
