#include "support/upstream_server.h"

#include "support/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define US_MAX_CONNS 512
#define US_MAX_REQS 4096
#define US_KEEP_BODY (16u << 20)

typedef struct us_conn {
    us_server_t *s;
    int fd;
    int id;
    pthread_t th;
    char *buf;
    size_t len, pos, cap;
} us_conn_t;

struct us_server {
    char name[64];
    int lfd;
    uint16_t port;
    pthread_t accept_th;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    us_conn_t *conns[US_MAX_CONNS];
    int n_conns;
    us_request_t reqs[US_MAX_REQS]; /* the last US_MAX_REQS: request i in reqs[i % US_MAX_REQS] */
    int n_reqs;                     /* every request received */
    int releases;
};

static void now_plus(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Reads more bytes into c->buf. Returns >0 bytes, 0 on EOF, -1 on stop/error. */
static ssize_t fill(us_conn_t *c)
{
    if (c->pos > 0 && c->pos == c->len) {
        c->pos = c->len = 0;
    }
    if (c->cap - c->len < 65536) {
        size_t ncap = c->cap ? c->cap * 2 : 131072;
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        if (c->cap - c->len < 65536) {
            char *nb = realloc(c->buf, ncap);
            if (!nb)
                return -1;
            c->buf = nb;
            c->cap = ncap;
        }
    }
    for (;;) {
        if (atomic_load(&c->s->stop))
            return -1;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return n < 0 ? -1 : 0;
        c->len += (size_t)n;
        return n;
    }
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool write_str(int fd, const char *s)
{
    return write_all(fd, s, strlen(s));
}

bool us_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        if (line[0] == '\r')
            break;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (out && cap) {
                size_t k = n < cap - 1 ? n : cap - 1;
                memcpy(out, v, k);
                out[k] = '\0';
            }
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

int us_header_count(const char *head, const char *name)
{
    size_t nl = strlen(name);
    int count = 0;
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        if (line[0] == '\r')
            break;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':')
            count++;
        line = strstr(line, "\r\n");
    }
    return count;
}

static long query_num(const char *path, const char *key, long dflt)
{
    const char *q = strchr(path, '?');
    if (!q)
        return dflt;
    size_t kl = strlen(key);
    for (const char *p = q + 1; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=')
            return strtol(p + kl + 1, NULL, 10);
    }
    return dflt;
}

/* Reads exactly n body bytes, keeping them in *keep when keep != NULL. */
static bool read_body_bytes(us_conn_t *c, uint64_t n, char **keep, size_t *keep_len, bool store)
{
    while (n) {
        if (c->pos == c->len) {
            ssize_t r = fill(c);
            if (r <= 0)
                return false;
        }
        size_t avail = c->len - c->pos;
        size_t take = avail < n ? avail : (size_t)n;
        if (store && keep) {
            if (*keep_len + take <= US_KEEP_BODY) {
                char *nb = realloc(*keep, *keep_len + take + 1);
                if (!nb)
                    return false;
                memcpy(nb + *keep_len, c->buf + c->pos, take);
                *keep = nb;
                *keep_len += take;
                (*keep)[*keep_len] = '\0';
            } else {
                free(*keep);
                *keep = NULL;
                *keep_len = 0;
                store = false;
                keep = NULL;
            }
        }
        c->pos += take;
        n -= take;
    }
    return true;
}

static char *read_line(us_conn_t *c)
{
    for (;;) {
        char *s = c->buf + c->pos;
        char *e = memmem(s, c->len - c->pos, "\r\n", 2);
        if (e) {
            *e = '\0';
            c->pos = (size_t)(e + 2 - c->buf);
            return s;
        }
        if (fill(c) <= 0)
            return NULL;
    }
}

