/* Shared set-up for proxy integration tests: one or two scriptable
 * upstreams and a swarmgate started from a YAML template. */
#ifndef SG_TEST_GW_FIXTURE_H
#define SG_TEST_GW_FIXTURE_H

#include "support/http_client.h"
#include "support/proc.h"
#include "support/upstream_server.h"

#include <stdbool.h>

/* Formats yaml_fmt (printf) and starts the gateway; asserts on failure. */
void gw_start(sg_proc_t *p, const char *yaml_fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stops it and expects exit status 0 and no sanitizer report in its stderr
 * (prints stderr otherwise); cleans up. */
void gw_stop(sg_proc_t *p);
/* A pattern buffer: byte i = (i * 7 + i / 251) & 0xff (no short period). */
char *gw_pattern(size_t n);
/* Encodes body as chunked with chunks of `chunk` bytes (malloc'ed). */
char *gw_chunked(const char *body, size_t n, size_t chunk, size_t *out_len);
/* An ephemeral loopback port nothing listens on. */
unsigned gw_dead_port(void);

#endif
