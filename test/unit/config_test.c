/* Config loader: the shipped examples load, defaults match config.h, every
 * class of bad input gives the exact "file:line:col: key.path: message",
 * ${ENV} expansion, IPv6 addresses, egress rules, refcounts, docs coverage. */
#include "sg/config.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static sg_config_t *load_ok(const char *yaml)
{
    sg_config_t *cfg = NULL;
    char err[512] = "";
    int rc = sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    cr_assert_eq(rc, 0, "load failed: %s", err);
    cr_assert_not_null(cfg);
    return cfg;
}

static void load_fails(const char *yaml, const char *want)
{
    sg_config_t *cfg = (sg_config_t *)(uintptr_t)1;
    char err[512] = "";
    int rc = sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    cr_assert_eq(rc, -1, "should fail: %s", yaml);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, want, "yaml:\n%s\ngot:  %s\nwant: %s", yaml, err, want);
}

static void unset_example_env(void)
{
    unsetenv("SWARM_PG_DSN");
    unsetenv("SWARM_OTLP_URL");
    unsetenv("SWARM_EGRESS_PASSWORD");
}

#define L0 "listeners: [{address: 127.0.0.1:0}]\n"

/* ---- shipped examples ---- */

Test(config, shipped_swarmgate_yaml_loads, .timeout = 10)
{
    unset_example_env();
    sg_config_t *cfg = NULL;
    char err[512] = "";
    int rc = sg_config_load(SG_SOURCE_DIR "/config/swarmgate.yaml", &cfg, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(cfg->n_listeners, 2);
    cr_assert_str_eq(cfg->listeners[0].name, "api");
    cr_assert_eq(cfg->listeners[1].mode, SG_LISTENER_EGRESS);
    cr_assert_eq(cfg->listeners[1].addr.port, 3128);
    cr_assert_eq(cfg->admin.addr.port, 9464);
    cr_assert_eq(cfg->n_upstreams, 1);
    cr_assert_str_eq(cfg->upstreams[0].name, "platform");
    cr_assert_eq(cfg->upstreams[0].response_timeout_ms, 120000);
    cr_assert(cfg->upstreams[0].health_check.enabled);
    cr_assert_eq(cfg->n_routes, 3);
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_NONE, "export off without SWARM_OTLP_URL");
    cr_assert_null(cfg->postgres.conninfo, "polling off without SWARM_PG_DSN");
    cr_assert_eq(cfg->postgres.n_queries, 1);
    cr_assert_eq(cfg->egress.n_allow, 4);
    cr_assert_geq(cfg->workers, 1);
    cr_assert_eq(cfg->busy_poll_us, 0, "busy polling is off unless asked for");
    cr_assert_str_eq(cfg->path, SG_SOURCE_DIR "/config/swarmgate.yaml");
    sg_config_free(cfg);
}

Test(config, shipped_swarmgate_yaml_takes_env, .timeout = 10)
{
    setenv("SWARM_PG_DSN", "host=/tmp dbname=swarm", 1);
    setenv("SWARM_OTLP_URL", "http://127.0.0.1:4318/v1/traces", 1);
    sg_config_t *cfg = NULL;
    char err[512] = "";
    int rc = sg_config_load(SG_SOURCE_DIR "/config/swarmgate.yaml", &cfg, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(cfg->postgres.conninfo, "host=/tmp dbname=swarm");
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_OTLP_HTTP);
    cr_assert_str_eq(cfg->trace.export.url_addr.host, "127.0.0.1");
    cr_assert_eq(cfg->trace.export.url_addr.port, 4318);
    cr_assert_str_eq(cfg->trace.export.url_path, "/v1/traces");
    sg_config_free(cfg);
    unset_example_env();
}

/* Mapping onto another schema is configuration: a default query is
 * replaced by name or switched off, and the transition start query, the
 * back-off and the leader lock are keys. */
Test(config, postgres_builtins_are_overridable, .timeout = 10)
{
    sg_config_t *cfg = load_ok("listeners: [{address: 127.0.0.1:0}]\n"
                               "postgres:\n"
                               "  conninfo: host=/tmp\n"
                               "  leader_lock: false\n"
                               "  reconnect_min: 100ms\n"
                               "  reconnect_max: 5s\n"
                               "  transitions_start_sql: SELECT 0\n"
                               "  queries:\n"
                               "    - {name: swarm_tickets_total, sql: SELECT 1 AS value}\n"
                               "    - {name: swarm_tickets_processed_total, enabled: false}\n");
    cr_assert_not(cfg->postgres.leader_lock);
    cr_assert_eq(cfg->postgres.reconnect_min_ms, 100);
    cr_assert_eq(cfg->postgres.reconnect_max_ms, 5000);
    cr_assert_str_eq(cfg->postgres.transitions_start_sql, "SELECT 0");
    cr_assert_eq(cfg->postgres.n_queries, 2);
    cr_assert_not(cfg->postgres.queries[0].is_disabled);
    cr_assert(cfg->postgres.queries[1].is_disabled);
    cr_assert_null(cfg->postgres.queries[1].sql);
    sg_config_free(cfg);
}

Test(config, every_example_loads, .timeout = 10)
{
    unset_example_env();
    const char *dir = SG_SOURCE_DIR "/config/examples";
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[1024], err[512] = "";
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        sg_config_t *cfg = NULL;
        cr_expect_eq(sg_config_load(path, &cfg, err, sizeof(err)), 0, "%s: %s", path, err);
        sg_config_free(cfg);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 3, "examples found: %d", n);
}

