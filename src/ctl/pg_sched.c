/* A Postgres poller's scheduling (control thread): which query runs next,
 * when the next one is due, what a finished run means (counters, health,
 * another batch) and the leader role (postgres.leader_lock) that decides
 * whether this instance polls at all. The connection (pg.c) asks and sends:
 * nothing here touches the socket.
 *
 * Leader role, a checked table beside the connection's: UNKNOWN on every
 * new connection, until pg_try_advisory_lock answers; LEADER polls,
 * FOLLOWER only asks for the lock again every interval and exports nothing
 * of the database.
 *
 * Query health: each query keeps whether its last run succeeded (readiness,
 * swarm_db_query_up); the log says it once per change. */
#include "ctl/pg_int.h"

#include "sg/time.h"

#include <libpq-fe.h>

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* ---- leader role ----------------------------------------------------------- */

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
bool sg__pg_is_polling(const sg_pg_t *pg)
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

/* pg_try_advisory_lock answered: this instance polls, or waits for the
 * holder's session to end (asked again every interval). */
static void handle_lock(sg_pg_t *pg, PGresult *r)
{
    if (PQntuples(r) < 1 || PQnfields(r) < 1) {
        sg__pg_query_error(pg, "the lock query returned no row");
        return;
    }
    bool got = !strcmp(PQgetvalue(r, 0, 0), "t");
    if (got) {
        set_role(pg, PG_ROLE_LEADER);
        sg__pg_log(pg, SG_LOG_INFO, "postgres: leader lock taken (pg_try_advisory_lock(%lld)): this instance polls",
                   (long long)SG_PG_LEADER_LOCK_KEY);
        uint64_t now = uv_now(pg->loop);
        for (size_t i = 0; i < pg->n_queries; i++)
            pg->queries[i].next_due_ms = now;
    } else if (pg->role != PG_ROLE_FOLLOWER) {
        set_role(pg, PG_ROLE_FOLLOWER);
        forget_results(pg);
        sg__pg_log(pg, SG_LOG_INFO,
                   "postgres: another session holds the leader lock: this instance does not poll (asking every %llums)",
                   (unsigned long long)pg->interval_ms);
    }
}

/* ---- the run queue ---------------------------------------------------------- */

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
    if (sg__pg_is_polling(pg)) {
        *qs = pg->queries;
        return pg->n_queries;
    }
    *qs = &pg->lock_q;
    return pg->lock_q.is_queued || pg->lock_q.is_running ? 0 : 1;
}

void sg__pg_sched_all_due(sg_pg_t *pg, uint64_t now_ms)
{
    pg->lock_q.next_due_ms = now_ms;
    for (size_t i = 0; i < pg->n_queries; i++)
        pg->queries[i].next_due_ms = now_ms;
}

void sg__pg_sched_due(sg_pg_t *pg, uint64_t now_ms)
{
    pg_query_t *qs;
    size_t n = due_set(pg, &qs);
    for (size_t i = 0; i < n; i++) {
        pg_query_t *q = &qs[i];
        if (q->next_due_ms > now_ms)
            continue;
        q->next_due_ms = now_ms + q->interval_ms;
        if (q->is_queued || q->is_running) {
            pg->stats.skipped++;
            sg__pg_log(pg, SG_LOG_DEBUG, "postgres: refresh of %s skipped: the last one is still pending", q->label);
            continue;
        }
        enqueue(pg, q);
    }
}

bool sg__pg_sched_next_due(sg_pg_t *pg, uint64_t *due_ms)
{
    pg_query_t *qs;
    size_t n = due_set(pg, &qs);
    if (!n)
        return false;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        next = SG_MIN(next, qs[i].next_due_ms);
    *due_ms = next;
    return true;
}

pg_query_t *sg__pg_sched_take(sg_pg_t *pg, const char **sql, const char *params[2], int *n_params)
{
    if (pg->running || !pg->run_head)
        return NULL;
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

    *sql = sg__pg_first_sql(pg, q);
    *n_params = 0;
    if (q->kind == PG_Q_TRANSITIONS) {
        if (pg->has_cursor) {
            snprintf(pg->last_id_buf, sizeof(pg->last_id_buf), "%lld", (long long)pg->last_event_id);
            snprintf(pg->batch_buf, sizeof(pg->batch_buf), "%u", pg->batch);
            params[0] = pg->last_id_buf;
            params[1] = pg->batch_buf;
            *n_params = 2;
        }
    }
    return q;
}

/* ---- a run's end ------------------------------------------------------------ */

void sg__pg_sched_result(sg_pg_t *pg, struct pg_result *r)
{
    pg_query_t *q = pg->running;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
        if (pg->query_failed)
            return;
        if (q->kind == PG_Q_LOCK)
            handle_lock(pg, r);
        else if (q->kind == PG_Q_TRANSITIONS)
            sg__pg_handle_transitions(pg, q, r);
        else
            sg__pg_handle_series(pg, q, r);
        return;
    }
    if (st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        sg__pg_query_error(pg, "the statement returned no rows (not a SELECT?)");
        return;
    }
    const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (sqlstate && !strcmp(sqlstate, "57014"))
        pg->query_timed_out = true; /* query_canceled: statement_timeout */
    /* The primary message names the missing relation or column. */
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (primary)
        sg__pg_query_error(pg, "%s (SQLSTATE %s)", primary, sqlstate ? sqlstate : "?");
    else
        sg__pg_query_error(pg, "%s", PQresultErrorMessage(r));
}

/* Records how a run ended. The log says it once per change (failing,
 * recovered), not once per poll. */
static void query_outcome(sg_pg_t *pg, pg_query_t *q, bool ok)
{
    if (q->kind == PG_Q_LOCK)
        return;
    if (ok && q->has_run && !q->is_ok)
        sg__pg_log(pg, SG_LOG_INFO, "postgres: query %s recovered", q->label);
    else if (!ok && (!q->has_run || q->is_ok))
        sg__pg_log(pg, SG_LOG_WARN, "postgres: query %s failed: %s (logged again when it recovers)", q->label,
                   pg->query_msg);
    else if (!ok)
        sg__pg_log(pg, SG_LOG_DEBUG, "postgres: query %s still failing: %s", q->label, pg->query_msg);
    q->has_run = true;
    q->is_ok = ok;
}

bool sg__pg_sched_done(sg_pg_t *pg)
{
    pg_query_t *q = pg->running;
    pg->running = NULL;
    q->is_running = false;
    double secs = (double)(sg_now_ns() - q->started_ns) / 1e9;
    if (q->kind != PG_Q_LOCK)
        sg__pg_hist_observe(&q->duration, pg->db_bounds, pg->n_db_bounds, secs);
    query_outcome(pg, q, !pg->query_failed);
    if (q->kind == PG_Q_LOCK) {
        if (pg->query_failed) /* e.g. a pooler that refuses session locks: not the poller */
            sg__pg_log(pg, SG_LOG_WARN, "postgres: leader lock query failed: %s", pg->query_msg);
        return true; /* the leader's queries are due now */
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
    return false;
}

void sg__pg_sched_no_answer(sg_pg_t *pg)
{
    pg_query_t *q = pg->running;
    q->errors++;
    q->timeouts++;
    pg->stats.query_errors++;
    pg->stats.query_timeouts++;
}

void sg__pg_sched_reset(sg_pg_t *pg)
{
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
