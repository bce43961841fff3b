/* Process-wide state shared by main, the workers and the control thread.
 *
 * Owner: main (sg_runtime_init / sg_runtime_destroy). Every field is either
 * immutable after start-up or atomic; nobody takes a lock on it. */
#ifndef SG_RUNTIME_H
#define SG_RUNTIME_H

#include "sg/common.h"
#include "sg/config.h"

#include <stdatomic.h>

struct sg_metrics;

/* A worker's face to the rest of the process, written only by that worker
 * (relaxed atomic stores), read by health and /metrics. */
typedef struct sg_worker_pub {
    _Alignas(SG_CACHELINE) _Atomic uint64_t heartbeat_ms; /* monotonic ms of the last loop tick */
    _Atomic uint32_t connections;
    _Atomic uint32_t in_flight;
    _Atomic bool is_listening;
} sg_worker_pub_t;

/* Shared view of one upstream server's health. Written by any worker
 * (passive) or the control thread (active checks); relaxed atomics. */
typedef struct sg_server_pub {
    _Alignas(SG_CACHELINE) _Atomic uint64_t ejected_until_ms; /* monotonic ms; 0 = not ejected */
    _Atomic bool active_down; /* active health check says down */
    _Atomic uint32_t consecutive_fails;
} sg_server_pub_t;

typedef struct sg_runtime {
    _Atomic(sg_config_t *) config; /* current generation, retained */
    uint32_t n_workers;
    sg_worker_pub_t *workers;      /* n_workers */
    sg_server_pub_t **servers;     /* [upstream][server] of the first config */
    struct sg_metrics *metrics;
    uint64_t start_unix_ms;
    _Atomic bool is_draining;      /* readiness fails; keep-alive stops */
    _Atomic bool is_stopping;      /* listeners closed */
    _Atomic bool pg_up;            /* last Postgres poll succeeded (control thread writes) */
} sg_runtime_t;

/* Monotonic milliseconds, same clock as heartbeat_ms and ejected_until_ms. */
uint64_t sg_now_ms(void);
uint64_t sg_now_ns(void);
uint64_t sg_unix_ns(void);

#endif /* SG_RUNTIME_H */
