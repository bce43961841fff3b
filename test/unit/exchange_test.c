/* The whole stream (src/net/proxy.c with the client endpoint conn.c and
 * the upstream endpoint upstream.c) without sockets: a real worker on this
 * thread with its real generation (router, upstream pools, trace rules),
 * a listener in reverse-proxy mode, and both connections over the fake
 * transport (test/support/fake_tp.c). A request goes in by hand on the
 * client side, the test reads what the stream wrote upstream, answers as
 * the server would, split at every byte, and reads what the client got.
 * Retries, failures and timeouts are driven the same way. */
#include "net/net_int.h"
#include "sg/worker.h"
#include "support/fake_tp.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static sg_runtime_t rt;
static sg_config_t *cfg;
static sg_worker_t *w;
static sg_listener_t *lst;  /* reverse proxy */
static sg_listener_t *elst; /* egress */
static sg_upserver_t *srv;

static const char k_yaml[] =
    "listeners: [{name: front, address: \"127.0.0.1:0\"}, {name: out, address: \"127.0.0.1:0\", mode: egress}]\n"
    "upstreams:\n"
    "  app: {servers: [\"127.0.0.1:9\"], connect_timeout: 100ms, response_timeout: 150ms,\n"
    "        read_timeout: 150ms}\n"
    "  two: {servers: [\"127.0.0.1:10\", \"127.0.0.1:11\"]}\n"
    "routes: [{name: two, match: {prefix: /two/}, upstream: two}, {name: all, match: {prefix: /}, upstream: app}]\n"
    "egress: {allow: [\"127.0.0.1:9\"]}\n"
    "log: {access: \"off\"}\n";

static void setup(void)
{
    sg_fake_tp_reset();
    char err[512];
    cr_assert_eq(sg_config_load_string("exchange_test", k_yaml, sizeof(k_yaml) - 1, &cfg, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(sg_runtime_init(&rt, cfg), 0);
    w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    sg_worker_conf_t wc = {.role = SG_WORKER_PROXY, .idx = 0, .rt = &rt, .cfg = cfg, .pub = &rt.workers[0]};
    cr_assert_eq(sg__worker_init(w, &wc), 0);
    w->upstream_tp = &sg_fake_tp_vt;
    srv = &w->gen->ups[0].servers[0];
    /* The listener as the worker sets one up, without its socket. */
    lst = sg__listener_new(w, -1, "fake");
    cr_assert_not_null(lst);
    sg__listener_set_conf(lst, cfg, &cfg->listeners[0], 0, NULL);
    elst = sg__listener_new(w, -1, "fake-egress");
    cr_assert_not_null(elst);
    sg__listener_set_conf(elst, cfg, &cfg->listeners[1], 1, NULL);
}

static void turn(void)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    sg_fake_tp_turn();
}

static void settle(void)
{
    for (int i = 0; i < 6; i++)
        turn();
}

static void teardown(void)
{
    sg__worker_post(w, SG_WORKER_CMD_FORCE);
    for (int i = 0; i < 1000; i++) {
        int alive = uv_run(&w->loop, UV_RUN_NOWAIT);
        int owed = sg_fake_tp_turn();
        if (!alive && !owed)
            break;
    }
    sg__txn_reap(w);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "every handle closed");
    cr_assert_eq(w->n_conns, 0);
    cr_assert_eq(lst->refs, 1, "every connection gave its listener reference back");
    cr_assert_eq(elst->refs, 1);
    cr_assert_eq(w->fl_conn.in_use, 0, "connections");
    cr_assert_eq(w->fl_txn.in_use, 0, "transactions");
    cr_assert_eq(w->fl_upconn.in_use, 0, "upstream connections");
    cr_assert_eq(w->fl_buf.in_use, 0, "read buffers");
    cr_assert_eq(w->fl_head.in_use, 0, "head buffers");
    cr_assert_eq(w->fl_wreq.in_use, 0, "write requests");
    sg__listener_unref(lst);
    sg__listener_unref(elst);
    sg__worker_free(w);
    free(w);
    sg_runtime_destroy(&rt);
    sg_config_release(cfg);
}

