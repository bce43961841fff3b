/* Process life through the real binary: command line, graceful drain on
 * SIGTERM, bounded memory on a 100 MiB upload, no pool growth over 1,000
 * warm keep-alive requests, connection limit, EMFILE, built-in health. */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BASE                                                                                                           \
    "listeners: [{name: api, address: \"127.0.0.1:0\", serve_health: true}]\n"                                         \
    "admin: {enabled: false}\n"                                                                                        \
    "log: {access: \"off\"}\n"

Test(proxy_lifecycle, command_line, .timeout = 30)
{
    char out[4096];
    const char *version[] = {"--version", NULL};
    cr_assert_eq(sg_proc_run(version, out, sizeof(out), 5000), 0);
    cr_assert(strstr(out, "swarmgate "), "%s", out);
    const char *help[] = {"--help", NULL};
    cr_assert_eq(sg_proc_run(help, out, sizeof(out), 5000), 0);
    cr_assert(strstr(out, "--config"));
    const char *bad[] = {"--bogus", NULL};
    cr_assert_eq(sg_proc_run(bad, out, sizeof(out), 5000), 2);
    const char *none[] = {NULL};
    cr_assert_eq(sg_proc_run(none, out, sizeof(out), 5000), 2);
    const char *missing[] = {"--check-config", "--config", "/nonexistent/swarmgate.yaml", NULL};
    cr_assert_eq(sg_proc_run(missing, out, sizeof(out), 5000), 2);

    sg_proc_t tmp = {0};
    snprintf(tmp.dir, sizeof(tmp.dir), "/tmp/sgtest.XXXXXX");
    cr_assert(mkdtemp(tmp.dir));
    char good[256], wrong[256];
    sg_proc_write_file(&tmp, "good.yaml",
                       BASE "upstreams: {app: {servers: [\"127.0.0.1:1\"]}}\n"
                            "routes: [{upstream: app}]\n",
                       good, sizeof(good));
    sg_proc_write_file(&tmp, "bad.yaml", BASE "routes: [{upstream: nope}]\n", wrong, sizeof(wrong));
    const char *ok[] = {"--check-config", "--config", good, NULL};
    cr_assert_eq(sg_proc_run(ok, out, sizeof(out), 5000), 0, "%s", out);
    char want[300];
    snprintf(want, sizeof(want), "config OK: %s", good);
    cr_assert(strstr(out, want), "%s", out);
    const char *ko[] = {"--check-config", "-c", wrong, NULL};
    cr_assert_eq(sg_proc_run(ko, out, sizeof(out), 5000), 2);
    cr_assert(strstr(out, "nope"), "error names the problem: %s", out);
    sg_proc_cleanup(&tmp);
}

