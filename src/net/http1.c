/* HTTP/1.x framing: a strict head scanner and a thin llhttp wrapper.
 * See include/sg/http1.h for the two-step model. */
#include "sg/http1.h"

#include <llhttp.h>

#if !defined(LLHTTP_STRICT_MODE) || !LLHTTP_STRICT_MODE
#error                                                                                                                 \
    "llhttp must be built with LLHTTP_STRICT_MODE=1 (third_party/llhttp.cmake): the loose machine lets smuggled framing through"
#endif

_Static_assert(sizeof(llhttp_t) <= SG_H1_LLHTTP_SIZE, "SG_H1_LLHTTP_SIZE too small for llhttp_t");
_Static_assert(_Alignof(llhttp_t) <= 8, "llhttp_t alignment");
_Static_assert(offsetof(sg_h1_parser_t, _ll) == 0, "the llhttp_t comes first (sg_h1_parser_init)");

#define LL(p) ((llhttp_t *)(void *)(p)->_ll)

/* ---- scanner ------------------------------------------------------------ */

enum { SCAN_LINE = 0, SCAN_CR };

void sg_h1_scan_init(sg_h1_scan_t *s)
{
    memset(s, 0, sizeof(*s));
    s->is_in_start = true;
}

/* Byte classes for the scanner: runs of ordinary bytes are skipped in a
 * tight loop (one table load and compare per byte) and only CR, leading
 * whitespace and refused bytes take the slow path. */
enum { BC_TEXT = 0, BC_WS, BC_CR, BC_BAD };

static const uint8_t k_byte_class[256] = {
    /* 0x00-0x1f: control bytes are refused, except HTAB (whitespace) and CR */
    BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD,        BC_WS,           BC_BAD, BC_BAD,
    BC_BAD, BC_CR,  BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD,        BC_BAD,          BC_BAD, BC_BAD,
    BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, BC_BAD, [' '] = BC_WS, [0x7f] = BC_BAD,
    /* everything else (visible ASCII, bytes >= 0x80): BC_TEXT */
};

/* The end of the run of BC_TEXT and BC_WS bytes that starts at i: the
 * first CR or refused byte, or n. Eight bytes at a time (SWAR, as
 * json.c does): a word with no byte below 0x20 and no DEL is all text;
 * otherwise the lowest flagged byte is the first such byte (a borrow only
 * runs upward from a true one), and a HTAB there is text and skipped.
 * Little-endian loads: elsewhere the bytewise loop does it all. */
#define SCAN_ONES 0x0101010101010101ull
#define SCAN_HIGHS 0x8080808080808080ull

static inline size_t skip_text(const unsigned char *u, size_t i, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, u + i, 8);
        uint64_t del = w ^ (SCAN_ONES * 0x7fu);
        uint64_t m = ((w - SCAN_ONES * 0x20u) & ~w & SCAN_HIGHS) | ((del - SCAN_ONES) & ~del & SCAN_HIGHS);
        if (!m) {
            i += 8;
            continue;
        }
        i += (size_t)__builtin_ctzll(m) >> 3;
        if (k_byte_class[u[i]] != BC_WS)
            return i;
        i++;
    }
#endif
    while (i < n && k_byte_class[u[i]] <= BC_WS)
        i++;
    return i;
}

int sg_h1_scan_feed(sg_h1_scan_t *s, const sg_h1_limits_t *lim, const char *p, size_t n, size_t *used)
{
    if (s->len == 0 && s->line_len == 0 && s->_state == SCAN_LINE && s->n_lines == 0 && s->start_len == 0)
        s->is_in_start = true;
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        if (s->_state == SCAN_CR) {
            unsigned char c = u[i++];
            s->len++;
            /* RFC 9112 2.2: a bare CR is invalid; we refuse it. */
            if (c != '\n')
                return -400;
            s->_state = SCAN_LINE;
            if (s->is_in_start) {
                if (s->line_len == 0)
                    continue; /* empty line(s) before the start line: ignored by llhttp for requests */
                s->start_len = s->line_len;
                s->is_in_start = false;
                s->line_len = 0;
                continue;
            }
            if (s->line_len == 0) {
                *used = i;
                return SG_H1_SCAN_DONE;
            }
            s->n_lines++;
            if (s->n_lines > lim->header_count)
                return -431;
            s->line_len = 0;
            continue;
        }
        /* obs-fold (RFC 9112 5.2) or leading whitespace */
        if (s->line_len == 0 && k_byte_class[u[i]] == BC_WS)
            return -400;
        size_t start = i;
        i = skip_text(u, i, n);
        size_t run = i - start;
        if (run) {
            s->line_len += (uint32_t)run;
            s->len += (uint32_t)run;
            if (s->is_in_start) {
                /* The method is not the URI (RFC 9112 3): a start line that
                 * overflows before its first SP is a bad request, not 414. */
                if (!s->has_sp) {
                    const unsigned char *sp = memchr(u + start, ' ', run);
                    if (sp) {
                        s->has_sp = true;
                        s->method_len = s->line_len - run + (uint32_t)(sp - (u + start));
                    }
                }
                if (s->line_len > lim->start_line_bytes)
                    return s->has_sp && s->method_len < lim->start_line_bytes ? -414 : -400;
            } else if (s->len - s->start_len > lim->header_bytes) {
                return -431;
            }
        }
        if (i == n)
            break;
        if (k_byte_class[u[i]] != BC_CR)
            return -400; /* bare LF, NUL, control bytes */
        s->_state = SCAN_CR;
        s->len++;
        i++;
    }
    *used = n;
    return SG_H1_SCAN_MORE;
}

