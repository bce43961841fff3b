/* swarmgate benchmark driver (make bench).
 *
 * Starts, on loopback only: an nginx origin (small and 16 KiB bodies), nginx
 * as a reverse proxy, HAProxy, h2o, and swarmgate (trace stamping, metrics
 * and an access log to a file all on), then drives each with wrk in
 * interleaved rounds and prints medians, CPU per request (user and system
 * apart), RSS and the ratios against nginx, HAProxy and h2o measured in the
 * same run; the targets of issue #18 are checked against nginx and HAProxy
 * (h2o's ratios are informational). The egress scenario sends absolute-form
 * requests through swarmgate's egress listener and through squid (caching
 * off), with swarmgate's reverse mode on the same load in the same rounds.
 * The TLS scenarios give every contender the same certificate (TLS 1.3);
 * https-resume, a new connection per request that resumes the session of
 * the previous one (session tickets), is driven by a load generator of this
 * file (run_resume), wrk having no resumption.
 * A contender that answers a non-2xx or has socket errors stops the bench,
 * as one that resumes fewer than 90 % of the connections in https-resume.
 * Results also go to a JSON file.
 *
 * swarmgate runs as operators run it: it also polls a real PostgreSQL (a
 * throwaway cluster with the reference schema and sample data, every second)
 * and is scraped once a second; one contender without both shows what they
 * cost. The /metrics render time with 10 routes x 5 upstreams and traffic on
 * every route is measured after the load scenarios.
 *
 * CPU placement on a 2-core machine: the proxy under test runs on CPU 1, wrk
 * and the origin share CPU 0, so CPU time per request is the proxy's own
 * cost. Every process is started here and stopped by PID; the Postgres
 * cluster by its harness (support/pg_harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include "support/pg_harness.h"

#define MAX_PIDS 32
#define MAX_ROUNDS 15
#define SG_BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))

static pid_t g_pids[MAX_PIDS];
static int g_npids;
static char g_tmp[256];
static const char *g_sg_bin;
static int g_duration = 4; /* measured run, seconds */
#define WARMUP_S 1         /* warm-up before each measured run: pools and caches fill in milliseconds */
#define DIRECT_S 2         /* the unproxied reference run of a scenario */
static int g_rounds = 3;
static int g_idle_conns = 2000;
static int g_ncpu;
static bool g_idle_only;
static const char *g_only; /* --scenarios a,b: run only these (iteration aid) */
static bool g_no_idle;
/* A contender's run with non-2xx answers, socket errors or no requests is no
 * measurement of it: the bench stops there, unless --allow-errors. */
static bool g_allow_errors;
static bool g_no_scrape;
static const char
    *g_alt_yaml; /* --alt-config "key: value": one more swarmgate contender with that top-level line (A/B) */
/* --alt-swarmgate PATH: that contender runs another binary (e.g. the tree
 * before a change), interleaved with this one in every round (A/B). */
static const char *g_alt_bin;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void stop_all(void)
{
    for (int i = g_npids - 1; i >= 0; i--) {
        if (g_pids[i] <= 0)
            continue;
        kill(g_pids[i], SIGTERM);
        for (int t = 0; t < 50; t++) {
            if (waitpid(g_pids[i], NULL, WNOHANG) == g_pids[i]) {
                g_pids[i] = 0;
                break;
            }
            usleep(100000);
        }
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
    }
    g_npids = 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_all();
    _exit(130);
}

static void stop_pid(pid_t pid)
{
    for (int i = 0; i < g_npids; i++)
        if (g_pids[i] == pid) {
            kill(pid, SIGTERM);
            int st;
            for (int t = 0; t < 50; t++) {
                if (waitpid(pid, &st, WNOHANG) == pid)
                    goto done;
                usleep(100000);
            }
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        done:
            g_pids[i] = 0;
            return;
        }
}

