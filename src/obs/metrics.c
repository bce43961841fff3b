#include "sg/metrics.h"

#include "obs/metrics_int.h"
#include "sg/egress_verdict.h"
#include "sg/errrate.h"
#include "sg/log.h"
#include "sg/procstat.h"
#include "sg/runtime.h"
#include "sg/spans.h"
#include "sg/tls.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef SG_VERSION
#define SG_VERSION "unknown"
#endif

/* ---- label dimensions --------------------------------------------------- */

enum dim {
    D_ROUTE = 0,
    D_METHOD,
    D_CODE,
    D_UPSTREAM,
    D_LISTENER,
    D_TRACE_SRC,
    D_RESULT,
    D_DEST,
    D_REFUSE,
    D_CONN_REFUSE,
    D_TLS_RESULT,
    D_TLS_VERSION,
    D_AGENT,     /* egress agents: named by the workers as they come (sg_metrics_agent) */
    D_DIRECTION, /* in (from the client), out (to the client) */
    D__COUNT
};

/* Values 0 .. cap-1 are names (the start-up config's, then those a reload
 * interned, up to cap); values cap .. n-1 are the fixed extras ("none",
 * "other"). Only names below n_named exist yet: the renderer skips the
 * others. n_named grows on the control thread (sg_metrics_intern) with a
 * release store after names[] is written; readers load it with acquire
 * (render) or relaxed (hot path: the index came with a generation
 * published after the store). */
typedef struct dimvals {
    size_t n;   /* layout size: cap + extras */
    size_t cap; /* names the dimension can hold */
    _Atomic size_t n_named;
    const char **names;
    bool *is_optional; /* series using this value are written only when non-zero */
} dimvals_t;

static const char *const method_names[SG_METHOD__COUNT] = {
    [SG_METHOD_GET] = "GET",         [SG_METHOD_HEAD] = "HEAD",     [SG_METHOD_POST] = "POST",
    [SG_METHOD_PUT] = "PUT",         [SG_METHOD_DELETE] = "DELETE", [SG_METHOD_CONNECT] = "CONNECT",
    [SG_METHOD_OPTIONS] = "OPTIONS", [SG_METHOD_TRACE] = "TRACE",   [SG_METHOD_PATCH] = "PATCH",
    [SG_METHOD_OTHER] = "OTHER",
};

static const char *const trace_src_names[SG_TRACE_SRC__COUNT] = {
    [SG_TRACE_SRC_GENERATED] = "generated",
    [SG_TRACE_SRC_FORWARDED] = "forwarded",
    [SG_TRACE_SRC_TRACEPARENT] = "traceparent",
    [SG_TRACE_SRC_REPLACED] = "replaced",
};

static const char *const result_names[2] = {"success", "failure"};

static const char *const conn_refuse_names[SG_CONN_REFUSED__COUNT] = {
    [SG_CONN_REFUSED_LIMIT] = "limit",
    [SG_CONN_REFUSED_ACCEPT_ERROR] = "accept_error",
};

/* Status codes kept exact (RFC 9110 and common extensions); any other
 * status is folded into its class so the code label stays bounded. */
static const char *const known_codes[] = {
    "100", "101", "200", "201", "202", "203", "204", "206", "301", "302", "303", "304", "307", "308", "400",
    "401", "403", "404", "405", "406", "408", "409", "410", "411", "412", "413", "414", "415", "416", "417",
    "421", "422", "425", "426", "428", "429", "431", "451", "500", "501", "502", "503", "504", "505",
};
#define N_KNOWN_CODES SG_ARRAY_SIZE(known_codes)
static const char *const class_codes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
#define CODE_CLASS(c) (N_KNOWN_CODES + (size_t)((c) / 100 - 1))
#define CODE_NONE (N_KNOWN_CODES + 5)  /* "000": no status sent */
#define CODE_OTHER (N_KNOWN_CODES + 6) /* outside 100..599 */
#define N_CODES (N_KNOWN_CODES + 7)

/* ---- descriptor table ---------------------------------------------------- */

enum fam {
    F_REQ_TOTAL = 0,
    F_REQ_DUR,
    F_UP_DUR,
    F_INFLIGHT,
    F_CONNS,
    F_CONNECT_ERR,
    F_TIMEOUT,
    F_TRACE_IDS,
    F_RELOAD,
    F_EG_REQ,
    F_EG_TUNNELS,
    F_EG_TUNNEL_DUR,
    F_EG_REFUSED,
    F_EG_BYTES,
    F_EG_RATE_LIMITED,
    F_HDR_DROPPED,
    F_CONN_REFUSED,
    F_TRIMS,
    F_TLS_HS,
    F_TLS_HS_DUR,
    F_TLS_RESUMED,
    F_UP_TLS_HS,
    F__COUNT
};

enum {
    FL_SKIP_ZERO = 1 << 0, /* write only series that are non-zero */
    FL_SIGNED = 1 << 1,    /* gauge: per-shard signed value */
    FL_REQ_BUCKETS = 1 << 2,
    FL_UP_BUCKETS = 1 << 3,
    FL_TLS_BUCKETS = 1 << 4, /* the fixed handshake buckets below */
    FL_NO_EX = 1 << 5,       /* no exemplars: no request (trace id) to point at */
};

typedef struct desc {
    const char *name;
    const char *help;
    sg_metric_type_t type;
    unsigned flags;
    size_t n_dims;
    enum dim dims[4]; /* dims[0] is the outermost: rows of values not named yet are skipped */
    const char *labels[4];
} desc_t;

