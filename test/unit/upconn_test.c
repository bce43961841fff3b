/* The upstream-side HTTP/1 endpoint (src/net/upstream.c) without sockets:
 * a real worker (sg__worker_init on this thread, its own loop) whose
 * upstream connections run over the fake transport (test/support/fake_tp.c,
 * w->upstream_tp), and a fake owner in place of the stream (the
 * sg_upconn_ops_t table: it records what the endpoint reports). Connect,
 * pooled reuse through the ready queue, responses split at every byte in
 * each framing, early and late ends of the stream, bytes nobody asked for,
 * timeouts and write failures. */
#include "net/net_int.h"
#include "sg/worker.h"
#include "support/fake_tp.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- fake owner ----------------------------------------------------------------- */

typedef struct owner {
    sg_upconn_t *u;
    int n_ready, n_heads, n_interim, n_done, n_broken, n_timeouts, n_drained, n_errors, n_write_failed;
    sg_fail_t last_kind;
    char why[128];
    int status;
    char body[4096];
    size_t body_len;
    bool is_chunked; /* the head said so */
    bool decode;     /* ask for the body de-chunked */
    bool give_back;  /* on_done: back to the pool when it can be reused */
} owner_t;

static owner_t *ow(const sg_txn_t *t)
{
    return (owner_t *)(void *)(uintptr_t)t;
}

static void o_ready(sg_txn_t *t)
{
    ow(t)->n_ready++;
}

static sg_uphead_next_t o_head(sg_txn_t *t, const sg_h1_head_t *h)
{
    owner_t *o = ow(t);
    if (h->status >= 100 && h->status < 200) {
        o->n_interim++;
        return SG_UPH_AGAIN;
    }
    o->n_heads++;
    o->status = h->status;
    o->is_chunked = h->is_chunked;
    if (!h->has_body) {
        return SG_UPH_DONE;
    }
    return o->decode && h->is_chunked ? SG_UPH_BODY_DECODED : SG_UPH_BODY;
}

static void o_body(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    owner_t *o = ow(t);
    cr_assert_leq(o->body_len + n, sizeof(o->body));
    memcpy(o->body + o->body_len, p, n);
    o->body_len += n;
    sg__buf_put(o->u->w, buf); /* the buffer came with the bytes */
}

static void o_done(sg_txn_t *t)
{
    owner_t *o = ow(t);
    o->n_done++;
    if (o->give_back) {
        sg_upconn_t *u = o->u;
        o->u = NULL;
        sg__upconn_release(u, sg__upconn_can_reuse(u));
    }
}

static bool o_can_tunnel(const sg_txn_t *t)
{
    SG_UNUSED(t);
    return true;
}

static void o_tunnel(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    o_body(t, buf, p, n);
}

static void o_tunnel_eof(sg_txn_t *t, bool is_reset)
{
    SG_UNUSED(is_reset);
    ow(t)->n_done++;
}

static void o_noop(sg_txn_t *t)
{
    SG_UNUSED(t);
}

static void o_broken(sg_txn_t *t, const char *why)
{
    owner_t *o = ow(t);
    o->n_broken++;
    snprintf(o->why, sizeof(o->why), "%s", why ? why : "");
}

static void o_timeout(sg_txn_t *t)
{
    ow(t)->n_timeouts++;
}

static void o_drained(sg_txn_t *t)
{
    ow(t)->n_drained++;
}

static void o_error(sg_txn_t *t, sg_fail_t kind, const char *why)
{
    owner_t *o = ow(t);
    o->n_errors++;
    o->last_kind = kind;
    snprintf(o->why, sizeof(o->why), "%s", why);
}

static void o_write_failed(sg_txn_t *t, const char *why)
{
    owner_t *o = ow(t);
    o->n_write_failed++;
    snprintf(o->why, sizeof(o->why), "%s", why);
}

