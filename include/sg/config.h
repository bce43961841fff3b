/* Configuration: the immutable, validated picture of a swarmgate process.
 *
 * sg_config_load() parses YAML (config_yaml.c), applies defaults, expands
 * ${VAR} and ${VAR:-default}, and validates. The result lives in one arena
 * owned by the sg_config_t; sg_config_free() releases it. A config is never
 * changed after load: a reload builds a new generation (refcounted).
 *
 * Durations are milliseconds (uint64_t *_ms), sizes are bytes. Strings are
 * NUL-terminated and owned by the config's arena.
 *
 * TLS files (listeners[].tls, upstreams.<name>.tls) are checked at load,
 * so --check-config and a reload see what the contexts would: each file
 * is read, a key file must not be accessible by group or others (sshd's
 * rule), a key must match its certificate, a ca_file must hold a
 * certificate. A relative path is taken from the config file's directory
 * and stored resolved. */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include "sg/common.h"
#include "sg/mem.h"
#include "sg/tls.h"

#include <stdatomic.h>
#include <sys/socket.h>

/* A parsed "host:port" or "[v6]:port". host is a literal address or a name
 * (names are resolved at run time, without blocking a loop). */
typedef struct sg_hostport {
    const char *host; /* without brackets */
    uint16_t port;
    bool is_ipv6_literal;
    bool is_ip_literal;
} sg_hostport_t;

typedef enum sg_listener_mode {
    SG_LISTENER_REVERSE = 0,
    SG_LISTENER_EGRESS,
    SG_LISTENER_MODE__COUNT
} sg_listener_mode_t;

typedef struct sg_listener_conf {
    const char *name;
    sg_hostport_t addr;
    sg_listener_mode_t mode;
    bool serve_health;        /* answer /health* on this listener (default false) */
    bool serve_metrics;       /* answer /metrics on this listener (default false) */
    int backlog;              /* default 511 */
    sg_tls_server_conf_t tls; /* tls.enabled when the listener has a tls section (sg/tls.h) */
} sg_listener_conf_t;

typedef enum sg_balance { SG_BALANCE_ROUND_ROBIN = 0, SG_BALANCE_LEAST_IN_FLIGHT, SG_BALANCE__COUNT } sg_balance_t;

typedef struct sg_health_check_conf {
    bool enabled;
    const char *path;     /* default "/health" */
    uint64_t interval_ms; /* default 5s */
    uint64_t timeout_ms;  /* default 2s */
    uint32_t rise;        /* successes to mark up, default 2 */
    uint32_t fall;        /* failures to mark down, default 3 */
} sg_health_check_conf_t;

typedef struct sg_upstream_conf {
    const char *name;
    sg_hostport_t *servers;
    size_t n_servers;
    sg_balance_t balance;
    uint32_t keepalive;            /* max idle pooled conns per worker, default 100000 (no cap) */
    uint64_t keepalive_timeout_ms; /* idle pooled conn lifetime, default 60s */
    uint64_t connect_timeout_ms;   /* default 5s */
    uint64_t response_timeout_ms;  /* request sent -> response head, default 60s */
    uint64_t read_timeout_ms;      /* between two reads of a response body, default 300s */
    uint32_t max_fails;            /* consecutive failures that eject a server, default 3 */
    uint64_t fail_timeout_ms;      /* ejection cool-down, default 10s */
    bool count_timeouts;           /* a response timeout counts toward max_fails, default false */
    sg_health_check_conf_t health_check;
    sg_tls_client_conf_t tls; /* TLS to the servers when tls.enabled (sg/tls.h) */
} sg_upstream_conf_t;

typedef struct sg_route_conf {
    const char *name;         /* default "route<N>" or the prefix */
    const char *host;         /* NULL = any; "api.example.com" exact; "*.example.com" suffix */
    const char *prefix;       /* default "/" */
    const char *strip_prefix; /* removed from the path before forwarding (NULL = none) */
    const char *rewrite;      /* replaces the matched prefix (NULL = none) */
    const char *set_host;     /* Host sent upstream (NULL = keep the client's) */
    const char *upstream;     /* name */
    size_t upstream_idx;      /* index into sg_config_t.upstreams, resolved at load */
} sg_route_conf_t;

