/* Declarations private to src/net: the worker, listener, connection,
 * transaction and upstream objects and the functions they call on each
 * other. Everything here runs on one worker thread.
 *
 * Scopes (STYLE.md section 4): worker > conn > txn; worker > upstream pool >
 * upconn. A txn leases one upconn at a time (sg__upconn_get / _release). */
#ifndef SG_NET_INT_H
#define SG_NET_INT_H

#include "sg/config.h"
#include "sg/egress.h"
#include "sg/http1.h"
#include "sg/listener.h"
#include "sg/mem.h"
#include "sg/obs.h"
#include "sg/reqrec.h"
#include "sg/router.h"
#include "sg/runtime.h"
#include "sg/trace.h"

#include <netinet/in.h>
#include <pthread.h>
#include <uv.h>

/* Read buffers: a typical API response (head + body up to ~32 KiB) comes
 * in one read and goes out in one writev; with 16 KiB, a 16 KiB body took
 * two reads and two writes. Buffers are lent only while bytes are pending:
 * an idle connection holds none. */
#define SG_BUF_SIZE 32768u
#define SG_LINGER_MS 1000u

typedef struct sg_worker sg_worker_t;
typedef struct sg_server sg_server_t; /* sg/worker.h (server.c): opaque here */
typedef struct sg_listener sg_listener_t;
typedef struct sg_conn sg_conn_t;
typedef struct sg_txn sg_txn_t;
typedef struct sg_upconn sg_upconn_t;
typedef struct sg_upstream sg_upstream_t;
typedef struct sg_upserver sg_upserver_t;
typedef struct sg_wreq sg_wreq_t;
typedef struct sg_egress sg_egress_t;           /* egress_proxy.c */
typedef struct sg_egress_dns sg_egress_dns_t;   /* egress_proxy.c */
typedef struct sg_egress_dest sg_egress_dest_t; /* egress_proxy.c */
typedef struct sg_wgen sg_wgen_t;
typedef struct sg_conn_ops sg_conn_ops_t;
typedef struct sg_handler_ops sg_handler_ops_t;

/* The request target of a checked head, as the handlers see it. */
typedef struct sg_req_target {
    sg_str_t target; /* as sent */
    sg_str_t host;   /* Host, or the absolute-form / CONNECT authority */
    sg_str_t path;   /* without the query; "/" when empty */
    sg_str_t query;
    bool is_absolute;
    bool is_connect;
} sg_req_target_t;

/* What a listener's mode does with a request: the handlers (reverse proxy:
 * proxy.c, sg__reverse_handler; egress: egress_proxy.c,
 * sg__egress_handler). The stream calls them through this table and they
 * call the stream; the stream never names a mode's code. Worker thread. */
struct sg_handler_ops {
    /* The head passed the common checks and no local answer took it:
     * choose where it goes (route; egress target, auth, allow-list). 0: go
     * on; -1: answered (the txn ended). */
    int (*on_head)(sg_txn_t *t, const sg_h1_head_t *h, const sg_req_target_t *tg);
    /* Pick a server (destination) and lease a connection: first, and again
     * when the stream's next-upstream decision says so. */
    void (*connect)(sg_txn_t *t);
    /* CONNECT: the destination accepted the connection (NULL: no CONNECT). */
    void (*on_connected)(sg_txn_t *t);
    /* Releases what the handler keeps in t (NULL: nothing). */
    void (*on_free)(sg_txn_t *t);
};

/* ---- intrusive list ---------------------------------------------------- */

typedef struct sg_link {
    struct sg_link *prev, *next;
} sg_link_t;

