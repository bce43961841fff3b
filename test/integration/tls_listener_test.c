/* TLS termination on a listener, through the binary, with real clients:
 * Python's ssl module (test/support/tls_client.py) and curl, certificates
 * made by the test (support/tls_pki.h). What a client sees: the handshake
 * (TLS 1.3, ALPN http/1.1), the certificate SNI picks, keep-alive
 * requests with bodies, resumption with a session ticket, plain HTTP sent
 * to the TLS port, a certificate swapped by a reload while an old
 * connection keeps working, protocol versions below min_version refused
 * (a TLS 1.1 client at the defaults, a TLS 1.2 client by min_version
 * 1.3), a reload that switches a listener from plain HTTP to TLS and
 * back (open connections keep their protocol, new ones take the new
 * one); what the upstream sees: X-Forwarded-Proto https and the trace id;
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

/* A TLS connection held open across a reload: tls_client.py hold, one
 * request to path1 at once, one to path2 when held_second() says so. */
typedef struct held {
    pid_t pid;
    FILE *in;
    int to_fd;
    char line[512]; /* the last line it printed */
} held_t;

static void hold(held_t *h, const char *host, unsigned port, const char *path1, const char *path2)
{
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "timeout 30 python3 %s/test/support/tls_client.py hold %s %u server.test %s %s %s",
             SG_SOURCE_DIR, host, port, pki.ca, path1, path2);
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
    h->pid = pid;
    h->to_fd = to_child[1];
    h->in = fdopen(from_child[0], "r");
    cr_assert(fgets(h->line, sizeof(h->line), h->in), "the held connection answered");
}

