/* LD_PRELOAD shim for integration tests: logs every getaddrinfo() call of
 * the process on its stderr ("sgtest-getaddrinfo: <node>"), then does the
 * real lookup. The tests see when swarmgate resolves a name (the egress DNS
 * cache) in the child's captured stderr. Built without sanitizers; the
 * child needs ASAN_OPTIONS=verify_asan_link_order=0 (support/gw_fixture.h:
 * GW_GAI_LOG_ENV). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static gai_fn real;
    if (!real)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    char line[320];
    int n = snprintf(line, sizeof(line), "sgtest-getaddrinfo: %s\n", node ? node : "(null)");
    if (n > 0)
        (void)!write(2, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
    return real ? real(node, service, hints, res) : EAI_SYSTEM;
}
