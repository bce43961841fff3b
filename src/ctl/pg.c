/* Postgres poller (see sg/pg.h and docs/postgres.md).
 *
 * Connection states: IDLE (waiting for the back-off timer), RESOLVING
 * (uv_getaddrinfo in the thread pool), CONNECTING (PQconnectPoll driven by
 * uv_poll_t), READY (connected; at most one query in flight). Every failure
 * goes through conn_fail(), which drops the connection and arms the back-off.
 *
 * Why not PQcancel: it opens a new connection synchronously. A statement is
 * bounded by the server's statement_timeout; if the server does not answer
 * at all (host gone, process stopped), a client deadline a little later
 * drops the connection instead. */
#include "sg/pg.h"

#include "sg/mem.h"
#include "sg/runtime.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_DEFAULT_INTERVAL_MS 15000u
#define PG_DEFAULT_STMT_TIMEOUT_MS 5000u
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define PG_DEFAULT_STUCK_AFTER_MS 3600000u
#define PG_DEFAULT_BATCH 1000u
#define PG_DEFAULT_RECONNECT_MIN_MS 250u
#define PG_DEFAULT_RECONNECT_MAX_MS 30000u
/* Client deadline = statement_timeout + this: the server cancels first. */
#define PG_DEADLINE_GRACE_MS 1000u
#define PG_MAX_ADDRS 8
#define PG_MAX_TRANSITION_PAIRS 256
#define PG_MSG 1024

typedef enum pg_state {
    PG_IDLE = 0,
    PG_RESOLVING,
    PG_CONNECTING,
    PG_READY,
    PG_CLOSING,
    PG_STATE__COUNT
} pg_state_t;

typedef enum pg_kind {
    PG_Q_SERIES = 0,   /* gauge/counter family from rows */
    PG_Q_TRANSITIONS,  /* the transition histogram */
    PG_Q__COUNT
} pg_kind_t;

/* One refresh's rows: n series of n_labels values each. Owned by its query;
 * replaced whole on each successful refresh. */
typedef struct pg_snap {
    size_t n;
    char **label_values; /* n * n_labels, malloc'ed strings */
    double *values;
    uint64_t updated_ms;
} pg_snap_t;

typedef struct pg_hist {
    uint64_t *counts; /* n_bounds + 1, non-cumulative */
    double sum;
} pg_hist_t;

typedef struct pg_pair {
    char *from, *to;
    pg_hist_t h;
} pg_pair_t;

typedef struct pg_query {
    const char *name;      /* family name as rendered (counters without _total) */
    const char *label;     /* value of the {query} label on the DB metrics */
    const char *help;
    sg_metric_type_t type;
    const char *sql;
    const char **labels;
    size_t n_labels;
    const char *value;
    uint64_t interval_ms;
    const sg_zero_fill_t *zero_fill;
    size_t n_zero_fill;
    pg_kind_t kind;

    uint64_t next_due_ms;
    bool is_queued;
    bool is_running;
    bool run_again;        /* transitions batch was full: fetch more now */
    struct pg_query *next; /* run queue link */
    uint64_t started_ns;

    pg_snap_t *snap;
    pg_hist_t duration;
    uint64_t errors;
    uint64_t timeouts;
} pg_query_t;

struct sg_pg {
    uv_loop_t *loop;
    sg_arena_t arena;      /* copies of the conf and queries */
    pg_state_t state;
    sg_pg_log_cb log_cb;
    void *log_arg;

    uint64_t interval_ms, stmt_timeout_ms, connect_timeout_ms, stale_after_ms;
    uint64_t reconnect_min_ms, reconnect_max_ms, backoff_ms;
    uint32_t batch;

    /* libpq connection parameters (from the conninfo, plus ours) */
    const char **kw;
    const char **vals;
    size_t n_kw;
    int host_idx, hostaddr_idx; /* -1 when absent */
    bool needs_resolve;
    const char *resolve_host;
    const char *password;       /* masked out of every message */
    char hostaddr_buf[PG_MAX_ADDRS * (INET6_ADDRSTRLEN + 1)];
    char hostlist_buf[1024];

    PGconn *conn;
    uv_poll_t *poll;            /* malloc'ed: a new one when the socket changes */
    int poll_fd;
    int poll_events;
    uv_timer_t tick_timer;      /* next due query */
    uv_timer_t deadline_timer;  /* connect or statement deadline */
    uv_timer_t retry_timer;     /* back-off */
    uv_getaddrinfo_t gai;
    bool is_gai_pending;
    unsigned open_handles;

    pg_query_t *queries;
    size_t n_queries;
    pg_query_t *run_head, *run_tail, *running;
    pg_query_t *transitions;    /* also in queries[], or NULL */
    const char *transitions_start_sql;
    bool has_cursor;
    int64_t last_event_id;
    char last_id_buf[24], batch_buf[16];

    const double *db_bounds;
    size_t n_db_bounds;
    const double *tr_bounds;
    size_t n_tr_bounds;
    pg_pair_t pairs[PG_MAX_TRANSITION_PAIRS];
    size_t n_pairs;

    bool is_up;
    bool query_failed;          /* current query produced an error result */
    bool query_timed_out;
    double last_success_unix;
    char last_error[PG_MSG];
    sg_pg_stats_t stats;
};

static const char *const pg_state_names[PG_STATE__COUNT] = {"idle", "resolving", "connecting", "ready", "closing"};

static const char *pg_state_name(pg_state_t s)
{
    return s < PG_STATE__COUNT ? pg_state_names[s] : "?";
}

/* ---- defaults ------------------------------------------------------------ */

static const char *const ticket_states[] = {"open", "queued", "in_progress", "review",
                                             "blocked", "done", "failed", "cancelled"};
static const char *const final_states[] = {"done", "failed", "cancelled"};
static const char *const stuck_states[] = {"in_progress"};
static const char *const lbl_state[] = {"state"};
static const char *const lbl_status[] = {"status"};
static const char *const lbl_breaker[] = {"agent", "project"};

static const double default_tr_bounds[] = {1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800};
static const double default_db_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static const char transitions_sql[] =
    "SELECT e.id, COALESCE(e.from_state, p.to_state) AS from_state, e.to_state, "
    "EXTRACT(EPOCH FROM (e.created_at - p.created_at))::float8 AS seconds "
    "FROM ticket_events e "
    "LEFT JOIN LATERAL (SELECT q.created_at, q.to_state FROM ticket_events q "
    "WHERE q.ticket_id = e.ticket_id AND q.id < e.id ORDER BY q.id DESC LIMIT 1) p ON true "
    "WHERE e.id > $1::bigint ORDER BY e.id LIMIT $2::int";
static const char transitions_start_sql[] = "SELECT COALESCE(max(id), 0) FROM ticket_events";

/* ---- messages ------------------------------------------------------------ */

static void mask_secret(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 3) /* too short to mask without mangling the text */
        return;
    char *p;
    while ((p = strstr(s, secret)) != NULL) {
        memcpy(p, "****", 4);
        memmove(p + 4, p + n, strlen(p + n) + 1);
    }
}

static void pg_log(sg_pg_t *pg, sg_log_level_t level, const char *fmt, ...) SG_PRINTF(3, 4);

