/* h1ref: a strict HTTP/1.1 reader from RFC 9112 grammar (see h1ref.h).
 *
 * Included by the differential fuzz targets (one translation unit each;
 * test/unit/fuzz_replay_test.c includes both targets, hence the guard).
 * Each parse step returns H1R_OK, H1R_MORE (the input ended inside a valid
 * message) or H1R_ERR (o->err and o->err_off set). */
#ifndef SG_H1REF_C
#define SG_H1REF_C

#include "h1ref.h"

#include <string.h>

enum { H1R_OK = 0, H1R_MORE = 1, H1R_ERR = -1 };

typedef struct h1ref_cur {
    const unsigned char *p;
    size_t n, i;
    h1ref_out_t *o;
    const h1ref_limits_t *lim;
} h1ref_cur_t;

#define NEED(c)                                                                                                        \
    do {                                                                                                               \
        if ((c)->i >= (c)->n)                                                                                          \
            return H1R_MORE;                                                                                           \
    } while (0)

static int h1ref_fail(h1ref_cur_t *c, h1ref_err_t e, size_t off)
{
    c->o->err = e;
    c->o->err_off = off;
    return H1R_ERR;
}

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static bool h1ref_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool h1ref_vchar(unsigned char ch)
{
    return ch >= 0x21 && ch <= 0x7e;
}

/* field-vchar = VCHAR / obs-text; inside a value SP and HTAB too. */
static bool h1ref_value_byte(unsigned char ch)
{
    return h1ref_vchar(ch) || ch >= 0x80 || ch == ' ' || ch == '\t';
}

static bool h1ref_hex(unsigned char ch, unsigned *v)
{
    if (ch >= '0' && ch <= '9')
        *v = ch - '0';
    else if (ch >= 'a' && ch <= 'f')
        *v = ch - 'a' + 10u;
    else if (ch >= 'A' && ch <= 'F')
        *v = ch - 'A' + 10u;
    else
        return false;
    return true;
}

/* lit: lower case */
static bool h1ref_ieq(h1ref_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (a != b)
            return false;
    }
    return true;
}

static h1ref_str_t h1ref_mk(const h1ref_cur_t *c, size_t from, size_t to)
{
    h1ref_str_t s = {(const char *)c->p + from, to - from};
    return s;
}

/* CRLF at c->i (the CR already seen there). */
static int h1ref_crlf(h1ref_cur_t *c)
{
    NEED(c);
    if (c->p[c->i] != '\r')
        return h1ref_fail(c, H1REF_E_LINE_END, c->i);
    c->i++;
    NEED(c);
    if (c->p[c->i] != '\n')
        return h1ref_fail(c, H1REF_E_LINE_END, c->i);
    c->i++;
    return H1R_OK;
}

static void h1ref_body_put(h1ref_out_t *o, h1ref_msg_t *m, const unsigned char *p, size_t n)
{
    if (o->body_len + n > o->body_cap)
        n = o->body_cap - o->body_len; /* never with a body buffer as large as the input */
    memcpy(o->body + o->body_len, p, n);
    o->body_len += n;
    m->body_len += n;
}

/* RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name
 * case-sensitive; only major version 1 is HTTP/1.x (see h1ref.h). */
static int h1ref_version(h1ref_cur_t *c, int *minor)
{
    static const char lit[] = "HTTP/1.";
    for (size_t k = 0; k < sizeof(lit) - 1; k++) {
        NEED(c);
        if (c->p[c->i] != (unsigned char)lit[k])
            return h1ref_fail(c, H1REF_E_VERSION, c->i);
        c->i++;
    }
    NEED(c);
    if (c->p[c->i] < '0' || c->p[c->i] > '9')
        return h1ref_fail(c, H1REF_E_VERSION, c->i);
    *minor = c->p[c->i] - '0';
    c->i++;
    return H1R_OK;
}

/* RFC 9112 2.2: a recipient SHOULD ignore at least one empty line (CRLF)
 * before the start line. A bare LF is not a line end here either. */
