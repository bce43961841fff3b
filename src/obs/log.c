/* Error log and access log over per-thread SPSC byte rings (include/sg/log.h).
 *
 * Producers (a worker, the control thread) never lock and never block: a
 * line is built in the ring's scratch buffer, then copied into the ring and
 * published with one release store. The flusher (control thread) takes the
 * registry mutex, which no producer ever touches on the request path. */
#include "sg/log.h"

#include "sg/json.h"
#include "sg/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

enum { STREAM_ACCESS = 0, STREAM_ERROR = 1, STREAM__COUNT };

#define MSG_MAX 4096

/* One single-producer/single-consumer byte ring. head and tail count bytes
 * ever written/read (never wrap in practice: 2^64 bytes). */
typedef struct spsc {
    _Alignas(SG_CACHELINE) _Atomic uint64_t head; /* producer: release store */
    uint64_t cached_tail;                         /* producer's last view of tail */
    _Atomic uint64_t dropped;                     /* producer: lines dropped */
    char *buf;
    size_t mask;
    _Alignas(SG_CACHELINE) _Atomic uint64_t tail; /* consumer: release store */
} spsc_t;

/* Owner: the thread that created it; freed by sg_log_ring_free(). */
struct sg_log_ring {
    spsc_t q[STREAM__COUNT];
    sg_log_ring_t *next, *prev;    /* registry list, under g.mu */
    char scratch[SG_LOG_LINE_MAX]; /* producer only */
    char msg[MSG_MAX];             /* producer only */
};

typedef struct output {
    int fd;      /* -1: off */
    bool is_own; /* opened here: close on swap/shutdown */
    char *path;  /* file path (reopen), NULL for stdout/stderr/off */
} output_t;

static struct {
    pthread_mutex_t mu; /* registry, flushing, direct writes, output swaps */
    sg_log_ring_t *rings;
    output_t out[STREAM__COUNT];
    _Atomic int level;
    _Atomic bool is_json;
    _Atomic bool is_access_on;
    _Atomic uint64_t dropped_freed; /* drops of rings already freed */
    uint64_t write_errors;
    char direct_line[SG_LOG_LINE_MAX]; /* under mu */
    char direct_msg[MSG_MAX];          /* under mu */
} g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .out = {{STDOUT_FILENO, false, NULL}, {STDERR_FILENO, false, NULL}},
    .level = SG_LOG_INFO,
    .is_json = false,
    .is_access_on = true,
};

static _Thread_local sg_log_ring_t *tl_ring;

/* ---- the ring ---------------------------------------------------------- */

static int spsc_init(spsc_t *q, size_t bytes)
{
    size_t cap = 4096;
    while (cap < bytes && cap < ((size_t)1 << 40))
        cap <<= 1;
    q->buf = malloc(cap);
    if (!q->buf)
        return -ENOMEM;
    q->mask = cap - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->dropped, 0);
    q->cached_tail = 0;
    return 0;
}

/* Producer side: whole line or nothing. */
static bool spsc_push(spsc_t *q, const char *line, size_t len)
{
    size_t cap = q->mask + 1;
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (SG_UNLIKELY(head - q->cached_tail + len > cap)) {
        q->cached_tail = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head - q->cached_tail + len > cap) {
            /* single writer: a relaxed load+store, no locked RMW */
            uint64_t d = atomic_load_explicit(&q->dropped, memory_order_relaxed);
            atomic_store_explicit(&q->dropped, d + 1, memory_order_relaxed);
            return false;
        }
    }
    size_t off = (size_t)head & q->mask;
    size_t first = SG_MIN(len, cap - off);
    memcpy(q->buf + off, line, first);
    if (len > first)
        memcpy(q->buf, line + first, len - first);
    atomic_store_explicit(&q->head, head + len, memory_order_release);
    return true;
}

/* Consumer side (under g.mu): writes everything published so far to fd.
 * A short write keeps the rest for the next flush; a failed write (EPIPE,
 * EBADF, ENOSPC...) discards the bytes so a dead output cannot wedge the
 * ring, and is counted. */
