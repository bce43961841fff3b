/* TLS termination on a listener, through the binary, with real clients:
 * Python's ssl module (test/support/tls_client.py) and curl, certificates
 * made by the test (support/tls_pki.h). What a client sees: the handshake
 * (TLS 1.3, ALPN http/1.1), the certificate SNI picks, keep-alive
 * requests with bodies, resumption with a session ticket, plain HTTP sent
 * to the TLS port, a certificate swapped by a reload while an old
 * connection keeps working, protocol versions below min_version refused
 * (a TLS 1.1 client at the defaults, a TLS 1.2 client by min_version
 * 1.3); what the upstream sees: X-Forwarded-Proto https and the trace id;
 * what the metrics and the log say. */
#include "support/gw_fixture.h"
#include "support/obs_fixture.h"
#include "support/tls_pki.h"
#include "support/upstream_server.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sg_test_pki_t pki;
static us_server_t *up;
static sg_proc_t gw;
static char yaml[4096];

/* Runs tls_client.py with args; its one line of output into out. */
static int client(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int client(char *out, size_t cap, const char *fmt, ...)
{
    char args[1024], cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "timeout 20 python3 %s/test/support/tls_client.py %s 2>&1", SG_SOURCE_DIR, args);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return pclose(f);
}

static void host_port(const char *addr, char *host, size_t hcap, unsigned *port)
{
    const char *colon = strrchr(addr, ':');
    cr_assert_not_null(colon);
    snprintf(host, hcap, "%.*s", (int)(colon - addr), addr);
    *port = (unsigned)atoi(colon + 1);
}

static void start(void)
{
    cr_assert_eq(sg_test_pki_make(&pki), 0);
    up = us_start("app", false);
    cr_assert_not_null(up);
    snprintf(yaml, sizeof(yaml),
             "workers: 1\n"
             "listeners:\n"
             "  - name: tls\n"
             "    address: \"127.0.0.1:0\"\n"
             "    tls: {certificates: [{cert: %s, key: %s}, {cert: %s, key: %s}]}\n"
             "  - name: tls13\n"
             "    address: \"127.0.0.1:0\"\n"
             "    tls: {cert: %s, key: %s, min_version: \"1.3\"}\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"%s/access.log\", flush_interval: 10ms}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: all, match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             pki.server.cert, pki.server.key, pki.alt.cert, pki.alt.key, pki.server.cert, pki.server.key, pki.dir,
             us_port(up));
    gw_start(&gw, "%s", yaml);
}

static void stop(void)
{
    gw_stop(&gw);
    us_stop(up);
    sg_test_pki_remove(&pki);
}

TestSuite(tls_listener, .init = start, .fini = stop, .timeout = 60);

Test(tls_listener, https_keep_alive_requests_reach_the_upstream_marked_https)
{
    char host[64], out[2048];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    int rc = client(out, sizeof(out), "get %s %u server.test %s /echo 3 100000", host, port, pki.ca);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "version=TLSv1.3"), "%s", out);
    cr_assert(strstr(out, "alpn=http/1.1"), "%s", out);
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "status%d=200", i);
        cr_assert(strstr(out, want), "%s", out);
        snprintf(want, sizeof(want), "len%d=100000", i);
        cr_assert(strstr(out, want), "the body came back whole: %s", out);
    }
    cr_assert(us_wait_requests(up, 3, 5000));
    us_request_t r;
    cr_assert(us_request(up, 0, &r));
    char v[64];
    cr_assert(us_header(r.head, "X-Forwarded-Proto", v, sizeof(v)));
    cr_expect_str_eq(v, "https");
    cr_assert(us_header(r.head, "X-Trace-Id", v, sizeof(v)));
    cr_expect(strstr(out, v), "the client got the trace id the upstream got");
    us_request_free(&r);
    cr_assert_eq(us_connections(up), 1, "one upstream connection for the three requests");
    double got = 0;
    cr_assert(obs_wait_metric_ge(sg_proc_addr(&gw, "admin"),
                                 "swarm_tls_handshakes_total{listener=\"tls\",result=\"success\",version=\"TLSv1.3\"}",
                                 1, 3000, &got),
              "got %g", got);
}

