/* Egress (forward proxy) on a worker: the agents' HTTP_PROXY.
 *
 * An absolute-form request (GET http://host:port/path) goes through the
 * reverse path's code (proxy.c: trace stamping, head rewrite, streaming,
 * timeouts, observability) with a destination instead of a routed upstream
 * server; CONNECT host:port becomes a byte tunnel (proxy.c's tunnel code)
 * after "200 Connection Established". Here: proxy authentication, the
 * allow-list (sg/egress.h) on the requested name and on the resolved
 * address, resolution without blocking (uv_getaddrinfo) with a small TTL
 * cache, and per-destination connection pools. The connection goes to
 * exactly the address that was checked: a destination is (name, port,
 * address) and its pooled connections were opened to that address. */
#include "net/net_int.h"

#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>

#define EG_DNS_SLOTS 64 /* names cached (and lookups in flight) per worker */
#define EG_DNS_ADDRS 8  /* addresses kept per name */
#define EG_MAX_DESTS 64 /* destinations with pooled connections per worker */

typedef enum dns_state {
    DNS_FREE = 0,
    DNS_RESOLVING, /* uv_getaddrinfo in flight; txns wait in `waiters` */
    DNS_READY,     /* addrs valid until expires_ms */
    DNS__COUNT
} dns_state_t;

/* One cached name. Owner: the worker's sg_egress_t (array). */
struct sg_egress_dns {
    uv_getaddrinfo_t gai;
    sg_egress_t *eg;
    dns_state_t state;
    uint64_t expires_ms;
    uint64_t used_ms;
    size_t n_addrs;
    struct sockaddr_storage addrs[EG_DNS_ADDRS]; /* port 0 */
    sg_link_t waiters;                           /* sg_txn_t.eg.wait */
    char host[256];
};

/* A destination: its pool of connections to one checked address. Owner:
 * the worker's sg_egress_t (dests list, fl_dest); freed by gc_dests() once
 * no txn refers to it and no connection is leased or pooled. */
struct sg_egress_dest {
    sg_upserver_t srv; /* pool, address and name ("ip:port") for upstream.c */
    sg_link_t link;    /* in eg->dests, most recently used first */
    uint32_t refs;     /* txns pointing at it */
    uint16_t port;
    bool is_tls; /* https:// targets: a pool of its own, TLS to the destination */
    char host[256];
};

/* One agent's token bucket (egress.rate_limit) on this worker. */
typedef struct eg_bucket {
    double tokens;
    uint64_t last_ns; /* 0: not used yet (full) */
} eg_bucket_t;

/* Owner: a worker generation (g->egress); sg__egress_free with it. */
struct sg_egress {
    sg_server_pub_t pub; /* shared by every destination: never ejected (max_fails 0) */
    sg_wgen_t *gen;
    sg_upstream_conf_t conf; /* name "egress", the timeouts above */
    sg_upstream_t ups;       /* group of every destination; idx -1 */
    sg_upstream_t ups_tls;   /* the same for https:// targets: TLS with rg->egress_tls */
    sg_freelist_t fl_dest;
    sg_link_t dests;
    size_t n_dests;
    sg_egress_dns_t dns[EG_DNS_SLOTS];
    /* egress.rate_limit on: one bucket per agent label index (the agent
     * label's max_agents names, then "unknown", then "other": agents
     * counted as one label value share its bucket); NULL when off. A
     * generation starts with full buckets. */
    eg_bucket_t *buckets;
    size_t n_buckets;
};

/* ---- worker scope ------------------------------------------------------------ */

