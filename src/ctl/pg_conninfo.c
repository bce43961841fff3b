/* Postgres conninfo: masking passwords for messages (and the poller's log
 * line, sg__pg_log), and the libpq keyword/value arrays the poller connects
 * with (see docs/postgres.md). */
#include "ctl/pg_int.h"

#include <libpq-fe.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg__pg_mask_secret(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 3) /* too short to mask without mangling the text */
        return;
    char *p;
    while ((p = strstr(s, secret)) != NULL) {
        memcpy(p, "****", 4);
        memmove(p + 4, p + n, strlen(p + n) + 1);
    }
}

size_t sg_pg_mask_conninfo(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
#define PUT(c)                                                                                                         \
    do {                                                                                                               \
        if (o + 1 < outlen)                                                                                            \
            out[o++] = (c);                                                                                            \
    } while (0)
#define PUTS(s)                                                                                                        \
    do {                                                                                                               \
        for (const char *_s = (s); *_s; _s++)                                                                          \
            PUT(*_s);                                                                                                  \
    } while (0)
    if (!outlen)
        return 0;
    if (!in)
        in = "";
    if (strncmp(in, "postgresql://", 13) == 0 || strncmp(in, "postgres://", 11) == 0) {
        const char *auth = strstr(in, "://") + 3;
        const char *auth_end = auth + strcspn(auth, "/?");
        const char *at = NULL;
        for (const char *c = auth; c < auth_end; c++)
            if (*c == '@')
                at = c;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        const char *p = in;
        for (; *p && p < auth_end; p++) {
            if (colon && p == colon + 1) {
                PUTS("****");
                p = at - 1;
                continue;
            }
            PUT(*p);
        }
        /* path, then ?key=value&... */
        while (*p) {
            PUT(*p);
            if (*p == '?' || *p == '&') {
                p++;
                size_t klen = strcspn(p, "=&");
                bool is_pw = klen == 8 && strncmp(p, "password", 8) == 0;
                for (size_t i = 0; i < klen; i++)
                    PUT(p[i]);
                p += klen;
                if (*p == '=') {
                    PUT('=');
                    p++;
                    size_t vlen = strcspn(p, "&");
                    if (is_pw)
                        PUTS("****");
                    else
                        for (size_t i = 0; i < vlen; i++)
                            PUT(p[i]);
                    p += vlen;
                }
                continue;
            }
            p++;
        }
    } else {
        const char *p = in;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                PUT(*p);
                p++;
            }
            if (!*p)
                break;
            const char *k = p;
            while (*p && *p != '=' && *p != ' ' && *p != '\t' && *p != '\n')
                p++;
            size_t klen = (size_t)(p - k);
            bool is_pw = klen == 8 && strncmp(k, "password", 8) == 0;
            for (size_t i = 0; i < klen; i++)
                PUT(k[i]);
            while (*p == ' ' || *p == '\t') {
                PUT(*p);
                p++;
            }
            if (*p != '=')
                continue;
            {
                PUT(*p);
                p++;
            }
            while (*p == ' ' || *p == '\t') {
                PUT(*p);
                p++;
            }
            const char *v = p;
            if (*p == '\'') {
                p++;
                while (*p && *p != '\'') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
                if (*p == '\'')
                    p++;
            } else {
                while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
            }
            if (is_pw)
                PUTS("****");
            else
                for (const char *c = v; c < p; c++)
                    PUT(*c);
        }
    }
    out[o] = 0;
    return o;
#undef PUT
#undef PUTS
}

