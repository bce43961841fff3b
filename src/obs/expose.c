#include "sg/expose.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- buffer ---------------------------------------------------------- */

static bool reserve(sg_expose_t *x, size_t more)
{
    if (SG_UNLIKELY(x->has_error))
        return false;
    if (x->len + more <= x->cap)
        return true;
    size_t cap = x->cap ? x->cap : 4096;
    while (cap < x->len + more)
        cap *= 2;
    char *p = realloc(x->data, cap);
    if (!p) {
        x->has_error = true;
        return false;
    }
    x->data = p;
    x->cap = cap;
    return true;
}

void sg_expose_write(sg_expose_t *x, const char *p, size_t len)
{
    if (!reserve(x, len))
        return;
    memcpy(x->data + x->len, p, len);
    x->len += len;
}

static void put_str(sg_expose_t *x, const char *s)
{
    sg_expose_write(x, s, strlen(s));
}

static void put_char(sg_expose_t *x, char c)
{
    if (!reserve(x, 1))
        return;
    x->data[x->len++] = c;
}

void sg_expose_init(sg_expose_t *x, sg_expose_format_t format)
{
    memset(x, 0, sizeof(*x));
    x->format = format;
    x->_type = SG_METRIC_GAUGE; /* no family yet: no counter suffix handling */
}

void sg_expose_reset(sg_expose_t *x, sg_expose_format_t format)
{
    x->format = format;
    x->len = 0;
    x->has_error = false;
    x->_type = SG_METRIC_GAUGE;
    x->_base_len = 0;
    x->_base[0] = '\0';
}

void sg_expose_destroy(sg_expose_t *x)
{
    free(x->data);
    x->data = NULL;
    x->len = x->cap = 0;
}

int sg_expose_finish(sg_expose_t *x)
{
    if (x->format == SG_EXPOSE_OPENMETRICS)
        put_str(x, "# EOF\n");
    return x->has_error ? -ENOMEM : 0;
}

const char *sg_expose_content_type(sg_expose_format_t f)
{
    return f == SG_EXPOSE_OPENMETRICS ? SG_EXPOSE_CONTENT_TYPE_OPENMETRICS : SG_EXPOSE_CONTENT_TYPE_TEXT;
}

/* ---- numbers ---------------------------------------------------------- */

static size_t fmt_u64(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

/* Shortest round-trip form. A double that reads back from p < 15
 * significant digits also reads back from its 15-digit rounding with the
 * same leading digits (its ulp is far below half a unit of the 15th digit),
 * so trying 15, 16, 17 digits and stripping trailing zeros finds the
 * shortest. Plain notation for exponents -5..16, else d.ddde+XX. */
size_t sg_expose_format_double(double v, char *out)
{
    const char *special = isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "+Inf" : "-Inf") : v == 0 ? "0" : NULL;
    if (special) {
        strcpy(out, special);
        return strlen(special);
    }
    size_t o = 0;
    double a = v;
    if (v < 0) {
        out[o++] = '-';
        a = -v;
    }
    if (a < 1e15 && a == floor(a))
        return o + fmt_u64((uint64_t)a, out + o);

    char e[40];
    int prec;
    /* subnormals carry fewer digits: search from 1 there */
    for (prec = a < DBL_MIN ? 1 : 15; prec < 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, a);
        if (strtod(e, NULL) == a)
            break;
    }
    if (prec == 17)
        snprintf(e, sizeof(e), "%.*e", prec - 1, a);
    /* e = "d.ddddde[+-]XX" */
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;

    if (exp10 >= -5 && exp10 <= 16) {
        if (exp10 >= 0) {
            size_t int_digits = (size_t)exp10 + 1;
            for (size_t i = 0; i < int_digits; i++)
                out[o++] = i < nd ? digits[i] : '0';
            if (nd > int_digits) {
                out[o++] = '.';
                for (size_t i = int_digits; i < nd; i++)
                    out[o++] = digits[i];
            }
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++)
                out[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[o++] = digits[i];
        }
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = digits[i];
        }
        o += (size_t)sprintf(out + o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    out[o] = '\0';
    return o;
}

