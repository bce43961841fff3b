/* Reverse-proxy forwarding: route, trace context, upstream request head
 * (one buffer, hop-by-hop removed, X-Forwarded-*, Via, trace headers),
 * server choice with one retry when nothing was sent, response head
 * rewrite, body streaming with back-pressure, upgrade tunnels.
 *
 * Bodies are passed through byte for byte: a Content-Length or chunked
 * request body goes to the upstream exactly as the client framed it (after
 * llhttp validated the framing), and so does a response body, except that a
 * chunked response to an HTTP/1.0 client is de-chunked and delimited by
 * closing the connection. */
#include "net/net_int.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>

/* Legal moves of a transaction: bit `to` set in k_txn_moves[from]. A
 * response-head timeout or reset before any byte may start over
 * (CONNECTING again); an answer of swarmgate's own (LOCAL) can come before
 * the response head; after it, and in a tunnel, the end is a close. */
#define TXN_TO(s) (1u << (s))
static const unsigned k_txn_moves[SG_TXN__COUNT] = {
    [SG_TXN_HEAD] = TXN_TO(SG_TXN_CONNECTING) | TXN_TO(SG_TXN_LOCAL),
    [SG_TXN_CONNECTING] =
        TXN_TO(SG_TXN_CONNECTING) | TXN_TO(SG_TXN_SENT) | TXN_TO(SG_TXN_TUNNEL) | TXN_TO(SG_TXN_LOCAL),
    [SG_TXN_SENT] = TXN_TO(SG_TXN_CONNECTING) | TXN_TO(SG_TXN_RESP_BODY) | TXN_TO(SG_TXN_TUNNEL) | TXN_TO(SG_TXN_LOCAL),
    [SG_TXN_RESP_BODY] = TXN_TO(SG_TXN_DONE),
    [SG_TXN_TUNNEL] = 0,
    [SG_TXN_LOCAL] = 0,
    [SG_TXN_DONE] = 0,
};

bool sg__txn_can_move(sg_txn_state_t from, sg_txn_state_t to)
{
    return from < SG_TXN__COUNT && to < SG_TXN__COUNT && (k_txn_moves[from] & TXN_TO(to)) != 0;
}

#ifndef NDEBUG
_Thread_local unsigned sg__txn_moves_taken[SG_TXN__COUNT];
#endif

void sg__txn_set_state(sg_txn_t *t, sg_txn_state_t to)
{
    assert(sg__txn_can_move(t->state, to));
#ifndef NDEBUG
    sg__txn_moves_taken[t->state] |= TXN_TO(to);
#endif
    t->state = to;
}

const char *sg__txn_state_name(sg_txn_state_t s)
{
    static const char *const names[] = {"head", "connecting", "sent", "resp_body", "tunnel", "local", "done"};
    return s < SG_TXN__COUNT ? names[s] : "?";
}

/* ---- txn lifecycle --------------------------------------------------------- */

sg_txn_t *sg__txn_new(sg_conn_t *c)
{
    sg_worker_t *w = sg__tp_w(&c->tp);
    sg_txn_t *t = sg_freelist_get(&w->fl_txn);
    if (!t)
        return NULL;
    /* Zeroed up to the trace context's tracestate text (the txn is 2.6 KB,
     * most of it strings): that text, path, host and server are C strings
     * (first byte NUL, tracestate_len 0), and the egress part is the egress
     * handler's, all of it zero for an egress listener. */
    memset(t, 0, offsetof(sg_txn_t, trace) + offsetof(sg_trace_ctx_t, tracestate));
    t->trace.tracestate[0] = '\0';
    t->trace.tracestate_len = 0;
    t->error = NULL;
    t->path[0] = t->host[0] = t->server[0] = '\0';
    t->srv = NULL;
    if (c->lst->conf->mode == SG_LISTENER_EGRESS) {
        memset(&t->eg, 0, sizeof(t->eg));
    } else {
        t->eg.dns = NULL;
        t->eg.dest = NULL;
        t->eg.agent[0] = '\0';
    }
    t->conn = c;
    t->gen = sg__wgen_ref(w->gen);
    t->handler = c->lst->handler;
    t->route_idx = t->ups_idx = t->srv_idx = -1;
    t->rec.start_ns = sg_now_ns();
    t->rec.start_unix_ns = sg_unix_ns();
    t->rec.listener_idx = c->lst->idx;
    t->rec.route_idx = -1;
    t->rec.upstream_idx = -1;
    t->rec.server_idx = -1;
    t->rec.method = SG_METHOD_OTHER;
    t->rec.egress_dest_idx = -1;
    t->rec.egress_agent_idx = -1; /* unknown until the egress handler names it */
    sg__conn_peer_text(c, t->peer_ip, t->peer);
    return t;
}

static void report(sg_txn_t *t)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (t->flags & SG_TXN_F_INFLIGHT) {
        t->flags &= ~SG_TXN_F_INFLIGHT;
        sg_obs_inflight(w->obs, -1);
        atomic_store_explicit(&w->pub->in_flight, atomic_load_explicit(&w->pub->in_flight, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    }
    if (!t->is_reportable)
        return;
    sg_reqrec_t *r = &t->rec;
    r->end_ns = sg_now_ns();
    r->trace = &t->trace;
    r->sampled = (t->trace.flags & 1u) != 0;
    r->path = sg_str_cstr(t->path);
    r->host = sg_str_cstr(t->host);
    r->client_addr = sg_str_cstr(t->peer);
    sg_tls_conn_t *tc = sg__tp_tls_conn(&c->tp);
    if (tc) {
        r->tls_version = sg_tls_version_name(sg_tls_conn_version(tc));
        r->tls_sni = sg_tls_conn_server_name(tc);
    }
    r->server_addr = sg_str_cstr(t->server);
    r->error = t->error;
    r->route_idx = sg__wgen_route_metric(t->gen, t->route_idx);
    r->upstream_idx = sg__wgen_ups_metric(t->gen, t->ups_idx);
    r->route_name = t->route_idx >= 0 ? t->gen->cfg->routes[t->route_idx].name : NULL;
    r->server_idx = t->srv_idx;
    sg_obs_request_done(w->obs, r);
}

void sg__txn_free(sg_txn_t *t)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    report(t);
    if (t->up) {
        sg_upconn_t *u = t->up;
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, false);
    }
    if (t->uphead) {
        sg__head_put(w, t->uphead);
        t->uphead = NULL;
    }
    if (t->rd.head) {
        sg__head_put(w, t->rd.head);
        t->rd.head = NULL;
    }
    if (t->resp_head) {
        sg__head_put(w, t->resp_head);
        t->resp_head = NULL;
    }
    if (t->handler->on_free)
        t->handler->on_free(t);
    /* Everything it held went back above; the struct itself (and its
     * generation reference) waits for the end of the loop turn. */
    assert(!(t->flags & SG_TXN_F_FREED)); /* ended once */
    t->flags |= SG_TXN_F_FREED;
    t->_next_dead = w->txn_graveyard;
    w->txn_graveyard = t;
}

void sg__txn_reap(sg_worker_t *w)
{
    while (w->txn_graveyard) {
        sg_txn_t *t = w->txn_graveyard;
        w->txn_graveyard = t->_next_dead;
        sg_wgen_t *g = t->gen;
        sg_freelist_put(&w->fl_txn, t);
        sg__wgen_unref(g); /* last: its upstream connection went back in sg__txn_free */
    }
}

/* The exchange ended (its response is queued): t is freed and the client
 * connection goes on (keep-alive) or closes. */
static void txn_end(sg_txn_t *t)
{
    sg_conn_t *c = t->conn;
    bool must_close = (t->flags & SG_TXN_F_RESP_CLOSE) || !(t->flags & SG_TXN_F_CLIENT_KA);
    sg__txn_free(t);
    sg__conn_txn_done(c, must_close);
}

void sg__txn_abort(sg_txn_t *t)
{
    t->rec.status = (t->flags & SG_TXN_F_RESP_HEAD) ? t->resp_status : 0;
    if (t->state != SG_TXN_HEAD || (t->flags & SG_TXN_F_RESP_HEAD))
        t->is_reportable = true;
    if (!t->error && t->state != SG_TXN_TUNNEL && t->state != SG_TXN_DONE && t->state != SG_TXN_HEAD)
        t->error = "connection closed";
    sg__txn_free(t);
}

/* ---- proxy-made responses (stream) ---------------------------------------------------------- */

static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 2 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

void sg__conn_error(sg_conn_t *c, int status, const char *error, bool must_close)
{
    sg__conn_error_ex(c, status, error, NULL, NULL, must_close);
}

void sg__conn_error_ex(sg_conn_t *c, int status, const char *error, const char *reason, const char *extra_headers,
                       bool must_close)
{
    sg_txn_t *t = c->txn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (!t) {
        sg__conn_close(c);
        return;
    }
    if (t->flags & SG_TXN_F_RESP_HEAD) {
        /* Too late for a status: the client sees the connection close. */
        sg__conn_abort(c, error);
        return;
    }
    if (t->up) {
        sg_upconn_t *u = t->up;
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, false);
    }
    if (!t->has_trace)
        sg__head_trace_resolve(t); /* the client's id when its line was read */
    if (!(t->flags & SG_TXN_F_REQ_DONE) || !(t->flags & SG_TXN_F_CLIENT_KA) || w->drain_phase > 0)
        must_close = true;
    char *buf = sg__buf_get(w);
    if (!buf) {
        sg__conn_close(c);
        return;
    }
    char esc[200], resc[64] = "";
    json_escape(esc, sizeof(esc), error);
    if (reason)
        json_escape(resc, sizeof(resc), reason);
    char body[400];
    int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",%s%s%s\"status\":%d,\"trace_id\":\"%s\"}\n", esc,
                        reason ? "\"reason\":\"" : "", resc, reason ? "\"," : "", status, t->trace.trace_id);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = 0;
    int n = snprintf(buf, SG_BUF_SIZE,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %s\r\n"
                     "Cache-Control: no-store\r\n%s%s\r\n",
                     status, sg_h1_reason_phrase(status), blen, t->gen->cfg->trace.header, t->trace.trace_id,
                     extra_headers ? extra_headers : "", must_close ? "Connection: close\r\n" : "");
    if (n < 0)
        n = 0;
    if (!(t->flags & SG_TXN_F_HEAD_REQ) && (size_t)n + (size_t)blen < SG_BUF_SIZE) {
        memcpy(buf + n, body, (size_t)blen);
        n += blen;
    }
    sg__txn_set_state(t, SG_TXN_LOCAL);
    t->flags |= SG_TXN_F_RESP_HEAD;
    t->resp_status = (uint16_t)status;
    t->rec.status = (uint16_t)status;
    t->rec.is_proxy_error = true;
    t->rec.resp_bytes += (uint64_t)n;
    t->error = error;
    t->is_reportable = true;
    if (must_close)
        c->flags |= SG_CONN_F_CLOSE_AFTER;
    uv_buf_t iov = uv_buf_init(buf, (unsigned)n);
    if (sg__conn_write(c, &iov, 1, buf, SG_BK_BUF) < 0) {
        sg__conn_close(c);
        return;
    }
    txn_end(t);
}

