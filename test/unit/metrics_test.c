#include "sg/metrics.h"

#include "obs/metrics_int.h"
#include "sg/runtime.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- a config built by hand ---------------------------------------------- */

typedef struct test_cfg {
    sg_config_t cfg;
    sg_route_conf_t routes[16];
    sg_upstream_conf_t ups[8];
    sg_hostport_t servers[8][3];
    sg_listener_conf_t listeners[2];
    char names[64][32];
    double req_bounds[32];
} test_cfg_t;

static const double small_bounds[] = {0.0005, 0.001, 0.1, 0.3, 1};

static test_cfg_t *make_cfg(size_t n_routes, size_t n_ups, const double *bounds, size_t n_bounds)
{
    test_cfg_t *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    size_t k = 0;
    for (size_t u = 0; u < n_ups; u++) {
        snprintf(t->names[k], sizeof(t->names[k]), "up%zu", u);
        t->ups[u].name = t->names[k++];
        for (size_t s = 0; s < 3; s++) {
            t->servers[u][s].host = s == 2 ? "::1" : "127.0.0.1";
            t->servers[u][s].is_ipv6_literal = s == 2;
            t->servers[u][s].is_ip_literal = true;
            t->servers[u][s].port = (uint16_t)(3000 + u * 10 + s);
        }
        t->ups[u].servers = t->servers[u];
        t->ups[u].n_servers = 3;
    }
    for (size_t r = 0; r < n_routes; r++) {
        snprintf(t->names[k], sizeof(t->names[k]), "route%zu", r);
        t->routes[r].name = t->names[k++];
        t->routes[r].upstream_idx = n_ups ? r % n_ups : 0;
    }
    t->listeners[0].name = "api";
    t->listeners[1].name = "egress";
    t->cfg.routes = t->routes;
    t->cfg.n_routes = n_routes;
    t->cfg.upstreams = t->ups;
    t->cfg.n_upstreams = n_ups;
    t->cfg.listeners = t->listeners;
    t->cfg.n_listeners = 2;
    t->cfg.metrics.error_rate_window_ms = 300000;
    t->cfg.metrics.error_rate_resolution_ms = 1000;
    t->cfg.metrics.exemplars = true;
    if (bounds) {
        memcpy(t->req_bounds, bounds, n_bounds * sizeof(double));
        t->cfg.metrics.request_buckets.bounds = t->req_bounds;
        t->cfg.metrics.request_buckets.n = n_bounds;
    }
    return t;
}

static sg_trace_ctx_t trace_with(const char *id)
{
    sg_trace_ctx_t tc;
    memset(&tc, 0, sizeof(tc));
    strcpy(tc.trace_id, id);
    return tc;
}

static sg_reqrec_t req(int32_t route, sg_method_t method, uint16_t status, uint64_t dur_ns, const sg_trace_ctx_t *tc)
{
    sg_reqrec_t r;
    memset(&r, 0, sizeof(r));
    r.start_ns = 1000000000ull * 1000;
    r.end_ns = r.start_ns + dur_ns;
    r.start_unix_ns = 1700000000000000000ull;
    r.route_idx = route;
    r.upstream_idx = -1;
    r.server_idx = -1;
    r.method = method;
    r.status = status;
    r.trace = tc;
    return r;
}

static char *render(sg_metrics_t *m, sg_expose_format_t f, uint64_t now_ms)
{
    sg_expose_t x;
    sg_expose_init(&x, f);
    sg_metrics_render(m, &x, now_ms);
    int rc = sg_expose_finish(&x);
    cr_assert_eq(rc, 0);
    char *s = malloc(x.len + 1);
    cr_assert_not_null(s);
    memcpy(s, x.data, x.len);
    s[x.len] = '\0';
    sg_expose_destroy(&x);
    return s;
}

/* Value of the sample line that starts with `prefix` + ' ' (NAN if absent). */
static double value_of(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, prefix, pl) == 0 && p[pl] == ' ')
            return strtod(p + pl + 1, NULL);
    }
    return NAN;
}

static bool has_line_prefix(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0)
            return true;
    return false;
}

/* ---- buckets ---------------------------------------------------------------- */

Test(metrics, bound_ns_matches_float_compare, .timeout = 5)
{
    cr_assert_eq(sg__metrics_bound_ns(0.0005), 500000);
    cr_assert_eq(sg__metrics_bound_ns(0.1), 100000000);
    cr_assert_eq(sg__metrics_bound_ns(0.3), 300000000);
    cr_assert_eq(sg__metrics_bound_ns(300), 300000000000ll);
    cr_assert_eq(sg__metrics_bound_ns(0), 0);
    cr_assert_eq(sg__metrics_bound_ns(-1), -1);
    cr_assert_eq(sg__metrics_bound_ns(1e300), INT64_MAX);
    /* 1.5 ns: 1 ns fits, 2 ns does not */
    cr_assert_eq(sg__metrics_bound_ns(1.5e-9), 1);
    const double odd[] = {0.007, 0.0123456789, 2.2, 17.3, 0.3333333333};
    for (size_t i = 0; i < SG_ARRAY_SIZE(odd); i++) {
        int64_t n = sg__metrics_bound_ns(odd[i]);
        cr_assert((double)n / 1e9 <= odd[i]);
        cr_assert((double)(n + 1) / 1e9 > odd[i]);
    }
}

Test(metrics, bucket_le_is_inclusive, .timeout = 5)
{
    int64_t b[SG_ARRAY_SIZE(small_bounds)];
    for (size_t i = 0; i < SG_ARRAY_SIZE(small_bounds); i++)
        b[i] = sg__metrics_bound_ns(small_bounds[i]);
    size_t n = SG_ARRAY_SIZE(small_bounds);
    cr_assert_eq(sg__metrics_bucket(b, n, 0), 0);
    cr_assert_eq(sg__metrics_bucket(b, n, 500000), 0);
    cr_assert_eq(sg__metrics_bucket(b, n, 500001), 1);
    cr_assert_eq(sg__metrics_bucket(b, n, 1000000), 1);
    cr_assert_eq(sg__metrics_bucket(b, n, 100000000), 2);
    cr_assert_eq(sg__metrics_bucket(b, n, 300000000), 3);
    cr_assert_eq(sg__metrics_bucket(b, n, 300000001), 4);
    cr_assert_eq(sg__metrics_bucket(b, n, 1000000000), 4);
    cr_assert_eq(sg__metrics_bucket(b, n, 1000000001), 5);
    cr_assert_eq(sg__metrics_bucket(b, n, UINT64_MAX), 5);
}

