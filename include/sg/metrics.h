/* Traffic metrics: a registry of counters, gauges and histograms kept in
 * per-thread shards and summed at scrape time (STYLE.md section 7).
 *
 * sg_metrics_create() builds the registry from a static descriptor table
 * and the config (routes, upstreams, listeners): every series gets a dense
 * slot. Each worker and the control thread own one shard: cache-line
 * aligned `_Atomic uint64_t` arrays that only their owner writes, with
 * relaxed load + store (no locked read-modify-write, no locks). A scrape
 * (sg_metrics_render, control thread) sums relaxed loads across shards;
 * workers are never paused or messaged.
 *
 * Label values are bounded (see docs/metrics.md):
 *   route    config route names, "none" (no route matched), "other" (an
 *            index the registry does not know)
 *   method   GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH OTHER
 *   code     exact for a fixed set of standard codes, else "1xx".."5xx";
 *            "000" when no status was sent, "other" outside 100..599
 *   upstream config upstream names, "other"
 *   listener config listener names, "other"
 *   result   TLS handshake outcome: sg_tls_error_name() values ("success", ...)
 *   version  TLS version: "none", "TLSv1.2", "TLSv1.3"
 *   agent    egress agents as requests name them (sg_metrics_agent), up to
 *            egress.max_agents (read at start), then "other"; "unknown"
 *   direction in (bytes from the client), out (bytes to the client)
 * Gauges summed across workers (in flight, connections) are one signed
 * per-shard value each (two's complement in the uint64 slot), moved up and
 * down by the owner; the sum wraps back to the true total.
 *
 * Routes, upstreams and listeners a reload adds get their own label value:
 * the registry reserves SG_METRICS_SPARE_LABELS extra values per dimension
 * at creation, and the control thread interns new names
 * (sg_metrics_intern) before it publishes the generation that uses them.
 * A name once interned keeps its index and its series for the life of the
 * process (counters never vanish or go back); when a dimension is full the
 * new name counts as "other" until restart.
 *
 * Lifetime: created by main before the workers start (after the first
 * config load), destroyed after every thread that writes a shard has been
 * joined. The registry copies every name it needs: the config may go. */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/expose.h"
#include "sg/reqrec.h"
#include "sg/tls.h"
#include "sg/trace.h"

typedef struct sg_metrics sg_metrics_t;
typedef struct sg_metrics_shard sg_metrics_shard_t;

/* Label values reserved per internable dimension beyond the start-up
 * config's names (docs/metrics.md, "Label values added by a reload", gives
 * the memory this costs per shard). */
#define SG_METRICS_SPARE_LABELS 16

/* Dimensions whose values come from the config and can grow by reload. */
typedef enum sg_metrics_dim {
    SG_METRICS_DIM_ROUTE = 0,
    SG_METRICS_DIM_UPSTREAM,
    SG_METRICS_DIM_LISTENER,
    SG_METRICS_DIM_DEST, /* egress destination: an egress.allow rule's text */
    SG_METRICS_DIM__COUNT
} sg_metrics_dim_t;

/* One upstream server's state for swarm_upstream_server_up (see
 * sg_metrics_hooks_t.each_server). Strings are borrowed for the call. */
typedef void (*sg_metrics_server_cb)(void *ctx, const char *upstream, const char *server, bool is_up);

/* Values owned by other modules, read at scrape time (control thread).
 * Any field may be NULL: then server_up series are not written and the
 * span counters read 0. */
typedef struct sg_metrics_hooks {
    uint64_t (*spans_exported)(void *ud, size_t reason); /* sg_span_reason_t */
    uint64_t (*spans_dropped)(void *ud);
    void *ud;
    /* Calls emit(ctx, ...) once per server of the config now in force
     * (servers and upstreams a reload added included, removed ones gone:
     * it is a gauge of current state). Called during a render, on the
     * rendering thread. */
    void (*each_server)(void *ud, sg_metrics_server_cb emit, void *ctx);
} sg_metrics_hooks_t;

/* Extra families for a scrape (Postgres gauges, health...). Called on the
 * control thread during sg_metrics_render, after the built-in families, in
 * registration order; writes with sg_expose_family/sample/histogram. */
typedef void (*sg_metrics_collect_cb)(sg_expose_t *x, void *ud);