/* Writes a local responder's answer and ends the txn. */
void sg__conn_local(sg_conn_t *c, sg_local_responder_cb cb, void *ud, const sg_local_req_t *req)
{
    sg_txn_t *t = c->txn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    char *buf = sg__buf_get(w);
    if (!buf) {
        sg__conn_close(c);
        return;
    }
    const size_t head_room = 2048;
    sg_local_resp_t resp = {
        .status = 200,
        .content_type = "application/json",
        .body = buf + head_room,
        .body_cap = SG_BUF_SIZE - head_room,
    };
    cb(ud, req, &resp);
    const char *body = resp.ext_body ? resp.ext_body : resp.body;
    size_t blen = resp.ext_body ? resp.ext_len : SG_MIN(resp.body_len, resp.body_cap);
    bool must_close = !(t->flags & SG_TXN_F_REQ_DONE) || !(t->flags & SG_TXN_F_CLIENT_KA) || w->drain_phase > 0;
    /* content_type "" (no content): no Content-Type line. */
    const char *ctype = resp.content_type ? resp.content_type : "application/json";
    int n = snprintf(buf, head_room, "HTTP/1.1 %u %s\r\n%s%s%sContent-Length: %zu\r\n%s: %s\r\n%s%s\r\n", resp.status,
                     sg_h1_reason_phrase(resp.status), ctype[0] ? "Content-Type: " : "", ctype, ctype[0] ? "\r\n" : "",
                     blen, t->gen->cfg->trace.header, t->trace.trace_id, resp.extra_headers ? resp.extra_headers : "",
                     must_close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= head_room) {
        if (resp.ext_body && resp.ext_free)
            resp.ext_free(resp.ext_ud, resp.ext_body);
        sg__buf_put(w, buf);
        sg__conn_error(c, 500, "local response head too large", true);
        return;
    }
    uv_buf_t iov[2] = {uv_buf_init(buf, (unsigned)n), uv_buf_init((char *)(uintptr_t)body, (unsigned)blen)};
    unsigned niov = (t->flags & SG_TXN_F_HEAD_REQ) || blen == 0 ? 1 : 2;
    sg__txn_set_state(t, SG_TXN_LOCAL);
    t->flags |= SG_TXN_F_RESP_HEAD;
    t->resp_status = resp.status;
    t->rec.status = resp.status;
    t->rec.resp_bytes += (uint64_t)n + (niov == 2 ? blen : 0);
    t->is_reportable = true;
    if (must_close)
        c->flags |= SG_CONN_F_CLOSE_AFTER;
    int r = resp.ext_body ? sg__conn_write_ext(c, iov, niov, buf, resp.ext_body, resp.ext_free, resp.ext_ud)
                          : sg__conn_write(c, iov, niov, buf, SG_BK_BUF);
    if (r < 0) {
        sg__conn_close(c);
        return;
    }
    txn_end(t);
}

/* ---- small output writer ------------------------------------------------------ */

typedef struct outbuf {
    char *p;
    size_t len, cap;
    bool is_full;
} outbuf_t;