Test(config, multi_upstream_example_values, .timeout = 10)
{
    unset_example_env();
    sg_config_t *cfg = NULL;
    char err[512] = "";
    cr_assert_eq(sg_config_load(SG_SOURCE_DIR "/config/examples/multi-upstream.yaml", &cfg, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(cfg->workers, 4);
    const sg_upstream_conf_t *agents = &cfg->upstreams[1];
    cr_assert_str_eq(agents->name, "agents");
    cr_assert_str_eq(agents->servers[0].host, "fd00::21");
    cr_assert(agents->servers[0].is_ipv6_literal);
    cr_assert_str_eq(agents->servers[1].host, "agent-gw.internal");
    cr_assert_not(agents->servers[1].is_ip_literal);
    cr_assert_eq(cfg->upstreams[0].balance, SG_BALANCE_LEAST_IN_FLIGHT);
    cr_assert_eq(cfg->upstreams[0].response_timeout_ms, 300000);
    cr_assert_eq(cfg->upstreams[0].health_check.rise, 2);
    cr_assert_str_eq(cfg->upstreams[0].health_check.path, "/health/ready");
    cr_assert_str_eq(cfg->routes[0].host, "*.agents.example.com");
    cr_assert_eq(cfg->routes[0].upstream_idx, 1);
    cr_assert_str_eq(cfg->routes[1].strip_prefix, "/api", "strip_prefix: true takes match.prefix");
    cr_assert_str_eq(cfg->routes[1].set_host, "platform.internal");
    cr_assert_str_eq(cfg->routes[3].prefix, "/");
    cr_assert_null(cfg->routes[3].host);
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_ZIPKIN);
    cr_assert_eq(cfg->trace.export.sample, 0.25);
    cr_assert_eq(cfg->metrics.request_buckets.n, 10);
    cr_assert_eq(cfg->metrics.upstream_buckets.n, 10, "upstream buckets default to request buckets");
    cr_assert_eq(cfg->metrics.upstream_buckets.bounds[9], 600);
    cr_assert_eq(cfg->postgres.queries[0].interval_ms, 60000);
    cr_assert_str_eq(cfg->postgres.queries[0].value, "n");
    cr_assert_eq(cfg->postgres.queries[0].n_zero_fill, 1);
    cr_assert_eq(cfg->postgres.queries[0].zero_fill[0].n_values, 3);
    cr_assert_eq(cfg->postgres.queries[1].type, SG_METRIC_COUNTER);
    cr_assert_eq(cfg->postgres.stale_after_ms, 90000, "3 x interval");
    cr_assert_eq(cfg->limits.body_bytes, 64ull << 20);
    cr_assert_eq(cfg->limits.request_line_bytes, 8192);
    cr_assert_eq(cfg->log.level, SG_LOG_WARN);
    cr_assert_eq(cfg->log.format, SG_LOG_FORMAT_JSON);
    cr_assert_eq(cfg->shutdown.drain_timeout_ms, 60000);
    sg_config_free(cfg);
}

/* ---- defaults (config.h comments) ---- */

Test(config, defaults_match_header, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "upstreams: {u: {servers: [127.0.0.1:1]}}\nroutes: [{upstream: u}]\n");
    cr_assert_eq(atomic_load(&cfg->refcount), 1);
    cr_assert_str_eq(cfg->listeners[0].name, "listener0");
    cr_assert_eq(cfg->listeners[0].mode, SG_LISTENER_REVERSE);
    cr_assert_eq(cfg->listeners[0].backlog, 511);
    cr_assert_not(cfg->listeners[0].serve_health);
    cr_assert_not(cfg->listeners[0].serve_metrics);
    cr_assert_str_eq(cfg->admin.addr.host, "127.0.0.1");
    cr_assert_eq(cfg->admin.addr.port, 9464);
    cr_assert(cfg->admin.enabled);
    cr_assert_eq(cfg->admin.liveness_stale_ms, 10000);
    const sg_upstream_conf_t *u = &cfg->upstreams[0];
    cr_assert_eq(u->balance, SG_BALANCE_ROUND_ROBIN);
    cr_assert_eq(u->keepalive, 100000);
    cr_assert_eq(u->keepalive_timeout_ms, 60000);
    cr_assert_eq(u->connect_timeout_ms, 5000);
    cr_assert_eq(u->response_timeout_ms, 60000);
    cr_assert_eq(u->read_timeout_ms, 300000);
    cr_assert_eq(u->max_fails, 3);
    cr_assert_eq(u->fail_timeout_ms, 10000);
    cr_assert_not(u->health_check.enabled);
    cr_assert_str_eq(u->health_check.path, "/health");
    cr_assert_eq(u->health_check.interval_ms, 5000);
    cr_assert_eq(u->health_check.timeout_ms, 2000);
    cr_assert_eq(u->health_check.rise, 2);
    cr_assert_eq(u->health_check.fall, 3);
    const sg_route_conf_t *r = &cfg->routes[0];
    cr_assert_str_eq(r->name, "route0");
    cr_assert_null(r->host);
    cr_assert_str_eq(r->prefix, "/");
    cr_assert_null(r->strip_prefix);
    cr_assert_null(r->rewrite);
    cr_assert_null(r->set_host);
    cr_assert_eq(r->upstream_idx, 0);
    cr_assert_str_eq(cfg->trace.header, "X-Trace-Id");
    cr_assert_eq(cfg->trace.n_accept_headers, 0);
    cr_assert(cfg->trace.traceparent);
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_NONE);
    cr_assert_null(cfg->trace.export.url);
    cr_assert_eq(cfg->trace.export.sample, 1.0);
    cr_assert_eq(cfg->trace.export.batch_size, 512);
    cr_assert_eq(cfg->trace.export.batch_delay_ms, 2000);
    cr_assert_eq(cfg->trace.export.queue_size, 8192);
    cr_assert_eq(cfg->trace.export.timeout_ms, 10000);
    cr_assert_str_eq(cfg->trace.export.service_name, "swarmgate");
    cr_assert_eq(cfg->metrics.error_rate_window_ms, 300000);
    cr_assert_eq(cfg->metrics.error_rate_resolution_ms, 1000);
    cr_assert_eq(cfg->metrics.request_buckets.bounds[0], 0.0005);
    cr_assert_eq(cfg->metrics.request_buckets.bounds[cfg->metrics.request_buckets.n - 1], 300);
    cr_assert_eq(cfg->metrics.upstream_buckets.n, cfg->metrics.request_buckets.n);
    cr_assert_eq(cfg->metrics.transition_buckets.bounds[0], 1);
    cr_assert_eq(cfg->metrics.transition_buckets.bounds[cfg->metrics.transition_buckets.n - 1], 604800);
    cr_assert_eq(cfg->metrics.db_buckets.bounds[0], 0.001);
    cr_assert_eq(cfg->metrics.db_buckets.bounds[cfg->metrics.db_buckets.n - 1], 10);
    cr_assert(cfg->metrics.exemplars);
    cr_assert_null(cfg->postgres.conninfo);
    cr_assert_eq(cfg->postgres.interval_ms, 15000);
    cr_assert_not(cfg->postgres.required);
    cr_assert_eq(cfg->postgres.statement_timeout_ms, 5000);
    cr_assert_eq(cfg->postgres.connect_timeout_ms, 5000);
    cr_assert_eq(cfg->postgres.stale_after_ms, 45000);
    cr_assert_eq(cfg->postgres.stuck_after_ms, 3600000);
    cr_assert(cfg->postgres.default_queries);
    cr_assert_eq(cfg->postgres.n_queries, 0);
    cr_assert(cfg->postgres.transitions.enabled);
    cr_assert_null(cfg->postgres.transitions.sql);
    cr_assert_eq(cfg->postgres.transitions.batch, 1000);
    cr_assert_null(cfg->postgres.transitions_start_sql);
    cr_assert_eq(cfg->postgres.reconnect_min_ms, 250);
    cr_assert_eq(cfg->postgres.reconnect_max_ms, 30000);
    cr_assert(cfg->postgres.leader_lock, "one poller per database by default");
    cr_assert_eq(cfg->egress.n_allow, 0);
    cr_assert_null(cfg->egress.auth_user);
    cr_assert_eq(cfg->egress.dns_ttl_ms, 30000);
    cr_assert_eq(cfg->egress.keepalive, 100000);
    cr_assert_eq(cfg->egress.keepalive_timeout_ms, 30000);
    cr_assert_eq(cfg->egress.connect_timeout_ms, 10000);
    cr_assert_eq(cfg->egress.response_timeout_ms, 300000);
    cr_assert_eq(cfg->egress.read_timeout_ms, 300000);
    cr_assert_eq(cfg->egress.tunnel_idle_timeout_ms, 3600000);
    cr_assert_str_eq(cfg->log.access, "stdout");
    cr_assert_str_eq(cfg->log.error, "stderr");
    cr_assert_eq(cfg->log.level, SG_LOG_INFO);
    cr_assert_eq(cfg->log.format, SG_LOG_FORMAT_AUTO);
    cr_assert_eq(cfg->log.ring_bytes, 1u << 20);
    cr_assert_eq(cfg->log.flush_interval_ms, 100);
    cr_assert_eq(cfg->limits.max_connections, 10000);
    cr_assert_eq(cfg->limits.request_line_bytes, 16384);
    cr_assert_eq(cfg->limits.header_bytes, 65536);
    cr_assert_eq(cfg->limits.header_count, 100);
    cr_assert_eq(cfg->limits.body_bytes, 0);
    cr_assert_eq(cfg->limits.client_header_timeout_ms, 30000);
    cr_assert_eq(cfg->limits.keepalive_timeout_ms, 75000);
    cr_assert_eq(cfg->limits.client_body_timeout_ms, 60000);
    cr_assert_eq(cfg->limits.send_timeout_ms, 60000);
    cr_assert_eq(cfg->limits.tunnel_idle_timeout_ms, 3600000);
    cr_assert_eq(cfg->limits.buffer_bytes, 256u << 10);
    cr_assert_eq(cfg->shutdown.drain_delay_ms, 5000);
    cr_assert_eq(cfg->shutdown.drain_timeout_ms, 30000);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert(cfg->workers >= 1 && cfg->workers <= 256 && (long)cfg->workers <= cpus, "workers %u", cfg->workers);
    sg_config_free(cfg);
}