TestSuite(exchange, .init = setup, .fini = teardown, .timeout = 60);

/* A client connection, as listener l would accept one. */
static sg_conn_t *client_of(sg_listener_t *l)
{
    sg_conn_t *c = sg_freelist_get(&w->fl_conn);
    cr_assert_not_null(c);
    memset(c, 0, sizeof(*c));
    c->peer.family = AF_INET;
    memcpy(c->peer.addr, (const uint8_t[]){127, 0, 0, 2}, 4);
    c->peer.port = 40000;
    sg__conn_start(c, l, &sg_fake_tp_vt, NULL);
    return c;
}

static sg_conn_t *client(void)
{
    return client_of(lst);
}

/* Feeds bytes to tp while it reads, turning the loop when it does not. */
static void feed(sg_tp_t *tp, const char *p, size_t n)
{
    sg_fake_tp_t *f = sg_fake_tp_of(tp);
    for (int spins = 0; n > 0 && !f->has_closed; spins++) {
        cr_assert_lt(spins, 64, "the endpoint never read the rest");
        size_t k = sg_fake_tp_feed(tp, p, n);
        if (k == 0) {
            turn();
            continue;
        }
        p += k;
        n -= k;
    }
}

/* The upstream connection the stream opened or leased most recently. */
static sg_upconn_t *upstream_of(sg_conn_t *c)
{
    cr_assert_not_null(c->txn, "a transaction is in progress");
    cr_assert_not_null(c->txn->up, "it has an upstream connection");
    return c->txn->up;
}

static const char *find(const sg_fake_tp_t *f, const char *s)
{
    return memmem(f->out, f->out_len, s, strlen(s));
}

/* The value of header `name` in the last message in f's bytes. */
static bool header(const sg_fake_tp_t *f, const char *from, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    const char *end = f->out + f->out_len;
    const char *p = memmem(from, (size_t)(end - from), pat, strlen(pat));
    if (!p)
        return false;
    p += strlen(pat);
    const char *e = memmem(p, (size_t)(end - p), "\r\n", 2);
    cr_assert_not_null(e);
    snprintf(out, cap, "%.*s", (int)(e - p), p);
    return true;
}

#define TRACE_ID "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"

Test(exchange, a_traced_request_goes_through_and_the_response_comes_back_at_every_split)
{
    static const char req[] = "GET /items?a=1 HTTP/1.1\r\nHost: api\r\nX-Trace-Id: " TRACE_ID "\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    const size_t n = sizeof(resp) - 1;
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    for (size_t cut = 1; cut <= n; cut++) {
        sg_fake_tp_clear_out(fc);
        feed(&c->tp, req, sizeof(req) - 1);
        turn(); /* connect or the pooled connection's ready turn */
        turn();
        sg_upconn_t *u = upstream_of(c);
        sg_fake_tp_t *fu = sg_fake_tp_of(&u->tp);
        cr_assert(fu->has_connect);
        cr_assert_not_null(find(fu, "GET /items?a=1 HTTP/1.1\r\n"), "cut %zu: %.*s", cut, (int)fu->out_len, fu->out);
        char v[128];
        cr_assert(header(fu, fu->out, "X-Trace-Id", v, sizeof(v)));
        cr_assert_str_eq(v, TRACE_ID, "the incoming id goes upstream");
        cr_assert(header(fu, fu->out, "traceparent", v, sizeof(v)));
        cr_assert_eq(strncmp(v, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36), 0, "traceparent carries it: %s", v);
        cr_assert(header(fu, fu->out, "X-Forwarded-For", v, sizeof(v)));
        cr_assert_str_eq(v, "127.0.0.2");
        sg_fake_tp_clear_out(fu);
        /* The server's answer, in two reads. */
        feed(&u->tp, resp, cut);
        turn();
        if (cut < n)
            feed(&u->tp, resp + cut, n - cut);
        settle();
        cr_assert_not_null(find(fc, "HTTP/1.1 200 OK\r\n"), "cut %zu: %.*s", cut, (int)fc->out_len, fc->out);
        cr_assert(header(fc, fc->out, "X-Trace-Id", v, sizeof(v)));
        cr_assert_str_eq(v, TRACE_ID, "the client gets the id back");
        cr_assert(header(fc, fc->out, "Content-Length", v, sizeof(v)));
        cr_assert_str_eq(v, "5");
        cr_assert_eq(memcmp(fc->out + fc->out_len - 5, "hello", 5), 0);
        cr_assert_eq(c->state, SG_CONN_IDLE, "cut %zu: the client connection is kept", cut);
        cr_assert_null(c->txn);
        cr_assert_eq(srv->n_idle, 1, "cut %zu: the upstream connection is pooled", cut);
        cr_assert_not(fc->has_closed);
    }
    cr_assert_eq(sg_fake_tp_count(), 2, "one client and one upstream connection served every split");
    cr_assert_eq(c->n_requests, n);
}

