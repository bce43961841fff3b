/* The shipped Prometheus/Grafana files are valid: promtool checks the rules
 * and the scrape config, runs the alert unit tests (alerts_test.yml), and
 * checks every PromQL expression of the Grafana dashboard. */
#include "sg/common.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROM_DIR SG_SOURCE_DIR "/config/prometheus"
#define DASHBOARD SG_SOURCE_DIR "/config/grafana/swarmgate.json"

/* Runs a shell command, returns its exit status; output into out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

Test(alerts, rules_pass_promtool_check, .timeout = 60)
{
    int rc = run("promtool check rules " PROM_DIR "/alerts.yml 2>&1", out, sizeof(out));
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect_neq(strstr(out, "SUCCESS: 7 rules found"), NULL, "%s", out);
}

Test(alerts, alert_unit_tests_pass, .timeout = 60)
{
    int rc = run("cd " PROM_DIR " && promtool test rules alerts_test.yml 2>&1", out, sizeof(out));
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect_neq(strstr(out, "SUCCESS"), NULL, "%s", out);
}

/* promtool must be able to fail: a rule file whose alert never fires makes
 * the same unit tests fail. */
Test(alerts, alert_unit_tests_catch_a_broken_rule, .timeout = 60)
{
    char dir[] = "/tmp/sg-alerts-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cp " PROM_DIR "/alerts_test.yml %s/ && sed 's/swarm_vm_active >= swarm_vm_max/swarm_vm_active > "
             "swarm_vm_max/' " PROM_DIR
             "/alerts.yml > %s/alerts.yml && cd %s && promtool test rules alerts_test.yml 2>&1",
             dir, dir, dir);
    int rc = run(cmd, out, sizeof(out));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cr_expect_neq(rc, 0, "a broken rule passed the tests:\n%s", out);
    cr_expect_neq(strstr(out, "SwarmVMPoolExhausted"), NULL, "%s", out);
}

/* The new rules are what the tests pin down: each loosened rule fails
 * alerts_test.yml (the breaker back on a `for` over the gauge, an unknown
 * VM maximum read as 0, a failing query without its alert). */
static void expect_broken_rule_fails(const char *sed_expr, const char *alert)
{
    char dir[] = "/tmp/sg-alerts-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cp " PROM_DIR "/alerts_test.yml %s/ && sed -e '%s' " PROM_DIR
             "/alerts.yml > %s/alerts.yml && cd %s && promtool test rules alerts_test.yml 2>&1",
             dir, sed_expr, dir, dir);
    int rc = run(cmd, out, sizeof(out));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cr_expect_neq(rc, 0, "a broken %s passed the tests:\n%s", alert, out);
    cr_expect_neq(strstr(out, alert), NULL, "%s", out);
}

Test(alerts, breaker_rule_uses_the_database_clock, .timeout = 60)
{
    expect_broken_rule_fails("s/(time() - swarm_circuit_breaker_state_changed_timestamp_seconds > 600)/"
                             "swarm_circuit_breaker_state_changed_timestamp_seconds/",
                             "SwarmCircuitBreakerOpen");
}

Test(alerts, vm_rule_needs_a_known_maximum, .timeout = 60)
{
    expect_broken_rule_fails("s/ and swarm_vm_max > 0//", "SwarmVMPoolExhausted");
}

Test(alerts, query_failing_rule_is_tested, .timeout = 60)
{
    expect_broken_rule_fails("s/swarm_db_query_up == 0/swarm_db_query_up == 2/", "SwarmDatabaseQueryFailing");
}

Test(alerts, certificate_rule_is_tested, .timeout = 60)
{
    /* A 7-day threshold would miss the 11-day certificate of the tests. */
    expect_broken_rule_fails("s/< 14 \\* 86400/< 7 * 86400/", "SwarmTLSCertificateExpiringSoon");
}

Test(alerts, prometheus_config_passes_promtool_check, .timeout = 60)
{
    int rc = run("promtool check config " PROM_DIR "/prometheus.yml 2>&1", out, sizeof(out));
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect_neq(strstr(out, "1 rule files found"), NULL, "%s", out);
}

/* ---- Grafana dashboard ---------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    cr_assert_lt(n, sizeof(buf) - 1, "file too big for the test buffer");
    buf[n] = 0;
    return buf;
}

/* A small JSON syntax checker (RFC 8259), enough to refuse a broken file. */
static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *js_value(const char *p, int depth);