/* ---- llhttp wrapper ----------------------------------------------------- */

enum { PH_HEAD = 0, PH_BODY, PH_DONE, PH_ERROR };

static sg_h1_parser_t *self(llhttp_t *ll)
{
    return ll->data;
}

static void extend(sg_str_t *s, const char *at, size_t n)
{
    if (!s->p) {
        s->p = at;
        s->len = n;
    } else {
        /* llhttp gives one span per element when the head is contiguous; a
         * continuation is adjacent. */
        s->len = (size_t)(at + n - s->p);
    }
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase == PH_HEAD)
        extend(&p->head.method_name, at, n);
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase == PH_HEAD)
        extend(&p->head.target, at, n);
    return 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase == PH_HEAD)
        extend(&p->head.reason, at, n);
    return 0;
}

static int refuse(sg_h1_parser_t *p, uint16_t status, const char *why)
{
    p->_err_status = status;
    p->_err_reason = why;
    return HPE_USER;
}

static bool is_tchar(unsigned char c);

/* Trailer fields (RFC 9112 7.1.2) go on raw with the chunked body, so they
 * are held to the same grammar and limits as header fields here: token
 * names, field values of VCHAR / obs-text / SP / HTAB (no obs-fold, no
 * bare CR or LF: llhttp passes a fold on inside the value), at most
 * _max_headers lines and max_trailer_bytes bytes. Fields that frame,
 * route or govern the connection are never allowed in a trailer (RFC 9110
 * 6.5.1): a next hop that merges trailers into the head would otherwise
 * read a second Content-Length or Host that swarmgate never saw. */
static const char *const k_trailer_forbidden[] = {
    "content-length", "transfer-encoding", "host",   "connection",       "keep-alive",   "te",
    "trailer",        "upgrade",           "expect", "proxy-connection", "content-type", "content-encoding",
    "content-range",
};

/* The limits are checked when a name or a value is complete, never in a
 * span callback: llhttp hands spans on at the end of every read, so a
 * check there would fire at a place that depends on how the bytes arrived
 * (before or after an error llhttp finds later in the same token), and
 * the answer would not be the same for the same bytes (fuzz_request). */
static int trailer_limits(sg_h1_parser_t *p)
{
    if (p->_tr_count > (p->max_trailer_count ? p->max_trailer_count : p->_max_headers))
        return refuse(p, 431, "too many trailer fields");
    if (p->_tr_bytes > (p->max_trailer_bytes ? p->max_trailer_bytes : SG_H1_TRAILER_BYTES_DEFAULT))
        return refuse(p, 431, "trailer section too large");
    return 0;
}

static int trailer_bytes(sg_h1_parser_t *p, size_t n)
{
    p->_tr_bytes += (uint32_t)n;
    return 0;
}

static bool framing_ok(sg_h1_parser_t *p, const char *from, const char *to);

/* The framing bytes before a trailer span are checked when the span
 * arrives, not only at the end of the read: a fold or a bare LF earlier in
 * the trailer section must be refused before a limit later in it, however
 * the bytes were split (fuzz_request). */
static int trailer_framing(sg_h1_parser_t *p, const char *at)
{
    if (at < p->_fr_pos || !framing_ok(p, p->_fr_pos, at))
        return refuse(p, 400, "invalid chunked framing");
    p->_fr_pos = at;
    return 0;
}

static int trailer_field(sg_h1_parser_t *p, const char *at, size_t n)
{
    if (trailer_framing(p, at))
        return HPE_USER;
    if (p->_last_was_value || p->_tr_count == 0) {
        p->_tr_count++;
        p->_tr_name_len = 0;
        p->_last_was_value = false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)at[i]))
            return refuse(p, 400, "invalid trailer field name");
        if (p->_tr_name_len < sizeof(p->_tr_name))
            p->_tr_name[p->_tr_name_len] = at[i];
        p->_tr_name_len++;
    }
    return trailer_bytes(p, n);
}

static int on_header_field_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase != PH_BODY)
        return 0;
    if (p->_tr_name_len == 0)
        return refuse(p, 400, "empty trailer field name");
    if (trailer_limits(p))
        return HPE_USER;
    for (size_t i = 0; i < sizeof(k_trailer_forbidden) / sizeof(k_trailer_forbidden[0]); i++)
        if (p->_tr_name_len <= sizeof(p->_tr_name) &&
            sg_str_ieq(sg_str_make(p->_tr_name, p->_tr_name_len), sg_str_cstr(k_trailer_forbidden[i])))
            return refuse(p, 400, "field not allowed in a trailer");
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    return p->_phase == PH_BODY && trailer_limits(p) ? HPE_USER : 0;
}

