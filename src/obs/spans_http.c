/* The span exporter's reader of a collector's response (src/obs/spans_int.h).
 *
 * The exporter keeps one connection to the collector (OTLP/HTTP: "the
 * client SHOULD keep the connection open"), so each response must be read
 * to its exact end: status line and fields (RFC 9112 sections 4 and 5),
 * then the body by Content-Length or chunked coding (RFC 9112 section 6,
 * 7.1); without either, the body runs to the close and the connection is
 * not reused. The body itself is not kept: only the status, the framing and
 * Retry-After (RFC 9110 section 10.2.3) matter to the exporter. */
#include "obs/spans_int.h"

#include <stdlib.h>
#include <strings.h>
#include <time.h>

enum {
    PH_HEAD = 0,
    PH_LENGTH,     /* Content-Length body: _left bytes to go */
    PH_CHUNK_SIZE, /* hex digits of a chunk size */
    PH_CHUNK_EXT,  /* chunk extensions up to LF */
    PH_CHUNK_DATA, /* _left bytes of chunk data */
    PH_CHUNK_CR,   /* CRLF after chunk data */
    PH_CHUNK_LF,
    PH_TRAILER, /* trailer fields up to an empty line */
    PH_EOF,     /* body delimited by the close */
    PH_DONE,
};

void sg__spans_resp_init(sg__spans_resp_t *r)
{
    r->status = 0;
    r->is_keep_alive = false;
    r->retry_after_ms = 0;
    r->_phase = PH_HEAD;
    r->_has_digit = false;
    r->_line_empty = true;
    r->_left = 0;
    r->_head_len = 0;
}

bool sg__spans_resp_started(const sg__spans_resp_t *r)
{
    return r->_phase != PH_HEAD || r->_head_len > 0;
}

static sg_str_t trim(sg_str_t s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t' || s.p[s.len - 1] == '\r'))
        s.len--;
    return s;
}

/* RFC 9110 10.2.3: delta-seconds or an HTTP-date (IMF-fixdate). */
static uint64_t retry_after_ms(sg_str_t v, int64_t now_unix_s)
{
    if (v.len == 0)
        return 0;
    if (v.p[0] >= '0' && v.p[0] <= '9') {
        uint64_t s = 0;
        for (size_t i = 0; i < v.len; i++) {
            if (v.p[i] < '0' || v.p[i] > '9')
                return 0;
            if (s < 1000000)
                s = s * 10 + (uint64_t)(v.p[i] - '0');
        }
        return s * 1000;
    }
    char buf[64];
    if (v.len >= sizeof(buf))
        return 0;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return 0;
    int64_t at = (int64_t)timegm(&tm);
    return at > now_unix_s ? (uint64_t)(at - now_unix_s) * 1000 : 0;
}

/* The last element of a comma-separated list, trimmed. */
static sg_str_t last_token(sg_str_t v)
{
    const char *c = v.len ? memrchr(v.p, ',', v.len) : NULL;
    return c ? trim(sg_str_make(c + 1, (size_t)(v.p + v.len - c - 1))) : trim(v);
}

static bool has_token(sg_str_t v, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        sg_str_t t = trim(sg_str_make(p, (size_t)((c ? c : end) - p)));
        if (t.len == tl && strncasecmp(t.p, tok, tl) == 0)
            return true;
        p = c ? c + 1 : end;
    }
    return false;
}

