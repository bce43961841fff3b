/* sgsoak: the long-run test (issue #9, "Long run"; make soak, make leakcheck).
 *
 * Starts, on loopback only and each stopped by its PID:
 *   - a throwaway PostgreSQL cluster with the reference schema and sample
 *     data (support/pg_harness.h);
 *   - two upstream processes: this same binary run as `sgsoak --upstream NAME
 *     PORT FD`, each serving support/upstream_server.h on 127.0.0.1;
 *   - swarmgate from this build tree (support/proc.h) with trace stamping,
 *     metrics, a JSON access log to a file, the Postgres poller (required for
 *     readiness) and both upstreams in one round-robin group;
 *   - wrk, in cycles: one wrk with keep-alive connections and a mix of
 *     requests (with and without X-Trace-Id / traceparent, a POST, 16 KiB and
 *     chunked bodies), one wrk whose connections all send
 *     `Connection: close` (connection churn).
 * Each cycle injects faults on a schedule: SIGKILL of one upstream (they take
 * turns), a restart on the same port two seconds later, and a Postgres stop
 * and start. Between cycles the load stops (a "quiet point"). Every few
 * seconds it samples swarmgate's RSS (/proc/PID/status VmRSS) and descriptor
 * count (/proc/PID/fd), scrapes /metrics and /health, and prints a table.
 *
 * At the end it asserts (a failure names the check and exits 1):
 *   - RSS: max over the last half <= max over the warm-up (first 20 %) +
 *     SOAK_RSS_SLACK_KB (default 2048); skipped in leak mode, where the ASan
 *     allocator's quarantine makes RSS meaningless;
 *   - descriptors: at every quiet point the count comes back to the baseline
 *     taken after start-up (within the upstream keepalive_timeout + 8 s);
 *   - errors: no 4xx at all, no wrk connect error or timeout. Every 5xx
 *     comes from an upstream kill: in /metrics, each sampling interval with
 *     new 5xx holds a kill (so Postgres restarts cause none); in the access
 *     log, every 5xx line is an upstream failure stamped within 1 s after a
 *     kill, and no client connection loses more than 2 requests to one kill:
 *     the one in flight on the dying upstream, and one sent while the kernel
 *     was still closing that process's sockets (about a millisecond: a
 *     request already written upstream is not retried, DESIGN.md section 2).
 *     Requests that find it refusing connections are retried on the other
 *     server and succeed. So at most 2 C 5xx per kill (C = wrk
 *     connections), and wrk's non-2xx plus read/write errors within
 *     2 C x kills;
 *   - swarm_db_up back to 1 and /health/ready back to 200 after every
 *     Postgres restart; after every upstream restart, its
 *     swarm_upstream_server_up back to 1 and swarmgate connected to the new
 *     process (within 30 s);
 *   - every warn/error line swarmgate logged is explained by an injected
 *     fault (upstream refused/reset/closed, ejection, Postgres down);
 *   - the access log holds one line per counted request (>= 99 %: a full
 *     log ring drops lines by design) plus the requests wrk abandoned when
 *     it stopped (status 0, at most C per cycle);
 *   - swarmgate is alive at the end, answers /health/live, and exits 0 on
 *     SIGTERM; in leak mode its stderr has no LeakSanitizer, AddressSanitizer
 *     or UBSan report.
 *
 * Environment: SOAK_SECONDS (600), SOAK_MODE (soak | leak), SOAK_CYCLE
 * (seconds per cycle, default 60, shorter for short runs), SOAK_SAMPLE_MS
 * (2000), SOAK_CONNS (32), SOAK_CLOSE_CONNS (4), SOAK_WORKERS (2),
 * SOAK_RSS_SLACK_KB (2048), SOAK_RSS_CHECK (0/1), SOAK_SUMMARY (a file for
 * key=value results), SOAK_KEEP=1 (keep the temp dirs). */
#include "support/clock.h"
#include "support/obs_fixture.h"
#include "support/pg_harness.h"
#include "support/proc.h"
#include "support/upstream_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifndef SOAK_ASAN
#define SOAK_ASAN 0
#endif

#define N_UP 2
#define MAX_EVENTS 1024
#define MAX_FAILS 64
#define UP_KEEPALIVE_MS 3000 /* upstreams.app.keepalive_timeout: idle pooled connections close after it */
#define RECOVER_MS 30000

/* ---- state ------------------------------------------------------------------------------- */

typedef struct opts {
    int seconds;
    int cycle_s;
    int sample_ms;
    int print_every;
    int conns;
    int close_conns;
    int workers;
    bool is_leak;
    bool check_rss;
    long rss_slack_kb;
    const char *summary;
    bool keep;
} opts_t;

typedef struct upchild {
    char name[16];
    pid_t pid;
    uint16_t port;
    int kills;
    int kill_5xx; /* 5xx attributed to this upstream's kills */
} upchild_t;

typedef struct scrape {
    bool ok;
    double by_class[6]; /* swarm_http_requests_total by the code's first digit */
    double total;
    double db_up;
    double in_flight;
    double conns_active;
    double server_up[N_UP];
} scrape_t;

typedef struct sample {
    double t;
    long rss_kb;
    int fds;
    int health; /* /health status code, 0 when no answer */
    scrape_t m;
    char phase[8];
} sample_t;

enum { EV_UP_KILL = 0, EV_UP_START, EV_UP_BACK, EV_PG_STOP, EV_PG_START, EV_PG_BACK, EV_QUIET, EV__COUNT };
static const char *const k_ev_name[EV__COUNT] = {"upstream killed",  "upstream restarted", "upstream back in rotation",
                                                 "postgres stopped", "postgres started",   "postgres recovered",
                                                 "quiet point"};

typedef struct event {
    double t;
    int kind;
    int which;
    long value;        /* EV_UP_KILL: 5xx attributed; EV_*_BACK: ms to recover; EV_QUIET: fds */
    int conns;         /* EV_UP_KILL: connections from swarmgate open on the killed upstream */
    long long wall_ms; /* CLOCK_REALTIME, to match access-log timestamps */
    int log_5xx;       /* EV_UP_KILL: 5xx lines in the access log within its window */
    int n_clients;     /* EV_UP_KILL: distinct client addresses among them */
    int worst_client;  /* EV_UP_KILL: most 5xx seen by one client connection */
    struct kill_client {
        char addr[48];
        int n;
    } * clients; /* EV_UP_KILL: 2 C entries */
} event_t;

typedef struct wrk_stats {
    double requests;
    long connect, read, write, timeout, non2xx;
    int runs;
    int bad_exits;
} wrk_stats_t;