static const char *js_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p && *p != '"') {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
        p++;
    }
    return *p == '"' ? p + 1 : NULL;
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = js_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool is_obj = *p == '{';
        p = js_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (is_obj) {
                p = js_string(js_ws(p));
                if (!p || *(p = js_ws(p)) != ':')
                    return NULL;
                p++;
            }
            p = js_value(p, depth + 1);
            if (!p)
                return NULL;
            p = js_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return js_string(p);
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++)
        if (!strncmp(p, lits[i], strlen(lits[i])))
            return p + strlen(lits[i]);
    char *end;
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        strtod(p, &end);
        return end;
    }
    return NULL;
}

static bool json_valid(const char *s)
{
    const char *p = js_value(s, 0);
    return p && *js_ws(p) == 0;
}

Test(alerts, json_checker_refuses_broken_json, .timeout = 10)
{
    cr_expect(json_valid("{\"a\": [1, 2.5e3, \"x\\n\", true, null, {}]}"));
    cr_expect_not(json_valid("{\"a\": [1, 2,]}"));
    cr_expect_not(json_valid("{\"a\" 1}"));
    cr_expect_not(json_valid("{\"a\": \"unterminated}"));
    cr_expect_not(json_valid("{} x"));
}

/* Copies each "expr" string out of the dashboard (JSON-unescaped). */
static size_t dashboard_exprs(const char *json, char exprs[][1024], size_t max)
{
    size_t n = 0;
    const char *p = json;
    while ((p = strstr(p, "\"expr\":")) != NULL && n < max) {
        p = js_ws(p + 7);
        cr_assert_eq(*p, '"');
        p++;
        size_t o = 0;
        while (*p && *p != '"') {
            char c = *p++;
            if (c == '\\') {
                c = *p++;
                c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            }
            cr_assert_lt(o, 1023);
            exprs[n][o++] = c;
        }
        exprs[n][o] = 0;
        n++;
    }
    return n;
}

/* Grafana variables are not PromQL: replace them the way Grafana would. */
static void substitute(const char *in, char *o, size_t cap)
{
    static const struct {
        const char *var, *val;
    } subs[] = {{"$__rate_interval", "5m"}, {"$instance", ".*"}, {"$job", ".*"}};
    size_t k = 0;
    while (*in && k + 16 < cap) {
        bool hit = false;
        for (size_t i = 0; i < SG_ARRAY_SIZE(subs) && !hit; i++) {
            size_t l = strlen(subs[i].var);
            if (!strncmp(in, subs[i].var, l)) {
                k += (size_t)snprintf(o + k, cap - k, "%s", subs[i].val);
                in += l;
                hit = true;
            }
        }
        if (!hit)
            o[k++] = *in++;
    }
    o[k] = 0;
}

Test(alerts, dashboard_is_json_and_its_queries_are_valid_promql, .timeout = 60)
{
    const char *json = slurp(DASHBOARD);
    cr_assert(json_valid(json), "config/grafana/swarmgate.json is not valid JSON");
    static char exprs[64][1024];
    size_t n = dashboard_exprs(json, exprs, 64);
    cr_assert_geq(n, 10);
    /* the panels the platform asked for */
    static const char *const needed[] = {
        "rate(swarm_http_requests_total",
        "histogram_quantile(0.5, sum by (le) (rate(swarm_http_request_duration_seconds_bucket",
        "histogram_quantile(0.9, sum by (le) (rate(swarm_http_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(swarm_http_request_duration_seconds_bucket",
        "swarm_error_rate",
        "swarm_tickets_total",
        "swarm_tickets_stuck",
        "swarm_circuit_breaker_state",
        "swarm_vm_active",
        "swarm_vm_max",
        /* egress, upstream and TLS rows */
        "rate(swarm_egress_requests_total",
        "rate(swarm_egress_refused_total",
        "rate(swarm_egress_tunnels_total",
        "sum by (agent) (rate(swarm_egress_rate_limited_total",
        "swarm_upstream_server_up",
        "rate(swarm_upstream_response_duration_seconds_bucket",
        "rate(swarm_upstream_connect_errors_total",
        "rate(swarm_upstream_timeouts_total",
        "rate(swarm_tls_handshakes_total",
        "rate(swarm_tls_handshake_duration_seconds_bucket",
        "swarm_tls_certificate_expiry_timestamp_seconds",
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(needed); i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strstr(exprs[j], needed[i]) != NULL;
        cr_expect(found, "no dashboard query uses %s", needed[i]);
    }
    /* promtool checks PromQL inside rule files: one recording rule each */
    char path[] = "/tmp/sg-dash-XXXXXX.yml";
    int fd = mkstemps(path, 4);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "groups:\n  - name: dashboard\n    rules:\n");
    for (size_t j = 0; j < n; j++) {
        char e[2048];
        substitute(exprs[j], e, sizeof(e));
        fprintf(f, "      - record: dashboard:expr%zu\n        expr: |\n          %s\n", j, e);
    }
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check rules %s 2>&1", path);
    int rc = run(cmd, out, sizeof(out));
    unlink(path);
    cr_assert_eq(rc, 0, "dashboard PromQL rejected:\n%s", out);
}

