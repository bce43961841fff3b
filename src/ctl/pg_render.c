/* Renders the Postgres families at scrape time from what the poller
 * kept (never waits on the database). */
#include "ctl/pg_int.h"

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
    sg_expose_family(x, "swarm_db_query_up", "1 when the last run of the query succeeded, 0 when it failed.",
                     SG_METRIC_GAUGE);
    for (size_t i = 0; i < pg->n_queries; i++)
        if (pg->queries[i].has_run)
            sg_expose_sample(x, "swarm_db_query_up", "", qname, &pg->queries[i].label, 1, pg->queries[i].is_ok ? 1 : 0);
    sg_expose_family(x, "swarm_db_poller_leader",
                     "1 when this instance polls Postgres (holds postgres.leader_lock, or the lock is off).",
                     SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarm_db_poller_leader", "", NULL, NULL, 0, sg_pg_is_poller(pg) ? 1 : 0);
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
