#include "support/proc.h"

#include "support/clock.h"
#include "support/http_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

bool sg_proc_pools_off(void)
{
#ifdef SG_NO_POOLS
    return true;
#else
    const char *v = getenv("SG_POOLS");
    return v && strcmp(v, "off") == 0;
#endif
}

char *sg_proc_read_file(const char *path)
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

int sg_proc_write_file(const sg_proc_t *p, const char *name, const char *text, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", p->dir, name);
    FILE *f = fopen(out, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

int sg_proc_sanitizer_reports(const char *text)
{
    /* One marker per report: the first line of each kind. */
    static const char *const k_markers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                            "runtime error:", "WARNING: ThreadSanitizer"};
    int n = 0;
    for (size_t i = 0; i < sizeof(k_markers) / sizeof(k_markers[0]); i++)
        for (const char *q = strstr(text, k_markers[i]); q; q = strstr(q + 1, k_markers[i]))
            n++;
    return n;
}

/* The child's stderr goes to a file the test may never read: a report in
 * it is written where ctest looks (test/CMakeLists.txt). */
static void forward_sanitizer_reports(const char *what, const char *text)
{
    if (sg_proc_sanitizer_reports(text) > 0)
        fprintf(stderr, "sgtest: %s: sanitizer report from the swarmgate child:\n%s\n", what, text);
}

static bool read_ports(sg_proc_t *p)
{
    FILE *f = fopen(p->ports_path, "r");
    if (!f)
        return false;
    p->n_listeners = 0;
    char line[256];
    while (fgets(line, sizeof(line), f) && p->n_listeners < SG_PROC_MAX_LISTENERS) {
        if (sscanf(line, "%63s %79s", p->names[p->n_listeners], p->addrs[p->n_listeners]) == 2)
            p->n_listeners++;
    }
    fclose(f);
    return p->n_listeners > 0;
}

bool sg_proc_reread_ports(sg_proc_t *p)
{
    return read_ports(p);
}

static bool exited(sg_proc_t *p, int flags)
{
    int st;
    pid_t r = waitpid(p->pid, &st, flags);
    if (r == p->pid) {
        p->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        p->pid = -1;
        return true;
    }
    return false;
}

int sg_proc_start_env(sg_proc_t *p, const char *yaml, const char *const *env, int timeout_ms)
{
    memset(p, 0, sizeof(*p));
    p->pid = -1;
    snprintf(p->dir, sizeof(p->dir), "/tmp/sgtest.XXXXXX");
    if (!mkdtemp(p->dir))
        return -1;
    snprintf(p->cfg_path, sizeof(p->cfg_path), "%s/swarmgate.yaml", p->dir);
    snprintf(p->ports_path, sizeof(p->ports_path), "%s/ports", p->dir);
    snprintf(p->stderr_path, sizeof(p->stderr_path), "%s/stderr", p->dir);
    snprintf(p->stdout_path, sizeof(p->stdout_path), "%s/stdout", p->dir);
    FILE *f = fopen(p->cfg_path, "w");
    if (!f)
        return -1;
    fputs(yaml, f);
    fclose(f);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* A test killed by its timeout skips .fini: take the gateway with it
         * instead of leaving an orphan that holds the runner's pipes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int efd = open(p->stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int ofd = open(p->stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (efd >= 0)
            dup2(efd, 2);
        if (ofd >= 0)
            dup2(ofd, 1);
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)(uintptr_t)*e);
        /* SG_TEST_BINARY: another build of the binary (sgchurn runs one
         * without sanitizers from the ASan test tree). */
        const char *bin = getenv("SG_TEST_BINARY");
        if (!bin || !*bin)
            bin = SG_BINARY;
        execl(bin, bin, "--config", p->cfg_path, "--ports-file", p->ports_path, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    long long deadline = sgt_now_ms() + timeout_ms;
    while (sgt_now_ms() < deadline) {
        if (exited(p, WNOHANG))
            return -1;
        if (read_ports(p)) {
            hc_conn_t c;
            if (hc_connect(&c, p->addrs[0], 200) == 0) {
                hc_close(&c);
                return 0;
            }
        }
        sgt_nap_ms(10);
    }
    return -1;
}

int sg_proc_start(sg_proc_t *p, const char *yaml, int timeout_ms)
{
    return sg_proc_start_env(p, yaml, NULL, timeout_ms);
}