static int h1ref_skip_empty_lines(h1ref_cur_t *c)
{
    for (;;) {
        NEED(c);
        if (c->p[c->i] != '\r')
            return c->p[c->i] == '\n' ? h1ref_fail(c, H1REF_E_LINE_END, c->i) : H1R_OK;
        int r = h1ref_crlf(c);
        if (r != H1R_OK)
            return r;
    }
}

/* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 3) */
static int h1ref_request_line(h1ref_cur_t *c, h1ref_msg_t *m)
{
    size_t s = c->i;
    for (;;) {
        NEED(c);
        unsigned char ch = c->p[c->i];
        if (ch == ' ' && c->i > s)
            break;
        if (!h1ref_tchar(ch))
            return h1ref_fail(c, H1REF_E_METHOD, c->i);
        c->i++;
    }
    m->method = h1ref_mk(c, s, c->i);
    c->i++;
    NEED(c);
    if (c->p[c->i] == ' ') /* RFC 9112 3: each element separated by a single SP */
        return h1ref_fail(c, H1REF_E_EXTRA_SP, c->i);
    s = c->i;
    for (;;) {
        NEED(c);
        unsigned char ch = c->p[c->i];
        if (ch == ' ' && c->i > s)
            break;
        if (ch >= 0x80)
            return h1ref_fail(c, H1REF_E_TARGET_8BIT, c->i);
        if (!h1ref_vchar(ch))
            return h1ref_fail(c, H1REF_E_TARGET, c->i);
        c->i++;
    }
    m->target = h1ref_mk(c, s, c->i);
    c->i++;
    NEED(c);
    if (c->p[c->i] == ' ')
        return h1ref_fail(c, H1REF_E_EXTRA_SP, c->i);
    int r = h1ref_version(c, &m->version_minor);
    return r != H1R_OK ? r : h1ref_crlf(c);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
 * (RFC 9112 4); status-code = 3DIGIT, 100-599 (RFC 9110 15). */
static int h1ref_status_line(h1ref_cur_t *c, h1ref_msg_t *m)
{
    int r = h1ref_version(c, &m->version_minor);
    if (r != H1R_OK)
        return r;
    NEED(c);
    if (c->p[c->i] != ' ')
        return h1ref_fail(c, H1REF_E_VERSION, c->i);
    c->i++;
    NEED(c);
    if (c->p[c->i] == ' ') /* RFC 9112 4: a single SP */
        return h1ref_fail(c, H1REF_E_EXTRA_SP, c->i);
    int st = 0;
    for (int k = 0; k < 3; k++) {
        NEED(c);
        unsigned char ch = c->p[c->i];
        if (ch < '0' || ch > '9' || (k == 0 && (ch < '1' || ch > '5')))
            return h1ref_fail(c, H1REF_E_STATUS, c->i);
        st = st * 10 + (ch - '0');
        c->i++;
    }
    m->status = st;
    NEED(c);
    if (c->p[c->i] == '\r') { /* no SP before an empty reason: accepted (h1ref.h) */
        m->reason = h1ref_mk(c, c->i, c->i);
        return h1ref_crlf(c);
    }
    if (c->p[c->i] != ' ')
        return h1ref_fail(c, H1REF_E_STATUS, c->i);
    c->i++;
    size_t s = c->i;
    for (;;) {
        NEED(c);
        unsigned char ch = c->p[c->i];
        if (ch == '\r')
            break;
        /* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) */
        if (!h1ref_value_byte(ch))
            return h1ref_fail(c, H1REF_E_REASON, c->i);
        c->i++;
    }
    m->reason = h1ref_mk(c, s, c->i);
    return h1ref_crlf(c);
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 5), lines up
 * to the empty line. In a trailer section every error is
 * H1REF_E_TRAILER(_LIMIT), so that it can be told from a head error. */
static int h1ref_fields(h1ref_cur_t *c, bool is_trailer, size_t *first, size_t *count)
{
    h1ref_out_t *o = c->o;
    size_t bytes = 0;
    *first = o->n_fields;
    *count = 0;
    for (;;) {
        size_t ls = c->i;
        NEED(c);
        unsigned char ch = c->p[c->i];
        if (ch == '\r' || ch == '\n') {
            int r = h1ref_crlf(c);
            if (r == H1R_ERR && is_trailer)
                o->err = H1REF_E_TRAILER;
            return r;
        }
        /* RFC 9112 5.2: obs-fold is refused; 2.2: neither may the first
         * field line start with whitespace. */
        if (ch == ' ' || ch == '\t')
            return h1ref_fail(c, is_trailer ? H1REF_E_TRAILER : H1REF_E_WS_LINE, c->i);
        while (c->i < c->n && h1ref_tchar(c->p[c->i]))
            c->i++;
        NEED(c);
        if (c->i == ls || c->p[c->i] != ':')
            return h1ref_fail(c, is_trailer ? H1REF_E_TRAILER : H1REF_E_FIELD_NAME, c->i);
        size_t ne = c->i++;
        size_t vs = c->i;
        for (;;) {
            NEED(c);
            ch = c->p[c->i];
            if (ch == '\r')
                break;
            if (!h1ref_value_byte(ch))
                return h1ref_fail(c, is_trailer ? H1REF_E_TRAILER : H1REF_E_FIELD_VALUE, c->i);
            c->i++;
        }
        size_t ve = c->i;
        int r = h1ref_crlf(c);
        if (r != H1R_OK) {
            if (r == H1R_ERR && is_trailer)
                o->err = H1REF_E_TRAILER;
            return r;
        }
        while (vs < ve && (c->p[vs] == ' ' || c->p[vs] == '\t'))
            vs++;
        while (ve > vs && (c->p[ve - 1] == ' ' || c->p[ve - 1] == '\t'))
            ve--;
        if (is_trailer) {
            bytes += c->i - ls;
            if (*count + 1 > c->lim->trailer_lines || bytes > c->lim->trailer_bytes)
                return h1ref_fail(c, H1REF_E_TRAILER_LIMIT, c->i - 1);
        }
        if (o->n_fields == H1REF_MAX_FIELDS)
            return h1ref_fail(c, H1REF_E_CAPACITY, c->i - 1);
        h1ref_field_t *f = &o->fields[o->n_fields++];
        f->name = h1ref_mk(c, ls, ne);
        f->value = h1ref_mk(c, vs, ve);
        (*count)++;
    }
}

/* The codings of all Transfer-Encoding fields, in order (RFC 9110 5.3: a
 * field repeated is its values joined by commas; 5.6.1: empty list
 * elements are ignored). Each transfer-coding must be a bare token
 * (parameters refused). Returns false on a malformed element. */
static bool h1ref_te_codings(const h1ref_out_t *o, const h1ref_msg_t *m, size_t *n_codings, size_t *n_chunked,
                             bool *is_last_chunked, bool *is_all_known)
{
    static const char *const known[] = {"chunked", "gzip", "deflate", "compress", "x-gzip", "x-compress"};
    *n_codings = *n_chunked = 0;
    *is_last_chunked = false;
    *is_all_known = true;
    for (size_t k = 0; k < m->n_fields; k++) {
        const h1ref_field_t *f = &o->fields[m->field0 + k];
        if (!h1ref_ieq(f->name, "transfer-encoding"))
            continue;
        const char *v = f->value.p, *end = v + f->value.len;
        while (v <= end) {
            const char *e = v;
            while (e < end && *e != ',')
                e++;
            const char *s = v, *t = e;
            while (s < t && (*s == ' ' || *s == '\t'))
                s++;
            while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if (t > s) {
                h1ref_str_t cod = {s, (size_t)(t - s)};
                for (const char *q = s; q < t; q++)
                    if (!h1ref_tchar((unsigned char)*q))
                        return false;
                (*n_codings)++;
                bool is_chunked = h1ref_ieq(cod, "chunked");
                *n_chunked += is_chunked;
                *is_last_chunked = is_chunked;
                bool is_known = false;
                for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++)
                    is_known = is_known || h1ref_ieq(cod, known[j]);
                *is_all_known = *is_all_known && is_known;
            }
            v = e + 1;
        }
    }
    return true;
}

