/* Replays every file of test/fuzz/seeds/<target>/ and
 * test/fuzz/regressions/<target>/ through the fuzz targets' own entry
 * functions, so `make test` re-checks every input the long `make fuzz` runs
 * were seeded with or found a bug with. The targets are every
 * test/fuzz/fuzz_<name>.c: test/CMakeLists.txt compiles each with
 * SG_FUZZ_REPLAY and its LLVMFuzzerTestOneInput renamed, and lists them in
 * the generated fuzz_targets.h. The checks are the targets' own FUZZ_CHECK
 * invariants: a broken one aborts, which fails the test (an entry always
 * returns 0). Also holds one readable regression test per fuzz finding. */
#include "fuzz_targets.h"
#include "../fuzz/h1ref.c" /* the reference reader of the differential targets, tested below */

#include "sg/expose.h"
#include "sg/http1.h"
#include "support/dirwalk.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TARGETS (sizeof(k_fuzz_targets) / sizeof(k_fuzz_targets[0]))

static void corpus_dir(char *out, size_t cap, const char *kind, const char *target)
{
    snprintf(out, cap, "%s/test/fuzz/%s/%s", SG_SOURCE_DIR, kind, target);
}

static void count_file(const char *path, const char *name, bool is_dir, void *arg)
{
    (void)path;
    (void)name;
    *(long *)arg += !is_dir;
}

/* Files in dir (not dot files), counted apart from the replay; -1 when the
 * directory does not exist. */
static long count_files(const char *dir)
{
    long n = 0;
    return sg_dirwalk(dir, count_file, &n) < 0 ? -1 : n;
}

typedef struct replay {
    const char *kind, *target;
    sg_fuzz_entry_t fn;
    size_t n;
} replay_t;

static void replay_file(const char *path, const char *name, bool is_dir, void *arg)
{
    replay_t *rp = arg;
    if (is_dir)
        return;
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert_geq(len, 0);
    rewind(f);
    /* An exact-size heap copy: ASan sees any read past the input. */
    uint8_t *buf = malloc(len ? (size_t)len : 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len, "%s", path);
    fclose(f);
    fprintf(stderr, "replay %s/%s/%s\n", rp->kind, rp->target, name);
    (void)rp->fn(buf, (size_t)len); /* a broken invariant aborts inside */
    free(buf);
    rp->n++;
}

static size_t replay_dir(const char *kind, const char *target, sg_fuzz_entry_t fn)
{
    char dir[512];
    corpus_dir(dir, sizeof(dir), kind, target);
    replay_t rp = {kind, target, fn, 0};
    (void)sg_dirwalk(dir, replay_file, &rp);
    return rp.n;
}

/* Parameters are copied to the test's process: an index into the table,
 * not pointers. */
ParameterizedTestParameters(fuzz_replay, target)
{
    static size_t idx[N_TARGETS];
    for (size_t i = 0; i < N_TARGETS; i++)
        idx[i] = i;
    return cr_make_param_array(size_t, idx, N_TARGETS);
}

ParameterizedTest(size_t *i, fuzz_replay, target, .timeout = 60)
{
    cr_assert_lt(*i, N_TARGETS);
    const struct sg_fuzz_target *t = &k_fuzz_targets[*i];
    static const char *const kinds[] = {"seeds", "regressions"};
    for (size_t k = 0; k < 2; k++) {
        char dir[512];
        corpus_dir(dir, sizeof(dir), kinds[k], t->name);
        long present = count_files(dir);
        size_t replayed = replay_dir(kinds[k], t->name, t->fn);
        if (k == 0)
            cr_assert_gt(present, 0, "no seeds for fuzz target %s in %s", t->name, dir);
        cr_assert_geq((long)replayed, present, "%s: %zu of %ld inputs replayed", dir, replayed, present);
        cr_log_info("%s/%s: %zu inputs", kinds[k], t->name, replayed);
    }
}

typedef struct corpus_check {
    bool is_regressions;
    long n_regressions;
} corpus_check_t;

static void check_corpus_dir(const char *path, const char *name, bool is_dir, void *arg)
{
    corpus_check_t *cc = arg;
    bool known = false;
    for (size_t i = 0; i < N_TARGETS; i++)
        known = known || !strcmp(k_fuzz_targets[i].name, name);
    cr_expect(is_dir && known, "%s: no test/fuzz/fuzz_%s.c replays it", path, name);
    if (cc->is_regressions && is_dir) {
        long n = count_files(path);
        cc->n_regressions += n > 0 ? n : 0;
    }
}