Test(metrics, histogram_edges_sum_count_rendered, .timeout = 10)
{
    test_cfg_t *t = make_cfg(2, 1, small_bounds, SG_ARRAY_SIZE(small_bounds));
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    sg_trace_ctx_t tc = trace_with("0af7651e-6b3c-4a7e-8f6c-1e1d2a3b4c5d");
    const uint64_t durs[] = {500000, 500001, 300000000, 300000000, 1000000000, 2000000000};
    uint64_t sum = 0;
    for (size_t i = 0; i < SG_ARRAY_SIZE(durs); i++) {
        sg_reqrec_t r = req(1, SG_METHOD_POST, 200, durs[i], &tc);
        sg_metrics_record_request(s, &r);
        sum += durs[i];
    }
    char *out = render(m, SG_EXPOSE_TEXT, 0);
#define B(le) "swarm_http_request_duration_seconds_bucket{route=\"route1\",method=\"POST\",le=\"" le "\"}"
    cr_assert_eq(value_of(out, B("0.0005")), 1, "%s", out);
    cr_assert_eq(value_of(out, B("0.001")), 2);
    cr_assert_eq(value_of(out, B("0.1")), 2);
    cr_assert_eq(value_of(out, B("0.3")), 4);
    cr_assert_eq(value_of(out, B("1")), 5);
    cr_assert_eq(value_of(out, B("+Inf")), 6);
#undef B
    cr_assert_eq(value_of(out, "swarm_http_request_duration_seconds_count{route=\"route1\",method=\"POST\"}"), 6);
    cr_assert_eq(value_of(out, "swarm_http_request_duration_seconds_sum{route=\"route1\",method=\"POST\"}"),
                 (double)sum / 1e9);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"route1\",method=\"POST\",code=\"200\"}"), 6);
    /* zero series are not written */
    cr_assert(!strstr(out, "route=\"route0\""));
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- labels ----------------------------------------------------------------- */

Test(metrics, code_labels_bounded, .timeout = 5)
{
    cr_assert_str_eq(sg_metrics_code_label(200), "200");
    cr_assert_str_eq(sg_metrics_code_label(404), "404");
    cr_assert_str_eq(sg_metrics_code_label(502), "502");
    cr_assert_str_eq(sg_metrics_code_label(299), "2xx");
    cr_assert_str_eq(sg_metrics_code_label(418), "4xx");
    cr_assert_str_eq(sg_metrics_code_label(599), "5xx");
    cr_assert_str_eq(sg_metrics_code_label(0), "000");
    cr_assert_str_eq(sg_metrics_code_label(99), "other");
    cr_assert_str_eq(sg_metrics_code_label(600), "other");
    cr_assert_str_eq(sg_metrics_code_label(1000), "other");
}

Test(metrics, route_none_other_and_codes_in_render, .timeout = 10)
{
    test_cfg_t *t = make_cfg(2, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    sg_reqrec_t r = req(-1, SG_METHOD_GET, 404, 1000, NULL);
    sg_metrics_record_request(s, &r);
    r = req(7, SG_METHOD_OTHER, 418, 1000, NULL);
    sg_metrics_record_request(s, &r);
    r = req(0, (sg_method_t)42, 0, 1000, NULL);
    sg_metrics_record_request(s, &r);
    r = req(0, SG_METHOD_PATCH, 999, 1000, NULL);
    sg_metrics_record_request(s, &r);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"none\",method=\"GET\",code=\"404\"}"), 1, "%s", out);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"other\",method=\"OTHER\",code=\"4xx\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"route0\",method=\"OTHER\",code=\"000\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"route0\",method=\"PATCH\",code=\"other\"}"), 1);
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- shards --------------------------------------------------------------------- */

#define N_PER_THREAD 200000

typedef struct writer_arg {
    sg_metrics_shard_t *shard;
    int32_t route;
    _Atomic bool *go;
} writer_arg_t;

static void *writer_main(void *p)
{
    writer_arg_t *a = p;
    while (!atomic_load(a->go))
        ;
    for (int i = 0; i < N_PER_THREAD; i++) {
        sg_reqrec_t r = req(a->route, SG_METHOD_GET, i % 10 == 0 ? 503 : 200, 1000 + (uint64_t)i, NULL);
        r.upstream_idx = 0;
        r.upstream_start_ns = r.start_ns;
        r.upstream_head_ns = r.start_ns + 500;
        sg_metrics_inflight_inc(a->shard);
        sg_metrics_conn_open(a->shard, 0);
        sg_metrics_record_request(a->shard, &r);
        sg_metrics_trace_source(a->shard, SG_TRACE_SRC_GENERATED);
        sg_metrics_conn_close(a->shard, 0);
        sg_metrics_inflight_dec(a->shard);
    }
    return NULL;
}

static double total_get(const char *out)
{
    double a = value_of(out, "swarm_http_requests_total{route=\"route0\",method=\"GET\",code=\"200\"}");
    double b = value_of(out, "swarm_http_requests_total{route=\"route0\",method=\"GET\",code=\"503\"}");
    return (isnan(a) ? 0 : a) + (isnan(b) ? 0 : b);
}

Test(metrics, counters_merge_across_shards, .timeout = 60)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 2);
    cr_assert_not_null(m);
    _Atomic bool go = false;
    writer_arg_t args[2] = {{sg_metrics_worker_shard(m, 0), 0, &go}, {sg_metrics_worker_shard(m, 1), 0, &go}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, writer_main, &args[i]), 0);
    atomic_store(&go, true);
    /* the reader scrapes while the writers run: totals never go down */
    double last = 0;
    int scrapes = 0;
    for (; scrapes < 50; scrapes++) {
        char *out = render(m, SG_EXPOSE_TEXT, sg_now_ms());
        double v = total_get(out);
        cr_assert_geq(v, last);
        last = v;
        free(out);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(total_get(out), 2.0 * N_PER_THREAD);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"route0\",method=\"GET\",code=\"503\"}"),
                 2.0 * N_PER_THREAD / 10);
    cr_assert_eq(value_of(out, "swarm_http_request_duration_seconds_count{route=\"route0\",method=\"GET\"}"),
                 2.0 * N_PER_THREAD);
    cr_assert_eq(value_of(out, "swarm_upstream_response_duration_seconds_count{upstream=\"up0\"}"), 2.0 * N_PER_THREAD);
    cr_assert_eq(value_of(out, "swarm_trace_ids_total{source=\"generated\"}"), 2.0 * N_PER_THREAD);
    cr_assert_eq(value_of(out, "swarm_trace_ids_total{source=\"replaced\"}"), 0);
    cr_assert_eq(value_of(out, "swarm_http_requests_in_flight"), 0);
    cr_assert_eq(value_of(out, "swarm_http_connections_active{listener=\"api\"}"), 0);
    /* sum of durations: 2 x sum(1000 + i) ns */
    double want_sum = 2.0 * ((double)N_PER_THREAD * 1000 + (double)N_PER_THREAD * (N_PER_THREAD - 1) / 2) / 1e9;
    cr_assert_float_eq(value_of(out, "swarm_http_request_duration_seconds_sum{route=\"route0\",method=\"GET\"}"),
                       want_sum, 1e-9);
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

