/* The stream's state machine and retry rules (src/net/proxy.c) and the
 * HTTP/1 head reader both endpoints use (sg_h1_read_head), without sockets:
 * bytes are fed by hand, split at every position. */
#include "net/net_int.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>

/* ---- transaction states ------------------------------------------------------ */

static const struct {
    sg_txn_state_t from, to;
} k_legal[] = {
    {SG_TXN_HEAD, SG_TXN_CONNECTING},       /* routed: a server is being connected */
    {SG_TXN_HEAD, SG_TXN_LOCAL},            /* refused or answered by swarmgate */
    {SG_TXN_CONNECTING, SG_TXN_CONNECTING}, /* connect failed: another server */
    {SG_TXN_CONNECTING, SG_TXN_SENT},       /* request head written */
    {SG_TXN_CONNECTING, SG_TXN_TUNNEL},     /* CONNECT: destination connected */
    {SG_TXN_CONNECTING, SG_TXN_LOCAL},      /* 502/503/504 */
    {SG_TXN_SENT, SG_TXN_CONNECTING},       /* sent again (stale pooled connection) or elsewhere */
    {SG_TXN_SENT, SG_TXN_RESP_BODY},        /* response head forwarded */
    {SG_TXN_SENT, SG_TXN_TUNNEL},           /* 101 */
    {SG_TXN_SENT, SG_TXN_LOCAL},            /* 502/504 before any response byte */
    {SG_TXN_RESP_BODY, SG_TXN_DONE},        /* response complete */
};

static bool listed(sg_txn_state_t from, sg_txn_state_t to)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(k_legal); i++)
        if (k_legal[i].from == from && k_legal[i].to == to)
            return true;
    return false;
}

TestSuite(stream, .timeout = 10);

Test(stream, every_move_is_legal_or_refused_as_listed)
{
    for (int from = 0; from < SG_TXN__COUNT; from++)
        for (int to = 0; to < SG_TXN__COUNT; to++)
            cr_assert_eq(sg__txn_can_move((sg_txn_state_t)from, (sg_txn_state_t)to),
                         listed((sg_txn_state_t)from, (sg_txn_state_t)to), "%s -> %s",
                         sg__txn_state_name((sg_txn_state_t)from), sg__txn_state_name((sg_txn_state_t)to));
}

Test(stream, every_legal_move_is_taken)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(k_legal); i++) {
        sg_txn_t t;
        memset(&t, 0, sizeof(t));
        t.state = k_legal[i].from;
        sg__txn_set_state(&t, k_legal[i].to);
        cr_assert_eq(t.state, k_legal[i].to);
    }
}

Test(stream, an_illegal_move_is_caught, .signal = SIGABRT)
{
    sg_txn_t t;
    memset(&t, 0, sizeof(t));
    t.state = SG_TXN_DONE;
    sg__txn_set_state(&t, SG_TXN_SENT); /* a finished exchange never sends again */
}

Test(stream, terminal_states_have_no_way_out)
{
    for (int to = 0; to < SG_TXN__COUNT; to++) {
        cr_assert_not(sg__txn_can_move(SG_TXN_DONE, (sg_txn_state_t)to));
        cr_assert_not(sg__txn_can_move(SG_TXN_LOCAL, (sg_txn_state_t)to));
        cr_assert_not(sg__txn_can_move(SG_TXN_TUNNEL, (sg_txn_state_t)to));
    }
}

/* ---- next upstream ------------------------------------------------------------- */

static sg_txn_t txn(uint32_t flags, uint32_t n_tries, int32_t ups_idx)
{
    sg_txn_t t;
    memset(&t, 0, sizeof(t));
    t.flags = flags;
    t.n_tries = n_tries;
    t.ups_idx = ups_idx;
    return t;
}

static char g_head[8];
static sg_upconn_t g_up;

Test(stream, nothing_sent_goes_to_another_server_once)
{
    for (int k = 0; k < SG_FAIL__COUNT; k++) {
        sg_txn_t t = txn(0, 1, 0);
        cr_assert_eq(sg__next_upstream(&t, (sg_fail_t)k), SG_NEXT_OTHER_SERVER);
        t.n_tries = 2;
        cr_assert_eq(sg__next_upstream(&t, (sg_fail_t)k), SG_NEXT_FAIL, "at most two servers");
    }
}

