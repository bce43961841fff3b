/* The Postgres poller against a real server (support/pg_harness) loaded with
 * the reference schema and sample data, on a private loop. The poller's
 * output is checked through a recording sg_expose_t implementation below:
 * the tests see exactly the values the poller hands to the renderer. */
#include "sg/pg.h"

#include "sg/expose.h"
#include "support/pg_harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading the rendered exposition back ----------------------------------
 * The poller renders through the real writer (Prometheus text 0.0.4); the
 * test parses that text back into samples, unescaping label values, so the
 * values checked are exactly what a scrape would show. */

typedef struct rec_item {
    char name[128];   /* full sample name: name + suffix */
    char labels[512]; /* "k=v,k=v", values unescaped */
    double value;
} rec_item_t;

typedef struct rec {
    rec_item_t items[1024];
    size_t n;
    char types[64][160]; /* "name type" from the TYPE lines */
    size_t n_types;
    sg_expose_t x;
} rec_t;

/* No Criterion calls in here: with --full-stats every assertion, passing or
 * not, is a round trip to the runner, and this runs every 10 ms inside the
 * loop. Problems are recorded in `bad` and asserted once per wait. */
static char bad[256];

#define BAD(...)                                                                                                       \
    do {                                                                                                               \
        if (!bad[0])                                                                                                   \
            snprintf(bad, sizeof(bad), __VA_ARGS__);                                                                   \
        return;                                                                                                        \
    } while (0)

static void rec_parse(rec_t *r)
{
    r->n = r->n_types = 0;
    const char *p = r->x.data, *end = r->x.data + r->x.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            BAD("unterminated line in the exposition");
        if (!strncmp(p, "# TYPE ", 7)) {
            if (r->n_types == 64)
                BAD("too many families");
            snprintf(r->types[r->n_types++], sizeof(r->types[0]), "%.*s", (int)(eol - p - 7), p + 7);
        } else if (*p != '#') {
            if (r->n == 1024)
                BAD("too many samples");
            rec_item_t *it = &r->items[r->n++];
            size_t o = 0;
            while (p < eol && *p != '{' && *p != ' ' && o < sizeof(it->name) - 1)
                it->name[o++] = *p++;
            it->name[o] = 0;
            o = 0;
            if (*p == '{') {
                p++;
                while (p < eol && *p != '}') {
                    if (*p == ',')
                        p++;
                    if (o)
                        it->labels[o++] = ',';
                    while (p < eol && *p != '=' && o < sizeof(it->labels) - 4)
                        it->labels[o++] = *p++;
                    it->labels[o++] = '=';
                    p++;
                    if (*p != '"')
                        BAD("unquoted label value in %s", it->name);
                    p++;
                    while (p < eol && *p != '"' && o < sizeof(it->labels) - 4) {
                        char c = *p++;
                        if (c == '\\') {
                            c = *p++;
                            if (c == 'n')
                                c = '\n';
                        }
                        it->labels[o++] = c;
                    }
                    p++;
                }
                p++;
            }
            it->labels[o] = 0;
            if (*p != ' ')
                BAD("bad sample line for %s", it->name);
            char *vend;
            it->value = strtod(p + 1, &vend);
            if (vend != eol)
                BAD("bad value for %s", it->name);
        }
        p = eol + 1;
    }
}

static const rec_item_t *rec_find(const rec_t *r, const char *name, const char *labels)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->items[i].name, name) && !strcmp(r->items[i].labels, labels))
            return &r->items[i];
    return NULL;
}

static size_t rec_count(const rec_t *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += !strcmp(r->items[i].name, name);
    return n;
}

static bool rec_has_type(const rec_t *r, const char *name_type)
{
    for (size_t i = 0; i < r->n_types; i++)
        if (!strcmp(r->types[i], name_type))
            return true;
    return false;
}

/* ---- fixture ------------------------------------------------------------- */

static sg_pg_harness_t *h;
static uv_loop_t loop;
static uv_timer_t check_timer;
static sg_pg_t *poller;
static sg_pg_t *poller2; /* a second instance (leader_lock) */
static rec_t *rec;
static sg_pg_conf_t conf;
static sg_metrics_conf_t mconf;
static char logbuf[1 << 16];
static size_t loglen;
static uint64_t last_fire_ns, max_gap_ns;

static void on_log(void *arg, sg_log_level_t level, const char *msg)
{
    (void)arg;
    (void)level;
    if (strchr(msg, '\n') && !bad[0])
        snprintf(bad, sizeof(bad), "log line with a newline: %.100s", msg);
    loglen += (size_t)snprintf(logbuf + loglen, loglen < sizeof(logbuf) ? sizeof(logbuf) - loglen : 0, "%s\n", msg);
    if (loglen >= sizeof(logbuf))
        loglen = sizeof(logbuf) / 2; /* keep going; tests look at recent lines */
}