static void pg_log(sg_pg_t *pg, sg_log_level_t level, const char *fmt, ...)
{
    char msg[PG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* libpq messages end in newlines and may span lines: one line only. */
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = 0;
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    mask_secret(msg, pg->password);
    if (level >= SG_LOG_WARN)
        snprintf(pg->last_error, sizeof(pg->last_error), "%s", msg);
    if (pg->log_cb)
        pg->log_cb(pg->log_arg, level, msg);
}

size_t sg_pg_mask_conninfo(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
#define PUT(c)                                                                                                         \
    do {                                                                                                               \
        if (o + 1 < outlen)                                                                                            \
            out[o++] = (c);                                                                                            \
    } while (0)
#define PUTS(s)                                                                                                        \
    do {                                                                                                               \
        for (const char *_s = (s); *_s; _s++)                                                                          \
            PUT(*_s);                                                                                                  \
    } while (0)
    if (!outlen)
        return 0;
    if (!in)
        in = "";
    if (strncmp(in, "postgresql://", 13) == 0 || strncmp(in, "postgres://", 11) == 0) {
        const char *auth = strstr(in, "://") + 3;
        const char *auth_end = auth + strcspn(auth, "/?");
        const char *at = NULL;
        for (const char *c = auth; c < auth_end; c++)
            if (*c == '@')
                at = c;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        const char *p = in;
        for (; *p && p < auth_end; p++) {
            if (colon && p == colon + 1) {
                PUTS("****");
                p = at - 1;
                continue;
            }
            PUT(*p);
        }
        /* path, then ?key=value&... */
        while (*p) {
            PUT(*p);
            if (*p == '?' || *p == '&') {
                p++;
                size_t klen = strcspn(p, "=&");
                bool is_pw = klen == 8 && strncmp(p, "password", 8) == 0;
                for (size_t i = 0; i < klen; i++)
                    PUT(p[i]);
                p += klen;
                if (*p == '=') {
                    PUT('=');
                    p++;
                    size_t vlen = strcspn(p, "&");
                    if (is_pw)
                        PUTS("****");
                    else
                        for (size_t i = 0; i < vlen; i++)
                            PUT(p[i]);
                    p += vlen;
                }
                continue;
            }
            p++;
        }
    } else {
        const char *p = in;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                { PUT(*p); p++; }
            if (!*p)
                break;
            const char *k = p;
            while (*p && *p != '=' && *p != ' ' && *p != '\t' && *p != '\n')
                p++;
            size_t klen = (size_t)(p - k);
            bool is_pw = klen == 8 && strncmp(k, "password", 8) == 0;
            for (size_t i = 0; i < klen; i++)
                PUT(k[i]);
            while (*p == ' ' || *p == '\t')
                { PUT(*p); p++; }
            if (*p != '=')
                continue;
            { PUT(*p); p++; }
            while (*p == ' ' || *p == '\t')
                { PUT(*p); p++; }
            const char *v = p;
            if (*p == '\'') {
                p++;
                while (*p && *p != '\'') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
                if (*p == '\'')
                    p++;
            } else {
                while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
            }
            if (is_pw)
                PUTS("****");
            else
                for (const char *c = v; c < p; c++)
                    PUT(*c);
        }
    }
    out[o] = 0;
    return o;
#undef PUT
#undef PUTS
}

/* ---- snapshots and histograms -------------------------------------------- */

static void snap_free(pg_snap_t *s, size_t n_labels)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n * n_labels; i++)
        free(s->label_values[i]);
    free(s->label_values);
    free(s->values);
    free(s);
}

static void hist_observe(pg_hist_t *h, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
}

static int hist_init(pg_hist_t *h, size_t n_bounds)
{
    h->counts = calloc(n_bounds + 1, sizeof(uint64_t));
    h->sum = 0;
    return h->counts ? 0 : -1;
}

/* ---- handles ------------------------------------------------------------- */

static void pg_maybe_free(sg_pg_t *pg)
{
    if (pg->state != PG_CLOSING || pg->open_handles || pg->is_gai_pending)
        return;
    for (size_t i = 0; i < pg->n_queries; i++) {
        snap_free(pg->queries[i].snap, pg->queries[i].n_labels);
        free(pg->queries[i].duration.counts);
    }
    for (size_t i = 0; i < pg->n_pairs; i++) {
        free(pg->pairs[i].from);
        free(pg->pairs[i].to);
        free(pg->pairs[i].h.counts);
    }
    sg_arena_destroy(&pg->arena);
    free(pg);
}

static void on_handle_closed(uv_handle_t *h)
{
    sg_pg_t *pg = h->data;
    pg->open_handles--;
    pg_maybe_free(pg);
}

static void on_poll_closed(uv_handle_t *h)
{
    sg_pg_t *pg = h->data;
    free(h);
    pg->open_handles--;
    pg_maybe_free(pg);
}

