/* Process metrics (process_*), read from /proc like the Prometheus client
 * libraries do. Linux only. Called on the control thread at scrape time
 * (a few small reads of /proc/self; nothing on the request path). */
#ifndef SG_PROCSTAT_H
#define SG_PROCSTAT_H

#include "sg/common.h"
#include "sg/expose.h"

typedef struct sg_procstat {
    double cpu_seconds;        /* user + system CPU time */
    double resident_bytes;     /* RSS */
    double virtual_bytes;      /* VSZ */
    double open_fds;           /* entries in /proc/self/fd */
    double max_fds;            /* soft RLIMIT_NOFILE */
    double start_time_seconds; /* since the Unix epoch */
} sg_procstat_t;

/* Fills *out. Returns 0, or a negative errno when /proc/self/stat is
 * unreadable (then nothing should be rendered). Fields that could not be
 * read alone are NaN. Any thread. */
int sg_procstat_read(sg_procstat_t *out) SG_MUST_CHECK;

/* Process start time in seconds since the epoch (boot time from /proc/stat
 * plus the start tick from /proc/self/stat); NaN when unknown. Read once at
 * start-up and cached by the caller: /proc/stat can be large. */
double sg_procstat_start_time(void);

/* Writes the process_* families from *ps (start time taken from
 * ps->start_time_seconds; omitted when NaN). */
void sg_procstat_render(sg_expose_t *x, const sg_procstat_t *ps);

#endif /* SG_PROCSTAT_H */
