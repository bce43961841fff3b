/* `make demo` as a new user runs it (test/demo/demo.sh on the built binary,
 * with its throwaway Postgres and sample upstream, on free ports):
 *  - in a small terminal psql never starts a pager (one that waits for a key
 *    blocked the demo and swallowed Ctrl-C);
 *  - with no terminal it shows everything once and exits 0, including one
 *    trace id followed from the access log to the ticket, its events, the
 *    span and the metrics exemplar (README). */
#include "sg/common.h"
#include "support/clock.h"
#include "support/obs_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEMO_DEADLINE_MS 150000
#define OUT_CAP (1u << 20)

static char g_out[OUT_CAP + 1];
static pid_t g_pid = -1;

/* The demo's own Postgres, when its cleanup did not run: the postmaster (its
 * own session, out of reach of the process group) by the PID in its data dir. */
static void stop_leaked_postgres(void)
{
    const char *t = strstr(g_out, "(throwaway, /tmp/swarmgate-demo.");
    if (!t)
        return;
    char dir[128];
    t += strlen("(throwaway, ");
    size_t n = strcspn(t, ", \r\n"); /* "/tmp/swarmgate-demo.XXXXXX/pg" */
    if (n < 3 || n >= sizeof(dir) || strncmp(t + n - 3, "/pg", 3) != 0)
        return;
    snprintf(dir, sizeof(dir), "%.*s", (int)(n - 3), t);
    char pidfile[192];
    snprintf(pidfile, sizeof(pidfile), "%s/pg/postmaster.pid", dir);
    char *pid = obs_slurp(pidfile);
    long p = pid ? strtol(pid, NULL, 10) : 0;
    free(pid);
    if (p > 1) {
        kill((pid_t)p, SIGQUIT);
        long long deadline = sgt_now_ms() + 10000;
        while (sgt_now_ms() < deadline && kill((pid_t)p, 0) == 0)
            sgt_nap_ms(50); /* waiting for an exit, with a deadline */
    }
    obs_rmdir(dir);
}

/* On a failure the demo's process group gets Ctrl-C (its trap stops Postgres), then SIGKILL. */
static void teardown(void)
{
    if (g_pid > 0) {
        kill(-g_pid, SIGINT);
        long long deadline = sgt_now_ms() + 15000;
        while (sgt_now_ms() < deadline && waitpid(g_pid, NULL, WNOHANG) == 0)
            sgt_nap_ms(50); /* waiting for an exit, with a deadline */
        kill(-g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        g_pid = -1;
    }
    stop_leaked_postgres();
}

TestSuite(demo, .fini = teardown, .timeout = 200);

static void demo_env(void)
{
    char v[16];
    const char *names[] = {"SG_DEMO_API_PORT", "SG_DEMO_ADMIN_PORT", "SG_DEMO_UPSTREAM_PORT", "SG_DEMO_PG_PORT"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(v, sizeof(v), "%u", obs_free_port());
        setenv(names[i], v, 1);
    }
}

static void exec_demo(void)
{
    execl("/bin/sh", "sh", SG_SOURCE_DIR "/test/demo/demo.sh", SG_BINARY, (char *)NULL);
    _exit(127);
}

/* One read of fd appended to g_out: >0 bytes read, 0 at EOF (a pty says EIO once the child side is closed), -1 when
 * nothing came within wait_ms. */
static ssize_t read_into(int fd, size_t *len, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) <= 0)
        return -1;
    char buf[8192];
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r <= 0)
        return r < 0 && errno != EIO ? -1 : 0;
    size_t keep = SG_MIN((size_t)r, OUT_CAP - *len);
    memcpy(g_out + *len, buf, keep);
    *len += keep;
    g_out[*len] = '\0';
    return r;
}

/* Reads fd into g_out until the child exits and its output is drained; returns its exit code (-1 at the deadline). */
static int collect(int fd)
{
    size_t len = 0;
    long long deadline = sgt_now_ms() + DEMO_DEADLINE_MS;
    bool open = true;
    while (sgt_now_ms() <= deadline) {
        if (open && read_into(fd, &len, 200) == 0)
            open = false;
        else if (!open)
            sgt_nap_ms(50); /* output closed, waiting for the exit with a deadline */
        int st;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
            g_pid = -1;
            while (open && read_into(fd, &len, 100) > 0)
                ;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
    }
    return -1;
}

Test(demo, psql_never_pages_in_a_small_terminal)
{
    demo_env();
    setenv("SG_DEMO_ONESHOT", "1", 1);
    /* A pager that waits, as less or more do for a key. */
    setenv("PAGER", "sleep 600", 1);
    setenv("PSQL_PAGER", "sleep 600", 1);
    int master = -1;
    struct winsize ws = {.ws_row = 5, .ws_col = 100};
    g_pid = forkpty(&master, NULL, NULL, &ws);
    if (g_pid == 0) /* no assertion in the child: it would talk to Criterion's runner */
        exec_demo();
    cr_assert(g_pid > 0, "forkpty: %s", strerror(errno));
    int code = collect(master);
    close(master);
    cr_assert_neq(code, -1, "the demo did not finish in %d s (a pager?); its output:\n%s", DEMO_DEADLINE_MS / 1000,
                  g_out);
    cr_assert_eq(code, 0, "exit %d:\n%s", code, g_out);
    cr_assert(strstr(g_out, "Done (one-shot)"), "%s", g_out);
}

Test(demo, without_a_terminal_it_runs_once_and_follows_one_trace_id)
{
    demo_env();
    unsetenv("SG_DEMO_ONESHOT");
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    g_pid = fork();
    if (g_pid == 0) { /* no assertion in the child: it would talk to Criterion's runner */
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        exec_demo();
    }
    cr_assert(g_pid > 0, "fork: %s", strerror(errno));
    setpgid(g_pid, g_pid);
    close(pfd[1]);
    int code = collect(pfd[0]);
    close(pfd[0]);
    cr_assert_neq(code, -1, "the demo did not finish; its output:\n%s", g_out);
    cr_assert_eq(code, 0, "exit %d:\n%s", code, g_out);
    cr_assert(strstr(g_out, "Done (one-shot)"), "%s", g_out);

    /* The trace id the demo made, then each place it shows it. */
    const char *t = strstr(g_out, "-H \"X-Trace-Id: ");
    cr_assert(t, "the demo makes no ticket with a trace id:\n%s", g_out);
    char tid[37];
    snprintf(tid, sizeof(tid), "%s", t + strlen("-H \"X-Trace-Id: "));
    cr_assert(obs_is_uuid_v4(tid), "%s", tid);
    char hex[33];
    obs_uuid_hex(tid, hex);
    const char *sections[] = {
        "swarmgate's access log",       "the platform's log lines", "the ticket row", "its events",
        "the spans swarmgate exported", "the metrics exemplar"};
    const char *at = t;
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        const char *s = strstr(at, sections[i]);
        cr_assert(s, "no \"%s\" section:\n%s", sections[i], g_out);
        const char *end = strstr(s, "\n== ");
        const char *end2 = strstr(s, "\n\033[1m== ");
        if (!end || (end2 && end2 < end))
            end = end2;
        size_t n = end ? (size_t)(end - s) : strlen(s);
        char *sec = strndup(s, n);
        /* the command echo names the id too: each section must show it in its output */
        const char *body = strchr(sec, '\n') ? strchr(strchr(sec, '\n') + 1, '\n') : NULL;
        cr_assert(body && (strstr(body, tid) || strstr(body, hex)), "section \"%s\" shows no %s:\n%s", sections[i], tid,
                  sec);
        free(sec);
        at = s + 1;
    }
}
