/* Throwaway PostgreSQL clusters for tests; see pg_harness.h for the
 * leak-proofing strategy. Everything here blocks: tests only. */
#include "support/pg_harness.h"

#include "sg/common.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PGH_PATH 512
#define PGH_START_TRIES 3

struct sg_pg_harness {
    char bindir[PGH_PATH];
    char dir[128]; /* the temp dir: socket, logs, data/ */
    char datadir[PGH_PATH];
    char logpath[PGH_PATH]; /* server log (pg_ctl -l) */
    char cmdlog[PGH_PATH];  /* initdb / pg_ctl output */
    char password[32];
    char conninfo[1024];
    char conninfo_unix[1024];
    uint16_t port;
    bool as_postgres; /* running as root: drop to the postgres user */
    uid_t pg_uid;
    gid_t pg_gid;
    bool is_running;
    bool is_paused;
    pid_t watchdog_pid;
    int watchdog_fd; /* write end; its EOF tells the watchdog to clean up */
};

static void pgh_err(const char *fmt, ...) SG_PRINTF(1, 2);

static void pgh_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pg_harness: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void dump_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 4096)
            fseek(f, n - 4096, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    char buf[4097];
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    buf[got] = 0;
    fclose(f);
    if (got)
        fprintf(stderr, "---- %s (tail) ----\n%s\n----\n", path, buf);
}

/* ---- binaries ---------------------------------------------------------- */

static int find_bindir(char *out, size_t outlen)
{
    const char *env = getenv("SG_PG_BINDIR");
    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) != 0) {
        pgh_err("no PostgreSQL found under /usr/lib/postgresql/*/bin (set SG_PG_BINDIR)");
        return -1;
    }
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i] + strlen("/usr/lib/postgresql/");
        long v = strtol(p, NULL, 10);
        if (v > best) {
            best = v;
            snprintf(out, outlen, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/pg_ctl")), g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return best >= 0 ? 0 : -1;
}

/* ---- processes --------------------------------------------------------- */

/* Runs argv (absolute path first) and waits for it. Output goes to the
 * command log; as root the child becomes the postgres user first. */
static int run_cmd(sg_pg_harness_t *h, char *const argv[])
{
    static char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", NULL};
    int logfd = open(h->cmdlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        pgh_err("open %s: %s", h->cmdlog, strerror(errno));
        return -1;
    }
    if (h->as_postgres && fchown(logfd, h->pg_uid, h->pg_gid) != 0) {
        pgh_err("chown %s: %s", h->cmdlog, strerror(errno));
        close(logfd);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        /* Child: async-signal-safe calls only until exec. */
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(126);
        /* The server must not keep the test runner's pipes/sockets open. */
        syscall(SYS_close_range, 3u, ~0u, 0u);
        if (h->as_postgres) {
            if (setgroups(0, NULL) != 0 || setgid(h->pg_gid) != 0 || setuid(h->pg_uid) != 0)
                _exit(126);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(logfd);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        pgh_err("%s failed (status %d)", argv[0], st);
        dump_tail(h->cmdlog);
        dump_tail(h->logpath);
        return -1;
    }
    return 0;
}

static bool proc_is_alive(pid_t pid)
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
    /* A zombie has exited; nobody may reap it here (PID 1 need not). */
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* Waits up to timeout_ms for pid (not necessarily our child) to exit. */
static bool wait_gone(pid_t pid, int timeout_ms)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return errno == ESRCH || !proc_is_alive(pid);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    close(fd);
    return rc > 0 || !proc_is_alive(pid);
}

static pid_t read_pidfile(const char *datadir)
{
    char path[PGH_PATH + 32];
    snprintf(path, sizeof(path), "%s/postmaster.pid", datadir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    fclose(f);
    return pid > 0 ? (pid_t)pid : -1;
}

/* Signals the postmaster and its children (backends and auxiliary
 * processes each call setsid(), so there is no one group to signal). The
 * postmaster is stopped first and continued last, so it forks nobody new
 * meanwhile. */
static void signal_tree(pid_t pid, int sig)
{
    if (sig != SIGCONT)
        kill(pid, sig);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        long child = strtol(e->d_name, &end, 10);
        if (*end || child <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", child);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *rp = strrchr(buf, ')');
        long ppid = 0;
        if (rp && sscanf(rp + 2, "%*c %ld", &ppid) == 1 && ppid == pid)
            kill((pid_t)child, sig);
    }
    if (d)
        closedir(d);
    if (sig == SIGCONT)
        kill(pid, sig);
}

/* Stops a postmaster by PID: fast, then immediate, then kill. */
static void stop_by_pid(pid_t pid)
{
    if (pid <= 0 || !proc_is_alive(pid))
        return;
    signal_tree(pid, SIGCONT);
    kill(pid, SIGINT);
    if (wait_gone(pid, 10000))
        return;
    kill(pid, SIGQUIT);
    if (wait_gone(pid, 5000))
        return;
    signal_tree(pid, SIGKILL);
    wait_gone(pid, 5000);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reaps sg-pg-* dirs in base whose owning test process is gone. */
static void reap_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "sg-pg-", 6) != 0)
            continue;
        char dir[PGH_PATH], path[PGH_PATH + 32];
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        snprintf(path, sizeof(path), "%s/owner.pid", dir);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long owner = -1;
        int ok = fscanf(f, "%ld", &owner);
        fclose(f);
        if (ok != 1 || owner <= 0 || proc_is_alive((pid_t)owner))
            continue;
        char datadir[PGH_PATH + 8];
        snprintf(datadir, sizeof(datadir), "%s/data", dir);
        pid_t pm = read_pidfile(datadir);
        if (pm > 0) {
            /* Only a postgres started on this very data dir. */
            char cmd[4096];
            snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pm);
            FILE *c = fopen(path, "r");
            size_t n = c ? fread(cmd, 1, sizeof(cmd) - 1, c) : 0;
            if (c)
                fclose(c);
            for (size_t i = 0; i < n; i++)
                if (cmd[i] == 0)
                    cmd[i] = ' ';
            cmd[n] = 0;
            if (strstr(cmd, "postgres") && strstr(cmd, datadir))
                stop_by_pid(pm);
        }
        rm_rf(dir);
    }
    closedir(d);
}

