/* Issue #16 P2-1 end to end, as `make demo` shows it: one trace id followed
 * through the real binary, the demo's platform stand-in (test/demo/
 * demo_upstream, libpq) and a real PostgreSQL with config/sql/schema.sql:
 * the access-log line, the ticket row (tickets.trace_id = the request's
 * X-Trace-Id), every ticket_events row of its state changes, the platform's
 * own log line, the exported span (OTLP/HTTP JSON, received by the demo
 * upstream) and the OpenMetrics exemplar of the request histogram.
 * Trace ids may be printed as a UUID or as the same 32 hex digits. */
#include "sg/common.h"
#include "support/clock.h"
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/pg_harness.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TID "5b0e6a8c-3c1d-4f2e-9a7b-1c2d3e4f5a6b"
#define TID_OTHER "0d6c1f3e-8a2b-4c5d-9e7f-6a5b4c3d2e1f"

static sg_pg_harness_t *pg;
static sg_proc_t gw;
static pid_t up_pid = -1;
static char dir[256], up_log[300], spans[300];

static void teardown(void)
{
    if (gw.dir[0]) {
        sg_proc_stop(&gw, 10000);
        sg_proc_cleanup(&gw);
    }
    if (up_pid > 0) {
        kill(up_pid, SIGTERM);
        waitpid(up_pid, NULL, 0);
        up_pid = -1;
    }
    sg_pgh_destroy(pg);
    pg = NULL;
    if (dir[0])
        obs_rmdir(dir);
}

TestSuite(demo_trace, .fini = teardown, .timeout = 120);

/* The upstream's log for a failure message (static: message arguments are evaluated on success too). */
static const char *up_log_text(void)
{
    static char text[16384];
    char *s = obs_slurp(up_log);
    snprintf(text, sizeof(text), "%s", s ? s : "");
    free(s);
    return text;
}

/* Starts demo_upstream on an ephemeral port; returns the port. */
static unsigned start_upstream(const char *conninfo)
{
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    snprintf(spans, sizeof(spans), "%s/spans.jsonl", dir);
    up_pid = fork();
    if (up_pid == 0) { /* no assertion in the child: it would talk to Criterion's runner */
        int fd = open(up_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(SG_DEMO_UPSTREAM, "demo_upstream", "0", "--pg", conninfo, "--spans", spans, (char *)NULL);
        _exit(127);
    }
    cr_assert(up_pid > 0);
    char *line = obs_wait_line(up_log, "listening on 127.0.0.1:", 10000);
    cr_assert(line, "demo_upstream did not start:\n%s", up_log_text());
    unsigned port = (unsigned)atoi(strstr(line, "127.0.0.1:") + 10);
    free(line);
    cr_assert(port > 0);
    return port;
}

/* A POST through swarmgate with the given trace id; returns the status, body into out. */
static int post(const char *path, const char *tid, const char *body, char *out, size_t cap)
{
    char req[2048];
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nHost: demo\r\nX-Trace-Id: %s\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             path, tid, strlen(body), body);
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "api"), req, &r, 10000), HC_OK, "POST %s", path);
    char got[80] = "";
    hc_header(&r, "X-Trace-Id", got, sizeof(got));
    cr_expect_str_eq(got, tid, "POST %s: X-Trace-Id back", path);
    snprintf(out, cap, "%s", r.body);
    int st = r.status;
    hc_response_free(&r);
    return st;
}

/* True when text holds the id as a UUID or as its 32 hex digits. */
static bool has_id(const char *text, const char *uuid)
{
    char hex[33];
    obs_uuid_hex(uuid, hex);
    return strstr(text, uuid) || strstr(text, hex);
}

static int64_t q_i64(const char *sql)
{
    int64_t v = -1;
    cr_assert_eq(sg_pgh_query_i64(pg, sql, &v), 0, "%s", sql);
    return v;
}

