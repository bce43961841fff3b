/* Span records, OTLP/Zipkin JSON encoders, per-worker span queues and the
 * control-thread exporter (include/sg/spans.h).
 *
 * The exporter is a small state machine in the style of h2o's
 * lib/common/http1client.c: one batch at a time over one kept HTTP/1.1
 * connection (a new one only after the collector or an error closed it),
 * every libuv handle embedded in the exporter, which is freed only from the
 * last close callback. */
#include "sg/spans.h"

#include "sg/runtime.h"
#include "obs/spans_int.h"
#include "sg/trace.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

/* ---- span records ------------------------------------------------------ */

static void copy_cut(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = src ? SG_MIN(len, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* "host:port", "[v6]:port", "host" -> host without port or brackets; the
 * port (if any, and numeric) into *port. A bare IPv6 (several ':') has no port. */
static sg_str_t strip_port(sg_str_t s, uint16_t *port)
{
    *port = 0;
    if (!s.p || !s.len)
        return s;
    sg_str_t host = s;
    const char *ps = NULL, *end = s.p + s.len;
    if (s.p[0] == '[') {
        const char *rb = memchr(s.p, ']', s.len);
        if (!rb)
            return s;
        host = sg_str_make(s.p + 1, (size_t)(rb - s.p - 1));
        if (rb + 1 < end && rb[1] == ':')
            ps = rb + 2;
    } else {
        const char *first = memchr(s.p, ':', s.len);
        if (first && !memchr(first + 1, ':', (size_t)(end - first - 1))) {
            host.len = (size_t)(first - s.p);
            ps = first + 1;
        }
    }
    if (ps && end - ps >= 1 && end - ps <= 5) {
        unsigned v = 0;
        for (const char *c = ps; c < end; c++) {
            if (*c < '0' || *c > '9')
                return host;
            v = v * 10 + (unsigned)(*c - '0');
        }
        if (v <= 65535)
            *port = (uint16_t)v;
    }
    return host;
}

const char *sg_span_reason_name(sg_span_reason_t r)
{
    static const char *const names[SG_SPAN_REASON__COUNT] = {
        [SG_SPAN_REASON_ERROR] = "error",
        [SG_SPAN_REASON_SLOW] = "slow",
        [SG_SPAN_REASON_SAMPLED] = "sampled",
    };
    return (unsigned)r < SG_SPAN_REASON__COUNT ? names[r] : "unknown";
}

static bool has_word(const char *s, const char *w)
{
    return s && strcasestr(s, w) != NULL;
}

const char *sg_span_error_type(uint16_t status, const char *error, bool is_error, char buf[8])
{
    if (!is_error)
        return NULL;
    /* The reasons swarmgate writes are free text (uv_strerror, its own
     * messages): only a fixed set of kinds goes on the span. */
    if (has_word(error, "timeout") || has_word(error, "timed out"))
        return "timeout";
    if (has_word(error, "refused"))
        return "connection_refused";
    if (has_word(error, "no healthy"))
        return "no_healthy_upstream";
    if (error && strncmp(error, "client ", 7) == 0)
        return "client_closed";
    if (has_word(error, "reset") || has_word(error, "closed") || has_word(error, "broken pipe"))
        return "connection_reset";
    if (status >= 400 && status <= 599) {
        snprintf(buf, 8, "%u", (unsigned)status);
        return buf;
    }
    return "_OTHER";
}

void sg_span_from_rec(sg_span_t *out, const sg_reqrec_t *rec, const char *route_name)
{
    const sg_trace_ctx_t *t = rec->trace;
    out->tracestate[0] = '\0';
    if (t) {
        sg_trace_id_to_hex(t->trace_id, out->trace_hex);
        memcpy(out->span_id, t->span_id, sizeof(out->span_id));
        memcpy(out->parent_span_id, t->parent_span_id, sizeof(out->parent_span_id));
        copy_cut(out->tracestate, sizeof(out->tracestate), t->tracestate, t->tracestate_len);
    } else {
        memset(out->trace_hex, '0', SG_TRACE_HEX_LEN);
        out->trace_hex[SG_TRACE_HEX_LEN] = '\0';
        sg_span_id_generate(out->span_id);
        out->parent_span_id[0] = '\0';
    }
    out->start_unix_ns = rec->start_unix_ns;
    out->end_unix_ns = rec->start_unix_ns + (rec->end_ns > rec->start_ns ? rec->end_ns - rec->start_ns : 0);
    out->method = rec->method;
    out->status = rec->status;
    /* HTTP semantic conventions (server spans): ERROR for 5xx, and for an
     * exchange that failed otherwise (no response, broken after the head);
     * 1xx-4xx, proxy-made 4xx included, leave the status unset. */
    out->is_error = rec->status >= 500 || rec->status == 0 || (rec->error != NULL && !rec->is_proxy_error);
    int reason = sg_spans_export_reason(rec);
    out->reason = (uint8_t)(reason >= 0 ? reason : SG_SPAN_REASON_SAMPLED);
    out->is_connect = rec->method == SG_METHOD_CONNECT;
    copy_cut(out->route, sizeof(out->route), route_name, route_name ? strlen(route_name) : 0);
    copy_cut(out->path, sizeof(out->path), rec->path.p, rec->path.len);
    sg_str_t h = strip_port(rec->host, &out->server_port);
    if (!out->server_port && !out->is_connect)
        out->server_port = 80; /* the http scheme's default (RFC 9110 4.2.1) */
    copy_cut(out->host, sizeof(out->host), h.p, h.len);
    sg_str_t c = strip_port(rec->client_addr, &out->client_port);
    copy_cut(out->client_ip, sizeof(out->client_ip), c.p, c.len);
    copy_cut(out->upstream, sizeof(out->upstream), rec->server_addr.p, rec->server_addr.len);
    const char *agent = rec->is_egress ? (rec->agent ? rec->agent : "unknown") : NULL;
    copy_cut(out->agent, sizeof(out->agent), agent, agent ? strlen(agent) : 0);
    copy_cut(out->error, sizeof(out->error), rec->error, rec->error ? strlen(rec->error) : 0);
    char code[8];
    const char *et = sg_span_error_type(rec->status, rec->error, out->is_error, code);
    copy_cut(out->error_type, sizeof(out->error_type), et, et ? strlen(et) : 0);
}

/* ---- encoders ---------------------------------------------------------- */

static void put_str(sg_buf_t *b, const char *s)
{
    sg_buf_put_json_str(b, s, strlen(s), SIZE_MAX);
}

/* OTel semantic conventions: span name "{method} {http.route}", or the
 * method alone without a route template. Routes match path prefixes and
 * have no template, so the name is the method (the route's name is the
 * swarmgate.route attribute). */
static void put_span_name(sg_buf_t *b, const sg_span_t *s)
{
    put_str(b, sg_method_name(s->method));
}

static void otlp_attr_str(sg_buf_t *b, bool *first, const char *key, const char *val)
{
    if (!*first)
        sg_buf_putc(b, ',');
    *first = false;
    SG_BUF_LIT(b, "{\"key\":\"");
    sg_buf_puts(b, key);
    SG_BUF_LIT(b, "\",\"value\":{\"stringValue\":");
    put_str(b, val);
    SG_BUF_LIT(b, "}}");
}

static void otlp_attr_int(sg_buf_t *b, bool *first, const char *key, uint64_t v)
{
    if (!*first)
        sg_buf_putc(b, ',');
    *first = false;
    SG_BUF_LIT(b, "{\"key\":\"");
    sg_buf_puts(b, key);
    /* OTLP/JSON: 64-bit integers are strings (protobuf JSON mapping) */
    SG_BUF_LIT(b, "\",\"value\":{\"intValue\":\"");
    sg_buf_put_u64(b, v);
    SG_BUF_LIT(b, "\"}}");
}

static void otlp_span(sg_buf_t *b, const sg_span_t *s)
{
    SG_BUF_LIT(b, "{\"traceId\":\"");
    sg_buf_put(b, s->trace_hex, SG_TRACE_HEX_LEN);
    SG_BUF_LIT(b, "\",\"spanId\":\"");
    sg_buf_put(b, s->span_id, SG_SPAN_ID_LEN);
    sg_buf_putc(b, '"');
    if (s->parent_span_id[0]) {
        SG_BUF_LIT(b, ",\"parentSpanId\":\"");
        sg_buf_put(b, s->parent_span_id, SG_SPAN_ID_LEN);
        sg_buf_putc(b, '"');
    }
    SG_BUF_LIT(b, ",\"name\":");
    put_span_name(b, s);
    if (s->tracestate[0]) {
        SG_BUF_LIT(b, ",\"traceState\":");
        put_str(b, s->tracestate);
    }
    /* OTLP/JSON (protobuf JSON mapping): enums as numbers (SPAN_KIND_SERVER
     * = 2), fixed64 times as decimal strings */
    SG_BUF_LIT(b, ",\"kind\":2,\"startTimeUnixNano\":\"");
    sg_buf_put_u64(b, s->start_unix_ns);
    SG_BUF_LIT(b, "\",\"endTimeUnixNano\":\"");
    sg_buf_put_u64(b, s->end_unix_ns);
    SG_BUF_LIT(b, "\",\"attributes\":[");
    bool first = true;
    /* HTTP server span attributes (semantic conventions 1.2x, stable) */
    otlp_attr_str(b, &first, "http.request.method", sg_method_name(s->method));
    if (!s->is_connect) {
        otlp_attr_str(b, &first, "url.scheme", "http");
        otlp_attr_str(b, &first, "url.path", s->path);
    }
    if (s->status)
        otlp_attr_int(b, &first, "http.response.status_code", s->status);
    if (s->host[0])
        otlp_attr_str(b, &first, "server.address", s->host);
    if (s->server_port)
        otlp_attr_int(b, &first, "server.port", s->server_port);
    if (s->client_ip[0]) {
        otlp_attr_str(b, &first, "client.address", s->client_ip);
        otlp_attr_str(b, &first, "network.peer.address", s->client_ip);
    }
    if (s->client_port)
        otlp_attr_int(b, &first, "network.peer.port", s->client_port);
    if (s->error_type[0])
        otlp_attr_str(b, &first, "error.type", s->error_type);
    /* http.route is a path template; a route name is swarmgate's own */
    if (s->route[0])
        otlp_attr_str(b, &first, "swarmgate.route", s->route);
    if (s->upstream[0])
        otlp_attr_str(b, &first, "swarmgate.upstream.address", s->upstream);
    if (s->agent[0])
        otlp_attr_str(b, &first, "swarmgate.agent", s->agent);
    sg_buf_putc(b, ']');
    if (s->is_error) {
        /* STATUS_CODE_ERROR = 2; the message is the free-text reason */
        SG_BUF_LIT(b, ",\"status\":{\"code\":2");
        if (s->error[0]) {
            SG_BUF_LIT(b, ",\"message\":");
            put_str(b, s->error);
        }
        sg_buf_putc(b, '}');
    }
    sg_buf_putc(b, '}');
}

static void zipkin_tag(sg_buf_t *b, bool *first, const char *key, const char *val)
{
    if (!*first)
        sg_buf_putc(b, ',');
    *first = false;
    sg_buf_putc(b, '"');
    sg_buf_puts(b, key);
    SG_BUF_LIT(b, "\":");
    put_str(b, val);
}

static void zipkin_span(sg_buf_t *b, const sg_span_t *s, const char *service)
{
    SG_BUF_LIT(b, "{\"traceId\":\"");
    sg_buf_put(b, s->trace_hex, SG_TRACE_HEX_LEN);
    SG_BUF_LIT(b, "\",\"id\":\"");
    sg_buf_put(b, s->span_id, SG_SPAN_ID_LEN);
    sg_buf_putc(b, '"');
    if (s->parent_span_id[0]) {
        SG_BUF_LIT(b, ",\"parentId\":\"");
        sg_buf_put(b, s->parent_span_id, SG_SPAN_ID_LEN);
        sg_buf_putc(b, '"');
    }
    SG_BUF_LIT(b, ",\"name\":");
    put_span_name(b, s);
    SG_BUF_LIT(b, ",\"kind\":\"SERVER\",\"timestamp\":");
    sg_buf_put_u64(b, s->start_unix_ns / 1000);
    SG_BUF_LIT(b, ",\"duration\":");
    uint64_t dur_us = (s->end_unix_ns - s->start_unix_ns + 500) / 1000;
    sg_buf_put_u64(b, dur_us ? dur_us : 1); /* Zipkin: duration >= 1 us */
    SG_BUF_LIT(b, ",\"localEndpoint\":{\"serviceName\":");
    put_str(b, service);
    SG_BUF_LIT(b, "},\"tags\":{");
    bool first = true;
    char num[8] = "error", port[8];
    zipkin_tag(b, &first, "http.method", sg_method_name(s->method));
    if (!s->is_connect) {
        zipkin_tag(b, &first, "url.scheme", "http");
        zipkin_tag(b, &first, "http.path", s->path);
    }
    if (s->status) {
        snprintf(num, sizeof(num), "%u", (unsigned)s->status);
        zipkin_tag(b, &first, "http.status_code", num);
    }
    if (s->host[0])
        zipkin_tag(b, &first, "server.address", s->host);
    if (s->server_port) {
        snprintf(port, sizeof(port), "%u", (unsigned)s->server_port);
        zipkin_tag(b, &first, "server.port", port);
    }
    if (s->client_ip[0])
        zipkin_tag(b, &first, "client.address", s->client_ip);
    if (s->route[0])
        zipkin_tag(b, &first, "swarmgate.route", s->route);
    if (s->upstream[0])
        zipkin_tag(b, &first, "swarmgate.upstream.address", s->upstream);
    if (s->agent[0])
        zipkin_tag(b, &first, "swarmgate.agent", s->agent);
    if (s->error_type[0])
        zipkin_tag(b, &first, "error.type", s->error_type);
    /* Zipkin marks a failed span with the "error" tag */
    if (s->is_error)
        zipkin_tag(b, &first, "error", s->error[0] ? s->error : num);
    SG_BUF_LIT(b, "}}");
}

typedef void (*span_enc_fn)(sg_buf_t *b, const sg_span_t *s, const char *service);

static void otlp_span_enc(sg_buf_t *b, const sg_span_t *s, const char *service)
{
    SG_UNUSED(service);
    otlp_span(b, s);
}

/* Envelope head, spans separated by ',', envelope tail. The tail is
 * reserved while spans are written so the body always closes. */
static size_t encode(sg_buf_t *b, const sg_span_t *spans, size_t n, const char *head, const char *tail, span_enc_fn enc,
                     const char *service)
{
    size_t tail_len = strlen(tail), start = b->len;
    if (!sg_buf_puts(b, head) || sg_buf_avail(b) < tail_len) {
        b->len = start;
        b->is_overflow = true;
        return 0;
    }
    size_t cap = b->cap, done = 0;
    b->cap -= tail_len;
    for (; done < n; done++) {
        size_t mark = b->len;
        if (done)
            sg_buf_putc(b, ',');
        enc(b, &spans[done], service);
        if (b->is_overflow) {
            b->len = mark;
            break;
        }
    }
    b->cap = cap;
    bool was_overflow = b->is_overflow;
    sg_buf_put(b, tail, tail_len);
    b->is_overflow = was_overflow;
    return done;
}

size_t sg_spans_encode_otlp(sg_buf_t *b, const sg_span_t *spans, size_t n, const char *service_name)
{
    char head[512];
    sg_buf_t h;
    sg_buf_init(&h, head, sizeof(head) - 1);
    SG_BUF_LIT(&h, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
                   "\"stringValue\":");
    sg_buf_put_json_str(&h, service_name, strlen(service_name), 256);
    SG_BUF_LIT(&h, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"swarmgate\",\"version\":\"" SG_VERSION "\"},"
                   "\"spans\":[");
    head[h.len] = '\0';
    return encode(b, spans, n, head, "]}]}]}", otlp_span_enc, service_name);
}

size_t sg_spans_encode_zipkin(sg_buf_t *b, const sg_span_t *spans, size_t n, const char *service_name)
{
    return encode(b, spans, n, "[", "]", zipkin_span, service_name);
}

/* ---- sampling ---------------------------------------------------------- */

/* Threshold over a uniform 64-bit draw; UINT64_MAX with ratio 1.0 means
 * "always" (handled apart so 1.0 is exact). */
static _Atomic uint64_t sample_threshold = UINT64_MAX;
static _Atomic bool sample_all = true;
static _Thread_local uint64_t sample_state;

void sg_spans_set_sample_ratio(double ratio)
{
    if (!(ratio > 0)) {
        atomic_store(&sample_all, false);
        atomic_store(&sample_threshold, 0);
    } else if (ratio >= 1.0) {
        atomic_store(&sample_all, true);
        atomic_store(&sample_threshold, UINT64_MAX);
    } else {
        atomic_store(&sample_all, false);
        atomic_store(&sample_threshold, (uint64_t)ldexp(ratio, 64));
    }
}

static _Atomic uint64_t slow_ns = 1000000000ull;

void sg_spans_set_slow_ms(uint64_t ms)
{
    atomic_store(&slow_ns, ms * 1000000ull);
}

int sg_spans_export_reason(const sg_reqrec_t *rec)
{
    /* Tail sampling: what matters is always exported, whatever the head
     * decision (which stays what the traceparent sent upstream says). */
    if (rec->is_proxy_error || rec->status >= 500 || rec->status == 0 || rec->error)
        return SG_SPAN_REASON_ERROR;
    uint64_t dur = rec->end_ns > rec->start_ns ? rec->end_ns - rec->start_ns : 0;
    if (dur > atomic_load_explicit(&slow_ns, memory_order_relaxed))
        return SG_SPAN_REASON_SLOW;
    return rec->sampled ? SG_SPAN_REASON_SAMPLED : -1;
}

bool sg_spans_sample_new(void)
{
    if (atomic_load_explicit(&sample_all, memory_order_relaxed))
        return true;
    uint64_t th = atomic_load_explicit(&sample_threshold, memory_order_relaxed);
    if (th == 0)
        return false;
    if (SG_UNLIKELY(sample_state == 0)) {
        if (getrandom(&sample_state, sizeof(sample_state), 0) != (ssize_t)sizeof(sample_state) || sample_state == 0)
            sample_state = sg_now_ns() | 1;
    }
    /* splitmix64 */
    uint64_t z = (sample_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z < th;
}

/* ---- queues ------------------------------------------------------------ */

/* Owner: the pushing worker; freed by sg_span_queue_free(). */
struct sg_span_queue {
    _Alignas(SG_CACHELINE) _Atomic uint64_t head; /* producer, release */
    uint64_t cached_tail;
    _Atomic uint64_t dropped; /* producer only */
    sg_span_t *slots;
    uint64_t mask;
    sg_span_queue_t *next, *prev;                 /* registry, under reg.mu */
    _Alignas(SG_CACHELINE) _Atomic uint64_t tail; /* consumer, release */
};

static struct {
    pthread_mutex_t mu;
    sg_span_queue_t *queues;
    _Atomic uint64_t exported[SG_SPAN_REASON__COUNT];
    _Atomic uint64_t dropped; /* batches given up + freed queues */
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

sg_span_queue_t *sg_span_queue_new(uint32_t capacity)
{
    uint64_t cap = 16;
    while (cap < capacity && cap < (1u << 24))
        cap <<= 1;
    size_t size = (sizeof(sg_span_queue_t) + SG_CACHELINE - 1) & ~(size_t)(SG_CACHELINE - 1);
    sg_span_queue_t *q = aligned_alloc(SG_CACHELINE, size);
    if (!q)
        return NULL;
    memset(q, 0, sizeof(*q));
    q->slots = malloc((size_t)cap * sizeof(sg_span_t));
    if (!q->slots) {
        free(q);
        return NULL;
    }
    q->mask = cap - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->dropped, 0);
    pthread_mutex_lock(&reg.mu);
    q->next = reg.queues;
    if (reg.queues)
        reg.queues->prev = q;
    reg.queues = q;
    pthread_mutex_unlock(&reg.mu);
    return q;
}

void sg_span_queue_free(sg_span_queue_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&reg.mu);
    uint64_t left = atomic_load(&q->head) - atomic_load(&q->tail);
    atomic_fetch_add(&reg.dropped, left + atomic_load(&q->dropped));
    if (q->prev)
        q->prev->next = q->next;
    else
        reg.queues = q->next;
    if (q->next)
        q->next->prev = q->prev;
    pthread_mutex_unlock(&reg.mu);
    free(q->slots);
    free(q);
}

static void count_drop(sg_span_queue_t *q)
{
    uint64_t d = atomic_load_explicit(&q->dropped, memory_order_relaxed);
    atomic_store_explicit(&q->dropped, d + 1, memory_order_relaxed);
}

/* Next free slot, or NULL when full (counted). */
static sg_span_t *queue_reserve(sg_span_queue_t *q, uint64_t *head_out)
{
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (SG_UNLIKELY(head - q->cached_tail > q->mask)) {
        q->cached_tail = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head - q->cached_tail > q->mask) {
            count_drop(q);
            return NULL;
        }
    }
    *head_out = head;
    return &q->slots[head & q->mask];
}

bool sg_span_queue_push(sg_span_queue_t *q, const sg_span_t *span)
{
    uint64_t head;
    sg_span_t *slot = queue_reserve(q, &head);
    if (!slot)
        return false;
    *slot = *span;
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return true;
}

bool sg_spans_record(sg_span_queue_t *q, const sg_reqrec_t *rec, const char *route_name)
{
    if (sg_spans_export_reason(rec) < 0)
        return false;
    uint64_t head;
    sg_span_t *slot = queue_reserve(q, &head);
    if (!slot)
        return false;
    sg_span_from_rec(slot, rec, route_name);
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return true;
}

uint64_t sg_span_queue_dropped(const sg_span_queue_t *q)
{
    return atomic_load_explicit(&q->dropped, memory_order_relaxed);
}

uint64_t sg_spans_exported_reason(sg_span_reason_t r)
{
    return (unsigned)r < SG_SPAN_REASON__COUNT ? atomic_load_explicit(&reg.exported[r], memory_order_relaxed) : 0;
}

uint64_t sg_spans_exported_total(void)
{
    uint64_t n = 0;
    for (int r = 0; r < SG_SPAN_REASON__COUNT; r++)
        n += sg_spans_exported_reason((sg_span_reason_t)r);
    return n;
}

uint64_t sg_spans_dropped_total(void)
{
    pthread_mutex_lock(&reg.mu);
    uint64_t n = atomic_load_explicit(&reg.dropped, memory_order_relaxed);
    for (sg_span_queue_t *q = reg.queues; q; q = q->next)
        n += atomic_load_explicit(&q->dropped, memory_order_relaxed);
    pthread_mutex_unlock(&reg.mu);
    return n;
}

/* Spans waiting in all queues. */
static uint64_t queued_total(void)
{
    uint64_t n = 0;
    pthread_mutex_lock(&reg.mu);
    for (sg_span_queue_t *q = reg.queues; q; q = q->next)
        n +=
            atomic_load_explicit(&q->head, memory_order_acquire) - atomic_load_explicit(&q->tail, memory_order_relaxed);
    pthread_mutex_unlock(&reg.mu);
    return n;
}

/* Moves up to `max` spans from the queues into out; returns how many. */
static size_t drain_queues(sg_span_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&reg.mu);
    for (sg_span_queue_t *q = reg.queues; q && n < max; q = q->next) {
        uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        while (tail != head && n < max)
            out[n++] = q->slots[tail++ & q->mask];
        atomic_store_explicit(&q->tail, tail, memory_order_release);
    }
    pthread_mutex_unlock(&reg.mu);
    return n;
}