static const char watchdog_script[] =
    "while read -r _; do :; done\n" /* stdin is the pipe: returns at EOF */
    "d=\"$1\"\n"
    "[ -d \"$d\" ] || exit 0\n"
    "p=$(head -n1 \"$d/data/postmaster.pid\" 2>/dev/null)\n"
    /* children of $p, from /proc (each postgres child is its own session) */
    "kids() { for f in /proc/[0-9]*/stat; do\n"
    "  read -r l < \"$f\" 2>/dev/null || continue\n"
    "  set -- ${l##*) }\n"
    "  if [ \"$2\" = \"$p\" ]; then x=${f#/proc/}; echo ${x%/stat}; fi\n"
    "done; }\n"
    "if [ -n \"$p\" ] && grep -q \"$d/data\" /proc/\"$p\"/cmdline 2>/dev/null; then\n"
    "  for k in $(kids); do kill -s CONT \"$k\" 2>/dev/null; done\n"
    "  kill -s CONT \"$p\" 2>/dev/null\n"
    "  kill -s QUIT \"$p\" 2>/dev/null\n"
    "  i=0\n"
    "  while [ $i -lt 100 ] && [ -d /proc/\"$p\" ] && ! grep -q ') [ZX]' /proc/\"$p\"/stat 2>/dev/null; do\n"
    "    sleep 0.05; i=$((i+1))\n"
    "  done\n"
    "  if [ $i -ge 100 ]; then for k in $(kids); do kill -s KILL \"$k\" 2>/dev/null; done; kill -s KILL \"$p\"; fi\n"
    "fi\n"
    "rm -rf \"$d\"\n";

static int start_watchdog(sg_pg_harness_t *h)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        setsid(); /* survive a kill of the test's process group */
        int nul = open("/dev/null", O_RDWR);
        if (dup2(fds[0], 0) < 0 || nul < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
            _exit(126);
        syscall(SYS_close_range, 3u, ~0u, 0u);
        execl("/bin/sh", "sh", "-c", watchdog_script, "sg-pg-watchdog", h->dir, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    h->watchdog_pid = pid;
    h->watchdog_fd = fds[1];
    return 0;
}

/* ---- files, ports ------------------------------------------------------ */

static int write_file(sg_pg_harness_t *h, const char *path, const char *mode, const char *text)
{
    FILE *f = fopen(path, mode);
    if (!f) {
        pgh_err("open %s: %s", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    if (h->as_postgres && chown(path, h->pg_uid, h->pg_gid) != 0)
        return -1;
    return 0;
}

static int free_port(uint16_t *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    socklen_t len = sizeof(a);
    int rc = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        *out = ntohs(a.sin_port);
        rc = 0;
    }
    close(fd);
    return rc;
}

static int random_hex(char *out, size_t nbytes)
{
    unsigned char b[32];
    if (nbytes > sizeof(b))
        return -1;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, nbytes) != (ssize_t)nbytes) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    return 0;
}

/* ---- server control ---------------------------------------------------- */

