/* Spans: one SERVER span per proxied request, encoded as OTLP/HTTP JSON or
 * Zipkin v2 JSON and posted to a collector from the control thread.
 *
 * Data flow: a worker turns a finished sg_reqrec_t into an sg_span_t
 * directly inside its own bounded SPSC queue (sg_spans_record: never
 * blocks, never allocates; full -> dropped and counted). The exporter, on
 * the control thread's loop, drains every queue each batch_delay (or as
 * soon as batch_size spans wait), encodes one body and POSTs it with a
 * small non-blocking HTTP/1.1 client over one kept connection. Failures
 * (connect, timeout, and the OTLP/HTTP retryable codes 429, 502, 503, 504)
 * are retried with capped exponential back-off, honouring Retry-After; a
 * batch that still fails, or gets any other error status, is dropped and
 * counted. */
#ifndef SG_SPANS_H
#define SG_SPANS_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/json.h"
#include "sg/reqrec.h"

#include <uv.h>

#define SG_SPAN_ROUTE_MAX 64
#define SG_SPAN_PATH_MAX 192
#define SG_SPAN_HOST_MAX 96
#define SG_SPAN_ADDR_MAX 48
#define SG_SPAN_ERROR_MAX 64
#define SG_SPAN_ERROR_TYPE_MAX 24
/* Upper bound of one encoded span (every string escaped at worst). */
#define SG_SPAN_JSON_MAX 6144

/* Why a span is exported (swarm_spans_exported_total{reason}): every error
 * and every slow request, the rest by the head sampling decision. */
typedef enum sg_span_reason {
    SG_SPAN_REASON_ERROR = 0, /* 5xx, a proxy-made error, no response, a broken exchange */
    SG_SPAN_REASON_SLOW,      /* longer than trace.export.slow */
    SG_SPAN_REASON_SAMPLED,   /* the head decision (traceparent sampled flag) */
    SG_SPAN_REASON__COUNT
} sg_span_reason_t;

const char *sg_span_reason_name(sg_span_reason_t r);

/* A finished span. Everything inline (strings cut to their field size):
 * no pointer into request memory, so it can cross threads. */
typedef struct sg_span {
    char trace_hex[SG_TRACE_HEX_LEN + 1];    /* 32 lower hex */
    char span_id[SG_SPAN_ID_LEN + 1];        /* 16 lower hex */
    char parent_span_id[SG_SPAN_ID_LEN + 1]; /* "" = root span */
    uint64_t start_unix_ns;
    uint64_t end_unix_ns;
    sg_method_t method;
    uint16_t status;               /* 0 = no response was sent */
    uint16_t client_port;          /* 0 = unknown */
    uint16_t server_port;          /* Host's port, else the scheme's (80); CONNECT: the target's */
    bool is_error;                 /* span status ERROR: 5xx, no response, or an exchange that broke */
    bool is_connect;               /* CONNECT: no url.path/url.scheme, server.* is the target */
    uint8_t reason;                /* sg_span_reason_t */
    char route[SG_SPAN_ROUTE_MAX]; /* route name (swarmgate.route), "" = none */
    char path[SG_SPAN_PATH_MAX];
    char host[SG_SPAN_HOST_MAX]; /* Host without its port */
    char client_ip[SG_SPAN_ADDR_MAX];
    char upstream[SG_SPAN_ADDR_MAX];         /* upstream server "ip:port", "" = none */
    char agent[SG_AGENT_NAME_MAX + 1];       /* egress agent (swarmgate.agent), "" = not egress */
    char error[SG_SPAN_ERROR_MAX];           /* rec->error, free text (status message), "" = none */
    char error_type[SG_SPAN_ERROR_TYPE_MAX]; /* error.type, low-cardinality, "" = none */
    char tracestate[SG_TRACESTATE_MAX + 1];  /* W3C tracestate sent on, "" = none */
} sg_span_t;

/* error.type (OpenTelemetry semantic conventions): a fixed, low-cardinality
 * value for a span with status ERROR: "timeout", "connection_refused",
 * "connection_reset", "client_closed", "no_healthy_upstream", else the
 * status code ("502"), else "_OTHER". NULL when the span is no error. */
const char *sg_span_error_type(uint16_t status, const char *error, bool is_error, char buf[8]);

/* Fills a span from a finished request (route_name may be NULL). */
void sg_span_from_rec(sg_span_t *out, const sg_reqrec_t *rec, const char *route_name);

