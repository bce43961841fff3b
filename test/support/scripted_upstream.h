/* A raw upstream scripted at the byte level, for what the correct HTTP of
 * support/upstream_server.h cannot send: broken or unusual responses
 * (framing_test.c), stray bytes, resets and silences (faults_test.c),
 * interim and bodiless heads (http_semantics_test.c).
 *
 * Every request head it reads (up to CRLF CRLF) goes to a script, which
 * answers with bytes written as given, whatever they are, or closes or
 * resets the connection, or waits for more bytes. A connection stays open
 * after an answer unless the script says otherwise: a second request on it
 * counts as a reuse (a proxy must never reuse a connection whose response
 * it refused). Request bodies are not parsed: bytes after a head stay in
 * the connection's buffer (a script may wait for them, up to
 * SU_BUF_BYTES).
 *
 * One thread polls the listener and every connection (deadline-free: it
 * runs until su_stop); loopback, port 0. Counters are atomic and may be
 * read from any thread; the control calls (su_inject, su_stop_listening)
 * return once the server's thread carried them out. */
#ifndef SG_TEST_SCRIPTED_UPSTREAM_H
#define SG_TEST_SCRIPTED_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SU_MAX_CONNS 64            /* open at once; more are accepted and closed */
#define SU_BUF_BYTES (256u * 1024) /* kept per connection; bytes beyond are dropped */
#define SU_REPLY_BYTES 4096

typedef struct su_server su_server_t;

/* One request head as read, for the script (valid during the call). */
typedef struct su_request {
    const char *head; /* through CRLF CRLF (not NUL-terminated) */
    size_t head_len;
    size_t body_len;  /* bytes read after the head so far */
    char target[256]; /* the request-target (between the first two spaces), truncated */
    int conn_serial;  /* accept order of its connection, from 0 */
    int nth;          /* requests this connection had before this one */
} su_request_t;

typedef enum su_action {
    SU_ANSWER = 0,   /* write the reply, keep the connection */
    SU_ANSWER_CLOSE, /* write the reply, then close */
    SU_CLOSE,        /* close without a byte (FIN) */
    SU_RESET,        /* close with a reset (RST: SO_LINGER 0) */
    SU_WAIT,         /* not yet: called again with the same head when more bytes came */
} su_action_t;

typedef struct su_reply {
    char bytes[SU_REPLY_BYTES];
    size_t len;
} su_reply_t;

/* Decides what to do with one request head; fills reply for SU_ANSWER*.
 * Runs on the server's thread. */
typedef su_action_t (*su_script_fn)(void *ud, const su_request_t *req, su_reply_t *reply);

/* Starts a server answering every request with the n bytes of script
 * (copied). When close_after is set, the connection is closed after each
 * answer (for close-delimited bodies). NULL when it cannot listen. */
su_server_t *su_start(const void *script, size_t n, bool close_after);
/* Starts a server whose answers come from fn(ud, ...). */
su_server_t *su_start_fn(su_script_fn fn, void *ud);
/* Formats into reply (truncated at SU_REPLY_BYTES - 1); returns reply->len. */
size_t su_reply_printf(su_reply_t *reply, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

uint16_t su_port(const su_server_t *s);
int su_connections(su_server_t *s); /* accepted so far */
int su_requests(su_server_t *s);    /* request heads acted on (all but SU_WAIT) */
int su_reuses(su_server_t *s);      /* requests that came on an already used connection */
int su_eofs(su_server_t *s);        /* connections the peer closed (EOF or error on read) */
/* Waits (deadline) until su_eofs reaches n. */
bool su_wait_eofs(su_server_t *s, int n, int timeout_ms);

/* Writes bytes on the connection that answered last (when it is still
 * open), outside any request: stray bytes on a pooled connection. */
void su_inject(su_server_t *s, const void *bytes, size_t n);
/* Closes the listener: new connections are refused, open ones stay. */
void su_stop_listening(su_server_t *s);
/* Closes the listener and every connection, joins the thread, frees. */
void su_stop(su_server_t *s);

#endif