static int pg_ctl_start(sg_pg_harness_t *h)
{
    char ctl[PGH_PATH + 16], opt[64];
    snprintf(ctl, sizeof(ctl), "%s/pg_ctl", h->bindir);
    snprintf(opt, sizeof(opt), "-p %u", (unsigned)h->port);
    char *const argv[] = {ctl, "-D", h->datadir, "-l", h->logpath, "-w", "-t", "30", "-o", opt, "start", NULL};
    if (run_cmd(h, argv) != 0)
        return -1;
    h->is_running = true;
    h->is_paused = false;
    return 0;
}

static void set_conninfo(sg_pg_harness_t *h)
{
    snprintf(h->conninfo, sizeof(h->conninfo),
             "host=127.0.0.1 port=%u dbname=swarm user=postgres password=%s connect_timeout=10", (unsigned)h->port,
             h->password);
    snprintf(h->conninfo_unix, sizeof(h->conninfo_unix), "host=%s port=%u dbname=swarm user=postgres", h->dir,
             (unsigned)h->port);
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *connect_unix(sg_pg_harness_t *h, const char *dbname)
{
    char ci[1200];
    snprintf(ci, sizeof(ci), "host=%s port=%u dbname=%s user=postgres connect_timeout=10", h->dir, (unsigned)h->port,
             dbname);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        pgh_err("connect %s: %s", ci, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    return c;
}

static int exec_on(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) ? 0 : -1;
    if (rc)
        pgh_err("SQL failed: %s", PQerrorMessage(c));
    PQclear(r);
    return rc;
}

sg_pg_harness_t *sg_pgh_start(void)
{
    sg_pg_harness_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->watchdog_fd = -1;
    h->watchdog_pid = -1;
    if (find_bindir(h->bindir, sizeof(h->bindir)) != 0)
        goto fail_free;
    h->as_postgres = geteuid() == 0;
    if (h->as_postgres) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            pgh_err("running as root but there is no `postgres` user to run the server as");
            goto fail_free;
        }
        h->pg_uid = pw->pw_uid;
        h->pg_gid = pw->pw_gid;
    }
    /* As root the server runs as postgres, which must reach the dir: /tmp. */
    const char *base = h->as_postgres ? NULL : getenv("TMPDIR");
    if (!base || !*base || strlen(base) > 60)
        base = "/tmp";
    reap_stale(base);
    snprintf(h->dir, sizeof(h->dir), "%s/sg-pg-XXXXXX", base);
    if (!mkdtemp(h->dir)) {
        pgh_err("mkdtemp %s: %s", h->dir, strerror(errno));
        goto fail_free;
    }
    snprintf(h->datadir, sizeof(h->datadir), "%s/data", h->dir);
    snprintf(h->logpath, sizeof(h->logpath), "%s/server.log", h->dir);
    snprintf(h->cmdlog, sizeof(h->cmdlog), "%s/cmd.log", h->dir);
    if (h->as_postgres && chown(h->dir, h->pg_uid, h->pg_gid) != 0) {
        pgh_err("chown %s: %s", h->dir, strerror(errno));
        goto fail_rm;
    }
    char path[PGH_PATH + 32], text[1024];
    snprintf(path, sizeof(path), "%s/owner.pid", h->dir);
    snprintf(text, sizeof(text), "%d\n", (int)getpid());
    if (write_file(h, path, "w", text) != 0 || start_watchdog(h) != 0)
        goto fail_rm;

    memcpy(h->password, "sg", 2);
    if (random_hex(h->password + 2, 12) != 0)
        goto fail_rm;
    char pwfile[PGH_PATH + 16];
    snprintf(pwfile, sizeof(pwfile), "%s/pwfile", h->dir);
    snprintf(text, sizeof(text), "%s\n", h->password);
    if (write_file(h, pwfile, "w", text) != 0 || write_file(h, h->logpath, "a", "") != 0)
        goto fail_rm;

    char initdb[PGH_PATH + 16], pwopt[PGH_PATH + 32];
    snprintf(initdb, sizeof(initdb), "%s/initdb", h->bindir);
    snprintf(pwopt, sizeof(pwopt), "--pwfile=%s", pwfile);
    char *const iargv[] = {initdb,
                           "-D",
                           h->datadir,
                           "-U",
                           "postgres",
                           pwopt,
                           "--auth-local=trust",
                           "--auth-host=scram-sha-256",
                           "--locale=C",
                           "-E",
                           "UTF8",
                           "--no-sync",
                           "--no-instructions",
                           NULL};
    if (run_cmd(h, iargv) != 0)
        goto fail_rm;
    snprintf(path, sizeof(path), "%s/postgresql.conf", h->datadir);
    snprintf(text, sizeof(text),
             "\n# sg pg_harness\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
             "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n"
             "shared_buffers = 16MB\nlog_line_prefix = '%%m [%%p] '\n",
             h->dir);
    if (write_file(h, path, "a", text) != 0)
        goto fail_rm;

    int tries = 0;
    for (;;) {
        if (free_port(&h->port) != 0)
            goto fail_rm;
        if (pg_ctl_start(h) == 0)
            break;
        if (++tries >= PGH_START_TRIES)
            goto fail_rm;
    }
    set_conninfo(h);
    PGconn *c = connect_unix(h, "postgres");
    if (!c)
        goto fail_stop;
    int rc = exec_on(c, "CREATE DATABASE swarm");
    PQfinish(c);
    if (rc != 0)
        goto fail_stop;
    return h;

