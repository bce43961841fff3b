/* Unit tests for src/obs/log.c: access-log lines, error-log lines, rings,
 * drops, flushing and shutdown. Outputs are real files in a temp dir. */
#include "sg/log.h"

#include "sg/runtime.h"
#include "support/jsoncheck.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], access_path[300], error_path[300];

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/sglog.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(access_path, sizeof(access_path), "%s/access.log", dir);
    snprintf(error_path, sizeof(error_path), "%s/error.log", dir);
}

static void teardown(void)
{
    sg_log_shutdown();
    char p[400];
    snprintf(p, sizeof(p), "%s/access.log", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/access.log.1", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/error.log", dir);
    unlink(p);
    rmdir(dir);
}

TestSuite(log, .init = setup, .fini = teardown, .timeout = 20);

static void init_logs(sg_log_level_t level, sg_log_format_t fmt, const char *access)
{
    sg_log_conf_t conf = {
        .access = access ? access : access_path,
        .error = error_path,
        .level = level,
        .format = fmt,
        .ring_bytes = 1 << 20,
        .flush_interval_ms = 100,
    };
    char err[256] = "";
    cr_assert_eq(sg_log_init(&conf, err, sizeof(err)), 0, "%s", err);
}

/* Whole file, NUL-terminated; *len gets its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *len = 0;
        char *e = malloc(1);
        e[0] = '\0';
        return e;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static size_t count_lines(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

static sg_trace_ctx_t trace_ctx(void)
{
    sg_trace_ctx_t t;
    memset(&t, 0, sizeof(t));
    strcpy(t.trace_id, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    strcpy(t.span_id, "a2fb4a1d1a96d312");
    strcpy(t.parent_span_id, "00f067aa0ba902b7");
    return t;
}

static sg_reqrec_t base_rec(const sg_trace_ctx_t *t)
{
    sg_reqrec_t r;
    memset(&r, 0, sizeof(r));
    r.start_ns = 1000000000ull;
    r.upstream_start_ns = 1000200000ull;
    r.upstream_head_ns = 1003700400ull;       /* 3.5004 ms -> 3.500 */
    r.end_ns = 1012345678ull;                 /* 12.345678 ms -> 12.346 */
    r.start_unix_ns = 1714566896789000000ull; /* 2024-05-01T12:34:56.789Z */
    r.method = SG_METHOD_POST;
    r.status = 201;
    r.req_bytes = 1234;
    r.resp_bytes = 98765;
    r.trace = t;
    r.path = SG_STR("/api/tickets");
    r.host = SG_STR("api.example.com");
    r.client_addr = SG_STR("127.0.0.1:54321");
    r.server_addr = SG_STR("127.0.0.1:3002");
    r.route_idx = 0;
    return r;
}

static void assert_field(const char *line, size_t len, const char *key, const char *want)
{
    char got[16384];
    long n = sg_test_json_get(line, len, key, 0, got, sizeof(got));
    cr_assert_geq(n, 0, "field %s missing in %.*s", key, (int)len, line);
    cr_assert_str_eq(got, want, "field %s", key);
}

static void assert_valid_json_line(const char *line, size_t len)
{
    char err[128];
    cr_assert(sg_test_json_valid(line, len, err, sizeof(err)), "%s: %.*s", err, (int)len, line);
}

Test(log, access_line_is_json_with_all_fields)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    cr_assert_not_null(ring);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    r.error = "upstream timeout";
    sg_log_access(ring, &r, "tickets");
    cr_assert_gt(sg_log_flush_all(), 0);

    size_t len;
    char *s = slurp(access_path, &len);
    cr_assert_eq(count_lines(s, len), 1);
    cr_assert_eq(s[len - 1], '\n');
    assert_valid_json_line(s, len - 1);
    assert_field(s, len - 1, "ts", "2024-05-01T12:34:56.789Z");
    assert_field(s, len - 1, "trace_id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    assert_field(s, len - 1, "trace_id_hex", "4bf92f3577b34da6a3ce929d0e0e4736"); /* spans' form */
    assert_field(s, len - 1, "span_id", "a2fb4a1d1a96d312");
    assert_field(s, len - 1, "parent_span_id", "00f067aa0ba902b7");
    assert_field(s, len - 1, "client", "127.0.0.1:54321");
    assert_field(s, len - 1, "method", "POST");
    assert_field(s, len - 1, "path", "/api/tickets");
    assert_field(s, len - 1, "host", "api.example.com");
    assert_field(s, len - 1, "route", "tickets");
    assert_field(s, len - 1, "upstream", "127.0.0.1:3002");
    assert_field(s, len - 1, "status", "201");
    assert_field(s, len - 1, "req_bytes", "1234");
    assert_field(s, len - 1, "resp_bytes", "98765");
    assert_field(s, len - 1, "dur_ms", "12.346");
    assert_field(s, len - 1, "upstream_ms", "3.500");
    assert_field(s, len - 1, "error", "upstream timeout");
    free(s);
    sg_log_ring_free(ring);
}