static int trailer_value(sg_h1_parser_t *p, const char *at, size_t n)
{
    if (trailer_framing(p, at))
        return HPE_USER;
    /* llhttp hands an obs-fold on as a second span of the same value
     * ("y", then " z"). A value is legitimately in two spans only when the
     * input ended between them: the first span reached the end of its
     * buffer and the next starts at the start of the next one. */
    if (p->_last_was_value && !(p->_tr_span_at_end && at == p->_in_start))
        return refuse(p, 400, "obs-fold in a trailer field");

    p->_tr_span_at_end = at + n == p->_in_end;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return refuse(p, 400, "invalid trailer field value");
    }
    p->_last_was_value = true;
    return trailer_bytes(p, n);
}

/* Chunk extensions (RFC 9112 7.1.1): chunk-ext-name = token, chunk-ext-val
 * = token / quoted-string. The strict llhttp still takes an empty name
 * (";;"), an empty value ("a=") and a token glued to a quoted string
 * (b"c"); a next hop may split such a line elsewhere. Checked byte by byte
 * (a span can be cut by the end of a read). */
enum { EXT_START = 0, EXT_TOKEN, EXT_QUOTED, EXT_QUOTED_ESC, EXT_CLOSED };

static int on_chunk_ext_name(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)at[i]))
            return refuse(p, 400, "invalid chunk extension");
    p->_ext_len += (uint32_t)n;
    return 0;
}

static int on_chunk_ext_name_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_ext_len == 0)
        return refuse(p, 400, "empty chunk extension name");
    p->_ext_len = 0;
    p->_ext_state = EXT_START;
    return 0;
}

static bool is_qdtext(unsigned char c)
{
    /* RFC 9110 5.6.4: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c != 0x7f);
}

static int on_chunk_ext_value(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at[i];
        switch (p->_ext_state) {
        case EXT_START:
            p->_ext_state = c == '"' ? EXT_QUOTED : is_tchar(c) ? EXT_TOKEN : EXT_CLOSED + 1;
            break;
        case EXT_TOKEN:
            if (!is_tchar(c))
                p->_ext_state = EXT_CLOSED + 1;
            break;
        case EXT_QUOTED:
            p->_ext_state = c == '\\'      ? EXT_QUOTED_ESC
                            : c == '"'     ? EXT_CLOSED
                            : is_qdtext(c) ? EXT_QUOTED
                                           : EXT_CLOSED + 1;
            break;
        case EXT_QUOTED_ESC: /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
            p->_ext_state = (c == '\t' || c >= 0x20) && c != 0x7f ? EXT_QUOTED : EXT_CLOSED + 1;
            break;
        default:
            p->_ext_state = EXT_CLOSED + 1;
        }
        if (p->_ext_state > EXT_CLOSED)
            return refuse(p, 400, "invalid chunk extension value");
    }
    return 0;
}

static int on_chunk_ext_value_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_ext_state != EXT_TOKEN && p->_ext_state != EXT_CLOSED)
        return refuse(p, 400, "invalid chunk extension value");
    p->_ext_state = EXT_START;
    return 0;
}

/* A chunk size is an unsigned 64-bit number to llhttp; a next hop reading
 * it as signed (int64_t, Java's long) would see a negative size. */
static int on_chunk_header(llhttp_t *ll)
{
    if (ll->content_length > (uint64_t)INT64_MAX)
        return refuse(self(ll), 400, "chunk size too large");
    /* llhttp calls this at the end of the size line, before framing_ok()
     * reaches that line's LF: it knows whether trailers follow. */
    self(ll)->_fr_is_last_chunk = ll->content_length == 0;
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase == PH_BODY)
        return trailer_field(p, at, n);
    if (p->_phase != PH_HEAD)
        return 0;
    if (p->_last_was_value || p->head.n_headers == 0) {
        if (p->head.n_headers >= p->_max_headers) {
            p->_err_status = 431;
            p->_err_reason = "too many header fields";
            return HPE_USER;
        }
        sg_h1_header_t *h = &p->head.headers[p->head.n_headers++];
        h->name = sg_str_make(at, n);
        h->value = SG_STR_NULL;
        h->kind = SG_H1_F_OTHER; /* classified in on_headers_complete */
        p->_last_was_value = false;
        return 0;
    }
    extend(&p->head.headers[p->head.n_headers - 1].name, at, n);
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->_phase == PH_BODY)
        return trailer_value(p, at, n);
    if (p->_phase != PH_HEAD || p->head.n_headers == 0)
        return 0;
    extend(&p->head.headers[p->head.n_headers - 1].value, at, n);
    p->_last_was_value = true;
    return 0;
}

/* RFC 9110 5.6.2 tchar, as a table (this runs for every header name):
 * TC_TOKEN for every tchar, and TC_UNDERSCORE also for '_'. */
#define TC_TOKEN 1u
#define TC_UNDERSCORE 2u
static const uint8_t k_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = TC_TOKEN | TC_UNDERSCORE,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_tchar(unsigned char c)
{
    return k_tchar[c] != 0;
}

/* RFC 9110 5.1: field-name = token; also says whether it has an '_'. One
 * table load per byte, no branch: the classes are ANDed (all tokens) and
 * ORed (some underscore). */
