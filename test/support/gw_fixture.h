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
/* Same with extra environment "K=V" entries (NULL-terminated). */
void gw_start_env(sg_proc_t *p, const char *const *env, const char *yaml_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Environment for gw_start_env: the child logs each getaddrinfo() call on
 * its stderr as "sgtest-getaddrinfo: <name>" (test/shim/gai_log.c). */
#define GW_GAI_LOG_ENV                                                                                                 \
    (const char *const[])                                                                                              \
    {                                                                                                                  \
        "LD_PRELOAD=" SG_GAI_LOG_SHIM, "ASAN_OPTIONS=verify_asan_link_order=0", NULL                                   \
    }
/* Stops it and expects exit status 0 and no sanitizer report in its stderr
 * (prints stderr otherwise); cleans up. */
void gw_stop(sg_proc_t *p);
/* A pattern buffer: byte i = (i * 7 + i / 251) & 0xff (no short period). */
char *gw_pattern(size_t n);
/* Encodes body as chunked with chunks of `chunk` bytes (malloc'ed). */
char *gw_chunked(const char *body, size_t n, size_t chunk, size_t *out_len);
/* An ephemeral loopback port that refuses connections: bound (held for the
 * life of the test process) and never listening. */
unsigned gw_dead_port(void);

#endif