Test(config, busy_poll_windows, .timeout = 10)
{
    static const struct {
        const char *text;
        uint32_t us;
    } cases[] = {{"off", 0}, {"1us", 1}, {"50us", 50}, {"10000us", 10000}, {"1ms", 1000}, {"10ms", 10000}};
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        char yaml[128], err[256] = "";
        snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0}]\nbusy_poll: %s\n", cases[i].text);
        sg_config_t *cfg = NULL;
        cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0, "%s: %s",
                     cases[i].text, err);
        cr_assert_eq(cfg->busy_poll_us, cases[i].us, "%s", cases[i].text);
        sg_config_free(cfg);
    }
}

Test(config, null_values_keep_defaults, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "admin:\ntrace:\n  export: {otlp_http: null, zipkin: ~}\nlog: {level: }\n");
    cr_assert_eq(cfg->admin.addr.port, 9464);
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_NONE);
    cr_assert_eq(cfg->log.level, SG_LOG_INFO);
    sg_config_free(cfg);
}

Test(config, tunnel_idle_timeouts_parse, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "limits: {tunnel_idle_timeout: 300ms}\negress: {tunnel_idle_timeout: 2h}\n");
    cr_assert_eq(cfg->limits.tunnel_idle_timeout_ms, 300);
    cr_assert_eq(cfg->egress.tunnel_idle_timeout_ms, 2 * 3600 * 1000);
    sg_config_free(cfg);
    cfg = load_ok(L0 "limits: {tunnel_idle_timeout: 45}\negress: {tunnel_idle_timeout: ~}\n");
    cr_assert_eq(cfg->limits.tunnel_idle_timeout_ms, 45000, "a bare number is seconds");
    cr_assert_eq(cfg->egress.tunnel_idle_timeout_ms, 3600000, "null keeps the default");
    sg_config_free(cfg);
}

Test(config, health_check_mapping_enables_checks, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "upstreams:\n  a: {servers: [127.0.0.1:1], health_check: {}}\n"
                                  "  b: {servers: [127.0.0.1:2], health_check: {enabled: false, path: /x}}\n");
    cr_assert(cfg->upstreams[0].health_check.enabled);
    cr_assert_not(cfg->upstreams[1].health_check.enabled);
    cr_assert_str_eq(cfg->upstreams[1].health_check.path, "/x");
    sg_config_free(cfg);
}

Test(config, empty_file_names_missing_listener, .timeout = 10)
{
    load_fails("", "t.yaml:1:1: listeners: at least one listener is required");
    load_fails("# only a comment\n", "t.yaml:1:1: listeners: at least one listener is required");
}

/* ---- bad input: the exact message ---- */

/* Criterion runs each parameter in a fresh process (with its own address
 * layout), so the strings live inline in the struct, not as pointers. */
typedef struct bad_case {
    char yaml[256];
    char msg[384];
} bad_case_t;