static void setup(void)
{
    h = sg_pgh_start_reference();
    cr_assert_not_null(h, "no Postgres");
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(uv_timer_init(&loop, &check_timer), 0);
    rec = calloc(1, sizeof(*rec));
    sg_expose_init(&rec->x, SG_EXPOSE_TEXT);
    memset(&conf, 0, sizeof(conf));
    memset(&mconf, 0, sizeof(mconf));
    conf.conninfo = sg_pgh_conninfo(h);
    conf.interval_ms = 200;
    conf.statement_timeout_ms = 2000;
    conf.connect_timeout_ms = 2000;
    conf.stale_after_ms = 60000;
    conf.stuck_after_ms = 3600000;
    conf.default_queries = true;
    conf.transitions.enabled = true;
    conf.transitions.batch = 1000;
    conf.reconnect_min_ms = 50;
    conf.reconnect_max_ms = 400;
    loglen = 0;
    logbuf[0] = 0;
    bad[0] = 0;
}

static void on_close_noop(uv_handle_t *hd)
{
    (void)hd;
}

static void teardown(void)
{
    if (poller)
        sg_pg_stop(poller);
    poller = NULL;
    if (poller2)
        sg_pg_stop(poller2);
    poller2 = NULL;
    uv_close((uv_handle_t *)&check_timer, on_close_noop);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open on the loop");
    sg_expose_destroy(&rec->x);
    free(rec);
    sg_pgh_destroy(h);
    h = NULL;
}

static void start_pg(void)
{
    char err[512];
    poller = sg_pg_start(&loop, &conf, &mconf, on_log, NULL, err, sizeof(err));
    cr_assert_not_null(poller, "sg_pg_start: %s", err);
}

static void collect(void)
{
    sg_expose_reset(&rec->x, SG_EXPOSE_TEXT);
    sg_pg_collect(&rec->x, poller);
    if (sg_expose_finish(&rec->x) != 0 && !bad[0])
        snprintf(bad, sizeof(bad), "expose ran out of memory");
    rec_parse(rec);
}

typedef bool (*pred_fn)(void *arg);
static pred_fn cur_pred;
static void *cur_arg;
static bool pred_ok;
static uint64_t deadline_ns;

static void on_check(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    if (last_fire_ns && now - last_fire_ns > max_gap_ns)
        max_gap_ns = now - last_fire_ns;
    last_fire_ns = now;
    collect();
    if (cur_pred(cur_arg)) {
        pred_ok = true;
        uv_timer_stop(t);
        uv_stop(t->loop);
    } else if (now > deadline_ns) {
        uv_timer_stop(t);
        uv_stop(t->loop);
    }
}

/* Runs the loop until pred (checked every 10 ms on a fresh collect) holds,
 * or timeout_ms passes. Also measures the loop's largest stall. */