static void put_double(sg_expose_t *x, double v)
{
    char b[40];
    size_t n = sg_expose_format_double(v, b);
    sg_expose_write(x, b, n);
}

static void put_u64(sg_expose_t *x, uint64_t v)
{
    char b[24];
    size_t n = fmt_u64(v, b);
    sg_expose_write(x, b, n);
}

/* le label value: OpenMetrics wants a canonical float ("1.0", not "1"). */
static size_t fmt_le(const sg_expose_t *x, double v, char *out)
{
    size_t n = sg_expose_format_double(v, out);
    if (x->format == SG_EXPOSE_OPENMETRICS && isfinite(v) && !strpbrk(out, ".e")) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return n;
}

/* ---- escaping ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (RFC 3629: shortest form, no
 * surrogates, at most U+10FFFF), 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) /* also stops at the NUL */
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

/* Escaped text: \ and newline always, " when esc_quote. Invalid UTF-8 is
 * written as U+FFFD: label values can come from database rows, both
 * formats are UTF-8, and Prometheus refuses a whole scrape over one
 * invalid label value (found by test/fuzz/fuzz_metrics.c). */
static void put_escaped(sg_expose_t *x, const char *v, bool esc_quote)
{
    const char *run = v;
    const char *p = v;
    while (*p) {
        const char *rep = NULL;
        size_t k = 1;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"' && esc_quote)
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        else if ((unsigned char)*p >= 0x80 && (k = utf8_seq((const unsigned char *)p)) == 0) {
            rep = "\xef\xbf\xbd";
            k = 1;
        }
        if (rep) {
            sg_expose_write(x, run, (size_t)(p - run));
            put_str(x, rep);
            run = p + k;
        }
        p += k;
    }
    put_str(x, run);
}

/* Label values (both formats): \ " and newline. */
static void put_label_value(sg_expose_t *x, const char *v)
{
    put_escaped(x, v, true);
}

/* HELP: text 0.0.4 escapes \ and newline; OpenMetrics also ". */
static void put_help(sg_expose_t *x, const char *v)
{
    put_escaped(x, v, x->format == SG_EXPOSE_OPENMETRICS);
}

/* ---- families and samples -------------------------------------------------- */

