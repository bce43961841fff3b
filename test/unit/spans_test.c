/* Unit tests for src/obs/spans.c: span records, OTLP and Zipkin encoders,
 * queues, sampling, and the exporter against a real loopback collector. */
#include "sg/spans.h"

#include "sg/runtime.h"
#include "obs/spans_int.h"
#include "support/collector.h"
#include "support/jsoncheck.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define TRACE_UUID "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
#define TRACE_HEX "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT "00f067aa0ba902b7"
#define SPAN "a2fb4a1d1a96d312"

static sg_trace_ctx_t g_trace;

static sg_reqrec_t make_rec(uint16_t status, bool with_parent)
{
    memset(&g_trace, 0, sizeof(g_trace));
    strcpy(g_trace.trace_id, TRACE_UUID);
    strcpy(g_trace.span_id, SPAN);
    strcpy(g_trace.parent_span_id, with_parent ? PARENT : "");
    g_trace.flags = 1;
    sg_reqrec_t r;
    memset(&r, 0, sizeof(r));
    r.start_ns = 5000000000ull;
    r.end_ns = 5012345678ull;
    r.start_unix_ns = 1714566896789000000ull;
    r.method = SG_METHOD_GET;
    r.status = status;
    r.trace = &g_trace;
    r.sampled = true;
    r.path = SG_STR("/api/tickets/42");
    r.host = SG_STR("api.example.com:8080");
    r.client_addr = SG_STR("[::1]:54321");
    r.server_addr = SG_STR("127.0.0.1:3002");
    r.route_idx = 0;
    return r;
}

static void assert_get(const char *doc, size_t len, const char *key, int n, const char *want)
{
    char got[4096];
    long l = sg_test_json_get(doc, len, key, n, got, sizeof(got));
    cr_assert_geq(l, 0, "%s[%d] missing in %s", key, n, doc);
    cr_assert_str_eq(got, want, "%s[%d]", key, n);
}

/* Value of the OTLP attribute `key` in span document `doc` (first span). */
static bool otlp_attr(const char *doc, const char *key, char *val, size_t cap)
{
    size_t len = strlen(doc);
    long nkeys = sg_test_json_count(doc, len, "key");
    for (int i = 0; i < nkeys; i++) {
        char k[128];
        if (sg_test_json_get(doc, len, "key", i, k, sizeof(k)) < 0)
            return false;
        if (strcmp(k, key) == 0)
            return sg_test_json_get(doc, len, "value", i, val, cap) >= 0;
    }
    return false;
}

Test(spans, from_rec_copies_and_splits, .timeout = 30)
{
    sg_reqrec_t r = make_rec(200, true);
    sg_span_t s;
    sg_span_from_rec(&s, &r, "tickets");
    cr_assert_str_eq(s.trace_hex, TRACE_HEX);
    cr_assert_str_eq(s.span_id, SPAN);
    cr_assert_str_eq(s.parent_span_id, PARENT);
    cr_assert_eq(s.start_unix_ns, 1714566896789000000ull);
    cr_assert_eq(s.end_unix_ns, 1714566896789000000ull + 12345678ull);
    cr_assert_str_eq(s.route, "tickets");
    cr_assert_str_eq(s.path, "/api/tickets/42");
    cr_assert_str_eq(s.host, "api.example.com");
    cr_assert_str_eq(s.client_ip, "::1");
    cr_assert_eq(s.client_port, 54321);
    cr_assert_str_eq(s.upstream, "127.0.0.1:3002");
    cr_assert_eq(s.server_port, 8080, "the Host's port");
    cr_assert_not(s.is_error);
    cr_assert_str_eq(s.error_type, "");
    cr_assert_eq(s.reason, SG_SPAN_REASON_SAMPLED);

    r.client_addr = SG_STR("10.1.2.3:80");
    r.host = SG_STR("[2001:db8::1]:443");
    r.status = 502;
    r.is_proxy_error = true;
    r.error = "connect refused";
    sg_span_from_rec(&s, &r, NULL);
    cr_assert_str_eq(s.client_ip, "10.1.2.3");
    cr_assert_eq(s.client_port, 80);
    cr_assert_str_eq(s.host, "2001:db8::1");
    cr_assert_str_eq(s.route, "");
    cr_assert_eq(s.server_port, 443);
    cr_assert(s.is_error);
    cr_assert_str_eq(s.error, "connect refused");
    cr_assert_str_eq(s.error_type, "connection_refused", "low-cardinality, not the text");
    cr_assert_eq(s.reason, SG_SPAN_REASON_ERROR);

    /* HTTP semconv: a 4xx server span (proxy-made or not) leaves the
     * status unset and has no error.type; it is still exported (reason
     * error) when swarmgate made it */
    r.status = 431;
    r.error = "request header too large";
    r.host = SG_STR("h");
    sg_span_from_rec(&s, &r, NULL);
    cr_assert_not(s.is_error);
    cr_assert_str_eq(s.error_type, "");
    cr_assert_eq(s.server_port, 80, "no port in Host: the http default");
    cr_assert_eq(s.reason, SG_SPAN_REASON_ERROR);
    r.is_proxy_error = false;
    r.error = NULL;
    r.status = 404;
    r.sampled = false;
    cr_assert_eq(sg_spans_export_reason(&r), -1, "an upstream's 404, not sampled: not exported");
    r.status = 500;
    sg_span_from_rec(&s, &r, NULL);
    cr_assert(s.is_error);
    cr_assert_str_eq(s.error_type, "500");
    r.status = 504;
    r.is_proxy_error = true;
    r.error = "upstream response timeout";
    sg_span_from_rec(&s, &r, NULL);
    cr_assert_str_eq(s.error_type, "timeout");
    r.status = 200;
    r.is_proxy_error = false;
    r.error = "upstream reset";
    sg_span_from_rec(&s, &r, NULL);
    cr_assert(s.is_error, "broken after a 200 head");
    cr_assert_str_eq(s.error_type, "connection_reset");

    /* CONNECT: the target is server.address/server.port, not a path */
    r = make_rec(200, false);
    r.method = SG_METHOD_CONNECT;
    r.path = SG_STR("api.example.com:443");
    r.host = SG_STR("api.example.com:443");
    sg_span_from_rec(&s, &r, NULL);
    cr_assert(s.is_connect);
    cr_assert_str_eq(s.host, "api.example.com");
    cr_assert_eq(s.server_port, 443);

    /* a long path is cut to the field, NUL-terminated */
    char longp[1000];
    memset(longp, 'p', sizeof(longp));
    r.path = sg_str_make(longp, sizeof(longp));
    sg_span_from_rec(&s, &r, NULL);
    cr_assert_eq(strlen(s.path), SG_SPAN_PATH_MAX - 1);
}