Test(metrics, gauges_are_signed_sums, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 2);
    cr_assert_not_null(m);
    sg_metrics_shard_t *a = sg_metrics_worker_shard(m, 0), *b = sg_metrics_worker_shard(m, 1);
    cr_assert_null(sg_metrics_worker_shard(m, 2));
    for (int i = 0; i < 5; i++)
        sg_metrics_conn_open(a, 1);
    for (int i = 0; i < 2; i++)
        sg_metrics_conn_close(b, 1); /* this shard alone is negative */
    sg_metrics_inflight_inc(a);
    sg_metrics_inflight_inc(a);
    sg_metrics_inflight_dec(b);
    sg_metrics_conn_open(a, 9); /* unknown listener -> "other" */
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_http_connections_active{listener=\"egress\"}"), 3, "%s", out);
    cr_assert_eq(value_of(out, "swarm_http_connections_active{listener=\"api\"}"), 0);
    cr_assert_eq(value_of(out, "swarm_http_connections_active{listener=\"other\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_http_requests_in_flight"), 1);
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- exemplars ------------------------------------------------------------------- */

typedef struct ex_arg {
    sg__exemplar_slot_t *slot;
    _Atomic bool done;
    uint64_t n;
} ex_arg_t;

/* id i written as a UUID-looking text whose digits encode i; value = i,
 * ts = 2i: a torn read shows up as a mismatch. */
static void id_for(uint64_t i, char out[37])
{
    snprintf(out, 37, "%08" PRIx64 "-0000-4000-8000-%012" PRIx64, i & 0xffffffffu, i);
}

static void *ex_writer(void *p)
{
    ex_arg_t *a = p;
    char id[37];
    for (uint64_t i = 1; i <= a->n; i++) {
        id_for(i, id);
        sg__exemplar_write(a->slot, id, i, 2 * i);
    }
    atomic_store(&a->done, true);
    return NULL;
}

Test(metrics, exemplar_seqlock_never_torn, .timeout = 60)
{
    sg__exemplar_slot_t *slot = aligned_alloc(64, sizeof(*slot));
    cr_assert_not_null(slot);
    memset(slot, 0, sizeof(*slot));
    char id[37];
    uint64_t v, ts;
    cr_assert(!sg__exemplar_read(slot, id, &v, &ts), "never written");
    ex_arg_t a = {.slot = slot, .n = 2000000};
    atomic_init(&a.done, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, ex_writer, &a), 0);
    uint64_t reads = 0, last = 0;
    while (!atomic_load(&a.done)) {
        if (!sg__exemplar_read(slot, id, &v, &ts))
            continue;
        char want[37];
        id_for(v, want);
        cr_assert_str_eq(id, want, "torn read: value %" PRIu64, v);
        cr_assert_eq(ts, 2 * v);
        cr_assert_geq(v, last);
        last = v;
        reads++;
    }
    pthread_join(th, NULL);
    cr_assert(sg__exemplar_read(slot, id, &v, &ts));
    cr_assert_eq(v, a.n);
    printf("exemplar seqlock: %" PRIu64 " consistent reads during %" PRIu64 " writes\n", reads, a.n);
    free(slot);
}

Test(metrics, exemplars_in_openmetrics_only, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 1, small_bounds, SG_ARRAY_SIZE(small_bounds));
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 2);
    cr_assert_not_null(m);
    sg_trace_ctx_t old = trace_with("11111111-1111-4111-8111-111111111111");
    sg_trace_ctx_t new = trace_with("22222222-2222-4222-8222-222222222222");
    sg_reqrec_t r = req(0, SG_METHOD_GET, 200, 250000000, &old); /* 0.25 s -> le 0.3 */
    sg_metrics_record_request(sg_metrics_worker_shard(m, 0), &r);
    r = req(0, SG_METHOD_GET, 200, 200000000, &new);
    r.start_unix_ns += 5000000000ull; /* later, on the other shard */
    sg_metrics_record_request(sg_metrics_worker_shard(m, 1), &r);

    char *om = render(m, SG_EXPOSE_OPENMETRICS, 0);
    cr_assert(strstr(om, "swarm_http_request_duration_seconds_bucket{route=\"route0\",method=\"GET\",le=\"0.3\"} 2 "
                         "# {trace_id=\"22222222222242228222222222222222\"} 0.2 1700000005.200\n"),
              "%s", om);
    cr_assert(strstr(om, "le=\"1.0\"} 2\n"), "no exemplar where nothing fell");
    size_t len = strlen(om);
    cr_assert(len > 6 && strcmp(om + len - 6, "# EOF\n") == 0);
    cr_assert(strstr(om, "# TYPE swarm_http_requests counter\n"));
    cr_assert(strstr(om, "swarm_http_requests_total{"));
    char *txt = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert(!strstr(txt, "# {trace_id="));
    cr_assert(!strstr(txt, "# EOF"));
    cr_assert(strstr(txt, "# TYPE swarm_http_requests_total counter\n"));
    free(om);
    free(txt);
    sg_metrics_destroy(m);

    /* exemplars: false -> none */
    t->cfg.metrics.exemplars = false;
    m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    r = req(0, SG_METHOD_GET, 200, 1000, &new);
    sg_metrics_record_request(sg_metrics_worker_shard(m, 0), &r);
    om = render(m, SG_EXPOSE_OPENMETRICS, 0);
    cr_assert(!strstr(om, "# {trace_id="));
    free(om);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- error rate through the registry ---------------------------------------------- */

Test(metrics, error_rates_rendered, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 2, NULL, 0);
    t->cfg.metrics.error_rate_window_ms = 10000;
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    char *out = render(m, SG_EXPOSE_TEXT, 5000);
    cr_assert_eq(value_of(out, "swarm_error_rate"), 0);
    cr_assert_eq(value_of(out, "swarm_upstream_error_rate{upstream=\"up0\"}"), 0);
    free(out);
    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    for (int i = 0; i < 4; i++) {
        sg_reqrec_t r = req(0, SG_METHOD_GET, i == 0 ? 502 : 200, 1000, NULL);
        r.upstream_idx = 1;
        sg_metrics_record_request(s, &r);
    }
    sg_reqrec_t r = req(-1, SG_METHOD_GET, 404, 1000, NULL);
    sg_metrics_record_request(s, &r);
    uint64_t now = (r.end_ns / 1000000) + 1000;
    out = render(m, SG_EXPOSE_TEXT, now);
    cr_assert_eq(value_of(out, "swarm_error_rate"), 0.2, "%s", out);
    cr_assert_eq(value_of(out, "swarm_upstream_error_rate{upstream=\"up1\"}"), 0.25);
    cr_assert_eq(value_of(out, "swarm_upstream_error_rate{upstream=\"up0\"}"), 0);
    free(out);
    out = render(m, SG_EXPOSE_TEXT, now + 10000);
    cr_assert_eq(value_of(out, "swarm_error_rate"), 0, "window passed");
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- hooks, collectors, counters from other modules -------------------------------- */

/* each_server over a test config's servers: up(u, s) is 1 = up, 0 =
 * down, < 0 = not listed. */
