/* process_* metrics (src/obs/procstat.c) against readings that do not go
 * through /proc/self/stat's units: getrusage for CPU time (clock ticks),
 * /proc/self/status in kB for RSS and VSZ (page size), getrlimit, the
 * clock for the start time (boot time + start ticks). */
#include "sg/procstat.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double rusage_cpu_s(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A /proc/self/status field in bytes (the file gives kB). */
static double status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    double v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = strtod(line + fl + 1, NULL) * 1024.0;
            break;
        }
    fclose(f);
    cr_assert_geq(v, 0, "%s", field);
    return v;
}

Test(procstat, cpu_seconds_match_getrusage, .timeout = 30)
{
    /* Burn CPU until getrusage shows 0.3 s (a deadline bounds the loop). */
    volatile unsigned long x = 0;
    time_t deadline = time(NULL) + 20;
    while (rusage_cpu_s() < 0.3 && time(NULL) < deadline)
        for (int i = 0; i < 1000000; i++)
            x += (unsigned long)i;
    double before = rusage_cpu_s();
    cr_assert_geq(before, 0.3);
    sg_procstat_t ps;
    cr_assert_eq(sg_procstat_read(&ps), 0);
    double after = rusage_cpu_s();
    /* Clock ticks are 1/sysconf(_SC_CLK_TCK) s (10 ms at 100 Hz): the
     * tick count may trail getrusage by a tick or two. A wrong tick rate
     * would be off by a factor. */
    double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);
    cr_assert_geq(ps.cpu_seconds, before - 3 * tick, "procstat %g s, getrusage %g s", ps.cpu_seconds, before);
    cr_assert_leq(ps.cpu_seconds, after + 3 * tick, "procstat %g s, getrusage %g s", ps.cpu_seconds, after);
}

Test(procstat, memory_matches_proc_status_in_kb, .timeout = 30)
{
    /* 32 MiB touched: RSS well above noise. */
    size_t n = 32u << 20;
    char *block = malloc(n);
    cr_assert_not_null(block);
    memset(block, 1, n);
    double rss0 = status_bytes("VmRSS"), vsz0 = status_bytes("VmSize");
    sg_procstat_t ps;
    cr_assert_eq(sg_procstat_read(&ps), 0);
    double rss1 = status_bytes("VmRSS"), vsz1 = status_bytes("VmSize");
    const double slack = 2.0 * 1024 * 1024; /* what the reads themselves may map */
    cr_assert_geq(ps.resident_bytes, (rss0 < rss1 ? rss0 : rss1) - slack, "rss %g, VmRSS %g..%g", ps.resident_bytes,
                  rss0, rss1);
    cr_assert_leq(ps.resident_bytes, (rss0 > rss1 ? rss0 : rss1) + slack, "rss %g, VmRSS %g..%g", ps.resident_bytes,
                  rss0, rss1);
    cr_assert_geq(ps.resident_bytes, (double)n, "the 32 MiB block is resident");
    cr_assert_geq(ps.virtual_bytes, (vsz0 < vsz1 ? vsz0 : vsz1) - slack, "vsz %g, VmSize %g..%g", ps.virtual_bytes,
                  vsz0, vsz1);
    cr_assert_leq(ps.virtual_bytes, (vsz0 > vsz1 ? vsz0 : vsz1) + slack, "vsz %g, VmSize %g..%g", ps.virtual_bytes,
                  vsz0, vsz1);
    free(block);
}

Test(procstat, descriptors_and_limit, .timeout = 10)
{
    sg_procstat_t a, b;
    cr_assert_eq(sg_procstat_read(&a), 0);
    int fds[10];
    for (int i = 0; i < 10; i++)
        cr_assert_geq(fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
    cr_assert_eq(sg_procstat_read(&b), 0);
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    cr_assert_eq(b.open_fds - a.open_fds, 10, "%g then %g", a.open_fds, b.open_fds);
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_eq(b.max_fds, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

Test(procstat, start_time_is_this_process_start, .timeout = 10)
{
    /* This process (a Criterion worker) started moments ago: boot time plus
     * start ticks at the right tick rate land within a few seconds of now. */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double now = (double)tv.tv_sec + tv.tv_usec / 1e6;
    double start = sg_procstat_start_time();
    cr_assert(!isnan(start));
    cr_assert_leq(start, now + 1.0, "start %f after now %f", start, now);
    cr_assert_geq(start, now - 60.0, "start %f, now %f: %f s ago", start, now, now - start);
}
