/* Private to the Postgres poller's files (src/ctl/pg*.c): the poller's
 * state, shared by the connection state machine (pg.c), the scheduling and
 * leader role (pg_sched.c), the result handling (pg_results.c), the
 * conninfo handling and messages (pg_conninfo.c), the query set
 * (pg_queries.c) and the renderer (pg_render.c). Control thread only, like
 * sg/pg.h.
 *
 * The files call each other in one direction only (the layer check,
 * tools/layers.py, fails on a cycle): pg.c -> pg_sched.c -> pg_results.c
 * -> pg_queries.c -> pg_conninfo.c. pg.c owns the socket and the timers:
 * it asks pg_sched.c what to send and when, and hands it what comes back. */
#ifndef SG_CTL_PG_INT_H
#define SG_CTL_PG_INT_H

#include "sg/pg.h"

#include "sg/mem.h"

#include <arpa/inet.h>

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

typedef enum pg_state { PG_IDLE = 0, PG_RESOLVING, PG_CONNECTING, PG_READY, PG_CLOSING, PG_STATE__COUNT } pg_state_t;

/* Poller role with postgres.leader_lock (a second state, beside the
 * connection's, with its own checked table in pg_sched.c): UNKNOWN until the
 * lock query answered on this connection, then LEADER (this instance
 * polls) or FOLLOWER (another session holds the lock; asked again every
 * interval). Back to UNKNOWN whenever the connection drops. */
typedef enum pg_role { PG_ROLE_UNKNOWN = 0, PG_ROLE_LEADER, PG_ROLE_FOLLOWER, PG_ROLE__COUNT } pg_role_t;

typedef enum pg_kind {
    PG_Q_SERIES = 0,  /* gauge/counter family from rows */
    PG_Q_TRANSITIONS, /* the transition histogram */
    PG_Q_LOCK,        /* pg_try_advisory_lock (leader_lock); never rendered */
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
    const char *name;  /* family name as rendered (counters without _total) */
    const char *label; /* value of the {query} label on the DB metrics */
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
    int builtin; /* sg_pg_builtin_t, or -1 for a query of the operator's own */

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
    /* Health of the last run (swarm_db_query_up, readiness): has_run is
     * false until a run ends on this poller's watch, and again after the
     * instance stops being the poller. A change is logged once. */
    bool has_run;
    bool is_ok;
} pg_query_t;

struct sg_pg {
    uv_loop_t *loop;
    sg_arena_t arena; /* copies of the conf and queries */
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
    const char *password; /* masked out of every message */
    char hostaddr_buf[PG_MAX_ADDRS * (INET6_ADDRSTRLEN + 1)];
    char hostlist_buf[1024];

    struct pg_conn *conn; /* libpq's PGconn (libpq-fe.h stays in the .c files) */
    uv_poll_t *poll;      /* malloc'ed: a new one when the socket changes */
    int poll_fd;
    int poll_events;
    uv_timer_t tick_timer;     /* next due query */
    uv_timer_t deadline_timer; /* connect or statement deadline */
    uv_timer_t retry_timer;    /* back-off */
    uv_getaddrinfo_t gai;
    bool is_gai_pending;
    unsigned open_handles;

    pg_query_t *queries;
    size_t n_queries;
    size_t n_query_slots; /* allocated (sg__pg_free_queries) */
    pg_query_t *run_head, *run_tail, *running;
    pg_query_t *transitions; /* also in queries[], or NULL */
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
    bool leader_lock; /* postgres.leader_lock */
    pg_role_t role;
    pg_query_t lock_q;      /* kind PG_Q_LOCK, not in queries[] */
    bool query_failed;      /* current query produced an error result */
    char query_msg[PG_MSG]; /* why it failed (libpq's primary message and SQLSTATE) */
    bool query_timed_out;
    double last_success_unix;
    char last_error[PG_MSG];
    sg_pg_stats_t stats;
};

struct pg_result; /* libpq's PGresult (libpq-fe.h stays in the .c files) */

/* pg_conninfo.c */
/* One line to pg->log_cb: libpq's line breaks folded, the password masked;
 * a warning or worse is also kept as pg->last_error. */