Test(log, access_optional_fields_omitted)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_trace_ctx_t t = trace_ctx();
    t.parent_span_id[0] = '\0';
    sg_reqrec_t r = base_rec(&t);
    r.server_addr = SG_STR_NULL;
    r.upstream_start_ns = 0;
    r.upstream_head_ns = 0;
    r.status = 404;
    r.is_proxy_error = true;
    r.route_idx = -1;
    sg_log_access(ring, &r, NULL);
    sg_log_flush_all();
    size_t len;
    char *s = slurp(access_path, &len);
    assert_valid_json_line(s, len - 1);
    const char *absent[] = {"parent_span_id", "route", "upstream", "upstream_ms", "error"};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(sg_test_json_count(s, len - 1, absent[i]), 0, "%s present", absent[i]);
    assert_field(s, len - 1, "status", "404");
    free(s);
    sg_log_ring_free(ring);
}

Test(log, access_hostile_strings_escaped)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    static const char path[] = "/x\r\n{\"evil\":1}\\\"\x01\x7f\xff\xc3\x28\xed\xa0\x80/\xe2\x82\xac";
    r.path = sg_str_make(path, sizeof(path) - 1);
    r.host = SG_STR("h\r\nX-Injected: 1");
    r.error = "bad \"thing\"\n";
    sg_log_access(ring, &r, "route \"quoted\"");
    sg_log_flush_all();
    size_t len;
    char *s = slurp(access_path, &len);
    cr_assert_eq(count_lines(s, len), 1, "CR/LF must not split the line");
    cr_assert_null(memchr(s, '\r', len));
    assert_valid_json_line(s, len - 1);
    assert_field(
        s, len - 1, "path",
        "/x\r\n{\"evil\":1}\\\"\x01\x7f\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/\xe2\x82\xac");
    assert_field(s, len - 1, "host", "h\r\nX-Injected: 1");
    assert_field(s, len - 1, "route", "route \"quoted\"");
    assert_field(s, len - 1, "error", "bad \"thing\"\n");
    cr_assert_eq(sg_test_json_count(s, len - 1, "evil"), 0);
    free(s);
    sg_log_ring_free(ring);
}

Test(log, access_long_path_cut_line_still_json)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    size_t n = 20000;
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (i % 3) ? '\n' : 'a'; /* escapes double the size */
    r.path = sg_str_make(p, n);
    r.host = sg_str_make(p, n);
    sg_log_access(ring, &r, "r");
    sg_log_flush_all();
    size_t len;
    char *s = slurp(access_path, &len);
    cr_assert_eq(count_lines(s, len), 1);
    cr_assert_leq(len, SG_LOG_LINE_MAX);
    assert_valid_json_line(s, len - 1);
    assert_field(s, len - 1, "status", "201");
    cr_assert_eq(sg_log_ring_dropped(ring), 0);
    free(s);
    free(p);
    sg_log_ring_free(ring);
}

Test(log, access_off_writes_nothing)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, "off");
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    sg_log_access(ring, &r, "x");
    cr_assert_eq(sg_log_flush_all(), 0);
    struct stat st;
    cr_assert_neq(stat(access_path, &st), 0);
    sg_log_ring_free(ring);
}

Test(log, ring_full_drops_and_counts)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(4096);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    int attempts = 100;
    for (int i = 0; i < attempts; i++)
        sg_log_access(ring, &r, "x");
    uint64_t dropped = sg_log_ring_dropped(ring);
    cr_assert_gt(dropped, 0, "a 4 KiB ring cannot hold 100 lines of ~400 bytes");
    cr_assert_eq(sg_log_dropped_total(), dropped);
    sg_log_flush_all();
    size_t len;
    char *s = slurp(access_path, &len);
    size_t written = count_lines(s, len);
    cr_assert_eq(written + dropped, (size_t)attempts);
    cr_assert_leq(len, 4096);
    free(s);

    /* after a flush there is room again */
    sg_log_access(ring, &r, "x");
    cr_assert_eq(sg_log_ring_dropped(ring), dropped);
    sg_log_ring_free(ring);
    cr_assert_eq(sg_log_dropped_total(), dropped, "drops of freed rings still counted");
    s = slurp(access_path, &len);
    cr_assert_eq(count_lines(s, len), written + 1, "ring_free flushes what is left");
    free(s);
}