/* The second request; true when the client printed its line and exited 0. */
static bool held_second(held_t *h)
{
    bool ok = write(h->to_fd, "\n", 1) == 1 && fgets(h->line, sizeof(h->line), h->in);
    fclose(h->in);
    close(h->to_fd);
    int st = 0;
    waitpid(h->pid, &st, 0);
    return ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* curl https://server.test:port/path verified with the test CA; its exit
 * status, "<http code> <verify result>" (or its error) in out. */
static int curl_https(const char *host, unsigned port, const char *path, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 10 --cacert %s --resolve server.test:%u:%s -o /dev/null -w '%%{http_code} "
             "%%{ssl_verify_result}' https://server.test:%u%s 2>&1",
             pki.ca, port, host, port, path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return pclose(f);
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
    char host[64], out[2048];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    cr_assert_eq(curl_https(host, port, "/", out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "200 0");
}

Test(tls_listener, a_reload_swaps_the_certificate_and_old_connections_keep_theirs)
{
    char host[64];
    unsigned port;
    host_port(sg_proc_addr(&gw, "tls"), host, sizeof(host), &port);
    /* An old connection, held open across the reload. */
    held_t h;
    hold(&h, host, port, "/", "/");
    cr_assert(strstr(h.line, pki.server.serial_hex) && strstr(h.line, "first=200"), "%s", h.line);
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
    cr_assert(held_second(&h), "%s", h.line);
    cr_assert(strstr(h.line, "second=200"), "%s", h.line);
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

/* ---- a reload that switches a listener between plain HTTP and TLS ---- */

/* One listener "api" at a port-0 address, with TLS or without; the same
 * name and address across the reload, so it keeps its socket. */
static void start_switch(bool is_tls)
{
    cr_assert_eq(sg_test_pki_make(&pki), 0);
    up = us_start("app", false);
    cr_assert_not_null(up);
    char tls_line[512];
    snprintf(tls_line, sizeof(tls_line), "    tls: {cert: %s, key: %s}\n", pki.server.cert, pki.server.key);
    gw_start(&gw,
             "workers: 1\n"
             "listeners:\n"
             "  - name: api\n"
             "    address: \"127.0.0.1:0\"\n"
             "%s"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "upstreams: {app: {servers: [\"127.0.0.1:%u\"]}}\n"
             "routes: [{name: all, match: {prefix: /}, upstream: app}]\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 2s}\n",
             is_tls ? tls_line : "    # plain\n", us_port(up));
}

static void reload_switching(bool to_tls)
{
    char tls_line[512];
    snprintf(tls_line, sizeof(tls_line), "    tls: {cert: %s, key: %s}\n", pki.server.cert, pki.server.key);
    cr_assert_eq(to_tls ? sg_proc_edit_config(&gw, "    # plain\n", tls_line)
                        : sg_proc_edit_config(&gw, tls_line, "    # plain\n"),
                 0);
    cr_assert_eq(sg_proc_signal(&gw, SIGHUP), 0);
    cr_assert(sg_proc_wait_stderr(&gw, "config reloaded from", 1, 5000));
    char *err = sg_proc_stderr(&gw);
    cr_assert(!strstr(err, "listener api: closing"), "the listener kept its socket: %s", err);
    free(err);
}

/* X-Forwarded-Proto of the request the upstream got for path. */
static void upstream_proto(const char *path, char *out, size_t cap)
{
    char want[128];
    snprintf(want, sizeof(want), "GET %s HTTP/1.1\r\n", path);
    out[0] = '\0';
    for (int i = 0; i < us_requests(up); i++) {
        us_request_t r;
        cr_assert(us_request(up, i, &r));
        bool is_it = strncmp(r.head, want, strlen(want)) == 0;
        if (is_it)
            cr_assert(us_header(r.head, "X-Forwarded-Proto", out, cap));
        us_request_free(&r);
        if (is_it)
            return;
    }
    cr_assert_fail("the upstream got no %s", path);
}

static void start_plain(void)
{
    start_switch(false);
}

static void start_tls(void)
{
    start_switch(true);
}

TestSuite(tls_reload, .timeout = 60);

Test(tls_reload, plain_to_tls_old_connections_stay_plain_new_ones_speak_tls, .init = start_plain, .fini = stop)
{
    const char *addr = sg_proc_addr(&gw, "api");
    char host[64], out[2048], v[32];
    unsigned port;
    host_port(addr, host, sizeof(host), &port);
    /* A plain keep-alive connection opened before the reload. */
    hc_conn_t old;
    hc_response_t r;
    cr_assert_eq(hc_connect(&old, addr, 2000), 0);
    cr_assert(hc_send_str(&old, "GET /old-before HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&old, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);

    reload_switching(true);
    /* New connections speak TLS once the worker took the new generation. */
    int rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = curl_https(host, port, "/new-tls", out, sizeof(out));
        if (rc != 0)
            usleep(100 * 1000);
    }
    cr_assert_eq(rc, 0, "curl https after the reload: %s", out);
    cr_assert_str_eq(out, "200 0");
    upstream_proto("/new-tls", v, sizeof(v));
    cr_expect_str_eq(v, "https");
    /* Its certificate has an expiry gauge now. */
    char *text = obs_scrape_text(sg_proc_addr(&gw, "admin"));
    cr_expect(strstr(text, "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"api\""), "%s", text);
    free(text);
    /* Plain HTTP on a new connection gets no answer in clear, and is
     * counted as such on the listener. */
    rc = hc_request(addr, "GET /new-plain HTTP/1.1\r\nHost: x\r\n\r\n", &r, 5000);
    cr_assert_neq(rc, HC_OK, "a plain request on a new connection was answered: %d", r.status);
    double got = 0;
    cr_assert(
        obs_wait_metric_eq(sg_proc_addr(&gw, "admin"),
                           "swarm_tls_handshakes_total{listener=\"api\",result=\"http_request\",version=\"none\"}", 1,
                           3000, &got),
        "got %g", got);
    /* The old connection is still plain HTTP, keep-alive, marked http. */
    cr_assert(hc_send_str(&old, "GET /old-after HTTP/1.1\r\nHost: x\r\n\r\n", 2000));
    cr_assert_eq(hc_read_response(&old, &r, 5000), HC_OK, "the old plain connection survived the reload");
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    hc_close(&old);
    upstream_proto("/old-after", v, sizeof(v));
    cr_expect_str_eq(v, "http");
    for (int i = 0; i < us_requests(up); i++) {
        us_request_t ur;
        cr_assert(us_request(up, i, &ur));
        cr_expect(!strstr(ur.head, "/new-plain"), "plain HTTP on the TLS port reached the upstream");
        us_request_free(&ur);
    }
}

Test(tls_reload, tls_to_plain_old_connections_stay_tls_new_ones_speak_plain, .init = start_tls, .fini = stop)
{
    const char *addr = sg_proc_addr(&gw, "api");
    char host[64], out[2048], v[32];
    unsigned port;
    host_port(addr, host, sizeof(host), &port);
    /* A TLS connection opened before the reload. */
    held_t h;
    hold(&h, host, port, "/old-before", "/old-after");
    cr_assert(strstr(h.line, "first=200"), "%s", h.line);

    reload_switching(false);
    /* New connections speak plain HTTP once the worker took the new
     * generation. */
    hc_response_t r;
    int rc = -1;
    for (int i = 0; i < 50 && rc != HC_OK; i++) {
        rc = hc_request(addr, "GET /new-plain HTTP/1.1\r\nHost: x\r\n\r\n", &r, 2000);
        if (rc != HC_OK)
            usleep(100 * 1000);
    }
    cr_assert_eq(rc, HC_OK, "plain HTTP after the reload");
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);
    upstream_proto("/new-plain", v, sizeof(v));
    cr_expect_str_eq(v, "http");
    /* TLS on a new connection fails. */
    cr_assert_neq(curl_https(host, port, "/new-tls", out, sizeof(out)), 0, "%s", out);
    char *text = obs_scrape_text(sg_proc_addr(&gw, "admin"));
    cr_expect(strstr(text, "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"api\"") == NULL,
              "no expiry gauge for a plain listener: %s", text);
    free(text);
    /* The old connection still speaks TLS. */
    cr_assert(held_second(&h), "%s", h.line);
    cr_assert(strstr(h.line, "second=200"), "%s", h.line);
    upstream_proto("/old-after", v, sizeof(v));
    cr_expect_str_eq(v, "https");
}
