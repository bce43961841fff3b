/* Issue 9, "Long run", in short: the soak driver (test/soak/soak.c, the
 * same one `make soak` and `make leakcheck` run) for two cycles against this
 * build's swarmgate: wrk load with connection churn, each upstream killed
 * and restarted once, Postgres stopped and started twice. The driver asserts
 * errors only from the injected faults, descriptors back to baseline at
 * every quiet point, Postgres and upstream recovery, and a clean exit on
 * SIGTERM; under ASan (make test's build) it runs in leak mode, where any
 * LeakSanitizer, AddressSanitizer or UBSan report in swarmgate's stderr
 * fails it. This test checks its verdict and that it really did the work. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_TEST_ASAN 1
#endif
#endif
#ifndef SOAK_TEST_ASAN
#define SOAK_TEST_ASAN 0
#endif

static char dir[64];

static void teardown(void)
{
    char path[128];
    static const char *const files[] = {"summary", "out"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    if (dir[0])
        rmdir(dir);
}

TestSuite(soak, .fini = teardown, .timeout = 240);

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = n > 0 ? fread(b, 1, (size_t)n, f) : 0;
    b[got] = '\0';
    fclose(f);
    return b;
}

/* key=value from the driver's summary file; -1 when absent. */
static double field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, n) && p[n] == '=')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* Runs the driver to completion (deadline: SIGTERM lets it clean up, then SIGKILL); its exit code.
 * The child only calls async-signal-safe functions between fork and exec:
 * the test process has other threads, and a lock one of them held at the
 * fork (malloc's, stdio's) would never be released in the child. */
static int run_driver(const char *summary, const char *out, int timeout_ms)
{
    static char env_store[4][256];
    static char *envp[512];
    int n = 0;
    snprintf(env_store[0], sizeof(env_store[0]), "SOAK_SECONDS=40"); /* two cycles of 15 s: each upstream killed once */
    snprintf(env_store[1], sizeof(env_store[1]), "SOAK_MODE=%s", SOAK_TEST_ASAN ? "leak" : "soak");
    snprintf(env_store[2], sizeof(env_store[2]), "SOAK_RSS_CHECK=0"); /* 30 s of load is too short for an RSS trend */
    snprintf(env_store[3], sizeof(env_store[3]), "SOAK_SUMMARY=%s", summary);
    for (int i = 0; i < 4; i++)
        envp[n++] = env_store[i];
    for (char **e = environ; *e && n < 511; e++)
        if (strncmp(*e, "SOAK_", 5) != 0)
            envp[n++] = *e;
    envp[n] = NULL;
    char *const argv[] = {(char *)SG_SOAK_BINARY, NULL};
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "%s", out);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execve(SG_SOAK_BINARY, argv, envp);
        _exit(127);
    }
    close(fd);
    long long deadline = now_ms() + timeout_ms;
    int st = 0;
    bool sent_term = false;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (!sent_term && now_ms() > deadline) {
            kill(pid, SIGTERM);
            sent_term = true;
            deadline = now_ms() + 20000;
        } else if (sent_term && now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 50 * 1000000L}; /* polling interval of a deadline-bounded wait */
        nanosleep(&ts, NULL);
    }
    if (sent_term) {
        static char tail[6001];
        char *log = slurp(out);
        size_t ll = strlen(log);
        snprintf(tail, sizeof(tail), "%s", ll > 6000 ? log + ll - 6000 : log);
        free(log);
        cr_assert_fail("the driver overran its deadline; its output ends with:\n%s", tail);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(soak, two_fault_cycles_leave_no_leak_no_unexplained_error)
{
    snprintf(dir, sizeof(dir), "/tmp/sgsoakt.XXXXXX");
    cr_assert(mkdtemp(dir));
    char summary[128], out[128];
    snprintf(summary, sizeof(summary), "%s/summary", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    int rc = run_driver(summary, out, 150000); /* about 30 s when all goes well */
    char *log = slurp(out);
    char *sum = slurp(summary);
    size_t ll = strlen(log);
    const char *tail = ll > 6000 ? log + ll - 6000 : log;
    cr_assert_eq(rc, 0, "sgsoak exited %d; its output ends with:\n%s", rc, tail);
    cr_assert_eq(field(sum, "failures"), 0, "%s", sum);
    /* It did the work it claims: load served, every fault injected. */
    cr_assert_eq(field(sum, "cycles"), 2, "%s", sum);
    cr_assert_eq(field(sum, "upstream_kills"), 2, "%s", sum);
    cr_assert_eq(field(sum, "pg_restarts"), 2, "%s", sum);
    cr_assert_gt(field(sum, "requests"), 5000, "%s", sum);
    cr_assert_eq(field(sum, "requests_4xx"), 0, "%s", sum);
    cr_assert_eq(field(sum, "unattributed_5xx"), 0, "%s", sum);
    cr_assert_eq(field(sum, "quiet_total"), 2, "%s", sum);
    cr_assert_eq(field(sum, "quiet_ok"), 2, "descriptors back to baseline at each quiet point\n%s", sum);
    cr_assert_eq(field(sum, "unexplained_logs"), 0, "%s", sum);
    cr_assert_eq(field(sum, "sanitizer_reports"), 0, "%s", sum);
    cr_assert_eq(field(sum, "gw_exit"), 0, "%s", sum);
    cr_assert_str_eq(SOAK_TEST_ASAN ? "leak" : "soak", strstr(sum, "mode=leak") ? "leak" : "soak");
    free(log);
    free(sum);
}
