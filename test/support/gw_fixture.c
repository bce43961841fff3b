#include "support/gw_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void start_v(sg_proc_t *p, const char *const *env, const char *yaml_fmt, va_list ap)
{
    char yaml[8192];
    vsnprintf(yaml, sizeof(yaml), yaml_fmt, ap);
    if (sg_proc_start_env(p, yaml, env, 15000) != 0) {
        char *err = sg_proc_stderr(p);
        cr_assert_fail("gateway did not start:\n%s\nconfig:\n%s", err, yaml);
    }
}

void gw_start(sg_proc_t *p, const char *yaml_fmt, ...)
{
    va_list ap;
    va_start(ap, yaml_fmt);
    start_v(p, NULL, yaml_fmt, ap);
    va_end(ap);
}

void gw_start_env(sg_proc_t *p, const char *const *env, const char *yaml_fmt, ...)
{
    va_list ap;
    va_start(ap, yaml_fmt);
    start_v(p, env, yaml_fmt, ap);
    va_end(ap);
}

void gw_stop(sg_proc_t *p)
{
    int st = sg_proc_stop(p, 10000);
    char *err = sg_proc_stderr(p);
    cr_expect_eq(st, 0, "exit status %d, stderr:\n%s", st, err);
    cr_expect_eq(sg_proc_sanitizer_reports(err), 0, "sanitizer report, stderr:\n%s", err);
    free(err);
    sg_proc_cleanup(p);
}

char *gw_pattern(size_t n)
{
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)((i * 7 + i / 251) & 0xff);
    b[n] = '\0';
    return b;
}

char *gw_chunked(const char *body, size_t n, size_t chunk, size_t *out_len)
{
    size_t cap = n + (n / (chunk ? chunk : 1) + 2) * 24 + 16;
    char *o = malloc(cap);
    size_t len = 0;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < chunk ? n - off : chunk;
        len += (size_t)sprintf(o + len, "%zx\r\n", k);
        memcpy(o + len, body + off, k);
        len += k;
        memcpy(o + len, "\r\n", 2);
        len += 2;
        off += k;
    }
    memcpy(o + len, "0\r\n\r\n", 5);
    len += 5;
    *out_len = len;
    return o;
}

unsigned gw_dead_port(void)
{
    /* Bound and never listening: a connect is refused (RST). The socket
     * stays open for the life of the test process, so no other process can
     * take the port in the meantime (a closed one could be reused by any
     * bind to port 0). CLOEXEC: the gateway under test does not inherit it. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    return ntohs(a.sin_port);
}