typedef struct servers_of {
    const test_cfg_t *t;
    int (*up)(size_t u, size_t s);
    uint64_t spans; /* for fake_exported / fake_dropped */
} servers_of_t;

static void each_server_of(void *ud, sg_metrics_server_cb emit, void *ctx)
{
    const servers_of_t *so = ud;
    for (size_t u = 0; u < so->t->cfg.n_upstreams; u++) {
        const sg_upstream_conf_t *uc = &so->t->cfg.upstreams[u];
        for (size_t s = 0; s < uc->n_servers; s++) {
            int up = so->up(u, s);
            if (up < 0)
                continue;
            const sg_hostport_t *hp = &uc->servers[s];
            char text[300];
            snprintf(text, sizeof(text), hp->is_ipv6_literal ? "[%s]:%u" : "%s:%u", hp->host, (unsigned)hp->port);
            emit(ctx, uc->name, text, up > 0);
        }
    }
}

static int fake_server_up(size_t u, size_t s)
{
    return s == 1 ? 0 : (u == 0 && s == 2) ? -1 : 1;
}

static uint64_t fake_exported(void *ud, size_t reason)
{
    return ((const servers_of_t *)ud)->spans + reason; /* reason: error 0, slow 1, sampled 2 */
}

static uint64_t fake_dropped(void *ud)
{
    return ((const servers_of_t *)ud)->spans / 2;
}

