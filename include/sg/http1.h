/* HTTP/1.x message framing on top of llhttp (the only file that includes
 * llhttp.h is src/net/http1.c).
 *
 * A message is handled in two steps:
 *  1. the head scanner (sg_h1_scan_feed) finds the end of the head (CRLF CRLF)
 *     byte by byte while the caller copies the head into one contiguous
 *     buffer. It rejects what llhttp's loose mode lets through and what the
 *     limits forbid: NUL and other control bytes, bare CR, bare LF, obs-fold,
 *     an overlong start line (414), too many or too large header lines (431);
 *  2. the parser (sg_h1_parse_head) runs llhttp over that complete head; the
 *     head's slices point into the caller's buffer. The body is then fed with
 *     sg_h1_parse_body(), which stops exactly at the end of the message, so the
 *     caller knows which raw bytes belong to the body (forwarded unchanged:
 *     Content-Length and chunked bodies are passed through byte for byte).
 *
 * Pure code: no I/O, no allocation. Any thread; one parser per direction. */
#ifndef SG_HTTP1_H
#define SG_HTTP1_H

#include "sg/common.h"
#include "sg/reqrec.h"

typedef enum sg_h1_kind { SG_H1_REQUEST = 0, SG_H1_RESPONSE, SG_H1_KIND__COUNT } sg_h1_kind_t;

/* The fields whose name the proxy acts on, classified once when a head is
 * parsed (sg_h1_field_kind), so that the head builders switch on a kind
 * instead of comparing every name with every string. Names are matched
 * ASCII case-insensitively; SG_H1_F_PROXY is any name beginning with
 * "proxy-" (RFC 9110 7.6.1 hop-by-hop fields of old proxies). */
typedef enum sg_h1_field {
    SG_H1_F_OTHER = 0,
    SG_H1_F_HOST,
    SG_H1_F_CONTENT_LENGTH,
    SG_H1_F_TRANSFER_ENCODING,
    SG_H1_F_CONNECTION,
    SG_H1_F_KEEP_ALIVE,
    SG_H1_F_TE,
    SG_H1_F_TRAILER,
    SG_H1_F_UPGRADE,
    SG_H1_F_PROXY,
    SG_H1_F_EXPECT,
    SG_H1_F_VIA,
    SG_H1_F_X_FORWARDED_FOR,
    SG_H1_F_X_FORWARDED_PROTO,
    SG_H1_F_X_FORWARDED_HOST,
    SG_H1_F_TRACEPARENT,
    SG_H1_F_TRACESTATE,
    SG_H1_F_MAX_FORWARDS,
    SG_H1_F__COUNT
} sg_h1_field_t;

typedef struct sg_h1_header {
    sg_str_t name;
    sg_str_t value; /* leading and trailing OWS removed */
    uint8_t kind;   /* sg_h1_field_t of name */
} sg_h1_header_t;

/* The kind of a field name (any bytes; SG_H1_F_OTHER for unknown names). */
sg_h1_field_t sg_h1_field_kind(sg_str_t name);
#define SG_H1_F_BIT(k) (1u << (k))

typedef struct sg_h1_limits {
    uint32_t start_line_bytes; /* request/status line without CRLF; over -> 414 */
    uint32_t header_bytes;     /* all header lines incl. CRLFs; over -> 431 */
    uint32_t header_count;     /* over -> 431 */
} sg_h1_limits_t;

/* Incremental head scanner state. Zero it (or sg_h1_scan_init) per head. */
typedef struct sg_h1_scan {
    uint32_t len;       /* head bytes accepted so far */
    uint32_t line_len;  /* bytes of the current line */
    uint32_t start_len; /* length of the start line once complete */
    uint32_t n_lines;   /* header lines completed */
    uint8_t _state;
    bool is_in_start;
    bool has_sp;         /* the start line has had its first SP ... */
    uint32_t method_len; /* ... at this offset (a method overflow is 400, a long target 414) */
} sg_h1_scan_t;

enum {
    SG_H1_SCAN_MORE = 0, /* every byte given belongs to the head; feed more */
    SG_H1_SCAN_DONE = 1, /* head complete: *used bytes of the input ended it */
};

void sg_h1_scan_init(sg_h1_scan_t *s);
/* Scans n bytes. Returns SG_H1_SCAN_MORE (*used = n), SG_H1_SCAN_DONE (*used
 * = bytes up to and including the final LF), or -status (400, 414, 431) for a
 * head that must be refused. Leading empty lines before the start line are
 * accepted and count as head bytes (RFC 9112 2.2). */