Test(spans, otlp_encoding, .timeout = 30)
{
    sg_span_t sp[2];
    sg_reqrec_t r = make_rec(200, true);
    strcpy(g_trace.tracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    g_trace.tracestate_len = strlen(g_trace.tracestate);
    sg_span_from_rec(&sp[0], &r, "tickets");
    r = make_rec(503, false);
    r.error = "upstream \"down\"";
    sg_span_from_rec(&sp[1], &r, NULL);

    static char mem[1 << 16];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_otlp(&b, sp, 2, "swarmgate-test"), 2);
    mem[b.len] = '\0';
    char err[128];
    cr_assert(sg_test_json_valid(mem, b.len, err, sizeof(err)), "%s: %s", err, mem);
    assert_get(mem, b.len, "traceId", 0, TRACE_HEX);
    assert_get(mem, b.len, "spanId", 0, SPAN);
    assert_get(mem, b.len, "parentSpanId", 0, PARENT);
    cr_assert_eq(sg_test_json_count(mem, b.len, "parentSpanId"), 1, "root span has no parentSpanId");
    /* semconv: "{method} {http.route}", the method alone without a template */
    assert_get(mem, b.len, "name", 1, "GET"); /* name[0] is the scope name */
    assert_get(mem, b.len, "traceState", 0, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    cr_assert_eq(sg_test_json_count(mem, b.len, "traceState"), 1, "only the span that sent one on");
    assert_get(mem, b.len, "kind", 0, "2");
    assert_get(mem, b.len, "startTimeUnixNano", 0, "1714566896789000000");
    assert_get(mem, b.len, "endTimeUnixNano", 0, "1714566896801345678");
    assert_get(mem, b.len, "stringValue", 0, "swarmgate-test"); /* resource service.name */
    assert_get(mem, b.len, "key", 0, "service.name");
    cr_assert_eq(sg_test_json_count(mem, b.len, "status"), 1, "only the 503 span has a status");
    assert_get(mem, b.len, "code", 0, "2");
    assert_get(mem, b.len, "message", 0, "upstream \"down\"");
    assert_get(mem, b.len, "name", 2, "GET");

    /* attributes of the first span alone */
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_otlp(&b, sp, 1, "s"), 1);
    mem[b.len] = '\0';
    char v[256];
    cr_assert(otlp_attr(mem, "http.request.method", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"GET\"}");
    cr_assert(otlp_attr(mem, "url.path", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"/api/tickets/42\"}");
    cr_assert_not(otlp_attr(mem, "http.route", v, sizeof(v)), "http.route is a path template: none");
    cr_assert(otlp_attr(mem, "swarmgate.route", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"tickets\"}");
    cr_assert(otlp_attr(mem, "url.scheme", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"http\"}");
    cr_assert(otlp_attr(mem, "server.port", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"intValue\":\"8080\"}");
    cr_assert_not(otlp_attr(mem, "error.type", v, sizeof(v)));
    cr_assert(otlp_attr(mem, "http.response.status_code", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"intValue\":\"200\"}");
    cr_assert(otlp_attr(mem, "server.address", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"api.example.com\"}");
    cr_assert(otlp_attr(mem, "client.address", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"::1\"}");
    cr_assert(otlp_attr(mem, "network.peer.address", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"::1\"}");

    /* the 503: error.type is the code, the free text only the status message */
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_otlp(&b, sp + 1, 1, "s"), 1);
    mem[b.len] = '\0';
    cr_assert(otlp_attr(mem, "error.type", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"503\"}");
}

Test(spans, zipkin_encoding, .timeout = 30)
{
    sg_span_t sp[2];
    sg_reqrec_t r = make_rec(201, true);
    r.method = SG_METHOD_POST;
    sg_span_from_rec(&sp[0], &r, "tickets");
    r = make_rec(404, false);
    r.is_proxy_error = true;
    r.error = "no route";
    sg_span_from_rec(&sp[1], &r, NULL);
    static char mem[1 << 16];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_zipkin(&b, sp, 2, "gw"), 2);
    mem[b.len] = '\0';
    char err[128];
    cr_assert(sg_test_json_valid(mem, b.len, err, sizeof(err)), "%s: %s", err, mem);
    cr_assert_eq(mem[0], '[');
    assert_get(mem, b.len, "traceId", 0, TRACE_HEX);
    assert_get(mem, b.len, "id", 0, SPAN);
    assert_get(mem, b.len, "parentId", 0, PARENT);
    cr_assert_eq(sg_test_json_count(mem, b.len, "parentId"), 1);
    assert_get(mem, b.len, "name", 0, "POST");
    assert_get(mem, b.len, "kind", 0, "SERVER");
    assert_get(mem, b.len, "timestamp", 0, "1714566896789000");
    assert_get(mem, b.len, "duration", 0, "12346");
    assert_get(mem, b.len, "serviceName", 0, "gw");
    assert_get(mem, b.len, "http.method", 0, "POST");
    assert_get(mem, b.len, "http.path", 0, "/api/tickets/42");
    cr_assert_eq(sg_test_json_count(mem, b.len, "http.route"), 0);
    assert_get(mem, b.len, "swarmgate.route", 0, "tickets");
    assert_get(mem, b.len, "server.port", 0, "8080");
    assert_get(mem, b.len, "http.status_code", 0, "201");
    assert_get(mem, b.len, "http.status_code", 1, "404");
    cr_assert_eq(sg_test_json_count(mem, b.len, "error"), 0, "a 404 server span is no error");
    cr_assert_eq(sg_test_json_count(mem, b.len, "swarmgate.agent"), 0, "reverse-proxy spans name no agent");
}

Test(spans, egress_spans_name_the_agent, .timeout = 30)
{
    sg_span_t sp[2];
    sg_reqrec_t r = make_rec(200, true);
    r.is_egress = true;
    r.agent = "planner-1";
    sg_span_from_rec(&sp[0], &r, NULL);
    r.agent = NULL; /* no name: unknown */
    sg_span_from_rec(&sp[1], &r, NULL);
    static char mem[1 << 16];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_otlp(&b, sp, 1, "s"), 1);
    mem[b.len] = '\0';
    char v[256];
    cr_assert(otlp_attr(mem, "swarmgate.agent", v, sizeof(v)), "%s", mem);
    cr_assert_str_eq(v, "{\"stringValue\":\"planner-1\"}");
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_otlp(&b, sp + 1, 1, "s"), 1);
    mem[b.len] = '\0';
    cr_assert(otlp_attr(mem, "swarmgate.agent", v, sizeof(v)));
    cr_assert_str_eq(v, "{\"stringValue\":\"unknown\"}");
    sg_buf_init(&b, mem, sizeof(mem) - 1);
    cr_assert_eq(sg_spans_encode_zipkin(&b, sp, 2, "gw"), 2);
    mem[b.len] = '\0';
    assert_get(mem, b.len, "swarmgate.agent", 0, "planner-1");
    assert_get(mem, b.len, "swarmgate.agent", 1, "unknown");
}

Test(spans, hostile_strings_stay_valid_json, .timeout = 30)
{
    sg_reqrec_t r = make_rec(500, true);
    static const char p[] = "/\"\\\r\n\x01\xff\xc3\x28\xed\xa0\x80}],{";
    r.path = sg_str_make(p, sizeof(p) - 1);
    r.host = SG_STR("\"evil\":\"1");
    r.error = "\n\t\"";
    sg_span_t s;
    sg_span_from_rec(&s, &r, "r\"1");
    static char mem[1 << 14];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert_eq(sg_spans_encode_otlp(&b, &s, 1, "svc\"x"), 1);
    cr_assert(sg_test_json_valid(mem, b.len, NULL, 0));
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert_eq(sg_spans_encode_zipkin(&b, &s, 1, "svc\"x"), 1);
    cr_assert(sg_test_json_valid(mem, b.len, NULL, 0));
    cr_assert_eq(sg_test_json_count(mem, b.len, "evil"), 0);
}

/* Each encoder, at every buffer size: whole spans only (valid JSON, as
 * many span ids as it says), a count that never drops as the buffer grows,
 * 0 only when not even the envelope fits (overflow), some sizes that hold
 * part of the batch, and a large buffer that holds all of it. */
typedef size_t (*span_encoder_t)(sg_buf_t *, const sg_span_t *, size_t, const char *);

static void check_cuts(span_encoder_t enc, const char *id_key, const sg_span_t *sp, size_t n_sp)
{
    static char mem[1 << 16];
    size_t prev = 0, n_partial = 0, n_empty = 0;
    for (size_t cap = 0; cap < 12000; cap += 97) {
        sg_buf_t b;
        sg_buf_init(&b, mem, cap);
        size_t n = enc(&b, sp, n_sp, "s");
        cr_assert_leq(b.len, cap);
        cr_assert_geq(n, prev, "cap %zu holds %zu spans, a smaller one held %zu", cap, n, prev);
        prev = n;
        if (n == 0 && b.is_overflow) {
            n_empty++;
            continue;
        }
        cr_assert(sg_test_json_valid(mem, b.len, NULL, 0), "cap %zu", cap);
        cr_assert_eq(sg_test_json_count(mem, b.len, id_key), (long)n, "cap %zu", cap);
        n_partial += n > 0 && n < n_sp;
    }
    cr_assert_gt(n_empty, 0, "cap 0 cannot hold the envelope");
    cr_assert_gt(n_partial, 0, "no buffer size gave a partial batch");
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert_eq(enc(&b, sp, n_sp, "s"), n_sp, "%zu bytes hold the whole batch", sizeof(mem));
    cr_assert(sg_test_json_valid(mem, b.len, NULL, 0));
    cr_assert_eq(sg_test_json_count(mem, b.len, id_key), (long)n_sp);
}

Test(spans, encoder_cuts_to_whole_spans, .timeout = 30)
{
    sg_span_t sp[20];
    for (int i = 0; i < 20; i++) {
        sg_reqrec_t r = make_rec(200, i % 2);
        sg_span_from_rec(&sp[i], &r, "x");
    }
    check_cuts(sg_spans_encode_otlp, "spanId", sp, 20);
    check_cuts(sg_spans_encode_zipkin, "id", sp, 20);
}

Test(spans, worst_case_span_fits_json_max, .timeout = 30)
{
    sg_span_t s;
    memset(&s, 0, sizeof(s));
    memset(s.trace_hex, 'a', SG_TRACE_HEX_LEN);
    memset(s.span_id, 'b', SG_SPAN_ID_LEN);
    memset(s.parent_span_id, 'c', SG_SPAN_ID_LEN);
    s.status = 599;
    s.client_port = 65535;
    s.is_error = true;
    s.start_unix_ns = UINT64_MAX / 2;
    s.end_unix_ns = UINT64_MAX;
    memset(s.route, 1, sizeof(s.route) - 1);
    memset(s.path, 1, sizeof(s.path) - 1);
    memset(s.host, 1, sizeof(s.host) - 1);
    memset(s.client_ip, 1, sizeof(s.client_ip) - 1);
    memset(s.upstream, 1, sizeof(s.upstream) - 1);
    memset(s.error, 1, sizeof(s.error) - 1);
    memset(s.error_type, 1, sizeof(s.error_type) - 1);
    memset(s.agent, 1, sizeof(s.agent) - 1);
    memset(s.tracestate, '"', sizeof(s.tracestate) - 1);
    s.server_port = 65535;
    static char mem[SG_SPAN_JSON_MAX + 600];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert_eq(sg_spans_encode_otlp(&b, &s, 1, "s"), 1);
    cr_assert_leq(b.len, SG_SPAN_JSON_MAX + 400, "envelope + one span: %zu", b.len);
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert_eq(sg_spans_encode_zipkin(&b, &s, 1, "s"), 1);
    cr_assert_leq(b.len, SG_SPAN_JSON_MAX);
}

Test(spans, queue_full_drops_and_counts, .timeout = 30)
{
    sg_span_queue_t *q = sg_span_queue_new(16);
    cr_assert_not_null(q);
    sg_reqrec_t r = make_rec(200, false);
    int ok = 0;
    for (int i = 0; i < 40; i++)
        ok += sg_spans_record(q, &r, "x");
    cr_assert_eq(ok, 16);
    cr_assert_eq(sg_span_queue_dropped(q), 24);
    cr_assert_eq(sg_spans_dropped_total(), 24);
    r.sampled = false;
    cr_assert_not(sg_spans_record(q, &r, "x"), "unsampled requests make no span");
    cr_assert_eq(sg_span_queue_dropped(q), 24);
    sg_span_queue_free(q);
    cr_assert_eq(sg_spans_dropped_total(), 40, "spans left in a freed queue count as dropped");
}

Test(spans, sampler_ratio, .timeout = 30)
{
    sg_spans_set_sample_ratio(1.0);
    for (int i = 0; i < 1000; i++)
        cr_assert(sg_spans_sample_new());
    sg_spans_set_sample_ratio(0.0);
    for (int i = 0; i < 1000; i++)
        cr_assert_not(sg_spans_sample_new());
    sg_spans_set_sample_ratio(0.25);
    int n = 0;
    for (int i = 0; i < 100000; i++)
        n += sg_spans_sample_new();
    cr_assert(n > 23500 && n < 26500, "%d of 100000 at 0.25", n);
}

/* ---- exporter --------------------------------------------------------- */

static uv_loop_t loop;
static sg_collector_t *coll;
static sg_span_queue_t *queue;
static sg_spans_exporter_t *ex;

static void ex_setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    coll = sg_collector_start();
    cr_assert_not_null(coll);
    queue = sg_span_queue_new(1024);
    cr_assert_not_null(queue);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    SG_UNUSED(arg);
    cr_log_error("handle left open: type %d", (int)h->type);
}

static void ex_teardown(void)
{
    sg_spans_exporter_stop(ex);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, walk_cb, NULL);
    cr_assert_eq(uv_loop_close(&loop), 0);
    sg_span_queue_free(queue);
    sg_collector_stop(coll);
}

TestSuite(exporter, .init = ex_setup, .fini = ex_teardown, .timeout = 30);

typedef bool (*pred_fn)(void *);

static bool run_until(pred_fn pred, void *arg, int timeout_ms)
{
    uint64_t dl = sg_now_ms() + (uint64_t)timeout_ms;
    while (!pred(arg)) {
        if (sg_now_ms() > dl)
            return false;
        uv_run(&loop, UV_RUN_ONCE);
    }
    return true;
}

static bool exported_at_least(void *arg)
{
    return sg_spans_exported_total() >= *(uint64_t *)arg;
}

static bool dropped_at_least(void *arg)
{
    return sg_spans_dropped_total() >= *(uint64_t *)arg;
}

static bool collector_has_one(void *arg)
{
    SG_UNUSED(arg);
    return sg_collector_count(coll) >= 1;
}

static sg_trace_conf_t conf_for(sg_export_format_t fmt, const char *url)
{
    sg_trace_conf_t c;
    memset(&c, 0, sizeof(c));
    c.export.format = fmt;
    c.export.url = url;
    c.export.sample = 1.0;
    c.export.batch_size = 512;
    c.export.batch_delay_ms = 50;
    c.export.queue_size = 1024;
    c.export.timeout_ms = 2000;
    c.export.service_name = "swarmgate-test";
    return c;
}

static const sg_spans_opts_t fast = {.max_attempts = 3, .backoff_min_ms = 10, .backoff_max_ms = 50, .tick_ms = 10};

static void push_spans(int n)
{
    for (int i = 0; i < n; i++) {
        sg_reqrec_t r = make_rec((uint16_t)(200 + i), true);
        cr_assert(sg_spans_record(queue, &r, "tickets"));
    }
}

Test(exporter, otlp_batches_reach_collector)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(3);
    uint64_t want = 3;
    cr_assert(run_until(exported_at_least, &want, 10000), "exported %lu", (unsigned long)sg_spans_exported_total());
    cr_assert_eq(sg_collector_count(coll), 1, "3 spans in one batch");
    char *path = sg_collector_path(coll, 0);
    cr_assert_str_eq(path, "/v1/traces");
    free(path);
    char *ct = sg_collector_header(coll, 0, "content-type");
    cr_assert_str_eq(ct, "application/json");
    free(ct);
    size_t len;
    char *body = sg_collector_body(coll, 0, &len);
    char err[128];
    cr_assert(sg_test_json_valid(body, len, err, sizeof(err)), "%s", err);
    cr_assert_eq(sg_test_json_count(body, len, "spanId"), 3);
    for (int i = 0; i < 3; i++) {
        assert_get(body, len, "traceId", i, TRACE_HEX);
        assert_get(body, len, "parentSpanId", i, PARENT);
    }
    free(body);
    cr_assert_eq(sg_spans_dropped_total(), 0);
}

Test(exporter, zipkin_default_path)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_ZIPKIN, sg_collector_url(coll, "/", url, sizeof(url)));
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(2);
    uint64_t want = 2;
    cr_assert(run_until(exported_at_least, &want, 10000));
    char *path = sg_collector_path(coll, 0);
    cr_assert_str_eq(path, "/api/v2/spans");
    free(path);
    size_t len;
    char *body = sg_collector_body(coll, 0, &len);
    cr_assert(sg_test_json_valid(body, len, NULL, 0));
    assert_get(body, len, "traceId", 1, TRACE_HEX);
    assert_get(body, len, "parentId", 1, PARENT);
    free(body);
}

Test(exporter, batch_size_sends_before_delay)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "/custom/path", url, sizeof(url)));
    c.export.batch_delay_ms = 600000; /* would never fire within the test */
    c.export.batch_size = 4;
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(10);
    uint64_t want = 8;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 2, "two full batches of 4");
    char *path = sg_collector_path(coll, 0);
    cr_assert_str_eq(path, "/custom/path");
    free(path);
    cr_assert_eq(sg_spans_exported_total(), 8, "2 spans wait for the delay");
}

