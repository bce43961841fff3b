/* Shared value parsers of the config module: durations, sizes, host:port,
 * ${ENV} expansion. Pure functions, no globals besides getenv(). */
#include "sg/config.h"

#include "config/config_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads a run of decimal digits into *out; rejects an empty run and
 * anything above UINT64_MAX. Returns the number of digits or 0. */
static size_t parse_u64_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

static int mul_checked(uint64_t v, uint64_t m, uint64_t *out)
{
    if (m && v > UINT64_MAX / m)
        return -1;
    *out = v * m;
    return 0;
}

int sg_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t v;
    if (!s)
        return -1;
    size_t n = parse_u64_digits(s, &v);
    if (n == 0)
        return -1;
    const char *u = s + n;
    uint64_t mult;
    if (*u == '\0' || strcmp(u, "s") == 0)
        mult = 1000; /* a bare number is seconds */
    else if (strcmp(u, "ms") == 0)
        mult = 1;
    else if (strcmp(u, "m") == 0)
        mult = 60ull * 1000;
    else if (strcmp(u, "h") == 0)
        mult = 3600ull * 1000;
    else if (strcmp(u, "d") == 0)
        mult = 86400ull * 1000;
    else
        return -1;
    return mul_checked(v, mult, out_ms);
}

int sg_parse_size(const char *s, uint64_t *out_bytes)
{
    uint64_t v;
    if (!s)
        return -1;
    size_t n = parse_u64_digits(s, &v);
    if (n == 0)
        return -1;
    const char *u = s + n;
    uint64_t mult;
    switch (*u) {
    case '\0':
        mult = 1;
        break;
    case 'k':
    case 'K':
        mult = 1ull << 10;
        break;
    case 'm':
    case 'M':
        mult = 1ull << 20;
        break;
    case 'g':
    case 'G':
        mult = 1ull << 30;
        break;
    default:
        return -1;
    }
    if (*u && u[1] != '\0')
        return -1;
    return mul_checked(v, mult, out_bytes);
}

/* RFC 1123 host names, plus '_' (container and service names use it). */
bool sg__is_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok || (label == 0 && ch == '-') || ++label > 63)
            return false;
    }
    return s[len - 1] != '-';
}

static bool all_digits_and_dots(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return false;
    return true;
}

int sg__parse_hostport(sg_arena_t *a, const char *s, unsigned flags, sg_hostport_t *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof(*out));
    if (!s || !*s) {
        *why = "empty address";
        return -1;
    }
    const char *host, *colon;
    size_t hlen;
    bool v6 = false;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after an IPv6 address";
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1;
        if (*colon != ':') {
            *why = "missing :port after ']'";
            return -1;
        }
        v6 = true;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing :port";
            return -1;
        }
        if (memchr(s, ':', (size_t)(colon - s))) {
            *why = "an IPv6 address must be written in brackets, as [::1]:8080";
            return -1;
        }
        host = s;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0) {
        *why = "missing host before :port";
        return -1;
    }
    uint64_t port;
    size_t nd = parse_u64_digits(colon + 1, &port);
    if (nd == 0 || colon[1 + nd] != '\0' || nd > 5 || port > 65535) {
        *why = "port must be a number from 1 to 65535";
        return -1;
    }
    if (port == 0 && !(flags & SG__HOSTPORT_F_PORT0)) {
        *why = "port must be a number from 1 to 65535";
        return -1;
    }
    char hbuf[256];
    if (hlen >= sizeof(hbuf)) {
        *why = "host name too long";
        return -1;
    }
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    unsigned char bin[16];
    if (v6) {
        if (inet_pton(AF_INET6, hbuf, bin) != 1) {
            *why = "invalid IPv6 address in brackets";
            return -1;
        }
        out->is_ipv6_literal = true;
        out->is_ip_literal = true;
    } else if (inet_pton(AF_INET, hbuf, bin) == 1) {
        out->is_ip_literal = true;
    } else if (all_digits_and_dots(hbuf, hlen)) {
        *why = "invalid IPv4 address";
        return -1;
    } else if (!sg__is_hostname(hbuf, hlen)) {
        *why = "invalid host name";
        return -1;
    }
    if ((flags & SG__HOSTPORT_F_IP_ONLY) && !out->is_ip_literal) {
        *why = "expected an IP address (such as 0.0.0.0, 127.0.0.1 or [::]), not a host name";
        return -1;
    }
    out->host = sg_arena_strdup(a, hbuf);
    if (!out->host) {
        *why = "out of memory";
        return -1;
    }
    out->port = (uint16_t)port;
    return 0;
}