static size_t spsc_drain(spsc_t *q, int fd)
{
    size_t total = 0, cap = q->mask + 1;
    for (;;) {
        uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (head == tail)
            break;
        if (fd < 0) {
            atomic_store_explicit(&q->tail, head, memory_order_release);
            break;
        }
        size_t n = (size_t)(head - tail), off = (size_t)tail & q->mask;
        size_t first = SG_MIN(n, cap - off);
        struct iovec iov[2] = {{q->buf + off, first}, {q->buf, n - first}};
        ssize_t w = writev(fd, iov, n > first ? 2 : 1);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                g.write_errors++;
                atomic_store_explicit(&q->tail, head, memory_order_release);
            }
            break;
        }
        atomic_store_explicit(&q->tail, tail + (uint64_t)w, memory_order_release);
        total += (size_t)w;
    }
    return total;
}

sg_log_ring_t *sg_log_ring_new(size_t bytes)
{
    size_t size = (sizeof(sg_log_ring_t) + SG_CACHELINE - 1) & ~(size_t)(SG_CACHELINE - 1);
    sg_log_ring_t *r = aligned_alloc(SG_CACHELINE, size);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    /* error lines are rare: a quarter of the access ring, at least 16 KiB */
    if (spsc_init(&r->q[STREAM_ACCESS], bytes) != 0)
        goto fail_access;
    if (spsc_init(&r->q[STREAM_ERROR], SG_MAX(bytes / 4, (size_t)16384)) != 0)
        goto fail_error;
    pthread_mutex_lock(&g.mu);
    r->next = g.rings;
    if (g.rings)
        g.rings->prev = r;
    g.rings = r;
    pthread_mutex_unlock(&g.mu);
    return r;

fail_error:
    free(r->q[STREAM_ACCESS].buf);
fail_access:
    free(r);
    return NULL;
}

void sg_log_ring_free(sg_log_ring_t *r)
{
    if (!r)
        return;
    if (tl_ring == r)
        tl_ring = NULL;
    pthread_mutex_lock(&g.mu);
    for (int s = 0; s < STREAM__COUNT; s++) {
        spsc_drain(&r->q[s], g.out[s].fd);
        atomic_fetch_add_explicit(&g.dropped_freed, atomic_load_explicit(&r->q[s].dropped, memory_order_relaxed),
                                  memory_order_relaxed);
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        g.rings = r->next;
    if (r->next)
        r->next->prev = r->prev;
    pthread_mutex_unlock(&g.mu);
    for (int s = 0; s < STREAM__COUNT; s++)
        free(r->q[s].buf);
    free(r);
}

uint64_t sg_log_ring_dropped(const sg_log_ring_t *r)
{
    uint64_t n = 0;
    for (int s = 0; s < STREAM__COUNT; s++)
        n += atomic_load_explicit(&r->q[s].dropped, memory_order_relaxed);
    return n;
}

void sg_log_thread_attach(sg_log_ring_t *ring)
{
    tl_ring = ring;
}

sg_log_ring_t *sg_log_thread_ring(void)
{
    return tl_ring;
}

size_t sg_log_flush_all(void)
{
    size_t n = 0;
    pthread_mutex_lock(&g.mu);
    for (sg_log_ring_t *r = g.rings; r; r = r->next)
        for (int s = 0; s < STREAM__COUNT; s++)
            n += spsc_drain(&r->q[s], g.out[s].fd);
    pthread_mutex_unlock(&g.mu);
    return n;
}

uint64_t sg_log_dropped_total(void)
{
    pthread_mutex_lock(&g.mu);
    uint64_t n = atomic_load_explicit(&g.dropped_freed, memory_order_relaxed);
    for (sg_log_ring_t *r = g.rings; r; r = r->next)
        n += sg_log_ring_dropped(r);
    pthread_mutex_unlock(&g.mu);
    return n;
}

/* ---- outputs ----------------------------------------------------------- */

static int open_output(const char *spec, int stream, output_t *o, char *err, size_t errlen)
{
    o->fd = -1;
    o->is_own = false;
    o->path = NULL;
    if (!spec || !*spec)
        spec = stream == STREAM_ACCESS ? "stdout" : "stderr";
    if (strcmp(spec, "stdout") == 0) {
        o->fd = STDOUT_FILENO;
        return 0;
    }
    if (strcmp(spec, "stderr") == 0) {
        o->fd = STDERR_FILENO;
        return 0;
    }
    if (stream == STREAM_ACCESS && strcmp(spec, "off") == 0)
        return 0;
    int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "log.%s: cannot open %s: %s", stream == STREAM_ACCESS ? "access" : "error", spec,
                     strerror(e));
        return -e;
    }
    o->path = strdup(spec);
    if (!o->path) {
        close(fd);
        return -ENOMEM;
    }
    o->fd = fd;
    o->is_own = true;
    return 0;
}