static void pin(int cpu)
{
    if (g_ncpu < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % g_ncpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* cpu < 0: no pinning. */
static pid_t spawn(int cpu, const char *log, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (cpu >= 0)
            pin(cpu);
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setpgid(0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    /* Reuse the slots of stopped processes: a full run starts ~50, and one
     * that is not recorded would never be stopped. */
    int slot = -1;
    for (int i = 0; i < g_npids && slot < 0; i++)
        if (g_pids[i] == 0)
            slot = i;
    if (slot < 0 && g_npids < MAX_PIDS)
        slot = g_npids++;
    if (slot < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        die("more than %d processes at once", MAX_PIDS);
    }
    g_pids[slot] = pid;
    return pid;
}

static int pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("pick_port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One HTTP/1.1 GET; returns the status or -1. Used for readiness and scrapes. */
/* GET path with Connection: close; the status, or -1. body_len: bytes of
 * the whole response; out (cap > 0): its first cap - 1 bytes, NUL-ended. */
static int http_fetch(int port, const char *path, size_t *body_len, char *out, size_t cap)
{
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t total = 0;
    char buf[65536];
    char head[64] = {0};
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0) {
        if (total == 0)
            memcpy(head, buf, (size_t)(r < 63 ? r : 63));
        if (cap > 0 && total < cap - 1) {
            size_t k = SG_BENCH_MIN((size_t)r, cap - 1 - total);
            memcpy(out + total, buf, k);
            out[total + k] = '\0';
        }
        total += (size_t)r;
    }
    close(fd);
    if (body_len)
        *body_len = total;
    int status = -1;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

static int http_get(int port, const char *path, size_t *body_len)
{
    return http_fetch(port, path, body_len, NULL, 0);
}

/* TLS scenarios (#19): every contender's listener speaks TLS 1.3 with the
 * same certificate (made at start with the openssl CLI); g_tls_close makes
 * each request a new connection, hence a new handshake (wrk never resumes a
 * session; https-resume has its own load generator, run_resume). Session
 * tickets are on in every contender: nginx's ssl_session_tickets (its
 * default, stated), HAProxy's, h2o's and swarmgate's defaults. */
static bool g_tls, g_tls_close;
static int g_origin_port; /* plain HTTP: the origin never speaks TLS */
static char g_tls_cert[512], g_tls_key[512], g_tls_pem[512];

static bool https_ok(int port, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -skf -o /dev/null --max-time 2 https://127.0.0.1:%d%s", port, path);
    return system(cmd) == 0;
}

static void wait_ready(int port, const char *path, const char *what)
{
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        if (g_tls ? https_ok(port, path) : http_get(port, path, NULL) == 200)
            return;
        usleep(50000);
    }
    die("%s did not answer 200 on 127.0.0.1:%d%s within 10 s (logs in %s)", what, port, path, g_tmp);
}

static void write_file(const char *name, const char *fmt, ...)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die("write %s: %s", path, strerror(errno));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* ---- /proc readings over a process and its direct children ---- */

static bool read_stat(pid_t pid, pid_t *ppid, double *cpu_s, double *sys_s)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    /* fields after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    int ppid_i;
    unsigned long ut, st;
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid_i, &ut, &st) != 3)
        return false;
    *ppid = ppid_i;
    *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    *sys_s = (double)st / (double)sysconf(_SC_CLK_TCK);
    return true;
}

static long read_status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = atol(line + kl + 1);
            break;
        }
    fclose(f);
    return v;
}

typedef struct tree_reading {
    double cpu_s;
    double sys_s; /* kernel share of cpu_s */
    long rss_kb;
    long hwm_kb;
} tree_reading_t;

static tree_reading_t read_tree(pid_t root)
{
    tree_reading_t r = {0};
    pid_t ppid;
    double cpu, sys;
    if (read_stat(root, &ppid, &cpu, &sys)) {
        r.cpu_s += cpu;
        r.sys_s += sys;
        r.rss_kb += read_status_kb(root, "VmRSS");
        r.hwm_kb += read_status_kb(root, "VmHWM");
    }
    /* Children (nginx workers). */
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        pid_t p = (pid_t)atoi(e->d_name);
        if (p <= 0 || p == root)
            continue;
        if (read_stat(p, &ppid, &cpu, &sys) && ppid == root) {
            r.cpu_s += cpu;
            r.sys_s += sys;
            r.rss_kb += read_status_kb(p, "VmRSS");
            r.hwm_kb += read_status_kb(p, "VmHWM");
        }
    }
    if (d)
        closedir(d);
    return r;
}

/* ---- wrk ---- */

typedef struct wrk_result {
    double rps;
    double p50_ms;
    double p99_ms;
    double requests;
    long errors;
    double cpu_us_per_req; /* user + system */
    double usr_us_per_req;
    double sys_us_per_req;
    double peer_us_per_req; /* wrk + origin: the load on CPU 0 */
    long later_conns;       /* https-resume: connections after each slot's first */
    long resumed;           /* ... of which resumed (SSL_session_reused) */
} wrk_result_t;

static pid_t g_origin_pid;

static double parse_ms(const char *s)
{
    double v = atof(s);
    if (strstr(s, "us"))
        return v / 1000.0;
    if (strstr(s, "ms"))
        return v;
    if (strstr(s, "s"))
        return v * 1000.0;
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU per request over a run: the proxy's (user and system apart) and the
 * peer's (the load generator and the origin, peer_s seconds together). */
static void per_request(wrk_result_t *r, pid_t proxy_root, tree_reading_t before, tree_reading_t after, double peer_s)
{
    if (r->requests > 0 && proxy_root > 0) {
        r->cpu_us_per_req = (after.cpu_s - before.cpu_s) * 1e6 / r->requests;
        r->sys_us_per_req = (after.sys_s - before.sys_s) * 1e6 / r->requests;
        r->usr_us_per_req = r->cpu_us_per_req - r->sys_us_per_req;
    }
    if (r->requests <= 0 || r->rps <= 0)
        r->errors++; /* the load generator did not run, or nothing was answered */
    if (r->requests > 0)
        r->peer_us_per_req = peer_s * 1e6 / r->requests;
}

/* A trace id as the platform sends it (requests behind the platform carry
 * one; without it swarmgate makes one per request with libuuid). */
#define BENCH_TRACE_ID "X-Trace-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736"

/* seconds: the run's length. with_id: requests carry X-Trace-Id.
 * proxy_root > 0: the proxy's CPU time over the run is measured.
 * path "http://host:port/p" (a forward proxy at port): wrk sends the
 * absolute form, "GET http://host:port/p HTTP/1.1", through a script that
 * sets wrk.path (wrk itself only sends the origin form of its URL). */
static wrk_result_t run_wrk(int port, const char *path, int conns, int seconds, bool with_id, pid_t proxy_root)
{
    char url[128], c[16], d[16], script[512] = "";
    bool tls = g_tls && port != g_origin_port;
    bool absolute = strncmp(path, "http://", 7) == 0;
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", tls ? "https" : "http", port, absolute ? "/" : path);
    if (absolute) {
        snprintf(script, sizeof(script), "%s/absolute-form.lua", g_tmp);
        FILE *sf = fopen(script, "w");
        if (!sf)
            die("write %s: %s", script, strerror(errno));
        fprintf(sf, "wrk.path = \"%s\"\n", path);
        fclose(sf);
    }
    snprintf(c, sizeof(c), "%d", conns);
    snprintf(d, sizeof(d), "%ds", seconds);
    char out[512];
    snprintf(out, sizeof(out), "%s/wrk.out", g_tmp);
    unlink(out);
    tree_reading_t before = proxy_root > 0 ? read_tree(proxy_root) : (tree_reading_t){0};
    tree_reading_t origin_before = read_tree(g_origin_pid);
    char *argv[] = {"wrk", "-t1", "-c", c,    "-d", d,    "--latency", "-H", "Host: bench",
                    url,   NULL,  NULL, NULL, NULL, NULL, NULL,        NULL};
    int na = 9;
    if (absolute) {
        argv[na++] = "-s";
        argv[na++] = script;
    }
    if (with_id) {
        argv[na++] = "-H";
        argv[na++] = BENCH_TRACE_ID;
    }
    if (tls && g_tls_close) {
        argv[na++] = "-H";
        argv[na++] = "Connection: close";
    }
    argv[na] = url;
    pid_t pid = fork();
    if (pid == 0) {
        pin(0);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp("wrk", argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    tree_reading_t after = proxy_root > 0 ? read_tree(proxy_root) : (tree_reading_t){0};
    tree_reading_t origin_after = read_tree(g_origin_pid);
    double wrk_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                   (double)ru.ru_stime.tv_usec / 1e6;
    wrk_result_t r = {0};
    FILE *f = fopen(out, "r");
    if (!f)
        die("wrk produced no output");
    char line[512];
    bool in_dist = false;
    while (fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        if (strncmp(p, "Latency Distribution", 20) == 0)
            in_dist = true;
        else if (in_dist && strncmp(p, "50%", 3) == 0)
            r.p50_ms = parse_ms(p + 3);
        else if (in_dist && strncmp(p, "99%", 3) == 0)
            r.p99_ms = parse_ms(p + 3);
        else if (strncmp(p, "Requests/sec:", 13) == 0)
            r.rps = atof(p + 13);
        else if (strstr(p, "requests in"))
            r.requests = atof(p);
        else if (strncmp(p, "Non-2xx", 7) == 0)
            r.errors += atol(strchr(p, ':') + 1);
        else if (strncmp(p, "Socket errors:", 14) == 0) {
            long a = 0, b = 0, cc = 0, dd = 0;
            sscanf(p, "Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a, &b, &cc, &dd);
            r.errors += a + b + cc + dd;
        }
    }
    fclose(f);
    per_request(&r, proxy_root, before, after, wrk_s + origin_after.cpu_s - origin_before.cpu_s);
    return r;
}

/* Stops the bench: a contender answered errors (wrk's last output shown). */
static void refuse(const char *scenario, const char *proxy, long errors)
{
    char path[512], line[512];
    snprintf(path, sizeof(path), "%s/wrk.out", g_tmp);
    fprintf(stderr, "bench: %s: %s: %ld non-2xx responses or socket errors; its run is not a measurement.\n", scenario,
            proxy, errors);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        fprintf(stderr, "  load generator: %s", line);
    if (f)
        fclose(f);
    die("refused (logs in %s; --allow-errors measures anyway)", g_tmp);
}

/* ---- new connections with TLS 1.3 resumption (https-resume) ---- */

/* wrk makes a full handshake on every new connection: it never offers a
 * session. This load generator (a child process on CPU 0, where wrk runs)
 * keeps `conns` connections in flight from one thread, non-blocking under
 * poll(2), as wrk does; each slot in a loop: TCP connect, TLS 1.3 handshake
 * offering the newest session ticket that slot holds (none on its first
 * connection of a run: a full handshake), GET /small with Connection: close,
 * the whole response read to the end, close. Latency is
 * that whole exchange, connect to last byte (wrk's starts at the request's
 * first byte, after the handshake). A connection that takes more than 2 s is
 * an error (wrk's timeout). */
#define RESUME_MAX_CONNS 256
#define RESUME_TIMEOUT_S 2.0
#define RESUME_MIN_FRACTION 0.90 /* of the connections after each slot's first */

enum { RS_IDLE, RS_CONNECT, RS_HANDSHAKE, RS_WRITE, RS_READ };

typedef struct resume_slot {
    int fd;
    int state;
    short events;
    bool later; /* not this slot's first connection: a ticket should be offered */
    SSL *ssl;
    SSL_SESSION *sess; /* the newest ticket this slot holds */
    double t0;
    long conns;
    size_t len, total;
    char buf[4096]; /* the response's first bytes (the head), NUL-ended */
} resume_slot_t;

typedef struct resume_stats {
    long requests, later, resumed;
    long err_connect, err_tls, err_io, err_status, err_timeout;
    double *lat_ms;
    size_t nlat, cap;
} resume_stats_t;

static const char resume_req[] = "GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

static void rs_close(resume_slot_t *s)
{
    if (s->ssl) {
        SSL_set_quiet_shutdown(s->ssl, 1); /* the server closed first: nothing to send */
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->state = RS_IDLE;
}

static bool rs_begin(resume_slot_t *s, SSL_CTX *ctx, const struct sockaddr_in *a)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        return false;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->ssl = SSL_new(ctx);
    if (!s->ssl)
        return false;
    SSL_set_fd(s->ssl, s->fd);
    if (s->sess)
        SSL_set_session(s->ssl, s->sess);
    s->later = s->conns++ > 0;
    s->len = s->total = 0;
    s->buf[0] = 0;
    s->t0 = now_s();
    s->state = RS_CONNECT;
    s->events = POLLOUT; /* connected, or refused: SO_ERROR says which */
    return connect(s->fd, (const struct sockaddr *)a, sizeof(*a)) == 0 || errno == EINPROGRESS;
}

/* 0: waiting (s->events set); anything else: the errno-like failure. */
static int rs_want(resume_slot_t *s, int r, long *err)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        s->events = POLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        s->events = POLLOUT;
        return 0;
    default:
        ERR_clear_error();
        (*err)++;
        return -1;
    }
}

/* A 2xx status and, when the head has a Content-Length, that many body bytes. */
static bool rs_response_ok(const resume_slot_t *s)
{
    int status = 0;
    if (sscanf(s->buf, "HTTP/1.%*d %d", &status) != 1 || status < 200 || status > 299)
        return false;
    const char *end = strstr(s->buf, "\r\n\r\n");
    if (!end)
        return false;
    size_t head = (size_t)(end + 4 - s->buf);
    for (const char *q = strstr(s->buf, "\r\n"); q && q < end; q = strstr(q + 2, "\r\n"))
        if (strncasecmp(q + 2, "content-length:", 15) == 0)
            return s->total - head == strtoul(q + 17, NULL, 10);
    return true;
}

/* Advances a slot: 1 its request was answered, -1 it failed (counted), 0 it waits. */
static int rs_step(resume_slot_t *s, resume_stats_t *st)
{
    int r;
    if (s->state == RS_CONNECT) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            st->err_connect++;
            return -1;
        }
        s->state = RS_HANDSHAKE;
    }
    if (s->state == RS_HANDSHAKE) {
        if ((r = SSL_connect(s->ssl)) != 1)
            return rs_want(s, r, &st->err_tls);
        if (s->later) {
            st->later++;
            st->resumed += SSL_session_reused(s->ssl) ? 1 : 0;
        }
        s->state = RS_WRITE;
    }
    if (s->state == RS_WRITE) {
        if ((r = SSL_write(s->ssl, resume_req, (int)sizeof(resume_req) - 1)) <= 0)
            return rs_want(s, r, &st->err_io);
        s->state = RS_READ;
    }
    for (;;) {
        char scratch[16384];
        bool head = s->len < sizeof(s->buf) - 1;
        char *dst = head ? s->buf + s->len : scratch;
        int room = head ? (int)(sizeof(s->buf) - 1 - s->len) : (int)sizeof(scratch);
        r = SSL_read(s->ssl, dst, room);
        if (r > 0) {
            if (head) {
                s->len += (size_t)r;
                s->buf[s->len] = 0;
            }
            s->total += (size_t)r;
            continue;
        }
        if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN) { /* the end (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            if (rs_response_ok(s)) {
                /* The newest ticket: the last NewSessionTicket read, or
                 * the one this connection resumed with if none came. */
                SSL_SESSION *sess = SSL_get1_session(s->ssl);
                if (sess && SSL_SESSION_is_resumable(sess)) {
                    if (s->sess)
                        SSL_SESSION_free(s->sess);
                    s->sess = sess;
                } else if (sess) {
                    SSL_SESSION_free(sess);
                }
                return 1;
            }
            st->err_status++;
            return -1;
        }
        return rs_want(s, r, &st->err_io);
    }
}