static void record(us_server_t *s, us_conn_t *c, const char *head, size_t hl, uint64_t body_len, char *body)
{
    pthread_mutex_lock(&s->mu);
    /* A long load must not stop the recording (a test then looks for its
     * latest request in vain): the oldest record makes room. */
    us_request_t *r = &s->reqs[s->n_reqs++ % US_MAX_REQS];
    free(r->head);
    free(r->body);
    r->head = strndup(head, hl);
    r->head_len = hl;
    r->body_len = body_len;
    r->body = body;
    r->conn_id = c->id;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool send_gen(int fd, long n, bool chunked)
{
    char block[16384];
    long sent = 0;
    while (sent < n) {
        size_t k = (size_t)((n - sent) < (long)sizeof(block) ? (n - sent) : (long)sizeof(block));
        for (size_t i = 0; i < k; i++)
            block[i] = (char)('a' + (sent + (long)i) % 26);
        if (chunked) {
            char h[32];
            snprintf(h, sizeof(h), "%zx\r\n", k);
            if (!write_str(fd, h) || !write_all(fd, block, k) || !write_str(fd, "\r\n"))
                return false;
        } else if (!write_all(fd, block, k)) {
            return false;
        }
        sent += (long)k;
    }
    if (chunked)
        return write_str(fd, "0\r\n\r\n");
    return true;
}

static void *conn_main(void *arg)
{
    us_conn_t *c = arg;
    us_server_t *s = c->s;
    for (;;) {
        /* head */
        if (c->pos == c->len)
            c->pos = c->len = 0;
        char *end = NULL;
        while (!c->buf || !(end = memmem(c->buf + c->pos, c->len - c->pos, "\r\n\r\n", 4))) {
            if (fill(c) <= 0)
                goto out;
        }
        size_t hl = (size_t)(end + 4 - (c->buf + c->pos));
        char *head = strndup(c->buf + c->pos, hl);
        c->pos += hl;
        char method[16] = {0}, path[1024] = {0};
        sscanf(head, "%15s %1023s", method, path);
        bool is_head = strcmp(method, "HEAD") == 0;
        char v[256];
        bool chunked = us_header(head, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked");
        uint64_t cl = us_header(head, "Content-Length", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
        bool req_close = us_header(head, "Connection", v, sizeof(v)) && strcasestr(v, "close");
        bool store = strncmp(path, "/sink", 5) != 0;
        char *body = NULL;
        size_t body_len = 0;
        uint64_t total = 0;
        if (chunked) {
            for (;;) {
                char *line = read_line(c);
                if (!line)
                    goto out_free;
                uint64_t n = strtoull(line, NULL, 16);
                if (n == 0) {
                    /* trailers */
                    for (;;) {
                        char *t = read_line(c);
                        if (!t)
                            goto out_free;
                        if (!*t)
                            break;
                    }
                    break;
                }
                if (!read_body_bytes(c, n, &body, &body_len, store))
                    goto out_free;
                total += n;
                char *crlf = read_line(c);
                if (!crlf)
                    goto out_free;
            }
        } else if (cl) {
            if (!read_body_bytes(c, cl, &body, &body_len, store))
                goto out_free;
            total = cl;
        }
        if (total > US_KEEP_BODY) {
            free(body);
            body = NULL;
        }
        char *echo = body ? malloc(body_len + 1) : NULL;
        if (echo)
            memcpy(echo, body, body_len);
        record(s, c, head, hl, total, body);
        body = NULL;

        char h[1024];
        bool close_after = req_close;
        int fd = c->fd;
        bool ok = true;
        if (strncmp(path, "/echo-chunked", 13) == 0) {
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nTransfer-Encoding: chunked\r\n\r\n", s->name);
            ok = write_str(fd, h);
            if (ok && !is_head) {
                size_t off = 0;
                while (ok && off < body_len) {
                    size_t k = body_len - off < 8192 ? body_len - off : 8192;
                    char ch[32];
                    snprintf(ch, sizeof(ch), "%zx\r\n", k);
                    ok = write_str(fd, ch) && write_all(fd, echo + off, k) && write_str(fd, "\r\n");
                    off += k;
                }
                ok = ok && write_str(fd, "0\r\n\r\n");
            }
        } else if (strncmp(path, "/echo", 5) == 0) {
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %zu\r\n\r\n", s->name,
                     body_len);
            ok = write_str(fd, h) && (is_head || body_len == 0 || write_all(fd, echo, body_len));
        } else if (strncmp(path, "/sink", 5) == 0) {
            char b[32];
            snprintf(b, sizeof(b), "%llu", (unsigned long long)total);
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %zu\r\n\r\n%s", s->name,
                     strlen(b), is_head ? "" : b);
            ok = write_str(fd, h);
        } else if (strncmp(path, "/gen", 4) == 0) {
            long n = query_num(path, "n", 0);
            bool ch = query_num(path, "chunked", 0) != 0;
            bool cl_close = query_num(path, "close", 0) != 0;
            if (ch)
                snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
                         s->name);
            else if (cl_close)
                snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nConnection: close\r\n\r\n", s->name);
            else
                snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %ld\r\n\r\n", s->name, n);
            ok = write_str(fd, h) && (is_head || send_gen(fd, n, ch));
            if (cl_close)
                close_after = true;
        } else if (strncmp(path, "/status", 7) == 0) {
            long code = query_num(path, "code", 200);
            if (code == 204 || code == 304)
                snprintf(h, sizeof(h), "HTTP/1.1 %ld X\r\nX-Upstream: %s\r\n%s\r\n", code, s->name,
                         code == 304 ? "ETag: \"x\"\r\n" : "");
            else
                snprintf(h, sizeof(h), "HTTP/1.1 %ld X\r\nX-Upstream: %s\r\nContent-Length: 2\r\n\r\n%s", code, s->name,
                         is_head ? "" : "ok");
            ok = write_str(fd, h);
        } else if (strncmp(path, "/sse", 4) == 0) {
            snprintf(h, sizeof(h),
                     "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Type: text/event-stream\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n",
                     s->name);
            ok = write_str(fd, h) && write_str(fd, "b\r\ndata: one\n\n\r\n");
            pthread_mutex_lock(&s->mu);
            while (s->releases == 0 && !atomic_load(&s->stop)) {
                struct timespec ts;
                now_plus(&ts, 50);
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            }
            if (s->releases > 0)
                s->releases--;
            pthread_mutex_unlock(&s->mu);
            ok = ok && write_str(fd, "b\r\ndata: two\n\n\r\n0\r\n\r\n");
        } else if (strncmp(path, "/slow", 5) == 0) {
            sgt_nap_ms((int)query_num(path, "ms", 100));
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: 4\r\n\r\nslow", s->name);
            ok = write_str(fd, h);
        } else if (strncmp(path, "/close-mid", 10) == 0) {
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: 1000\r\n\r\n0123456789",
                     s->name);
            write_str(fd, h);
            ok = false;
        } else if (strncmp(path, "/bad", 4) == 0) {
            write_str(fd, "HTTP/1.1 abc garbage\r\n\r\n");
            ok = false;
        } else if (strncmp(path, "/ws", 3) == 0) {
            snprintf(h, sizeof(h),
                     "HTTP/1.1 101 Switching Protocols\r\nX-Upstream: %s\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\n\r\n",
                     s->name);
            ok = write_str(fd, h);
            while (ok) {
                if (c->pos < c->len) {
                    ok = write_all(fd, c->buf + c->pos, c->len - c->pos);
                    c->pos = c->len;
                    continue;
                }
                if (fill(c) <= 0)
                    break;
            }
            ok = false;
        } else if (strncmp(path, "/close", 6) == 0) {
            snprintf(h, sizeof(h),
                     "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye", s->name);
            write_str(fd, h);
            ok = false;
        } else {
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: 5\r\n\r\n%s", s->name,
                     is_head ? "" : "hello");
            ok = write_str(fd, h);
        }
        free(echo);
        free(head);
        if (!ok || close_after)
            goto out;
        continue;
    out_free:
        free(body);
        free(head);
        goto out;
    }