static bool collector_body_count_spans(void *arg)
{
    long want = *(long *)arg, n = 0;
    size_t count = sg_collector_count(coll);
    for (size_t i = 0; i < count; i++) {
        size_t len;
        char *b = sg_collector_body(coll, i, &len);
        n += sg_test_json_count(b, len, "spanId");
        free(b);
    }
    return n >= want;
}

Test(exporter, small_body_limit_splits_batch_without_loss)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_spans_opts_t o = fast;
    o.body_max_bytes = 1; /* clamped up to one worst-case span */
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &o, &ex), 0);
    push_spans(20);
    uint64_t want = 20;
    cr_assert(run_until(exported_at_least, &want, 10000));
    long want_spans = 20;
    cr_assert(collector_body_count_spans(&want_spans));
    size_t posts = sg_collector_count(coll);
    cr_assert_gt(posts, 1, "20 spans cannot fit one 7 KiB body");
    for (size_t i = 0; i < posts; i++) {
        size_t len;
        char *b = sg_collector_body(coll, i, &len);
        cr_assert_leq(len, SG_SPAN_JSON_MAX + 1024);
        cr_assert(sg_test_json_valid(b, len, NULL, 0));
        free(b);
    }
    cr_assert_eq(sg_spans_dropped_total(), 0);
    cr_assert_eq(sg_spans_exported_total(), 20);
}