static const desc_t descs[F__COUNT] = {
    [F_REQ_TOTAL] = {"swarm_http_requests_total",
                     "HTTP requests answered, by route, method and status code.",
                     SG_METRIC_COUNTER,
                     FL_SKIP_ZERO,
                     3,
                     {D_ROUTE, D_METHOD, D_CODE},
                     {"route", "method", "code"}},
    [F_REQ_DUR] = {"swarm_http_request_duration_seconds",
                   "Time from the first request byte to the last response byte, in seconds.",
                   SG_METRIC_HISTOGRAM,
                   FL_SKIP_ZERO | FL_REQ_BUCKETS,
                   2,
                   {D_ROUTE, D_METHOD},
                   {"route", "method"}},
    [F_UP_DUR] = {"swarm_upstream_response_duration_seconds",
                  "Time from the start of the upstream request to the complete upstream response head, in seconds.",
                  SG_METRIC_HISTOGRAM,
                  FL_UP_BUCKETS,
                  1,
                  {D_UPSTREAM},
                  {"upstream"}},
    [F_INFLIGHT] = {"swarm_http_requests_in_flight",
                    "Requests received and not yet fully answered.",
                    SG_METRIC_GAUGE,
                    FL_SIGNED,
                    0,
                    {0},
                    {NULL}},
    [F_CONNS] = {"swarm_http_connections_active",
                 "Open client connections, by listener.",
                 SG_METRIC_GAUGE,
                 FL_SIGNED,
                 1,
                 {D_LISTENER},
                 {"listener"}},
    [F_CONNECT_ERR] = {"swarm_upstream_connect_errors_total",
                       "Failed connection attempts to upstream servers.",
                       SG_METRIC_COUNTER,
                       0,
                       1,
                       {D_UPSTREAM},
                       {"upstream"}},
    [F_TIMEOUT] = {"swarm_upstream_timeouts_total",
                   "Upstream exchanges that timed out (connect, response head or body read).",
                   SG_METRIC_COUNTER,
                   0,
                   1,
                   {D_UPSTREAM},
                   {"upstream"}},
    [F_TRACE_IDS] = {"swarm_trace_ids_total",
                     "Trace ids by where they came from.",
                     SG_METRIC_COUNTER,
                     0,
                     1,
                     {D_TRACE_SRC},
                     {"source"}},
    [F_RELOAD] = {"swarm_config_reload_total",
                  "Configuration reloads, by result.",
                  SG_METRIC_COUNTER,
                  0,
                  1,
                  {D_RESULT},
                  {"result"}},
    [F_EG_REQ] = {"swarm_egress_requests_total",
                  "Egress (forward proxy) requests answered, by agent, allow rule, method and status code.",
                  SG_METRIC_COUNTER,
                  FL_SKIP_ZERO,
                  4,
                  {D_AGENT, D_DEST, D_METHOD, D_CODE},
                  {"agent", "destination", "method", "code"}},
    [F_EG_TUNNELS] = {"swarm_egress_tunnels_total",
                      "CONNECT tunnels established and closed, by allow rule.",
                      SG_METRIC_COUNTER,
                      0,
                      1,
                      {D_DEST},
                      {"destination"}},
    [F_EG_TUNNEL_DUR] = {"swarm_egress_tunnel_duration_seconds",
                         "Life of a CONNECT tunnel, from the first request byte to the close, in seconds.",
                         SG_METRIC_HISTOGRAM,
                         FL_REQ_BUCKETS,
                         1,
                         {D_DEST},
                         {"destination"}},
    [F_EG_REFUSED] = {"swarm_egress_refused_total",
                      "Egress requests refused (403 by the allow-list, 407 proxy authentication), by reason.",
                      SG_METRIC_COUNTER,
                      0,
                      1,
                      {D_REFUSE},
                      {"reason"}},
    [F_EG_BYTES] = {"swarm_egress_bytes_total",
                    "Bytes of egress requests and CONNECT tunnels, by agent and direction (in: from the client, "
                    "out: to the client), counted when the request or tunnel ends.",
                    SG_METRIC_COUNTER,
                    0,
                    2,
                    {D_AGENT, D_DIRECTION},
                    {"agent", "direction"}},
    [F_EG_RATE_LIMITED] =
        {"swarm_egress_rate_limited_total",
         "Egress requests refused with 429 by the per-agent rate limit (egress.rate_limit), by agent.",
         SG_METRIC_COUNTER,
         FL_SKIP_ZERO,
         1,
         {D_AGENT},
         {"agent"}},
    [F_HDR_DROPPED] = {"swarm_http_header_fields_dropped_total",
                       "Request header fields not forwarded because their name contains an underscore "
                       "(limits.underscores_in_headers: drop), by listener.",
                       SG_METRIC_COUNTER,
                       0,
                       1,
                       {D_LISTENER},
                       {"listener"}},
    [F_CONN_REFUSED] = {"swarm_connections_refused_total",
                        "Client connections closed at accept, by listener and reason (limit: the connection cap "
                        "derived from RLIMIT_NOFILE; accept_error: accept failed, e.g. no descriptor left).",
                        SG_METRIC_COUNTER,
                        FL_SKIP_ZERO,
                        2,
                        {D_LISTENER, D_CONN_REFUSE},
                        {"listener", "reason"}},
    [F_TRIMS] = {"swarm_memory_trims_total",
                 "Times a thread gave free heap pages back to the kernel (malloc_trim) after a burst of connections.",
                 SG_METRIC_COUNTER,
                 0,
                 0,
                 {0},
                 {NULL}},
    [F_TLS_HS] = {"swarm_tls_handshakes_total",
                  "TLS handshakes on a listener, by result (success or why it failed) and protocol version.",
                  SG_METRIC_COUNTER,
                  FL_SKIP_ZERO,
                  3,
                  {D_LISTENER, D_TLS_RESULT, D_TLS_VERSION},
                  {"listener", "result", "version"}},
    [F_TLS_HS_DUR] = {"swarm_tls_handshake_duration_seconds",
                      "Time from a client's first TLS byte to the end of a successful handshake, in seconds.",
                      SG_METRIC_HISTOGRAM,
                      FL_SKIP_ZERO | FL_TLS_BUCKETS | FL_NO_EX,
                      1,
                      {D_LISTENER},
                      {"listener"}},
    [F_TLS_RESUMED] = {"swarm_tls_sessions_resumed_total",
                       "Successful TLS handshakes on a listener that resumed a session (ticket) instead of a full "
                       "handshake.",
                       SG_METRIC_COUNTER,
                       FL_SKIP_ZERO,
                       1,
                       {D_LISTENER},
                       {"listener"}},
    [F_UP_TLS_HS] = {"swarm_upstream_tls_handshakes_total",
                     "TLS handshakes with upstream servers, by result (success or why it failed, verification "
                     "failures by kind).",
                     SG_METRIC_COUNTER,
                     FL_SKIP_ZERO,
                     2,
                     {D_UPSTREAM, D_TLS_RESULT},
                     {"upstream", "result"}},
};

/* TLS handshake buckets (seconds): a loopback handshake takes about a
 * millisecond, one across a continent with a slow client several hundred. */
static const double tls_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* Default buckets (seconds) when the config gives none: 0.5 ms .. 300 s. */
static const double default_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};

typedef struct fam_layout {
    size_t base;     /* first slot in a shard */
    size_t n_series; /* product of the dims' sizes */
    size_t stride;   /* slots per series: 1, or nb + 2 for histograms (buckets, +Inf, sum_ns) */
    size_t nb;       /* histogram bounds without +Inf */
    const double *bounds;
    const int64_t *bounds_ns;
    bool has_ex;    /* exemplar slots exist */
    size_t ex_base; /* first exemplar slot; (nb + 1) per series */
} fam_layout_t;

struct sg_metrics_shard {
    _Atomic uint64_t *v;     /* n_slots, cache-line aligned, owner-written */
    sg__exemplar_slot_t *ex; /* n_ex, cache-line aligned, owner-written */
    sg_errrate_t er;         /* keys: 0 all, 1 + upstream */
    const sg_metrics_t *m;
};

typedef struct collector {
    sg_metrics_collect_cb cb;
    void *ud;
} collector_t;

/* Owner: main; sg_metrics_destroy(). Immutable after create except the
 * hooks/collectors (control thread) and the scrape scratch (control thread). */
struct sg_metrics {
    sg_arena_t arena;
    dimvals_t dims[D__COUNT];
    fam_layout_t fam[F__COUNT];
    size_t n_slots;
    size_t n_ex;
    uint8_t code_idx[1000];
    bool has_exemplars;
    uint32_t n_shards; /* workers + 1 (control, last) */
    sg_metrics_shard_t *shards;
    sg_metrics_hooks_t hooks;
    collector_t *collectors;
    size_t n_collectors, cap_collectors;
    uint64_t *scratch; /* n_slots: the sum of every shard, per scrape (under render_mu) */
    /* Renders may come from the control thread (admin) and from a worker
     * (a proxy listener with serve_metrics): render_mu serializes them
     * (scratch is shared). Collectors own control-thread state, so workers
     * get their last output as text, re-rendered by the control thread
     * (sg_metrics_snapshot_collectors). Never taken on the request path. */
    pthread_mutex_t render_mu;
    char *snap[SG_EXPOSE_FORMAT__COUNT];
    size_t snap_len[SG_EXPOSE_FORMAT__COUNT];
    sg_expose_exemplar_t *ex_scratch;
    double start_time_s;
    _Atomic uint64_t conn_limit; /* swarm_connections_limit; 0 = not set (no gauge) */
    size_t named_now[D__COUNT];  /* n_named of each dimension for the render in progress (under render_mu) */
    /* Agent names (D_AGENT) come from requests, on any worker: a lookup is
     * lock-free (agent_hash: open addressing over label indices, -1 empty,
     * entries published with release after the name); a new name is added
     * under agent_mu, so at most max_agents times in the process's life. */
    pthread_mutex_t agent_mu;
    char *agent_buf;             /* cap x (SG_AGENT_NAME_MAX + 1) */
    _Atomic int32_t *agent_hash; /* agent_mask + 1 entries */
    size_t agent_mask;
    _Atomic bool is_agents_full_logged;
};