ParameterizedTestParameters(config, bad_input_exact_message)
{
    static bad_case_t cases[] = {
        {"foo: 1", "t.yaml:1:1: foo: unknown key"},
        {"listeners: [{address: 127.0.0.1:0, mode: forward}]",
         "t.yaml:1:42: listeners[0].mode: expected one of reverse, egress, got \"forward\""},
        {"listeners: [{address: 127.0.0.1:0}, {address: 127.0.0.1:9000, name: listener0}]",
         "t.yaml:1:69: listeners[1].name: duplicate name \"listener0\" (also used by item 0)"},
        {"listeners: [{address: 127.0.0.1:0}]\nlisteners: []",
         "t.yaml:2:1: listeners: duplicate key (first given at line 1, column 1)"},
        {"listeners: [{address: 127.0.0.1:8080}, {address: 0.0.0.0:8080}]",
         "t.yaml:1:50: listeners[1].address: address already used by listeners[0]"},
        {"listeners: [{address: 127.0.0.1:9464}]",
         "t.yaml:1:23: listeners[0].address: address already used by admin.address"},
        {"listeners: [{address: 127.0.0.1:0}]\nworkers: 257",
         "t.yaml:2:10: workers: expected auto or a number from 1 to 256, got \"257\""},
        {"listeners: [{address: 127.0.0.1:0}]\nworkers: many",
         "t.yaml:2:10: workers: expected auto or a number from 1 to 256, got \"many\""},
        {"listeners: [{address: 127.0.0.1:0}]\nbusy_poll: 50",
         "t.yaml:2:12: busy_poll: expected off, or a window from 1us to 10ms (\"50us\", \"1ms\"), got \"50\""},
        {"listeners: [{address: 127.0.0.1:0}]\nbusy_poll: 11ms",
         "t.yaml:2:12: busy_poll: expected off, or a window from 1us to 10ms (\"50us\", \"1ms\"), got \"11ms\""},
        {"listeners: [{address: 127.0.0.1:0}]\nbusy_poll: 0us",
         "t.yaml:2:12: busy_poll: expected off, or a window from 1us to 10ms (\"50us\", \"1ms\"), got \"0us\""},
        {"listeners: [{address: 127.0.0.1:0}]\nbusy_poll: on",
         "t.yaml:2:12: busy_poll: expected off, or a window from 1us to 10ms (\"50us\", \"1ms\"), got \"on\""},
        {"listeners: {address: 127.0.0.1:0}", "t.yaml:1:12: listeners: expected a list, got a mapping"},
        {"listeners:\n  - address: 127.0.0.1:0\n    backlog: 0",
         "t.yaml:3:14: listeners[0].backlog: expected an integer from 1 to 65535, got \"0\""},
        {"listeners:\n  - name: \"bad name\"\n    address: 127.0.0.1:0",
         "t.yaml:2:11: listeners[0].name: expected a name of letters, digits and _ - . : /, got \"bad name\""},
        {"listeners: [{address: \"[::1]:0\"}]\nadmin: {address: \"::1:9464\"}",
         "t.yaml:2:18: admin.address: expected host:port or [ipv6]:port, got \"::1:9464\": an IPv6 address must be "
         "written in brackets, as [::1]:8080"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002, \"[::1]:99999\"]",
         "t.yaml:4:31: upstreams.platform.servers[1]: expected host:port or [ipv6]:port, got \"[::1]:99999\": port "
         "must be a number from 1 to 65535"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    balance: "
         "random",
         "t.yaml:5:14: upstreams.platform.balance: expected one of round_robin, least_in_flight, got \"random\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n  platform:\n   "
         " servers: [127.0.0.1:3003]",
         "t.yaml:5:3: upstreams.platform: duplicate key (first given at line 3, column 3)"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002, 127.0.0.1:3002]",
         "t.yaml:4:31: upstreams.platform.servers[1]: duplicate server (also at index 0)"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    keepalive: "
         "-1",
         "t.yaml:5:16: upstreams.platform.keepalive: expected an integer from 0 to 100000, got \"-1\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    "
         "connect_timeout: 5x",
         "t.yaml:5:22: upstreams.platform.connect_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got "
         "\"5x\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    "
         "connect_timeout: 18446744073709551615s",
         "t.yaml:5:22: upstreams.platform.connect_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got "
         "\"18446744073709551615s\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    "
         "connect_timeout: 400d",
         "t.yaml:5:22: upstreams.platform.connect_timeout: expected a duration from 1ms to 365d, got \"400d\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\n    "
         "health_check: {interval: 1s, timeout: 2s}",
         "t.yaml:5:43: upstreams.platform.health_check.timeout: must not be longer than the interval"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  platform:\n    servers: [127.0.0.1:3002]\nroutes:\n  - "
         "{upstream: platform}\n  - {upstream: platform}\n  - {match: {prefix: /x}, upstream: platfrom}",
         "t.yaml:8:37: routes[2].upstream: no upstream named \"platfrom\" in upstreams"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {match: {prefix: "
         "api}, upstream: a}",
         "t.yaml:4:22: routes[0].match.prefix: expected a path starting with /, got \"api\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {match: {host: "
         "\"api.example.com:80\"}, upstream: a}",
         "t.yaml:4:20: routes[0].match.host: expected a host name, *.suffix, an IPv4 address or [IPv6], without a "
         "port, got \"api.example.com:80\""},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {name: x, "
         "upstream: a}\n  - {name: x, upstream: a}",
         "t.yaml:5:12: routes[1].name: duplicate name \"x\" (also used by item 0)"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {match: {prefix: "
         "/api/}, upstream: a, strip_prefix: /api, rewrite: /v2/}",
         "t.yaml:4:72: routes[0].rewrite: strip_prefix and rewrite cannot be used together"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {match: {prefix: "
         "/api/}, upstream: a, strip_prefix: /ap}",
         "t.yaml:4:57: routes[0].strip_prefix: must be the start of match.prefix (\"/api/\")"},
        {"listeners: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: [127.0.0.1:1]}}\nroutes:\n  - {match: {prefix: "
         "/api/}}",
         "t.yaml:4:5: routes[0].upstream: missing required key"},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  export:\n    sample: 1.01",
         "t.yaml:4:13: trace.export.sample: expected a number from 0 to 1, got \"1.01\""},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  export:\n    sample: nan",
         "t.yaml:4:13: trace.export.sample: expected a number from 0 to 1, got \"nan\""},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  export:\n    otlp_http: https://collector:4318/v1/traces",
         "t.yaml:4:16: trace.export.otlp_http: expected an http:// URL (https is not supported: use a local "
         "collector), got \"https://collector:4318/v1/traces\""},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  export:\n    otlp_http: http://collector:4318/v1/traces\n    "
         "zipkin: http://collector:9411/api/v2/spans",
         "t.yaml:5:13: trace.export.zipkin: only one of otlp_http and zipkin can be set"},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  header: \"X Trace\"",
         "t.yaml:3:11: trace.header: expected an HTTP header name (RFC 9110 token characters), got \"X Trace\""},
        {"listeners: [{address: 127.0.0.1:0}]\ntrace:\n  traceparent: maybe",
         "t.yaml:3:16: trace.traceparent: expected true or false, got \"maybe\""},
        {"listeners: [{address: 127.0.0.1:0}]\nmetrics:\n  request_buckets: [0.1, 0.5, 0.25]",
         "t.yaml:3:31: metrics.request_buckets[2]: bucket bounds must be strictly increasing (0.25 is not greater than "
         "0.5)"},
        {"listeners: [{address: 127.0.0.1:0}]\nmetrics:\n  request_buckets: [0.1, .inf]",
         "t.yaml:3:26: metrics.request_buckets[1]: expected a finite number (+Inf is implicit), got \".inf\""},
        {"listeners: [{address: 127.0.0.1:0}]\nmetrics:\n  db_buckets: []",
         "t.yaml:3:15: metrics.db_buckets: expected 1 to 64 bucket bounds, got 0"},
        {"listeners: [{address: 127.0.0.1:0}]\nmetrics:\n  error_rate_window: 10s\n  error_rate_resolution: 20s",
         "t.yaml:4:26: metrics.error_rate_resolution: must be at most error_rate_window and at least 1/100000 of it"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  required: true",
         "t.yaml:3:13: postgres.required: is true but postgres.conninfo is empty"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: 9lives, sql: SELECT 1 AS value}",
         "t.yaml:4:14: postgres.queries[0].name: expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got "
         "\"9lives\""},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, type: histogram, sql: "
         "SELECT 1 AS value}",
         "t.yaml:4:28: postgres.queries[0].type: expected one of counter, gauge, got \"histogram\""},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, sql: \"  \"}",
         "t.yaml:4:27: postgres.queries[0].sql: expected a non-empty SQL statement, got \"  \""},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents}",
         "t.yaml:4:7: postgres.queries[0].sql: missing required key"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, sql: x, labels: [project, "
         "__name__]}",
         "t.yaml:4:48: postgres.queries[0].labels[1]: expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not "
         "starting with __), got \"__name__\""},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, sql: x, labels: [project, "
         "state, project]}",
         "t.yaml:4:55: postgres.queries[0].labels[2]: duplicate label \"project\""},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, sql: x, labels: [a]}\n    - "
         "{name: agents, sql: y}",
         "t.yaml:5:14: postgres.queries[1].name: duplicate name \"agents\" (also used by item 0)"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: agents, enabled: false}",
         "t.yaml:4:31: postgres.queries[0].enabled: only a built-in query can be switched off (\"agents\" is not "
         "one); remove the query instead"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  default_queries: false\n  queries:\n    - {name: "
         "swarm_vm_max, enabled: false}",
         "t.yaml:5:37: postgres.queries[0].enabled: default_queries is false: there is no built-in \"swarm_vm_max\" "
         "to switch off"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: swarm_vm_max}",
         "t.yaml:4:7: postgres.queries[0].sql: missing required key"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - {name: swarm_http_requests_total, sql: x}",
         "t.yaml:4:14: postgres.queries[0].name: \"swarm_http_requests_total\" is a metric swarmgate already exports"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  queries:\n    - name: agents\n      sql: x\n      labels: "
         "[a]\n      zero_fill: [{label: b, values: [x]}]",
         "t.yaml:7:27: postgres.queries[0].zero_fill[0].label: \"b\" is not one of this query's labels"},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [api.example.com:443, \"10.0.0.1/8\"]",
         "t.yaml:3:32: egress.allow[1]: expected a CIDR without host bits set (such as 10.0.0.0/8), got "
         "\"10.0.0.1/8\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [\"10.0.0.0/33\"]",
         "t.yaml:3:11: egress.allow[0]: expected a CIDR with a prefix length from 0 to 32, got \"10.0.0.0/33\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [\"api.example.com:0\"]",
         "t.yaml:3:11: egress.allow[0]: expected a port from 1 to 65535 or *, got \"api.example.com:0\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [\"*.:443\"]",
         "t.yaml:3:11: egress.allow[0]: expected a host name, *.suffix, IP address or CIDR, got \"*.:443\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [{host: a.example.com, cidr: 10.0.0.0/8}]",
         "t.yaml:3:11: egress.allow[0]: expected exactly one of host or cidr"},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [{cidr: 10.0.0.0/8, port: 70000}]",
         "t.yaml:3:36: egress.allow[0].port: expected a port from 1 to 65535 or *, got \"70000\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  allow: [{cidr: 10.0.0.0/8, proto: tcp}]",
         "t.yaml:3:30: egress.allow[0].proto: unknown key"},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  auth_user: agents",
         "t.yaml:3:14: egress.auth_user: auth_user and auth_password must be set together"},
        {"listeners: [{address: 127.0.0.1:0}]\nlog:\n  level: verbose",
         "t.yaml:3:10: log.level: expected one of debug, info, warn, error, got \"verbose\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlog:\n  format: xml",
         "t.yaml:3:11: log.format: expected one of auto, text, json, got \"xml\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlimits:\n  request_line_bytes: 16x",
         "t.yaml:3:23: limits.request_line_bytes: expected a size such as 512, 16k, 1m or 1g, got \"16x\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlimits:\n  body_bytes: 17179869184g",
         "t.yaml:3:15: limits.body_bytes: expected a size such as 512, 16k, 1m or 1g, got \"17179869184g\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlimits:\n  header_count: 1e3",
         "t.yaml:3:17: limits.header_count: expected an integer from 1 to 10000, got \"1e3\""},
        {"listeners: [{address: 127.0.0.1:0}]\nshutdown:\n  drain_timeout: -5s",
         "t.yaml:3:18: shutdown.drain_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got \"-5s\""},
        {"listeners: [{address: 127.0.0.1:0}]\nshutdown:\n  drain_timeout: \"\"",
         "t.yaml:3:18: shutdown.drain_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got \"\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlimits:\n  tunnel_idle_timeout: 5x",
         "t.yaml:3:24: limits.tunnel_idle_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got \"5x\""},
        {"listeners: [{address: 127.0.0.1:0}]\nlimits:\n  tunnel_idle_timeout: 0",
         "t.yaml:3:24: limits.tunnel_idle_timeout: expected a duration from 1ms to 365d, got \"0\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  tunnel_idle_timeout: 1.5s",
         "t.yaml:3:24: egress.tunnel_idle_timeout: expected a duration such as 250ms, 5s, 5m, 1h or 1d, got \"1.5s\""},
        {"listeners: [{address: 127.0.0.1:0}]\negress:\n  tunnel_idle_timeout: 366d",
         "t.yaml:3:24: egress.tunnel_idle_timeout: expected a duration from 1ms to 365d, got \"366d\""},
        {"listeners: [{address: 127.0.0.1:0}]\nshutdown: [drain_delay]",
         "t.yaml:2:11: shutdown: expected a mapping, got a list"},
        {"listeners: [{address: 127.0.0.1:0}]\nadmin:\n  address: 127.0.0.1:9464\n  address: 127.0.0.1:9465",
         "t.yaml:4:3: admin.address: duplicate key (first given at line 3, column 3)"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  conninfo: ${SG_CFGTEST_UNSET}",
         "t.yaml:3:13: postgres.conninfo: environment variable SG_CFGTEST_UNSET is not set (write "
         "${SG_CFGTEST_UNSET:-default} to give a default)"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  conninfo: ${SG_CFGTEST_UNSET:-${SG_CFGTEST_SET}}",
         "t.yaml:3:13: postgres.conninfo: nested braces in \"${SG_CFGTEST_UNSET:-...}\" are not supported"},
        {"listeners: [{address: 127.0.0.1:0}\n",
         "t.yaml:2:1: (syntax): did not find expected ',' or ']' while parsing a flow sequence at line 1, column 12"},
        {"listeners: [{address: 127.0.0.1:0}]\n---\nworkers: 2",
         "t.yaml:2:1: (root): only one YAML document is allowed in a config file"},
        {"a: &a [*a]", "t.yaml:1:4: "
                       "a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]["
                       "0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                       "[0]: nesting deeper than 64 levels (recursive alias?)"},
        {"{[1]: 2}", "t.yaml:1:2: (root): a mapping key must be a plain string"},
        {"- 1", "t.yaml:1:1: (root): expected a mapping of settings, got a list"},
        {"listeners: [{address: 127.0.0.1:0}]\npostgres:\n  transitions: {sql: \"\"}",
         "t.yaml:3:22: postgres.transitions.sql: expected a non-empty SQL statement, got \"\""},
        {"listeners:\n  - name: api\n    mode: egress", "t.yaml:2:5: listeners[0].address: missing required key"},
        {"listeners: [{address: \"[::1]:0\"}, {address: \"[::1]:8080\", name: v6}]\nadmin: {address: "
         "\"[::1]:9464\"}\nupstreams:\n  p: {servers: [\"[::1]:3002\", \"[2001:db8::1]:3002\"]}\negress:\n  allow: "
         "[\"[::1]:70000\"]",
         "t.yaml:6:11: egress.allow[0]: expected a port from 1 to 65535 or *, got \"[::1]:70000\""},
    };
    return cr_make_param_array(bad_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(bad_case_t *c, config, bad_input_exact_message, .timeout = 10)
{
    setenv("SG_CFGTEST_SET", "x", 1);
    unsetenv("SG_CFGTEST_UNSET");
    load_fails(c->yaml, c->msg);
}

/* ---- ${ENV} in the loader ---- */

Test(config, env_expansion_in_values, .timeout = 10)
{
    setenv("SG_CFGTEST_PORT", "18080", 1);
    setenv("SG_CFGTEST_DSN", "host=/tmp dbname=t", 1);
    setenv("SG_CFGTEST_EMPTY", "", 1);
    unsetenv("SG_CFGTEST_UNSET");
    sg_config_t *cfg = load_ok("listeners: [{address: \"127.0.0.1:${SG_CFGTEST_PORT}\"}]\n"
                               "postgres:\n"
                               "  conninfo: ${SG_CFGTEST_DSN}\n"
                               "  interval: ${SG_CFGTEST_UNSET:-20s}\n"
                               "trace:\n"
                               "  header: ${SG_CFGTEST_EMPTY:-X-Request-Trace}\n"
                               "  export:\n"
                               "    otlp_http: ${SG_CFGTEST_UNSET:-}\n"
                               "log:\n"
                               "  access: \"${SG_CFGTEST_UNSET:-/var/log/a.log}\"\n"
                               "egress:\n"
                               "  auth_user: u\n"
                               "  auth_password: 'p$${x}$'\n");
    cr_assert_eq(cfg->listeners[0].addr.port, 18080);
    cr_assert_str_eq(cfg->postgres.conninfo, "host=/tmp dbname=t");
    cr_assert_eq(cfg->postgres.interval_ms, 20000);
    cr_assert_str_eq(cfg->trace.header, "X-Request-Trace", "empty value takes the default");
    cr_assert_eq(cfg->trace.export.format, SG_EXPORT_NONE, "empty default turns export off");
    cr_assert_str_eq(cfg->log.access, "/var/log/a.log");
    cr_assert_str_eq(cfg->egress.auth_password, "p${x}$");
    sg_config_free(cfg);
}

Test(config, env_not_expanded_in_keys, .timeout = 10)
{
    setenv("SG_CFGTEST_SET", "workers", 1);
    load_fails(L0 "${SG_CFGTEST_SET}: 2\n", "t.yaml:2:1: ${SG_CFGTEST_SET}: unknown key");
}

Test(config, env_value_is_not_yaml, .timeout = 10)
{
    /* An expanded value is text: it cannot open a mapping or a list. */
    setenv("SG_CFGTEST_SET", "{a: 1}", 1);
    load_fails(L0 "trace: {header: \"${SG_CFGTEST_SET}\"}\n",
               "t.yaml:2:17: trace.header: expected an HTTP header name (RFC 9110 token characters), got \"{a: 1}\"");
}

/* ---- IPv6 and egress rules ---- */

Test(config, ipv6_addresses, .timeout = 10)
{
    sg_config_t *cfg = load_ok("listeners:\n"
                               "  - {address: \"[::]:0\"}\n"
                               "  - {address: \"[::1]:18081\", name: v6}\n"
                               "admin: {address: \"[::1]:0\"}\n"
                               "upstreams:\n"
                               "  p: {servers: [\"[2001:db8::10]:3002\", \"[::ffff:127.0.0.1]:3003\"]}\n");
    cr_assert_str_eq(cfg->listeners[0].addr.host, "::");
    cr_assert_eq(cfg->listeners[0].addr.port, 0);
    cr_assert(cfg->listeners[0].addr.is_ipv6_literal);
    cr_assert_str_eq(cfg->listeners[1].addr.host, "::1");
    cr_assert_eq(cfg->listeners[1].addr.port, 18081);
    cr_assert_str_eq(cfg->admin.addr.host, "::1");
    cr_assert_str_eq(cfg->upstreams[0].servers[0].host, "2001:db8::10");
    cr_assert_eq(cfg->upstreams[0].servers[0].port, 3002);
    cr_assert_str_eq(cfg->upstreams[0].servers[1].host, "::ffff:127.0.0.1");
    sg_config_free(cfg);
}

static void assert_cidr(const sg_egress_rule_t *r, int family, const char *addr_hex, unsigned plen, uint16_t port)
{
    cr_assert(r->has_cidr, "%s", r->text);
    cr_assert_null(r->host);
    cr_assert_eq(r->net.ss_family, family, "%s", r->text);
    cr_assert_eq(r->prefix_len, plen, "%s", r->text);
    cr_assert_eq(r->port, port, "%s", r->text);
    const unsigned char *b = family == AF_INET
                                 ? (const unsigned char *)&((const struct sockaddr_in *)&r->net)->sin_addr
                                 : (const unsigned char *)&((const struct sockaddr_in6 *)&r->net)->sin6_addr;
    char hex[40] = "";
    for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    cr_assert_str_eq(hex, addr_hex, "%s", r->text);
}

Test(config, egress_rule_forms, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "egress:\n"
                                  "  allow:\n"
                                  "    - API.Example.com:443\n"
                                  "    - \"*.example.org:8443\"\n"
                                  "    - pypi.org\n"
                                  "    - files.example.net:*\n"
                                  "    - 10.0.0.0/8\n"
                                  "    - 10.1.0.0/16:443\n"
                                  "    - fd00::/8\n"
                                  "    - fd00::/8:443\n"
                                  "    - \"[fd00::/16]:80\"\n"
                                  "    - \"[::1]:5432\"\n"
                                  "    - \"::1\"\n"
                                  "    - 192.168.1.5:22\n"
                                  "    - {host: registry.npmjs.org, port: 443}\n"
                                  "    - {cidr: 172.16.0.0/12, port: \"*\"}\n"
                                  "    - {host: \"*.corp.example\"}\n");
    const sg_egress_rule_t *a = cfg->egress.allow;
    cr_assert_eq(cfg->egress.n_allow, 15);
    cr_assert_str_eq(a[0].host, "api.example.com");
    cr_assert_eq(a[0].port, 443);
    cr_assert_not(a[0].has_cidr);
    cr_assert_str_eq(a[0].text, "API.Example.com:443");
    cr_assert_str_eq(a[1].host, "*.example.org");
    cr_assert_eq(a[1].port, 8443);
    cr_assert_str_eq(a[2].host, "pypi.org");
    cr_assert_eq(a[2].port, 0);
    cr_assert_str_eq(a[3].host, "files.example.net");
    cr_assert_eq(a[3].port, 0);
    assert_cidr(&a[4], AF_INET, "0a000000", 8, 0);
    assert_cidr(&a[5], AF_INET, "0a010000", 16, 443);
    assert_cidr(&a[6], AF_INET6, "fd000000000000000000000000000000", 8, 0);
    assert_cidr(&a[7], AF_INET6, "fd000000000000000000000000000000", 8, 443);
    assert_cidr(&a[8], AF_INET6, "fd000000000000000000000000000000", 16, 80);
    assert_cidr(&a[9], AF_INET6, "00000000000000000000000000000001", 128, 5432);
    assert_cidr(&a[10], AF_INET6, "00000000000000000000000000000001", 128, 0);
    assert_cidr(&a[11], AF_INET, "c0a80105", 32, 22);
    cr_assert_str_eq(a[12].host, "registry.npmjs.org");
    cr_assert_eq(a[12].port, 443);
    cr_assert_str_eq(a[12].text, "registry.npmjs.org:443");
    assert_cidr(&a[13], AF_INET, "ac100000", 12, 0);
    cr_assert_str_eq(a[14].host, "*.corp.example");
    cr_assert_eq(a[14].port, 0);
    sg_config_free(cfg);
}