Test(demo_trace, one_trace_id_from_access_log_to_ticket_events_span_and_exemplar)
{
    cr_assert(obs_mkdtemp(dir, sizeof(dir)));
    pg = sg_pgh_start_reference();
    cr_assert(pg, "PostgreSQL test cluster");
    /* The shipped SQL is idempotent: the schema and the migration run again on a loaded database. */
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/schema.sql"), 0);
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/trace_id_migration.sql"), 0);
    cr_assert_eq(sg_pgh_exec_file(pg, SG_SOURCE_DIR "/config/sql/trace_id_migration.sql"), 0);

    unsigned up = start_upstream(sg_pgh_conninfo(pg));
    gw_start(&gw,
             "workers: 2\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "upstreams: {platform: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: api, match: {prefix: /api/}, upstream: platform}]\n"
             "trace: {header: X-Trace-Id, traceparent: true,\n"
             "        export: {otlp_http: \"http://127.0.0.1:%u/v1/traces\", batch_delay: 50ms}}\n"
             "log: {access: stdout, flush_interval: 10ms}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             up, up);

    /* The platform's calls about one ticket, all with the ticket's trace id. */
    char body[4096];
    cr_assert_eq(post("/api/tickets", TID, "{\"title\": \"trace me\"}", body, sizeof(body)), 201, "%s", body);
    const char *idp = strstr(body, "\"id\"");
    cr_assert(idp, "%s", body);
    long id = strtol(strchr(idp, ':') + 1, NULL, 10);
    cr_assert_gt(id, 0, "%s", body);
    cr_assert(has_id(body, TID), "the new ticket's trace_id: %s", body);
    char path[128];
    snprintf(path, sizeof(path), "/api/tickets/%ld/state", id);
    cr_assert_eq(post(path, TID, "{\"state\": \"in_progress\"}", body, sizeof(body)), 200, "%s", body);
    cr_assert_eq(post(path, TID, "done", body, sizeof(body)), 200, "%s", body);
    /* A refused state changes nothing and writes no event. */
    cr_assert_eq(post(path, TID, "{\"state\": \"sideways\"}", body, sizeof(body)), 422, "%s", body);

    /* 1. swarmgate's access log. */
    char line[4096];
    cr_assert(sg_proc_stdout_line(&gw, "/state", line, sizeof(line), 5000), "no access-log line for the state change");
    cr_assert(strstr(line, "\"trace_id\":\"" TID "\"") || has_id(line, TID), "%s", line);

    /* 2. The ticket row. */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM tickets WHERE id = %ld AND trace_id = '" TID "' AND state = 'done'", id);
    cr_assert_eq(q_i64(sql), 1, "tickets.trace_id");

    /* 3. Its events: creation and both changes, each with the trace id. */
    char text[512] = "";
    snprintf(
        sql, sizeof(sql),
        "SELECT string_agg(coalesce(from_state, '-') || '>' || to_state || ' ' || coalesce(trace_id::text, 'null'),"
        " ', ' ORDER BY id) FROM ticket_events WHERE ticket_id = %ld",
        id);
    cr_assert_eq(sg_pgh_query_text(pg, sql, text, sizeof(text)), 0);
    cr_assert_str_eq(text, "->open " TID ", open>in_progress " TID ", in_progress>done " TID);

    /* 4. The platform's own log line. */
    char *ul = obs_wait_line(up_log, "trace_id=" TID " POST /api/tickets -> 201", 5000);
    cr_assert(ul, "demo_upstream log:\n%s", up_log_text());
    free(ul);

    /* 5. The span, exported to the demo's collector. */
    long long deadline = sgt_now_ms() + 10000;
    char *s = NULL;
    for (;;) {
        free(s);
        s = obs_slurp(spans);
        if (has_id(s, TID) || sgt_now_ms() > deadline)
            break;
        sgt_nap_ms(20); /* polling a file with a deadline */
    }
    cr_assert(has_id(s, TID), "no span with the trace id; spans:\n%.2000s", s);
    free(s);

    /* 6. The OpenMetrics exemplar of the request histogram (only this test's POSTs are route api, POST). */
    hc_response_t r;
    cr_assert_eq(obs_get(sg_proc_addr(&gw, "admin"), "/metrics", "Accept: application/openmetrics-text\r\n", &r, 5000),
                 HC_OK);
    bool found = false;
    for (char *l = r.body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t n = strcspn(l, "\n");
        char one[1024];
        snprintf(one, sizeof(one), "%.*s", (int)SG_MIN(n, sizeof(one) - 1), l);
        if (strncmp(one, "swarm_http_request_duration_seconds_bucket{", 43) == 0 && strstr(one, "method=\"POST\"") &&
            strstr(one, "# {") && has_id(strstr(one, "# {"), TID))
            found = true;
    }
    cr_assert(found, "no exemplar with the trace id:\n%s", r.body);
    hc_response_free(&r);

    /* An event carries the trace id of the request that made it, when that is another one
     * (after the scrape: this POST may take an exemplar). */
    cr_assert_eq(post(path, TID_OTHER, "{\"state\": \"review\"}", body, sizeof(body)), 200, "%s", body);
    snprintf(sql, sizeof(sql),
             "SELECT trace_id::text FROM ticket_events WHERE ticket_id = %ld ORDER BY id DESC LIMIT 1", id);
    cr_assert_eq(sg_pgh_query_text(pg, sql, text, sizeof(text)), 0);
    cr_assert_str_eq(text, TID_OTHER);
}