static const sg_upconn_ops_t k_owner_ops = {
    .on_ready = o_ready,
    .on_head = o_head,
    .on_body = o_body,
    .on_done = o_done,
    .can_tunnel = o_can_tunnel,
    .on_tunnel = o_tunnel,
    .on_tunnel_eof = o_tunnel_eof,
    .on_read_end = o_noop,
    .on_broken = o_broken,
    .on_timeout = o_timeout,
    .on_drained = o_drained,
    .on_error = o_error,
    .on_write_failed = o_write_failed,
};

/* ---- harness ---------------------------------------------------------------------- */

static sg_runtime_t rt;
static sg_config_t *cfg;
static sg_worker_t *w;
static sg_upserver_t *srv;

static void setup(void)
{
    sg_fake_tp_reset();
    static const char yaml[] = "listeners: [{name: a, address: \"127.0.0.1:0\"}]\n"
                               "upstreams:\n"
                               "  app: {servers: [\"127.0.0.1:9\"], connect_timeout: 100ms, response_timeout: 150ms,\n"
                               "        read_timeout: 150ms, keepalive_timeout: 200ms}\n"
                               "routes: [{name: all, match: {prefix: /}, upstream: app}]\n"
                               "log: {access: \"off\"}\n";
    char err[512];
    cr_assert_eq(sg_config_load_string("upconn_test", yaml, sizeof(yaml) - 1, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sg_runtime_init(&rt, cfg), 0);
    w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    sg_worker_conf_t wc = {.role = SG_WORKER_PROXY, .idx = 0, .rt = &rt, .cfg = cfg, .pub = &rt.workers[0]};
    cr_assert_eq(sg__worker_init(w, &wc), 0);
    w->upstream_tp = &sg_fake_tp_vt;
    cr_assert_eq(w->gen->n_ups, 1);
    srv = &w->gen->ups[0].servers[0];
    cr_assert(srv->is_resolved);
}

/* One loop turn, then what the fake transport owes. */
static void turn(void)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    sg_fake_tp_turn();
}

static void settle(void)
{
    for (int i = 0; i < 4; i++)
        turn();
}

static void teardown(void)
{
    /* The worker's own way out: a forced drain closes the pools and
     * the handles. */
    sg__worker_post(w, SG_WORKER_CMD_FORCE);
    for (int i = 0; i < 1000; i++) {
        int alive = uv_run(&w->loop, UV_RUN_NOWAIT);
        int owed = sg_fake_tp_turn();
        if (!alive && !owed)
            break;
    }
    sg__txn_reap(w);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "every handle closed");
    cr_assert_eq(w->fl_upconn.in_use, 0, "every upstream connection went back");
    cr_assert_eq(w->fl_buf.in_use, 0, "every read buffer went back");
    cr_assert_eq(w->fl_head.in_use, 0, "every head buffer went back");
    cr_assert_eq(w->fl_wreq.in_use, 0, "every write request went back");
    sg__worker_free(w);
    free(w);
    sg_runtime_destroy(&rt);
    sg_config_release(cfg);
}

TestSuite(upconn, .init = setup, .fini = teardown, .timeout = 30);

/* Leases a connection for o; a new one is connected by the next turn. */
static sg_fake_tp_t *lease(owner_t *o, bool fresh)
{
    int idle_before = (int)srv->n_idle, n_before = sg_fake_tp_count();
    cr_assert_eq(sg__upconn_get(srv, fresh, &k_owner_ops, (sg_txn_t *)(void *)o, &o->u), 0);
    cr_assert_not_null(o->u);
    sg_fake_tp_t *f = sg_fake_tp_of(&o->u->tp);
    cr_assert_eq(o->n_ready, 0, "ready is never told inside the lease");
    if (!fresh && idle_before > 0) {
        cr_assert_eq(sg_fake_tp_count(), n_before, "a pooled connection is not connected again");
        cr_assert_not(f->pending_connect);
        uv_run(&w->loop, UV_RUN_NOWAIT); /* the worker's prepare step runs the ready queue */
    } else {
        cr_assert(f->has_connect);
        cr_assert_eq(o->u->state, SG_UPC_CONNECTING);
        sg_fake_tp_turn(); /* the connect ends */
    }
    cr_assert_eq(o->n_ready, 1);
    cr_assert_eq(o->u->state, SG_UPC_ACTIVE);
    return f;
}