/* Encoders. Each writes one complete request body into b and returns how
 * many spans (a prefix of spans[0..n)) it holds; the body is valid JSON
 * even when fewer than n fit. 0 with b->is_overflow if not even the empty
 * envelope fits.
 * OTLP: ExportTraceServiceRequest (resourceSpans/scopeSpans/spans), ids in
 * hex, times and intValue as strings, kind 2 (SERVER), status code 2
 * (ERROR) for error spans, resource attribute service.name.
 * Zipkin: a v2 JSON array, timestamp/duration in microseconds. */
size_t sg_spans_encode_otlp(sg_buf_t *b, const sg_span_t *spans, size_t n, const char *service_name);
size_t sg_spans_encode_zipkin(sg_buf_t *b, const sg_span_t *spans, size_t n, const char *service_name);

/* ---- sampling ---------------------------------------------------------- */

/* Ratio (0..1) of new traces (restarts) to mark sampled. Default 1.0.
 * Set at start-up or reload; read by any thread. */
void sg_spans_set_sample_ratio(double ratio);
/* Spans of requests longer than this are exported whatever the sampler
 * said (trace.export.slow, default 1 s). Set at start-up or reload. */
void sg_spans_set_slow_ms(uint64_t ms);
/* The sampler's decision for a trace swarmgate starts: pass it to
 * sg_trace_resolve(). Continued traces follow their parent's flag. Any
 * thread; no lock, no system call. */
bool sg_spans_sample_new(void);

/* ---- per-worker queues ------------------------------------------------- */

typedef struct sg_span_queue sg_span_queue_t;

/* A bounded SPSC queue of `capacity` spans (rounded up to a power of two),
 * registered with the exporter side. Owner: the worker that pushes; freed
 * by sg_span_queue_free() (spans still queued are counted as dropped).
 * NULL on out-of-memory. */
sg_span_queue_t *sg_span_queue_new(uint32_t capacity) SG_MUST_CHECK;
void sg_span_queue_free(sg_span_queue_t *q);
/* Owning thread only. Copies `span`; false (and counted) when full. */
bool sg_span_queue_push(sg_span_queue_t *q, const sg_span_t *span);
/* Tail sampling: the reason to export the span of `rec` (errors, requests
 * over the slow threshold, then the head decision rec->sampled), or -1
 * when it is not exported. Any thread. */
int sg_spans_export_reason(const sg_reqrec_t *rec);
/* Owning thread only. When sg_spans_export_reason() gives a reason, writes
 * the span for `rec` straight into the next slot (no copy); false when not
 * exported or full. */
bool sg_spans_record(sg_span_queue_t *q, const sg_reqrec_t *rec, const char *route_name);
/* Spans this queue dropped because it was full. */
uint64_t sg_span_queue_dropped(const sg_span_queue_t *q);

/* ---- exporter (control thread) ---------------------------------------- */

typedef struct sg_spans_exporter sg_spans_exporter_t;

/* Retry knobs (not in the config file; tests shorten them). */
typedef struct sg_spans_opts {
    uint32_t max_attempts;   /* per batch, first try included; default 5 */
    uint64_t backoff_min_ms; /* first retry delay; default 250 ms */
    uint64_t backoff_max_ms; /* cap; default 30 s */
    uint64_t tick_ms;        /* queue poll period; default min(batch_delay, 100 ms) */
    size_t body_max_bytes;   /* largest POST body; default 4 MiB. Spans that do
                                not fit go in the next POST. */
} sg_spans_opts_t;

/* Starts an exporter on `loop` (which must be the caller's, run by the
 * calling thread) for conf->export: format, url (http://host[:port][/path];
 * an empty path becomes /v1/traces for OTLP and /api/v2/spans for Zipkin),
 * batch_size, batch_delay_ms, timeout_ms, service_name, sample (applied
 * with sg_spans_set_sample_ratio). `opts` may be NULL. The conf strings are
 * copied. Returns 0, or -EINVAL (no format/URL, not http://, bad port) or
 * -ENOMEM. */
int sg_spans_exporter_start(uv_loop_t *loop, const sg_trace_conf_t *conf, const sg_spans_opts_t *opts,
                            sg_spans_exporter_t **out) SG_MUST_CHECK;
/* Stops: closes the exporter's handles (a request in flight is aborted and
 * its spans counted as dropped); the exporter frees itself once the loop
 * has run its close callbacks. The loop thread only. */
void sg_spans_exporter_stop(sg_spans_exporter_t *ex);

/* Counters for swarm_spans_exported_total{reason} / swarm_spans_dropped_total:
 * process-wide, any thread. Dropped = queue full + batches given up. */
uint64_t sg_spans_exported_total(void); /* all reasons */
uint64_t sg_spans_exported_reason(sg_span_reason_t r);
uint64_t sg_spans_dropped_total(void);

#endif /* SG_SPANS_H */