/* ---- exporter ---------------------------------------------------------- */

typedef enum ex_state {
    EX_IDLE = 0,  /* no batch; the kept connection (if any) is read for a close */
    EX_RESOLVING, /* uv_getaddrinfo in flight */
    EX_CONNECTING,
    EX_SENDING, /* request written, reading the response */
    EX_CLOSING, /* tcp handle closing; result decided */
    EX_BACKOFF, /* waiting before the next attempt */
    EX_STATE__COUNT
} ex_state_t;

typedef enum ex_result {
    RES_OK = 0,
    RES_RETRY,     /* connect/timeout/reset, 429/502/503/504 (OTLP/HTTP "retryable") */
    RES_FATAL,     /* any other status: the collector refuses the batch */
    RES_NEXT_ADDR, /* connect failed: try the next resolved address now */
    RES_STALE,     /* a kept connection closed before any response byte: same attempt, new connection */
    RES_NONE,      /* the idle connection closed: no attempt to act on */
} ex_result_t;

/* Owner: the control thread that started it; freed in the last close
 * callback after sg_spans_exporter_stop(). */
struct sg_spans_exporter {
    uv_loop_t *loop;
    uv_timer_t tick;  /* queue poll */
    uv_timer_t timer; /* request timeout or back-off */
    uv_tcp_t tcp;     /* the connection to the collector, kept between POSTs */
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_getaddrinfo_t gai;
    ex_state_t state;
    ex_result_t result;
    int handles_open;
    bool is_gai_pending;
    bool is_stopping;
    bool is_tcp_open;
    bool is_connected; /* tcp open and connected: a POST can go at once */
    bool is_reused;    /* this attempt went on a connection a previous POST used */
    bool is_keep;      /* the finished exchange leaves the connection reusable */

