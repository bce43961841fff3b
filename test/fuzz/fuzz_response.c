/* Fuzzes the response path without sockets: upstream bytes -> head
 * scanner -> llhttp response parse (interim 1xx heads built for the client
 * as the proxy does, then the next head) -> the client head builder (sg__proxy_build_resphead) -> body
 * framing, fed at once and in pieces, de-chunked for an HTTP/1.0 client.
 *
 * Input: byte 0 = options (HEAD request, HTTP/1.0 client, client wants
 * close, upgrade requested, piece size), the rest = upstream bytes.
 *
 * Invariants (a failure aborts):
 *  - scanning in pieces gives the same head length as at once;
 *  - the client head is exactly one complete head that parses again with
 *    the same status, exactly one X-Trace-Id (ours), no hop-by-hop field
 *    (except Upgrade/Connection on 101), Connection: close exactly when the
 *    proxy closes, and the same body framing (or, de-chunking, a body
 *    delimited by the close; for 1xx and 204, no framing field at all);
 *  - the body parse at once and in pieces agree on outcome, bytes used and
 *    decoded bytes; decoded bytes never exceed the raw bytes of one pass
 *    (proxy.c on_decoded relies on it). */
#include "fuzz_check.h"
#include "net/net_int.h"
#include "sg/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_resp_yaml[] = "listeners:\n"
                                  "  - {name: api, address: 127.0.0.1:0}\n"
                                  "upstreams:\n"
                                  "  app: {servers: [127.0.0.1:3000]}\n"
                                  "limits: {request_line_bytes: 1k, header_bytes: 4k, header_count: 24}\n"
                                  "routes:\n"
                                  "  - {match: {prefix: /}, upstream: app}\n";

static const char k_resp_tid[] = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";

static const sg_config_t *resp_cfg(void)
{
    static sg_config_t *cfg;
    if (!cfg) {
        char err[512];
        int r =
            sg_config_load_string("fuzz_response.yaml", k_resp_yaml, sizeof(k_resp_yaml) - 1, &cfg, err, sizeof(err));
        if (r != 0)
            fprintf(stderr, "fuzz_response config: %s\n", err);
        FUZZ_CHECK(r == 0);
    }
    return cfg;
}

static void resp_count(void *ud, const char *p, size_t n)
{
    SG_UNUSED(p);
    *(size_t *)ud += n;
}