/* Runs in the child: the load for `seconds`, then a report to `out`. */
static resume_stats_t resume_load(int port, int conns, int seconds, const char *out, double *elapsed)
{
    resume_stats_t st = {0};
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return st;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* as wrk: the certificate is the bench's own */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* No client cache: with one, OpenSSL marks a TLS 1.3 session spent
     * once resumed (single-use tickets), and a server that sends no new
     * ticket on a resumed connection (h2o 2.2) would get one full handshake
     * in two. The slots keep their sessions themselves. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    conns = conns < RESUME_MAX_CONNS ? conns : RESUME_MAX_CONNS;
    static resume_slot_t slots[RESUME_MAX_CONNS];
    struct pollfd pfd[RESUME_MAX_CONNS];
    for (int i = 0; i < conns; i++)
        slots[i] = (resume_slot_t){.fd = -1, .state = RS_IDLE};
    double t_start = now_s(), end = t_start + seconds, t;
    while ((t = now_s()) < end) {
        for (int i = 0; i < conns; i++) {
            resume_slot_t *s = &slots[i];
            if (s->state != RS_IDLE) {
                int r = 0;
                if (pfd[i].revents)
                    r = rs_step(s, &st);
                else if (t - s->t0 > RESUME_TIMEOUT_S) {
                    st.err_timeout++;
                    r = -1;
                }
                if (r == 1) {
                    st.requests++;
                    if (st.nlat == st.cap) {
                        st.cap = st.cap ? st.cap * 2 : 65536;
                        st.lat_ms = realloc(st.lat_ms, st.cap * sizeof(double));
                        if (!st.lat_ms)
                            _exit(2);
                    }
                    st.lat_ms[st.nlat++] = (now_s() - s->t0) * 1000.0;
                }
                if (r != 0)
                    rs_close(s);
            }
            /* The slot's next connection at once; its first step when poll
             * finds the socket writable. One whose socket could not be made
             * tries again in the next round. */
            if (s->state == RS_IDLE && !rs_begin(s, ctx, &a)) {
                st.err_connect++;
                rs_close(s);
            }
        }
        for (int i = 0; i < conns; i++)
            pfd[i] = (struct pollfd){.fd = slots[i].state == RS_IDLE ? -1 : slots[i].fd, .events = slots[i].events};
        poll(pfd, (nfds_t)conns, 10);
    }
    *elapsed = now_s() - t_start;
    for (int i = 0; i < conns; i++) {
        if (slots[i].state != RS_IDLE)
            rs_close(&slots[i]); /* cut at the deadline, as wrk's */
        if (slots[i].sess)
            SSL_SESSION_free(slots[i].sess);
    }
    SSL_CTX_free(ctx);
    FILE *f = fopen(out, "w");
    if (f) {
        fprintf(f,
                "resume load: %d connections, %ld requests in %.2f s; errors: connect %ld, tls %ld, io %ld, status %ld,"
                " timeout %ld; resumed %ld of %ld connections after each slot's first\n",
                conns, st.requests, *elapsed, st.err_connect, st.err_tls, st.err_io, st.err_status, st.err_timeout,
                st.resumed, st.later);
        fclose(f);
    }
    return st;
}

/* The https-resume counterpart of run_wrk: the load generator forked and
 * pinned to CPU 0 (as wrk), its CPU time from wait4 (as wrk's). */
static wrk_result_t run_resume(int port, int conns, int seconds, pid_t proxy_root)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/wrk.out", g_tmp);
    unlink(out);
    wrk_result_t r = {0};
    int fds[2];
    if (pipe(fds) < 0)
        die("pipe: %s", strerror(errno));
    tree_reading_t before = proxy_root > 0 ? read_tree(proxy_root) : (tree_reading_t){0};
    tree_reading_t origin_before = read_tree(g_origin_pid);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        pin(0);
        double elapsed = 0;
        resume_stats_t st = resume_load(port, conns, seconds, out, &elapsed);
        wrk_result_t w = {0};
        w.requests = (double)st.requests;
        w.rps = elapsed > 0 ? (double)st.requests / elapsed : 0;
        w.errors = st.err_connect + st.err_tls + st.err_io + st.err_status + st.err_timeout;
        w.later_conns = st.later;
        w.resumed = st.resumed;
        if (st.nlat > 0) {
            qsort(st.lat_ms, st.nlat, sizeof(double), cmp_double);
            w.p50_ms = st.lat_ms[st.nlat / 2];
            w.p99_ms = st.lat_ms[(size_t)((double)(st.nlat - 1) * 0.99)];
        }
        ssize_t n = write(fds[1], &w, sizeof(w));
        _exit(n == (ssize_t)sizeof(w) ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = read(fds[0], (char *)&r + got, sizeof(r) - got);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            break;
        if (n > 0)
            got += (size_t)n;
    }
    close(fds[0]);
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    if (got != sizeof(r))
        r = (wrk_result_t){.errors = 1}; /* the load generator failed */
    tree_reading_t after = proxy_root > 0 ? read_tree(proxy_root) : (tree_reading_t){0};
    tree_reading_t origin_after = read_tree(g_origin_pid);
    double gen_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                   (double)ru.ru_stime.tv_usec / 1e6;
    per_request(&r, proxy_root, before, after, gen_s + origin_after.cpu_s - origin_before.cpu_s);
    return r;
}

/* Stops the bench: the contender did not resume sessions (https-resume
 * would then measure full handshakes). */
static void refuse_resumption(const char *scenario, const char *proxy, wrk_result_t w)
{
    fprintf(stderr,
            "bench: %s: %s: resumed %ld of %ld connections after each slot's first (%.1f%%, < %.0f%%); its run is "
            "not a measurement of resumption.\n",
            scenario, proxy, w.resumed, w.later_conns,
            w.later_conns ? 100.0 * (double)w.resumed / (double)w.later_conns : 0, RESUME_MIN_FRACTION * 100);
    die("refused (logs in %s; --allow-errors measures anyway)", g_tmp);
}

/* ---- idle keep-alive connections ---- */

