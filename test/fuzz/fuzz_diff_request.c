/* Differential fuzz target, request direction (issue #15: request
 * smuggling and framing). Client bytes, possibly several pipelined
 * requests, go through swarmgate's own request path as conn.c and proxy.c
 * run it, without sockets:
 *   head scanner (sg_h1_scan_feed, the worker's limits) -> sg_h1_parse_head
 *   -> the target split and refusals of sg__proxy_head (as fuzz_request.c
 *   mirrors them) -> router -> sg__proxy_build_uphead -> the body, fed to
 *   sg_h1_parse_body in reads of `piece` bytes; each read's accepted bytes
 *   are what body_step forwards unchanged.
 * What goes upstream (head, then raw body bytes, message after message as
 * on one pooled connection) is collected in one buffer. The strict
 * reference reader (h1ref.c, not llhttp) then reads
 *  (a) the upstream bytes: exactly the messages swarmgate saw, with the
 *      same method, the target as rewritten, the fields as swarmgate's own
 *      parser reads the head it built, the same decoded body and trailers,
 *      each ending where swarmgate's forwarding of it ended: no extra
 *      message, nothing left over, and for a message cut short (input
 *      ended, body refused) a valid prefix only;
 *  (b) the client bytes: every message swarmgate accepted (its head, the
 *      body bytes it forwarded) is accepted by the reference with the same
 *      boundaries, method, target, version, fields and decoded body.
 *      Where swarmgate is stricter (refuses what the reference takes), fine.
 * Policy: no header name with '_' goes upstream; no CONNECT goes upstream
 * from a reverse listener.
 *
 * Sequencing, as conn.c: one request at a time; the next one is read only
 * after a keep-alive HTTP/1.1 request (is_keep_alive, minor >= 1) that is
 * not an upgrade or CONNECT (the rest becomes tunnel bytes or waits for a
 * 101). Where the harness differs from proxy.c (documented in the report
 * and below): it does not replay host_value_ok, the dot-segment check,
 * Expect or Max-Forwards (they only refuse more); a request answered
 * locally (no route) ends the sequence here, while swarmgate may go on
 * after a 404 without body; sg_h1_check_body on the bytes that came with
 * the head is not modelled (it only forwards less); a body refused
 * mid-way leaves its accepted reads forwarded, as body_step does.
 *
 * Input: byte 0 = options (bits 0-4: read size, 1 + 7*k bytes), the rest =
 * client bytes. A mismatch aborts (a crash for libFuzzer, a failed test in
 * test/unit/fuzz_replay_test.c) after printing both readings. */
#include "fuzz_diff.h"
#include "net/net_int.h"
#include "sg/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The configuration of fuzz_request.c: rewrites, strip_prefix, set_host. */
static const char k_dreq_yaml[] =
    "listeners:\n"
    "  - {name: api, address: 127.0.0.1:0}\n"
    "upstreams:\n"
    "  app: {servers: [127.0.0.1:3000]}\n"
    "  v6: {servers: ['[::1]:3001']}\n"
    "trace: {accept_headers: [X-Request-Id, X-Correlation-Id]}\n"
    "limits: {request_line_bytes: 1k, header_bytes: 4k, header_count: 24}\n"
    "routes:\n"
    "  - {match: {host: api.example.com, prefix: /v1/}, rewrite: /api/v1/, upstream: app}\n"
    "  - {match: {host: '*.example.com', prefix: /s}, strip_prefix: true, upstream: v6}\n"
    "  - {match: {prefix: /set}, set_host: backend.internal, upstream: app}\n"
    "  - {match: {prefix: /api}, strip_prefix: /api, upstream: app}\n"
    "  - {match: {prefix: /}, upstream: v6}\n";

#define DREQ_MAX_MSGS (H1REF_MAX_MSGS - 1)
#define DREQ_IN_MAX 16384
#define DREQ_UP_MAX (DREQ_MAX_MSGS * 16384 + DREQ_IN_MAX)