int sg__egress_init(sg_wgen_t *g)
{
    sg_worker_t *w = g->w;
    bool has_egress = false; /* the generation's listeners (worker.c adopts them with it) */
    for (size_t i = 0; i < g->cfg->n_listeners; i++)
        has_egress |= g->cfg->listeners[i].mode == SG_LISTENER_EGRESS;
    if (!has_egress)
        return 0;
    size_t size = (sizeof(sg_egress_t) + SG_CACHELINE - 1) / SG_CACHELINE * SG_CACHELINE;
    sg_egress_t *eg = aligned_alloc(SG_CACHELINE, size);
    if (!eg)
        return UV_ENOMEM;
    memset(eg, 0, sizeof(*eg));
    eg->gen = g;
    eg->conf.name = "egress";
    /* Timeouts and pooling of egress connections: egress.* (agents' calls
     * take minutes, hence the long response and read defaults). */
    const sg_egress_conf_t *ec = &g->cfg->egress;
    eg->conf.keepalive = ec->keepalive;
    eg->conf.keepalive_timeout_ms = ec->keepalive_timeout_ms;
    eg->conf.connect_timeout_ms = ec->connect_timeout_ms;
    eg->conf.response_timeout_ms = ec->response_timeout_ms;
    eg->conf.read_timeout_ms = ec->read_timeout_ms;
    eg->conf.max_fails = 0;
    eg->ups.w = w;
    eg->ups.gen = g;
    eg->ups.idx = -1;
    eg->ups.conf = &eg->conf;
    eg->ups_tls = eg->ups;
    eg->ups_tls.tls = g->rg->egress_tls;
    if (ec->rate_limit.requests_per_second > 0) {
        eg->n_buckets = (size_t)ec->max_agents + 2;
        eg->buckets = calloc(eg->n_buckets, sizeof(*eg->buckets));
        if (!eg->buckets) {
            free(eg);
            return UV_ENOMEM;
        }
    }
    sg_freelist_init(&eg->fl_dest, sizeof(sg_egress_dest_t), EG_MAX_DESTS);
    sg_list_init(&eg->dests);
    for (size_t i = 0; i < EG_DNS_SLOTS; i++) {
        eg->dns[i].eg = eg;
        sg_list_init(&eg->dns[i].waiters);
    }
    g->egress = eg;
    return 0;
}

static void close_idle(sg_egress_dest_t *d)
{
    while (!sg_list_empty(&d->srv.idle))
        sg__upconn_close(sg_container_of(d->srv.idle.next, sg_upconn_t, link));
}

void sg__egress_close(sg_wgen_t *g)
{
    sg_egress_t *eg = g->egress;
    if (!eg)
        return;
    /* A retired generation lets its lookups finish for the requests that
     * wait on them; a stopping worker cancels them. */
    for (size_t i = 0; i < EG_DNS_SLOTS && g->w->is_stopping; i++)
        if (eg->dns[i].state == DNS_RESOLVING)
            uv_cancel((uv_req_t *)&eg->dns[i].gai);
    for (sg_link_t *n = eg->dests.next; n != &eg->dests; n = n->next)
        close_idle(sg_container_of(n, sg_egress_dest_t, link));
}

void sg__egress_free(sg_wgen_t *g)
{
    sg_egress_t *eg = g->egress;
    if (!eg)
        return;
    while (!sg_list_empty(&eg->dests)) {
        sg_egress_dest_t *d = sg_container_of(eg->dests.next, sg_egress_dest_t, link);
        sg_tls_session_free(d->srv.tls_session);
        sg_list_remove(&d->link);
        sg_freelist_put(&eg->fl_dest, d);
    }
    sg_freelist_destroy(&eg->fl_dest);
    free(eg->buckets);
    free(eg);
    g->egress = NULL;
}

/* ---- answers ----------------------------------------------------------------- */

static bool must_close(const sg_txn_t *t)
{
    /* After a failed CONNECT the client may already be sending tunnel
     * bytes: never read them as a request. */
    return (t->flags & SG_TXN_F_CONNECT) || !(t->flags & SG_TXN_F_REQ_DONE);
}

static const char *verdict_text(sg_egress_verdict_t v)
{
    switch (v) {
    case SG_EGRESS_HOST_NOT_ALLOWED:
        return "destination host is not allowed";
    case SG_EGRESS_PORT_NOT_ALLOWED:
        return "destination port is not allowed";
    case SG_EGRESS_LOOPBACK:
        return "destination address is loopback";
    case SG_EGRESS_LINK_LOCAL:
        return "destination address is link-local";
    case SG_EGRESS_PRIVATE:
        return "destination address is private";
    case SG_EGRESS_UNSPECIFIED:
        return "destination address is unspecified";
    case SG_EGRESS_MULTICAST:
        return "destination address is multicast";
    case SG_EGRESS_RESERVED:
        return "destination address is reserved";
    default:
        return "destination refused";
    }
}