Test(exporter, collector_503_is_retried)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "/v1/traces", url, sizeof(url)));
    sg_collector_fail_next(coll, 2);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(5);
    uint64_t want = 5;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 3, "two 503s, then 200");
    char *b0 = sg_collector_body(coll, 0, NULL), *b2 = sg_collector_body(coll, 2, NULL);
    cr_assert_str_eq(b0, b2, "the same batch is sent again");
    free(b0);
    free(b2);
    cr_assert_eq(sg_spans_dropped_total(), 0);
}

Test(exporter, collector_503_gives_up_after_max_attempts)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_collector_fail_next(coll, 100);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(4);
    uint64_t want = 4;
    cr_assert(run_until(dropped_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), fast.max_attempts);
    cr_assert_eq(sg_spans_exported_total(), 0);
}

static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* nobody listens there now */
    return ntohs(a.sin_port);
}

Test(exporter, collector_down_drops_counted_without_blocking)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/traces", (unsigned)closed_port());
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, url);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(7);
    uint64_t want = 7;
    cr_assert(run_until(dropped_at_least, &want, 10000));
    cr_assert_eq(sg_spans_exported_total(), 0);
    cr_assert_eq(sg_spans_dropped_total(), 7);

    /* the producer side never waits: a full queue drops at once */
    sg_reqrec_t r = make_rec(200, false);
    uint64_t t0 = sg_now_ns();
    int ok = 0;
    for (int i = 0; i < 3000; i++)
        ok += sg_spans_record(queue, &r, NULL);
    cr_assert_eq(ok, 1024);
    cr_assert_eq(sg_span_queue_dropped(queue), 3000 - 1024);
    cr_assert_lt(sg_now_ns() - t0, 2000000000ull);
}