/* ---- YAML features and guards ---- */

Test(config, anchors_and_aliases, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0 "upstreams:\n"
                                  "  a: &common {servers: [127.0.0.1:1], keepalive: 7}\n"
                                  "  b: *common\n");
    cr_assert_eq(cfg->n_upstreams, 2);
    cr_assert_eq(cfg->upstreams[1].keepalive, 7);
    cr_assert_str_eq(cfg->upstreams[1].name, "b");
    sg_config_free(cfg);
}

Test(config, recursive_alias_refused, .timeout = 10)
{
    sg_config_t *cfg = NULL;
    char err[1024] = "";
    static const char yaml[] = "a: &a [*a]\n";
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), -1);
    cr_assert(strstr(err, "t.yaml:1:") == err, "%s", err);
    cr_assert(strstr(err, "nesting deeper than 64 levels"), "%s", err);
}

Test(config, alias_bomb_refused, .timeout = 10)
{
    static const char yaml[] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                               "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                               "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                               "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                               "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                               "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    sg_config_t *cfg = NULL;
    char err[512] = "";
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), -1);
    cr_assert(strstr(err, "document too large"), "%s", err);
}

Test(config, nul_in_value_refused, .timeout = 10)
{
    load_fails(L0 "trace: {header: \"X\\0Y\"}\n", "t.yaml:2:17: trace.header: NUL character in a value");
}

