/* A sample upstream for `make demo`: a small HTTP/1.1 server on loopback that
 * answers every request with JSON naming what it received, so a person can
 * see the trace headers swarmgate sent. Keep-alive, one thread, poll(2).
 *
 * usage: demo_upstream PORT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF 16384

typedef struct conn {
    int fd;
    size_t len;
    char buf[BUF];
} conn_t;

static conn_t conns[MAX_CONNS];

/* Copies a header's value (first match, case-insensitive) into out. */
static void header(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t i = 0;
            /* Only printable, JSON-safe characters are echoed. */
            while (v[i] && v[i] != '\r' && i + 1 < cap && v[i] != '"' && v[i] != '\\') {
                out[i] = v[i];
                i++;
            }
            out[i] = 0;
            return;
        }
    }
}

static void answer(conn_t *c, size_t head_len)
{
    char method[16] = "", path[512] = "", tid[80], tp[80], xff[128];
    char *head = c->buf;
    head[head_len - 2] = 0; /* ends at the blank line's CRLF */
    sscanf(head, "%15s %511s", method, path);
    for (char *p = path; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '_';
    header(head, "X-Trace-Id", tid, sizeof(tid));
    header(head, "traceparent", tp, sizeof(tp));
    header(head, "X-Forwarded-For", xff, sizeof(xff));
    char body[1024];
    int bl = snprintf(body, sizeof(body),
                      "{\"upstream\":\"demo\",\"method\":\"%s\",\"path\":\"%s\",\"received_x_trace_id\":\"%s\","
                      "\"received_traceparent\":\"%s\",\"x_forwarded_for\":\"%s\"}\n",
                      method, path, tid, tp, xff);
    int status = strstr(path, "/fail") ? 500 : 200;
    char resp[1400];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", status,
                      status == 200 ? "OK" : "Internal Server Error", bl, body);
    if (write(c->fd, resp, (size_t)rl) < 0) {
        /* The client went away; the next read sees it. */
    }
    /* Request bodies are not expected in the demo: drop the head only. */
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: demo_upstream PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 128) < 0) {
        fprintf(stderr, "demo_upstream: cannot listen on 127.0.0.1:%s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    fprintf(stderr, "demo_upstream: listening on 127.0.0.1:%s\n", argv[1]);
    for (;;) {
        struct pollfd pfd[MAX_CONNS + 1];
        int map[MAX_CONNS + 1];
        int n = 0;
        pfd[n].fd = ls;
        pfd[n].events = POLLIN;
        map[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].fd >= 0) {
                pfd[n].fd = conns[i].fd;
                pfd[n].events = POLLIN;
                map[n++] = i;
            }
        if (poll(pfd, (nfds_t)n, -1) < 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            if (map[k] < 0) {
                int fd = accept(ls, NULL, NULL);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (conns[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                conns[slot].fd = fd;
                conns[slot].len = 0;
                continue;
            }
            conn_t *c = &conns[map[k]];
            ssize_t r = read(c->fd, c->buf + c->len, BUF - 1 - c->len);
            if (r <= 0) {
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->len += (size_t)r;
            c->buf[c->len] = 0;
            char *end;
            while ((end = strstr(c->buf, "\r\n\r\n")) != NULL)
                answer(c, (size_t)(end - c->buf) + 4), c->buf[c->len] = 0;
            if (c->len >= BUF - 1) {
                close(c->fd);
                c->fd = -1;
            }
        }
    }
}