Test(exporter, host_name_resolved)
{
    /* "localhost" comes from /etc/hosts (no DNS traffic); it may list ::1
     * first, where nothing listens: the next address is tried. */
    char url[128];
    snprintf(url, sizeof(url), "http://localhost:%u", (unsigned)sg_collector_port(coll));
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, url);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(2);
    uint64_t want = 2;
    cr_assert(run_until(exported_at_least, &want, 10000));
    char *host = sg_collector_header(coll, 0, "host");
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "localhost:%u", (unsigned)sg_collector_port(coll));
    cr_assert_str_eq(host, want_host);
    free(host);
}

Test(exporter, stalled_collector_times_out_and_retries)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    c.export.timeout_ms = 200;
    sg_collector_stall_next(coll, 1);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(3);
    uint64_t want = 3;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 2);
}

Test(exporter, stop_during_request_frees_cleanly)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_collector_stall_next(coll, 100);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(3);
    cr_assert(run_until(collector_has_one, NULL, 10000));
    sg_spans_exporter_stop(ex);
    ex = NULL;
    uv_run(&loop, UV_RUN_DEFAULT); /* returns only when every handle is closed */
    cr_assert_eq(sg_spans_dropped_total(), 3, "the batch in flight is counted as dropped");
}

Test(exporter, bad_urls_refused)
{
    const char *bad[] = {NULL,
                         "",
                         "https://collector:4318",
                         "ftp://x",
                         "http://",
                         "http://:80/",
                         "http://h:0",
                         "http://h:99999",
                         "http://h:8x",
                         "http://[::1/x",
                         "http://u@h/",
                         "http://h/a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, bad[i]);
        sg_spans_exporter_t *e = NULL;
        cr_assert_eq(sg_spans_exporter_start(&loop, &c, NULL, &e), -EINVAL, "%s", bad[i] ? bad[i] : "(null)");
        cr_assert_null(e);
    }
    sg_trace_conf_t c = conf_for(SG_EXPORT_NONE, "http://h:1");
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, NULL, &ex), -EINVAL);
    c = conf_for(SG_EXPORT_ZIPKIN, "http://[::1]:9411");
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, NULL, &ex), 0);
}