Test(tls_listener, sni_picks_the_certificate)
{
    char host[64], out[2048], out2[2048];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    /* The client verifies the name it asked for: only the right
     * certificate passes (alt.test is only in the second one). */
    cr_assert_eq(client(out, sizeof(out), "get %s %u alt.test %s / 1", host, port, pki.ca), 0, "%s", out);
    cr_assert(strstr(out, pki.alt.serial_hex), "alt.test got the alt certificate: %s (want %s)", out,
              pki.alt.serial_hex);
    cr_assert_eq(client(out2, sizeof(out2), "get %s %u server.test %s / 1", host, port, pki.ca), 0, "%s", out2);
    cr_assert(strstr(out2, pki.server.serial_hex), "server.test got the default: %s", out2);
    /* The access log says which TLS and which name. */
    char path[256];
    snprintf(path, sizeof(path), "%s/access.log", pki.dir);
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        char *log = obs_slurp(path);
        seen = strstr(log, "\"tls\":\"TLSv1.3\",\"sni\":\"alt.test\"") &&
               strstr(log, "\"tls\":\"TLSv1.3\",\"sni\":\"server.test\"");
        free(log);
        if (!seen)
            usleep(100 * 1000);
    }
    cr_assert(seen, "access log lines with tls and sni");
    /* An unknown name gets the default, which does not name it. */
    cr_assert_neq(client(out, sizeof(out), "get %s %u nobody.test %s / 1", host, port, pki.ca), 0);
    cr_assert(strstr(out, "error="), "%s", out);
}

Test(tls_listener, a_second_connection_resumes_with_a_ticket)
{
    char host[64], out[2048];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    cr_assert_eq(client(out, sizeof(out), "resume %s %u server.test %s", host, port, pki.ca), 0, "%s", out);
    cr_assert(strstr(out, "reused=True"), "%s", out);
    cr_assert(strstr(out, "status=200"), "%s", out);
    double got = 0;
    cr_assert(obs_wait_metric_ge(sg_proc_addr(&gw, "admin"), "swarm_tls_sessions_resumed_total{listener=\"tls\"}", 1,
                                 3000, &got));
}

Test(tls_listener, plain_http_on_the_tls_port_is_refused_and_counted)
{
    char host[64], out[512];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    client(out, sizeof(out), "plain %s %u", host, port);
    cr_assert(strstr(out, "http=False"), "no HTTP answer in clear: %s", out);
    double got = 0;
    cr_assert(
        obs_wait_metric_ge(sg_proc_addr(&gw, "admin"),
                           "swarm_tls_handshakes_total{listener=\"tls\",result=\"http_request\",version=\"none\"}", 1,
                           3000, &got),
        "got %g", got);
    cr_assert_eq(us_requests(up), 0);
}

Test(tls_listener, curl_speaks_to_it)
{
    char cmd[1024], out[2048];
    const char *addr = sg_proc_addr(&gw, "tls");
    char host[64];
    unsigned port;
    host_port(addr, host, sizeof(host), &port);
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 10 --cacert %s --resolve server.test:%u:%s -o /dev/null -w '%%{http_code} "
             "%%{ssl_verify_result}' https://server.test:%u/ 2>&1",
             pki.ca, port, host, port);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", out);
    cr_assert_str_eq(out, "200 0");
}

Test(tls_listener, a_reload_swaps_the_certificate_and_old_connections_keep_theirs)
{
    char host[64], line[512];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    /* An old connection, held open across the reload. */
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "timeout 30 python3 %s/test/support/tls_client.py hold %s %u server.test %s /",
             SG_SOURCE_DIR, host, port, pki.ca);
    int to_child[2], from_child[2];
    cr_assert_eq(pipe(to_child), 0);
    cr_assert_eq(pipe(from_child), 0);
    pid_t pid = fork();
    if (pid == 0) { /* no Criterion call in the child: it would talk to the runner */
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(pid, 0);
    close(to_child[0]);
    close(from_child[1]);
    FILE *in = fdopen(from_child[0], "r");
    cr_assert(fgets(line, sizeof(line), in), "the held connection answered");
    cr_assert(strstr(line, pki.server.serial_hex) && strstr(line, "first=200"), "%s", line);
    /* A renewed certificate for the same names, into the same files. */
    sg_test_pair_t renewed;
    cr_assert_eq(
        sg_test_pki_leaf(&pki, "renewed", NULL, "DNS:localhost,DNS:server.test,IP:127.0.0.1", -1, 90, &renewed), 0);
    char sh[1024];
    snprintf(sh, sizeof(sh), "cp %s %s && cp %s %s && chmod 600 %s", renewed.cert, pki.server.cert, renewed.key,
             pki.server.key, pki.server.key);
    cr_assert_eq(system(sh), 0);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(&gw, "reload", 1, 5000));
    /* New connections see the new serial (the reload may take a moment to
     * reach the worker). */
    char out[2048] = "";
    bool is_new = false;
    for (int i = 0; i < 50 && !is_new; i++) {
        client(out, sizeof(out), "get %s %u server.test %s / 1", host, port, pki.ca);
        is_new = strstr(out, renewed.serial_hex) != NULL;
        if (!is_new)
            usleep(100 * 1000);
    }
    cr_assert(is_new, "a new connection got the renewed certificate: %s (want %s)", out, renewed.serial_hex);
    /* The old connection still serves a request. */
    cr_assert_eq(write(to_child[1], "\n", 1), 1);
    cr_assert(fgets(line, sizeof(line), in));
    cr_assert(strstr(line, "second=200"), "%s", line);
    fclose(in);
    close(to_child[1]);
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A reference server that speaks TLS 1.1 only: `openssl s_server -tls1_1`
 * at security level 0, with the test's certificate, for one connection.
 * Its pid (a `timeout` around it), its port and its output (kept open: a
 * closed pipe would kill it with SIGPIPE when it reports the handshake);
 * the caller stops it, then closes *out. */