static bool is_field_name(sg_str_t s, bool *has_underscore)
{
    const unsigned char *u = (const unsigned char *)s.p;
    unsigned all = TC_TOKEN, any = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned c = k_tchar[u[i]];
        all &= c;
        any |= c;
    }
    *has_underscore = (any & TC_UNDERSCORE) != 0;
    return all && s.len > 0;
}

/* Whether the 8-byte words a (a name's bytes) and l (a lower-case literal
 * of letters and '-') are equal ignoring ASCII case, exactly as
 * sg_str_ieq: OR 0x20 lowers a letter and leaves '-', and the only other
 * byte it maps onto one of them is CR (onto '-'), which is the only one
 * of those with neither bit 5 nor bit 6 set. `m` selects the bytes
 * compared. */
#define KW_ONES 0x0101010101010101ull

static inline bool kw_eq(uint64_t a, uint64_t l, uint64_t m)
{
    return ((a | KW_ONES * 0x20u) & m) == ((l | KW_ONES * 0x20u) & m) &&
           ((a | a << 1) & KW_ONES * 0x40u & m) == (KW_ONES * 0x40u & m);
}

/* n is a constant where this is inlined: the loads and masks fold. */
static inline bool name_is(const char *p, const char *lit, size_t n)
{
    uint64_t a = 0, l = 0;
    if (n < 8) {
        memcpy(&a, p, n);
        memcpy(&l, lit, n);
        return kw_eq(a, l, (1ull << (8 * n)) - 1);
    }
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&a, p + i, 8);
        memcpy(&l, lit + i, 8);
        if (!kw_eq(a, l, ~0ull))
            return false;
    }
    if (n % 8) {
        memcpy(&a, p + n - 8, 8);
        memcpy(&l, lit + n - 8, 8);
        return kw_eq(a, l, ~0ull);
    }
    return true;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KIND_IF(n, lit, kind) (name_is((n).p, (lit), sizeof(lit) - 1) ? (kind) : SG_H1_F_OTHER)
#else
#define KIND_IF(n, lit, kind) (sg_str_ieq((n), SG_STR(lit)) ? (kind) : SG_H1_F_OTHER)
#endif

/* By length, then by first letter: at most one full comparison a name. */
sg_h1_field_t sg_h1_field_kind(sg_str_t n)
{
    if (n.len == 0)
        return SG_H1_F_OTHER;
    char c0 = sg_ascii_lower(n.p[0]);
    if (n.len >= 6 && c0 == 'p')
        return KIND_IF(n, "proxy-", SG_H1_F_PROXY);
    switch (n.len) {
    case 2:
        return KIND_IF(n, "te", SG_H1_F_TE);
    case 3:
        return KIND_IF(n, "via", SG_H1_F_VIA);
    case 4:
        return KIND_IF(n, "host", SG_H1_F_HOST);
    case 6:
        return KIND_IF(n, "expect", SG_H1_F_EXPECT);
    case 7:
        return c0 == 't' ? KIND_IF(n, "trailer", SG_H1_F_TRAILER) : KIND_IF(n, "upgrade", SG_H1_F_UPGRADE);
    case 10:
        return c0 == 'c'   ? KIND_IF(n, "connection", SG_H1_F_CONNECTION)
               : c0 == 'k' ? KIND_IF(n, "keep-alive", SG_H1_F_KEEP_ALIVE)
                           : KIND_IF(n, "tracestate", SG_H1_F_TRACESTATE);
    case 11:
        return KIND_IF(n, "traceparent", SG_H1_F_TRACEPARENT);
    case 12:
        return KIND_IF(n, "max-forwards", SG_H1_F_MAX_FORWARDS);
    case 14:
        return KIND_IF(n, "content-length", SG_H1_F_CONTENT_LENGTH);
    case 15:
        return KIND_IF(n, "x-forwarded-for", SG_H1_F_X_FORWARDED_FOR);
    case 16:
        return KIND_IF(n, "x-forwarded-host", SG_H1_F_X_FORWARDED_HOST);
    case 17:
        return c0 == 'x' ? KIND_IF(n, "x-forwarded-proto", SG_H1_F_X_FORWARDED_PROTO)
                         : KIND_IF(n, "transfer-encoding", SG_H1_F_TRANSFER_ENCODING);
    default:
        return SG_H1_F_OTHER;
    }
}

/* RFC 9112 6.1 and 6.3: the only transfer coding swarmgate frames by, and
 * so the only one it lets through in either direction, is one `chunked`
 * on one Transfer-Encoding line. An empty field, `identity`, another
 * coding, `chunked` twice or on two lines, or chunked not alone are each
 * read one way by one parser and another way by the next hop (an empty
 * TE is ignored by llhttp but taken as chunked by some servers). nginx
 * applies the same rule. RFC 9110 8.6: Content-Length = 1*DIGIT, one
 * field. */
typedef struct framing_fields {
    uint32_t n_te, n_cl;
    bool is_te_chunked; /* the (only) TE value is exactly "chunked" */
    bool is_cl_digits;  /* the (first) Content-Length value is 1*DIGIT */
} framing_fields_t;