/* ---- small helpers ------------------------------------------------------------ */

static inline void bump(_Atomic uint64_t *w)
{
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) + 1, memory_order_relaxed);
}

static inline void add(_Atomic uint64_t *w, uint64_t d)
{
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) + d, memory_order_relaxed);
}

int64_t sg__metrics_bound_ns(double bound)
{
    if (isnan(bound) || bound < 0)
        return -1;
    if (bound >= 9e9) /* ~285 years: any duration fits */
        return INT64_MAX;
    int64_t n = (int64_t)floor(bound * 1e9);
    while ((double)(n + 1) / 1e9 <= bound)
        n++;
    while (n >= 0 && (double)n / 1e9 > bound)
        n--;
    return n;
}

size_t sg__metrics_bucket(const int64_t *bounds_ns, size_t n, uint64_t v_ns)
{
    int64_t v = v_ns > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v_ns;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= bounds_ns[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Seqlock write (single writer): odd sequence while writing. The release
 * fence orders the odd store before the data; the final release store
 * orders the data before the even sequence. */
void sg__exemplar_write(sg__exemplar_slot_t *e, const char *trace_id, uint64_t value_ns, uint64_t ts_unix_ms)
{
    uint64_t words[5] = {0};
    size_t len = strnlen(trace_id, 36);
    memcpy(words, trace_id, len);
    uint64_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->value_ns, value_ns, memory_order_relaxed);
    atomic_store_explicit(&e->ts_unix_ms, ts_unix_ms, memory_order_relaxed);
    for (size_t i = 0; i < 5; i++)
        atomic_store_explicit(&e->id[i], words[i], memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
}

bool sg__exemplar_read(const sg__exemplar_slot_t *e, char trace_id[37], uint64_t *value_ns, uint64_t *ts_unix_ms)
{
    sg__exemplar_slot_t *w = (sg__exemplar_slot_t *)(uintptr_t)e; /* atomic loads on a const object */
    for (int tries = 0; tries < 16; tries++) {
        uint64_t s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        if (s1 == 0)
            return false;
        if (s1 & 1)
            continue;
        uint64_t words[5];
        uint64_t v = atomic_load_explicit(&w->value_ns, memory_order_relaxed);
        uint64_t ts = atomic_load_explicit(&w->ts_unix_ms, memory_order_relaxed);
        for (size_t i = 0; i < 5; i++)
            words[i] = atomic_load_explicit(&w->id[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&w->seq, memory_order_relaxed) != s1)
            continue;
        memcpy(trace_id, words, 36);
        trace_id[36] = '\0';
        *value_ns = v;
        *ts_unix_ms = ts;
        return true;
    }
    return false;
}

const char *sg_metrics_code_label(uint16_t status)
{
    if (status == 0)
        return "000";
    if (status < 100 || status > 599)
        return "other";
    for (size_t i = 0; i < N_KNOWN_CODES; i++)
        if ((uint16_t)atoi(known_codes[i]) == status)
            return known_codes[i];
    return class_codes[status / 100 - 1];
}

/* ---- create / destroy ------------------------------------------------------------- */

static const char *code_name(size_t i)
{
    if (i < N_KNOWN_CODES)
        return known_codes[i];
    if (i < N_KNOWN_CODES + 5)
        return class_codes[i - N_KNOWN_CODES];
    return i == CODE_NONE ? "000" : "other";
}

/* Fills a dimension: `n` given values (copied), room for `spare` more
 * (sg_metrics_intern), then the extra ones. */
static int dim_init(sg_metrics_t *m, enum dim d, const char *const *vals, size_t n, size_t spare,
                    const char *const *extra, size_t n_extra, bool extra_optional)
{
    dimvals_t *dv = &m->dims[d];
    dv->cap = n + spare;
    dv->n = dv->cap + n_extra;
    atomic_init(&dv->n_named, n);
    dv->names = sg_arena_zalloc(&m->arena, sizeof(*dv->names) * (dv->n ? dv->n : 1));
    dv->is_optional = sg_arena_zalloc(&m->arena, sizeof(*dv->is_optional) * (dv->n ? dv->n : 1));
    if (!dv->names || !dv->is_optional)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(dv->names[i] = sg_arena_strdup(&m->arena, vals[i] ? vals[i] : "")))
            return -ENOMEM;
    for (size_t i = 0; i < n_extra; i++) {
        dv->names[dv->cap + i] = extra[i];
        dv->is_optional[dv->cap + i] = extra_optional;
    }
    return 0;
}

static int buckets_init(sg_metrics_t *m, fam_layout_t *L, const sg_buckets_t *b)
{
    const double *src = b && b->n ? b->bounds : default_buckets;
    size_t n = b && b->n ? b->n : SG_ARRAY_SIZE(default_buckets);
    double *bounds = sg_arena_alloc(&m->arena, sizeof(double) * n);
    int64_t *bns = sg_arena_alloc(&m->arena, sizeof(int64_t) * n);
    if (!bounds || !bns)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(src[i]) || (i && src[i] <= src[i - 1]))
            return -EINVAL;
        bounds[i] = src[i];
        bns[i] = sg__metrics_bound_ns(src[i]);
    }
    L->nb = n;
    L->bounds = bounds;
    L->bounds_ns = bns;
    return 0;
}

static int names_from_config(sg_metrics_t *m, const sg_config_t *cfg)
{
    size_t nr = cfg->n_routes, nu = cfg->n_upstreams, nl = cfg->n_listeners;
    const char **tmp = calloc(SG_MAX(SG_MAX(nr, nu), SG_MAX(nl, (size_t)1)), sizeof(*tmp));
    char fallback[32];
    int rc = -ENOMEM;
    if (!tmp)
        return rc;

    for (size_t i = 0; i < nr; i++)
        tmp[i] = cfg->routes[i].name;
    for (size_t i = 0; i < nr; i++)
        if (!tmp[i]) {
            snprintf(fallback, sizeof(fallback), "route%zu", i);
            if (!(tmp[i] = sg_arena_strdup(&m->arena, fallback)))
                goto out;
        }
    static const char *const route_extra[] = {"none", "other"};
    if ((rc = dim_init(m, D_ROUTE, tmp, nr, SG_METRICS_SPARE_LABELS, route_extra, 2, true)) != 0)
        goto out;

    for (size_t i = 0; i < nu; i++)
        tmp[i] = cfg->upstreams[i].name;
    static const char *const other[] = {"other"};
    if ((rc = dim_init(m, D_UPSTREAM, tmp, nu, SG_METRICS_SPARE_LABELS, other, 1, true)) != 0)
        goto out;

    for (size_t i = 0; i < nl; i++)
        tmp[i] = cfg->listeners[i].name;
    /* Extras: "other", then "admin" (the admin listener, index -1 on the hot path). */
    static const char *const listener_extra[] = {"other", "admin"};
    if ((rc = dim_init(m, D_LISTENER, tmp, nl, SG_METRICS_SPARE_LABELS, listener_extra, 2, true)) != 0)
        goto out;

    /* destination: the text of each egress.allow rule (bounded by the
     * config), in order; rules written the same way share one series
     * (generation.c dest_label maps a rule to this order). Room for rules a reload
     * adds, as for routes. */
    size_t ne = cfg->egress.n_allow;
    const char **dn = calloc(ne ? ne : 1, sizeof(*dn));
    if (!dn)
        goto out;
    size_t nd = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *text = cfg->egress.allow[i].text ? cfg->egress.allow[i].text : "";
        size_t k = 0;
        while (k < nd && strcmp(dn[k], text) != 0)
            k++;
        if (k == nd)
            dn[nd++] = text;
    }
    static const char *const dest_extra[] = {"none", "other"};
    rc = dim_init(m, D_DEST, dn, nd, SG_METRICS_SPARE_LABELS, dest_extra, 2, true);
    free(dn);
    if (rc != 0)
        goto out;
    rc = -ENOMEM;
    rc = 0;
