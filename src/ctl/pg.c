/* Postgres poller (see sg/pg.h and docs/postgres.md).
 *
 * Connection states: IDLE (waiting for the back-off timer), RESOLVING
 * (uv_getaddrinfo in the thread pool), CONNECTING (PQconnectPoll driven by
 * uv_poll_t), READY (connected; at most one query in flight). Every failure
 * goes through conn_fail(), which drops the connection and arms the back-off.
 *
 * Leader role (postgres.leader_lock), a second checked table: UNKNOWN on
 * every new connection, until pg_try_advisory_lock answers; LEADER polls,
 * FOLLOWER only asks for the lock again every interval and exports nothing
 * of the database. The lock is the session's, so losing the connection is
 * the only way out of LEADER.
 *
 * Query health: each query keeps whether its last run succeeded (readiness,
 * swarm_db_query_up); the log says it once per change.
 *
 * Why not PQcancel: it opens a new connection synchronously. A statement is
 * bounded by the server's statement_timeout; if the server does not answer
 * at all (host gone, process stopped), a client deadline a little later
 * drops the connection instead. */
#include "sg/pg.h"

#include "ctl/pg_int.h"
#include "sg/runtime.h"

#include <libpq-fe.h>

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const pg_state_names[PG_STATE__COUNT] = {"idle", "resolving", "connecting", "ready", "closing"};

static const char *pg_state_name(pg_state_t s)
{
    return s < PG_STATE__COUNT ? pg_state_names[s] : "?";
}

/* ---- messages ------------------------------------------------------------ */

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
    sg__pg_mask_secret(msg, pg->password);
    if (level >= SG_LOG_WARN)
        snprintf(pg->last_error, sizeof(pg->last_error), "%s", msg);
    if (pg->log_cb)
        pg->log_cb(pg->log_arg, level, msg);
}

/* ---- handles ------------------------------------------------------------- */