fail_stop:
    stop_by_pid(sg_pgh_pid(h));
fail_rm:
    rm_rf(h->dir);
    if (h->watchdog_fd >= 0) {
        close(h->watchdog_fd);
        waitpid(h->watchdog_pid, NULL, 0);
    }
fail_free:
    free(h);
    return NULL;
}

sg_pg_harness_t *sg_pgh_start_reference(void)
{
    sg_pg_harness_t *h = sg_pgh_start();
    if (!h)
        return NULL;
    if (sg_pgh_exec_file(h, SG_SOURCE_DIR "/config/sql/schema.sql") != 0 ||
        sg_pgh_exec_file(h, SG_SOURCE_DIR "/config/sql/sample_data.sql") != 0) {
        sg_pgh_destroy(h);
        return NULL;
    }
    return h;
}

void sg_pgh_destroy(sg_pg_harness_t *h)
{
    if (!h)
        return;
    stop_by_pid(read_pidfile(h->datadir));
    rm_rf(h->dir);
    if (h->watchdog_fd >= 0) {
        close(h->watchdog_fd); /* EOF: the watchdog finds nothing left and exits */
        while (waitpid(h->watchdog_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    free(h);
}

const char *sg_pgh_conninfo(const sg_pg_harness_t *h)
{
    return h->conninfo;
}

const char *sg_pgh_conninfo_unix(const sg_pg_harness_t *h)
{
    return h->conninfo_unix;
}

const char *sg_pgh_password(const sg_pg_harness_t *h)
{
    return h->password;
}

const char *sg_pgh_dir(const sg_pg_harness_t *h)
{
    return h->dir;
}

uint16_t sg_pgh_port(const sg_pg_harness_t *h)
{
    return h->port;
}

pid_t sg_pgh_pid(const sg_pg_harness_t *h)
{
    pid_t pid = read_pidfile(h->datadir);
    return (pid > 0 && proc_is_alive(pid)) ? pid : -1;
}

int sg_pgh_exec(sg_pg_harness_t *h, const char *sql)
{
    PGconn *c = connect_unix(h, "swarm");
    if (!c)
        return -1;
    int rc = exec_on(c, sql);
    PQfinish(c);
    return rc;
}

int sg_pgh_exec_file(sg_pg_harness_t *h, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        pgh_err("open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    buf[len] = 0;
    int rc = sg_pgh_exec(h, buf);
    if (rc)
        pgh_err("while loading %s", path);
    free(buf);
    return rc;
}

int sg_pgh_query_text(sg_pg_harness_t *h, const char *sql, char *out, size_t outlen)
{
    PGconn *c = connect_unix(h, "swarm");
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) {
        snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    } else {
        pgh_err("query failed or no row: %s (%s)", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

int sg_pgh_query_i64(sg_pg_harness_t *h, const char *sql, int64_t *out)
{
    char buf[64];
    if (sg_pgh_query_text(h, sql, buf, sizeof(buf)) != 0)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end)
        return -1;
    *out = v;
    return 0;
}

int sg_pgh_stop(sg_pg_harness_t *h)
{
    if (h->is_paused)
        sg_pgh_resume(h);
    char ctl[PGH_PATH + 16];
    snprintf(ctl, sizeof(ctl), "%s/pg_ctl", h->bindir);
    char *const argv[] = {ctl, "-D", h->datadir, "-m", "fast", "-w", "-t", "30", "stop", NULL};
    int rc = run_cmd(h, argv);
    if (rc == 0)
        h->is_running = false;
    return rc;
}

int sg_pgh_restart(sg_pg_harness_t *h)
{
    if (sg_pgh_pid(h) > 0 && sg_pgh_stop(h) != 0)
        return -1;
    return pg_ctl_start(h);
}

int sg_pgh_pause(sg_pg_harness_t *h)
{
    pid_t pid = sg_pgh_pid(h);
    if (pid <= 0)
        return -1;
    signal_tree(pid, SIGSTOP);
    h->is_paused = true;
    return 0;
}

int sg_pgh_resume(sg_pg_harness_t *h)
{
    pid_t pid = sg_pgh_pid(h);
    if (pid <= 0)
        return -1;
    signal_tree(pid, SIGCONT);
    h->is_paused = false;
    return 0;
}