Test(proxy_lifecycle, sigterm_lets_inflight_finish, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 2\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 5s}\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t slow, idle;
    cr_assert_eq(hc_connect(&idle, addr, 2000), 0);
    cr_assert_eq(hc_connect(&slow, addr, 2000), 0);
    cr_assert(hc_send_str(&slow, "GET /slow?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert(us_wait_requests(up, 1, 3000));
    cr_assert_eq(sg_proc_signal(&gw, SIGTERM), 0);
    /* idle connections are closed at once */
    cr_assert(hc_wait_closed(&idle, 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&slow, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "slow");
    char v[32];
    cr_assert(hc_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    hc_response_free(&r);
    cr_assert(sg_proc_wait_exit(&gw, 5000));
    cr_assert_eq(gw.exit_status, 0);
    /* no longer listening */
    hc_conn_t late;
    cr_assert_neq(hc_connect(&late, addr, 500), 0);
    hc_close(&slow);
    hc_close(&idle);
    sg_proc_cleanup(&gw);
    us_stop(up);
}

Test(proxy_lifecycle, drain_timeout_cuts_long_requests, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 300ms}\n",
             us_port(up));
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    cr_assert(hc_send_str(&c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    char buf[256];
    cr_assert_gt(hc_read_some(&c, buf, sizeof(buf), 3000), 0);
    const long long drain_timeout_ms = 300; /* as configured above */
    long long t0 = sgt_now_ms();
    sg_proc_signal(&gw, SIGTERM);
    /* The stream is cut by the drain timeout: not before it (the drain
     * lets it run; libuv's millisecond clock may round 1 ms down), and not
     * long after. */
    cr_assert(hc_wait_closed(&c, 5000), "the stream was never cut");
    long long cut_ms = sgt_now_ms() - t0;
    cr_assert_geq(cut_ms, drain_timeout_ms - 2, "cut after %lld ms, before drain_timeout", cut_ms);
    cr_assert_lt(cut_ms, drain_timeout_ms + 2700, "cut after %lld ms", cut_ms);
    cr_assert(sg_proc_wait_exit(&gw, 5000));
    cr_assert_eq(gw.exit_status, 0);
    cr_assert_lt(sgt_now_ms() - t0, drain_timeout_ms + 2700);
    hc_close(&c);
    us_release(up);
    sg_proc_cleanup(&gw);
    us_stop(up);
}

Test(proxy_lifecycle, upload_100mib_bounded_memory, .timeout = 120)
{
    if (sg_proc_pools_off())
        cr_skip_test("pools off: freed buffers sit in ASan's quarantine, so RSS bounds nothing");
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms}\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    hc_response_t r;
    cr_assert_eq(hc_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    hc_response_free(&r);
    long base = sg_proc_status_kb(&gw, "VmHWM");
    cr_assert_gt(base, 0);
    const size_t total = 100u << 20;
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    char head[128];
    snprintf(head, sizeof(head), "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", total);
    cr_assert(hc_send_str(&c, head, 2000));
    char *block = gw_pattern(1u << 20);
    for (size_t sent = 0; sent < total; sent += 1u << 20)
        cr_assert(hc_send(&c, block, 1u << 20, 30000));
    free(block);
    cr_assert_eq(hc_read_response(&c, &r, 30000), HC_OK);
    cr_assert_eq(r.status, 200);
    char want[32];
    snprintf(want, sizeof(want), "%zu", total);
    cr_assert_str_eq(r.body, want);
    hc_response_free(&r);
    hc_close(&c);
    long peak = sg_proc_status_kb(&gw, "VmHWM");
    cr_assert_lt(peak - base, 32 * 1024, "RSS grew by %ld kB for a 100 MiB upload", peak - base);
    gw_stop(&gw);
    us_stop(up);
}

/* The nth SIGUSR1 report of worker 0: the grow counters ("conn_grows=..
 * wreq_grows=N") and the objects in use ("a/b/c/d/e/f"). */
static void pool_line(sg_proc_t *gw, int nth, char *grows, size_t gcap, char *in_use, size_t icap)
{
    sg_proc_signal(gw, SIGUSR1);
    cr_assert(sg_proc_wait_stderr(gw, "swarmgate: pools worker=0", nth, 5000));
    char *err = sg_proc_stderr(gw);
    char *p = err;
    for (int i = 0; i < nth; i++)
        p = strstr(p, "swarmgate: pools worker=0") + 1;
    char *eol = strchr(p, '\n');
    cr_assert(eol, "%s", p);
    *eol = '\0';
    char *g = strstr(p, "conn_grows");
    char *e = strstr(p, " requests=");
    char *u = strstr(p, " in_use=");
    cr_assert(g && e && u, "%s", p);
    snprintf(grows, gcap, "%.*s", (int)(e - g), g);
    snprintf(in_use, icap, "%s", u + strlen(" in_use="));
    free(err);
}

/* The sum of the grow counters in a pool_line() grows string. */
static unsigned long long total_grows(const char *grows)
{
    unsigned long long n = 0;
    for (const char *p = strchr(grows, '='); p; p = strchr(p + 1, '='))
        n += strtoull(p + 1, NULL, 10);
    return n;
}

Test(proxy_lifecycle, warm_keepalive_requests_do_not_grow_pools, .timeout = 60)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms}\n",
             us_port(up));
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "api"), 2000), 0);
    const char *kinds[] = {"GET /gen?n=20000 HTTP/1.1\r\nHost: x\r\n\r\n",
                           "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                           "GET /gen?n=3000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (int i = 0; i < 100; i++) {
        cr_assert(hc_send_str(&c, kinds[i % 3], 2000));
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        hc_response_free(&r);
    }
    char before[512], after[512], used_before[128], used_after[128];
    pool_line(&gw, 1, before, sizeof(before), used_before, sizeof(used_before));
    for (int i = 0; i < 1000; i++) {
        cr_assert(hc_send_str(&c, kinds[i % 3], 2000));
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        cr_assert_eq(r.status, 200);
        hc_response_free(&r);
    }
    pool_line(&gw, 2, after, sizeof(after), used_after, sizeof(used_after));
    /* Both builds: every object a request took went back (same objects
     * out of each freelist: the one client connection, the pooled upstream
     * connection and their buffers). */
    cr_assert_str_eq(used_after, used_before, "objects in use (conn/txn/upconn/buf/head/wreq) changed");
    if (!sg_proc_pools_off()) {
        cr_assert_str_eq(after, before, "freelists grew over 1,000 warm requests");
    } else {
        /* Pools off: each object comes from malloc (so ASan sees it), at
         * least one per request. */
        cr_assert_geq(total_grows(after) - total_grows(before), 1000, "%s then %s", before, after);
    }
    hc_close(&c);
    gw_stop(&gw);
    us_stop(up);
}

