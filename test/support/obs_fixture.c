#include "support/obs_fixture.h"

#include "support/clock.h"
#include "support/proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int obs_get(const char *addr, const char *path, const char *extra, hc_response_t *r, int timeout_ms)
{
    char req[4096];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n", path, extra ? extra : "");
    return hc_request(addr, req, r, timeout_ms);
}

bool obs_metric(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            char *end;
            *out = strtod(p + n + 1, &end); /* also reads +Inf and NaN */
            return end != p + n + 1;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

int obs_count_lines(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    int count = 0;
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            count++;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return count;
}

char *obs_scrape_text(const char *admin)
{
    hc_response_t r;
    if (obs_get(admin, "/metrics", NULL, &r, 5000) != HC_OK || r.status != 200) {
        hc_response_free(&r);
        return NULL;
    }
    char *text = strdup(r.body);
    hc_response_free(&r);
    return text;
}

double obs_sum_lines(const char *text, const char *prefix, int *n)
{
    size_t pl = strlen(prefix);
    double sum = 0;
    int count = 0;
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, prefix, pl) == 0) {
            /* name{labels} value: the labels end at the first '}' outside a
             * quoted value. */
            const char *q = p;
            bool quoted = false;
            while (*q && q != eol && (quoted || (*q != ' ' && *q != '}'))) {
                if (*q == '\\' && quoted && q[1])
                    q++;
                else if (*q == '"')
                    quoted = !quoted;
                q++;
            }
            if (*q == '}')
                q++;
            if (*q == ' ') {
                sum += strtod(q + 1, NULL);
                count++;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    if (n)
        *n = count;
    return sum;
}

bool obs_scrape_value(const char *admin, const char *series, double *out)
{
    hc_response_t r;
    if (obs_get(admin, "/metrics", NULL, &r, 3000) != HC_OK) {
        hc_response_free(&r);
        return false;
    }
    bool ok = r.status == 200 && obs_metric(r.body, series, out);
    hc_response_free(&r);
    return ok;
}

static bool wait_metric(const char *admin, const char *series, double v, bool eq, int timeout_ms, double *got)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    double x = -1;
    bool ok = false;
    do {
        if (obs_scrape_value(admin, series, &x) && (eq ? x == v : x >= v)) {
            ok = true;
            break;
        }
        sgt_nap_ms(20);
    } while (sgt_now_ms() < deadline);
    if (got)
        *got = x;
    return ok;
}

bool obs_wait_metric_ge(const char *admin, const char *series, double min, int timeout_ms, double *got)
{
    return wait_metric(admin, series, min, false, timeout_ms, got);
}

bool obs_wait_metric_eq(const char *admin, const char *series, double want, int timeout_ms, double *got)
{
    return wait_metric(admin, series, want, true, timeout_ms, got);
}

bool obs_wait_status(const char *addr, const char *path, int status, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        hc_response_t r;
        int e = obs_get(addr, path, NULL, &r, 1000);
        int st = r.status;
        hc_response_free(&r);
        if (e == HC_OK && st == status)
            return true;
        sgt_nap_ms(10);
    } while (sgt_now_ms() < deadline);
    return false;
}

char *obs_slurp(const char *path)
{
    return sg_proc_read_file(path);
}

char *obs_wait_line(const char *path, const char *needle, int timeout_ms)
{
    long long deadline = sgt_now_ms() + timeout_ms;
    do {
        char *s = obs_slurp(path);
        char *hit = strstr(s, needle);
        if (hit) {
            char *b = hit;
            while (b > s && b[-1] != '\n')
                b--;
            char *e = strchr(hit, '\n');
            char *line = e ? strndup(b, (size_t)(e - b)) : NULL; /* a line without its newline is not complete */
            free(s);
            if (line)
                return line;
        } else {
            free(s);
        }
        sgt_nap_ms(10);
    } while (sgt_now_ms() < deadline);
    return NULL;
}

bool obs_is_uuid_v4(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

void obs_uuid_hex(const char *uuid, char out[33])
{
    size_t n = 0;
    for (const char *p = uuid; *p && n < 32; p++)
        if (*p != '-')
            out[n++] = *p;
    out[n] = '\0';
}

unsigned obs_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

bool obs_mkdtemp(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/sgobs.XXXXXX");
    return mkdtemp(out) != NULL;
}

void obs_rmdir(const char *dir)
{
    if (!dir || !dir[0])
        return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            if (e->d_type == DT_DIR)
                obs_rmdir(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}