static void refuse(sg_txn_t *t, sg_egress_verdict_t v, const struct sockaddr *addr)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    char ip[INET6_ADDRSTRLEN] = "";
    if (addr && addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, ip, sizeof(ip));
    else if (addr && addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, ip, sizeof(ip));
    sg_obs_egress_refused(w->obs, v);
    sg_obs_log(w->obs, SG_LOG_INFO, t->trace.trace_id, "egress: refused %s port %u%s%s: %s", t->eg.target.host,
               t->eg.target.port, ip[0] ? " address " : "", ip, sg_egress_verdict_name(v));
    sg__conn_error_ex(t->conn, 403, verdict_text(v), sg_egress_verdict_name(v), NULL, must_close(t));
}

static void fail_502(sg_txn_t *t, const char *error, const char *reason)
{
    sg__conn_error_ex(t->conn, 502, error, reason, NULL, must_close(t));
}

/* ---- agents -------------------------------------------------------------------- */

/* Who sent the request (docs/egress.md, "Agents"): the per-agent user of
 * its Proxy-Authorization (user >= 0), else the agent header when it is
 * one valid name, else unknown. */
static void identify(sg_txn_t *t, const sg_h1_head_t *h, int user)
{
    const sg_egress_conf_t *ec = &t->gen->cfg->egress;
    const char *name = NULL;
    size_t len = 0;
    if (user >= 0) {
        name = ec->users[user].name;
        len = strlen(name);
    } else if (ec->agent_header) {
        size_t n = 0;
        const sg_h1_header_t *ah = sg_h1_find(h, sg_str_cstr(ec->agent_header), &n);
        if (ah && n == 1 && sg_agent_name_ok(ah->value.p, ah->value.len)) {
            name = ah->value.p;
            len = ah->value.len;
        }
    }
    if (!name || (len == 7 && memcmp(name, "unknown", 7) == 0)) {
        t->rec.egress_agent_idx = -1;
        return;
    }
    memcpy(t->eg.agent, name, len);
    t->eg.agent[len] = '\0';
    t->rec.agent = t->eg.agent;
    t->rec.egress_agent_idx = sg_obs_egress_agent(sg__tp_w(&t->conn->tp)->obs, name, len);
}

/* The agent's token bucket on this worker: true (and the 429 sent) when
 * it is empty. Rate R per second, size B: a request takes a token. */
static bool rate_limited(sg_txn_t *t)
{
    sg_egress_t *eg = t->gen->egress;
    const sg_egress_rate_conf_t *rl = &t->gen->cfg->egress.rate_limit;
    if (!eg || !eg->buckets || rl->requests_per_second <= 0)
        return false;
    int32_t a = t->rec.egress_agent_idx;
    size_t nb = eg->n_buckets;
    size_t i = a < 0 ? nb - 2 : (size_t)a < nb - 2 ? (size_t)a : nb - 1;
    eg_bucket_t *b = &eg->buckets[i];
    uint64_t now = sg_now_ns();
    double burst = rl->burst ? (double)rl->burst : 1.0;
    if (!b->last_ns)
        b->tokens = burst;
    else if (now > b->last_ns)
        b->tokens = SG_MIN(burst, b->tokens + (double)(now - b->last_ns) * rl->requests_per_second / 1e9);
    b->last_ns = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return false;
    }
    /* RFC 9110 10.2.3: whole seconds; rounded up so a client that waits
     * that long finds a token. */
    double wait_s = ceil((1.0 - b->tokens) / rl->requests_per_second);
    unsigned long retry = wait_s < 1 ? 1ul : wait_s > 86400 ? 86400ul : (unsigned long)wait_s;
    char hdr[48];
    snprintf(hdr, sizeof(hdr), "Retry-After: %lu\r\n", retry);
    sg_obs_egress_rate_limited(sg__tp_w(&t->conn->tp)->obs, a);
    sg_obs_log(sg__tp_w(&t->conn->tp)->obs, SG_LOG_INFO, t->trace.trace_id,
               "egress: agent %s rate limited (retry after %lu s)", t->eg.agent[0] ? t->eg.agent : "unknown", retry);
    sg__conn_error_ex(t->conn, 429, "rate limit exceeded for this agent", "rate_limited", hdr, must_close(t));
    return true;
}