static void collect_tickets(sg_expose_t *x, void *ud)
{
    const char *ln[] = {"state"};
    const char *lv[] = {(const char *)ud};
    sg_expose_family(x, "swarm_tickets_total", "Tickets by state.", SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarm_tickets_total", "", ln, lv, 1, 7);
}

Test(metrics, hooks_and_collectors, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 2, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    servers_of_t so = {t, fake_server_up, 10};
    sg_metrics_hooks_t h = {
        .each_server = each_server_of, .spans_exported = fake_exported, .spans_dropped = fake_dropped, .ud = &so};
    sg_metrics_set_hooks(m, &h);
    cr_assert_eq(sg_metrics_add_collector(m, collect_tickets, "open"), 0);
    sg_metrics_config_reload(sg_metrics_control_shard(m), true);
    sg_metrics_config_reload(sg_metrics_control_shard(m), false);
    sg_metrics_config_reload(sg_metrics_control_shard(m), false);
    sg_metrics_upstream_connect_error(sg_metrics_worker_shard(m, 0), 1);
    sg_metrics_upstream_timeout(sg_metrics_worker_shard(m, 0), 0);
    sg_metrics_upstream_timeout(sg_metrics_worker_shard(m, 0), 99);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_upstream_server_up{upstream=\"up0\",server=\"127.0.0.1:3000\"}"), 1, "%s", out);
    cr_assert_eq(value_of(out, "swarm_upstream_server_up{upstream=\"up0\",server=\"127.0.0.1:3001\"}"), 0);
    cr_assert(!has_line_prefix(out, "swarm_upstream_server_up{upstream=\"up0\",server=\"[::1]:3002\"}"));
    cr_assert_eq(value_of(out, "swarm_upstream_server_up{upstream=\"up1\",server=\"[::1]:3012\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_spans_exported_total{reason=\"error\"}"), 10);
    cr_assert_eq(value_of(out, "swarm_spans_exported_total{reason=\"slow\"}"), 11);
    cr_assert_eq(value_of(out, "swarm_spans_exported_total{reason=\"sampled\"}"), 12);
    cr_assert_eq(value_of(out, "swarm_spans_dropped_total"), 5);
    cr_assert_eq(value_of(out, "swarm_config_reload_total{result=\"success\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_config_reload_total{result=\"failure\"}"), 2);
    cr_assert_eq(value_of(out, "swarm_upstream_connect_errors_total{upstream=\"up1\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_upstream_connect_errors_total{upstream=\"up0\"}"), 0);
    cr_assert(!has_line_prefix(out, "swarm_upstream_connect_errors_total{upstream=\"other\"}"));
    cr_assert_eq(value_of(out, "swarm_upstream_timeouts_total{upstream=\"other\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_tickets_total{state=\"open\"}"), 7);
    cr_assert_eq(value_of(out, "swarmgate_build_info{version=\"" SG_VERSION "\"}"), 1);
    cr_assert_geq(value_of(out, "process_open_fds"), 3);
    cr_assert_gt(value_of(out, "process_max_fds"), 0);
    cr_assert_gt(value_of(out, "process_resident_memory_bytes"), 0);
    cr_assert_gt(value_of(out, "process_virtual_memory_bytes"), 0);
    cr_assert_geq(value_of(out, "process_cpu_seconds_total"), 0);
    double start = value_of(out, "process_start_time_seconds");
    double now = (double)time(NULL);
    cr_assert(start > now - 3600 && start <= now + 1, "start %f now %f", start, now);
    free(out);
    sg_metrics_remove_collector(m, collect_tickets, "open");
    out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert(!strstr(out, "swarm_tickets_total"));
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

Test(metrics, invalid_buckets_refused, .timeout = 5)
{
    const double bad[] = {0.1, 0.1, 1};
    test_cfg_t *t = make_cfg(1, 1, bad, 3);
    cr_assert_null(sg_metrics_create(&t->cfg, 1));
    free(t);
}

/* ---- the full registry through promtool -------------------------------------------- */

/* Runs `promtool check metrics` on text; returns its exit status and
 * leaves its output in *report (malloc'ed). */
static int promtool(const char *text, char **report)
{
    char path[] = "/tmp/sg_metrics_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int st = pclose(p);
    unlink(path);
    *report = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void fill_traffic(sg_metrics_t *m, test_cfg_t *t, uint32_t n_workers)
{
    static const uint16_t codes[] = {200, 201, 204, 301, 304, 400, 404, 418, 429, 500, 502, 503, 504, 0};
    char ids[4][37];
    sg_trace_ctx_t tcs[4];
    for (int i = 0; i < 4; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%08x-0000-4000-8000-%012x", i + 1, i + 1);
        tcs[i] = trace_with(ids[i]);
    }
    uint64_t k = 0;
    for (uint32_t w = 0; w < n_workers; w++) {
        sg_metrics_shard_t *s = sg_metrics_worker_shard(m, w);
        for (int32_t r = -1; r < (int32_t)t->cfg.n_routes; r++)
            for (int meth = 0; meth < SG_METHOD__COUNT; meth++)
                for (size_t c = 0; c < SG_ARRAY_SIZE(codes); c++, k++) {
                    sg_reqrec_t rr = req(r, (sg_method_t)meth, codes[c], (k * 7919) % 400000000000ull, &tcs[k % 4]);
                    if (r >= 0) {
                        rr.upstream_idx = (int32_t)t->routes[r].upstream_idx;
                        rr.upstream_start_ns = rr.start_ns + 1000;
                        rr.upstream_head_ns = rr.upstream_start_ns + (k * 104729) % 2000000000ull;
                    }
                    sg_metrics_record_request(s, &rr);
                }
        for (size_t u = 0; u < t->cfg.n_upstreams; u++) {
            sg_metrics_upstream_connect_error(s, u);
            sg_metrics_upstream_timeout(s, u);
        }
        sg_metrics_conn_open(s, 0);
        sg_metrics_inflight_inc(s);
        for (int src = 0; src < SG_TRACE_SRC__COUNT; src++)
            sg_metrics_trace_source(s, (sg_trace_source_t)src);
    }
}

static int up_all(size_t u, size_t s)
{
    return (int)((u + s) % 2);
}

static double ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

Test(metrics, full_render_passes_promtool, .timeout = 120)
{
    test_cfg_t *t = make_cfg(10, 5, NULL, 0);
    t->routes[3].name = "api \"v2\"\\beta\nx";
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 4);
    cr_assert_not_null(m);
    servers_of_t so = {t, up_all, 0};
    sg_metrics_hooks_t h = {.each_server = each_server_of, .ud = &so};
    sg_metrics_set_hooks(m, &h);
    cr_assert_eq(sg_metrics_add_collector(m, collect_tickets, "in_progress"), 0);
    fill_traffic(m, t, 4);

    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int rounds = 20;
    for (int i = 0; i < rounds; i++) {
        sg_expose_reset(&x, SG_EXPOSE_TEXT);
        sg_metrics_render(m, &x, sg_now_ms());
    }
    double text_ms = ms_since(&t0) / rounds;
    int rc = sg_expose_finish(&x);
    cr_assert_eq(rc, 0);
    size_t text_len = x.len;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sg_expose_t om;
    sg_expose_init(&om, SG_EXPOSE_OPENMETRICS);
    for (int i = 0; i < rounds; i++) {
        sg_expose_reset(&om, SG_EXPOSE_OPENMETRICS);
        sg_metrics_render(m, &om, sg_now_ms());
    }
    double om_ms = ms_since(&t0) / rounds;
    rc = sg_expose_finish(&om);
    cr_assert_eq(rc, 0);
    printf("render 10 routes x 5 upstreams, 4 workers: text %.3f ms (%zu bytes), openmetrics %.3f ms (%zu bytes)\n",
           text_ms, text_len, om_ms, om.len);

    char *text = malloc(x.len + 1);
    memcpy(text, x.data, x.len);
    text[x.len] = '\0';
    cr_assert(strstr(text, "route=\"api \\\"v2\\\"\\\\beta\\nx\""), "escaped route label");
    char *report = NULL;
    int st = promtool(text, &report);
    /* the only lint allowed is the platform's gauge named *_total */
    bool only_allowed = true;
    for (char *line = strtok(report, "\n"); line; line = strtok(NULL, "\n"))
        if (!strstr(line, "swarm_tickets_total"))
            only_allowed = false;
    cr_assert(only_allowed, "promtool (exit %d) complains", st);
    cr_assert(st == 0 || st == 3, "promtool exit %d", st);

    /* promtool reads only the text format; check the OpenMetrics structure:
     * every line is a comment (HELP/TYPE/EOF) or a sample of the current
     * family with the type's allowed suffix; EOF last. */
    char *o = malloc(om.len + 1);
    memcpy(o, om.data, om.len);
    o[om.len] = '\0';
    cr_assert(om.len > 6 && strcmp(o + om.len - 6, "# EOF\n") == 0);
    char fam[256] = "", type[32] = "";
    size_t n_ex = 0;
    for (char *line = strtok(o, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            cr_assert_eq(sscanf(line, "# TYPE %255s %31s", fam, type), 2);
            if (strcmp(type, "counter") == 0)
                cr_assert(strlen(fam) < 6 || strcmp(fam + strlen(fam) - 6, "_total") != 0,
                          "OpenMetrics counter family with _total: %s", fam);
            continue;
        }
        if (line[0] == '#')
            continue;
        size_t fl = strlen(fam);
        cr_assert(strncmp(line, fam, fl) == 0, "sample outside its family: %s (family %s)", line, fam);
        const char *suf = line + fl;
        size_t sl = strcspn(suf, "{ ");
        if (strcmp(type, "counter") == 0)
            cr_assert(sl == 6 && strncmp(suf, "_total", 6) == 0, "%s", line);
        else if (strcmp(type, "histogram") == 0)
            cr_assert((sl == 7 && strncmp(suf, "_bucket", 7) == 0) || (sl == 4 && strncmp(suf, "_sum", 4) == 0) ||
                          (sl == 6 && strncmp(suf, "_count", 6) == 0),
                      "%s", line);
        else
            cr_assert_eq(sl, 0, "%s", line);
        if (strstr(line, " # {trace_id=\""))
            n_ex++;
    }
    cr_assert_gt(n_ex, 0, "OpenMetrics output carries exemplars");
    free(o);
    free(text);
    free(report);
    sg_expose_destroy(&x);
    sg_expose_destroy(&om);
    sg_metrics_destroy(m);
    free(t);
}

/* Every family the registry writes is documented in docs/metrics.md. */
Test(metrics, every_family_documented, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    FILE *f = fopen(SG_SOURCE_DIR "/docs/metrics.md", "r");
    cr_assert_not_null(f, "docs/metrics.md");
    static char doc[200000];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    doc[n] = '\0';
    fclose(f);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char fam[256], type[32], want[300];
        if (sscanf(line, "# TYPE %255s %31s", fam, type) != 2)
            continue;
        snprintf(want, sizeof(want), "`%s`", fam);
        cr_assert(strstr(doc, want), "%s not in docs/metrics.md", want);
    }
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- label values added by a reload (sg_metrics_intern) ------------------------------ */

/* Position of the first line starting with prefix, or -1. */
static long line_pos(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0)
            return (long)(p - text);
    return -1;
}