/* Message body length, RFC 9112 6.3 (strict choices in h1ref.h). */
static int h1ref_framing(h1ref_cur_t *c, h1ref_msg_t *m, bool is_request, bool is_bodiless)
{
    const h1ref_out_t *o = c->o;
    size_t at = m->head_end - 1;
    bool has_te = false, has_cl = false;
    uint64_t cl = 0;
    for (size_t k = 0; k < m->n_fields; k++) {
        const h1ref_field_t *f = &o->fields[m->field0 + k];
        if (h1ref_ieq(f->name, "transfer-encoding"))
            has_te = true;
        if (!h1ref_ieq(f->name, "content-length") || is_bodiless)
            continue;
        /* Content-Length = 1*DIGIT */
        uint64_t v = 0;
        if (f->value.len == 0)
            return h1ref_fail(c, H1REF_E_CL, at);
        for (size_t j = 0; j < f->value.len; j++) {
            unsigned char ch = (unsigned char)f->value.p[j];
            if (ch < '0' || ch > '9')
                return h1ref_fail(c, H1REF_E_CL, at);
            if (v > ((uint64_t)INT64_MAX - (ch - '0')) / 10)
                return h1ref_fail(c, H1REF_E_TOO_LARGE, at);
            v = v * 10 + (ch - '0');
        }
        if (has_cl && v != cl)
            return h1ref_fail(c, H1REF_E_CL, at);
        has_cl = true;
        cl = v;
    }
    m->framing = H1REF_NONE;
    if (is_bodiless)
        return H1R_OK;
    if (has_te) {
        size_t n_cod, n_chunked;
        bool is_last_chunked, is_all_known;
        if (!h1ref_te_codings(o, m, &n_cod, &n_chunked, &is_last_chunked, &is_all_known))
            return h1ref_fail(c, H1REF_E_TE_CODING, at);
        if (n_cod == 0)
            return h1ref_fail(c, H1REF_E_TE_EMPTY, at);
        if (m->version_minor == 0)
            return h1ref_fail(c, H1REF_E_TE_HTTP10, at);
        if (has_cl)
            return h1ref_fail(c, H1REF_E_TE_CL, at);
        if (is_request) {
            /* RFC 9112 6.3 rule 4 (chunked final) made strict: the only coding. */
            if (n_cod != 1 || !is_last_chunked)
                return h1ref_fail(c, H1REF_E_TE_CODING, at);
            m->framing = H1REF_CHUNKED;
            return H1R_OK;
        }
        /* RFC 9112 7: chunked at most once, and then last. */
        if (!is_all_known || n_chunked > 1 || (n_chunked == 1 && !is_last_chunked))
            return h1ref_fail(c, H1REF_E_TE_CODING, at);
        m->framing = is_last_chunked ? H1REF_CHUNKED : H1REF_CLOSE;
        return H1R_OK;
    }
    if (has_cl) {
        m->framing = H1REF_LENGTH;
        m->content_length = cl;
        return H1R_OK;
    }
    m->framing = is_request ? H1REF_NONE : H1REF_CLOSE;
    return H1R_OK;
}