static void out_put(outbuf_t *o, const char *s, size_t n)
{
    if (o->is_full || o->len + n > o->cap) {
        o->is_full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void out_str(outbuf_t *o, sg_str_t s)
{
    out_put(o, s.p, s.len);
}

static void out_cstr(outbuf_t *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static void out_header(outbuf_t *o, sg_str_t name, sg_str_t value)
{
    out_str(o, name);
    out_put(o, ": ", 2);
    out_str(o, value);
    out_put(o, "\r\n", 2);
}

static void out_uint(outbuf_t *o, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_put(o, tmp + sizeof(tmp) - n, n);
}

/* ---- header classification ------------------------------------------------------ */

/* The tokens of every Connection field, split once per head (then each
 * field name is compared with a few short strings, not re-parsed lists). */
#define SG_CONN_TOKENS 16
typedef struct conn_tokens {
    sg_str_t tok[SG_CONN_TOKENS];
    size_t n;
    const sg_h1_head_t *overflow; /* more tokens: fall back to sg_h1_list_has */
} conn_tokens_t;

static void conn_tokens_collect(const sg_h1_head_t *h, conn_tokens_t *ct)
{
    ct->n = 0;
    ct->overflow = NULL;
    if (!(h->field_mask & SG_H1_F_BIT(SG_H1_F_CONNECTION)))
        return;
    for (size_t k = 0; k < h->n_headers; k++) {
        if (h->headers[k].kind != SG_H1_F_CONNECTION)
            continue;
        sg_str_t v = h->headers[k].value;
        size_t i = 0;
        while (i < v.len) {
            while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
                i++;
            size_t st = i;
            while (i < v.len && v.p[i] != ',')
                i++;
            size_t e = i;
            while (e > st && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
                e--;
            if (e == st)
                continue;
            if (ct->n == SG_CONN_TOKENS) {
                ct->overflow = h;
                return;
            }
            ct->tok[ct->n++] = sg_str_make(v.p + st, e - st);
        }
    }
}

/* Never let Connection remove framing or identity fields (a known
 * smuggling/abuse trick); those are handled explicitly. */
#define PROTECTED_KINDS                                                                                                \
    (SG_H1_F_BIT(SG_H1_F_CONTENT_LENGTH) | SG_H1_F_BIT(SG_H1_F_TRANSFER_ENCODING) | SG_H1_F_BIT(SG_H1_F_HOST))

static bool is_named_by_connection(const conn_tokens_t *ct, const sg_h1_header_t *f)
{
    if (ct->n == 0 || (SG_H1_F_BIT(f->kind) & PROTECTED_KINDS))
        return false;
    sg_str_t name = f->name;
    if (ct->overflow) {
        const sg_h1_head_t *h = ct->overflow;
        for (size_t i = 0; i < h->n_headers; i++)
            if (h->headers[i].kind == SG_H1_F_CONNECTION && sg_h1_list_has(h->headers[i].value, name))
                return true;
        return false;
    }
    for (size_t i = 0; i < ct->n; i++)
        if (ct->tok[i].len == name.len && sg_str_ieq(ct->tok[i], name))
            return true;
    return false;
}

/* RFC 9110 7.6.1: Connection, Keep-Alive, TE, Trailer, Upgrade and the
 * Proxy-* fields of old proxies. */
#define HOP_KINDS                                                                                                      \
    (SG_H1_F_BIT(SG_H1_F_CONNECTION) | SG_H1_F_BIT(SG_H1_F_KEEP_ALIVE) | SG_H1_F_BIT(SG_H1_F_TE) |                     \
     SG_H1_F_BIT(SG_H1_F_TRAILER) | SG_H1_F_BIT(SG_H1_F_UPGRADE) | SG_H1_F_BIT(SG_H1_F_PROXY))

static bool is_hop_by_hop(const sg_h1_header_t *f)
{
    return (SG_H1_F_BIT(f->kind) & HOP_KINDS) != 0;
}

/* ---- trace ----------------------------------------------------------------------- */

static void resolve_trace(sg_txn_t *t, const sg_h1_head_t *h)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    sg_trace_in_t in;
    sg__proxy_trace_in(t->gen->cfg, h, &in);
    sg_trace_resolve(&in, sg_obs_sample_new(w->obs), &t->trace);
    t->has_trace = true;
    /* Admin requests (listener -1) are not proxy traffic: not counted. */
    if (t->conn->lst->idx >= 0)
        sg_obs_trace_resolved(w->obs, &t->trace);
}

/* ---- request head --------------------------------------------------------------- */

static void copy_cstr(char *dst, size_t cap, sg_str_t s)
{
    size_t n = SG_MIN(s.len, cap - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[n] = '\0';
}

/* ---- Max-Forwards --------------------------------------------------------------------- */

/* RFC 9110 7.6.2: OPTIONS and TRACE carry Max-Forwards = 1*DIGIT; at 0 the
 * proxy answers as the final recipient, above it forwards the value minus
 * one (capped at MAX_FORWARDS_CAP, "the recipient's maximum supported
 * value"). Other methods pass the field on untouched. */
#define MAX_FORWARDS_CAP 0x7fffffffu

static bool is_max_forwards_method(sg_method_t m)
{
    return m == SG_METHOD_OPTIONS || m == SG_METHOD_TRACE;
}

static bool max_forwards_parse(sg_str_t v, uint32_t *out)
{
    if (v.len == 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v.p[i] - '0');
        if (x > MAX_FORWARDS_CAP)
            x = (uint64_t)MAX_FORWARDS_CAP + 1; /* saturates: forwarded as the cap */
    }
    *out = x > MAX_FORWARDS_CAP ? MAX_FORWARDS_CAP + 1u : (uint32_t)x;
    return true;
}

/* ---- dot-segments ---------------------------------------------------------------------- */

/* Routes match the path as sent, but an origin resolves "." and ".."
 * (RFC 3986 5.2.4), percent-encoded too: "/public/../private" would be
 * routed as /public/ and served as /private. Such targets are refused
 * (400) instead of normalized: clients normalize before sending (RFC 3986
 * 6.2.2.3), so only crafted requests carry them. A segment ends at '/'
 * and, as some origins read them, at a backslash, %2F and %5C; a ';' ends
 * its name ("..;x" is ".." to servers with path parameters). */
static size_t dot_unit(const char *p, const char *end)
{
    if (p < end && *p == '.')
        return 1;
    if (end - p >= 3 && p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E'))
        return 3;
    return 0;
}

static size_t seg_sep(const char *p, const char *end)
{
    if (*p == '/' || *p == '\\')
        return 1;
    if (end - p >= 3 && p[0] == '%' &&
        ((p[1] == '2' && (p[2] == 'f' || p[2] == 'F')) || (p[1] == '5' && (p[2] == 'c' || p[2] == 'C'))))
        return 3;
    return 0;
}

static bool has_dot_segment(sg_str_t path)
{
    /* The common path has neither: one or two memchr and done. */
    if (!memchr(path.p, '.', path.len) && !memchr(path.p, '%', path.len))
        return false;
    const char *p = path.p, *end = p + path.len;
    while (p < end) {
        /* p is at the start of a segment */
        size_t n_dots = 0, k;
        while (n_dots < 3 && (k = dot_unit(p, end)) != 0) {
            p += k;
            n_dots++;
        }
        if (n_dots >= 1 && n_dots <= 2 && (p == end || *p == ';' || seg_sep(p, end)))
            return true;
        while (p < end && !(k = seg_sep(p, end)))
            p++;
        if (p < end)
            p += k;
    }
    return false;
}

/* ---- Host value ------------------------------------------------------------------------ */

/* RFC 9112 3.2: a Host field (or absolute-form authority) that is not
 * uri-host [":" port] gets 400. uri-host (RFC 3986 3.2.2) is an IP-literal
 * ("[" IPv6address "]") or a reg-name, which covers IPv4address; port is
 * *DIGIT. One table lookup a byte, no allocation: this runs on every
 * request. reg-name's sub-delims are taken except ',', so that a value can
 * never read as a list of hosts ("a.example, b.example") to a later hop;
 * IPvFuture and zone ids are not taken (no HTTP client sends them). */
#define HC_REG 1u   /* reg-name: unreserved, sub-delims but ',', and '%' of a pct-encoded byte */
#define HC_DIGIT 2u /* port */
#define HC_HEX 4u   /* after '%' */
#define HC_V6 8u    /* inside "[...]": IPv6address, with an IPv4 tail */
#define HC_RDXV (HC_REG | HC_DIGIT | HC_HEX | HC_V6)
#define HC_RXV (HC_REG | HC_HEX | HC_V6)
/* clang-format off */
static const uint8_t k_host_chars[256] = {
    ['!'] = HC_REG, ['$'] = HC_REG, ['%'] = HC_REG, ['&'] = HC_REG,  ['\''] = HC_REG, ['('] = HC_REG, [')'] = HC_REG,
    ['*'] = HC_REG, ['+'] = HC_REG, [';'] = HC_REG, ['='] = HC_REG,  ['-'] = HC_REG,   ['_'] = HC_REG, ['~'] = HC_REG,
    ['.'] = HC_REG | HC_V6, [':'] = HC_V6,
    ['0'] = HC_RDXV, ['1'] = HC_RDXV, ['2'] = HC_RDXV, ['3'] = HC_RDXV, ['4'] = HC_RDXV, ['5'] = HC_RDXV,
    ['6'] = HC_RDXV, ['7'] = HC_RDXV, ['8'] = HC_RDXV, ['9'] = HC_RDXV,
    ['A'] = HC_RXV, ['B'] = HC_RXV, ['C'] = HC_RXV, ['D'] = HC_RXV, ['E'] = HC_RXV, ['F'] = HC_RXV,
    ['a'] = HC_RXV, ['b'] = HC_RXV, ['c'] = HC_RXV, ['d'] = HC_RXV, ['e'] = HC_RXV, ['f'] = HC_RXV,
    ['G'] = HC_REG, ['H'] = HC_REG, ['I'] = HC_REG, ['J'] = HC_REG, ['K'] = HC_REG, ['L'] = HC_REG, ['M'] = HC_REG,
    ['N'] = HC_REG, ['O'] = HC_REG, ['P'] = HC_REG, ['Q'] = HC_REG, ['R'] = HC_REG, ['S'] = HC_REG, ['T'] = HC_REG,
    ['U'] = HC_REG, ['V'] = HC_REG, ['W'] = HC_REG, ['X'] = HC_REG, ['Y'] = HC_REG, ['Z'] = HC_REG,
    ['g'] = HC_REG, ['h'] = HC_REG, ['i'] = HC_REG, ['j'] = HC_REG, ['k'] = HC_REG, ['l'] = HC_REG, ['m'] = HC_REG,
    ['n'] = HC_REG, ['o'] = HC_REG, ['p'] = HC_REG, ['q'] = HC_REG, ['r'] = HC_REG, ['s'] = HC_REG, ['t'] = HC_REG,
    ['u'] = HC_REG, ['v'] = HC_REG, ['w'] = HC_REG, ['x'] = HC_REG, ['y'] = HC_REG, ['z'] = HC_REG,
};
/* clang-format on */

static bool host_value_ok(sg_str_t v)
{
    const unsigned char *p = (const unsigned char *)v.p, *end = p + v.len;
    if (v.len == 0)
        return true; /* RFC 9112 3.2: empty when the target URI has no authority */
    const unsigned char *st;
    if (*p == '[') {
        st = ++p;
        while (p < end && (k_host_chars[*p] & HC_V6))
            p++;
        if (p == end || *p != ']' || p - st < 2 || !memchr(st, ':', (size_t)(p - st)))
            return false;
        p++;
    } else {
        st = p;
        while (p < end && (k_host_chars[*p] & HC_REG)) {
            if (*p == '%') {
                if (end - p < 3 || !(k_host_chars[p[1]] & HC_HEX) || !(k_host_chars[p[2]] & HC_HEX))
                    return false;
                p += 2;
            }
            p++;
        }
        if (p == st)
            return false; /* ":80" names no host */
    }
    if (p == end)
        return true;
    if (*p++ != ':')
        return false;
    while (p < end && (k_host_chars[*p] & HC_DIGIT))
        p++;
    return p == end;
}

/* Pure part of the upstream head (net_int.h); split out of the txn code
 * unchanged so that the fuzzers can drive it. */
int sg__proxy_build_uphead(const sg_uphead_in_t *in, char *out, size_t cap, size_t *len)
{
    const sg_config_t *cfg = in->cfg;
    /* No route: an egress request, forwarded to the authority of its
     * absolute-form target (RFC 9112 3.2.2) with the path unchanged. */
    const sg_route_conf_t *route = in->route_idx >= 0 ? &cfg->routes[in->route_idx] : NULL;
    bool is_egress = route == NULL;
    const sg_h1_head_t *h = in->h;
    sg_str_t host = in->host, path = in->path, query = in->query;
    outbuf_t o = {out, 0, cap, false};

    out_str(&o, h->method_name);
    out_put(&o, " ", 1);
    if (route && !o.is_full) {
        /* The rewritten path goes straight into the head: any target that
         * fits the request-line limit is forwarded (RFC 9112 3: at least
         * 8000 octets), not only what a fixed scratch buffer held. */
        size_t room = o.cap - o.len;
        size_t plen = sg_router_rewrite_path(route, path, o.p + o.len, room);
        if (plen >= room)
            o.is_full = true;
        else
            o.len += plen;
    } else {
        out_str(&o, path);
    }
    if (query.p) {
        out_put(&o, "?", 1);
        out_str(&o, query);
    }
    out_cstr(&o, " HTTP/1.1\r\nHost: ");
    if (route && route->set_host) {
        out_cstr(&o, route->set_host);
    } else if (host.len || !route) {
        out_str(&o, host);
    } else {
        const sg_upstream_conf_t *uc = &cfg->upstreams[in->ups_idx];
        const sg_hostport_t *hp = &uc->servers[0];
        char hb[300];
        snprintf(hb, sizeof(hb), hp->is_ipv6_literal ? "[%s]:%u" : "%s:%u", hp->host, hp->port);
        out_cstr(&o, hb);
    }
    out_put(&o, "\r\n", 2);

    bool is_upgrade = in->is_upgrade;
    conn_tokens_t ct;
    conn_tokens_collect(h, &ct);
    bool has_xff = false, has_via = false;
    sg_str_t tid_name = sg_str_cstr(cfg->trace.header);
    for (size_t i = 0; i < h->n_headers; i++) {
        const sg_h1_header_t *f = &h->headers[i];
        sg_str_t n = f->name, v = f->value;
        switch (f->kind) {
        case SG_H1_F_HOST:
        case SG_H1_F_EXPECT:
            continue;
        case SG_H1_F_X_FORWARDED_PROTO:
        case SG_H1_F_X_FORWARDED_HOST:
            /* Egress: the client's X-Forwarded-* go on untouched, and none
             * of ours is added (agents' addresses are not for third
             * parties). */
            if (!is_egress)
                continue;
            break;
        case SG_H1_F_X_FORWARDED_FOR:
            if (!is_egress) {
                has_xff = true;
                continue;
            }
            break;
        case SG_H1_F_VIA:
            has_via = true;
            continue;
        case SG_H1_F_TRACEPARENT: /* the trace headers are swarmgate's own (below) */
        case SG_H1_F_TRACESTATE:
            continue;
        case SG_H1_F_TRANSFER_ENCODING:
        case SG_H1_F_CONTENT_LENGTH:
            /* Framing goes on as swarmgate framed the body (below), never
             * as a field it did not use (RFC 9112 6.1, 6.3). */
            continue;
        default:
            if (is_hop_by_hop(f))
                continue;
            break;
        }
        /* The trace id header is re-emitted below. Accepted aliases
         * (X-Request-Id...) are not: they often carry other systems' ids
         * and go upstream unchanged (docs/tracing.md). */
        if (sg_str_ieq(n, tid_name) || (ct.n && is_named_by_connection(&ct, f)))
            continue;
        if (is_egress && cfg->egress.agent_header && sg_str_ieq(n, sg_str_cstr(cfg->egress.agent_header)))
            continue; /* the agent's name is for this proxy (docs/egress.md, "Agents") */
        if (h->n_underscore_fields && cfg->limits.underscores_in_headers != SG_UNDERSCORES_ALLOW &&
            sg_h1_name_has_underscore(n))
            continue;
        uint32_t mf;
        if (f->kind == SG_H1_F_MAX_FORWARDS && is_max_forwards_method(h->method) && max_forwards_parse(v, &mf) &&
            mf > 0) {
            /* sg__proxy_head answered a 0 itself and refused bad values. */
            out_str(&o, n);
            out_put(&o, ": ", 2);
            out_uint(&o, mf - 1u);
            out_put(&o, "\r\n", 2);
            continue;
        }
        out_header(&o, n, v);
    }
    if (!is_egress) {
        /* X-Forwarded-For: earlier hops' values, then this client. */
        out_cstr(&o, "X-Forwarded-For: ");
        if (has_xff) {
            for (size_t i = 0; i < h->n_headers; i++) {
                if (h->headers[i].kind == SG_H1_F_X_FORWARDED_FOR && h->headers[i].value.len) {
                    out_str(&o, h->headers[i].value);
                    out_put(&o, ", ", 2);
                }
            }
        }
        out_cstr(&o, in->peer_ip);
        if (in->is_tls)
            out_cstr(&o, "\r\nX-Forwarded-Proto: https\r\n");
        else
            out_cstr(&o, "\r\nX-Forwarded-Proto: http\r\n");
        if (host.len)
            out_header(&o, SG_STR("X-Forwarded-Host"), host);
    }
    /* RFC 9110 7.6.3: Via lists the protocol received from the client. */
    out_cstr(&o, "Via: ");
    if (has_via) {
        for (size_t i = 0; i < h->n_headers; i++) {
            if (h->headers[i].kind == SG_H1_F_VIA && h->headers[i].value.len) {
                out_str(&o, h->headers[i].value);
                out_put(&o, ", ", 2);
            }
        }
    }
    out_cstr(&o, h->version_minor == 0 ? "1.0 swarmgate\r\n" : "1.1 swarmgate\r\n");
    if (is_upgrade) {
        const sg_h1_header_t *up = sg_h1_find_kind(h, SG_H1_F_UPGRADE, NULL);
        out_cstr(&o, "Connection: upgrade\r\n");
        if (up)
            out_header(&o, SG_STR("Upgrade"), up->value);
    }
    if (h->is_chunked) {
        out_cstr(&o, "Transfer-Encoding: chunked\r\n");
    } else if (h->has_content_length) {
        out_cstr(&o, "Content-Length: ");
        out_uint(&o, h->content_length);
        out_put(&o, "\r\n", 2);
    }
    const sg_trace_ctx_t *tr = in->trace;
    out_header(&o, tid_name, sg_str_cstr(tr->trace_id));
    if (cfg->trace.traceparent && tr->traceparent[0])
        out_header(&o, SG_STR("traceparent"), sg_str_cstr(tr->traceparent));
    if (cfg->trace.traceparent && tr->tracestate_len)
        out_header(&o, SG_STR("tracestate"), sg_str_make(tr->tracestate, tr->tracestate_len));
    out_put(&o, "\r\n", 2);
    if (o.is_full)
        return -431;
    *len = o.len;
    return 0;
}

/* Serializes the upstream request head into t->uphead. Returns 0, -431 or -500. */
static int build_upstream_head(sg_txn_t *t, const sg_h1_head_t *h, sg_str_t host, sg_str_t path, sg_str_t query)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    t->uphead = sg__head_get(w);
    if (!t->uphead)
        return -500;
    sg_uphead_in_t in = {.cfg = t->gen->cfg,
                         .route_idx = t->route_idx,
                         .ups_idx = t->ups_idx,
                         .h = h,
                         .host = host,
                         .path = path,
                         .query = query,
                         .peer_ip = t->peer_ip,
                         .trace = &t->trace,
                         .is_tls = sg__tp_tls_conn(&t->conn->tp) != NULL,
                         .is_upgrade = (t->flags & SG_TXN_F_UPGRADE) != 0};
    return sg__proxy_build_uphead(&in, t->uphead, w->head_size, &t->uphead_len);
}

static void proxy_connect(sg_txn_t *t);
static void tunnel_progress(sg_txn_t *t);
static void tunnel_idle_expired(sg_txn_t *t);

static void builtin_health(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp)
{
    sg_worker_t *w = ud;
    SG_UNUSED(req);
    bool draining = atomic_load_explicit(&w->rt->is_draining, memory_order_relaxed);
    resp->status = draining ? 503 : 200;
    int n = snprintf(resp->body, resp->body_cap, "{\"status\":\"%s\"}\n", draining ? "draining" : "ok");
    resp->body_len = n > 0 ? (size_t)n : 0;
}

/* The methods a listener passes on, as Allow in its own 405s and in its
 * answer to OPTIONS with Max-Forwards: 0 (RFC 9110 10.2.1). A reverse
 * listener refuses CONNECT; TRACE is passed on but never answered by
 * swarmgate itself (answer_here), so it is not listed. */
static const char k_reverse_allow[] = "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n";
static const char k_egress_allow[] = "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT\r\n";

static void options_answer(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp)
{
    SG_UNUSED(req);
    resp->status = 200;
    resp->content_type = ""; /* no content, no Content-Type */
    resp->extra_headers = ud;
    resp->body_len = 0;
}

/* RFC 9110 7.6.2: OPTIONS or TRACE with Max-Forwards: 0, answered as the
 * final recipient. OPTIONS gets 200 with Allow (RFC 9110 9.3.7). TRACE
 * would echo the request back (RFC 9110 9.3.8), cookies and credentials
 * included (cross-site tracing); swarmgate does not implement that echo,
 * so as the final recipient it answers 405 with Allow. */
static void answer_here(sg_conn_t *c, const sg_local_req_t *lreq, bool is_egress)
{
    const char *allow = is_egress ? k_egress_allow : k_reverse_allow;
    if (lreq->method == SG_METHOD_OPTIONS)
        sg__conn_local(c, options_answer, (void *)(uintptr_t)allow, lreq);
    else
        sg__conn_error_ex(c, 405, "TRACE is not answered by the proxy (Max-Forwards: 0)", NULL, allow, false);
}

void sg__proxy_head(sg_conn_t *c)
{
    sg_txn_t *t = c->txn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    const sg_config_t *cfg = t->gen->cfg;
    const sg_h1_head_t *h = &t->rd.parser.head;
    sg_listener_t *l = c->lst;

    t->is_reportable = true;
    t->rec.method = h->method;
    if (h->method == SG_METHOD_HEAD)
        t->flags |= SG_TXN_F_HEAD_REQ;
    if (h->is_keep_alive && h->version_minor >= 1)
        t->flags |= SG_TXN_F_CLIENT_KA;
    if (h->has_body)
        t->flags |= SG_TXN_F_REQ_BODY;
    else
        t->flags |= SG_TXN_F_REQ_DONE;
    t->flags |= SG_TXN_F_INFLIGHT;
    sg_obs_inflight(w->obs, 1);
    atomic_store_explicit(&w->pub->in_flight, atomic_load_explicit(&w->pub->in_flight, memory_order_relaxed) + 1,
                          memory_order_relaxed);

    /* Trace first: every answer, errors included, carries the id. */
    resolve_trace(t, h);
    bool is_egress = l->conf->mode == SG_LISTENER_EGRESS, is_connect = false;
    t->rec.is_egress = is_egress;

    /* Request target (RFC 9112 3.2). */
    size_t n_host = 0;
    const sg_h1_header_t *hh = sg_h1_find_kind(h, SG_H1_F_HOST, &n_host);
    sg_str_t host = hh ? hh->value : SG_STR_NULL;
    sg_str_t target = h->target, path, query = SG_STR_NULL;
    bool is_absolute = false;
    if (h->method == SG_METHOD_CONNECT) {
        if (!is_egress) {
            /* RFC 9110 15.5.6: a 405 lists the methods that are allowed. */
            sg__conn_error_ex(c, 405, "CONNECT is not allowed on a reverse listener", NULL, k_reverse_allow, true);
            return;
        }
        /* RFC 9112 3.2.3: CONNECT takes the authority form only; an
         * origin-form or absolute-form CONNECT was routed like a GET. */
        if (!target.len || target.p[0] == '/' || target.p[0] == '*' || memchr(target.p, '/', target.len)) {
            sg__conn_error(c, 400, "CONNECT needs an authority-form target", true);
            return;
        }
    }
    if (h->method == SG_METHOD_CONNECT) {
        /* Authority form; never a keep-alive request: after an error the
         * client may already send tunnel bytes. */
        host = path = target;
        is_connect = true;
        t->flags &= ~SG_TXN_F_CLIENT_KA;
    } else if (target.len >= 7 && (sg_str_ieq(sg_str_make(target.p, 7), SG_STR("http://")) ||
                                   (target.len >= 8 && sg_str_ieq(sg_str_make(target.p, 8), SG_STR("https://"))))) {
        /* Absolute form: the authority replaces Host (RFC 9112 3.2.2). */
        size_t skip = (target.p[4] == ':') ? 7 : 8;
        const char *a = target.p + skip, *end = target.p + target.len, *e = a;
        while (e < end && *e != '/' && *e != '?')
            e++;
        host = sg_str_make(a, (size_t)(e - a));
        if (host.len == 0 || memchr(host.p, '@', host.len)) {
            sg__conn_error(c, 400, "invalid absolute request target", true);
            return;
        }
        path = sg_str_make(e, (size_t)(end - e));
        is_absolute = true;
    } else if (target.len && target.p[0] == '/') {
        path = target;
    } else if (sg_str_eq(target, SG_STR("*")) && h->method == SG_METHOD_OPTIONS) {
        path = target;
    } else {
        sg__conn_error(c, 400, "invalid request target", true);
        return;
    }
    const char *q = path.len ? memchr(path.p, '?', path.len) : NULL;
    if (q) {
        query = sg_str_make(q + 1, (size_t)(path.p + path.len - q - 1));
        path.len = (size_t)(q - path.p);
    }
    if (path.len == 0)
        path = SG_STR("/");
    copy_cstr(t->path, sizeof(t->path), path);
    copy_cstr(t->host, sizeof(t->host), host);
    /* Egress has no route prefix to escape; its targets go on as sent. */
    if (!is_egress && has_dot_segment(path)) {
        sg__conn_error(c, 400, "dot-segment in the request path", true);
        return;
    }

    /* RFC 9112 3.2: exactly one Host in HTTP/1.1; 400 otherwise. */
    if (n_host > 1 || (n_host == 0 && h->version_minor >= 1 && !is_absolute && !is_connect)) {
        sg__conn_error(c, 400, n_host > 1 ? "multiple Host headers" : "missing Host header", true);
        return;
    }
    /* RFC 9112 3.2: ... or an invalid Host value (an egress CONNECT target
     * is checked by sg_egress_parse_target, which wants a port too). */
    if (hh && !host_value_ok(hh->value)) {
        sg__conn_error(c, 400, "invalid Host header", true);
        return;
    }
    /* An empty Host names no host (nginx refuses it too); a reverse
     * listener would otherwise route by the upstream's own address. */
    if (hh && hh->value.len == 0 && !is_absolute && !is_egress) {
        sg__conn_error(c, 400, "empty Host header", true);
        return;
    }
    /* Names with '_' are mapped onto the same CGI/WSGI variables as those
     * with '-' (X_Trace_Id = X-Trace-Id): dropped by default, like nginx's
     * underscores_in_headers off; counted; or refused (docs/security.md). */
    if (h->n_underscore_fields && cfg->limits.underscores_in_headers != SG_UNDERSCORES_ALLOW) {
        if (cfg->limits.underscores_in_headers == SG_UNDERSCORES_REJECT) {
            sg__conn_error(c, 400, "underscore in a header field name", true);
            return;
        }
        sg_obs_header_fields_dropped(w->obs, l->idx, h->n_underscore_fields);
    }
    if (is_absolute && !host_value_ok(host)) {
        sg__conn_error(c, 400, "invalid absolute request target", true);
        return;
    }
    if (h->has_te && h->version_minor == 0) {
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 cannot be trusted. */
        sg__conn_error(c, 400, "Transfer-Encoding in an HTTP/1.0 request", true);
        return;
    }
    size_t n_expect = 0;
    const sg_h1_header_t *ex = sg_h1_find_kind(h, SG_H1_F_EXPECT, &n_expect);
    if (ex) {
        if (n_expect > 1 || !sg_str_ieq(ex->value, SG_STR("100-continue"))) {
            sg__conn_error(c, 417, "unsupported expectation", true);
            return;
        }
        if (h->version_minor >= 1 && h->has_body)
            t->flags |= SG_TXN_F_EXPECT;
    }
    if (h->is_upgrade && h->method != SG_METHOD_CONNECT && h->version_minor >= 1 &&
        sg_h1_find_kind(h, SG_H1_F_UPGRADE, NULL))
        t->flags |= SG_TXN_F_UPGRADE;
    /* RFC 9110 7.6.2: check Max-Forwards (OPTIONS, TRACE); a value that is
     * not 1*DIGIT, or two of them, cannot be updated: 400. */
    bool is_mf_zero = false;
    if (is_max_forwards_method(h->method)) {
        size_t n_mf = 0;
        const sg_h1_header_t *mf = sg_h1_find_kind(h, SG_H1_F_MAX_FORWARDS, &n_mf);
        uint32_t mfv = 1;
        if (mf && (n_mf > 1 || !max_forwards_parse(mf->value, &mfv))) {
            sg__conn_error(c, 400, "invalid Max-Forwards", true);
            return;
        }
        is_mf_zero = mfv == 0;
    }

    /* Local answers. */
    sg_local_req_t lreq = {.method = h->method,
                           .path = path,
                           .query = query,
                           .head = h,
                           .listener_idx = l->idx,
                           .trace_id = t->trace.trace_id};
    if (l->responder) {
        sg__conn_local(c, l->responder, l->responder_ud, &lreq);
        return;
    }
    if (l->conf->serve_health && sg_health_kind_for_path(path) >= 0 && !(is_egress && is_absolute) &&
        (h->method == SG_METHOD_GET || h->method == SG_METHOD_HEAD)) {
        t->rec.is_egress = false;
        if (l->health_cb)
            sg__conn_local(c, l->health_cb, l->health_ud, &lreq);
        else
            sg__conn_local(c, builtin_health, w, &lreq);
        return;
    }
    /* /metrics on a proxy listener only when configured (DESIGN.md 6); the
     * same local responder answers it (sg_admin_local_respond). */
    if (l->conf->serve_metrics && l->health_cb && sg_str_eq(path, SG_STR("/metrics")) && !(is_egress && is_absolute) &&
        (h->method == SG_METHOD_GET || h->method == SG_METHOD_HEAD)) {
        t->rec.is_egress = false;
        sg__conn_local(c, l->health_cb, l->health_ud, &lreq);
        return;
    }
    if (sg_str_eq(path, SG_STR("*"))) {
        /* OPTIONS * asks about the server itself (RFC 9110 9.3.7): the
         * proxy answers 200 with Allow on either listener; no route. */
        answer_here(c, &lreq, is_egress);
        return;
    }
    const sg_req_target_t tg = {.target = target,
                                .host = host,
                                .path = path,
                                .query = query,
                                .is_absolute = is_absolute,
                                .is_connect = is_connect};
    if (t->handler->on_head(t, h, &tg) < 0)
        return;
    if (is_mf_zero) {
        answer_here(c, &lreq, is_egress);
        return;
    }
    if (cfg->limits.body_bytes && h->has_content_length && h->content_length > cfg->limits.body_bytes) {
        sg__conn_error(c, 413, "request body too large", true);
        return;
    }
    /* Body bytes that came with the head: refuse bad framing before
     * anything is sent upstream. */
    int e = sg__conn_check_body(c);
    if (e < 0) {
        sg__conn_error(c, -e, e == -413 ? "request body too large" : "malformed request body", true);
        return;
    }
    int r = is_connect ? 0 : build_upstream_head(t, h, host, path, query);
    if (t->rd.head) { /* the parsed head is no longer needed: slices die here */
        sg__head_put(w, t->rd.head);
        t->rd.head = NULL;
    }
    if (r < 0) {
        sg__conn_error(c, -r, "request head too large for upstream", true);
        return;
    }
    t->handler->connect(t);
}

/* ---- upstream choice and connection --------------------------------------------------- */

static void fail_status(sg_txn_t *t, sg_fail_t kind, const char *why)
{
    int status = kind == SG_FAIL_TIMEOUT ? 504 : 502;
    sg__conn_error(t->conn, status, why, !(t->flags & SG_TXN_F_REQ_DONE));
}

static void proxy_connect(sg_txn_t *t)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    sg_upstream_t *u = &t->gen->ups[t->ups_idx];
    bool all_down = false; /* 503 only when no server could even be tried */
    int32_t si = sg__upstream_pick(u, t->tried, SG_MIN(t->n_tries, (uint32_t)SG_TXN_MAX_TRIED), sg_now_ms(), &all_down);
    if (si < 0) {
        if (t->n_tries == 0)
            sg__conn_error(t->conn, 503, "no healthy upstream server", !(t->flags & SG_TXN_F_REQ_DONE));
        else
            fail_status(t, t->last_fail, t->error ? t->error : "upstream failed");
        return;
    }
    sg_upserver_t *srv = &u->servers[si];
    t->srv = srv;
    t->srv_idx = si;
    t->rec.server_idx = si;
    if (t->n_tries < SG_TXN_MAX_TRIED)
        t->tried[t->n_tries] = si; /* the exact index: servers 32 apart are not the same */
    t->n_tries++;
    size_t sl = strnlen(srv->name, sizeof(t->server) - 1);
    memcpy(t->server, srv->name, sl);
    t->server[sl] = '\0';
    sg__txn_set_state(t, SG_TXN_CONNECTING);
    if (!t->rec.upstream_start_ns)
        t->rec.upstream_start_ns = sg_now_ns();
    int r = sg__proxy_lease(t, srv);
    if (r == UV_EMFILE || r == UV_ENFILE || r == UV_ENOMEM || r == UV_ENOBUFS) {
        /* Our own resources ran out: not the server's fault (no passive
         * health mark, no retry elsewhere). */
        sg_obs_log(w->obs, SG_LOG_WARN, t->trace.trace_id, "upstream %s: cannot open a connection: %s", u->conf->name,
                   uv_strerror(r));
        t->error = "cannot open an upstream connection";
        sg__conn_error(t->conn, 502, t->error, !(t->flags & SG_TXN_F_REQ_DONE));
    } else if (r < 0) {
        sg__proxy_up_failed(t, SG_FAIL_CONNECT, uv_strerror(r));
    }
}

static void up_ready(sg_txn_t *t);
static void up_timeout(sg_txn_t *t);
static void up_drained(sg_txn_t *t);

static void up_write_failed(sg_txn_t *t, const char *why)
{
    if (t->flags & SG_TXN_F_RESP_HEAD)
        sg__conn_abort(t->conn, why);
    else
        sg__proxy_up_failed(t, SG_FAIL_RESET, why);
}

static sg_uphead_next_t up_head(sg_txn_t *t, const sg_h1_head_t *h);
static void up_body(sg_txn_t *t, char *buf, const char *p, size_t n);
static bool up_can_tunnel(const sg_txn_t *t);
static void up_tunnel(sg_txn_t *t, char *buf, const char *p, size_t n);
static void up_done(sg_txn_t *t);
static void up_broken(sg_txn_t *t, const char *why);
static void up_tunnel_eof(sg_txn_t *t, bool is_reset);
static void up_read_end(sg_txn_t *t);

static const sg_upconn_ops_t k_up_ops = {
    .on_ready = up_ready,
    .on_head = up_head,
    .on_body = up_body,
    .on_done = up_done,
    .can_tunnel = up_can_tunnel,
    .on_tunnel = up_tunnel,
    .on_tunnel_eof = up_tunnel_eof,
    .on_read_end = up_read_end,
    .on_broken = up_broken,
    .on_timeout = up_timeout,
    .on_drained = up_drained,
    .on_error = sg__proxy_up_failed,
    .on_write_failed = up_write_failed,
};

int sg__proxy_lease(sg_txn_t *t, sg_upserver_t *srv)
{
    sg_upconn_t *u = NULL;
    int r = sg__upconn_get(srv, (t->flags & (SG_TXN_F_CONNECT | SG_TXN_F_FRESH)) != 0, &k_up_ops, t, &u);
    if (r == 0)
        t->up = u;
    return r;
}

static const char k_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* A pooled connection can be closed by its server at the moment a request
 * goes out on it (the server's keep-alive timeout racing the reuse): the
 * request then fails with a reset before any response byte, through no
 * fault of the server. Such a request is sent once more, on a new
 * connection to the same server (for egress: the same checked address),
 * when sending it twice is harmless: an idempotent method (RFC 9110 9.2.2)
 * without a body (RFC 9112 9.3.1); nginx and Go's http.Transport do the
 * same. External servers close idle connections on their own schedule, so
 * the egress pools meet this race more often than reverse ones. Only requests
 * that went out on a reused connection qualify: a request that fails on a
 * connection opened for it says something about the server. When the new
 * connection fails too before any response byte (a server going away
 * still completes handshakes for a moment), the request goes to another
 * server of the upstream, like a connect failure: at most three sends,
 * the last two on fresh connections. The head is kept (t->uphead) from
 * the first send until the upstream answers. */
static bool is_replayable(const sg_txn_t *t, const sg_upconn_t *u)
{
    if (!((u->flags & SG_UPC_F_REUSED) || (t->flags & SG_TXN_F_FRESH)) || (t->flags & SG_TXN_F_REQ_BODY))
        return false;
    switch (t->rec.method) {
    case SG_METHOD_GET:
    case SG_METHOD_HEAD:
    case SG_METHOD_OPTIONS:
    case SG_METHOD_TRACE:
    case SG_METHOD_PUT:
    case SG_METHOD_DELETE:
        return true;
    default:
        return false;
    }
}

/* The upstream answered: the request will not be sent again. The kept head
 * goes back unless the write still holds it (then sg__txn_free returns it,
 * after the connection's release closed or finished that write). */
static void replay_done(sg_txn_t *t, sg_upconn_t *u)
{
    t->flags &= ~SG_TXN_F_REPLAY;
    if (t->uphead && sg__tp_queued(&u->tp) == 0) {
        sg__head_put(sg__tp_w(&t->conn->tp), t->uphead);
        t->uphead = NULL;
    }
}

static void up_ready(sg_txn_t *t)
{
    sg_upconn_t *u = t->up;
    sg_conn_t *c = t->conn;
    if (t->flags & SG_TXN_F_CONNECT) {
        t->handler->on_connected(t);
        return;
    }
    int e = sg__conn_check_body(c);
    if (e < 0) {
        /* Nothing was written: the connection stays good for the pool. */
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, true);
        sg__conn_error(c, -e, e == -413 ? "request body too large" : "malformed request body", true);
        return;
    }
    sg__txn_set_state(t, SG_TXN_SENT);
    if (t->flags & SG_TXN_F_HEAD_REQ)
        u->flags |= SG_UPC_F_HEAD_REQ; /* its response has no body (RFC 9110 9.3.2) */
    uv_buf_t iov = uv_buf_init(t->uphead, (unsigned)t->uphead_len);
    t->flags |= SG_TXN_F_SENT_ANY;
    t->rec.upstream_start_ns = sg_now_ns();
    int wr;
    if (is_replayable(t, u)) {
        /* The head stays ours (the write does not own it) until the
         * upstream answers: see sg__proxy_up_failed. */
        t->flags |= SG_TXN_F_REPLAY;
        wr = sg__upconn_write(u, &iov, 1, NULL, SG_BK_NONE);
    } else {
        char *hold = t->uphead;
        t->uphead = NULL;
        wr = sg__upconn_write(u, &iov, 1, hold, SG_BK_HEAD);
    }
    if (wr < 0) {
        sg__proxy_up_failed(t, SG_FAIL_RESET, "upstream write failed");
        return;
    }
    sg__upconn_timer(u, SG_UPC_T_RESPONSE, t->srv->ups->conf->response_timeout_ms);
    sg__upconn_update_read(u);
    if ((t->flags & SG_TXN_F_EXPECT) && !(t->flags & SG_TXN_F_REQ_DONE)) {
        /* RFC 9110 10.1.1: we answer the expectation ourselves once the
         * upstream is reachable; Expect is not forwarded. */
        uv_buf_t ci = uv_buf_init((char *)(uintptr_t)k_continue, sizeof(k_continue) - 1);
        t->flags |= SG_TXN_F_CONTINUE;
        if (sg__conn_write(c, &ci, 1, NULL, SG_BK_NONE) < 0) {
            sg__conn_abort(c, "client write failed");
            return;
        }
    }
    sg__conn_resume(c);
}

/* What to do after an upstream failure of `kind`: every retry rule in one
 * place (nginx's ngx_http_upstream_next). Pure: reads t only.
 *  - a response already started: nothing can be retried, the client
 *    connection closes;
 *  - a request sent on a reused pooled connection that may be sent twice
 *    (is_replayable) and failed with a reset before any response byte: the
 *    keep-alive race, sent again on a new connection to the same server;
 *  - one retry on another server when nothing was sent, or when such a
 *    request failed on its new connection too before any response byte
 *    (connect refused, or closed: its head is still kept);
 *  - otherwise the client gets 502 (504 for a timeout). */
sg_next_t sg__next_upstream(const sg_txn_t *t, sg_fail_t kind)
{
    if (t->flags & SG_TXN_F_RESP_HEAD)
        return SG_NEXT_ABORT;
    if (kind == SG_FAIL_RESET && (t->flags & SG_TXN_F_REPLAY) && !(t->flags & SG_TXN_F_FRESH) && t->uphead && t->up)
        return SG_NEXT_RESEND;
    /* A pooled connection found unusable before anything was sent on it
     * (closed, or holding bytes nobody asked for): a new one. */
    if (kind == SG_FAIL_RESET && !(t->flags & (SG_TXN_F_SENT_ANY | SG_TXN_F_FRESH)) && t->uphead && t->up &&
        (t->up->flags & SG_UPC_F_REUSED))
        return SG_NEXT_RESEND;
    bool unsent =
        !(t->flags & SG_TXN_F_SENT_ANY) || ((t->flags & SG_TXN_F_FRESH) && t->uphead &&
                                            (kind == SG_FAIL_CONNECT || kind == SG_FAIL_TLS || kind == SG_FAIL_RESET));
    if (unsent && t->n_tries < 2 && t->ups_idx >= 0)
        return SG_NEXT_OTHER_SERVER;
    return SG_NEXT_FAIL;
}

void sg__proxy_up_failed(sg_txn_t *t, sg_fail_t kind, const char *why)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    bool is_ours = false;
    sg_next_t next = sg__next_upstream(t, kind);
    if (next == SG_NEXT_RESEND) {
        /* A reused connection failed before any response byte: send the
         * request again on a new connection (is_replayable). Not a server
         * failure; closing the old connection cancels its write. */
        sg_upconn_t *u = t->up;
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, false);
        t->flags = (t->flags & ~SG_TXN_F_REPLAY) | SG_TXN_F_FRESH;
        sg_obs_log(w->obs, SG_LOG_INFO, t->trace.trace_id,
                   "upstream %s server %s: %s on a reused connection; sending the request again on a new one",
                   t->srv->ups->conf->name, t->server, why);
        sg__txn_set_state(t, SG_TXN_CONNECTING);
        int r = sg__proxy_lease(t, t->srv);
        if (r >= 0)
            return;
        why = uv_strerror(r); /* our own resources (the socket is opened later): not the server's fault */
        is_ours = true;
        next = sg__next_upstream(t, kind);
    }
    /* Passive health counts what says the server is broken: connect
     * errors and timeouts, a close or reset before the response head on a
     * connection opened for this request (on a reused one it is the
     * keep-alive race), a broken head. A response timeout says the request
     * is slow (a client can pick such requests on purpose) and counts only
     * with count_timeouts (docs/routing.md). */
    bool counts = !is_ours && !(t->flags & SG_TXN_F_RESP_HEAD);
    if (kind == SG_FAIL_TIMEOUT)
        counts =
            counts && ((t->up && t->up->state == SG_UPC_CONNECTING) || (t->srv && t->srv->ups->conf->count_timeouts));
    else if (kind == SG_FAIL_RESET)
        counts = counts && !(t->up && (t->up->flags & SG_UPC_F_REUSED));
    if (t->up) {
        sg_upconn_t *u = t->up;
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, false);
    }
    if (t->srv_idx >= 0 && counts)
        sg__server_fail(t->srv, sg_now_ms());
    if (kind == SG_FAIL_CONNECT)
        sg_obs_upstream_connect_error(w->obs, sg__wgen_ups_metric(t->gen, t->ups_idx));
    else if (kind == SG_FAIL_TIMEOUT)
        sg_obs_upstream_timeout(w->obs, sg__wgen_ups_metric(t->gen, t->ups_idx));
    sg_obs_log(w->obs, SG_LOG_WARN, t->trace.trace_id, "upstream %s server %s: %s",
               t->srv ? t->srv->ups->conf->name : "?", t->server, why);
    t->last_fail = kind;
    t->error = why;
    switch (next) {
    case SG_NEXT_ABORT:
        sg__conn_abort(c, why);
        break;
    case SG_NEXT_OTHER_SERVER:
        t->handler->connect(t);
        break;
    default:
        fail_status(t, kind, why);
        break;
    }
}

