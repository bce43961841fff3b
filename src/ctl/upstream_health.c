#include "sg/upstream_health.h"

#include "sg/log.h"

#include <stdio.h>
#include <stdlib.h>

/* Re-plan check period: how soon a reload's new generation is noticed. */
#define WATCH_MS 200

/* ---- status line --------------------------------------------------------------- */

sg_uh_verdict_t sg_upstream_health_classify(const char *buf, size_t len)
{
    /* RFC 9112 section 4: status-line = HTTP-version SP status-code SP
     * [reason-phrase]. We accept a missing reason without its SP, as
     * most clients do, and a bare LF as the line end (section 2.2). */
    static const char prefix[] = "HTTP/1.";
    size_t n = SG_MIN(len, SG_UPSTREAM_HEALTH_MAX_LINE);
    size_t plen = sizeof(prefix) - 1;
    if (memcmp(buf, prefix, SG_MIN(n, plen)) != 0)
        return SG_UH_FAIL;
    const char *nl = memchr(buf, '\n', n);
    if (!nl)
        return n >= SG_UPSTREAM_HEALTH_MAX_LINE ? SG_UH_FAIL : SG_UH_PENDING;
    size_t end = (size_t)(nl - buf);
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    /* "HTTP/1.x SSS" is 12 bytes; then end of line or SP. */
    if (end < 12 || buf[7] < '0' || buf[7] > '9' || buf[8] != ' ')
        return SG_UH_FAIL;
    for (size_t i = 9; i < 12; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return SG_UH_FAIL;
    if (end > 12 && buf[12] != ' ')
        return SG_UH_FAIL;
    int code = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    return code >= 200 && code <= 399 ? SG_UH_OK : SG_UH_FAIL;
}

/* ---- one server's probe --------------------------------------------------------- */

typedef enum probe_state {
    PROBE_IDLE = 0,   /* nothing outstanding: a tick may start an attempt */
    PROBE_RESOLVING,  /* gai request outstanding */
    PROBE_CONNECTING, /* tcp open, connect pending */
    PROBE_EXCHANGING, /* request written / status line being read */
    PROBE_CLOSING,    /* tcp close pending */
    PROBE_STATE__COUNT
} probe_state_t;

/* One server's checks. Owner: the plan (sg_upstream_health_t.probes) until
 * probe_stop, then itself: freed in maybe_free once every handle is closed
 * and no request is outstanding. */
typedef struct probe {
    probe_state_t state;
    bool is_done;       /* the current attempt (if any) has its verdict */
    bool is_stopped;    /* detached from the plan: record nothing, free when closed */
    unsigned n_handles; /* initialized, not yet closed: tick, deadline, tcp */
    sg_rtgen_t *gen;    /* retained: uc and hp borrow from gen->cfg */
    const sg_upstream_conf_t *uc;
    const sg_hostport_t *hp;
    sg_server_pub_t *slot;
    uint32_t n_ok, n_fail; /* consecutive verdicts */
    const char *last_err;
    uv_timer_t tick;
    uv_timer_t deadline;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_getaddrinfo_t gai;
    char *req;
    size_t req_len;
    size_t rlen;
    char name[280]; /* "host:port" / "[v6]:port", as in metric labels */
    char rbuf[SG_UPSTREAM_HEALTH_MAX_LINE];
} probe_t;

struct sg_upstream_health {
    uv_loop_t *loop;
    sg_runtime_t *rt;
    sg_rtgen_t *gen; /* retained: the generation the plan was made from */
    uv_timer_t watch;
    probe_t **probes;
    size_t n_probes;
};

static const char *probe_state_name(probe_state_t s)
{
    static const char *const names[PROBE_STATE__COUNT] = {"idle", "resolving", "connecting", "exchanging", "closing"};
    return s < PROBE_STATE__COUNT ? names[s] : "?";
}

static void maybe_free(probe_t *p)
{
    if (!p->is_stopped || p->n_handles > 0 || p->state != PROBE_IDLE)
        return;
    free(p->req);
    sg_rtgen_release(p->gen);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    if (h == (uv_handle_t *)&p->tcp)
        p->state = PROBE_IDLE;
    p->n_handles--;
    maybe_free(p);
}

/* Releases what the current attempt holds (deadline, tcp, gai). */
static void end_attempt(probe_t *p)
{
    uv_timer_stop(&p->deadline);
    switch (p->state) {
    case PROBE_RESOLVING:
        /* The callback still comes (UV_EAI_CANCELED or a late result). */
        (void)uv_cancel((uv_req_t *)&p->gai);
        break;
    case PROBE_CONNECTING:
    case PROBE_EXCHANGING:
        p->state = PROBE_CLOSING;
        uv_close((uv_handle_t *)&p->tcp, on_handle_closed);
        break;
    default:
        break;
    }
}

static void record(probe_t *p, bool ok)
{
    bool is_down = atomic_load_explicit(&p->slot->active_down, memory_order_relaxed);
    if (ok) {
        p->n_fail = 0;
        if (p->n_ok < UINT32_MAX)
            p->n_ok++;
        if (is_down && p->n_ok >= p->uc->health_check.rise) {
            atomic_store_explicit(&p->slot->active_down, false, memory_order_relaxed);
            sg_log(SG_LOG_INFO, NULL, "upstream %s server %s: active check passed %u times: up", p->uc->name, p->name,
                   p->n_ok);
        }
    } else {
        p->n_ok = 0;
        if (p->n_fail < UINT32_MAX)
            p->n_fail++;
        if (!is_down && p->n_fail >= p->uc->health_check.fall) {
            atomic_store_explicit(&p->slot->active_down, true, memory_order_relaxed);
            sg_log(SG_LOG_WARN, NULL, "upstream %s server %s: active check failed %u times: down (%s)", p->uc->name,
                   p->name, p->n_fail, p->last_err ? p->last_err : "?");
        }
    }
}

/* The attempt's verdict: recorded once, then its resources go. */
static void finish(probe_t *p, bool ok, const char *why)
{
    if (p->is_done)
        return;
    p->is_done = true;
    p->last_err = ok ? NULL : why;
    end_attempt(p);
    if (!p->is_stopped)
        record(p, ok);
}

static void on_deadline(uv_timer_t *t)
{
    finish(t->data, false, "timeout");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    SG_UNUSED(suggested);
    probe_t *p = h->data;
    /* classify() decides by SG_UPSTREAM_HEALTH_MAX_LINE bytes, so room is left. */
    *buf = uv_buf_init(p->rbuf + p->rlen, (unsigned)(sizeof(p->rbuf) - p->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    SG_UNUSED(buf);
    probe_t *p = s->data;
    if (p->is_done || nread == 0)
        return;
    if (nread < 0) {
        finish(p, false, nread == UV_EOF ? "closed before a status line" : uv_strerror((int)nread));
        return;
    }
    p->rlen += (size_t)nread;
    sg_uh_verdict_t v = sg_upstream_health_classify(p->rbuf, p->rlen);
    if (v != SG_UH_PENDING)
        finish(p, v == SG_UH_OK, "bad status");
}

static void on_write(uv_write_t *req, int status)
{
    probe_t *p = req->data;
    if (status < 0 && status != UV_ECANCELED)
        finish(p, false, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    probe_t *p = req->data;
    if (p->is_done) /* closed meanwhile (UV_ECANCELED) */
        return;
    if (status < 0) {
        finish(p, false, uv_strerror(status));
        return;
    }
    p->state = PROBE_EXCHANGING;
    uv_buf_t b = uv_buf_init(p->req, (unsigned)p->req_len);
    int r = uv_write(&p->write_req, (uv_stream_t *)&p->tcp, &b, 1, on_write);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (r < 0)
        finish(p, false, uv_strerror(r));
}

static void connect_to(probe_t *p, const struct sockaddr *sa)
{
    int r = uv_tcp_init(p->tick.loop, &p->tcp);
    if (r < 0) {
        finish(p, false, uv_strerror(r));
        return;
    }
    p->tcp.data = p;
    p->n_handles++;
    p->state = PROBE_CONNECTING;
    r = uv_tcp_connect(&p->connect_req, &p->tcp, sa, on_connect);
    if (r < 0)
        finish(p, false, uv_strerror(r));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    probe_t *p = req->data;
    p->state = PROBE_IDLE;
    if (p->is_done) { /* timed out or stopped meanwhile */
        uv_freeaddrinfo(res);
        maybe_free(p);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        finish(p, false, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, SG_MIN((size_t)res->ai_addrlen, sizeof(ss)));
    uv_freeaddrinfo(res);
    connect_to(p, (const struct sockaddr *)&ss);
}

static void on_tick(uv_timer_t *t)
{
    probe_t *p = t->data;
    if (p->state != PROBE_IDLE) { /* one probe in flight per server */
        sg_log(SG_LOG_DEBUG, NULL, "upstream %s server %s: active check skipped: previous one still %s", p->uc->name,
               p->name, probe_state_name(p->state));
        return;
    }
    p->is_done = false;
    p->rlen = 0;
    uv_timer_start(&p->deadline, on_deadline, p->uc->health_check.timeout_ms, 0);
    if (p->hp->is_ip_literal) {
        struct sockaddr_storage ss;
        int r = p->hp->is_ipv6_literal ? uv_ip6_addr(p->hp->host, p->hp->port, (struct sockaddr_in6 *)&ss)
                                       : uv_ip4_addr(p->hp->host, p->hp->port, (struct sockaddr_in *)&ss);
        if (r < 0) {
            finish(p, false, uv_strerror(r));
            return;
        }
        connect_to(p, (const struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)p->hp->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    p->gai.data = p;
    int r = uv_getaddrinfo(t->loop, &p->gai, on_resolved, p->hp->host, port, &hints);
    if (r < 0) {
        finish(p, false, uv_strerror(r));
        return;
    }
    p->state = PROBE_RESOLVING;
}

static probe_t *probe_new(uv_loop_t *loop, sg_rtgen_t *gen, size_t u, size_t s)
{
    const sg_upstream_conf_t *uc = &gen->cfg->upstreams[u];
    const sg_hostport_t *hp = &uc->servers[s];
    probe_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->gen = sg_rtgen_retain(gen);
    p->uc = uc;
    p->hp = hp;
    p->slot = gen->servers[u][s];
    p->is_done = true;
    if (hp->is_ipv6_literal)
        snprintf(p->name, sizeof(p->name), "[%s]:%u", hp->host, (unsigned)hp->port);
    else
        snprintf(p->name, sizeof(p->name), "%s:%u", hp->host, (unsigned)hp->port);
#define REQ_FMT "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: swarmgate-health\r\n\r\n"
    int n = snprintf(NULL, 0, REQ_FMT, uc->health_check.path, p->name);
    if (n < 0 || !(p->req = malloc((size_t)n + 1))) {
        sg_rtgen_release(p->gen);
        free(p);
        return NULL;
    }
    p->req_len = (size_t)snprintf(p->req, (size_t)n + 1, REQ_FMT, uc->health_check.path, p->name);
#undef REQ_FMT
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->deadline);
    p->tick.data = p->deadline.data = p->connect_req.data = p->write_req.data = p;
    p->n_handles = 2;
    return p;
}

/* Detaches p from the plan; it frees itself once closed. */
static void probe_stop(probe_t *p)
{
    p->is_stopped = true;
    if (!p->is_done) {
        p->is_done = true;
        end_attempt(p);
    }
    uv_close((uv_handle_t *)&p->tick, on_handle_closed);
    uv_close((uv_handle_t *)&p->deadline, on_handle_closed);
}

/* ---- plan -------------------------------------------------------------------------- */

static void stop_probes(probe_t **probes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        probe_stop(probes[i]);
    free(probes);
}

/* Makes the plan for rt->gen: one probe per server of every upstream with
 * checks enabled; a server kept from the old plan keeps its counters. */
static void replan(sg_upstream_health_t *h)
{
    sg_rtgen_t *gen = atomic_load_explicit(&h->rt->gen, memory_order_acquire);
    if (gen == h->gen)
        return;
    probe_t **old = h->probes;
    size_t n_old = h->n_probes;
    h->probes = NULL;
    h->n_probes = 0;
    if (gen) {
        const sg_config_t *cfg = gen->cfg;
        size_t n = 0;
        for (size_t u = 0; u < cfg->n_upstreams; u++)
            if (cfg->upstreams[u].health_check.enabled)
                n += cfg->upstreams[u].n_servers;
        h->probes = n ? calloc(n, sizeof(*h->probes)) : NULL;
        if (n && !h->probes)
            sg_log(SG_LOG_ERROR, NULL, "active health checks not started: out of memory");
        for (size_t u = 0; u < cfg->n_upstreams; u++) {
            const sg_upstream_conf_t *uc = &cfg->upstreams[u];
            for (size_t s = 0; s < uc->n_servers; s++) {
                sg_server_pub_t *slot = gen->servers[u][s];
                if (!uc->health_check.enabled || !h->probes) {
                    /* Nobody checks it any more: it must not stay down. */
                    if (atomic_exchange_explicit(&slot->active_down, false, memory_order_relaxed))
                        sg_log(SG_LOG_WARN, NULL, "upstream %s server %s: active checks off: up", uc->name,
                               uc->servers[s].host);
                    continue;
                }
                probe_t *p = probe_new(h->loop, gen, u, s);
                if (!p) {
                    sg_log(SG_LOG_ERROR, NULL, "upstream %s: active check not started: out of memory", uc->name);
                    continue;
                }
                for (size_t i = 0; i < n_old; i++) {
                    if (old[i]->slot == slot) {
                        p->n_ok = old[i]->n_ok;
                        p->n_fail = old[i]->n_fail;
                        break;
                    }
                }
                h->probes[h->n_probes++] = p;
                uv_timer_start(&p->tick, on_tick, 0, uc->health_check.interval_ms);
            }
        }
    }
    stop_probes(old, n_old);
    if (h->gen)
        sg_rtgen_release(h->gen);
    h->gen = gen ? sg_rtgen_retain(gen) : NULL;
    sg_log(SG_LOG_DEBUG, NULL, "active health checks: %zu servers (generation %u)", h->n_probes, gen ? gen->id : 0u);
}

static void on_watch(uv_timer_t *t)
{
    replan(t->data);
}

sg_upstream_health_t *sg_upstream_health_start(uv_loop_t *loop, sg_runtime_t *rt)
{
    sg_upstream_health_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = loop;
    h->rt = rt;
    uv_timer_init(loop, &h->watch);
    h->watch.data = h;
    replan(h);
    uv_timer_start(&h->watch, on_watch, WATCH_MS, WATCH_MS);
    return h;
}

static void on_watch_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void sg_upstream_health_stop(sg_upstream_health_t *h)
{
    if (!h)
        return;
    stop_probes(h->probes, h->n_probes);
    h->probes = NULL;
    h->n_probes = 0;
    if (h->gen)
        sg_rtgen_release(h->gen);
    h->gen = NULL;
    uv_close((uv_handle_t *)&h->watch, on_watch_closed);
}