Test(exchange, without_an_incoming_id_one_new_uuid_goes_both_ways)
{
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    static const char req[] = "GET / HTTP/1.1\r\nHost: api\r\n\r\n";
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u = upstream_of(c);
    sg_fake_tp_t *fu = sg_fake_tp_of(&u->tp);
    char up_id[64], down_id[64];
    cr_assert(header(fu, fu->out, "X-Trace-Id", up_id, sizeof(up_id)));
    cr_assert_eq(strlen(up_id), 36);
    cr_assert_eq(up_id[14], '4', "a UUIDv4: %s", up_id);
    cr_assert(strchr("89ab", up_id[19]), "variant 10: %s", up_id);
    static const char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
    feed(&u->tp, resp, sizeof(resp) - 1);
    settle();
    cr_assert(header(fc, fc->out, "X-Trace-Id", down_id, sizeof(down_id)));
    cr_assert_str_eq(up_id, down_id, "the same id upstream and to the client");
}

Test(exchange, a_request_body_arrives_whole_at_every_split)
{
    static const char req[] = "POST /up HTTP/1.1\r\nHost: api\r\nContent-Length: 11\r\n\r\nhello world";
    static const char creq[] = "POST /up HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const char *const reqs[] = {req, creq};
    const char *const wants[] = {"\r\n\r\nhello world", "\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"};
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(reqs[k]);
        for (size_t cut = 1; cut < n; cut++) {
            sg_fake_tp_clear_out(fc);
            feed(&c->tp, reqs[k], cut);
            settle();
            feed(&c->tp, reqs[k] + cut, n - cut);
            settle();
            sg_upconn_t *u = upstream_of(c);
            sg_fake_tp_t *fu = sg_fake_tp_of(&u->tp);
            const char *at = find(fu, wants[k]);
            cr_assert_not_null(at, "body %d cut %zu: %.*s", k, cut, (int)fu->out_len, fu->out);
            cr_assert_eq(at + strlen(wants[k]), fu->out + fu->out_len, "nothing after the body");
            sg_fake_tp_clear_out(fu);
            feed(&u->tp, resp, sizeof(resp) - 1);
            settle();
            cr_assert_not_null(find(fc, "HTTP/1.1 200 OK\r\n"));
            cr_assert_eq(c->state, SG_CONN_IDLE, "body %d cut %zu", k, cut);
        }
    }
}