    sg_export_format_t format;
    char host[256];
    char port_str[8];
    char path[512];
    char service[128];
    uint32_t batch_size;
    uint64_t batch_delay_ms;
    uint64_t timeout_ms;
    sg_spans_opts_t opts;

    struct sockaddr_storage addrs[8]; /* resolved, in getaddrinfo order */
    size_t n_addrs;
    size_t addr_idx;
    bool has_addr;
    uint32_t attempt;
    uint64_t last_batch_ms;
    uint64_t retry_after_ms; /* the last retryable answer's Retry-After */

    sg_span_t *batch;
    size_t n_batch; /* spans held (the body's first, then carried ones) */
    size_t n_sent;  /* spans in the current body */
    char *body;
    size_t body_cap, body_len;
    char head[1024];
    size_t head_len;
    char rbuf[4096];
    sg__spans_resp_t resp;
};

static void start_attempt(sg_spans_exporter_t *ex);

static void maybe_free(sg_spans_exporter_t *ex)
{
    if (!ex->is_stopping || ex->handles_open > 0 || ex->is_gai_pending)
        return;
    atomic_fetch_add(&reg.dropped, ex->n_batch);
    free(ex->batch);
    free(ex->body);
    free(ex);
}

static void on_handle_closed(uv_handle_t *h)
{
    sg_spans_exporter_t *ex = h->data;
    ex->handles_open--;
    maybe_free(ex);
}

