/* See scripted_upstream.h. */
#include "support/scripted_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SU_MAX_CONNS 64

struct su_server {
    int lfd;
    uint16_t port;
    char *script;
    size_t n;
    bool close_after;
    atomic_bool is_stopping;
    atomic_int n_conns, n_reqs, n_reuses;
    pthread_t acceptor;
    pthread_mutex_t mu;
    int fds[SU_MAX_CONNS];
    pthread_t threads[SU_MAX_CONNS];
    int n_threads;
};

typedef struct su_conn {
    su_server_t *s;
    int fd;
} su_conn_t;

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads one request head (up to CRLF CRLF); false on close, error or stop. */
static bool read_head(su_server_t *s, int fd)
{
    char buf[8192];
    size_t len = 0;
    while (!atomic_load(&s->is_stopping)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, 100);
        if (r <= 0)
            continue;
        ssize_t k = recv(fd, buf + len, 1, 0); /* byte by byte: never read past the head */
        if (k <= 0)
            return false;
        len++;
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            return true;
        if (len == sizeof(buf))
            return false;
    }
    return false;
}

static void *conn_main(void *arg)
{
    su_conn_t *c = arg;
    su_server_t *s = c->s;
    int n = 0;
    while (read_head(s, c->fd)) {
        atomic_fetch_add(&s->n_reqs, 1);
        if (n++ > 0)
            atomic_fetch_add(&s->n_reuses, 1);
        if (!write_all(c->fd, s->script, s->n) || s->close_after)
            break;
    }
    shutdown(c->fd, SHUT_RDWR);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    su_server_t *s = arg;
    while (!atomic_load(&s->is_stopping)) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        if (s->n_threads == SU_MAX_CONNS) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        su_conn_t *c = malloc(sizeof(*c));
        c->s = s;
        c->fd = fd;
        s->fds[s->n_threads] = fd;
        atomic_fetch_add(&s->n_conns, 1);
        if (pthread_create(&s->threads[s->n_threads], NULL, conn_main, c) == 0)
            s->n_threads++;
        else
            free(c);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

su_server_t *su_start(const void *script, size_t n, bool close_after)
{
    su_server_t *s = calloc(1, sizeof(*s));
    s->script = malloc(n ? n : 1);
    memcpy(s->script, script, n);
    s->n = n;
    s->close_after = close_after;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 64) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) < 0) {
        if (s->lfd >= 0)
            close(s->lfd);
        free(s->script);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    pthread_create(&s->acceptor, NULL, accept_main, s);
    return s;
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

void su_stop(su_server_t *s)
{
    if (!s)
        return;
    atomic_store(&s->is_stopping, true);
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    for (int i = 0; i < s->n_threads; i++) {
        shutdown(s->fds[i], SHUT_RDWR);
        pthread_join(s->threads[i], NULL);
        close(s->fds[i]);
    }
    pthread_mutex_destroy(&s->mu);
    free(s->script);
    free(s);
}