Test(exchange, a_pooled_connection_found_closed_is_retried_on_a_new_one)
{
    static const char req[] = "GET /a HTTP/1.1\r\nHost: api\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA";
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u = upstream_of(c);
    feed(&u->tp, resp, sizeof(resp) - 1);
    settle();
    cr_assert_eq(srv->n_idle, 1);
    /* The next request leases the pooled one; the server closes it
     * before answering: the stream resends on a new connection. */
    sg_fake_tp_clear_out(fc);
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u1 = upstream_of(c);
    cr_assert_eq(sg_fake_tp_count(), 2, "the pooled one first");
    sg_fake_tp_end(&u1->tp, UV_EOF);
    settle();
    cr_assert_eq(sg_fake_tp_count(), 3, "a new connection for the resend");
    sg_upconn_t *u2 = upstream_of(c);
    sg_fake_tp_t *f2 = sg_fake_tp_of(&u2->tp);
    cr_assert_not_null(find(f2, "GET /a HTTP/1.1\r\n"), "the request went again");
    feed(&u2->tp, resp, sizeof(resp) - 1);
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 200 OK\r\n"));
    cr_assert_null(find(fc, "HTTP/1.1 502"), "the client never sees the failed attempt");
}

Test(exchange, bytes_on_a_pooled_connection_before_the_request_was_written_send_it_on_a_new_one)
{
    static const char req[] = "POST /a HTTP/1.1\r\nHost: api\r\nContent-Length: 1\r\n\r\nx";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA";
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    feed(&upstream_of(c)->tp, resp, sizeof(resp) - 1);
    settle();
    cr_assert_eq(srv->n_idle, 1);
    sg_fake_tp_clear_out(fc);
    /* Leased for the next request; a late answer comes before the request
     * is written (the ready turn): the request goes on a new connection,
     * even a POST, since nothing of it was sent. */
    feed(&c->tp, req, sizeof(req) - 1);
    sg_upconn_t *u1 = upstream_of(c);
    cr_assert(u1->flags & SG_UPC_F_READY_PENDING);
    size_t written = sg_fake_tp_of(&u1->tp)->out_len;
    cr_assert_eq(sg_fake_tp_feed(&u1->tp, resp, sizeof(resp) - 1), sizeof(resp) - 1);
    cr_assert_eq(sg_fake_tp_of(&u1->tp)->out_len, written, "nothing more was written on it");
    settle();
    cr_assert_eq(sg_fake_tp_count(), 3, "a new connection");
    sg_upconn_t *u2 = upstream_of(c);
    cr_assert_not_null(find(sg_fake_tp_of(&u2->tp), "POST /a HTTP/1.1\r\n"));
    feed(&u2->tp, resp, sizeof(resp) - 1);
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 200 OK\r\n"), "%.*s", (int)fc->out_len, fc->out);
    cr_assert_null(find(fc, "502"));
}

Test(exchange, upstream_failures_become_the_proxy_s_own_answers_with_the_trace_id)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: api\r\nX-Trace-Id: " TRACE_ID "\r\n\r\n";
    char v[64];
    /* A refused connect: 502. */
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    feed(&c->tp, req, sizeof(req) - 1); /* the connect starts at once, its end comes on a turn */
    sg_fake_tp_of(&upstream_of(c)->tp)->connect_result = UV_ECONNREFUSED;
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 502 "), "%.*s", (int)fc->out_len, fc->out);
    cr_assert(header(fc, fc->out, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, TRACE_ID);
    settle();

    /* No response head within response_timeout: 504. */
    sg_conn_t *d = client();
    sg_fake_tp_t *fd = sg_fake_tp_of(&d->tp);
    feed(&d->tp, req, sizeof(req) - 1);
    settle();
    cr_assert_not_null(upstream_of(d));
    for (int i = 0; i < 400 && !find(fd, "HTTP/1.1 504 "); i++) {
        uv_run(&w->loop, UV_RUN_ONCE);
        sg_fake_tp_turn();
    }
    cr_assert_not_null(find(fd, "HTTP/1.1 504 "), "%.*s", (int)fd->out_len, fd->out);
    cr_assert(header(fd, fd->out, "X-Trace-Id", v, sizeof(v)));
    cr_assert_str_eq(v, TRACE_ID);

    /* A broken response head: 502, and that connection is not pooled. */
    sg_conn_t *e = client();
    sg_fake_tp_t *fe = sg_fake_tp_of(&e->tp);
    feed(&e->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u = upstream_of(e);
    static const char bad[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    feed(&u->tp, bad, sizeof(bad) - 1);
    settle();
    cr_assert_not_null(find(fe, "HTTP/1.1 502 "), "%.*s", (int)fe->out_len, fe->out);
    cr_assert_eq(srv->n_idle, 0);
}

Test(exchange, the_upstream_closing_mid_body_ends_the_client_connection_not_a_second_answer)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: api\r\n\r\n";
    static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u = upstream_of(c);
    feed(&u->tp, part, sizeof(part) - 1);
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 200 OK\r\n"));
    sg_fake_tp_end(&u->tp, UV_EOF);
    settle();
    cr_assert(fc->has_closed, "the client sees the connection end");
    cr_assert_null(find(fc, "HTTP/1.1 502"), "never a second response after the first head");
    cr_assert_eq(srv->n_idle, 0);
}

Test(exchange, the_client_leaving_mid_response_closes_the_upstream_connection)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: api\r\n\r\n";
    static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
    sg_conn_t *c = client();
    feed(&c->tp, req, sizeof(req) - 1);
    settle();
    sg_upconn_t *u = upstream_of(c);
    sg_fake_tp_t *fu = sg_fake_tp_of(&u->tp);
    feed(&u->tp, part, sizeof(part) - 1);
    settle();
    sg_fake_tp_end(&c->tp, UV_ECONNRESET);
    settle();
    cr_assert(fu->has_closed, "a half-read response cannot be pooled");
    cr_assert_eq(srv->n_idle, 0);
}