Test(proxy_lifecycle, connection_limit_pauses_accept, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "limits: {max_connections: 2}\n"
             "shutdown: {drain_delay: 0ms}\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    hc_conn_t a, b, c;
    cr_assert_eq(hc_connect(&a, addr, 2000), 0);
    cr_assert_eq(hc_connect(&b, addr, 2000), 0);
    cr_assert(hc_send_str(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&a, &r, 3000), HC_OK);
    hc_response_free(&r);
    cr_assert(hc_send_str(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&b, &r, 3000), HC_OK);
    hc_response_free(&r);
    /* The third is not served, though the worker went round its loop after
     * it arrived (b's request, sent after it, was answered; the listener's
     * readiness came in the same or an earlier poll). libuv accept()s one
     * connection before it calls the listener back; swarmgate does not take
     * it (uv_accept) and libuv stops polling the listener: that one
     * descriptor is held unserved, the rest wait in the kernel's backlog. */
    cr_assert(hc_send_str(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000)); /* the same path as below */
    cr_assert_eq(hc_read_response(&b, &r, 3000), HC_OK);
    hc_response_free(&r);
    int fds = sg_proc_count_fds(gw.pid);
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert(hc_send_str(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&b, &r, 3000), HC_OK);
    hc_response_free(&r);
    cr_assert_eq(sg_proc_count_fds(gw.pid), fds + 1, "%d descriptors, %d before the third connection",
                 sg_proc_count_fds(gw.pid), fds);
    /* The worker's own count (its SIGUSR1 line, written by the worker
     * after the b round trip): two connections, not three. */
    char grows[512], in_use[128];
    int conns = -1;
    pool_line(&gw, 1, grows, sizeof(grows), in_use, sizeof(in_use));
    char *err = sg_proc_stderr(&gw);
    const char *cp = strstr(err, " conns=");
    cr_assert(cp && sscanf(cp, " conns=%d", &conns) == 1, "%s", err);
    free(err);
    cr_assert_eq(conns, 2, "the worker holds %d client connections with max_connections 2", conns);
    char buf[64];
    cr_assert_eq(hc_read_some(&c, buf, sizeof(buf), 0), -1, "served beyond max_connections");
    /* ...until a slot frees. */
    hc_close(&a);
    cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    hc_close(&b);
    hc_close(&c);
    gw_stop(&gw);
    us_stop(up);
}

/* Out of descriptors, both paths run and are seen: an accepted client's
 * request whose upstream connection cannot be opened gets the 502 of
 * proxy.c (our resources, not the server's fault) and its warning, a new
 * client hits EMFILE at accept and is dropped (libuv's reserve
 * descriptor); with the limit back, it serves again. */
