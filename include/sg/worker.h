/* Workers: the event-loop threads that own listeners, client connections
 * and upstream pools (DESIGN.md section 1), and the process-level server
 * that starts and stops them.
 *
 * Thread model: sg_server_start() runs on the main thread; it binds every
 * listening socket (one per listener per worker, SO_REUSEPORT) before any
 * worker starts, so port 0 resolves once and the addresses are known when
 * it returns. Each worker then runs its own uv loop on its own thread.
 * sg_server_drain()/sg_server_stop()/sg_server_report() may be called from
 * any thread (they post to the workers with uv_async_send). */
#ifndef SG_WORKER_H
#define SG_WORKER_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/listener.h"
#include "sg/runtime.h"

#include <uv.h>

typedef struct sg_server sg_server_t;

typedef struct sg_server_opts {
    /* When set, one line "<name> <address>\n" per listener is written here
     * once every socket is bound (written to a temp file, then renamed). */
    const char *ports_file;
    /* Answers /health* on reverse listeners with serve_health: true. NULL:
     * a built-in answer from runtime state (200 {"status":"ok"}, 503 while
     * draining). Called on worker threads. */
    sg_local_responder_cb health_cb;
    void *health_ud;
    /* Sent (uv_async_send) once every worker and the control thread have
     * exited their loops. */
    uv_async_t *on_stopped;
    /* The control thread: a loop of its own that serves the admin listener
     * (cfg->admin, every request answered by admin_responder) and hosts what
     * control_start puts on it (Postgres poller, span exporter, log
     * flusher). control_start runs on the control thread before its loop;
     * control_stop runs there once every worker has stopped, and must close
     * what control_start opened. */
    sg_local_responder_cb admin_responder;
    void *admin_ud;
    void (*control_start)(uv_loop_t *loop, void *ud);
    void (*control_stop)(uv_loop_t *loop, void *ud);
    /* After a successful reload, on the control thread: what it hosts
     * follows the new config (old_cfg stays valid during the call). */
    void (*control_reload)(uv_loop_t *loop, void *ud, const sg_config_t *old_cfg, const sg_config_t *new_cfg);
    void *control_ud;
} sg_server_opts_t;

/* Fills rt for cfg: worker and server health slots, start time, config
 * generation (retained). Returns 0 or -ENOMEM. Owner: main. */
int sg_runtime_init(sg_runtime_t *rt, sg_config_t *cfg) SG_MUST_CHECK;
void sg_runtime_destroy(sg_runtime_t *rt);

/* Binds the listeners, prints "swarmgate: listening name=N address=A:P" on
 * stderr per listener, and starts cfg->workers worker threads. Returns 0,
 * or -1 with a message in err (bind failure, thread failure). */
int sg_server_start(sg_runtime_t *rt, sg_config_t *cfg, const sg_server_opts_t *opts, sg_server_t **out, char *err,
                    size_t errlen) SG_MUST_CHECK;
/* Graceful: readiness fails at once; after shutdown.drain_delay_ms stop
 * accepting, close idle connections, let in-flight requests finish up to
 * shutdown.drain_timeout_ms, then close everything. A second call closes
 * every connection at once and the workers stop (issue: "a second SIGTERM
 * exits at once"). */
void sg_server_drain(sg_server_t *s);
/* Live reload (control thread only: the admin responder or the control
 * loop). Re-reads the config file the process started with, validates it,
 * refuses changes that need a restart (workers, head-size limits), binds
 * the sockets of new or moved listeners (a bind failure fails the reload),
 * publishes it as generation N+1 (rt->gen, rt->config) and asks every
 * worker to build its router and pools for it, take its new sockets and
 * close the listeners the config dropped (their connections stay);
 * transactions already running finish with their own generation. The
 * admin listener moves on this thread. Counted in
 * swarm_config_reload_total and logged either way. Returns 0 with the new
 * generation in *gen_out, or -1 with "file:line:col: message" (or the
 * restart reason) in err; on failure nothing changes. */
int sg_server_reload(sg_server_t *s, uint32_t *gen_out, char *err, size_t errlen);
/* Any thread (SIGHUP): the control thread runs sg_server_reload soon. */
void sg_server_request_reload(sg_server_t *s);
/* Each worker prints its pool counters on stderr:
 * "swarmgate: pools worker=I conn_grows=.. txn_grows=.. upconn_grows=..
 *  buf_grows=.. head_grows=.. wreq_grows=.. requests=.. conns=..
 *  in_use=conn/txn/upconn/buf/head/wreq" (objects out of each freelist). */
void sg_server_report(sg_server_t *s);
/* Waits for every worker thread and frees the server. */
void sg_server_join(sg_server_t *s);

/* Bound address of the admin listener, NULL when disabled (the control
 * thread updates it on a reload that moves it). */
const char *sg_server_admin_address(const sg_server_t *s);
/* Bound address of listener i at start-up (valid after sg_server_start;
 * a reload rewrites the ports file, not these). */
size_t sg_server_n_listeners(const sg_server_t *s);
const char *sg_server_listener_address(const sg_server_t *s, size_t i); /* "ip:port" / "[ip]:port" */

#endif /* SG_WORKER_H */