static void close_output(output_t *o)
{
    if (o->is_own && o->fd >= 0)
        close(o->fd);
    free(o->path);
    o->fd = -1;
    o->is_own = false;
    o->path = NULL;
}

int sg_log_init(const sg_log_conf_t *conf, char *err, size_t errlen)
{
    output_t nout[STREAM__COUNT];
    int rc = open_output(conf->access, STREAM_ACCESS, &nout[STREAM_ACCESS], err, errlen);
    if (rc != 0)
        return rc;
    rc = open_output(conf->error, STREAM_ERROR, &nout[STREAM_ERROR], err, errlen);
    if (rc != 0) {
        close_output(&nout[STREAM_ACCESS]);
        return rc;
    }
    bool is_json =
        conf->format == SG_LOG_FORMAT_JSON || (conf->format == SG_LOG_FORMAT_AUTO && !isatty(nout[STREAM_ERROR].fd));
    pthread_mutex_lock(&g.mu);
    /* what was queued for the old outputs goes there first */
    for (sg_log_ring_t *r = g.rings; r; r = r->next)
        for (int s = 0; s < STREAM__COUNT; s++)
            spsc_drain(&r->q[s], g.out[s].fd);
    output_t old[STREAM__COUNT] = {g.out[0], g.out[1]};
    g.out[0] = nout[0];
    g.out[1] = nout[1];
    atomic_store(&g.level, (int)conf->level);
    atomic_store(&g.is_json, is_json);
    atomic_store(&g.is_access_on, nout[STREAM_ACCESS].fd >= 0);
    pthread_mutex_unlock(&g.mu);
    close_output(&old[0]);
    close_output(&old[1]);
    return 0;
}

int sg_log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&g.mu);
    for (int s = 0; s < STREAM__COUNT; s++) {
        if (!g.out[s].path)
            continue;
        int fd = open(g.out[s].path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = -errno; /* keep writing to the old file */
            continue;
        }
        for (sg_log_ring_t *r = g.rings; r; r = r->next)
            spsc_drain(&r->q[s], g.out[s].fd);
        close(g.out[s].fd);
        g.out[s].fd = fd;
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void sg_log_shutdown(void)
{
    pthread_mutex_lock(&g.mu);
    for (sg_log_ring_t *r = g.rings; r; r = r->next)
        for (int s = 0; s < STREAM__COUNT; s++)
            spsc_drain(&r->q[s], g.out[s].fd);
    for (int s = 0; s < STREAM__COUNT; s++) {
        close_output(&g.out[s]);
        g.out[s].fd = s == STREAM_ACCESS ? STDOUT_FILENO : STDERR_FILENO;
    }
    atomic_store(&g.is_json, false);
    atomic_store(&g.is_access_on, true);
    atomic_store(&g.level, SG_LOG_INFO);
    pthread_mutex_unlock(&g.mu);
}

/* ---- error log --------------------------------------------------------- */

bool sg_log_enabled(sg_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&g.level, memory_order_relaxed);
}

void sg_log_set_level(sg_log_level_t level)
{
    atomic_store(&g.level, (int)level);
}