/* Builds the registry for `n_workers` worker shards plus one control shard.
 * Returns NULL on allocation failure. Main thread, at start-up. */
sg_metrics_t *sg_metrics_create(const sg_config_t *cfg, uint32_t n_workers) SG_MUST_CHECK;
void sg_metrics_destroy(sg_metrics_t *m);

/* Label index of `name` in dimension dim for the hot-path calls below
 * (sg_reqrec_t.route_idx / upstream_idx, listener_idx...): the index it
 * already has (start-up config or an earlier reload), else a new one from
 * the spare capacity, published (release) so a concurrent render shows it.
 * Returns -ENOSPC when the dimension is full (the caller counts the name
 * as "other"), -ENOMEM, or -EINVAL (NULL name or bad dim). Control thread
 * only (or main before it starts); call it before publishing the indices
 * to the workers. */
int32_t sg_metrics_intern(sg_metrics_t *m, sg_metrics_dim_t dim, const char *name) SG_MUST_CHECK;
/* How many names dimension dim can hold (start-up names + spare). */
size_t sg_metrics_label_capacity(const sg_metrics_t *m, sg_metrics_dim_t dim);

/* Shard of worker i (0 <= i < n_workers), and the control thread's. */
sg_metrics_shard_t *sg_metrics_worker_shard(sg_metrics_t *m, uint32_t worker_idx);
sg_metrics_shard_t *sg_metrics_control_shard(sg_metrics_t *m);

/* Start-up (before the first scrape), main or control thread. */
void sg_metrics_set_hooks(sg_metrics_t *m, const sg_metrics_hooks_t *hooks);
/* 0 or -ENOMEM. Control thread (or before it starts). */
int sg_metrics_add_collector(sg_metrics_t *m, sg_metrics_collect_cb cb, void *ud) SG_MUST_CHECK;
/* Removes the first registration of (cb, ud); no-op when absent. */
void sg_metrics_remove_collector(sg_metrics_t *m, sg_metrics_collect_cb cb, void *ud);

/* ---- hot path: shard owner's thread only; O(1), no malloc, no locks ---- */

/* A finished request: swarm_http_requests_total, the request duration
 * histogram (end_ns - start_ns) and, when an upstream answered, the
 * upstream response histogram (upstream_head_ns - upstream_start_ns),
 * with an exemplar (rec->trace->trace_id) on the buckets hit; and the
 * error-rate windows (responses with a status only; 5xx are errors). */
void sg_metrics_record_request(sg_metrics_shard_t *s, const sg_reqrec_t *rec);
void sg_metrics_conn_open(sg_metrics_shard_t *s, size_t listener_idx);
void sg_metrics_conn_close(sg_metrics_shard_t *s, size_t listener_idx);
void sg_metrics_inflight_inc(sg_metrics_shard_t *s);
void sg_metrics_inflight_dec(sg_metrics_shard_t *s);
void sg_metrics_trace_source(sg_metrics_shard_t *s, sg_trace_source_t src);
void sg_metrics_upstream_connect_error(sg_metrics_shard_t *s, size_t upstream_idx);
void sg_metrics_upstream_timeout(sg_metrics_shard_t *s, size_t upstream_idx);
/* An egress request (rec->is_egress), instead of record_request:
 * swarm_egress_requests_total{agent,destination,method,code},
 * swarm_egress_bytes_total{agent,direction} (req_bytes in, resp_bytes
 * out; agent: rec->egress_agent_idx, see sg_metrics_agent) and, for a CONNECT
 * tunnel (rec->is_tunnel), swarm_egress_tunnels_total{destination} and
 * swarm_egress_tunnel_duration_seconds{destination} (end_ns - start_ns).
 * destination is label rec->egress_dest_idx: the index of an allow rule's
 * text (the start-up rules' distinct texts in order, then those interned
 * with SG_METRICS_DIM_DEST); "none" when negative. */
void sg_metrics_record_egress(sg_metrics_shard_t *s, const sg_reqrec_t *rec);
/* The label index of egress agent `name` (len bytes, an sg_agent_name_ok
 * name) for sg_reqrec_t.egress_agent_idx: -1 for "unknown" (an invalid
 * name, or "unknown" itself), INT32_MAX for "other" (the name "other", or
 * egress.max_agents names are taken: logged once), else its index. A name
 * keeps its index for the life of the process. Any thread: the lookup is
 * lock-free; a name seen for the first time is added under a mutex (at
 * most egress.max_agents times per process). */
