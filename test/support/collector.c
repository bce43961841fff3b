#include "support/collector.h"

#include "support/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQS 1024
#define MAX_STALLED 64

typedef struct req {
    char *head; /* request line + headers, NUL-terminated */
    char *body;
    size_t body_len;
} req_t;

struct sg_collector {
    int lfd;
    int wake[2];
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req_t reqs[MAX_REQS];
    size_t n_reqs;
    int fail_next;
    int stall_next;
    int answer_next; /* the next answer_next requests get answer_status */
    int answer_status;
    char answer_extra[256]; /* header lines, "Name: value\r\n" each */
    bool is_chunked;        /* 200s with a chunked body */
    size_t n_conns;         /* connections accepted */
    long long times_ms[MAX_REQS];
    int stalled[MAX_STALLED];
    size_t n_stalled;
};

/* Reads one request from fd (blocking, with poll on the wake pipe).
 * Returns 1 with a request, 0 on EOF/stop, -1 on error. */
static int read_request(sg_collector_t *c, int fd, req_t *r)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    char *hend = NULL;
    size_t need = 0;
    for (;;) {
        if (hend && len >= need)
            break;
        struct pollfd pfd[2] = {{fd, POLLIN, 0}, {c->wake[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return -1;
        }
        if (pfd[1].revents) {
            free(buf);
            return 0;
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            free(buf);
            return n == 0 ? 0 : -1;
        }
        len += (size_t)n;
        if (!hend) {
            char *e = memmem(buf, len, "\r\n\r\n", 4);
            if (e) {
                hend = e;
                size_t hl = (size_t)(e - buf) + 4;
                size_t cl = 0;
                for (char *p = buf; p < e; p++) {
                    if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
                        cl = strtoul(p + 15, NULL, 10);
                }
                need = hl + cl;
            }
        }
    }
    size_t hl = (size_t)(hend - buf) + 4;
    r->head = malloc(hl + 1);
    memcpy(r->head, buf, hl);
    r->head[hl] = '\0';
    r->body_len = need - hl;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, buf + hl, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 1;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void serve(sg_collector_t *c, int fd)
{
    for (;;) {
        req_t r;
        if (read_request(c, fd, &r) != 1)
            break;
        pthread_mutex_lock(&c->mu);
        bool stall = false, fail = false, close_after = false;
        char resp[512];
        if (c->stall_next > 0) {
            c->stall_next--;
            stall = true;
        } else if (c->fail_next > 0) {
            c->fail_next--;
            fail = true;
        }
        if (!stall && !fail && c->answer_next > 0) {
            c->answer_next--;
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d Answer\r\nContent-Type: application/json\r\n%s"
                     "Content-Length: 2\r\n\r\n{}",
                     c->answer_status, c->answer_extra);
            close_after = strcasestr(c->answer_extra, "connection: close") != NULL;
        } else if (fail) {
            /* 503: retryable under OTLP/HTTP (429, 502, 503, 504) */
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n{}");
        } else if (c->is_chunked) {
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n1;x=y\r\n{\r\n1\r\n}\r\n0\r\nT: 1\r\n\r\n");
        } else {
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n{}");
        }
        if (c->n_reqs < MAX_REQS) {
            c->times_ms[c->n_reqs] = sgt_now_ms();
            c->reqs[c->n_reqs++] = r;
        } else {
            free(r.head);
            free(r.body);
        }
        if (stall && c->n_stalled < MAX_STALLED) {
            c->stalled[c->n_stalled++] = fd;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            return; /* keep the fd open, answer nothing */
        }
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        write_all(fd, resp, strlen(resp));
        if (close_after)
            break;
    }
    close(fd);
}

static void *run(void *arg)
{
    sg_collector_t *c = arg;
    for (;;) {
        struct pollfd pfd[2] = {{c->lfd, POLLIN, 0}, {c->wake[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        int fd = accept(c->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&c->mu);
        c->n_conns++;
        pthread_mutex_unlock(&c->mu);
        serve(c, fd); /* one connection at a time is enough for tests */
    }
    return NULL;
}

sg_collector_t *sg_collector_start(void)
{
    sg_collector_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(c->lfd, 64) != 0 ||
        getsockname(c->lfd, (struct sockaddr *)&a, &al) != 0 || pipe(c->wake) != 0) {
        if (c->lfd >= 0)
            close(c->lfd);
        free(c);
        return NULL;
    }
    c->port = ntohs(a.sin_port);
    if (pthread_create(&c->th, NULL, run, c) != 0) {
        close(c->lfd);
        close(c->wake[0]);
        close(c->wake[1]);
        free(c);
        return NULL;
    }
    return c;
}

void sg_collector_stop(sg_collector_t *c)
{
    if (!c)
        return;
    write_all(c->wake[1], "x", 1);
    pthread_join(c->th, NULL);
    close(c->lfd);
    close(c->wake[0]);
    close(c->wake[1]);
    for (size_t i = 0; i < c->n_stalled; i++)
        close(c->stalled[i]);
    for (size_t i = 0; i < c->n_reqs; i++) {
        free(c->reqs[i].head);
        free(c->reqs[i].body);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

uint16_t sg_collector_port(const sg_collector_t *c)
{
    return c->port;
}

const char *sg_collector_url(const sg_collector_t *c, const char *path, char *buf, size_t cap)
{
    snprintf(buf, cap, "http://127.0.0.1:%u%s", (unsigned)c->port, path ? path : "");
    return buf;
}

void sg_collector_fail_next(sg_collector_t *c, int n)
{
    pthread_mutex_lock(&c->mu);
    c->fail_next = n;
    pthread_mutex_unlock(&c->mu);
}

void sg_collector_stall_next(sg_collector_t *c, int n)
{
    pthread_mutex_lock(&c->mu);
    c->stall_next = n;
    pthread_mutex_unlock(&c->mu);
}

static size_t locked_size(sg_collector_t *c, const size_t *field)
{
    pthread_mutex_lock(&c->mu);
    size_t n = *field;
    pthread_mutex_unlock(&c->mu);
    return n;
}

size_t sg_collector_count(sg_collector_t *c)
{
    return locked_size(c, &c->n_reqs);
}

bool sg_collector_wait(sg_collector_t *c, size_t n, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->n_reqs < n)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    bool ok = c->n_reqs >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

char *sg_collector_body(sg_collector_t *c, size_t i, size_t *body_len)
{
    char *out = NULL;
    pthread_mutex_lock(&c->mu);
    if (i < c->n_reqs) {
        out = malloc(c->reqs[i].body_len + 1);
        memcpy(out, c->reqs[i].body, c->reqs[i].body_len + 1);
        if (body_len)
            *body_len = c->reqs[i].body_len;
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

char *sg_collector_path(sg_collector_t *c, size_t i)
{
    char *out = NULL;
    pthread_mutex_lock(&c->mu);
    if (i < c->n_reqs) {
        const char *sp = strchr(c->reqs[i].head, ' ');
        const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
        if (sp2)
            out = strndup(sp + 1, (size_t)(sp2 - sp - 1));
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

char *sg_collector_header(sg_collector_t *c, size_t i, const char *name)
{
    char *out = NULL;
    size_t nl = strlen(name);
    pthread_mutex_lock(&c->mu);
    if (i < c->n_reqs) {
        for (const char *p = strstr(c->reqs[i].head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
            const char *h = p + 2;
            if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
                const char *v = h + nl + 1;
                while (*v == ' ')
                    v++;
                const char *e = strstr(v, "\r\n");
                out = strndup(v, (size_t)(e - v));
                break;
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    return out;
}

void sg_collector_answer_next(sg_collector_t *c, int n, int status, const char *extra_headers)
{
    pthread_mutex_lock(&c->mu);
    c->answer_next = n;
    c->answer_status = status;
    snprintf(c->answer_extra, sizeof(c->answer_extra), "%s", extra_headers ? extra_headers : "");
    pthread_mutex_unlock(&c->mu);
}

void sg_collector_set_chunked(sg_collector_t *c, bool is_chunked)
{
    pthread_mutex_lock(&c->mu);
    c->is_chunked = is_chunked; /* read by the serving thread under mu */
    pthread_mutex_unlock(&c->mu);
}

size_t sg_collector_connections(sg_collector_t *c)
{
    return locked_size(c, &c->n_conns);
}

long long sg_collector_time_ms(sg_collector_t *c, size_t i)
{
    pthread_mutex_lock(&c->mu);
    long long t = i < c->n_reqs && i < MAX_REQS ? c->times_ms[i] : -1;
    pthread_mutex_unlock(&c->mu);
    return t;
}
