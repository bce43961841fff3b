/* Differential fuzz target, response direction (issue #15). Upstream bytes
 * answering a GET or a HEAD go through swarmgate's response path as
 * proxy.c runs it (resp_head_step, forward_interim, resp_body_step,
 * sg__proxy_up_eof), without sockets:
 *   head scanner -> sg_h1_parse_head (skip_body for HEAD) -> interim 1xx
 *   (not 101) built by sg__proxy_build_resphead and sent on at once ->
 *   the final head, built the same way -> the body, fed to
 *   sg_h1_parse_body in reads of `piece` bytes, each read's accepted bytes
 *   sent on unchanged -> the upstream closes after the last byte
 *   (sg_h1_finish ends a body read until close).
 * What goes to the client is collected in one buffer. The strict reference
 * reader (h1ref.c) then reads
 *  (a) the client bytes: exactly the responses swarmgate saw and sent on
 *      (each interim, then the final one) with the same status, reason as
 *      written, fields as swarmgate's own parser reads the head it built,
 *      the same decoded body, ending where swarmgate's forwarding ended;
 *      a response cut short (upstream closed mid-body, body refused) is a
 *      valid prefix only. The client side closes after the response when
 *      swarmgate says Connection: close.
 *  (b) the upstream bytes: every response swarmgate accepted (heads, the
 *      body bytes it sent on) is accepted by the reference with the same
 *      boundaries, status, version, fields and decoded body.
 *
 * The client sent no Expect and asked for no upgrade (an upstream 101 is a
 * 502 here, as in proxy.c). An HTTP/1.0 client gets no interim response
 * and a chunked body de-chunked (SG_TXN_F_DECODE: the decoded bytes go
 * out, the close ends the body). Bytes after the final response are
 * dropped by swarmgate (the connection is not reused) and not read by the
 * reference.
 *
 * Input: byte 0 = options (bit 0: the request was HEAD, bit 1: the client
 * asked to close, bit 2: the client is HTTP/1.0, bits 4-7: read size
 * 1 + 11*k), the rest = upstream bytes. */
#include "fuzz_diff.h"
#include "net/net_int.h"
#include "sg/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_dresp_yaml[] = "listeners:\n"
                                   "  - {name: api, address: 127.0.0.1:0}\n"
                                   "upstreams:\n"
                                   "  app: {servers: [127.0.0.1:3000]}\n"
                                   "limits: {request_line_bytes: 1k, header_bytes: 4k, header_count: 24}\n"
                                   "routes:\n"
                                   "  - {match: {prefix: /}, upstream: app}\n";

static const char k_dresp_tid[] = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";

#define DRESP_MAX_MSGS (H1REF_MAX_MSGS - 1)
#define DRESP_IN_MAX 16384
#define DRESP_OUT_MAX (DRESP_MAX_MSGS * 16384 + DRESP_IN_MAX)

static const sg_config_t *dresp_cfg(void)
{
    static sg_config_t *cfg;
    if (!cfg) {
        char err[512];
        int r = sg_config_load_string("fuzz_diff_response.yaml", k_dresp_yaml, sizeof(k_dresp_yaml) - 1, &cfg, err,
                                      sizeof(err));
        if (r != 0)
            fprintf(stderr, "fuzz_diff_response config: %s\n", err);
        FUZZ_CHECK(r == 0);
    }
    return cfg;
}

/* One upstream response head (interim or final) as swarmgate handled it. */
typedef struct dresp_msg {
    sg_h1_head_t head; /* slices into the upstream bytes */
    size_t head_end;   /* upstream offset after the head */
    size_t end;        /* upstream offset after the response (is_complete) */
    size_t fwd_end;    /* upstream offset up to which bytes went to the client */
    bool is_complete;
    bool is_sent;                      /* its head went to the client (an interim too large for a head is dropped) */
    bool is_refused;                   /* the body was refused after part of it went to the client (aborted) */
    size_t c_start, c_head_end, c_end; /* offsets in the client bytes */
    size_t body0, body_len;            /* decoded by swarmgate */
    sg_h1_header_t hdrs[64];
} dresp_msg_t;

static struct {
    dresp_msg_t msg[DRESP_MAX_MSGS];
    size_t n_msgs;
    bool will_close;
    bool is_decode;
    char out[DRESP_OUT_MAX];
    size_t out_len;
    char body[DRESP_IN_MAX];
    size_t body_len;
    char ref_body[DRESP_OUT_MAX + DRESP_IN_MAX];
    h1ref_out_t rin, rout;
    sg_h1_header_t chdrs[4096];
} g_dresp;

static void dresp_on_body(void *ud, const char *p, size_t n)
{
    dresp_msg_t *m = ud;
    FUZZ_CHECK(g_dresp.body_len + n <= sizeof(g_dresp.body));
    memcpy(g_dresp.body + g_dresp.body_len, p, n);
    g_dresp.body_len += n;
    m->body_len += n;
}