static void poll_release(sg_pg_t *pg)
{
    if (!pg->poll)
        return;
    uv_poll_stop(pg->poll);
    uv_close((uv_handle_t *)pg->poll, on_poll_closed);
    pg->poll = NULL;
    pg->poll_fd = -1;
    pg->poll_events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches libpq's current socket. libpq may switch sockets while connecting
 * (next address, SSL retry): a new fd gets a new uv_poll_t. */
static int poll_watch(sg_pg_t *pg, int events)
{
    int fd = PQsocket(pg->conn);
    if (fd < 0)
        return UV_EBADF;
    if (pg->poll && pg->poll_fd != fd)
        poll_release(pg);
    if (!pg->poll) {
        uv_poll_t *p = malloc(sizeof(*p));
        if (!p)
            return UV_ENOMEM;
        int rc = uv_poll_init_socket(pg->loop, p, fd);
        if (rc) {
            free(p);
            return rc;
        }
        p->data = pg;
        pg->open_handles++;
        pg->poll = p;
        pg->poll_fd = fd;
        pg->poll_events = 0;
    }
    pg->poll_events = events;
    return uv_poll_start(pg->poll, events, on_poll);
}

/* ---- connection ---------------------------------------------------------- */

static void schedule_tick(sg_pg_t *pg);
static void run_next(sg_pg_t *pg);

/* Legal transitions: bit `to` set in legal[from]. */
static const unsigned pg_legal[PG_STATE__COUNT] = {
    [PG_IDLE] = 1u << PG_IDLE | 1u << PG_RESOLVING | 1u << PG_CONNECTING | 1u << PG_CLOSING,
    [PG_RESOLVING] = 1u << PG_CONNECTING | 1u << PG_IDLE | 1u << PG_CLOSING,
    [PG_CONNECTING] = 1u << PG_READY | 1u << PG_IDLE | 1u << PG_CLOSING,
    [PG_READY] = 1u << PG_IDLE | 1u << PG_CLOSING,
    [PG_CLOSING] = 0,
};

static void set_state(sg_pg_t *pg, pg_state_t to)
{
    assert(pg_legal[pg->state] & (1u << to));
    SG_UNUSED(pg_legal); /* NDEBUG builds */
    pg->state = to;
}

static void conn_drop(sg_pg_t *pg)
{
    /* Stop watching before PQfinish closes the fd. */
    if (pg->poll)
        uv_poll_stop(pg->poll);
    poll_release(pg);
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    uv_timer_stop(&pg->deadline_timer);
    pg->is_up = false;
    if (pg->running) {
        pg->running->is_running = false;
        pg->running = NULL;
    }
    for (pg_query_t *q = pg->run_head; q; q = q->next)
        q->is_queued = false;
    pg->run_head = pg->run_tail = NULL;
}

static void on_retry(uv_timer_t *t);

static void conn_fail(sg_pg_t *pg, const char *what, const char *detail)
{
    if (pg->state == PG_CLOSING)
        return;
    pg_log(pg, SG_LOG_WARN, "postgres: %s (state %s): %s; retrying in %llums", what, pg_state_name(pg->state),
           detail ? detail : "", (unsigned long long)pg->backoff_ms);
    conn_drop(pg);
    set_state(pg, PG_IDLE);
    uv_timer_start(&pg->retry_timer, on_retry, pg->backoff_ms, 0);
    pg->backoff_ms = SG_MIN(pg->backoff_ms * 2, pg->reconnect_max_ms);
}

static void connect_failed(sg_pg_t *pg, const char *what, const char *detail)
{
    pg->stats.connect_errors++;
    conn_fail(pg, what, detail);
}

static void on_deadline(uv_timer_t *t)
{
    sg_pg_t *pg = t->data;
    if (pg->state == PG_RESOLVING || pg->state == PG_CONNECTING) {
        char d[64];
        snprintf(d, sizeof(d), "no connection after %llums", (unsigned long long)pg->connect_timeout_ms);
        connect_failed(pg, "connect timed out", d);
    } else if (pg->state == PG_READY && pg->running) {
        pg_query_t *q = pg->running;
        q->errors++;
        q->timeouts++;
        pg->stats.query_errors++;
        pg->stats.query_timeouts++;
        char what[256];
        snprintf(what, sizeof(what), "query %s got no answer within its deadline", q->label);
        char d[64];
        snprintf(d, sizeof(d), "%llums, dropping the connection",
                 (unsigned long long)(pg->stmt_timeout_ms + PG_DEADLINE_GRACE_MS));
        conn_fail(pg, what, d);
    }
}

static void connected(sg_pg_t *pg)
{
    uv_timer_stop(&pg->deadline_timer);
    set_state(pg, PG_READY);
    pg->is_up = true;
    pg->backoff_ms = pg->reconnect_min_ms;
    pg->stats.connects++;
    if (poll_watch(pg, UV_READABLE) != 0) {
        conn_fail(pg, "cannot watch the socket", NULL);
        return;
    }
    pg_log(pg, SG_LOG_INFO, "postgres: connected (server %d)", PQserverVersion(pg->conn));
    uint64_t now = uv_now(pg->loop);
    for (size_t i = 0; i < pg->n_queries; i++)
        pg->queries[i].next_due_ms = now;
    schedule_tick(pg);
}

static void connect_step(sg_pg_t *pg)
{
    /* Not watching while libpq works: it may close this socket. */
    if (pg->poll)
        uv_poll_stop(pg->poll);
    PostgresPollingStatusType st = PQconnectPoll(pg->conn);
    switch (st) {
    case PGRES_POLLING_OK:
        connected(pg);
        return;
    case PGRES_POLLING_READING:
        if (poll_watch(pg, UV_READABLE) != 0)
            connect_failed(pg, "connect failed", "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_watch(pg, UV_WRITABLE) != 0)
            connect_failed(pg, "connect failed", "cannot watch the socket");
        return;
    default:
        connect_failed(pg, "connect failed", PQerrorMessage(pg->conn));
        return;
    }
}

/* Server notices and async errors (e.g. "terminating connection due to
 * administrator command") go to our log, not libpq's default stderr. */
static void on_notice(void *arg, const char *msg)
{
    pg_log(arg, SG_LOG_INFO, "postgres: server: %s", msg);
}

static void connect_start(sg_pg_t *pg)
{
    set_state(pg, PG_CONNECTING);
    pg->conn = PQconnectStartParams(pg->kw, pg->vals, 0);
    if (!pg->conn) {
        connect_failed(pg, "connect failed", "out of memory");
        return;
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        connect_failed(pg, "connect failed", PQerrorMessage(pg->conn));
        return;
    }
    PQsetNoticeProcessor(pg->conn, on_notice, pg);
    if (PQsetnonblocking(pg->conn, 1) != 0) {
        connect_failed(pg, "connect failed", PQerrorMessage(pg->conn));
        return;
    }
    /* libpq: start as if PQconnectPoll had said WRITING. */
    if (poll_watch(pg, UV_WRITABLE) != 0)
        connect_failed(pg, "connect failed", "cannot watch the socket");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sg_pg_t *pg = req->data;
    pg->is_gai_pending = false;
    if (pg->state != PG_RESOLVING) { /* timed out or stopping meanwhile */
        uv_freeaddrinfo(res);
        pg_maybe_free(pg);
        return;
    }
    if (status != 0) {
        uv_freeaddrinfo(res);
        char d[256];
        snprintf(d, sizeof(d), "%s: %s", pg->resolve_host, uv_strerror(status));
        connect_failed(pg, "cannot resolve host", d);
        return;
    }
    size_t n = 0, ao = 0, ho = 0;
    pg->hostaddr_buf[0] = pg->hostlist_buf[0] = 0;
    for (struct addrinfo *ai = res; ai && n < PG_MAX_ADDRS; ai = ai->ai_next) {
        char a[INET6_ADDRSTRLEN];
        const void *src = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                                   : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            !inet_ntop(ai->ai_family, src, a, sizeof(a)))
            continue;
        if (strlen(pg->resolve_host) + 1 + ho >= sizeof(pg->hostlist_buf))
            break;
        ao += (size_t)snprintf(pg->hostaddr_buf + ao, sizeof(pg->hostaddr_buf) - ao, "%s%s", n ? "," : "", a);
        ho += (size_t)snprintf(pg->hostlist_buf + ho, sizeof(pg->hostlist_buf) - ho, "%s%s", n ? "," : "",
                               pg->resolve_host);
        n++;
    }
    uv_freeaddrinfo(res);
    if (!n) {
        connect_failed(pg, "cannot resolve host", pg->resolve_host);
        return;
    }
    /* libpq tries each address in turn (host and hostaddr lists pair up). */
    pg->vals[pg->hostaddr_idx] = pg->hostaddr_buf;
    pg->vals[pg->host_idx] = pg->hostlist_buf;
    connect_start(pg);
}

static void connect_begin(sg_pg_t *pg)
{
    uv_timer_start(&pg->deadline_timer, on_deadline, pg->connect_timeout_ms, 0);
    if (pg->needs_resolve) {
        if (pg->is_gai_pending) { /* the last lookup is still running: wait for it */
            set_state(pg, PG_IDLE);
            uv_timer_stop(&pg->deadline_timer);
            uv_timer_start(&pg->retry_timer, on_retry, pg->backoff_ms, 0);
            return;
        }
        set_state(pg, PG_RESOLVING);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        pg->gai.data = pg;
        int rc = uv_getaddrinfo(pg->loop, &pg->gai, on_resolved, pg->resolve_host, NULL, &hints);
        if (rc) {
            connect_failed(pg, "cannot resolve host", uv_strerror(rc));
            return;
        }
        pg->is_gai_pending = true;
        return;
    }
    connect_start(pg);
}

static void on_retry(uv_timer_t *t)
{
    sg_pg_t *pg = t->data;
    if (pg->state == PG_IDLE)
        connect_begin(pg);
}

/* ---- queries ------------------------------------------------------------- */

static void enqueue(sg_pg_t *pg, pg_query_t *q)
{
    q->is_queued = true;
    q->next = NULL;
    if (pg->run_tail)
        pg->run_tail->next = q;
    else
        pg->run_head = q;
    pg->run_tail = q;
}

static void on_tick(uv_timer_t *t)
{
    sg_pg_t *pg = t->data;
    uint64_t now = uv_now(pg->loop);
    if (pg->state == PG_READY) {
        for (size_t i = 0; i < pg->n_queries; i++) {
            pg_query_t *q = &pg->queries[i];
            if (q->next_due_ms > now)
                continue;
            q->next_due_ms = now + q->interval_ms;
            if (q->is_queued || q->is_running) {
                pg->stats.skipped++;
                pg_log(pg, SG_LOG_DEBUG, "postgres: refresh of %s skipped: the last one is still pending",
                       q->label);
                continue;
            }
            enqueue(pg, q);
        }
        run_next(pg);
    }
    schedule_tick(pg);
}

static void schedule_tick(sg_pg_t *pg)
{
    if (pg->state != PG_READY || !pg->n_queries) {
        uv_timer_stop(&pg->tick_timer);
        return;
    }
    uint64_t now = uv_now(pg->loop), next = UINT64_MAX;
    for (size_t i = 0; i < pg->n_queries; i++)
        next = SG_MIN(next, pg->queries[i].next_due_ms);
    uv_timer_start(&pg->tick_timer, on_tick, next > now ? next - now : 0, 0);
}

static void run_next(sg_pg_t *pg)
{
    if (pg->state != PG_READY || pg->running || !pg->run_head)
        return;
    pg_query_t *q = pg->run_head;
    pg->run_head = q->next;
    if (!pg->run_head)
        pg->run_tail = NULL;
    q->is_queued = false;
    q->is_running = true;
    q->run_again = false;
    pg->running = q;
    pg->query_failed = false;
    pg->query_timed_out = false;
    q->started_ns = sg_now_ns();

    const char *sql = q->sql;
    const char *params[2];
    int n_params = 0;
    if (q->kind == PG_Q_TRANSITIONS) {
        if (!pg->has_cursor) {
            sql = pg->transitions_start_sql;
        } else {
            snprintf(pg->last_id_buf, sizeof(pg->last_id_buf), "%lld", (long long)pg->last_event_id);
            snprintf(pg->batch_buf, sizeof(pg->batch_buf), "%u", pg->batch);
            params[0] = pg->last_id_buf;
            params[1] = pg->batch_buf;
            n_params = 2;
        }
    }
    if (!PQsendQueryParams(pg->conn, sql, n_params, NULL, n_params ? params : NULL, NULL, NULL, 0)) {
        conn_fail(pg, "cannot send query", PQerrorMessage(pg->conn));
        return;
    }
    int rc = PQflush(pg->conn);
    if (rc < 0) {
        conn_fail(pg, "cannot send query", PQerrorMessage(pg->conn));
        return;
    }
    if (poll_watch(pg, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
        conn_fail(pg, "cannot watch the socket", NULL);
        return;
    }
    uv_timer_start(&pg->deadline_timer, on_deadline, pg->stmt_timeout_ms + PG_DEADLINE_GRACE_MS, 0);
}

static bool parse_double(const char *s, double *out)
{
    if (!strcmp(s, "t")) {
        *out = 1;
        return true;
    }
    if (!strcmp(s, "f")) {
        *out = 0;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

static void query_error(sg_pg_t *pg, pg_query_t *q, const char *fmt, ...) SG_PRINTF(3, 4);

static void query_error(sg_pg_t *pg, pg_query_t *q, const char *fmt, ...)
{
    char d[PG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof(d), fmt, ap);
    va_end(ap);
    pg->query_failed = true;
    pg_log(pg, SG_LOG_WARN, "postgres: query %s failed: %s", q->label, d);
}

static bool find_series(const pg_snap_t *s, size_t n_labels, size_t upto, char **vals)
{
    for (size_t i = 0; i < upto; i++) {
        size_t j = 0;
        while (j < n_labels && !strcmp(s->label_values[i * n_labels + j], vals[j]))
            j++;
        if (j == n_labels)
            return true;
    }
    return false;
}

static int snap_add(pg_snap_t *s, size_t n_labels, size_t *cap, const char *const *vals, double v)
{
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char **lv = realloc(s->label_values, nc * (n_labels ? n_labels : 1) * sizeof(char *));
        if (!lv)
            return -1;
        s->label_values = lv;
        double *dv = realloc(s->values, nc * sizeof(double));
        if (!dv)
            return -1;
        s->values = dv;
        *cap = nc;
    }
    for (size_t j = 0; j < n_labels; j++) {
        s->label_values[s->n * n_labels + j] = strdup(vals[j]);
        if (!s->label_values[s->n * n_labels + j]) {
            for (size_t k = 0; k < j; k++)
                free(s->label_values[s->n * n_labels + k]);
            return -1;
        }
    }
    s->values[s->n++] = v;
    return 0;
}

static void handle_series(sg_pg_t *pg, pg_query_t *q, PGresult *r)
{
    int cols[16];
    int vcol = PQfnumber(r, q->value);
    if (vcol < 0) {
        query_error(pg, q, "no value column \"%s\" in the result", q->value);
        return;
    }
    for (size_t j = 0; j < q->n_labels; j++) {
        cols[j] = PQfnumber(r, q->labels[j]);
        if (cols[j] < 0) {
            query_error(pg, q, "no label column \"%s\" in the result", q->labels[j]);
            return;
        }
    }
    pg_snap_t *s = calloc(1, sizeof(*s));
    size_t cap = 0;
    if (!s)
        goto oom;
    char *vals[16];
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(r, i, vcol))
            continue;
        double v;
        if (!parse_double(PQgetvalue(r, i, vcol), &v)) {
            snap_free(s, q->n_labels);
            query_error(pg, q, "value \"%.64s\" in column \"%s\" is not a number", PQgetvalue(r, i, vcol), q->value);
            return;
        }
        for (size_t j = 0; j < q->n_labels; j++)
            vals[j] = PQgetvalue(r, i, cols[j]); /* "" for NULL */
        if (find_series(s, q->n_labels, s->n, vals))
            continue; /* duplicate label set: the first row wins */
        if (snap_add(s, q->n_labels, &cap, (const char *const *)vals, v) != 0)
            goto oom;
    }
    /* Zero-fill: every listed value of a label appears, other labels "". */
    for (size_t z = 0; z < q->n_zero_fill; z++) {
        const sg_zero_fill_t *zf = &q->zero_fill[z];
        size_t li = 0;
        while (li < q->n_labels && strcmp(q->labels[li], zf->label))
            li++;
        if (li == q->n_labels)
            continue;
        size_t before = s->n;
        for (size_t k = 0; k < zf->n_values; k++) {
            bool seen = false;
            for (size_t i = 0; i < before && !seen; i++)
                seen = !strcmp(s->label_values[i * q->n_labels + li], zf->values[k]);
            if (seen)
                continue;
            for (size_t j = 0; j < q->n_labels; j++)
                vals[j] = j == li ? (char *)zf->values[k] : "";
            if (snap_add(s, q->n_labels, &cap, (const char *const *)vals, 0) != 0)
                goto oom;
        }
    }
    s->updated_ms = uv_now(pg->loop);
    snap_free(q->snap, q->n_labels);
    q->snap = s; /* atomic for readers: collect runs on this thread */
    return;
oom:
    snap_free(s, q->n_labels);
    query_error(pg, q, "out of memory");
}

static pg_pair_t *pair_get(sg_pg_t *pg, const char *from, const char *to)
{
    for (size_t i = 0; i < pg->n_pairs; i++)
        if (!strcmp(pg->pairs[i].from, from) && !strcmp(pg->pairs[i].to, to))
            return &pg->pairs[i];
    if (pg->n_pairs == PG_MAX_TRANSITION_PAIRS) {
        /* Bounded cardinality: the rest go to one overflow series. */
        from = "other";
        to = "other";
        for (size_t i = 0; i < pg->n_pairs; i++)
            if (!strcmp(pg->pairs[i].from, from) && !strcmp(pg->pairs[i].to, to))
                return &pg->pairs[i];
        return &pg->pairs[pg->n_pairs - 1];
    }
    pg_pair_t *p = &pg->pairs[pg->n_pairs];
    p->from = strdup(from);
    p->to = strdup(to);
    if (!p->from || !p->to || hist_init(&p->h, pg->n_tr_bounds) != 0) {
        free(p->from);
        free(p->to);
        return NULL;
    }
    pg->n_pairs++;
    return p;
}

static void handle_transitions(sg_pg_t *pg, pg_query_t *q, PGresult *r)
{
    int rows = PQntuples(r);
    if (!pg->has_cursor) {
        if (rows < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0)) {
            query_error(pg, q, "start query returned no id");
            return;
        }
        pg->last_event_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        pg->has_cursor = true;
        q->run_again = true; /* fetch what came since right away */
        return;
    }
    int c_id = PQfnumber(r, "id"), c_from = PQfnumber(r, "from_state"), c_to = PQfnumber(r, "to_state"),
        c_sec = PQfnumber(r, "seconds");
    if (c_id < 0 || c_from < 0 || c_to < 0 || c_sec < 0) {
        query_error(pg, q, "result needs columns id, from_state, to_state, seconds");
        return;
    }
    for (int i = 0; i < rows; i++) {
        int64_t id = strtoll(PQgetvalue(r, i, c_id), NULL, 10);
        if (id > pg->last_event_id)
            pg->last_event_id = id;
        /* A ticket's first event has no previous one: nothing to time. */
        if (PQgetisnull(r, i, c_sec) || PQgetisnull(r, i, c_from))
            continue;
        double secs;
        if (!parse_double(PQgetvalue(r, i, c_sec), &secs) || isnan(secs))
            continue;
        if (secs < 0) /* back-dated event: count it, at zero */
            secs = 0;
        pg_pair_t *p = pair_get(pg, PQgetvalue(r, i, c_from), PQgetvalue(r, i, c_to));
        if (!p)
            continue;
        hist_observe(&p->h, pg->tr_bounds, pg->n_tr_bounds, secs);
        pg->stats.transitions++;
    }
    if ((uint32_t)rows >= pg->batch)
        q->run_again = true;
}