int32_t sg_metrics_agent(sg_metrics_t *m, const char *name, size_t len);
/* swarm_egress_rate_limited_total{agent} (agent_idx as for egress_agent_idx). */
void sg_metrics_egress_rate_limited(sg_metrics_shard_t *s, int32_t agent_idx);
/* swarm_egress_refused_total{reason}: reason is an sg_egress_verdict_t
 * (sg/egress.h) other than SG_EGRESS_OK. */
void sg_metrics_egress_refused(sg_metrics_shard_t *s, unsigned reason);
/* swarm_http_header_fields_dropped_total{listener} += n. */
void sg_metrics_header_fields_dropped(sg_metrics_shard_t *s, size_t listener_idx, uint64_t n);
/* Why a client connection was closed at accept. */
typedef enum sg_conn_refused {
    SG_CONN_REFUSED_LIMIT = 0,    /* the connection cap (RLIMIT_NOFILE less a reserve) */
    SG_CONN_REFUSED_ACCEPT_ERROR, /* accept() failed (EMFILE, ENFILE...) */
    SG_CONN_REFUSED__COUNT
} sg_conn_refused_t;
/* swarm_connections_refused_total{listener,reason}: listener_idx as for
 * conn_open, or negative for the admin listener (label "admin"). */
void sg_metrics_conn_refused(sg_metrics_shard_t *s, int32_t listener_idx, sg_conn_refused_t reason);
/* A TLS handshake on a listener ended (the transport calls this once per
 * connection, with what sg_tls_conn_error / _version / _handshake_ns /
 * _is_resumed say, or SG_TLS_E_TIMEOUT / SG_TLS_E_CLOSED when it gave up
 * first): swarm_tls_handshakes_total{listener,result,version}; for a
 * success also swarm_tls_handshake_duration_seconds{listener} (dur_ns:
 * first byte of the ClientHello to the end) and, when resumed,
 * swarm_tls_sessions_resumed_total{listener}. listener_idx as for
 * conn_open. */
void sg_metrics_tls_handshake(sg_metrics_shard_t *s, size_t listener_idx, sg_tls_error_t result,
                              sg_tls_version_t version, uint64_t dur_ns, bool is_resumed);
/* A TLS handshake with an upstream server ended (a new pooled
 * connection): swarm_upstream_tls_handshakes_total{upstream,result}, where
 * verification failures have their own results (unknown_ca,
 * hostname_mismatch, certificate_expired, certificate_invalid). */
void sg_metrics_upstream_tls_handshake(sg_metrics_shard_t *s, size_t upstream_idx, sg_tls_error_t result);
/* swarm_memory_trims_total: the shard's thread called malloc_trim. */
void sg_metrics_memory_trim(sg_metrics_shard_t *s);
/* swarm_connections_limit (written when non-zero). Main, before the workers start. */
void sg_metrics_set_conn_limit(sg_metrics_t *m, uint64_t limit);
/* swarm_config_reload_total{result="success"|"failure"} (control shard). */
void sg_metrics_config_reload(sg_metrics_shard_t *s, bool is_success);

/* ---- scrape: control thread ---- */

/* Writes every family of the registry (traffic, error rates, span counters,
 * process_*, build info), then the collectors. now_ms is the monotonic
 * clock (sg_now_ms) for the error-rate windows. Does not call finish. */
void sg_metrics_render(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms);

/* The same, callable from any thread (a proxy listener with serve_metrics):
 * the registry as of now, and the collectors' families as of their last
 * sg_metrics_snapshot_collectors() (collectors read control-thread state).
 * Takes a mutex that only renders take; never on the request path. */
void sg_metrics_render_any_thread(sg_metrics_t *m, sg_expose_t *x, uint64_t now_ms);
/* Control thread: re-renders the collectors into that snapshot. */
void sg_metrics_snapshot_collectors(sg_metrics_t *m);

/* Label value of an HTTP status for swarm_http_requests_total. */
const char *sg_metrics_code_label(uint16_t status);

#endif /* SG_METRICS_H */