static void dresp_out_put(const char *p, size_t n)
{
    FUZZ_CHECK(g_dresp.out_len + n <= sizeof(g_dresp.out));
    memcpy(g_dresp.out + g_dresp.out_len, p, n);
    g_dresp.out_len += n;
}

static void dresp_run(const char *in, size_t n, bool is_head, bool client_close, bool client_10, size_t piece)
{
    const sg_config_t *cfg = dresp_cfg();
    const sg_limits_conf_t *lim = &cfg->limits;
    sg_h1_limits_t hl = {lim->request_line_bytes, lim->header_bytes, lim->header_count}; /* resp_limits */
    size_t head_bytes = ((size_t)lim->request_line_bytes + lim->header_bytes + 64 + 15u) & ~(size_t)15u;
    size_t max_hdrs = lim->header_count + 1;
    size_t head_size = head_bytes + max_hdrs * sizeof(sg_h1_header_t);
    static char built[32768];
    FUZZ_CHECK(max_hdrs <= SG_ARRAY_SIZE(g_dresp.msg[0].hdrs) && head_size <= sizeof(built));

    size_t pos = 0;
    while (g_dresp.n_msgs < DRESP_MAX_MSGS) {
        dresp_msg_t *m = &g_dresp.msg[g_dresp.n_msgs];
        memset(m, 0, sizeof(*m));
        sg_h1_scan_t s;
        sg_h1_scan_init(&s);
        size_t head_len = 0;
        if (sg_h1_scan_feed(&s, &hl, in + pos, n - pos, &head_len) != SG_H1_SCAN_DONE || head_len > head_bytes)
            return; /* 502, or the upstream closed inside the head */
        sg_h1_parser_t p;
        sg_h1_parser_init(&p, SG_H1_RESPONSE);
        p.max_trailer_bytes = lim->header_bytes; /* resp_head_step */
        p.max_trailer_count = lim->header_count;
        if (sg_h1_parse_head(&p, in + pos, head_len, m->hdrs, max_hdrs, is_head) != 0)
            return; /* 502 */
        const sg_h1_head_t *h = &p.head;
        bool is_interim = h->status >= 100 && h->status < 200 && h->status != 101;
        if (h->status == 101)
            return; /* no upgrade was asked: 502 */
        /* resp_head_step's decisions: an HTTP/1.0 client is never kept alive */
        bool will_close = client_close || client_10;
        bool decode = false;
        if (!is_interim && h->has_body && h->is_eof_body)
            will_close = true;
        if (!is_interim && h->has_body && h->is_chunked && client_10) {
            decode = true;
            will_close = true;
        }
        size_t blen = 0;
        /* forward_interim: an interim head is never Connection: close, and
         * never goes to an HTTP/1.0 client */
        int b = -1;
        if (!is_interim || !client_10)
            b = sg__proxy_build_resphead(cfg, h, k_dresp_tid, decode, is_interim ? false : will_close, built, head_size,
                                         &blen);
        if (b != 0 && !is_interim)
            return; /* 502: response head too large */
        m->head = *h;
        m->head_end = pos + head_len;
        m->fwd_end = m->head_end;
        m->is_sent = b == 0;
        m->c_start = g_dresp.out_len;
        if (m->is_sent)
            dresp_out_put(built, blen);
        m->c_head_end = g_dresp.out_len;
        m->body0 = g_dresp.body_len;
        g_dresp.n_msgs++;
        pos += head_len;
        if (is_interim) {
            m->is_complete = true;
            m->end = pos;
            m->c_end = g_dresp.out_len;
            continue;
        }
        g_dresp.will_close = will_close;
        g_dresp.is_decode = decode;
        if (h->has_body) {
            p.on_body = dresp_on_body;
            p.ud = m;
            int r = SG_H1_BODY_MORE;
            while (pos < n) {
                size_t k = SG_MIN(piece, n - pos), used = 0, before = g_dresp.body_len;
                r = sg_h1_parse_body(&p, in + pos, k, &used);
                if (r < 0) {
                    m->is_refused = true;
                    return; /* "invalid response body from upstream": the client connection is aborted */
                }
                FUZZ_CHECK(used <= k);
                if (decode) /* resp_body_step: the decoded bytes of this read */
                    dresp_out_put(g_dresp.body + before, g_dresp.body_len - before);
                else
                    dresp_out_put(in + pos, used);
                pos += used;
                m->fwd_end = pos;
                if (r == SG_H1_BODY_DONE)
                    break;
            }
            /* sg__proxy_up_eof: the upstream closed after the last byte */
            if (r != SG_H1_BODY_DONE && sg_h1_finish(&p) != SG_H1_BODY_DONE)
                return; /* "upstream closed mid-body": aborted */
        }
        m->is_complete = true;
        m->end = pos;
        m->c_end = g_dresp.out_len;
        return;
    }
}