static void handle_result(sg_pg_t *pg, pg_query_t *q, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
        if (pg->query_failed)
            return;
        if (q->kind == PG_Q_TRANSITIONS)
            handle_transitions(pg, q, r);
        else
            handle_series(pg, q, r);
        return;
    }
    if (st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        query_error(pg, q, "the statement returned no rows (not a SELECT?)");
        return;
    }
    const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (sqlstate && !strcmp(sqlstate, "57014"))
        pg->query_timed_out = true; /* query_canceled: statement_timeout */
    query_error(pg, q, "%s", PQresultErrorMessage(r));
}

static void query_done(sg_pg_t *pg)
{
    pg_query_t *q = pg->running;
    pg->running = NULL;
    q->is_running = false;
    uv_timer_stop(&pg->deadline_timer);
    double secs = (double)(sg_now_ns() - q->started_ns) / 1e9;
    hist_observe(&q->duration, pg->db_bounds, pg->n_db_bounds, secs);
    if (pg->query_failed) {
        q->errors++;
        pg->stats.query_errors++;
        if (pg->query_timed_out) {
            q->timeouts++;
            pg->stats.query_timeouts++;
        }
    } else {
        pg->stats.queries_ok++;
        pg->last_success_unix = (double)sg_unix_ns() / 1e9;
        if (q->run_again && !q->is_queued)
            enqueue(pg, q);
    }
    run_next(pg);
}