static void resp_check_client_head(const sg_config_t *cfg, const sg_h1_head_t *h, bool skip_body, bool decode,
                                   bool will_close, const char *out, size_t len)
{
    static sg_h1_header_t hdrs[4096];
    const sg_h1_limits_t big = {1u << 20, 1u << 20, 4000};
    sg_h1_scan_t s;
    sg_h1_scan_init(&s);
    size_t used = 0;
    FUZZ_CHECK(sg_h1_scan_feed(&s, &big, out, len, &used) == SG_H1_SCAN_DONE);
    FUZZ_CHECK(used == len); /* nothing after the head: no injected response */
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_RESPONSE);
    FUZZ_CHECK(sg_h1_parse_head(&p, out, len, hdrs, SG_ARRAY_SIZE(hdrs), skip_body) == 0);
    const sg_h1_head_t *c = &p.head;
    FUZZ_CHECK(c->status == h->status);
    FUZZ_CHECK(c->version_major == 1 && c->version_minor == 1);
    size_t n = 0;
    const sg_h1_header_t *x = sg_h1_find(c, sg_str_cstr(cfg->trace.header), &n);
    FUZZ_CHECK(n == 1 && sg_str_eq(x->value, SG_STR(k_resp_tid)));
    bool is_101 = h->status == 101;
    if (!is_101) {
        const sg_h1_header_t *cn = sg_h1_find(c, SG_STR("connection"), &n);
        FUZZ_CHECK(n == (will_close ? 1u : 0u));
        if (cn)
            FUZZ_CHECK(sg_str_eq(cn->value, SG_STR("close")));
        static const sg_str_t hop[] = {SG_STR("keep-alive"), SG_STR("upgrade"), SG_STR("te"), SG_STR("trailer"),
                                       SG_STR("proxy-connection")};
        for (size_t i = 0; i < SG_ARRAY_SIZE(hop); i++) {
            sg_h1_find(c, hop[i], &n);
            FUZZ_CHECK(n == 0);
        }
    }
    if (decode) {
        sg_h1_find(c, SG_STR("transfer-encoding"), &n);
        FUZZ_CHECK(n == 0 && !c->is_chunked);
        FUZZ_CHECK(!c->has_content_length);
        FUZZ_CHECK(c->has_body && c->is_eof_body && will_close);
    } else if (h->status < 200 || h->status == 204) {
        /* RFC 9112 6.1, RFC 9110 8.6: no framing fields in 1xx and 204. */
        sg_h1_find(c, SG_STR("transfer-encoding"), &n);
        FUZZ_CHECK(n == 0);
        sg_h1_find(c, SG_STR("content-length"), &n);
        FUZZ_CHECK(n == 0);
        FUZZ_CHECK(!c->has_body);
    } else {
        FUZZ_CHECK(c->has_content_length == h->has_content_length);
        FUZZ_CHECK(c->content_length == h->content_length);
        FUZZ_CHECK(c->is_chunked == h->is_chunked);
        FUZZ_CHECK(c->has_body == h->has_body);
        if (h->is_eof_body)
            FUZZ_CHECK(c->is_eof_body && will_close);
        else
            FUZZ_CHECK(!c->is_eof_body || !c->has_body);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const sg_config_t *cfg = resp_cfg();
    uint8_t opt = data[0];
    bool skip_body = (opt & 1) != 0;    /* the request was HEAD */
    bool client_is_10 = (opt & 2) != 0; /* HTTP/1.0 client: chunked is decoded */
    bool client_close = (opt & 4) != 0; /* client asked to close (or draining) */
    /* the request asked to upgrade (never from HTTP/1.0: sg__proxy_head) */
    bool req_upgrade = (opt & 8) != 0 && !client_is_10;
    size_t piece = 1u + (size_t)(opt >> 4) * 11u;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    const sg_limits_conf_t *lim = &cfg->limits;
    sg_h1_limits_t hl = {lim->request_line_bytes, lim->header_bytes, lim->header_count};
    size_t head_bytes = ((size_t)lim->request_line_bytes + lim->header_bytes + 64 + 15u) & ~(size_t)15u;
    size_t max_hdrs = lim->header_count + 1;
    static char head[8192];
    static sg_h1_header_t hdrs[64], hdrs2[64];
    FUZZ_CHECK(head_bytes <= sizeof(head) && max_hdrs <= SG_ARRAY_SIZE(hdrs));

    /* Heads in a row, as resp_head_step: interim 1xx (not 101) come first. */
    size_t off = 0;
    sg_h1_parser_t p, p2;
    size_t head_len = 0;
    for (int round = 0;; round++) {
        if (round > 8)
            return 0;
        sg_h1_scan_t s;
        sg_h1_scan_init(&s);
        size_t used = 0;
        int r = sg_h1_scan_feed(&s, &hl, in + off, n - off, &used);
        /* again in pieces */
        sg_h1_scan_t s2;
        sg_h1_scan_init(&s2);
        size_t o2 = 0;
        int r2 = SG_H1_SCAN_MORE;
        while (o2 < n - off) {
            size_t k = SG_MIN(piece, n - off - o2), u2 = 0;
            r2 = sg_h1_scan_feed(&s2, &hl, in + off + o2, k, &u2);
            if (r2 < 0)
                break;
            o2 += u2;
            if (r2 == SG_H1_SCAN_DONE)
                break;
        }
        FUZZ_CHECK(r == r2);
        if (r != SG_H1_SCAN_DONE || used > head_bytes)
            return 0;
        FUZZ_CHECK(used == o2);
        memcpy(head, in + off, used);
        head_len = used;
        off += used;
        sg_h1_parser_init(&p, SG_H1_RESPONSE);
        if (sg_h1_parse_head(&p, head, head_len, hdrs, max_hdrs, skip_body) != 0)
            return 0;
        for (size_t i = 0; i < p.head.n_headers; i++) {
            sg_str_t v = p.head.headers[i].value;
            FUZZ_CHECK(!memchr(v.p, '\r', v.len) && !memchr(v.p, '\n', v.len) && !memchr(v.p, '\0', v.len));
        }
        if (p.head.status >= 100 && p.head.status < 200 && p.head.status != 101) {
            /* Forwarded to an HTTP/1.1 client as its own head (proxy.c
             * forward_interim): same checks, never Connection: close. */
            static char iout[16384];
            size_t ilen = 0, isize = head_bytes + max_hdrs * sizeof(sg_h1_header_t);
            int ib = sg__proxy_build_resphead(cfg, &p.head, k_resp_tid, false, false, iout, isize, &ilen);
            FUZZ_CHECK(ib == 0 || ib == -1);
            if (ib == 0)
                resp_check_client_head(cfg, &p.head, skip_body, false, false, iout, ilen);
            continue;
        }
        break;
    }
    const sg_h1_head_t *h = &p.head;
    if (h->status == 101 && !req_upgrade)
        return 0; /* proxy: 502 */

    /* Same decisions as resp_head_step (proxy.c). */
    bool will_close = client_close || client_is_10;
    bool decode = false;
    if (h->has_body && h->is_eof_body)
        will_close = true;
    if (h->has_body && h->is_chunked && client_is_10) {
        decode = true;
        will_close = true;
    }
    if (h->status == 101)
        will_close = false;
    static char out[16384];
    size_t head_size = head_bytes + max_hdrs * sizeof(sg_h1_header_t);
    size_t out_len = 0;
    int b = sg__proxy_build_resphead(cfg, h, k_resp_tid, decode, will_close, out, head_size, &out_len);
    FUZZ_CHECK(b == 0 || b == -1);
    if (b == 0)
        resp_check_client_head(cfg, h, skip_body, decode, will_close, out, out_len);

    if (!h->has_body || h->status == 101)
        return 0;
    /* Body: at once vs in pieces (decoded bytes counted). */
    sg_h1_parser_init(&p2, SG_H1_RESPONSE);
    FUZZ_CHECK(sg_h1_parse_head(&p2, head, head_len, hdrs2, max_hdrs, skip_body) == 0);
    const char *rest = in + off;
    size_t rn = n - off, dec1 = 0, dec2 = 0, used1 = 0;
    p2.on_body = resp_count;
    p2.ud = &dec1;
    int r1 = sg_h1_parse_body(&p2, rest, rn, &used1);
    int rc = sg_h1_check_body(&p, rest, rn);
    FUZZ_CHECK(r1 < 0 ? rc == r1 : rc == 0);
    p.on_body = resp_count;
    p.ud = &dec2;
    size_t o = 0;
    int r2 = SG_H1_BODY_MORE;
    while (o < rn) {
        size_t k = SG_MIN(piece, rn - o), used = 0, before = dec2;
        r2 = sg_h1_parse_body(&p, rest + o, k, &used);
        if (r2 < 0)
            break;
        FUZZ_CHECK(used <= k && dec2 - before <= used);
        o += used;
        if (r2 == SG_H1_BODY_DONE)
            break;
    }
    FUZZ_CHECK(r1 == r2);
    if (r1 >= 0)
        FUZZ_CHECK(used1 == o && dec1 == dec2 && dec1 <= used1);
    if (r1 == SG_H1_BODY_MORE && h->is_eof_body) {
        /* The upstream closes: an EOF-delimited body ends cleanly. */
        FUZZ_CHECK(sg_h1_finish(&p) == SG_H1_BODY_DONE);
    }
    return 0;
}
