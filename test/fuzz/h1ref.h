/* h1ref: a small strict HTTP/1.1 message reader, written for the
 * differential fuzz targets (fuzz_diff_request.c, fuzz_diff_response.c)
 * straight from the grammar of RFC 9112 (message syntax, framing) and
 * RFC 9110 (fields, lists). It shares no code with src/net/http1.c or
 * llhttp: it is the "strict reader" swarmgate is compared with.
 *
 * It reads a whole buffer at once (no incremental state) and returns the
 * messages in it: start line, fields, trailer fields, decoded body, and
 * where each message ends; then how the input ends (at a message boundary,
 * inside a valid message, or at the first byte that no valid message could
 * have there).
 *
 * Deliberate choices (each one is stated where it is implemented):
 *  - HTTP-version: "HTTP/1." DIGIT. HTTP/1.2 to 1.9 are read as 1.1
 *    (RFC 9110 2.5: a recipient processes a higher minor version as the
 *    highest it implements); swarmgate forwards them as HTTP/1.1.
 *  - request-target: 1*VCHAR (no CTL, SP, DEL or byte >= 0x80); the URI
 *    forms themselves are swarmgate's business (proxy.c refuses what it
 *    cannot route), not framing.
 *  - Empty lines (CRLF) before a start line are skipped (RFC 9112 2.2),
 *    for responses too. A status line without the SP before an empty
 *    reason ("HTTP/1.1 200" CRLF) is accepted: it cannot change framing.
 *  - Framing (RFC 9112 6.3), strict: Transfer-Encoding and Content-Length
 *    together, Transfer-Encoding in HTTP/1.0, a Transfer-Encoding without
 *    any coding, a coding with parameters, and differing or non-digit
 *    Content-Length values are errors. A request's codings must be exactly
 *    "chunked"; a response's must be known codings (chunked, gzip, deflate,
 *    compress, x-gzip, x-compress) with chunked, if present, once and last;
 *    otherwise the response is read until close. Identical repeated
 *    Content-Length fields are taken (RFC 9110 8.6), a list is not. A
 *    Content-Length or chunk-size above 2^63-1 is refused (RFC 9110 8.6:
 *    recipients must prevent integer overflow; a signed 64-bit reader
 *    downstream would read such a size as negative).
 *  - Responses to HEAD, 1xx, 204 and 304 end with their head, whatever
 *    their framing fields say (RFC 9112 6.3 rule 1).
 *  - Trailer fields follow the field-line grammar and the limits given
 *    (the same limits swarmgate puts on a head).
 *
 * Pure code, no allocation: all storage is in h1ref_out_t and the body
 * buffer the caller lends. */
#ifndef SG_H1REF_H
#define SG_H1REF_H

/* The reader is compiled into each target that uses it (fuzz_diff.h and
 * the replay test include h1ref.c): one private copy per translation unit,
 * unused parts allowed. */
#ifndef H1REF_API
#define H1REF_API static __attribute__((unused))
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct h1ref_str {
    const char *p;
    size_t len;
} h1ref_str_t;

typedef struct h1ref_field {
    h1ref_str_t name;
    h1ref_str_t value; /* without leading and trailing OWS */
} h1ref_field_t;

typedef enum h1ref_framing {
    H1REF_NONE = 0, /* the message ends with its head */
    H1REF_LENGTH,
    H1REF_CHUNKED,
    H1REF_CLOSE, /* response read until the connection closes */
} h1ref_framing_t;