static void ready_io(sg_pg_t *pg, int events)
{
    if (events & UV_WRITABLE) {
        int rc = PQflush(pg->conn);
        if (rc < 0) {
            conn_fail(pg, "connection lost", PQerrorMessage(pg->conn));
            return;
        }
        if (rc == 0 && poll_watch(pg, UV_READABLE) != 0) {
            conn_fail(pg, "cannot watch the socket", NULL);
            return;
        }
    }
    if (!(events & UV_READABLE))
        return;
    if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
        conn_fail(pg, "connection lost", PQerrorMessage(pg->conn));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(pg->conn)) != NULL)
        PQfreemem(n);
    while (pg->running && !PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            query_done(pg); /* may start the next query */
            return;
        }
        handle_result(pg, pg->running, r);
        PQclear(r);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sg_pg_t *pg = h->data;
    if (h != pg->poll)
        return;
    if (status < 0) {
        if (pg->state == PG_CONNECTING)
            /* A refused connect shows as POLLERR (libuv: EBADF): let libpq
             * read the socket's error and report it in its own words. */
            connect_step(pg);
        else
            conn_fail(pg, "socket error", uv_strerror(status));
        return;
    }
    if (pg->state == PG_CONNECTING)
        connect_step(pg);
    else if (pg->state == PG_READY)
        ready_io(pg, events);
}

/* ---- set-up -------------------------------------------------------------- */

static int fail_msg(char *err, size_t errlen, const char *fmt, ...) SG_PRINTF(3, 4);

static int fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* libpq's parse errors quote the offending token, which may be a password
 * ("missing = after ..."): keep only quoted option names. */
static void redact_quoted(char *m)
{
    char *p = m;
    while ((p = strchr(p, '"')) != NULL) {
        char *end = strchr(p + 1, '"');
        if (!end)
            break;
        bool is_option = p - m >= 7 && !strncmp(p - 7, "option ", 7);
        if (!is_option && end - p - 1 > 0) {
            memcpy(p + 1, "...", 3 <= end - p - 1 ? 3 : (size_t)(end - p - 1));
            if (end - p - 1 > 3)
                memmove(p + 4, end, strlen(end) + 1);
            end = p + 1 + SG_MIN(3, (int)(end - p - 1));
        }
        p = end + 1;
    }
}