Test(exchange, pipelined_requests_are_answered_in_order_over_one_upstream_connection)
{
    static const char reqs[] = "GET /1 HTTP/1.1\r\nHost: api\r\n\r\n"
                               "GET /2 HTTP/1.1\r\nHost: api\r\n\r\n"
                               "GET /3 HTTP/1.1\r\nHost: api\r\n\r\n";
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    feed(&c->tp, reqs, sizeof(reqs) - 1);
    for (int i = 1; i <= 3; i++) {
        settle();
        sg_upconn_t *u = upstream_of(c);
        sg_fake_tp_t *fu = sg_fake_tp_of(&u->tp);
        char want[32], resp[96];
        snprintf(want, sizeof(want), "GET /%d HTTP/1.1\r\n", i);
        cr_assert_not_null(find(fu, want), "request %d went upstream", i);
        sg_fake_tp_clear_out(fu);
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/%d", i);
        feed(&u->tp, resp, (size_t)n);
    }
    settle();
    const char *a = find(fc, "\r\n\r\n/1"), *b = find(fc, "\r\n\r\n/2"), *d = find(fc, "\r\n\r\n/3");
    cr_assert(a && b && d && a < b && b < d, "in order: %.*s", (int)fc->out_len, fc->out);
    cr_assert_eq(sg_fake_tp_count(), 2, "one upstream connection, reused");
}

#ifndef NDEBUG
/* Each legal move of the transaction (the table in proxy.c, listed again
 * in unit_stream) is taken by a real exchange here, and no other. */
