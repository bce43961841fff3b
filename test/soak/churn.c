/* sgchurn: memory under connection churn (issue #15, item 9; make churn).
 *
 * Starts swarmgate from this build tree (support/proc.h; loopback only,
 * stopped by its PID) and runs cycles: open CHURN_CONNS client connections
 * to it at once, wait until /metrics says the proxy holds every one of
 * them (swarm_http_connections_active), close them all, wait until it
 * holds none, wait until every worker has given the surplus back
 * (swarm_memory_trims_total grew by the number of workers and stayed still
 * for 600 ms; at most 5 s, and not at all with a binary that does not
 * export it), then read the proxy's VmRSS and RssAnon (/proc/PID/status).
 * One row per cycle.
 *
 * What each connection does (CHURN_REQUEST): 2 (default) sends a request
 * head without its final empty line, so the proxy holds a head buffer for
 * it while it waits (the case that grew RSS); 1 sends one keep-alive
 * `GET /health` and reads the answer; 0 sends nothing (idle).
 *
 * At the end it prints the RSS after the warm-up cycles, the last, the
 * maximum over the second half and the slope over the second half
 * (least squares, KiB per cycle). With CHURN_MAX_GROWTH_KB set it exits 1
 * when the lowest RSS of the last 5 cycles exceeds the maximum over the
 * warm-up cycles by more than that: RSS must level off.
 *
 * Environment: CHURN_CYCLES (30), CHURN_CONNS (6000), CHURN_WORKERS (2),
 * CHURN_WARMUP (5 cycles), CHURN_REQUEST (2), CHURN_MAX_GROWTH_KB (unset:
 * report only), CHURN_SECONDS (600: the whole run stops after this),
 * CHURN_ENV (one extra "K=V" for swarmgate, e.g. MALLOC_ARENA_MAX=8, to
 * compare allocator settings), CHURN_KEEP=1 (keep the temp dir).
 * The driver raises its RLIMIT_NOFILE soft limit to the hard limit; the
 * proxy inherits it. Exit status: 0, 1 (failed), 2 (bad settings), 77
 * (skipped: the hard limit is too low for CHURN_CONNS). */
#include "support/clock.h"
#include "support/http_client.h"
#include "support/obs_fixture.h"
#include "support/proc.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256 /* connects in flight at once: stays under the listen backlog */

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t fl = strlen(field);
    long v = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* swarm_http_connections_active{listener="api"}; -1 when the scrape fails. */
static long active_conns(const char *admin)
{
    double v = 0;
    if (!obs_scrape_value(admin, "swarm_http_connections_active{listener=\"api\"}", &v))
        return -1;
    return (long)v;
}

/* swarm_memory_trims_total; -1 when the binary does not export it. */
static double trims(const char *admin)
{
    double v = -1;
    return obs_scrape_value(admin, "swarm_memory_trims_total", &v) ? v : -1;
}

static bool wait_active(const char *admin, long want, int timeout_ms, long *last)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        *last = active_conns(admin);
        if (*last == want)
            return true;
        sgt_nap_ms(20);
    } while (sgt_now_ms() < deadline);
    return false;
}

/* Opens n connections in batches (each batch connected before the next). */
static int open_all(int *fds, int n, const struct sockaddr_in *sa, int mode, int timeout_ms)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: churn\r\n\r\n";
    static const char partial[] = "GET /health HTTP/1.1\r\nHost: churn\r\n";
    bool send_req = mode != 0;
    long long deadline = sgt_now_ms() + timeout_ms;
    struct pollfd *pfd = calloc(BATCH, sizeof(*pfd));
    if (!pfd)
        return -1;
    int opened = 0;
    for (int b = 0; b < n; b += BATCH) {
        int k = n - b < BATCH ? n - b : BATCH;
        for (int i = 0; i < k; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                fprintf(stderr, "sgchurn: socket: %s\n", strerror(errno));
                free(pfd);
                return opened;
            }
            fds[b + i] = fd;
            opened++;
            if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 && errno != EINPROGRESS) {
                fprintf(stderr, "sgchurn: connect: %s\n", strerror(errno));
                free(pfd);
                return opened;
            }
        }
        /* Wait for this batch: connected (and, with a request, answered). */
        int left = k;
        bool *done = calloc((size_t)k, sizeof(bool));
        bool *sent = calloc((size_t)k, sizeof(bool));
        while (left > 0 && sgt_now_ms() < deadline) {
            for (int i = 0; i < k; i++) {
                pfd[i].fd = done[i] ? -1 : fds[b + i];
                pfd[i].events = sent[i] ? POLLIN : POLLOUT;
                pfd[i].revents = 0;
            }
            if (poll(pfd, (nfds_t)k, 100) <= 0)
                continue;
            for (int i = 0; i < k; i++) {
                if (done[i] || !pfd[i].revents)
                    continue;
                if (pfd[i].revents & (POLLERR | POLLHUP)) {
                    fprintf(stderr, "sgchurn: connection %d failed\n", b + i);
                    free(done);
                    free(sent);
                    free(pfd);
                    return -1;
                }
                if (!send_req) {
                    done[i] = true;
                    left--;
                } else if (!sent[i] && mode == 2) {
                    /* A head that never ends: the proxy holds a read buffer for it. */
                    if (send(fds[b + i], partial, sizeof(partial) - 1, MSG_NOSIGNAL) ==
                        (ssize_t)(sizeof(partial) - 1)) {
                        done[i] = true;
                        left--;
                    }
                } else if (!sent[i]) {
                    if (send(fds[b + i], req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1))
                        sent[i] = true;
                } else {
                    char buf[1024];
                    ssize_t r = recv(fds[b + i], buf, sizeof(buf), 0);
                    if (r > 0) { /* one small answer: the head and body come in one read */
                        done[i] = true;
                        left--;
                    }
                }
            }
        }
        free(done);
        free(sent);
        if (left > 0) {
            fprintf(stderr, "sgchurn: %d connections of a batch not ready in time\n", left);
            free(pfd);
            return -1;
        }
    }
    free(pfd);
    return opened;
}

