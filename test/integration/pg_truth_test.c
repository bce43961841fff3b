/* Issue 16 (truthful observability) through the real binary and a real
 * PostgreSQL (test harness):
 *   - a schema that differs is loud: per-query health, one log line per
 *     change, readiness with postgres.required, --check-db naming what is
 *     missing, and the "your schema differs" configs of docs/postgres.md
 *     working against such a schema;
 *   - swarm_tickets_processed_total never goes down when a ticket reopens;
 *   - breaker state-change times come from the database, and an unknown
 *     VM pool size is an absent series, not 0;
 *   - postgres.leader_lock: one poller among instances, and a take-over
 *     within an interval when it dies. */
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/pg_harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_DIFFERS_DIR SG_SOURCE_DIR "/config/examples/schema-differs"

static sg_pg_harness_t *pg;
static us_server_t *up;
static sg_proc_t gw[2];

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (gw[i].dir[0]) {
            sg_proc_stop(&gw[i], 10000);
            sg_proc_cleanup(&gw[i]);
        }
    us_stop(up);
    up = NULL;
    sg_pgh_destroy(pg);
    pg = NULL;
}

TestSuite(pg_truth, .fini = teardown, .timeout = 120);

/* The tickets table of a platform that says `status`, and nothing else. */
static const char status_schema[] = "CREATE TABLE tickets (id bigserial PRIMARY KEY, title text NOT NULL, "
                                    "status text NOT NULL DEFAULT 'open', "
                                    "state_changed_at timestamptz NOT NULL DEFAULT now());"
                                    "INSERT INTO tickets (title) VALUES ('a'), ('b');";

/* The proxy part of every config here; `pg_yaml` is a whole `postgres:`
 * section. env: extra "K=V" entries or NULL. */
static void start_gw(sg_proc_t *p, const char *pg_yaml, const char *const *env)
{
    if (!up) {
        up = us_start("u1", false);
        cr_assert(up);
    }
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "workers: 1\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", flush_interval: 10ms}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"], connect_timeout: 300ms, response_timeout: 3s}}\n"
             "routes: [{name: all, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n"
             "%s",
             us_port(up), pg_yaml);
    if (sg_proc_start_env(p, yaml, env, 15000) != 0) {
        char *err = sg_proc_stderr(p);
        cr_assert_fail("gateway did not start:\n%s\nconfig:\n%s", err, yaml);
    }
}

/* One swarmgate polling `pg` with `opts` (", interval: 1s" ...) added to
 * the postgres section; returns its admin address. */
static const char *poll_db(sg_proc_t *p, const char *opts)
{
    char pgy[1024];
    snprintf(pgy, sizeof(pgy), "postgres: {conninfo: \"%s\"%s}\n", sg_pgh_conninfo(pg), opts);
    start_gw(p, pgy, NULL);
    return sg_proc_addr(p, "admin");
}

static char *scrape(const char *admin)
{
    char *text = obs_scrape_text(admin);
    cr_assert_not_null(text, "GET /metrics on %s", admin);
    return text;
}

static char *get_body(const char *admin, const char *path, int *status)
{
    hc_response_t r;
    cr_assert_eq(obs_get(admin, path, NULL, &r, 5000), HC_OK);
    *status = r.status;
    char *body = strdup(r.body);
    hc_response_free(&r);
    return body;
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool has_sample(const char *text, const char *prefix)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "\n%s", prefix);
    return strstr(text, needle) != NULL;
}

/* Writes a config (a proxy part, then pg_section) to dir/sg.yaml and runs
 * `swarmgate --check-config --check-db` on it; returns the exit code. */
static int check_db(const char *dir, const char *pg_section, char *out, size_t cap)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/sg.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
            "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"
            "routes: [{name: all, upstream: app}]\n%s",
            pg_section);
    fclose(f);
    const char *args[] = {"--check-config", "--check-db", path, NULL};
    return sg_proc_run(args, out, cap, 20000);
}

/* ---- item 1: a schema that differs is loud -------------------------------- */

