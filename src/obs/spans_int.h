/* Declarations private to src/obs/spans*.c: the span exporter's reader of
 * a collector's HTTP/1.1 response (spans_http.c), exposed for unit tests. */
#ifndef SG_OBS_SPANS_INT_H
#define SG_OBS_SPANS_INT_H

#include "sg/common.h"

#define SG__SPANS_RESP_HEAD_MAX 4096

/* One response to a POST, read incrementally so the connection can carry
 * the next POST (keep-alive): status line and header fields, then the body
 * delimited by Content-Length, chunked coding, or the close. Pure code:
 * no I/O, no allocation. Owner: the exporter that embeds it. */
typedef struct sg__spans_resp {
    unsigned status;         /* final status (1xx skipped); 0 until the head is read */
    bool is_keep_alive;      /* the connection may carry the next request */
    uint64_t retry_after_ms; /* Retry-After (delta-seconds or HTTP-date); 0 = none */
    /* private */
    uint8_t _phase;
    bool _has_digit;
    bool _line_empty;
    uint64_t _left;
    size_t _head_len;
    char _head[SG__SPANS_RESP_HEAD_MAX];
} sg__spans_resp_t;

enum {
    SG__SPANS_RESP_MORE = 0, /* every byte was taken; feed more */
    SG__SPANS_RESP_DONE = 1, /* complete: *used bytes belonged to it */
};

void sg__spans_resp_init(sg__spans_resp_t *r);
/* Feeds n bytes. Returns SG__SPANS_RESP_MORE (*used = n), SG__SPANS_RESP_DONE,
 * or -1 for a response that cannot be read (bad status line or framing, a
 * head over SG__SPANS_RESP_HEAD_MAX). now_unix_s turns an HTTP-date
 * Retry-After into a delay. */
int sg__spans_resp_feed(sg__spans_resp_t *r, const char *p, size_t n, size_t *used, int64_t now_unix_s);
/* The peer closed: SG__SPANS_RESP_DONE when that ends the response (a body
 * delimited by the close), -1 otherwise. */
int sg__spans_resp_eof(sg__spans_resp_t *r);
/* True once any byte of a response has been fed. */
bool sg__spans_resp_started(const sg__spans_resp_t *r);

#endif /* SG_OBS_SPANS_INT_H */