static const sg_config_t *dreq_cfg(void)
{
    static sg_config_t *cfg;
    if (!cfg) {
        char err[512];
        int r = sg_config_load_string("fuzz_diff_request.yaml", k_dreq_yaml, sizeof(k_dreq_yaml) - 1, &cfg, err,
                                      sizeof(err));
        if (r != 0)
            fprintf(stderr, "fuzz_diff_request config: %s\n", err);
        FUZZ_CHECK(r == 0);
    }
    return cfg;
}

static const sg_router_t *dreq_router(void)
{
    static sg_router_t *router;
    if (!router) {
        router = sg_router_new(dreq_cfg());
        FUZZ_CHECK(router != NULL);
    }
    return router;
}

/* One request as swarmgate handled it. */
typedef struct dreq_msg {
    sg_h1_head_t head; /* slices into the client bytes; headers in hdrs[] */
    size_t head_end;   /* client offset after the head */
    size_t end;        /* client offset after the message (is_complete) */
    size_t fwd_end;    /* client offset up to which bytes went upstream */
    bool is_complete;
    bool is_refused;                      /* the body was refused after part of it went upstream */
    size_t up_start, up_head_end, up_end; /* offsets in the upstream bytes */
    size_t body0, body_len;               /* decoded by swarmgate, in g_dreq.body */
    char target[4200];                    /* request-target sent upstream */
    size_t target_len;
    sg_h1_header_t hdrs[64];
} dreq_msg_t;

static struct {
    dreq_msg_t msg[DREQ_MAX_MSGS];
    size_t n_msgs;
    char up[DREQ_UP_MAX];
    size_t up_len;
    char body[DREQ_IN_MAX];
    size_t body_len;
    char ref_body[DREQ_UP_MAX + DREQ_IN_MAX];
    h1ref_out_t rin, rup;
    sg_h1_header_t uphdrs[4096];
} g_dreq;

static void dreq_on_body(void *ud, const char *p, size_t n)
{
    dreq_msg_t *m = ud;
    FUZZ_CHECK(g_dreq.body_len + n <= sizeof(g_dreq.body));
    memcpy(g_dreq.body + g_dreq.body_len, p, n);
    g_dreq.body_len += n;
    m->body_len += n;
}

static bool dreq_has_underscore_name(const sg_h1_head_t *h)
{
    for (size_t k = 0; k < h->n_headers; k++)
        if (memchr(h->headers[k].name.p, '_', h->headers[k].name.len))
            return true;
    return false;
}

static void dreq_up_put(const char *p, size_t n)
{
    FUZZ_CHECK(g_dreq.up_len + n <= sizeof(g_dreq.up));
    memcpy(g_dreq.up + g_dreq.up_len, p, n);
    g_dreq.up_len += n;
}

/* sg__proxy_head's target split (origin, absolute or asterisk form) and
 * the refusals that depend on the head alone (as fuzz_request.c
 * req_target); false when swarmgate answers an error itself. */
static bool dreq_target(const sg_h1_head_t *h, sg_str_t *host, sg_str_t *path, sg_str_t *query)
{
    size_t n_host = 0;
    const sg_h1_header_t *hh = sg_h1_find(h, SG_STR("host"), &n_host);
    sg_str_t target = h->target;
    bool is_absolute = false;
    *host = hh ? hh->value : SG_STR_NULL;
    *query = SG_STR_NULL;
    if (h->method == SG_METHOD_CONNECT)
        return false; /* 405 on a reverse listener, whatever the target form */
    if (target.len >= 7 && (sg_str_ieq(sg_str_make(target.p, 7), SG_STR("http://")) ||
                            (target.len >= 8 && sg_str_ieq(sg_str_make(target.p, 8), SG_STR("https://"))))) {
        size_t skip = (target.p[4] == ':') ? 7 : 8;
        const char *a = target.p + skip, *end = target.p + target.len, *e = a;
        while (e < end && *e != '/' && *e != '?')
            e++;
        *host = sg_str_make(a, (size_t)(e - a));
        if (host->len == 0 || memchr(host->p, '@', host->len))
            return false;
        *path = sg_str_make(e, (size_t)(end - e));
        is_absolute = true;
    } else if (target.len && target.p[0] == '/') {
        *path = target;
    } else if (sg_str_eq(target, SG_STR("*")) && h->method == SG_METHOD_OPTIONS) {
        *path = target;
    } else {
        return false; /* 400 */
    }
    const char *q = path->len ? memchr(path->p, '?', path->len) : NULL;
    if (q) {
        *query = sg_str_make(q + 1, (size_t)(path->p + path->len - q - 1));
        path->len = (size_t)(q - path->p);
    }
    if (path->len == 0)
        *path = SG_STR("/");
    if (n_host > 1 || (n_host == 0 && h->version_minor >= 1 && !is_absolute))
        return false;
    if (hh && hh->value.len == 0 && !is_absolute)
        return false; /* empty Host */
    if (h->has_te && h->version_minor == 0)
        return false;
    return true;
}