typedef enum sg_export_format {
    SG_EXPORT_NONE = 0,
    SG_EXPORT_OTLP_HTTP,
    SG_EXPORT_ZIPKIN,
    SG_EXPORT__COUNT
} sg_export_format_t;

typedef struct sg_trace_conf {
    const char *header;          /* default "X-Trace-Id" */
    const char **accept_headers; /* other incoming headers taken as the id, e.g. X-Request-Id */
    size_t n_accept_headers;
    bool traceparent; /* emit/continue W3C traceparent, default true */
    struct {
        sg_export_format_t format; /* from which of otlp_http / zipkin is set */
        const char *url;           /* collector URL (http:// only) */
        sg_hostport_t url_addr;    /* host and port of url (port 80 when absent) */
        const char *url_path;      /* path (and query) of url, "/" when absent */
        double sample;             /* ratio for new traces, default 1.0 */
        uint32_t batch_size;       /* default 512 */
        uint64_t batch_delay_ms;   /* default 2s */
        uint32_t queue_size;       /* per worker, default 8192 */
        uint64_t timeout_ms;       /* default 10s */
        const char *service_name;  /* default "swarmgate" */
        uint64_t slow_ms;          /* spans of longer requests always exported, default 1s */
    } export;
} sg_trace_conf_t;

typedef struct sg_buckets {
    double *bounds; /* strictly increasing, +Inf implicit */
    size_t n;
} sg_buckets_t;

typedef struct sg_metrics_conf {
    uint64_t error_rate_window_ms;     /* default 5m */
    uint64_t error_rate_resolution_ms; /* slot width, default 1s */
    sg_buckets_t request_buckets;      /* default 0.0005 .. 300 */
    sg_buckets_t upstream_buckets;     /* default = request_buckets */
    sg_buckets_t transition_buckets;   /* default 1s .. 1w */
    sg_buckets_t db_buckets;           /* default 0.001 .. 10 */
    bool exemplars;                    /* default true */
} sg_metrics_conf_t;

typedef enum sg_metric_type {
    SG_METRIC_COUNTER = 0,
    SG_METRIC_GAUGE,
    SG_METRIC_HISTOGRAM,
    SG_METRIC_TYPE__COUNT
} sg_metric_type_t;

typedef struct sg_zero_fill {
    const char *label;
    const char **values;
    size_t n_values;
} sg_zero_fill_t;

typedef struct sg_pg_query_conf {
    const char *name; /* metric family name */
    const char *help;
    sg_metric_type_t type; /* gauge or counter */
    const char *sql;
    const char **labels; /* label columns */
    size_t n_labels;
    const char *value;    /* value column, default "value" */
    uint64_t interval_ms; /* 0 = postgres.interval */
    sg_zero_fill_t *zero_fill;
    size_t n_zero_fill;
    bool is_disabled; /* YAML `enabled: false`: a built-in query switched off (sql not needed) */
} sg_pg_query_conf_t;

typedef struct sg_pg_conf {
    const char *conninfo;          /* NULL or "" = Postgres polling off */
    uint64_t interval_ms;          /* default 15s */
    bool required;                 /* readiness fails while the DB is down */
    uint64_t statement_timeout_ms; /* default 5s */
    uint64_t connect_timeout_ms;   /* default 5s */
    uint64_t stale_after_ms;       /* drop values older than this, default 3 x interval */
    uint64_t stuck_after_ms;       /* in_progress longer than this is stuck, default 1h */
    bool default_queries;          /* add the reference-schema queries, default true; a query in
                                      `queries` with a built-in name replaces that default */
    sg_pg_query_conf_t *queries;
    size_t n_queries;
    struct {
        bool enabled;    /* default true */
        const char *sql; /* NULL = reference schema query; $1 = last id, $2 = batch;
                            columns id, from_state, to_state, seconds */
        uint32_t batch;  /* events per poll, default 1000 */
    } transitions;
    const char *transitions_start_sql; /* NULL = reference schema: the current max event id */
    uint64_t reconnect_min_ms;         /* first back-off after a failure, default 250ms */
    uint64_t reconnect_max_ms;         /* back-off cap, default 30s */
    bool leader_lock;                  /* only the holder of a session advisory lock polls (YAML default true;
                                          false in a zeroed C struct) */
} sg_pg_conf_t;