int sg_h1_scan_feed(sg_h1_scan_t *s, const sg_h1_limits_t *lim, const char *p, size_t n, size_t *used);

/* A parsed head. Slices borrow from the buffer given to sg_h1_parse_head(). */
typedef struct sg_h1_head {
    sg_h1_kind_t kind;
    sg_method_t method;   /* requests */
    sg_str_t method_name; /* requests */
    sg_str_t target;      /* requests: request-target as sent */
    uint16_t status;      /* responses */
    sg_str_t reason;      /* responses */
    uint8_t version_major;
    uint8_t version_minor;
    sg_h1_header_t *headers;
    size_t n_headers;
    uint64_t content_length; /* valid when has_content_length */
    bool has_content_length;
    bool is_chunked;              /* Transfer-Encoding with final chunked */
    bool has_te;                  /* any Transfer-Encoding header */
    bool is_keep_alive;           /* per version and Connection header */
    bool is_upgrade;              /* request: Upgrade + Connection: upgrade (or CONNECT); response: 101 */
    bool has_body;                /* a body follows the head (parser in body state) */
    bool is_eof_body;             /* response body delimited by connection close */
    uint32_t n_underscore_fields; /* fields whose name contains '_' (limits.underscores_in_headers) */
    uint32_t field_mask;          /* SG_H1_F_BIT(kind) of every field present */
} sg_h1_head_t;

/* Called with decoded body bytes (chunk framing removed), if set. */
typedef void (*sg_h1_body_cb)(void *ud, const char *p, size_t n);

#define SG_H1_LLHTTP_SIZE 96
#define SG_H1_TRAILER_BYTES_DEFAULT 8192u

typedef struct sg_h1_parser {
    _Alignas(8) unsigned char _ll[SG_H1_LLHTTP_SIZE]; /* llhttp_t */
    sg_h1_kind_t kind;
    sg_h1_head_t head;
    uint64_t max_body;     /* decoded body bytes allowed, 0 = unlimited; over -> 413 */
    uint64_t body_bytes;   /* decoded body bytes seen */
    sg_h1_body_cb on_body; /* optional */
    void *ud;
    uint32_t max_trailer_bytes; /* trailer section bytes, 0 = SG_H1_TRAILER_BYTES_DEFAULT; over -> 431 */
    uint32_t max_trailer_count; /* trailer lines, 0 = the header storage size; over -> 431 */
    /* private */
    size_t _max_headers; /* header lines; trailer lines likewise */
    const char *_buf;    /* the head being parsed (sg_h1_parse_head only) */
    size_t _buf_len;
    uint32_t _tr_bytes;    /* trailer section bytes so far */
    uint32_t _tr_count;    /* trailer lines so far */
    uint32_t _tr_name_len; /* current trailer name length */
    char _tr_name[24];     /* its first bytes (long enough for every forbidden name) */
    bool _tr_span_at_end;  /* the last trailer value span reached the end of its input */
    const char *_in_start; /* the input of the current sg_h1_parse_body() call */
    const char *_in_end;
    const char *_fr_pos;    /* chunked: start of the framing bytes not yet checked */
    bool _fr_prev_cr;       /* chunked: the last framing byte was CR */
    uint8_t _fr_where;      /* chunked: FR_SIZE_LINE, FR_AFTER_DATA or FR_TRAILERS */
    uint8_t _fr_prev;       /* chunked: the last framing byte */
    bool _fr_is_last_chunk; /* chunked: the size line just read was 0 */
    bool _fr_in_quote;      /* chunked: inside a quoted extension value of a size line */
    uint8_t _ext_state;     /* chunk extension value grammar state */
    uint32_t _ext_len;      /* chunk extension name bytes so far */
    uint16_t _err_status;
    uint8_t _phase;
    bool _last_was_value;
    bool _is_done;
    bool _skip_body;
    const char *_err_reason;
} sg_h1_parser_t;

enum {
    SG_H1_BODY_MORE = 0, /* all bytes consumed, message not finished */
    SG_H1_BODY_DONE = 1, /* message finished: *used bytes belonged to it */
};

void sg_h1_parser_init(sg_h1_parser_t *p, sg_h1_kind_t kind);
/* Parses a complete head (exactly the bytes the scanner delimited).
 * `headers` is storage for up to max_headers entries. `skip_body` says the
 * response answers a HEAD request (RFC 9110 9.3.2). Returns 0, or -status on
 * a malformed or refused head (400, 431; for a response the caller maps any
 * error to 502). After 0, head.has_body says whether sg_h1_parse_body() must
 * be fed. */
