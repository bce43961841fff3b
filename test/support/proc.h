/* Runs the real swarmgate binary for integration tests: writes a YAML
 * config into a fresh temp dir, starts SG_BINARY (or $SG_TEST_BINARY when
 * set) --config FILE --ports-file FILE with stdout/stderr captured to
 * files, waits (deadline) until the ports file lists every listener and the
 * first one accepts a connection, and stops it by PID (SIGTERM, then
 * SIGKILL after the deadline). */
#ifndef SG_TEST_PROC_H
#define SG_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SG_PROC_MAX_LISTENERS 8

typedef struct sg_proc {
    pid_t pid;
    char dir[128];
    char cfg_path[192];
    char ports_path[192];
    char stderr_path[192];
    char stdout_path[192];
    int n_listeners;
    char names[SG_PROC_MAX_LISTENERS][64];
    char addrs[SG_PROC_MAX_LISTENERS][80];
    int exit_status; /* after stop: exit code, or 128+signal */
} sg_proc_t;

/* Whether the binary runs with its object pools off (src/core/mem.c): a
 * SG_NO_POOLS build, or SG_POOLS=off in this process's environment, which
 * every child inherits (the pools-off ctest run, test/CMakeLists.txt).
 * Tests that bound RSS or count freelist growth depend on it. */
bool sg_proc_pools_off(void);
/* Returns 0 when running and bound, -1 otherwise (stderr kept for inspection). */
int sg_proc_start(sg_proc_t *p, const char *yaml, int timeout_ms);
/* Same with extra environment "K=V" entries (NULL-terminated), e.g. to set SG_DEBUG_POOLS. */
int sg_proc_start_env(sg_proc_t *p, const char *yaml, const char *const *env, int timeout_ms);
/* Runs the binary with args (NULL-terminated, argv[0] excluded) to completion;
 * returns its exit code and captures stdout+stderr into out. */
int sg_proc_run(const char *const *args, char *out, size_t cap, int timeout_ms);
const char *sg_proc_addr(const sg_proc_t *p, const char *listener);
/* Reads the ports file again (the binary rewrites it after a reload that
 * changes listeners); false when it is missing or empty. */
bool sg_proc_reread_ports(sg_proc_t *p);
int sg_proc_signal(sg_proc_t *p, int sig);
/* Waits for exit; true when it exited within the deadline (exit_status set). */
bool sg_proc_wait_exit(sg_proc_t *p, int timeout_ms);
/* SIGTERM + wait; SIGKILL when the deadline passes. Returns exit_status. */
int sg_proc_stop(sg_proc_t *p, int timeout_ms);
/* Whole stderr so far (malloc'ed, NUL-terminated). */
char *sg_proc_stderr(const sg_proc_t *p);
/* Waits until `needle` occurs at least `count` times in stderr. */
bool sg_proc_wait_stderr(const sg_proc_t *p, const char *needle, int count, int timeout_ms);
/* Open descriptors of a process (/proc/PID/fd), -1 if it is gone. */
int sg_proc_count_fds(pid_t pid);
/* Waits until the process has exactly `want` descriptors open. */
bool sg_proc_wait_fds(pid_t pid, int want, int timeout_ms);
/* The descriptor count once it stopped changing (10 equal samples 20 ms
 * apart), -1 when it does not settle within timeout_ms. */
int sg_proc_stable_fds(pid_t pid, int timeout_ms);
/* A /proc/PID/status field in kB (VmRSS, VmHWM), -1 if unavailable. */
long sg_proc_status_kb(const sg_proc_t *p, const char *field);
/* Rewrites the config file the binary was started with (atomically, for
 * a reload): the first `from` replaced by `to`. 0, or -1 when `from` is
 * not there or the file cannot be written. */
int sg_proc_edit_config(const sg_proc_t *p, const char *from, const char *to);
/* The whole file (malloc'ed, NUL-terminated; empty when it cannot be read). */
char *sg_proc_read_file(const char *path);
/* Waits (deadline) for a line of the process's stdout (the access log when
 * it goes to stdout) holding `needle`; copies that line into line. */
bool sg_proc_stdout_line(const sg_proc_t *p, const char *needle, char *line, size_t cap, int timeout_ms);
/* Number of sanitizer reports (ASan, LeakSanitizer, UBSan "runtime error:",
 * ThreadSanitizer) in text. */
int sg_proc_sanitizer_reports(const char *text);
/* Stops the process if it still runs, then removes the temp dir. A
 * sanitizer report in the process's stderr is copied to the test's own
 * stderr first, where the ctest FAIL_REGULAR_EXPRESSION (test/CMakeLists.txt)
 * fails the suite: a child's report is never lost with its temp dir. */
void sg_proc_cleanup(sg_proc_t *p);
/* Writes a file into the temp dir; returns its path in out. */
int sg_proc_write_file(const sg_proc_t *p, const char *name, const char *text, char *out, size_t cap);

#endif