/* Reads one small response ("ok\n" body) from fd, with a deadline. */
static bool read_small_response(int fd)
{
    char buf[4096];
    size_t len = 0;
    double deadline = now_s() + 2;
    while (now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            return false;
        len += (size_t)r;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end && strstr(end, "ok\n"))
            return true;
        if (len == sizeof(buf) - 1)
            return false;
    }
    return false;
}

/* Opens n connections and completes one request on each, IDLE_BATCH at a
 * time (each batch's responses are read before the next batch starts, as
 * clients that come and go would), then returns the RSS growth per
 * connection in bytes while they all sit idle. Every proxy is measured the
 * same way. Sending all n requests before reading any would measure n
 * requests in flight at once (n read buffers, n transactions), not idle
 * connections, and an allocator that keeps freed memory would then count it
 * against the idle connections. The baseline is taken after a 64-connection
 * warm-up, so per-request pools of up to 64 objects already exist. */
#define IDLE_BATCH 32
static double idle_conn_cost(int port, pid_t root, int n)
{
    int *fds = calloc((size_t)n, sizeof(int));
    usleep(200000);
    tree_reading_t base = read_tree(root);
    int open_n = 0;
    const char req[] = "GET /small HTTP/1.1\r\nHost: bench\r\n\r\n";
    for (int i0 = 0; i0 < n; i0 += IDLE_BATCH) {
        int i1 = i0 + IDLE_BATCH < n ? i0 + IDLE_BATCH : n;
        for (int i = i0; i < i1; i++) {
            fds[i] = connect_port(port);
            if (fds[i] >= 0 && write(fds[i], req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
                close(fds[i]);
                fds[i] = -1;
            }
            open_n = i + 1;
        }
        for (int i = i0; i < i1; i++)
            if (fds[i] >= 0 && !read_small_response(fds[i])) {
                close(fds[i]);
                fds[i] = -1;
            }
    }
    usleep(500000);
    tree_reading_t held = read_tree(root);
    int alive = 0;
    for (int i = 0; i < open_n; i++)
        if (fds[i] >= 0) {
            alive++;
            close(fds[i]);
        }
    free(fds);
    if (alive < n * 9 / 10)
        return -1; /* not a measurement of n connections */
    return (double)(held.rss_kb - base.rss_kb) * 1024.0 / alive;
}

/* ---- scrapes during a run ---- */

typedef struct scraper {
    int port;
    volatile bool stop;
    double max_ms;
    double sum_ms;
    int n;
    size_t bytes;
} scraper_t;

static void *scrape_loop(void *arg)
{
    scraper_t *s = arg;
    while (!s->stop) {
        double t0 = now_s();
        size_t len = 0;
        if (http_get(s->port, "/metrics", &len) == 200) {
            double ms = (now_s() - t0) * 1000.0;
            s->sum_ms += ms;
            s->n++;
            s->bytes = len;
            if (ms > s->max_ms)
                s->max_ms = ms;
        }
        for (int i = 0; i < 10 && !s->stop; i++)
            usleep(100000);
    }
    return NULL;
}

/* ---- the contenders ---- */

typedef enum {
    P_NGINX = 0,
    P_HAPROXY,
    P_H2O,
    P_SWARMGATE,
    P_SWARMGATE_BARE,   /* trace, metrics, access log, poller and scrapes off */
    P_SWARMGATE_QUIET,  /* as P_SWARMGATE but no Postgres poller and no scrapes */
    P_SWARMGATE_ALT,    /* as P_SWARMGATE plus --alt-config's line */
    P_SWARMGATE_EGRESS, /* as P_SWARMGATE, its listener in egress mode (forward proxy) */
    P_SQUID,            /* Debian's squid as a forward proxy, caching off */
    P__COUNT
} proxy_t;
static const char *const proxy_names[P__COUNT] = {"nginx",         "haproxy",           "h2o",
                                                  "swarmgate",     "swarmgate-obs-off", "swarmgate-no-poll",
                                                  "swarmgate-alt", "swarmgate-egress",  "squid"};

/* Forward proxies are asked for this absolute-form target (the origin). */
static bool is_forward(proxy_t p)
{
    return p == P_SWARMGATE_EGRESS || p == P_SQUID;
}
static char g_abs_small[128]; /* "http://127.0.0.1:<origin>/small" */
static sg_pg_harness_t *g_pg;

typedef struct running {
    pid_t pid;
    int port;
    int admin_port;
} running_t;

static running_t start_proxy(proxy_t p, int workers)
{
    running_t r = {0};
    r.port = pick_port();
    char conf[64], log[512], path[512];
    snprintf(log, sizeof(log), "%s/%s.log", g_tmp, proxy_names[p]);
    int cpu = workers == 1 ? 1 : -1;
    switch (p) {
    case P_NGINX: {
        snprintf(conf, sizeof(conf), "nginx-proxy-%d.conf", workers);
        write_file(conf,
                   "worker_processes %d;\ndaemon off;\npid %s/nginx-proxy.pid;\nerror_log %s/nginx-proxy.err;\n"
                   "events { worker_connections 8192; }\n"
                   "http { access_log off; keepalive_requests 1000000;\n"
                   " client_body_temp_path %s; proxy_temp_path %s;\n"
                   " upstream origin { server 127.0.0.1:%d; keepalive 1024; }\n"
                   " server { listen 127.0.0.1:%d%s; %s%s%s%s%s location / { proxy_pass http://origin;"
                   " proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }\n",
                   workers, g_tmp, g_tmp, g_tmp, g_tmp, g_origin_port, r.port, g_tls ? " ssl" : "",
                   g_tls ? "ssl_protocols TLSv1.3; ssl_session_tickets on; ssl_certificate " : "",
                   g_tls ? g_tls_cert : "", g_tls ? "; ssl_certificate_key " : "", g_tls ? g_tls_key : "",
                   g_tls ? ";" : "");
        snprintf(path, sizeof(path), "%s/%s", g_tmp, conf);
        char *argv[] = {"nginx", "-c", path, "-p", g_tmp, NULL};
        r.pid = spawn(cpu, log, argv);
        break;
    }
    case P_HAPROXY: {
        snprintf(conf, sizeof(conf), "haproxy-%d.cfg", workers);
        write_file(conf,
                   "global\n  nbthread %d\n  maxconn 8000\n"
                   "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
                   "  option http-keep-alive\n  http-reuse always\n"
                   "frontend fe\n  bind 127.0.0.1:%d%s%s%s\n  default_backend be\n"
                   "backend be\n  server origin 127.0.0.1:%d\n",
                   workers, r.port, g_tls ? " ssl crt " : "", g_tls ? g_tls_pem : "",
                   g_tls ? " alpn http/1.1 ssl-min-ver TLSv1.3" : "", g_origin_port);
        snprintf(path, sizeof(path), "%s/%s", g_tmp, conf);
        char *argv[] = {"haproxy", "-db", "-f", path, NULL};
        r.pid = spawn(cpu, log, argv);
        break;
    }
    case P_H2O: {
        /* One thread per worker, like the others; keep-alive to the origin
         * is h2o's default. No access log, as nginx's and HAProxy's here.
         * The crash handler (a perl script by default, a child process for
         * the life of the server) is cat, so that it adds little to the RSS
         * read from the process tree. OCSP stapling off (a self-signed
         * certificate has no responder). */
        char tls_yaml[1400] = "";
        if (g_tls)
            snprintf(tls_yaml, sizeof(tls_yaml),
                     "  ssl:\n    certificate-file: %s\n    key-file: %s\n    minimum-version: TLSv1.3\n"
                     "    ocsp-update-interval: 0\n",
                     g_tls_cert, g_tls_key);
        snprintf(conf, sizeof(conf), "h2o-%d.conf", workers);
        write_file(conf,
                   "num-threads: %d\npid-file: %s/h2o.pid\nerror-log: %s/h2o.err\ncrash-handler: /bin/cat\n"
                   "listen:\n  host: 127.0.0.1\n  port: %d\n%s"
                   "hosts:\n  default:\n    paths:\n      /:\n        proxy.reverse.url: http://127.0.0.1:%d/\n",
                   workers, g_tmp, g_tmp, r.port, tls_yaml, g_origin_port);
        snprintf(path, sizeof(path), "%s/%s", g_tmp, conf);
        char *argv[] = {"h2o", "-c", path, NULL};
        r.pid = spawn(cpu, log, argv);
        break;
    }
    case P_SQUID: {
        /* A forward proxy as operators run it with caching off: one process
         * (-N: no daemon, no kid processes), no memory or disk cache, access
         * log to a file. Run as root, squid switches to its own user: its
         * files go in a directory that user owns. */
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/squid", g_tmp);
        mkdir(dir, 0755);
        struct passwd *pw = geteuid() == 0 ? getpwnam("proxy") : NULL;
        if (pw && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
            die("chown %s: %s", dir, strerror(errno));
        snprintf(conf, sizeof(conf), "squid/squid.conf");
        write_file(conf,
                   "workers 1\nhttp_port 127.0.0.1:%d\npid_filename %s/squid.pid\n"
                   "cache deny all\ncache_mem 0 MB\ncache_store_log none\n"
                   "access_log stdio:%s/access.log\ncache_log %s/cache.log\ncoredump_dir %s\n"
                   "pinger_enable off\nshutdown_lifetime 0 seconds\n"
                   "http_access allow localhost\nhttp_access deny all\n",
                   r.port, dir, dir, dir, dir);
        snprintf(path, sizeof(path), "%s/%s", g_tmp, conf);
        char *argv[] = {"squid", "-N", "-f", path, NULL};
        r.pid = spawn(cpu, log, argv);
        break;
    }
    case P_SWARMGATE:
    case P_SWARMGATE_BARE:
    case P_SWARMGATE_QUIET:
    case P_SWARMGATE_ALT:
    case P_SWARMGATE_EGRESS: {
        bool obs = p != P_SWARMGATE_BARE;
        bool poll = p == P_SWARMGATE || p == P_SWARMGATE_ALT || p == P_SWARMGATE_EGRESS;
        char pg[512] = "";
        if (poll)
            snprintf(pg, sizeof(pg), "postgres: {conninfo: \"%s\", interval: 1s, required: true}\n",
                     sg_pgh_conninfo(g_pg));
        r.admin_port = pick_port();
        /* 10 routes x 5 upstreams, as a realistic registry for /metrics.
         * swarmgate runs at its defaults (#18): its pools keep what recent
         * load needed, as HAProxy's do; nginx needs keepalive set. */
        char routes[2048] = "", ups[2048] = "";
        size_t rl = 0, ul = 0;
        for (int u = 0; u < 5; u++)
            ul += (size_t)snprintf(ups + ul, sizeof(ups) - ul, "  up%d: {servers: [\"127.0.0.1:%d\"]}\n", u,
                                   g_origin_port);
        for (int i = 0; i < 9; i++)
            rl += (size_t)snprintf(routes + rl, sizeof(routes) - rl,
                                   "  - {name: r%d, match: {prefix: /r%d/}, upstream: up%d}\n", i, i, i % 5);
        snprintf(routes + rl, sizeof(routes) - rl, "  - {name: main, match: {prefix: /}, upstream: up4}\n");
        char tls_yaml[1200] = "";
        if (g_tls)
            snprintf(tls_yaml, sizeof(tls_yaml), ", tls: {cert: \"%s\", key: \"%s\", min_version: \"1.3\"}", g_tls_cert,
                     g_tls_key);
        /* Egress: the same process, its listener a forward proxy; the
         * allow-list names the origin's loopback address and port (loopback
         * is refused unless an IP entry names it), everything else at its
         * defaults. */
        char egress[128] = "";
        if (p == P_SWARMGATE_EGRESS)
            snprintf(egress, sizeof(egress), "egress: {allow: [\"127.0.0.1:%d\"]}\n", g_origin_port);
        snprintf(conf, sizeof(conf), "swarmgate-%s-%d.yaml", proxy_names[p], workers);
        write_file(conf,
                   "%s\nworkers: %d\nlisteners:\n  - {name: api, address: \"127.0.0.1:%d\", mode: %s%s}\n"
                   "admin: {address: \"127.0.0.1:%d\"}\nupstreams:\n%sroutes:\n%s%s"
                   "trace: {header: X-Trace-Id, traceparent: %s}\n"
                   "log: {access: %s%s, level: warn}\n%s",
                   p == P_SWARMGATE_ALT && g_alt_yaml ? g_alt_yaml : "", workers, r.port,
                   p == P_SWARMGATE_EGRESS ? "egress" : "reverse", tls_yaml, r.admin_port, ups, routes, egress,
                   obs ? "true" : "false", obs ? g_tmp : "off", obs ? "/access.log" : "", pg);
        snprintf(path, sizeof(path), "%s/%s", g_tmp, conf);
        char *argv[] = {(char *)(p == P_SWARMGATE_ALT && g_alt_bin ? g_alt_bin : g_sg_bin), "--config", path, NULL};
        r.pid = spawn(cpu, log, argv);
        break;
    }
    default:
        break;
    }
    wait_ready(r.port, is_forward(p) ? g_abs_small : "/small", proxy_names[p]);
    return r;
}

static double median(double *v, int n)
{
    if (n <= 0)
        return 0; /* that contender did not run in the scenario */
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Ratios are taken within a round (the contenders of one round ran back to
 * back, under the same background load), then the median over rounds. */
static double median_ratio(const double *a, const double *b, int n)
{
    double r[MAX_ROUNDS];
    for (int i = 0; i < n; i++)
        r[i] = b[i] > 0 ? a[i] / b[i] : 0;
    return median(r, n);
}

typedef struct cell {
    double rps[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], peer[MAX_ROUNDS];
    double cpu[MAX_ROUNDS], usr[MAX_ROUNDS], sys[MAX_ROUNDS]; /* us per request: total, user, system */
    double resumed[MAX_ROUNDS]; /* https-resume: the fraction of later connections resumed */
    long errors;
    int n;
    long hwm_kb;
} cell_t;

typedef struct scenario {
    const char *name;
    const char *path;
    int conns;
    int workers;
    bool with_bare;  /* also swarmgate with all observability off */
    bool with_quiet; /* also swarmgate without the Postgres poller and scrapes */
    bool with_id;    /* requests carry X-Trace-Id (the platform's normal case) */
    bool tls;        /* HTTPS to the proxies (TLS 1.3, the same certificate) */
    bool tls_close;  /* ... and a new connection (a full handshake) per request */
    bool tls_resume; /* ... a new connection per request resuming the last session (run_resume, not wrk) */
    bool egress;     /* forward proxies (absolute-form requests): swarmgate's egress listener and squid, with
                        swarmgate's reverse mode on the same load for the CPU comparison */
    cell_t cell[P__COUNT];
    double direct_rps;
} scenario_t;

static FILE *g_json;

/* The contenders of a scenario, in their first round's order. */
static int contenders(const scenario_t *sc, int list[P__COUNT])
{
    int n = 0;
    if (sc->egress) {
        list[n++] = P_SWARMGATE;
        list[n++] = P_SWARMGATE_EGRESS;
        list[n++] = P_SQUID;
        return n;
    }
    for (int p = 0; p <= P_SWARMGATE; p++)
        list[n++] = p;
    if (sc->with_bare)
        list[n++] = P_SWARMGATE_BARE;
    if (sc->with_quiet)
        list[n++] = P_SWARMGATE_QUIET;
    if (g_alt_yaml || g_alt_bin)
        list[n++] = P_SWARMGATE_ALT;
    return n;
}

static void run_scenario(scenario_t *sc)
{
    int list[P__COUNT];
    int nprox = contenders(sc, list);
    g_tls = sc->tls;
    g_tls_close = sc->tls_close;
    printf("\n== %s: GET %s%s%s%s, %d connections, %d worker(s), %d rounds x (%d s warm-up + %d s)\n", sc->name,
           sc->egress ? g_abs_small : sc->path, sc->egress ? " (absolute form; swarmgate reverse: GET /small)" : "",
           sc->with_id ? " with X-Trace-Id" : "",
           sc->tls_resume ? " over TLS 1.3, a resumed handshake (session ticket) per request"
           : sc->tls      ? (sc->tls_close ? " over TLS 1.3, a handshake per request" : " over TLS 1.3 (keep-alive)")
                          : "",
           sc->conns, sc->workers, g_rounds, WARMUP_S, g_duration);
    fflush(stdout);
    wrk_result_t d = run_wrk(g_origin_port, sc->path, sc->conns, DIRECT_S, sc->with_id, 0);
    sc->direct_rps = d.rps;
    for (int round = 0; round < g_rounds; round++) {
        /* The order rotates from round to round, so that no contender
         * always runs first or always right after another one. */
        for (int k = 0; k < nprox; k++) {
            int p = list[(k + round) % nprox];
            running_t r = start_proxy((proxy_t)p, sc->workers);
            scraper_t scr = {.port = r.admin_port};
            pthread_t th;
            bool scraping = r.admin_port > 0 && p != P_SWARMGATE_QUIET;
            if (scraping)
                pthread_create(&th, NULL, scrape_loop, &scr);
            const char *target = is_forward((proxy_t)p) ? g_abs_small : sc->path;
            wrk_result_t wu = sc->tls_resume ? run_resume(r.port, sc->conns, WARMUP_S, 0)
                                             : run_wrk(r.port, target, sc->conns, WARMUP_S, sc->with_id, 0);
            wrk_result_t w = sc->tls_resume ? run_resume(r.port, sc->conns, g_duration, r.pid)
                                            : run_wrk(r.port, target, sc->conns, g_duration, sc->with_id, r.pid);
            if (scraping) {
                scr.stop = true;
                pthread_join(th, NULL);
            }
            if ((wu.errors || w.errors) && !g_allow_errors)
                refuse(sc->name, proxy_names[p], wu.errors + w.errors);
            double resumed = w.later_conns > 0 ? (double)w.resumed / (double)w.later_conns : 0;
            if (sc->tls_resume && resumed < RESUME_MIN_FRACTION && !g_allow_errors)
                refuse_resumption(sc->name, proxy_names[p], w);
            cell_t *c = &sc->cell[p];
            c->rps[c->n] = w.rps;
            c->p50[c->n] = w.p50_ms;
            c->p99[c->n] = w.p99_ms;
            c->cpu[c->n] = w.cpu_us_per_req;
            c->usr[c->n] = w.usr_us_per_req;
            c->sys[c->n] = w.sys_us_per_req;
            c->peer[c->n] = w.peer_us_per_req;
            c->resumed[c->n] = resumed;
            c->errors += w.errors;
            c->n++;
            tree_reading_t t = read_tree(r.pid);
            if (t.hwm_kb > c->hwm_kb)
                c->hwm_kb = t.hwm_kb;
            printf(
                "  round %d %-18s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %6.2f us/req (user %5.2f, sys %5.2f)  "
                "peer %6.2f%s",
                round + 1, proxy_names[p], w.rps, w.p50_ms, w.p99_ms, w.cpu_us_per_req, w.usr_us_per_req,
                w.sys_us_per_req, w.peer_us_per_req, w.errors ? "  ERRORS" : "");
            if (sc->tls_resume)
                printf("  resumed %.1f%% (%ld of %ld)", resumed * 100, w.resumed, w.later_conns);
            if (scraping && scr.n)
                printf("  scrape max %.2f ms (%zu B)", scr.max_ms, scr.bytes);
            printf("\n");
            fflush(stdout);
            stop_pid(r.pid);
        }
    }
}

/* ---- /metrics render cost ---- */

typedef struct scrape_cost {
    double metrics_p50_ms, metrics_max_ms, live_p50_ms;
    size_t bytes;
    int series; /* sample lines of swarm_ families */
} scrape_cost_t;

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* swarmgate (1 worker, Postgres polled) after requests on each of its 10
 * routes, so every route's histograms, every upstream's and the ticket
 * gauges are in the exposition; then 50 GETs of /metrics against 50 of
 * /health/live on the same admin listener (the difference is rendering). */
static scrape_cost_t measure_scrape(void)
{
    enum { N = 50 };
    scrape_cost_t sc = {0};
    running_t r = start_proxy(P_SWARMGATE, 1);
    char path[64];
    for (int i = 0; i < 10; i++) {
        if (i < 9)
            snprintf(path, sizeof(path), "/r%d/small", i);
        else
            snprintf(path, sizeof(path), "/small");
        for (int k = 0; k < 20; k++)
            http_get(r.port, path, NULL);
    }
    usleep(1500000); /* the poller's first round (interval 1 s) */
    static char body[1 << 20];
    double m[N], l[N];
    for (int i = 0; i < N; i++) {
        double t0 = now_s();
        http_fetch(r.admin_port, "/metrics", &sc.bytes, body, sizeof(body));
        m[i] = (now_s() - t0) * 1000.0;
    }
    for (int i = 0; i < N; i++) {
        double t0 = now_s();
        http_get(r.admin_port, "/health/live", NULL);
        l[i] = (now_s() - t0) * 1000.0;
    }
    for (const char *q = body; q && *q; q = strchr(q, '\n'), q = q ? q + 1 : q)
        if (strncmp(q, "swarm_", 6) == 0)
            sc.series++;
    sc.metrics_p50_ms = median_of(m, N);
    sc.metrics_max_ms = m[N - 1];
    sc.live_p50_ms = median_of(l, N);
    stop_pid(r.pid);
    return sc;
}

static bool g_all_met = true;

/* "-" when the reference did not run (a scenario without that contender). */
static const char *fmt_ratio(char buf[16], double v, double ref)
{
    if (ref > 0)
        snprintf(buf, 16, "%.3f", v / ref);
    else
        snprintf(buf, 16, "-");
    return buf;
}

/* A ratio printed and recorded but not a target (all_targets_met ignores it). */
static void info(const char *what, double value, bool *first)
{
    printf("  %-62s %8.3f\n", what, value);
    fprintf(g_json, "%s    {\"what\": \"%s\", \"value\": %.4f}", *first ? "" : ",\n", what, value);
    *first = false;
}

static void target(const char *what, double value, double limit, bool lower_is_better)
{
    bool ok = lower_is_better ? value <= limit : value >= limit;
    if (!ok)
        g_all_met = false;
    printf("  %-62s %8.3f %s %-6.3g %s\n", what, value, lower_is_better ? "<=" : ">=", limit, ok ? "MET" : "MISSED");
    fprintf(g_json, "%s    {\"target\": \"%s\", \"value\": %.4f, \"limit\": %.4f, \"met\": %s}", "", what, value, limit,
            ok ? "true" : "false");
}

int main(int argc, char **argv)
{
    const char *out_json = "build/bench.json";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--swarmgate") && i + 1 < argc)
            g_sg_bin = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_json = argv[++i];
        else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
            g_duration = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            g_rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--idle-conns") && i + 1 < argc)
            g_idle_conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--idle-only"))
            g_idle_only = true; /* only the idle-connection measurement (iteration aid) */
        else if (!strcmp(argv[i], "--scenarios") && i + 1 < argc)
            g_only = argv[++i]; /* comma-separated names; implies --no-idle */
        else if (!strcmp(argv[i], "--no-idle"))
            g_no_idle = true;
        else if (!strcmp(argv[i], "--no-scrape"))
            g_no_scrape = true; /* skip the /metrics render measurement (iteration aid) */
        else if (!strcmp(argv[i], "--allow-errors"))
            g_allow_errors = true;
        else if (!strcmp(argv[i], "--alt-swarmgate") && i + 1 < argc)
            g_alt_bin = argv[++i];
        else if (!strcmp(argv[i], "--alt-config") && i + 1 < argc && strchr(argv[i + 1], ':'))
            g_alt_yaml = argv[++i];
        else
            die("usage: bench --swarmgate BIN [--out FILE] [--duration S] [--rounds N] [--idle-conns N] [--idle-only]"
                " [--scenarios NAME,...] [--no-idle] [--no-scrape] [--allow-errors] [--alt-config \"key: value\"]"
                " [--alt-swarmgate PATH]");
    }
    if (!g_sg_bin)
        die("--swarmgate BIN is required");
    if (g_rounds < 1 || g_rounds > MAX_ROUNDS)
        die("--rounds must be 1..%d", MAX_ROUNDS);
    g_ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* Room for the idle connections: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_all);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/sgbench.XXXXXX");
    if (!mkdtemp(g_tmp))
        die("mkdtemp: %s", strerror(errno));
    /* squid, run as root, switches to its own user, which must reach its
     * directory in here (nothing in here can be listed by others). */
    chmod(g_tmp, 0711);
    g_json = fopen(out_json, "w");
    if (!g_json)
        die("cannot write %s: %s", out_json, strerror(errno));
    double t_start = now_s();

    /* The origin: nginx with a small and a 16 KiB body, on CPU 0 with wrk. */
    g_origin_port = pick_port();
    char body16k[16385];
    for (int i = 0; i < 16384; i++)
        body16k[i] = (char)('a' + i % 26);
    body16k[16384] = 0;
    write_file("16k", "%s", body16k);
    write_file("origin.conf",
               "worker_processes 1;\ndaemon off;\npid %s/origin.pid;\nerror_log %s/origin.err;\n"
               "events { worker_connections 8192; }\n"
               "http { access_log off; keepalive_requests 1000000; client_body_temp_path %s;\n"
               " server { listen 127.0.0.1:%d; root %s;\n"
               "  location = /small { default_type text/plain; return 200 \"ok\\n\"; }\n"
               "  location = /16k { default_type text/plain; } } }\n",
               g_tmp, g_tmp, g_tmp, g_origin_port, g_tmp);
    char origin_conf[512];
    snprintf(origin_conf, sizeof(origin_conf), "%s/origin.conf", g_tmp);
    char *oargv[] = {"nginx", "-c", origin_conf, "-p", g_tmp, NULL};
    g_origin_pid = spawn(0, NULL, oargv);
    wait_ready(g_origin_port, "/small", "origin nginx");
    snprintf(g_abs_small, sizeof(g_abs_small), "http://127.0.0.1:%d/small", g_origin_port);
    /* One certificate for every TLS contender (EC P-256, like most). */
    snprintf(g_tls_cert, sizeof(g_tls_cert), "%s/tls.pem", g_tmp);
    snprintf(g_tls_key, sizeof(g_tls_key), "%s/tls.key", g_tmp);
    snprintf(g_tls_pem, sizeof(g_tls_pem), "%s/tls-haproxy.pem", g_tmp);
    char mk[4096];
    snprintf(mk, sizeof(mk),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 && chmod 600 %s && "
             "cat %s %s > %s",
             g_tls_key, g_tls_cert, g_tls_key, g_tls_cert, g_tls_key, g_tls_pem);
    if (system(mk) != 0)
        die("openssl could not make the benchmark certificate");
    g_pg = sg_pgh_start_reference();
    if (!g_pg)
        die("could not start a throwaway PostgreSQL with the reference data (make deps installs postgresql)");

    scenario_t scs[] = {
        {.name = "small-64", .path = "/small", .conns = 64, .workers = 1, .with_bare = true, .with_quiet = true},
        {.name = "small-64-id", .path = "/small", .conns = 64, .workers = 1, .with_id = true},
        {.name = "small-256", .path = "/small", .conns = 256, .workers = 1},
        {.name = "small-256-id", .path = "/small", .conns = 256, .workers = 1, .with_id = true},
        {.name = "16k-64", .path = "/16k", .conns = 64, .workers = 1},
        {.name = "16k-256", .path = "/16k", .conns = 256, .workers = 1},
        {.name = "small-64-2workers", .path = "/small", .conns = 64, .workers = 2},
        {.name = "https-64", .path = "/small", .conns = 64, .workers = 1, .tls = true},
        {.name = "https-handshakes", .path = "/small", .conns = 16, .workers = 1, .tls = true, .tls_close = true},
        {.name = "https-resume", .path = "/small", .conns = 16, .workers = 1, .tls = true, .tls_resume = true},
        {.name = "egress-64", .path = "/small", .conns = 64, .workers = 1, .egress = true},
    };
    size_t nsc = g_idle_only ? 0 : sizeof(scs) / sizeof(scs[0]);
    if (g_only) {
        /* Keep the listed scenarios, in table order. */
        size_t k = 0;
        for (size_t i = 0; i < nsc; i++) {
            size_t nl = strlen(scs[i].name);
            for (const char *q = g_only; *q;) {
                const char *e = strchr(q, ',');
                size_t ql = e ? (size_t)(e - q) : strlen(q);
                if (ql == nl && strncmp(q, scs[i].name, nl) == 0) {
                    scs[k++] = scs[i];
                    break;
                }
                q += ql + (e ? 1 : 0);
            }
        }
        if (k == 0)
            die("--scenarios %s: no such scenario (small-64, small-64-id, small-256, small-256-id, 16k-64, 16k-256, "
                "small-64-2workers, https-64, https-handshakes, https-resume, egress-64)",
                g_only);
        nsc = k;
        g_no_idle = true;
    }
    /* Wall time is bounded by construction: every contender runs a fixed
     * warm-up and measured run per round; starting and stopping one takes
     * well under a second. */
    int nruns = 0;
    for (size_t i = 0; i < nsc; i++) {
        int list[P__COUNT];
        nruns += contenders(&scs[i], list) * g_rounds;
    }
    printf("planned: %zu scenarios, %d contender runs of %d s + %d s warm-up; about %.0f s in all\n", nsc, nruns,
           g_duration, WARMUP_S,
           10 + nruns * (g_duration + WARMUP_S + 1.3) + (double)nsc * (DIRECT_S + 0.5) + (g_no_idle ? 0 : 20) +
               (nsc > 0 && !g_no_scrape ? 6 : 0));
    fflush(stdout);
    for (size_t i = 0; i < nsc; i++)
        run_scenario(&scs[i]);
    g_tls = g_tls_close = false;

    scrape_cost_t scrape = {0};
    bool scraped = nsc > 0 && !g_no_scrape;
    if (scraped) {
        scrape = measure_scrape();
        printf("\n== /metrics with 10 routes x 5 upstreams, traffic on every route, Postgres polled\n"
               "  %zu bytes, %d swarm_ samples; GET /metrics p50 %.2f ms (max %.2f), GET /health/live p50 %.2f ms\n",
               scrape.bytes, scrape.series, scrape.metrics_p50_ms, scrape.metrics_max_ms, scrape.live_p50_ms);
    }

    /* Idle keep-alive connection cost (the reverse proxies). */
    double idle[P__COUNT];
    for (int p = 0; p < P__COUNT; p++)
        idle[p] = -1;
    if (!g_no_idle)
        printf("\n== idle keep-alive connections: %d held open after one request each\n", g_idle_conns);
    for (int p = 0; p <= P_SWARMGATE && !g_no_idle; p++) {
        running_t r = start_proxy((proxy_t)p, 1);
        run_wrk(r.port, "/small", 64, WARMUP_S, false, 0);
        idle[p] = idle_conn_cost(r.port, r.pid, g_idle_conns);
        printf("  %-18s %8.0f B per idle connection\n", proxy_names[p], idle[p]);
        stop_pid(r.pid);
    }

    /* Summary. */
    printf("\n== summary (medians over rounds; cpu = user + sys, the proxy's own, per request)\n");
    printf("  %-20s %-18s %9s %8s %8s %8s %8s %8s %9s %8s %8s %8s %8s\n", "scenario", "proxy", "req/s", "p50 ms",
           "p99 ms", "cpu us", "user us", "sys us", "peak RSS", "x nginx", "x haprox", "x h2o", "peer us");
    fprintf(g_json, "{\n  \"duration_s\": %d,\n  \"rounds\": %d,\n  \"scenarios\": [\n", g_duration, g_rounds);
    for (size_t i = 0; i < nsc; i++) {
        scenario_t *sc = &scs[i];
        fprintf(g_json, "%s    {\"name\": \"%s\", \"direct_rps\": %.1f, \"results\": {", i ? ",\n" : "", sc->name,
                sc->direct_rps);
        int list[P__COUNT];
        int nprox = contenders(sc, list);
        double ng = median(sc->cell[P_NGINX].rps, sc->cell[P_NGINX].n);
        double hp = median(sc->cell[P_HAPROXY].rps, sc->cell[P_HAPROXY].n);
        double h2 = median(sc->cell[P_H2O].rps, sc->cell[P_H2O].n);
        for (int k = 0; k < nprox; k++) {
            int p = list[k];
            cell_t *c = &sc->cell[p];
            double rps = median(c->rps, c->n);
            char xn[16], xh[16], x2[16];
            printf("  %-20s %-18s %9.0f %8.3f %8.3f %8.2f %8.2f %8.2f %7ld K %8s %8s %8s %8.2f%s\n", sc->name,
                   proxy_names[p], rps, median(c->p50, c->n), median(c->p99, c->n), median(c->cpu, c->n),
                   median(c->usr, c->n), median(c->sys, c->n), c->hwm_kb, fmt_ratio(xn, rps, ng),
                   fmt_ratio(xh, rps, hp), fmt_ratio(x2, rps, h2), median(c->peer, c->n),
                   c->errors ? "  (errors!)" : "");
            if (sc->tls_resume)
                printf("  %-20s %-18s resumed %.1f%% of the connections after each slot's first (median)\n", "",
                       proxy_names[p], median(c->resumed, c->n) * 100);
            fprintf(g_json,
                    "%s\"%s\": {\"rps\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"cpu_us_per_req\": %.3f, "
                    "\"user_us_per_req\": %.3f, \"sys_us_per_req\": %.3f, "
                    "\"peer_us_per_req\": %.3f, \"peak_rss_kb\": %ld, \"errors\": %ld, \"rounds_rps\": [",
                    k ? ", " : "", proxy_names[p], rps, median(c->p50, c->n), median(c->p99, c->n),
                    median(c->cpu, c->n), median(c->usr, c->n), median(c->sys, c->n), median(c->peer, c->n), c->hwm_kb,
                    c->errors);
            for (int j = 0; j < c->n; j++)
                fprintf(g_json, "%s%.1f", j ? ", " : "", c->rps[j]);
            fprintf(g_json, "]");
            if (sc->tls_resume)
                fprintf(g_json, ", \"resumed_fraction\": %.4f", median(c->resumed, c->n));
            fprintf(g_json, "}");
        }
        printf("  %-20s %-18s %9.0f\n", sc->name, "(direct, no proxy)", sc->direct_rps);
        if (sc->egress) {
            const cell_t *e = &sc->cell[P_SWARMGATE_EGRESS];
            printf("  %-20s swarmgate-egress, paired medians: req/s x squid %.3f, x swarmgate reverse %.3f; cpu/req x "
                   "squid %.3f, x swarmgate reverse %.3f\n",
                   sc->name, median_ratio(e->rps, sc->cell[P_SQUID].rps, e->n),
                   median_ratio(e->rps, sc->cell[P_SWARMGATE].rps, e->n),
                   median_ratio(e->cpu, sc->cell[P_SQUID].cpu, e->n),
                   median_ratio(e->cpu, sc->cell[P_SWARMGATE].cpu, e->n));
        }
        if ((g_alt_yaml || g_alt_bin) && !sc->egress) {
            const cell_t *a = &sc->cell[P_SWARMGATE_ALT], *b = &sc->cell[P_SWARMGATE];
            printf("  %-20s swarmgate-alt (%s) x swarmgate, paired medians: req/s %.3f  p99 %.3f  cpu/req %.3f  "
                   "peer/req %.3f\n",
                   sc->name, g_alt_bin ? g_alt_bin : g_alt_yaml, median_ratio(a->rps, b->rps, a->n),
                   median_ratio(a->p99, b->p99, a->n), median_ratio(a->cpu, b->cpu, a->n),
                   median_ratio(a->peer, b->peer, a->n));
        }
        fprintf(g_json, "}}");
    }
    fprintf(
        g_json,
        "\n  ],\n  \"idle_conn_bytes\": {\"nginx\": %.0f, \"haproxy\": %.0f, \"h2o\": %.0f, \"swarmgate\": %.0f},\n",
        idle[P_NGINX], idle[P_HAPROXY], idle[P_H2O], idle[P_SWARMGATE]);

    fprintf(g_json,
            "  \"scrape\": {\"bytes\": %zu, \"swarm_samples\": %d, \"metrics_p50_ms\": %.3f, \"metrics_max_ms\": %.3f, "
            "\"live_p50_ms\": %.3f},\n",
            scrape.bytes, scrape.series, scrape.metrics_p50_ms, scrape.metrics_max_ms, scrape.live_p50_ms);
    /* The targets of #18: ratios are medians of per-round ratios. CPU per
     * request is compared where one process does the work on its own CPU
     * (1 worker, plain HTTP): with TLS the same OpenSSL does most of it in
     * every contender. */
    printf("\n== targets (#18)\n");
    fprintf(g_json, "  \"targets\": [\n");
    bool first = true;
    for (size_t i = 0; i < nsc; i++) {
        scenario_t *sc = &scs[i];
        char what[128];
        const cell_t *sg = &sc->cell[P_SWARMGATE], *ng = &sc->cell[P_NGINX], *hp = &sc->cell[P_HAPROXY];
#define SEP() (fprintf(g_json, "%s", first ? "" : ",\n"), first = false)
        if (sc->egress) {
            const cell_t *e = &sc->cell[P_SWARMGATE_EGRESS];
            snprintf(what, sizeof(what), "%s egress throughput x squid", sc->name);
            SEP();
            target(what, median_ratio(e->rps, sc->cell[P_SQUID].rps, e->n), 3.0, false);
            snprintf(what, sizeof(what), "%s egress cpu/req x swarmgate reverse", sc->name);
            SEP();
            target(what, median_ratio(e->cpu, sg->cpu, e->n), 1.1, true);
            continue;
        }
        snprintf(what, sizeof(what), "%s throughput x nginx", sc->name);
        SEP();
        target(what, median_ratio(sg->rps, ng->rps, sg->n), 1.0, false);
        snprintf(what, sizeof(what), "%s throughput x haproxy", sc->name);
        SEP();
        target(what, median_ratio(sg->rps, hp->rps, sg->n), 1.0, false);
        if (sc->workers == 1) {
            snprintf(what, sizeof(what), "%s p99 x nginx", sc->name);
            SEP();
            target(what, median_ratio(sg->p99, ng->p99, sg->n), 1.0, true);
        }
        if (sc->workers == 1 && !sc->tls) {
            snprintf(what, sizeof(what), "%s user cpu/req x nginx", sc->name);
            SEP();
            target(what, median_ratio(sg->usr, ng->usr, sg->n), 0.5, true);
            snprintf(what, sizeof(what), "%s cpu/req x nginx", sc->name);
            SEP();
            target(what, median_ratio(sg->cpu, ng->cpu, sg->n), 0.9, true);
        }
        if (sc->with_bare) {
            snprintf(what, sizeof(what), "%s observability cpu/req cost (on/off - 1)", sc->name);
            SEP();
            target(what, median_ratio(sg->cpu, sc->cell[P_SWARMGATE_BARE].cpu, sg->n) - 1.0, 0.10, true);
        }
        if (sc->with_quiet) {
            /* Noise: the spread of the contender without poller and scrapes
             * over its own rounds (at least 2 %). */
            const cell_t *q = &sc->cell[P_SWARMGATE_QUIET];
            double lo = q->rps[0], hi = q->rps[0];
            for (int k = 1; k < q->n; k++) {
                lo = q->rps[k] < lo ? q->rps[k] : lo;
                hi = q->rps[k] > hi ? q->rps[k] : hi;
            }
            double med = median(sc->cell[P_SWARMGATE_QUIET].rps, q->n);
            double noise = med > 0 ? (hi - lo) / med : 0;
            noise = noise < 0.02 ? 0.02 : noise;
            snprintf(what, sizeof(what), "%s throughput with/without pg poll+scrapes (noise %.3f)", sc->name, noise);
            SEP();
            target(what, median_ratio(sg->rps, q->rps, sg->n), 1.0 - noise, false);
        }
    }
    if (scraped) {
        SEP();
        target("GET /metrics p50 ms (10 routes x 5 upstreams, all histograms)", scrape.metrics_p50_ms, 5.0, true);
    }
    /* -1: the measurement failed (connections refused or unanswered). */
    if (!g_no_idle) {
        SEP();
        target("RSS bytes per idle keep-alive client connection", idle[P_SWARMGATE] < 0 ? 1e9 : idle[P_SWARMGATE], 400,
               true);
    }
#undef SEP
    /* h2o: measured and printed, not a target of #18. */
    bool any_h2o = !g_no_idle;
    for (size_t i = 0; i < nsc; i++)
        any_h2o = any_h2o || !scs[i].egress;
    if (any_h2o)
        printf("\n== against h2o (informational, not targets)\n");
    fprintf(g_json, "\n  ],\n  \"informational\": [\n");
    first = true;
    for (size_t i = 0; i < nsc; i++) {
        scenario_t *sc = &scs[i];
        if (sc->egress)
            continue;
        const cell_t *sg = &sc->cell[P_SWARMGATE], *h2 = &sc->cell[P_H2O];
        char what[128];
        snprintf(what, sizeof(what), "%s throughput x h2o", sc->name);
        info(what, median_ratio(sg->rps, h2->rps, sg->n), &first);
        if (sc->workers == 1 && !sc->tls) {
            snprintf(what, sizeof(what), "%s user cpu/req x h2o", sc->name);
            info(what, median_ratio(sg->usr, h2->usr, sg->n), &first);
            snprintf(what, sizeof(what), "%s cpu/req x h2o", sc->name);
            info(what, median_ratio(sg->cpu, h2->cpu, sg->n), &first);
        }
    }
    if (!g_no_idle)
        info("RSS bytes per idle keep-alive client connection, h2o", idle[P_H2O], &first);
    fprintf(g_json, "\n  ],\n  \"all_targets_met\": %s,\n  \"wall_s\": %.1f\n}\n", g_all_met ? "true" : "false",
            now_s() - t_start);
    fclose(g_json);
    printf("\nall targets met: %s; wall time %.0f s; results in %s; logs in %s\n", g_all_met ? "yes" : "no",
           now_s() - t_start, out_json, g_tmp);
    stop_all();
    sg_pgh_destroy(g_pg);
    return 0;
}