/* Retry-After is honoured up to this (a collector's hint, not an order to
 * hold spans for hours; the queues keep filling meanwhile). */
#define RETRY_AFTER_MAX_MS 300000u

static uint64_t backoff_ms(const sg_spans_exporter_t *ex)
{
    /* OTLP/HTTP: exponential back-off with jitter, and the server's
     * Retry-After when it gave one. min * 2^(attempt-1), capped, +-25%
     * jitter so a fleet of proxies does not retry in step. */
    if (ex->retry_after_ms)
        return SG_MIN(ex->retry_after_ms, (uint64_t)RETRY_AFTER_MAX_MS);
    uint64_t d = ex->opts.backoff_min_ms;
    for (uint32_t i = 1; i < ex->attempt && d < ex->opts.backoff_max_ms; i++)
        d *= 2;
    if (d > ex->opts.backoff_max_ms)
        d = ex->opts.backoff_max_ms;
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = sg_now_ns();
    uint64_t j = d / 4;
    return d - j + (j ? r % (2 * j + 1) : 0);
}

static void on_backoff(uv_timer_t *t)
{
    sg_spans_exporter_t *ex = t->data;
    start_attempt(ex);
}

/* The body's spans are done with (exported or dropped): what did not fit
 * in the body moves to the front for the next POST. */