out:
    free(tmp);
    return rc;
}

/* Shard arrays are anonymous mappings: page-aligned (no false sharing
 * between shards) and zero-filled by the kernel, so pages nobody writes,
 * such as the spare label room a reload may never use, take no RSS. The
 * slots are lock-free 64-bit atomics, for which all-zero bytes are the
 * value 0 (as for static storage), so they are not initialized one by one
 * (that would touch every page). */
static void *zmap(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void zunmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
}

static int shard_init(sg_metrics_t *m, sg_metrics_shard_t *s, const sg_config_t *cfg)
{
    s->m = m;
    if (!(s->v = zmap(m->n_slots * sizeof(uint64_t))))
        return -ENOMEM;
    if (m->n_ex && !(s->ex = zmap(m->n_ex * sizeof(sg__exemplar_slot_t))))
        return -ENOMEM;
    return sg_errrate_init(&s->er, cfg->metrics.error_rate_window_ms, cfg->metrics.error_rate_resolution_ms,
                           1 + m->dims[D_UPSTREAM].n);
}

/* The agent dimension: room for max_agents names (fixed buffers: workers
 * add names, the arena is the control thread's), then "unknown", "other". */
static int agents_init(sg_metrics_t *m, uint32_t max_agents)
{
    static const char *const extra[] = {"unknown", "other"};
    int rc = dim_init(m, D_AGENT, NULL, 0, max_agents, extra, 2, true);
    if (rc != 0)
        return rc;
    dimvals_t *dv = &m->dims[D_AGENT];
    size_t slots = 4;
    while (slots < 2 * dv->cap)
        slots *= 2;
    m->agent_buf = calloc(dv->cap ? dv->cap : 1, SG_AGENT_NAME_MAX + 1);
    m->agent_hash = calloc(slots, sizeof(*m->agent_hash));
    if (!m->agent_buf || !m->agent_hash)
        return -ENOMEM;
    m->agent_mask = slots - 1;
    for (size_t i = 0; i < slots; i++)
        atomic_init(&m->agent_hash[i], -1);
    for (size_t i = 0; i < dv->cap; i++)
        dv->names[i] = m->agent_buf + i * (SG_AGENT_NAME_MAX + 1);
    return 0;
}

sg_metrics_t *sg_metrics_create(const sg_config_t *cfg, uint32_t n_workers)
{
    sg_metrics_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->render_mu, NULL);
    pthread_mutex_init(&m->agent_mu, NULL);
    sg_arena_init(&m->arena, 16384);
    if (names_from_config(m, cfg) != 0)
        goto fail;
    if (dim_init(m, D_METHOD, method_names, SG_METHOD__COUNT, 0, NULL, 0, false) != 0)
        goto fail;
    if (dim_init(m, D_TRACE_SRC, trace_src_names, SG_TRACE_SRC__COUNT, 0, NULL, 0, false) != 0)
        goto fail;
    if (dim_init(m, D_RESULT, result_names, 2, 0, NULL, 0, false) != 0)
        goto fail;
    const char *refuse_names[SG_EGRESS__COUNT];
    for (size_t i = 1; i < SG_EGRESS__COUNT; i++)
        refuse_names[i - 1] = sg_egress_verdict_name((sg_egress_verdict_t)i);
    if (dim_init(m, D_REFUSE, refuse_names, SG_EGRESS__COUNT - 1, 0, NULL, 0, false) != 0)
        goto fail;
    if (dim_init(m, D_CONN_REFUSE, conn_refuse_names, SG_CONN_REFUSED__COUNT, 0, NULL, 0, false) != 0)
        goto fail;
    const char *tls_result_names[SG_TLS_E__COUNT];
    for (size_t i = 0; i < SG_TLS_E__COUNT; i++)
        tls_result_names[i] = sg_tls_error_name((sg_tls_error_t)i);
    if (dim_init(m, D_TLS_RESULT, tls_result_names, SG_TLS_E__COUNT, 0, NULL, 0, false) != 0)
        goto fail;
    const char *tls_version_names[SG_TLS_VERSION__COUNT];
    for (size_t i = 0; i < SG_TLS_VERSION__COUNT; i++)
        tls_version_names[i] = sg_tls_version_name((sg_tls_version_t)i);
    if (dim_init(m, D_TLS_VERSION, tls_version_names, SG_TLS_VERSION__COUNT, 0, NULL, 0, false) != 0)
        goto fail;
    static const char *const direction_names[] = {"in", "out"};
    if (dim_init(m, D_DIRECTION, direction_names, 2, 0, NULL, 0, false) != 0)
        goto fail;
    if (agents_init(m, cfg->egress.max_agents) != 0)
        goto fail;
    m->dims[D_CODE].n = m->dims[D_CODE].cap = N_CODES;
    atomic_init(&m->dims[D_CODE].n_named, N_CODES);
    m->dims[D_CODE].names = sg_arena_zalloc(&m->arena, sizeof(char *) * N_CODES);
    m->dims[D_CODE].is_optional = sg_arena_zalloc(&m->arena, sizeof(bool) * N_CODES);
    if (!m->dims[D_CODE].names || !m->dims[D_CODE].is_optional)
        goto fail;
    for (size_t i = 0; i < N_CODES; i++) {
        m->dims[D_CODE].names[i] = code_name(i);
        m->dims[D_CODE].is_optional[i] = true;
    }
    for (size_t c = 0; c < 1000; c++)
        m->code_idx[c] = (uint8_t)(c == 0 ? CODE_NONE : (c < 100 || c > 599) ? CODE_OTHER : CODE_CLASS(c));
    for (size_t i = 0; i < N_KNOWN_CODES; i++)
        m->code_idx[atoi(known_codes[i])] = (uint8_t)i;

    m->has_exemplars = cfg->metrics.exemplars;
    size_t slot = 0, ex = 0;
    for (size_t f = 0; f < F__COUNT; f++) {
        const desc_t *d = &descs[f];
        fam_layout_t *L = &m->fam[f];
        L->n_series = 1;
        for (size_t k = 0; k < d->n_dims; k++)
            L->n_series *= m->dims[d->dims[k]].n;
        L->stride = 1;
        if (d->type == SG_METRIC_HISTOGRAM) {
            const sg_buckets_t *b =
                (d->flags & FL_UP_BUCKETS) ? &cfg->metrics.upstream_buckets : &cfg->metrics.request_buckets;
            /* upstream buckets default to the request buckets */
            if ((d->flags & FL_UP_BUCKETS) && !b->n)
                b = &cfg->metrics.request_buckets;
            sg_buckets_t tb = {(double *)(uintptr_t)tls_buckets, SG_ARRAY_SIZE(tls_buckets)};
            if (d->flags & FL_TLS_BUCKETS)
                b = &tb;
            if (buckets_init(m, L, b) != 0)
                goto fail;
            L->stride = L->nb + 2;
            if (m->has_exemplars && !(d->flags & FL_NO_EX)) {
                L->has_ex = true;
                L->ex_base = ex;
                ex += L->n_series * (L->nb + 1);
            }
        }
        L->base = slot;
        slot += L->n_series * L->stride;
    }
    m->n_slots = slot;
    m->n_ex = ex;

    size_t max_nb = 0;
    for (size_t f = 0; f < F__COUNT; f++)
        max_nb = SG_MAX(max_nb, m->fam[f].nb);
    m->scratch = calloc(m->n_slots ? m->n_slots : 1, sizeof(uint64_t));
    m->ex_scratch = calloc(max_nb + 1, sizeof(*m->ex_scratch));
    if (!m->scratch || !m->ex_scratch)
        goto fail;

    m->n_shards = n_workers + 1;
    m->shards = calloc(m->n_shards, sizeof(*m->shards));
    if (!m->shards)
        goto fail;
    for (uint32_t i = 0; i < m->n_shards; i++)
        if (shard_init(m, &m->shards[i], cfg) != 0)
            goto fail;
    m->start_time_s = sg_procstat_start_time();
    return m;