Test(pg_truth, differing_schema_fails_queries_readiness_and_logs_once_per_change)
{
    pg = sg_pgh_start();
    cr_assert(pg);
    cr_assert_eq(sg_pgh_exec(pg, status_schema), 0);
    const char *admin = poll_db(&gw[0], ", interval: 1s, required: true");

    /* Connected, yet every built-in query fails: each says so. */
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, "swarm_db_query_up{query=\"swarm_tickets_total\"}", 0, 10000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin, "swarm_db_up", 1, 5000, &got));
    static const char *const builtins[] = {
        "swarm_tickets_total",
        "swarm_tickets_stuck",
        "swarm_tickets_processed_total",
        "swarm_circuit_breaker_state",
        "swarm_circuit_breaker_state_changed_timestamp_seconds",
        "swarm_vm_active",
        "swarm_vm_max",
        "swarm_state_transition_duration_seconds",
    };
    for (size_t i = 0; i < sizeof(builtins) / sizeof(*builtins); i++) {
        char series[160];
        snprintf(series, sizeof(series), "swarm_db_query_up{query=\"%s\"}", builtins[i]);
        cr_assert(obs_wait_metric_eq(admin, series, 0, 5000, &got), "%s = %g", series, got);
    }

    /* required: true makes the instance unready, naming each query (the
     * control thread mirrors the poller's state for readiness every
     * 250 ms: wait for it). */
    int status = 0;
    char *body = NULL;
    long long deadline = sgt_now_ms() + 5000;
    do {
        free(body);
        body = get_body(admin, "/health/ready", &status);
    } while (!strstr(body, "\"postgres:swarm_state_transition_duration_seconds\"") && sgt_now_ms() < deadline);
    cr_assert_eq(status, 503, "%s", body);
    for (size_t i = 0; i < sizeof(builtins) / sizeof(*builtins); i++) {
        char want[160];
        snprintf(want, sizeof(want), "\"postgres:%s\"", builtins[i]);
        cr_expect(strstr(body, want), "%s not in %s", want, body);
    }
    char *log = sg_proc_stderr(&gw[0]);
    cr_expect(strstr(body, "\"up\":true"), "the connection is fine: %s\n%s", body, log);
    free(log);
    free(body);
    cr_assert(obs_wait_status(admin, "/health/live", 200, 1000), "liveness is not readiness");

    /* Three more polls: still one log line per query, with libpq's words. */
    cr_assert(obs_wait_metric_ge(admin, "swarm_db_query_errors_total{query=\"swarm_tickets_total\"}", 4, 10000, &got),
              "%g", got);
    char *err = sg_proc_stderr(&gw[0]);
    cr_expect_eq(count_in(err, "query swarm_tickets_total failed"), 1, "%s", err);
    cr_expect_eq(count_in(err, "query swarm_circuit_breaker_state failed"), 1, "%s", err);
    cr_expect(strstr(err, "column \\\"state\\\" does not exist") || strstr(err, "column \"state\" does not exist"),
              "%s", err);
    cr_expect(strstr(err, "circuit_breakers") && strstr(err, "does not exist"), "%s", err);
    cr_expect(strstr(err, "ticket_events"), "%s", err);
    free(err);

    /* The platform moves to the reference schema: every query recovers,
     * says so once, and the instance is ready. */
    cr_assert_eq(sg_pgh_exec(pg, "DROP TABLE tickets"), 0);
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/schema.sql"), 0);
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/sample_data.sql"), 0);
    cr_assert(obs_wait_metric_eq(admin, "swarm_db_query_up{query=\"swarm_vm_max\"}", 1, 10000, &got), "%g", got);
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 10000));
    cr_assert(sg_proc_wait_stderr(&gw[0], "query swarm_tickets_total recovered", 1, 5000));
    err = sg_proc_stderr(&gw[0]);
    cr_expect_eq(count_in(err, "query swarm_tickets_total recovered"), 1, "%s", err);
    cr_expect_eq(count_in(err, "query swarm_tickets_total failed"), 1, "%s", err);
    free(err);
}