static void batch_consume(sg_spans_exporter_t *ex, bool is_exported)
{
    if (is_exported) {
        for (size_t i = 0; i < ex->n_sent; i++)
            atomic_fetch_add_explicit(&reg.exported[ex->batch[i].reason % SG_SPAN_REASON__COUNT], 1,
                                      memory_order_relaxed);
    } else {
        atomic_fetch_add(&reg.dropped, ex->n_sent);
    }
    memmove(ex->batch, ex->batch + ex->n_sent, (ex->n_batch - ex->n_sent) * sizeof(sg_span_t));
    ex->n_batch -= ex->n_sent;
    ex->n_sent = 0;
}

/* The attempt is over (its connection kept or closed): act on it. */
static void attempt_done(sg_spans_exporter_t *ex)
{
    if (ex->is_stopping)
        return;
    if (ex->result == RES_OK) {
        batch_consume(ex, true);
    } else if (ex->result == RES_RETRY && ex->attempt < ex->opts.max_attempts) {
        ex->state = EX_BACKOFF;
        uv_timer_start(&ex->timer, on_backoff, backoff_ms(ex), 0);
        return;
    } else {
        batch_consume(ex, false);
    }
    ex->state = EX_IDLE;
}

static void connect_now(sg_spans_exporter_t *ex);