Test(proxy_lifecycle, emfile_survived, .timeout = 30)
{
    us_server_t *up = us_start("u1", false);
    sg_proc_t gw;
    gw_start(&gw,
             "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{upstream: app}]\n"
             "shutdown: {drain_delay: 0ms}\n",
             us_port(up));
    const char *addr = sg_proc_addr(&gw, "api");
    int used = sg_proc_stable_fds(gw.pid, 5000);
    cr_assert_gt(used, 0, "descriptor count does not settle");
    /* One client accepted (no request yet: no upstream connection is pooled). */
    hc_conn_t a;
    cr_assert_eq(hc_connect(&a, addr, 2000), 0);
    cr_assert(sg_proc_wait_fds(gw.pid, used + 1, 5000), "the client was not accepted (%d descriptors, %d before)",
              sg_proc_count_fds(gw.pid), used);
    /* Only the soft limit goes down: raising a hard limit back needs
     * CAP_SYS_RESOURCE, which containers often lack. */
    struct rlimit old_rl;
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, NULL, &old_rl), 0);
    struct rlimit rl = {(rlim_t)used + 1, old_rl.rlim_max};
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, &rl, NULL), 0);

    cr_assert(hc_send_str(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&a, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 502, "status %d: %s", r.status, r.body);
    cr_assert(strstr(r.body, "cannot open an upstream connection"), "%s", r.body);
    hc_response_free(&r);
    cr_assert(sg_proc_wait_stderr(&gw, "cannot open a connection: too many open files", 1, 3000),
              "proxy.c's EMFILE warning");
    cr_assert_eq(us_connections(up), 0);

    /* accept() fails with EMFILE: libuv's reserve descriptor (opened with
     * the listening stream) is closed, the connection accepted and closed,
     * the reserve reopened; on_connection in listener.c is not even called
     * then (its warning is for when no reserve is left). The client sees
     * its connection closed unanswered, and the proxy keeps running. */
    hc_conn_t b;
    cr_assert_eq(hc_connect(&b, addr, 2000), 0); /* the kernel's backlog takes it */
    cr_assert(hc_send_str(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&b, &r, 3000), HC_CLOSED, "the connection it could not accept is dropped");
    hc_response_free(&r);
    hc_close(&b);
    hc_close(&a);

    rl.rlim_cur = old_rl.rlim_cur;
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, &rl, NULL), 0, "restore the limit");
    /* Still serving: within a deadline, a request succeeds (the first one
     * after the limit is back can still be closed unanswered, see the
     * commit message of this check). */
    long long deadline = sgt_now_ms() + 5000;
    int e, tries = 0;
    for (;;) {
        tries++;
        e = hc_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r, 2000);
        if ((e == HC_OK && r.status == 200) || sgt_now_ms() >= deadline)
            break;
        hc_response_free(&r);
    }
    cr_assert_eq(e, HC_OK, "no answer after %d tries", tries);
    cr_assert_eq(r.status, 200, "status %d: %s", r.status, r.body);
    hc_response_free(&r);
    cr_log_info("served again after %d tries", tries);
    gw_stop(&gw);
    us_stop(up);
}

Test(proxy_lifecycle, health_on_proxy_listener, .timeout = 30)
{
    sg_proc_t gw;
    gw_start(&gw, "workers: 1\n" BASE "upstreams: {app: {servers: [\"127.0.0.1:1\"]}}\n"
                  "routes: [{upstream: app}]\n"
                  "shutdown: {drain_delay: 0ms}\n");
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(&gw, "api"), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &r, 3000), HC_OK);
    cr_assert_eq(r.status, 200);
    cr_assert(hc_header(&r, "X-Trace-Id", NULL, 0));
    cr_assert(strstr(r.body, "ok"), "%s", r.body);
    hc_response_free(&r);
    gw_stop(&gw);
}

/* The control thread (log writing, scrapes, the poller) runs at a lower
 * priority than the workers, so on a shared CPU it does not preempt a
 * request (docs/performance.md, the p99 tail); the workers keep the
 * process's own. Read from /proc: thread names and per-thread nice. */
Test(proxy_lifecycle, the_control_thread_yields_to_the_workers, .timeout = 30)
{
    sg_proc_t gw;
    gw_start(&gw, "workers: 2\n" BASE);
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)gw.pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n_ctl = 0, n_workers = 0;
    errno = 0;
    int base = getpriority(PRIO_PROCESS, 0); /* ours, which the binary inherits */
    cr_assert_eq(errno, 0);
    int want_ctl = base < 10 ? 10 : base; /* raising a priority is not ours to do */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512], comm[32] = "";
        snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof(comm), f))
            comm[0] = '\0';
        fclose(f);
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, (id_t)atoi(e->d_name));
        cr_assert_eq(errno, 0);
        if (strncmp(comm, "sg-control", 10) == 0) {
            n_ctl++;
            cr_assert_eq(nice, want_ctl, "the control thread's nice: %d", nice);
        } else if (strncmp(comm, "sg-worker-", 10) == 0) {
            n_workers++;
            cr_assert_eq(nice, base, "a worker's nice: %d", nice);
        }
    }
    closedir(d);
    cr_assert_eq(n_ctl, 1);
    cr_assert_eq(n_workers, 2);
    gw_stop(&gw);
}
