#include "sg/expose.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Output as a NUL-terminated string (test helper). */
static char *out_str(sg_expose_t *x)
{
    char *s = malloc(x->len + 1);
    cr_assert_not_null(s);
    memcpy(s, x->data, x->len);
    s[x->len] = '\0';
    return s;
}

/* ---- floats ------------------------------------------------------------- */

struct dbl_case {
    double v;
    char want[40];
};

ParameterizedTestParameters(expose, double_text)
{
    static struct dbl_case cases[] = {
        {0, "0"},
        {1, "1"},
        {-3, "-3"},
        {300, "300"},
        {0.1, "0.1"},
        {0.0005, "0.0005"},
        {2.5, "2.5"},
        {-2.5, "-2.5"},
        {1e-7, "1e-07"},
        {0.00001, "0.00001"},
        {1e21, "1e+21"},
        {1e16, "10000000000000000"},
        {0.30000000000000004, "0.30000000000000004"},
        {123456789.125, "123456789.125"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
        {9007199254740993.0, "9007199254740992"},
    };
    return cr_make_param_array(struct dbl_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct dbl_case *c, expose, double_text, .timeout = 5)
{
    char out[40];
    size_t n = sg_expose_format_double(c->v, out);
    cr_assert_eq(n, strlen(out));
    cr_assert_str_eq(out, c->want, "%.17g -> %s, want %s", c->v, out, c->want);
    cr_assert_eq(strtod(out, NULL), c->v);
}

Test(expose, double_specials, .timeout = 5)
{
    char out[40];
    sg_expose_format_double(NAN, out);
    cr_assert_str_eq(out, "NaN");
    sg_expose_format_double(INFINITY, out);
    cr_assert_str_eq(out, "+Inf");
    sg_expose_format_double(-INFINITY, out);
    cr_assert_str_eq(out, "-Inf");
}

/* Shortest and exact: every formatted value reads back to the same double,
 * and no shorter %.Ng does. */
Test(expose, double_round_trips_random, .timeout = 20)
{
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 100000; i++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        double v;
        if (i % 2) {
            memcpy(&v, &st, sizeof(v));
            if (!isfinite(v))
                continue;
        } else {
            v = (double)(st % 100000000) / 1e6; /* "decimal-looking" values */
        }
        char out[40];
        sg_expose_format_double(v, out);
        /* plain ifs: criterion's --full-stats makes each assert costly */
        if (strtod(out, NULL) != v)
            cr_assert_fail("%.17g printed as %s", v, out);
        /* digit count is minimal */
        size_t digits = 0;
        bool leading = true;
        for (const char *p = out; *p && *p != 'e'; p++) {
            if (*p >= '1' && *p <= '9')
                leading = false;
            if (*p >= '0' && *p <= '9' && !leading)
                digits++;
        }
        if (digits > 1 && !strchr(out, 'e') && !strchr(out, '.'))
            continue; /* integers: trailing zeros are not significance */
        if (digits > 1) {
            char shorter[400];
            snprintf(shorter, sizeof(shorter), "%.*g", (int)digits - 1, v);
            if (strtod(shorter, NULL) == v)
                cr_assert_fail("%s is shorter than %s", shorter, out);
        }
    }
}

/* ---- escaping ------------------------------------------------------------ */

Test(expose, label_values_escaped, .timeout = 5)
{
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++) {
        sg_expose_t x;
        sg_expose_init(&x, (sg_expose_format_t)f);
        const char *names[] = {"a", "b"};
        const char *vals[] = {"q\"uote back\\slash\nnew", "plain"};
        sg_expose_family(&x, "m", "h", SG_METRIC_GAUGE);
        sg_expose_sample(&x, "m", "", names, vals, 2, 1);
        char *s = out_str(&x);
        cr_assert(strstr(s, "m{a=\"q\\\"uote back\\\\slash\\nnew\",b=\"plain\"} 1\n"), "%s", s);
        free(s);
        sg_expose_destroy(&x);
    }
}

Test(expose, help_escaped_per_format, .timeout = 5)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    sg_expose_family(&x, "m", "a \"q\" b\\c\nd", SG_METRIC_GAUGE);
    char *s = out_str(&x);
    cr_assert_str_eq(s, "# HELP m a \"q\" b\\\\c\\nd\n# TYPE m gauge\n");
    free(s);
    sg_expose_reset(&x, SG_EXPOSE_OPENMETRICS);
    sg_expose_family(&x, "m", "a \"q\" b\\c\nd", SG_METRIC_GAUGE);
    s = out_str(&x);
    cr_assert_str_eq(s, "# HELP m a \\\"q\\\" b\\\\c\\nd\n# TYPE m gauge\n");
    free(s);
    sg_expose_destroy(&x);
}