/* OWS at c->i; *seen says whether there was any. */
static int h1ref_ows(h1ref_cur_t *c, bool *seen)
{
    *seen = false;
    for (;;) {
        NEED(c);
        if (c->p[c->i] != ' ' && c->p[c->i] != '\t')
            return H1R_OK;
        *seen = true;
        c->i++;
    }
}

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * chunk-ext-val = token / quoted-string (RFC 9112 7.1.1), then CRLF. */
static int h1ref_chunk_ext(h1ref_cur_t *c)
{
    for (;;) {
        bool ws;
        int r = h1ref_ows(c, &ws);
        if (r != H1R_OK)
            return r;
        unsigned char ch = c->p[c->i];
        if (ch == '\r' && !ws)
            return h1ref_crlf(c);
        if (ch != ';')
            return h1ref_fail(c, H1REF_E_CHUNK_EXT, c->i);
        c->i++;
        if ((r = h1ref_ows(c, &ws)) != H1R_OK)
            return r;
        size_t s = c->i;
        while (c->i < c->n && h1ref_tchar(c->p[c->i]))
            c->i++;
        NEED(c);
        if (c->i == s)
            return h1ref_fail(c, H1REF_E_CHUNK_EXT, c->i);
        size_t save = c->i;
        if ((r = h1ref_ows(c, &ws)) != H1R_OK)
            return r;
        if (c->p[c->i] != '=') {
            c->i = save; /* the OWS belongs to the next extension's BWS */
            continue;
        }
        c->i++;
        if ((r = h1ref_ows(c, &ws)) != H1R_OK)
            return r;
        if (c->p[c->i] == '"') {
            /* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE */
            c->i++;
            for (;;) {
                NEED(c);
                ch = c->p[c->i];
                if (ch == '"') {
                    c->i++;
                    break;
                }
                if (ch == '\\') {
                    c->i++;
                    NEED(c);
                    ch = c->p[c->i];
                    if (!(ch == '\t' || ch == ' ' || h1ref_vchar(ch) || ch >= 0x80))
                        return h1ref_fail(c, H1REF_E_CHUNK_EXT, c->i);
                    c->i++;
                    continue;
                }
                /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
                if (!(ch == '\t' || ch == ' ' || h1ref_vchar(ch) || ch >= 0x80))
                    return h1ref_fail(c, H1REF_E_CHUNK_EXT, c->i);
                c->i++;
            }
        } else {
            s = c->i;
            while (c->i < c->n && h1ref_tchar(c->p[c->i]))
                c->i++;
            NEED(c);
            if (c->i == s)
                return h1ref_fail(c, H1REF_E_CHUNK_EXT, c->i);
        }
    }
}

/* chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 7.1) */
static int h1ref_chunked(h1ref_cur_t *c, h1ref_msg_t *m)
{
    for (;;) {
        uint64_t size = 0;
        size_t s = c->i;
        for (;;) {
            NEED(c);
            unsigned v;
            if (!h1ref_hex(c->p[c->i], &v))
                break;
            if (size > ((uint64_t)INT64_MAX >> 4))
                return h1ref_fail(c, H1REF_E_TOO_LARGE, c->i);
            size = (size << 4) | v;
            c->i++;
        }
        if (c->i == s)
            return h1ref_fail(c, H1REF_E_CHUNK_SIZE, c->i);
        unsigned char ch = c->p[c->i];
        if (ch != '\r' && ch != ';' && ch != ' ' && ch != '\t')
            return h1ref_fail(c, H1REF_E_CHUNK_SIZE, c->i);
        int r = h1ref_chunk_ext(c);
        if (r != H1R_OK)
            return r;
        if (size == 0)
            return h1ref_fields(c, true, &m->trailer0, &m->n_trailers);
        size_t avail = c->n - c->i;
        if (avail < size) {
            h1ref_body_put(c->o, m, c->p + c->i, avail);
            c->i = c->n;
            return H1R_MORE;
        }
        h1ref_body_put(c->o, m, c->p + c->i, (size_t)size);
        c->i += (size_t)size;
        NEED(c);
        if (c->p[c->i] != '\r')
            return h1ref_fail(c, H1REF_E_CHUNK_DATA_END, c->i);
        c->i++;
        NEED(c);
        if (c->p[c->i] != '\n')
            return h1ref_fail(c, H1REF_E_CHUNK_DATA_END, c->i);
        c->i++;
    }
}

static int h1ref_body(h1ref_cur_t *c, h1ref_msg_t *m, bool is_eof)
{
    m->body0 = c->o->body_len;
    switch (m->framing) {
    case H1REF_LENGTH: {
        size_t avail = c->n - c->i;
        if (avail < m->content_length) {
            h1ref_body_put(c->o, m, c->p + c->i, avail);
            c->i = c->n;
            return H1R_MORE;
        }
        h1ref_body_put(c->o, m, c->p + c->i, (size_t)m->content_length);
        c->i += (size_t)m->content_length;
        return H1R_OK;
    }
    case H1REF_CHUNKED:
        return h1ref_chunked(c, m);
    case H1REF_CLOSE:
        h1ref_body_put(c->o, m, c->p + c->i, c->n - c->i);
        c->i = c->n;
        return is_eof ? H1R_OK : H1R_MORE;
    default:
        return H1R_OK;
    }
}

