#include "support/http_client.h"

#include "support/clock.h"
#include "support/upstream_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SG_TEST_MIN(a, b) ((a) < (b) ? (a) : (b))

int hc_connect(hc_conn_t *c, const char *addr, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    char host[128];
    const char *colon;
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (addr[0] == '[') {
        const char *e = strchr(addr, ']');
        if (!e)
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(e - addr - 1), addr + 1);
        colon = e + 1;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        len = sizeof(*a);
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        len = sizeof(*a);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_ms) <= 0) {
        close(fd);
        return -1;
    }
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

void hc_close(hc_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->pos = c->cap = 0;
}

bool hc_send(hc_conn_t *c, const void *p, size_t n, int timeout_ms)
{
    const char *b = p;
    int64_t deadline = sgt_now_ms() + timeout_ms;
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        int left = (int)(deadline - sgt_now_ms());
        if (left <= 0)
            return false;
        struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
        poll(&pf, 1, left);
    }
    return true;
}

bool hc_send_str(hc_conn_t *c, const char *s, int timeout_ms)
{
    return hc_send(c, s, strlen(s), timeout_ms);
}

/* Reads more into the buffer. >0 bytes, 0 EOF, -1 timeout, -2 error. */
static ssize_t fill(hc_conn_t *c, int64_t deadline)
{
    if (c->pos == c->len)
        c->pos = c->len = 0;
    if (c->cap - c->len < 65536) {
        if (c->pos) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        if (c->cap - c->len < 65536) {
            size_t ncap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, ncap);
            c->cap = ncap;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -2;
        int left = (int)(deadline - sgt_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        poll(&pf, 1, left);
    }
}

static int need(hc_conn_t *c, size_t n, int64_t deadline)
{
    while (c->len - c->pos < n) {
        ssize_t r = fill(c, deadline);
        if (r == 0 || r == -2)
            return HC_CLOSED;
        if (r < 0)
            return HC_TIMEOUT;
    }
    return HC_OK;
}

static int read_line(hc_conn_t *c, char *out, size_t cap, int64_t deadline)
{
    for (;;) {
        char *s = c->buf ? c->buf + c->pos : NULL;
        char *e = s ? memmem(s, c->len - c->pos, "\r\n", 2) : NULL;
        if (e) {
            size_t n = (size_t)(e - s);
            if (n >= cap)
                return HC_BAD;
            memcpy(out, s, n);
            out[n] = '\0';
            c->pos += n + 2;
            return HC_OK;
        }
        ssize_t r = fill(c, deadline);
        if (r == 0 || r == -2)
            return HC_CLOSED;
        if (r < 0)
            return HC_TIMEOUT;
    }
}

static void body_append(hc_response_t *r, const char *p, size_t n)
{
    r->body = realloc(r->body, r->body_len + n + 1);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

bool hc_header(const hc_response_t *r, const char *name, char *out, size_t cap)
{
    return r->head && us_header(r->head, name, out, cap);
}

int hc_header_count(const hc_response_t *r, const char *name)
{
    return r->head ? us_header_count(r->head, name) : 0;
}

int hc_read_response_ex(hc_conn_t *c, hc_response_t *r, bool is_head, bool keep_interim, int timeout_ms)
{
    memset(r, 0, sizeof(*r));
    int64_t deadline = sgt_now_ms() + timeout_ms;
    for (;;) {
        char *end;
        while (!c->buf || !(end = memmem(c->buf + c->pos, c->len - c->pos, "\r\n\r\n", 4))) {
            ssize_t n = fill(c, deadline);
            if (n == 0 || n == -2)
                return HC_CLOSED;
            if (n < 0)
                return HC_TIMEOUT;
        }
        size_t hl = (size_t)(end + 4 - (c->buf + c->pos));
        free(r->head);
        r->head = strndup(c->buf + c->pos, hl);
        r->head_len = hl;
        c->pos += hl;
        if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
            return HC_BAD;
        if (r->status >= 100 && r->status < 200 && r->status != 101 && !keep_interim) {
            r->n_interim++;
            continue;
        }
        break;
    }
    r->body = calloc(1, 1);
    if (is_head || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200))
        return HC_OK;
    char v[128];
    if (hc_header(r, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked")) {
        r->is_chunked = true;
        for (;;) {
            char line[256];
            int e = read_line(c, line, sizeof(line), deadline);
            if (e)
                return e;
            char *endp;
            unsigned long long n = strtoull(line, &endp, 16);
            if (endp == line)
                return HC_BAD;
            if (n == 0) {
                for (;;) {
                    e = read_line(c, line, sizeof(line), deadline);
                    if (e)
                        return e;
                    if (!line[0])
                        return HC_OK;
                }
            }
            e = need(c, (size_t)n + 2, deadline);
            if (e)
                return e;
            body_append(r, c->buf + c->pos, (size_t)n);
            c->pos += (size_t)n + 2;
        }
    }
    if (hc_header(r, "Content-Length", v, sizeof(v))) {
        size_t n = (size_t)strtoull(v, NULL, 10);
        while (r->body_len < n) {
            if (c->pos == c->len) {
                ssize_t k = fill(c, deadline);
                if (k == 0 || k == -2)
                    return HC_CLOSED;
                if (k < 0)
                    return HC_TIMEOUT;
            }
            size_t take = SG_TEST_MIN(c->len - c->pos, n - r->body_len);
            body_append(r, c->buf + c->pos, take);
            c->pos += take;
        }
        return HC_OK;
    }
    /* Delimited by close. */
    for (;;) {
        if (c->pos < c->len) {
            body_append(r, c->buf + c->pos, c->len - c->pos);
            c->pos = c->len;
        }
        ssize_t k = fill(c, deadline);
        if (k == 0 || k == -2)
            return HC_OK;
        if (k < 0)
            return HC_TIMEOUT;
    }
}

int hc_read_response(hc_conn_t *c, hc_response_t *r, int timeout_ms)
{
    return hc_read_response_ex(c, r, false, false, timeout_ms);
}

void hc_response_free(hc_response_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

ssize_t hc_read_some(hc_conn_t *c, char *out, size_t cap, int timeout_ms)
{
    int64_t deadline = sgt_now_ms() + timeout_ms;
    if (c->pos == c->len) {
        ssize_t k = fill(c, deadline);
        if (k == 0)
            return 0;
        if (k < 0)
            return -1;
    }
    size_t n = SG_TEST_MIN(cap, c->len - c->pos);
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
    return (ssize_t)n;
}

bool hc_wait_closed(hc_conn_t *c, int timeout_ms)
{
    int64_t deadline = sgt_now_ms() + timeout_ms;
    c->pos = c->len = 0;
    for (;;) {
        ssize_t k = fill(c, deadline);
        if (k == 0 || k == -2)
            return true;
        if (k == -1)
            return false;
        c->pos = c->len = 0;
    }
}

int hc_request(const char *addr, const char *raw, hc_response_t *r, int timeout_ms)
{
    hc_conn_t c;
    memset(r, 0, sizeof(*r));
    if (hc_connect(&c, addr, timeout_ms) < 0)
        return HC_CLOSED;
    if (!hc_send_str(&c, raw, timeout_ms)) {
        hc_close(&c);
        return HC_CLOSED;
    }
    bool is_head = strncmp(raw, "HEAD ", 5) == 0;
    int e = hc_read_response_ex(&c, r, is_head, false, timeout_ms);
    hc_close(&c);
    return e;
}