static void send_request(owner_t *o, const char *req)
{
    uv_buf_t iov = uv_buf_init((char *)(uintptr_t)req, (unsigned)strlen(req));
    cr_assert_geq(sg__upconn_write(o->u, &iov, 1, NULL, SG_BK_NONE), 0);
    sg__upconn_timer(o->u, SG_UPC_T_RESPONSE, 150);
    sg__upconn_update_read(o->u);
}

/* Feeds a response as reads would, split at cut. */
static void respond(sg_upconn_t *u, const char *p, size_t n, size_t cut)
{
    sg_tp_t *tp = &u->tp;
    size_t k = sg_fake_tp_feed(tp, p, SG_MIN(cut, n));
    cr_assert_eq(k, SG_MIN(cut, n));
    if (n > cut) {
        turn();
        if (!tp->is_reading) /* done early: nothing more to read */
            return;
        cr_assert_eq(sg_fake_tp_feed(tp, p + cut, n - cut), n - cut);
    }
}

Test(upconn, a_new_connection_connects_then_reads_a_content_length_response_at_every_split)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world";
    const size_t n = sizeof(resp) - 1;
    for (size_t cut = 1; cut <= n; cut++) {
        owner_t o = {.give_back = true};
        lease(&o, cut == 1); /* the first connects; then the pooled one serves every split */
        sg_fake_tp_t *f = sg_fake_tp_of(&o.u->tp);
        if (cut == 1) {
            const struct sockaddr_in *sa = (const struct sockaddr_in *)&f->peer;
            cr_assert_eq(ntohs(sa->sin_port), 9, "connected to the server's address");
        }
        sg_fake_tp_clear_out(f);
        send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert_eq(f->out_len, 27);
        sg_upconn_t *u = o.u;
        respond(u, resp, n, cut);
        cr_assert_eq(o.n_heads, 1, "cut %zu", cut);
        cr_assert_eq(o.status, 200);
        cr_assert_eq(o.n_done, 1, "cut %zu", cut);
        cr_assert_eq(o.body_len, 11);
        cr_assert_arr_eq(o.body, "hello world", 11);
        cr_assert_eq(srv->n_idle, 1, "cut %zu: back in the pool", cut);
        cr_assert_eq(u->state, SG_UPC_IDLE);
        cr_assert_null(u->tp.rbuf, "an idle pooled connection holds no read buffer");
        cr_assert_eq(o.n_errors + o.n_broken + o.n_timeouts, 0);
    }
    cr_assert_eq(sg_fake_tp_count(), 1, "one connection served every split");
}

Test(upconn, a_chunked_response_is_passed_on_or_decoded_at_every_split)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    static const char raw_body[] = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    const size_t n = sizeof(resp) - 1;
    for (int decode = 0; decode < 2; decode++) {
        for (size_t cut = 1; cut <= n; cut++) {
            owner_t o = {.give_back = true, .decode = decode != 0};
            lease(&o, false);
            send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            respond(o.u, resp, n, cut);
            cr_assert_eq(o.n_done, 1, "decode %d cut %zu", decode, cut);
            cr_assert(o.is_chunked);
            if (decode) {
                cr_assert_eq(o.body_len, 11, "cut %zu: %zu", cut, o.body_len);
                cr_assert_arr_eq(o.body, "hello world", 11);
            } else {
                cr_assert_eq(o.body_len, sizeof(raw_body) - 1, "cut %zu", cut);
                cr_assert_arr_eq(o.body, raw_body, sizeof(raw_body) - 1);
            }
            cr_assert_eq(srv->n_idle, 1, "decode %d cut %zu: back in the pool", decode, cut);
        }
    }
    cr_assert_eq(sg_fake_tp_count(), 1);
}