/* ---- OTLP/HTTP export rules (issue #16 item 5) ------------------------- */

static bool collector_has(void *arg)
{
    return sg_collector_count(coll) >= *(size_t *)arg;
}

/* One batch against a collector that answers `code` first: retried
 * (a second POST, then exported) or dropped (one POST, counted). */
static void one_answer(int code, bool is_retried)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_collector_answer_next(coll, 1, code, NULL);
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(2);
    uint64_t want = 2;
    if (is_retried) {
        cr_assert(run_until(exported_at_least, &want, 10000), "%d: retried, then exported", code);
        cr_assert_eq(sg_collector_count(coll), 2, "%d: one retry", code);
        cr_assert_eq(sg_spans_dropped_total(), 0);
    } else {
        cr_assert(run_until(dropped_at_least, &want, 10000), "%d: dropped", code);
        size_t more = 2;
        run_until(collector_has, &more, 200); /* a retry would come within the 10-50 ms back-off */
        cr_assert_eq(sg_collector_count(coll), 1, "%d: not retried", code);
        cr_assert_eq(sg_spans_exported_total(), 0);
    }
}

/* OTLP/HTTP: 429, 502, 503, 504 are retryable; 408, 500, 501 and other
 * errors are not (main retried 408 and every 5xx). */
typedef struct answer_case {
    int code;
    bool is_retried;
} answer_case_t;