static void framing_field(framing_fields_t *f, unsigned kind, sg_str_t v)
{
    if (kind == SG_H1_F_TRANSFER_ENCODING) {
        f->is_te_chunked = f->n_te++ == 0 && sg_str_ieq(v, SG_STR("chunked"));
    } else if (kind == SG_H1_F_CONTENT_LENGTH) {
        if (f->n_cl++ == 0) {
            /* 1*DIGIT, and at most INT64_MAX: a next hop reading it as a
             * signed 64-bit number must not see a negative length. */
            uint64_t val = 0;
            f->is_cl_digits = v.len > 0;
            for (size_t i = 0; i < v.len && f->is_cl_digits; i++) {
                unsigned d = (unsigned)(v.p[i] - '0');
                f->is_cl_digits = d <= 9 && val <= ((uint64_t)INT64_MAX - d) / 10;
                val = val * 10 + d;
            }
        }
    }
}

/* RFC 9112 3.2 and RFC 3986 2: a request-target is ASCII; other octets
 * travel percent-encoded. Raw bytes >= 0x80 (UTF-8, overlong forms) and
 * DEL are refused: a backend may decode them into something the route
 * check never saw. */
static bool target_is_ascii(sg_str_t t)
{
    for (size_t i = 0; i < t.len; i++)
        if ((unsigned char)t.p[i] >= 0x7f)
            return false;
    return true;
}

/* RFC 9112 4: status-line = HTTP-version SP 3DIGIT SP [reason]. llhttp
 * reads "099" as 99 and "0200" as 200; a status is exactly three digits,
 * 100-599 (RFC 9110 15). */
static bool status_line_ok(const char *b, size_t n)
{
    while (n && (*b == '\r' || *b == '\n')) { /* leading empty lines (scanner) */
        b++;
        n--;
    }
    if (n < 13 || b[8] != ' ')
        return false;
    for (int i = 9; i < 12; i++)
        if (b[i] < '0' || b[i] > '9')
            return false;
    if (b[12] != ' ' && b[12] != '\r')
        return false;
    return b[9] >= '1' && b[9] <= '5';
}

static const llhttp_settings_t g_settings_body;

/* RFC 9112 3: request-line = method SP request-target SP HTTP-version,
 * single spaces. llhttp takes "GET  / HTTP/1.1"; a next hop may read the
 * empty string between the two spaces as the target. */
static bool request_line_ok(const char *b, size_t n, const sg_h1_head_t *h)
{
    const char *end = b + n;
    while (b < end && (*b == '\r' || *b == '\n')) /* leading empty lines (scanner) */
        b++;
    const char *m = h->method_name.p, *t = h->target.p;
    if (m != b || !t || t != m + h->method_name.len + 1 || m[h->method_name.len] != ' ')
        return false;
    const char *v = t + h->target.len;
    return end - v >= 10 && v[0] == ' ' && memcmp(v + 1, "HTTP/", 5) == 0 && v[9] == '\r';
}

static int on_headers_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    sg_h1_head_t *h = &p->head;
    h->version_major = ll->http_major;
    /* RFC 9110 2.5: a higher minor version of HTTP/1 is handled as the
     * highest one we support; llhttp is told to accept it (below). */
    h->version_minor = ll->http_minor > 1 ? 1 : ll->http_minor;
    if (ll->http_major != 1)
        return refuse(p, p->kind == SG_H1_REQUEST ? 505 : 400, "unsupported HTTP version");
    if (p->kind == SG_H1_RESPONSE && !status_line_ok(p->_buf, p->_buf_len))
        return refuse(p, 400, "invalid status line");
    h->has_content_length = (ll->flags & F_CONTENT_LENGTH) != 0;
    h->content_length = h->has_content_length ? ll->content_length : 0;
    h->is_chunked = (ll->flags & F_CHUNKED) != 0;
    h->has_te = (ll->flags & F_TRANSFER_ENCODING) != 0;
    if (p->kind == SG_H1_RESPONSE)
        h->status = ll->status_code;
    framing_fields_t ff = {0};
    uint32_t mask = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        sg_h1_header_t *f = &h->headers[i];
        /* RFC 9112 5.1: no whitespace between field name and colon. */
        bool has_us = false;
        if (!is_field_name(f->name, &has_us))
            return refuse(p, 400, "invalid header field name");
        sg_str_t *v = &f->value;
        if (!v->p)
            *v = sg_str_make(f->name.p + f->name.len, 0);
        while (v->len && (v->p[v->len - 1] == ' ' || v->p[v->len - 1] == '\t'))
            v->len--;
        while (v->len && (v->p[0] == ' ' || v->p[0] == '\t')) {
            v->p++;
            v->len--;
        }
        f->kind = (uint8_t)sg_h1_field_kind(f->name);
        mask |= SG_H1_F_BIT(f->kind);
        framing_field(&ff, f->kind, *v);
        h->n_underscore_fields += has_us;
    }
    h->field_mask = mask;
    /* Framing (RFC 9112 6): llhttp and the next hop must agree on it.
     * Refused: 400, 502 for a response. */
    h->has_te = ff.n_te > 0;
    if ((h->has_te && (ff.n_te > 1 || !ff.is_te_chunked)) || h->has_te != h->is_chunked)
        return refuse(p, 400, "unsupported Transfer-Encoding");
    if (h->has_te && ff.n_cl)
        return refuse(p, 400, "both Transfer-Encoding and Content-Length");
    if (ff.n_cl > 1 || (ff.n_cl && !ff.is_cl_digits))
        return refuse(p, 400, "invalid Content-Length");
    /* RFC 9112 6.1: a Transfer-Encoding in HTTP/1.0 means faulty framing. */
    if (h->has_te && h->version_minor == 0)
        return refuse(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (p->kind == SG_H1_REQUEST && !request_line_ok(p->_buf, p->_buf_len, h))
        return refuse(p, 400, "invalid request line");
    if (p->kind == SG_H1_REQUEST && !target_is_ascii(h->target))
        return refuse(p, 400, "invalid request target");
    p->_phase = PH_BODY;
    ll->settings = (void *)(uintptr_t)&g_settings_body;
    /* RFC 9110 6.4.1: responses to HEAD, 1xx, 204 and 304 have no content. */
    if (p->kind == SG_H1_RESPONSE && (p->_skip_body || h->status < 200 || h->status == 204 || h->status == 304))
        return h->status == 101 ? 0 : 1;
    return 0;
}

