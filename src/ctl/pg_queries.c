/* The poller's query set: the reference-schema defaults, the configured
 * queries, the transition histogram, and the bucket bounds
 * (docs/postgres.md). */
#include "ctl/pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- defaults ------------------------------------------------------------ */

static const char *const ticket_states[] = {"open",    "queued", "in_progress", "review",
                                            "blocked", "done",   "failed",      "cancelled"};
static const char *const final_states[] = {"done", "failed", "cancelled"};
static const char *const stuck_states[] = {"in_progress"};
static const char *const lbl_state[] = {"state"};
static const char *const lbl_status[] = {"status"};
static const char *const lbl_breaker[] = {"agent", "project"};

static const double default_tr_bounds[] = {1,    5,    15,    30,    60,    300,    900,   1800,
                                           3600, 7200, 14400, 28800, 86400, 259200, 604800};
static const double default_db_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static const char transitions_sql[] =
    "SELECT e.id, COALESCE(e.from_state, p.to_state) AS from_state, e.to_state, "
    "EXTRACT(EPOCH FROM (e.created_at - p.created_at))::float8 AS seconds "
    "FROM ticket_events e "
    "LEFT JOIN LATERAL (SELECT q.created_at, q.to_state FROM ticket_events q "
    "WHERE q.ticket_id = e.ticket_id AND q.id < e.id ORDER BY q.id DESC LIMIT 1) p ON true "
    "WHERE e.id > $1::bigint ORDER BY e.id LIMIT $2::int";
static const char transitions_start_sql[] = "SELECT COALESCE(max(id), 0) FROM ticket_events";
#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)
/* Session-level: held until this connection ends, never waited for. */
static const char lock_sql[] = "SELECT pg_try_advisory_lock(" PG_STR(SG_PG_LEADER_LOCK_KEY) ")";

static const char *const builtin_names[SG_PG_BUILTIN__COUNT] = {
    [SG_PG_Q_TICKETS_TOTAL] = "swarm_tickets_total",
    [SG_PG_Q_TICKETS_STUCK] = "swarm_tickets_stuck",
    [SG_PG_Q_TICKETS_PROCESSED] = "swarm_tickets_processed_total",
    [SG_PG_Q_BREAKER_STATE] = "swarm_circuit_breaker_state",
    [SG_PG_Q_BREAKER_CHANGED] = "swarm_circuit_breaker_state_changed_timestamp_seconds",
    [SG_PG_Q_VM_ACTIVE] = "swarm_vm_active",
    [SG_PG_Q_VM_MAX] = "swarm_vm_max",
    [SG_PG_Q_TRANSITIONS] = "swarm_state_transition_duration_seconds",
};

const char *sg_pg_builtin_name(sg_pg_builtin_t id)
{
    return (unsigned)id < SG_PG_BUILTIN__COUNT ? builtin_names[id] : "?";
}

int sg__pg_builtin_id(const char *name)
{
    for (int i = 0; i < SG_PG_BUILTIN__COUNT; i++)
        if (name && !strcmp(name, builtin_names[i]))
            return i;
    return -1;
}

const char *sg__pg_first_sql(const sg_pg_t *pg, const pg_query_t *q)
{
    return q->kind == PG_Q_TRANSITIONS && !pg->has_cursor ? pg->transitions_start_sql : q->sql;
}

/* ---- snapshots and histograms -------------------------------------------- */

void sg__pg_snap_free(pg_snap_t *s, size_t n_labels)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n * n_labels; i++)
        free(s->label_values[i]);
    free(s->label_values);
    free(s->values);
    free(s);
}

void sg__pg_hist_observe(pg_hist_t *h, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
}