Test(stream, a_sent_request_is_not_sent_elsewhere)
{
    sg_txn_t t = txn(SG_TXN_F_SENT_ANY, 1, 0);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_FAIL);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_TIMEOUT), SG_NEXT_FAIL);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_BAD_RESPONSE), SG_NEXT_FAIL);
}

Test(stream, a_started_response_is_never_retried)
{
    for (int k = 0; k < SG_FAIL__COUNT; k++) {
        sg_txn_t t = txn(SG_TXN_F_RESP_HEAD | SG_TXN_F_REPLAY, 1, 0);
        t.uphead = g_head;
        t.up = &g_up;
        cr_assert_eq(sg__next_upstream(&t, (sg_fail_t)k), SG_NEXT_ABORT);
    }
}

Test(stream, a_replayable_request_reset_on_a_reused_connection_is_sent_again)
{
    sg_txn_t t = txn(SG_TXN_F_SENT_ANY | SG_TXN_F_REPLAY, 1, 0);
    t.uphead = g_head;
    t.up = &g_up;
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_RESEND);
    /* only a reset: a timeout or a broken head says something about the server */
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_TIMEOUT), SG_NEXT_FAIL);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_BAD_RESPONSE), SG_NEXT_FAIL);
    /* once: after the fresh connection failed too, another server */
    t.flags = SG_TXN_F_SENT_ANY | SG_TXN_F_FRESH;
    t.up = NULL;
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_OTHER_SERVER);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_CONNECT), SG_NEXT_OTHER_SERVER);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_TIMEOUT), SG_NEXT_FAIL);
    t.n_tries = 2;
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_FAIL);
}

Test(stream, a_reused_connection_failing_before_anything_was_sent_is_replaced)
{
    /* Bytes nobody asked for on a pooled connection just leased: nothing
     * was sent, the server is not at fault, a new connection takes it. */
    sg_txn_t t = txn(0, 1, 0);
    t.uphead = g_head;
    g_up.flags = SG_UPC_F_REUSED;
    t.up = &g_up;
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_RESEND);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_BAD_RESPONSE), SG_NEXT_OTHER_SERVER, "only a reset");
    g_up.flags = 0; /* a new connection failing says something about the server */
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_OTHER_SERVER);
    g_up.flags = SG_UPC_F_REUSED;
    t.flags = SG_TXN_F_FRESH; /* once */
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_OTHER_SERVER);
    t.flags = SG_TXN_F_SENT_ANY; /* something went out, not replayable */
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_RESET), SG_NEXT_FAIL);
    g_up.flags = 0;
}

Test(stream, egress_has_no_other_server)
{
    sg_txn_t t = txn(SG_TXN_F_EGRESS, 1, -1);
    cr_assert_eq(sg__next_upstream(&t, SG_FAIL_CONNECT), SG_NEXT_FAIL);
}

/* ---- the head reader, split at every position ------------------------------------ */

#define HEAD_CAP 2048
#define MAX_HDRS 32

typedef struct {
    _Alignas(16) char buf[HEAD_CAP + MAX_HDRS * sizeof(sg_h1_header_t)];
} head_mem_t;

static const sg_h1_limits_t k_lim = {.start_line_bytes = 512, .header_bytes = 1024, .header_count = 16};

/* Feeds msg in pieces cut at `cut` (0: whole); returns the reader's final
 * result and the bytes it took. */
static int feed(sg_h1_reader_t *r, head_mem_t *m, sg_h1_kind_t kind, const char *msg, size_t len, size_t cut,
                size_t *taken)
{
    const sg_h1_read_opts_t o = {.kind = kind, .limits = &k_lim, .max_body = 1000};
    sg_h1_read_begin(r, m->buf, HEAD_CAP, MAX_HDRS);
    size_t off = 0;
    *taken = 0;
    while (off < len) {
        size_t n = cut && off < cut ? cut - off : len - off;
        size_t used = 0;
        const char *why = NULL;
        int st = sg_h1_read_head(r, &o, msg + off, n, &used, &why);
        if (st < 0) {
            cr_assert_not_null(why);
            return st;
        }
        *taken += used;
        off += used;
        if (st == SG_H1_READ_HEAD)
            return st;
        cr_assert_eq(used, n, "MORE takes every byte");
    }
    return SG_H1_READ_MORE;
}

