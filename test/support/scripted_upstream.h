/* A raw upstream for response-side tests: every request it reads (a head
 * up to CRLF CRLF; request bodies are not expected) is answered with the
 * same scripted bytes, written as given, whatever they are. After the
 * answer the connection stays open: a second request on it counts as a
 * reuse (a proxy must never reuse a connection whose response it refused).
 * One accept thread and one thread per connection, poll() deadlines;
 * loopback, port 0. */
#ifndef SG_TEST_SCRIPTED_UPSTREAM_H
#define SG_TEST_SCRIPTED_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct su_server su_server_t;

/* Starts a server answering every request with the n bytes of script
 * (copied). When close_after is set, the connection is closed after each
 * answer (for close-delimited bodies). */
su_server_t *su_start(const void *script, size_t n, bool close_after);
uint16_t su_port(const su_server_t *s);
int su_connections(su_server_t *s); /* accepted so far */
int su_requests(su_server_t *s);    /* request heads read so far */
int su_reuses(su_server_t *s);      /* requests that came on an already used connection */
/* Closes the listener and every connection, joins the threads, frees. */
void su_stop(su_server_t *s);

#endif
