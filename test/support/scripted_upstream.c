/* See scripted_upstream.h. */
#include "support/scripted_upstream.h"

#include "support/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One accepted connection; fd < 0: the slot is free. */
typedef struct su_conn {
    int fd;
    int serial;
    int n_reqs;
    size_t len;
    char *buf; /* SU_BUF_BYTES */
} su_conn_t;

struct su_server {
    int lfd;
    uint16_t port;
    int ctl[2]; /* test -> thread: one command byte (see on_command) */
    pthread_t th;
    su_script_fn fn; /* NULL: the fixed script */
    void *ud;
    char *script;
    size_t script_len;
    bool close_after;
    atomic_int n_conns, n_reqs, n_reuses, n_eofs;
    atomic_int n_cmds_done;
    int n_cmds_sent; /* test side only */
    su_conn_t conns[SU_MAX_CONNS];
    int last, last_serial; /* the connection that answered last (slot, serial); -1: none */
    const void *inject;    /* su_inject's bytes, valid until its command is done */
    size_t inject_len;
    su_reply_t reply; /* the server's thread only */
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void conn_close(su_conn_t *c, bool reset)
{
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
}

static su_action_t fixed_script(const su_server_t *s)
{
    return s->close_after ? SU_ANSWER_CLOSE : SU_ANSWER;
}

/* Acts on every complete head in connection i's buffer. */
static void serve(su_server_t *s, int i)
{
    su_conn_t *c = &s->conns[i];
    su_reply_t *reply = &s->reply;
    while (c->fd >= 0) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return;
        su_request_t q = {
            .head = c->buf,
            .head_len = (size_t)(end + 4 - c->buf),
            .conn_serial = c->serial,
            .nth = c->n_reqs,
        };
        q.body_len = c->len - q.head_len;
        const char *sp = memchr(c->buf, ' ', q.head_len);
        if (sp) {
            size_t tl = strcspn(sp + 1, " \r\n");
            if (tl >= sizeof(q.target))
                tl = sizeof(q.target) - 1;
            memcpy(q.target, sp + 1, tl);
        }
        reply->len = 0;
        su_action_t a = s->fn ? s->fn(s->ud, &q, reply) : fixed_script(s);
        if (a == SU_WAIT)
            return;
        memmove(c->buf, c->buf + q.head_len, c->len - q.head_len);
        c->len -= q.head_len;
        atomic_fetch_add(&s->n_reqs, 1);
        if (c->n_reqs++ > 0)
            atomic_fetch_add(&s->n_reuses, 1);
        if (a == SU_CLOSE || a == SU_RESET) {
            conn_close(c, a == SU_RESET);
            return;
        }
        s->last = i;
        s->last_serial = c->serial;
        if (s->fn)
            write_all(c->fd, reply->bytes, reply->len);
        else
            write_all(c->fd, s->script, s->script_len);
        if (a == SU_ANSWER_CLOSE)
            conn_close(c, false);
    }
}

static void on_accept(su_server_t *s)
{
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return;
    for (int i = 0; i < SU_MAX_CONNS; i++) {
        su_conn_t *c = &s->conns[i];
        if (c->fd < 0) {
            c->fd = fd;
            c->len = 0;
            c->n_reqs = 0;
            c->serial = atomic_fetch_add(&s->n_conns, 1);
            return;
        }
    }
    close(fd); /* no free slot */
}

static void on_readable(su_server_t *s, int i)
{
    su_conn_t *c = &s->conns[i];
    char tmp[65536];
    ssize_t r = recv(c->fd, tmp, sizeof(tmp), 0);
    if (r <= 0) {
        conn_close(c, false);
        atomic_fetch_add(&s->n_eofs, 1);
        return;
    }
    size_t keep = (size_t)r < SU_BUF_BYTES - c->len ? (size_t)r : SU_BUF_BYTES - c->len;
    memcpy(c->buf + c->len, tmp, keep);
    c->len += keep;
    serve(s, i);
}

/* 'q' quit, 'x' write the injected bytes, 'l' stop listening. False: quit. */
static bool on_command(su_server_t *s)
{
    char cmd = 0;
    if (read(s->ctl[0], &cmd, 1) != 1 || cmd == 'q')
        return false;
    if (cmd == 'x' && s->last >= 0 && s->conns[s->last].fd >= 0 && s->conns[s->last].serial == s->last_serial)
        write_all(s->conns[s->last].fd, s->inject, s->inject_len);
    if (cmd == 'l' && s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
    }
    atomic_fetch_add(&s->n_cmds_done, 1);
    return true;
}