static struct soak {
    opts_t o;
    char dir[128];
    sg_pg_harness_t *pg;
    upchild_t up[N_UP];
    sg_proc_t gw;
    const char *api, *admin;
    char access_log[192];
    long long t0_ms;
    int baseline_fds;
    sample_t *samples;
    int n_samples, cap_samples;
    event_t ev[MAX_EVENTS];
    int n_ev;
    char fails[MAX_FAILS][256];
    int n_fails;
    wrk_stats_t wrk;
    pid_t wrk_pid[2];
    int pg_restarts;
    int cycles;
    int quiet_ok, quiet_total;
    double unattributed_5xx;
    double max_kill_5xx;
    int gw_exit;
    int sanitizer_reports;
    int unexplained_logs;
    long log_by_cause[8];
    double access_lines;
    double access_abandoned;
    double access_5xx;
    int conns_total;
    int access_fd;
    off_t access_pos, access_punched;
} S;

static volatile sig_atomic_t g_interrupted;

static const char *const k_cause[] = {"upstream refused", "upstream reset/closed", "server ejected",
                                      "postgres down",    "postgres query",        "other (unexplained)"};
enum { CAUSE_REFUSED = 0, CAUSE_RESET, CAUSE_EJECT, CAUSE_PG, CAUSE_PGQUERY, CAUSE_OTHER, CAUSE__COUNT };

/* ---- small helpers ----------------------------------------------------------------------- */

static double now_s(void)
{
    return (double)(sgt_now_ms() - S.t0_ms) / 1000.0;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("[%7.1f] FAIL: %s\n", S.t0_ms ? now_s() : 0.0, msg);
    fflush(stdout);
    if (S.n_fails < MAX_FAILS)
        snprintf(S.fails[S.n_fails], sizeof(S.fails[0]), "%s", msg);
    S.n_fails++;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("[%7.1f] ", S.t0_ms ? now_s() : 0.0);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static event_t *add_event(int kind, int which, long value)
{
    if (S.n_ev >= MAX_EVENTS)
        return NULL;
    event_t *e = &S.ev[S.n_ev++];
    e->t = now_s();
    e->kind = kind;
    e->which = which;
    e->value = value;
    e->conns = 0;
    e->log_5xx = e->n_clients = e->worst_client = 0;
    e->clients = NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->wall_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    const char *who = kind <= EV_UP_BACK ? S.up[which].name : "";
    note("event: %s %s", k_ev_name[kind], who);
    return e;
}

static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        fprintf(stderr, "sgsoak: %s=%s: expected an integer %d-%d\n", name, v, lo, hi);
        exit(2);
    }
    return (int)x;
}

/* Established TCP connections whose local port is `port` (the server side
 * of connections to an upstream), from /proc/net/tcp. */
static int count_established(uint16_t port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, st;
        if (sscanf(line, " %*d: %*8x:%x %*8x:%*x %x", &lport, &st) == 2 && lport == port && st == 0x01)
            n++;
    }
    fclose(f);
    return n;
}

/* A 5xx in the access log must come from an upstream kill: its time within
 * [kill - 100 ms, kill + 1 s], its error an upstream failure, and no client
 * connection may lose more than 2 requests to one kill (the one in flight
 * when the upstream died, and one sent while the kernel was still closing
 * the dead process's sockets and listener: about a millisecond). */
static void on_5xx_line(const char *line, size_t len)
{
    char l[2048];
    snprintf(l, sizeof(l), "%.*s", (int)(len < sizeof(l) - 1 ? len : sizeof(l) - 1), line);
    S.access_5xx++;
    struct tm tm = {0};
    int ms = 0;
    const char *ts = strstr(l, "\"ts\":\"");
    if (!ts || sscanf(ts + 6, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                      &tm.tm_sec, &ms) != 7) {
        fail("access log: a 5xx line without a timestamp: %.300s", l);
        return;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    long long at = (long long)timegm(&tm) * 1000 + ms;
    event_t *k = NULL;
    for (int i = 0; i < S.n_ev; i++)
        if (S.ev[i].kind == EV_UP_KILL && at >= S.ev[i].wall_ms - 100 && at <= S.ev[i].wall_ms + 1000)
            k = &S.ev[i];
    if (!k) {
        fail("access log: a 5xx with no upstream kill within 1 s before it: %.300s", l);
        return;
    }
    k->log_5xx++;
    if (!strstr(l, "\"error\":\"upstream closed") && !strstr(l, "\"error\":\"connection reset by peer") &&
        !strstr(l, "\"error\":\"upstream write failed") && !strstr(l, "\"error\":\"broken pipe"))
        fail("access log: a 5xx during a kill that is not an upstream failure: %.300s", l);
    char addr[48] = "?";
    const char *c = strstr(l, "\"client\":\"");
    if (c)
        sscanf(c + 10, "%47[^\"]", addr);
    int cap = 2 * S.conns_total;
    if (!k->clients && !(k->clients = calloc((size_t)cap, sizeof(*k->clients)))) {
        fail("out of memory");
        return;
    }
    int i = 0;
    while (i < k->n_clients && strcmp(k->clients[i].addr, addr))
        i++;
    if (i == k->n_clients) {
        if (k->n_clients == cap) {
            fail("kill of %s at t=%.1f s: 5xx for more than %d client connections", S.up[k->which].name, k->t, cap);
            return;
        }
        snprintf(k->clients[i].addr, sizeof(k->clients[i].addr), "%s", addr);
        k->n_clients++;
    }
    if (++k->clients[i].n > k->worst_client)
        k->worst_client = k->clients[i].n;
    if (k->clients[i].n == 3)
        fail("kill of %s at t=%.1f s: client %s lost 3 requests", S.up[k->which].name, k->t, addr);
}

/* Counts the access log's lines as it grows and punches the counted bytes
 * out of the file (the offsets stay valid, the disk space is freed): a
 * 10-minute run writes gigabytes of JSON lines. */
static void count_access_log(void)
{
    if (S.access_fd < 0) {
        S.access_fd = open(S.access_log, O_RDWR | O_CLOEXEC);
        if (S.access_fd < 0)
            return;
    }
    static char buf[1 << 16];
    ssize_t k;
    while ((k = pread(S.access_fd, buf, sizeof(buf), S.access_pos)) > 0) {
        const char *nl = memrchr(buf, '\n', (size_t)k);
        if (!nl)
            break; /* a partial line: read it again once complete */
        for (const char *p = buf; p <= nl; p++)
            S.access_lines += *p == '\n';
        /* Requests wrk abandoned when it stopped: logged, not counted in swarm_http_requests_total. */
        static const char k_abandoned[] = "\"status\":0,";
        for (const char *p = buf; (p = memmem(p, (size_t)(nl + 1 - p), k_abandoned, sizeof(k_abandoned) - 1)); p++)
            S.access_abandoned++;
        static const char k_5xx[] = "\"status\":5";
        for (const char *p = buf; (p = memmem(p, (size_t)(nl + 1 - p), k_5xx, sizeof(k_5xx) - 1)); p++) {
            const char *ls = p, *le = memchr(p, '\n', (size_t)(nl + 1 - p));
            while (ls > buf && ls[-1] != '\n')
                ls--;
            on_5xx_line(ls, (size_t)(le - ls));
        }
        S.access_pos += (off_t)(nl + 1 - buf);
    }
    off_t hole = S.access_pos & ~(off_t)((1 << 20) - 1);
    if (!S.o.keep && hole > S.access_punched &&
        fallocate(S.access_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, S.access_punched, hole - S.access_punched) ==
            0)
        S.access_punched = hole;
}

/* Waits for pid with a deadline; its exit code (128+signal), or -1 when still running. */
static int wait_pid(pid_t pid, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (sgt_now_ms() >= deadline)
            return -1;
        sgt_nap_ms(10);
    }
}