/* ---- head checks ------------------------------------------------------------- */

static int egress_head(sg_txn_t *t, const sg_h1_head_t *h, sg_str_t target, sg_str_t authority, bool is_absolute)
{
    sg_conn_t *c = t->conn;
    const sg_egress_conf_t *ec = &t->gen->cfg->egress;
    bool is_connect = h->method == SG_METHOD_CONNECT;
    t->eg.name_rule = -1;
    t->eg.name_verdict = SG_EGRESS_HOST_NOT_ALLOWED;
    if (!is_connect && !is_absolute) {
        sg__conn_error_ex(c, 400, "an egress listener takes absolute-form requests (http://host/path) or CONNECT",
                          "origin_form", NULL, must_close(t));
        return -1;
    }
    int user = -1;
    if (ec->auth_user || ec->n_users) {
        /* RFC 9110 11.7.1: Proxy-Authorization is for this proxy; it is
         * removed with the other Proxy-* fields before forwarding. A
         * per-agent user names the agent; the shared auth_user does not. */
        size_t n = 0;
        const sg_h1_header_t *pa = sg_h1_find(h, SG_STR("proxy-authorization"), &n);
        bool is_ok = false;
        if (pa && n == 1) {
            user = ec->n_users ? sg_egress_auth_user(pa->value, ec->users, ec->n_users) : -1;
            is_ok = user >= 0 || (ec->auth_user && sg_egress_auth_ok(pa->value, ec->auth_user, ec->auth_password));
        }
        if (!is_ok) {
            sg_obs_egress_refused(sg__tp_w(&c->tp)->obs, SG_EGRESS_AUTH);
            sg__conn_error_ex(c, 407, pa ? "proxy credentials rejected" : "proxy authentication required", "auth",
                              "Proxy-Authenticate: Basic realm=\"swarmgate\"\r\n", must_close(t));
            return -1;
        }
    }
    identify(t, h, user);
    if (rate_limited(t))
        return -1;
    if (is_absolute && target.len >= 8 && sg_str_ieq(sg_str_make(target.p, 8), SG_STR("https://"))) {
        /* swarmgate speaks TLS to the target itself (verified), so the
         * request is traced and counted like any other; egress.tls
         * `enabled: false` leaves CONNECT as the only way. */
        if (!t->gen->rg->egress_tls) {
            sg__conn_error_ex(c, 400, "https:// targets go through CONNECT", "https_target", NULL, must_close(t));
            return -1;
        }
        t->eg.is_https = true;
    }
    if (sg_egress_parse_target(authority, is_connect ? 0 : (t->eg.is_https ? 443 : 80), &t->eg.target) < 0) {
        sg__conn_error_ex(c, 400,
                          is_connect ? "invalid CONNECT target (host:port)" : "invalid request target authority",
                          "bad_target", NULL, must_close(t));
        return -1;
    }
    return 0;
}

/* ---- destinations ------------------------------------------------------------ */

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
}

static bool is_unused(const sg_egress_dest_t *d)
{
    return d->refs == 0 && d->srv.in_flight == 0;
}

static void free_dest(sg_egress_t *eg, sg_egress_dest_t *d)
{
    sg_tls_session_free(d->srv.tls_session);
    sg_list_remove(&d->link);
    eg->n_dests--;
    sg_freelist_put(&eg->fl_dest, d);
}

/* Keeps at most EG_MAX_DESTS destinations beyond those in use: empty ones
 * go first, then the least recently used pools are closed. */