Test(metrics, intern_gives_new_names_their_own_series, .timeout = 10)
{
    test_cfg_t *t = make_cfg(2, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    /* start-up names keep their index */
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "route1"), 1);
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_UPSTREAM, "up0"), 0);
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_LISTENER, "egress"), 1);
    /* an index not interned yet counts as "other", never as a hidden series */
    sg_reqrec_t r = req(2, SG_METHOD_GET, 200, 1000, NULL);
    sg_metrics_record_request(s, &r);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"other\",method=\"GET\",code=\"200\"}"), 1, "%s", out);
    free(out);

    int32_t ri = sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "fresh");
    int32_t ui = sg_metrics_intern(m, SG_METRICS_DIM_UPSTREAM, "newup");
    int32_t li = sg_metrics_intern(m, SG_METRICS_DIM_LISTENER, "side");
    cr_assert_eq(ri, 2);
    cr_assert_eq(ui, 1);
    cr_assert_eq(li, 2);
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "fresh"), 2, "interned once");
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, NULL), -EINVAL);
    cr_assert_eq(sg_metrics_intern(m, (sg_metrics_dim_t)7, "x"), -EINVAL);

    for (int i = 0; i < 3; i++) {
        r = req(ri, SG_METHOD_POST, i ? 200 : 503, 1000, NULL);
        r.upstream_idx = ui;
        r.upstream_start_ns = r.start_ns;
        r.upstream_head_ns = r.start_ns + 500;
        sg_metrics_record_request(s, &r);
    }
    sg_metrics_upstream_connect_error(s, (size_t)ui);
    sg_metrics_upstream_timeout(s, (size_t)ui);
    sg_metrics_conn_open(s, (size_t)li);
    out = render(m, SG_EXPOSE_TEXT, r.end_ns / 1000000 + 1);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"fresh\",method=\"POST\",code=\"200\"}"), 2, "%s",
                 out);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"fresh\",method=\"POST\",code=\"503\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_http_request_duration_seconds_count{route=\"fresh\",method=\"POST\"}"), 3);
    cr_assert_eq(value_of(out, "swarm_upstream_response_duration_seconds_count{upstream=\"newup\"}"), 3);
    cr_assert_eq(value_of(out, "swarm_upstream_connect_errors_total{upstream=\"newup\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_upstream_timeouts_total{upstream=\"newup\"}"), 1);
    cr_assert_float_eq(value_of(out, "swarm_upstream_error_rate{upstream=\"newup\"}"), 1.0 / 3, 1e-12);
    cr_assert_eq(value_of(out, "swarm_http_connections_active{listener=\"side\"}"), 1);
    /* the earlier "other" request stays where it was; nothing new went there */
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"other\",method=\"GET\",code=\"200\"}"), 1);
    cr_assert(!has_line_prefix(out, "swarm_upstream_response_duration_seconds_count{upstream=\"other\"}"));
    cr_assert(!has_line_prefix(out, "swarm_upstream_error_rate{upstream=\"other\"}"));
    cr_assert(!has_line_prefix(out, "swarm_http_connections_active{listener=\"other\"}"));
    /* order: start-up names, then interned ones, then none/other */
    long p_up0 = line_pos(out, "swarm_upstream_connect_errors_total{upstream=\"up0\"}");
    long p_new = line_pos(out, "swarm_upstream_connect_errors_total{upstream=\"newup\"}");
    cr_assert(p_up0 >= 0 && p_new > p_up0);
    long p_fresh = line_pos(out, "swarm_http_requests_total{route=\"fresh\"");
    long p_other = line_pos(out, "swarm_http_requests_total{route=\"other\"");
    cr_assert(p_fresh >= 0 && p_other > p_fresh);
    /* the spare room not interned yet writes nothing (no empty label values) */
    cr_assert_null(strstr(out, "=\"\""), "%s", out);
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

Test(metrics, intern_full_dimension_counts_as_other, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    cr_assert_eq(sg_metrics_label_capacity(m, SG_METRICS_DIM_ROUTE), 1 + SG_METRICS_SPARE_LABELS);
    cr_assert_eq(sg_metrics_label_capacity(m, SG_METRICS_DIM_UPSTREAM), 1 + SG_METRICS_SPARE_LABELS);
    cr_assert_eq(sg_metrics_label_capacity(m, SG_METRICS_DIM_LISTENER), 2 + SG_METRICS_SPARE_LABELS);
    char name[32];
    for (int i = 0; i < SG_METRICS_SPARE_LABELS; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, name), 1 + i);
    }
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "one_too_many"), -ENOSPC);
    /* a known name still resolves when the room is used up */
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "r3"), 4);
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, "route0"), 0);
    /* other dimensions have their own room */
    cr_assert_eq(sg_metrics_intern(m, SG_METRICS_DIM_UPSTREAM, "one_too_many"), 1);

    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    sg_reqrec_t r = req(INT32_MAX, SG_METHOD_GET, 200, 1000, NULL); /* what generation.c maps a full name to */
    sg_metrics_record_request(s, &r);
    r = req(SG_METRICS_SPARE_LABELS, SG_METHOD_GET, 200, 1000, NULL); /* "r15", the last one in */
    sg_metrics_record_request(s, &r);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_http_requests_total{route=\"other\",method=\"GET\",code=\"200\"}"), 1, "%s", out);
    snprintf(name, sizeof(name), "r%d", SG_METRICS_SPARE_LABELS - 1);
    char want[128];
    snprintf(want, sizeof(want), "swarm_http_requests_total{route=\"%s\",method=\"GET\",code=\"200\"}", name);
    cr_assert_eq(value_of(out, want), 1);
    cr_assert_null(strstr(out, "one_too_many\",method"));
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

static void fake_each_server(void *ud, sg_metrics_server_cb emit, void *ctx)
{
    (void)ud;
    emit(ctx, "up0", "127.0.0.1:3000", true);
    emit(ctx, "added", "[::1]:4000", false);
}

Test(metrics, each_server_hook_lists_current_servers, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 2, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    sg_metrics_hooks_t h = {.each_server = fake_each_server};
    sg_metrics_set_hooks(m, &h);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_assert_eq(value_of(out, "swarm_upstream_server_up{upstream=\"up0\",server=\"127.0.0.1:3000\"}"), 1, "%s", out);
    cr_assert_eq(value_of(out, "swarm_upstream_server_up{upstream=\"added\",server=\"[::1]:4000\"}"), 0);
    cr_assert(!has_line_prefix(out, "swarm_upstream_server_up{upstream=\"up1\""));
    free(out);
    sg_metrics_destroy(m);
    free(t);
}

/* Interned names (quotes and backslashes included) go through promtool like
 * the start-up ones, in both formats' structure. */
Test(metrics, render_with_interned_names_passes_promtool, .timeout = 120)
{
    test_cfg_t *t = make_cfg(3, 2, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 2);
    cr_assert_not_null(m);
    sg_metrics_hooks_t h = {.each_server = fake_each_server};
    sg_metrics_set_hooks(m, &h);
    fill_traffic(m, t, 2);
    static const char *const routes[] = {"added", "we \"quote\"\\x", "route1" /* known */};
    static const char *const ups[] = {"added", "up1"};
    int32_t ri[3], ui[2];
    for (int i = 0; i < 3; i++)
        cr_assert_geq(ri[i] = sg_metrics_intern(m, SG_METRICS_DIM_ROUTE, routes[i]), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_geq(ui[i] = sg_metrics_intern(m, SG_METRICS_DIM_UPSTREAM, ups[i]), 0);
    cr_assert_geq(sg_metrics_intern(m, SG_METRICS_DIM_LISTENER, "side"), 0);
    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 1);
    for (int i = 0; i < 3; i++) {
        sg_trace_ctx_t tc = trace_with("00000009-0000-4000-8000-000000000009");
        sg_reqrec_t r = req(ri[i], SG_METHOD_PUT, 502, 2000000, &tc);
        r.upstream_idx = ui[i % 2];
        r.upstream_start_ns = r.start_ns;
        r.upstream_head_ns = r.start_ns + 1000000;
        sg_metrics_record_request(s, &r);
    }
    char *text = render(m, SG_EXPOSE_TEXT, sg_now_ms());
    cr_assert(strstr(text, "swarm_http_requests_total{route=\"we \\\"quote\\\"\\\\x\",method=\"PUT\",code=\"502\"} 1"),
              "%s", text);
    cr_assert_eq(value_of(text, "swarm_upstream_response_duration_seconds_count{upstream=\"added\"}"), 2);
    char *report = NULL;
    int st = promtool(text, &report);
    bool only_allowed = true;
    for (char *line = strtok(report, "\n"); line; line = strtok(NULL, "\n"))
        if (!strstr(line, "swarm_tickets_total"))
            only_allowed = false;
    cr_assert(only_allowed && (st == 0 || st == 3), "promtool (exit %d) complains", st);
    free(report);
    free(text);
    char *om = render(m, SG_EXPOSE_OPENMETRICS, sg_now_ms());
    cr_assert(strstr(om, "swarm_http_request_duration_seconds_bucket{route=\"added\",method=\"PUT\",le=\"+Inf\"} 1"),
              "%s", om);
    free(om);
    sg_metrics_destroy(m);
    free(t);
}