static bool wait_for(pred_fn pred, void *arg, uint64_t timeout_ms)
{
    cur_pred = pred;
    cur_arg = arg;
    pred_ok = false;
    last_fire_ns = 0;
    deadline_ns = uv_hrtime() + timeout_ms * 1000000u;
    uv_update_time(&loop);
    uv_timer_start(&check_timer, on_check, 0, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_str_empty(bad, "%s", bad);
    return pred_ok;
}

static double val(const char *name, const char *labels)
{
    const rec_item_t *it = rec_find(rec, name, labels);
    return it ? it->value : -1;
}

static bool has(const char *name, const char *labels)
{
    return rec_find(rec, name, labels) != NULL;
}

static bool p_has(void *arg)
{
    const char **nl = arg;
    return has(nl[0], nl[1]);
}

static bool p_up(void *arg)
{
    (void)arg;
    return val("swarm_db_up", "") == 1 && has("swarm_tickets_total", "state=open") && has("swarm_vm_max", "");
}

static void wait_up(void)
{
    cr_assert(wait_for(p_up, NULL, 10000), "poller never reported values; log:\n%s", logbuf);
}

static void sql(const char *s)
{
    cr_assert_eq(sg_pgh_exec(h, s), 0, "%s", s);
}

static sg_pg_stats_t stats(void)
{
    sg_pg_stats_t s;
    sg_pg_get_stats(poller, &s);
    return s;
}

/* ---- values -------------------------------------------------------------- */

Test(pg, gauges_match_sample_data, .init = setup, .fini = teardown, .timeout = 60)
{
    start_pg();
    wait_up();
    static const struct {
        const char *state;
        double n;
    } want[] = {{"open", 3},    {"queued", 2}, {"in_progress", 4}, {"review", 1},
                {"blocked", 1}, {"done", 5},   {"failed", 2},      {"cancelled", 1}};
    char l[64];
    for (size_t i = 0; i < SG_ARRAY_SIZE(want); i++) {
        snprintf(l, sizeof(l), "state=%s", want[i].state);
        cr_expect_eq(val("swarm_tickets_total", l), want[i].n, "%s: %g", l, val("swarm_tickets_total", l));
    }
    cr_expect_eq(rec_count(rec, "swarm_tickets_total"), 8);
    cr_expect_eq(val("swarm_tickets_stuck", "state=in_progress"), 2);
    cr_expect_eq(rec_count(rec, "swarm_tickets_stuck"), 1);
    cr_expect_eq(val("swarm_tickets_processed_total", "status=done"), 5);
    cr_expect_eq(val("swarm_tickets_processed_total", "status=failed"), 2);
    cr_expect_eq(val("swarm_tickets_processed_total", "status=cancelled"), 1);
    cr_expect_eq(val("swarm_circuit_breaker_state", "agent=coder-2,project=platform"), 1);
    cr_expect_eq(val("swarm_circuit_breaker_state", "agent=coder-2,project=security"), 2);
    cr_expect_eq(val("swarm_circuit_breaker_state", "agent=coder-1,project=platform"), 0);
    cr_expect_eq(rec_count(rec, "swarm_circuit_breaker_state"), 5);
    cr_expect_eq(val("swarm_vm_active", ""), 5);
    cr_expect_eq(val("swarm_vm_max", ""), 8);
    cr_expect_gt(val("swarm_db_last_success_timestamp_seconds", ""), 1.6e9);
    cr_expect_geq(val("swarm_db_query_duration_seconds_count", "query=swarm_tickets_total"), 1);
    cr_expect_eq(val("swarm_db_query_errors_total", "query=swarm_tickets_total"), 0);
    cr_expect_eq(val("swarm_db_connect_errors_total", ""), 0);
    cr_expect(sg_pg_is_up(poller));
    /* the family types handed to the renderer */
    cr_expect(rec_has_type(rec, "swarm_tickets_processed_total counter"));
    cr_expect(rec_has_type(rec, "swarm_tickets_total gauge"));
    cr_expect(rec_has_type(rec, "swarm_db_query_errors_total counter"));
    cr_expect(rec_has_type(rec, "swarm_state_transition_duration_seconds histogram"));
    cr_expect(rec_has_type(rec, "swarm_db_query_duration_seconds histogram"));
    /* promtool accepts the output; its only complaint may be the platform's
     * gauge named *_total (DESIGN.md section 5) */
    char path[] = "/tmp/sg-pg-metrics-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, rec->x.data, rec->x.len), (ssize_t)rec->x.len);
    close(fd);
    char cmd[256], out[4096];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *pp = popen(cmd, "r");
    cr_assert_not_null(pp);
    size_t n = fread(out, 1, sizeof(out) - 1, pp);
    out[n] = 0;
    pclose(pp);
    unlink(path);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        cr_expect_neq(strstr(line, "swarm_tickets_total"), NULL, "promtool: %s", line);
}

static bool p_changed(void *arg)
{
    (void)arg;
    return val("swarm_tickets_total", "state=open") == 5 && val("swarm_tickets_total", "state=done") == 6 &&
           val("swarm_tickets_total", "state=in_progress") == 3 &&
           val("swarm_tickets_stuck", "state=in_progress") == 1 &&
           !has("swarm_circuit_breaker_state", "agent=coder-2,project=platform") && val("swarm_vm_active", "") == 6;
}

Test(pg, values_follow_inserts_updates_and_deletes, .init = setup, .fini = teardown, .timeout = 60)
{
    start_pg();
    wait_up();
    sql("INSERT INTO tickets (title) VALUES ('new one'), ('new two');"
        "UPDATE tickets SET state = 'done' WHERE title = 'sample: migrate invoices table';"
        "DELETE FROM circuit_breakers WHERE agent = 'coder-2' AND project = 'platform';"
        "INSERT INTO vms (id, state) VALUES ('vm-07', 'busy')");
    uint64_t t0 = uv_hrtime();
    cr_assert(wait_for(p_changed, NULL, 5000), "values did not follow; open=%g done=%g",
              val("swarm_tickets_total", "state=open"), val("swarm_tickets_total", "state=done"));
    /* one interval (200 ms) plus the round's own time */
    cr_expect_lt((uv_hrtime() - t0) / 1000000u, 1500);
    cr_expect_eq(rec_count(rec, "swarm_circuit_breaker_state"), 4);
}

static bool p_all_zero(void *arg)
{
    (void)arg;
    /* Every query of the check below has reported (its own refresh may come
     * after the tickets'; val() is -1 for a series not there yet). */
    return val("swarm_tickets_total", "state=open") == 0 && val("swarm_tickets_total", "state=done") == 0 &&
           has("swarm_tickets_stuck", "state=in_progress") && has("swarm_tickets_processed_total", "status=done") &&
           has("swarm_tickets_processed_total", "status=failed") &&
           has("swarm_tickets_processed_total", "status=cancelled") && val("swarm_vm_max", "") >= 0;
}

Test(pg, zero_fill_reports_every_state, .init = setup, .fini = teardown, .timeout = 60)
{
    sql("DELETE FROM tickets");
    start_pg();
    cr_assert(wait_for(p_all_zero, NULL, 10000), "log:\n%s", logbuf);
    static const char *const states[] = {"open",    "queued", "in_progress", "review",
                                         "blocked", "done",   "failed",      "cancelled"};
    char l[64];
    for (size_t i = 0; i < SG_ARRAY_SIZE(states); i++) {
        snprintf(l, sizeof(l), "state=%s", states[i]);
        cr_expect_eq(val("swarm_tickets_total", l), 0, "%s", l);
    }
    cr_expect_eq(val("swarm_tickets_stuck", "state=in_progress"), 0);
    cr_expect_eq(val("swarm_tickets_processed_total", "status=done"), 0, "%g",
                 val("swarm_tickets_processed_total", "status=done"));
    cr_expect_eq(val("swarm_tickets_processed_total", "status=failed"), 0, "%g",
                 val("swarm_tickets_processed_total", "status=failed"));
    cr_expect_eq(val("swarm_tickets_processed_total", "status=cancelled"), 0, "%g",
                 val("swarm_tickets_processed_total", "status=cancelled"));
}

Test(pg, label_values_are_reported_exactly, .init = setup, .fini = teardown, .timeout = 60)
{
    const char *labels[] = {"name", "kind"};
    sg_pg_query_conf_t q = {.name = "swarm_test_odd_labels",
                            .help = "odd labels",
                            .type = SG_METRIC_GAUGE,
                            .sql = "SELECT E'quote\" back\\\\slash\\nnew line' AS name, NULL::text AS kind, 42 AS v "
                                   "UNION ALL SELECT 'ünï', 'x', 7",
                            .labels = labels,
                            .n_labels = 2,
                            .value = "v"};
    conf.queries = &q;
    conf.n_queries = 1;
    conf.default_queries = false;
    start_pg();
    const char *want[] = {"swarm_test_odd_labels", "name=quote\" back\\slash\nnew line,kind="};
    cr_assert(wait_for(p_has, want, 10000), "log:\n%s", logbuf);
    cr_expect_eq(val(want[0], want[1]), 42);
    cr_expect_eq(val(want[0], "name=ünï,kind=x"), 7);
    cr_expect_eq(rec_count(rec, "swarm_tickets_total"), 0, "default queries are off");
}

/* ---- transitions ---------------------------------------------------------- */

static bool p_cursor(void *arg)
{
    (void)arg;
    /* start query + at least one fetch */
    return val("swarm_db_query_duration_seconds_count", "query=swarm_state_transition_duration_seconds") >= 2;
}

static bool p_n_transitions(void *arg)
{
    return stats().transitions >= *(uint64_t *)arg;
}

Test(pg, transition_histogram_counts_only_new_events, .init = setup, .fini = teardown, .timeout = 60)
{
    static double b[] = {10, 100, 1000};
    mconf.transition_buckets.bounds = b;
    mconf.transition_buckets.n = 3;
    start_pg();
    cr_assert(wait_for(p_cursor, NULL, 10000), "log:\n%s", logbuf);
    cr_expect_eq(rec_count(rec, "swarm_state_transition_duration_seconds_count"), 0, "sample history was back-filled");
    cr_expect_eq(stats().transitions, 0);
    /* open at t0, queued 30 s later, in_progress 600 s after that */
    sql("INSERT INTO tickets (title, created_at, updated_at, state_changed_at) VALUES "
        "('timed', now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour');"
        "UPDATE tickets SET state = 'queued', state_changed_at = now() - interval '1 hour' + interval '30 seconds' "
        "WHERE title = 'timed';"
        "UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '1 hour' + interval '630 "
        "seconds' "
        "WHERE title = 'timed'");
    uint64_t two = 2;
    cr_assert(wait_for(p_n_transitions, &two, 5000), "log:\n%s", logbuf);
    const char *tr = "swarm_state_transition_duration_seconds";
    char nm[128];
    snprintf(nm, sizeof(nm), "%s_bucket", tr);
    cr_expect_eq(val(nm, "from=open,to=queued,le=10"), 0);
    cr_expect_eq(val(nm, "from=open,to=queued,le=100"), 1, "30 s goes to le=100");
    cr_expect_eq(val(nm, "from=open,to=queued,le=1000"), 1);
    cr_expect_eq(val(nm, "from=open,to=queued,le=+Inf"), 1);
    cr_expect_eq(val(nm, "from=queued,to=in_progress,le=100"), 0);
    cr_expect_eq(val(nm, "from=queued,to=in_progress,le=1000"), 1, "600 s goes to le=1000");
    snprintf(nm, sizeof(nm), "%s_sum", tr);
    cr_expect_float_eq(val(nm, "from=open,to=queued"), 30, 1e-6);
    cr_expect_float_eq(val(nm, "from=queued,to=in_progress"), 600, 1e-6);
    snprintf(nm, sizeof(nm), "%s_count", tr);
    cr_expect_eq(val(nm, "from=open,to=queued"), 1);
    cr_expect_eq(val(nm, "from=queued,to=in_progress"), 1);
    cr_expect_eq(rec_count(rec, nm), 2);
    /* nothing counted twice on later polls */
    uint64_t more = 3;
    cr_expect_not(wait_for(p_n_transitions, &more, 800));
}

Test(pg, transition_batches_catch_up, .init = setup, .fini = teardown, .timeout = 60)
{
    conf.transitions.batch = 2;
    conf.interval_ms = 1500; /* 3 batches in one round, not one per interval */
    start_pg();
    cr_assert(wait_for(p_cursor, NULL, 10000), "log:\n%s", logbuf);
    sql("UPDATE tickets SET state = 'cancelled' WHERE state IN ('open', 'queued')"); /* 5 events */
    uint64_t five = 5;
    cr_assert(wait_for(p_n_transitions, &five, 2500), "only %llu transitions", (unsigned long long)stats().transitions);
    cr_expect_eq(val("swarm_state_transition_duration_seconds_count", "from=open,to=cancelled"), 3);
    cr_expect_eq(val("swarm_state_transition_duration_seconds_count", "from=queued,to=cancelled"), 2);
}

/* ---- failures ------------------------------------------------------------ */

static bool p_down(void *arg)
{
    (void)arg;
    return val("swarm_db_up", "") == 0 && !has("swarm_tickets_total", "state=open");
}

static bool p_connect_errors(void *arg)
{
    return stats().connect_errors >= *(uint64_t *)arg;
}

static bool p_connects(void *arg)
{
    return p_up(NULL) && stats().connects >= *(uint64_t *)arg;
}

Test(pg, postgres_restart_recovers_without_restarting_the_poller, .init = setup, .fini = teardown, .timeout = 90)
{
    conf.stale_after_ms = 600;
    start_pg();
    wait_up();
    cr_assert_eq(sg_pgh_stop(h), 0);
    cr_assert(wait_for(p_down, NULL, 5000), "db_up=%g", val("swarm_db_up", ""));
    cr_expect_not(sg_pg_is_up(poller));
    cr_expect_neq(strstr(sg_pg_last_error(poller), "postgres"), NULL);
    /* a few reconnect attempts fail while it is down */
    uint64_t more = stats().connect_errors + 2;
    cr_assert(wait_for(p_connect_errors, &more, 5000), "reconnects did not go on");
    cr_assert_eq(sg_pgh_restart(h), 0);
    sql("INSERT INTO tickets (title) VALUES ('after restart')");
    uint64_t two = 2;
    cr_assert(wait_for(p_connects, &two, 10000), "no recovery; log:\n%s", logbuf);
    cr_expect_eq(val("swarm_tickets_total", "state=open"), 4);
}

static bool p_timeout_and_connect_error(void *arg)
{
    (void)arg;
    sg_pg_stats_t s = stats();
    return s.query_timeouts >= 1 && s.connect_errors >= 1;
}

Test(pg, paused_postgres_hits_deadlines_and_never_blocks_the_loop, .init = setup, .fini = teardown, .timeout = 90)
{
    conf.statement_timeout_ms = 300;
    conf.connect_timeout_ms = 500;
    start_pg();
    wait_up();
    cr_assert_eq(sg_pgh_pause(h), 0);
    max_gap_ns = 0;
    bool ok = wait_for(p_timeout_and_connect_error, NULL, 15000);
    uint64_t gap_ms = max_gap_ns / 1000000u;
    cr_assert_eq(sg_pgh_resume(h), 0);
    cr_assert(ok, "no deadline hit; log:\n%s", logbuf);
    cr_expect_lt(gap_ms, 100, "the loop stalled %llums", (unsigned long long)gap_ms);
    cr_expect_neq(strstr(logbuf, "deadline"), NULL, "log:\n%s", logbuf);
    collect();
    double errs = 0;
    for (size_t i = 0; i < rec->n; i++)
        if (!strcmp(rec->items[i].name, "swarm_db_query_errors_total"))
            errs += rec->items[i].value;
    cr_expect_geq(errs, 1);
    cr_expect_geq(val("swarm_db_connect_errors_total", ""), 1);
    uint64_t two = 2;
    cr_assert(wait_for(p_connects, &two, 15000), "no recovery after resume; log:\n%s", logbuf);
}

static bool p_stmt_timeout(void *arg)
{
    (void)arg;
    return val("swarm_db_query_timeouts_total", "query=swarm_test_slow") >= 1;
}

Test(pg, statement_timeout_cancels_a_slow_query, .init = setup, .fini = teardown, .timeout = 60)
{
    sg_pg_query_conf_t q[] = {
        {.name = "swarm_test_slow", .help = "slow", .type = SG_METRIC_GAUGE, .sql = "SELECT pg_sleep(5), 1 AS value"},
        {.name = "swarm_test_fast", .help = "fast", .type = SG_METRIC_GAUGE, .sql = "SELECT 3 AS value"},
    };
    conf.queries = q;
    conf.n_queries = 2;
    conf.default_queries = false;
    conf.transitions.enabled = false;
    conf.statement_timeout_ms = 300;
    start_pg();
    uint64_t t0 = uv_hrtime();
    cr_assert(wait_for(p_stmt_timeout, NULL, 4000), "log:\n%s", logbuf);
    cr_expect_lt((uv_hrtime() - t0) / 1000000u, 3000);
    cr_expect_geq(val("swarm_db_query_errors_total", "query=swarm_test_slow"), 1);
    cr_expect_eq(val("swarm_db_query_errors_total", "query=swarm_test_fast"), 0);
    /* cancelled by the server: the connection stays up, the other query runs */
    cr_expect_eq(val("swarm_db_up", ""), 1);
    cr_expect_eq(stats().connects, 1);
    const char *fast[] = {"swarm_test_fast", ""};
    cr_assert(wait_for(p_has, fast, 3000));
    cr_expect_eq(val("swarm_test_fast", ""), 3);
    cr_expect_neq(strstr(logbuf, "swarm_test_slow"), NULL);
    cr_expect_neq(strstr(logbuf, "statement timeout"), NULL, "log:\n%s", logbuf);
}

static bool p_err(void *arg)
{
    char l[128];
    snprintf(l, sizeof(l), "query=%s", (const char *)arg);
    return val("swarm_db_query_errors_total", l) >= 1;
}

Test(pg, bad_sql_is_an_error_named_after_its_query, .init = setup, .fini = teardown, .timeout = 60)
{
    sg_pg_query_conf_t q = {
        .name = "swarm_test_broken", .help = "broken", .type = SG_METRIC_GAUGE, .sql = "SELEC 1 AS value"};
    conf.queries = &q;
    conf.n_queries = 1;
    start_pg();
    cr_assert(wait_for(p_err, "swarm_test_broken", 10000), "log:\n%s", logbuf);
    cr_expect_neq(strstr(logbuf, "query swarm_test_broken failed"), NULL, "log:\n%s", logbuf);
    cr_expect_neq(strstr(logbuf, "syntax error"), NULL);
    cr_expect_neq(strstr(sg_pg_last_error(poller), "swarm_test_broken"), NULL);
    wait_up(); /* the others are fine and the connection is up */
    cr_expect_eq(rec_count(rec, "swarm_test_broken"), 0);
    cr_expect_eq(val("swarm_db_query_errors_total", "query=swarm_tickets_total"), 0);
}

Test(pg, sessions_are_read_only, .init = setup, .fini = teardown, .timeout = 60)
{
    sg_pg_query_conf_t q = {.name = "swarm_test_writer",
                            .help = "writes",
                            .type = SG_METRIC_GAUGE,
                            .sql = "WITH w AS (UPDATE vm_pool SET max_size = 99 RETURNING max_size) "
                                   "SELECT max_size AS value FROM w"};
    conf.queries = &q;
    conf.n_queries = 1;
    start_pg();
    cr_assert(wait_for(p_err, "swarm_test_writer", 10000), "log:\n%s", logbuf);
    cr_expect_neq(strstr(logbuf, "read-only transaction"), NULL, "log:\n%s", logbuf);
    int64_t v = 0;
    cr_assert_eq(sg_pgh_query_i64(h, "SELECT max_size FROM vm_pool", &v), 0);
    cr_expect_eq(v, 8);
}

static bool p_skipped(void *arg)
{
    (void)arg;
    return val("swarm_db_refresh_skipped_total", "") >= 2;
}

Test(pg, overlapping_refresh_is_skipped_and_counted, .init = setup, .fini = teardown, .timeout = 60)
{
    sg_pg_query_conf_t q = {.name = "swarm_test_sleepy",
                            .help = "sleepy",
                            .type = SG_METRIC_GAUGE,
                            .sql = "SELECT pg_sleep(0.4), 1 AS value",
                            .interval_ms = 100};
    conf.queries = &q;
    conf.n_queries = 1;
    conf.default_queries = false;
    conf.transitions.enabled = false;
    start_pg();
    cr_assert(wait_for(p_skipped, NULL, 5000), "log:\n%s", logbuf);
    cr_expect_eq(val("swarm_db_query_errors_total", "query=swarm_test_sleepy"), 0);
    cr_expect_geq(stats().skipped, 2);
}

static bool p_polls(void *arg)
{
    return sg_pg_is_poller(arg);
}

static bool p_follows(void *arg)
{
    (void)arg;
    return sg_pg_is_up(poller2) && strstr(logbuf, "another session holds the leader lock") != NULL;
}

static bool p_open_known(void *arg)
{
    (void)arg;
    return has("swarm_tickets_total", "state=open");
}

/* postgres.leader_lock: of two pollers on one database only the lock's
 * holder runs queries; the other exports no values, fails no query, and
 * takes over within an interval once the holder's session ends. */
Test(pg, leader_lock_lets_one_poller_run_and_hands_over, .init = setup, .fini = teardown, .timeout = 60)
{
    conf.leader_lock = true;
    conf.interval_ms = 300;
    start_pg();
    cr_assert(wait_for(p_polls, poller, 10000), "log:\n%s", logbuf);
    char err[512];
    poller2 = sg_pg_start(&loop, &conf, &mconf, on_log, NULL, err, sizeof(err));
    cr_assert_not_null(poller2, "%s", err);
    cr_assert(wait_for(p_follows, NULL, 10000), "log:\n%s", logbuf);
    cr_assert(wait_for(p_open_known, NULL, 5000), "the leader exports values");
    /* A few intervals: the follower still runs nothing but the lock query. */
    uint64_t until = uv_hrtime() + 1000000000u;
    cr_assert_not(wait_for(p_polls, poller2, 1000));
    cr_assert_geq(uv_hrtime(), until);
    sg_pg_stats_t st;
    sg_pg_get_stats(poller2, &st);
    cr_expect_eq(st.queries_ok, 0, "the follower ran %llu queries", (unsigned long long)st.queries_ok);
    cr_expect_eq(sg_pg_failing_builtins(poller2), 0);

    /* The leader stops (its session ends): the follower takes over. */
    sg_pg_stop(poller);
    poller = poller2;
    poller2 = NULL;
    uint64_t t0 = uv_hrtime();
    cr_assert(wait_for(p_polls, poller, 5000), "no take-over; log:\n%s", logbuf);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    cr_expect_leq(ms, conf.interval_ms + 2000, "take-over after %llu ms", (unsigned long long)ms);
    cr_assert(wait_for(p_open_known, NULL, 5000), "the new leader exports values; log:\n%s", logbuf);
}

Test(pg, password_never_appears_in_messages, .init = setup, .fini = teardown, .timeout = 60)
{
    /* An error whose text carries the password: Postgres echoes bad input. */
    char sqlbuf[256];
    snprintf(sqlbuf, sizeof(sqlbuf), "SELECT '%s'::int AS value", sg_pgh_password(h));
    sg_pg_query_conf_t q = {.name = "swarm_test_echo", .help = "echo", .type = SG_METRIC_GAUGE, .sql = sqlbuf};
    conf.queries = &q;
    conf.n_queries = 1;
    start_pg();
    cr_assert(wait_for(p_err, "swarm_test_echo", 10000), "log:\n%s", logbuf);
    cr_expect_neq(strstr(logbuf, "invalid input syntax"), NULL, "log:\n%s", logbuf);
    cr_expect_neq(strstr(logbuf, "****"), NULL);
    cr_expect_eq(strstr(logbuf, sg_pgh_password(h)), NULL, "password leaked:\n%s", logbuf);
    cr_expect_eq(strstr(sg_pg_last_error(poller), sg_pgh_password(h)), NULL);
}

Test(pg, wrong_password_fails_to_connect_and_is_counted, .init = setup, .fini = teardown, .timeout = 60)
{
    char ci[512];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%u dbname=swarm user=postgres password=Wr0ngSecret",
             (unsigned)sg_pgh_port(h));
    conf.conninfo = ci;
    start_pg();
    uint64_t one = 1;
    cr_assert(wait_for(p_connect_errors, &one, 5000), "log:\n%s", logbuf);
    cr_expect_geq(val("swarm_db_connect_errors_total", ""), 1);
    cr_expect_eq(val("swarm_db_up", ""), 0);
    cr_expect_neq(strstr(logbuf, "password authentication failed"), NULL, "log:\n%s", logbuf);
    cr_expect_eq(strstr(logbuf, "Wr0ngSecret"), NULL);
}