Test(alerts, prometheus_config_scrapes_the_admin_listener, .timeout = 10)
{
    const char *y = slurp(PROM_DIR "/prometheus.yml");
    cr_expect_neq(strstr(y, "127.0.0.1:9464"), NULL);
    cr_expect_neq(strstr(y, "metrics_path: /metrics"), NULL);
    cr_expect_neq(strstr(y, "alerts.yml"), NULL);
}

/* The dashboard's "processed" panel over counter samples: a reopened
 * ticket does not move swarm_tickets_processed_total (it counts
 * transitions into a final state), so the panel counts the one ticket
 * finished in the hour once; the samples main exported (6 -> 5 on a
 * reopen, 5 -> 6 when done again) read as a counter reset and the panel
 * showed 6 tickets processed in an hour where one was. */
Test(alerts, dashboard_processed_panel_counts_a_reopened_ticket_once, .timeout = 60)
{
    const char *json = slurp(DASHBOARD);
    static char exprs[64][1024];
    size_t n = dashboard_exprs(json, exprs, 64);
    const char *expr = NULL;
    for (size_t j = 0; j < n && !expr; j++)
        if (strstr(exprs[j], "swarm_tickets_processed_total"))
            expr = exprs[j];
    cr_assert_not_null(expr, "no dashboard panel uses swarm_tickets_processed_total");
    char e[2048];
    substitute(expr, e, sizeof(e));

    char dir[] = "/tmp/sg-dash-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/rules.yml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "groups:\n  - name: dashboard\n    rules:\n      - record: dashboard:processed\n        expr: |\n"
            "          %s\n",
            e);
    fclose(f);
    snprintf(path, sizeof(path), "%s/test.yml", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    /* 1m samples; the [1h] window at 60m holds 0m..60m exactly (promtool
     * 2.x: inclusive ends), so increase() is last - first plus resets. A
     * ticket is reopened at 20m and done again at 40m. */
    fputs(
        "rule_files: [rules.yml]\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'swarm_tickets_processed_total{status=\"done\", instance=\"sg:9464\", job=\"swarmgate\"}'\n"
        "        values: '6x39 7x30'\n"
        "      - series: 'swarm_tickets_processed_total{status=\"failed\", instance=\"sg:9464\", job=\"swarmgate\"}'\n"
        "        values: '2x70'\n"
        "    promql_expr_test:\n"
        "      - expr: dashboard:processed\n"
        "        eval_time: 60m\n"
        "        exp_samples:\n"
        "          - {labels: 'dashboard:processed{status=\"done\"}', value: 1}\n"
        "          - {labels: 'dashboard:processed{status=\"failed\"}', value: 0}\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'swarm_tickets_processed_total{status=\"done\", instance=\"sg:9464\", job=\"swarmgate\"}'\n"
        "        values: '6x19 5x20 6x30'\n"
        "    promql_expr_test:\n"
        "      - expr: dashboard:processed\n"
        "        eval_time: 60m\n"
        "        exp_samples:\n"
        "          - {labels: 'dashboard:processed{status=\"done\"}', value: 6}\n",
        f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cd %s && promtool test rules test.yml 2>&1", dir);
    int rc = run(cmd, out, sizeof(out));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(rc, 0, "%s", out);
}
