/* swarmgate: command line, start-up, signals, shutdown.
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. */
#include "sg/config.h"
#include "sg/control.h"
#include "sg/log.h"
#include "sg/metrics.h"
#include "sg/pg.h"
#include "sg/runtime.h"
#include "sg/worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char usage[] = "usage: swarmgate --config FILE [--ports-file FILE]\n"
                            "       swarmgate --check-config [--check-db] [--config] FILE\n"
                            "       swarmgate --version | --help\n"
                            "\n"
                            "  -c, --config FILE     configuration file (YAML)\n"
                            "      --check-config    load and validate the config, then exit\n"
                            "      --check-db        with --check-config: connect to postgres.conninfo and\n"
                            "                        prepare every configured query (exit 2 naming each\n"
                            "                        missing table or column, 1 when unreachable)\n"
                            "      --ports-file FILE write \"<listener> <address>\" lines once bound\n"
                            "  -v, --version         print the version\n"
                            "  -h, --help            this text\n"
                            "\n"
                            "Signals: SIGTERM/SIGINT drain and exit (twice: exit at once),\n"
                            "SIGHUP reloads the config file, SIGUSR1 prints per-worker pool\n"
                            "counters on stderr.\n";

typedef struct opts {
    const char *config;
    const char *ports_file;
    bool check_only;
    bool check_db;
} opts_t;

typedef struct main_state {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    uv_async_t stopped;
    sg_server_t *server;
} main_state_t;

static int parse_args(int argc, char **argv, opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--version") || !strcmp(a, "-v")) {
            printf("swarmgate %s\n", SG_VERSION);
            exit(0);
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--check-config")) {
            o->check_only = true;
            /* `--check-config FILE` is the same as `--check-config --config FILE`. */
            if (!o->config && i + 1 < argc && argv[i + 1][0] != '-')
                o->config = argv[++i];
        } else if (!strcmp(a, "--check-db")) {
            o->check_only = true;
            o->check_db = true;
            if (!o->config && i + 1 < argc && argv[i + 1][0] != '-')
                o->config = argv[++i];
        } else if ((!strcmp(a, "--config") || !strcmp(a, "-c")) && i + 1 < argc) {
            o->config = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            o->config = a + 9;
        } else if (!strcmp(a, "--ports-file") && i + 1 < argc) {
            o->ports_file = argv[++i];
        } else {
            fprintf(stderr, "swarmgate: unknown or incomplete argument: %s\n%s", a, usage);
            return -1;
        }
    }
    if (!o->config) {
        fprintf(stderr, "swarmgate: --config FILE is required\n%s", usage);
        return -1;
    }
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    main_state_t *m = s->data;
    if (signum == SIGUSR1) {
        sg_server_report(m->server);
        return;
    }
    if (signum == SIGHUP) {
        /* The control thread re-reads the file; the outcome is logged. */
        sg_server_request_reload(m->server);
        return;
    }
    fprintf(stderr, "swarmgate: %s: draining\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sg_server_drain(m->server);
}

static void on_stopped(uv_async_t *a)
{
    main_state_t *m = a->data;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigusr1, NULL);
    uv_close((uv_handle_t *)&m->sighup, NULL);
    uv_close((uv_handle_t *)&m->stopped, NULL);
}

int main(int argc, char **argv)
{
    opts_t o = {0};
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    char err[1024];
    sg_config_t *cfg = NULL;
    static sg_config_errors_t errs; /* 26 KiB: not on the stack */
    if (sg_config_load_all(o.config, &cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "swarmgate: %s\n", errs.msg[i].text);
        if (errs.n_total > errs.n)
            fprintf(stderr, "swarmgate: %s: %zu more errors not shown\n", o.config, errs.n_total - errs.n);
        return 2;
    }
    if (o.check_only) {
        printf("config OK: %s\n", o.config);
        int rc = 0;
        if (o.check_db) {
            fflush(stdout);
            rc = sg_pg_check_db(&cfg->postgres, stdout);
        }
        sg_config_free(cfg);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);

    sg_runtime_t rt;
    if (sg_runtime_init(&rt, cfg) < 0) {
        fprintf(stderr, "swarmgate: out of memory\n");
        sg_config_free(cfg);
        return 1;
    }
    rt.metrics = sg_metrics_create(cfg, rt.n_workers);
    if (!rt.metrics) {
        fprintf(stderr, "swarmgate: out of memory\n");
        return 1;
    }
    if (sg_log_init(&cfg->log, err, sizeof(err)) != 0) {
        fprintf(stderr, "swarmgate: %s\n", err);
        return 1;
    }
    sg_control_t ctl;
    if (sg_control_init(&ctl, &rt) != 0) {
        fprintf(stderr, "swarmgate: cannot set up the control thread\n");
        return 1;
    }

    main_state_t m;
    memset(&m, 0, sizeof(m));
    uv_loop_init(&m.loop);
    uv_async_init(&m.loop, &m.stopped, on_stopped);
    m.stopped.data = &m;
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sigusr1);
    uv_signal_init(&m.loop, &m.sighup);
    m.sigterm.data = m.sigint.data = m.sigusr1.data = m.sighup.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigusr1, on_signal, SIGUSR1);
    uv_signal_start(&m.sighup, on_signal, SIGHUP);

    sg_server_opts_t so = {.ports_file = o.ports_file,
                           .on_stopped = &m.stopped,
                           .health_cb = sg_admin_local_respond,
                           .health_ud = &ctl.admin,
                           .admin_responder = sg_admin_respond,
                           .admin_ud = &ctl.admin,
                           .control_start = sg_control_on_start,
                           .control_stop = sg_control_on_stop,
                           .control_reload = sg_control_on_reload,
                           .control_ud = &ctl};
    if (sg_server_start(&rt, cfg, &so, &m.server, err, sizeof(err)) != 0) {
        fprintf(stderr, "swarmgate: %s\n", err);
        return 1;
    }
    atomic_store_explicit(&ctl.admin.server, m.server, memory_order_release);

    uv_run(&m.loop, UV_RUN_DEFAULT);
    sg_server_join(m.server); /* the workers and the control thread */
    sg_control_destroy(&ctl);
    uv_loop_close(&m.loop);
    if (rt.metrics)
        sg_metrics_destroy(rt.metrics);
    sg_runtime_destroy(&rt);
    sg_config_release(cfg); /* the start-up generation: main's load reference */
    sg_log_shutdown();
    fprintf(stderr, "swarmgate: stopped\n");
    return 0;
}