static bool is_ip_literal(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static bool is_valid_name(const char *s)
{
    if (!s || !*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == ':'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == ':'))
            return false;
    return true;
}

/* Builds the libpq keyword/value arrays: the user's conninfo plus our
 * session options, with room for hostaddr. */
static int build_params(sg_pg_t *pg, const char *conninfo, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        char m[PG_MSG];
        snprintf(m, sizeof(m), "%s", perr ? perr : "out of memory");
        PQfreemem(perr);
        redact_quoted(m);
        size_t n = strlen(m);
        while (n && m[n - 1] == '\n')
            m[--n] = 0;
        return fail_msg(err, errlen, "postgres.conninfo: %s", m);
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    int rc = -1;
    pg->kw = sg_arena_zalloc(&pg->arena, (n + 6) * sizeof(char *));
    pg->vals = sg_arena_zalloc(&pg->arena, (n + 6) * sizeof(char *));
    if (!pg->kw || !pg->vals)
        goto out;
    const char *host = NULL, *user_opts = NULL;
    bool has_app = false, has_gss = false;
    pg->host_idx = pg->hostaddr_idx = -1;
    size_t k = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "options")) {
            user_opts = o->val;
            continue;
        }
        const char *key = sg_arena_strdup(&pg->arena, o->keyword);
        const char *val = sg_arena_strdup(&pg->arena, o->val);
        if (!key || !val)
            goto out;
        if (!strcmp(key, "host")) {
            host = val;
            pg->host_idx = (int)k;
        } else if (!strcmp(key, "hostaddr")) {
            pg->hostaddr_idx = (int)k;
        } else if (!strcmp(key, "password")) {
            pg->password = val;
        } else if (!strcmp(key, "application_name")) {
            has_app = true;
        } else if (!strcmp(key, "gssencmode")) {
            has_gss = true;
        }
        pg->kw[k] = key;
        pg->vals[k++] = val;
    }
    /* libpq would fill a missing host from PGHOST and resolve it blocking. */
    if (pg->host_idx < 0 && pg->hostaddr_idx < 0 && getenv("PGHOST") && *getenv("PGHOST")) {
        host = sg_arena_strdup(&pg->arena, getenv("PGHOST"));
        if (!host)
            goto out;
        pg->host_idx = (int)k;
        pg->kw[k] = "host";
        pg->vals[k++] = host;
    }
    if (pg->hostaddr_idx < 0 && !getenv("PGHOSTADDR") && host) {
        bool any_name = false, several = strchr(host, ',') != NULL;
        char *copy = sg_arena_strdup(&pg->arena, host);
        if (!copy)
            goto out;
        for (char *save = NULL, *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
            if (h[0] != '/' && h[0] != '@' && h[0] && !is_ip_literal(h))
                any_name = true;
        if (any_name && several) {
            rc = fail_msg(err, errlen,
                          "postgres.conninfo: a host list must use IP addresses or socket paths "
                          "(names are resolved only for a single host)");
            goto out;
        }
        if (any_name) {
            pg->needs_resolve = true;
            pg->resolve_host = host;
            pg->hostaddr_idx = (int)k;
            pg->kw[k] = "hostaddr";
            pg->vals[k++] = NULL; /* set after the lookup */
        }
    }
    char *o = sg_arena_alloc(&pg->arena, 256 + (user_opts ? strlen(user_opts) : 0));
    if (!o)
        goto out;
    sprintf(o, "%s%s-c default_transaction_read_only=on -c statement_timeout=%llu", user_opts ? user_opts : "",
            user_opts ? " " : "", (unsigned long long)pg->stmt_timeout_ms);
    pg->kw[k] = "options";
    pg->vals[k++] = o;
    if (!has_app) {
        pg->kw[k] = "application_name";
        pg->vals[k++] = "swarmgate";
    }
    if (!has_gss) { /* GSS probing can block on Kerberos lookups */
        pg->kw[k] = "gssencmode";
        pg->vals[k++] = "disable";
    }
    pg->n_kw = k;
    if (pg->needs_resolve) {
        /* hostaddr must come last among set values: move it to the end so a
         * NULL value until resolution does not cut the array short. */
        const char *hk = pg->kw[pg->hostaddr_idx];
        for (size_t i = (size_t)pg->hostaddr_idx; i + 1 < k; i++) {
            pg->kw[i] = pg->kw[i + 1];
            pg->vals[i] = pg->vals[i + 1];
        }
        pg->kw[k - 1] = hk;
        pg->vals[k - 1] = NULL;
        if (pg->host_idx > pg->hostaddr_idx)
            pg->host_idx--;
        pg->hostaddr_idx = (int)k - 1;
    }
    rc = 0;
out:
    PQconninfoFree(opts);
    if (rc && err && !*err)
        fail_msg(err, errlen, "postgres: out of memory");
    return rc;
}

static int add_query(sg_pg_t *pg, size_t *i, const sg_pg_query_conf_t *c, char *err, size_t errlen)
{
    pg_query_t *q = &pg->queries[(*i)++];
    memset(q, 0, sizeof(*q));
    if (!is_valid_name(c->name))
        return fail_msg(err, errlen, "postgres.queries: \"%s\" is not a valid metric name", c->name ? c->name : "");
    if (!c->sql || !*c->sql)
        return fail_msg(err, errlen, "postgres.queries.%s: sql is empty", c->name);
    if (c->type != SG_METRIC_GAUGE && c->type != SG_METRIC_COUNTER)
        return fail_msg(err, errlen, "postgres.queries.%s: type must be gauge or counter", c->name);
    if (c->n_labels > 16)
        return fail_msg(err, errlen, "postgres.queries.%s: at most 16 labels", c->name);
    for (size_t j = 0; j < c->n_labels; j++)
        if (!is_valid_name(c->labels[j]) || strchr(c->labels[j], ':'))
            return fail_msg(err, errlen, "postgres.queries.%s: \"%s\" is not a valid label name", c->name,
                            c->labels[j]);
    q->kind = PG_Q_SERIES;
    q->type = c->type;
    q->label = sg_arena_strdup(&pg->arena, c->name);
    size_t nl = strlen(c->name);
    /* A counter family is named without _total; its sample gets it back. */
    if (c->type == SG_METRIC_COUNTER && nl > 6 && !strcmp(c->name + nl - 6, "_total"))
        q->name = sg_arena_strndup(&pg->arena, c->name, nl - 6);
    else
        q->name = q->label;
    q->help = sg_arena_strdup(&pg->arena, c->help ? c->help : c->name);
    q->sql = sg_arena_strdup(&pg->arena, c->sql);
    q->value = sg_arena_strdup(&pg->arena, c->value && *c->value ? c->value : "value");
    q->interval_ms = c->interval_ms ? c->interval_ms : pg->interval_ms;
    q->n_labels = c->n_labels;
    q->labels = sg_arena_zalloc(&pg->arena, (c->n_labels + 1) * sizeof(char *));
    sg_zero_fill_t *zf = sg_arena_zalloc(&pg->arena, (c->n_zero_fill + 1) * sizeof(*zf));
    if (!q->label || !q->name || !q->help || !q->sql || !q->value || !q->labels || !zf)
        return fail_msg(err, errlen, "postgres: out of memory");
    for (size_t j = 0; j < c->n_labels; j++)
        if (!(q->labels[j] = sg_arena_strdup(&pg->arena, c->labels[j])))
            return fail_msg(err, errlen, "postgres: out of memory");
    for (size_t z = 0; z < c->n_zero_fill; z++) {
        zf[z].label = sg_arena_strdup(&pg->arena, c->zero_fill[z].label);
        zf[z].n_values = c->zero_fill[z].n_values;
        zf[z].values = sg_arena_zalloc(&pg->arena, (zf[z].n_values + 1) * sizeof(char *));
        if (!zf[z].label || !zf[z].values)
            return fail_msg(err, errlen, "postgres: out of memory");
        for (size_t k = 0; k < zf[z].n_values; k++)
            if (!(zf[z].values[k] = sg_arena_strdup(&pg->arena, c->zero_fill[z].values[k])))
                return fail_msg(err, errlen, "postgres: out of memory");
    }
    q->zero_fill = zf;
    q->n_zero_fill = c->n_zero_fill;
    if (hist_init(&q->duration, pg->n_db_bounds) != 0)
        return fail_msg(err, errlen, "postgres: out of memory");
    return 0;
}