static void *server_main(void *arg)
{
    su_server_t *s = arg;
    for (;;) {
        struct pollfd pf[SU_MAX_CONNS + 2];
        int map[SU_MAX_CONNS + 2];
        nfds_t n = 0;
        pf[n] = (struct pollfd){.fd = s->ctl[0], .events = POLLIN};
        map[n++] = -2;
        if (s->lfd >= 0) {
            pf[n] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
            map[n++] = -1;
        }
        for (int i = 0; i < SU_MAX_CONNS; i++) {
            if (s->conns[i].fd >= 0) {
                pf[n] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
                map[n++] = i;
            }
        }
        if (poll(pf, n, 1000) < 0 && errno != EINTR)
            return NULL;
        for (nfds_t k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] == -2) {
                if (!on_command(s))
                    return NULL;
            } else if (map[k] == -1) {
                if (s->lfd >= 0)
                    on_accept(s);
            } else if (s->conns[map[k]].fd == pf[k].fd) {
                on_readable(s, map[k]);
            }
        }
    }
}

/* Sends a command and waits until the server's thread carried it out. */
static void command(su_server_t *s, char cmd)
{
    int want = ++s->n_cmds_sent;
    if (write(s->ctl[1], &cmd, 1) != 1)
        return;
    long long deadline = sgt_now_ms() + 5000;
    while (atomic_load(&s->n_cmds_done) < want && sgt_now_ms() < deadline)
        sgt_nap_ms(1); /* polling interval */
}

static su_server_t *start(su_script_fn fn, void *ud, const void *script, size_t n, bool close_after)
{
    su_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fn = fn;
    s->ud = ud;
    s->close_after = close_after;
    s->last = -1;
    s->script = malloc(n ? n : 1);
    if (n)
        memcpy(s->script, script, n);
    s->script_len = n;
    for (int i = 0; i < SU_MAX_CONNS; i++) {
        s->conns[i].fd = -1;
        s->conns[i].buf = malloc(SU_BUF_BYTES);
    }
    s->ctl[0] = s->ctl[1] = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 64) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) < 0 || pipe(s->ctl) < 0 ||
        pthread_create(&s->th, NULL, server_main, s) != 0) {
        if (s->lfd >= 0)
            close(s->lfd);
        if (s->ctl[0] >= 0) {
            close(s->ctl[0]);
            close(s->ctl[1]);
        }
        for (int i = 0; i < SU_MAX_CONNS; i++)
            free(s->conns[i].buf);
        free(s->script);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    return s;
}

su_server_t *su_start(const void *script, size_t n, bool close_after)
{
    return start(NULL, NULL, script, n, close_after);
}

su_server_t *su_start_fn(su_script_fn fn, void *ud)
{
    return fn ? start(fn, ud, NULL, 0, false) : NULL;
}

size_t su_reply_printf(su_reply_t *reply, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(reply->bytes, sizeof(reply->bytes), fmt, ap);
    va_end(ap);
    reply->len = n < 0 ? 0 : (size_t)n < sizeof(reply->bytes) ? (size_t)n : sizeof(reply->bytes) - 1;
    return reply->len;
}

uint16_t su_port(const su_server_t *s)
{
    return s->port;
}

int su_connections(su_server_t *s)
{
    return atomic_load(&s->n_conns);
}

int su_requests(su_server_t *s)
{
    return atomic_load(&s->n_reqs);
}

int su_reuses(su_server_t *s)
{
    return atomic_load(&s->n_reuses);
}

int su_eofs(su_server_t *s)
{
    return atomic_load(&s->n_eofs);
}

bool su_wait_eofs(su_server_t *s, int n, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    while (atomic_load(&s->n_eofs) < n) {
        if (sgt_now_ms() >= deadline)
            return false;
        sgt_nap_ms(5); /* polling interval */
    }
    return true;
}

void su_inject(su_server_t *s, const void *bytes, size_t n)
{
    s->inject = bytes;
    s->inject_len = n;
    command(s, 'x');
}

void su_stop_listening(su_server_t *s)
{
    command(s, 'l');
}

void su_stop(su_server_t *s)
{
    if (!s)
        return;
    char q = 'q';
    (void)!write(s->ctl[1], &q, 1);
    pthread_join(s->th, NULL);
    for (int i = 0; i < SU_MAX_CONNS; i++) {
        if (s->conns[i].fd >= 0)
            close(s->conns[i].fd);
        free(s->conns[i].buf);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    close(s->ctl[0]);
    close(s->ctl[1]);
    free(s->script);
    free(s);
}