/* Parses the complete head in r->_head; sets the body phase. */
static int parse_head(sg__spans_resp_t *r, int64_t now_unix_s)
{
    const char *p = r->_head, *end = r->_head + r->_head_len;
    /* RFC 9112 4: HTTP-version SP 3DIGIT SP [reason] */
    if (r->_head_len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    unsigned code = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        code = code * 10 + (unsigned)(p[i] - '0');
    }
    if (code < 100)
        return -1;
    bool is_http10 = p[7] == '0', is_chunked = false, has_te = false, has_cl = false, is_close = is_http10;
    uint64_t cl = 0;
    uint64_t ra = 0;
    const char *line = memchr(p, '\n', (size_t)(end - p));
    while (line && ++line < end) {
        const char *lf = memchr(line, '\n', (size_t)(end - line));
        if (!lf)
            break;
        sg_str_t l = sg_str_make(line, (size_t)(lf - line));
        line = lf;
        const char *colon = memchr(l.p, ':', l.len);
        if (!colon)
            continue; /* the empty line that ends the head */
        sg_str_t name = sg_str_make(l.p, (size_t)(colon - l.p));
        sg_str_t v = trim(sg_str_make(colon + 1, (size_t)(l.p + l.len - colon - 1)));
        if (sg_str_ieq(name, SG_STR("content-length"))) {
            uint64_t n = 0;
            if (v.len == 0 || v.len > 18)
                return -1;
            for (size_t i = 0; i < v.len; i++) {
                if (v.p[i] < '0' || v.p[i] > '9')
                    return -1;
                n = n * 10 + (uint64_t)(v.p[i] - '0');
            }
            if (has_cl && n != cl)
                return -1; /* RFC 9112 6.3: conflicting lengths */
            has_cl = true;
            cl = n;
        } else if (sg_str_ieq(name, SG_STR("transfer-encoding"))) {
            has_te = true;
            sg_str_t lt = last_token(v);
            is_chunked = lt.len == 7 && strncasecmp(lt.p, "chunked", 7) == 0;
        } else if (sg_str_ieq(name, SG_STR("connection"))) {
            if (has_token(v, "close"))
                is_close = true;
            else if (is_http10 && has_token(v, "keep-alive"))
                is_close = false;
        } else if (sg_str_ieq(name, SG_STR("retry-after"))) {
            ra = retry_after_ms(v, now_unix_s);
        }
    }
    if (code < 200) {
        /* interim (RFC 9110 15.2): the final response follows */
        r->_head_len = 0;
        return 0;
    }
    r->status = code;
    r->retry_after_ms = ra;
    r->is_keep_alive = !is_close;
    if (code == 204 || code == 304) {
        r->_phase = PH_DONE;
    } else if (has_te) {
        /* RFC 9112 6.3: Transfer-Encoding overrides Content-Length; a final
         * coding other than chunked runs to the close */
        r->_phase = is_chunked ? PH_CHUNK_SIZE : PH_EOF;
        r->_left = 0;
        r->_has_digit = false;
        if (!is_chunked || has_cl)
            r->is_keep_alive = false;
    } else if (has_cl) {
        r->_left = cl;
        r->_phase = cl ? PH_LENGTH : PH_DONE;
    } else {
        r->_phase = PH_EOF;
        r->is_keep_alive = false;
    }
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Up to _left body bytes of `avail` are skipped; then on to `next`. */
static size_t take(sg__spans_resp_t *r, size_t avail, uint8_t next)
{
    size_t k = (size_t)SG_MIN((uint64_t)avail, r->_left);
    r->_left -= k;
    if (r->_left == 0)
        r->_phase = next;
    return k;
}

int sg__spans_resp_feed(sg__spans_resp_t *r, const char *p, size_t n, size_t *used, int64_t now_unix_s)
{
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        switch (r->_phase) {
        case PH_HEAD:
            if (r->_head_len == sizeof(r->_head))
                return -1;
            r->_head[r->_head_len++] = c;
            i++;
            if (c == '\n' && r->_head_len >= 2 &&
                (r->_head[r->_head_len - 2] == '\n' ||
                 (r->_head_len >= 3 && r->_head[r->_head_len - 2] == '\r' && r->_head[r->_head_len - 3] == '\n'))) {
                if (parse_head(r, now_unix_s) != 0)
                    return -1;
            }
            break;
        case PH_LENGTH:
            i += take(r, n - i, PH_DONE);
            break;
        case PH_CHUNK_SIZE: {
            int d = hex_digit(c);
            i++;
            if (d >= 0) {
                if (r->_left >> 56)
                    return -1;
                r->_left = r->_left << 4 | (uint64_t)d;
                r->_has_digit = true;
            } else if (c == ';' || c == ' ' || c == '\t') {
                r->_phase = PH_CHUNK_EXT;
            } else if (c == '\n' || c == '\r') {
                if (!r->_has_digit)
                    return -1;
                r->_phase = PH_CHUNK_EXT;
                i--; /* the line end is handled there */
            } else {
                return -1;
            }
            break;
        }
        case PH_CHUNK_EXT:
            i++;
            if (c != '\n')
                break;
            if (!r->_has_digit)
                return -1;
            if (r->_left == 0) {
                r->_phase = PH_TRAILER;
                r->_line_empty = true;
            } else {
                r->_phase = PH_CHUNK_DATA;
            }
            break;
        case PH_CHUNK_DATA:
            i += take(r, n - i, PH_CHUNK_CR);
            break;
        case PH_CHUNK_CR:
            i++;
            if (c == '\r')
                r->_phase = PH_CHUNK_LF;
            else if (c == '\n')
                r->_phase = PH_CHUNK_SIZE;
            else
                return -1;
            r->_has_digit = false;
            break;
        case PH_CHUNK_LF:
            i++;
            if (c != '\n')
                return -1;
            r->_phase = PH_CHUNK_SIZE;
            r->_has_digit = false;
            break;
        case PH_TRAILER:
            i++;
            if (c == '\n') {
                if (r->_line_empty)
                    r->_phase = PH_DONE;
                r->_line_empty = true;
            } else if (c != '\r') {
                r->_line_empty = false;
            }
            break;
        case PH_EOF:
            i = n; /* everything up to the close is body */
            break;
        case PH_DONE:
        default:
            *used = i;
            return SG__SPANS_RESP_DONE;
        }
        if (r->_phase == PH_DONE) {
            *used = i;
            return SG__SPANS_RESP_DONE;
        }
    }
    *used = n;
    return SG__SPANS_RESP_MORE;
}

int sg__spans_resp_eof(sg__spans_resp_t *r)
{
    if (r->_phase == PH_EOF || r->_phase == PH_DONE) {
        r->_phase = PH_DONE;
        r->is_keep_alive = false;
        return SG__SPANS_RESP_DONE;
    }
    return -1;
}