typedef struct producer {
    sg_log_ring_t *ring;
    int n;
    _Atomic bool done;
} producer_t;

static void *produce(void *arg)
{
    producer_t *pr = arg;
    sg_log_thread_attach(pr->ring);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    char path[64];
    for (int i = 0; i < pr->n; i++) {
        int n = snprintf(path, sizeof(path), "/seq/%d", i);
        r.path = sg_str_make(path, (size_t)n);
        r.status = (uint16_t)(200 + i % 300);
        sg_log_access(pr->ring, &r, "seq");
        if (i % 1000 == 0)
            sg_log(SG_LOG_INFO, t.trace_id, "progress %d", i);
    }
    atomic_store(&pr->done, true);
    return NULL;
}

/* Every line is whole JSON and the seq numbers only increase. */
static size_t check_seq_lines(char *s, size_t len)
{
    size_t lines = 0;
    long last = -1;
    char *p = s, *end = s + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        cr_assert_not_null(nl, "last line not terminated");
        assert_valid_json_line(p, (size_t)(nl - p));
        char path[64];
        cr_assert_gt(sg_test_json_get(p, (size_t)(nl - p), "path", 0, path, sizeof(path)), 0);
        long seq = strtol(path + 5, NULL, 10);
        cr_assert_gt(seq, last);
        last = seq;
        lines++;
        p = nl + 1;
    }
    return lines;
}

Test(log, concurrent_flush_keeps_lines_whole_and_counts_drops, .timeout = 60)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    producer_t pr = {.ring = sg_log_ring_new(1 << 14), .n = 20000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, produce, &pr), 0);
    while (!atomic_load(&pr.done))
        sg_log_flush_all();
    pthread_join(th, NULL);
    uint64_t dropped = sg_log_ring_dropped(pr.ring);
    sg_log_shutdown();
    size_t len;
    char *s = slurp(access_path, &len);
    size_t lines = check_seq_lines(s, len);
    free(s);
    size_t elen;
    char *e = slurp(error_path, &elen);
    size_t elines = count_lines(e, elen);
    free(e);
    cr_assert_eq(lines + elines + dropped, 20000 + 20, "written + dropped = produced");
    sg_log_ring_free(pr.ring);
}

Test(log, shutdown_flushes_everything, .timeout = 60)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    producer_t pr = {.ring = sg_log_ring_new(16u << 20), .n = 10000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, produce, &pr), 0);
    pthread_join(th, NULL);
    cr_assert_eq(sg_log_ring_dropped(pr.ring), 0);
    sg_log_shutdown(); /* no flush before: everything is still in the ring */
    size_t len;
    char *s = slurp(access_path, &len);
    cr_assert_eq(check_seq_lines(s, len), 10000);
    free(s);
    char *e = slurp(error_path, &len);
    cr_assert_eq(count_lines(e, len), 10);
    free(e);
    sg_log_ring_free(pr.ring);
}

Test(log, levels_filter)
{
    init_logs(SG_LOG_WARN, SG_LOG_FORMAT_JSON, NULL);
    cr_assert_not(sg_log_enabled(SG_LOG_INFO));
    cr_assert(sg_log_enabled(SG_LOG_WARN));
    sg_log(SG_LOG_DEBUG, NULL, "direct debug");
    sg_log(SG_LOG_INFO, NULL, "direct info");
    sg_log(SG_LOG_WARN, NULL, "direct warn");
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_log_thread_attach(ring);
    cr_assert_eq(sg_log_thread_ring(), ring);
    sg_log(SG_LOG_INFO, NULL, "ring info");
    sg_log(SG_LOG_ERROR, NULL, "ring error");
    sg_log_flush_all();
    size_t len;
    char *s = slurp(error_path, &len);
    cr_assert_eq(count_lines(s, len), 2, "%s", s);
    cr_assert_not_null(strstr(s, "direct warn"));
    cr_assert_not_null(strstr(s, "ring error"));
    cr_assert_null(strstr(s, "info"));
    cr_assert_null(strstr(s, "debug"));
    free(s);
    sg_log_set_level(SG_LOG_DEBUG);
    sg_log(SG_LOG_DEBUG, NULL, "now debug");
    sg_log_thread_attach(NULL);
    sg_log_ring_free(ring);
    s = slurp(error_path, &len);
    cr_assert_not_null(strstr(s, "now debug"));
    free(s);
}

