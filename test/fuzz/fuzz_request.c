/* Fuzzes the request path without sockets: client bytes -> head scanner
 * (whole and split into pieces) -> llhttp head parse -> trace header
 * collection and sg_trace_resolve -> router -> the upstream request head
 * builder (sg__proxy_build_uphead) -> body framing (sg_h1_check_body vs
 * sg_h1_parse_body fed in pieces).
 *
 * Input: byte 0 = options (piece size, sampler, small body limit), the
 * rest = bytes from the client.
 *
 * Invariants (a failure aborts):
 *  - scanning in pieces gives the same result and head length as at once;
 *  - a parsed head has token header names, values without CR/LF/NUL, and
 *    never both Content-Length and Transfer-Encoding (smuggling);
 *  - the trace id is a valid lower-case UUID; a single valid incoming
 *    X-Trace-Id is kept;
 *  - the upstream head is one complete head (no bytes after it: no request
 *    injection), parses again, has exactly one Host, one X-Trace-Id (ours),
 *    one traceparent, no Connection unless upgrading, and the same method
 *    and body framing as the client's request; also in egress shape
 *    (route_idx -1);
 *  - the body check agrees with the piecewise body parse. */
#include "fuzz_check.h"
#include "net/net_int.h"
#include "sg/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_req_yaml[] =
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

static const sg_config_t *req_cfg(void)
{
    static sg_config_t *cfg;
    if (!cfg) {
        char err[512];
        int r = sg_config_load_string("fuzz_request.yaml", k_req_yaml, sizeof(k_req_yaml) - 1, &cfg, err, sizeof(err));
        if (r != 0)
            fprintf(stderr, "fuzz_request config: %s\n", err);
        FUZZ_CHECK(r == 0);
    }
    return cfg;
}

static const sg_router_t *req_router(void)
{
    static sg_router_t *router;
    if (!router) {
        router = sg_router_new(req_cfg());
        FUZZ_CHECK(router != NULL);
    }
    return router;
}

static bool req_has_byte(sg_str_t s, const char *set)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] == '\0' || strchr(set, s.p[i]))
            return true;
    return false;
}

static void req_check_head(const sg_h1_head_t *h)
{
    FUZZ_CHECK(h->method_name.len > 0);
    FUZZ_CHECK(h->target.len > 0 && !req_has_byte(h->target, "\r\n "));
    for (size_t i = 0; i < h->n_headers; i++) {
        FUZZ_CHECK(h->headers[i].name.len > 0 && !req_has_byte(h->headers[i].name, "\r\n :"));
        FUZZ_CHECK(!req_has_byte(h->headers[i].value, "\r\n"));
    }
    /* RFC 9112 6.1: a request with both is a smuggling attempt: refused. */
    FUZZ_CHECK(!(h->has_content_length && h->has_te));
}

/* Scans the whole input at once and in pieces of `piece` bytes. */
static int req_scan(const sg_h1_limits_t *lim, const char *p, size_t n, size_t piece, size_t *head_len)
{
    sg_h1_scan_t s;
    sg_h1_scan_init(&s);
    size_t used = 0;
    int r1 = sg_h1_scan_feed(&s, lim, p, n, &used);
    size_t used1 = used;

    sg_h1_scan_init(&s);
    size_t off = 0;
    int r2 = SG_H1_SCAN_MORE;
    while (off < n) {
        size_t k = SG_MIN(piece, n - off);
        used = 0;
        r2 = sg_h1_scan_feed(&s, lim, p + off, k, &used);
        if (r2 < 0)
            break;
        FUZZ_CHECK(used <= k);
        off += used;
        if (r2 == SG_H1_SCAN_DONE)
            break;
    }
    FUZZ_CHECK(r1 == r2);
    if (r1 == SG_H1_SCAN_DONE)
        FUZZ_CHECK(used1 == off);
    *head_len = used1;
    return r1;
}

/* Lines of `name` the client sent that go upstream as they are: none
 * when a Connection header names it (hop-by-hop, RFC 9110 7.6.1). */
static size_t req_count_passed(const sg_h1_head_t *h, sg_str_t name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_headers; i++)
        if (sg_str_ieq(h->headers[i].name, SG_STR("connection")) && sg_h1_list_has(h->headers[i].value, name))
            return 0;
    sg_h1_find(h, name, &n);
    return n;
}