int sg__pg_hist_init(pg_hist_t *h, size_t n_bounds)
{
    h->counts = calloc(n_bounds + 1, sizeof(uint64_t));
    h->sum = 0;
    return h->counts ? 0 : -1;
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

static int add_query(sg_pg_t *pg, size_t *i, const sg_pg_query_conf_t *c, char *err, size_t errlen)
{
    pg_query_t *q = &pg->queries[(*i)++];
    memset(q, 0, sizeof(*q));
    if (!is_valid_name(c->name))
        return sg__pg_fail_msg(err, errlen, "postgres.queries: \"%s\" is not a valid metric name",
                               c->name ? c->name : "");
    if (!c->sql || !*c->sql)
        return sg__pg_fail_msg(err, errlen, "postgres.queries.%s: sql is empty", c->name);
    if (c->type != SG_METRIC_GAUGE && c->type != SG_METRIC_COUNTER)
        return sg__pg_fail_msg(err, errlen, "postgres.queries.%s: type must be gauge or counter", c->name);
    if (c->n_labels > 16)
        return sg__pg_fail_msg(err, errlen, "postgres.queries.%s: at most 16 labels", c->name);
    for (size_t j = 0; j < c->n_labels; j++)
        if (!is_valid_name(c->labels[j]) || strchr(c->labels[j], ':'))
            return sg__pg_fail_msg(err, errlen, "postgres.queries.%s: \"%s\" is not a valid label name", c->name,
                                   c->labels[j]);
    q->kind = PG_Q_SERIES;
    q->builtin = sg__pg_builtin_id(c->name);
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
        return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
    for (size_t j = 0; j < c->n_labels; j++)
        if (!(q->labels[j] = sg_arena_strdup(&pg->arena, c->labels[j])))
            return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
    for (size_t z = 0; z < c->n_zero_fill; z++) {
        zf[z].label = sg_arena_strdup(&pg->arena, c->zero_fill[z].label);
        zf[z].n_values = c->zero_fill[z].n_values;
        zf[z].values = sg_arena_zalloc(&pg->arena, (zf[z].n_values + 1) * sizeof(char *));
        if (!zf[z].label || !zf[z].values)
            return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
        for (size_t k = 0; k < zf[z].n_values; k++)
            if (!(zf[z].values[k] = sg_arena_strdup(&pg->arena, c->zero_fill[z].values[k])))
                return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
    }
    q->zero_fill = zf;
    q->n_zero_fill = c->n_zero_fill;
    if (sg__pg_hist_init(&q->duration, pg->n_db_bounds) != 0)
        return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
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

int sg__pg_setup(sg_pg_t *pg, const sg_pg_conf_t *conf, const sg_metrics_conf_t *mconf, char *err, size_t errlen)
{
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
        sg__pg_fail_msg(err, errlen, "postgres: out of memory");
        return -1;
    }
    if (sg__pg_build_params(pg, conf->conninfo, err, errlen) != 0)
        return -1;

    pg->leader_lock = conf->leader_lock;
    pg->lock_q.kind = PG_Q_LOCK;
    pg->lock_q.builtin = -1;
    pg->lock_q.name = pg->lock_q.label = "leader_lock";
    pg->lock_q.sql = lock_sql;
    pg->lock_q.interval_ms = pg->interval_ms;

    /* Queries: the defaults for the reference schema (each replaced by a
     * configured query of the same name, or switched off by one with
     * enabled: false), then the operator's own. */
    size_t n_def = conf->default_queries ? SG_PG_Q_TRANSITIONS : 0;
    size_t n_all = n_def + conf->n_queries + (conf->transitions.enabled ? 1 : 0);
    pg->queries = sg_arena_zalloc(&pg->arena, (n_all + 1) * sizeof(pg_query_t));
    pg->n_query_slots = n_all;
    if (!pg->queries)
        return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
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
        const sg_pg_query_conf_t defs[SG_PG_Q_TRANSITIONS] = {
            [SG_PG_Q_TICKETS_TOTAL] = {.name = "swarm_tickets_total",
                                       .help = "Tickets by state.",
                                       .type = SG_METRIC_GAUGE,
                                       .sql = "SELECT state, count(*)::float8 AS value FROM tickets "
                                              "GROUP BY state ORDER BY state",
                                       .labels = (const char **)lbl_state,
                                       .n_labels = 1,
                                       .zero_fill = &zf_states,
                                       .n_zero_fill = 1},
            [SG_PG_Q_TICKETS_STUCK] = {.name = "swarm_tickets_stuck",
                                       .help = "Tickets in a state longer than its limit "
                                               "(in_progress: postgres.stuck_after).",
                                       .type = SG_METRIC_GAUGE,
                                       .sql = stuck_sql,
                                       .labels = (const char **)lbl_state,
                                       .n_labels = 1,
                                       .zero_fill = &zf_stuck,
                                       .n_zero_fill = 1},
            /* Transitions into a final state in the append-only event log:
             * reopening a ticket never lowers it (docs/postgres.md). */
            [SG_PG_Q_TICKETS_PROCESSED] = {.name = "swarm_tickets_processed_total",
                                           .help = "Transitions of tickets into a final status (ticket_events).",
                                           .type = SG_METRIC_COUNTER,
                                           .sql = "SELECT to_state AS status, count(*)::float8 AS value "
                                                  "FROM ticket_events WHERE to_state IN ('done', 'failed', "
                                                  "'cancelled') GROUP BY to_state ORDER BY to_state",
                                           .labels = (const char **)lbl_status,
                                           .n_labels = 1,
                                           .zero_fill = &zf_final,
                                           .n_zero_fill = 1},
            [SG_PG_Q_BREAKER_STATE] = {.name = "swarm_circuit_breaker_state",
                                       .help = "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                                       .type = SG_METRIC_GAUGE,
                                       .sql = "SELECT agent, project, CASE state WHEN 'closed' THEN 0 WHEN 'open' "
                                              "THEN 1 WHEN 'half_open' THEN 2 END::float8 AS value "
                                              "FROM circuit_breakers ORDER BY agent, project",
                                       .labels = (const char **)lbl_breaker,
                                       .n_labels = 2},
            /* The database's clock: how long a breaker has been open does
             * not depend on when swarmgate or Prometheus started. */
            [SG_PG_Q_BREAKER_CHANGED] = {.name = "swarm_circuit_breaker_state_changed_timestamp_seconds",
                                         .help = "Unix time of the breaker's last state change (database clock).",
                                         .type = SG_METRIC_GAUGE,
                                         .sql = "SELECT agent, project, EXTRACT(EPOCH FROM changed_at)::float8 AS "
                                                "value FROM circuit_breakers ORDER BY agent, project",
                                         .labels = (const char **)lbl_breaker,
                                         .n_labels = 2},
            [SG_PG_Q_VM_ACTIVE] = {.name = "swarm_vm_active",
                                   .help = "VMs counting against the pool (provisioning, idle, busy, draining).",
                                   .type = SG_METRIC_GAUGE,
                                   .sql = "SELECT count(*)::float8 AS value FROM vms "
                                          "WHERE state IN ('provisioning', 'idle', 'busy', 'draining')"},
            /* No pool row: no series (an unknown maximum is not 0). */
            [SG_PG_Q_VM_MAX] = {.name = "swarm_vm_max",
                                .help = "Size of the VM pool (absent when unknown).",
                                .type = SG_METRIC_GAUGE,
                                .sql = "SELECT max_size::float8 AS value FROM vm_pool WHERE id = 1"},
        };
        for (size_t d = 0; d < SG_ARRAY_SIZE(defs); d++) {
            const sg_pg_query_conf_t *use = &defs[d];
            for (size_t c = 0; c < conf->n_queries; c++)
                if (conf->queries[c].name && !strcmp(conf->queries[c].name, defs[d].name))
                    use = &conf->queries[c];
            if (use->is_disabled)
                continue;
            if (add_query(pg, &i, use, err, errlen) != 0)
                return -1;
        }
    }
    for (size_t c = 0; c < conf->n_queries; c++) {
        const char *name = conf->queries[c].name ? conf->queries[c].name : "";
        if (conf->default_queries && sg__pg_builtin_id(name) >= 0 && sg__pg_builtin_id(name) < SG_PG_Q_TRANSITIONS)
            continue; /* replaced a default above */
        if (conf->queries[c].is_disabled)
            continue;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(pg->queries[j].label, name))
                return sg__pg_fail_msg(err, errlen, "postgres.queries: %s is defined twice", name);
        if (add_query(pg, &i, &conf->queries[c], err, errlen) != 0)
            return -1;
    }
    if (conf->transitions.enabled) {
        pg_query_t *q = &pg->queries[i++];
        q->kind = PG_Q_TRANSITIONS;
        q->builtin = SG_PG_Q_TRANSITIONS;
        q->name = "swarm_state_transition_duration_seconds";
        q->label = "swarm_state_transition_duration_seconds";
        q->help = "Time between a ticket's consecutive state events.";
        q->type = SG_METRIC_HISTOGRAM;
        q->sql = sg_arena_strdup(&pg->arena, conf->transitions.sql ? conf->transitions.sql : transitions_sql);
        pg->transitions_start_sql = sg_arena_strdup(
            &pg->arena, conf->transitions_start_sql ? conf->transitions_start_sql : transitions_start_sql);
        q->interval_ms = pg->interval_ms;
        if (!q->sql || !pg->transitions_start_sql || sg__pg_hist_init(&q->duration, pg->n_db_bounds) != 0)
            return sg__pg_fail_msg(err, errlen, "postgres: out of memory");
        pg->transitions = q;
    }
    pg->n_queries = i;
    return 0;
}

void sg__pg_free_queries(sg_pg_t *pg)
{
    for (size_t j = 0; pg->queries && j < pg->n_query_slots; j++) {
        sg__pg_snap_free(pg->queries[j].snap, pg->queries[j].n_labels);
        pg->queries[j].snap = NULL;
        free(pg->queries[j].duration.counts);
        pg->queries[j].duration.counts = NULL;
    }
}