static void on_tcp_closed(uv_handle_t *h)
{
    sg_spans_exporter_t *ex = h->data;
    ex->is_tcp_open = false;
    ex->is_connected = false;
    ex->handles_open--;
    if (ex->is_stopping) {
        if (ex->state == EX_CLOSING && ex->result == RES_OK) {
            batch_consume(ex, true);
        }
        maybe_free(ex);
        return;
    }
    if (ex->result == RES_NONE)
        return; /* the idle connection went away; the next POST opens another */
    if (ex->result == RES_NEXT_ADDR || ex->result == RES_STALE) {
        connect_now(ex); /* same attempt, same timeout */
        return;
    }
    attempt_done(ex);
}

static void close_tcp(sg_spans_exporter_t *ex)
{
    uv_read_stop((uv_stream_t *)&ex->tcp);
    uv_close((uv_handle_t *)&ex->tcp, on_tcp_closed);
}

static void finish(sg_spans_exporter_t *ex, ex_result_t res)
{
    /* Stopping: sg_spans_exporter_stop() already closed the TCP handle, and
     * its cancelled connect/write/read callbacks land here; closing it again
     * would abort in uv_close. on_tcp_closed does the accounting. */
    if (ex->state == EX_CLOSING || ex->is_stopping)
        return;
    ex->result = res;
    uv_timer_stop(&ex->timer);
    if (res == RES_RETRY && ex->state <= EX_CONNECTING)
        ex->has_addr = false; /* could not connect: resolve again, the collector may have moved */
    if (ex->is_tcp_open && ex->is_keep && ex->is_connected && res != RES_STALE) {
        /* the response was read to its end: the connection stays for the
         * next POST, read meanwhile only to notice the collector closing it */
        attempt_done(ex); /* on_read keeps reading: a close while idle is seen */
    } else if (ex->is_tcp_open) {
        ex->state = EX_CLOSING;
        close_tcp(ex);
    } else {
        attempt_done(ex);
    }
}

static void on_timeout(uv_timer_t *t)
{
    sg_spans_exporter_t *ex = t->data;
    ex->is_keep = false;
    ex->retry_after_ms = 0;
    finish(ex, RES_RETRY);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sg_spans_exporter_t *ex = h->data;
    SG_UNUSED(suggested);
    buf->base = ex->rbuf;
    buf->len = sizeof(ex->rbuf);
}

/* OTLP/HTTP (Failures, Retryable Response Codes): 429, 502, 503 and 504
 * are retried; any other error status drops the batch. */
static ex_result_t result_of(unsigned code)
{
    if (code >= 200 && code < 300)
        return RES_OK;
    if (code == 429 || code == 502 || code == 503 || code == 504)
        return RES_RETRY;
    return RES_FATAL;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sg_spans_exporter_t *ex = s->data;
    SG_UNUSED(buf);
    if (ex->is_stopping || ex->state == EX_CLOSING || nread == 0)
        return;
    if (ex->state != EX_SENDING) {
        /* idle (or backing off) on a kept connection: the collector closed
         * it, or sent what nobody asked for. Either way it is done. */
        ex->result = RES_NONE;
        ex->is_connected = false;
        close_tcp(ex);
        return;
    }
    ex->is_keep = false;
    ex->retry_after_ms = 0;
    if (nread < 0) {
        if (nread == UV_EOF && sg__spans_resp_eof(&ex->resp) == SG__SPANS_RESP_DONE) {
            finish(ex, result_of(ex->resp.status));
            return;
        }
        /* A kept connection the collector closed as we sent: one more try
         * on a new connection, not counted as an attempt. */
        bool is_stale = ex->is_reused && !sg__spans_resp_started(&ex->resp);
        finish(ex, is_stale ? RES_STALE : RES_RETRY);
        return;
    }
    size_t used = 0;
    int r = sg__spans_resp_feed(&ex->resp, ex->rbuf, (size_t)nread, &used, (int64_t)time(NULL));
    if (r < 0) {
        finish(ex, RES_RETRY);
        return;
    }
    if (r == SG__SPANS_RESP_MORE)
        return;
    ex_result_t res = result_of(ex->resp.status);
    /* bytes after the response were never asked for: do not reuse */
    ex->is_keep = ex->resp.is_keep_alive && used == (size_t)nread;
    if (res == RES_RETRY)
        ex->retry_after_ms = ex->resp.retry_after_ms;
    finish(ex, res);
}

static void on_write(uv_write_t *req, int status)
{
    sg_spans_exporter_t *ex = req->data;
    if (ex->state != EX_SENDING)
        return;
    if (status < 0) {
        ex->is_keep = false;
        bool is_stale = ex->is_reused && !sg__spans_resp_started(&ex->resp);
        finish(ex, is_stale ? RES_STALE : RES_RETRY);
    }
}

