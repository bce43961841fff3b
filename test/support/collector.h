/* A tiny real HTTP/1.1 collector on loopback for span-export tests.
 *
 * Runs its own thread with blocking sockets. Accepts requests (one per
 * connection or keep-alive, one connection at a time), stores each
 * request's method, path and body, and answers 200 with an empty JSON body
 * (keep-alive), or 503 / any status / nothing (stall) for the next N
 * requests when told to. Stop with sg_collector_stop(), which joins
 * the thread and frees everything. */
#ifndef SG_TEST_COLLECTOR_H
#define SG_TEST_COLLECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sg_collector sg_collector_t;

/* Binds 127.0.0.1 on an ephemeral port. NULL on failure. */
sg_collector_t *sg_collector_start(void);
void sg_collector_stop(sg_collector_t *c);
uint16_t sg_collector_port(const sg_collector_t *c);
/* "http://127.0.0.1:<port><path>" into buf. */
const char *sg_collector_url(const sg_collector_t *c, const char *path, char *buf, size_t cap);

/* The next n requests get 503 (fail: retryable under OTLP/HTTP) or no
 * answer at all (stall: the connection stays open until the client closes
 * it or the collector stops). */
void sg_collector_fail_next(sg_collector_t *c, int n);
void sg_collector_stall_next(sg_collector_t *c, int n);
/* The next n requests get `status` with a 2-byte JSON body and the extra
 * header lines ("Name: value\r\n" each, may be NULL); the connection is
 * closed after it when they include "Connection: close". */
void sg_collector_answer_next(sg_collector_t *c, int n, int status, const char *extra_headers);
/* 200s with a chunked body (extensions and a trailer field included). */
void sg_collector_set_chunked(sg_collector_t *c, bool is_chunked);
/* Connections accepted so far. */
size_t sg_collector_connections(sg_collector_t *c);
/* When request i arrived (CLOCK_MONOTONIC ms), -1 when out of range. */
long long sg_collector_time_ms(sg_collector_t *c, size_t i);

/* Requests received so far (answered or not). */
size_t sg_collector_count(sg_collector_t *c);
/* Waits until at least n requests arrived or timeout_ms passed. */
bool sg_collector_wait(sg_collector_t *c, size_t n, int timeout_ms);
/* Copies of request i's parts (malloc'ed, NUL-terminated; caller frees).
 * NULL when i is out of range. body_len may be NULL. */
char *sg_collector_body(sg_collector_t *c, size_t i, size_t *body_len);
char *sg_collector_path(sg_collector_t *c, size_t i);
char *sg_collector_header(sg_collector_t *c, size_t i, const char *name);

#endif /* SG_TEST_COLLECTOR_H */