/* ---- counters ---------------------------------------------------------------- */

Test(expose, counter_names_per_format, .timeout = 5)
{
    /* family given with or without _total; sample with or without suffix */
    const char *fam_names[] = {"c", "c_total"};
    for (int i = 0; i < 2; i++) {
        sg_expose_t x;
        sg_expose_init(&x, SG_EXPOSE_TEXT);
        sg_expose_family(&x, fam_names[i], "help", SG_METRIC_COUNTER);
        sg_expose_sample(&x, "c", "_total", NULL, NULL, 0, 1);
        sg_expose_sample(&x, "c", "", NULL, NULL, 0, 2);
        sg_expose_sample(&x, "c_total", "", NULL, NULL, 0, 3);
        int rc = sg_expose_finish(&x);
        cr_assert_eq(rc, 0);
        char *s = out_str(&x);
        cr_assert_str_eq(s, "# HELP c_total help\n# TYPE c_total counter\nc_total 1\nc_total 2\nc_total 3\n");
        free(s);

        sg_expose_reset(&x, SG_EXPOSE_OPENMETRICS);
        sg_expose_family(&x, fam_names[i], "help", SG_METRIC_COUNTER);
        sg_expose_sample(&x, "c", "", NULL, NULL, 0, 2);
        rc = sg_expose_finish(&x);
        cr_assert_eq(rc, 0);
        s = out_str(&x);
        cr_assert_str_eq(s, "# HELP c help\n# TYPE c counter\nc_total 2\n# EOF\n");
        free(s);
        sg_expose_destroy(&x);
    }
}

Test(expose, gauge_named_total_is_kept, .timeout = 5)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_OPENMETRICS);
    sg_expose_family(&x, "swarm_tickets_total", "t", SG_METRIC_GAUGE);
    sg_expose_sample(&x, "swarm_tickets_total", "", NULL, NULL, 0, 4);
    char *s = out_str(&x);
    cr_assert_str_eq(s, "# HELP swarm_tickets_total t\n# TYPE swarm_tickets_total gauge\nswarm_tickets_total 4\n");
    free(s);
    sg_expose_destroy(&x);
}

/* ---- histograms ------------------------------------------------------------------ */

Test(expose, histogram_text, .timeout = 5)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    const double bounds[] = {0.5, 1, 2.5};
    const uint64_t counts[] = {1, 0, 2, 3};
    const char *ln[] = {"route"};
    const char *lv[] = {"r"};
    sg_expose_exemplar_t ex[4] = {{0}};
    ex[0].is_set = true;
    strcpy(ex[0].trace_id, "0af7651e-6b3c-4a7e-8f6c-1e1d2a3b4c5d");
    ex[0].value = 0.25;
    ex[0].ts_unix_ms = 1700000000123;
    sg_expose_family(&x, "h_seconds", "help", SG_METRIC_HISTOGRAM);
    sg_expose_histogram_ex(&x, "h_seconds", ln, lv, 1, bounds, counts, 3, 12.5, ex);
    int rc = sg_expose_finish(&x);
    cr_assert_eq(rc, 0);
    char *s = out_str(&x);
    cr_assert_str_eq(s, "# HELP h_seconds help\n# TYPE h_seconds histogram\n"
                        "h_seconds_bucket{route=\"r\",le=\"0.5\"} 1\n"
                        "h_seconds_bucket{route=\"r\",le=\"1\"} 1\n"
                        "h_seconds_bucket{route=\"r\",le=\"2.5\"} 3\n"
                        "h_seconds_bucket{route=\"r\",le=\"+Inf\"} 6\n"
                        "h_seconds_sum{route=\"r\"} 12.5\n"
                        "h_seconds_count{route=\"r\"} 6\n");
    free(s);
    sg_expose_destroy(&x);
}

