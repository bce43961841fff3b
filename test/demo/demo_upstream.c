/* A sample upstream for `make demo`: a small HTTP/1.1 server on loopback that
 * plays the platform's part of the tracing plan (DESIGN.md section 4, issue
 * #16 P2-1), so one trace id can be followed from swarmgate's access log to
 * the ticket row, its events, the span and the metrics exemplar.
 *
 *   POST /api/tickets             {"title": "..."}   -> 201, a ticket whose
 *        trace_id is the request's X-Trace-Id (its creation event too)
 *   POST /api/tickets/<id>/state  {"state": "in_progress"} (or the bare word)
 *        -> 200; the ticket_events row carries the request's X-Trace-Id
 *   POST /v1/traces               an OTLP/HTTP JSON collector: each body is
 *        appended as one line to the --spans file
 *   anything else                 JSON naming what it received (method, path,
 *        X-Trace-Id, traceparent, X-Forwarded-For; GET /api/tickets/<id>
 *        adds the ticket and its events); paths with /fail answer 500
 *
 * Every request is logged on stderr with its trace_id. Keep-alive, one
 * thread, poll(2); Postgres through libpq's blocking calls (a demo).
 *
 * usage: demo_upstream PORT [--pg CONNINFO] [--spans FILE]
 * PORT 0 picks a free port; the first stderr line names the one bound. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF_MAX (8u << 20) /* a head plus body, span batches included */

typedef struct conn {
    int fd;
    size_t len, cap;
    char *buf;
} conn_t;

typedef struct reply {
    int status;
    char body[8192];
} reply_t;

static conn_t conns[MAX_CONNS];
static const char *g_conninfo;
static const char *g_spans;
static PGconn *g_db;

/* Copies a header's value (first match, case-insensitive) into out.
 * Only printable, JSON-safe characters are kept. */
static void header(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r' && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t i = 0;
            while (v[i] && v[i] != '\r' && i + 1 < cap && v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\') {
                out[i] = v[i];
                i++;
            }
            out[i] = 0;
            return;
        }
    }
}

/* s as the inside of a JSON string. */
static void json_str(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = 0;
}

/* The string value of "key" in a flat JSON object, or the whole body when it
 * is a bare word (`in_progress`). */
static void body_field(const char *body, size_t len, const char *key, char *out, size_t cap)
{
    out[0] = 0;
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = memmem(body, len, pat, strlen(pat));
    if (p) {
        p += strlen(pat);
        while (p < body + len && (*p == ' ' || *p == ':'))
            p++;
        if (p < body + len && *p == '"') {
            p++;
            size_t i = 0;
            while (p + i < body + len && p[i] != '"' && i + 1 < cap)
                out[i] = p[i], i++;
            out[i] = 0;
        }
        return;
    }
    size_t i = 0;
    while (i < len && i + 1 < cap && body[i] != '{' && body[i] != '\r' && body[i] != '\n')
        out[i] = body[i], i++;
    out[i] = 0;
}

static PGconn *db(void)
{
    if (!g_conninfo)
        return NULL;
    if (g_db && PQstatus(g_db) == CONNECTION_OK)
        return g_db;
    if (g_db)
        PQfinish(g_db);
    g_db = PQconnectdb(g_conninfo);
    if (PQstatus(g_db) != CONNECTION_OK) {
        fprintf(stderr, "demo_upstream: postgres: %s", PQerrorMessage(g_db));
        PQfinish(g_db);
        g_db = NULL;
    }
    return g_db;
}

/* A failed statement as the reply: 422 for a refused value, else 500. */
static void db_error(reply_t *r, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[1024];
    json_str(msg, sizeof(msg), res ? PQresultErrorMessage(res) : PQerrorMessage(g_db));
    r->status = state && (!strncmp(state, "23", 2) || !strncmp(state, "22", 2)) ? 422 : 500;
    snprintf(r->body, sizeof(r->body), "{\"error\":\"%s\"}\n", msg);
}

static bool no_db(reply_t *r, PGconn *c)
{
    if (c)
        return false;
    r->status = 503;
    snprintf(r->body, sizeof(r->body), "{\"error\":\"no database (demo_upstream --pg CONNINFO)\"}\n");
    return true;
}