/* Every corpus directory belongs to a fuzz target (a regression input in a
 * directory no target reads would never be replayed), and the table is
 * what test/fuzz holds. */
Test(fuzz_replay, every_corpus_dir_has_a_target, .timeout = 10)
{
    cr_assert_geq(N_TARGETS, 5, "the generated table lists %zu fuzz targets", N_TARGETS);
    static const char *const kinds[] = {"seeds", "regressions"};
    corpus_check_t cc = {false, 0};
    for (size_t k = 0; k < 2; k++) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/test/fuzz/%s", SG_SOURCE_DIR, kinds[k]);
        cc.is_regressions = k == 1;
        cr_assert_geq(sg_dirwalk(dir, check_corpus_dir, &cc), 0, "%s", dir);
    }
    /* The findings this file has a readable test for are on disk. */
    cr_assert_geq(cc.n_regressions, 2);
}

/* The strict reference reader of the differential targets (test/fuzz/h1ref.c)
 * on hand-written messages: what it must take, and where it must stop. */
Test(fuzz_h1ref, reads_and_refuses, .timeout = 10)
{
    static const struct {
        bool is_response, is_head;
        const char *in;
        h1ref_state_t state;
        size_t n_msgs;
        h1ref_err_t err;
        const char *body; /* of the last complete message */
    } v[] = {
        {false, false, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", H1REF_END, 1, H1REF_OK, ""},
        {false, false, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", H1REF_END, 2,
         H1REF_OK, ""},
        {false, false, "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET", H1REF_PARTIAL, 1, H1REF_OK, "abc"},
        {false, false,
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3;a=b;c=\"d e\"\r\nabc\r\n0\r\nT: 1\r\n\r\n",
         H1REF_END, 1, H1REF_OK, "abc"},
        {false, false, "GET / HTTP/1.2\r\n\r\n", H1REF_END, 1, H1REF_OK, ""},
        {false, false, "GET /  HTTP/1.1\r\n\r\n", H1REF_ERROR, 0, H1REF_E_EXTRA_SP, NULL},
        {false, false, "GET / HTTP/2.0\r\n\r\n", H1REF_ERROR, 0, H1REF_E_VERSION, NULL},
        {false, false, "GET /\x80 HTTP/1.1\r\n\r\n", H1REF_ERROR, 0, H1REF_E_TARGET_8BIT, NULL},
        {false, false, "GET / HTTP/1.1\r\nA : b\r\n\r\n", H1REF_ERROR, 0, H1REF_E_FIELD_NAME, NULL},
        {false, false, "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", H1REF_ERROR, 0, H1REF_E_WS_LINE, NULL},
        {false, false, "GET / HTTP/1.1\nA: b\r\n\r\n", H1REF_ERROR, 0, H1REF_E_LINE_END, NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", H1REF_ERROR, 0,
         H1REF_E_TE_CL, NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", H1REF_ERROR, 0, H1REF_E_TE_CODING,
         NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n", H1REF_ERROR, 0, H1REF_E_TE_EMPTY, NULL},
        {false, false, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", H1REF_ERROR, 0, H1REF_E_TE_HTTP10,
         NULL},
        {false, false, "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", H1REF_ERROR, 0, H1REF_E_CL,
         NULL},
        {false, false, "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", H1REF_ERROR, 0,
         H1REF_E_TOO_LARGE, NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", H1REF_ERROR, 0,
         H1REF_E_CHUNK_DATA_END, NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", H1REF_ERROR, 0,
         H1REF_E_CHUNK_EXT, NULL},
        {false, false, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA b: c\r\n\r\n", H1REF_ERROR, 0,
         H1REF_E_TRAILER, NULL},
        {true, false, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", H1REF_END, 2,
         H1REF_OK, "hi"},
        {true, false, "HTTP/1.1 200 OK\r\n\r\nuntil close", H1REF_END, 1, H1REF_OK, "until close"},
        {true, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", H1REF_END, 1, H1REF_OK, "zz"},
        {true, true, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", H1REF_END, 1, H1REF_OK, ""},
        {true, false, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", H1REF_END, 1, H1REF_OK, ""},
        {true, false, "HTTP/1.1 099 X\r\n\r\n", H1REF_ERROR, 0, H1REF_E_STATUS, NULL},
        {true, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", H1REF_ERROR, 0, H1REF_E_TE_CODING,
         NULL},
    };
    static char body[512];
    static h1ref_out_t o;
    const h1ref_limits_t lim = {24, 4096};
    for (size_t i = 0; i < SG_ARRAY_SIZE(v); i++) {
        h1ref_init(&o, body, sizeof(body));
        if (v[i].is_response)
            h1ref_parse_response(&o, v[i].in, strlen(v[i].in), v[i].is_head, true, &lim);
        else
            h1ref_parse_requests(&o, v[i].in, strlen(v[i].in), &lim);
        cr_assert_eq(o.state, v[i].state, "%zu: %s", i, v[i].in);
        cr_assert_eq(o.n_msgs, v[i].n_msgs, "%zu: %s", i, v[i].in);
        cr_assert_eq(o.err, v[i].err, "%zu: %s (%s)", i, v[i].in, h1ref_err_name(o.err));
        if (v[i].body) {
            const h1ref_msg_t *m = &o.msg[o.n_msgs - 1];
            cr_assert_eq(m->body_len, strlen(v[i].body), "%zu", i);
            cr_assert_eq(memcmp(o.body + m->body0, v[i].body, m->body_len), 0, "%zu", i);
        }
    }
}

/* ---- one test per finding ---------------------------------------------------- */

/* fuzz_metrics: a label value (or HELP text) with bytes that are not UTF-8
 * went out raw; Prometheus rejects the whole scrape ("invalid UTF-8 label
 * value"). Now each invalid byte is U+FFFD. Input:
 * test/fuzz/regressions/metrics/invalid_utf8_label. */
Test(fuzz_regress, metrics_invalid_utf8_label_value, .timeout = 10)
{
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++) {
        sg_expose_t x;
        sg_expose_init(&x, (sg_expose_format_t)f);
        const char *names[] = {"agent", "project"};
        const char *values[] = {"a\xff\"b\xc3", "ok \xe2\x82\xac \xed\xa0\x80"}; /* euro sign; a surrogate */
        sg_expose_family(&x, "swarm_circuit_breaker_state", "help \xfe", SG_METRIC_GAUGE);
        sg_expose_sample(&x, "swarm_circuit_breaker_state", "", names, values, 2, 1);
        cr_assert_eq(sg_expose_finish(&x), 0);
        char *s = malloc(x.len + 1);
        cr_assert_not_null(s);
        memcpy(s, x.data, x.len);
        s[x.len] = '\0';
        cr_assert_not_null(strstr(s, "# HELP swarm_circuit_breaker_state help \xef\xbf\xbd\n"), "%s", s);
        cr_assert_not_null(strstr(s, "{agent=\"a\xef\xbf\xbd\\\"b\xef\xbf\xbd\",project=\"ok \xe2\x82\xac "
                                     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1\n"),
                           "%s", s);
        free(s);
        sg_expose_destroy(&x);
    }
}

/* fuzz_response: "Transfer-Encoding: chunked<TAB>". llhttp did not take it
 * as chunked (response read until close) while the value we forward,
 * trimmed, is "chunked": the client would have framed the body as chunks
 * the proxy never checked. Now refused (400; the proxy answers 502), in
 * both directions. Input: test/fuzz/regressions/response/te_chunked_tab. */
Test(fuzz_regress, response_te_chunked_with_tab_is_refused, .timeout = 10)
{
    static const char *const heads[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\n\r\n",
    };
    for (size_t i = 0; i < 3; i++) {
        sg_h1_parser_t p;
        sg_h1_parser_init(&p, i < 2 ? SG_H1_RESPONSE : SG_H1_REQUEST);
        sg_h1_header_t hdrs[8];
        cr_assert_eq(sg_h1_parse_head(&p, heads[i], strlen(heads[i]), hdrs, 8, false), -400, "%s", heads[i]);
    }
    /* #15: one `chunked` alone is the only transfer coding let through
     * (nginx's rule); OWS around it is trimmed by llhttp too. */
    static const char *const refused[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        sg_h1_parser_t p;
        sg_h1_parser_init(&p, SG_H1_RESPONSE);
        sg_h1_header_t hdrs[8];
        cr_assert_eq(sg_h1_parse_head(&p, refused[i], strlen(refused[i]), hdrs, 8, false), -400, "%s", refused[i]);
    }
    sg_h1_parser_t p;
    sg_h1_parser_init(&p, SG_H1_RESPONSE);
    sg_h1_header_t hdrs[8];
    const char *ok = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n";
    cr_assert_eq(sg_h1_parse_head(&p, ok, strlen(ok), hdrs, 8, false), 0, "%s", ok);
    cr_assert(p.head.is_chunked);
}