/* The bytes of a chunked body that are not chunk data (sizes, extensions,
 * line ends, trailers) are checked here as one stream, across reads:
 * every line ends with CRLF, and no control byte but HTAB appears. The
 * strict llhttp still takes a bare LF at the end of the trailer section
 * and after the last chunk ("0\r\n\n"); a next hop may not. Returns
 * false on a violation. */
/* Where the framing stream is: a chunk-size line, the CRLF after chunk
 * data, or the trailer section (after the last chunk's size line). */
enum { FR_SIZE_LINE = 0, FR_AFTER_DATA, FR_TRAILERS };

static bool framing_ok(sg_h1_parser_t *p, const char *from, const char *to)
{
    for (const unsigned char *c = (const unsigned char *)from; c < (const unsigned char *)to; c++) {
        if (p->_fr_prev_cr ? *c != '\n' : *c == '\n')
            return false;
        if ((*c < 0x20 && *c != '\t' && *c != '\r' && *c != '\n') || *c == 0x7f)
            return false;
        /* A size line cannot end in ';': the strict llhttp takes "5;" and
         * "5;x=y;" with no extension name after the last ';' (found by
         * fuzz_diff_request; RFC 9112 7.1.1 wants a token there). */
        /* ... nor hold an empty extension name anywhere: after a value,
         * llhttp skips ";;" without a name callback ("0;a=b;;e"; found by
         * fuzz_diff_request). Quoted values may hold both. */
        if (p->_fr_where == FR_SIZE_LINE) {
            if (*c == '"')
                p->_fr_in_quote = !p->_fr_in_quote;
            else if (!p->_fr_in_quote && p->_fr_prev == ';' && (*c == '\r' || *c == ';' || *c == '='))
                return false;
        }
        /* A trailer line that starts with SP or HTAB is obs-fold, whatever
         * llhttp's value spans say (after an empty value, "A:\r\n b", it
         * reports just "b"; found by fuzz_diff_request). */
        if (p->_fr_where == FR_TRAILERS && p->_fr_prev == '\n' && (*c == ' ' || *c == '\t'))
            return false;
        if (*c == '\n') {
            p->_fr_in_quote = false;
            if (p->_fr_where == FR_SIZE_LINE)
                p->_fr_where = p->_fr_is_last_chunk ? FR_TRAILERS : FR_AFTER_DATA;
            else if (p->_fr_where == FR_AFTER_DATA)
                p->_fr_where = FR_SIZE_LINE;
        }
        p->_fr_prev_cr = *c == '\r';
        p->_fr_prev = *c;
    }
    return true;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    sg_h1_parser_t *p = self(ll);
    if (p->head.is_chunked) {
        if (!framing_ok(p, p->_fr_pos, at))
            return refuse(p, 400, "invalid chunked framing");
        p->_fr_pos = at + n;
    }
    p->body_bytes += n;
    if (p->max_body && p->body_bytes > p->max_body) {
        p->_err_status = 413;
        p->_err_reason = "body too large";
        return HPE_USER;
    }
    if (p->on_body)
        p->on_body(p->ud, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    sg_h1_parser_t *p = self(ll);
    p->_is_done = true;
    p->_phase = PH_DONE;
    return HPE_PAUSED; /* stop exactly at the message end */
}

/* Two tables: the head needs no per-field completion callback (the whole
 * head is checked at on_headers_complete), trailers do; on_headers_complete
 * switches to the second, so heads do not pay a call per field. */
#define SG_H1_SETTINGS                                                                                                 \
    .on_method = on_method, .on_url = on_url, .on_status = on_status, .on_header_field = on_header_field,              \
    .on_header_value = on_header_value, .on_headers_complete = on_headers_complete, .on_body = on_body,                \
    .on_message_complete = on_message_complete

static const llhttp_settings_t g_settings = {SG_H1_SETTINGS};
static const llhttp_settings_t g_settings_body = {SG_H1_SETTINGS,
                                                  .on_header_field_complete = on_header_field_complete,
                                                  .on_header_value_complete = on_header_value_complete,
                                                  .on_chunk_extension_name = on_chunk_ext_name,
                                                  .on_chunk_extension_name_complete = on_chunk_ext_name_complete,
                                                  .on_chunk_extension_value = on_chunk_ext_value,
                                                  .on_chunk_extension_value_complete = on_chunk_ext_value_complete,
                                                  .on_chunk_header = on_chunk_header};

static sg_method_t method_of(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
        return SG_METHOD_GET;
    case HTTP_HEAD:
        return SG_METHOD_HEAD;
    case HTTP_POST:
        return SG_METHOD_POST;
    case HTTP_PUT:
        return SG_METHOD_PUT;
    case HTTP_DELETE:
        return SG_METHOD_DELETE;
    case HTTP_CONNECT:
        return SG_METHOD_CONNECT;
    case HTTP_OPTIONS:
        return SG_METHOD_OPTIONS;
    case HTTP_TRACE:
        return SG_METHOD_TRACE;
    case HTTP_PATCH:
        return SG_METHOD_PATCH;
    default:
        return SG_METHOD_OTHER;
    }
}