Test(expose, histogram_openmetrics_with_exemplar, .timeout = 5)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_OPENMETRICS);
    const double bounds[] = {0.5, 1};
    const uint64_t counts[] = {1, 0, 0};
    sg_expose_exemplar_t ex[3] = {{0}};
    ex[0].is_set = true;
    strcpy(ex[0].trace_id, "0af7651e-6b3c-4a7e-8f6c-1e1d2a3b4c5d");
    ex[0].value = 0.25;
    ex[0].ts_unix_ms = 1700000000023;
    sg_expose_family(&x, "h", "help", SG_METRIC_HISTOGRAM);
    sg_expose_histogram_ex(&x, "h", NULL, NULL, 0, bounds, counts, 2, 0.25, ex);
    int rc = sg_expose_finish(&x);
    cr_assert_eq(rc, 0);
    char *s = out_str(&x);
    cr_assert_str_eq(s, "# HELP h help\n# TYPE h histogram\n"
                        "h_bucket{le=\"0.5\"} 1 # {trace_id=\"0af7651e6b3c4a7e8f6c1e1d2a3b4c5d\"} 0.25 "
                        "1700000000.023\n"
                        "h_bucket{le=\"1.0\"} 1\n"
                        "h_bucket{le=\"+Inf\"} 1\n"
                        "h_sum 0.25\n"
                        "h_count 1\n"
                        "# EOF\n");
    free(s);
    sg_expose_destroy(&x);
}

Test(expose, reset_reuses_buffer, .timeout = 5)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    for (int i = 0; i < 1000; i++)
        sg_expose_sample(&x, "m", "", NULL, NULL, 0, i);
    char *before = x.data;
    size_t cap = x.cap;
    sg_expose_reset(&x, SG_EXPOSE_OPENMETRICS);
    cr_assert_eq(x.len, 0);
    for (int i = 0; i < 1000; i++)
        sg_expose_sample(&x, "m", "", NULL, NULL, 0, i);
    cr_assert_eq(x.data, before);
    cr_assert_eq(x.cap, cap);
    sg_expose_destroy(&x);
}

/* ---- negotiation ------------------------------------------------------------------- */

struct neg_case {
    char accept[256]; /* inline: criterion copies parameters into the test process */
    sg_expose_format_t want;
};

#define OM SG_EXPOSE_OPENMETRICS
#define TXT SG_EXPOSE_TEXT

ParameterizedTestParameters(expose, negotiate)
{
    static struct neg_case cases[] = {
        {"", TXT},
        {"*/*", TXT},
        {"text/plain", TXT},
        {"text/plain;version=0.0.4", TXT},
        {"application/openmetrics-text", OM},
        {"application/openmetrics-text; version=1.0.0", OM},
        {"application/openmetrics-text;version=\"1.0.0\";charset=utf-8", OM},
        {"Application/OpenMetrics-Text; Version=1.0.0", OM},
        {"application/openmetrics-text;version=0.0.1", TXT},
        {"application/openmetrics-text;version=2.0.0", TXT},
        /* Prometheus 2.x scrape header */
        {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
         "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
         OM},
        {"text/plain;version=0.0.4;q=0.9, application/openmetrics-text;version=1.0.0;q=0.5", TXT},
        {"text/plain;q=0.5, application/openmetrics-text;q=0.9", OM},
        {"application/openmetrics-text;q=0, text/plain", TXT},
        {"application/openmetrics-text;q=0", TXT},
        {"*/*;q=0.8, application/openmetrics-text;q=0.8", OM}, /* same q: more specific wins */
        {"text/plain, application/openmetrics-text", TXT},     /* same q and specificity: first wins */
        {"application/json", TXT},
        {"application/openmetrics-text;q=1.0", OM},
        {"application/openmetrics-text;q=0.001, application/json", OM},
        {"  application/openmetrics-text  ;  version=1.0.0  ", OM},
        {"text/*;q=0.9, application/openmetrics-text;q=0.3", TXT},
        {"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
         "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.5",
         OM},
    };
    return cr_make_param_array(struct neg_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct neg_case *c, expose, negotiate, .timeout = 5)
{
    sg_expose_format_t got = sg_expose_negotiate(sg_str_cstr(c->accept));
    cr_assert_eq(got, c->want, "Accept: %s -> %d, want %d", c->accept, got, c->want);
}

Test(expose, content_types, .timeout = 5)
{
    cr_assert_str_eq(sg_expose_content_type(SG_EXPOSE_TEXT), "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_str_eq(sg_expose_content_type(SG_EXPOSE_OPENMETRICS),
                     "application/openmetrics-text; version=1.0.0; charset=utf-8");
}