static const double *copy_bounds(sg_pg_t *pg, const sg_buckets_t *b, const double *def, size_t n_def, size_t *n)
{
    if (!b || !b->n) {
        *n = n_def;
        return def;
    }
    double *out = sg_arena_alloc(&pg->arena, b->n * sizeof(double));
    if (out)
        memcpy(out, b->bounds, b->n * sizeof(double));
    *n = b->n;
    return out;
}

sg_pg_t *sg_pg_start(uv_loop_t *loop, const sg_pg_conf_t *conf, const sg_metrics_conf_t *mconf, sg_pg_log_cb log_cb,
                     void *log_arg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!conf || !conf->conninfo || !*conf->conninfo) {
        fail_msg(err, errlen, "postgres.conninfo is empty");
        return NULL;
    }
    sg_pg_t *pg = calloc(1, sizeof(*pg));
    if (!pg) {
        fail_msg(err, errlen, "postgres: out of memory");
        return NULL;
    }
    size_t n_all = 0;
    sg_arena_init(&pg->arena, 8192);
    pg->loop = loop;
    pg->log_cb = log_cb;
    pg->log_arg = log_arg;
    pg->poll_fd = -1;
    pg->interval_ms = conf->interval_ms ? conf->interval_ms : PG_DEFAULT_INTERVAL_MS;
    pg->stmt_timeout_ms = conf->statement_timeout_ms ? conf->statement_timeout_ms : PG_DEFAULT_STMT_TIMEOUT_MS;
    pg->connect_timeout_ms = conf->connect_timeout_ms ? conf->connect_timeout_ms : PG_DEFAULT_CONNECT_TIMEOUT_MS;
    pg->stale_after_ms = conf->stale_after_ms ? conf->stale_after_ms : 3 * pg->interval_ms;
    pg->reconnect_min_ms = conf->reconnect_min_ms ? conf->reconnect_min_ms : PG_DEFAULT_RECONNECT_MIN_MS;
    pg->reconnect_max_ms = conf->reconnect_max_ms ? conf->reconnect_max_ms : PG_DEFAULT_RECONNECT_MAX_MS;
    if (pg->reconnect_max_ms < pg->reconnect_min_ms)
        pg->reconnect_max_ms = pg->reconnect_min_ms;
    pg->backoff_ms = pg->reconnect_min_ms;
    pg->batch = conf->transitions.batch ? conf->transitions.batch : PG_DEFAULT_BATCH;
    uint64_t stuck_ms = conf->stuck_after_ms ? conf->stuck_after_ms : PG_DEFAULT_STUCK_AFTER_MS;
    pg->db_bounds = copy_bounds(pg, mconf ? &mconf->db_buckets : NULL, default_db_bounds,
                                SG_ARRAY_SIZE(default_db_bounds), &pg->n_db_bounds);
    pg->tr_bounds = copy_bounds(pg, mconf ? &mconf->transition_buckets : NULL, default_tr_bounds,
                                SG_ARRAY_SIZE(default_tr_bounds), &pg->n_tr_bounds);
    if (!pg->db_bounds || !pg->tr_bounds) {
        fail_msg(err, errlen, "postgres: out of memory");
        goto fail_arena;
    }
    if (build_params(pg, conf->conninfo, err, errlen) != 0)
        goto fail_arena;

    /* Queries: the defaults for the reference schema, then the configured ones. */
    size_t n_def = conf->default_queries ? 6 : 0;
    n_all = n_def + conf->n_queries + (conf->transitions.enabled ? 1 : 0);
    pg->queries = sg_arena_zalloc(&pg->arena, (n_all + 1) * sizeof(pg_query_t));
    if (!pg->queries) {
        fail_msg(err, errlen, "postgres: out of memory");
        goto fail_arena;
    }
    size_t i = 0;
    if (conf->default_queries) {
        char stuck_sql[512];
        snprintf(stuck_sql, sizeof(stuck_sql),
                 "SELECT state, count(*)::float8 AS value FROM tickets WHERE state = 'in_progress' "
                 "AND state_changed_at < now() - interval '%llu milliseconds' GROUP BY state ORDER BY state",
                 (unsigned long long)stuck_ms);
        sg_zero_fill_t zf_states = {"state", (const char **)ticket_states, SG_ARRAY_SIZE(ticket_states)};
        sg_zero_fill_t zf_stuck = {"state", (const char **)stuck_states, SG_ARRAY_SIZE(stuck_states)};
        sg_zero_fill_t zf_final = {"status", (const char **)final_states, SG_ARRAY_SIZE(final_states)};
        const sg_pg_query_conf_t defs[] = {
            {"swarm_tickets_total", "Tickets by state.", SG_METRIC_GAUGE,
             "SELECT state, count(*)::float8 AS value FROM tickets GROUP BY state ORDER BY state", (const char **)lbl_state, 1,
             "value", 0, &zf_states, 1},
            {"swarm_tickets_stuck", "Tickets in a state longer than its limit (in_progress: postgres.stuck_after).",
             SG_METRIC_GAUGE, stuck_sql, (const char **)lbl_state, 1, "value", 0, &zf_stuck, 1},
            {"swarm_tickets_processed_total", "Tickets that reached a final status.", SG_METRIC_COUNTER,
             "SELECT state AS status, count(*)::float8 AS value FROM tickets "
             "WHERE state IN ('done', 'failed', 'cancelled') GROUP BY state ORDER BY state",
             (const char **)lbl_status, 1, "value", 0, &zf_final, 1},
            {"swarm_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", SG_METRIC_GAUGE,
             "SELECT agent, project, CASE state WHEN 'closed' THEN 0 WHEN 'open' THEN 1 WHEN 'half_open' THEN 2 "
             "END::float8 AS value FROM circuit_breakers ORDER BY agent, project",
             (const char **)lbl_breaker, 2, "value", 0, NULL, 0},
            {"swarm_vm_active", "VMs counting against the pool (provisioning, idle, busy, draining).", SG_METRIC_GAUGE,
             "SELECT count(*)::float8 AS value FROM vms WHERE state IN ('provisioning', 'idle', 'busy', 'draining')",
             NULL, 0, "value", 0, NULL, 0},
            {"swarm_vm_max", "Size of the VM pool.", SG_METRIC_GAUGE,
             "SELECT COALESCE((SELECT max_size FROM vm_pool WHERE id = 1), 0)::float8 AS value", NULL, 0, "value", 0,
             NULL, 0},
        };
        for (size_t d = 0; d < SG_ARRAY_SIZE(defs); d++)
            if (add_query(pg, &i, &defs[d], err, errlen) != 0)
                goto fail_arena;
    }
    for (size_t c = 0; c < conf->n_queries; c++) {
        for (size_t j = 0; j < i; j++)
            if (!strcmp(pg->queries[j].label, conf->queries[c].name ? conf->queries[c].name : "")) {
                fail_msg(err, errlen, "postgres.queries: %s is defined twice", conf->queries[c].name);
                goto fail_arena;
            }
        if (add_query(pg, &i, &conf->queries[c], err, errlen) != 0)
            goto fail_arena;
    }
    if (conf->transitions.enabled) {
        pg_query_t *q = &pg->queries[i++];
        q->kind = PG_Q_TRANSITIONS;
        q->name = "swarm_state_transition_duration_seconds";
        q->label = "swarm_state_transition_duration_seconds";
        q->help = "Time between a ticket's consecutive state events.";
        q->type = SG_METRIC_HISTOGRAM;
        q->sql = sg_arena_strdup(&pg->arena, conf->transitions.sql ? conf->transitions.sql : transitions_sql);
        pg->transitions_start_sql = sg_arena_strdup(
            &pg->arena, conf->transitions_start_sql ? conf->transitions_start_sql : transitions_start_sql);
        q->interval_ms = pg->interval_ms;
        if (!q->sql || !pg->transitions_start_sql || hist_init(&q->duration, pg->n_db_bounds) != 0) {
            fail_msg(err, errlen, "postgres: out of memory");
            goto fail_arena;
        }
        pg->transitions = q;
    }
    pg->n_queries = i;

    uv_timer_init(loop, &pg->tick_timer);
    uv_timer_init(loop, &pg->deadline_timer);
    uv_timer_init(loop, &pg->retry_timer);
    pg->tick_timer.data = pg->deadline_timer.data = pg->retry_timer.data = pg;
    pg->open_handles = 3;
    set_state(pg, PG_IDLE);
    uv_timer_start(&pg->retry_timer, on_retry, 0, 0);
    return pg;