Test(pg_truth, check_db_names_each_missing_table_and_column)
{
    pg = sg_pgh_start();
    cr_assert(pg);
    cr_assert_eq(sg_pgh_exec(pg, status_schema), 0);
    char dir[256], yaml[1024], out[16384];
    cr_assert(obs_mkdtemp(dir, sizeof(dir)));
    snprintf(yaml, sizeof(yaml), "postgres: {conninfo: \"%s\", required: true}\n", sg_pgh_conninfo(pg));
    int rc = check_db(dir, yaml, out, sizeof(out));
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "query swarm_tickets_total: column \"state\" does not exist"), "%s", out);
    cr_expect(strstr(out, "query swarm_circuit_breaker_state: relation \"circuit_breakers\" does not exist"), "%s",
              out);
    cr_expect(strstr(out, "relation \"ticket_events\" does not exist"), "%s", out);
    cr_expect(strstr(out, "relation \"vms\" does not exist"), "%s", out);
    cr_expect(strstr(out, "relation \"vm_pool\" does not exist"), "%s", out);
    cr_expect(!strstr(out, sg_pgh_password(pg)), "the password is never printed:\n%s", out);

    /* A query that prepares but lacks its label column is named too. */
    snprintf(yaml, sizeof(yaml),
             "postgres:\n  conninfo: \"%s\"\n  default_queries: false\n  transitions: {enabled: false}\n"
             "  queries:\n    - {name: swarm_test_by_status, sql: \"SELECT status, count(*) AS value FROM tickets "
             "GROUP BY status\", labels: [state]}\n",
             sg_pgh_conninfo(pg));
    rc = check_db(dir, yaml, out, sizeof(out));
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "query swarm_test_by_status: no column \"state\" in its result"), "%s", out);

    /* The reference schema: every query prepares, exit 0. */
    cr_assert_eq(sg_pgh_exec(pg, "DROP TABLE tickets"), 0);
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/schema.sql"), 0);
    snprintf(yaml, sizeof(yaml), "postgres: {conninfo: \"%s\", required: true}\n", sg_pgh_conninfo(pg));
    rc = check_db(dir, yaml, out, sizeof(out));
    cr_expect_eq(rc, 0, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "postgres OK"), "%s", out);

    /* No database at all: 1 (cannot connect), not 2. */
    snprintf(yaml, sizeof(yaml),
             "postgres: {conninfo: \"host=127.0.0.1 port=%u dbname=x user=x\", connect_timeout: 1s}\n", gw_dead_port());
    rc = check_db(dir, yaml, out, sizeof(out));
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "cannot connect"), "%s", out);
    obs_rmdir(dir);
}

/* docs/postgres.md's worked example: the doc shows exactly the shipped
 * files, and that config runs clean against that schema. */
Test(pg_truth, schema_differs_example_from_the_docs_works)
{
    char *doc = obs_slurp(SG_SOURCE_DIR "/docs/postgres.md");
    char *cfg = obs_slurp(SCHEMA_DIFFERS_DIR "/postgres.yaml");
    char *sql = obs_slurp(SCHEMA_DIFFERS_DIR "/schema.sql");
    /* The doc quotes the postgres section from its first line on. */
    static char section[8192];
    const char *s = strstr(cfg, "postgres:\n");
    snprintf(section, sizeof(section), "%s", s ? s : "");
    bool shown = s && strstr(doc, section), names_sql = strstr(doc, "config/examples/schema-differs/schema.sql");
    bool have_sql = sql[0] != 0;
    free(doc);
    free(cfg);
    free(sql);
    cr_assert(have_sql && section[0]);
    cr_assert(shown, "docs/postgres.md does not show config/examples/schema-differs/postgres.yaml verbatim");
    cr_assert(names_sql);

    pg = sg_pgh_start();
    cr_assert(pg);
    cr_assert_eq(sg_pgh_exec_file(pg, SCHEMA_DIFFERS_DIR "/schema.sql"), 0);
    char env_dsn[512];
    snprintf(env_dsn, sizeof(env_dsn), "SWARM_PG_DSN=%s", sg_pgh_conninfo(pg));
    const char *env[] = {env_dsn, NULL};
    start_gw(&gw[0], section, env);
    const char *admin = sg_proc_addr(&gw[0], "admin");
    cr_assert(obs_wait_status(admin, "/health/ready", 200, 15000), "required: true and every query runs");
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_total{state=\"open\"}", 2, 5000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_total{state=\"done\"}", 3, 5000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_total{state=\"failed\"}", 0, 5000, &got), "zero-filled");
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_stuck{state=\"in_progress\"}", 1, 5000, &got), "%g", got);
    cr_assert(
        obs_wait_metric_eq(admin, "swarm_circuit_breaker_state{agent=\"coder-1\",project=\"billing\"}", 1, 5000, &got));
    cr_assert(obs_wait_metric_eq(admin, "swarm_vm_active", 2, 5000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin, "swarm_vm_max", 4, 5000, &got), "%g", got);
    char *text = scrape(admin);
    double since = 0;
    cr_assert(obs_metric(text,
                         "swarm_circuit_breaker_state_changed_timestamp_seconds{agent=\"coder-1\",project=\"billing\"}",
                         &since),
              "%s", text);
    int64_t want = 0;
    cr_assert_eq(sg_pgh_query_i64(pg,
                                  "SELECT EXTRACT(EPOCH FROM breaker_since)::bigint FROM ops.agent_health "
                                  "WHERE agent = 'coder-1'",
                                  &want),
                 0);
    cr_expect(since > (double)want - 1 && since < (double)want + 1, "%f vs %lld", since, (long long)want);
    cr_expect(!has_sample(text, "swarm_tickets_processed_total"), "switched off, not faked");
    cr_expect(!strstr(text, "swarm_db_query_up{query=\"swarm_tickets_processed_total\"}"));
    cr_expect(!strstr(text, "swarm_db_query_up{query=\"swarm_state_transition_duration_seconds\"}"));
    cr_expect(!strstr(text, "swarm_db_query_up{query=\"swarm_tickets_total\"} 0"), "%s", text);
    free(text);
    char *err = sg_proc_stderr(&gw[0]);
    cr_expect(!strstr(err, "postgres: query"), "no query failed:\n%s", err);
    free(err);

    /* --check-db agrees. */
    char dir[256], out[8192];
    cr_assert(obs_mkdtemp(dir, sizeof(dir)));
    setenv("SWARM_PG_DSN", sg_pgh_conninfo(pg), 1);
    int rc = check_db(dir, section, out, sizeof(out));
    unsetenv("SWARM_PG_DSN");
    cr_expect_eq(rc, 0, "exit %d:\n%s", rc, out);
    obs_rmdir(dir);
}