static inline void sg_list_init(sg_link_t *h)
{
    h->prev = h->next = h;
}
static inline bool sg_list_empty(const sg_link_t *h)
{
    return h->next == h;
}
static inline void sg_list_push(sg_link_t *h, sg_link_t *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}
static inline void sg_list_remove(sg_link_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* ---- timeouts (timeq.c) -------------------------------------------------- */

typedef struct sg_tmo sg_tmo_t;
typedef void (*sg_tmo_cb)(sg_tmo_t *t);

/* One timeout, embedded in its owner (conn, upconn). Owner: the embedding
 * object, which must sg__tmo_stop() it before it is freed. */
struct sg_tmo {
    sg_link_t link; /* in a worker queue while running */
    uint64_t deadline_ms;
    sg_tmo_cb cb;
};

#define SG_TQ_QUEUES 16u

typedef struct sg_tq_queue {
    uint64_t ms; /* the duration of every entry (FIFO = deadline order) */
    sg_link_t head;
} sg_tq_queue_t;

/* The worker's timeouts: one uv_timer for all of them. */
typedef struct sg_timeq {
    uv_timer_t timer;
    sg_tq_queue_t queues[SG_TQ_QUEUES]; /* the last one takes mixed durations, sorted */
    uint32_t n_queues;
    uint64_t armed_ms;
    bool is_armed;
} sg_timeq_t;

/* ---- buffers and writes ------------------------------------------------ */

typedef enum sg_buf_kind {
    SG_BK_NONE = 0,
    SG_BK_BUF,  /* SG_BUF_SIZE bytes from fl_buf */
    SG_BK_HEAD, /* w->head_size bytes from fl_head */
    SG_BK_EXT,  /* a local responder's body, freed through ext_free */
    SG_BK__COUNT
} sg_buf_kind_t;

typedef void (*sg_wreq_cb)(void *owner, int status);

/* One uv_write with the buffers it keeps alive. Owner: the write itself,
 * from sg__write() until its callback returns (then back to fl_wreq). */
struct sg_wreq {
    union {
        uv_write_t req;
        uv_shutdown_t sreq; /* a connection's shutdown (transport.c) */
        uv_connect_t creq;  /* an upstream connection's connect (transport.c) */
    };
    sg_worker_t *w;
    void *owner;
    sg_wreq_cb cb;
    char *hold[2];
    uint8_t hold_kind[2];
    void (*ext_free)(void *ud, const char *p);
    void *ext_ud;
};

/* ---- worker ------------------------------------------------------------ */

enum {
    SG_WORKER_CMD_DRAIN = 1u << 0,
    SG_WORKER_CMD_REPORT = 1u << 1,
    SG_WORKER_CMD_DRAIN_NOW = 1u << 2,
    SG_WORKER_CMD_FORCE = 1u << 5,  /* second drain request: close everything now */
    SG_WORKER_CMD_STOP = 1u << 3,   /* control thread: every worker is gone */
    SG_WORKER_CMD_RELOAD = 1u << 4, /* worker: adopt rt->gen; control thread: reload the config file */
};

/* A worker's view of one config generation: the config and the router and
 * upstream pools built for it. New transactions take the current one and
 * keep it to their end, so route/upstream indices and pools stay valid
 * across a reload (STYLE.md section 8).
 *
 * Owner: its worker; refcounted on the worker thread only (refs: 1 while
 * current + 1 per transaction). When it stops being current its idle
 * upstream connections are closed and no connection returns to its pools;
 * it is freed (sg__wgen_unref) once the last transaction ended and its name
 * resolutions called back. */
struct sg_wgen {
    sg_worker_t *w;
    sg_rtgen_t *rg;         /* retained */
    const sg_config_t *cfg; /* rg->cfg */
    sg_router_t *router;
    sg_upstream_t *ups;
    size_t n_ups;
    uint32_t refs;
    uint32_t n_resolving; /* uv_getaddrinfo requests in flight for this generation */
    bool is_current;
    sg_egress_t *egress;          /* forward-proxy state (egress listeners): DNS cache, destination pools */
    sg_h1_read_opts_t req_ro;     /* request heads under this generation's limits */
    sg_h1_read_opts_t resp_ro[2]; /* response heads; [1]: to a HEAD request (no body) */
};

/* A worker's way through a graceful shutdown (sg_server_drain), in order;
 * worker.c's set_drain() checks each move. */
typedef enum sg_drain_phase {
    SG_DRAIN_NONE = 0, /* serving */
    SG_DRAIN_DELAY,    /* shutdown.drain_delay_ms: still serving, readiness fails, every response closes */
    SG_DRAIN_ACTIVE,   /* listeners and idle connections closed; requests in flight finish */
    SG_DRAIN_FORCED,   /* drain timeout, a second drain or the control thread's stop: all closed */
    SG_DRAIN__COUNT
} sg_drain_phase_t;

/* Busy polling of one worker's loop (busypoll.c). Zeroed = off and no
 * handle open; the idle handle exists only while the loop spins. */
typedef struct sg_busypoll {
    uv_idle_t idle;
    uint64_t last_io_ns; /* uv_hrtime() of the last read */
    uint64_t max_ns;     /* spin while reads come closer than this; 0 = never */
    bool is_spinning;    /* idle handle open and started */
    bool is_closing;     /* idle handle closing: no new spin until its close callback */
} sg_busypoll_t;

/* What a loop thread is for. Zero is a proxy worker, so a zeroed
 * sg_worker_t (unit tests) is one. */
typedef enum sg_worker_role {
    SG_WORKER_PROXY = 0, /* one of rt->workers: the config's listeners, upstream pools, busy polling */
    SG_WORKER_CONTROL,   /* the control thread: the admin listener only, every request answered
                          * locally; no pools; hosts the poller and exporter (sg_server_opts_t) */
    SG_WORKER_ROLE__COUNT
} sg_worker_role_t;

/* What a worker reports to its owner (the server, server.c, a layer above
 * the worker: reached only through this table). Each runs on the worker's
 * thread; w->server is the owner's. */
typedef struct sg_worker_hooks {
    void (*on_start)(sg_worker_t *w);  /* the thread runs, before its loop */
    void (*on_reload)(sg_worker_t *w); /* control: SG_WORKER_CMD_RELOAD, re-read the config file */
    void (*on_stop)(sg_worker_t *w);   /* control: SG_WORKER_CMD_STOP, before it closes everything */
    void (*on_exit)(sg_worker_t *w);   /* its loop has closed: the thread's last act */
} sg_worker_hooks_t;

/* What the layers below the worker (conn.c, upstream.c) report to it:
 * worker.c fills w->notify at init and they call the inline wrappers in the
 * worker.c section below, so no call from below names worker.c (layers:
 * tools/layers.map). */
typedef struct sg_worker_notify {
    /* a connection accepted on l closed: its listener reference goes back;
     * resume accepting, or finish a drain */
    void (*conn_gone)(sg_worker_t *w, sg_listener_t *l);
    void (*resolved)(sg_worker_t *w); /* the start-up name resolutions are done (w->n_resolving 0) */
    /* generation.c's, for the transactions and resolutions that hold a
     * generation (sg__wgen_unref, sg__wgen_resolved below) */
    void (*gen_unref)(sg_wgen_t *g);
    void (*gen_resolved)(sg_wgen_t *g);
} sg_worker_notify_t;

/* What the server gives a worker at init (sg__worker_init). */
typedef struct sg_worker_conf {
    sg_worker_role_t role;
    uint32_t idx;        /* proxy: its index in rt->workers (and rg->lfds) */
    sg_server_t *server; /* the owner, opaque here */
    const sg_worker_hooks_t *hooks;
    sg_runtime_t *rt;
    sg_config_t *cfg;                /* the start-up config */
    sg_worker_pub_t *pub;            /* rt->workers[idx]; the control thread's own */
    sg_local_responder_cb health_cb; /* /health* on serve_health listeners (sg_server_opts_t) */
    void *health_ud;
} sg_worker_conf_t;

/* A loop thread's world: a proxy worker or the control thread (role).
 * Owner: sg_server_t; set up by sg__worker_init, freed by sg__worker_free
 * after the thread has joined. */
struct sg_worker {
    sg_worker_role_t role;
    uint32_t idx;   /* proxy: index in rt->workers; 0 on the control thread (not one of them) */
    char label[24]; /* "worker 3" or "control thread", for log lines */
    uv_loop_t loop;
    pthread_t thread;
    sg_server_t *server;
    const sg_worker_hooks_t *hooks;
    const sg_worker_notify_t *notify;
    sg_local_responder_cb health_cb;
    void *health_ud;
    const sg_config_t *boot_cfg; /* start-up config: sizes fixed at start (head buffers, listeners) */
    sg_wgen_t *gen;              /* current generation: per-request settings, router, pools */
    sg_runtime_t *rt;
    sg_worker_pub_t *pub;
    sg_obs_worker_t *obs;

    sg_freelist_t fl_conn, fl_txn, fl_upconn, fl_buf, fl_head, fl_wreq;
    uint64_t trim_released; /* freelists' released_bytes at the last malloc_trim (worker.c) */
    uint64_t trim_seen;     /* ... at the last tick */
    uint64_t n_trims;
    size_t head_size;  /* bytes of one fl_head object */
    size_t head_bytes; /* head text capacity; header slots follow */
    size_t head_max_hdrs;
    sg_h1_limits_t req_limits;
    sg_h1_limits_t resp_limits;

    sg_listener_t **listeners; /* the current generation's (listener.c) */
    size_t n_listeners;

    sg_link_t conns;
    uint32_t n_conns;
    uint64_t n_requests;

    sg_timeq_t tq;
    uv_timer_t tick;
    uv_prepare_t prepare;
    /* Transactions ended during this loop turn (sg__txn_free): their memory
     * goes back to fl_txn from on_prepare, when no callback is on the stack,
     * so a frame below the one that ended a transaction never holds a freed
     * pointer (Redis' freeClientAsync, h2o's delayed free). */
    sg_txn_t *txn_graveyard;
    /* Pooled upstream connections handed out this turn, told they are
     * ready from on_prepare (upstream.c: sg__upconn_run_ready). */
    sg_link_t ready_q;
    /* How upstream connections move bytes: sg__tp_tcp (worker.c); the unit
     * tests put a fake one here (test/unit/fake_tp.c). */
    const struct sg_tp_vt *upstream_tp;
    uv_async_t async;
    _Atomic unsigned cmd;
    pthread_mutex_t post_mu; /* sg__worker_post vs. the worker closing async */
    bool is_async_closed;    /* guarded by post_mu */
    uv_timer_t drain_timer;
    sg_drain_phase_t drain_phase;
    bool is_draining; /* no new requests on keep-alive connections */
    bool is_stopping; /* handles being closed */
    int n_resolving;
    bool is_started;
    sg_busypoll_t busypoll; /* zeroed (off) at start; window set from each adopted generation */
};

/* ---- listener ---------------------------------------------------------- */

/* One listening socket of one worker. Owner: that worker; refcounted by
 * the worker's listener set and by every connection accepted on it, so a
 * listener a reload removed stays valid for its connections after its
 * socket is closed. */
struct sg_listener {
    uv_tcp_t tcp;
    sg_worker_t *w;
    int32_t idx;                     /* metrics index (sg_rtgen_t.listener_metric); -1: admin */
    const sg_listener_conf_t *conf;  /* in cfg (the admin's: the server's) */
    sg_config_t *cfg;                /* retained; NULL for the admin listener */
    int fd;                          /* bound+listening socket, until the handle owns it */
    sg_local_responder_cb responder; /* all requests answered locally when set */
    void *responder_ud;
    const sg_conn_ops_t *conn_ops;   /* the stream's table, for the connections accepted here */
    const sg_handler_ops_t *handler; /* by mode (sg__listener_set_conf) */
    sg_tls_server_t *tls;            /* retained; NULL: plain TCP */
    sg_local_responder_cb health_cb; /* /health* when serve_health */
    void *health_ud;
    uint32_t refs;
    uint32_t pending_accepts; /* connections the kernel has ready but we paused */
    bool is_open;
    bool is_closed;
    bool is_closing; /* uv_close called, callback pending */
    char addr[64];   /* bound address, the key a reload matches sockets by */
};

/* ---- transport (transport.c) --------------------------------------------- */

typedef struct sg_tp sg_tp_t;

/* How a transport tells its owner what happened. Worker thread. */
typedef struct sg_tp_cbs {
    /* status > 0: that many bytes were appended to tp->rbuf; 0: nothing
     * (no buffer to lend: reading stopped); < 0: end of stream (UV_EOF) or
     * a read error; reading stopped. */
    void (*on_read)(sg_tp_t *tp, ssize_t status);
    void (*on_write)(sg_tp_t *tp, int status);    /* a queued write finished (status < 0: it failed) */
    void (*on_shutdown)(sg_tp_t *tp, int status); /* the half-close (sg__tp_shutdown) is done */
    void (*on_closed)(sg_tp_t *tp);               /* after sg__tp_close: the owner may free its memory */
    /* TLS only: the handshake ended (0) or failed (< 0: the owner closes;
     * sg_tls_conn_error(sg__tp_tls_conn(tp)) says why). */
    void (*on_secure)(sg_tp_t *tp, int status);
    /* Upstream side: the connect (sg__tp_connect) ended (0) or failed. */
    void (*on_connect)(sg_tp_t *tp, int status);
} sg_tp_cbs_t;

typedef struct sg_tp_tls sg_tp_tls_t; /* transport_tls.c */

/* The buffers a write keeps alive until it is done (sg__write's holds). */
typedef struct sg_tp_hold {
    char *p[2];
    uint8_t kind[2]; /* sg_buf_kind_t */
    void (*ext_free)(void *ext_ud, const char *ext);
    void *ext_ud;
} sg_tp_hold_t;

/* How bytes move: plain TCP (sg__tp_tcp), later TLS; a fake in the unit
 * tests. A read lands in sg__tp_read_room() memory and is reported with
 * sg__tp_on_read(); a queued write's end with sg__tp_on_write(). */
typedef struct sg_tp_vt {
    void (*want_read)(sg_tp_t *tp, bool want); /* keeps tp->is_reading */
    /* sg__write's contract: 1 written at once, 0 queued (on_write follows),
     * < 0 failed; the holds are released in every case but 0. */
    int (*write)(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, const sg_tp_hold_t *h);
    int (*shutdown)(sg_tp_t *tp);        /* FIN once queued bytes are out; cbs->on_shutdown */
    size_t (*queued)(const sg_tp_t *tp); /* bytes not yet handed to the kernel (back-pressure) */
    void (*close)(sg_tp_t *tp);          /* cbs->on_closed follows, never inside this call */
    /* Upstream side (NULL in a table that only wraps a connected one, as
     * TLS does): open makes the socket (< 0: nothing to close, the owner
     * frees its memory); connect starts the connect (cbs->on_connect
     * follows, never inside this call; < 0: failed at once, the owner
     * closes). */
    int (*open)(sg_tp_t *tp);
    int (*connect)(sg_tp_t *tp, const struct sockaddr *addr);
} sg_tp_vt_t;

extern const sg_tp_vt_t sg__tp_tcp;

/* One stream socket's bytes. Embedded first in its owner (sg_conn_t,
 * sg_upconn_t), which closes it (sg__tp_close) and is freed in on_closed. */
struct sg_tp {
    uv_tcp_t tcp; /* plain TCP: the socket (tcp.data = the transport; tcp.loop = its worker's, see sg__tp_w) */
    const sg_tp_vt_t *vt;
    const sg_tp_cbs_t *cbs;
    char *rbuf;          /* SG_BUF_SIZE, lent when a read comes; NULL when nothing is pending */
    uint16_t rpos, rlen; /* within rbuf (SG_BUF_SIZE fits) */
    /* Packed with the two flags: 8 bytes for the three (an idle connection's
     * memory, sg_conn_t). */
    uint32_t n_writes : 30; /* queued, not finished */
    uint32_t is_reading : 1;
    uint32_t is_closing : 1;
};
_Static_assert(SG_BUF_SIZE <= UINT16_MAX, "rpos and rlen are 16 bits");

void sg__tp_init(sg_tp_t *tp, sg_worker_t *w, const sg_tp_vt_t *vt, const sg_tp_cbs_t *cbs);
/* The worker a transport belongs to, through its handle's loop (w->loop.data
 * is the worker): one pointer less in every connection (idle connections'
 * memory, docs/performance.md). */
static inline sg_worker_t *sg__tp_w(const sg_tp_t *tp)
{
    return (sg_worker_t *)tp->tcp.loop->data;
}
static inline bool sg__tp_pending(const sg_tp_t *tp)
{
    return tp->rbuf && tp->rpos < tp->rlen;
}
static inline size_t sg__tp_queued(const sg_tp_t *tp)
{
    return tp->vt->queued(tp);
}
static inline void sg__tp_want_read(sg_tp_t *tp, bool want)
{
    if (want != tp->is_reading)
        tp->vt->want_read(tp, want);
}
static inline int sg__tp_shutdown(sg_tp_t *tp)
{
    return tp->vt->shutdown(tp);
}
/* Upstream side: after sg__tp_init, the socket, then the connect. */
static inline int sg__tp_open(sg_tp_t *tp)
{
    return tp->vt->open(tp);
}
static inline int sg__tp_connect(sg_tp_t *tp, const struct sockaddr *addr)
{
    return tp->vt->connect(tp, addr);
}
void sg__buf_put(sg_worker_t *w, char *b); /* write.c */
/* The read buffer goes back once everything in it was taken. */
static inline void sg__tp_release_rbuf_if_empty(sg_tp_t *tp)
{
    if (tp->rbuf && tp->rpos >= tp->rlen) {
        sg__buf_put(sg__tp_w(tp), tp->rbuf);
        tp->rbuf = NULL;
        tp->rpos = tp->rlen = 0;
    }
}
void sg__tp_drop_rbuf(sg_tp_t *tp);
/* Hands the n pending bytes at rpos to the caller with their buffer (*buf,
 * which the caller now owns; they start at *p); bytes after them move to a
 * new buffer. 0 or UV_ENOMEM (nothing changed). */
int sg__tp_take_rest(sg_tp_t *tp, size_t n, char **buf, const char **p) SG_MUST_CHECK;
static inline int sg__tp_take(sg_tp_t *tp, size_t n, char **buf, const char **p)
{
    if (tp->rpos + n < tp->rlen)
        return sg__tp_take_rest(tp, n, buf, p);
    *buf = tp->rbuf; /* all of it: the buffer goes as it is */
    *p = tp->rbuf + tp->rpos;
    tp->rbuf = NULL;
    tp->rpos = tp->rlen = 0;
    return 0;
}
/* For a transport implementation: where the next read goes (*room bytes;
 * NULL when no buffer can be lent), and what came. */
char *sg__tp_read_room(sg_tp_t *tp, size_t *room);
void sg__tp_on_read(sg_tp_t *tp, ssize_t status);
void sg__tp_on_write(sg_tp_t *tp, int status);
/* sg__write's contract (1 written at once, 0 queued: on_write follows, < 0
 * failed; hold released in every case but 0). */
int sg__tp_write(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind) SG_MUST_CHECK;
int sg__tp_write2(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0, char *hold1,
                  sg_buf_kind_t kind1) SG_MUST_CHECK;
int sg__tp_write_ext(sg_tp_t *tp, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                     void (*ext_free)(void *, const char *), void *ext_ud) SG_MUST_CHECK;
/* Stops reading, gives the read buffer back and closes (once). */
void sg__tp_close(sg_tp_t *tp);

/* ---- TLS on the transport (transport_tls.c) ---- */
/* Puts the TCP transport tp (socket open, not reading yet) under TLS on
 * connection c (taken, freed with tp): reads feed the handshake, then
 * plaintext flows; cbs->on_secure reports the handshake's end. 0 or
 * UV_ENOMEM (c freed). */
int sg__tp_tls_start(sg_tp_t *tp, sg_tls_conn_t *c) SG_MUST_CHECK;
/* Client side: sends the ClientHello. 0 or a UV error. */
int sg__tp_tls_connect(sg_tp_t *tp) SG_MUST_CHECK;
/* The record driver of a TLS transport (version, SNI, errors), NULL for TCP. */
sg_tls_conn_t *sg__tp_tls_conn(const sg_tp_t *tp);
/* Frees the TLS state (from the close; a no-op for TCP). */
void sg__tp_tls_free(sg_tp_t *tp);

/* ---- client connection ------------------------------------------------- */

typedef enum sg_conn_state {
    SG_CONN_IDLE = 0, /* between requests, no buffers */
    SG_CONN_HEAD,     /* reading a request head */
    SG_CONN_BODY,     /* head dispatched, reading the request body */
    SG_CONN_WAIT,     /* request complete, response under way */
    SG_CONN_TUNNEL,   /* after 101: bytes both ways */
    SG_CONN_LINGER,   /* last response sent, FIN sent, discarding input */
    SG_CONN_CLOSED,   /* uv_close called */
    SG_CONN__COUNT
} sg_conn_state_t;

enum {
    SG_CONN_F_CLOSE_AFTER = 1u << 1, /* close once the current response is written */
    SG_CONN_F_PAUSED_UP = 1u << 2,   /* reading stopped: upstream write queue full */
    SG_CONN_F_GOT_BYTES = 1u << 3,   /* any byte of the current head arrived */
    SG_CONN_F_SHUTDOWN = 1u << 4,
    SG_CONN_F_EOF = 1u << 5,
    SG_CONN_F_TLS_REPORTED = 1u << 6, /* its TLS handshake was counted */
};

/* What a client connection (the client-side HTTP/1 endpoint, conn.c) tells
 * the stream that owns its current exchange (proxy.c): conn.c never calls
 * the stream's code or reads a transaction's fields, only this table
 * (sg_listener_t.conn_ops). Worker thread. */
struct sg_conn_ops {
    /* A request starts: its transaction, with the reader the head goes into
     * and the reader's options. NULL: out of memory (the connection closes). */
    sg_txn_t *(*begin)(sg_conn_t *c);
    /* Where the request's head reader (its ro set by begin) is in the
     * stream's transaction: the connection keeps no pointer to it (an idle
     * connection's memory). */
    size_t rd_offset;
    void (*on_head)(sg_txn_t *t); /* the head is parsed (rd->parser.head) */
    /* The head was refused (or timed out): status and why (the stream
     * answers and ends the exchange). */
    void (*on_head_error)(sg_txn_t *t, int status, const char *why);
    bool (*can_take_body)(const sg_txn_t *t); /* flow control: body (or tunnel) bytes may come */
    /* Body bytes [p, p+n) in buf, whose ownership moves to the stream. */
    void (*on_body)(sg_txn_t *t, char *buf, const char *p, size_t n);
    void (*on_body_done)(sg_txn_t *t);
    /* A refused body, a body timeout: an answer if none started, else the
     * connection closes. */
    void (*on_error)(sg_txn_t *t, int status, const char *why);
    void (*on_tunnel)(sg_txn_t *t, char *buf, const char *p, size_t n); /* tunnel bytes, owned as on_body */
    void (*on_tunnel_eof)(sg_txn_t *t);                                 /* the client sent FIN in a tunnel */
    void (*on_drained)(sg_txn_t *t);                                    /* a write to the client finished */
    /* The connection closes with the exchange alive (why: NULL or the
     * reason for the record); the stream ends it. */
    void (*on_close)(sg_txn_t *t, const char *why);
};

/* A client connection. Owner: its worker (w->conns); freed in on_conn_close
 * after both embedded handles closed (sg__conn_close). */
struct sg_conn {
    sg_tp_t tp; /* first: the close callback's handle is the connection (its worker: sg__tp_w) */
    sg_tmo_t tmo;
    sg_link_t link;
    sg_listener_t *lst; /* referenced until the connection is freed; its conn_ops are the stream's */
    sg_txn_t *txn;      /* current request (one at a time: pipelined requests wait in rbuf) */
    uint32_t n_requests;
    int32_t lidx;  /* lst->idx when accepted (its connection gauge) */
    uint8_t state; /* sg_conn_state_t */
    uint8_t flags; /* SG_CONN_F_* */
    uint8_t timer_kind;
    bool is_processing;
    struct {
        uint8_t family; /* AF_INET, AF_INET6; 0 unknown */
        uint16_t port;
        uint8_t addr[16];
    } peer; /* text: sg__conn_peer_text() */
};
_Static_assert(sizeof(sg_conn_t) <= 376, "an idle keep-alive connection's memory (docs/performance.md)");

/* An idle keep-alive connection holds this struct only: no transaction, no
 * read buffer, no head, no timer handle (DESIGN: per-connection memory while
 * idle). Request state (head, scanner, parser) lives in the txn. */

/* ---- transaction ------------------------------------------------------- */

typedef enum sg_txn_state {
    SG_TXN_HEAD = 0,   /* head being read */
    SG_TXN_CONNECTING, /* waiting for an upstream connection */
    SG_TXN_SENT,       /* request head sent, waiting for the response head */
    SG_TXN_RESP_BODY,  /* response head sent to the client, body streaming */
    SG_TXN_TUNNEL,     /* upgraded */
    SG_TXN_LOCAL,      /* answered by swarmgate (error or local responder) */
    SG_TXN_DONE,       /* response complete */
    SG_TXN__COUNT
} sg_txn_state_t;

enum {
    SG_TXN_F_REQ_DONE = 1u << 0,   /* request fully received */
    SG_TXN_F_SENT_ANY = 1u << 1,   /* some request byte went to an upstream */
    SG_TXN_F_EXPECT = 1u << 2,     /* Expect: 100-continue */
    SG_TXN_F_CONTINUE = 1u << 3,   /* we sent 100 Continue */
    SG_TXN_F_HEAD_REQ = 1u << 4,   /* HEAD request */
    SG_TXN_F_UPGRADE = 1u << 5,    /* upgrade requested */
    SG_TXN_F_CLIENT_KA = 1u << 6,  /* client allows keep-alive */
    SG_TXN_F_DECODE = 1u << 7,     /* de-chunk response for an HTTP/1.0 client */
    SG_TXN_F_RESP_CLOSE = 1u << 8, /* response delimited by close / conn must close */
    SG_TXN_F_INFLIGHT = 1u << 9,
    SG_TXN_F_REQ_BODY = 1u << 10,     /* request has a body */
    SG_TXN_F_RESP_HEAD = 1u << 11,    /* response head written to the client */
    SG_TXN_F_EGRESS = 1u << 12,       /* forward-proxy request on an egress listener */
    SG_TXN_F_CONNECT = 1u << 13,      /* CONNECT: a tunnel once the destination is connected */
    SG_TXN_F_TUN_CLI_EOF = 1u << 14,  /* tunnel: the client sent FIN */
    SG_TXN_F_TUN_UP_EOF = 1u << 15,   /* tunnel: the upstream sent FIN */
    SG_TXN_F_TUN_UP_SHUT = 1u << 16,  /* tunnel: FIN passed on to the upstream */
    SG_TXN_F_TUN_CLI_SHUT = 1u << 17, /* tunnel: FIN passed on to the client */
    SG_TXN_F_REPLAY = 1u << 18,       /* sent on a reused pooled connection and may be sent again (t->uphead kept) */
    SG_TXN_F_FRESH = 1u << 19,        /* take a new upstream connection, not a pooled one */
    SG_TXN_F_FREED = 1u << 20,        /* ended: on w->txn_graveyard until the loop turn ends */
};

typedef enum sg_fail {
    SG_FAIL_CONNECT = 0,
    SG_FAIL_TLS,     /* the TLS handshake with the server failed (verification, protocol) */
    SG_FAIL_TIMEOUT, /* connect or response-head timeout */
    SG_FAIL_RESET,   /* closed/reset before a complete response head */
    SG_FAIL_BAD_RESPONSE,
    SG_FAIL__COUNT
} sg_fail_t;

#define SG_TXN_MAX_TRIED 4u

/* After an upstream failure (sg__next_upstream). */
typedef enum sg_next {
    SG_NEXT_FAIL = 0,     /* answer 502/504 */
    SG_NEXT_RESEND,       /* the same server, on a new connection */
    SG_NEXT_OTHER_SERVER, /* pick again, skipping the servers tried */
    SG_NEXT_ABORT,        /* the response started: close the client connection */
} sg_next_t;

/* One request/response. Owner: its conn (c->txn); freed by sg__txn_free. */
struct sg_txn {
    sg_conn_t *conn;
    sg_txn_t *_next_dead;            /* w->txn_graveyard link once SG_TXN_F_FREED */
    sg_wgen_t *gen;                  /* the generation it started with (a reference) */
    const sg_handler_ops_t *handler; /* its listener's mode, when it started */
    sg_upconn_t *up;
    sg_txn_state_t state;
    uint32_t flags;
    int32_t route_idx;
    int32_t ups_idx;
    int32_t srv_idx;
    int32_t tried[4]; /* servers picked, in order (SG_TXN_MAX_TRIED) */
    uint32_t n_tries;
    uint16_t resp_status;
    sg_fail_t last_fail;
    bool is_reportable; /* a status was sent or the head was parsed */
    bool has_trace;

    char *uphead; /* serialized upstream request head (fl_head) until written (until answered: SG_TXN_F_REPLAY) */
    size_t uphead_len;
    sg_h1_reader_t rd; /* request: head (fl_head) while it is read and parsed, slices into it; the body parser after */
    char peer_ip[INET6_ADDRSTRLEN];
    char peer[INET6_ADDRSTRLEN + 8];
    char *resp_head; /* client response head (fl_head) not yet written: it goes
                        out with the first body bytes in one writev */
    size_t resp_head_len;

    sg_reqrec_t rec;
    sg_trace_ctx_t trace;
    const char *error;
    char path[256];
    char host[256];
    char server[64];
    sg_upserver_t *srv; /* server being tried: w->ups[ups_idx].servers[srv_idx], or an egress destination */

    /* Egress only (SG_TXN_F_EGRESS). */
    struct {
        sg_egress_target_t target;
        int32_t name_rule;                 /* host rule naming target.host, -1 */
        sg_egress_verdict_t name_verdict;  /* why no host rule matched */
        sg_link_t wait;                    /* in dns->waiters while resolving */
        sg_egress_dns_t *dns;              /* cache entry waited on, NULL */
        sg_egress_dest_t *dest;            /* destination, holds a reference; NULL */
        char agent[SG_AGENT_NAME_MAX + 1]; /* who sent it (rec.agent points here), "" = unknown */
        bool is_https;                     /* absolute-form https:// target: swarmgate speaks TLS to it */
    } eg;
};

/* ---- upstreams --------------------------------------------------------- */

typedef enum sg_upc_state {
    SG_UPC_CONNECTING = 0,
    SG_UPC_ACTIVE, /* leased to a txn */
    SG_UPC_IDLE,   /* in the pool */
    SG_UPC_CLOSED,
    SG_UPC__COUNT
} sg_upc_state_t;

typedef enum sg_upc_phase {
    SG_UPC_P_HEAD = 0,
    SG_UPC_P_BODY,
    SG_UPC_P_DONE,
    SG_UPC_P_TUNNEL,
    SG_UPC_P__COUNT
} sg_upc_phase_t;

enum {
    SG_UPC_F_PAUSED = 1u << 1, /* reading stopped: client write queue full */
    SG_UPC_F_REUSED = 1u << 2,
    SG_UPC_F_NO_REUSE = 1u << 3,
    SG_UPC_F_EOF = 1u << 4,
    SG_UPC_F_RESET = 1u << 5,         /* read error other than EOF (reset) */
    SG_UPC_F_HEAD_REQ = 1u << 6,      /* the request is HEAD: its response has no body */
    SG_UPC_F_DECODE = 1u << 7,        /* the body is de-chunked (for an HTTP/1.0 client) */
    SG_UPC_F_READY_PENDING = 1u << 8, /* leased from the pool: in w->ready_q (link) until its turn */
};

/* What an upstream connection tells the transaction leasing it (the
 * stream, proxy.c): the upstream endpoint never calls into its owner's
 * code, only through this table. Worker thread. */
/* What the owner says of a response head (sg_upconn_ops_t.on_head). */
typedef enum sg_uphead_next {
    SG_UPH_STOP = 0,     /* the owner ended or failed the exchange: stop reading */
    SG_UPH_AGAIN,        /* an interim (1xx) head: read the next head */
    SG_UPH_BODY,         /* a body follows, passed on as it came */
    SG_UPH_BODY_DECODED, /* a chunked body follows, passed on de-chunked */
    SG_UPH_DONE,         /* no body: the response is complete */
    SG_UPH_TUNNEL,       /* 101: the owner made the connection a tunnel (sg__upconn_tunnel) */
} sg_uphead_next_t;

typedef struct sg_upconn_ops {
    void (*on_ready)(sg_txn_t *t); /* connected, or a pooled one handed out (next loop turn) */
    /* A response head, parsed (valid during the call only). */
    sg_uphead_next_t (*on_head)(sg_txn_t *t, const sg_h1_head_t *h);
    /* Body bytes [p, p+n) in buf, whose ownership moves to the owner (n may
     * be 0 when de-chunking gave nothing). */
    void (*on_body)(sg_txn_t *t, char *buf, const char *p, size_t n);
    void (*on_done)(sg_txn_t *t);                                       /* the response is complete */
    bool (*can_tunnel)(const sg_txn_t *t);                              /* tunnel bytes may be handed over now */
    void (*on_tunnel)(sg_txn_t *t, char *buf, const char *p, size_t n); /* owned as on_body */
    void (*on_tunnel_eof)(sg_txn_t *t, bool is_reset);
    void (*on_read_end)(sg_txn_t *t); /* a read was processed */
    void (*on_broken)(sg_txn_t *t,
                      const char *why); /* a response that cannot be completed (bad body, closed mid-body) */
    void (*on_timeout)(sg_txn_t *t);    /* the timer the owner armed (sg__upconn_timer) ran out */
    void (*on_drained)(sg_txn_t *t);    /* a queued write finished */
    /* Failed before anything could be read (connect error, bytes before the
     * request): the owner gives the connection back. */
    void (*on_error)(sg_txn_t *t, sg_fail_t kind, const char *why);
    void (*on_write_failed)(sg_txn_t *t, const char *why); /* a write or the half-close failed */
} sg_upconn_ops_t;

/* An upstream connection. Owner: the pool (idle) or the txn leasing it;
 * freed in on_upc_close (sg__upconn_close). */
struct sg_upconn {
    sg_tp_t tp; /* first: the close callback's handle is the connection */
    sg_tmo_t tmo;
    sg_link_t link; /* in server idle list */
    sg_worker_t *w;
    sg_upstream_t *ups;
    sg_upserver_t *srv;
    sg_txn_t *txn;              /* the lessee, told of events through ops */
    const sg_upconn_ops_t *ops; /* while leased */
    sg_upc_state_t state;
    sg_upc_phase_t phase;
    uint32_t flags;
    uint8_t timer_kind;
    bool is_leased;
    sg_h1_reader_t rd; /* response: head (fl_head) while it is read and parsed; the body parser after */
    char *dbuf;        /* decode-mode output buffer (fl_buf) during one read pass */
    size_t dlen;
};

struct sg_upserver {
    const sg_hostport_t *hp;
    struct sockaddr_storage addr;
    bool is_resolved;
    bool is_resolving;
    uv_getaddrinfo_t gai;
    sg_upstream_t *ups;
    int32_t idx;
    sg_server_pub_t *pub;
    sg_link_t idle;
    uint32_t n_idle;
    uint32_t in_flight;
    sg_tls_session_t *tls_session; /* the newest resumable TLS session from this server (this worker) */
    const char *tls_host;          /* the name sent as SNI and verified (hp->host, or an egress target's) */
    char name[64];                 /* "host:port" */
};

struct sg_upstream {
    sg_worker_t *w;
    sg_wgen_t *gen;
    int32_t idx;
    const sg_upstream_conf_t *conf;
    sg_tls_client_t *tls; /* the generation's (rg->tls_clients); NULL: plain TCP */
    sg_upserver_t *servers;
    size_t n_servers;
    uint32_t rr;
};

/* ---- write.c ----------------------------------------------------------- */
/* A read buffer (SG_BUF_SIZE) / head buffer (w->head_size) from w's
 * freelists, and back. NULL when out of memory. */
char *sg__buf_get(sg_worker_t *w);
void sg__buf_put(sg_worker_t *w, char *b);
char *sg__head_get(sg_worker_t *w);
void sg__head_put(sg_worker_t *w, char *b);
/* Writes iov to s; `hold` (kind) is released when the write finishes.
 * Returns 1 when it was written at once (hold released, cb never called),
 * 0 when queued (cb called when done), or a UV error (hold released). */
int sg__write(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind,
              sg_wreq_cb cb, void *owner) SG_MUST_CHECK;
/* The same with two held buffers (a response head and its first body bytes
 * in one writev). */
int sg__write2(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0,
               char *hold1, sg_buf_kind_t kind1, sg_wreq_cb cb, void *owner) SG_MUST_CHECK;
int sg__write_ext(sg_worker_t *w, uv_stream_t *s, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                  void (*ext_free)(void *, const char *), void *ext_ud, sg_wreq_cb cb, void *owner) SG_MUST_CHECK;

/* ---- worker.c ---------------------------------------------------------- */
/* Sets up w for conf on the calling thread (main, before any worker runs):
 * loop, freelists, timers, async, observability, generation. The control
 * thread's admin listener is the server's to add. 0 or a UV error (w is
 * then dropped with the process). */
int sg__worker_init(sg_worker_t *w, const sg_worker_conf_t *conf) SG_MUST_CHECK;
/* The thread (pthread_create's start routine; arg: the sg_worker_t). */
void *sg__worker_main(void *arg);
/* After the thread has joined. */
void sg__worker_free(sg_worker_t *w);
/* Any thread: ORs cmd (SG_WORKER_CMD_*) into w->cmd and wakes its loop; a
 * no-op once the worker has closed its async handle. */
void sg__worker_post(sg_worker_t *w, unsigned cmd);
/* A connection closed (conn.c). */
static inline void sg__worker_conn_gone(sg_worker_t *w, sg_listener_t *l)
{
    if (w->notify)
        w->notify->conn_gone(w, l);
}
/* A name resolution ended and w->n_resolving is 0 (upstream.c). */
static inline void sg__worker_resolved(sg_worker_t *w)
{
    if (w->notify)
        w->notify->resolved(w);
}
/* A new connection may be accepted: not draining, under
 * limits.max_connections. */
static inline bool sg__worker_can_accept(const sg_worker_t *w)
{
    return !w->is_draining && w->n_conns < w->gen->cfg->limits.max_connections;
}
/* The descriptor cap (runtime client_conn_cap over all workers, or
 * admin_conn_cap for the control thread) is reached: refuse, do not wait. */
static inline bool sg__worker_over_conn_cap(const sg_worker_t *w)
{
    const sg_runtime_t *rt = w->rt;
    if (w->role == SG_WORKER_CONTROL)
        return rt->admin_conn_cap && w->n_conns >= rt->admin_conn_cap;
    if (!rt->client_conn_cap)
        return false;
    /* Every worker's own count (relaxed: each publishes it at accept and
     * close). Workers accepting at the same moment can pass the cap by at
     * most one connection each; the reserve covers that. */
    uint64_t n = 0;
    for (uint32_t i = 0; i < rt->n_workers; i++)
        n += atomic_load_explicit(&rt->workers[i].connections, memory_order_relaxed);
    return n >= rt->client_conn_cap;
}

/* ---- timeq.c ----------------------------------------------------------- */
void sg__tq_init(sg_worker_t *w);
void sg__tq_close(sg_worker_t *w, uv_close_cb cb);
void sg__tmo_init(sg_tmo_t *t, sg_tmo_cb cb);
/* (Re)starts t: cb runs once `ms` from now (0: on the next loop turn, never
 * inside the caller's stack). O(1). */
void sg__tmo_start(sg_worker_t *w, sg_tmo_t *t, uint64_t ms);
void sg__tmo_stop(sg_tmo_t *t);

/* ---- busypoll.c ---------------------------------------------------------- */
/* Notes a read on one of w's sockets (worker thread, from read callbacks):
 * while reads keep coming less than the window apart the loop polls
 * without sleeping. A no-op while the window is 0 (off; the control thread). */
void sg__busypoll_io_slow(sg_worker_t *w);
static inline void sg__busypoll_io(sg_worker_t *w)
{
    if (w->busypoll.max_ns) /* 0: off, the common case */
        sg__busypoll_io_slow(w);
}
/* Sets w's window (config `busy_poll`, microseconds; 0 = off). A spin in
 * progress ends at its next turn if the new window says so. Worker thread. */
void sg__busypoll_set(sg_worker_t *w, uint32_t window_us);

/* ---- bind.c ------------------------------------------------------------ */
/* Binds g's listeners, n_workers SO_REUSEPORT sockets each, into g->lfds
 * and g->laddr. A listener that prev (the current generation, NULL at
 * start-up) has under the same configured address (port 0: and name)
 * keeps prev's sockets: those no worker took yet move into g. On failure
 * nothing moved and the new sockets close with g: -1 with
 * "listener NAME: bind ADDR: reason" in err. */
int sg__bind_gen(sg_rtgen_t *g, sg_rtgen_t *prev, uint32_t n_workers, char *err, size_t errlen) SG_MUST_CHECK;
/* The admin listener's socket for cfg->admin into *fd_out (-1: disabled)
 * and its bound address into addr. No SO_REUSEPORT: a second instance on
 * the same admin address fails loudly. 0, or -1 with err. */
int sg__bind_admin(const sg_config_t *cfg, int *fd_out, char *addr, size_t addr_cap, char *err,
                   size_t errlen) SG_MUST_CHECK;

/* ---- listener.c -------------------------------------------------------- */
/* A listener (refs 1) on the bound, listening socket fd (taken). */
sg_listener_t *sg__listener_new(sg_worker_t *w, int fd, const char *addr);
/* Points l at conf inside cfg (retained; NULL for the admin listener). */
void sg__listener_set_conf(sg_listener_t *l, sg_config_t *cfg, const sg_listener_conf_t *conf, int32_t idx,
                           sg_tls_server_t *tls);
/* Starts accepting; a no-op when already started or closed. */
int sg__listener_start(sg_listener_t *l) SG_MUST_CHECK;
/* Stops accepting and closes the socket (connections stay). */
void sg__listener_close(sg_listener_t *l);
void sg__listener_unref(sg_listener_t *l);
/* A connection slot freed: accept what the kernel queued meanwhile. */
void sg__listener_resume(sg_worker_t *w);

/* ---- conn.c ------------------------------------------------------------ */
void sg__conn_accepted(sg_listener_t *l);
/* A connection whose transport (vt; c->tp.tcp set up for plain TCP) is
 * ready: it joins l's worker and starts reading its first request. c is
 * zeroed but for its transport and peer address. */
void sg__conn_start(sg_conn_t *c, sg_listener_t *l, const sg_tp_vt_t *vt, sg_tls_conn_t *tls);
void sg__conn_close(sg_conn_t *c);
/* Queue bytes to the client (sg__write's return values). */
int sg__conn_write(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind) SG_MUST_CHECK;
int sg__conn_write_ext(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold, const char *ext,
                       void (*ext_free)(void *, const char *), void *ext_ud) SG_MUST_CHECK;
int sg__conn_write2(sg_conn_t *c, const uv_buf_t *iov, unsigned n, char *hold0, sg_buf_kind_t kind0, char *hold1,
                    sg_buf_kind_t kind1) SG_MUST_CHECK;
/* Tunnel: FIN to the client once queued bytes are out (half-close). */
int sg__conn_shutdown(sg_conn_t *c) SG_MUST_CHECK;
/* The exchange of c->txn ended (its response is queued; the stream freed
 * the txn): keep-alive (next request) or lingering close. */
void sg__conn_txn_done(sg_conn_t *c, bool must_close);
/* Abort: the response cannot be completed; close the client connection. */
void sg__conn_abort(sg_conn_t *c, const char *why);
/* Checks the request body bytes already read (not yet handed over) on a
 * copy of the parser: 0, or -status (400, 413) for bad framing, so the
 * stream can refuse before anything goes upstream. */
int sg__conn_check_body(const sg_conn_t *c);
/* Reading control after back-pressure changed. */
void sg__conn_update_read(sg_conn_t *c);
/* Process bytes already buffered (called when the upstream became ready). */
void sg__conn_resume(sg_conn_t *c);
void sg__conn_tunnel_start(sg_conn_t *c);
/* The client address as "ip" and "ip:port" ("[ip6]:port"). */
void sg__conn_peer_text(const sg_conn_t *c, char ip[INET6_ADDRSTRLEN], char ipport[INET6_ADDRSTRLEN + 8]);
void sg__conn_close_idle(sg_worker_t *w);
const char *sg__conn_state_name(sg_conn_state_t s);
/* The connection state machine: legal moves only (asserts). */
bool sg__conn_can_move(sg_conn_state_t from, sg_conn_state_t to);
void sg__conn_set_state(sg_conn_t *c, sg_conn_state_t to);
#ifndef NDEBUG
/* The moves this thread's connections took (bit `to` of [from]): the unit
 * tests show every legal move is reachable through real exchanges. */
extern _Thread_local unsigned sg__conn_moves_taken[SG_CONN__COUNT];
#endif

/* ---- proxy.c ----------------------------------------------------------- */
/* The stream's table for client connections (sg_conn_ops_t). */
extern const sg_conn_ops_t sg__stream_conn_ops;
/* Proxy-made error response (JSON body, X-Trace-Id). Ends the txn. */
void sg__conn_error(sg_conn_t *c, int status, const char *error, bool must_close);
/* Same, with a machine-readable "reason" member in the JSON body and extra
 * header lines ("Name: value\r\n", may be NULL). */
void sg__conn_error_ex(sg_conn_t *c, int status, const char *error, const char *reason, const char *extra_headers,
                       bool must_close);
/* Writes a local responder's answer and ends the txn. */
void sg__conn_local(sg_conn_t *c, sg_local_responder_cb cb, void *ud, const sg_local_req_t *req);
/* The request head is in c->txn->head (parsed into c->txn->parser.head). */
void sg__proxy_head(sg_conn_t *c);
/* Request body bytes [p, p+n) in `buf` (a fl_buf object whose ownership
 * moves to the write). */
void sg__proxy_body(sg_txn_t *t, char *buf, const char *p, size_t n);
void sg__proxy_req_done(sg_txn_t *t);
bool sg__proxy_can_take_body(const sg_txn_t *t);
/* Tunnel bytes client -> upstream (buffer ownership moves). */
void sg__proxy_tunnel_up(sg_txn_t *t, char *buf, const char *p, size_t n);
void sg__proxy_tunnel_eof(sg_txn_t *t);
/* Tunnel bytes moved (either way) or the tunnel started: restarts its idle
 * timeout (limits.tunnel_idle_timeout, egress.tunnel_idle_timeout on egress
 * listeners). A no-op outside the tunnel phase. */
void sg__proxy_tunnel_touch(sg_txn_t *t);
/* Client went away or the conn closes with the txn alive. */
void sg__txn_abort(sg_txn_t *t);
void sg__txn_free(sg_txn_t *t);
/* Returns the transactions ended since the last call to fl_txn (on_prepare,
 * and once when the loop has stopped). */
void sg__txn_reap(sg_worker_t *w);
sg_txn_t *sg__txn_new(sg_conn_t *c);
/* Client write queue drained: maybe resume the upstream. */
void sg__proxy_client_drained(sg_txn_t *t);
/* Upstream connection events. */
void sg__proxy_up_failed(sg_txn_t *t, sg_fail_t kind, const char *why);
/* Leases an upstream connection to srv for t (t->up): a fresh one for
 * tunnels and requests sent again (SG_TXN_F_CONNECT, SG_TXN_F_FRESH). */
int sg__proxy_lease(sg_txn_t *t, sg_upserver_t *srv) SG_MUST_CHECK;
const char *sg__txn_state_name(sg_txn_state_t s);
/* The transaction state machine: legal moves only (asserts). */
bool sg__txn_can_move(sg_txn_state_t from, sg_txn_state_t to);
void sg__txn_set_state(sg_txn_t *t, sg_txn_state_t to);
#ifndef NDEBUG
/* The moves this thread's transactions took (bit `to` of [from]), as for
 * the connections (sg__conn_moves_taken). */
extern _Thread_local unsigned sg__txn_moves_taken[SG_TXN__COUNT];
#endif
/* The retry rules after an upstream failure of `kind`. Pure. */
sg_next_t sg__next_upstream(const sg_txn_t *t, sg_fail_t kind);

/* Pure pieces of the forwarding path (no worker, no I/O), exposed so the
 * fuzzers (test/fuzz/fuzz_request.c, fuzz_response.c) and unit tests can
 * drive them. Any thread. */
/* Collects the trace header values of a parsed request head (configured id
 * header, traceparent, tracestate, the highest-ranked accepted alias). */
void sg__proxy_trace_in(const sg_config_t *cfg, const sg_h1_head_t *h, sg_trace_in_t *in);
/* head_trace.c: the trace-header field lines (configured id header,
 * traceparent, tracestate, accepted aliases) of a raw request head that was
 * not parsed whole: only lines received whole (LF-terminated) after the
 * start line, up to the first line that is not a well-formed field line
 * (a folded line drops the one it continues). At most cap; *is_full when
 * more were there. Slices point into raw. */
size_t sg__head_trace_fields(const sg_config_t *cfg, const char *raw, size_t len, sg_h1_header_t *out, size_t cap,
                             bool *is_full);
/* Resolves t->trace (and counts it) from what t->head holds, for a
 * proxy-made error before the head was parsed: the client's valid id when
 * its line was read, else a new one. Worker thread. */
void sg__head_trace_resolve(sg_txn_t *t);
typedef struct sg_uphead_in {
    const sg_config_t *cfg;
    int32_t route_idx; /* matched route (index into cfg->routes); -1: egress (no route, path kept) */
    int32_t ups_idx;   /* its upstream */
    const sg_h1_head_t *h;
    sg_str_t host; /* Host (or absolute-form authority); may be empty */
    sg_str_t path; /* origin-form path without the query */
    sg_str_t query;
    const char *peer_ip;
    const sg_trace_ctx_t *trace;
    bool is_upgrade;
    bool is_tls; /* the client spoke TLS to us: X-Forwarded-Proto: https */
} sg_uphead_in_t;
/* Serializes the upstream request head into out[cap] (hop-by-hop and trace
 * headers replaced, X-Forwarded-*, Via). 0 (*len set), -414 (rewritten path
 * too long) or -431 (does not fit). */
int sg__proxy_build_uphead(const sg_uphead_in_t *in, char *out, size_t cap, size_t *len) SG_MUST_CHECK;
/* Serializes the client response head for a parsed upstream response head
 * into out[cap]. is_decode: a chunked body is de-chunked (Transfer-Encoding
 * dropped). 0 (*len set) or -1 (does not fit). */
int sg__proxy_build_resphead(const sg_config_t *cfg, const sg_h1_head_t *h, const char *trace_id, bool is_decode,
                             bool will_close, char *out, size_t cap, size_t *len) SG_MUST_CHECK;

/* The reverse-proxy handler (route, server choice). */
extern const sg_handler_ops_t sg__reverse_handler;

/* ---- generation.c ------------------------------------------------------ */
/* Builds the worker generation for rg (retained). NULL on out-of-memory. */
sg_wgen_t *sg__wgen_new(sg_worker_t *w, sg_rtgen_t *rg) SG_MUST_CHECK;
/* Makes g current (the old one is retired and unreferenced). */
void sg__wgen_set_current(sg_worker_t *w, sg_wgen_t *g);
/* Worker: adopt rt->gen if it is newer than w->gen. */
void sg__worker_adopt_gen(sg_worker_t *w);
/* worker.c: w's listener set becomes rg's (new sockets opened, kept ones
 * reconfigured, the rest closed). Not for the control thread. */
int sg__worker_sync_listeners(sg_worker_t *w, sg_rtgen_t *rg);
static inline sg_wgen_t *sg__wgen_ref(sg_wgen_t *g)
{
    g->refs++;
    return g;
}
/* generation.c: the last reference went: close its pools and free it
 * (once its resolutions called back). Reached from below through
 * sg__wgen_unref. */
void sg__wgen_release(sg_wgen_t *g);
static inline void sg__wgen_unref(sg_wgen_t *g)
{
    if (g->w->notify)
        g->w->notify->gen_unref(g);
}
/* A name resolution of g finished (frees a retired g when it was the last). */
void sg__wgen_resolution_done(sg_wgen_t *g);
static inline void sg__wgen_resolved(sg_wgen_t *g)
{
    if (g->w->notify)
        g->w->notify->gen_resolved(g);
}
/* Registry index of route/upstream i of g (-1 stays -1). */
static inline int32_t sg__wgen_route_metric(const sg_wgen_t *g, int32_t i)
{
    return i < 0 ? -1 : g->rg->route_metric[i];
}
static inline int32_t sg__wgen_ups_metric(const sg_wgen_t *g, int32_t i)
{
    return i < 0 ? -1 : g->rg->upstream_metric[i];
}

/* ---- upstream.c -------------------------------------------------------- */
int sg__upstreams_init(sg_wgen_t *g) SG_MUST_CHECK;
/* Closes g's idle pooled connections and cancels its resolutions. */
void sg__upstreams_close(sg_wgen_t *g);
void sg__upstreams_free(sg_wgen_t *g);
/* Picks a server (round-robin / least-in-flight), skipping ejected ones
 * and the n_tried indices in tried. -1: none healthy (*all_down set when every
 * server is ejected or down). */
int32_t sg__upstream_pick(sg_upstream_t *u, const int32_t *tried, size_t n_tried, uint64_t now_ms, bool *all_down);
/* Leases a connection to srv for t (*out): pooled (unless is_fresh; ops->
 * on_ready runs on the next loop turn) or new (connect; on_ready once
 * connected). Returns 0 or a UV error (nothing leased). */
int sg__upconn_get(sg_upserver_t *srv, bool is_fresh, const sg_upconn_ops_t *ops, sg_txn_t *t,
                   sg_upconn_t **out) SG_MUST_CHECK;
/* Gives back a leased connection; `reusable` puts it into the pool. */
void sg__upconn_release(sg_upconn_t *u, bool reusable);
void sg__upconn_close(sg_upconn_t *u);
int sg__upconn_write(sg_upconn_t *u, const uv_buf_t *iov, unsigned n, char *hold, sg_buf_kind_t kind) SG_MUST_CHECK;
void sg__upconn_update_read(sg_upconn_t *u);
/* The response just completed leaves the connection fit for the pool
 * (keep-alive, nothing after it, no error, no tunnel). */
bool sg__upconn_can_reuse(const sg_upconn_t *u);
/* Reading stops until the owner clears SG_UPC_F_PAUSED (client write queue full). */
void sg__upconn_pause(sg_upconn_t *u);
/* The connection carries a tunnel from now on (101, CONNECT): never pooled. */
void sg__upconn_tunnel(sg_upconn_t *u);
/* Tunnel: FIN to the upstream once queued bytes are out (half-close). */
int sg__upconn_shutdown(sg_upconn_t *u) SG_MUST_CHECK;
enum {
    SG_UPC_T_NONE = 0,
    SG_UPC_T_CONNECT,
    SG_UPC_T_RESPONSE,
    SG_UPC_T_READ,
    SG_UPC_T_IDLE,
};
/* Tunnel phase: the idle timeout (sg__proxy_tunnel_touch). It is the read
 * timer's kind, so upstream.c dispatches it to sg__proxy_up_timeout. */
#define SG_UPC_T_TUNNEL_IDLE SG_UPC_T_READ
void sg__upconn_timer(sg_upconn_t *u, uint8_t kind, uint64_t ms);
/* Tells the lessees of the pooled connections handed out since the last
 * call that they are ready (worker.c, before the loop polls). */
void sg__upconn_run_ready(sg_worker_t *w);
void sg__server_fail(sg_upserver_t *s, uint64_t now_ms);
void sg__server_ok(sg_upserver_t *s);
const char *sg__upc_state_name(sg_upc_state_t s);

/* ---- egress_proxy.c ------------------------------------------------------ */
/* Egress state of a worker generation (from sg__upstreams_init/_close/_free):
 * pools and the DNS cache follow the generation like upstream pools do. */
int sg__egress_init(sg_wgen_t *g) SG_MUST_CHECK;
void sg__egress_close(sg_wgen_t *g);
void sg__egress_free(sg_wgen_t *g);
/* The egress handler: head checks (target form, proxy authentication,
 * target authority), then allow-list, resolution, destination choice and
 * connect; CONNECT answered 200 and tunnelled; a txn's DNS wait and
 * destination reference released. */
extern const sg_handler_ops_t sg__egress_handler;

#endif /* SG_NET_INT_H */
