/* The trace id of a request whose head could not be parsed whole.
 *
 * A proxy-made error for such a request (431, 400 for Content-Length with
 * Transfer-Encoding, a malformed line further down, a header timeout) still
 * reuses the client's X-Trace-Id when the line carrying it was received
 * whole and is valid (issue #16, item 4): the trace rules of
 * sg_trace_resolve() run over the complete field lines received before the
 * head went wrong. A new id only when no such line was read. */
#include "net/net_int.h"

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 5.6.2 */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_trace_name(const sg_config_t *cfg, sg_str_t n)
{
    if (sg_str_ieq(n, sg_str_cstr(cfg->trace.header)) || sg_str_ieq(n, SG_STR("traceparent")) ||
        sg_str_ieq(n, SG_STR("tracestate")))
        return true;
    for (size_t a = 0; a < cfg->trace.n_accept_headers; a++)
        if (sg_str_ieq(n, sg_str_cstr(cfg->trace.accept_headers[a])))
            return true;
    return false;
}

static void add_value(sg_str_t *arr, size_t *n, sg_str_t v)
{
    if (*n < SG_TRACE_MAX_VALUES)
        arr[*n] = v;
    (*n)++; /* counted beyond the array: then invalid */
}

void sg__proxy_trace_in(const sg_config_t *cfg, const sg_h1_head_t *h, sg_trace_in_t *in)
{
    /* The value arrays are read only up to their counts. */
    in->n_xtid = in->n_alias = in->n_traceparent = in->n_tracestate = 0;
    size_t alias_rank = SIZE_MAX;
    sg_str_t idname = sg_str_cstr(cfg->trace.header);
    for (size_t i = 0; i < h->n_headers; i++) {
        sg_str_t n = h->headers[i].name, v = h->headers[i].value;
        if (sg_str_ieq(n, idname)) {
            add_value(in->xtid, &in->n_xtid, v);
        } else if (h->headers[i].kind == SG_H1_F_TRACEPARENT) {
            add_value(in->traceparent, &in->n_traceparent, v);
        } else if (h->headers[i].kind == SG_H1_F_TRACESTATE) {
            add_value(in->tracestate, &in->n_tracestate, v);
        } else {
            for (size_t a = 0; a < cfg->trace.n_accept_headers && a <= alias_rank; a++) {
                if (!sg_str_ieq(n, sg_str_cstr(cfg->trace.accept_headers[a])))
                    continue;
                if (a < alias_rank) { /* a higher-priority alias: start over */
                    alias_rank = a;
                    in->n_alias = 0;
                }
                add_value(in->alias, &in->n_alias, v);
                break;
            }
        }
    }
}

size_t sg__head_trace_fields(const sg_config_t *cfg, const char *raw, size_t len, sg_h1_header_t *out, size_t cap,
                             bool *is_full)
{
    const char *p = raw, *end = raw + len;
    size_t n = 0;
    bool is_start = true, last_kept = false;
    *is_full = false;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            break; /* an incomplete line was not read */
        sg_str_t line = sg_str_make(p, (size_t)(lf - p));
        p = lf + 1;
        if (line.len && line.p[line.len - 1] == '\r')
            line.len--;
        if (is_start) {
            if (line.len) /* empty lines before the start line are allowed (RFC 9112 2.2) */
                is_start = false;
            continue;
        }
        if (line.len == 0)
            break; /* end of the head */
        if (line.p[0] == ' ' || line.p[0] == '\t') {
            /* obs-fold: the previous line's value goes on here, so it was
             * not read as sent; nothing after it is trusted either. */
            if (last_kept)
                n--;
            break;
        }
        const char *colon = memchr(line.p, ':', line.len);
        if (!colon || colon == line.p)
            break;
        sg_str_t name = sg_str_make(line.p, (size_t)(colon - line.p));
        bool ok = true;
        for (size_t i = 0; i < name.len && ok; i++)
            ok = is_tchar((unsigned char)name.p[i]);
        if (!ok)
            break; /* not a field line (RFC 9112 5.1: no space before the colon either) */
        last_kept = false;
        if (!is_trace_name(cfg, name))
            continue;
        if (n == cap) {
            *is_full = true;
            break;
        }
        sg_str_t v = sg_str_make(colon + 1, (size_t)(line.p + line.len - colon - 1));
        while (v.len && (v.p[0] == ' ' || v.p[0] == '\t')) {
            v.p++;
            v.len--;
        }
        while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t'))
            v.len--;
        out[n].name = name;
        out[n].value = v;
        out[n].kind = (uint8_t)sg_h1_field_kind(name);
        n++;
        last_kept = true;
    }
    return n;
}

void sg__head_trace_resolve(sg_txn_t *t)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    /* Room for every trace header at its value limit and one more line:
     * a header with more lines than SG_TRACE_MAX_VALUES is invalid. */
    sg_h1_header_t fields[4 * (SG_TRACE_MAX_VALUES + 1)];
    bool is_full = false;
    size_t n = t->rd.head ? sg__head_trace_fields(t->gen->cfg, t->rd.head, t->rd.head_len, fields,
                                                  SG_ARRAY_SIZE(fields), &is_full)
                          : 0;
    if (is_full)
        n = 0; /* more trace lines than can be judged: nothing is reused */
    uint32_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= SG_H1_F_BIT(fields[i].kind);
    sg_h1_head_t h = {.kind = SG_H1_REQUEST, .headers = fields, .n_headers = n, .field_mask = mask};
    sg_trace_in_t in;
    sg__proxy_trace_in(t->gen->cfg, &h, &in);
    sg_trace_resolve(&in, sg_obs_sample_new(w->obs), &t->trace);
    t->has_trace = true;
    if (t->conn->lst->idx >= 0)
        sg_obs_trace_resolved(w->obs, &t->trace);
}
