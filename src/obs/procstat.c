#include "sg/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file into buf (NUL-terminated); bytes read or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(fd);
            return -err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* /proc/self/stat fields after the ")" that ends comm (proc(5)): field 3
 * (state) is the first. We want 14 utime, 15 stime, 22 starttime,
 * 23 vsize, 24 rss (pages). */
typedef struct stat_fields {
    unsigned long long utime, stime, starttime, vsize;
    long long rss;
} stat_fields_t;

static int read_self_stat(stat_fields_t *f)
{
    char buf[1024];
    ssize_t n = read_small("/proc/self/stat", buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    const char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    p++;
    int field = 2;
    memset(f, 0, sizeof(*f));
    while (*p && field < 24) {
        while (*p == ' ')
            p++;
        field++;
        char *end = NULL;
        switch (field) {
        case 14:
            f->utime = strtoull(p, &end, 10);
            break;
        case 15:
            f->stime = strtoull(p, &end, 10);
            break;
        case 22:
            f->starttime = strtoull(p, &end, 10);
            break;
        case 23:
            f->vsize = strtoull(p, &end, 10);
            break;
        case 24:
            f->rss = strtoll(p, &end, 10);
            break;
        default:
            break;
        }
        if (end)
            p = end;
        else
            while (*p && *p != ' ')
                p++;
    }
    return field == 24 ? 0 : -EINVAL;
}

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    double n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

double sg_procstat_start_time(void)
{
    stat_fields_t f;
    if (read_self_stat(&f) != 0)
        return NAN;
    FILE *fp = fopen("/proc/stat", "re");
    if (!fp)
        return NAN;
    char line[256];
    double btime = NAN;
    /* lines can be longer than the buffer (intr): fgets just splits them,
     * and no piece of them starts with "btime " */
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    fclose(fp);
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0 || isnan(btime))
        return NAN;
    return btime + (double)f.starttime / (double)hz;
}

int sg_procstat_read(sg_procstat_t *out)
{
    stat_fields_t f;
    int rc = read_self_stat(&f);
    if (rc != 0)
        return rc;
    long hz = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    out->cpu_seconds = hz > 0 ? (double)(f.utime + f.stime) / (double)hz : NAN;
    out->virtual_bytes = (double)f.vsize;
    out->resident_bytes = page > 0 ? (double)f.rss * (double)page : NAN;
    out->open_fds = count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
    else
        out->max_fds = NAN;
    out->start_time_seconds = NAN;
    return 0;
}

static void gauge(sg_expose_t *x, const char *name, const char *help, sg_metric_type_t t, double v)
{
    if (isnan(v))
        return;
    sg_expose_family(x, name, help, t);
    sg_expose_sample(x, name, "", NULL, NULL, 0, v);
}

void sg_procstat_render(sg_expose_t *x, const sg_procstat_t *ps)
{
    gauge(x, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", SG_METRIC_COUNTER,
          ps->cpu_seconds);
    gauge(x, "process_resident_memory_bytes", "Resident memory size in bytes.", SG_METRIC_GAUGE, ps->resident_bytes);
    gauge(x, "process_virtual_memory_bytes", "Virtual memory size in bytes.", SG_METRIC_GAUGE, ps->virtual_bytes);
    gauge(x, "process_open_fds", "Number of open file descriptors.", SG_METRIC_GAUGE, ps->open_fds);
    gauge(x, "process_max_fds", "Maximum number of open file descriptors.", SG_METRIC_GAUGE, ps->max_fds);
    gauge(x, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", SG_METRIC_GAUGE,
          ps->start_time_seconds);
}