Test(log, error_line_json)
{
    init_logs(SG_LOG_DEBUG, SG_LOG_FORMAT_JSON, NULL);
    sg_log(SG_LOG_ERROR, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "connect to %s failed:\r\n%s", "10.0.0.1:80",
           "refused \"now\"");
    sg_log(SG_LOG_INFO, NULL, "no trace");
    size_t len;
    char *s = slurp(error_path, &len);
    cr_assert_eq(count_lines(s, len), 2);
    char *nl = strchr(s, '\n');
    assert_valid_json_line(s, (size_t)(nl - s));
    assert_field(s, (size_t)(nl - s), "level", "error");
    assert_field(s, (size_t)(nl - s), "trace_id", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    assert_field(s, (size_t)(nl - s), "msg", "connect to 10.0.0.1:80 failed:\r\nrefused \"now\"");
    char ts[64];
    cr_assert_eq(sg_test_json_get(s, (size_t)(nl - s), "ts", 0, ts, sizeof(ts)), 24);
    assert_valid_json_line(nl + 1, len - (size_t)(nl + 1 - s) - 1);
    cr_assert_eq(sg_test_json_count(nl + 1, len - (size_t)(nl + 1 - s) - 1, "trace_id"), 0);
    free(s);
}

Test(log, error_line_text_cannot_forge_lines)
{
    init_logs(SG_LOG_DEBUG, SG_LOG_FORMAT_TEXT, NULL);
    sg_log(SG_LOG_WARN, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "bad header: %s", "x\r\n2024-01-01 error forged");
    size_t len;
    char *s = slurp(error_path, &len);
    cr_assert_eq(count_lines(s, len), 1);
    cr_assert_null(memchr(s, '\r', len));
    cr_assert_eq(s[23], 'Z');
    cr_assert_not_null(strstr(s, " warn [4bf92f35-77b3-4da6-a3ce-929d0e0e4736] bad header: x\\r\\n2024"));
    free(s);
}

Test(log, long_message_cut_still_one_json_line)
{
    init_logs(SG_LOG_DEBUG, SG_LOG_FORMAT_JSON, NULL);
    char *big = malloc(100000);
    memset(big, '\n', 99999);
    big[99999] = '\0';
    sg_log(SG_LOG_ERROR, NULL, "%s", big);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_log_thread_attach(ring);
    sg_log(SG_LOG_ERROR, NULL, "%s", big);
    sg_log_flush_all();
    size_t len;
    char *s = slurp(error_path, &len);
    cr_assert_eq(count_lines(s, len), 2);
    char *nl = strchr(s, '\n');
    assert_valid_json_line(s, (size_t)(nl - s));
    assert_valid_json_line(nl + 1, len - (size_t)(nl + 1 - s) - 1);
    free(s);
    free(big);
    sg_log_thread_attach(NULL);
    sg_log_ring_free(ring);
}

Test(log, reopen_after_rotation)
{
    init_logs(SG_LOG_INFO, SG_LOG_FORMAT_JSON, NULL);
    sg_log_ring_t *ring = sg_log_ring_new(1 << 16);
    sg_trace_ctx_t t = trace_ctx();
    sg_reqrec_t r = base_rec(&t);
    sg_log_access(ring, &r, "before");
    sg_log_flush_all();
    char rotated[400];
    snprintf(rotated, sizeof(rotated), "%s.1", access_path);
    cr_assert_eq(rename(access_path, rotated), 0);
    sg_log_access(ring, &r, "queued");
    cr_assert_eq(sg_log_reopen(), 0);
    sg_log_access(ring, &r, "after");
    sg_log_flush_all();
    size_t len;
    char *s = slurp(rotated, &len);
    cr_assert_eq(count_lines(s, len), 2, "lines queued before the reopen go to the old file");
    free(s);
    s = slurp(access_path, &len);
    cr_assert_eq(count_lines(s, len), 1);
    cr_assert_not_null(strstr(s, "\"route\":\"after\""));
    free(s);
    sg_log_ring_free(ring);
}

Test(log, init_reports_unopenable_file)
{
    sg_log_conf_t conf = {.access = "/nonexistent-dir-sg/x.log", .error = "stderr"};
    char err[256] = "";
    cr_assert_lt(sg_log_init(&conf, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "/nonexistent-dir-sg/x.log"), "%s", err);
}