out:
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *arg)
{
    us_server_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&s->mu);
        if (s->n_conns >= US_MAX_CONNS) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        us_conn_t *c = calloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        c->id = s->n_conns;
        s->conns[s->n_conns++] = c;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_create(&c->th, NULL, conn_main, c);
    }
    return NULL;
}

us_server_t *us_start(const char *name, bool ipv6)
{
    return us_start_port(name, ipv6, 0);
}

us_server_t *us_start_port(const char *name, bool ipv6, uint16_t port)
{
    us_server_t *s = calloc(1, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->lfd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(port);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        len = sizeof(*a);
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, len) < 0 || listen(s->lfd, 512) < 0) {
        close(s->lfd);
        free(s);
        return NULL;
    }
    getsockname(s->lfd, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    pthread_create(&s->accept_th, NULL, accept_main, s);
    return s;
}

uint16_t us_port(const us_server_t *s)
{
    return s->port;
}

void us_stop(us_server_t *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->accept_th, NULL);
    close(s->lfd);
    for (int i = 0; i < s->n_conns; i++) {
        shutdown(s->conns[i]->fd, SHUT_RDWR);
        pthread_join(s->conns[i]->th, NULL);
        close(s->conns[i]->fd);
        free(s->conns[i]->buf);
        free(s->conns[i]);
    }
    for (int i = 0; i < US_MAX_REQS; i++) {
        free(s->reqs[i].head);
        free(s->reqs[i].body);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int us_connections(us_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n_conns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int us_requests(us_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n_reqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool us_request(us_server_t *s, int i, us_request_t *out)
{
    bool ok = false;
    pthread_mutex_lock(&s->mu);
    if (i >= 0 && i < s->n_reqs && i >= s->n_reqs - US_MAX_REQS) {
        us_request_t *r = &s->reqs[i % US_MAX_REQS];
        out->head = strdup(r->head);
        out->head_len = r->head_len;
        out->body_len = r->body_len;
        out->body = NULL;
        if (r->body) {
            out->body = malloc(r->body_len + 1);
            memcpy(out->body, r->body, r->body_len);
            out->body[r->body_len] = '\0';
        }
        out->conn_id = r->conn_id;
        ok = true;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void us_request_free(us_request_t *r)
{
    free(r->head);
    free(r->body);
    r->head = r->body = NULL;
}

bool us_wait_requests(us_server_t *s, int n, int timeout_ms)
{
    struct timespec ts;
    now_plus(&ts, timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (s->n_reqs < n) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    }
    bool ok = s->n_reqs >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void us_release(us_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->releases++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