static void up_timeout(sg_txn_t *t)
{
    sg_upconn_t *u = t->up;
    switch (u->phase) {
    case SG_UPC_P_HEAD:
        sg__proxy_up_failed(t, SG_FAIL_TIMEOUT,
                            u->state == SG_UPC_CONNECTING ? "upstream connect timeout" : "upstream response timeout");
        break;
    case SG_UPC_P_TUNNEL:
        tunnel_idle_expired(t);
        break;
    default:
        sg_obs_upstream_timeout(sg__tp_w(&t->conn->tp)->obs, sg__wgen_ups_metric(t->gen, t->ups_idx));
        sg__conn_abort(t->conn, "upstream read timeout");
        break;
    }
}

/* ---- request body ---------------------------------------------------------------------- */

bool sg__proxy_can_take_body(const sg_txn_t *t)
{
    if (!t->up || t->up->state != SG_UPC_ACTIVE)
        return false;
    if (t->state != SG_TXN_SENT && t->state != SG_TXN_RESP_BODY && t->state != SG_TXN_TUNNEL)
        return false;
    return sg__tp_queued(&t->up->tp) <= t->gen->cfg->limits.buffer_bytes;
}

void sg__proxy_body(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    uv_buf_t iov = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    if (sg__upconn_write(t->up, &iov, 1, buf, SG_BK_BUF) < 0) {
        if (t->flags & SG_TXN_F_RESP_HEAD)
            sg__conn_abort(t->conn, "upstream write failed");
        else
            sg__proxy_up_failed(t, SG_FAIL_RESET, "upstream write failed");
        return;
    }
    /* The response timeout counts from the last request byte: a long upload
     * that keeps moving is not a slow upstream. An upstream that stops
     * reading stops this too (back-pressure pauses the client), and then the
     * timer runs out. */
    if (t->state == SG_TXN_SENT)
        sg__upconn_timer(t->up, SG_UPC_T_RESPONSE, t->srv->ups->conf->response_timeout_ms);
}