/* Writes the request on the connected handle and reads the response. */
static void send_request(sg_spans_exporter_t *ex)
{
    ex->state = EX_SENDING;
    ex->is_keep = false;
    sg__spans_resp_init(&ex->resp);
    uv_buf_t bufs[2] = {uv_buf_init(ex->head, (unsigned)ex->head_len), uv_buf_init(ex->body, (unsigned)ex->body_len)};
    ex->write_req.data = ex;
    uv_read_stop((uv_stream_t *)&ex->tcp);
    int rc = uv_write(&ex->write_req, (uv_stream_t *)&ex->tcp, bufs, 2, on_write);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&ex->tcp, on_alloc, on_read);
    if (rc != 0)
        finish(ex, ex->is_reused ? RES_STALE : RES_RETRY);
}

static void on_connect(uv_connect_t *req, int status)
{
    sg_spans_exporter_t *ex = req->data;
    if (ex->state != EX_CONNECTING || ex->is_stopping) /* stopping: the handle is closed already */
        return;
    if (status < 0) {
        /* RFC 8305 in its simplest form: walk the address list in order */
        if (++ex->addr_idx < ex->n_addrs) {
            ex->state = EX_CLOSING;
            ex->result = RES_NEXT_ADDR;
            uv_close((uv_handle_t *)&ex->tcp, on_tcp_closed);
            return;
        }
        finish(ex, RES_RETRY);
        return;
    }
    ex->is_connected = true;
    ex->is_reused = false;
    send_request(ex);
}

static void connect_now(sg_spans_exporter_t *ex)
{
    int rc = uv_tcp_init(ex->loop, &ex->tcp);
    if (rc != 0) {
        finish(ex, RES_RETRY);
        return;
    }
    ex->tcp.data = ex;
    ex->is_tcp_open = true;
    ex->is_connected = false;
    ex->handles_open++;
    ex->state = EX_CONNECTING;
    ex->connect_req.data = ex;
    rc = uv_tcp_connect(&ex->connect_req, &ex->tcp, (const struct sockaddr *)&ex->addrs[ex->addr_idx], on_connect);
    if (rc != 0)
        finish(ex, RES_RETRY);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sg_spans_exporter_t *ex = req->data;
    ex->is_gai_pending = false;
    if (ex->is_stopping) {
        uv_freeaddrinfo(res);
        maybe_free(ex);
        return;
    }
    if (ex->state != EX_RESOLVING) { /* timed out meanwhile */
        uv_freeaddrinfo(res);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        finish(ex, RES_RETRY);
        return;
    }
    ex->n_addrs = 0;
    for (struct addrinfo *ai = res; ai && ex->n_addrs < SG_ARRAY_SIZE(ex->addrs); ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        memset(&ex->addrs[ex->n_addrs], 0, sizeof(ex->addrs[0]));
        memcpy(&ex->addrs[ex->n_addrs], ai->ai_addr, SG_MIN((size_t)ai->ai_addrlen, sizeof(ex->addrs[0])));
        ex->n_addrs++;
    }
    ex->addr_idx = 0;
    ex->has_addr = ex->n_addrs > 0;
    uv_freeaddrinfo(res);
    if (!ex->has_addr) {
        finish(ex, RES_RETRY);
        return;
    }
    connect_now(ex);
}

static void start_attempt(sg_spans_exporter_t *ex)
{
    ex->attempt++;
    ex->result = RES_RETRY;
    ex->retry_after_ms = 0;
    uv_timer_start(&ex->timer, on_timeout, ex->timeout_ms, 0);
    if (ex->is_connected) {
        ex->is_reused = true; /* HTTP/1.1 keep-alive: one connection for every POST */
        send_request(ex);
        return;
    }
    if (ex->has_addr) {
        ex->addr_idx = 0;
        connect_now(ex);
        return;
    }
    if (ex->is_gai_pending) {
        /* a previous lookup timed out and is still running: wait for it */
        ex->state = EX_RESOLVING;
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    ex->state = EX_RESOLVING;
    ex->gai.data = ex;
    int rc = uv_getaddrinfo(ex->loop, &ex->gai, on_resolved, ex->host, ex->port_str, &hints);
    if (rc != 0) {
        finish(ex, RES_RETRY);
        return;
    }
    ex->is_gai_pending = true;
}

static void send_batch(sg_spans_exporter_t *ex)
{
    sg_buf_t b;
    sg_buf_init(&b, ex->body, ex->body_cap);
    size_t n = ex->format == SG_EXPORT_ZIPKIN ? sg_spans_encode_zipkin(&b, ex->batch, ex->n_batch, ex->service)
                                              : sg_spans_encode_otlp(&b, ex->batch, ex->n_batch, ex->service);
    if (n == 0) {
        /* cannot happen (the body holds one worst-case span); never spin */
        ex->n_sent = 1;
        batch_consume(ex, false);
        return;
    }
    ex->n_sent = n; /* the rest is carried to the next POST */
    ex->body_len = b.len;
    /* No "Connection: close": the connection is kept for the next POST. */
    int hl = snprintf(ex->head, sizeof(ex->head),
                      "POST %s HTTP/1.1\r\n"
                      "Host: %s%s%s:%s\r\n"
                      "User-Agent: swarmgate/" SG_VERSION "\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n"
                      "\r\n",
                      ex->path, strchr(ex->host, ':') ? "[" : "", ex->host, strchr(ex->host, ':') ? "]" : "",
                      ex->port_str, ex->body_len);
    ex->head_len = hl > 0 ? SG_MIN((size_t)hl, sizeof(ex->head) - 1) : 0;
    ex->attempt = 0;
    start_attempt(ex);
}

static void on_tick(uv_timer_t *t)
{
    sg_spans_exporter_t *ex = t->data;
    if (ex->state != EX_IDLE)
        return;
    uint64_t now = uv_now(ex->loop);
    if (ex->n_batch) {
        /* spans carried over from a body that was full: send on at once */
        ex->n_batch += drain_queues(ex->batch + ex->n_batch, ex->batch_size - ex->n_batch);
        send_batch(ex);
        return;
    }
    uint64_t waiting = queued_total();
    if (waiting == 0) {
        ex->last_batch_ms = now;
        return;
    }
    if (waiting < ex->batch_size && now - ex->last_batch_ms < ex->batch_delay_ms)
        return;
    ex->last_batch_ms = now;
    ex->n_batch = drain_queues(ex->batch, ex->batch_size);
    if (ex->n_batch)
        send_batch(ex);
}

/* http://host[:port][/path] (RFC 3986 authority without userinfo). */
static int parse_url(sg_spans_exporter_t *ex, const char *url)
{
    static const char scheme[] = "http://";
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return -EINVAL;
    const char *p = url + sizeof(scheme) - 1;
    const char *slash = strchr(p, '/');
    size_t alen = slash ? (size_t)(slash - p) : strlen(p);
    const char *host = p, *colon = NULL;
    size_t hlen;
    if (alen && p[0] == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            return -EINVAL;
        host = p + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < p + alen) {
            if (rb[1] != ':')
                return -EINVAL;
            colon = rb + 1;
        }
    } else {
        colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
    }
    if (hlen == 0 || hlen >= sizeof(ex->host) || memchr(p, '@', alen))
        return -EINVAL;
    memcpy(ex->host, host, hlen);
    ex->host[hlen] = '\0';
    unsigned port = 80;
    if (colon) {
        const char *q = colon + 1, *end = p + alen;
        if (q == end || end - q > 5)
            return -EINVAL;
        port = 0;
        for (; q < end; q++) {
            if (*q < '0' || *q > '9')
                return -EINVAL;
            port = port * 10 + (unsigned)(*q - '0');
        }
        if (port == 0 || port > 65535)
            return -EINVAL;
    }
    snprintf(ex->port_str, sizeof(ex->port_str), "%u", port);
    const char *path = slash ? slash : "";
    if (path[0] == '\0' || strcmp(path, "/") == 0)
        path = ex->format == SG_EXPORT_ZIPKIN ? "/api/v2/spans" : "/v1/traces";
    if (strlen(path) >= sizeof(ex->path))
        return -EINVAL;
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return -EINVAL; /* no request-line injection */
    strcpy(ex->path, path);
    return 0;
}