int sg_proc_run(const char *const *args, char *out, size_t cap, int timeout_ms)
{
    char path[] = "/tmp/sgtest.run.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[32];
        int n = 0;
        argv[n++] = SG_BINARY;
        for (const char *const *a = args; *a && n < 31; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        execv(SG_BINARY, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fd);
    long long deadline = sgt_now_ms() + timeout_ms;
    int st = 0, code = -1;
    while (sgt_now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        sgt_nap_ms(10);
    }
    if (code < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    char *s = sg_proc_read_file(path);
    forward_sanitizer_reports(args[0] ? args[0] : "run", s);
    snprintf(out, cap, "%s", s);
    free(s);
    unlink(path);
    return code;
}

const char *sg_proc_addr(const sg_proc_t *p, const char *listener)
{
    for (int i = 0; i < p->n_listeners; i++)
        if (!strcmp(p->names[i], listener))
            return p->addrs[i];
    return NULL;
}

int sg_proc_signal(sg_proc_t *p, int sig)
{
    return p->pid > 0 ? kill(p->pid, sig) : -1;
}

bool sg_proc_wait_exit(sg_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return true;
    long long deadline = sgt_now_ms() + timeout_ms;
    while (sgt_now_ms() < deadline) {
        if (exited(p, WNOHANG))
            return true;
        sgt_nap_ms(5);
    }
    return false;
}

int sg_proc_stop(sg_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return p->exit_status;
    kill(p->pid, SIGTERM);
    if (!sg_proc_wait_exit(p, timeout_ms)) {
        kill(p->pid, SIGKILL);
        exited(p, 0);
        p->exit_status = 137;
    }
    return p->exit_status;
}

char *sg_proc_stderr(const sg_proc_t *p)
{
    return sg_proc_read_file(p->stderr_path);
}

bool sg_proc_wait_stderr(const sg_proc_t *p, const char *needle, int count, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        char *s = sg_proc_stderr(p);
        int n = 0;
        for (char *q = strstr(s, needle); q; q = strstr(q + 1, needle))
            n++;
        free(s);
        if (n >= count)
            return true;
        sgt_nap_ms(10);
    } while (sgt_now_ms() < deadline);
    return false;
}

int sg_proc_count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

bool sg_proc_wait_fds(pid_t pid, int want, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    for (;;) {
        if (sg_proc_count_fds(pid) == want)
            return true;
        if (sgt_now_ms() >= deadline)
            return false;
        sgt_nap_ms(5);
    }
}

int sg_proc_stable_fds(pid_t pid, int timeout_ms)
{
    int last = sg_proc_count_fds(pid), same = 0;
    long long deadline = sgt_now_ms() + timeout_ms;
    while (same < 10 && sgt_now_ms() < deadline) {
        sgt_nap_ms(20); /* sampling interval */
        int n = sg_proc_count_fds(pid);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return same == 10 ? last : -1;
}

long sg_proc_status_kb(const sg_proc_t *p, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

void sg_proc_cleanup(sg_proc_t *p)
{
    if (p->pid > 0)
        sg_proc_stop(p, 3000);
    if (!p->dir[0])
        return;
    char *err = sg_proc_read_file(p->stderr_path);
    forward_sanitizer_reports(p->dir, err);
    free(err);
    DIR *d = opendir(p->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", p->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(p->dir);
    p->dir[0] = '\0';
}

int sg_proc_edit_config(const sg_proc_t *p, const char *from, const char *to)
{
    char *text = sg_proc_read_file(p->cfg_path);
    char *at = text ? strstr(text, from) : NULL;
    if (!at) {
        free(text);
        return -1;
    }
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.edit", p->cfg_path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f) {
        fwrite(text, 1, (size_t)(at - text), f);
        fputs(to, f);
        fputs(at + strlen(from), f);
        rc = fclose(f) == 0 ? rename(tmp, p->cfg_path) : -1;
    }
    free(text);
    return rc;
}

bool sg_proc_stdout_line(const sg_proc_t *p, const char *needle, char *line, size_t cap, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    for (;;) {
        char *s = sg_proc_read_file(p->stdout_path);
        char *hit = strstr(s, needle);
        if (hit) {
            char *b = hit;
            while (b > s && b[-1] != '\n')
                b--;
            char *e = strchr(hit, '\n');
            snprintf(line, cap, "%.*s", (int)(e ? e - b : (long)strlen(b)), b);
            free(s);
            return true;
        }
        free(s);
        if (sgt_now_ms() > deadline)
            return false;
        sgt_nap_ms(20);
    }
}