/* The upstream head must be one well-formed head with our headers. */
static void req_check_uphead(const sg_config_t *cfg, const sg_h1_head_t *h, const sg_trace_ctx_t *tr, bool is_upgrade,
                             bool is_egress, const char *out, size_t len)
{
    static sg_h1_header_t hdrs[4096];
    const sg_h1_limits_t big = {1u << 20, 1u << 20, 4000};
    sg_h1_scan_t s;
    sg_h1_scan_init(&s);
    size_t used = 0;
    FUZZ_CHECK(sg_h1_scan_feed(&s, &big, out, len, &used) == SG_H1_SCAN_DONE);
    FUZZ_CHECK(used == len); /* nothing after the head: no injected request */
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_REQUEST);
    FUZZ_CHECK(sg_h1_parse_head(&p, out, len, hdrs, SG_ARRAY_SIZE(hdrs), false) == 0);
    const sg_h1_head_t *u = &p.head;
    FUZZ_CHECK(sg_str_eq(u->method_name, h->method_name));
    FUZZ_CHECK(u->version_major == 1 && u->version_minor == 1);
    size_t n = 0;
    sg_h1_find(u, SG_STR("host"), &n);
    FUZZ_CHECK(n == 1);
    const sg_h1_header_t *x = sg_h1_find(u, sg_str_cstr(cfg->trace.header), &n);
    FUZZ_CHECK(n == 1 && sg_str_eq(x->value, sg_str_cstr(tr->trace_id)));
    sg_h1_find(u, SG_STR("traceparent"), &n);
    FUZZ_CHECK(n == (cfg->trace.traceparent ? 1u : 0u));
    sg_h1_find(u, SG_STR("tracestate"), &n);
    FUZZ_CHECK(n <= 1);
    sg_h1_find(u, SG_STR("x-forwarded-for"), &n);
    /* egress: the client's, untouched */
    FUZZ_CHECK(is_egress ? n == req_count_passed(h, SG_STR("x-forwarded-for")) : n == 1);
    sg_h1_find(u, SG_STR("connection"), &n);
    FUZZ_CHECK(n == (is_upgrade ? 1u : 0u));
    for (size_t i = 0; i < cfg->trace.n_accept_headers; i++) {
        /* Accepted aliases go upstream unchanged (docs/tracing.md). */
        sg_h1_find(u, sg_str_cstr(cfg->trace.accept_headers[i]), &n);
        FUZZ_CHECK(n == req_count_passed(h, sg_str_cstr(cfg->trace.accept_headers[i])));
    }
    /* Same body framing as the client's request (no desync upstream). */
    FUZZ_CHECK(u->has_content_length == h->has_content_length);
    FUZZ_CHECK(u->content_length == h->content_length);
    FUZZ_CHECK(u->is_chunked == h->is_chunked);
    FUZZ_CHECK(u->has_te == h->has_te);
    FUZZ_CHECK(u->has_body == h->has_body);
}

/* Mirrors the target split and checks of sg__proxy_head (proxy.c) that
 * come before the head is built; false when the proxy answers an error. */
static bool req_target(const sg_h1_head_t *h, sg_str_t *host, sg_str_t *path, sg_str_t *query)
{
    size_t n_host = 0;
    const sg_h1_header_t *hh = sg_h1_find(h, SG_STR("host"), &n_host);
    sg_str_t target = h->target;
    bool is_absolute = false;
    *host = hh ? hh->value : SG_STR_NULL;
    *query = SG_STR_NULL;
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
    } else if (target.p[0] == '/' || (sg_str_eq(target, SG_STR("*")) && h->method == SG_METHOD_OPTIONS)) {
        *path = target;
    } else {
        return false;
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
    if (h->has_te && h->version_minor == 0)
        return false;
    return true;
}

static void req_count(void *ud, const char *p, size_t n)
{
    SG_UNUSED(p);
    *(size_t *)ud += n;
}

/* p: a parser right after its head (body state); p2: the same head parsed
 * again. The check on a copy, the parse at once and the parse in pieces
 * must agree on the outcome, the bytes used and the decoded bytes. */