static void dresp_report(const char *what, size_t i, const char *in, size_t n)
{
    fprintf(stderr, "fuzz_diff_response: MISMATCH at response %zu: %s\n", i, what);
    diff_print("upstream bytes", in, n);
    for (size_t k = 0; k < g_dresp.n_msgs; k++) {
        const dresp_msg_t *m = &g_dresp.msg[k];
        fprintf(stderr,
                "  swarmgate resp %zu: status %u head_end %zu end %zu fwd_end %zu complete %d sent %d "
                "body %zu, client %zu..%zu..%zu\n",
                k, m->head.status, m->head_end, m->end, m->fwd_end, m->is_complete, m->is_sent, m->body_len, m->c_start,
                m->c_head_end, m->c_end);
    }
    diff_print("client bytes", g_dresp.out, g_dresp.out_len);
    diff_print_ref("upstream bytes", &g_dresp.rin);
    diff_print_ref("client bytes", &g_dresp.rout);
}

#define DRESP_CHECK(cond, kind, i, what)                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            dresp_report((what), (i), in, n);                                                                          \
            FUZZ_CHECK(cond);                                                                                          \
        }                                                                                                              \
    } while (0)

/* (b): response i as swarmgate took it from the upstream. */
static bool dresp_check_upstream(size_t i, const char *in, size_t n)
{
    const dresp_msg_t *m = &g_dresp.msg[i];
    const h1ref_out_t *r = &g_dresp.rin;
    const h1ref_msg_t *rm = &r->msg[i];
    bool is_ref_complete = i < r->n_msgs;
    if (m->is_complete) {
        DRESP_CHECK(is_ref_complete, DIFF_CLIENT, i, "swarmgate took a response the reference does not");
        DRESP_CHECK(rm->end == m->end, DIFF_CLIENT, i, "response ends elsewhere for the reference");
    } else if (is_ref_complete) {
        DRESP_CHECK(rm->end > m->fwd_end, DIFF_CLIENT, i, "reference ends the response inside what swarmgate sent on");
    } else {
        /* The upstream closed inside the body, or the body was refused
         * after part of it went on (the client connection is aborted):
         * a valid prefix, but for a line not yet checked (fuzz_diff.h). */
        DRESP_CHECK(r->state != H1REF_ERROR || diff_err_in_open_line(in, r->err_off, m->fwd_end), DIFF_CLIENT, i,
                    "reference refuses bytes swarmgate sent on");
    }
    DRESP_CHECK(rm->head_end == m->head_end, DIFF_CLIENT, i, "head ends elsewhere for the reference");
    const sg_h1_head_t *h = &m->head;
    DRESP_CHECK(h->status == (unsigned)rm->status, DIFF_CLIENT, i, "status differs");
    DRESP_CHECK(diff_eq(h->reason, rm->reason), DIFF_CLIENT, i, "reason differs");
    /* HTTP/1.2-1.9 are HTTP/1.1 to swarmgate (h1ref.h): minor 1 or the digit sent. */
    DRESP_CHECK(h->version_major == 1 &&
                    (h->version_minor == rm->version_minor || (rm->version_minor > 1 && h->version_minor == 1)),
                DIFF_CLIENT, i, "version differs");
    DRESP_CHECK(diff_fields_eq(h, r, rm), DIFF_CLIENT, i, "fields differ");
    if (m->is_complete)
        DRESP_CHECK(diff_body_eq(g_dresp.body + m->body0, m->body_len, r, rm), DIFF_CLIENT, i, "decoded body differs");
    return true;
}

/* (a): response i as it went to the client (j: its index there, dropped
 * interims left out), read by the reference. */
