/* Process-wide state shared by main, the workers and the control thread.
 *
 * Owner: main (sg_runtime_init / sg_runtime_destroy). Every field is either
 * immutable after start-up or atomic; nobody takes a lock on it. */
#ifndef SG_RUNTIME_H
#define SG_RUNTIME_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/time.h" /* sg_now_ms(): heartbeat_ms and ejected_until_ms are on its clock */

#include <stdatomic.h>

struct sg_metrics;

/* A worker's face to the rest of the process, written only by that worker
 * (relaxed atomic stores), read by health and /metrics. */
typedef struct sg_worker_pub {
    _Alignas(SG_CACHELINE) _Atomic uint64_t heartbeat_ms; /* monotonic ms of the last loop tick */
    _Atomic uint32_t connections;
    _Atomic uint32_t in_flight;
    _Atomic bool is_listening;
    /* Config generation this worker serves new requests with; UINT32_MAX
     * once its loop has exited. The control thread frees a retired
     * sg_rtgen_t only when every worker is past it (quiescent-state
     * reclamation: a worker reads rt->gen / rt->config without a
     * reference only inside one loop callback). */
    _Atomic uint32_t generation;
} sg_worker_pub_t;

/* Shared view of one upstream server's health. Written by any worker
 * (passive) or the control thread (active checks); relaxed atomics. */
typedef struct sg_server_pub {
    _Alignas(SG_CACHELINE) _Atomic uint64_t ejected_until_ms; /* monotonic ms; 0 = not ejected */
    _Atomic bool active_down;                                 /* active health check says down */
    _Atomic uint32_t consecutive_fails;
} sg_server_pub_t;

/* One published config generation: the config and the health slots of its
 * upstream servers, published together under one atomic pointer (rt->gen)
 * so readiness never pairs a config with another generation's slots.
 *
 * Server slots are keyed by (upstream name, server "host:port"): a server
 * kept across a reload keeps its slot (passive ejection and active-check
 * state carry over); a new one gets a new slot. Slots are never freed
 * before the runtime (bounded by the distinct servers ever configured).
 *
 * Owner: refcounted (sg_rtgen_retain/_release, any thread). rt->gen holds
 * one reference; each worker's generation object holds one. Built and
 * published only on the control thread (or by main at start-up). */
typedef struct sg_rtgen {
    atomic_uint refcount;
    uint32_t id;                /* == cfg->generation (1 at start-up) */
    sg_config_t *cfg;           /* retained */
    sg_server_pub_t ***servers; /* [upstream][server] -> slot, cfg's indices */
    /* Metric registry label indices: route i / upstream i / listener i of
     * cfg -> the registry's index for its name (sg_metrics_intern, filled
     * at commit, before publication), or INT32_MAX ("other") when the
     * registry had no room left for a new name. */
    int32_t *route_metric;
    int32_t *upstream_metric;
    int32_t *listener_metric;
    int32_t *dest_metric; /* egress.allow rule i -> its destination label (its text) */
    /* Listener i's TLS contexts (sg/tls.h), built with the generation from
     * its certificates, or NULL (no tls section). The listeners of the
     * workers retain them; the generation's reference goes with it. */
    sg_tls_server_t **tls_servers;
    /* Upstream u's TLS client context (upstreams.<name>.tls), or NULL. */
    sg_tls_client_t **tls_clients;
    /* TLS for absolute-form https:// targets on egress listeners
     * (egress.tls), NULL when there is no egress listener or it is off. */
    sg_tls_client_t *egress_tls;
    /* Listening sockets (src/net: bound by bind.c, taken by worker.c). Listener i's bound address
     * ("ip:port", "[ip]:port") is laddr[i]; lfds[i * n_workers + w] is the
     * socket worker w takes when it adopts this generation (exchanged with
     * -1), or -1 when worker w keeps the socket it already has open for
     * laddr[i]. A listener kept across a reload has its untaken sockets
     * moved into the new generation; those still here when the generation is
     * freed are closed. */
    _Atomic int *lfds;
    char (*laddr)[64];
    uint32_t n_lfd_workers;
    struct sg_rtgen *_next_retired;
} sg_rtgen_t;

struct sg_slot_entry;

typedef struct sg_runtime {
    _Atomic(sg_config_t *) config; /* current generation's config, retained (== gen->cfg) */
    _Atomic(sg_rtgen_t *) gen;     /* current generation (config + server slots) */
    uint32_t n_workers;
    sg_worker_pub_t *workers;  /* n_workers */
    sg_server_pub_t **servers; /* [upstream][server] of the first config */
    struct sg_metrics *metrics;
    uint64_t start_unix_ms;
    _Atomic bool is_draining; /* readiness fails; keep-alive stops */
    _Atomic bool is_stopping; /* listeners closed */
    _Atomic bool pg_up;       /* last Postgres poll succeeded (control thread writes) */
    /* Connection caps from RLIMIT_NOFILE, set by sg_server_start before any
     * thread runs (0: no cap). client_conn_cap bounds the client
     * connections of all workers together (their pub.connections summed);
     * admin_conn_cap the admin listener's. See src/net/server.c. */
    uint32_t client_conn_cap;
    uint32_t admin_conn_cap;
    _Atomic uint32_t pg_failing; /* built-in queries failing, 1u << sg_pg_builtin_t (control thread writes) */
    /* Private to src/net (generation.c): the start-up generation (never
     * retired), the slot registry and the retired generations waiting for
     * every worker to pass them. Control thread only after start-up. */
    /* Session ticket keys, one set for the process: every listener of every
     * generation issues and accepts tickets with them (sg/tls.h). */
    sg_tls_ticket_keys_t *tls_keys;
    sg_rtgen_t *_boot;
    size_t _n_boot_upstreams; /* rows of servers */
    struct sg_slot_entry *_slots;
    size_t _n_slots, _cap_slots;
    sg_rtgen_t *_retired;
} sg_runtime_t;

sg_rtgen_t *sg_rtgen_retain(sg_rtgen_t *g);
void sg_rtgen_release(sg_rtgen_t *g);

#endif /* SG_RUNTIME_H */