ParameterizedTestParameters(exporter, retries_429_502_503_504_only)
{
    static answer_case_t cases[] = {{429, true},  {502, true},  {503, true},  {504, true}, {408, false},
                                    {500, false}, {501, false}, {400, false}, {413, false}};
    return cr_make_param_array(answer_case_t, cases, SG_ARRAY_SIZE(cases));
}

ParameterizedTest(answer_case_t *c, exporter, retries_429_502_503_504_only)
{
    one_answer(c->code, c->is_retried);
}

Test(exporter, retry_after_is_honoured)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_collector_answer_next(coll, 1, 429, "Retry-After: 1\r\n");
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0); /* back-off 10-50 ms */
    push_spans(1);
    uint64_t want = 1;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 2);
    long long gap = sg_collector_time_ms(coll, 1) - sg_collector_time_ms(coll, 0);
    cr_assert_geq(gap, 950, "the retry waited Retry-After (1 s), not the back-off: %lld ms", gap);
}

/* Every POST on one kept connection, none asks to close it. */
Test(exporter, one_keep_alive_connection)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    c.export.batch_size = 2;
    sg_collector_fail_next(coll, 1); /* a retryable answer keeps the connection too */
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(6);
    uint64_t want = 6;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 4, "3 batches + 1 retry");
    cr_assert_eq(sg_collector_connections(coll), 1, "one connection for every POST");
    for (size_t i = 0; i < 4; i++) {
        char *conn = sg_collector_header(coll, i, "connection");
        cr_assert_null(conn, "POST %zu: Connection: %s", i, conn ? conn : "");
    }
    /* chunked answers are read to their end and keep the connection */
    sg_collector_set_chunked(coll, true);
    push_spans(4);
    want = 10;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_connections(coll), 1);
}

/* The collector closes the connection (after an answer, or while idle):
 * the next POST goes on a new one, nothing is lost. */
