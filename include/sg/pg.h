/* Postgres poller: runs configured gauge/counter queries and the ticket
 * transition histogram on the control thread's loop, without ever blocking
 * it (libpq's non-blocking API driven by uv_poll_t on PQsocket, names
 * resolved with uv_getaddrinfo and handed to libpq as hostaddr).
 *
 * One connection, one query in flight; every session is read-only with a
 * server-side statement_timeout, plus a client-side deadline that drops the
 * connection. Failures reconnect with capped exponential back-off. A
 * refresh that comes due while the previous run of the same query is still
 * queued or running is skipped and counted. See docs/postgres.md.
 *
 * Threading: every function runs on the loop's thread (the control thread).
 * Passwords never appear in messages: every message is masked. */
#ifndef SG_PG_H
#define SG_PG_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/expose.h"

#include <stdio.h>
#include <uv.h>

typedef struct sg_pg sg_pg_t;

/* The built-in queries: the platform's families (DESIGN.md section 5),
 * whether they run the reference-schema SQL or an override with the same
 * name. Readiness (postgres.required) fails while one of them fails. */
typedef enum sg_pg_builtin {
    SG_PG_Q_TICKETS_TOTAL = 0,
    SG_PG_Q_TICKETS_STUCK,
    SG_PG_Q_TICKETS_PROCESSED,
    SG_PG_Q_BREAKER_STATE,
    SG_PG_Q_BREAKER_CHANGED,
    SG_PG_Q_VM_ACTIVE,
    SG_PG_Q_VM_MAX,
    SG_PG_Q_TRANSITIONS,
    SG_PG_BUILTIN__COUNT
} sg_pg_builtin_t;

/* The session advisory lock of postgres.leader_lock: one poller per
 * database (docs/scaling.md). */
#define SG_PG_LEADER_LOCK_KEY 8320225980679938420 /* "swarmgat" as a big-endian int8 */

/* Receives each log line (already masked, no trailing newline). */
typedef void (*sg_pg_log_cb)(void *arg, sg_log_level_t level, const char *msg);

/* Counters for tests and debugging (what /metrics shows, summed). */
typedef struct sg_pg_stats {
    uint64_t connects;       /* connections established */
    uint64_t connect_errors; /* failed or timed-out connection attempts */
    uint64_t queries_ok;
    uint64_t query_errors;   /* any query failure, timeouts included */
    uint64_t query_timeouts; /* server statement_timeout or client deadline */
    uint64_t skipped;        /* refreshes skipped because the last one was still pending */
    uint64_t transitions;    /* events observed into the histogram */
} sg_pg_stats_t;

/* Starts polling on `loop`. conf and mconf are copied (the config generation
 * may go away). Zero fields get the documented defaults. Returns NULL with a
 * reason in err when conf->conninfo is empty or invalid, or a query is
 * malformed. The first connection attempt starts on the next loop turn.
 * Owner: the caller, released with sg_pg_stop(). */
sg_pg_t *sg_pg_start(uv_loop_t *loop, const sg_pg_conf_t *conf, const sg_metrics_conf_t *mconf, sg_pg_log_cb log_cb,
                     void *log_arg, char *err, size_t errlen) SG_MUST_CHECK;
/* Drops the connection, closes every handle; the memory is freed by the last
 * close callback, so run the loop afterwards (uv_run until it returns). */
void sg_pg_stop(sg_pg_t *pg);

/* Connected (readiness input). Control thread only. */
bool sg_pg_is_up(const sg_pg_t *pg);
/* Built-in queries whose last run failed, bit (1u << sg_pg_builtin_t).
 * A query that has not run since this instance became the poller (or that
 * a non-leader does not run) is not failing. Control thread only. */
uint32_t sg_pg_failing_builtins(const sg_pg_t *pg);
/* This instance polls: it holds the leader lock, or leader_lock is off. */
bool sg_pg_is_poller(const sg_pg_t *pg);
/* The metric name of a built-in query ("swarm_tickets_total"); any thread. */
const char *sg_pg_builtin_name(sg_pg_builtin_t id);

/* --check-db: connects (blocking, for the command line), prepares every
 * query conf would run (defaults, overrides, transitions and its start
 * query) and checks that each result has its label and value columns.
 * Writes one line per problem to out, naming the query and what is missing
 * (libpq's message: relation or column). Returns 0 when all prepare, 1 when
 * the database cannot be reached, 2 when a query does not fit it. */
int sg_pg_check_db(const sg_pg_conf_t *conf, FILE *out);
/* The last error message (masked), "" when none. Valid until the next loop turn. */
const char *sg_pg_last_error(const sg_pg_t *pg);
void sg_pg_get_stats(const sg_pg_t *pg, sg_pg_stats_t *out);

/* Renders every Postgres family into x (a scrape). `pg` is an sg_pg_t*.
 * Query families older than stale_after are left out (only HELP/TYPE). */
void sg_pg_collect(sg_expose_t *x, void *pg);

/* Copies conninfo (key=value or postgresql:// URI) into out with every
 * password replaced by "****". Always NUL-terminates (truncates to outlen).
 * Returns the length written. */
size_t sg_pg_mask_conninfo(const char *conninfo, char *out, size_t outlen);

#endif /* SG_PG_H */