/* Runs the client bytes through swarmgate's request path; fills g_dreq. */
static void dreq_run(const char *in, size_t n, size_t piece)
{
    const sg_config_t *cfg = dreq_cfg();
    const sg_router_t *router = dreq_router();
    /* Same sizes as the worker (worker.c). */
    const sg_limits_conf_t *lim = &cfg->limits;
    sg_h1_limits_t hl = {lim->request_line_bytes, lim->header_bytes, lim->header_count};
    size_t head_bytes = ((size_t)lim->request_line_bytes + lim->header_bytes + 64 + 15u) & ~(size_t)15u;
    size_t max_hdrs = lim->header_count + 1;
    size_t head_size = head_bytes + max_hdrs * sizeof(sg_h1_header_t);
    static char uphead[32768];
    FUZZ_CHECK(max_hdrs <= SG_ARRAY_SIZE(g_dreq.msg[0].hdrs) && head_size <= sizeof(uphead));

    size_t pos = 0;
    while (pos < n && g_dreq.n_msgs < DREQ_MAX_MSGS) {
        dreq_msg_t *m = &g_dreq.msg[g_dreq.n_msgs];
        memset(m, 0, sizeof(*m));
        sg_h1_scan_t s;
        sg_h1_scan_init(&s);
        size_t head_len = 0;
        if (sg_h1_scan_feed(&s, &hl, in + pos, n - pos, &head_len) != SG_H1_SCAN_DONE || head_len > head_bytes)
            return; /* refused (400, 414, 431), or the head is incomplete: nothing goes upstream */
        sg_h1_parser_t p;
        sg_h1_parser_init(&p, SG_H1_REQUEST);
        p.max_body = lim->body_bytes;
        p.max_trailer_bytes = lim->header_bytes; /* head_step */
        p.max_trailer_count = lim->header_count;
        /* head_step copies the head into t->head; the same bytes */
        if (sg_h1_parse_head(&p, in + pos, head_len, m->hdrs, max_hdrs, false) != 0)
            return;
        const sg_h1_head_t *h = &p.head;
        sg_str_t host, path, query;
        if (!dreq_target(h, &host, &path, &query))
            return;
        int ri = sg_router_match(router, host, path);
        if (ri < 0)
            return; /* 404 (this harness stops there) */
        if (lim->body_bytes && h->has_content_length && h->content_length > lim->body_bytes)
            return; /* 413 */
        const sg_route_conf_t *route = &cfg->routes[ri];
        bool is_upgrade = h->is_upgrade && h->method != SG_METHOD_CONNECT && h->version_minor >= 1 &&
                          sg_h1_find(h, SG_STR("upgrade"), NULL);
        sg_trace_in_t tin;
        sg__proxy_trace_in(cfg, h, &tin);
        sg_trace_ctx_t tr;
        sg_trace_resolve(&tin, false, &tr);
        sg_uphead_in_t uin = {.cfg = cfg,
                              .route_idx = ri,
                              .ups_idx = (int32_t)route->upstream_idx,
                              .h = h,
                              .host = host,
                              .path = path,
                              .query = query,
                              .peer_ip = "192.0.2.1",
                              .trace = &tr,
                              .is_upgrade = is_upgrade};
        size_t up_len = 0;
        if (sg__proxy_build_uphead(&uin, uphead, head_size, &up_len) != 0)
            return; /* 414, 431 */
        /* The target the builder must have written: the rewritten path, then the query as sent. */
        m->target_len = sg_router_rewrite_path(route, path, m->target, sizeof(m->target));
        FUZZ_CHECK(m->target_len < sizeof(m->target) - 1 - query.len);
        if (query.p) {
            m->target[m->target_len++] = '?';
            memcpy(m->target + m->target_len, query.p, query.len);
            m->target_len += query.len;
        }
        m->head = *h;
        m->head_end = pos + head_len;
        m->up_start = g_dreq.up_len;
        dreq_up_put(uphead, up_len);
        m->up_head_end = g_dreq.up_len;
        m->body0 = g_dreq.body_len;
        g_dreq.n_msgs++;
        pos += head_len;
        m->fwd_end = pos;
        if (h->has_body) {
            /* body_step: each read goes through sg_h1_parse_body; what it
             * accepted (used) goes upstream unchanged; a refused read goes
             * nowhere and ends the connection. */
            p.on_body = dreq_on_body;
            p.ud = m;
            int r = SG_H1_BODY_MORE;
            while (pos < n) {
                size_t k = SG_MIN(piece, n - pos), used = 0;
                r = sg_h1_parse_body(&p, in + pos, k, &used);
                if (r < 0) {
                    m->is_refused = true;
                    break;
                }
                FUZZ_CHECK(used <= k);
                dreq_up_put(in + pos, used);
                pos += used;
                m->fwd_end = pos;
                if (r == SG_H1_BODY_DONE)
                    break;
            }
            if (r != SG_H1_BODY_DONE)
                return; /* refused, or the client's bytes ended inside the body */
        }
        m->is_complete = true;
        m->end = pos;
        m->up_end = g_dreq.up_len;
        /* conn.c: the next request only on a keep-alive HTTP/1.1
         * connection (SG_TXN_F_CLIENT_KA), and not after an upgrade. */
        if (!(h->is_keep_alive && h->version_minor >= 1) || h->is_upgrade || h->method == SG_METHOD_CONNECT)
            return;
    }
}