static void create_ticket(reply_t *r, const char *tid, const char *body, size_t blen)
{
    PGconn *c = db();
    if (no_db(r, c))
        return;
    char title[256];
    body_field(body, blen, "title", title, sizeof(title));
    const char *params[2] = {title[0] ? title : "demo ticket", tid[0] ? tid : NULL};
    PGresult *res =
        PQexecParams(c,
                     "INSERT INTO tickets (title, trace_id) VALUES ($1, COALESCE($2::uuid, gen_random_uuid()))"
                     " RETURNING json_build_object('id', id, 'state', state, 'trace_id', trace_id)::text",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_error(r, res);
    } else {
        r->status = 201;
        snprintf(r->body, sizeof(r->body), "%s\n", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
}

/* One transaction: the trigger that writes the ticket_events row reads the
 * request's trace id from swarm.trace_id (config/sql/schema.sql). */
static void change_state(reply_t *r, const char *tid, const char *id, const char *body, size_t blen)
{
    PGconn *c = db();
    if (no_db(r, c))
        return;
    char state[64];
    body_field(body, blen, "state", state, sizeof(state));
    if (!exec_ok(c, "BEGIN")) {
        db_error(r, NULL);
        return;
    }
    const char *p1[1] = {tid};
    PGresult *res = PQexecParams(c, "SELECT set_config('swarm.trace_id', $1, true)", 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        PQclear(res);
        const char *p2[2] = {state, id};
        res = PQexecParams(c,
                           "UPDATE tickets SET state = $1 WHERE id = $2::bigint"
                           " RETURNING json_build_object('id', id, 'state', state, 'trace_id', trace_id)::text",
                           2, NULL, p2, NULL, NULL, 0);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_error(r, res);
    } else if (PQntuples(res) == 0) {
        r->status = 404;
        snprintf(r->body, sizeof(r->body), "{\"error\":\"no ticket %s\"}\n", id);
    } else {
        r->status = 200;
        snprintf(r->body, sizeof(r->body), "%s\n", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    exec_ok(c, r->status == 200 ? "COMMIT" : "ROLLBACK");
}

/* The ticket and its events as JSON ("null" when there is none or no database). */
static void ticket_json(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "null");
    PGconn *c = db();
    if (!c)
        return;
    const char *p[1] = {id};
    PGresult *res = PQexecParams(
        c,
        "SELECT json_build_object('id', t.id, 'title', t.title, 'state', t.state, 'trace_id', t.trace_id,"
        " 'events', COALESCE((SELECT json_agg(json_build_object('from', e.from_state, 'to', e.to_state,"
        " 'trace_id', e.trace_id) ORDER BY e.id) FROM ticket_events e WHERE e.ticket_id = t.id), '[]'))::text"
        " FROM tickets t WHERE t.id = $1::bigint",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

static void save_spans(reply_t *r, const char *body, size_t blen)
{
    r->status = 200;
    snprintf(r->body, sizeof(r->body), "{}\n");
    FILE *f = g_spans ? fopen(g_spans, "a") : NULL;
    if (!f)
        return;
    for (size_t i = 0; i < blen; i++) /* one line per batch */
        fputc(body[i] == '\n' || body[i] == '\r' ? ' ' : body[i], f);
    fputc('\n', f);
    fclose(f);
}

/* A decimal ticket id after prefix, and the rest of the path after it. */
static const char *ticket_id(const char *path, char *id, size_t cap)
{
    static const char prefix[] = "/api/tickets/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    const char *p = path + sizeof(prefix) - 1;
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n + 1 > cap)
        return NULL;
    memcpy(id, p, n);
    id[n] = 0;
    return p + n;
}

static void answer(conn_t *c, size_t head_len, size_t body_len)
{
    char method[16] = "", path[512] = "", tid[80], tp[80], xff[128], id[24];
    char *head = c->buf;
    char saved = head[head_len - 2];
    head[head_len - 2] = 0; /* the head ends at the blank line's CRLF */
    sscanf(head, "%15s %511s", method, path);
    for (char *p = path; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '_';
    header(head, "X-Trace-Id", tid, sizeof(tid));
    header(head, "traceparent", tp, sizeof(tp));
    header(head, "X-Forwarded-For", xff, sizeof(xff));
    head[head_len - 2] = saved;
    const char *body = c->buf + head_len;

    static reply_t r;
    r.status = 0;
    const char *rest;
    bool post = strcmp(method, "POST") == 0;
    if (post && strcmp(path, "/v1/traces") == 0) {
        save_spans(&r, body, body_len);
    } else if (post && strcmp(path, "/api/tickets") == 0) {
        create_ticket(&r, tid, body, body_len);
    } else if (post && (rest = ticket_id(path, id, sizeof(id))) != NULL && strcmp(rest, "/state") == 0) {
        change_state(&r, tid, id, body, body_len);
    } else {
        char ticket[4096] = "null";
        if (strcmp(method, "GET") == 0 && (rest = ticket_id(path, id, sizeof(id))) != NULL && *rest == 0)
            ticket_json(id, ticket, sizeof(ticket));
        r.status = strstr(path, "/fail") ? 500 : 200;
        snprintf(r.body, sizeof(r.body),
                 "{\"upstream\":\"demo\",\"method\":\"%s\",\"path\":\"%s\",\"received_x_trace_id\":\"%s\","
                 "\"received_traceparent\":\"%s\",\"x_forwarded_for\":\"%s\",\"ticket\":%s}\n",
                 method, path, tid, tp, xff, ticket);
    }
    /* The platform's log line: every one carries the trace id. */
    fprintf(stderr, "demo_upstream: trace_id=%s %s %s -> %d\n", tid[0] ? tid : "-", method, path, r.status);

    static const char *const reasons[][2] = {{"200", "OK"},
                                             {"201", "Created"},
                                             {"404", "Not Found"},
                                             {"422", "Unprocessable Content"},
                                             {"500", "Internal Server Error"},
                                             {"503", "Service Unavailable"}};
    const char *reason = "OK";
    char code[8];
    snprintf(code, sizeof(code), "%d", r.status);
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reasons[i][0], code) == 0)
            reason = reasons[i][1];
    size_t bl = strlen(r.body);
    char resp_head[256];
    int hl = snprintf(resp_head, sizeof(resp_head),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", r.status,
                      reason, bl);
    if (write(c->fd, resp_head, (size_t)hl) < 0 || write(c->fd, r.body, bl) < 0) {
        /* The client went away; the next read sees it. */
    }
    size_t used = head_len + body_len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    c->buf[c->len] = 0;
}

static void drop(conn_t *c)
{
    close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* Answers every complete request in the buffer; false when the connection must close. */
static bool serve(conn_t *c)
{
    char *end;
    while ((end = strstr(c->buf, "\r\n\r\n")) != NULL) {
        size_t head_len = (size_t)(end - c->buf) + 4;
        char cl[32], te[32];
        char saved = c->buf[head_len - 2];
        c->buf[head_len - 2] = 0;
        header(c->buf, "Content-Length", cl, sizeof(cl));
        header(c->buf, "Transfer-Encoding", te, sizeof(te));
        c->buf[head_len - 2] = saved;
        if (te[0]) { /* not needed by the demo */
            static const char resp[] = "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            if (write(c->fd, resp, sizeof(resp) - 1) < 0) {
            }
            return false;
        }
        size_t body_len = cl[0] ? strtoul(cl, NULL, 10) : 0;
        if (head_len + body_len > BUF_MAX - 1)
            return false;
        if (c->len < head_len + body_len)
            return true; /* the rest of the body is still coming */
        answer(c, head_len, body_len);
    }
    return c->len < BUF_MAX - 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: demo_upstream PORT [--pg CONNINFO] [--spans FILE]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--pg") && i + 1 < argc)
            g_conninfo = argv[++i];
        else if (!strcmp(argv[i], "--spans") && i + 1 < argc)
            g_spans = argv[++i];
        else {
            fprintf(stderr, "demo_upstream: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 128) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
        fprintf(stderr, "demo_upstream: cannot listen on 127.0.0.1:%s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    fprintf(stderr, "demo_upstream: listening on 127.0.0.1:%u%s\n", ntohs(a.sin_port),
            g_conninfo ? " (tickets in Postgres)" : "");
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
                conns[slot] = (conn_t){.fd = fd};
                continue;
            }
            conn_t *c = &conns[map[k]];
            if (c->cap - c->len < 16384 + 1) {
                size_t nc = c->cap ? c->cap * 2 : 32768;
                char *nb = nc <= BUF_MAX ? realloc(c->buf, nc) : NULL;
                if (!nb) {
                    drop(c);
                    continue;
                }
                c->buf = nb;
                c->cap = nc;
            }
            ssize_t r = read(c->fd, c->buf + c->len, c->cap - 1 - c->len);
            if (r <= 0) {
                drop(c);
                continue;
            }
            c->len += (size_t)r;
            c->buf[c->len] = 0;
            if (!serve(c))
                drop(c);
        }
    }
}