fail:
    sg_metrics_destroy(m);
    return NULL;
}

void sg_metrics_destroy(sg_metrics_t *m)
{
    if (!m)
        return;
    if (m->shards) {
        for (uint32_t i = 0; i < m->n_shards; i++) {
            zunmap((void *)m->shards[i].v, m->n_slots * sizeof(uint64_t));
            zunmap(m->shards[i].ex, m->n_ex * sizeof(sg__exemplar_slot_t));
            sg_errrate_destroy(&m->shards[i].er);
        }
        free(m->shards);
    }
    free(m->scratch);
    free(m->ex_scratch);
    free(m->collectors);
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++)
        free(m->snap[f]);
    pthread_mutex_destroy(&m->render_mu);
    pthread_mutex_destroy(&m->agent_mu);
    free(m->agent_buf);
    free(m->agent_hash);
    sg_arena_destroy(&m->arena);
    free(m);
}

size_t sg__metrics_shard_bytes(const sg_metrics_t *m)
{
    const sg_errrate_t *er = &m->shards[0].er;
    return m->n_slots * sizeof(uint64_t) + m->n_ex * sizeof(sg__exemplar_slot_t) +
           (size_t)er->n_keys * er->n_slots * 3 * sizeof(uint64_t);
}

sg_metrics_shard_t *sg_metrics_worker_shard(sg_metrics_t *m, uint32_t worker_idx)
{
    return worker_idx + 1 < m->n_shards ? &m->shards[worker_idx] : NULL;
}

sg_metrics_shard_t *sg_metrics_control_shard(sg_metrics_t *m)
{
    return &m->shards[m->n_shards - 1];
}

static const enum dim internable[SG_METRICS_DIM__COUNT] = {
    [SG_METRICS_DIM_ROUTE] = D_ROUTE,
    [SG_METRICS_DIM_UPSTREAM] = D_UPSTREAM,
    [SG_METRICS_DIM_LISTENER] = D_LISTENER,
    [SG_METRICS_DIM_DEST] = D_DEST,
};