static void gc_dests(sg_egress_t *eg)
{
    for (sg_link_t *n = eg->dests.prev; n != &eg->dests && eg->n_dests >= EG_MAX_DESTS;) {
        sg_link_t *prev = n->prev;
        sg_egress_dest_t *d = sg_container_of(n, sg_egress_dest_t, link);
        if (is_unused(d) && d->srv.n_idle == 0)
            free_dest(eg, d);
        n = prev;
    }
    for (sg_link_t *n = eg->dests.prev; n != &eg->dests && eg->n_dests >= EG_MAX_DESTS;) {
        sg_link_t *prev = n->prev;
        sg_egress_dest_t *d = sg_container_of(n, sg_egress_dest_t, link);
        if (is_unused(d)) {
            close_idle(d); /* closed connections no longer look at d */
            free_dest(eg, d);
        }
        n = prev;
    }
}

static sg_egress_dest_t *dest_get(sg_egress_t *eg, const char *host, uint16_t port, const struct sockaddr_storage *addr,
                                  bool is_tls)
{
    for (sg_link_t *n = eg->dests.next; n != &eg->dests; n = n->next) {
        sg_egress_dest_t *d = sg_container_of(n, sg_egress_dest_t, link);
        if (d->port == port && d->is_tls == is_tls && same_addr(&d->srv.addr, addr) && strcmp(d->host, host) == 0) {
            sg_list_remove(&d->link);
            sg_list_push(&eg->dests, &d->link);
            d->refs++;
            return d;
        }
    }
    if (eg->n_dests >= EG_MAX_DESTS)
        gc_dests(eg);
    sg_egress_dest_t *d = sg_freelist_get(&eg->fl_dest);
    if (!d)
        return NULL;
    memset(d, 0, sizeof(*d));
    d->srv.addr = *addr;
    d->srv.is_resolved = true;
    d->srv.ups = is_tls ? &eg->ups_tls : &eg->ups;
    d->is_tls = is_tls;
    d->srv.idx = -1;
    d->srv.pub = &eg->pub;
    sg_list_init(&d->srv.idle);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, ip, sizeof(ip));
        snprintf(d->srv.name, sizeof(d->srv.name), "%s:%u", ip, port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, ip, sizeof(ip));
        snprintf(d->srv.name, sizeof(d->srv.name), "[%s]:%u", ip, port);
    }
    snprintf(d->host, sizeof(d->host), "%s", host);
    d->srv.tls_host = d->host;
    d->port = port;
    d->refs = 1;
    sg_list_init(&d->link);
    sg_list_push(&eg->dests, &d->link);
    eg->n_dests++;
    return d;
}

static void egress_txn_free(sg_txn_t *t)
{
    if (!t->eg.dns && !t->eg.dest)
        return;
    if (t->eg.dns) {
        sg_list_remove(&t->eg.wait);
        t->eg.dns = NULL;
    }
    if (t->eg.dest) {
        t->eg.dest->refs--;
        t->eg.dest = NULL;
    }
}

/* ---- connect --------------------------------------------------------------------- */

/* The destination label of a rule of this request's generation (its text,
 * interned when the generation was built; -1: none). */
static int32_t rule_metric(const sg_txn_t *t, int32_t rule)
{
    return rule < 0 ? -1 : t->gen->rg->dest_metric[rule];
}

static void connect_to(sg_txn_t *t, const struct sockaddr_storage *addr, int32_t rule)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    t->rec.egress_dest_idx = rule_metric(t, rule);
    sg_egress_dest_t *d = dest_get(t->gen->egress, t->eg.target.host, t->eg.target.port, addr, t->eg.is_https);
    if (!d) {
        fail_502(t, "out of memory", "internal");
        return;
    }
    t->eg.dest = d;
    t->srv = &d->srv;
    snprintf(t->server, sizeof(t->server), "%s", d->srv.name);
    t->n_tries = 1;
    if (!t->rec.upstream_start_ns)
        t->rec.upstream_start_ns = sg_now_ns();
    int r = sg__proxy_lease(t, &d->srv);
    if (r == UV_EMFILE || r == UV_ENFILE || r == UV_ENOMEM || r == UV_ENOBUFS) {
        sg_obs_log(w->obs, SG_LOG_WARN, t->trace.trace_id, "egress %s: cannot open a connection: %s", d->srv.name,
                   uv_strerror(r));
        fail_502(t, "cannot open an upstream connection", "internal");
    } else if (r < 0) {
        sg__proxy_up_failed(t, SG_FAIL_CONNECT, uv_strerror(r));
    }
}