static void dreq_report(const char *what, size_t i, const char *in, size_t n)
{
    fprintf(stderr, "fuzz_diff_request: MISMATCH at message %zu: %s\n", i, what);
    diff_print("client bytes", in, n);
    for (size_t k = 0; k < g_dreq.n_msgs; k++) {
        const dreq_msg_t *m = &g_dreq.msg[k];
        fprintf(stderr,
                "  swarmgate msg %zu: head_end %zu end %zu fwd_end %zu complete %d refused %d body %zu, "
                "upstream %zu..%zu..%zu\n",
                k, m->head_end, m->end, m->fwd_end, m->is_complete, m->is_refused, m->body_len, m->up_start,
                m->up_head_end, m->up_end);
    }
    diff_print("upstream bytes", g_dreq.up, g_dreq.up_len);
    diff_print_ref("client bytes", &g_dreq.rin);
    diff_print_ref("upstream bytes", &g_dreq.rup);
}

/* A failed check: a known leniency (temporary) ends this input quietly;
 * anything else aborts. */
#define DREQ_CHECK(cond, kind, i, what)                                                                                \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            dreq_report((what), (i), in, n);                                                                           \
            FUZZ_CHECK(cond);                                                                                          \
        }                                                                                                              \
    } while (0)

/* (b): message i as swarmgate took it from the client, against the
 * reference's reading of the client bytes. */