static void pg_maybe_free(sg_pg_t *pg)
{
    if (pg->state != PG_CLOSING || pg->open_handles || pg->is_gai_pending)
        return;
    sg__pg_free_queries(pg);
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

/* Leader role (postgres.leader_lock): legal changes, bit `to` in [from]. */
static const unsigned pg_role_legal[PG_ROLE__COUNT] = {
    [PG_ROLE_UNKNOWN] = 1u << PG_ROLE_LEADER | 1u << PG_ROLE_FOLLOWER,
    [PG_ROLE_LEADER] = 1u << PG_ROLE_UNKNOWN, /* only by losing the session */
    [PG_ROLE_FOLLOWER] = 1u << PG_ROLE_LEADER | 1u << PG_ROLE_UNKNOWN,
};

static void set_role(sg_pg_t *pg, pg_role_t to)
{
    if (pg->role == to)
        return;
    assert(pg_role_legal[pg->role] & (1u << to));
    SG_UNUSED(pg_role_legal);
    pg->role = to;
}

/* This instance runs the queries: it holds the lock, or there is none. */
static bool is_polling(const sg_pg_t *pg)
{
    return !pg->leader_lock || pg->role == PG_ROLE_LEADER;
}

/* A follower exports no values and no query health: the leader does. */
static void forget_results(sg_pg_t *pg)
{
    for (size_t i = 0; i < pg->n_queries; i++) {
        pg_query_t *q = &pg->queries[i];
        sg__pg_snap_free(q->snap, q->n_labels);
        q->snap = NULL;
        q->has_run = false;
        q->is_ok = false;
    }
    /* Should it lead again, the histogram starts at the newest event: the
     * events in between were the other leader's to observe. */
    pg->has_cursor = false;
}

/* Records how a run ended. The log says it once per change (failing,
 * recovered), not once per poll. */
static void query_outcome(sg_pg_t *pg, pg_query_t *q, bool ok)
{
    if (q->kind == PG_Q_LOCK)
        return;
    if (ok && q->has_run && !q->is_ok)
        pg_log(pg, SG_LOG_INFO, "postgres: query %s recovered", q->label);
    else if (!ok && (!q->has_run || q->is_ok))
        pg_log(pg, SG_LOG_WARN, "postgres: query %s failed: %s (logged again when it recovers)", q->label,
               pg->query_msg);
    else if (!ok)
        pg_log(pg, SG_LOG_DEBUG, "postgres: query %s still failing: %s", q->label, pg->query_msg);
    q->has_run = true;
    q->is_ok = ok;
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
    /* The server drops a session lock with its session. */
    set_role(pg, PG_ROLE_UNKNOWN);
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
        /* Counted, but the query's health (swarm_db_query_up, readiness)
         * keeps its last completed run: a server that does not answer at
         * all is the connection's failure (swarm_db_up, "postgres"), not a
         * sign that this query does not fit the schema. */
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
    pg->lock_q.next_due_ms = now;
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
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || !inet_ntop(ai->ai_family, src, a, sizeof(a)))
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

/* What the tick schedules: the queries while polling, else (leader_lock)
 * only the lock query, once per interval. */
static size_t due_set(sg_pg_t *pg, pg_query_t **qs)
{
    if (is_polling(pg)) {
        *qs = pg->queries;
        return pg->n_queries;
    }
    *qs = &pg->lock_q;
    return pg->lock_q.is_queued || pg->lock_q.is_running ? 0 : 1;
}

static void on_tick(uv_timer_t *t)
{
    sg_pg_t *pg = t->data;
    uint64_t now = uv_now(pg->loop);
    if (pg->state == PG_READY) {
        pg_query_t *qs;
        size_t n = due_set(pg, &qs);
        for (size_t i = 0; i < n; i++) {
            pg_query_t *q = &qs[i];
            if (q->next_due_ms > now)
                continue;
            q->next_due_ms = now + q->interval_ms;
            if (q->is_queued || q->is_running) {
                pg->stats.skipped++;
                pg_log(pg, SG_LOG_DEBUG, "postgres: refresh of %s skipped: the last one is still pending", q->label);
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
    pg_query_t *qs;
    size_t n = pg->state == PG_READY ? due_set(pg, &qs) : 0;
    if (!n) {
        uv_timer_stop(&pg->tick_timer);
        return;
    }
    uint64_t now = uv_now(pg->loop), next = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        next = SG_MIN(next, qs[i].next_due_ms);
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
    pg->query_msg[0] = 0;
    q->started_ns = sg_now_ns();

    const char *sql = sg__pg_first_sql(pg, q);
    const char *params[2];
    int n_params = 0;
    if (q->kind == PG_Q_TRANSITIONS) {
        if (pg->has_cursor) {
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
    SG_UNUSED(q);
    if (!pg->query_failed) /* the first error of a run says why */
        snprintf(pg->query_msg, sizeof(pg->query_msg), "%s", d);
    pg->query_failed = true;
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
            sg__pg_snap_free(s, q->n_labels);
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
    sg__pg_snap_free(q->snap, q->n_labels);
    q->snap = s; /* atomic for readers: collect runs on this thread */
    return;
oom:
    sg__pg_snap_free(s, q->n_labels);
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
    if (!p->from || !p->to || sg__pg_hist_init(&p->h, pg->n_tr_bounds) != 0) {
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
        sg__pg_hist_observe(&p->h, pg->tr_bounds, pg->n_tr_bounds, secs);
        pg->stats.transitions++;
    }
    if ((uint32_t)rows >= pg->batch)
        q->run_again = true;
}

/* pg_try_advisory_lock answered: this instance polls, or waits for the
 * holder's session to end (asked again every interval). */
static void handle_lock(sg_pg_t *pg, pg_query_t *q, PGresult *r)
{
    if (PQntuples(r) < 1 || PQnfields(r) < 1) {
        query_error(pg, q, "the lock query returned no row");
        return;
    }
    bool got = !strcmp(PQgetvalue(r, 0, 0), "t");
    if (got) {
        set_role(pg, PG_ROLE_LEADER);
        pg_log(pg, SG_LOG_INFO, "postgres: leader lock taken (pg_try_advisory_lock(%lld)): this instance polls",
               (long long)SG_PG_LEADER_LOCK_KEY);
        uint64_t now = uv_now(pg->loop);
        for (size_t i = 0; i < pg->n_queries; i++)
            pg->queries[i].next_due_ms = now;
    } else if (pg->role != PG_ROLE_FOLLOWER) {
        set_role(pg, PG_ROLE_FOLLOWER);
        forget_results(pg);
        pg_log(pg, SG_LOG_INFO,
               "postgres: another session holds the leader lock: this instance does not poll (asking every %llums)",
               (unsigned long long)pg->interval_ms);
    }
}

static void handle_result(sg_pg_t *pg, pg_query_t *q, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
        if (pg->query_failed)
            return;
        if (q->kind == PG_Q_LOCK)
            handle_lock(pg, q, r);
        else if (q->kind == PG_Q_TRANSITIONS)
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
    /* The primary message names the missing relation or column. */
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (primary)
        query_error(pg, q, "%s (SQLSTATE %s)", primary, sqlstate ? sqlstate : "?");
    else
        query_error(pg, q, "%s", PQresultErrorMessage(r));
}

static void query_done(sg_pg_t *pg)
{
    pg_query_t *q = pg->running;
    pg->running = NULL;
    q->is_running = false;
    uv_timer_stop(&pg->deadline_timer);
    double secs = (double)(sg_now_ns() - q->started_ns) / 1e9;
    if (q->kind != PG_Q_LOCK)
        sg__pg_hist_observe(&q->duration, pg->db_bounds, pg->n_db_bounds, secs);
    query_outcome(pg, q, !pg->query_failed);
    if (q->kind == PG_Q_LOCK) {
        if (pg->query_failed) /* e.g. a pooler that refuses session locks: not the poller */
            pg_log(pg, SG_LOG_WARN, "postgres: leader lock query failed: %s", pg->query_msg);
        schedule_tick(pg); /* the leader's queries are due now */
    } else if (pg->query_failed) {
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

sg_pg_t *sg_pg_start(uv_loop_t *loop, const sg_pg_conf_t *conf, const sg_metrics_conf_t *mconf, sg_pg_log_cb log_cb,
                     void *log_arg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!conf || !conf->conninfo || !*conf->conninfo) {
        sg__pg_fail_msg(err, errlen, "postgres.conninfo is empty");
        return NULL;
    }
    sg_pg_t *pg = calloc(1, sizeof(*pg));
    if (!pg) {
        sg__pg_fail_msg(err, errlen, "postgres: out of memory");
        return NULL;
    }
    sg_arena_init(&pg->arena, 8192);
    pg->loop = loop;
    pg->log_cb = log_cb;
    pg->log_arg = log_arg;
    pg->poll_fd = -1;
    if (sg__pg_setup(pg, conf, mconf, err, errlen) != 0)
        goto fail_arena;

    uv_timer_init(loop, &pg->tick_timer);
    uv_timer_init(loop, &pg->deadline_timer);
    uv_timer_init(loop, &pg->retry_timer);
    pg->tick_timer.data = pg->deadline_timer.data = pg->retry_timer.data = pg;
    pg->open_handles = 3;
    set_state(pg, PG_IDLE);
    uv_timer_start(&pg->retry_timer, on_retry, 0, 0);
    return pg;

fail_arena:
    sg__pg_free_queries(pg);
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

uint32_t sg_pg_failing_builtins(const sg_pg_t *pg)
{
    uint32_t mask = 0;
    for (size_t i = 0; pg && i < pg->n_queries; i++) {
        const pg_query_t *q = &pg->queries[i];
        if (q->builtin >= 0 && q->has_run && !q->is_ok)
            mask |= 1u << q->builtin;
    }
    return mask;
}

bool sg_pg_is_poller(const sg_pg_t *pg)
{
    return pg && is_polling(pg);
}

const char *sg_pg_last_error(const sg_pg_t *pg)
{
    return pg ? pg->last_error : "";
}

void sg_pg_get_stats(const sg_pg_t *pg, sg_pg_stats_t *out)
{
    *out = pg->stats;
}