typedef struct sg_egress_rule {
    const char *host; /* exact, "*.suffix", or NULL when cidr is used */
    uint16_t port;    /* 0 = any */
    bool has_cidr;
    struct sockaddr_storage net; /* for cidr rules */
    unsigned prefix_len;
    const char *text; /* as written, for logs */
} sg_egress_rule_t;

/* One agent's proxy credentials (egress.users, egress.users_file). */
typedef struct sg_egress_user {
    const char *name; /* an agent name (sg_agent_name_ok), unique */
    const char *password;
} sg_egress_user_t;

/* egress.rate_limit: a token bucket per agent and worker (off when
 * requests_per_second is 0). */
typedef struct sg_egress_rate_conf {
    double requests_per_second; /* default 0: off */
    uint32_t burst;             /* bucket size; 0 (default): requests_per_second rounded up, at least 1 */
} sg_egress_rate_conf_t;

typedef struct sg_egress_conf {
    sg_egress_rule_t *allow;
    size_t n_allow;
    /* egress.tls: TLS swarmgate originates for absolute-form https://
     * targets (verify, ca_file, cert, key, min_version; the target's host is
     * the name verified). Absent: min_version NONE, then the defaults
     * (verified against the system store); `enabled: false` refuses such
     * targets (CONNECT only). */
    sg_tls_client_conf_t tls;
    const char *auth_user; /* NULL = no proxy auth */
    const char *auth_password;
    /* Per-agent credentials: egress.users, then the entries of
     * egress.users_file (name:password lines); n_users > 0 makes
     * Proxy-Authorization required and names the agent. */
    sg_egress_user_t *users;
    size_t n_users;
    const char *users_file;   /* NULL = none (resolved against the config's directory) */
    const char *agent_header; /* default "X-Agent-Id": names the agent without users; never forwarded */
    uint32_t max_agents;      /* distinct agent label values per process, default 256 (read at start) */
    sg_egress_rate_conf_t rate_limit;
    uint64_t dns_ttl_ms; /* default 30s */
    /* Connections to destinations (plain-HTTP forwarding; CONNECT uses
     * connect_timeout and tunnel_idle_timeout only): */
    uint32_t keepalive;              /* idle connections kept per destination, default 100000 (no cap) */
    uint64_t keepalive_timeout_ms;   /* default 30s */
    uint64_t connect_timeout_ms;     /* default 10s -> 504 */
    uint64_t response_timeout_ms;    /* request sent -> response head, default 300s -> 504 */
    uint64_t read_timeout_ms;        /* between two reads of a response body, default 300s */
    uint64_t tunnel_idle_timeout_ms; /* tunnel (CONNECT, upgrade) with no byte either way, default 1h */
} sg_egress_conf_t;

typedef enum sg_log_level {
    SG_LOG_DEBUG = 0,
    SG_LOG_INFO,
    SG_LOG_WARN,
    SG_LOG_ERROR,
    SG_LOG_LEVEL__COUNT
} sg_log_level_t;

typedef enum sg_log_format {
    SG_LOG_FORMAT_AUTO = 0, /* text on a terminal, JSON otherwise */
    SG_LOG_FORMAT_TEXT,
    SG_LOG_FORMAT_JSON,
    SG_LOG_FORMAT__COUNT
} sg_log_format_t;