fail_arena:
    for (size_t j = 0; pg->queries && j < n_all; j++)
        free(pg->queries[j].duration.counts);
    sg_arena_destroy(&pg->arena);
    free(pg);
    return NULL;
}

void sg_pg_stop(sg_pg_t *pg)
{
    if (!pg || pg->state == PG_CLOSING)
        return;
    conn_drop(pg);
    set_state(pg, PG_CLOSING);
    if (pg->is_gai_pending)
        uv_cancel((uv_req_t *)&pg->gai);
    uv_close((uv_handle_t *)&pg->tick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pg->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pg->retry_timer, on_handle_closed);
}

bool sg_pg_is_up(const sg_pg_t *pg)
{
    return pg && pg->is_up;
}

const char *sg_pg_last_error(const sg_pg_t *pg)
{
    return pg ? pg->last_error : "";
}

void sg_pg_get_stats(const sg_pg_t *pg, sg_pg_stats_t *out)
{
    *out = pg->stats;
}

/* ---- rendering ----------------------------------------------------------- */

void sg_pg_collect(sg_expose_t *x, void *arg)
{
    sg_pg_t *pg = arg;
    uint64_t now = uv_now(pg->loop);
    for (size_t i = 0; i < pg->n_queries; i++) {
        pg_query_t *q = &pg->queries[i];
        if (q->kind != PG_Q_SERIES)
            continue;
        sg_expose_family(x, q->name, q->help, q->type);
        pg_snap_t *s = q->snap;
        if (!s || now - s->updated_ms > pg->stale_after_ms)
            continue;
        const char *suffix = q->type == SG_METRIC_COUNTER ? "_total" : "";
        for (size_t r = 0; r < s->n; r++)
            sg_expose_sample(x, q->name, suffix, q->labels, (const char *const *)&s->label_values[r * q->n_labels],
                             q->n_labels, s->values[r]);
    }
    if (pg->transitions) {
        static const char *const names[] = {"from", "to"};
        sg_expose_family(x, pg->transitions->name, pg->transitions->help, SG_METRIC_HISTOGRAM);
        for (size_t i = 0; i < pg->n_pairs; i++) {
            const char *vals[] = {pg->pairs[i].from, pg->pairs[i].to};
            sg_expose_histogram(x, pg->transitions->name, names, vals, 2, pg->tr_bounds, pg->pairs[i].h.counts,
                                pg->n_tr_bounds, pg->pairs[i].h.sum);
        }
    }

    static const char *const qname[] = {"query"};
    sg_expose_family(x, "swarm_db_up", "1 while swarmgate is connected to PostgreSQL.", SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarm_db_up", "", NULL, NULL, 0, pg->is_up ? 1 : 0);
    sg_expose_family(x, "swarm_db_query_duration_seconds", "Duration of each Postgres poller query.",
                     SG_METRIC_HISTOGRAM);
    for (size_t i = 0; i < pg->n_queries; i++)
        sg_expose_histogram(x, "swarm_db_query_duration_seconds", qname, &pg->queries[i].label, 1, pg->db_bounds,
                            pg->queries[i].duration.counts, pg->n_db_bounds, pg->queries[i].duration.sum);
    sg_expose_family(x, "swarm_db_query_errors", "Failed Postgres poller queries (timeouts included).",
                     SG_METRIC_COUNTER);
    for (size_t i = 0; i < pg->n_queries; i++)
        sg_expose_sample(x, "swarm_db_query_errors", "_total", qname, &pg->queries[i].label, 1,
                         (double)pg->queries[i].errors);
    sg_expose_family(x, "swarm_db_query_timeouts", "Postgres poller queries cancelled past statement_timeout.",
                     SG_METRIC_COUNTER);
    for (size_t i = 0; i < pg->n_queries; i++)
        sg_expose_sample(x, "swarm_db_query_timeouts", "_total", qname, &pg->queries[i].label, 1,
                         (double)pg->queries[i].timeouts);
    sg_expose_family(x, "swarm_db_refresh_skipped", "Refreshes skipped because the previous one was still pending.",
                     SG_METRIC_COUNTER);
    sg_expose_sample(x, "swarm_db_refresh_skipped", "_total", NULL, NULL, 0, (double)pg->stats.skipped);
    sg_expose_family(x, "swarm_db_connect_errors", "Failed or timed-out Postgres connection attempts.",
                     SG_METRIC_COUNTER);
    sg_expose_sample(x, "swarm_db_connect_errors", "_total", NULL, NULL, 0, (double)pg->stats.connect_errors);
    sg_expose_family(x, "swarm_db_last_success_timestamp_seconds", "Unix time of the last successful poller query.",
                     SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarm_db_last_success_timestamp_seconds", "", NULL, NULL, 0, pg->last_success_unix);
}