/* ---- item 2: a counter that only counts ----------------------------------- */

Test(pg_truth, reopening_a_ticket_never_lowers_processed_total)
{
    pg = sg_pgh_start_reference();
    cr_assert(pg);
    const char *admin = poll_db(&gw[0], ", interval: 1s");
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_processed_total{status=\"done\"}", 5, 10000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_total{state=\"done\"}", 5, 5000, &got), "%g", got);

    /* Reopen one: the gauge drops to 4 (a poll happened), the counter stays. */
    cr_assert_eq(sg_pgh_exec(pg, "UPDATE tickets SET state = 'in_progress' WHERE id = "
                                 "(SELECT min(id) FROM tickets WHERE state = 'done')"),
                 0);
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_total{state=\"done\"}", 4, 5000, &got), "%g", got);
    char *text = scrape(admin);
    cr_assert(obs_metric(text, "swarm_tickets_processed_total{status=\"done\"}", &got));
    cr_expect_eq(got, 5, "the counter went from 5 to %g on a reopen", got);
    free(text);

    /* Done again: a second transition into done counts. */
    cr_assert_eq(sg_pgh_exec(pg, "UPDATE tickets SET state = 'done' WHERE state = 'in_progress' AND id = "
                                 "(SELECT min(id) FROM tickets WHERE state = 'in_progress')"),
                 0);
    cr_assert(obs_wait_metric_eq(admin, "swarm_tickets_processed_total{status=\"done\"}", 6, 5000, &got), "%g", got);
}

/* ---- item 3: the database's clock, and an unknown maximum ----------------- */