/* A render running while the control thread interns sees each name either
 * not yet or whole, never a half-published slot. */
typedef struct intern_arg {
    sg_metrics_t *m;
    _Atomic bool done;
    _Atomic int renders; /* the renderer's progress: one intern per render started */
} intern_arg_t;

static void *intern_main(void *p)
{
    intern_arg_t *a = p;
    for (int i = 0; i < SG_METRICS_SPARE_LABELS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "late%02d", i);
        int32_t u = sg_metrics_intern(a->m, SG_METRICS_DIM_UPSTREAM, name);
        if (u < 0)
            break;
        int seen = atomic_load(&a->renders);
        while (atomic_load(&a->renders) == seen) /* let a render start before the next intern */
            ;
    }
    atomic_store(&a->done, true);
    return NULL;
}

Test(metrics, render_concurrent_with_intern, .timeout = 60)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    intern_arg_t a = {.m = m};
    atomic_init(&a.done, false);
    atomic_init(&a.renders, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, intern_main, &a), 0);
    int last = 0, renders = 0;
    for (bool done = false; !done; renders++) {
        done = atomic_load(&a.done);
        atomic_fetch_add(&a.renders, 1);
        char *out = render(m, SG_EXPOSE_TEXT, 0);
        int n = 0;
        for (const char *p = out; (p = strstr(p, "swarm_upstream_timeouts_total{upstream=\"late")); p++) {
            char want[64];
            snprintf(want, sizeof(want), "swarm_upstream_timeouts_total{upstream=\"late%02d\"} 0", n);
            cr_assert_eq(strncmp(p, want, strlen(want)), 0, "render %d: %.60s", renders, p);
            n++;
        }
        cr_assert_geq(n, last, "a published name never disappears");
        last = n;
        free(out);
    }
    pthread_join(th, NULL);
    cr_assert_eq(last, SG_METRICS_SPARE_LABELS);
    sg_metrics_destroy(m);
    free(t);
}

/* The memory docs/metrics.md gives for a label value, per shard, with the
 * default buckets (18), exemplars on and a 5 m / 1 s error-rate window. */
Test(metrics, label_value_memory_matches_docs, .timeout = 10)
{
    size_t bytes[3][3];
    for (size_t nr = 1; nr <= 2; nr++)
        for (size_t nu = 1; nu <= 2; nu++) {
            test_cfg_t *t = make_cfg(nr, nu, NULL, 0);
            sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
            cr_assert_not_null(m);
            bytes[nr][nu] = sg__metrics_shard_bytes(m);
            sg_metrics_destroy(m);
            free(t);
        }
    size_t per_route = bytes[2][1] - bytes[1][1], per_up = bytes[1][2] - bytes[1][1];
    printf("per shard: a route label value %zu bytes, an upstream %zu, spare room %zu\n", per_route, per_up,
           SG_METRICS_SPARE_LABELS * (per_route + per_up + sizeof(uint64_t)));
    /* route: 10 methods x 51 codes counters + 10 x (18 + 2) histogram words
     * + 10 x 19 exemplar slots of 64 bytes */
    cr_assert_eq(per_route, 510 * 8 + 200 * 8 + 190 * 64);
    /* upstream: (18 + 2) histogram words + 19 exemplars + 2 counters + 15
     * TLS handshake results + an error-rate ring of 300 slots x 3 words */
    cr_assert_eq(per_up, 20 * 8 + 19 * 64 + 2 * 8 + 15 * 8 + 300 * 24);

    /* listener: connections, dropped header fields, 2 refusal reasons, 15
     * TLS results x 3 versions, a handshake histogram of (14 + 2) words
     * without exemplars, resumptions */
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    t->cfg.n_listeners = 1;
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 1);
    cr_assert_not_null(m);
    size_t one = sg__metrics_shard_bytes(m);
    sg_metrics_destroy(m);
    t->cfg.n_listeners = 2;
    m = sg_metrics_create(&t->cfg, 1);
    size_t per_listener = sg__metrics_shard_bytes(m) - one;
    sg_metrics_destroy(m);
    free(t);
    cr_assert_eq(per_listener, (1 + 1 + 2 + 45 + 16 + 1) * 8);
}

/* ---- TLS handshakes (the transport's hooks) ------------------------------------------ */

