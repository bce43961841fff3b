/* Trace context: X-Trace-Id and W3C traceparent/tracestate rules
 * (DESIGN.md section 4). Pure functions, no I/O, callable from any thread.
 * The only state is the random source (libuuid for trace ids, getrandom for the span-id seed). */
#ifndef SG_TRACE_H
#define SG_TRACE_H

#include "sg/common.h"

#define SG_TRACE_ID_LEN 36  /* canonical UUID text */
#define SG_TRACE_HEX_LEN 32 /* trace-id in traceparent */
#define SG_SPAN_ID_LEN 16
#define SG_TRACEPARENT_LEN 55
#define SG_TRACE_MAX_VALUES 8 /* header lines kept per header; more = invalid */
#define SG_TRACESTATE_MAX 512 /* combined tracestate we forward (W3C: at least 512) */

typedef enum sg_trace_source {
    SG_TRACE_SRC_GENERATED = 0, /* no usable incoming id */
    SG_TRACE_SRC_FORWARDED,     /* valid incoming X-Trace-Id (or accepted alias) */
    SG_TRACE_SRC_TRACEPARENT,   /* taken from a valid incoming traceparent */
    SG_TRACE_SRC_REPLACED,      /* incoming X-Trace-Id was invalid: new id */
    SG_TRACE_SRC__COUNT
} sg_trace_source_t;

/* Parses a canonical UUID (8-4-4-4-12 hex, any case, not all zeros).
 * On success writes the lower-cased form + NUL into out[37] and returns 0. */
int sg_trace_id_parse(sg_str_t in, char out[SG_TRACE_ID_LEN + 1]) SG_MUST_CHECK;
/* Times the per-thread id buffer was refilled by getrandom(), all
 * threads (one refill per 32 new ids per thread). For tests and profiles. */
uint64_t sg_trace_id_refills(void);
/* New random UUIDv4 into out[37], lower case: 122 bits from the calling
 * thread's getrandom() buffer, version and variant per RFC 9562 5.4,
 * formatted by libuuid. Any thread; no lock; one system call per 32 ids. */
void sg_trace_id_generate(char out[SG_TRACE_ID_LEN + 1]);
/* New random non-zero 64-bit span id as 16 lower-hex chars + NUL. */
void sg_span_id_generate(char out[SG_SPAN_ID_LEN + 1]);
/* UUID text <-> 32 hex (no dashes). Inputs must be valid. */
void sg_trace_id_to_hex(const char uuid[SG_TRACE_ID_LEN], char hex[SG_TRACE_HEX_LEN + 1]);
void sg_trace_hex_to_id(const char hex[SG_TRACE_HEX_LEN], char uuid[SG_TRACE_ID_LEN + 1]);

typedef struct sg_traceparent {
    char trace_hex[SG_TRACE_HEX_LEN + 1];
    char parent_id[SG_SPAN_ID_LEN + 1];
    uint8_t flags;
    uint8_t version;
} sg_traceparent_t;

/* Parses one traceparent value (trimmed of OWS here) per W3C Trace Context
 * Level 2 as DESIGN.md section 4 restricts it. 0 on valid, -1 otherwise. */
int sg_traceparent_parse(sg_str_t in, sg_traceparent_t *out) SG_MUST_CHECK;
/* Validates a combined tracestate (lines joined with ','): list-member
 * grammar, <= 32 non-empty members (duplicated keys allowed), keys per the
 * W3C suite's grammar (up to 256 characters, "@" anywhere after the first). */
bool sg_tracestate_valid(sg_str_t in);

/* Header values of one request, as the parser saw them (each line apart). */
typedef struct sg_trace_in {
    sg_str_t xtid[SG_TRACE_MAX_VALUES];  /* configured id header (X-Trace-Id) */
    size_t n_xtid;                       /* may exceed SG_TRACE_MAX_VALUES: then invalid */
    sg_str_t alias[SG_TRACE_MAX_VALUES]; /* first accepted alias header found (e.g. X-Request-Id) */
    size_t n_alias;
    sg_str_t traceparent[SG_TRACE_MAX_VALUES];
    size_t n_traceparent;
    sg_str_t tracestate[SG_TRACE_MAX_VALUES];
    size_t n_tracestate;
} sg_trace_in_t;

/* What one hop decided. Everything is inline: no pointers into the request. */
typedef struct sg_trace_ctx {
    char trace_id[SG_TRACE_ID_LEN + 1];       /* X-Trace-Id to send both ways */
    char span_id[SG_SPAN_ID_LEN + 1];         /* this hop's span */
    char parent_span_id[SG_SPAN_ID_LEN + 1];  /* "" when restarted */
    char traceparent[SG_TRACEPARENT_LEN + 1]; /* value to send upstream */
    uint8_t flags;
    sg_trace_source_t source;
    bool had_invalid;                       /* an incoming id/traceparent/tracestate was rejected */
    bool conflict;                          /* valid X-Trace-Id and traceparent disagreed */
    char tracestate[SG_TRACESTATE_MAX + 1]; /* to forward; "" = none */
    size_t tracestate_len;
} sg_trace_ctx_t;

/* Applies the trace rules. `sample_new` is the sampler's decision for a
 * trace swarmgate starts (restart). Never fails. */
void sg_trace_resolve(const sg_trace_in_t *in, bool sample_new, sg_trace_ctx_t *out);

const char *sg_trace_source_name(sg_trace_source_t s);

#endif /* SG_TRACE_H */