Test(pg_truth, breaker_change_time_comes_from_the_database_and_unknown_vm_max_is_absent)
{
    pg = sg_pgh_start_reference();
    cr_assert(pg);
    const char *admin = poll_db(&gw[0], ", interval: 1s");
    double got = -1;
    cr_assert(obs_wait_metric_eq(admin, "swarm_vm_max", 8, 10000, &got), "%g", got);

    /* The sample breaker has been open for 25 minutes: the exported time
     * is the row's changed_at, whenever swarmgate started. */
    char agent[64] = "", project[64] = "";
    cr_assert_eq(sg_pgh_query_text(pg, "SELECT agent FROM circuit_breakers WHERE state = 'open'", agent, sizeof(agent)),
                 0);
    cr_assert_eq(
        sg_pgh_query_text(pg, "SELECT project FROM circuit_breakers WHERE state = 'open'", project, sizeof(project)),
        0);
    char text_ts[64] = "";
    cr_assert_eq(sg_pgh_query_text(pg,
                                   "SELECT EXTRACT(EPOCH FROM changed_at)::float8 FROM circuit_breakers "
                                   "WHERE state = 'open'",
                                   text_ts, sizeof(text_ts)),
                 0);
    char series[256];
    snprintf(series, sizeof(series),
             "swarm_circuit_breaker_state_changed_timestamp_seconds{agent=\"%s\",project=\"%s\"}", agent, project);
    cr_assert(obs_wait_metric_ge(admin, series, 1, 5000, &got), "%s", series);
    double want = strtod(text_ts, NULL);
    cr_expect(got > want - 0.001 && got < want + 0.001, "%f vs %f", got, want);
    int64_t age = 0;
    cr_assert_eq(sg_pgh_query_i64(pg,
                                  "SELECT EXTRACT(EPOCH FROM now() - changed_at)::bigint FROM circuit_breakers "
                                  "WHERE state = 'open'",
                                  &age),
                 0);
    cr_expect_geq(age, 24 * 60, "the sample breaker opened 25 minutes ago (%lld s)", (long long)age);

    /* The pool-size row goes: swarm_vm_max disappears, it is not 0. */
    cr_assert(obs_wait_metric_eq(admin, "swarm_vm_active", 5, 5000, &got), "%g", got);
    cr_assert_eq(sg_pgh_exec(pg, "DELETE FROM vm_pool"), 0);
    long long deadline = sgt_now_ms() + 5000;
    bool gone = false;
    while (!gone && sgt_now_ms() < deadline) {
        char *text = scrape(admin);
        gone = !has_sample(text, "swarm_vm_max ");
        cr_assert(has_sample(text, "swarm_vm_active 5"), "%s", text);
        free(text);
    }
    cr_expect(gone, "swarm_vm_max is still exported without a pool row");
    char *text = scrape(admin);
    cr_expect(strstr(text, "swarm_db_query_up{query=\"swarm_vm_max\"} 1"), "an empty result is not a failure");
    free(text);
}

/* ---- item 6: one poller for a fleet -------------------------------------- */

Test(pg_truth, leader_lock_one_poller_and_take_over_within_an_interval)
{
    pg = sg_pgh_start_reference();
    cr_assert(pg);
    const char *admin[2];
    admin[0] = poll_db(&gw[0], ", interval: 2s, required: true");
    cr_assert(sg_proc_wait_stderr(&gw[0], "leader lock taken", 1, 10000), "the first instance leads");
    admin[1] = poll_db(&gw[1], ", interval: 2s, required: true");
    cr_assert(sg_proc_wait_stderr(&gw[1], "another session holds the leader lock", 1, 10000));

    double got = -1;
    cr_assert(obs_wait_metric_eq(admin[0], "swarm_tickets_total{state=\"open\"}", 3, 5000, &got), "%g", got);
    cr_assert(obs_wait_metric_eq(admin[0], "swarm_db_poller_leader", 1, 5000, &got));
    cr_assert(obs_wait_metric_eq(admin[1], "swarm_db_poller_leader", 0, 5000, &got));
    /* Both ready: not leading is not a failure. */
    cr_assert(obs_wait_status(admin[0], "/health/ready", 200, 5000));
    cr_assert(obs_wait_status(admin[1], "/health/ready", 200, 5000));
    char *t1 = scrape(admin[1]);
    cr_expect(!has_sample(t1, "swarm_tickets_total{"), "the follower exports no ticket gauges:\n%s", t1);
    cr_expect(!has_sample(t1, "swarm_circuit_breaker_state{"));
    cr_expect(!has_sample(t1, "swarm_vm_active "));
    cr_expect(has_sample(t1, "swarm_db_up 1"));
    free(t1);
    int64_t holders = -1;
    cr_assert_eq(
        sg_pgh_query_i64(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", &holders), 0);
    cr_expect_eq(holders, 1);

    /* The leader dies without a goodbye: the other takes over within an
     * interval (2 s) plus 2 s. */
    cr_assert_eq(sg_proc_signal(&gw[0], SIGKILL), 0);
    long long t0 = sgt_now_ms();
    cr_assert(sg_proc_wait_exit(&gw[0], 5000));
    bool took = obs_wait_metric_eq(admin[1], "swarm_tickets_total{state=\"open\"}", 3, 4000, &got);
    long long ms = sgt_now_ms() - t0;
    cr_assert(took, "no take-over within %lld ms", ms);
    cr_expect_leq(ms, 4000, "take-over took %lld ms", ms);
    cr_assert(obs_wait_metric_eq(admin[1], "swarm_db_poller_leader", 1, 1000, &got));
    cr_assert(obs_wait_status(admin[1], "/health/ready", 200, 5000));
    sg_proc_cleanup(&gw[0]);
    memset(&gw[0], 0, sizeof(gw[0]));
}