static void req_body(sg_h1_parser_t *p, sg_h1_parser_t *p2, const char *rest, size_t n, size_t piece)
{
    int rc = sg_h1_check_body(p, rest, n);
    size_t dec1 = 0, dec2 = 0, used1 = 0;
    p2->on_body = req_count;
    p2->ud = &dec1;
    int r1 = sg_h1_parse_body(p2, rest, n, &used1);
    FUZZ_CHECK(r1 < 0 ? rc == r1 : rc == 0);

    p->on_body = req_count;
    p->ud = &dec2;
    size_t off = 0;
    int r2 = SG_H1_BODY_MORE;
    while (off < n) {
        size_t k = SG_MIN(piece, n - off), used = 0;
        r2 = sg_h1_parse_body(p, rest + off, k, &used);
        if (r2 < 0)
            break;
        FUZZ_CHECK(used <= k);
        off += used;
        if (r2 == SG_H1_BODY_DONE)
            break;
    }
    FUZZ_CHECK(r1 == r2);
    if (r1 >= 0) {
        FUZZ_CHECK(used1 == off);
        FUZZ_CHECK(dec1 == dec2 && dec1 <= used1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const sg_config_t *cfg = req_cfg();
    const sg_router_t *router = req_router();
    uint8_t opt = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    size_t piece = 1u + (opt & 0x1fu) * 7u;

    /* Same sizes as the worker (worker.c). */
    const sg_limits_conf_t *lim = &cfg->limits;
    sg_h1_limits_t hl = {lim->request_line_bytes, lim->header_bytes, lim->header_count};
    size_t head_bytes = ((size_t)lim->request_line_bytes + lim->header_bytes + 64 + 15u) & ~(size_t)15u;
    size_t max_hdrs = lim->header_count + 1;
    static char head[8192];
    static sg_h1_header_t hdrs[64];
    FUZZ_CHECK(head_bytes <= sizeof(head) && max_hdrs <= SG_ARRAY_SIZE(hdrs));

    size_t head_len = 0;
    int r = req_scan(&hl, in, n, piece, &head_len);
    if (r != SG_H1_SCAN_DONE || head_len > head_bytes)
        return 0;
    memcpy(head, in, head_len);
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_REQUEST);
    p.max_body = (opt & 0x40) ? 64 : 0;
    if (sg_h1_parse_head(&p, head, head_len, hdrs, max_hdrs, false) != 0)
        return 0;
    const sg_h1_head_t *h = &p.head;
    req_check_head(h);

    sg_trace_in_t tin;
    sg__proxy_trace_in(cfg, h, &tin);
    sg_trace_ctx_t tr;
    sg_trace_resolve(&tin, (opt & 0x20) != 0, &tr);
    char check[SG_TRACE_ID_LEN + 1];
    FUZZ_CHECK(sg_trace_id_parse(sg_str_cstr(tr.trace_id), check) == 0 && strcmp(check, tr.trace_id) == 0);
    if (tin.n_xtid == 1 && sg_trace_id_parse(tin.xtid[0], check) == 0)
        FUZZ_CHECK(strcmp(check, tr.trace_id) == 0);

    sg_str_t host, path, query;
    if (req_target(h, &host, &path, &query)) {
        int ri = sg_router_match(router, host, path);
        FUZZ_CHECK(ri >= -1 && ri < (int)cfg->n_routes);
        if (ri >= 0) {
            bool is_upgrade = h->is_upgrade && h->method != SG_METHOD_CONNECT && h->version_minor >= 1 &&
                              sg_h1_find(h, SG_STR("upgrade"), NULL);
            sg_uphead_in_t uin = {.cfg = cfg,
                                  .route_idx = ri,
                                  .ups_idx = (int32_t)cfg->routes[ri].upstream_idx,
                                  .h = h,
                                  .host = host,
                                  .path = path,
                                  .query = query,
                                  .peer_ip = "192.0.2.1",
                                  .trace = &tr,
                                  .is_upgrade = is_upgrade};
            static char out[16384];
            size_t head_size = head_bytes + max_hdrs * sizeof(sg_h1_header_t);
            FUZZ_CHECK(head_size <= sizeof(out));
            size_t out_len = 0;
            int b = sg__proxy_build_uphead(&uin, out, head_size, &out_len);
            FUZZ_CHECK(b == 0 || b == -414 || b == -431);
            if (b == 0)
                req_check_uphead(cfg, h, &tr, is_upgrade, false, out, out_len);
            if (host.len) {
                /* The same request in egress shape (no route: authority as
                 * Host, path kept, no X-Forwarded-* of ours). */
                uin.route_idx = -1;
                b = sg__proxy_build_uphead(&uin, out, head_size, &out_len);
                FUZZ_CHECK(b == 0 || b == -414 || b == -431);
                if (b == 0)
                    req_check_uphead(cfg, h, &tr, is_upgrade, true, out, out_len);
            }
        }
    }
    if (h->has_body) {
        sg_h1_parser_t p2;
        sg_h1_parser_init(&p2, SG_H1_REQUEST);
        p2.max_body = p.max_body;
        static sg_h1_header_t hdrs2[64];
        FUZZ_CHECK(sg_h1_parse_head(&p2, head, head_len, hdrs2, max_hdrs, false) == 0);
        req_body(&p, &p2, in + head_len, n - head_len, piece);
    }
    return 0;
}