/* SIGTERM, then SIGKILL after the deadline. */
static int stop_pid(pid_t *pid, int timeout_ms)
{
    if (*pid <= 0)
        return 0;
    kill(*pid, SIGTERM);
    int st = wait_pid(*pid, timeout_ms);
    if (st < 0) {
        kill(*pid, SIGKILL);
        st = wait_pid(*pid, 5000);
    }
    *pid = 0;
    return st;
}

/* ---- upstream processes ------------------------------------------------------------------ */

/* `sgsoak --upstream NAME PORT FD`: serves support/upstream_server.h on
 * 127.0.0.1:PORT, writes the bound port (0 on failure) to FD, and runs until
 * SIGTERM/SIGINT (then stops it cleanly) or SIGKILL (the injected fault). */
static int upstream_main(const char *name, const char *port_s, const char *fd_s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: they inherit it */
    int fd = atoi(fd_s);
    us_server_t *s = us_start_port(name, false, (uint16_t)atoi(port_s));
    dprintf(fd, "%u\n", s ? (unsigned)us_port(s) : 0u);
    close(fd);
    if (!s)
        return 1;
    int sig = 0;
    sigwait(&set, &sig);
    us_stop(s);
    return 0;
}

static int up_spawn(upchild_t *u, uint16_t port)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fcntl(pfd[1], F_SETFD, 0);
        char ps[16], fs[16];
        snprintf(ps, sizeof(ps), "%u", (unsigned)port);
        snprintf(fs, sizeof(fs), "%d", pfd[1]);
        execl("/proc/self/exe", "sgsoak", "--upstream", u->name, ps, fs, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[32] = {0};
    size_t got = 0;
    long long deadline = sgt_now_ms() + 5000;
    while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
        int left = (int)(deadline - sgt_now_ms());
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pfd[0]);
    unsigned bound = (unsigned)strtoul(buf, NULL, 10);
    if (bound == 0 || (port && bound != port)) {
        kill(pid, SIGKILL);
        wait_pid(pid, 5000);
        return -1;
    }
    u->pid = pid;
    u->port = (uint16_t)bound;
    return 0;
}

/* Starts the upstream again on its port; the old listener is gone with its
 * process, so the bind normally succeeds at once (SO_REUSEADDR). */
static int up_restart(upchild_t *u)
{
    long long deadline = sgt_now_ms() + 10000;
    do {
        if (up_spawn(u, u->port) == 0)
            return 0;
        sgt_nap_ms(100);
    } while (sgt_now_ms() < deadline);
    return -1;
}

static void up_kill(upchild_t *u)
{
    if (u->pid <= 0)
        return;
    kill(u->pid, SIGKILL);
    wait_pid(u->pid, 5000);
    u->pid = 0;
    u->kills++;
}

/* ---- scraping and sampling --------------------------------------------------------------- */

static double line_value(const char *line)
{
    const char *sp = strchr(line, ' ');
    return sp ? strtod(sp + 1, NULL) : 0;
}

