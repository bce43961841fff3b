/* Observability hooks called by the data path (proxy, egress) on a worker.
 * One sg_obs_worker_t per thread that serves requests; it bundles that
 * thread's metrics shard, log ring and span queue. Every hook is O(1), never
 * blocks, never allocates, and is safe to call with parts of observability
 * turned off. */
#ifndef SG_OBS_H
#define SG_OBS_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/reqrec.h"
#include "sg/runtime.h"
#include "sg/trace.h"

typedef struct sg_obs_worker sg_obs_worker_t;

/* Called on the owning thread before its loop runs / after it stopped.
 * sg_obs_worker_new: proxy worker worker_idx (rt->workers), its shard;
 * sg_obs_control_new: the control thread, the control shard (its requests,
 * admin traffic, stay out of the in-flight gauge). Each has its own log
 * ring. NULL on out-of-memory. */
sg_obs_worker_t *sg_obs_worker_new(sg_runtime_t *rt, uint32_t worker_idx) SG_MUST_CHECK;
sg_obs_worker_t *sg_obs_control_new(sg_runtime_t *rt) SG_MUST_CHECK;
void sg_obs_worker_free(sg_obs_worker_t *o);

/* A request finished (response sent, or the connection closed under it). */
void sg_obs_request_done(sg_obs_worker_t *o, const sg_reqrec_t *rec);
void sg_obs_conn_open(sg_obs_worker_t *o, int32_t listener_idx);
void sg_obs_conn_close(sg_obs_worker_t *o, int32_t listener_idx);
/* A client connection closed at accept (admin listener: listener_idx < 0);
 * reason is an sg_conn_refused_t (sg/metrics.h). */
void sg_obs_conn_refused(sg_obs_worker_t *o, int32_t listener_idx, unsigned reason);
/* This thread gave free heap pages back (malloc_trim). */
void sg_obs_memory_trim(sg_obs_worker_t *o);
void sg_obs_inflight(sg_obs_worker_t *o, int delta);
void sg_obs_trace_resolved(sg_obs_worker_t *o, const sg_trace_ctx_t *t);
void sg_obs_upstream_connect_error(sg_obs_worker_t *o, int32_t upstream_idx);
/* A TLS handshake on listener listener_idx ended (result SG_TLS_OK) or
 * failed; dur_ns from its first byte (sg_tls_conn_handshake_ns). */
/* A TLS handshake with a server of upstream upstream_idx ended. */
void sg_obs_upstream_tls_handshake(sg_obs_worker_t *o, int32_t upstream_idx, sg_tls_error_t result);
void sg_obs_tls_handshake(sg_obs_worker_t *o, int32_t listener_idx, sg_tls_error_t result, sg_tls_version_t version,
                          uint64_t dur_ns, bool is_resumed);
void sg_obs_upstream_timeout(sg_obs_worker_t *o, int32_t upstream_idx);
/* An egress destination refused (reason: sg_egress_verdict_t, sg/egress.h). */
void sg_obs_egress_refused(sg_obs_worker_t *o, unsigned reason);
/* The label index of an egress agent's name (sg_metrics_agent: -1
 * unknown, INT32_MAX other); -1 without a metrics registry. */
int32_t sg_obs_egress_agent(sg_obs_worker_t *o, const char *name, size_t len);
/* An egress request refused by the agent's rate limit (429). */
void sg_obs_egress_rate_limited(sg_obs_worker_t *o, int32_t agent_idx);
void sg_obs_header_fields_dropped(sg_obs_worker_t *o, int32_t listener_idx, uint64_t n);
/* A config reload finished (control thread: swarm_config_reload_total). */
void sg_obs_config_reload(sg_obs_worker_t *o, bool is_success);
/* The sampler's decision for a trace this hop starts. */
bool sg_obs_sample_new(sg_obs_worker_t *o);
/* Error-log line about a request (trace_id may be NULL). */
void sg_obs_log(sg_obs_worker_t *o, sg_log_level_t level, const char *trace_id, const char *fmt, ...) SG_PRINTF(4, 5);

#endif /* SG_OBS_H */