void sg_h1_parser_init(sg_h1_parser_t *p, sg_h1_kind_t kind)
{
    /* llhttp_init zeroes the llhttp_t itself. */
    memset((char *)p + sizeof(llhttp_t), 0, sizeof(*p) - sizeof(llhttp_t));
    p->kind = kind;
    llhttp_init(LL(p), kind == SG_H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &g_settings);
    LL(p)->data = p;
}

static int fail(sg_h1_parser_t *p, llhttp_errno_t err)
{
    p->_phase = PH_ERROR;
    /* One of our callbacks refused (llhttp reports HPE_USER for a data
     * callback, HPE_CB_HEADERS_COMPLETE for on_headers_complete). */
    if (p->_err_status && p->_err_reason)
        return -(int)p->_err_status;
    p->_err_status = 400;
    p->_err_reason = llhttp_get_error_reason(LL(p));
    if (!p->_err_reason)
        p->_err_reason = llhttp_errno_name(err);
    return -400;
}

int sg_h1_parse_head(sg_h1_parser_t *p, const char *buf, size_t len, sg_h1_header_t *headers, size_t max_headers,
                     bool skip_body)
{
    sg_h1_body_cb cb = p->on_body;
    void *ud = p->ud;
    uint64_t max_body = p->max_body;
    uint32_t max_trailer_bytes = p->max_trailer_bytes, max_trailer_count = p->max_trailer_count;
    sg_h1_parser_init(p, p->kind);
    p->on_body = cb;
    p->ud = ud;
    p->max_body = max_body;
    p->max_trailer_bytes = max_trailer_bytes;
    p->max_trailer_count = max_trailer_count;
    p->head.kind = p->kind;
    p->head.headers = headers;
    p->_max_headers = max_headers;
    p->_skip_body = skip_body;
    p->_buf = buf;
    p->_buf_len = len;
    llhttp_t *ll = LL(p);
    /* Any HTTP/1.x version is parsed; on_headers_complete refuses another
     * major version and handles 1.2+ as 1.1 (RFC 9110 2.5). */
    ll->lenient_flags |= LENIENT_VERSION;
    llhttp_errno_t err = llhttp_execute(ll, buf, len);
    sg_h1_head_t *h = &p->head;
    if (err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        if (p->_phase == PH_HEAD) {
            p->_err_reason = "incomplete head";
            p->_phase = PH_ERROR;
            p->_err_status = 400;
            return -400;
        }
        if (err != HPE_OK && llhttp_get_error_pos(ll) != buf + len) {
            p->_err_reason = "bytes after head";
            p->_phase = PH_ERROR;
            p->_err_status = 400;
            return -400;
        }
        if (p->kind == SG_H1_REQUEST) {
            h->method = method_of(ll->method);
        }
        h->is_upgrade = ll->upgrade != 0;
        h->has_body = !p->_is_done;
        h->is_keep_alive = llhttp_should_keep_alive(ll) != 0;
        h->is_eof_body = h->has_body && llhttp_message_needs_eof(ll);
        if (err == HPE_PAUSED)
            llhttp_resume(ll);
        else if (err == HPE_PAUSED_UPGRADE)
            llhttp_resume_after_upgrade(ll);
        p->_buf = NULL;
        return 0;
    }
    return fail(p, err);
}