typedef struct sg_log_conf {
    const char *access;   /* "stdout", "stderr", "off" or a file path; default stdout */
    const char *error;    /* "stderr", "stdout" or a file path; default stderr */
    sg_log_level_t level; /* default info */
    sg_log_format_t format;
    uint32_t ring_bytes;        /* per-worker log ring, default 1m */
    uint64_t flush_interval_ms; /* default 100ms */
} sg_log_conf_t;

/* limits.underscores_in_headers: what happens to request header fields
 * whose name contains '_' (CGI/WSGI backends read X_A and X-A alike). */
typedef enum sg_underscores {
    SG_UNDERSCORES_DROP = 0, /* default: not forwarded, counted */
    SG_UNDERSCORES_ALLOW,
    SG_UNDERSCORES_REJECT, /* 400 */
    SG_UNDERSCORES__COUNT
} sg_underscores_t;

typedef struct sg_limits_conf {
    uint32_t max_connections;                /* per worker, default 10000 */
    uint32_t request_line_bytes;             /* default 16k -> 414 */
    uint32_t header_bytes;                   /* all header lines, default 64k -> 431 */
    uint32_t header_count;                   /* default 100 -> 431 */
    uint64_t body_bytes;                     /* 0 = unlimited, default 0 -> 413 */
    uint64_t client_header_timeout_ms;       /* default 30s -> 408 */
    uint64_t keepalive_timeout_ms;           /* idle client conn, default 75s */
    uint64_t client_body_timeout_ms;         /* between body reads, default 60s */
    uint64_t send_timeout_ms;                /* client not reading, default 60s */
    uint64_t tunnel_idle_timeout_ms;         /* upgrade tunnel with no byte either way, default 1h */
    uint32_t buffer_bytes;                   /* per-direction pending-write bound, default 256k */
    sg_underscores_t underscores_in_headers; /* default drop */
} sg_limits_conf_t;

typedef struct sg_admin_conf {
    sg_hostport_t addr;         /* default 127.0.0.1:9464 */
    bool enabled;               /* default true */
    uint64_t liveness_stale_ms; /* a worker not ticking this long is stuck, default 10s */
} sg_admin_conf_t;

/* Process-wide TLS settings (the top-level `tls` section). */
typedef struct sg_tls_global_conf {
    uint64_t ticket_key_rotation_ms; /* session ticket keys are replaced this often, default 1h */
} sg_tls_global_conf_t;

typedef struct sg_shutdown_conf {
    uint64_t drain_delay_ms;   /* default 5s */
    uint64_t drain_timeout_ms; /* default 30s */
} sg_shutdown_conf_t;

/* The whole config. Owner: the loader's caller, freed by sg_config_free()
 * (or by the last sg_config_release() of a published generation). */
typedef struct sg_config {
    sg_arena_t arena;
    const char *path;     /* file it was loaded from */
    atomic_uint refcount; /* generations: 1 after load */
    uint32_t generation;

    uint32_t workers;      /* 0 in the file ("auto") is resolved to the CPU count */
    uint32_t busy_poll_us; /* workers poll without sleeping while reads come closer than this; 0 = off (default) */
    sg_listener_conf_t *listeners;
    size_t n_listeners;
    sg_admin_conf_t admin;
    sg_upstream_conf_t *upstreams;
    size_t n_upstreams;
    sg_route_conf_t *routes;
    size_t n_routes;
    sg_trace_conf_t trace;
    sg_metrics_conf_t metrics;
    sg_pg_conf_t postgres;
    sg_egress_conf_t egress;
    sg_log_conf_t log;
    sg_limits_conf_t limits;
    sg_tls_global_conf_t tls;
    sg_shutdown_conf_t shutdown;

    /* Fingerprints of sections as written (64-bit FNV-1a over the YAML tree:
     * kinds, keys and scalars, not positions; 0 when the section is absent).
     * A reload compares them to learn what changed. */
    uint64_t fp_postgres;
    uint64_t fp_trace_export;
} sg_config_t;

