/* The test Postgres helper really starts, restarts, pauses and removes a
 * server, and never leaks one. */
#include "support/pg_harness.h"

#include <criterion/criterion.h>

#include <libpq-fe.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sg_pg_harness_t *h;

static void setup(void)
{
    h = sg_pgh_start();
    cr_assert_not_null(h, "harness failed to start");
}

static void teardown(void)
{
    sg_pgh_destroy(h);
    h = NULL;
}

static bool dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool pid_alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !(rp && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* Waits for a (non-child) process to exit, with a deadline. */
static bool wait_pid_gone(pid_t pid, int timeout_ms)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return !pid_alive(pid);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    close(fd);
    return rc > 0 || !pid_alive(pid);
}

static int select_one(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    int v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT 1");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

Test(pg_harness, server_answers_select_1_over_tcp_and_unix, .init = setup, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(select_one(sg_pgh_conninfo(h)), 1);
    cr_assert_eq(select_one(sg_pgh_conninfo_unix(h)), 1);
    cr_assert_gt(sg_pgh_port(h), 0);
    cr_assert_gt(sg_pgh_pid(h), 0);
    int64_t v = 0;
    cr_assert_eq(sg_pgh_query_i64(h, "SELECT 40 + 2", &v), 0);
    cr_assert_eq(v, 42);
}

Test(pg_harness, tcp_needs_the_password, .init = setup, .fini = teardown, .timeout = 60)
{
    char ci[512];
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%u dbname=swarm user=postgres password=wrong",
             (unsigned)sg_pgh_port(h));
    cr_assert_eq(select_one(ci), -1);
}