void sg__proxy_req_done(sg_txn_t *t)
{
    t->flags |= SG_TXN_F_REQ_DONE;
}

static void up_drained(sg_txn_t *t)
{
    sg_upconn_t *u = t->up;
    sg_conn_t *c = t->conn;
    if (u && t->state == SG_TXN_SENT)
        sg__upconn_timer(u, SG_UPC_T_RESPONSE, t->srv->ups->conf->response_timeout_ms);
    sg__conn_resume(c);
    if (c->state != SG_CONN_CLOSED && c->txn == t && t->state == SG_TXN_TUNNEL && (t->flags & SG_TXN_F_TUN_CLI_EOF))
        tunnel_progress(t);
}

/* Tunnel end. RFC 9110 9.3.6 has an intermediary close both sides once
 * either closed and its data was delivered; a FIN is passed on instead
 * (half-close, as TCP itself allows), so a peer that shuts down its
 * sending side still gets the answer: once one side sent FIN and all it
 * sent was written to the other side, the other side gets FIN; when both
 * directions are done, both connections close. A reset or a write error
 * closes both at once. */
static void tunnel_progress(sg_txn_t *t)
{
    sg_conn_t *c = t->conn;
    sg_upconn_t *u = t->up;
    if (!u) {
        sg__conn_abort(c, NULL);
        return;
    }
    bool cli_pending = sg__tp_pending(&c->tp);
    if ((t->flags & SG_TXN_F_TUN_CLI_EOF) && !(t->flags & SG_TXN_F_TUN_UP_SHUT) && !cli_pending &&
        u->tp.n_writes == 0) {
        t->flags |= SG_TXN_F_TUN_UP_SHUT;
        if (sg__upconn_shutdown(u) < 0) {
            sg__conn_abort(c, NULL);
            return;
        }
    }
    bool up_pending = sg__tp_pending(&u->tp);
    if ((t->flags & SG_TXN_F_TUN_UP_EOF) && !(t->flags & SG_TXN_F_TUN_CLI_SHUT) && !up_pending && c->tp.n_writes == 0) {
        t->flags |= SG_TXN_F_TUN_CLI_SHUT;
        if (sg__conn_shutdown(c) < 0) {
            sg__conn_abort(c, NULL);
            return;
        }
    }
    /* Both sides sent FIN and every byte was handed to the kernel: closing
     * now loses nothing (no unread input, so no RST). */
    if ((t->flags & (SG_TXN_F_TUN_UP_SHUT | SG_TXN_F_TUN_CLI_SHUT)) == (SG_TXN_F_TUN_UP_SHUT | SG_TXN_F_TUN_CLI_SHUT))
        sg__conn_abort(c, NULL);
}

