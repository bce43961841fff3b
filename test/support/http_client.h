/* A raw-socket HTTP/1.1 test client with deadlines: send exact bytes, read
 * one full response (Content-Length, chunked, or until close), parse status,
 * headers and body. Nothing is hidden: tests can write any bytes they want. */
#ifndef SG_TEST_HTTP_CLIENT_H
#define SG_TEST_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct hc_conn {
    int fd;
    char *buf;
    size_t len, pos, cap;
} hc_conn_t;

typedef struct hc_response {
    int status;
    char *head; /* raw head incl. CRLF CRLF, NUL-terminated */
    size_t head_len;
    char *body; /* decoded body (chunked framing removed), NUL-terminated */
    size_t body_len;
    bool is_chunked;
    int n_interim; /* 1xx responses skipped before this one */
} hc_response_t;

enum { HC_OK = 0, HC_TIMEOUT = -1, HC_CLOSED = -2, HC_BAD = -3 };

/* addr: "127.0.0.1:8080" or "[::1]:8080". Returns 0 or -1. */
int hc_connect(hc_conn_t *c, const char *addr, int timeout_ms);
void hc_close(hc_conn_t *c);
bool hc_send(hc_conn_t *c, const void *p, size_t n, int timeout_ms);
bool hc_send_str(hc_conn_t *c, const char *s, int timeout_ms);
/* Reads one response. is_head: the request was HEAD (no body follows).
 * keep_interim: return a 1xx as the response instead of skipping it. */
int hc_read_response_ex(hc_conn_t *c, hc_response_t *r, bool is_head, bool keep_interim, int timeout_ms);
int hc_read_response(hc_conn_t *c, hc_response_t *r, int timeout_ms);
void hc_response_free(hc_response_t *r);
/* Header value (first, case-insensitive) into out; false when absent. */
bool hc_header(const hc_response_t *r, const char *name, char *out, size_t cap);
int hc_header_count(const hc_response_t *r, const char *name);
/* Raw bytes: whatever arrives within the deadline (>0), 0 on EOF, -1 on timeout/error. */
ssize_t hc_read_some(hc_conn_t *c, char *out, size_t cap, int timeout_ms);
/* True when the peer closed (EOF or reset) within the deadline; buffered and
 * newly read bytes are discarded. */
bool hc_wait_closed(hc_conn_t *c, int timeout_ms);
/* One request on a fresh connection. Returns HC_* */
int hc_request(const char *addr, const char *raw, hc_response_t *r, int timeout_ms);

#endif