/* Loads and validates `path`. On success returns 0 and *out owns a new
 * config. On failure returns -1 and writes one human-readable message
 * ("file:line:col: key.path: what was expected") into err. */
int sg_config_load(const char *path, sg_config_t **out, char *err, size_t errlen) SG_MUST_CHECK;
/* Same, from a memory buffer; `name` stands for the file name in messages. */
int sg_config_load_string(const char *name, const char *yaml, size_t len, sg_config_t **out, char *err,
                          size_t errlen) SG_MUST_CHECK;
void sg_config_free(sg_config_t *cfg);

/* Every error of one load, for --check-config. A load goes on past an error
 * to the next key, list item and section, so each wrong key is reported
 * once; a check that relates several keys (a route's upstream name, two
 * listeners on one address) runs only when those keys parsed cleanly, so one
 * mistake does not come back as several. A YAML syntax error ends the load.
 * Messages are sorted by line and column; the first SG_CONFIG_MAX_ERRORS are
 * kept and n_total counts them all. */
#define SG_CONFIG_MAX_ERRORS 50
#define SG_CONFIG_ERROR_LEN 512
typedef struct sg_config_errors {
    size_t n;       /* messages in msg[] */
    size_t n_total; /* errors found, kept or not */
    struct {
        uint32_t line, col;
        char text[SG_CONFIG_ERROR_LEN]; /* "file:line:col: key.path: what was expected" */
    } msg[SG_CONFIG_MAX_ERRORS];
} sg_config_errors_t;

/* sg_config_load() and sg_config_load_string() that fill *errs (reset
 * first) with every error; returns 0 (errs->n == 0) or -1 (errs->n >= 1).
 * Any thread. errs is about 26 KiB: allocate it, or make it static. */
int sg_config_load_all(const char *path, sg_config_t **out, sg_config_errors_t *errs) SG_MUST_CHECK;
int sg_config_load_string_all(const char *name, const char *yaml, size_t len, sg_config_t **out,
                              sg_config_errors_t *errs) SG_MUST_CHECK;

/* Generations shared between threads. */
sg_config_t *sg_config_retain(sg_config_t *cfg);
void sg_config_release(sg_config_t *cfg);

/* Shared value parsers (also used by tests and other modules).
 * Each returns 0 on success, -1 on a malformed or out-of-range input. */
int sg_parse_duration_ms(const char *s,
                         uint64_t *out_ms) SG_MUST_CHECK; /* "250ms" "5s" "5m" "1h" "1d"; bare number = seconds */
int sg_parse_size(const char *s, uint64_t *out_bytes) SG_MUST_CHECK; /* "512" "16k" "1m" "1g" (1024-based) */
int sg_parse_hostport(sg_arena_t *a, const char *s, sg_hostport_t *out) SG_MUST_CHECK;
/* Expands ${VAR} and ${VAR:-default}; nested braces are rejected.
 * Returns a string from `a`, or NULL with a reason in err. */
char *sg_expand_env(sg_arena_t *a, const char *s, char *err, size_t errlen);

/* An agent name (egress.users, the agent header's value): 1 to
 * SG_AGENT_NAME_MAX characters of A-Z a-z 0-9 . _ - (a metric label value
 * and a log field as it is). Any thread. */
#define SG_AGENT_NAME_MAX 64
bool sg_agent_name_ok(const char *s, size_t len);

const char *sg_listener_mode_name(sg_listener_mode_t m);
const char *sg_balance_name(sg_balance_t b);
const char *sg_log_level_name(sg_log_level_t l);

/* Every key path of the schema, in schema order, with "<name>" for map keys
 * and "[]" for list items (e.g. "upstreams.<name>.servers",
 * "routes[].match.prefix"). Fills up to cap entries of out (static strings)
 * and returns the total number of keys. Thread-safe. */
size_t sg_config_schema_keys(const char **out, size_t cap);

#endif /* SG_CONFIG_H */