/* Tunnel idle timeout (limits.tunnel_idle_timeout, egress.tunnel_idle_timeout
 * on egress listeners; HAProxy's "timeout tunnel"): without it two silent
 * peers (a client gone behind a NAT, a hung agent) hold both sockets for
 * ever. It runs on the upstream connection's timeout slot, which a tunnel
 * does not otherwise use (the client's keeps send_timeout), in the worker's
 * timeout queue of its duration: a restart per read is an O(1) move to the
 * queue's tail. Read from the txn's generation, so a reload applies to
 * tunnels opened after it. */
static uint64_t tunnel_idle_ms(const sg_txn_t *t)
{
    const sg_config_t *cfg = t->gen->cfg;
    return (t->flags & SG_TXN_F_EGRESS) ? cfg->egress.tunnel_idle_timeout_ms : cfg->limits.tunnel_idle_timeout_ms;
}

void sg__proxy_tunnel_touch(sg_txn_t *t)
{
    if (t->up && t->state == SG_TXN_TUNNEL && t->up->phase == SG_UPC_P_TUNNEL)
        sg__upconn_timer(t->up, SG_UPC_T_TUNNEL_IDLE, tunnel_idle_ms(t));
}

/* No byte either way for the idle timeout: both sides close at once, like a
 * reset. The record keeps the tunnel's status (101, or 200 for CONNECT);
 * its error says why it ended. */