/* Checks the addresses in order and connects to the first one allowed. */
static void decide(sg_txn_t *t, const struct sockaddr_storage *addrs, size_t n)
{
    const sg_egress_conf_t *ec = &t->gen->cfg->egress;
    uint16_t port = t->eg.target.port;
    sg_egress_verdict_t first = SG_EGRESS_OK;
    const struct sockaddr_storage *first_addr = NULL;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage a = addrs[i];
        if (a.ss_family == AF_INET)
            ((struct sockaddr_in *)&a)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&a)->sin6_port = htons(port);
        int32_t rule = -1;
        sg_egress_verdict_t v = sg_egress_check_addr(ec, (const struct sockaddr *)&a, port, t->eg.name_rule, &rule);
        if (v == SG_EGRESS_OK) {
            connect_to(t, &a, rule);
            return;
        }
        if (!first_addr) {
            first = v;
            first_addr = &addrs[i];
        }
    }
    if (!first_addr) {
        fail_502(t, "destination has no address", "dns_failed");
        return;
    }
    /* No host rule and no CIDR rule: say why the name was not allowed. */
    if (first == SG_EGRESS_HOST_NOT_ALLOWED && t->eg.name_rule < 0)
        first = t->eg.name_verdict;
    refuse(t, first, (const struct sockaddr *)first_addr);
}

static void dns_failed(sg_txn_t *t, int status)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    char msg[400];
    snprintf(msg, sizeof(msg), "cannot resolve %s: %s", t->eg.target.host, uv_strerror(status));
    sg_obs_log(w->obs, SG_LOG_WARN, t->trace.trace_id, "egress: %s", msg);
    /* msg outlives the txn: the answer and its log line are made here. */
    fail_502(t, msg, "dns_failed");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sg_egress_dns_t *e = req->data;
    sg_egress_t *eg = e->eg;
    e->n_addrs = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai && e->n_addrs < EG_DNS_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(e->addrs[0]))
            continue;
        memset(&e->addrs[e->n_addrs], 0, sizeof(e->addrs[0]));
        memcpy(&e->addrs[e->n_addrs], ai->ai_addr, ai->ai_addrlen);
        e->n_addrs++;
    }
    if (res)
        uv_freeaddrinfo(res);
    if (status == 0 && e->n_addrs == 0)
        status = UV_EAI_NODATA;
    uint64_t now = sg_now_ms();
    e->state = status == 0 ? DNS_READY : DNS_FREE; /* failures are not cached */
    e->expires_ms = now + eg->gen->cfg->egress.dns_ttl_ms;
    e->used_ms = now;
    /* Each waiter leaves the list before it goes on: going on may end it. */
    while (!sg_list_empty(&e->waiters)) {
        sg_txn_t *t = sg_container_of(e->waiters.next, sg_txn_t, eg.wait);
        sg_list_remove(&t->eg.wait);
        t->eg.dns = NULL;
        if (status == 0)
            decide(t, e->addrs, e->n_addrs);
        else
            dns_failed(t, status);
    }
    sg__wgen_resolved(eg->gen); /* last: may free the generation, and e with it */
}

static void resolve(sg_txn_t *t)
{
    sg_worker_t *w = sg__tp_w(&t->conn->tp);
    sg_egress_t *eg = t->gen->egress;
    const char *host = t->eg.target.host;
    uint64_t now = sg_now_ms();
    sg_egress_dns_t *e = NULL, *spare = NULL;
    for (size_t i = 0; i < EG_DNS_SLOTS; i++) {
        sg_egress_dns_t *x = &eg->dns[i];
        if (x->state != DNS_FREE && strcmp(x->host, host) == 0) {
            e = x;
            break;
        }
        if (x->state == DNS_FREE && (!spare || spare->state != DNS_FREE))
            spare = x;
        else if (x->state == DNS_READY && (!spare || (spare->state == DNS_READY && x->used_ms < spare->used_ms)))
            spare = x; /* least recently used */
    }
    if (e && e->state == DNS_READY && now < e->expires_ms) {
        e->used_ms = now;
        decide(t, e->addrs, e->n_addrs);
        return;
    }
    if (!e || e->state == DNS_READY) {
        if (!e)
            e = spare;
        if (!e) {
            fail_502(t, "too many name resolutions in progress", "dns_busy");
            return;
        }
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        snprintf(e->host, sizeof(e->host), "%s", host);
        e->gai.data = e;
        int r = uv_getaddrinfo(&w->loop, &e->gai, on_resolved, e->host, NULL, &hints);
        if (r < 0) {
            e->state = DNS_FREE;
            dns_failed(t, r);
            return;
        }
        e->state = DNS_RESOLVING;
        t->gen->n_resolving++; /* the generation outlives the lookup */
    }
    t->eg.dns = e;
    sg_list_push(e->waiters.prev, &t->eg.wait); /* last: answered in arrival order */
}