/* ---- files, refcounts ---- */

Test(config, load_missing_file, .timeout = 10)
{
    sg_config_t *cfg = (sg_config_t *)(uintptr_t)1;
    char err[512];
    cr_assert_eq(sg_config_load("/nonexistent/swarmgate.yaml", &cfg, err, sizeof(err)), -1);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, "/nonexistent/swarmgate.yaml: cannot open: No such file or directory");
}

Test(config, file_errors_name_the_file, .timeout = 10)
{
    char path[] = "/tmp/sg_cfgtest_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    static const char yaml[] = "listeners:\n  - address: 127.0.0.1:0\n    mode: sideways\n";
    cr_assert_eq(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    sg_config_t *cfg = NULL;
    char err[512], want[512];
    cr_assert_eq(sg_config_load(path, &cfg, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3:11: listeners[0].mode: expected one of reverse, egress, got \"sideways\"", path);
    unlink(path);
    cr_assert_str_eq(err, want);
}

Test(config, retain_release_frees_at_zero, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0);
    cr_assert_eq(sg_config_retain(cfg), cfg);
    cr_assert_eq(atomic_load(&cfg->refcount), 2);
    sg_config_release(cfg);
    cr_assert_eq(atomic_load(&cfg->refcount), 1);
    sg_config_release(cfg); /* frees: ASan reports a leak otherwise */
    sg_config_release(NULL);
}

Test(config, small_error_buffer_truncates, .timeout = 10)
{
    sg_config_t *cfg = NULL;
    char err[16];
    static const char yaml[] = "workers: many\n";
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "t.yaml:1:10: wo");
}

Test(config, enum_names, .timeout = 5)
{
    cr_assert_str_eq(sg_listener_mode_name(SG_LISTENER_EGRESS), "egress");
    cr_assert_str_eq(sg_balance_name(SG_BALANCE_LEAST_IN_FLIGHT), "least_in_flight");
    cr_assert_str_eq(sg_log_level_name(SG_LOG_WARN), "warn");
}

/* ---- docs: every schema key has a row in docs/configuration.md ---- */

Test(config, every_schema_key_is_documented, .timeout = 10)
{
    const char *keys[512];
    size_t n = sg_config_schema_keys(keys, 512);
    cr_assert_gt(n, 100);
    cr_assert_leq(n, 512);
    cr_assert_eq(sg_config_schema_keys(NULL, 0), n);
    FILE *f = fopen(SG_SOURCE_DIR "/docs/configuration.md", "rb");
    cr_assert_not_null(f);
    static char doc[256 * 1024];
    size_t len = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[len] = '\0';
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        char want[300];
        snprintf(want, sizeof(want), "| `%s` |", keys[i]);
        if (!strstr(doc, want)) {
            cr_log_error("not documented: %s", want);
            missing++;
        }
    }
    cr_assert_eq(missing, 0, "%d schema keys have no table row in docs/configuration.md", missing);
}

Test(config, schema_keys_shape, .timeout = 5)
{
    const char *keys[512];
    size_t n = sg_config_schema_keys(keys, 512);
    bool seen_ct = false, seen_prefix = false, seen_cidr = false;
    for (size_t i = 0; i < n; i++) {
        seen_ct |= strcmp(keys[i], "upstreams.<name>.connect_timeout") == 0;
        seen_prefix |= strcmp(keys[i], "routes[].match.prefix") == 0;
        seen_cidr |= strcmp(keys[i], "egress.allow[].cidr") == 0;
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(keys[i], keys[j]);
    }
    cr_assert(seen_ct && seen_prefix && seen_cidr);
}