Test(upconn, interim_heads_are_skipped_and_a_bodiless_response_is_done_at_once)
{
    static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                               "HTTP/1.1 204 No Content\r\n\r\n";
    const size_t n = sizeof(resp) - 1;
    for (size_t cut = 1; cut <= n; cut++) {
        owner_t o = {.give_back = true};
        lease(&o, false);
        send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        respond(o.u, resp, n, cut);
        cr_assert_eq(o.n_interim, 2, "cut %zu", cut);
        cr_assert_eq(o.n_heads, 1);
        cr_assert_eq(o.status, 204);
        cr_assert_eq(o.n_done, 1);
        cr_assert_eq(srv->n_idle, 1);
    }
}

Test(upconn, a_response_to_head_has_no_body_whatever_its_length_says)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    owner_t o = {.give_back = true};
    lease(&o, true);
    o.u->flags |= SG_UPC_F_HEAD_REQ;
    send_request(&o, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(o.u, resp, sizeof(resp) - 1, sizeof(resp));
    cr_assert_eq(o.n_done, 1);
    cr_assert_eq(o.body_len, 0);
    cr_assert_eq(srv->n_idle, 1, "reusable: nothing of a body was expected");
}

Test(upconn, a_close_delimited_body_ends_at_the_end_of_stream_and_is_not_pooled)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
    owner_t o = {.give_back = true};
    lease(&o, true);
    sg_upconn_t *u = o.u;
    sg_fake_tp_t *f = sg_fake_tp_of(&u->tp);
    send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(u, resp, sizeof(resp) - 1, sizeof(resp));
    cr_assert_eq(o.n_done, 0, "no end before the end of stream");
    sg_fake_tp_end(&u->tp, UV_EOF);
    cr_assert_eq(o.n_done, 1);
    cr_assert_arr_eq(o.body, "all of it", 9);
    cr_assert_eq(srv->n_idle, 0, "a connection that ended is not pooled");
    cr_assert(f->has_closed);
}