int main(void)
{
    int cycles = (int)env_long("CHURN_CYCLES", 30);
    int conns = (int)env_long("CHURN_CONNS", 6000);
    int workers = (int)env_long("CHURN_WORKERS", 2);
    int warmup = (int)env_long("CHURN_WARMUP", 5);
    int mode = (int)env_long("CHURN_REQUEST", 2);
    long max_growth = env_long("CHURN_MAX_GROWTH_KB", -1);
    long seconds = env_long("CHURN_SECONDS", 600);
    const char *extra_env = getenv("CHURN_ENV");
    if (cycles < 2 || conns < 1 || warmup < 1 || warmup >= cycles) {
        fprintf(stderr, "sgchurn: need CHURN_CYCLES >= 2, CHURN_CONNS >= 1, 1 <= CHURN_WARMUP < CHURN_CYCLES\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)conns + 64) {
        fprintf(stderr, "sgchurn: RLIMIT_NOFILE %llu is too low for %d connections: skipped\n",
                (unsigned long long)rl.rlim_cur, conns);
        return 77; /* ctest: SKIP_RETURN_CODE */
    }

    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "workers: %d\n"
             "listeners: [{name: api, address: \"127.0.0.1:0\", serve_health: true, backlog: 4096}]\n"
             "admin: {address: \"127.0.0.1:0\"}\n"
             "log: {access: \"off\", level: warn}\n"
             "limits: {keepalive_timeout: 600s, client_header_timeout: 600s}\n"
             "shutdown: {drain_delay: 0s, drain_timeout: 5s}\n",
             workers);
    const char *env[] = {extra_env, NULL};
    sg_proc_t gw;
    if (sg_proc_start_env(&gw, yaml, extra_env && *extra_env ? env : NULL, 15000) != 0) {
        char *err = sg_proc_stderr(&gw);
        fprintf(stderr, "sgchurn: swarmgate did not start:\n%s\n", err ? err : "");
        free(err);
        return 1;
    }
    const char *api = sg_proc_addr(&gw, "api");
    const char *admin = sg_proc_addr(&gw, "admin");
    unsigned port = (unsigned)atoi(strrchr(api, ':') + 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int *fds = calloc((size_t)conns, sizeof(int));
    long *rss = calloc((size_t)cycles, sizeof(long));
    long *anon = calloc((size_t)cycles, sizeof(long));
    if (!fds || !rss || !anon)
        return 1;
    long rss0 = status_kb(gw.pid, "VmRSS");
    printf("sgchurn: %d cycles of %d %s connections, %d workers%s%s; start RSS %ld KiB\n", cycles, conns,
           mode == 1   ? "keep-alive (one request each)"
           : mode == 2 ? "half-sent head"
                       : "idle",
           workers, extra_env ? ", env " : "", extra_env ? extra_env : "", rss0);
    printf("%6s %10s %10s %10s %8s %6s\n", "cycle", "rss_kb", "anon_kb", "delta_kb", "ms", "trims");
    fflush(stdout);
    int rc = 0, done_cycles = 0;
    long long t_end = sgt_now_ms() + seconds * 1000;
    for (int c = 0; c < cycles; c++) {
        if (sgt_now_ms() > t_end) {
            fprintf(stderr, "sgchurn: CHURN_SECONDS reached after %d cycles\n", c);
            rc = 1;
            break;
        }
        long long t0 = sgt_now_ms();
        double trims0 = trims(admin);
        int n = open_all(fds, conns, &sa, mode, 60000);
        long last = 0;
        if (n != conns || !wait_active(admin, conns, 30000, &last)) {
            fprintf(stderr, "sgchurn: cycle %d: opened %d of %d, proxy holds %ld\n", c, n, conns, last);
            for (int i = 0; i < (n > 0 ? n : 0); i++)
                close(fds[i]);
            rc = 1;
            break;
        }
        for (int i = 0; i < n; i++)
            close(fds[i]);
        if (!wait_active(admin, 0, 30000, &last)) {
            fprintf(stderr, "sgchurn: cycle %d: the proxy still holds %ld connections\n", c, last);
            rc = 1;
            break;
        }
        /* Each worker gives the burst's surplus back from a tick once its
         * frees have stopped (malloc_trim, swarm_memory_trims_total): sample
         * when the counter has grown by the number of workers and then
         * stayed still for 600 ms (two ticks; a worker the scheduler held
         * up may trim twice), or after 5 s (a small burst trims nothing). */
        double trims1 = trims0;
        if (trims0 >= 0) {
            long long dl = sgt_now_ms() + 5000, still_since = sgt_now_ms();
            double seen = trims0;
            while (sgt_now_ms() < dl) {
                trims1 = trims(admin);
                if (trims1 != seen) {
                    seen = trims1;
                    still_since = sgt_now_ms();
                } else if (trims1 >= trims0 + workers && sgt_now_ms() - still_since >= 600) {
                    break;
                }
                sgt_nap_ms(20);
            }
        }
        rss[c] = status_kb(gw.pid, "VmRSS");
        anon[c] = status_kb(gw.pid, "RssAnon");
        printf("%6d %10ld %10ld %+10ld %8lld %6.0f\n", c + 1, rss[c], anon[c], rss[c] - (c ? rss[c - 1] : rss0),
               sgt_now_ms() - t0, trims0 >= 0 ? trims1 - trims0 : 0.0);
        fflush(stdout);
        done_cycles = c + 1;
    }
    if (rc == 0) {
        long warm_max = 0, half_max = 0;
        for (int c = 0; c < warmup; c++)
            warm_max = rss[c] > warm_max ? rss[c] : warm_max;
        int h = cycles / 2;
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int c = h; c < cycles; c++) {
            half_max = rss[c] > half_max ? rss[c] : half_max;
            sx += c;
            sy += (double)rss[c];
            sxx += (double)c * c;
            sxy += (double)c * (double)rss[c];
        }
        double m = cycles - h;
        double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
        printf("sgchurn: RSS start %ld KiB, after %d warm-up cycles %ld KiB (max %ld), last %ld KiB; "
               "second half max %ld KiB, slope %.1f KiB/cycle\n",
               rss0, warmup, rss[warmup - 1], warm_max, rss[cycles - 1], half_max, slope);
        /* The check takes the lowest of the last cycles: growth that stays
         * raises it, one sample taken before a late trim does not. */
        int tail = cycles - warmup < 5 ? cycles - warmup : 5;
        long tail_min = rss[cycles - 1];
        for (int c = cycles - tail; c < cycles; c++)
            tail_min = rss[c] < tail_min ? rss[c] : tail_min;
        printf("sgchurn: lowest of the last %d cycles %ld KiB (%+ld KiB over the warm-up maximum)\n", tail, tail_min,
               tail_min - warm_max);
        if (max_growth >= 0 && tail_min > warm_max + max_growth) {
            printf("sgchurn: FAIL: RSS kept growing: the lowest of the last %d cycles is %ld KiB above the warm-up "
                   "maximum (bound %ld KiB)\n",
                   tail, tail_min - warm_max, max_growth);
            rc = 1;
        } else if (max_growth >= 0) {
            printf("sgchurn: OK: RSS levelled off (within %ld KiB of the warm-up maximum)\n", max_growth);
        }
    }
    (void)done_cycles;
    int st = sg_proc_stop(&gw, 10000);
    if (st != 0) {
        fprintf(stderr, "sgchurn: swarmgate exit status %d\n", st);
        rc = 1;
    }
    if (!getenv("CHURN_KEEP") || !*getenv("CHURN_KEEP"))
        sg_proc_cleanup(&gw);
    free(fds);
    free(rss);
    free(anon);
    return rc;
}
