/* Fuzzes the metrics renderer with hostile label values (they can come
 * from Postgres rows: agent, project, state) and arbitrary sample values,
 * in both formats, and parses the output back.
 *
 * Input: byte 0 = options (format, family type, exemplar), bytes 1-8 = a
 * double, the rest = up to four label values separated by NUL bytes (the
 * last piece also goes to sg_expose_negotiate as an Accept header).
 *
 * Invariants (a failure aborts):
 *  - the output is valid UTF-8 and ends with a newline;
 *  - every line is "# HELP", "# TYPE", "# EOF" (OpenMetrics, last) or a
 *    sample: name, optional {name="value",...} with only \\ \" \n escapes
 *    inside the quotes, one space, a float, and (OpenMetrics buckets) an
 *    exemplar "# {trace_id="..."} float [timestamp]";
 *  - label values read back as the input (invalid UTF-8 sequences replaced
 *    by U+FFFD), the sample value reads back bit-exact (NaN as NaN). */
#include "fuzz_check.h"
#include "sg/expose.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MET_MAX_LABELS 4

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, <= U+10FFFF), 0 when invalid. */
static size_t met_utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

static bool met_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = met_utf8_seq((const unsigned char *)s + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* What a label value must read back as: invalid bytes become U+FFFD. */
static size_t met_expected(const char *v, char *out, size_t cap)
{
    size_t n = strlen(v), o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = met_utf8_seq((const unsigned char *)v + i, n - i);
        if (k) {
            FUZZ_CHECK(o + k <= cap);
            memcpy(out + o, v + i, k);
            o += k;
            i += k;
        } else {
            FUZZ_CHECK(o + 3 <= cap);
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    return o;
}

static bool met_is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

/* Parses a float as Prometheus does (Go ParseFloat plus +Inf/-Inf/NaN). */
static const char *met_float(const char *p, const char *end, double *v)
{
    const char *s = p;
    while (p < end && *p != ' ' && *p != '\n')
        p++;
    FUZZ_CHECK(p > s);
    char b[64];
    size_t n = (size_t)(p - s);
    FUZZ_CHECK(n < sizeof(b));
    memcpy(b, s, n);
    b[n] = '\0';
    if (!strcmp(b, "+Inf")) {
        *v = INFINITY;
    } else if (!strcmp(b, "-Inf")) {
        *v = -INFINITY;
    } else if (!strcmp(b, "NaN")) {
        *v = NAN;
    } else {
        FUZZ_CHECK(strspn(b, "0123456789.eE+-") == n); /* no "inf"/"nan"/hex spellings */
        char *e = NULL;
        *v = strtod(b, &e);
        FUZZ_CHECK(e == b + n);
    }
    return p;
}

/* Parses `{n="v",...}` at p; unescaped values go to vals (each NUL-free
 * run stored with its length). Returns the position after '}'. */
static const char *met_labels(const char *p, const char *end, char vals[][1024], size_t *lens, size_t *n_labels)
{
    FUZZ_CHECK(*p == '{');
    p++;
    *n_labels = 0;
    while (p < end && *p != '}') {
        const char *ns = p;
        while (p < end && met_is_name_char(*p, p == ns))
            p++;
        FUZZ_CHECK(p > ns && p + 1 < end && p[0] == '=' && p[1] == '"');
        p += 2;
        FUZZ_CHECK(*n_labels < MET_MAX_LABELS + 1);
        char *o = vals[*n_labels];
        size_t ol = 0;
        for (;;) {
            FUZZ_CHECK(p < end && *p != '\n');
            if (*p == '"')
                break;
            char c = *p;
            if (c == '\\') {
                FUZZ_CHECK(p + 1 < end);
                p++;
                c = *p == 'n' ? '\n' : *p;
                FUZZ_CHECK(*p == 'n' || *p == '\\' || *p == '"');
            }
            FUZZ_CHECK(ol < 1024);
            o[ol++] = c;
            p++;
        }
        lens[(*n_labels)++] = ol;
        p++; /* closing quote */
        if (*p == ',')
            p++;
        else
            FUZZ_CHECK(*p == '}');
    }
    FUZZ_CHECK(p < end && *p == '}');
    return p + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t opt = data[0];
    double value;
    memcpy(&value, data + 1, sizeof(value));
    const char *rest = (const char *)data + 9;
    size_t rn = size - 9;

    /* Label values: NUL-separated pieces, copied as C strings. */
    static char vbuf[MET_MAX_LABELS][1024];
    const char *values[MET_MAX_LABELS];
    size_t n_labels = 0, start = 0;
    for (size_t i = 0; i <= rn && n_labels < MET_MAX_LABELS; i++) {
        if (i == rn || rest[i] == '\0') {
            size_t len = SG_MIN(i - start, sizeof(vbuf[0]) / 4 - 1);
            memcpy(vbuf[n_labels], rest + start, len);
            vbuf[n_labels][len] = '\0';
            values[n_labels] = vbuf[n_labels];
            n_labels++;
            start = i + 1;
        }
    }
    static const char *const names[MET_MAX_LABELS] = {"agent", "project", "state", "query"};
    size_t last = n_labels ? n_labels - 1 : 0;
    sg_expose_format_t neg = sg_expose_negotiate(sg_str_cstr(n_labels ? values[last] : ""));
    FUZZ_CHECK(neg == SG_EXPOSE_TEXT || neg == SG_EXPOSE_OPENMETRICS);

    sg_expose_format_t fmt = (opt & 1) ? SG_EXPOSE_OPENMETRICS : SG_EXPOSE_TEXT;
    sg_metric_type_t type = (opt & 2) ? SG_METRIC_COUNTER : SG_METRIC_GAUGE;
    sg_expose_t x;
    sg_expose_init(&x, fmt);
    sg_expose_family(&x, "swarm_fuzz", n_labels ? values[0] : "help", type);
    sg_expose_sample(&x, "swarm_fuzz", "", names, values, n_labels, value);
    sg_expose_family(&x, "swarm_fuzz_seconds", "h", SG_METRIC_HISTOGRAM);
    const double bounds[] = {0.005, 0.1, 2.5};
    const uint64_t counts[] = {1, 2, 3, (uint64_t)opt};
    sg_expose_exemplar_t ex[4];
    memset(ex, 0, sizeof(ex));
    if (opt & 4) {
        ex[1].is_set = true;
        snprintf(ex[1].trace_id, sizeof(ex[1].trace_id), "%s", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
        ex[1].value = fabs(value) < 1e300 ? value : 0.05;
        ex[1].ts_unix_ms = (opt & 8) ? 1700000000123u : 0;
    }
    sg_expose_histogram_ex(&x, "swarm_fuzz_seconds", names, values, n_labels, bounds, counts, 3, 1.5, ex);
    FUZZ_CHECK(sg_expose_finish(&x) == 0);

    const char *out = x.data, *end = x.data + x.len;
    FUZZ_CHECK(x.len > 0 && end[-1] == '\n');
    FUZZ_CHECK(met_utf8_valid(out, x.len));
    bool seen_eof = false, checked_sample = false;
    char got[MET_MAX_LABELS + 1][1024];
    size_t lens[MET_MAX_LABELS + 1];
    for (const char *line = out; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        FUZZ_CHECK(nl != NULL && !seen_eof);
        size_t len = (size_t)(nl - line);
        if (len >= 2 && line[0] == '#') {
            if (len == 5 && !memcmp(line, "# EOF", 5)) {
                FUZZ_CHECK(fmt == SG_EXPOSE_OPENMETRICS);
                seen_eof = true;
            } else {
                FUZZ_CHECK(len > 7 && (!memcmp(line, "# HELP ", 7) || !memcmp(line, "# TYPE ", 7)));
            }
            line = nl + 1;
            continue;
        }
        const char *p = line;
        while (p < nl && met_is_name_char(*p, p == line))
            p++;
        FUZZ_CHECK(p > line);
        size_t name_len = (size_t)(p - line);
        size_t nl_got = 0;
        if (*p == '{')
            p = met_labels(p, nl, got, lens, &nl_got);
        FUZZ_CHECK(*p == ' ');
        double v;
        p = met_float(p + 1, nl, &v);
        bool is_main = (name_len == strlen("swarm_fuzz") || (name_len == strlen("swarm_fuzz_total"))) &&
                       !memcmp(line, "swarm_fuzz", 10) && (name_len == 10 || !memcmp(line + 10, "_total", 6));
        if (is_main) {
            /* The sample we wrote: labels and value read back. */
            FUZZ_CHECK(nl_got == n_labels);
            for (size_t i = 0; i < n_labels; i++) {
                char want[4096];
                size_t wl = met_expected(values[i], want, sizeof(want));
                FUZZ_CHECK(lens[i] == wl && !memcmp(got[i], want, wl));
            }
            FUZZ_CHECK(isnan(value) ? isnan(v) : (memcmp(&v, &value, sizeof(v)) == 0 || (v == 0 && value == 0)));
            checked_sample = true;
        }
        if (p < nl) {
            /* Only an exemplar may follow the value (OpenMetrics). */
            FUZZ_CHECK(fmt == SG_EXPOSE_OPENMETRICS);
            FUZZ_CHECK((size_t)(nl - p) > 4 && !memcmp(p, " # {", 4));
            size_t n_ex = 0;
            p = met_labels(p + 3, nl, got, lens, &n_ex);
            FUZZ_CHECK(n_ex == 1 && *p == ' ');
            p = met_float(p + 1, nl, &v);
            if (p < nl) {
                FUZZ_CHECK(*p == ' ');
                p = met_float(p + 1, nl, &v);
            }
            FUZZ_CHECK(p == nl);
        }
        line = nl + 1;
    }
    FUZZ_CHECK(checked_sample);
    FUZZ_CHECK(seen_eof == (fmt == SG_EXPOSE_OPENMETRICS));
    sg_expose_destroy(&x);
    return 0;
}