Test(pg, host_names_are_resolved_without_blocking, .init = setup, .fini = teardown, .timeout = 60)
{
    /* "localhost" may resolve to ::1 first; the server listens on 127.0.0.1
     * only, so libpq must move on to the next address (a new socket). */
    char ci[512];
    snprintf(ci, sizeof(ci), "host=localhost port=%u dbname=swarm user=postgres password=%s", (unsigned)sg_pgh_port(h),
             sg_pgh_password(h));
    conf.conninfo = ci;
    start_pg();
    wait_up();
    cr_expect_eq(val("swarm_vm_max", ""), 8);
}

Test(pg, unix_socket_and_uri_conninfo_work, .init = setup, .fini = teardown, .timeout = 60)
{
    conf.conninfo = sg_pgh_conninfo_unix(h);
    start_pg();
    wait_up();
    sg_pg_stop(poller);
    char uri[512];
    snprintf(uri, sizeof(uri), "postgresql://postgres:%s@127.0.0.1:%u/swarm?application_name=sgtest",
             sg_pgh_password(h), (unsigned)sg_pgh_port(h));
    conf.conninfo = uri;
    start_pg();
    wait_up();
    int64_t n = 0;
    cr_assert_eq(sg_pgh_query_i64(h, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sgtest'", &n), 0);
    cr_expect_eq(n, 1);
}

/* ---- configuration and masking (no server needed, but same fixture) ----- */

Test(pg, start_rejects_bad_config_without_leaking_the_password, .timeout = 10)
{
    uv_loop_t l;
    cr_assert_eq(uv_loop_init(&l), 0);
    sg_pg_conf_t c = {0};
    char err[256];
    cr_expect_null(sg_pg_start(&l, &c, NULL, NULL, NULL, err, sizeof(err)));
    cr_expect_neq(strstr(err, "conninfo"), NULL);
    c.conninfo = "host=127.0.0.1 password=hunter22 hunter33";
    cr_expect_null(sg_pg_start(&l, &c, NULL, NULL, NULL, err, sizeof(err)));
    cr_expect_eq(strstr(err, "hunter"), NULL, "%s", err);
    cr_expect_neq(strstr(err, "postgres.conninfo"), NULL, "%s", err);
    c.conninfo = "host=a.example,b.example";
    cr_expect_null(sg_pg_start(&l, &c, NULL, NULL, NULL, err, sizeof(err)));
    sg_pg_query_conf_t q = {.name = "bad name", .type = SG_METRIC_GAUGE, .sql = "SELECT 1 AS value"};
    c.conninfo = "host=127.0.0.1";
    c.queries = &q;
    c.n_queries = 1;
    cr_expect_null(sg_pg_start(&l, &c, NULL, NULL, NULL, err, sizeof(err)));
    cr_expect_neq(strstr(err, "bad name"), NULL, "%s", err);
    q.name = "swarm_ok";
    q.type = SG_METRIC_HISTOGRAM;
    cr_expect_null(sg_pg_start(&l, &c, NULL, NULL, NULL, err, sizeof(err)));
    cr_assert_eq(uv_loop_close(&l), 0);
}

/* Parameters cross into the test's process by value: arrays, not pointers. */
typedef struct {
    char in[80], out[80];
} mask_case_t;

ParameterizedTestParameters(pg, mask_conninfo)
{
    static mask_case_t cases[] = {
        {"host=db password=secret dbname=x", "host=db password=**** dbname=x"},
        {"password = 'a b\\' c' user=u", "password = **** user=u"},
        {"user=u password=p\\ q", "user=u password=****"},
        {"host=db", "host=db"},
        {"postgresql://u:secret@db:5432/x?sslmode=require", "postgresql://u:****@db:5432/x?sslmode=require"},
        {"postgres://u@db/x?password=secret&a=b", "postgres://u@db/x?password=****&a=b"},
        {"postgresql://u:p%40ss@db/x", "postgresql://u:****@db/x"},
        {"", ""},
    };
    return cr_make_param_array(mask_case_t, cases, SG_ARRAY_SIZE(cases));
}

ParameterizedTest(mask_case_t *c, pg, mask_conninfo, .timeout = 5)
{
    char out[256];
    size_t n = sg_pg_mask_conninfo(c->in, out, sizeof(out));
    cr_expect_str_eq(out, c->out);
    cr_expect_eq(n, strlen(c->out));
    char small[8];
    sg_pg_mask_conninfo(c->in, small, sizeof(small));
    cr_expect_lt(strlen(small), sizeof(small));
}

/* ---- staleness and the libpq environment --------------------------------- */

static bool p_tickets_gone(void *arg)
{
    (void)arg;
    return !has("swarm_tickets_total", "state=open");
}

/* stale_after: series whose last refresh is older than it are left out of
 * the scrape, even while the connection is still up (a frozen server: the
 * statement deadline, 2 s + grace, has not passed yet). */
Test(pg, stale_series_are_dropped_after_stale_after, .init = setup, .fini = teardown, .timeout = 60)
{
    conf.stale_after_ms = 1000; /* interval 200 ms */
    start_pg();
    wait_up();
    uint64_t t_pause = uv_hrtime();
    cr_assert_eq(sg_pgh_pause(h), 0);
    bool gone = wait_for(p_tickets_gone, NULL, 10000);
    uint64_t gone_ms = (uv_hrtime() - t_pause) / 1000000u;
    double up = val("swarm_db_up", "");
    cr_assert_eq(sg_pgh_resume(h), 0);
    cr_assert(gone, "tickets still reported %llu ms into the freeze; log:\n%s", (unsigned long long)gone_ms, logbuf);
    /* The last refresh ended at most an interval (and a query) before the
     * pause: not dropped before stale_after - interval, and dropped soon
     * after stale_after. */
    cr_assert_geq(gone_ms, conf.stale_after_ms - conf.interval_ms, "dropped %llu ms into the freeze",
                  (unsigned long long)gone_ms);
    cr_assert_lt(gone_ms, conf.stale_after_ms + 1000, "dropped %llu ms into the freeze", (unsigned long long)gone_ms);
    cr_assert_eq(up, 1, "dropped for staleness, not because the connection went down");
    /* Back with fresh values once the server answers again. */
    wait_up();
}

/* With no host or hostaddr in conninfo, libpq takes PGHOST (a name is
 * resolved by the poller, without blocking) or PGHOSTADDR. */
Test(pg, pghost_fills_a_missing_host, .init = setup, .fini = teardown, .timeout = 60)
{
    char ci[512];
    snprintf(ci, sizeof(ci), "port=%u dbname=swarm user=postgres password=%s", (unsigned)sg_pgh_port(h),
             sg_pgh_password(h));
    conf.conninfo = ci;
    /* Each Criterion test runs in its own process: the environment is ours. */
    unsetenv("PGHOSTADDR");
    cr_assert_eq(setenv("PGHOST", "localhost", 1), 0);
    start_pg();
    wait_up();
    cr_expect_eq(val("swarm_vm_max", ""), 8);
    sg_pg_stop(poller);
    poller = NULL;
    /* PGHOSTADDR wins over PGHOST's name, which is then never looked up
     * (it could not be: .invalid never resolves, RFC 6761). */
    cr_assert_eq(setenv("PGHOST", "no-such-host.invalid", 1), 0);
    cr_assert_eq(setenv("PGHOSTADDR", "127.0.0.1", 1), 0);
    start_pg();
    wait_up();
    cr_expect_eq(val("swarm_vm_max", ""), 8);
}