int32_t sg_metrics_intern(sg_metrics_t *m, sg_metrics_dim_t dim, const char *name)
{
    if (!m || (unsigned)dim >= SG_METRICS_DIM__COUNT || !name)
        return -EINVAL;
    dimvals_t *dv = &m->dims[internable[dim]];
    /* This thread is the only writer of n_named: relaxed is enough here. */
    size_t n = atomic_load_explicit(&dv->n_named, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (strcmp(dv->names[i], name) == 0)
            return (int32_t)i; /* kept (or re-added) under its old series */
    if (n >= dv->cap || n >= INT32_MAX)
        return -ENOSPC;
    /* The arena is touched only at creation and here (control thread);
     * renders never allocate from it. */
    const char *copy = sg_arena_strdup(&m->arena, name);
    if (!copy)
        return -ENOMEM;
    dv->names[n] = copy;
    /* Release: a render that sees n + 1 sees names[n]; a worker gets the
     * index only through a generation published after this store. */
    atomic_store_explicit(&dv->n_named, n + 1, memory_order_release);
    return (int32_t)n;
}

size_t sg_metrics_label_capacity(const sg_metrics_t *m, sg_metrics_dim_t dim)
{
    return (unsigned)dim < SG_METRICS_DIM__COUNT ? m->dims[internable[dim]].cap : 0;
}

void sg_metrics_set_hooks(sg_metrics_t *m, const sg_metrics_hooks_t *hooks)
{
    if (hooks)
        m->hooks = *hooks;
    else
        memset(&m->hooks, 0, sizeof(m->hooks));
}

int sg_metrics_add_collector(sg_metrics_t *m, sg_metrics_collect_cb cb, void *ud)
{
    if (m->n_collectors == m->cap_collectors) {
        size_t cap = m->cap_collectors ? m->cap_collectors * 2 : 8;
        collector_t *c = realloc(m->collectors, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        m->collectors = c;
        m->cap_collectors = cap;
    }
    m->collectors[m->n_collectors++] = (collector_t){cb, ud};
    return 0;
}

void sg_metrics_remove_collector(sg_metrics_t *m, sg_metrics_collect_cb cb, void *ud)
{
    for (size_t i = 0; i < m->n_collectors; i++)
        if (m->collectors[i].cb == cb && m->collectors[i].ud == ud) {
            memmove(&m->collectors[i], &m->collectors[i + 1], (m->n_collectors - i - 1) * sizeof(collector_t));
            m->n_collectors--;
            return;
        }
}

/* ---- hot path ------------------------------------------------------------------ */

/* An index the registry has published, else the dimension's first extra
 * ("other" for upstreams and listeners). Relaxed: an index handed out by a
 * generation was published before that generation (see dimvals_t). */
static inline size_t named_or(const dimvals_t *dv, size_t i, size_t fallback)
{
    return i < atomic_load_explicit(&dv->n_named, memory_order_relaxed) ? i : fallback;
}

static inline size_t route_index(const sg_metrics_t *m, int32_t route_idx)
{
    const dimvals_t *dv = &m->dims[D_ROUTE];
    if (route_idx < 0)
        return dv->cap;                                  /* "none" */
    return named_or(dv, (size_t)route_idx, dv->cap + 1); /* "other" */
}

static inline size_t upstream_index(const sg_metrics_t *m, size_t up)
{
    return named_or(&m->dims[D_UPSTREAM], up, m->dims[D_UPSTREAM].cap); /* "other" */
}

static inline size_t listener_index(const sg_metrics_t *m, size_t l)
{
    return named_or(&m->dims[D_LISTENER], l, m->dims[D_LISTENER].cap); /* "other" */
}

static inline void observe(sg_metrics_shard_t *s, const fam_layout_t *L, size_t series, uint64_t v_ns,
                           const sg_reqrec_t *rec, uint64_t ts_unix_ms)
{
    size_t b = sg__metrics_bucket(L->bounds_ns, L->nb, v_ns);
    _Atomic uint64_t *h = s->v + L->base + series * L->stride;
    bump(&h[b]);
    add(&h[L->nb + 1], v_ns);
    if (L->has_ex && rec->trace && rec->trace->trace_id[0])
        sg__exemplar_write(&s->ex[L->ex_base + series * (L->nb + 1) + b], rec->trace->trace_id, v_ns, ts_unix_ms);
}

void sg_metrics_record_request(sg_metrics_shard_t *s, const sg_reqrec_t *rec)
{
    const sg_metrics_t *m = s->m;
    size_t r = route_index(m, rec->route_idx);
    size_t meth = (unsigned)rec->method < SG_METHOD__COUNT ? (size_t)rec->method : SG_METHOD_OTHER;
    size_t code = rec->status < 1000 ? m->code_idx[rec->status] : CODE_OTHER;
    size_t rm = r * SG_METHOD__COUNT + meth;

    bump(&s->v[m->fam[F_REQ_TOTAL].base + rm * N_CODES + code]);

    uint64_t dur = rec->end_ns > rec->start_ns ? rec->end_ns - rec->start_ns : 0;
    observe(s, &m->fam[F_REQ_DUR], rm, dur, rec, (rec->start_unix_ns + dur) / 1000000u);

    bool has_up = rec->upstream_idx >= 0;
    size_t up = has_up ? upstream_index(m, (size_t)rec->upstream_idx) : 0;
    if (has_up && rec->upstream_start_ns && rec->upstream_head_ns >= rec->upstream_start_ns) {
        uint64_t ud = rec->upstream_head_ns - rec->upstream_start_ns;
        uint64_t at = rec->upstream_head_ns > rec->start_ns ? rec->upstream_head_ns - rec->start_ns : 0;
        observe(s, &m->fam[F_UP_DUR], up, ud, rec, (rec->start_unix_ns + at) / 1000000u);
    }

    if (rec->status) {
        bool is_err = rec->status >= 500 && rec->status <= 599;
        uint64_t now_ms = rec->end_ns ? rec->end_ns / 1000000u : sg_now_ms();
        sg_errrate_record(&s->er, 0, now_ms, is_err);
        if (has_up)
            sg_errrate_record(&s->er, 1 + up, now_ms, is_err);
    }
}

static inline void gauge_move(_Atomic uint64_t *w, uint64_t delta)
{
    /* signed per-shard value: unsigned wrap-around is two's complement */
    add(w, delta);
}

void sg_metrics_conn_open(sg_metrics_shard_t *s, size_t listener_idx)
{
    const sg_metrics_t *m = s->m;
    gauge_move(&s->v[m->fam[F_CONNS].base + listener_index(m, listener_idx)], 1);
}

void sg_metrics_conn_close(sg_metrics_shard_t *s, size_t listener_idx)
{
    const sg_metrics_t *m = s->m;
    gauge_move(&s->v[m->fam[F_CONNS].base + listener_index(m, listener_idx)], UINT64_MAX);
}

void sg_metrics_inflight_inc(sg_metrics_shard_t *s)
{
    gauge_move(&s->v[s->m->fam[F_INFLIGHT].base], 1);
}

void sg_metrics_inflight_dec(sg_metrics_shard_t *s)
{
    gauge_move(&s->v[s->m->fam[F_INFLIGHT].base], UINT64_MAX);
}

void sg_metrics_trace_source(sg_metrics_shard_t *s, sg_trace_source_t src)
{
    if ((unsigned)src < SG_TRACE_SRC__COUNT)
        bump(&s->v[s->m->fam[F_TRACE_IDS].base + (size_t)src]);
}

void sg_metrics_upstream_connect_error(sg_metrics_shard_t *s, size_t upstream_idx)
{
    bump(&s->v[s->m->fam[F_CONNECT_ERR].base + upstream_index(s->m, upstream_idx)]);
}

void sg_metrics_upstream_timeout(sg_metrics_shard_t *s, size_t upstream_idx)
{
    bump(&s->v[s->m->fam[F_TIMEOUT].base + upstream_index(s->m, upstream_idx)]);
}

static inline size_t dest_index(const sg_metrics_t *m, int32_t dest_idx)
{
    const dimvals_t *dv = &m->dims[D_DEST];
    if (dest_idx < 0)
        return dv->cap;                                 /* "none" */
    return named_or(dv, (size_t)dest_idx, dv->cap + 1); /* "other" */
}

static inline size_t agent_index(const sg_metrics_t *m, int32_t agent_idx)
{
    const dimvals_t *dv = &m->dims[D_AGENT];
    if (agent_idx < 0)
        return dv->cap;                                  /* "unknown" */
    return named_or(dv, (size_t)agent_idx, dv->cap + 1); /* "other" */
}

void sg_metrics_record_egress(sg_metrics_shard_t *s, const sg_reqrec_t *rec)
{
    const sg_metrics_t *m = s->m;
    size_t a = agent_index(m, rec->egress_agent_idx);
    size_t d = dest_index(m, rec->egress_dest_idx);
    size_t meth = (unsigned)rec->method < SG_METHOD__COUNT ? (size_t)rec->method : SG_METHOD_OTHER;
    size_t code = rec->status < 1000 ? m->code_idx[rec->status] : CODE_OTHER;
    size_t ad = a * m->dims[D_DEST].n + d;
    bump(&s->v[m->fam[F_EG_REQ].base + (ad * SG_METHOD__COUNT + meth) * N_CODES + code]);
    add(&s->v[m->fam[F_EG_BYTES].base + a * 2], rec->req_bytes);
    add(&s->v[m->fam[F_EG_BYTES].base + a * 2 + 1], rec->resp_bytes);
    if (rec->is_tunnel && rec->method == SG_METHOD_CONNECT) {
        bump(&s->v[m->fam[F_EG_TUNNELS].base + d]);
        uint64_t dur = rec->end_ns > rec->start_ns ? rec->end_ns - rec->start_ns : 0;
        observe(s, &m->fam[F_EG_TUNNEL_DUR], d, dur, rec, (rec->start_unix_ns + dur) / 1000000u);
    }
}

void sg_metrics_egress_rate_limited(sg_metrics_shard_t *s, int32_t agent_idx)
{
    bump(&s->v[s->m->fam[F_EG_RATE_LIMITED].base + agent_index(s->m, agent_idx)]);
}

static uint64_t agent_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* The label index of an interned name, or -1. Lock-free: an entry is
 * published (release) after its name. */
static int32_t agent_find(const sg_metrics_t *m, uint64_t h, const char *name, size_t len, size_t *empty)
{
    const dimvals_t *dv = &m->dims[D_AGENT];
    for (size_t i = h & m->agent_mask;; i = (i + 1) & m->agent_mask) {
        int32_t v = atomic_load_explicit(&m->agent_hash[i], memory_order_acquire);
        if (v < 0) {
            *empty = i;
            return -1;
        }
        const char *have = dv->names[v];
        if (strncmp(have, name, len) == 0 && have[len] == '\0')
            return v;
    }
}

int32_t sg_metrics_agent(sg_metrics_t *m, const char *name, size_t len)
{
    if (!sg_agent_name_ok(name, len) || (len == 7 && memcmp(name, "unknown", 7) == 0))
        return -1;
    if (len == 5 && memcmp(name, "other", 5) == 0)
        return INT32_MAX;
    dimvals_t *dv = &m->dims[D_AGENT];
    uint64_t h = agent_hash(name, len);
    size_t empty;
    int32_t idx = agent_find(m, h, name, len, &empty);
    if (idx >= 0)
        return idx;
    if (atomic_load_explicit(&dv->n_named, memory_order_relaxed) >= dv->cap) {
        idx = INT32_MAX;
    } else {
        pthread_mutex_lock(&m->agent_mu);
        idx = agent_find(m, h, name, len, &empty); /* another worker may have added it */
        size_t n = atomic_load_explicit(&dv->n_named, memory_order_relaxed);
        if (idx < 0 && n < dv->cap) {
            char *dst = m->agent_buf + n * (SG_AGENT_NAME_MAX + 1);
            memcpy(dst, name, len);
            dst[len] = '\0';
            /* Release: a render that sees n + 1, or a lookup that finds the
             * entry, sees the name. */
            atomic_store_explicit(&dv->n_named, n + 1, memory_order_release);
            atomic_store_explicit(&m->agent_hash[empty], (int32_t)n, memory_order_release);
            idx = (int32_t)n;
        } else if (idx < 0) {
            idx = INT32_MAX;
        }
        pthread_mutex_unlock(&m->agent_mu);
    }
    if (idx == INT32_MAX && !atomic_exchange_explicit(&m->is_agents_full_logged, true, memory_order_relaxed))
        sg_log(SG_LOG_WARN, NULL,
               "egress: more than %zu agents (egress.max_agents): further agents are counted as agent other until "
               "restart",
               dv->cap);
    return idx;
}

void sg_metrics_header_fields_dropped(sg_metrics_shard_t *s, size_t listener_idx, uint64_t n)
{
    const sg_metrics_t *m = s->m;
    _Atomic uint64_t *v = &s->v[m->fam[F_HDR_DROPPED].base + listener_index(m, listener_idx)];
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n, memory_order_relaxed);
}

void sg_metrics_egress_refused(sg_metrics_shard_t *s, unsigned reason)
{
    if (reason == SG_EGRESS_OK || reason >= SG_EGRESS__COUNT)
        return;
    bump(&s->v[s->m->fam[F_EG_REFUSED].base + (reason - 1)]);
}

void sg_metrics_conn_refused(sg_metrics_shard_t *s, int32_t listener_idx, sg_conn_refused_t reason)
{
    const sg_metrics_t *m = s->m;
    if ((unsigned)reason >= SG_CONN_REFUSED__COUNT)
        return;
    size_t l = listener_idx < 0 ? m->dims[D_LISTENER].cap + 1 : listener_index(m, (size_t)listener_idx);
    bump(&s->v[m->fam[F_CONN_REFUSED].base + l * SG_CONN_REFUSED__COUNT + (size_t)reason]);
}

void sg_metrics_tls_handshake(sg_metrics_shard_t *s, size_t listener_idx, sg_tls_error_t result,
                              sg_tls_version_t version, uint64_t dur_ns, bool is_resumed)
{
    const sg_metrics_t *m = s->m;
    size_t l = listener_index(m, listener_idx);
    size_t r = (unsigned)result < SG_TLS_E__COUNT ? (size_t)result : SG_TLS_E_INTERNAL;
    size_t v = (unsigned)version < SG_TLS_VERSION__COUNT ? (size_t)version : SG_TLS_VERSION_NONE;
    bump(&s->v[m->fam[F_TLS_HS].base + (l * SG_TLS_E__COUNT + r) * SG_TLS_VERSION__COUNT + v]);
    if (result != SG_TLS_OK)
        return; /* failed handshakes (scanners, plain HTTP) would drown the duration of real ones */
    const fam_layout_t *L = &m->fam[F_TLS_HS_DUR];
    _Atomic uint64_t *h = s->v + L->base + l * L->stride;
    bump(&h[sg__metrics_bucket(L->bounds_ns, L->nb, dur_ns)]);
    add(&h[L->nb + 1], dur_ns);
    if (is_resumed)
        bump(&s->v[m->fam[F_TLS_RESUMED].base + l]);
}

void sg_metrics_upstream_tls_handshake(sg_metrics_shard_t *s, size_t upstream_idx, sg_tls_error_t result)
{
    const sg_metrics_t *m = s->m;
    size_t r = (unsigned)result < SG_TLS_E__COUNT ? (size_t)result : SG_TLS_E_INTERNAL;
    bump(&s->v[m->fam[F_UP_TLS_HS].base + upstream_index(m, upstream_idx) * SG_TLS_E__COUNT + r]);
}

void sg_metrics_memory_trim(sg_metrics_shard_t *s)
{
    bump(&s->v[s->m->fam[F_TRIMS].base]);
}

void sg_metrics_set_conn_limit(sg_metrics_t *m, uint64_t limit)
{
    atomic_store_explicit(&m->conn_limit, limit, memory_order_relaxed);
}

void sg_metrics_config_reload(sg_metrics_shard_t *s, bool is_success)
{
    bump(&s->v[s->m->fam[F_RELOAD].base + (is_success ? 0 : 1)]);
}

/* ---- scrape --------------------------------------------------------------------- */

/* Sums the shards into scratch, family by family, skipping the rows of an
 * outermost label value not named yet (the agent room is large and mostly
 * unused: its pages are never touched, here or in the scratch). */
static void sum_shards(sg_metrics_t *m)
{
    uint64_t *acc = m->scratch;
    for (size_t f = 0; f < F__COUNT; f++) {
        const desc_t *d = &descs[f];
        const fam_layout_t *L = &m->fam[f];
        const dimvals_t *dv = d->n_dims ? &m->dims[d->dims[0]] : NULL;
        size_t rows = dv ? dv->n : 1, named = dv ? m->named_now[d->dims[0]] : 1;
        if (!rows)
            continue;
        size_t row_slots = L->n_series * L->stride / rows;
        for (size_t r = 0; r < rows; r++) {
            if (dv && r >= named && r < dv->cap)
                continue;
            uint64_t *a = acc + L->base + r * row_slots;
            memset(a, 0, row_slots * sizeof(uint64_t));
            for (uint32_t i = 0; i < m->n_shards; i++) {
                _Atomic uint64_t *v = m->shards[i].v + L->base + r * row_slots;
                for (size_t k = 0; k < row_slots; k++)
                    a[k] += atomic_load_explicit(&v[k], memory_order_relaxed);
            }
        }
    }
}

/* The most recent exemplar of each bucket of one series, across shards. */
static const sg_expose_exemplar_t *gather_exemplars(sg_metrics_t *m, const fam_layout_t *L, size_t series)
{
    bool any = false;
    for (size_t b = 0; b <= L->nb; b++) {
        sg_expose_exemplar_t *out = &m->ex_scratch[b];
        out->is_set = false;
        out->ts_unix_ms = 0;
        for (uint32_t i = 0; i < m->n_shards; i++) {
            char id[37];
            uint64_t v, ts;
            if (!sg__exemplar_read(&m->shards[i].ex[L->ex_base + series * (L->nb + 1) + b], id, &v, &ts))
                continue;
            if (out->is_set && ts < out->ts_unix_ms)
                continue;
            out->is_set = true;
            memcpy(out->trace_id, id, sizeof(id));
            out->value = (double)v / 1e9;
            out->ts_unix_ms = ts;
            any = true;
        }
    }
    return any ? m->ex_scratch : NULL;
}

static void render_family(sg_metrics_t *m, sg_expose_t *x, enum fam f)
{
    const desc_t *d = &descs[f];
    const fam_layout_t *L = &m->fam[f];
    sg_expose_family(x, d->name, d->help, d->type);
    const char *vals[4] = {NULL, NULL, NULL, NULL};
    size_t named[4] = {0, 0, 0, 0};
    for (size_t k = 0; k < d->n_dims; k++) /* names published when the scrape began (sum_shards saw the same) */
        named[k] = m->named_now[d->dims[k]];
    bool want_ex = L->has_ex && x->format == SG_EXPOSE_OPENMETRICS;
    const dimvals_t *outer = d->n_dims ? &m->dims[d->dims[0]] : NULL;
    size_t per_row = outer && outer->n ? L->n_series / outer->n : L->n_series;
    for (size_t s = 0; s < L->n_series; s++) {
        if (outer && s / per_row >= named[0] && s / per_row < outer->cap) {
            s = (s / per_row + 1) * per_row - 1; /* a whole row of a value not named yet */
            continue;
        }
        if ((d->flags & FL_SKIP_ZERO) && d->type != SG_METRIC_HISTOGRAM && m->scratch[L->base + s * L->stride] == 0)
            continue; /* most of a sparse family: no label work */
        size_t rem = s;
        bool is_optional = false, is_unused = false;
        for (size_t k = d->n_dims; k-- > 0;) {
            const dimvals_t *dv = &m->dims[d->dims[k]];
            size_t i = rem % dv->n;
            rem /= dv->n;
            if (i >= named[k] && i < dv->cap) {
                is_unused = true; /* spare room not interned yet: names[i] may be being written */
                break;
            }
            vals[k] = dv->names[i];
            is_optional |= dv->is_optional[i];
        }
        if (is_unused)
            continue;
        const uint64_t *v = m->scratch + L->base + s * L->stride;
        bool skip_zero = (d->flags & FL_SKIP_ZERO) || is_optional;
        if (d->type == SG_METRIC_HISTOGRAM) {
            uint64_t count = 0;
            for (size_t b = 0; b <= L->nb; b++)
                count += v[b];
            if (count == 0 && skip_zero)
                continue;
            const sg_expose_exemplar_t *ex = want_ex ? gather_exemplars(m, L, s) : NULL;
            sg_expose_histogram_ex(x, d->name, d->labels, vals, d->n_dims, L->bounds, v, L->nb,
                                   (double)v[L->nb + 1] / 1e9, ex);
        } else {
            if (v[0] == 0 && skip_zero)
                continue;
            double val = (d->flags & FL_SIGNED) ? (double)(int64_t)v[0] : (double)v[0];
            sg_expose_sample(x, d->name, "", d->labels, vals, d->n_dims, val);
        }
    }
}

static void render_error_rates(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms)
{
    static const char *const up_label[] = {"upstream"};
    sg_errrate_sum_t sum = {0, 0};
    for (uint32_t i = 0; i < m->n_shards; i++)
        sg_errrate_collect(&m->shards[i].er, 0, now_ms, &sum);
    sg_expose_family(x, "swarm_error_rate",
                     "Share of responses with a 5xx status over the rolling window (metrics.error_rate_window); "
                     "0 without traffic.",
                     SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarm_error_rate", "", NULL, NULL, 0, sg_errrate_ratio(&sum));

    sg_expose_family(x, "swarm_upstream_error_rate",
                     "Share of responses with a 5xx status over the rolling window, by upstream.", SG_METRIC_GAUGE);
    const dimvals_t *dv = &m->dims[D_UPSTREAM];
    size_t named = atomic_load_explicit(&dv->n_named, memory_order_acquire);
    for (size_t u = 0; u < dv->n; u++) {
        if (u >= named && u < dv->cap)
            continue; /* spare room not interned yet */
        sum = (sg_errrate_sum_t){0, 0};
        for (uint32_t i = 0; i < m->n_shards; i++)
            sg_errrate_collect(&m->shards[i].er, 1 + u, now_ms, &sum);
        if (u >= dv->cap && sum.total == 0)
            continue; /* "other" only when used */
        const char *val[] = {m->dims[D_UPSTREAM].names[u]};
        sg_expose_sample(x, "swarm_upstream_error_rate", "", up_label, val, 1, sg_errrate_ratio(&sum));
    }
}

static const char *const server_up_labels[] = {"upstream", "server"};

static void emit_server_up(void *ctx, const char *upstream, const char *server, bool is_up)
{
    const char *vals[] = {upstream ? upstream : "", server ? server : ""};
    sg_expose_sample(ctx, "swarm_upstream_server_up", "", server_up_labels, vals, 2, is_up ? 1 : 0);
}

static void render_hooks(sg_metrics_t *m, sg_expose_t *x)
{
    sg_expose_family(x, "swarm_upstream_server_up", "Whether an upstream server is in service (1) or not (0).",
                     SG_METRIC_GAUGE);
    if (m->hooks.each_server)
        m->hooks.each_server(m->hooks.ud, emit_server_up, x);

    uint64_t dropped = m->hooks.spans_dropped ? m->hooks.spans_dropped(m->hooks.ud) : 0;
    sg_expose_family(x, "swarm_spans_exported_total",
                     "Spans accepted by the span collector, by why they were exported (error, slow, sampled).",
                     SG_METRIC_COUNTER);
    static const char *const reason_label[] = {"reason"};
    for (size_t r = 0; r < SG_SPAN_REASON__COUNT; r++) {
        const char *v[] = {sg_span_reason_name((sg_span_reason_t)r)};
        uint64_t n = m->hooks.spans_exported ? m->hooks.spans_exported(m->hooks.ud, r) : 0;
        sg_expose_sample(x, "swarm_spans_exported_total", "", reason_label, v, 1, (double)n);
    }
    sg_expose_family(x, "swarm_spans_dropped_total", "Spans dropped (queue full, export failed or timed out).",
                     SG_METRIC_COUNTER);
    sg_expose_sample(x, "swarm_spans_dropped_total", "", NULL, NULL, 0, (double)dropped);
}

static void render_registry(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms);

void sg_metrics_render(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms)
{
    pthread_mutex_lock(&m->render_mu);
    render_registry(m, x, now_ms);
    pthread_mutex_unlock(&m->render_mu);
    for (size_t i = 0; i < m->n_collectors; i++)
        m->collectors[i].cb(x, m->collectors[i].ud);
}

void sg_metrics_render_any_thread(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms)
{
    pthread_mutex_lock(&m->render_mu);
    render_registry(m, x, now_ms);
    if ((unsigned)x->format < SG_EXPOSE_FORMAT__COUNT && m->snap[x->format])
        sg_expose_write(x, m->snap[x->format], m->snap_len[x->format]);
    pthread_mutex_unlock(&m->render_mu);
}

void sg_metrics_snapshot_collectors(sg_metrics_t *m)
{
    char *out[SG_EXPOSE_FORMAT__COUNT] = {NULL};
    size_t len[SG_EXPOSE_FORMAT__COUNT] = {0};
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++) {
        sg_expose_t x;
        sg_expose_init(&x, (sg_expose_format_t)f);
        for (size_t i = 0; i < m->n_collectors; i++)
            m->collectors[i].cb(&x, m->collectors[i].ud);
        if (!x.has_error) {
            out[f] = x.data; /* ownership moves to the snapshot */
            len[f] = x.len;
            x.data = NULL;
        }
        sg_expose_destroy(&x);
    }
    pthread_mutex_lock(&m->render_mu);
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++) {
        char *old = m->snap[f];
        m->snap[f] = out[f];
        m->snap_len[f] = len[f];
        out[f] = old;
    }
    pthread_mutex_unlock(&m->render_mu);
    for (int f = 0; f < SG_EXPOSE_FORMAT__COUNT; f++)
        free(out[f]);
}