static int lines_with(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

Test(metrics, tls_handshakes_by_listener_result_and_version, .timeout = 10)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    sg_metrics_t *m = sg_metrics_create(&t->cfg, 2);
    cr_assert_not_null(m);
    sg_metrics_shard_t *w0 = sg_metrics_worker_shard(m, 0), *w1 = sg_metrics_worker_shard(m, 1);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    cr_expect(strstr(out, "# TYPE swarm_tls_handshakes_total counter\n"), "the families exist before any handshake");
    cr_expect(strstr(out, "# TYPE swarm_tls_handshake_duration_seconds histogram\n"));
    cr_expect_not(strstr(out, "\nswarm_tls_handshakes_total{"), "no series until a handshake");
    cr_expect_not(strstr(out, "\nswarm_tls_handshake_duration_seconds_bucket{"));
    free(out);

    sg_metrics_tls_handshake(w0, 0, SG_TLS_OK, SG_TLS_VERSION_1_3, 2000000, false);  /* 2 ms */
    sg_metrics_tls_handshake(w1, 0, SG_TLS_OK, SG_TLS_VERSION_1_3, 300000, true);    /* 0.3 ms, resumed */
    sg_metrics_tls_handshake(w1, 0, SG_TLS_OK, SG_TLS_VERSION_1_2, 20000000, false); /* 20 ms */
    sg_metrics_tls_handshake(w0, 0, SG_TLS_E_PROTOCOL_VERSION, SG_TLS_VERSION_NONE, 1000, false);
    sg_metrics_tls_handshake(w0, 1, SG_TLS_E_HTTP_REQUEST, SG_TLS_VERSION_NONE, 0, false);
    sg_metrics_tls_handshake(w0, 99, SG_TLS_E__COUNT, SG_TLS_VERSION__COUNT, 0, false); /* out of range */
    sg_metrics_upstream_tls_handshake(w1, 0, SG_TLS_E_UNKNOWN_CA);
    sg_metrics_upstream_tls_handshake(w1, 0, SG_TLS_E_UNKNOWN_CA);
    sg_metrics_upstream_tls_handshake(w0, 0, SG_TLS_OK);
    out = render(m, SG_EXPOSE_TEXT, 0);
#define HS(l, r, v) "swarm_tls_handshakes_total{listener=\"" l "\",result=\"" r "\",version=\"" v "\"}"
    cr_expect_eq(value_of(out, HS("api", "success", "TLSv1.3")), 2, "summed across workers:\n%s", out);
    cr_expect_eq(value_of(out, HS("api", "success", "TLSv1.2")), 1);
    cr_expect_eq(value_of(out, HS("api", "protocol_version", "none")), 1);
    cr_expect_eq(value_of(out, HS("egress", "http_request", "none")), 1);
    cr_expect_eq(value_of(out, HS("other", "internal", "none")), 1, "unknown values fold into other/internal/none");
    cr_expect_eq(lines_with(out, "swarm_tls_handshakes_total{"), 5, "only non-zero series:\n%s", out);
#define HD(le) "swarm_tls_handshake_duration_seconds_bucket{listener=\"api\",le=\"" le "\"}"
    cr_expect_eq(value_of(out, HD("0.0005")), 1);
    cr_expect_eq(value_of(out, HD("0.0025")), 2);
    cr_expect_eq(value_of(out, HD("0.025")), 3);
    cr_expect_eq(value_of(out, HD("+Inf")), 3, "failures are not timed");
    cr_expect_eq(value_of(out, "swarm_tls_handshake_duration_seconds_count{listener=\"api\"}"), 3);
    cr_expect_eq(value_of(out, "swarm_tls_handshake_duration_seconds_sum{listener=\"api\"}"), 0.0223);
    cr_expect_not(strstr(out, "swarm_tls_handshake_duration_seconds_bucket{listener=\"egress\""),
                  "a listener without a successful handshake has no histogram");
    cr_expect_eq(value_of(out, "swarm_tls_sessions_resumed_total{listener=\"api\"}"), 1);
    cr_expect_eq(value_of(out, "swarm_upstream_tls_handshakes_total{upstream=\"up0\",result=\"unknown_ca\"}"), 2);
    cr_expect_eq(value_of(out, "swarm_upstream_tls_handshakes_total{upstream=\"up0\",result=\"success\"}"), 1);
    free(out);
    char *om = render(m, SG_EXPOSE_OPENMETRICS, 0);
    cr_expect_not(strstr(om, "swarm_tls_handshake_duration_seconds_bucket{listener=\"api\",le=\"0.0005\"} 1 #"),
                  "no exemplars on handshake buckets");
    free(om);
    sg_metrics_destroy(m);
    free(t);
}

/* ---- egress agents: named by the workers, any thread ------------------------------------ */

#define AGENT_THREADS 4
#define AGENT_NAMES 80 /* more than the room: 64 */

typedef struct agent_arg {
    sg_metrics_t *m;
    sg_metrics_shard_t *s;
    int seed;
    int32_t idx[AGENT_NAMES];
} agent_arg_t;

static void *agent_main(void *p)
{
    agent_arg_t *a = p;
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < AGENT_NAMES; k++) {
            int i = (k * 7 + a->seed * 13) % AGENT_NAMES; /* each thread in its own order */
            char name[32];
            int n = snprintf(name, sizeof(name), "agent-%02d", i);
            int32_t idx = sg_metrics_agent(a->m, name, (size_t)n);
            if (round == 0)
                a->idx[i] = idx;
            else if (a->idx[i] != idx)
                a->idx[i] = -2; /* a name changed its index */
            sg_reqrec_t r;
            memset(&r, 0, sizeof(r));
            r.is_egress = true;
            r.egress_agent_idx = idx;
            r.egress_dest_idx = -1;
            r.method = SG_METHOD_GET;
            r.status = 200;
            r.req_bytes = 1;
            sg_metrics_record_egress(a->s, &r);
        }
    return NULL;
}

Test(metrics, agents_named_by_many_threads_once_each, .timeout = 60)
{
    test_cfg_t *t = make_cfg(1, 1, NULL, 0);
    t->cfg.egress.max_agents = 64;
    sg_metrics_t *m = sg_metrics_create(&t->cfg, AGENT_THREADS);
    cr_assert_not_null(m);
    agent_arg_t args[AGENT_THREADS];
    pthread_t th[AGENT_THREADS];
    for (int i = 0; i < AGENT_THREADS; i++) {
        args[i] = (agent_arg_t){.m = m, .s = sg_metrics_worker_shard(m, (uint32_t)i), .seed = i};
        cr_assert_eq(pthread_create(&th[i], NULL, agent_main, &args[i]), 0);
    }
    for (int r = 0; r < 20; r++) /* renders meanwhile: names appear whole */
        free(render(m, SG_EXPOSE_TEXT, 0));
    for (int i = 0; i < AGENT_THREADS; i++)
        pthread_join(th[i], NULL);
    int named = 0, other = 0;
    for (int k = 0; k < AGENT_NAMES; k++) {
        for (int i = 1; i < AGENT_THREADS; i++)
            cr_assert_eq(args[i].idx[k], args[0].idx[k], "agent-%02d: one index on every thread", k);
        cr_assert_neq(args[0].idx[k], -2, "agent-%02d kept its index", k);
        if (args[0].idx[k] == INT32_MAX)
            other++;
        else
            named++;
    }
    cr_assert_eq(named, 64, "the room is used to the last value");
    cr_assert_eq(other, AGENT_NAMES - 64);
    char *out = render(m, SG_EXPOSE_TEXT, 0);
    for (int k = 0; k < AGENT_NAMES; k++) {
        if (args[0].idx[k] == INT32_MAX)
            continue;
        char series[96];
        snprintf(series, sizeof(series), "swarm_egress_bytes_total{agent=\"agent-%02d\",direction=\"in\"} %d", k,
                 3 * AGENT_THREADS);
        const char *p = strstr(out, series);
        cr_assert(p, "%s", series);
        cr_assert_null(strstr(p + 1, series), "one series per name: %s", series);
    }
    char series[96];
    snprintf(series, sizeof(series), "swarm_egress_bytes_total{agent=\"other\",direction=\"in\"} %d",
             3 * AGENT_THREADS * (AGENT_NAMES - 64));
    cr_assert(strstr(out, series), "%s", series);
    free(out);
    sg_metrics_destroy(m);
    free(t);
}