static bool dresp_check_client(size_t i, size_t j, bool is_head, const char *in, size_t n)
{
    const dresp_msg_t *m = &g_dresp.msg[i];
    const h1ref_out_t *r = &g_dresp.rout;
    const h1ref_msg_t *cm = &r->msg[j];
    if (m->is_complete) {
        DRESP_CHECK(j < r->n_msgs, DIFF_FORWARDED, i, "client: the reference does not read the response sent");
        DRESP_CHECK(cm->end == m->c_end, DIFF_FORWARDED, i, "client: response ends elsewhere for the reference");
    } else {
        DRESP_CHECK(r->n_msgs == j &&
                        (r->state == H1REF_PARTIAL ||
                         (r->state == H1REF_ERROR && diff_err_in_open_line(g_dresp.out, r->err_off, g_dresp.out_len))),
                    DIFF_FORWARDED, i, "client: a response cut short is not a valid prefix for the reference");
    }
    DRESP_CHECK(cm->start == m->c_start && cm->head_end == m->c_head_end, DIFF_FORWARDED, i,
                "client: head boundaries differ");
    const sg_h1_head_t *h = &m->head;
    DRESP_CHECK(h->status == (unsigned)cm->status && cm->version_minor == 1, DIFF_FORWARDED, i,
                "client: status line differs");
    const char *reason = h->reason.len ? NULL : sg_h1_reason_phrase(h->status);
    DRESP_CHECK(reason ? diff_eq_cstr(reason, strlen(reason), cm->reason) : diff_eq(h->reason, cm->reason),
                DIFF_FORWARDED, i, "client: reason differs");
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_RESPONSE);
    int pr = sg_h1_parse_head(&p, g_dresp.out + m->c_start, m->c_head_end - m->c_start, g_dresp.chdrs,
                              SG_ARRAY_SIZE(g_dresp.chdrs), is_head);
    DRESP_CHECK(pr == 0, DIFF_FORWARDED, i, "client: swarmgate refuses the head it built");
    DRESP_CHECK(diff_fields_eq(&p.head, r, cm), DIFF_FORWARDED, i, "client: fields differ");
    if (m->is_complete) {
        DRESP_CHECK(diff_body_eq(g_dresp.body + m->body0, m->body_len, r, cm), DIFF_FORWARDED, i,
                    "client: decoded body differs");
        const h1ref_msg_t *rm = &g_dresp.rin.msg[i];
        if (!g_dresp.is_decode) /* de-chunking drops them */
            DRESP_CHECK(diff_trailers_eq(r, cm, &g_dresp.rin, rm), DIFF_FORWARDED, i, "client: trailers differ");
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > DRESP_IN_MAX)
        return 0;
    uint8_t opt = data[0];
    bool is_head = (opt & 1) != 0;
    bool client_close = (opt & 2) != 0;
    bool client_10 = (opt & 4) != 0;
    size_t piece = 1u + (size_t)(opt >> 4) * 11u;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    g_dresp.n_msgs = g_dresp.out_len = g_dresp.body_len = 0;
    g_dresp.will_close = g_dresp.is_decode = false;
    dresp_run(in, n, is_head, client_close, client_10, piece);

    const sg_limits_conf_t *lim = &dresp_cfg()->limits;
    const h1ref_limits_t rl = {lim->header_count, lim->header_bytes};
    h1ref_init(&g_dresp.rin, g_dresp.ref_body, sizeof(g_dresp.ref_body));
    h1ref_parse_response(&g_dresp.rin, in, n, is_head, true, &rl); /* the upstream closes after its bytes */
    /* The client sees the close when swarmgate closes after a complete
     * response; a response cut short is an abort (not an end). */
    bool is_final_done =
        g_dresp.n_msgs && g_dresp.msg[g_dresp.n_msgs - 1].is_complete &&
        !(g_dresp.msg[g_dresp.n_msgs - 1].head.status >= 100 && g_dresp.msg[g_dresp.n_msgs - 1].head.status < 200);
    h1ref_init(&g_dresp.rout, g_dresp.ref_body, sizeof(g_dresp.ref_body));
    g_dresp.rout.body_len = g_dresp.rin.body_len;
    h1ref_parse_response(&g_dresp.rout, g_dresp.out, g_dresp.out_len, is_head, is_final_done && g_dresp.will_close,
                         &rl);

    if (diff_tracing())
        fprintf(stderr,
                "diff_response: swarmgate %zu response(s)%s, %zu client bytes; reference: upstream %zu+%d (%s), client "
                "%zu+%d (%s)\n",
                g_dresp.n_msgs,
                g_dresp.n_msgs && !g_dresp.msg[g_dresp.n_msgs - 1].is_complete ? " (last cut short)" : "",
                g_dresp.out_len, g_dresp.rin.n_msgs, (int)g_dresp.rin.state, h1ref_err_name(g_dresp.rin.err),
                g_dresp.rout.n_msgs, (int)g_dresp.rout.state, h1ref_err_name(g_dresp.rout.err));
    size_t j = 0;
    for (size_t i = 0; i < g_dresp.n_msgs; i++) {
        if (!dresp_check_upstream(i, in, n))
            return 0;
        if (!g_dresp.msg[i].is_sent)
            continue;
        if (!dresp_check_client(i, j, is_head, in, n))
            return 0;
        j++;
    }
    if (is_final_done) {
        const h1ref_out_t *r = &g_dresp.rout;
        if (!(r->n_msgs == j && r->state == H1REF_END && r->msg[j - 1].end == g_dresp.out_len)) {
            dresp_report("client: bytes after the final response", g_dresp.n_msgs, in, n);
            FUZZ_CHECK(r->n_msgs == j && r->state == H1REF_END);
        }
    }
    return 0;
}
