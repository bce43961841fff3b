/* A throwaway PostgreSQL cluster for tests.
 *
 * sg_pgh_start() runs initdb into a fresh temp dir (sg-pg-XXXXXX under
 * $TMPDIR, or /tmp when running as root), picks a free 127.0.0.1 port (bind
 * port 0), starts the server with `pg_ctl -w` (fsync off, listening only on
 * 127.0.0.1 plus a unix socket in the temp dir) and creates the database
 * "swarm". Binaries: SG_PG_BINDIR, else the highest /usr/lib/postgresql/N/bin.
 * As root, initdb/pg_ctl/postgres run as the `postgres` OS user
 * (fork + setgid/setuid before exec; the temp dir is chown'ed to it).
 *
 * Auth: TCP uses scram-sha-256 with a random superuser password (so the
 * conninfo a test hands to the code under test carries a real secret); the
 * unix socket is trust and is what sg_pgh_exec() uses.
 *
 * No leaked servers, even when a test crashes or is killed (Criterion runs
 * each test in a forked process; a SIGKILL on timeout skips .fini):
 *   1. sg_pgh_destroy() (call it from the suite's .fini) stops the server by
 *      its PID (SIGINT = fast shutdown, then SIGQUIT, then SIGKILL, each with
 *      a deadline, waited through pidfd) and removes the dir.
 *   2. A watchdog process (/bin/sh, own session) holds the read end of a pipe
 *      whose write end only the test process has (O_CLOEXEC). When the test
 *      process dies for any reason the pipe hits EOF, and the watchdog sends
 *      SIGQUIT to the PID in data/postmaster.pid and removes the dir.
 *   3. The dir holds owner.pid (the test process). sg_pgh_start() first reaps
 *      sg-pg-* dirs whose owner is dead (a watchdog that was killed too):
 *      it stops their postmaster only when /proc/PID/cmdline is a postgres
 *      with that data dir, then removes the dir.
 * Ports come from bind(0) and are retried if pg_ctl start fails, dirs from
 * mkdtemp, so parallel or later runs never collide.
 *
 * Not thread-safe; blocking (tests only). Errors are printed to stderr with
 * the server log tail. */
#ifndef SG_TEST_PG_HARNESS_H
#define SG_TEST_PG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sg_pg_harness sg_pg_harness_t;

/* Starts a cluster with an empty database "swarm". NULL on failure. */
sg_pg_harness_t *sg_pgh_start(void);
/* Starts a cluster and loads config/sql/schema.sql and sample_data.sql. */
sg_pg_harness_t *sg_pgh_start_reference(void);
/* Stops the server (if running) and removes everything. NULL is fine. */
void sg_pgh_destroy(sg_pg_harness_t *h);

/* "host=127.0.0.1 port=N dbname=swarm user=postgres password=..." (TCP). */
const char *sg_pgh_conninfo(const sg_pg_harness_t *h);
/* Same but through the unix socket (trust, no password). */
const char *sg_pgh_conninfo_unix(const sg_pg_harness_t *h);
const char *sg_pgh_password(const sg_pg_harness_t *h);
const char *sg_pgh_dir(const sg_pg_harness_t *h);
uint16_t sg_pgh_port(const sg_pg_harness_t *h);
/* Postmaster PID from data/postmaster.pid, or -1 when not running. */
pid_t sg_pgh_pid(const sg_pg_harness_t *h);

/* Runs SQL (several statements allowed) on a fresh unix-socket connection as
 * the superuser. 0 or -1 (message on stderr). */
int sg_pgh_exec(sg_pg_harness_t *h, const char *sql);
/* Runs a file of SQL. */
int sg_pgh_exec_file(sg_pg_harness_t *h, const char *path);
/* First column of the first row as text into out. 0, or -1 on error/no row. */
int sg_pgh_query_text(sg_pg_harness_t *h, const char *sql, char *out, size_t outlen);
/* Same, parsed as a signed integer. */
int sg_pgh_query_i64(sg_pg_harness_t *h, const char *sql, int64_t *out);

/* pg_ctl stop -m fast -w. 0 or -1. */
int sg_pgh_stop(sg_pg_harness_t *h);
/* Starts a stopped server again on the same port; stops it first if running. */
int sg_pgh_restart(sg_pg_harness_t *h);
/* SIGSTOP / SIGCONT the postmaster and all its children (backends and
 * auxiliary processes, found through /proc), so both new connections and
 * running queries hang. 0 or -1. */
int sg_pgh_pause(sg_pg_harness_t *h);
int sg_pgh_resume(sg_pg_harness_t *h);

#endif /* SG_TEST_PG_HARNESS_H */
