/* The per-request record: what the data path knows about one finished
 * request, handed to observability (metrics, error rate, access log, spans).
 * Filled by proxy/egress on a worker; consumed on the same worker by
 * sg_obs_request_done() before the transaction's memory is reset. */
#ifndef SG_REQREC_H
#define SG_REQREC_H

#include "sg/common.h"
#include "sg/trace.h"

typedef enum sg_method {
    SG_METHOD_GET = 0,
    SG_METHOD_HEAD,
    SG_METHOD_POST,
    SG_METHOD_PUT,
    SG_METHOD_DELETE,
    SG_METHOD_CONNECT,
    SG_METHOD_OPTIONS,
    SG_METHOD_TRACE,
    SG_METHOD_PATCH,
    SG_METHOD_OTHER,
    SG_METHOD__COUNT
} sg_method_t;

const char *sg_method_name(sg_method_t m);
sg_method_t sg_method_from(sg_str_t name);

typedef struct sg_reqrec {
    /* times: monotonic ns (uv_hrtime) and the wall clock at start */
    uint64_t start_ns;          /* first request byte */
    uint64_t upstream_start_ns; /* upstream request started (0 = never) */
    uint64_t upstream_head_ns;  /* upstream response head complete (0 = never) */
    uint64_t end_ns;            /* last response byte written */
    uint64_t start_unix_ns;

    int32_t listener_idx;
    /* Route and upstream as the metrics registry knows them (it is built
     * from the start-up config): -1 none; an index >= the registry's count
     * (INT32_MAX) is one a reload added ("other"). */
    int32_t route_idx;    /* -1: no route */
    int32_t upstream_idx; /* -1: none chosen */
    int32_t server_idx;   /* within the upstream, -1: none */
    /* Borrowed from the request's config generation; NULL: look route_idx up. */
    const char *route_name;
    sg_method_t method;
    uint16_t status;     /* sent to the client; 0 = connection closed before a status */
    bool is_proxy_error; /* status made by swarmgate (400, 404, 502, ...) */
    bool is_tunnel;      /* CONNECT or upgrade */
    uint64_t req_bytes;  /* request bytes received (head + body) */
    uint64_t resp_bytes; /* response bytes sent (head + body) */

    const sg_trace_ctx_t *trace; /* never NULL for a request that was parsed */
    bool sampled;

    /* Borrowed; valid until sg_obs_request_done() returns. */
    sg_str_t path;        /* request target path (no query) */
    sg_str_t host;        /* Host header / authority */
    sg_str_t client_addr; /* "ip:port" */
    sg_str_t server_addr; /* upstream server "ip:port", empty if none */
    const char *error;    /* short reason for a proxy error, else NULL */

    /* Egress listener requests (forward proxy, CONNECT). */
    bool is_egress;
    int32_t egress_dest_idx;  /* destination label (the allowing egress.allow rule's text), -1: none */
    int32_t egress_agent_idx; /* agent label (sg_metrics_agent): -1 unknown, INT32_MAX other */
    const char *agent;        /* the agent's name (log, span); NULL: unknown. Borrowed like path */
    const char *tls_version;  /* the client's TLS version ("TLSv1.3"), NULL: plain HTTP. Static */
    const char *tls_sni;      /* the server name the client asked for, NULL: none. Borrowed like path */
} sg_reqrec_t;

#endif /* SG_REQREC_H */