static void egress_connect(sg_txn_t *t)
{
    const sg_egress_conf_t *ec = &t->gen->cfg->egress;
    sg_egress_target_t *tg = &t->eg.target;
    sg__txn_set_state(t, SG_TXN_CONNECTING);
    if (tg->is_ip) {
        decide(t, &tg->addr, 1); /* only a CIDR rule can allow an address */
        return;
    }
    int32_t rule = -1;
    sg_egress_verdict_t v = sg_egress_match_host(ec, tg->host, tg->port, &rule);
    if (v == SG_EGRESS_OK) {
        t->eg.name_rule = rule;
        t->rec.egress_dest_idx = rule_metric(t, rule);
    } else {
        t->eg.name_verdict = v;
        if (!sg_egress_has_cidr_rule(ec, tg->port)) {
            refuse(t, v, NULL); /* nothing could allow it: no lookup */
            return;
        }
    }
    resolve(t);
}

/* ---- CONNECT ------------------------------------------------------------------------ */

static void egress_connected(sg_txn_t *t)
{
    sg_conn_t *c = t->conn;
    sg_worker_t *w = sg__tp_w(&c->tp);
    sg_upconn_t *u = t->up;
    char *buf = sg__head_get(w);
    if (!buf) {
        fail_502(t, "out of memory", "internal");
        return;
    }
    /* RFC 9110 9.3.6: no Content-Length or Transfer-Encoding in a 2xx to
     * CONNECT; the tunnel starts right after the blank line. */
    int n = snprintf(buf, w->head_size, "HTTP/1.1 200 Connection Established\r\n%s: %s\r\n\r\n",
                     t->gen->cfg->trace.header, t->trace.trace_id);
    if (n < 0 || (size_t)n >= w->head_size) {
        sg__head_put(w, buf);
        fail_502(t, "response head too large", "internal");
        return;
    }
    t->flags |= SG_TXN_F_SENT_ANY | SG_TXN_F_RESP_HEAD;
    sg__txn_set_state(t, SG_TXN_TUNNEL);
    t->resp_status = 200;
    t->rec.status = 200;
    t->rec.is_tunnel = true;
    t->rec.upstream_head_ns = sg_now_ns();
    t->rec.resp_bytes += (uint64_t)n;
    sg__upconn_tunnel(u);
    uv_buf_t iov = uv_buf_init(buf, (unsigned)n);
    if (sg__conn_write(c, &iov, 1, buf, SG_BK_HEAD) < 0) {
        sg__conn_abort(c, "client write failed");
        return;
    }
    sg__upconn_update_read(u);
    sg__conn_tunnel_start(c);
    sg__proxy_tunnel_touch(t); /* the idle clock starts with the tunnel */
}

static int egress_on_head(sg_txn_t *t, const sg_h1_head_t *h, const sg_req_target_t *tg)
{
    /* Forward proxy: no route; a destination instead of a server. */
    t->flags |= SG_TXN_F_EGRESS | (tg->is_connect ? SG_TXN_F_CONNECT : 0u);
    return egress_head(t, h, tg->target, tg->host, tg->is_absolute);
}

const sg_handler_ops_t sg__egress_handler = {
    .on_head = egress_on_head,
    .connect = egress_connect,
    .on_connected = egress_connected,
    .on_free = egress_txn_free,
};