static pid_t tls11_server(unsigned *port, FILE **out_f)
{
    int out[2];
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork();
    if (pid == 0) { /* no Criterion call in the child */
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[0]);
        execlp("timeout", "timeout", "30", "openssl", "s_server", "-accept", "127.0.0.1:0", "-tls1_1", "-cipher",
               "DEFAULT@SECLEVEL=0", "-cert", pki.server.cert, "-key", pki.server.key, "-naccept", "1", "-www",
               (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(pid, 0);
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    *port = 0;
    while (!*port && fgets(line, sizeof(line), f)) {
        const char *colon = strrchr(line, ':');
        if (strncmp(line, "ACCEPT ", 7) == 0 && colon)
            *port = (unsigned)atoi(colon + 1);
    }
    *out_f = f;
    cr_assert_gt(*port, 0, "openssl s_server listening");
    return pid;
}

static void stop_pid(pid_t pid)
{
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
}

Test(tls_listener, a_tls_1_1_client_is_refused_at_the_default_min_version)
{
    char host[64], out[2048];
    unsigned port, ref_port;
    /* The client really offers TLS 1.1: the same client, same options,
     * completes a TLS 1.1 handshake with OpenSSL's own server. */
    FILE *ref_out;
    pid_t ref = tls11_server(&ref_port, &ref_out);
    int rc = client(out, sizeof(out), "pinned 127.0.0.1 %u server.test %s 1.0 1.1", ref_port, pki.ca);
    stop_pid(ref);
    fclose(ref_out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "version=TLSv1.1"), "%s", out);
    /* swarmgate (no min_version written: 1.2) refuses it. */
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    rc = client(out, sizeof(out), "pinned %s %u server.test %s 1.0 1.1", host, port, pki.ca);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(strstr(out, "error=") && !strstr(out, "version="), "%s", out);
    /* The refusal is swarmgate's: counted as a protocol version failure
     * and logged with OpenSSL's reason. */
    double got = 0;
    cr_assert(
        obs_wait_metric_eq(sg_proc_addr(&gw, "admin"),
                           "swarm_tls_handshakes_total{listener=\"tls\",result=\"protocol_version\",version=\"none\"}",
                           1, 3000, &got),
        "got %g", got);
    cr_assert(sg_proc_wait_stderr(&gw, "listener tls: TLS handshake with 127.0.0.1:", 1, 3000));
    char *err = sg_proc_stderr(&gw);
    cr_expect(strstr(err, "failed: protocol_version: "), "%s", err);
    free(err);
    cr_assert_eq(us_requests(up), 0);
}

Test(tls_listener, min_version_1_3_refuses_a_tls_1_2_client)
{
    char host[64], out[2048];
    unsigned port, port13;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    host_port(sg_proc_addr(&gw, "tls13"), host, sizeof(host), &port13);
    /* A client that offers TLS 1.2 only: served at the default min_version... */
    int rc = client(out, sizeof(out), "pinned %s %u server.test %s 1.2 1.2", host, port, pki.ca);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "version=TLSv1.2"), "%s", out);
    /* ...refused where min_version is 1.3, and counted there. */
    rc = client(out, sizeof(out), "pinned %s %u server.test %s 1.2 1.2", host, port13, pki.ca);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(strstr(out, "error=") && !strstr(out, "version="), "%s", out);
    double got = 0;
    cr_assert(obs_wait_metric_eq(sg_proc_addr(&gw, "admin"),
                                 "swarm_tls_handshakes_total{listener=\"tls13\",result=\"protocol_version\","
                                 "version=\"none\"}",
                                 1, 3000, &got),
              "got %g", got);
    cr_assert(sg_proc_wait_stderr(&gw, "listener tls13: TLS handshake with 127.0.0.1:", 1, 3000));
    /* A TLS 1.3 client is served there. */
    rc = client(out, sizeof(out), "pinned %s %u server.test %s 1.2 1.3", host, port13, pki.ca);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "version=TLSv1.3"), "%s", out);
    cr_assert(
        obs_wait_metric_eq(sg_proc_addr(&gw, "admin"),
                           "swarm_tls_handshakes_total{listener=\"tls13\",result=\"success\",version=\"TLSv1.3\"}", 1,
                           3000, &got),
        "got %g", got);
}
