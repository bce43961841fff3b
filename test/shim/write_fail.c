/* LD_PRELOAD shim for integration tests: makes libuv writes to one peer
 * fail synchronously, as a write that cannot queue (UV_ENOMEM) does, so
 * the error paths behind sg__write (src/net/worker.c) run through the real
 * binary.
 *
 * Environment of the process it is loaded into:
 *   SGTEST_WRITE_FAIL_PORT   the peer's TCP port (getpeername on the
 *                            stream's descriptor); unset: no write fails
 *   SGTEST_WRITE_FAIL_MATCH  optional: only writes whose buffers contain
 *                            this string
 *   SGTEST_WRITE_FAIL_NTH    optional: only the Nth such write (from 1;
 *                            counted across the process), the others go
 *                            through
 * A selected write never reaches the socket: uv_try_write answers
 * UV_EAGAIN (nothing written, as for a full socket buffer), and uv_write
 * returns UV_ENOMEM without queuing anything or calling back. Every other
 * write, to any peer, is libuv's own. Each failure is logged on stderr as
 * "sgtest-write-fail: port P write N". Built without sanitizers (it is
 * loaded before the ASan runtime); the child needs
 * ASAN_OPTIONS=verify_asan_link_order=0 (support/gw_fixture.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

typedef int (*write_fn)(uv_write_t *, uv_stream_t *, const uv_buf_t[], unsigned int, uv_write_cb);
typedef int (*try_write_fn)(uv_stream_t *, const uv_buf_t[], unsigned int);
typedef int (*fileno_fn)(const uv_handle_t *, uv_os_fd_t *);

static atomic_uint n_selected; /* writes that matched port and string so far */
static write_fn write_real;
static try_write_fn try_write_real;
static fileno_fn fileno_real;

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        (void)!write(2, "sgtest-write-fail: no libuv symbol\n", 35);
        abort();
    }
    return f;
}

/* Resolved once at load, before any thread of the process runs. */
__attribute__((constructor)) static void resolve(void)
{
    write_real = (write_fn)real("uv_write");
    try_write_real = (try_write_fn)real("uv_try_write");
    fileno_real = (fileno_fn)real("uv_fileno");
}

static int peer_port(uv_stream_t *s)
{
    uv_os_fd_t fd;
    if (s->type != UV_TCP || fileno_real((const uv_handle_t *)s, &fd) != 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* Whether a write of these buffers to s is one the environment selects
 * (port and string; the count is applied by the caller). */
static bool is_candidate(uv_stream_t *s, const uv_buf_t bufs[], unsigned int n)
{
    const char *port = getenv("SGTEST_WRITE_FAIL_PORT");
    if (!port || !*port || peer_port(s) != atoi(port))
        return false;
    const char *match = getenv("SGTEST_WRITE_FAIL_MATCH");
    if (!match || !*match)
        return true;
    for (unsigned int i = 0; i < n; i++)
        if (memmem(bufs[i].base, bufs[i].len, match, strlen(match)))
            return true;
    return false;
}

/* Counts a candidate: its number, from 1. */
static unsigned int count_candidate(void)
{
    return atomic_fetch_add(&n_selected, 1u) + 1u;
}

/* Whether candidate k fails (all of them without SGTEST_WRITE_FAIL_NTH). */
static bool is_failing(unsigned int k)
{
    const char *nth = getenv("SGTEST_WRITE_FAIL_NTH");
    return !nth || !*nth || strtoul(nth, NULL, 10) == k;
}

int uv_try_write(uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs)
{
    /* A candidate goes to uv_write, where it is counted once. */
    if (is_candidate(handle, bufs, nbufs))
        return UV_EAGAIN;
    return try_write_real(handle, bufs, nbufs);
}

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs, uv_write_cb cb)
{
    if (is_candidate(handle, bufs, nbufs)) {
        unsigned int k = count_candidate();
        if (is_failing(k)) {
            char line[96];
            int len = snprintf(line, sizeof(line), "sgtest-write-fail: port %d write %u\n", peer_port(handle), k);
            if (len > 0)
                (void)!write(2, line, (size_t)len);
            return UV_ENOMEM;
        }
    }
    return write_real(req, handle, bufs, nbufs, cb);
}