int sg_spans_exporter_start(uv_loop_t *loop, const sg_trace_conf_t *conf, const sg_spans_opts_t *opts,
                            sg_spans_exporter_t **out)
{
    *out = NULL;
    if (conf->export.format != SG_EXPORT_OTLP_HTTP && conf->export.format != SG_EXPORT_ZIPKIN)
        return -EINVAL;
    sg_spans_exporter_t *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return -ENOMEM;
    int rc = -EINVAL;
    ex->loop = loop;
    ex->format = conf->export.format;
    if (parse_url(ex, conf->export.url) != 0)
        goto fail;
    snprintf(ex->service, sizeof(ex->service), "%s",
             conf->export.service_name && *conf->export.service_name ? conf->export.service_name : "swarmgate");
    ex->batch_size = conf->export.batch_size ? conf->export.batch_size : 512;
    ex->batch_delay_ms = conf->export.batch_delay_ms ? conf->export.batch_delay_ms : 2000;
    ex->timeout_ms = conf->export.timeout_ms ? conf->export.timeout_ms : 10000;
    ex->opts.max_attempts = opts && opts->max_attempts ? opts->max_attempts : 5;
    ex->opts.backoff_min_ms = opts && opts->backoff_min_ms ? opts->backoff_min_ms : 250;
    ex->opts.backoff_max_ms = opts && opts->backoff_max_ms ? opts->backoff_max_ms : 30000;
    ex->opts.body_max_bytes = opts && opts->body_max_bytes ? opts->body_max_bytes : ((size_t)4 << 20);
    ex->opts.tick_ms = opts && opts->tick_ms ? opts->tick_ms : SG_MIN(ex->batch_delay_ms, (uint64_t)100);
    rc = -ENOMEM;
    ex->batch = malloc((size_t)ex->batch_size * sizeof(sg_span_t));
    /* room for a full batch, up to body_max_bytes, and always one span */
    ex->body_cap = SG_MAX(SG_MIN((size_t)ex->batch_size * SG_SPAN_JSON_MAX + 1024, ex->opts.body_max_bytes),
                          (size_t)SG_SPAN_JSON_MAX + 1024);
    ex->body = malloc(ex->body_cap);
    if (!ex->batch || !ex->body)
        goto fail;
    rc = uv_timer_init(loop, &ex->tick);
    if (rc != 0)
        goto fail;
    ex->tick.data = ex;
    ex->handles_open++;
    rc = uv_timer_init(loop, &ex->timer);
    if (rc != 0) {
        /* the tick handle must close before ex is freed */
        ex->is_stopping = true;
        uv_close((uv_handle_t *)&ex->tick, on_handle_closed);
        return rc;
    }
    ex->timer.data = ex;
    ex->handles_open++;
    sg_spans_set_sample_ratio(conf->export.sample);
    sg_spans_set_slow_ms(conf->export.slow_ms);
    ex->last_batch_ms = uv_now(loop);
    uv_timer_start(&ex->tick, on_tick, ex->opts.tick_ms, ex->opts.tick_ms);
    *out = ex;
    return 0;

fail:
    free(ex->batch);
    free(ex->body);
    free(ex);
    return rc;
}

void sg_spans_exporter_stop(sg_spans_exporter_t *ex)
{
    if (!ex || ex->is_stopping)
        return;
    ex->is_stopping = true;
    uv_close((uv_handle_t *)&ex->tick, on_handle_closed);
    uv_close((uv_handle_t *)&ex->timer, on_handle_closed);
    if (ex->is_tcp_open && !uv_is_closing((uv_handle_t *)&ex->tcp))
        uv_close((uv_handle_t *)&ex->tcp, on_tcp_closed);
    if (ex->is_gai_pending)
        uv_cancel((uv_req_t *)&ex->gai);
}