static void tunnel_idle_expired(sg_txn_t *t)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    unsigned long long ms = (unsigned long long)tunnel_idle_ms(t);
    if (t->flags & SG_TXN_F_EGRESS)
        sg_obs_log(w->obs, SG_LOG_INFO, t->trace.trace_id, "egress %s: tunnel idle for %llu ms, closed", t->server, ms);
    else
        sg_obs_log(w->obs, SG_LOG_INFO, t->trace.trace_id, "upstream %s server %s: tunnel idle for %llu ms, closed",
                   t->srv ? t->srv->ups->conf->name : "?", t->server, ms);
    sg__conn_abort(c, "tunnel idle timeout");
}

void sg__proxy_tunnel_up(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    sg__proxy_tunnel_touch(t);
    uv_buf_t iov = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    if (sg__upconn_write(t->up, &iov, 1, buf, SG_BK_BUF) < 0)
        sg__conn_abort(t->conn, NULL);
}

void sg__proxy_tunnel_eof(sg_txn_t *t)
{
    t->flags |= SG_TXN_F_TUN_CLI_EOF;
    tunnel_progress(t);
}

/* ---- response ---------------------------------------------------------------------------- */

static bool client_paused(sg_txn_t *t)
{
    return sg__tp_queued(&t->conn->tp) > t->gen->cfg->limits.buffer_bytes;
}

void sg__proxy_client_drained(sg_txn_t *t)
{
    sg_upconn_t *u = t->up;
    if (u && (u->flags & SG_UPC_F_PAUSED) && !client_paused(t)) {
        u->flags &= ~SG_UPC_F_PAUSED;
        sg__upconn_update_read(u);
    }
    if (t->state == SG_TXN_TUNNEL && (t->flags & SG_TXN_F_TUN_UP_EOF))
        tunnel_progress(t);
}

/* Writes a response head still held back (no body bytes came with it).
 * Returns false when the connection was aborted. */
static bool flush_resp_head(sg_txn_t *t)
{
    if (!t->resp_head)
        return true;
    char *buf = t->resp_head;
    uv_buf_t iov = uv_buf_init(buf, (unsigned)t->resp_head_len);
    t->resp_head = NULL;
    if (sg__conn_write(t->conn, &iov, 1, buf, SG_BK_HEAD) < 0) {
        sg__conn_abort(t->conn, "client write failed");
        return false;
    }
    return true;
}

/* Writes [p, p+n) of buf (its ownership moves to the write) to the client,
 * after the response head still held back, in one writev. Returns false
 * when the connection was aborted. */
static bool flush_resp_head_with(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    t->rec.resp_bytes += n;
    int r;
    if (t->resp_head) {
        uv_buf_t iov[2] = {uv_buf_init(t->resp_head, (unsigned)t->resp_head_len),
                           uv_buf_init((char *)(uintptr_t)p, (unsigned)n)};
        char *head = t->resp_head;
        t->resp_head = NULL;
        r = sg__conn_write2(t->conn, iov, 2, head, SG_BK_HEAD, buf, SG_BK_BUF);
    } else {
        uv_buf_t iov = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
        r = sg__conn_write(t->conn, &iov, 1, buf, SG_BK_BUF);
    }
    if (r < 0) {
        sg__conn_abort(t->conn, "client write failed");
        return false;
    }
    return true;
}

static void resp_complete(sg_txn_t *t)
{
    sg_upconn_t *u = t->up;
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (!flush_resp_head(t))
        return;
    if (u) {
        bool reusable = (t->flags & SG_TXN_F_REQ_DONE) && !w->is_draining && sg__upconn_can_reuse(u);
        t->up = NULL;
        u->txn = NULL;
        sg__upconn_release(u, reusable);
    }
    sg__txn_set_state(t, SG_TXN_DONE);
    txn_end(t);
}

/* Pure part of the client response head (net_int.h), split out of
 * send_resp_head unchanged so that the fuzzers can drive it. */
int sg__proxy_build_resphead(const sg_config_t *cfg, const sg_h1_head_t *h, const char *trace_id, bool is_decode,
                             bool will_close, char *out, size_t cap, size_t *len)
{
    outbuf_t o = {out, 0, cap, false};
    out_cstr(&o, "HTTP/1.1 ");
    out_uint(&o, h->status);
    out_put(&o, " ", 1);
    if (h->reason.len)
        out_str(&o, h->reason);
    else
        out_cstr(&o, sg_h1_reason_phrase(h->status));
    out_put(&o, "\r\n", 2);
    bool is_101 = h->status == 101;
    /* RFC 9112 6.1 and RFC 9110 8.6: no Transfer-Encoding and no
     * Content-Length in a 1xx or 204 response. Such a response has no body
     * whatever its fields say (llhttp frames it so); a downstream hop that
     * trusted the fields would wait for a body or eat the next response. */
    bool is_bodiless = h->status < 200 || h->status == 204;
    conn_tokens_t ct;
    conn_tokens_collect(h, &ct);
    sg_str_t tid_name = sg_str_cstr(cfg->trace.header);
    for (size_t i = 0; i < h->n_headers; i++) {
        const sg_h1_header_t *f = &h->headers[i];
        sg_str_t n = f->name;
        if (is_101 && (f->kind == SG_H1_F_UPGRADE || f->kind == SG_H1_F_CONNECTION)) {
            out_header(&o, n, f->value);
            continue;
        }
        if (is_hop_by_hop(f) || (ct.n && is_named_by_connection(&ct, f)))
            continue;
        if (sg_str_ieq(n, tid_name))
            continue; /* ours wins: exactly one X-Trace-Id */
        if ((is_decode || is_bodiless) && f->kind == SG_H1_F_TRANSFER_ENCODING)
            continue;
        if (is_bodiless && f->kind == SG_H1_F_CONTENT_LENGTH)
            continue;
        out_header(&o, n, f->value);
    }
    out_header(&o, tid_name, sg_str_cstr(trace_id));
    if (will_close && !is_101)
        out_cstr(&o, "Connection: close\r\n");
    out_put(&o, "\r\n", 2);
    if (o.is_full)
        return -1;
    *len = o.len;
    return 0;
}