static const char *type_name(sg_metric_type_t t)
{
    switch (t) {
    case SG_METRIC_COUNTER:
        return "counter";
    case SG_METRIC_HISTOGRAM:
        return "histogram";
    case SG_METRIC_GAUGE:
    default:
        return "gauge";
    }
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

void sg_expose_family(sg_expose_t *x, const char *name, const char *help, sg_metric_type_t type)
{
    size_t len = strlen(name);
    if (type == SG_METRIC_COUNTER && ends_with(name, len, "_total"))
        len -= 6;
    x->_type = type;
    x->_base_len = SG_MIN(len, sizeof(x->_base) - 1);
    memcpy(x->_base, name, x->_base_len);
    x->_base[x->_base_len] = '\0';

    bool add_total = type == SG_METRIC_COUNTER && x->format == SG_EXPOSE_TEXT;
    put_str(x, "# HELP ");
    sg_expose_write(x, name, len);
    if (add_total)
        put_str(x, "_total");
    put_char(x, ' ');
    put_help(x, help ? help : "");
    put_str(x, "\n# TYPE ");
    sg_expose_write(x, name, len);
    if (add_total)
        put_str(x, "_total");
    put_char(x, ' ');
    put_str(x, type_name(type));
    put_char(x, '\n');
}

static void put_labels(sg_expose_t *x, const char *const *names, const char *const *values, size_t n, const char *le)
{
    if (n == 0 && !le)
        return;
    put_char(x, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            put_char(x, ',');
        put_str(x, names[i]);
        put_str(x, "=\"");
        put_label_value(x, values[i] ? values[i] : "");
        put_char(x, '"');
    }
    if (le) {
        if (n)
            put_char(x, ',');
        put_str(x, "le=\"");
        put_str(x, le);
        put_char(x, '"');
    }
    put_char(x, '}');
}

static void put_name(sg_expose_t *x, const char *name, const char *suffix)
{
    size_t nl = strlen(name);
    put_str(x, name);
    put_str(x, suffix ? suffix : "");
    /* a counter sample named like the bare family gets its _total */
    if (x->_type == SG_METRIC_COUNTER && (!suffix || !*suffix) && nl == x->_base_len && memcmp(name, x->_base, nl) == 0)
        put_str(x, "_total");
}

void sg_expose_sample(sg_expose_t *x, const char *name, const char *suffix, const char *const *label_names,
                      const char *const *label_values, size_t n_labels, double value)
{
    put_name(x, name, suffix);
    put_labels(x, label_names, label_values, n_labels, NULL);
    put_char(x, ' ');
    put_double(x, value);
    put_char(x, '\n');
}

/* The trace id as the 32 lower-case hex digits exported spans carry (the
 * W3C/OTLP form): a UUID's dashes are dropped, so an exemplar opens its
 * trace in Jaeger or Tempo (issue #16 item 4). Anything else is written
 * as it is. */
static void put_exemplar_trace_id(sg_expose_t *x, const char *id)
{
    char hex[33];
    size_t n = 0, len = strlen(id);
    for (size_t i = 0; i < len && n < 32; i++) {
        char c = id[i];
        if (c == '-' && (i == 8 || i == 13 || i == 18 || i == 23))
            continue;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            break;
        hex[n++] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    if (n == 32 && (len == 32 || len == 36)) {
        hex[32] = '\0';
        put_label_value(x, hex);
    } else {
        put_label_value(x, id);
    }
}

static void put_exemplar(sg_expose_t *x, const sg_expose_exemplar_t *ex)
{
    put_str(x, " # {trace_id=\"");
    put_exemplar_trace_id(x, ex->trace_id);
    put_str(x, "\"} ");
    put_double(x, ex->value);
    if (ex->ts_unix_ms) {
        char b[32];
        int n = snprintf(b, sizeof(b), " %" PRIu64 ".%03u", ex->ts_unix_ms / 1000, (unsigned)(ex->ts_unix_ms % 1000));
        sg_expose_write(x, b, (size_t)n);
    }
}

void sg_expose_histogram_ex(sg_expose_t *x, const char *name, const char *const *label_names,
                            const char *const *label_values, size_t n_labels, const double *bounds,
                            const uint64_t *counts, size_t n_bounds, double sum, const sg_expose_exemplar_t *exemplars)
{
    bool with_ex = exemplars && x->format == SG_EXPOSE_OPENMETRICS;
    uint64_t cum = 0;
    char le[48];
    for (size_t i = 0; i <= n_bounds; i++) {
        cum += counts[i];
        if (i < n_bounds)
            fmt_le(x, bounds[i], le);
        else
            strcpy(le, "+Inf");
        put_name(x, name, "_bucket");
        put_labels(x, label_names, label_values, n_labels, le);
        put_char(x, ' ');
        put_u64(x, cum);
        if (with_ex && exemplars[i].is_set)
            put_exemplar(x, &exemplars[i]);
        put_char(x, '\n');
    }
    put_name(x, name, "_sum");
    put_labels(x, label_names, label_values, n_labels, NULL);
    put_char(x, ' ');
    put_double(x, sum);
    put_char(x, '\n');
    put_name(x, name, "_count");
    put_labels(x, label_names, label_values, n_labels, NULL);
    put_char(x, ' ');
    put_u64(x, cum);
    put_char(x, '\n');
}

void sg_expose_histogram(sg_expose_t *x, const char *name, const char *const *label_names,
                         const char *const *label_values, size_t n_labels, const double *bounds, const uint64_t *counts,
                         size_t n_bounds, double sum)
{
    sg_expose_histogram_ex(x, name, label_names, label_values, n_labels, bounds, counts, n_bounds, sum, NULL);
}

/* ---- Accept negotiation ----------------------------------------------------- */

static sg_str_t trim(sg_str_t s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* Splits s at the first `sep` outside a quoted string; returns the head and
 * leaves the rest (after the separator) in *rest. */
static sg_str_t split(sg_str_t *rest, char sep)
{
    sg_str_t s = *rest;
    bool in_q = false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (in_q && c == '\\') {
            i++;
            continue;
        }
        if (c == '"')
            in_q = !in_q;
        else if (c == sep && !in_q) {
            *rest = sg_str_make(s.p + i + 1, s.len - i - 1);
            return sg_str_make(s.p, i);
        }
    }
    *rest = sg_str_make(s.p + s.len, 0);
    return s;
}

static sg_str_t unquote(sg_str_t v)
{
    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"')
        return sg_str_make(v.p + 1, v.len - 2);
    return v;
}

/* q-value per RFC 9110 12.4.2: 0 to 1, up to three decimals; in thousandths.
 * Malformed values count as 1 (lenient, like most servers). */
static int parse_q(sg_str_t v)
{
    if (v.len == 0 || (v.p[0] != '0' && v.p[0] != '1'))
        return 1000;
    int q = (v.p[0] - '0') * 1000;
    if (v.len > 1) {
        if (v.p[1] != '.')
            return 1000;
        int scale = 100;
        for (size_t i = 2; i < v.len && i < 5; i++) {
            if (v.p[i] < '0' || v.p[i] > '9')
                return 1000;
            q += (v.p[i] - '0') * scale;
            scale /= 10;
        }
    }
    return q > 1000 ? 1000 : q;
}

sg_expose_format_t sg_expose_negotiate(sg_str_t accept)
{
    sg_expose_format_t best = SG_EXPOSE_TEXT;
    int best_q = -1, best_spec = -1;
    sg_str_t rest = accept;
    while (rest.len) {
        sg_str_t clause = trim(split(&rest, ','));
        if (!clause.len)
            continue;
        sg_str_t params = clause;
        sg_str_t mt = trim(split(&params, ';'));
        sg_str_t version = SG_STR_NULL;
        bool has_version = false;
        int q = 1000;
        while (params.len) {
            sg_str_t kv = trim(split(&params, ';'));
            sg_str_t val = kv;
            sg_str_t key = trim(split(&val, '='));
            val = unquote(trim(val));
            if (sg_str_ieq(key, SG_STR("q")))
                q = parse_q(val);
            else if (sg_str_ieq(key, SG_STR("version"))) {
                version = val;
                has_version = true;
            }
        }
        if (q <= 0)
            continue; /* q=0: explicitly not acceptable */
        int spec;
        sg_expose_format_t f;
        if (sg_str_ieq(mt, SG_STR("application/openmetrics-text"))) {
            if (has_version && !sg_str_eq(version, SG_STR("1.0.0")))
                continue;
            f = SG_EXPOSE_OPENMETRICS;
            spec = 2;
        } else if (sg_str_ieq(mt, SG_STR("text/plain"))) {
            if (has_version && !sg_str_eq(version, SG_STR("0.0.4")))
                continue;
            f = SG_EXPOSE_TEXT;
            spec = 2;
        } else if (sg_str_ieq(mt, SG_STR("text/*"))) {
            f = SG_EXPOSE_TEXT;
            spec = 1;
        } else if (sg_str_eq(mt, SG_STR("*/*"))) {
            f = SG_EXPOSE_TEXT;
            spec = 0;
        } else {
            continue;
        }
        if (q > best_q || (q == best_q && spec > best_spec)) {
            best = f;
            best_q = q;
            best_spec = spec;
        }
    }
    return best;
}