void sg__pg_log(sg_pg_t *pg, sg_log_level_t level, const char *fmt, ...) SG_PRINTF(3, 4);
/* Replaces every occurrence of secret in s by "****" (in place). */
void sg__pg_mask_secret(char *s, const char *secret);
int sg__pg_fail_msg(char *err, size_t errlen, const char *fmt, ...) SG_PRINTF(3, 4);
/* Builds pg->kw/vals from the user's conninfo plus the session options
 * (read-only, statement_timeout); a host name gets a hostaddr slot filled
 * after a uv_getaddrinfo (NULL until then: libpq then resolves it itself). */
int sg__pg_build_params(sg_pg_t *pg, const char *conninfo, char *err, size_t errlen);

/* pg_queries.c */
int sg__pg_hist_init(pg_hist_t *h, size_t n_bounds);
void sg__pg_hist_observe(pg_hist_t *h, const double *bounds, size_t n, double v);
void sg__pg_snap_free(pg_snap_t *s, size_t n_labels);
/* Fills pg's settings, bucket bounds and query set from conf. Everything
 * goes into pg->arena except the histogram counts (freed with the queries). */
int sg__pg_setup(sg_pg_t *pg, const sg_pg_conf_t *conf, const sg_metrics_conf_t *mconf, char *err, size_t errlen);
/* Frees what sg__pg_setup() malloc'ed outside the arena. */
void sg__pg_free_queries(sg_pg_t *pg);
/* Same as the public one, for a conf (-1 when the name is not built in). */
int sg__pg_builtin_id(const char *name);
/* The SQL a query runs first: the transition start query, else its sql. */
const char *sg__pg_first_sql(const sg_pg_t *pg, const pg_query_t *q);

/* pg_results.c */
/* The running query failed: the first reason of a run is kept in
 * pg->query_msg, and pg->query_failed set. */
void sg__pg_query_error(sg_pg_t *pg, const char *fmt, ...) SG_PRINTF(2, 3);
/* A series query's rows (PGRES_TUPLES_OK) become q->snap, zero-filled;
 * a bad row fails the run and keeps the last snapshot. */
void sg__pg_handle_series(sg_pg_t *pg, pg_query_t *q, struct pg_result *r);
/* The transition query's rows: the first run sets the cursor (the newest
 * event id), later ones observe each event into its (from, to) histogram. */
void sg__pg_handle_transitions(sg_pg_t *pg, pg_query_t *q, struct pg_result *r);
/* Frees the transition pairs' names and counts. */
void sg__pg_pairs_free(sg_pg_t *pg);

/* pg_sched.c */
/* This instance runs the queries: it holds the leader lock, or there is
 * none (postgres.leader_lock off). */
bool sg__pg_is_polling(const sg_pg_t *pg);
/* Connected: every query (and the lock query) is due at now_ms. */
void sg__pg_sched_all_due(sg_pg_t *pg, uint64_t now_ms);
/* The tick: queues what is due at now_ms (a refresh whose last run is still
 * pending is skipped and counted). */
void sg__pg_sched_due(sg_pg_t *pg, uint64_t now_ms);
/* When the next query falls due (loop ms) into *due_ms; false when none is
 * scheduled. */
bool sg__pg_sched_next_due(sg_pg_t *pg, uint64_t *due_ms);
/* Takes the next queued query as pg->running, with its SQL and parameters
 * (params has room for 2); NULL when one runs already or none waits. */
pg_query_t *sg__pg_sched_take(sg_pg_t *pg, const char **sql, const char *params[2], int *n_params);
/* One result of pg->running. */
void sg__pg_sched_result(sg_pg_t *pg, struct pg_result *r);
/* pg->running has no more results: counts, health, another batch queued.
 * True when the tick must be armed again (the lock query answered). */
bool sg__pg_sched_done(sg_pg_t *pg);
/* pg->running got no answer within its deadline (counted as an error and a
 * timeout; the caller drops the connection). */
void sg__pg_sched_no_answer(sg_pg_t *pg);
/* The connection dropped: nothing runs or waits, and the role is unknown
 * again (a session lock ends with its session). */
void sg__pg_sched_reset(sg_pg_t *pg);

#endif /* SG_CTL_PG_INT_H */