int sg_parse_hostport(sg_arena_t *a, const char *s, sg_hostport_t *out)
{
    return sg__parse_hostport(a, s, 0, out, NULL);
}

static bool is_var_start(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static bool is_var_char(char ch)
{
    return is_var_start(ch) || (ch >= '0' && ch <= '9');
}

/* Grows the output buffer of sg_expand_env (malloc'ed scratch). */
typedef struct xbuf {
    char *p;
    size_t len, cap;
} xbuf_t;

static int xbuf_put(xbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

char *sg_expand_env(sg_arena_t *a, const char *s, char *err, size_t errlen)
{
    xbuf_t b = {0};
    const char *p = s;
    char *res = NULL;
    if (xbuf_put(&b, "", 0) < 0)
        goto oom;
    while (*p) {
        const char *d = strchr(p, '$');
        if (!d) {
            if (xbuf_put(&b, p, strlen(p)) < 0)
                goto oom;
            break;
        }
        if (xbuf_put(&b, p, (size_t)(d - p)) < 0)
            goto oom;
        if (d[1] == '$' && d[2] == '{') { /* "$${" is a literal "${" */
            if (xbuf_put(&b, "${", 2) < 0)
                goto oom;
            p = d + 3;
            continue;
        }
        if (d[1] != '{') { /* a lone '$' is literal */
            if (xbuf_put(&b, "$", 1) < 0)
                goto oom;
            p = d + 1;
            continue;
        }
        const char *name = d + 2;
        const char *q = name;
        while (is_var_char(*q))
            q++;
        size_t nlen = (size_t)(q - name);
        const char *def = NULL;
        size_t dlen = 0;
        if (nlen == 0 || !is_var_start(*name)) {
            if (*q == '}' && nlen == 0)
                snprintf(err, errlen, "empty variable name in \"${}\"");
            else
                snprintf(err, errlen, "invalid variable name after \"${\" (expected letters, digits and _)");
            goto fail;
        }
        if (q[0] == ':' && q[1] == '-') {
            def = q + 2;
            const char *e = def;
            while (*e && *e != '}' && *e != '{')
                e++;
            if (*e == '{') {
                snprintf(err, errlen, "nested braces in \"${%.*s:-...}\" are not supported", (int)nlen, name);
                goto fail;
            }
            if (*e != '}') {
                snprintf(err, errlen, "unterminated \"${%.*s\" (missing '}')", (int)nlen, name);
                goto fail;
            }
            dlen = (size_t)(e - def);
            q = e;
        } else if (*q == '{') {
            snprintf(err, errlen, "nested braces in \"${%.*s...}\" are not supported", (int)nlen, name);
            goto fail;
        } else if (*q != '}') {
            if (*q == '\0')
                snprintf(err, errlen, "unterminated \"${%.*s\" (missing '}')", (int)nlen, name);
            else
                snprintf(err, errlen, "unsupported syntax in \"${%.*s%c...\" (use ${VAR} or ${VAR:-default})",
                         (int)nlen, name, *q);
            goto fail;
        }
        char vname[128];
        if (nlen >= sizeof(vname)) {
            snprintf(err, errlen, "variable name too long");
            goto fail;
        }
        memcpy(vname, name, nlen);
        vname[nlen] = '\0';
        const char *val = getenv(vname);
        if (val && (*val || !def)) {
            if (xbuf_put(&b, val, strlen(val)) < 0)
                goto oom;
        } else if (def) {
            /* ${VAR:-default}: the default also replaces an empty value (POSIX sh). */
            if (xbuf_put(&b, def, dlen) < 0)
                goto oom;
        } else {
            snprintf(err, errlen, "environment variable %s is not set (write ${%s:-default} to give a default)", vname,
                     vname);
            goto fail;
        }
        p = q + 1;
    }
    res = sg_arena_strndup(a, b.p, b.len);
    if (!res)
        goto oom;
    free(b.p);
    return res;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(b.p);
    return NULL;
}

static size_t path_append(char *path, size_t cap, size_t *len, int n)
{
    size_t old = *len;
    if (n > 0)
        *len = SG_MIN(*len + (size_t)n, cap - 1);
    return old;
}

size_t sg__path_push_key(char *path, size_t cap, size_t *len, const char *key)
{
    return path_append(path, cap, len, snprintf(path + *len, cap - *len, "%s%s", *len ? "." : "", key));
}

size_t sg__path_push_idx(char *path, size_t cap, size_t *len, size_t i)
{
    return path_append(path, cap, len, snprintf(path + *len, cap - *len, "[%zu]", i));
}

void sg__path_pop(char *path, size_t *len, size_t old)
{
    *len = old;
    path[old] = '\0';
}