typedef enum h1ref_err {
    H1REF_OK = 0,
    H1REF_E_LINE_END,    /* CR not followed by LF, or a bare LF */
    H1REF_E_METHOD,      /* not a token followed by SP */
    H1REF_E_EXTRA_SP,    /* more than one SP between start-line elements */
    H1REF_E_TARGET,      /* empty, or a byte that is not VCHAR */
    H1REF_E_TARGET_8BIT, /* a byte >= 0x80 in the request-target */
    H1REF_E_VERSION,     /* not "HTTP/1." DIGIT */
    H1REF_E_STATUS,      /* status-code not 3 digits in 100-599 */
    H1REF_E_REASON,
    H1REF_E_WS_LINE,    /* a field line that starts with whitespace (obs-fold) */
    H1REF_E_FIELD_NAME, /* not a token, or whitespace before the colon */
    H1REF_E_FIELD_VALUE,
    H1REF_E_TE_EMPTY,  /* Transfer-Encoding without any coding */
    H1REF_E_TE_CODING, /* see the file comment */
    H1REF_E_TE_CL,     /* Transfer-Encoding and Content-Length */
    H1REF_E_TE_HTTP10, /* Transfer-Encoding in an HTTP/1.0 message */
    H1REF_E_CL,        /* Content-Length not 1*DIGIT, or values differ */
    H1REF_E_TOO_LARGE, /* Content-Length or chunk-size above 2^63-1 */
    H1REF_E_CHUNK_SIZE,
    H1REF_E_CHUNK_EXT,
    H1REF_E_CHUNK_DATA_END, /* chunk data not followed by exactly CRLF */
    H1REF_E_TRAILER,        /* a trailer line that is not a field line */
    H1REF_E_TRAILER_LIMIT,  /* too many trailer lines or bytes */
    H1REF_E_CAPACITY,       /* more fields than h1ref_out_t holds */
    H1REF_E__COUNT
} h1ref_err_t;

typedef enum h1ref_state {
    H1REF_END = 0, /* the input ends at a message boundary (or, for a response, after the final response) */
    H1REF_PARTIAL, /* the input ends inside a message (a valid prefix) */
    H1REF_ERROR,   /* err at err_off */
} h1ref_state_t;

typedef struct h1ref_msg {
    h1ref_str_t method;          /* requests */
    h1ref_str_t target;          /* requests */
    int status;                  /* responses */
    h1ref_str_t reason;          /* responses */
    int version_minor;           /* 0..9 */
    size_t field0, n_fields;     /* h1ref_out_t.fields[field0 .. field0 + n_fields) */
    size_t trailer0, n_trailers; /* idem */
    size_t body0, body_len;      /* decoded body: h1ref_out_t.body[body0 .. body0 + body_len) */
    size_t start;                /* offset of the start line (after skipped empty lines) */
    size_t head_end;             /* offset just after the head; 0 while the head is incomplete */
    size_t end;                  /* offset just after the message; 0 while it is incomplete */
    h1ref_framing_t framing;
    uint64_t content_length;
} h1ref_msg_t;

#define H1REF_MAX_MSGS 40
#define H1REF_MAX_FIELDS 4096

typedef struct h1ref_limits {
    size_t trailer_lines; /* trailer field lines per message */
    size_t trailer_bytes; /* trailer field lines with their CRLFs */
} h1ref_limits_t;

typedef struct h1ref_out {
    /* msg[0 .. n_msgs) are complete; when state is not END, msg[n_msgs]
     * is the message the input ended in (head_end, fields, body so far). */
    h1ref_msg_t msg[H1REF_MAX_MSGS + 1];
    size_t n_msgs;
    bool is_truncated; /* stopped after H1REF_MAX_MSGS messages with input left */
    h1ref_field_t fields[H1REF_MAX_FIELDS];
    size_t n_fields;
    char *body; /* lent by the caller; decoded bytes never exceed the input's */
    size_t body_cap, body_len;
    h1ref_state_t state;
    h1ref_err_t err;
    size_t err_off; /* ERROR: the first byte no valid message could have there; for an error of the
                     * head as a whole (framing fields), the LF that ends the head */
} h1ref_out_t;

H1REF_API void h1ref_init(h1ref_out_t *o, char *body, size_t body_cap);
/* Reads requests back to back until the input ends (or H1REF_MAX_MSGS). */
H1REF_API void h1ref_parse_requests(h1ref_out_t *o, const char *p, size_t n, const h1ref_limits_t *lim);
/* Reads the answer to one request: interim 1xx responses (not 101), each
 * a message of its own, then the final response. is_head: the request was
 * HEAD. is_eof: the connection closed after the last byte (ends a body read
 * until close). Bytes after the final response are not read. */
H1REF_API void h1ref_parse_response(h1ref_out_t *o, const char *p, size_t n, bool is_head, bool is_eof,
                                    const h1ref_limits_t *lim);
H1REF_API const char *h1ref_err_name(h1ref_err_t e);

#endif /* SG_H1REF_H */