/* Builds one error line into b (newline included). */
static size_t build_error_line(sg_buf_t *b, sg_log_level_t level, const char *trace_id, const char *msg, size_t msg_len)
{
    uint64_t now = sg_unix_ns();
    size_t tid_len = trace_id ? strnlen(trace_id, SG_TRACE_ID_LEN + 1) : 0;
    size_t cap = b->cap;
    b->cap = cap - 1; /* room for the newline, always */
    if (atomic_load_explicit(&g.is_json, memory_order_relaxed)) {
        SG_BUF_LIT(b, "{\"ts\":\"");
        sg_buf_put_rfc3339_ms(b, now);
        SG_BUF_LIT(b, "\",\"level\":\"");
        sg_buf_puts(b, sg_log_level_name(level));
        sg_buf_putc(b, '"');
        if (tid_len) {
            SG_BUF_LIT(b, ",\"trace_id\":");
            sg_buf_put_json_str(b, trace_id, tid_len, 64);
        }
        SG_BUF_LIT(b, ",\"msg\":");
        size_t avail = sg_buf_avail(b);
        sg_buf_put_json_str(b, msg, msg_len, avail > 3 ? avail - 3 : 0);
        sg_buf_putc(b, '}');
    } else {
        sg_buf_put_rfc3339_ms(b, now);
        sg_buf_putc(b, ' ');
        sg_buf_puts(b, sg_log_level_name(level));
        if (tid_len) {
            SG_BUF_LIT(b, " [");
            b->len += sg_json_escape(b->p + b->len, SG_MIN(sg_buf_avail(b), (size_t)64), trace_id, tid_len);
            sg_buf_putc(b, ']');
        }
        sg_buf_putc(b, ' ');
        /* escaped like a JSON string body: CR/LF cannot forge a line */
        b->len += sg_json_escape(b->p + b->len, sg_buf_avail(b), msg, msg_len);
    }
    b->cap = cap;
    sg_buf_putc(b, '\n');
    return b->len;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            g.write_errors++;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void sg_log(sg_log_level_t level, const char *trace_id, const char *fmt, ...)
{
    if (!sg_log_enabled(level))
        return;
    sg_log_ring_t *r = tl_ring;
    va_list ap;
    va_start(ap, fmt);
    if (r) {
        int n = vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
        size_t ml = n < 0 ? 0 : SG_MIN((size_t)n, sizeof(r->msg) - 1);
        sg_buf_t b;
        sg_buf_init(&b, r->scratch, sizeof(r->scratch));
        size_t len = build_error_line(&b, level, trace_id, r->msg, ml);
        spsc_push(&r->q[STREAM_ERROR], r->scratch, len);
    } else {
        pthread_mutex_lock(&g.mu);
        int n = vsnprintf(g.direct_msg, sizeof(g.direct_msg), fmt, ap);
        size_t ml = n < 0 ? 0 : SG_MIN((size_t)n, sizeof(g.direct_msg) - 1);
        sg_buf_t b;
        sg_buf_init(&b, g.direct_line, sizeof(g.direct_line));
        size_t len = build_error_line(&b, level, trace_id, g.direct_msg, ml);
        write_all(g.out[STREAM_ERROR].fd, g.direct_line, len);
        pthread_mutex_unlock(&g.mu);
    }
    va_end(ap);
}

/* ---- access log -------------------------------------------------------- */

/* Escaped-size limits per field: their sum stays well under
 * SG_LOG_LINE_MAX, so a line is never dropped for its size. */
#define MAX_PATH_BYTES 8192
#define MAX_HOST_BYTES 1024
#define MAX_ADDR_BYTES 256
#define MAX_ROUTE_BYTES 512
#define MAX_ERROR_BYTES 1024

static void put_id(sg_buf_t *b, const char *key, size_t key_len, const char *id, size_t max)
{
    size_t n = strnlen(id, max);
    if (!n)
        return;
    sg_buf_put(b, key, key_len);
    sg_buf_put_json_str(b, id, n, 64);
}

#define PUT_KEY(b, lit) sg_buf_put((b), (lit), sizeof(lit) - 1)

void sg_log_access(sg_log_ring_t *ring, const sg_reqrec_t *rec, const char *route_name)
{
    if (!atomic_load_explicit(&g.is_access_on, memory_order_relaxed) || !ring)
        return;
    sg_buf_t b;
    sg_buf_init(&b, ring->scratch, sizeof(ring->scratch) - 1); /* newline */

    PUT_KEY(&b, "{\"ts\":\"");
    sg_buf_put_rfc3339_ms(&b, rec->start_unix_ns);
    sg_buf_putc(&b, '"');
    if (rec->trace) {
        put_id(&b, ",\"trace_id\":", 12, rec->trace->trace_id, sizeof(rec->trace->trace_id));
        if (strnlen(rec->trace->trace_id, sizeof(rec->trace->trace_id)) == SG_TRACE_ID_LEN) {
            /* The same id as the spans and exemplars carry it (32 lower-case
             * hex), so a log line links to its trace (docs/tracing.md). */
            char hex[SG_TRACE_HEX_LEN + 1];
            sg_trace_id_to_hex(rec->trace->trace_id, hex);
            put_id(&b, ",\"trace_id_hex\":", 16, hex, sizeof(hex));
        }
        put_id(&b, ",\"span_id\":", 11, rec->trace->span_id, sizeof(rec->trace->span_id));
        put_id(&b, ",\"parent_span_id\":", 18, rec->trace->parent_span_id, sizeof(rec->trace->parent_span_id));
    }
    PUT_KEY(&b, ",\"client\":");
    sg_buf_put_json_str(&b, rec->client_addr.p, rec->client_addr.len, MAX_ADDR_BYTES);
    PUT_KEY(&b, ",\"method\":\"");
    sg_buf_puts(&b, sg_method_name(rec->method));
    PUT_KEY(&b, "\",\"path\":");
    sg_buf_put_json_str(&b, rec->path.p, rec->path.len, MAX_PATH_BYTES);
    PUT_KEY(&b, ",\"host\":");
    sg_buf_put_json_str(&b, rec->host.p, rec->host.len, MAX_HOST_BYTES);
    if (route_name) {
        PUT_KEY(&b, ",\"route\":");
        sg_buf_put_json_str(&b, route_name, strlen(route_name), MAX_ROUTE_BYTES);
    }
    if (rec->is_egress) { /* the agent that sent it (docs/egress.md, "Agents") */
        const char *agent = rec->agent ? rec->agent : "unknown";
        PUT_KEY(&b, ",\"agent\":");
        sg_buf_put_json_str(&b, agent, strlen(agent), MAX_ROUTE_BYTES);
    }
    if (rec->tls_version) { /* the client's TLS (a listener with tls) */
        PUT_KEY(&b, ",\"tls\":\"");
        sg_buf_puts(&b, rec->tls_version);
        PUT_KEY(&b, "\"");
        if (rec->tls_sni) {
            PUT_KEY(&b, ",\"sni\":");
            sg_buf_put_json_str(&b, rec->tls_sni, strlen(rec->tls_sni), MAX_HOST_BYTES);
        }
    }
    if (rec->server_addr.len) {
        PUT_KEY(&b, ",\"upstream\":");
        sg_buf_put_json_str(&b, rec->server_addr.p, rec->server_addr.len, MAX_ADDR_BYTES);
    }
    PUT_KEY(&b, ",\"status\":");
    sg_buf_put_u64(&b, rec->status);
    PUT_KEY(&b, ",\"req_bytes\":");
    sg_buf_put_u64(&b, rec->req_bytes);
    PUT_KEY(&b, ",\"resp_bytes\":");
    sg_buf_put_u64(&b, rec->resp_bytes);
    PUT_KEY(&b, ",\"dur_ms\":");
    uint64_t dur_ns = rec->end_ns > rec->start_ns ? rec->end_ns - rec->start_ns : 0;
    sg_buf_put_milli(&b, (dur_ns + 500) / 1000); /* microseconds = thousandths of ms */
    if (rec->upstream_start_ns && rec->upstream_head_ns >= rec->upstream_start_ns) {
        PUT_KEY(&b, ",\"upstream_ms\":");
        sg_buf_put_milli(&b, (rec->upstream_head_ns - rec->upstream_start_ns + 500) / 1000);
    }
    if (rec->error) {
        PUT_KEY(&b, ",\"error\":");
        sg_buf_put_json_str(&b, rec->error, strlen(rec->error), MAX_ERROR_BYTES);
    }
    sg_buf_putc(&b, '}');
    if (SG_UNLIKELY(b.is_overflow)) {
        /* cannot happen with the field limits above; never emit half a line */
        uint64_t d = atomic_load_explicit(&ring->q[STREAM_ACCESS].dropped, memory_order_relaxed);
        atomic_store_explicit(&ring->q[STREAM_ACCESS].dropped, d + 1, memory_order_relaxed);
        return;
    }
    ring->scratch[b.len++] = '\n';
    spsc_push(&ring->q[STREAM_ACCESS], ring->scratch, b.len);
}
