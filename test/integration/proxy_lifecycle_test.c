/* Process life through the real binary: command line, graceful drain on
 * SIGTERM, bounded memory on a 100 MiB upload, no pool growth over 1,000
 * warm keep-alive requests, connection limit, EMFILE, built-in health. */
#include "support/gw_fixture.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
    long long t0 = mono_ms();
    sg_proc_signal(&gw, SIGTERM);
    cr_assert(sg_proc_wait_exit(&gw, 5000));
    cr_assert_eq(gw.exit_status, 0);
    cr_assert_lt(mono_ms() - t0, 3000);
    cr_assert(hc_wait_closed(&c, 2000));
    hc_close(&c);
    us_release(up);
    sg_proc_cleanup(&gw);
    us_stop(up);
}

Test(proxy_lifecycle, upload_100mib_bounded_memory, .timeout = 120)
{
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

static void pool_line(sg_proc_t *gw, int nth, char *out, size_t cap)
{
    sg_proc_signal(gw, SIGUSR1);
    cr_assert(sg_proc_wait_stderr(gw, "swarmgate: pools worker=0", nth, 5000));
    char *err = sg_proc_stderr(gw);
    char *p = err;
    for (int i = 0; i < nth; i++)
        p = strstr(p, "swarmgate: pools worker=0") + 1;
    p = strstr(p, "conn_grows");
    char *e = strstr(p, " requests=");
    snprintf(out, cap, "%.*s", (int)(e - p), p);
    free(err);
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
    char before[512], after[512];
    pool_line(&gw, 1, before, sizeof(before));
    for (int i = 0; i < 1000; i++) {
        cr_assert(hc_send_str(&c, kinds[i % 3], 2000));
        hc_response_t r;
        cr_assert_eq(hc_read_response(&c, &r, 3000), HC_OK);
        cr_assert_eq(r.status, 200);
        hc_response_free(&r);
    }
    pool_line(&gw, 2, after, sizeof(after));
#ifndef SG_NO_POOLS
    cr_assert_str_eq(after, before, "freelists grew over 1,000 warm requests");
#endif
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
    /* The third waits in the backlog... */
    cr_assert_eq(hc_connect(&c, addr, 2000), 0);
    cr_assert(hc_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    char buf[64];
    cr_assert_eq(hc_read_some(&c, buf, sizeof(buf), 400), -1, "served beyond max_connections");
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

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

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
    int used = count_fds(gw.pid);
    /* Only the soft limit goes down: raising a hard limit back needs
     * CAP_SYS_RESOURCE, which containers often lack. */
    struct rlimit old_rl;
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, NULL, &old_rl), 0);
    struct rlimit rl = {(rlim_t)used + 6, old_rl.rlim_max};
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, &rl, NULL), 0);
    hc_conn_t many[30];
    int n = 0;
    for (; n < 30; n++)
        if (hc_connect(&many[n], addr, 1000) != 0)
            break;
    for (int i = 0; i < n; i++)
        hc_send_str(&many[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 500);
    for (int i = 0; i < n; i++)
        hc_close(&many[i]);
    rl.rlim_cur = old_rl.rlim_cur;
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, &rl, NULL), 0, "restore the limit");
    /* Still serving. */
    hc_response_t r;
    long long deadline = mono_ms() + 5000;
    int e;
    /* Recovery: a request that raced the limit change may still fail;
     * within the deadline one must succeed. */
    for (;;) {
        e = hc_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r, 2000);
        if ((e == HC_OK && r.status == 200) || mono_ms() >= deadline)
            break;
        hc_response_free(&r);
    }
    cr_assert_eq(e, HC_OK);
    cr_assert_eq(r.status, 200, "status %d: %s", r.status, r.body);
    hc_response_free(&r);
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