int sg_h1_parse_body(sg_h1_parser_t *p, const char *buf, size_t len, size_t *used)
{
    if (p->_phase == PH_DONE) {
        *used = 0;
        return SG_H1_BODY_DONE;
    }
    if (p->_phase != PH_BODY)
        return -400;
    llhttp_t *ll = LL(p);
    p->_in_start = buf;
    p->_in_end = buf + len;
    p->_fr_pos = buf;
    llhttp_errno_t err = llhttp_execute(ll, buf, len);
    const char *end = err == HPE_OK ? buf + len : llhttp_get_error_pos(ll);
    if ((err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && p->head.is_chunked &&
        !framing_ok(p, p->_fr_pos, end)) {
        refuse(p, 400, "invalid chunked framing");
        return fail(p, HPE_USER);
    }
    if (err == HPE_OK) {
        *used = len;
        return SG_H1_BODY_MORE;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        *used = (size_t)(end - buf);
        return SG_H1_BODY_DONE;
    }
    return fail(p, err);
}

int sg_h1_check_body(const sg_h1_parser_t *p, const char *buf, size_t len)
{
    sg_h1_parser_t copy = *p;
    LL(&copy)->data = &copy; /* llhttp_t holds no other pointer into p */
    copy.on_body = NULL;
    size_t used;
    int r = sg_h1_parse_body(&copy, buf, len, &used);
    return r < 0 ? r : 0;
}

int sg_h1_finish(sg_h1_parser_t *p)
{
    if (p->_phase == PH_DONE)
        return SG_H1_BODY_DONE;
    if (p->_phase != PH_BODY || !p->head.is_eof_body)
        return -400;
    llhttp_errno_t err = llhttp_finish(LL(p));
    if ((err == HPE_OK || err == HPE_PAUSED) && p->_is_done)
        return SG_H1_BODY_DONE;
    if (err == HPE_OK) {
        p->_phase = PH_DONE;
        return SG_H1_BODY_DONE;
    }
    return fail(p, err);
}

const char *sg_h1_error_reason(const sg_h1_parser_t *p)
{
    return p->_err_reason ? p->_err_reason : "";
}

const sg_h1_header_t *sg_h1_find(const sg_h1_head_t *h, sg_str_t name, size_t *count)
{
    const sg_h1_header_t *first = NULL;
    size_t n = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        if (sg_str_ieq(h->headers[i].name, name)) {
            if (!first)
                first = &h->headers[i];
            n++;
        }
    }
    if (count)
        *count = n;
    return first;
}

const sg_h1_header_t *sg_h1_find_kind(const sg_h1_head_t *h, sg_h1_field_t kind, size_t *count)
{
    const sg_h1_header_t *first = NULL;
    size_t n = 0;
    if (h->field_mask & SG_H1_F_BIT(kind)) {
        for (size_t i = 0; i < h->n_headers; i++) {
            if (h->headers[i].kind == kind) {
                if (!first)
                    first = &h->headers[i];
                n++;
            }
        }
    }
    if (count)
        *count = n;
    return first;
}

bool sg_h1_name_has_underscore(sg_str_t name)
{
    return name.len && memchr(name.p, '_', name.len) != NULL;
}

bool sg_h1_list_has(sg_str_t v, sg_str_t token)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e > s && sg_str_ieq(sg_str_make(v.p + s, e - s), token))
            return true;
    }
    return false;
}

/* The IANA HTTP Status Code Registry (RFC 9110 section 15 and the RFCs it
 * lists): the proxy's own answers (400-505, the egress 403/407, admin,
 * limits) and an upstream status line with an empty reason both get their
 * registered phrase; only an unregistered code is "Unknown". */
const char *sg_h1_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 208:
        return "Already Reported";
    case 226:
        return "IM Used";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 506:
        return "Variant Also Negotiates";
    case 507:
        return "Insufficient Storage";
    case 508:
        return "Loop Detected";
    case 510:
        return "Not Extended";
    case 511:
        return "Network Authentication Required";
    default:
        return "Unknown";
    }
}

/* ---- message reader -------------------------------------------------------- */

static void read_keep(sg_h1_reader_t *r, const char *p, size_t n)
{
    size_t k = SG_MIN(n, r->head_cap - r->head_len);
    memcpy(r->head + r->head_len, p, k);
    r->head_len += k;
}

int sg_h1_read_head(sg_h1_reader_t *r, const sg_h1_read_opts_t *o, const char *p, size_t n, size_t *used,
                    const char **why)
{
    size_t u = 0;
    int st = sg_h1_scan_feed(&r->scan, o->limits, p, n, &u);
    if (st < 0) {
        read_keep(r, p, n);
        *why = st == -414   ? "request line too long"
               : st == -431 ? "request header too large"
                            : "malformed request head";
        return st;
    }
    if (r->head_len + u > r->head_cap) {
        read_keep(r, p, u);
        *why = "request header too large";
        return -431;
    }
    memcpy(r->head + r->head_len, p, u);
    r->head_len += u;
    r->n_used += u;
    *used = u;
    if (st == SG_H1_SCAN_MORE)
        return SG_H1_READ_MORE;
    /* sg_h1_parse_head initializes the parser, keeping these. */
    r->parser.kind = o->kind;
    r->parser.on_body = NULL;
    r->parser.ud = NULL;
    r->parser.max_body = o->max_body;
    r->parser.max_trailer_bytes = o->max_trailer_bytes;
    r->parser.max_trailer_count = o->max_trailer_count;
    st = sg_h1_parse_head(&r->parser, r->head, r->head_len, (sg_h1_header_t *)(void *)(r->head + r->head_cap),
                          r->max_hdrs, o->skip_body);
    if (st < 0) {
        *why = st == -431 ? "too many header fields" : sg_h1_error_reason(&r->parser);
        return st;
    }
    return SG_H1_READ_HEAD;
}