static void parse_scrape(const char *text, scrape_t *m)
{
    char want[N_UP][128];
    for (int i = 0; i < N_UP; i++) {
        snprintf(want[i], sizeof(want[i]), "swarm_upstream_server_up{upstream=\"app\",server=\"127.0.0.1:%u\"} ",
                 (unsigned)S.up[i].port);
        m->server_up[i] = -1;
    }
    m->db_up = -1;
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, "swarm_http_requests_total{", 26)) {
            const char *c = strstr(p, "code=\"");
            const char *eol = strchr(p, '\n');
            if (c && (!eol || c < eol) && c[6] >= '1' && c[6] <= '5') {
                double v = line_value(strchr(p, '}'));
                m->by_class[c[6] - '0'] += v;
                m->total += v;
            }
        } else if (!strncmp(p, "swarm_db_up ", 12)) {
            m->db_up = line_value(p);
        } else if (!strncmp(p, "swarm_http_requests_in_flight ", 30)) {
            m->in_flight = line_value(p);
        } else if (!strncmp(p, "swarm_http_connections_active{", 30)) {
            m->conns_active += line_value(strchr(p, '}'));
        } else {
            for (int i = 0; i < N_UP; i++)
                if (!strncmp(p, want[i], strlen(want[i])))
                    m->server_up[i] = strtod(p + strlen(want[i]), NULL);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

static bool scrape(scrape_t *m)
{
    memset(m, 0, sizeof(*m));
    hc_response_t r;
    int e = obs_get(S.admin, "/metrics", NULL, &r, 5000);
    if (e == HC_OK && r.status == 200) {
        parse_scrape(r.body, m);
        m->ok = true;
    }
    hc_response_free(&r);
    return m->ok;
}

static int get_status(const char *path)
{
    hc_response_t r;
    int e = obs_get(S.admin, path, NULL, &r, 5000);
    int st = e == HC_OK ? r.status : 0;
    hc_response_free(&r);
    return st;
}

static void print_header(void)
{
    printf("%8s %-6s %9s %5s %6s %11s %8s %6s %3s %5s\n", "t(s)", "phase", "rss(KiB)", "fds", "conns", "requests",
           "req/s", "5xx", "db", "ready");
}

/* One row: RSS and fds first (a scrape's own admin connection must not be counted), then /metrics and /health. */
static sample_t *take_sample(const char *phase, bool print)
{
    if (S.n_samples == S.cap_samples) {
        S.cap_samples = S.cap_samples ? S.cap_samples * 2 : 512;
        S.samples = realloc(S.samples, (size_t)S.cap_samples * sizeof(*S.samples));
        if (!S.samples) {
            fprintf(stderr, "sgsoak: out of memory\n");
            exit(2);
        }
    }
    sample_t *s = &S.samples[S.n_samples];
    memset(s, 0, sizeof(*s));
    s->t = now_s();
    s->rss_kb = sg_proc_status_kb(&S.gw, "VmRSS");
    s->fds = sg_proc_count_fds(S.gw.pid);
    snprintf(s->phase, sizeof(s->phase), "%s", phase);
    count_access_log();
    if (!scrape(&s->m))
        fail("/metrics did not answer at t=%.1f s", s->t);
    s->health = get_status("/health");
    if (s->m.ok && S.n_samples > 0) {
        sample_t *prev = &S.samples[S.n_samples - 1];
        if (s->m.total < prev->m.total)
            fail("swarm_http_requests_total went down (%.0f -> %.0f)", prev->m.total, s->m.total);
    }
    S.n_samples++;
    if (print) {
        double rate = 0;
        if (S.n_samples > 1) {
            sample_t *prev = &S.samples[S.n_samples - 2];
            double dt = s->t - prev->t;
            rate = dt > 0 ? (s->m.total - prev->m.total) / dt : 0;
        }
        /* 5xx: the total so far. */
        printf("%8.1f %-6s %9ld %5d %6.0f %11.0f %8.0f %6.0f %3.0f %5d\n", s->t, s->phase, s->rss_kb, s->fds,
               s->m.conns_active, s->m.total, rate, s->m.by_class[5], s->m.db_up, s->health);
        fflush(stdout);
    }
    return s;
}

/* ---- wrk --------------------------------------------------------------------------------- */

static const char k_lua[] =
    /* No HEAD: wrk would wait for the body its Content-Length announces. */
    "-- keep-alive mix: plain, X-Trace-Id, traceparent+tracestate, POST, 16 KiB, chunked\n"
    "local reqs = {}\n"
    "local i = 0\n"
    "function init(args)\n"
    "  reqs[1] = wrk.format('GET', '/api/tickets')\n"
    "  reqs[2] = wrk.format('GET', '/api/tickets/42', {['X-Trace-Id'] = '3F2504E0-4F89-41D3-9A0C-0305E82C3301'})\n"
    "  reqs[3] = wrk.format('GET', '/api/agents', {['traceparent'] = "
    "'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', ['tracestate'] = 'vendor=x'})\n"
    "  reqs[4] = wrk.format('POST', '/echo', {['Content-Type'] = 'application/json'}, "
    "'{\"ticket\":42,\"state\":\"open\"}')\n"
    "  reqs[5] = wrk.format('GET', '/gen?n=16384')\n"
    "  reqs[6] = wrk.format('GET', '/gen?n=3000&chunked=1')\n"
    "end\n"
    "function request()\n"
    "  i = i % #reqs + 1\n"
    "  return reqs[i]\n"
    "end\n";

/* Connection churn at a bounded rate (a few hundred new connections a
 * second), so TIME_WAIT sockets never exhaust loopback ports. */
static const char k_lua_close[] = "function delay() return 10 end\n";

static pid_t spawn_wrk(int idx, int secs)
{
    char out[256], script[256], url[128], conns[16], dur[16];
    snprintf(out, sizeof(out), "%s/wrk%d.out", S.dir, idx);
    snprintf(script, sizeof(script), "%s/%s", S.dir, idx == 0 ? "mix.lua" : "close.lua");
    snprintf(url, sizeof(url), "http://%s%s", S.api, idx == 0 ? "/" : "/api/churn");
    snprintf(conns, sizeof(conns), "%d", idx == 0 ? S.o.conns : S.o.close_conns);
    snprintf(dur, sizeof(dur), "%ds", secs);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (idx == 0)
            execlp("wrk", "wrk", "-t1", "-c", conns, "-d", dur, "--timeout", "10s", "-s", script, url, (char *)NULL);
        else
            execlp("wrk", "wrk", "-t1", "-c", conns, "-d", dur, "--timeout", "10s", "-H", "Connection: close", "-s",
                   script, url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void parse_wrk(int idx)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/wrk%d.out", S.dir, idx);
    char *text = obs_slurp(path);
    const char *p = strstr(text, " requests in ");
    if (!p) {
        fail("wrk (%s) printed no summary: %.200s", idx == 0 ? "keep-alive" : "close", text);
        free(text);
        return;
    }
    const char *b = p;
    while (b > text && b[-1] != '\n' && b[-1] != ' ')
        b--;
    S.wrk.requests += strtod(b, NULL);
    long c = 0, r = 0, w = 0, t = 0, n = 0;
    if ((p = strstr(text, "Socket errors:")) &&
        sscanf(p, "Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &c, &r, &w, &t) == 4) {
        S.wrk.connect += c;
        S.wrk.read += r;
        S.wrk.write += w;
        S.wrk.timeout += t;
    }
    if ((p = strstr(text, "Non-2xx or 3xx responses:")) && sscanf(p, "Non-2xx or 3xx responses: %ld", &n) == 1)
        S.wrk.non2xx += n;
    S.wrk.runs++;
    free(text);
}

/* ---- swarmgate --------------------------------------------------------------------------- */

static int start_gateway(void)
{
    snprintf(S.access_log, sizeof(S.access_log), "%s/access.log", S.dir);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "workers: %d\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"%s\", level: info, format: json, ring_bytes: 4m}\n"
             "upstreams:\n"
             "  app:\n"
             "    servers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"]\n"
             "    balance: round_robin\n"
             "    keepalive: 64\n"
             "    keepalive_timeout: %dms\n"
             "    connect_timeout: 1s\n"
             "    response_timeout: 10s\n"
             "    max_fails: 1\n"
             "    fail_timeout: 2s\n"
             "routes: [{name: api, match: {prefix: /}, upstream: app}]\n"
             "trace: {header: X-Trace-Id, traceparent: true}\n"
             "metrics: {error_rate_window: 1m}\n"
             "postgres: {conninfo: \"%s\", interval: 1s, required: true, connect_timeout: 2s, statement_timeout: 2s}\n"
             "shutdown: {drain_delay: 0ms, drain_timeout: 5s}\n",
             S.o.workers, S.access_log, (unsigned)S.up[0].port, (unsigned)S.up[1].port, UP_KEEPALIVE_MS,
             sg_pgh_conninfo(S.pg));
    /* ASan's LeakSanitizer runs at exit; an error anywhere is reported on
     * stderr and the exit code becomes non-zero. */
    static const char *const env_leak[] = {"ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0",
                                           "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1", NULL};
    if (sg_proc_start_env(&S.gw, yaml, S.o.is_leak ? env_leak : NULL, 30000) != 0) {
        char *err = sg_proc_stderr(&S.gw);
        fprintf(stderr, "sgsoak: swarmgate did not start; stderr:\n%s\n", err);
        free(err);
        return -1;
    }
    S.api = sg_proc_addr(&S.gw, "api");
    S.admin = sg_proc_addr(&S.gw, "admin");
    return S.api && S.admin ? 0 : -1;
}

/* Classifies swarmgate's warn/error log lines (JSON, one per line) by the
 * fault that explains them; anything else is unexplained. */
static int classify_line(const char *line)
{
    if (strstr(line, "\"msg\":\"upstream app server 127.0.0.1:")) {
        if (strstr(line, "connection refused"))
            return CAUSE_REFUSED;
        if (strstr(line, "upstream closed before responding") || strstr(line, "connection reset by peer") ||
            strstr(line, "upstream closed inside the response head") || strstr(line, "upstream write failed") ||
            strstr(line, "broken pipe") || strstr(line, "end of file"))
            return CAUSE_RESET;
        return CAUSE_OTHER;
    }
    if (strstr(line, "\"msg\":\"upstream app: server 127.0.0.1:") &&
        (strstr(line, " ejected for ") || strstr(line, " kept in service after "))) /* the other one is out */
        return CAUSE_EJECT;
    if (strstr(line, "\"msg\":\"postgres: query "))
        return CAUSE_PGQUERY;
    if (strstr(line, "\"msg\":\"postgres: "))
        return CAUSE_PG;
    return CAUSE_OTHER;
}

static void check_stderr(void)
{
    char *err = sg_proc_stderr(&S.gw);
    S.sanitizer_reports += sg_proc_sanitizer_reports(err);
    if (S.sanitizer_reports) {
        const char *first = strstr(err, "==ERROR");
        if (!first)
            first = strstr(err, "ERROR: ");
        if (!first)
            first = strstr(err, "runtime error:");
        printf("---- swarmgate stderr (sanitizer report) ----\n%.6000s\n----\n", first ? first : err);
        fail("%d sanitizer report line(s) in swarmgate's stderr", S.sanitizer_reports);
    }
    int shown = 0;
    for (char *line = err; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        bool is_warn = strstr(line, "\"level\":\"warn\"") || strstr(line, "\"level\":\"error\"");
        if (is_warn) {
            int c = classify_line(line);
            S.log_by_cause[c]++;
            if (c == CAUSE_OTHER) {
                S.unexplained_logs++;
                if (shown++ < 5)
                    printf("unexplained log line: %.400s\n", line);
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    free(err);
    if (S.unexplained_logs)
        fail("%d warn/error log line(s) not explained by an injected fault", S.unexplained_logs);
}

/* ---- one cycle --------------------------------------------------------------------------- */

typedef struct pending {
    bool is_on;
    long long since_ms;
    int which;
} pending_t;

/* Load for load_s seconds with one upstream kill/restart and one Postgres
 * stop/start, then a quiet point. */
static void run_cycle(int k, int load_s)
{
    S.cycles++;
    int victim = k % N_UP;
    long long start = sgt_now_ms();
    long long at_kill = start + (long long)load_s * 250;    /* 25 % */
    long long at_restart = at_kill + 2000;                  /* down for 2 s: connect refused, retried */
    long long at_pg_stop = start + (long long)load_s * 550; /* 55 % */
    long long at_pg_start = at_pg_stop + 3000;              /* down for 3 s */
    bool killed = false, restarted = false, pg_stopped = false, pg_started = false;
    pending_t pg_back = {0}, up_back = {0};
    note("cycle %d: %d s of load; kill %s at +%.1f s, postgres stop at +%.1f s", k + 1, load_s, S.up[victim].name,
         (double)(at_kill - start) / 1000, (double)(at_pg_stop - start) / 1000);
    S.wrk_pid[0] = spawn_wrk(0, load_s);
    S.wrk_pid[1] = spawn_wrk(1, load_s);
    long long next_sample = start + S.o.sample_ms;
    long long wrk_deadline = start + (long long)load_s * 1000 + 20000;
    bool wrk_done[2] = {false, false};
    while (!g_interrupted) {
        long long now = sgt_now_ms();
        if (!killed && now >= at_kill) {
            int conns = count_established(S.up[victim].port);
            up_kill(&S.up[victim]);
            event_t *e = add_event(EV_UP_KILL, victim, 0);
            if (e)
                e->conns = conns;
            note("%s had %d connections from swarmgate when killed", S.up[victim].name, conns);
            killed = true;
        }
        if (killed && !restarted && now >= at_restart) {
            if (up_restart(&S.up[victim]) != 0) {
                fail("%s could not be restarted on port %u", S.up[victim].name, (unsigned)S.up[victim].port);
            } else {
                add_event(EV_UP_START, victim, 0);
                up_back = (pending_t){true, sgt_now_ms(), victim};
            }
            restarted = true;
        }
        if (!pg_stopped && now >= at_pg_stop) {
            if (sg_pgh_stop(S.pg) != 0)
                fail("pg_ctl stop failed");
            add_event(EV_PG_STOP, 0, 0);
            pg_stopped = true;
        }
        if (pg_stopped && !pg_started && now >= at_pg_start) {
            if (sg_pgh_restart(S.pg) != 0)
                fail("pg_ctl start failed");
            add_event(EV_PG_START, 0, 0);
            S.pg_restarts++;
            pg_back = (pending_t){true, sgt_now_ms(), 0};
            pg_started = true;
        }
        if (now >= next_sample) {
            take_sample("load", S.n_samples % S.o.print_every == 0);
            next_sample += S.o.sample_ms;
            if (next_sample < sgt_now_ms())
                next_sample = sgt_now_ms() + S.o.sample_ms;
        }
        if (pg_back.is_on || up_back.is_on) {
            scrape_t m;
            if (scrape(&m)) {
                if (pg_back.is_on && m.db_up == 1 && get_status("/health/ready") == 200) {
                    add_event(EV_PG_BACK, 0, (long)(sgt_now_ms() - pg_back.since_ms));
                    pg_back.is_on = false;
                }
                /* Back in rotation: not ejected, and swarmgate holds connections to the new process. */
                if (up_back.is_on && m.server_up[up_back.which] == 1 &&
                    count_established(S.up[up_back.which].port) > 0) {
                    add_event(EV_UP_BACK, up_back.which, (long)(sgt_now_ms() - up_back.since_ms));
                    up_back.is_on = false;
                }
            }
            if (pg_back.is_on && sgt_now_ms() - pg_back.since_ms > RECOVER_MS) {
                fail("swarm_db_up/readiness not back %d s after a Postgres restart", RECOVER_MS / 1000);
                pg_back.is_on = false;
            }
            if (up_back.is_on && sgt_now_ms() - up_back.since_ms > RECOVER_MS) {
                fail("swarm_upstream_server_up of %s not back %d s after its restart", S.up[up_back.which].name,
                     RECOVER_MS / 1000);
                up_back.is_on = false;
            }
        }
        for (int i = 0; i < 2; i++) {
            if (wrk_done[i] || S.wrk_pid[i] <= 0)
                continue;
            int st;
            if (waitpid(S.wrk_pid[i], &st, WNOHANG) == S.wrk_pid[i]) {
                wrk_done[i] = true;
                S.wrk_pid[i] = 0;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    S.wrk.bad_exits++;
                    fail("wrk %d exited with status %d", i, st);
                }
                parse_wrk(i);
            }
        }
        if (wrk_done[0] && wrk_done[1] && restarted && pg_started && !pg_back.is_on && !up_back.is_on)
            break;
        if (now > wrk_deadline) {
            for (int i = 0; i < 2; i++)
                if (!wrk_done[i] && S.wrk_pid[i] > 0) {
                    fail("wrk %d still running 20 s after its duration: killed", i);
                    kill(S.wrk_pid[i], SIGKILL);
                    wait_pid(S.wrk_pid[i], 5000);
                    S.wrk_pid[i] = 0;
                    wrk_done[i] = true;
                }
            if (now > wrk_deadline + RECOVER_MS)
                break;
        }
        sgt_nap_ms(100);
    }
    if (g_interrupted)
        return;

    /* Quiet point: clients are gone; idle pooled upstream connections close
     * after keepalive_timeout. The count must come back to the baseline. */
    long long deadline = sgt_now_ms() + UP_KEEPALIVE_MS + 8000;
    int fds = -1;
    do {
        fds = sg_proc_count_fds(S.gw.pid);
        if (fds == S.baseline_fds)
            break;
        sgt_nap_ms(100);
    } while (sgt_now_ms() < deadline);
    S.quiet_total++;
    if (fds == S.baseline_fds)
        S.quiet_ok++;
    else
        fail("quiet point %d: %d descriptors, baseline %d (after %d ms)", k + 1, fds, S.baseline_fds,
             UP_KEEPALIVE_MS + 8000);
    add_event(EV_QUIET, 0, fds);
    take_sample("quiet", true);
}

/* ---- analysis ---------------------------------------------------------------------------- */

static void attribute_errors(void)
{
    /* Each sampling interval's new 5xx go to the upstream kill inside it
     * (or up to 1 s before it: the count is read after the request ends). */
    for (int i = 1; i < S.n_samples; i++) {
        sample_t *a = &S.samples[i - 1], *b = &S.samples[i];
        if (!a->m.ok || !b->m.ok)
            continue;
        double d5 = b->m.by_class[5] - a->m.by_class[5];
        if (d5 <= 0)
            continue;
        event_t *kill_ev = NULL;
        for (int e = 0; e < S.n_ev; e++)
            if (S.ev[e].kind == EV_UP_KILL && S.ev[e].t >= a->t - 1.0 && S.ev[e].t <= b->t)
                kill_ev = &S.ev[e];
        if (kill_ev) {
            kill_ev->value += (long)d5;
            S.up[kill_ev->which].kill_5xx += (int)d5;
        } else {
            S.unattributed_5xx += d5;
            fail("%.0f 5xx between t=%.1f s and t=%.1f s with no upstream kill in that interval", d5, a->t, b->t);
        }
    }
    for (int e = 0; e < S.n_ev; e++) {
        if (S.ev[e].kind != EV_UP_KILL)
            continue;
        if (S.ev[e].value > S.max_kill_5xx)
            S.max_kill_5xx = (double)S.ev[e].value;
        if (S.ev[e].value > 2 * S.conns_total)
            fail("kill of %s at t=%.1f s: %ld 5xx, more than 2 x %d client connections", S.up[S.ev[e].which].name,
                 S.ev[e].t, S.ev[e].value, S.conns_total);
    }
}

static void analyse_rss(double *warm_max, double *late_max, double *slope_kib_min, double *at_warm_end)
{
    double t_end = S.samples[S.n_samples - 1].t;
    double wm = 0, lm = 0, awe = 0;
    /* Least squares over the samples after the warm-up. */
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int n = 0;
    for (int i = 0; i < S.n_samples; i++) {
        sample_t *s = &S.samples[i];
        if (s->rss_kb <= 0)
            continue;
        if (s->t <= 0.2 * t_end) {
            wm = fmax(wm, (double)s->rss_kb);
            awe = (double)s->rss_kb;
        } else {
            sx += s->t;
            sy += (double)s->rss_kb;
            sxx += s->t * s->t;
            sxy += s->t * (double)s->rss_kb;
            n++;
        }
        if (s->t >= 0.5 * t_end)
            lm = fmax(lm, (double)s->rss_kb);
    }
    double den = n * sxx - sx * sx;
    *slope_kib_min = n > 2 && den > 0 ? (n * sxy - sx * sy) / den * 60.0 : 0;
    *warm_max = wm;
    *late_max = lm;
    *at_warm_end = awe;
}

static void write_summary(double requests, double rss_start, double rss_warm, double rss_end, double ok2xx, double c5xx,
                          double c4xx)
{
    if (!S.o.summary)
        return;
    FILE *f = fopen(S.o.summary, "w");
    if (!f)
        return;
    fprintf(f,
            "mode=%s\nseconds=%.0f\ncycles=%d\nrequests=%.0f\nrequests_2xx=%.0f\nrequests_4xx=%.0f\n"
            "requests_5xx=%.0f\nunattributed_5xx=%.0f\nupstream_kills=%d\npg_restarts=%d\n"
            "wrk_requests=%.0f\nwrk_non2xx=%ld\nwrk_socket_errors=%ld\nrss_start_kb=%.0f\nrss_warm_kb=%.0f\n"
            "rss_end_kb=%.0f\nbaseline_fds=%d\nquiet_ok=%d\nquiet_total=%d\nsanitizer_reports=%d\n"
            "unexplained_logs=%d\naccess_lines=%.0f\ngw_exit=%d\nfailures=%d\n",
            S.o.is_leak ? "leak" : "soak", S.n_samples ? S.samples[S.n_samples - 1].t : 0, S.cycles, requests, ok2xx,
            c4xx, c5xx, S.unattributed_5xx, S.up[0].kills + S.up[1].kills, S.pg_restarts, S.wrk.requests, S.wrk.non2xx,
            S.wrk.connect + S.wrk.read + S.wrk.write + S.wrk.timeout, rss_start, rss_warm, rss_end, S.baseline_fds,
            S.quiet_ok, S.quiet_total, S.sanitizer_reports, S.unexplained_logs, S.access_lines, S.gw_exit, S.n_fails);
    fclose(f);
}

/* ---- main -------------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void cleanup(void)
{
    for (int i = 0; i < 2; i++)
        if (S.wrk_pid[i] > 0) {
            kill(S.wrk_pid[i], SIGKILL);
            wait_pid(S.wrk_pid[i], 5000);
            S.wrk_pid[i] = 0;
        }
    if (S.gw.pid > 0)
        sg_proc_stop(&S.gw, 10000);
    for (int i = 0; i < N_UP; i++)
        stop_pid(&S.up[i].pid, 5000);
    sg_pgh_destroy(S.pg);
    S.pg = NULL;
    if (!S.o.keep) {
        if (S.gw.dir[0])
            sg_proc_cleanup(&S.gw);
        if (S.dir[0])
            obs_rmdir(S.dir);
    } else {
        printf("kept: %s %s\n", S.dir, S.gw.dir);
    }
    for (int i = 0; i < S.n_ev; i++)
        free(S.ev[i].clients);
    free(S.samples);
    if (S.access_fd >= 0)
        close(S.access_fd);
}

static void read_opts(opts_t *o)
{
    const char *mode = getenv("SOAK_MODE");
    o->is_leak = mode && !strcmp(mode, "leak");
    if (mode && *mode && strcmp(mode, "leak") && strcmp(mode, "soak")) {
        fprintf(stderr, "sgsoak: SOAK_MODE=%s: expected soak or leak\n", mode);
        exit(2);
    }
    o->seconds = env_int("SOAK_SECONDS", 600, 20, 7 * 86400);
    int dflt_cycle = o->seconds >= 300 ? 60 : (o->seconds / 3 < 15 ? 15 : o->seconds / 3);
    if (dflt_cycle > 60)
        dflt_cycle = 60;
    o->cycle_s = env_int("SOAK_CYCLE", dflt_cycle, 12, 3600);
    o->sample_ms = env_int("SOAK_SAMPLE_MS", 2000, 200, 60000);
    o->print_every = o->seconds >= 300 ? 5 : 1;
    o->conns = env_int("SOAK_CONNS", 32, 1, 10000);
    o->close_conns = env_int("SOAK_CLOSE_CONNS", 4, 1, 1000);
    o->workers = env_int("SOAK_WORKERS", 2, 1, 256);
    o->rss_slack_kb = env_int("SOAK_RSS_SLACK_KB", 2048, 0, 1 << 30);
    o->check_rss = env_int("SOAK_RSS_CHECK", o->is_leak ? 0 : 1, 0, 1) == 1;
    o->summary = getenv("SOAK_SUMMARY");
    o->keep = env_int("SOAK_KEEP", 0, 0, 1) == 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "--upstream"))
        return upstream_main(argv[2], argv[3], argv[4]);
    if (argc != 1) {
        fprintf(stderr, "usage: sgsoak (settings in SOAK_* environment variables, see test/soak/soak.c)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    S.access_fd = -1;
    read_opts(&S.o);
    if (S.o.is_leak && !SOAK_ASAN) {
        fprintf(stderr, "sgsoak: SOAK_MODE=leak needs the ASan build (cmake -DSG_SANITIZE=ON; make leakcheck)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int n_cycles = S.o.seconds / S.o.cycle_s;
    if (n_cycles < 1)
        n_cycles = 1;
    int load_s = S.o.cycle_s - 4; /* the rest is the quiet point */
    int conns_total = S.o.conns + S.o.close_conns;
    S.conns_total = conns_total;
    printf("sgsoak: %s mode, %d cycles of %d s (%d s load), %d keep-alive + %d closing connections, "
           "binary %s%s\n",
           S.o.is_leak ? "leak" : "soak", n_cycles, S.o.cycle_s, load_s, S.o.conns, S.o.close_conns, SG_BINARY,
           SOAK_ASAN ? " (ASan)" : "");

    if (!obs_mkdtemp(S.dir, sizeof(S.dir))) {
        perror("sgsoak: mkdtemp");
        return 2;
    }
    char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/mix.lua", S.dir);
    if (!(f = fopen(path, "w")) || fputs(k_lua, f) < 0 || fclose(f) != 0)
        return 2;
    snprintf(path, sizeof(path), "%s/close.lua", S.dir);
    if (!(f = fopen(path, "w")) || fputs(k_lua_close, f) < 0 || fclose(f) != 0)
        return 2;

    int rc = 2;
    S.pg = sg_pgh_start_reference();
    if (!S.pg) {
        fprintf(stderr, "sgsoak: could not start PostgreSQL\n");
        goto out;
    }
    for (int i = 0; i < N_UP; i++) {
        snprintf(S.up[i].name, sizeof(S.up[i].name), "u%d", i);
        if (up_spawn(&S.up[i], 0) != 0) {
            fprintf(stderr, "sgsoak: could not start upstream %s\n", S.up[i].name);
            goto out;
        }
    }
    if (start_gateway() != 0)
        goto out;
    S.t0_ms = sgt_now_ms();
    double db = -1;
    if (!obs_wait_status(S.admin, "/health/ready", 200, 30000) ||
        !obs_wait_metric_eq(S.admin, "swarm_db_up", 1, 30000, &db)) {
        fprintf(stderr, "sgsoak: swarmgate not ready with Postgres up within 30 s\n");
        goto out;
    }
    /* Baseline: the fewest descriptors seen over a second once ready (probe
     * connections from the wait above are being closed meanwhile). */
    S.baseline_fds = sg_proc_count_fds(S.gw.pid);
    for (int i = 0; i < 10; i++) {
        sgt_nap_ms(100);
        int n = sg_proc_count_fds(S.gw.pid);
        if (n >= 0 && n < S.baseline_fds)
            S.baseline_fds = n;
    }
    note("swarmgate pid %d ready: api %s, admin %s, upstreams :%u :%u, postgres pid %d; baseline %d fds", S.gw.pid,
         S.api, S.admin, (unsigned)S.up[0].port, (unsigned)S.up[1].port, (int)sg_pgh_pid(S.pg), S.baseline_fds);
    print_header();
    take_sample("start", true);
    double rss_start = (double)S.samples[0].rss_kb;

    for (int k = 0; k < n_cycles && !g_interrupted; k++)
        run_cycle(k, load_s);
    if (g_interrupted) {
        fprintf(stderr, "sgsoak: interrupted\n");
        goto out;
    }
    sample_t *last = take_sample("end", true);
    scrape_t fin = last->m;
    double rss_end = (double)last->rss_kb;

    /* Alive at the end, then a clean exit on SIGTERM. */
    if (kill(S.gw.pid, 0) != 0)
        fail("swarmgate is not running at the end");
    if (get_status("/health/live") != 200)
        fail("/health/live does not answer 200 at the end");
    S.gw_exit = sg_proc_stop(&S.gw, 60000);
    if (S.gw_exit != 0)
        fail("swarmgate exited with status %d after SIGTERM (0 expected)", S.gw_exit);
    check_stderr();
    count_access_log();

    attribute_errors();
    double warm_max, late_max, slope, at_warm_end;
    analyse_rss(&warm_max, &late_max, &slope, &at_warm_end);
    int kills = S.up[0].kills + S.up[1].kills;
    double c5 = fin.by_class[5], c4 = fin.by_class[4], c2 = fin.by_class[2];
    double other = fin.total - c2 - c4 - c5;
    if (c4 > 0)
        fail("%.0f 4xx responses (none expected: every request is valid and routed)", c4);
    if (other > 0)
        fail("%.0f responses that are neither 2xx, 4xx nor 5xx", other);
    if (S.wrk.connect || S.wrk.timeout)
        fail("wrk: %ld connect errors, %ld timeouts (swarmgate never stops accepting or answering)", S.wrk.connect,
             S.wrk.timeout);
    if ((double)S.wrk.non2xx > c5)
        fail("wrk saw %ld non-2xx responses, swarmgate counted %.0f 5xx", S.wrk.non2xx, c5);
    if (S.wrk.read + S.wrk.write + S.wrk.non2xx > 2L * kills * conns_total)
        fail("wrk: %ld non-2xx + %ld read + %ld write errors, more than 2 x %d kills x %d connections", S.wrk.non2xx,
             S.wrk.read, S.wrk.write, kills, conns_total);
    if (S.access_5xx > c5)
        fail("the access log has %.0f 5xx, swarmgate counted %.0f", S.access_5xx, c5);
    if (fin.total < 1000)
        fail("only %.0f requests served", fin.total);
    /* A full log ring drops lines by design (4 MiB per worker here): allow 1 %. */
    double logged = S.access_lines - S.access_abandoned;
    if (logged < 0.99 * fin.total || logged > fin.total)
        fail("access log has %.0f answered requests for %.0f counted by swarmgate", logged, fin.total);
    if (S.access_abandoned > (double)S.cycles * conns_total)
        fail("%.0f requests abandoned by their client: more than %d per stop of wrk", S.access_abandoned, conns_total);
    int pg_back = 0, up_back = 0;
    for (int i = 0; i < S.n_ev; i++) {
        pg_back += S.ev[i].kind == EV_PG_BACK;
        up_back += S.ev[i].kind == EV_UP_BACK;
    }
    if (pg_back != S.pg_restarts)
        fail("postgres recovered %d times for %d restarts", pg_back, S.pg_restarts);
    if (up_back != kills)
        fail("upstreams back in rotation %d times for %d kills", up_back, kills);
    if (S.o.check_rss && late_max > warm_max + (double)S.o.rss_slack_kb)
        fail("RSS grew: max %.0f KiB over the last half > %.0f KiB (warm-up max) + %ld KiB", late_max, warm_max,
             S.o.rss_slack_kb);

    int max_fds = 0;
    for (int i = 0; i < S.n_samples; i++)
        if (S.samples[i].fds > max_fds)
            max_fds = S.samples[i].fds;
    printf("\n==== sgsoak summary (%s mode) ====\n", S.o.is_leak ? "leak" : "soak");
    printf("duration          %.0f s, %d cycles, %d samples\n", last->t, S.cycles, S.n_samples);
    printf("requests          %.0f counted by swarmgate (2xx %.0f, 4xx %.0f, 5xx %.0f); wrk %.0f; access log %.0f "
           "lines\n",
           fin.total, c2, c4, c5, S.wrk.requests, S.access_lines);
    printf("                  (%.0f access-log lines are requests wrk abandoned when it stopped: status 0)\n",
           S.access_abandoned);
    printf("faults            %d upstream kills (u0 %d, u1 %d), %d postgres restarts\n", kills, S.up[0].kills,
           S.up[1].kills, S.pg_restarts);
    printf("5xx by cause      upstream kills %.0f (u0 %d, u1 %d; worst kill %.0f), unattributed %.0f\n",
           c5 - S.unattributed_5xx, S.up[0].kill_5xx, S.up[1].kill_5xx, S.max_kill_5xx, S.unattributed_5xx);
    printf("per kill          5xx / its connections / clients hit / most per client:");
    for (int i = 0; i < S.n_ev; i++)
        if (S.ev[i].kind == EV_UP_KILL)
            printf(" %ld/%d/%d/%d", S.ev[i].value, S.ev[i].conns, S.ev[i].n_clients, S.ev[i].worst_client);
    printf(" (%d client connections; bound 2 per client, %d per kill)\n", conns_total, 2 * conns_total);
    printf("wrk errors        non-2xx %ld, connect %ld, read %ld, write %ld, timeout %ld\n", S.wrk.non2xx,
           S.wrk.connect, S.wrk.read, S.wrk.write, S.wrk.timeout);
    printf("log warn/error    ");
    for (int c = 0; c < CAUSE__COUNT; c++)
        printf("%s %ld%s", k_cause[c], S.log_by_cause[c], c + 1 < CAUSE__COUNT ? ", " : "\n");
    printf("recovery (ms)     ");
    for (int i = 0; i < S.n_ev; i++)
        if (S.ev[i].kind == EV_PG_BACK || S.ev[i].kind == EV_UP_BACK)
            printf("%s%s %ld ", S.ev[i].kind == EV_PG_BACK ? "pg" : "",
                   S.ev[i].kind == EV_PG_BACK ? "" : S.up[S.ev[i].which].name, S.ev[i].value);
    printf("\n");
    printf("RSS (KiB)         start %.0f, end of warm-up %.0f, warm-up max %.0f, last-half max %.0f, end %.0f; "
           "slope after warm-up %+.1f KiB/min%s\n",
           rss_start, at_warm_end, warm_max, late_max, rss_end, slope, S.o.check_rss ? "" : " (not asserted)");
    printf("descriptors       baseline %d, max under load %d, quiet points at baseline %d/%d\n", S.baseline_fds,
           max_fds, S.quiet_ok, S.quiet_total);
    printf("exit              status %d after SIGTERM; sanitizer reports %d\n", S.gw_exit, S.sanitizer_reports);
    write_summary(fin.total, rss_start, at_warm_end, rss_end, c2, c5, c4);
    if (S.n_fails) {
        printf("RESULT: FAIL (%d)\n", S.n_fails);
        for (int i = 0; i < S.n_fails && i < MAX_FAILS; i++)
            printf("  - %s\n", S.fails[i]);
        rc = 1;
    } else {
        printf("RESULT: PASS\n");
        rc = 0;
    }
out:
    cleanup();
    return rc;
}