static bool dreq_check_client(size_t i, const char *in, size_t n)
{
    const dreq_msg_t *m = &g_dreq.msg[i];
    const h1ref_out_t *r = &g_dreq.rin;
    const h1ref_msg_t *rm = &r->msg[i];
    bool is_ref_complete = i < r->n_msgs;
    if (m->is_complete) {
        DREQ_CHECK(is_ref_complete, DIFF_CLIENT, i, "swarmgate took a message the reference does not");
        DREQ_CHECK(rm->end == m->end, DIFF_CLIENT, i, "message ends elsewhere for the reference");
    } else if (is_ref_complete) {
        /* Swarmgate went on reading (and forwarding) the body up to
         * fwd_end, or wants more; the reference ended the message. */
        DREQ_CHECK(rm->end > m->fwd_end, DIFF_CLIENT, i, "reference ends the message inside what swarmgate forwarded");
    } else {
        /* The input ended inside the message, or swarmgate refused the
         * body after forwarding part of it (then the upstream connection is
         * closed, not pooled: sg__txn_free). What it forwarded is a valid
         * prefix, but for a line it had not finished checking. */
        DREQ_CHECK(r->state != H1REF_ERROR || diff_err_in_open_line(in, r->err_off, m->fwd_end), DIFF_CLIENT, i,
                   "reference refuses bytes swarmgate forwarded");
    }
    DREQ_CHECK(rm->head_end == m->head_end, DIFF_CLIENT, i, "head ends elsewhere for the reference");
    const sg_h1_head_t *h = &m->head;
    DREQ_CHECK(diff_eq(h->method_name, rm->method), DIFF_CLIENT, i, "method differs");
    DREQ_CHECK(diff_eq(h->target, rm->target), DIFF_CLIENT, i, "request-target differs");
    /* HTTP/1.2-1.9 are HTTP/1.1 to swarmgate (h1ref.h): minor 1 or the digit sent. */
    DREQ_CHECK(h->version_major == 1 &&
                   (h->version_minor == rm->version_minor || (rm->version_minor > 1 && h->version_minor == 1)),
               DIFF_CLIENT, i, "version differs");
    DREQ_CHECK(diff_fields_eq(h, r, rm), DIFF_CLIENT, i, "fields differ");
    if (m->is_complete)
        DREQ_CHECK(diff_body_eq(g_dreq.body + m->body0, m->body_len, r, rm), DIFF_CLIENT, i, "decoded body differs");
    return true;
}