/* Section fingerprints: what a reload compares (sg_control_on_reload). */
Test(config, section_fingerprints_follow_content_not_layout, .timeout = 10)
{
    const char *base = "listeners: [{name: a, address: \"127.0.0.1:1\"}]\n"
                       "postgres: {conninfo: \"dbname=a\", interval: 5s}\n"
                       "trace: {header: X-Trace-Id, export: {otlp_http: \"http://127.0.0.1:4318\"}}\n";
    const char *relaid = "# a comment\nlisteners: [{name: a, address: \"127.0.0.1:1\"}]\n"
                         "trace:\n  export:\n    otlp_http: \"http://127.0.0.1:4318\"\n  header: X-Trace-Id\n"
                         "postgres:\n  conninfo: \"dbname=a\"   # same\n  interval: 5s\n";
    const char *pg_changed = "listeners: [{name: a, address: \"127.0.0.1:1\"}]\n"
                             "postgres: {conninfo: \"dbname=a\", interval: 6s}\n"
                             "trace: {header: X-Trace-Id, export: {otlp_http: \"http://127.0.0.1:4318\"}}\n";
    const char *export_changed = "listeners: [{name: a, address: \"127.0.0.1:1\"}]\n"
                                 "postgres: {conninfo: \"dbname=a\", interval: 5s}\n"
                                 "trace: {header: X-Request-Id, export: {otlp_http: \"http://127.0.0.1:4319\"}}\n";
    const char *header_only = "listeners: [{name: a, address: \"127.0.0.1:1\"}]\n"
                              "postgres: {conninfo: \"dbname=a\", interval: 5s}\n"
                              "trace: {header: X-Request-Id, export: {otlp_http: \"http://127.0.0.1:4318\"}}\n";
    sg_config_t *a = load_ok(base), *b = load_ok(relaid), *c = load_ok(pg_changed), *d = load_ok(export_changed),
                *e = load_ok(header_only), *none = load_ok("listeners: [{name: a, address: \"127.0.0.1:1\"}]\n");
    cr_expect_neq(a->fp_postgres, 0);
    cr_expect_neq(a->fp_trace_export, 0);
    cr_expect_eq(none->fp_postgres, 0, "absent section");
    cr_expect_eq(none->fp_trace_export, 0);
    cr_expect_eq(a->fp_postgres, b->fp_postgres, "comments and layout do not count");
    cr_expect_eq(a->fp_trace_export, b->fp_trace_export);
    cr_expect_neq(a->fp_postgres, c->fp_postgres, "a changed value counts");
    cr_expect_eq(a->fp_trace_export, c->fp_trace_export);
    cr_expect_eq(a->fp_postgres, d->fp_postgres);
    cr_expect_neq(a->fp_trace_export, d->fp_trace_export);
    cr_expect_eq(a->fp_trace_export, e->fp_trace_export, "trace.header is outside trace.export");
    sg_config_free(a);
    sg_config_free(b);
    sg_config_free(c);
    sg_config_free(d);
    sg_config_free(e);
    sg_config_free(none);
}

Test(config, shipped_config_listens_on_loopback_only, .timeout = 10)
{
    /* A first `swarmgate --config config/swarmgate.yaml` opens nothing to the network (the egress
     * listener is a forward proxy); docs/configuration.md says how to listen on all interfaces. */
    unset_example_env();
    sg_config_t *cfg = NULL;
    char err[512] = "";
    cr_assert_eq(sg_config_load(SG_SOURCE_DIR "/config/swarmgate.yaml", &cfg, err, sizeof(err)), 0, "%s", err);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        cr_expect_str_eq(cfg->listeners[i].addr.host, "127.0.0.1", "listeners[%zu]", i);
    cr_expect_str_eq(cfg->admin.addr.host, "127.0.0.1");
    sg_config_free(cfg);
}

/* ---- every error of a load (--check-config) ---- */

static sg_config_errors_t g_errs; /* 26 KiB */

static void load_fails_all(const char *yaml)
{
    sg_config_t *cfg = (sg_config_t *)(uintptr_t)1;
    int rc = sg_config_load_string_all("t.yaml", yaml, strlen(yaml), &cfg, &g_errs);
    cr_assert_eq(rc, -1, "should fail: %s", yaml);
    cr_assert_null(cfg);
}

Test(config, every_error_is_reported_in_file_order, .timeout = 10)
{
    static const char yaml[] = "workers: lots\n"                                          /* 1 */
                               "listeners:\n"                                             /* 2 */
                               "  - {address: 127.0.0.1:0, mode: sideways}\n"             /* 3 */
                               "  - {adress: 127.0.0.1:1}\n"                              /* 4 */
                               "upstreams:\n"                                             /* 5 */
                               "  platform: {servers: [127.0.0.1:3002], keepalive: -1}\n" /* 6 */
                               "routes:\n"                                                /* 7 */
                               "  - {match: {prefix: /api/}, upstream: platfrom}\n"       /* 8 */
                               "trace: {header: 'X Trace'}\n"                             /* 9 */
                               "shutdown: {drain_delay: soon}\n";                         /* 10 */
    load_fails_all(yaml);
    const char *want[] = {
        "t.yaml:1:10: workers: expected auto or a number from 1 to 256, got \"lots\"",
        "t.yaml:3:34: listeners[0].mode: expected one of reverse, egress, got \"sideways\"",
        "t.yaml:4:6: listeners[1].adress: unknown key (did you mean \"address\"?)",
        "t.yaml:6:52: upstreams.platform.keepalive: expected an integer from 0 to 100000, got \"-1\"",
        "t.yaml:8:40: routes[0].upstream: no upstream named \"platfrom\" in upstreams",
        "t.yaml:9:17: trace.header: expected an HTTP header name",
        "t.yaml:10:25: shutdown.drain_delay: expected a duration",
    };
    size_t nw = sizeof(want) / sizeof(want[0]);
    for (size_t i = 0; i < g_errs.n; i++)
        cr_log_info("%s", g_errs.msg[i].text);
    cr_assert_eq(g_errs.n, nw, "got %zu errors", g_errs.n);
    cr_assert_eq(g_errs.n_total, nw);
    for (size_t i = 0; i < nw; i++)
        cr_expect(strncmp(g_errs.msg[i].text, want[i], strlen(want[i])) == 0, "error %zu: %s\nwant: %s", i,
                  g_errs.msg[i].text, want[i]);
}

Test(config, single_error_api_keeps_the_first_error, .timeout = 10)
{
    /* sg_config_load_string's one message is the first error found, as before. */
    load_fails(L0 "trace: {header: 'X Trace'}\nshutdown: {drain_delay: soon, bogus: 1}\n",
               "t.yaml:2:17: trace.header: expected an HTTP header name (RFC 9110 token characters), got \"X Trace\"");
}

Test(config, a_misspelt_required_key_is_one_error, .timeout = 10)
{
    load_fails_all("listeners: [{adress: 127.0.0.1:0}]\n");
    cr_assert_eq(g_errs.n, 1, "%s", g_errs.n > 1 ? g_errs.msg[1].text : "");
    cr_assert_str_eq(g_errs.msg[0].text, "t.yaml:1:14: listeners[0].adress: unknown key (did you mean \"address\"?)");
}

Test(config, a_broken_section_skips_its_cross_key_checks, .timeout = 10)
{
    /* The route's bad prefix is reported; its upstream name is checked only when the route is otherwise valid,
     * and two broken listeners on one address report their own errors, not the clash. */
    load_fails_all("listeners:\n  - {address: 127.0.0.1:8080, backlog: 0}\n  - {address: 127.0.0.1:8080}\n"
                   "routes: [{match: {prefix: api}, upstream: nothere}]\n");
    for (size_t i = 0; i < g_errs.n; i++)
        cr_log_info("%s", g_errs.msg[i].text);
    cr_assert_eq(g_errs.n, 2);
    cr_expect(strstr(g_errs.msg[0].text, "listeners[0].backlog") != NULL, "%s", g_errs.msg[0].text);
    cr_expect(strstr(g_errs.msg[1].text, "routes[0].match.prefix") != NULL, "%s", g_errs.msg[1].text);
}

Test(config, errors_are_bounded, .timeout = 10)
{
    static char yaml[16384];
    size_t o = (size_t)snprintf(yaml, sizeof(yaml), L0 "upstreams:\n");
    for (int i = 0; i < 80; i++)
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "  u%d: {servers: [127.0.0.1:1], keepalive: x}\n", i);
    load_fails_all(yaml);
    cr_assert_eq(g_errs.n, SG_CONFIG_MAX_ERRORS);
    cr_assert_eq(g_errs.n_total, 80);
    cr_assert(strstr(g_errs.msg[0].text, "t.yaml:3:") == g_errs.msg[0].text, "%s", g_errs.msg[0].text);
}

