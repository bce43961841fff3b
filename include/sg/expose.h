/* Metrics exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
 *
 * An sg_expose_t is a writer: a growable output buffer plus the negotiated
 * format. Families are written one after the other with sg_expose_family()
 * followed by their samples (sg_expose_sample / sg_expose_histogram). The
 * writer takes care of the format differences:
 *   - counters: pass the family name with or without "_total"; TYPE/HELP use
 *     "<base>_total" in text 0.0.4 and "<base>" in OpenMetrics; a counter
 *     sample whose full name is the bare base gets "_total" appended;
 *   - label values are escaped (\\ \" \n), HELP text too (per format);
 *   - floats are printed so they round-trip (shortest exact form), with
 *     +Inf, -Inf and NaN; OpenMetrics le values are canonical ("1.0");
 *   - exemplars (OpenMetrics only) on histogram buckets;
 *   - sg_expose_finish() writes "# EOF" for OpenMetrics.
 *
 * Not thread-safe: one writer belongs to one thread (the control thread for
 * a scrape). Allocation failures are sticky: later writes are dropped and
 * sg_expose_finish() returns -ENOMEM. */
#ifndef SG_EXPOSE_H
#define SG_EXPOSE_H

#include "sg/common.h"
#include "sg/config.h"

typedef enum sg_expose_format {
    SG_EXPOSE_TEXT = 0,    /* text/plain; version=0.0.4 */
    SG_EXPOSE_OPENMETRICS, /* application/openmetrics-text; version=1.0.0 */
    SG_EXPOSE_FORMAT__COUNT
} sg_expose_format_t;

#define SG_EXPOSE_CONTENT_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define SG_EXPOSE_CONTENT_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* Content-Type header value for a format. */
const char *sg_expose_content_type(sg_expose_format_t f);

/* Picks the format from an Accept header value, like Prometheus' client
 * negotiation: clauses are ranked by q (q=0 is "not acceptable"), then by
 * specificity, then by order. application/openmetrics-text with
 * version=1.0.0 or no version gives OpenMetrics; text/plain (version 0.0.4
 * or none) and wildcards give text. No match or an empty header: text. */
sg_expose_format_t sg_expose_negotiate(sg_str_t accept);

/* One exemplar (OpenMetrics only; ignored in text format). */
typedef struct sg_expose_exemplar {
    bool is_set;
    char trace_id[37];   /* NUL-terminated UUID (or 32 hex), rendered as
                            {trace_id="<32 lower-case hex>"}, the spans' form */
    double value;        /* the observation, in the family's unit */
    uint64_t ts_unix_ms; /* when it was observed; 0 = no timestamp */
} sg_expose_exemplar_t;

/* The writer. Owner: whoever embeds it; sg_expose_destroy() frees the
 * buffer. Fields are readable; change them only through the functions. */
typedef struct sg_expose {
    sg_expose_format_t format;
    char *data; /* output bytes (not NUL-terminated) */
    size_t len;
    size_t cap;
    bool has_error; /* an allocation failed: output is incomplete */
    /* current family (for counter suffix handling) */
    sg_metric_type_t _type;
    size_t _base_len;
    char _base[200];
} sg_expose_t;

void sg_expose_init(sg_expose_t *x, sg_expose_format_t format);
/* Empties the output but keeps the buffer (reuse across scrapes without
 * allocating); may switch format. */
void sg_expose_reset(sg_expose_t *x, sg_expose_format_t format);
void sg_expose_destroy(sg_expose_t *x);
/* Ends the exposition ("# EOF" for OpenMetrics). 0, or -ENOMEM when some
 * output was lost to an allocation failure. */
int sg_expose_finish(sg_expose_t *x) SG_MUST_CHECK;

/* Starts a family: HELP and TYPE lines. `name` is the family name (for
 * counters with or without "_total"), `help` free text (escaped here). */
void sg_expose_family(sg_expose_t *x, const char *name, const char *help, sg_metric_type_t type);
/* One sample "<name><suffix>{labels} value". suffix: "" or "_total",
 * "_bucket", "_sum", "_count"... label_values are escaped here; label
 * names must be valid names (not checked). */
void sg_expose_sample(sg_expose_t *x, const char *name, const char *suffix, const char *const *label_names,
                      const char *const *label_values, size_t n_labels, double value);
/* A whole histogram series: buckets (cumulated here from the non-cumulative
 * counts[n_bounds + 1], the last being +Inf), _sum and _count (= all
 * counts). bounds[n_bounds] strictly increasing, without +Inf. */
void sg_expose_histogram(sg_expose_t *x, const char *name, const char *const *label_names,
                         const char *const *label_values, size_t n_labels, const double *bounds, const uint64_t *counts,
                         size_t n_bounds, double sum);
/* Same, with one optional exemplar per bucket (exemplars[n_bounds + 1], or
 * NULL); exemplars are written only in OpenMetrics. */
void sg_expose_histogram_ex(sg_expose_t *x, const char *name, const char *const *label_names,
                            const char *const *label_values, size_t n_labels, const double *bounds,
                            const uint64_t *counts, size_t n_bounds, double sum, const sg_expose_exemplar_t *exemplars);

/* Raw append (already formatted text). */
void sg_expose_write(sg_expose_t *x, const char *p, size_t len);

/* Writes the shortest text of v that reads back as exactly v ("0.1",
 * "300", "1e+21", "+Inf", "-Inf", "NaN") into out (at least 32 bytes),
 * NUL-terminated; returns its length. */
size_t sg_expose_format_double(double v, char *out);

#endif /* SG_EXPOSE_H */