static void h1ref_finish(h1ref_cur_t *c, int r)
{
    h1ref_out_t *o = c->o;
    o->state = r == H1R_MORE ? H1REF_PARTIAL : r == H1R_ERR ? H1REF_ERROR : H1REF_END;
}

H1REF_API void h1ref_init(h1ref_out_t *o, char *body, size_t body_cap)
{
    memset(o, 0, sizeof(*o));
    o->body = body;
    o->body_cap = body_cap;
}

static int h1ref_head(h1ref_cur_t *c, h1ref_msg_t *m, bool is_request)
{
    int r = h1ref_skip_empty_lines(c);
    if (r != H1R_OK)
        return r;
    m->start = c->i;
    r = is_request ? h1ref_request_line(c, m) : h1ref_status_line(c, m);
    if (r != H1R_OK)
        return r;
    r = h1ref_fields(c, false, &m->field0, &m->n_fields);
    if (r != H1R_OK)
        return r;
    m->head_end = c->i;
    return H1R_OK;
}

H1REF_API void h1ref_parse_requests(h1ref_out_t *o, const char *p, size_t n, const h1ref_limits_t *lim)
{
    h1ref_cur_t c = {(const unsigned char *)p, n, 0, o, lim};
    int r = H1R_OK;
    while (c.i < n) {
        if (o->n_msgs == H1REF_MAX_MSGS) {
            o->is_truncated = true;
            break;
        }
        h1ref_msg_t *m = &o->msg[o->n_msgs];
        memset(m, 0, sizeof(*m));
        if ((r = h1ref_head(&c, m, true)) != H1R_OK)
            break;
        if ((r = h1ref_framing(&c, m, true, false)) != H1R_OK)
            break;
        if ((r = h1ref_body(&c, m, false)) != H1R_OK)
            break;
        m->end = c.i;
        o->n_msgs++;
    }
    h1ref_finish(&c, r);
}

H1REF_API void h1ref_parse_response(h1ref_out_t *o, const char *p, size_t n, bool is_head, bool is_eof,
                                    const h1ref_limits_t *lim)
{
    h1ref_cur_t c = {(const unsigned char *)p, n, 0, o, lim};
    int r = H1R_OK;
    for (;;) {
        if (o->n_msgs == H1REF_MAX_MSGS) {
            o->is_truncated = true;
            break;
        }
        h1ref_msg_t *m = &o->msg[o->n_msgs];
        memset(m, 0, sizeof(*m));
        if ((r = h1ref_head(&c, m, false)) != H1R_OK)
            break;
        bool is_interim = m->status < 200 && m->status != 101;
        /* RFC 9112 6.3 rule 1: HEAD, 1xx (101: the connection changes
         * protocol after the head), 204 and 304 have no body. */
        bool is_bodiless = is_head || m->status < 200 || m->status == 204 || m->status == 304;
        if ((r = h1ref_framing(&c, m, false, is_bodiless)) != H1R_OK)
            break;
        if ((r = h1ref_body(&c, m, is_eof)) != H1R_OK)
            break;
        m->end = c.i;
        o->n_msgs++;
        if (!is_interim)
            break;
    }
    h1ref_finish(&c, r);
}

H1REF_API const char *h1ref_err_name(h1ref_err_t e)
{
    static const char *const names[] = {
        "ok",      "line_end",      "method",   "extra_sp",   "target",      "target_8bit", "version",
        "status",  "reason",        "ws_line",  "field_name", "field_value", "te_empty",    "te_coding",
        "te_cl",   "te_http10",     "cl",       "too_large",  "chunk_size",  "chunk_ext",   "chunk_data_end",
        "trailer", "trailer_limit", "capacity",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == H1REF_E__COUNT, "h1ref_err_name table");
    return (unsigned)e < H1REF_E__COUNT ? names[e] : "?";
}

#endif /* SG_H1REF_C */