Test(config, a_file_that_cannot_be_read_is_one_error, .timeout = 10)
{
    sg_config_t *cfg = NULL;
    cr_assert_eq(sg_config_load_all("/nonexistent/sg.yaml", &cfg, &g_errs), -1);
    cr_assert_eq(g_errs.n, 1);
    cr_assert(strstr(g_errs.msg[0].text, "/nonexistent/sg.yaml: cannot open") != NULL, "%s", g_errs.msg[0].text);
}

Test(config, a_syntax_error_is_the_only_error, .timeout = 10)
{
    load_fails_all("workers: [1\nlisteners: x\n");
    cr_assert_eq(g_errs.n, 1);
    cr_assert(strstr(g_errs.msg[0].text, "(syntax)") != NULL, "%s", g_errs.msg[0].text);
}

/* ---- egress agents (per-agent accounting) ---- */

Test(config, egress_agent_defaults, .timeout = 10)
{
    sg_config_t *cfg = load_ok(L0);
    cr_assert_eq(cfg->egress.n_users, 0);
    cr_assert_null(cfg->egress.users_file);
    cr_assert_str_eq(cfg->egress.agent_header, "X-Agent-Id");
    cr_assert_eq(cfg->egress.max_agents, 256);
    cr_assert_eq(cfg->egress.rate_limit.requests_per_second, 0, "off by default");
    sg_config_free(cfg);

    cfg = load_ok(L0 "egress:\n  users: [{name: agent-1, password: a}, {name: Agent_2.x, password: \"b:c\"}]\n"
                     "  agent_header: X-Swarm-Agent\n  max_agents: 8\n  rate_limit: {requests_per_second: 2.5}\n");
    cr_assert_eq(cfg->egress.n_users, 2);
    cr_assert_str_eq(cfg->egress.users[1].name, "Agent_2.x");
    cr_assert_str_eq(cfg->egress.users[1].password, "b:c");
    cr_assert_str_eq(cfg->egress.agent_header, "X-Swarm-Agent");
    cr_assert_eq(cfg->egress.max_agents, 8);
    cr_assert_eq(cfg->egress.rate_limit.requests_per_second, 2.5);
    cr_assert_eq(cfg->egress.rate_limit.burst, 3, "burst defaults to a second's worth, rounded up");
    sg_config_free(cfg);

    cfg = load_ok(L0 "egress: {rate_limit: {requests_per_second: 0.1, burst: 5}}\n");
    cr_assert_eq(cfg->egress.rate_limit.burst, 5);
    sg_config_free(cfg);
    cfg = load_ok(L0 "egress: {rate_limit: {requests_per_second: 0.1}}\n");
    cr_assert_eq(cfg->egress.rate_limit.burst, 1, "at least one request");
    sg_config_free(cfg);
}

Test(config, egress_user_errors, .timeout = 10)
{
    load_fails(L0 "egress: {users: [{name: a, password: x}, {name: b, password: y}, {name: a, password: z}]}\n",
               "t.yaml:2:73: egress.users[2].name: duplicate name \"a\" (also used by item 0)");
    load_fails(L0 "egress: {users: [{name: \"bad name\", password: x}]}\n",
               "t.yaml:2:25: egress.users[0].name: expected an agent name of 1 to 64 letters, digits and . _ -, got "
               "\"bad name\"");
    load_fails(L0 "egress: {users: [{name: other, password: x}]}\n",
               "t.yaml:2:25: egress.users[0].name: expected an agent name other than \"unknown\" and \"other\" (the "
               "agent label's own values), got \"other\"");
    load_fails(L0 "egress: {users: [{name: a}]}\n", "t.yaml:2:18: egress.users[0].password: missing required key");
    load_fails(L0 "egress: {users: [{name: a, password: \"\"}]}\n",
               "t.yaml:2:38: egress.users[0].password: expected a non-empty string, got \"\"");
    load_fails(L0 "egress: {auth_user: a, auth_password: p, users: [{name: a, password: x}]}\n",
               "t.yaml:2:21: egress.auth_user: \"a\" is also an agent in egress.users");
    load_fails(L0 "egress: {agent_header: \"X Agent\"}\n",
               "t.yaml:2:24: egress.agent_header: expected an HTTP header name (RFC 9110 token characters), got "
               "\"X Agent\"");
    load_fails(L0 "egress: {agent_header: Proxy-Agent}\n",
               "t.yaml:2:24: egress.agent_header: expected a header name that is not a Proxy-* field, got "
               "\"Proxy-Agent\"");
    load_fails(L0 "egress: {max_agents: 0}\n",
               "t.yaml:2:22: egress.max_agents: expected an integer from 1 to 4096, got \"0\"");
    load_fails(L0 "egress: {rate_limit: {requests_per_second: -1}}\n",
               "t.yaml:2:44: egress.rate_limit.requests_per_second: expected a number from 0 to 1e+06, got \"-1\"");
}

/* Writes `text` to a users file next to a config that names it; returns
 * the load's error ("" when it loaded). */
static void users_file_case(const char *text, mode_t mode, const char *users_yaml, char *err, size_t cap,
                            sg_config_t **out)
{
    char dir[] = "/tmp/sg_users_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char upath[256], cpath[256];
    snprintf(upath, sizeof(upath), "%s/agents.txt", dir);
    snprintf(cpath, sizeof(cpath), "%s/sg.yaml", dir);
    FILE *f = fopen(upath, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    chmod(upath, mode);
    f = fopen(cpath, "w");
    cr_assert_not_null(f);
    fprintf(f, L0 "egress:\n  users_file: agents.txt\n%s", users_yaml);
    fclose(f);
    err[0] = '\0';
    *out = NULL;
    if (sg_config_load(cpath, out, err, cap) == 0)
        err[0] = '\0';
    /* messages name the paths: cut the temporary directory out */
    char tmp[1024];
    size_t o = 0, dl = strlen(dir);
    for (const char *p = err; *p && o + 1 < sizeof(tmp);) {
        if (strncmp(p, dir, dl) == 0) {
            tmp[o++] = '@';
            p += dl;
        } else {
            tmp[o++] = *p++;
        }
    }
    tmp[o] = '\0';
    snprintf(err, cap, "%s", tmp);
    unlink(upath);
    unlink(cpath);
    rmdir(dir);
}

Test(config, egress_users_file, .timeout = 10)
{
    char err[1024];
    sg_config_t *cfg;
    users_file_case("# agents\nscout:pw1\n\nbuilder:p:w:2\r\n", 0600, "  users: [{name: lead, password: x}]\n", err,
                    sizeof(err), &cfg);
    cr_assert_str_eq(err, "");
    cr_assert_eq(cfg->egress.n_users, 3, "the list, then the file");
    cr_assert_str_eq(cfg->egress.users[0].name, "lead");
    cr_assert_str_eq(cfg->egress.users[1].name, "scout");
    cr_assert_str_eq(cfg->egress.users[1].password, "pw1");
    cr_assert_str_eq(cfg->egress.users[2].name, "builder");
    cr_assert_str_eq(cfg->egress.users[2].password, "p:w:2", "the rest of the line, CR dropped");
    sg_config_free(cfg);

    users_file_case("scout:pw1\nscout:pw2\n", 0600, "", err, sizeof(err), &cfg);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt:2: duplicate user \"scout\" (also earlier "
                          "in the file)");
    users_file_case("lead:pw1\n", 0600, "  users: [{name: lead, password: x}]\n", err, sizeof(err), &cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt:1: duplicate user \"lead\" (also in "
                          "egress.users)");
    users_file_case("scout\n", 0600, "", err, sizeof(err), &cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt:1: expected name:password");
    users_file_case("scout:\n", 0600, "", err, sizeof(err), &cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt:1: expected name:password");
    users_file_case("sc out:pw\n", 0600, "", err, sizeof(err), &cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt:1: expected an agent name of 1 to 64 "
                          "letters, digits and . _ -, got \"sc out\"");
    users_file_case("scout:pw\n", 0644, "", err, sizeof(err), &cfg);
    cr_assert_str_eq(err, "@/sg.yaml:3:15: egress.users_file: @/agents.txt is readable or writable by group or "
                          "others (it holds passwords: chmod 600 it)");
}