Test(exporter, collector_closing_the_connection_is_no_failure)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    sg_collector_answer_next(coll, 1, 200, "Connection: close\r\n");
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    push_spans(1);
    uint64_t want = 1;
    cr_assert(run_until(exported_at_least, &want, 10000));
    push_spans(1);
    want = 2;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_collector_count(coll), 2);
    cr_assert_eq(sg_collector_connections(coll), 2);
    cr_assert_eq(sg_spans_dropped_total(), 0);
}

/* swarm_spans_exported_total{reason}: errors and slow requests always,
 * the rest by the head decision. */
Test(exporter, exported_counted_by_reason)
{
    char url[128];
    sg_trace_conf_t c = conf_for(SG_EXPORT_OTLP_HTTP, sg_collector_url(coll, "", url, sizeof(url)));
    c.export.slow_ms = 10;
    cr_assert_eq(sg_spans_exporter_start(&loop, &c, &fast, &ex), 0);
    sg_reqrec_t r = make_rec(200, false); /* 12 ms: slow */
    r.sampled = false;
    cr_assert(sg_spans_record(queue, &r, NULL));
    r.end_ns = r.start_ns + 1000000; /* 1 ms, unsampled: not exported */
    cr_assert_not(sg_spans_record(queue, &r, NULL));
    r.status = 502;
    r.is_proxy_error = true;
    r.error = "connection refused";
    cr_assert(sg_spans_record(queue, &r, NULL));
    r = make_rec(404, false);
    r.end_ns = r.start_ns + 1000000;
    cr_assert(sg_spans_record(queue, &r, NULL), "sampled");
    uint64_t want = 3;
    cr_assert(run_until(exported_at_least, &want, 10000));
    cr_assert_eq(sg_spans_exported_reason(SG_SPAN_REASON_ERROR), 1);
    cr_assert_eq(sg_spans_exported_reason(SG_SPAN_REASON_SLOW), 1);
    cr_assert_eq(sg_spans_exported_reason(SG_SPAN_REASON_SAMPLED), 1);
}

/* ---- the collector's response reader ------------------------------------ */

static int feed_bytewise(sg__spans_resp_t *r, const char *s, size_t *total)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        size_t used = 0;
        int rc = sg__spans_resp_feed(r, s + i, 1, &used, 1700000000);
        if (rc != SG__SPANS_RESP_MORE) {
            *total = i + used;
            return rc;
        }
    }
    *total = n;
    return SG__SPANS_RESP_MORE;
}

Test(spans, response_reader_framing, .timeout = 30)
{
    static const struct {
        const char *in;
        int rc;
        unsigned status;
        bool keep;
        uint64_t retry_ms;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1, 200, true, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\n{}\r\n0\r\nX: y\r\n\r\n", 1, 200, true, 0},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 1, 204, true, 0},
        {"HTTP/1.1 503 U\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", 1, 503, true, 7000},
        {"HTTP/1.1 429 T\r\nRetry-After: Tue, 14 Nov 2023 22:13:30 GMT\r\nContent-Length: 0\r\n\r\n", 1, 429, true,
         10000},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 1, 200, false, 0},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 1, 200, false, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", -1, 0, false, 0},
        {"HTTP/1.1 2x0 OK\r\n\r\n", -1, 0, false, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", -1, 200, true, 0},
        {"HTTP/1.1 200 OK\r\n\r\n{}", 0, 200, false, 0}, /* to the close */
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        sg__spans_resp_t r;
        sg__spans_resp_init(&r);
        size_t total = 0;
        int rc = feed_bytewise(&r, cases[i].in, &total);
        cr_assert_eq(rc, cases[i].rc, "case %zu: rc %d", i, rc);
        if (rc < 0)
            continue;
        if (rc == 0)
            cr_assert_eq(sg__spans_resp_eof(&r), SG__SPANS_RESP_DONE, "case %zu: ends at the close", i);
        else
            cr_assert_eq(total, strlen(cases[i].in), "case %zu: ends where the response ends", i);
        cr_assert_eq(r.status, cases[i].status, "case %zu", i);
        cr_assert_eq(r.is_keep_alive, cases[i].keep, "case %zu", i);
        cr_assert_eq(r.retry_after_ms, cases[i].retry_ms, "case %zu: %llu", i, (unsigned long long)r.retry_after_ms);
    }
    /* one read holding the response and more: the rest is not the response's */
    sg__spans_resp_t r;
    sg__spans_resp_init(&r);
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1";
    size_t used = 0;
    cr_assert_eq(sg__spans_resp_feed(&r, two, strlen(two), &used, 0), SG__SPANS_RESP_DONE);
    cr_assert_eq(used, strlen(two) - 8);
    sg__spans_resp_init(&r);
    cr_assert_eq(sg__spans_resp_eof(&r), -1, "closed before any byte");
}