int sg_h1_parse_head(sg_h1_parser_t *p, const char *buf, size_t len, sg_h1_header_t *headers, size_t max_headers,
                     bool skip_body) SG_MUST_CHECK;
/* Feeds body bytes. Returns SG_H1_BODY_MORE, SG_H1_BODY_DONE, or -status
 * (400 bad framing, 413 over max_body). */
int sg_h1_parse_body(sg_h1_parser_t *p, const char *buf, size_t len, size_t *used) SG_MUST_CHECK;
/* Checks body bytes that have not been fed yet on a copy of the parser
 * (p is unchanged): 0 when they are valid so far, -status otherwise. Lets
 * the proxy refuse a bad chunked body before any byte goes upstream. */
int sg_h1_check_body(const sg_h1_parser_t *p, const char *buf, size_t len) SG_MUST_CHECK;
/* The peer closed: returns SG_H1_BODY_DONE when the body was delimited by
 * the close (or the message was already complete), -400 otherwise. */
int sg_h1_finish(sg_h1_parser_t *p) SG_MUST_CHECK;
/* Human-readable reason of the last error (static string). */
const char *sg_h1_error_reason(const sg_h1_parser_t *p);

/* Helpers on parsed heads. */
const sg_h1_header_t *sg_h1_find(const sg_h1_head_t *h, sg_str_t name, size_t *count);
/* The same by kind (a field known to sg_h1_field_kind). */
const sg_h1_header_t *sg_h1_find_kind(const sg_h1_head_t *h, sg_h1_field_t kind, size_t *count);
/* True when a comma-separated header value list contains token (case-insensitive). */
bool sg_h1_list_has(sg_str_t value, sg_str_t token);
/* True when a field name contains '_' (limits.underscores_in_headers). */
bool sg_h1_name_has_underscore(sg_str_t name);
const char *sg_h1_reason_phrase(int status);

/* ---- message reader: the two steps above over one head buffer ---------- */

/* One incoming message's head, for either direction (the HTTP/1 endpoint of
 * a client connection and of an upstream connection both use it): the bytes
 * are collected into `head` (capacity head_cap; header slots for max_hdrs
 * entries follow it in the same allocation, suitably aligned), then
 * parsed. The parser stays for the body. */
typedef struct sg_h1_reader {
    char *head; /* the caller's buffer, NULL between heads */
    size_t head_len;
    size_t n_used; /* bytes taken as head bytes by calls that did not refuse the head */
    size_t head_cap;
    size_t max_hdrs;
    sg_h1_scan_t scan;
    sg_h1_parser_t parser;
    const struct sg_h1_read_opts
        *ro; /* how its owner reads with it (set by the owner; sg_h1_read_head takes its own) */
} sg_h1_reader_t;

/* What the parse of a complete head needs besides the bytes. */
typedef struct sg_h1_read_opts {
    sg_h1_kind_t kind;
    const sg_h1_limits_t *limits; /* the scanner's */
    uint64_t max_body;            /* requests: limits.body_bytes (0 = none) */
    uint32_t max_trailer_bytes;
    uint32_t max_trailer_count;
    bool skip_body; /* responses: the request was HEAD */
} sg_h1_read_opts_t;

/* Starts a head in `head` (head_cap bytes of text, then max_hdrs
 * sg_h1_header_t slots). */
static inline void sg_h1_read_begin(sg_h1_reader_t *r, char *head, size_t head_cap, size_t max_hdrs)
{
    r->head = head;
    r->head_len = 0;
    r->n_used = 0;
    r->head_cap = head_cap;
    r->max_hdrs = max_hdrs;
    r->scan = (sg_h1_scan_t){.is_in_start = true}; /* sg_h1_scan_init */
}
enum {
    SG_H1_READ_MORE = 0, /* every byte given belongs to the head; feed more */
    SG_H1_READ_HEAD = 1, /* head complete and parsed: r->parser.head; *used bytes ended it */
};
/* Feeds n bytes. Returns SG_H1_READ_MORE, SG_H1_READ_HEAD, or -status (400,
 * 414, 431) with *why set: then the bytes given are kept in r->head as far
 * as they fit (a refused head may still carry a trace id the answer
 * reuses), and *used is meaningless. The answer never depends on how the
 * bytes were split across calls. */
int sg_h1_read_head(sg_h1_reader_t *r, const sg_h1_read_opts_t *o, const char *p, size_t n, size_t *used,
                    const char **why) SG_MUST_CHECK;

#endif /* SG_HTTP1_H */
