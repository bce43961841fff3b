/* Postgres poller (see sg/pg.h and docs/postgres.md): the connection state
 * machine, its socket and timers, and the public API. What runs when, the
 * leader role and what results mean are pg_sched.c's and pg_results.c's.
 *
 * Connection states: IDLE (waiting for the back-off timer), RESOLVING
 * (uv_getaddrinfo in the thread pool), CONNECTING (PQconnectPoll driven by
 * uv_poll_t), READY (connected; at most one query in flight). Every failure
 * goes through conn_fail(), which drops the connection and arms the back-off.
 *
 * Leader role (postgres.leader_lock, pg_sched.c): UNKNOWN on every new
 * connection, until pg_try_advisory_lock answers; the lock is the
 * session's, so losing the connection is the only way out of LEADER.
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

/* ---- handles ------------------------------------------------------------- */

static void pg_maybe_free(sg_pg_t *pg)
{
    if (pg->state != PG_CLOSING || pg->open_handles || pg->is_gai_pending)
        return;
    sg__pg_free_queries(pg);
    sg__pg_pairs_free(pg);
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
    sg__pg_sched_reset(pg); /* no query runs, none waits; the role is the session's */
}

static void on_retry(uv_timer_t *t);

static void conn_fail(sg_pg_t *pg, const char *what, const char *detail)
{
    if (pg->state == PG_CLOSING)
        return;
    sg__pg_log(pg, SG_LOG_WARN, "postgres: %s (state %s): %s; retrying in %llums", what, pg_state_name(pg->state),
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
        sg__pg_sched_no_answer(pg);
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
    sg__pg_log(pg, SG_LOG_INFO, "postgres: connected (server %d)", PQserverVersion(pg->conn));
    sg__pg_sched_all_due(pg, uv_now(pg->loop));
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
    sg__pg_log(arg, SG_LOG_INFO, "postgres: server: %s", msg);
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

/* ---- queries: the tick and the sending (pg_sched.c picks) ---------------- */

static void on_tick(uv_timer_t *t)
{
    sg_pg_t *pg = t->data;
    if (pg->state == PG_READY) {
        sg__pg_sched_due(pg, uv_now(pg->loop));
        run_next(pg);
    }
    schedule_tick(pg);
}

static void schedule_tick(sg_pg_t *pg)
{
    uint64_t due;
    if (pg->state != PG_READY || !sg__pg_sched_next_due(pg, &due)) {
        uv_timer_stop(&pg->tick_timer);
        return;
    }
    uint64_t now = uv_now(pg->loop);
    uv_timer_start(&pg->tick_timer, on_tick, due > now ? due - now : 0, 0);
}

static void run_next(sg_pg_t *pg)
{
    if (pg->state != PG_READY)
        return;
    const char *sql, *params[2];
    int n_params;
    if (!sg__pg_sched_take(pg, &sql, params, &n_params))
        return;
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
            uv_timer_stop(&pg->deadline_timer);
            if (sg__pg_sched_done(pg))
                schedule_tick(pg);
            run_next(pg); /* the next query, if one waits */
            return;
        }
        sg__pg_sched_result(pg, r);
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
    return pg && sg__pg_is_polling(pg);
}

const char *sg_pg_last_error(const sg_pg_t *pg)
{
    return pg ? pg->last_error : "";
}

void sg_pg_get_stats(const sg_pg_t *pg, sg_pg_stats_t *out)
{
    *out = pg->stats;
}