/* Writes the client response head for the parsed upstream head. */
static int send_resp_head(sg_txn_t *t, const sg_h1_head_t *h, bool will_close)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    char *buf = sg__head_get(w);
    if (!buf)
        return -1;
    size_t len = 0;
    if (sg__proxy_build_resphead(t->gen->cfg, h, t->trace.trace_id, (t->flags & SG_TXN_F_DECODE) != 0, will_close, buf,
                                 w->head_size, &len) < 0) {
        sg__head_put(w, buf);
        return -1;
    }
    t->rec.resp_bytes += len;
    /* Held back: the first body bytes (usually in the same read) go out
     * with it in one writev (hand_to_client); otherwise flush_resp_head. */
    t->resp_head = buf;
    t->resp_head_len = len;
    return 0;
}

/* RFC 9110 15.2: a proxy MUST forward 1xx responses (101 is the upgrade,
 * handled as a final head) unless it asked for them itself. Expect is
 * never forwarded and swarmgate answers 100-continue itself, so an
 * upstream 100 for a request that carried one is dropped; any other 1xx
 * (102, 103 Early Hints, a 100 nobody asked for) goes to the client with
 * hop-by-hop fields, Content-Length and Transfer-Encoding removed and our
 * X-Trace-Id, like a final head, and is written at once. Never to an
 * HTTP/1.0 client, which cannot parse one (RFC 9110 15.2). The same
 * back-pressure applies: an upstream flooding interim heads at a client
 * that does not read is paused. Returns NULL, or why the client
 * connection must be aborted (the caller does, once h is released). */
static const char *forward_interim(sg_upconn_t *u, const sg_h1_head_t *h)
{
    sg_txn_t *t = u->txn;
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    if (t->rd.parser.head.version_minor == 0 || (h->status == 100 && (t->flags & SG_TXN_F_EXPECT)))
        return NULL;
    char *buf = sg__head_get(w);
    if (!buf)
        return "out of memory";
    size_t len = 0;
    if (sg__proxy_build_resphead(t->gen->cfg, h, t->trace.trace_id, false, false, buf, w->head_size, &len) < 0) {
        sg__head_put(w, buf); /* too large for the client head: dropped, as before */
        return NULL;
    }
    t->rec.resp_bytes += len;
    uv_buf_t iov = uv_buf_init(buf, (unsigned)len);
    if (sg__conn_write(c, &iov, 1, buf, SG_BK_HEAD) < 0)
        return "client write failed";
    if (client_paused(t))
        sg__upconn_pause(u);
    return NULL;
}

/* The upstream endpoint parsed a response head (h dies when this
 * returns): forward an interim one, refuse an unexpected 101, or send the
 * client its head and say what follows. */
static sg_uphead_next_t up_head(sg_txn_t *t, const sg_h1_head_t *h)
{
    sg_upconn_t *u = t->up;
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    /* The upstream answered: the request will not be sent again (a close
     * after part of a head is a broken response, never resent). */
    if (t->flags & SG_TXN_F_REPLAY)
        replay_done(t, u);
    if (h->status >= 100 && h->status < 200 && h->status != 101) {
        /* Interim response; the final one follows on the same read loop. */
        const char *err = forward_interim(u, h);
        if (err) {
            sg__conn_abort(c, err);
            return SG_UPH_STOP;
        }
        return SG_UPH_AGAIN;
    }
    if (h->status == 101 && !(t->flags & SG_TXN_F_UPGRADE)) {
        u->flags |= SG_UPC_F_NO_REUSE;
        sg__proxy_up_failed(t, SG_FAIL_BAD_RESPONSE, "unexpected 101 from upstream");
        return SG_UPH_STOP;
    }
    sg__server_ok(t->srv);
    t->rec.upstream_head_ns = sg_now_ns();
    t->resp_status = h->status;
    t->rec.status = h->status;
    bool client_is_10 = t->rd.parser.head.version_minor == 0;
    bool will_close = !(t->flags & SG_TXN_F_CLIENT_KA) || w->drain_phase > 0 || !(t->flags & SG_TXN_F_REQ_DONE);
    if (h->has_body && h->is_eof_body)
        will_close = true; /* the client learns the end from the close */
    if (h->has_body && h->is_chunked && client_is_10) {
        t->flags |= SG_TXN_F_DECODE;
        will_close = true;
    }
    if (h->status == 101) {
        t->rec.is_tunnel = true;
        will_close = false;
    }
    if (will_close)
        t->flags |= SG_TXN_F_RESP_CLOSE;
    if (send_resp_head(t, h, will_close) < 0) {
        sg__proxy_up_failed(t, SG_FAIL_BAD_RESPONSE, "response head too large");
        return SG_UPH_STOP;
    }
    t->flags |= SG_TXN_F_RESP_HEAD;
    if (h->status == 101) {
        if (!flush_resp_head(t))
            return SG_UPH_STOP;
        sg__txn_set_state(t, SG_TXN_TUNNEL);
        sg__upconn_tunnel(u);
        sg__conn_tunnel_start(c);
        sg__proxy_tunnel_touch(t); /* the idle clock starts with the tunnel */
        return SG_UPH_TUNNEL;
    }
    sg__txn_set_state(t, SG_TXN_RESP_BODY);
    if (!h->has_body)
        return SG_UPH_DONE;
    return (t->flags & SG_TXN_F_DECODE) ? SG_UPH_BODY_DECODED : SG_UPH_BODY;
}

/* Response (or tunnel) bytes [p, p+n) in buf, whose ownership moves to
 * the client write; a held response head goes out with them. */
static void to_client(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    sg_upconn_t *u = t->up;
    if (!flush_resp_head_with(t, buf, p, n))
        return;
    if (client_paused(t))
        sg__upconn_pause(u);
}

static void up_body(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    if (n == 0) { /* de-chunking gave nothing this time */
        sg__buf_put(sg__tp_w(&t->conn->tp), buf);
        flush_resp_head(t);
        return;
    }
    to_client(t, buf, p, n);
}

static bool up_can_tunnel(const sg_txn_t *t)
{
    return t->conn->state == SG_CONN_TUNNEL;
}

static void up_tunnel(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    sg__proxy_tunnel_touch(t);
    to_client(t, buf, p, n);
}

static void up_done(sg_txn_t *t)
{
    resp_complete(t);
}

static void up_broken(sg_txn_t *t, const char *why)
{
    sg__conn_abort(t->conn, why);
}

static void up_tunnel_eof(sg_txn_t *t, bool is_reset)
{
    if (is_reset) {
        sg__conn_abort(t->conn, NULL);
    } else {
        t->flags |= SG_TXN_F_TUN_UP_EOF;
        tunnel_progress(t);
    }
}

static void up_read_end(sg_txn_t *t)
{
    /* A head whose body has not arrived yet goes out alone now. */
    if (t->resp_head)
        flush_resp_head(t);
}

/* ---- the client endpoint's view of the stream (sg_conn_ops_t) ------------------------- */

static sg_txn_t *stream_begin(sg_conn_t *c)
{
    sg_txn_t *t = sg__txn_new(c);
    if (!t)
        return NULL;
    t->rd.ro = &t->gen->req_ro;
    return t;
}

static void stream_on_head(sg_txn_t *t)
{
    t->rec.req_bytes += t->rd.n_used;
    sg__proxy_head(t->conn);
}

static void stream_on_head_error(sg_txn_t *t, int status, const char *why)
{
    t->rec.req_bytes += t->rd.n_used;
    sg__conn_error(t->conn, status, why, true);
}

static void stream_on_body(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    t->rec.req_bytes += n;
    sg__proxy_body(t, buf, p, n);
}

static void stream_on_error(sg_txn_t *t, int status, const char *why)
{
    sg__conn_error(t->conn, status, why, true); /* closes when a response already started */
}

static void stream_on_tunnel(sg_txn_t *t, char *buf, const char *p, size_t n)
{
    t->rec.req_bytes += n;
    sg__proxy_tunnel_up(t, buf, p, n);
}

static void stream_on_close(sg_txn_t *t, const char *why)
{
    if (why)
        t->error = why;
    sg__txn_abort(t);
}

const sg_conn_ops_t sg__stream_conn_ops = {
    .begin = stream_begin,
    .rd_offset = offsetof(sg_txn_t, rd),
    .on_head = stream_on_head,
    .on_head_error = stream_on_head_error,
    .can_take_body = sg__proxy_can_take_body,
    .on_body = stream_on_body,
    .on_body_done = sg__proxy_req_done,
    .on_error = stream_on_error,
    .on_tunnel = stream_on_tunnel,
    .on_tunnel_eof = sg__proxy_tunnel_eof,
    .on_drained = sg__proxy_client_drained,
    .on_close = stream_on_close,
};

/* ---- the reverse-proxy handler ---------------------------------------------------------- */

static int reverse_on_head(sg_txn_t *t, const sg_h1_head_t *h, const sg_req_target_t *tg)
{
    SG_UNUSED(h);
    /* Route (first match wins). */
    int32_t ri = sg_router_match(t->gen->router, tg->host, tg->path);
    if (ri < 0) {
        sg__conn_error(t->conn, 404, "no route", !(t->flags & SG_TXN_F_REQ_DONE));
        return -1;
    }
    t->route_idx = ri;
    t->ups_idx = (int32_t)t->gen->cfg->routes[ri].upstream_idx;
    return 0;
}

const sg_handler_ops_t sg__reverse_handler = {
    .on_head = reverse_on_head,
    .connect = proxy_connect,
};