/* (a): message i as it went upstream, read by the reference. */
static bool dreq_check_upstream(size_t i, const char *in, size_t n)
{
    const dreq_msg_t *m = &g_dreq.msg[i];
    const h1ref_out_t *r = &g_dreq.rup;
    const h1ref_msg_t *um = &r->msg[i];
    if (m->is_complete) {
        DREQ_CHECK(i < r->n_msgs, DIFF_FORWARDED, i, "upstream: the reference does not read the message forwarded");
        DREQ_CHECK(um->end == m->up_end, DIFF_FORWARDED, i, "upstream: message ends elsewhere for the reference");
    } else {
        DREQ_CHECK(r->n_msgs == i &&
                       (r->state == H1REF_PARTIAL ||
                        (r->state == H1REF_ERROR && diff_err_in_open_line(g_dreq.up, r->err_off, g_dreq.up_len))),
                   DIFF_FORWARDED, i, "upstream: a message cut short is not a valid prefix for the reference");
    }
    DREQ_CHECK(um->start == m->up_start && um->head_end == m->up_head_end, DIFF_FORWARDED, i,
               "upstream: head boundaries differ");
    const sg_h1_head_t *h = &m->head;
    DREQ_CHECK(diff_eq(h->method_name, um->method), DIFF_FORWARDED, i, "upstream: method differs");
    DREQ_CHECK(diff_eq_cstr(m->target, m->target_len, um->target), DIFF_FORWARDED, i,
               "upstream: target is not the rewritten one");
    DREQ_CHECK(um->version_minor == 1, DIFF_FORWARDED, i, "upstream: not HTTP/1.1");
    /* proxy.c answers CONNECT on a reverse listener with 405: an upstream
     * that takes it makes its connection a tunnel after a 2xx (RFC 9112
     * 6.3 rule 2), which swarmgate would read as a response and pool. */
    DREQ_CHECK(!h1ref_ieq(um->method, "connect"), DIFF_CONNECT, i, "upstream: CONNECT forwarded by a reverse listener");
    /* The fields as built: swarmgate's own parser on the head it built. */
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_REQUEST);
    int pr = sg_h1_parse_head(&p, g_dreq.up + m->up_start, m->up_head_end - m->up_start, g_dreq.uphdrs,
                              SG_ARRAY_SIZE(g_dreq.uphdrs), false);
    DREQ_CHECK(pr == 0, DIFF_FORWARDED, i, "upstream: swarmgate refuses the head it built");
    DREQ_CHECK(diff_fields_eq(&p.head, r, um), DIFF_FORWARDED, i, "upstream: fields differ");
    DREQ_CHECK(!dreq_has_underscore_name(&p.head), DIFF_UNDERSCORE, i, "upstream: a field name with '_' went on");
    if (m->is_complete) {
        DREQ_CHECK(diff_body_eq(g_dreq.body + m->body0, m->body_len, r, um), DIFF_FORWARDED, i,
                   "upstream: decoded body differs");
        const h1ref_msg_t *rm = &g_dreq.rin.msg[i];
        DREQ_CHECK(um->framing == rm->framing && um->content_length == rm->content_length, DIFF_FORWARDED, i,
                   "upstream: framing differs from the client's");
        DREQ_CHECK(diff_trailers_eq(r, um, &g_dreq.rin, rm), DIFF_FORWARDED, i, "upstream: trailers differ");
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > DREQ_IN_MAX)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    size_t piece = 1u + (data[0] & 0x1fu) * 7u;
    g_dreq.n_msgs = g_dreq.up_len = g_dreq.body_len = 0;
    dreq_run(in, n, piece);

    const sg_limits_conf_t *lim = &dreq_cfg()->limits;
    /* Trailers get the limits of a head (RFC 9110 6.5: a recipient may
     * refuse what it would refuse in a head). */
    const h1ref_limits_t rl = {lim->header_count, lim->header_bytes};
    h1ref_init(&g_dreq.rin, g_dreq.ref_body, sizeof(g_dreq.ref_body));
    h1ref_parse_requests(&g_dreq.rin, in, n, &rl);
    h1ref_init(&g_dreq.rup, g_dreq.ref_body, sizeof(g_dreq.ref_body));
    /* rin's bodies stay readable: rup's go after them */
    g_dreq.rup.body_len = g_dreq.rin.body_len;
    h1ref_parse_requests(&g_dreq.rup, g_dreq.up, g_dreq.up_len, &rl);

    if (diff_tracing())
        fprintf(stderr,
                "diff_request: swarmgate %zu message(s)%s, %zu upstream bytes; reference: client %zu+%d (%s), upstream "
                "%zu+%d (%s)\n",
                g_dreq.n_msgs, g_dreq.n_msgs && !g_dreq.msg[g_dreq.n_msgs - 1].is_complete ? " (last cut short)" : "",
                g_dreq.up_len, g_dreq.rin.n_msgs, (int)g_dreq.rin.state, h1ref_err_name(g_dreq.rin.err),
                g_dreq.rup.n_msgs, (int)g_dreq.rup.state, h1ref_err_name(g_dreq.rup.err));
    size_t n_complete = 0;
    for (size_t i = 0; i < g_dreq.n_msgs; i++) {
        if (!dreq_check_client(i, in, n) || !dreq_check_upstream(i, in, n))
            return 0;
        n_complete += g_dreq.msg[i].is_complete;
    }
    if (n_complete == g_dreq.n_msgs) {
        /* Nothing after the last message swarmgate forwarded. */
        size_t i = g_dreq.n_msgs;
        const h1ref_out_t *r = &g_dreq.rup;
        if (!(r->n_msgs == n_complete && r->state == H1REF_END && !r->is_truncated)) {
            dreq_report("upstream: bytes after the last forwarded message", i, in, n);
            FUZZ_CHECK(r->n_msgs == n_complete && r->state == H1REF_END && !r->is_truncated);
        }
    }
    return 0;
}
