/* A scriptable HTTP/1.1 upstream for integration tests: real sockets on
 * loopback, one accept thread plus one thread per connection, plain
 * blocking I/O with poll() deadlines. It records every request it receives
 * (raw head, body size, a copy of bodies up to 16 MiB) and counts connections.
 *
 * Behaviour is chosen by the request path:
 *   /echo            200, Content-Length, body = request body
 *   /echo-chunked    200, chunked, body = request body (one chunk per read)
 *   /sink            reads the body without keeping it; body = its length
 *   /gen?n=N[&chunked=1][&close=1]  N bytes of pattern (byte i = 'a' + i % 26)
 *   /status?code=C   C with no body (204/304) or a 2-byte body "ok"
 *   /sse             text/event-stream: one event, waits for
 *                    us_release(), second event, end (chunked)
 *   /slow?ms=M       waits M ms before the head
 *   /close-mid       Content-Length 1000, 10 bytes, then close
 *   /bad             an invalid status line
 *   /ws              101 Switching Protocols, then echoes bytes until close
 *   /close           200 "bye" with Connection: close, then closes
 *   anything else    200 "hello" (Content-Length 5)
 * HEAD requests get the head only. Every response carries
 * "X-Upstream: <name>". */
#ifndef SG_TEST_UPSTREAM_SERVER_H
#define SG_TEST_UPSTREAM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct us_server us_server_t;

typedef struct us_request {
    char *head; /* raw head bytes incl. the final CRLF CRLF, NUL-terminated */
    size_t head_len;
    uint64_t body_len;
    char *body;  /* copy of the body when <= 16 MiB (else NULL) */
    int conn_id; /* which accepted connection carried it */
} us_request_t;

/* Starts on 127.0.0.1 (or ::1 when ipv6) port 0. name appears in X-Upstream. */
us_server_t *us_start(const char *name, bool ipv6);
/* Same on a given port (e.g. to restart a stopped server where it was);
 * NULL when the port cannot be bound. */
us_server_t *us_start_port(const char *name, bool ipv6, uint16_t port);
uint16_t us_port(const us_server_t *s);
/* Stops accepting, closes every connection, joins every thread, frees. */
void us_stop(us_server_t *s);

int us_connections(us_server_t *s); /* accepted so far */
int us_requests(us_server_t *s);    /* complete requests so far */
/* Copy of request i (0-based); caller frees with us_request_free. false if
 * none, or when it is older than the last 4096 (only those are kept). */
bool us_request(us_server_t *s, int i, us_request_t *out);
void us_request_free(us_request_t *r);
/* Waits until at least n requests were received (deadline ms). */
bool us_wait_requests(us_server_t *s, int n, int timeout_ms);
/* Lets a waiting /sse response continue. */
void us_release(us_server_t *s);
/* Header value of a recorded request head (first match, case-insensitive), into out. */
bool us_header(const char *head, const char *name, char *out, size_t cap);
int us_header_count(const char *head, const char *name);

#endif