Test(upconn, the_end_of_stream_before_during_and_inside_a_response_is_told_by_kind)
{
    /* Before any byte: the pooled connection was found closed (resendable). */
    owner_t a = {0};
    lease(&a, true);
    send_request(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    sg_fake_tp_end(&a.u->tp, UV_EOF);
    cr_assert_eq(a.n_errors, 1);
    cr_assert_eq(a.last_kind, SG_FAIL_RESET, "%s", a.why);
    sg__upconn_release(a.u, false);

    /* Inside the head: a broken response. */
    owner_t b = {0};
    lease(&b, true);
    send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(b.u, "HTTP/1.1 200 OK\r\nContent-Le", 27, 27);
    sg_fake_tp_end(&b.u->tp, UV_EOF);
    cr_assert_eq(b.n_errors, 1);
    cr_assert_eq(b.last_kind, SG_FAIL_BAD_RESPONSE, "%s", b.why);
    sg__upconn_release(b.u, false);

    /* Mid-body: the response cannot be completed. */
    owner_t c = {0};
    lease(&c, true);
    send_request(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel";
    respond(c.u, part, sizeof(part) - 1, sizeof(part));
    cr_assert_eq(c.n_heads, 1);
    sg_fake_tp_end(&c.u->tp, UV_ECONNRESET);
    cr_assert_eq(c.n_broken, 1);
    cr_assert_str_eq(c.why, "upstream closed mid-body");
    cr_assert_eq(c.n_done, 0);
    sg__upconn_release(c.u, false);
    settle();
    cr_assert_eq(srv->n_idle, 0);
}

Test(upconn, an_invalid_response_head_or_body_is_refused_and_never_pooled)
{
    static const char *const heads[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: y\r\n\r\n",
        "HTTP/1.1 200 OK\nX: y\n\n",
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(heads); i++) {
        owner_t o = {0};
        lease(&o, false);
        send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        respond(o.u, heads[i], strlen(heads[i]), strlen(heads[i]));
        cr_assert_eq(o.n_errors, 1, "head %zu", i);
        cr_assert_eq(o.last_kind, SG_FAIL_BAD_RESPONSE, "head %zu", i);
        cr_assert_not(sg__upconn_can_reuse(o.u));
        sg__upconn_release(o.u, sg__upconn_can_reuse(o.u));
        settle();
        cr_assert_eq(srv->n_idle, 0);
    }
    owner_t o = {.decode = true};
    lease(&o, false);
    send_request(&o, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    static const char bad[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX3\r\n";
    respond(o.u, bad, sizeof(bad) - 1, sizeof(bad));
    cr_assert_eq(o.n_broken, 1);
    cr_assert_str_eq(o.why, "invalid response body from upstream");
    sg__upconn_release(o.u, sg__upconn_can_reuse(o.u));
    settle();
    cr_assert_eq(srv->n_idle, 0);
}

Test(upconn, bytes_nobody_asked_for_close_the_connection)
{
    /* On an idle pooled connection: it closes and leaves the pool. */
    owner_t a = {.give_back = true};
    lease(&a, true);
    send_request(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    respond(a.u, ok, sizeof(ok) - 1, sizeof(ok));
    cr_assert_eq(srv->n_idle, 1);
    sg_upconn_t *idle = sg_container_of(srv->idle.next, sg_upconn_t, link);
    sg_fake_tp_t *f = sg_fake_tp_of(&idle->tp);
    cr_assert(idle->tp.is_reading, "an idle connection watches for its close");
    sg_fake_tp_feed(&idle->tp, "HTTP/1.1 200 OK\r\n", 17);
    cr_assert(f->has_closed);
    cr_assert_eq(srv->n_idle, 0);
    settle();

    /* After the response, in the same read: not reusable. */
    owner_t b = {.give_back = true};
    lease(&b, true);
    send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    static const char extra[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n";
    respond(b.u, extra, sizeof(extra) - 1, sizeof(extra));
    cr_assert_eq(b.n_done, 1);
    cr_assert_eq(srv->n_idle, 0, "a response followed by more bytes is not pooled");

    /* On a pooled connection leased but not yet told it is ready: the
     * bytes answer nothing this owner sent (no cross-talk). */
    owner_t c = {.give_back = true};
    lease(&c, true);
    send_request(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(c.u, ok, sizeof(ok) - 1, sizeof(ok));
    cr_assert_eq(srv->n_idle, 1);
    owner_t d = {0};
    cr_assert_eq(sg__upconn_get(srv, false, &k_owner_ops, (sg_txn_t *)(void *)&d, &d.u), 0);
    cr_assert(d.u->flags & SG_UPC_F_READY_PENDING);
    sg_fake_tp_feed(&d.u->tp, "HTTP/1.1 200 OK\r\n", 17);
    cr_assert_eq(d.n_errors, 1);
    cr_assert_eq(d.last_kind, SG_FAIL_RESET);
    cr_assert_str_eq(d.why, "upstream sent bytes before the request");
    sg__upconn_release(d.u, sg__upconn_can_reuse(d.u));
    uv_run(&w->loop, UV_RUN_NOWAIT);
    cr_assert_eq(d.n_ready, 0, "a connection given back before its turn is never told it is ready");
    settle();
    cr_assert_eq(srv->n_idle, 0);
}

Test(upconn, a_failed_connect_is_a_connect_failure)
{
    owner_t o = {0};
    cr_assert_eq(sg__upconn_get(srv, true, &k_owner_ops, (sg_txn_t *)(void *)&o, &o.u), 0);
    sg_fake_tp_t *f = sg_fake_tp_of(&o.u->tp);
    f->connect_result = UV_ECONNREFUSED;
    sg_fake_tp_turn();
    cr_assert_eq(o.n_ready, 0);
    cr_assert_eq(o.n_errors, 1);
    cr_assert_eq(o.last_kind, SG_FAIL_CONNECT);
    cr_assert_str_eq(o.why, uv_strerror(UV_ECONNREFUSED));
    sg__upconn_release(o.u, false);
    settle();
    cr_assert(f->is_freed);
}

static void run_until(const int *counter, int want)
{
    for (int i = 0; i < 400 && *counter < want; i++) {
        uv_run(&w->loop, UV_RUN_ONCE);
        sg_fake_tp_turn();
    }
}

Test(upconn, connect_response_and_read_timeouts_reach_the_owner)
{
    owner_t a = {0};
    cr_assert_eq(sg__upconn_get(srv, true, &k_owner_ops, (sg_txn_t *)(void *)&a, &a.u), 0);
    sg_fake_tp_of(&a.u->tp)->pending_connect = false; /* the connect never ends */
    run_until(&a.n_timeouts, 1);
    cr_assert_eq(a.n_timeouts, 1, "connect_timeout");
    sg__upconn_release(a.u, false);

    owner_t b = {0};
    lease(&b, true);
    send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    run_until(&b.n_timeouts, 1);
    cr_assert_eq(b.n_timeouts, 1, "response_timeout");
    sg__upconn_release(b.u, false);

    owner_t c = {0};
    lease(&c, true);
    send_request(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel";
    respond(c.u, part, sizeof(part) - 1, sizeof(part));
    cr_assert_eq(c.n_heads, 1);
    run_until(&c.n_timeouts, 1);
    cr_assert_eq(c.n_timeouts, 1, "read_timeout");
    sg__upconn_release(c.u, false);
    settle();
}

Test(upconn, an_idle_pooled_connection_is_closed_by_keepalive_timeout_or_by_the_server)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    owner_t a = {.give_back = true};
    lease(&a, true);
    send_request(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(a.u, ok, sizeof(ok) - 1, sizeof(ok));
    cr_assert_eq(srv->n_idle, 1);
    sg_fake_tp_t *fa = sg_fake_tp_nth(0);
    for (int i = 0; i < 400 && !fa->has_closed; i++)
        uv_run(&w->loop, UV_RUN_ONCE);
    cr_assert(fa->has_closed, "keepalive_timeout (200 ms)");
    cr_assert_eq(srv->n_idle, 0);
    settle();

    owner_t b = {.give_back = true};
    lease(&b, true);
    send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(b.u, ok, sizeof(ok) - 1, sizeof(ok));
    cr_assert_eq(srv->n_idle, 1);
    sg_upconn_t *idle = sg_container_of(srv->idle.next, sg_upconn_t, link);
    sg_fake_tp_end(&idle->tp, UV_EOF);
    cr_assert_eq(srv->n_idle, 0, "the server's close takes it out of the pool");
    settle();
}

Test(upconn, writes_drain_or_fail_through_the_owner)
{
    owner_t a = {0};
    sg_fake_tp_t *f = lease(&a, true);
    f->is_slow = true;
    send_request(&a, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
    cr_assert_gt(sg__tp_queued(&a.u->tp), 0, "back-pressure is seen");
    cr_assert_eq(a.n_drained, 0);
    sg_fake_tp_turn();
    cr_assert_eq(a.n_drained, 1, "the owner hears the write ended");
    cr_assert_eq(sg__tp_queued(&a.u->tp), 0);
    f->is_slow = false;
    f->write_result = UV_EPIPE;
    uv_buf_t iov = uv_buf_init((char *)"abc", 3);
    cr_assert_lt(sg__upconn_write(a.u, &iov, 1, NULL, SG_BK_NONE), 0, "a failed write says so at once");
    sg__upconn_release(a.u, false);
    settle();

    owner_t b = {0};
    sg_fake_tp_t *g = lease(&b, true);
    g->is_slow = true;
    send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(sg__upconn_shutdown(b.u), 0);
    cr_assert(g->has_shutdown);
    g->write_end = UV_ECONNRESET; /* the queued write fails later */
    sg_fake_tp_turn();
    cr_assert_eq(b.n_write_failed, 1);
    cr_assert_str_eq(b.why, "upstream write failed");
    cr_assert_not(sg__upconn_can_reuse(b.u));
    sg__upconn_release(b.u, false);
    settle();
}