void sg__pg_log(sg_pg_t *pg, sg_log_level_t level, const char *fmt, ...)
{
    char msg[PG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* libpq messages end in newlines and may span lines: one line only. */
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = 0;
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    sg__pg_mask_secret(msg, pg->password);
    if (level >= SG_LOG_WARN)
        snprintf(pg->last_error, sizeof(pg->last_error), "%s", msg);
    if (pg->log_cb)
        pg->log_cb(pg->log_arg, level, msg);
}

int sg__pg_fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* libpq's parse errors quote the offending token, which may be a password
 * ("missing = after ..."): keep only quoted option names. */
static void redact_quoted(char *m)
{
    char *p = m;
    while ((p = strchr(p, '"')) != NULL) {
        char *end = strchr(p + 1, '"');
        if (!end)
            break;
        bool is_option = p - m >= 7 && !strncmp(p - 7, "option ", 7);
        if (!is_option && end - p - 1 > 0) {
            memcpy(p + 1, "...", 3 <= end - p - 1 ? 3 : (size_t)(end - p - 1));
            if (end - p - 1 > 3)
                memmove(p + 4, end, strlen(end) + 1);
            end = p + 1 + SG_MIN(3, (int)(end - p - 1));
        }
        p = end + 1;
    }
}

static bool is_ip_literal(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Builds the libpq keyword/value arrays: the user's conninfo plus our
 * session options, with room for hostaddr. */
int sg__pg_build_params(sg_pg_t *pg, const char *conninfo, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        char m[PG_MSG];
        snprintf(m, sizeof(m), "%s", perr ? perr : "out of memory");
        PQfreemem(perr);
        redact_quoted(m);
        size_t n = strlen(m);
        while (n && m[n - 1] == '\n')
            m[--n] = 0;
        return sg__pg_fail_msg(err, errlen, "postgres.conninfo: %s", m);
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        n++;
    int rc = -1;
    pg->kw = sg_arena_zalloc(&pg->arena, (n + 6) * sizeof(char *));
    pg->vals = sg_arena_zalloc(&pg->arena, (n + 6) * sizeof(char *));
    if (!pg->kw || !pg->vals)
        goto out;
    const char *host = NULL, *user_opts = NULL;
    bool has_app = false, has_gss = false;
    pg->host_idx = pg->hostaddr_idx = -1;
    size_t k = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "options")) {
            user_opts = o->val;
            continue;
        }
        const char *key = sg_arena_strdup(&pg->arena, o->keyword);
        const char *val = sg_arena_strdup(&pg->arena, o->val);
        if (!key || !val)
            goto out;
        if (!strcmp(key, "host")) {
            host = val;
            pg->host_idx = (int)k;
        } else if (!strcmp(key, "hostaddr")) {
            pg->hostaddr_idx = (int)k;
        } else if (!strcmp(key, "password")) {
            pg->password = val;
        } else if (!strcmp(key, "application_name")) {
            has_app = true;
        } else if (!strcmp(key, "gssencmode")) {
            has_gss = true;
        }
        pg->kw[k] = key;
        pg->vals[k++] = val;
    }
    /* libpq would fill a missing host from PGHOST and resolve it blocking. */
    if (pg->host_idx < 0 && pg->hostaddr_idx < 0 && getenv("PGHOST") && *getenv("PGHOST")) {
        host = sg_arena_strdup(&pg->arena, getenv("PGHOST"));
        if (!host)
            goto out;
        pg->host_idx = (int)k;
        pg->kw[k] = "host";
        pg->vals[k++] = host;
    }
    if (pg->hostaddr_idx < 0 && !getenv("PGHOSTADDR") && host) {
        bool any_name = false, several = strchr(host, ',') != NULL;
        char *copy = sg_arena_strdup(&pg->arena, host);
        if (!copy)
            goto out;
        for (char *save = NULL, *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
            if (h[0] != '/' && h[0] != '@' && h[0] && !is_ip_literal(h))
                any_name = true;
        if (any_name && several) {
            rc = sg__pg_fail_msg(err, errlen,
                                 "postgres.conninfo: a host list must use IP addresses or socket paths "
                                 "(names are resolved only for a single host)");
            goto out;
        }
        if (any_name) {
            pg->needs_resolve = true;
            pg->resolve_host = host;
            pg->hostaddr_idx = (int)k;
            pg->kw[k] = "hostaddr";
            pg->vals[k++] = NULL; /* set after the lookup */
        }
    }
    char *o = sg_arena_alloc(&pg->arena, 256 + (user_opts ? strlen(user_opts) : 0));
    if (!o)
        goto out;
    sprintf(o, "%s%s-c default_transaction_read_only=on -c statement_timeout=%llu", user_opts ? user_opts : "",
            user_opts ? " " : "", (unsigned long long)pg->stmt_timeout_ms);
    pg->kw[k] = "options";
    pg->vals[k++] = o;
    if (!has_app) {
        pg->kw[k] = "application_name";
        pg->vals[k++] = "swarmgate";
    }
    if (!has_gss) { /* GSS probing can block on Kerberos lookups */
        pg->kw[k] = "gssencmode";
        pg->vals[k++] = "disable";
    }
    pg->n_kw = k;
    if (pg->needs_resolve) {
        /* hostaddr must come last among set values: move it to the end so a
         * NULL value until resolution does not cut the array short. */
        const char *hk = pg->kw[pg->hostaddr_idx];
        for (size_t i = (size_t)pg->hostaddr_idx; i + 1 < k; i++) {
            pg->kw[i] = pg->kw[i + 1];
            pg->vals[i] = pg->vals[i + 1];
        }
        pg->kw[k - 1] = hk;
        pg->vals[k - 1] = NULL;
        if (pg->host_idx > pg->hostaddr_idx)
            pg->host_idx--;
        pg->hostaddr_idx = (int)k - 1;
    }
    rc = 0;
out:
    PQconninfoFree(opts);
    if (rc && err && !*err)
        sg__pg_fail_msg(err, errlen, "postgres: out of memory");
    return rc;
}