static void render_registry(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms)
{
    for (size_t k = 0; k < D__COUNT; k++) /* acquire: the names below n_named were written before */
        m->named_now[k] = atomic_load_explicit(&m->dims[k].n_named, memory_order_acquire);
    sum_shards(m);
    for (size_t f = 0; f < F__COUNT; f++)
        render_family(m, x, (enum fam)f);
    render_error_rates(m, x, now_ms);
    render_hooks(m, x);

    uint64_t limit = atomic_load_explicit(&m->conn_limit, memory_order_relaxed);
    if (limit) {
        sg_expose_family(x, "swarm_connections_limit",
                         "Client connections the process accepts at once (all workers and listeners), computed at "
                         "start from RLIMIT_NOFILE; more are refused.",
                         SG_METRIC_GAUGE);
        sg_expose_sample(x, "swarm_connections_limit", "", NULL, NULL, 0, (double)limit);
    }

    static const char *const vname[] = {"version"};
    static const char *const vval[] = {SG_VERSION};
    sg_expose_family(x, "swarmgate_build_info", "swarmgate build information; the value is always 1.", SG_METRIC_GAUGE);
    sg_expose_sample(x, "swarmgate_build_info", "", vname, vval, 1, 1);

    sg_procstat_t ps;
    if (sg_procstat_read(&ps) == 0) {
        ps.start_time_seconds = m->start_time_s;
        sg_procstat_render(x, &ps);
    }
}