Test(pg_harness, listens_only_on_loopback, .init = setup, .fini = teardown, .timeout = 60)
{
    char v[128];
    cr_assert_eq(sg_pgh_query_text(h, "SHOW listen_addresses", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "127.0.0.1");
    cr_assert_eq(sg_pgh_query_text(h, "SHOW fsync", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "off");
}

Test(pg_harness, exec_reports_errors, .init = setup, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(sg_pgh_exec(h, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"), 0);
    int64_t n = 0;
    cr_assert_eq(sg_pgh_query_i64(h, "SELECT count(*) FROM t", &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(sg_pgh_exec(h, "SELEC nonsense"), -1);
}

Test(pg_harness, stop_and_restart_keep_port_and_data, .init = setup, .fini = teardown, .timeout = 90)
{
    cr_assert_eq(sg_pgh_exec(h, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)"), 0);
    pid_t before = sg_pgh_pid(h);
    uint16_t port = sg_pgh_port(h);
    cr_assert_eq(sg_pgh_stop(h), 0);
    cr_assert_eq(sg_pgh_pid(h), -1);
    cr_assert(wait_pid_gone(before, 5000));
    cr_assert_eq(select_one(sg_pgh_conninfo(h)), -1);
    cr_assert_eq(sg_pgh_restart(h), 0);
    cr_assert_eq(sg_pgh_port(h), port);
    cr_assert_neq(sg_pgh_pid(h), before);
    int64_t v = 0;
    cr_assert_eq(sg_pgh_query_i64(h, "SELECT x FROM t", &v), 0);
    cr_assert_eq(v, 7);
    /* restart while running */
    cr_assert_eq(sg_pgh_restart(h), 0);
    cr_assert_eq(select_one(sg_pgh_conninfo(h)), 1);
}

Test(pg_harness, pause_hangs_connects_and_resume_recovers, .init = setup, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(sg_pgh_pause(h), 0);
    char ci[600];
    snprintf(ci, sizeof(ci), "%s connect_timeout=2", sg_pgh_conninfo(h));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(select_one(ci), -1, "a paused server must not answer");
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert_geq(secs, 1.5, "connect failed fast (%.3fs): not a hang", secs);
    cr_assert_eq(sg_pgh_resume(h), 0);
    cr_assert_eq(select_one(sg_pgh_conninfo(h)), 1);
}

Test(pg_harness, destroy_stops_server_and_removes_dir, .timeout = 60)
{
    sg_pg_harness_t *x = sg_pgh_start();
    cr_assert_not_null(x);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sg_pgh_dir(x));
    pid_t pid = sg_pgh_pid(x);
    cr_assert_gt(pid, 0);
    cr_assert(dir_exists(dir));
    sg_pgh_destroy(x);
    cr_assert(wait_pid_gone(pid, 5000), "postmaster %d still running", (int)pid);
    cr_assert_not(dir_exists(dir));
}

Test(pg_harness, destroy_of_a_paused_server, .timeout = 60)
{
    sg_pg_harness_t *x = sg_pgh_start();
    cr_assert_not_null(x);
    pid_t pid = sg_pgh_pid(x);
    cr_assert_eq(sg_pgh_pause(x), 0);
    sg_pgh_destroy(x);
    cr_assert(wait_pid_gone(pid, 5000));
}

/* A test process that dies without .fini (SIGKILL, as on a timeout) must not
 * leak its server, even a paused one: the watchdog stops it and removes the
 * dir. */
Test(pg_harness, killed_owner_does_not_leak_server, .timeout = 60)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    /* The child must not touch Criterion (with --full-stats even a passing
     * assertion messages the runner, which does not know this process). */
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        close(fds[0]);
        sg_pg_harness_t *x = sg_pgh_start();
        struct {
            pid_t pm;
            char dir[512];
        } msg = {-1, ""};
        if (x && sg_pgh_pause(x) == 0) { /* the worst case: all of it stopped */
            msg.pm = sg_pgh_pid(x);
            snprintf(msg.dir, sizeof(msg.dir), "%s", sg_pgh_dir(x));
        }
        if (write(fds[1], &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
            _exit(1);
        for (;;)
            pause(); /* killed below */
    }
    cr_assert_gt(child, 0, "fork failed");
    close(fds[1]);
    struct {
        pid_t pm;
        char dir[512];
    } msg;
    cr_assert_eq(read(fds[0], &msg, sizeof(msg)), (ssize_t)sizeof(msg));
    close(fds[0]);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cr_assert_gt(msg.pm, 0);
    cr_assert(wait_pid_gone(msg.pm, 15000), "postmaster %d leaked", (int)msg.pm);
    /* The dir goes right after the server: wait for it with a deadline. */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (!dir_exists(msg.dir))
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert_lt(now.tv_sec - t0.tv_sec, 10, "dir %s leaked", msg.dir);
        struct pollfd none;
        poll(&none, 0, 20);
    }
}

static int64_t q64(const char *sql)
{
    int64_t v = -1;
    cr_assert_eq(sg_pgh_query_i64(h, sql, &v), 0, "%s", sql);
    return v;
}

/* The reference schema and sample data load, twice, without changing. */
Test(pg_harness, reference_schema_is_idempotent, .timeout = 60)
{
    h = sg_pgh_start_reference();
    cr_assert_not_null(h);
    int64_t tickets = q64("SELECT count(*) FROM tickets");
    int64_t events = q64("SELECT count(*) FROM ticket_events");
    cr_assert_eq(tickets, 19);
    cr_assert_eq(sg_pgh_exec_file(h, SG_SOURCE_DIR "/config/sql/schema.sql"), 0);
    cr_assert_eq(sg_pgh_exec_file(h, SG_SOURCE_DIR "/config/sql/sample_data.sql"), 0);
    cr_assert_eq(q64("SELECT count(*) FROM tickets"), tickets);
    cr_assert_eq(q64("SELECT count(*) FROM ticket_events"), events);
    cr_assert_eq(q64("SELECT count(*) FROM tickets WHERE state = 'in_progress'"), 4);
    cr_assert_eq(q64("SELECT count(*) FROM tickets WHERE state = 'in_progress' "
                     "AND state_changed_at < now() - interval '1 hour'"),
                 2);
    cr_assert_eq(q64("SELECT count(*) FROM circuit_breakers WHERE state = 'open'"), 1);
    cr_assert_eq(q64("SELECT count(*) FROM tickets WHERE trace_id IS NULL"), 0);
    /* every ticket has a creation event plus one per change */
    cr_assert_eq(q64("SELECT count(*) FROM ticket_events WHERE from_state IS NULL"), 19);
    /* the trigger records a live update */
    cr_assert_eq(sg_pgh_exec(h, "UPDATE tickets SET state = 'done' WHERE title = 'sample: tune connection pool'"), 0);
    cr_assert_eq(q64("SELECT count(*) FROM ticket_events"), events + 1);
    cr_assert_eq(q64("SELECT count(*) FROM ticket_events WHERE from_state = 'in_progress' AND to_state = 'done' "
                     "AND created_at > now() - interval '1 minute'"),
                 1);
    /* the state check refuses unknown states */
    cr_assert_eq(sg_pgh_exec(h, "UPDATE tickets SET state = 'bogus' WHERE id = 1"), -1);
    sg_pgh_destroy(h);
    h = NULL;
}