Test(stream, request_head_reads_the_same_at_every_split)
{
    static const char req[] = "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Trace-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n"
                              "Content-Length: 5\r\n\r\nhello";
    size_t head_len = strlen(req) - 5;
    for (size_t cut = 0; cut < sizeof(req) - 1; cut++) {
        sg_h1_reader_t r;
        head_mem_t m;
        size_t taken = 0;
        int st = feed(&r, &m, SG_H1_REQUEST, req, sizeof(req) - 1, cut, &taken);
        cr_assert_eq(st, SG_H1_READ_HEAD, "cut %zu", cut);
        cr_assert_eq(taken, head_len, "cut %zu: the body is left for the body parser", cut);
        cr_assert_eq(r.n_used, head_len);
        const sg_h1_head_t *h = &r.parser.head;
        cr_assert_eq(h->method, SG_METHOD_POST);
        cr_assert(sg_str_eq(h->target, SG_STR("/a?b=1")));
        cr_assert_eq(h->n_headers, 3);
        cr_assert(h->has_body && h->content_length == 5);
        size_t used = 0;
        cr_assert_eq(sg_h1_parse_body(&r.parser, req + head_len, 5, &used), SG_H1_BODY_DONE);
        cr_assert_eq(used, 5);
    }
}

Test(stream, response_head_reads_the_same_at_every_split)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
    size_t head_len = strlen(resp) - 2;
    for (size_t cut = 0; cut < sizeof(resp) - 1; cut++) {
        sg_h1_reader_t r;
        head_mem_t m;
        size_t taken = 0;
        cr_assert_eq(feed(&r, &m, SG_H1_RESPONSE, resp, sizeof(resp) - 1, cut, &taken), SG_H1_READ_HEAD);
        cr_assert_eq(taken, head_len);
        cr_assert_eq(r.parser.head.status, 200);
        cr_assert_eq(r.parser.head.n_headers, 2);
    }
}

Test(stream, a_refused_head_gets_one_answer_at_every_split)
{
    static const struct {
        const char *msg;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", -400}, /* space in a field name */
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", -400},     /* obs-fold */
        {"GET / HTTP/1.1\nHost: x\r\n\r\n", -400},                  /* bare LF */
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -400},
    };
    for (size_t k = 0; k < SG_ARRAY_SIZE(cases); k++) {
        size_t len = strlen(cases[k].msg);
        for (size_t cut = 0; cut < len; cut++) {
            sg_h1_reader_t r;
            head_mem_t m;
            size_t taken = 0;
            cr_assert_eq(feed(&r, &m, SG_H1_REQUEST, cases[k].msg, len, cut, &taken), cases[k].status,
                         "case %zu cut %zu", k, cut);
        }
    }
}

Test(stream, a_refused_head_keeps_its_bytes_for_the_trace_id)
{
    /* The line with the id came whole before the refused one: the answer
     * can reuse it (head_trace.c reads r.head). */
    static const char req[] =
        "GET / HTTP/1.1\r\nX-Trace-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\nBad\x01: y\r\n\r\n";
    sg_h1_reader_t r;
    head_mem_t m;
    size_t taken = 0;
    cr_assert_lt(feed(&r, &m, SG_H1_REQUEST, req, sizeof(req) - 1, 20, &taken), 0);
    cr_assert_geq(r.head_len, strlen("GET / HTTP/1.1\r\nX-Trace-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n"));
    cr_assert(memmem(r.head, r.head_len, "X-Trace-Id: 4bf92f35", 20) != NULL);
}

Test(stream, a_head_over_the_buffer_is_431_at_every_split)
{
    char big[1300];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 1100); /* over header_bytes (1024) */
    memcpy(big + n + 1100, "\r\n\r\n", 4);
    size_t len = (size_t)n + 1104;
    for (size_t cut = 1; cut < len; cut += 37) {
        sg_h1_reader_t r;
        head_mem_t m;
        size_t taken = 0;
        cr_assert_eq(feed(&r, &m, SG_H1_REQUEST, big, len, cut, &taken), -431, "cut %zu", cut);
    }
}