Test(exchange, every_legal_move_of_the_transaction_is_taken_by_a_real_exchange)
{
    memset(sg__txn_moves_taken, 0, sizeof(sg__txn_moves_taken));
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    /* head -> connecting -> sent -> resp_body -> done */
    sg_conn_t *c = client();
    sg_fake_tp_t *fc = sg_fake_tp_of(&c->tp);
    static const char get[] = "GET / HTTP/1.1\r\nHost: api\r\n\r\n";
    feed(&c->tp, get, sizeof(get) - 1);
    settle();
    feed(&upstream_of(c)->tp, ok, sizeof(ok) - 1);
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 200 OK"));
    /* sent -> connecting (the pooled connection found closed) */
    feed(&c->tp, get, sizeof(get) - 1);
    settle();
    sg_fake_tp_end(&upstream_of(c)->tp, UV_EOF);
    settle();
    feed(&upstream_of(c)->tp, ok, sizeof(ok) - 1);
    settle();
    /* head -> local: a request swarmgate refuses (no Host) */
    sg_fake_tp_clear_out(fc);
    static const char no_host[] = "GET / HTTP/1.1\r\n\r\n";
    feed(&c->tp, no_host, sizeof(no_host) - 1);
    settle();
    cr_assert_not_null(find(fc, "HTTP/1.1 400 "), "%.*s", (int)fc->out_len, fc->out);
    /* connecting -> connecting (refused: the other server), connecting -> local (refused: none left) */
    sg_conn_t *d = client();
    sg_fake_tp_t *fd = sg_fake_tp_of(&d->tp);
    static const char two[] = "GET /two/x HTTP/1.1\r\nHost: api\r\n\r\n";
    feed(&d->tp, two, sizeof(two) - 1);
    sg_fake_tp_of(&upstream_of(d)->tp)->connect_result = UV_ECONNREFUSED;
    sg_fake_tp_turn();
    sg_fake_tp_of(&upstream_of(d)->tp)->connect_result = UV_ECONNREFUSED;
    settle();
    cr_assert_not_null(find(fd, "HTTP/1.1 502 "), "%.*s", (int)fd->out_len, fd->out);
    settle();
    /* sent -> local: no response head within response_timeout (504) */
    sg_conn_t *e = client();
    sg_fake_tp_t *fe = sg_fake_tp_of(&e->tp);
    feed(&e->tp, get, sizeof(get) - 1);
    settle();
    for (int i = 0; i < 400 && !find(fe, "HTTP/1.1 504 "); i++) {
        uv_run(&w->loop, UV_RUN_ONCE);
        sg_fake_tp_turn();
    }
    cr_assert_not_null(find(fe, "HTTP/1.1 504 "));
    settle();
    /* sent -> tunnel: 101 to an upgrade */
    sg_conn_t *g = client();
    sg_fake_tp_t *fg = sg_fake_tp_of(&g->tp);
    static const char up[] = "GET /ws HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    feed(&g->tp, up, sizeof(up) - 1);
    settle();
    sg_upconn_t *gu = upstream_of(g);
    feed(&gu->tp, sw, sizeof(sw) - 1);
    settle();
    cr_assert_not_null(find(fg, "HTTP/1.1 101 "), "%.*s", (int)fg->out_len, fg->out);
    cr_assert_eq(g->state, SG_CONN_TUNNEL);
    feed(&gu->tp, "frame", 5);
    settle();
    cr_assert_eq(memcmp(fg->out + fg->out_len - 5, "frame", 5), 0, "tunnel bytes reach the client");
    sg__conn_close(g);
    settle();
    /* connecting -> tunnel: CONNECT on the egress listener */
    sg_conn_t *h = client_of(elst);
    sg_fake_tp_t *fh = sg_fake_tp_of(&h->tp);
    static const char conn_req[] = "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n";
    feed(&h->tp, conn_req, sizeof(conn_req) - 1);
    settle();
    cr_assert_not_null(find(fh, "HTTP/1.1 200 "), "%.*s", (int)fh->out_len, fh->out);
    cr_assert_eq(h->state, SG_CONN_TUNNEL);
    sg_upconn_t *hu = upstream_of(h);
    feed(&h->tp, "ping", 4);
    settle();
    cr_assert_eq(memcmp(sg_fake_tp_of(&hu->tp)->out, "ping", 4), 0, "tunnel bytes reach the destination");
    sg__conn_close(h);
    settle();

    for (int from = 0; from < SG_TXN__COUNT; from++)
        for (int to = 0; to < SG_TXN__COUNT; to++)
            cr_assert_eq((sg__txn_moves_taken[from] >> to) & 1u,
                         sg__txn_can_move((sg_txn_state_t)from, (sg_txn_state_t)to) ? 1u : 0u, "%s -> %s: %s",
                         sg__txn_state_name((sg_txn_state_t)from), sg__txn_state_name((sg_txn_state_t)to),
                         sg__txn_can_move((sg_txn_state_t)from, (sg_txn_state_t)to) ? "never taken"
                                                                                    : "taken, but not legal");
}
#endif
