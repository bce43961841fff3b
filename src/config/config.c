/* The config schema and its loader: walks the YAML tree (config_yaml.c)
 * against a table of keys (type, offsetof target, default, bounds), in the
 * spirit of Redis' src/config.c, then runs the semantic checks that need
 * several keys at once. Every error is "file:line:col: key.path: message".
 *
 * Defaults are written as text and go through the same parsers as values
 * from the file, so a default can never be something the file could not say. */
#include "sg/config.h"

#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERR_PATH_MAX 512
#define NAME_MAX_LEN 64
#define MAX_BUCKETS 64
#define MAX_WORKERS 256
#define DUR_MAX_MS (365ull * 86400 * 1000)

/* ------------------------------------------------------------------------ */
/* Loader context and error reporting                                        */

typedef struct loc {
    uint32_t line, col;
} loc_t;

typedef struct ctx {
    const char *file;
    sg_config_t *cfg;
    const sg__cnode_t *root;
    char *err; /* the first error (sg_config_load's one message) */
    size_t errlen;
    sg_config_errors_t *errs; /* every error, or NULL */
    size_t n_errs;            /* errors so far: a section with new ones skips its cross-key checks */
    char path[ERR_PATH_MAX];
    size_t plen;
} ctx_t;

static loc_t node_loc(const sg__cnode_t *n, loc_t fallback)
{
    if (!n)
        return fallback;
    loc_t l = {n->line, n->col};
    return l;
}

/* Records one finished message: the first goes to err as well. */
static void note(ctx_t *c, uint32_t line, uint32_t col, const char *text)
{
    if (c->n_errs++ == 0 && c->err != text)
        snprintf(c->err, c->errlen, "%s", text);
    sg_config_errors_t *e = c->errs;
    if (!e)
        return;
    e->n_total++;
    if (e->n < SG_CONFIG_MAX_ERRORS) {
        e->msg[e->n].line = line;
        e->msg[e->n].col = col;
        snprintf(e->msg[e->n].text, sizeof(e->msg[e->n].text), "%s", text);
        e->n++;
    }
}

static int fail(ctx_t *c, loc_t at, const char *fmt, ...) SG_PRINTF(3, 4);
static int fail(ctx_t *c, loc_t at, const char *fmt, ...)
{
    char msg[400], text[ERR_PATH_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint32_t line = at.line ? at.line : 1, col = at.col ? at.col : 1;
    snprintf(text, sizeof(text), "%s:%u:%u: %s: %s", c->file, line, col, c->plen ? c->path : "(root)", msg);
    note(c, line, col, text);
    return -1;
}

static size_t path_key(ctx_t *c, const char *key)
{
    return sg__path_push_key(c->path, sizeof(c->path), &c->plen, key);
}

static size_t path_idx(ctx_t *c, size_t i)
{
    return sg__path_push_idx(c->path, sizeof(c->path), &c->plen, i);
}

static void path_pop(ctx_t *c, size_t old)
{
    sg__path_pop(c->path, &c->plen, old);
}

static void path_set(ctx_t *c, const char *fmt, ...) SG_PRINTF(2, 3);
static void path_set(ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path, sizeof(c->path), fmt, ap);
    va_end(ap);
    c->plen = n < 0 ? 0 : SG_MIN((size_t)n, sizeof(c->path) - 1);
}

/* A value quoted for a message: printable ASCII only, cut at 60 bytes. */
static const char *quoted(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; s[i] && o + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i >= 60) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static const char *kind_name(const sg__cnode_t *n)
{
    if (sg__cnode_is_null(n))
        return "null";
    switch (n->kind) {
    case SG__CNODE_SEQ:
        return "a list";
    case SG__CNODE_MAP:
        return "a mapping";
    default:
        return "a string";
    }
}

static void fmt_dur(uint64_t ms, char *buf, size_t cap)
{
    static const struct {
        uint64_t ms;
        const char *u;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < SG_ARRAY_SIZE(units); i++)
        if (ms && ms % units[i].ms == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].u);
            return;
        }
    snprintf(buf, cap, "%llums", (unsigned long long)ms);
}

static void fmt_size(uint64_t b, char *buf, size_t cap)
{
    static const struct {
        unsigned shift;
        const char *u;
    } units[] = {{30, "g"}, {20, "m"}, {10, "k"}};
    for (size_t i = 0; i < SG_ARRAY_SIZE(units); i++)
        if (b && b % (1ull << units[i].shift) == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)(b >> units[i].shift), units[i].u);
            return;
        }
    snprintf(buf, cap, "%llu", (unsigned long long)b);
}

/* ------------------------------------------------------------------------ */
/* Schema                                                                    */

typedef enum ftype {
    FT_BOOL = 0,
    FT_U32,
    FT_INT,
    FT_DUR,
    FT_SIZE32,
    FT_SIZE64,
    FT_DOUBLE,
    FT_STR,
    FT_ADDR,
    FT_ADDRLIST,
    FT_ENUM,
    FT_STRLIST,
    FT_BUCKETS,
    FT_OBJ,
    FT_LIST,
    FT_MAP,
    FT_CUSTOM,
    FT__COUNT
} ftype_t;

#define F_REQ 0x01u      /* must be present and not null */
#define F_PORT0 0x02u    /* address may have port 0 */
#define F_IP_ONLY 0x04u  /* address must be an IP literal */
#define F_NONEMPTY 0x08u /* string or list must not be empty */
#define F_DOC_LIST 0x10u /* custom list: document its sub-keys as key[].x */

typedef struct field field_t;
typedef struct schema schema_t;

/* Returns NULL when s is fine, else what was expected. */
typedef const char *(*str_check_fn)(const char *s);
typedef int (*custom_fn)(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f);
/* Object hooks: init runs only when the mapping is present; done runs
 * always, with `n` NULL for an absent section (`at` locates it anyway). */
typedef int (*obj_hook_fn)(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx);

struct field {
    const char *key;
    ftype_t type;
    unsigned flags;
    size_t off;
    const char *def; /* default, as it would be written in the file */
    double min, max; /* bounds of numbers (ms for durations, bytes for sizes) */
    const schema_t *sub;
    const char *const *names; /* enum names indexed by value; NULL = not allowed */
    size_t n_names;
    str_check_fn check; /* strings and string-list items */
    custom_fn custom;
    size_t count_off;      /* lists: where the item count goes */
    const double *dbl_def; /* buckets default */
    size_t n_dbl_def;
};

struct schema {
    const field_t *fields;
    size_t n_fields;
    size_t elem_size; /* list and map items */
    obj_hook_fn init; /* after defaults, before keys */
    obj_hook_fn done; /* after keys: checks needing several keys */
    bool has_name;    /* items have a unique name at name_off */
    size_t name_off;
};

#define SCHEMA(f) (f), SG_ARRAY_SIZE(f)

/* ------------------------------------------------------------------------ */
/* String checks                                                             */

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
           ch == '.' || ch == ':' || ch == '/';
}

/* Names of listeners, upstreams and routes become metric label values. */
static const char *check_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return "expected a name of 1 to 64 characters";
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return "expected a name of letters, digits and _ - . : /";
    return NULL;
}

static const char *check_path(const char *s)
{
    if (s[0] != '/')
        return "expected a path starting with /";
    for (const char *p = s; *p; p++)
        if (*p == '?' || *p == '#' || (unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return "expected a path starting with / without spaces, '?' or '#'";
    return NULL;
}

/* Health-check paths may carry a query. */
static const char *check_request_path(const char *s)
{
    if (s[0] != '/')
        return "expected a path starting with /";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
            return "expected a path starting with / without spaces or '#'";
    return NULL;
}

static bool is_tchar(char ch)
{
    /* RFC 9110 5.6.2 token characters */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static const char *check_header_name(const char *s)
{
    if (!*s)
        return "expected an HTTP header name";
    for (const char *p = s; *p; p++)
        if (!is_tchar(*p))
            return "expected an HTTP header name (RFC 9110 token characters)";
    if (strcasecmp(s, "traceparent") == 0 || strcasecmp(s, "tracestate") == 0 || strcasecmp(s, "host") == 0 ||
        strcasecmp(s, "connection") == 0 || strcasecmp(s, "content-length") == 0 ||
        strcasecmp(s, "transfer-encoding") == 0)
        return "expected a header name other than Host, Connection, Content-Length, Transfer-Encoding, traceparent, "
               "tracestate";
    return NULL;
}

bool sg_agent_name_ok(const char *s, size_t len)
{
    if (!s || len == 0 || len > SG_AGENT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* An egress user's name is the agent label value: "unknown" and "other"
 * are the label's own values. */
static const char *check_agent_name(const char *s)
{
    if (!sg_agent_name_ok(s, strlen(s)))
        return "expected an agent name of 1 to 64 letters, digits and . _ -";
    if (strcmp(s, "unknown") == 0 || strcmp(s, "other") == 0)
        return "expected an agent name other than \"unknown\" and \"other\" (the agent label's own values)";
    return NULL;
}

static const char *check_agent_header(const char *s)
{
    const char *why = check_header_name(s);
    if (why)
        return why;
    if (strncasecmp(s, "proxy-", 6) == 0)
        return "expected a header name that is not a Proxy-* field";
    return NULL;
}

static bool hostname_ok(const char *s)
{
    return sg__is_hostname(s, strlen(s));
}

/* Route host: exact name, "*.suffix", IPv4 or [IPv6]; no port. */
static const char *check_host_pattern(const char *s)
{
    static const char *const why = "expected a host name, *.suffix, an IPv4 address or [IPv6], without a port";
    if (s[0] == '[') {
        size_t n = strlen(s);
        char buf[64];
        unsigned char bin[16];
        if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof(buf))
            return why;
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
        return inet_pton(AF_INET6, buf, bin) == 1 ? NULL : why;
    }
    if (strchr(s, ':'))
        return why;
    if (s[0] == '*') {
        if (s[1] != '.' || !hostname_ok(s + 2))
            return why;
        return NULL;
    }
    return hostname_ok(s) ? NULL : why;
}

static const char *check_metric_name(const char *s)
{
    /* Prometheus data model: [a-zA-Z_:][a-zA-Z0-9_:]* */
    if (!*s || (*s >= '0' && *s <= '9'))
        return "expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)";
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == ':'))
            return "expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)";
    return NULL;
}

static const char *check_label_name(const char *s)
{
    static const char *const why = "expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)";
    if (!*s || (*s >= '0' && *s <= '9') || strncmp(s, "__", 2) == 0)
        return why;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return why;
    return NULL;
}

static const char *check_nonblank(const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return NULL;
    return "expected a non-empty SQL statement";
}

static const char *check_column(const char *s)
{
    return *s ? NULL : "expected a column name";
}

static const char *check_log_target(const char *s)
{
    return *s ? NULL : "expected stdout, stderr, off or a file path";
}

static const char *check_error_log_target(const char *s)
{
    if (!*s || strcmp(s, "off") == 0)
        return "expected stderr, stdout or a file path";
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Scalar values                                                             */

/* The scalar text of n, ${ENV}-expanded, in the config's arena. */
static int get_scalar(ctx_t *c, const sg__cnode_t *n, const char *expected, const char **out)
{
    if (n->kind != SG__CNODE_SCALAR)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected %s, got %s", expected, kind_name(n));
    char why[256];
    const char *s = sg_expand_env(&c->cfg->arena, n->str, why, sizeof(why));
    if (!s)
        return fail(c, node_loc(n, (loc_t){0, 0}), "%s", why);
    *out = s;
    return 0;
}

static int bad_value(ctx_t *c, const sg__cnode_t *n, const char *s, const char *expected)
{
    char q[96];
    return fail(c, node_loc(n, (loc_t){0, 0}), "expected %s, got %s", expected, quoted(s, q, sizeof(q)));
}

static int parse_int(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    const char *p = s + neg;
    if (*p < '0' || *p > '9')
        return -1;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (uint64_t)INT64_MAX / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > (uint64_t)INT64_MAX)
            return -1;
    }
    if (*p)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0 || strcmp(s, "yes") == 0 ||
        strcmp(s, "on") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0 || strcmp(s, "no") == 0 ||
        strcmp(s, "off") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

static void enum_expected(const field_t *f, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "one of ");
    bool first = true;
    for (size_t i = 0; i < f->n_names && o < cap; i++) {
        if (!f->names[i])
            continue;
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", first ? "" : ", ", f->names[i]);
        first = false;
    }
}

/* Parses the text s (from node n, or a default when n is NULL) into the
 * field's target. Only scalar types come here. */
static int set_scalar(ctx_t *c, const sg__cnode_t *n, const char *s, const field_t *f, void *base)
{
    char *dst = (char *)base + f->off;
    char e[192], lo[32], hi[32];
    switch (f->type) {
    case FT_BOOL: {
        bool b;
        if (parse_bool(s, &b) < 0)
            return bad_value(c, n, s, "true or false");
        *(bool *)(void *)dst = b;
        return 0;
    }
    case FT_U32:
    case FT_INT: {
        int64_t v;
        if (parse_int(s, &v) < 0 || (double)v < f->min || (double)v > f->max) {
            snprintf(e, sizeof(e), "an integer from %.0f to %.0f", f->min, f->max);
            return bad_value(c, n, s, e);
        }
        if (f->type == FT_U32)
            *(uint32_t *)(void *)dst = (uint32_t)v;
        else
            *(int *)(void *)dst = (int)v;
        return 0;
    }
    case FT_DUR: {
        uint64_t v;
        if (sg_parse_duration_ms(s, &v) < 0)
            return bad_value(c, n, s, "a duration such as 250ms, 5s, 5m, 1h or 1d");
        if ((double)v < f->min || (double)v > f->max) {
            fmt_dur((uint64_t)f->min, lo, sizeof(lo));
            fmt_dur((uint64_t)f->max, hi, sizeof(hi));
            snprintf(e, sizeof(e), "a duration from %s to %s", lo, hi);
            return bad_value(c, n, s, e);
        }
        *(uint64_t *)(void *)dst = v;
        return 0;
    }
    case FT_SIZE32:
    case FT_SIZE64: {
        uint64_t v;
        if (sg_parse_size(s, &v) < 0)
            return bad_value(c, n, s, "a size such as 512, 16k, 1m or 1g");
        if ((double)v < f->min || (double)v > f->max) {
            fmt_size((uint64_t)f->min, lo, sizeof(lo));
            fmt_size((uint64_t)f->max, hi, sizeof(hi));
            snprintf(e, sizeof(e), "a size from %s to %s", lo, hi);
            return bad_value(c, n, s, e);
        }
        if (f->type == FT_SIZE32)
            *(uint32_t *)(void *)dst = (uint32_t)v;
        else
            *(uint64_t *)(void *)dst = v;
        return 0;
    }
    case FT_DOUBLE: {
        double v;
        if (parse_double(s, &v) < 0 || v < f->min || v > f->max) {
            snprintf(e, sizeof(e), "a number from %g to %g", f->min, f->max);
            return bad_value(c, n, s, e);
        }
        *(double *)(void *)dst = v;
        return 0;
    }
    case FT_STR: {
        const char *why = NULL;
        if ((f->flags & F_NONEMPTY) && !*s)
            why = "a non-empty string";
        else if (f->check)
            why = f->check(s);
        if (why) {
            if (strncmp(why, "expected ", 9) == 0)
                why += 9;
            return bad_value(c, n, s, why);
        }
        *(const char **)(void *)dst = s;
        return 0;
    }
    case FT_ADDR: {
        const char *why;
        unsigned fl =
            ((f->flags & F_PORT0) ? SG__HOSTPORT_F_PORT0 : 0) | ((f->flags & F_IP_ONLY) ? SG__HOSTPORT_F_IP_ONLY : 0);
        if (sg__parse_hostport(&c->cfg->arena, s, fl, (sg_hostport_t *)(void *)dst, &why) < 0) {
            char q[96];
            return fail(c, node_loc(n, (loc_t){0, 0}), "expected host:port or [ipv6]:port, got %s: %s",
                        quoted(s, q, sizeof(q)), why);
        }
        return 0;
    }
    case FT_ENUM:
        for (size_t i = 0; i < f->n_names; i++)
            if (f->names[i] && strcmp(f->names[i], s) == 0) {
                *(int *)(void *)dst = (int)i;
                return 0;
            }
        enum_expected(f, e, sizeof(e));
        return bad_value(c, n, s, e);
    default:
        return fail(c, node_loc(n, (loc_t){0, 0}), "internal error: bad scalar type");
    }
}

/* ------------------------------------------------------------------------ */
/* Lists, objects, maps                                                      */

static int parse_obj(ctx_t *c, const sg__cnode_t *n, loc_t at, const schema_t *s, void *base, size_t idx);
static int apply_defaults(ctx_t *c, const schema_t *s, void *base);

/* A list node, or a single scalar taken as a list of one. */
static int as_items(ctx_t *c, const sg__cnode_t *n, const char *expected, const sg__cnode_t *const **items,
                    size_t *count, const sg__cnode_t **single)
{
    if (n->kind == SG__CNODE_SEQ) {
        *items = (const sg__cnode_t *const *)n->items;
        *count = n->n_items;
        return 0;
    }
    if (n->kind == SG__CNODE_SCALAR) {
        *single = n;
        *items = single;
        *count = 1;
        return 0;
    }
    return fail(c, node_loc(n, (loc_t){0, 0}), "expected %s, got %s", expected, kind_name(n));
}

static int set_strlist(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    const sg__cnode_t *const *items = NULL, *single = NULL;
    size_t cnt = 0;
    if (as_items(c, n, "a list of strings", &items, &cnt, &single) < 0)
        return -1;
    if ((f->flags & F_NONEMPTY) && cnt == 0)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a non-empty list");
    const char **arr = cnt ? sg_arena_zalloc(&c->cfg->arena, cnt * sizeof(*arr)) : NULL;
    if (cnt && !arr)
        return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
    size_t errs_before = c->n_errs;
    for (size_t i = 0; i < cnt; i++) {
        size_t old = n->kind == SG__CNODE_SEQ ? path_idx(c, i) : c->plen;
        const char *s;
        if (get_scalar(c, items[i], "a string", &s) == 0) {
            const char *why = f->check ? f->check(s) : (*s ? NULL : "expected a non-empty string");
            if (why)
                bad_value(c, items[i], s, strncmp(why, "expected ", 9) == 0 ? why + 9 : why);
            arr[i] = s;
        }
        path_pop(c, old);
    }
    if (c->n_errs > errs_before)
        return -1;
    *(const char ***)(void *)((char *)base + f->off) = arr;
    *(size_t *)(void *)((char *)base + f->count_off) = cnt;
    return 0;
}

static int set_addrlist(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    const sg__cnode_t *const *items = NULL, *single = NULL;
    size_t cnt = 0;
    if (as_items(c, n, "a list of host:port addresses", &items, &cnt, &single) < 0)
        return -1;
    if ((f->flags & F_NONEMPTY) && cnt == 0)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a non-empty list of host:port addresses");
    sg_hostport_t *arr = cnt ? sg_arena_zalloc(&c->cfg->arena, cnt * sizeof(*arr)) : NULL;
    if (cnt && !arr)
        return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
    field_t one = *f;
    one.type = FT_ADDR;
    one.off = 0;
    size_t errs_before = c->n_errs;
    for (size_t i = 0; i < cnt; i++) {
        size_t old = n->kind == SG__CNODE_SEQ ? path_idx(c, i) : c->plen;
        const char *s;
        if (get_scalar(c, items[i], "host:port", &s) == 0 && set_scalar(c, items[i], s, &one, &arr[i]) == 0)
            for (size_t j = 0; j < i; j++)
                if (arr[j].host && arr[j].port == arr[i].port && strcasecmp(arr[j].host, arr[i].host) == 0) {
                    fail(c, node_loc(items[i], (loc_t){0, 0}), "duplicate server (also at index %zu)", j);
                    break;
                }
        path_pop(c, old);
    }
    if (c->n_errs > errs_before)
        return -1;
    *(sg_hostport_t **)(void *)((char *)base + f->off) = arr;
    *(size_t *)(void *)((char *)base + f->count_off) = cnt;
    return 0;
}

static int set_buckets_from(ctx_t *c, sg_buckets_t *b, const double *v, size_t n)
{
    b->bounds = sg_arena_alloc(&c->cfg->arena, n * sizeof(double));
    if (!b->bounds)
        return fail(c, (loc_t){0, 0}, "out of memory");
    memcpy(b->bounds, v, n * sizeof(double));
    b->n = n;
    return 0;
}

static int set_buckets(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    sg_buckets_t *b = (sg_buckets_t *)(void *)((char *)base + f->off);
    if (n->kind != SG__CNODE_SEQ)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a list of bucket upper bounds, got %s", kind_name(n));
    if (n->n_items == 0 || n->n_items > MAX_BUCKETS)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected 1 to %d bucket bounds, got %zu", MAX_BUCKETS, n->n_items);
    double v[MAX_BUCKETS];
    for (size_t i = 0; i < n->n_items; i++) {
        size_t old = path_idx(c, i);
        const char *s;
        if (get_scalar(c, n->items[i], "a number", &s) < 0)
            return -1;
        if (parse_double(s, &v[i]) < 0)
            return bad_value(c, n->items[i], s, "a finite number (+Inf is implicit)");
        if (i > 0 && !(v[i] > v[i - 1]))
            return fail(c, node_loc(n->items[i], (loc_t){0, 0}),
                        "bucket bounds must be strictly increasing (%g is not greater than %g)", v[i], v[i - 1]);
        path_pop(c, old);
    }
    return set_buckets_from(c, b, v, n->n_items);
}

static int check_unique_names(ctx_t *c, const sg__cnode_t *n, const schema_t *s, char *arr, size_t cnt)
{
    for (size_t i = 1; i < cnt; i++) {
        const char *ni = *(const char **)(void *)(arr + i * s->elem_size + s->name_off);
        for (size_t j = 0; ni && j < i; j++) {
            const char *nj = *(const char **)(void *)(arr + j * s->elem_size + s->name_off);
            if (nj && strcmp(ni, nj) == 0) {
                size_t old = path_idx(c, i);
                const sg__cpair_t *np = sg__cnode_get(n->items[i], "name");
                loc_t at = np ? (loc_t){np->val->line, np->val->col} : node_loc(n->items[i], (loc_t){0, 0});
                size_t o2 = np ? path_key(c, "name") : c->plen;
                int rc = fail(c, at, "duplicate name \"%s\" (also used by item %zu)", ni, j);
                path_pop(c, o2);
                path_pop(c, old);
                return rc;
            }
        }
    }
    return 0;
}

static int set_list(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    const schema_t *s = f->sub;
    if (n->kind != SG__CNODE_SEQ)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a list, got %s", kind_name(n));
    size_t cnt = n->n_items;
    char *arr = cnt ? sg_arena_zalloc(&c->cfg->arena, cnt * s->elem_size) : NULL;
    if (cnt && !arr)
        return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
    size_t errs_before = c->n_errs;
    for (size_t i = 0; i < cnt; i++) {
        size_t old = path_idx(c, i);
        void *elem = arr + i * s->elem_size;
        if (apply_defaults(c, s, elem) < 0)
            return -1;
        parse_obj(c, n->items[i], node_loc(n->items[i], (loc_t){0, 0}), s, elem, i); /* on to the next item */
        path_pop(c, old);
    }
    if (s->has_name)
        check_unique_names(c, n, s, arr, cnt);
    *(void **)(void *)((char *)base + f->off) = arr;
    *(size_t *)(void *)((char *)base + f->count_off) = cnt;
    return c->n_errs > errs_before ? -1 : 0;
}

static int set_map(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    const schema_t *s = f->sub;
    if (n->kind != SG__CNODE_MAP)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a mapping of names to settings, got %s", kind_name(n));
    size_t cnt = n->n_pairs;
    char *arr = cnt ? sg_arena_zalloc(&c->cfg->arena, cnt * s->elem_size) : NULL;
    if (cnt && !arr)
        return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
    size_t errs_before = c->n_errs;
    for (size_t i = 0; i < cnt; i++) {
        const sg__cpair_t *p = &n->pairs[i];
        size_t old = path_key(c, p->key);
        loc_t kat = {p->key_line, p->key_col};
        void *elem = arr + i * s->elem_size;
        /* Named even when the name is refused, so routes naming it are not also wrong. */
        const char *name = sg_arena_strdup(&c->cfg->arena, p->key); /* keys live in the parse arena */
        if (!name)
            return fail(c, kat, "out of memory");
        *(const char **)(void *)((char *)elem + s->name_off) = name;
        const char *why = check_name(p->key);
        if (why) {
            char q[96];
            fail(c, kat, "%s, got %s", why, quoted(p->key, q, sizeof(q)));
        }
        const sg__cnode_t *v = sg__cnode_is_null(p->val) ? NULL : p->val;
        if (apply_defaults(c, s, elem) < 0)
            return -1;
        parse_obj(c, v, kat, s, elem, i); /* on to the next entry */
        path_pop(c, old);
    }
    *(void **)(void *)((char *)base + f->off) = arr;
    *(size_t *)(void *)((char *)base + f->count_off) = cnt;
    return c->n_errs > errs_before ? -1 : 0;
}

static int set_field(ctx_t *c, const sg__cnode_t *n, const field_t *f, void *base)
{
    const char *s;
    switch (f->type) {
    case FT_STRLIST:
        return set_strlist(c, n, f, base);
    case FT_ADDRLIST:
        return set_addrlist(c, n, f, base);
    case FT_BUCKETS:
        return set_buckets(c, n, f, base);
    case FT_OBJ:
        return parse_obj(c, n, node_loc(n, (loc_t){0, 0}), f->sub, (char *)base + f->off, 0);
    case FT_LIST:
        return set_list(c, n, f, base);
    case FT_MAP:
        return set_map(c, n, f, base);
    case FT_CUSTOM:
        return f->custom(c, n, base, f);
    default: {
        static const char *const expect[FT__COUNT] = {
            [FT_BOOL] = "true or false", [FT_U32] = "an integer", [FT_INT] = "an integer",  [FT_DUR] = "a duration",
            [FT_SIZE32] = "a size",      [FT_SIZE64] = "a size",  [FT_DOUBLE] = "a number", [FT_STR] = "a string",
            [FT_ADDR] = "host:port",     [FT_ENUM] = "a string",
        };
        if (get_scalar(c, n, expect[f->type] ? expect[f->type] : "a value", &s) < 0)
            return -1;
        return set_scalar(c, n, s, f, base);
    }
    }
}

static int apply_defaults(ctx_t *c, const schema_t *s, void *base)
{
    for (size_t i = 0; i < s->n_fields; i++) {
        const field_t *f = &s->fields[i];
        if (f->type == FT_OBJ) {
            if (apply_defaults(c, f->sub, (char *)base + f->off) < 0)
                return -1;
        } else if (f->type == FT_BUCKETS && f->dbl_def) {
            if (set_buckets_from(c, (sg_buckets_t *)(void *)((char *)base + f->off), f->dbl_def, f->n_dbl_def) < 0)
                return -1;
        } else if (f->def) {
            char *d = sg_arena_strdup(&c->cfg->arena, f->def);
            if (!d)
                return fail(c, (loc_t){0, 0}, "out of memory");
            if (set_scalar(c, NULL, d, f, base) < 0)
                return -1; /* a bad built-in default: caught by the unit tests */
        }
    }
    return 0;
}

/* Levenshtein distance, for "did you mean" on unknown keys. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            row[j] = SG_MIN(SG_MIN(row[j] + 1, row[j - 1] + 1), sub);
            prev = cur;
        }
    }
    return row[lb];
}

static int unknown_key(ctx_t *c, const sg__cpair_t *p, const schema_t *s, size_t *suggested)
{
    const char *best = NULL;
    size_t bd = SG_MAX(strlen(p->key) / 3, 1) + 1; /* suggest only close names */
    for (size_t i = 0; i < s->n_fields; i++) {
        size_t d = edit_distance(p->key, s->fields[i].key);
        if (d < bd && d <= 2) {
            bd = d;
            best = s->fields[i].key;
            *suggested = i;
        }
    }
    size_t old = path_key(c, p->key);
    int rc;
    if (best)
        rc = fail(c, (loc_t){p->key_line, p->key_col}, "unknown key (did you mean \"%s\"?)", best);
    else
        rc = fail(c, (loc_t){p->key_line, p->key_col}, "unknown key");
    path_pop(c, old);
    return rc;
}

/* Keys are looked up in schema order (so a hook may rely on earlier keys),
 * after every key of the mapping was checked to be known. */
static int parse_obj(ctx_t *c, const sg__cnode_t *n, loc_t at, const schema_t *s, void *base, size_t idx)
{
    if (n && sg__cnode_is_null(n))
        n = NULL;
    if (n && n->kind != SG__CNODE_MAP)
        return fail(c, at, "expected a mapping, got %s", kind_name(n));
    /* Every unknown key is reported, then every known one is parsed; a key
     * that an unknown one was probably meant to be is not also "missing". */
    size_t errs_before = c->n_errs;
    uint64_t meant = 0;
    if (n) {
        for (size_t i = 0; i < n->n_pairs; i++) {
            size_t j = 0;
            while (j < s->n_fields && strcmp(s->fields[j].key, n->pairs[i].key) != 0)
                j++;
            size_t sug = SIZE_MAX;
            if (j == s->n_fields && unknown_key(c, &n->pairs[i], s, &sug) < 0 && sug < 64)
                meant |= 1ull << sug;
        }
    }
    if (n && s->init && s->init(c, n, at, base, idx) < 0)
        return -1;
    for (size_t i = 0; i < s->n_fields; i++) {
        const field_t *f = &s->fields[i];
        const sg__cpair_t *p = sg__cnode_get(n, f->key);
        size_t old = path_key(c, f->key);
        if (!p || sg__cnode_is_null(p->val)) {
            if (f->flags & F_REQ) {
                if (p)
                    fail(c, node_loc(p->val, at), "a value is required here");
                else if (!(i < 64 && (meant >> i) & 1))
                    fail(c, at, "missing required key");
            } else if (f->type == FT_OBJ) {
                /* An absent section still gets its checks and derived defaults. */
                parse_obj(c, NULL, p ? (loc_t){p->key_line, p->key_col} : at, f->sub, (char *)base + f->off, 0);
            }
        } else {
            set_field(c, p->val, f, base);
        }
        path_pop(c, old);
    }
    /* Checks across keys need every key of the section parsed. */
    if (c->n_errs > errs_before)
        return -1;
    if (s->done && s->done(c, n, at, base, idx) < 0)
        return -1;
    return 0;
}

/* Where a key's value is in the file, for errors found by later checks. */
static loc_t key_loc(const sg__cnode_t *m, const char *key, loc_t fallback)
{
    const sg__cpair_t *p = sg__cnode_get(m, key);
    if (!p)
        return node_loc(m, fallback);
    return node_loc(p->val, (loc_t){p->key_line, p->key_col});
}

/* ------------------------------------------------------------------------ */
/* Enum names                                                                */

static const char *const listener_modes[] = {[SG_LISTENER_REVERSE] = "reverse", [SG_LISTENER_EGRESS] = "egress"};
static const char *const balances[] = {
    [SG_BALANCE_ROUND_ROBIN] = "round_robin", [SG_BALANCE_LEAST_IN_FLIGHT] = "least_in_flight"};
static const char *const log_levels[] = {
    [SG_LOG_DEBUG] = "debug", [SG_LOG_INFO] = "info", [SG_LOG_WARN] = "warn", [SG_LOG_ERROR] = "error"};
static const char *const underscore_modes[] = {
    [SG_UNDERSCORES_DROP] = "drop", [SG_UNDERSCORES_ALLOW] = "allow", [SG_UNDERSCORES_REJECT] = "reject"};
static const char *const log_formats[] = {
    [SG_LOG_FORMAT_AUTO] = "auto", [SG_LOG_FORMAT_TEXT] = "text", [SG_LOG_FORMAT_JSON] = "json"};
/* Postgres queries give gauges or counters; histograms come only from the
 * built-in state-transition poller. */
static const char *const pg_metric_types[] = {
    [SG_METRIC_COUNTER] = "counter", [SG_METRIC_GAUGE] = "gauge", [SG_METRIC_HISTOGRAM] = NULL};

#define ENUM_NAMES(a) .names = (a), .n_names = SG_ARRAY_SIZE(a)

const char *sg_listener_mode_name(sg_listener_mode_t m)
{
    return (unsigned)m < SG_ARRAY_SIZE(listener_modes) ? listener_modes[m] : "?";
}

const char *sg_balance_name(sg_balance_t b)
{
    return (unsigned)b < SG_ARRAY_SIZE(balances) ? balances[b] : "?";
}

const char *sg_log_level_name(sg_log_level_t l)
{
    return (unsigned)l < SG_ARRAY_SIZE(log_levels) ? log_levels[l] : "?";
}

/* ------------------------------------------------------------------------ */
/* Field constructors                                                        */

#define BOOL(T, k, m, d)                                                                                               \
    {                                                                                                                  \
        .key = k, .type = FT_BOOL, .off = offsetof(T, m), .def = d                                                     \
    }
#define U32(T, k, m, d, lo, hi)                                                                                        \
    {                                                                                                                  \
        .key = k, .type = FT_U32, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                                \
    }
#define INT(T, k, m, d, lo, hi)                                                                                        \
    {                                                                                                                  \
        .key = k, .type = FT_INT, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                                \
    }
#define DUR(T, k, m, d, lo, hi)                                                                                        \
    {                                                                                                                  \
        .key = k, .type = FT_DUR, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                                \
    }
#define SIZE32(T, k, m, d, lo, hi)                                                                                     \
    {                                                                                                                  \
        .key = k, .type = FT_SIZE32, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                             \
    }
#define SIZE64(T, k, m, d, lo, hi)                                                                                     \
    {                                                                                                                  \
        .key = k, .type = FT_SIZE64, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                             \
    }
#define DBL(T, k, m, d, lo, hi)                                                                                        \
    {                                                                                                                  \
        .key = k, .type = FT_DOUBLE, .off = offsetof(T, m), .def = d, .min = lo, .max = hi                             \
    }
#define STR(T, k, m, d, fl, chk)                                                                                       \
    {                                                                                                                  \
        .key = k, .type = FT_STR, .flags = fl, .off = offsetof(T, m), .def = d, .check = chk                           \
    }
#define ADDR(T, k, m, d, fl)                                                                                           \
    {                                                                                                                  \
        .key = k, .type = FT_ADDR, .flags = fl, .off = offsetof(T, m), .def = d                                        \
    }
#define ENUM(T, k, m, d, nm)                                                                                           \
    {                                                                                                                  \
        .key = k, .type = FT_ENUM, .off = offsetof(T, m), .def = d, ENUM_NAMES(nm)                                     \
    }
#define STRLIST(T, k, m, cnt, fl, chk)                                                                                 \
    {                                                                                                                  \
        .key = k, .type = FT_STRLIST, .flags = fl, .off = offsetof(T, m), .count_off = offsetof(T, cnt), .check = chk  \
    }
#define BUCKETS(T, k, m, d)                                                                                            \
    {                                                                                                                  \
        .key = k, .type = FT_BUCKETS, .off = offsetof(T, m), .dbl_def = (d), .n_dbl_def = SG_ARRAY_SIZE(d)             \
    }
#define OBJ(T, k, m, s)                                                                                                \
    {                                                                                                                  \
        .key = k, .type = FT_OBJ, .off = offsetof(T, m), .sub = &(s)                                                   \
    }
#define LIST(T, k, m, cnt, s)                                                                                          \
    {                                                                                                                  \
        .key = k, .type = FT_LIST, .off = offsetof(T, m), .count_off = offsetof(T, cnt), .sub = &(s)                   \
    }
#define MAP(T, k, m, cnt, s)                                                                                           \
    {                                                                                                                  \
        .key = k, .type = FT_MAP, .off = offsetof(T, m), .count_off = offsetof(T, cnt), .sub = &(s)                    \
    }
#define CUSTOM(k, fn, fl, s)                                                                                           \
    {                                                                                                                  \
        .key = k, .type = FT_CUSTOM, .custom = fn, .flags = fl, .sub = s                                               \
    }

#define MS(x) ((double)(x))
#define SEC(x) ((double)(x)*1000.0)
#define DMAX ((double)DUR_MAX_MS)
#define KIB(x) ((double)(x)*1024.0)
#define MIB(x) ((double)(x)*1048576.0)

/* ------------------------------------------------------------------------ */
/* listeners[]                                                               */

static int listener_init(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_listener_conf_t *l = obj;
    char buf[32];
    snprintf(buf, sizeof(buf), "listener%zu", idx);
    l->name = sg_arena_strdup(&c->cfg->arena, buf);
    return l->name ? 0 : fail(c, at, "out of memory");
}

/* ------------------------------------------------------------------------ */
/* TLS files and versions (listeners[].tls, upstreams.<name>.tls)            */

/* A path as written, or taken from the config file's directory when
 * relative (the directory a reload reads the file from, whatever the
 * process's working directory was meant to be). */
static const char *resolve_path(ctx_t *c, const char *p)
{
    const char *slash = strrchr(c->file, '/');
    if (p[0] == '/' || !slash)
        return p;
    size_t dl = (size_t)(slash - c->file), pl = strlen(p);
    char *r = sg_arena_alloc(&c->cfg->arena, dl + 1 + pl + 1);
    if (!r)
        return p;
    memcpy(r, c->file, dl + 1);
    memcpy(r + dl + 1, p, pl + 1);
    return r;
}

/* "1.2" or "1.3"; older versions are named as refused. */
static int tls_min_version(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    sg_tls_version_t *v = (sg_tls_version_t *)(void *)((char *)base + f->off);
    const char *s;
    if (get_scalar(c, n, "1.2 or 1.3", &s) < 0)
        return -1;
    const char *p = strncmp(s, "TLSv", 4) == 0 ? s + 4 : s;
    if (strcmp(p, "1.2") == 0) {
        *v = SG_TLS_VERSION_1_2;
        return 0;
    }
    if (strcmp(p, "1.3") == 0) {
        *v = SG_TLS_VERSION_1_3;
        return 0;
    }
    if (strcmp(p, "1.1") == 0 || strcmp(p, "1.0") == 0 || strcmp(p, "1") == 0 || strncmp(s, "SSL", 3) == 0)
        return bad_value(c, n, s, "1.2 or 1.3 (TLS 1.1 and lower are refused: RFC 8996)");
    return bad_value(c, n, s, "1.2 or 1.3");
}

/* One certificate and its key: readable, the key for group and others
 * neither readable nor writable, and the key the certificate's. */
static int check_cert_pair(ctx_t *c, const sg__cnode_t *n, loc_t at, sg_tls_cert_conf_t *pair)
{
    char why[400];
    pair->cert = resolve_path(c, pair->cert);
    pair->key = resolve_path(c, pair->key);
    int bad = sg_tls_check_cert_key(pair->cert, pair->key, why, sizeof(why));
    if (bad == 0)
        return 0;
    /* At the key of the file at fault (a key that does not match is the key's). */
    const char *k = bad == SG_TLS_BAD_KEY_FILE ? "key" : "cert";
    size_t old = path_key(c, k);
    int rc = fail(c, key_loc(n, k, at), "%s", why);
    path_pop(c, old);
    return rc;
}

static int cert_pair_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    return check_cert_pair(c, n, at, obj);
}

static const field_t cert_pair_fields[] = {
    STR(sg_tls_cert_conf_t, "cert", cert, NULL, F_REQ | F_NONEMPTY, NULL),
    STR(sg_tls_cert_conf_t, "key", key, NULL, F_REQ | F_NONEMPTY, NULL),
};
static const schema_t cert_pair_schema = {
    SCHEMA(cert_pair_fields), sizeof(sg_tls_cert_conf_t), NULL, cert_pair_done, false, 0};

/* `tls: {cert, key}`: the one certificate, certificates[0]. */
static int tls_shorthand(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    sg_tls_server_conf_t *t = base;
    const char *s;
    if (get_scalar(c, n, "a file path", &s) < 0)
        return -1;
    if (!*s)
        return bad_value(c, n, s, "a file path");
    if (!t->certificates) {
        t->certificates = sg_arena_zalloc(&c->cfg->arena, sizeof(*t->certificates));
        if (!t->certificates)
            return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
        t->n_certificates = 1;
    }
    if (strcmp(f->key, "cert") == 0)
        t->certificates[0].cert = s;
    else
        t->certificates[0].key = s;
    return 0;
}

static int tls_server_init(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_tls_server_conf_t *t = obj;
    t->enabled = true;
    t->min_version = SG_TLS_VERSION_1_2;
    return 0;
}

static int tls_ciphers_ok(ctx_t *c, const sg__cnode_t *n, loc_t at, const char *ciphers, const char *suites)
{
    char why[400];
    if (sg_tls_check_ciphers(ciphers, NULL, why, sizeof(why)) < 0 ||
        sg_tls_check_ciphers(NULL, suites, why, sizeof(why)) < 0) {
        const char *k = strstr(why, "TLS 1.3") ? "ciphersuites" : "ciphers";
        size_t old = path_key(c, k);
        int rc = fail(c, key_loc(n, k, at), "%s", why);
        path_pop(c, old);
        return rc;
    }
    return 0;
}

static int tls_server_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_tls_server_conf_t *t = obj;
    if (!n)
        return 0; /* no tls section: plain TCP */
    const sg__cpair_t *cp = sg__cnode_get(n, "cert"), *kp = sg__cnode_get(n, "key"),
                      *lp = sg__cnode_get(n, "certificates");
    size_t old;
    int rc;
    if ((cp || kp) && lp) {
        old = path_key(c, "certificates");
        rc = fail(c, node_loc(lp->val, at), "use cert and key, or certificates, not both");
        path_pop(c, old);
        return rc;
    }
    if (!cp && !kp && !lp) {
        return fail(c, at, "a certificate is required: cert and key, or certificates: [{cert, key}, ...]");
    }
    if (!lp && (!cp || !kp)) {
        old = path_key(c, cp ? "key" : "cert");
        rc = fail(c, at, "missing required key (cert and key go together)");
        path_pop(c, old);
        return rc;
    }
    if (lp && t->n_certificates == 0) {
        old = path_key(c, "certificates");
        rc = fail(c, node_loc(lp->val, at), "expected at least one {cert, key}");
        path_pop(c, old);
        return rc;
    }
    if (!lp && check_cert_pair(c, n, at, &t->certificates[0]) < 0)
        return -1;
    return tls_ciphers_ok(c, n, at, t->ciphers, t->ciphersuites);
}

static const field_t tls_server_fields[] = {
    CUSTOM("cert", tls_shorthand, 0, NULL),
    CUSTOM("key", tls_shorthand, 0, NULL),
    LIST(sg_tls_server_conf_t, "certificates", certificates, n_certificates, cert_pair_schema),
    {.key = "min_version",
     .type = FT_CUSTOM,
     .custom = tls_min_version,
     .off = offsetof(sg_tls_server_conf_t, min_version)},
    STR(sg_tls_server_conf_t, "ciphers", ciphers, SG_TLS_DEFAULT_CIPHERS, F_NONEMPTY, NULL),
    STR(sg_tls_server_conf_t, "ciphersuites", ciphersuites, SG_TLS_DEFAULT_CIPHERSUITES, F_NONEMPTY, NULL),
    BOOL(sg_tls_server_conf_t, "session_tickets", session_tickets, "true"),
};
static const schema_t tls_server_schema = {SCHEMA(tls_server_fields), 0, tls_server_init, tls_server_done, false, 0};

static const field_t listener_fields[] = {
    STR(sg_listener_conf_t, "name", name, NULL, 0, check_name),
    ADDR(sg_listener_conf_t, "address", addr, NULL, F_REQ | F_PORT0 | F_IP_ONLY),
    ENUM(sg_listener_conf_t, "mode", mode, "reverse", listener_modes),
    BOOL(sg_listener_conf_t, "serve_health", serve_health, "false"),
    BOOL(sg_listener_conf_t, "serve_metrics", serve_metrics, "false"),
    INT(sg_listener_conf_t, "backlog", backlog, "511", 1, 65535),
    OBJ(sg_listener_conf_t, "tls", tls, tls_server_schema),
};
static const schema_t listener_schema = {
    SCHEMA(listener_fields), sizeof(sg_listener_conf_t), listener_init, NULL, true, offsetof(sg_listener_conf_t, name)};

/* ------------------------------------------------------------------------ */
/* admin                                                                     */

static const field_t admin_fields[] = {
    ADDR(sg_admin_conf_t, "address", addr, "127.0.0.1:9464", F_PORT0 | F_IP_ONLY),
    BOOL(sg_admin_conf_t, "enabled", enabled, "true"),
    DUR(sg_admin_conf_t, "liveness_stale", liveness_stale_ms, "10s", MS(100), SEC(3600)),
};
static const schema_t admin_schema = {SCHEMA(admin_fields), 0, NULL, NULL, false, 0};

/* ------------------------------------------------------------------------ */
/* upstreams.<name>                                                          */

/* A health_check mapping that is present turns checks on unless it says
 * `enabled: false`. */
static int health_init(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    ((sg_health_check_conf_t *)obj)->enabled = true;
    return 0;
}

static int health_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_health_check_conf_t *h = obj;
    if (h->timeout_ms > h->interval_ms) {
        size_t old = path_key(c, "timeout");
        int rc = fail(c, key_loc(n, "timeout", at), "must not be longer than the interval");
        path_pop(c, old);
        return rc;
    }
    return 0;
}

static const field_t health_fields[] = {
    BOOL(sg_health_check_conf_t, "enabled", enabled, "false"),
    STR(sg_health_check_conf_t, "path", path, "/health", 0, check_request_path),
    DUR(sg_health_check_conf_t, "interval", interval_ms, "5s", MS(100), SEC(3600)),
    DUR(sg_health_check_conf_t, "timeout", timeout_ms, "2s", MS(10), SEC(3600)),
    U32(sg_health_check_conf_t, "rise", rise, "2", 1, 100),
    U32(sg_health_check_conf_t, "fall", fall, "3", 1, 100),
};
static const schema_t health_schema = {SCHEMA(health_fields), 0, health_init, health_done, false, 0};

/* Upstream TLS: a tls mapping that is present turns it on unless it says
 * `enabled: false`. */
static int tls_client_init(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_tls_client_conf_t *t = obj;
    t->enabled = true;
    t->min_version = SG_TLS_VERSION_1_2;
    return 0;
}

/* SNI and the name verified: a host name or an IP address. */
static const char *check_server_name(const char *s)
{
    unsigned char bin[16];
    if (inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1 || hostname_ok(s))
        return NULL;
    return "expected a host name or an IP address";
}

static int tls_client_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_tls_client_conf_t *t = obj;
    char why[400];
    size_t old;
    int rc;
    if (!n || !t->enabled)
        return 0;
    if (!t->cert != !t->key) {
        old = path_key(c, t->cert ? "key" : "cert");
        rc = fail(c, at, "missing required key (cert and key go together)");
        path_pop(c, old);
        return rc;
    }
    if (t->cert) {
        sg_tls_cert_conf_t pair = {t->cert, t->key};
        if (check_cert_pair(c, n, at, &pair) < 0)
            return -1;
        t->cert = pair.cert;
        t->key = pair.key;
    }
    if (t->ca_file) {
        t->ca_file = resolve_path(c, t->ca_file);
        if (sg_tls_check_ca_file(t->ca_file, why, sizeof(why)) < 0) {
            old = path_key(c, "ca_file");
            rc = fail(c, key_loc(n, "ca_file", at), "%s", why);
            path_pop(c, old);
            return rc;
        }
    }
    return 0;
}

static const field_t tls_client_fields[] = {
    BOOL(sg_tls_client_conf_t, "enabled", enabled, "false"),
    STR(sg_tls_client_conf_t, "server_name", server_name, NULL, 0, check_server_name),
    BOOL(sg_tls_client_conf_t, "verify", verify, "true"),
    STR(sg_tls_client_conf_t, "ca_file", ca_file, NULL, F_NONEMPTY, NULL),
    STR(sg_tls_client_conf_t, "cert", cert, NULL, F_NONEMPTY, NULL),
    STR(sg_tls_client_conf_t, "key", key, NULL, F_NONEMPTY, NULL),
    {.key = "min_version",
     .type = FT_CUSTOM,
     .custom = tls_min_version,
     .off = offsetof(sg_tls_client_conf_t, min_version)},
};
static const schema_t tls_client_schema = {SCHEMA(tls_client_fields), 0, tls_client_init, tls_client_done, false, 0};

static const field_t upstream_fields[] = {
    {.key = "servers",
     .type = FT_ADDRLIST,
     .flags = F_REQ | F_NONEMPTY,
     .off = offsetof(sg_upstream_conf_t, servers),
     .count_off = offsetof(sg_upstream_conf_t, n_servers)},
    ENUM(sg_upstream_conf_t, "balance", balance, "round_robin", balances),
    /* No small fixed cap by default (#18): the pool keeps what recent load
     * needed (idle connections are at most the peak in flight) and
     * keepalive_timeout trims it; a 64 cap made a third of the requests at
     * 256 clients open a new upstream connection. */
    U32(sg_upstream_conf_t, "keepalive", keepalive, "100000", 0, 100000),
    DUR(sg_upstream_conf_t, "keepalive_timeout", keepalive_timeout_ms, "60s", MS(1), DMAX),
    DUR(sg_upstream_conf_t, "connect_timeout", connect_timeout_ms, "5s", MS(1), DMAX),
    DUR(sg_upstream_conf_t, "response_timeout", response_timeout_ms, "60s", MS(1), DMAX),
    DUR(sg_upstream_conf_t, "read_timeout", read_timeout_ms, "300s", MS(1), DMAX),
    U32(sg_upstream_conf_t, "max_fails", max_fails, "3", 0, 1000),
    DUR(sg_upstream_conf_t, "fail_timeout", fail_timeout_ms, "10s", MS(1), DMAX),
    BOOL(sg_upstream_conf_t, "count_timeouts", count_timeouts, "false"),
    OBJ(sg_upstream_conf_t, "health_check", health_check, health_schema),
    OBJ(sg_upstream_conf_t, "tls", tls, tls_client_schema),
};
static const schema_t upstream_schema = {
    SCHEMA(upstream_fields), sizeof(sg_upstream_conf_t), NULL, NULL, false, offsetof(sg_upstream_conf_t, name)};

/* ------------------------------------------------------------------------ */
/* routes[]                                                                  */

static const char strip_match_marker[] = "<match.prefix>";

/* strip_prefix: a path, or `true` for "the matched prefix". */
static int route_strip(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    sg_route_conf_t *r = base;
    const char *s;
    bool b;
    if (get_scalar(c, n, "a path or true", &s) < 0)
        return -1;
    if (n->is_plain && parse_bool(s, &b) == 0) {
        r->strip_prefix = b ? strip_match_marker : NULL;
        return 0;
    }
    const char *why = check_path(s);
    if (why)
        return bad_value(c, n, s, "a path starting with / (or true for the matched prefix)");
    r->strip_prefix = s;
    return 0;
}

static int route_init(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_route_conf_t *r = obj;
    char buf[32];
    snprintf(buf, sizeof(buf), "route%zu", idx);
    r->name = sg_arena_strdup(&c->cfg->arena, buf);
    return r->name ? 0 : fail(c, at, "out of memory");
}

static int route_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_route_conf_t *r = obj;
    sg_config_t *cfg = c->cfg;
    int rc = 0;
    size_t old;
    if (r->host) /* hosts compare case-insensitively: keep them lower-case */
        for (char *p = (char *)(uintptr_t)r->host; *p; p++)
            *p = sg_ascii_lower(*p);
    if (r->strip_prefix && r->rewrite) {
        old = path_key(c, "rewrite");
        rc = fail(c, key_loc(n, "rewrite", at), "strip_prefix and rewrite cannot be used together");
        path_pop(c, old);
        return rc;
    }
    if (r->strip_prefix == strip_match_marker) {
        r->strip_prefix = r->prefix;
    } else if (r->strip_prefix) {
        /* It must apply to every request the route matches. */
        size_t sl = strlen(r->strip_prefix);
        bool ok = strncmp(r->prefix, r->strip_prefix, sl) == 0 &&
                  (r->strip_prefix[sl - 1] == '/' || r->prefix[sl] == '\0' || r->prefix[sl] == '/');
        if (!ok) {
            old = path_key(c, "strip_prefix");
            rc = fail(c, key_loc(n, "strip_prefix", at), "must be the start of match.prefix (\"%s\")", r->prefix);
            path_pop(c, old);
            return rc;
        }
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, r->upstream) == 0) {
            r->upstream_idx = i;
            return 0;
        }
    old = path_key(c, "upstream");
    if (cfg->n_upstreams == 0)
        rc = fail(c, key_loc(n, "upstream", at), "no upstream named \"%s\" (no upstreams are defined)", r->upstream);
    else
        rc = fail(c, key_loc(n, "upstream", at), "no upstream named \"%s\" in upstreams", r->upstream);
    path_pop(c, old);
    return rc;
}

static const field_t route_match_fields[] = {
    STR(sg_route_conf_t, "prefix", prefix, "/", 0, check_path),
    STR(sg_route_conf_t, "host", host, NULL, 0, check_host_pattern),
};
static const schema_t route_match_schema = {SCHEMA(route_match_fields), 0, NULL, NULL, false, 0};

static const field_t route_fields[] = {
    STR(sg_route_conf_t, "name", name, NULL, 0, check_name),
    {.key = "match", .type = FT_OBJ, .off = 0, .sub = &route_match_schema},
    STR(sg_route_conf_t, "upstream", upstream, NULL, F_REQ, check_name),
    CUSTOM("strip_prefix", route_strip, 0, NULL),
    STR(sg_route_conf_t, "rewrite", rewrite, NULL, 0, check_path),
    STR(sg_route_conf_t, "set_host", set_host, NULL, F_NONEMPTY, NULL),
};
static const schema_t route_schema = {
    SCHEMA(route_fields), sizeof(sg_route_conf_t), route_init, route_done, true, offsetof(sg_route_conf_t, name)};

/* ------------------------------------------------------------------------ */
/* trace                                                                     */

typedef struct trace_export_conf {
    /* Same layout as sg_trace_conf_t.export: named so offsetof works. */
    sg_export_format_t format;
    const char *url;
    sg_hostport_t url_addr;
    const char *url_path;
    double sample;
    uint32_t batch_size;
    uint64_t batch_delay_ms;
    uint32_t queue_size;
    uint64_t timeout_ms;
    const char *service_name;
    uint64_t slow_ms;
} trace_export_conf_t;
_Static_assert(sizeof(trace_export_conf_t) == sizeof(((sg_trace_conf_t *)0)->export), "export layout");
_Static_assert(offsetof(trace_export_conf_t, service_name) ==
                   offsetof(sg_trace_conf_t, export.service_name) - offsetof(sg_trace_conf_t, export),
               "export layout");

static int export_url(ctx_t *c, const sg__cnode_t *n, void *base, sg_export_format_t fmt)
{
    trace_export_conf_t *e = base;
    const char *s = NULL;
    if (get_scalar(c, n, "an http:// URL or null", &s) < 0)
        return -1;
    if (!*s) /* `${OTLP_URL:-}`: export off */
        return 0;
    if (e->format != SG_EXPORT_NONE)
        return fail(c, node_loc(n, (loc_t){0, 0}), "only one of otlp_http and zipkin can be set");
    if (strncmp(s, "https://", 8) == 0)
        return bad_value(c, n, s, "an http:// URL (https is not supported: use a local collector)");
    if (strncmp(s, "http://", 7) != 0)
        return bad_value(c, n, s, "an http:// URL");
    const char *auth = s + 7;
    size_t alen = strcspn(auth, "/?#");
    char hp[300];
    if (alen == 0 || alen + 4 >= sizeof(hp) || memchr(auth, '@', alen))
        return bad_value(c, n, s, "an http://host[:port]/path URL");
    memcpy(hp, auth, alen);
    hp[alen] = '\0';
    /* Append the default port when the authority has none. */
    const char *rb = strrchr(hp, ']');
    const char *colon = strrchr(hp, ':');
    if (!colon || (rb && colon < rb))
        memcpy(hp + alen, ":80", 4);
    const char *why = "invalid host:port";
    if (sg__parse_hostport(&c->cfg->arena, hp, 0, &e->url_addr, &why) < 0) {
        char q[96];
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected an http://host[:port]/path URL, got %s: %s",
                    quoted(s, q, sizeof(q)), why);
    }
    const char *path = auth + alen;
    if (*path == '#')
        return bad_value(c, n, s, "an http:// URL without a #fragment");
    e->url_path = *path == '/' ? path : (*path ? NULL : "/");
    if (!e->url_path) { /* "http://host?x": a query without a path */
        char *p = sg_arena_zalloc(&c->cfg->arena, strlen(path) + 2);
        if (!p)
            return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
        p[0] = '/';
        strcpy(p + 1, path);
        e->url_path = p;
    }
    e->url = s;
    e->format = fmt;
    return 0;
}

static int export_otlp(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    return export_url(c, n, base, SG_EXPORT_OTLP_HTTP);
}

static int export_zipkin(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    return export_url(c, n, base, SG_EXPORT_ZIPKIN);
}

static const field_t export_fields[] = {
    CUSTOM("otlp_http", export_otlp, 0, NULL),
    CUSTOM("zipkin", export_zipkin, 0, NULL),
    DBL(trace_export_conf_t, "sample", sample, "1.0", 0.0, 1.0),
    U32(trace_export_conf_t, "batch_size", batch_size, "512", 1, 65536),
    DUR(trace_export_conf_t, "batch_delay", batch_delay_ms, "2s", MS(1), SEC(3600)),
    U32(trace_export_conf_t, "queue_size", queue_size, "8192", 1, 1000000),
    DUR(trace_export_conf_t, "timeout", timeout_ms, "10s", MS(1), SEC(3600)),
    STR(trace_export_conf_t, "service_name", service_name, "swarmgate", F_NONEMPTY, NULL),
    DUR(trace_export_conf_t, "slow", slow_ms, "1s", 0, SEC(3600)),
};
static const schema_t export_schema = {SCHEMA(export_fields), 0, NULL, NULL, false, 0};

static const field_t trace_fields[] = {
    STR(sg_trace_conf_t, "header", header, "X-Trace-Id", 0, check_header_name),
    STRLIST(sg_trace_conf_t, "accept_headers", accept_headers, n_accept_headers, 0, check_header_name),
    BOOL(sg_trace_conf_t, "traceparent", traceparent, "true"),
    OBJ(sg_trace_conf_t, "export", export, export_schema),
};
static const schema_t trace_schema = {SCHEMA(trace_fields), 0, NULL, NULL, false, 0};

/* ------------------------------------------------------------------------ */
/* metrics                                                                   */

static const double request_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};
static const double transition_buckets[] = {1,    5,    15,    30,    60,    300,   900,    1800,
                                            3600, 7200, 14400, 28800, 43200, 86400, 172800, 604800};
static const double db_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static int metrics_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_metrics_conf_t *m = obj;
    if (m->error_rate_resolution_ms > m->error_rate_window_ms ||
        m->error_rate_window_ms / m->error_rate_resolution_ms > 100000) {
        size_t old = path_key(c, "error_rate_resolution");
        int rc = fail(c, key_loc(n, "error_rate_resolution", at),
                      "must be at most error_rate_window and at least 1/100000 of it");
        path_pop(c, old);
        return rc;
    }
    return 0;
}

static const field_t metrics_fields[] = {
    DUR(sg_metrics_conf_t, "error_rate_window", error_rate_window_ms, "5m", SEC(1), SEC(86400)),
    DUR(sg_metrics_conf_t, "error_rate_resolution", error_rate_resolution_ms, "1s", MS(10), SEC(3600)),
    BUCKETS(sg_metrics_conf_t, "request_buckets", request_buckets, request_buckets),
    {.key = "upstream_buckets", .type = FT_BUCKETS, .off = offsetof(sg_metrics_conf_t, upstream_buckets)},
    BUCKETS(sg_metrics_conf_t, "transition_buckets", transition_buckets, transition_buckets),
    BUCKETS(sg_metrics_conf_t, "db_buckets", db_buckets, db_buckets),
    BOOL(sg_metrics_conf_t, "exemplars", exemplars, "true"),
};
static const schema_t metrics_schema = {SCHEMA(metrics_fields), 0, NULL, metrics_done, false, 0};

/* ------------------------------------------------------------------------ */
/* postgres                                                                  */

/* Metric names swarmgate itself exposes (DESIGN.md section 5), which a
 * configured query must not take; the default queries' names are added when
 * default_queries is on. */
static const char *const builtin_metrics[] = {
    "swarm_state_transition_duration_seconds",
    "swarm_db_up",
    "swarm_db_query_duration_seconds",
    "swarm_db_query_errors_total",
    "swarm_db_last_success_timestamp_seconds",
    "swarm_db_query_up",
    "swarm_db_query_timeouts_total",
    "swarm_db_refresh_skipped_total",
    "swarm_db_connect_errors_total",
    "swarm_db_poller_leader",
    "swarm_error_rate",
    "swarm_upstream_error_rate",
    "swarm_http_requests_total",
    "swarm_http_request_duration_seconds",
    "swarm_upstream_response_duration_seconds",
    "swarm_http_requests_in_flight",
    "swarm_http_connections_active",
    "swarm_upstream_connect_errors_total",
    "swarm_upstream_timeouts_total",
    "swarm_upstream_server_up",
    "swarm_trace_ids_total",
    "swarm_spans_exported_total",
    "swarm_spans_dropped_total",
    "swarmgate_build_info",
};
/* The default queries' names: a configured query with one of these names
 * replaces that default (docs/postgres.md, "Your schema differs"). */
static const char *const default_query_metrics[] = {
    "swarm_tickets_total",
    "swarm_tickets_stuck",
    "swarm_tickets_processed_total",
    "swarm_circuit_breaker_state",
    "swarm_circuit_breaker_state_changed_timestamp_seconds",
    "swarm_vm_active",
    "swarm_vm_max",
};

static const field_t zero_fill_fields[] = {
    STR(sg_zero_fill_t, "label", label, NULL, F_REQ, check_label_name),
    STRLIST(sg_zero_fill_t, "values", values, n_values, F_REQ | F_NONEMPTY, NULL),
};
static const schema_t zero_fill_schema = {SCHEMA(zero_fill_fields), sizeof(sg_zero_fill_t), NULL, NULL, false, 0};

static bool is_default_query(const char *name)
{
    for (size_t j = 0; j < SG_ARRAY_SIZE(default_query_metrics); j++)
        if (strcmp(name, default_query_metrics[j]) == 0)
            return true;
    return false;
}

/* `enabled: false` switches a built-in query off (C field is_disabled, so
 * that a zeroed struct is an enabled query). */
static int query_enabled(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    SG_UNUSED(f);
    sg_pg_query_conf_t *q = base;
    const char *s;
    bool b;
    if (get_scalar(c, n, "true or false", &s) < 0)
        return -1;
    if (parse_bool(s, &b) < 0)
        return bad_value(c, n, s, "true or false");
    q->is_disabled = !b;
    return 0;
}

static int query_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_pg_query_conf_t *q = obj;
    size_t old;
    int rc = 0;
    if (q->is_disabled && !is_default_query(q->name)) {
        old = path_key(c, "enabled");
        rc = fail(c, key_loc(n, "enabled", at),
                  "only a built-in query can be switched off (\"%s\" is not one); remove the query instead", q->name);
        path_pop(c, old);
        return rc;
    }
    if (!q->is_disabled && !q->sql) {
        old = path_key(c, "sql");
        const sg__cpair_t *sp = sg__cnode_get(n, "sql");
        rc = sp ? fail(c, node_loc(sp->val, at), "a value is required here") : fail(c, at, "missing required key");
        path_pop(c, old);
        return rc;
    }
    const sg__cpair_t *lp = sg__cnode_get(n, "labels");
    for (size_t i = 1; i < q->n_labels; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(q->labels[i], q->labels[j]) == 0) {
                old = path_key(c, "labels");
                size_t o2 = path_idx(c, i);
                loc_t l = (lp && lp->val->kind == SG__CNODE_SEQ) ? node_loc(lp->val->items[i], at) : at;
                rc = fail(c, l, "duplicate label \"%s\"", q->labels[i]);
                path_pop(c, o2);
                path_pop(c, old);
                return rc;
            }
    for (size_t i = 0; i < q->n_labels; i++)
        if (strcmp(q->labels[i], q->value) == 0) {
            old = path_key(c, "value");
            rc = fail(c, key_loc(n, "value", at), "the value column \"%s\" is also a label", q->value);
            path_pop(c, old);
            return rc;
        }
    const sg__cpair_t *zp = sg__cnode_get(n, "zero_fill");
    for (size_t i = 0; i < q->n_zero_fill; i++) {
        bool found = false;
        for (size_t j = 0; j < q->n_labels; j++)
            found |= strcmp(q->zero_fill[i].label, q->labels[j]) == 0;
        if (!found) {
            old = path_key(c, "zero_fill");
            size_t o2 = path_idx(c, i);
            size_t o3 = path_key(c, "label");
            const sg__cnode_t *zn = zp && zp->val->kind == SG__CNODE_SEQ ? zp->val->items[i] : NULL;
            rc = fail(c, key_loc(zn, "label", at), "\"%s\" is not one of this query's labels", q->zero_fill[i].label);
            path_pop(c, o3);
            path_pop(c, o2);
            path_pop(c, old);
            return rc;
        }
    }
    for (size_t i = 0; i < SG_ARRAY_SIZE(builtin_metrics); i++)
        if (strcmp(q->name, builtin_metrics[i]) == 0) {
            old = path_key(c, "name");
            rc = fail(c, key_loc(n, "name", at), "\"%s\" is a metric swarmgate already exports", q->name);
            path_pop(c, old);
            return rc;
        }
    return 0;
}

static const field_t query_fields[] = {
    STR(sg_pg_query_conf_t, "name", name, NULL, F_REQ, check_metric_name),
    STR(sg_pg_query_conf_t, "help", help, NULL, 0, NULL),
    ENUM(sg_pg_query_conf_t, "type", type, "gauge", pg_metric_types),
    STR(sg_pg_query_conf_t, "sql", sql, NULL, 0, check_nonblank),
    CUSTOM("enabled", query_enabled, 0, NULL),
    STRLIST(sg_pg_query_conf_t, "labels", labels, n_labels, 0, check_label_name),
    STR(sg_pg_query_conf_t, "value", value, "value", 0, check_column),
    DUR(sg_pg_query_conf_t, "interval", interval_ms, "0", 0, SEC(86400)),
    LIST(sg_pg_query_conf_t, "zero_fill", zero_fill, n_zero_fill, zero_fill_schema),
};
static const schema_t query_schema = {
    SCHEMA(query_fields), sizeof(sg_pg_query_conf_t), NULL, query_done, true, offsetof(sg_pg_query_conf_t, name)};

typedef struct pg_transitions_conf {
    bool enabled;
    const char *sql;
    uint32_t batch;
} pg_transitions_conf_t;
_Static_assert(sizeof(pg_transitions_conf_t) == sizeof(((sg_pg_conf_t *)0)->transitions), "transitions layout");

static const field_t transitions_fields[] = {
    BOOL(pg_transitions_conf_t, "enabled", enabled, "true"),
    STR(pg_transitions_conf_t, "sql", sql, NULL, 0, check_nonblank),
    U32(pg_transitions_conf_t, "batch", batch, "1000", 1, 100000),
};
static const schema_t transitions_schema = {SCHEMA(transitions_fields), 0, NULL, NULL, false, 0};

static int pg_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_pg_conf_t *pg = obj;
    size_t old;
    int rc;
    if (pg->conninfo && !*pg->conninfo)
        pg->conninfo = NULL;
    if (pg->required && !pg->conninfo) {
        old = path_key(c, "required");
        rc = fail(c, key_loc(n, "required", at), "is true but postgres.conninfo is empty");
        path_pop(c, old);
        return rc;
    }
    if (pg->stale_after_ms == 0)
        pg->stale_after_ms = pg->interval_ms * 3;
    /* A query named like a default replaces it, so it must be one: with
     * default_queries off there is nothing to switch off. */
    const sg__cpair_t *qp = sg__cnode_get(n, "queries");
    for (size_t i = 0; i < pg->n_queries; i++)
        if (pg->queries[i].is_disabled && !pg->default_queries) {
            old = path_key(c, "queries");
            size_t o2 = path_idx(c, i);
            size_t o3 = path_key(c, "enabled");
            rc = fail(c, key_loc(qp->val->items[i], "enabled", at),
                      "default_queries is false: there is no built-in \"%s\" to switch off", pg->queries[i].name);
            path_pop(c, o3);
            path_pop(c, o2);
            path_pop(c, old);
            return rc;
        }
    return 0;
}

static const field_t pg_fields[] = {
    STR(sg_pg_conf_t, "conninfo", conninfo, NULL, 0, NULL),
    DUR(sg_pg_conf_t, "interval", interval_ms, "15s", SEC(1), SEC(86400)),
    BOOL(sg_pg_conf_t, "required", required, "false"),
    DUR(sg_pg_conf_t, "statement_timeout", statement_timeout_ms, "5s", MS(1), SEC(3600)),
    DUR(sg_pg_conf_t, "connect_timeout", connect_timeout_ms, "5s", SEC(1), SEC(3600)),
    DUR(sg_pg_conf_t, "stale_after", stale_after_ms, NULL, SEC(1), SEC(3 * 86400)),
    DUR(sg_pg_conf_t, "stuck_after", stuck_after_ms, "1h", SEC(1), DMAX),
    BOOL(sg_pg_conf_t, "default_queries", default_queries, "true"),
    LIST(sg_pg_conf_t, "queries", queries, n_queries, query_schema),
    OBJ(sg_pg_conf_t, "transitions", transitions, transitions_schema),
    STR(sg_pg_conf_t, "transitions_start_sql", transitions_start_sql, NULL, 0, check_nonblank),
    DUR(sg_pg_conf_t, "reconnect_min", reconnect_min_ms, "250ms", MS(10), SEC(3600)),
    DUR(sg_pg_conf_t, "reconnect_max", reconnect_max_ms, "30s", MS(10), SEC(3600)),
    BOOL(sg_pg_conf_t, "leader_lock", leader_lock, "true"),
};
static const schema_t pg_schema = {SCHEMA(pg_fields), 0, NULL, pg_done, false, 0};

/* ------------------------------------------------------------------------ */
/* egress                                                                    */

typedef struct egress_map {
    const char *host;
    const char *cidr;
    const char *port;
} egress_map_t;

static const field_t egress_rule_fields[] = {
    STR(egress_map_t, "host", host, NULL, F_NONEMPTY, NULL),
    STR(egress_map_t, "cidr", cidr, NULL, F_NONEMPTY, NULL),
    STR(egress_map_t, "port", port, NULL, F_NONEMPTY, NULL),
};
static const schema_t egress_rule_schema = {SCHEMA(egress_rule_fields), sizeof(egress_map_t), NULL, NULL, false, 0};

/* "443", "*" (any). Returns 0 and *port (0 = any), or -1. */
static int parse_rule_port(const char *s, uint16_t *port)
{
    if (strcmp(s, "*") == 0) {
        *port = 0;
        return 0;
    }
    int64_t v;
    if (parse_int(s, &v) < 0 || v < 1 || v > 65535 || s[0] == '-')
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* "10.0.0.0/8", "fd00::/8". Host bits must be clear. */
static const char *parse_cidr(const char *s, sg_egress_rule_t *r)
{
    const char *slash = strchr(s, '/');
    char addr[64];
    if (!slash || (size_t)(slash - s) >= sizeof(addr))
        return "a CIDR such as 10.0.0.0/8 or fd00::/8";
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    int64_t plen;
    if (parse_int(slash + 1, &plen) < 0 || slash[1] == '-')
        return "a CIDR such as 10.0.0.0/8 or fd00::/8 (prefix length is a number)";
    unsigned char bin[16];
    unsigned bits;
    memset(&r->net, 0, sizeof(r->net));
    if (inet_pton(AF_INET, addr, bin) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&r->net;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, bin, 4);
        bits = 32;
    } else if (inet_pton(AF_INET6, addr, bin) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&r->net;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, bin, 16);
        bits = 128;
    } else {
        return "a CIDR such as 10.0.0.0/8 or fd00::/8 (bad address)";
    }
    if (plen < 0 || plen > (int64_t)bits)
        return bits == 32 ? "a CIDR with a prefix length from 0 to 32" : "a CIDR with a prefix length from 0 to 128";
    for (unsigned i = (unsigned)plen; i < bits; i++)
        if (bin[i / 8] & (0x80u >> (i % 8)))
            return "a CIDR without host bits set (such as 10.0.0.0/8)";
    r->has_cidr = true;
    r->prefix_len = (unsigned)plen;
    return NULL;
}

/* An IP literal host becomes a full-length CIDR: rules are checked on the
 * resolved address. */
static bool ip_literal_rule(const char *h, sg_egress_rule_t *r)
{
    char buf[320];
    unsigned char bin[16];
    bool v6 = inet_pton(AF_INET6, h, bin) == 1;
    if (!v6 && inet_pton(AF_INET, h, bin) != 1)
        return false;
    snprintf(buf, sizeof(buf), "%s/%u", h, v6 ? 128u : 32u);
    return parse_cidr(buf, r) == NULL;
}

static const char *rule_host(ctx_t *c, const char *h, size_t hlen, sg_egress_rule_t *r)
{
    char buf[260];
    if (hlen == 0 || hlen >= sizeof(buf))
        return "a host, *.suffix, IP address or CIDR";
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    if (ip_literal_rule(buf, r))
        return NULL;
    const char *name = buf[0] == '*' && buf[1] == '.' ? buf + 2 : buf;
    if (!hostname_ok(name))
        return "a host name, *.suffix, IP address or CIDR";
    for (char *p = buf; *p; p++)
        *p = sg_ascii_lower(*p);
    r->host = sg_arena_strdup(&c->cfg->arena, buf);
    return r->host ? NULL : "memory";
}

/* The string forms: host, host:port, *.suffix[:port], IPv4[:port], [IPv6][:port],
 * bare IPv6, CIDR[:port] (IPv6 CIDRs too: fd00::/8:443), port "*" = any. */
static const char *parse_rule_text(ctx_t *c, const char *s, sg_egress_rule_t *r)
{
    static const char *const port_why = "a port from 1 to 65535 or *";
    const char *slash = strchr(s, '/');
    if (slash) {
        char buf[80];
        const char *after = slash + 1 + strspn(slash + 1, "0123456789");
        const char *start = s, *end = after;
        if (s[0] == '[') { /* [fd00::/8]:443 */
            if (after[0] != ']')
                return "a CIDR such as [fd00::/8]:443";
            start = s + 1;
            after++;
        }
        if ((size_t)(end - start) >= sizeof(buf))
            return "a CIDR such as 10.0.0.0/8";
        memcpy(buf, start, (size_t)(end - start));
        buf[end - start] = '\0';
        const char *why = parse_cidr(buf, r);
        if (why)
            return why;
        if (*after == ':')
            return parse_rule_port(after + 1, &r->port) < 0 ? port_why : NULL;
        return *after ? "a CIDR such as 10.0.0.0/8 or 10.0.0.0/8:443" : NULL;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb)
            return "[IPv6] or [IPv6]:port";
        char buf[64];
        unsigned char bin[16];
        size_t hl = (size_t)(rb - s - 1);
        if (hl >= sizeof(buf))
            return "[IPv6] or [IPv6]:port";
        memcpy(buf, s + 1, hl);
        buf[hl] = '\0';
        if (inet_pton(AF_INET6, buf, bin) != 1 || !ip_literal_rule(buf, r))
            return "[IPv6] or [IPv6]:port with a valid IPv6 address";
        if (rb[1] == ':')
            return parse_rule_port(rb + 2, &r->port) < 0 ? port_why : NULL;
        return rb[1] ? "[IPv6] or [IPv6]:port" : NULL;
    }
    const char *colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':')) /* a bare IPv6 address, any port */
        return ip_literal_rule(s, r) ? NULL : "an IPv6 address (in brackets when a port follows)";
    if (colon && parse_rule_port(colon + 1, &r->port) < 0)
        return port_why;
    return rule_host(c, s, colon ? (size_t)(colon - s) : strlen(s), r);
}

static int egress_allow(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    sg_egress_conf_t *eg = base;
    if (n->kind != SG__CNODE_SEQ)
        return fail(c, node_loc(n, (loc_t){0, 0}), "expected a list of allowed destinations, got %s", kind_name(n));
    sg_egress_rule_t *rules = n->n_items ? sg_arena_zalloc(&c->cfg->arena, n->n_items * sizeof(*rules)) : NULL;
    if (n->n_items && !rules)
        return fail(c, node_loc(n, (loc_t){0, 0}), "out of memory");
    for (size_t i = 0; i < n->n_items; i++) {
        const sg__cnode_t *it = n->items[i];
        sg_egress_rule_t *r = &rules[i];
        size_t old = path_idx(c, i);
        const char *why;
        if (it->kind == SG__CNODE_MAP) {
            egress_map_t m = {0};
            if (parse_obj(c, it, node_loc(it, (loc_t){0, 0}), &egress_rule_schema, &m, i) < 0)
                return -1;
            if (!m.host == !m.cidr)
                return fail(c, node_loc(it, (loc_t){0, 0}), "expected exactly one of host or cidr");
            const char *k = m.host ? "host" : "cidr";
            size_t o2 = path_key(c, k);
            why = m.host ? rule_host(c, m.host, strlen(m.host), r) : parse_cidr(m.cidr, r);
            if (why)
                return bad_value(c, sg__cnode_get(it, k)->val, m.host ? m.host : m.cidr, why);
            path_pop(c, o2);
            if (m.port && parse_rule_port(m.port, &r->port) < 0) {
                path_key(c, "port");
                return bad_value(c, sg__cnode_get(it, "port")->val, m.port, "a port from 1 to 65535 or *");
            }
            char text[300];
            snprintf(text, sizeof(text), "%s%s%s", m.host ? m.host : m.cidr, m.port ? ":" : "", m.port ? m.port : "");
            r->text = sg_arena_strdup(&c->cfg->arena, text);
        } else {
            const char *s;
            if (get_scalar(c, it, "a destination such as api.example.com:443", &s) < 0)
                return -1;
            why = parse_rule_text(c, s, r);
            if (why)
                return bad_value(c, it, s, why);
            r->text = s;
        }
        if (!r->text)
            return fail(c, node_loc(it, (loc_t){0, 0}), "out of memory");
        path_pop(c, old);
    }
    eg->allow = rules;
    eg->n_allow = n->n_items;
    return 0;
}

static const field_t egress_user_fields[] = {
    STR(sg_egress_user_t, "name", name, NULL, F_REQ | F_NONEMPTY, check_agent_name),
    STR(sg_egress_user_t, "password", password, NULL, F_REQ | F_NONEMPTY, NULL),
};
static const schema_t egress_user_schema = {SCHEMA(egress_user_fields),      sizeof(sg_egress_user_t), NULL, NULL, true,
                                            offsetof(sg_egress_user_t, name)};

static const field_t egress_rate_fields[] = {
    DBL(sg_egress_rate_conf_t, "requests_per_second", requests_per_second, "0", 0, 1e6),
    U32(sg_egress_rate_conf_t, "burst", burst, "0", 0, 1000000),
};

static int egress_rate_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_egress_rate_conf_t *r = obj;
    if (r->requests_per_second > 0 && r->burst == 0) /* a second's worth, at least one request */
        r->burst = (uint32_t)SG_MAX(1.0, ceil(r->requests_per_second));
    return 0;
}
static const schema_t egress_rate_schema = {SCHEMA(egress_rate_fields), 0, NULL, egress_rate_done, false, 0};

/* egress.users_file: one "name:password" a line (the password is the rest
 * of the line); blank lines and lines starting with # are skipped. Like a
 * TLS key, the file must not be readable or writable by group or others.
 * Its entries follow egress.users; a name may appear once in both. */
static int users_file_load(ctx_t *c, const sg__cnode_t *n, loc_t at, sg_egress_conf_t *eg)
{
    size_t old = path_key(c, "users_file");
    loc_t fl = key_loc(n, "users_file", at);
    const char *path = eg->users_file;
    int rc = -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = fail(c, fl, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 066)) {
        rc = fail(c, fl, "%s is readable or writable by group or others (it holds passwords: chmod 600 it)", path);
        goto close;
    }
    size_t cap = eg->n_users + 16, cnt = eg->n_users;
    sg_egress_user_t *users = sg_arena_zalloc(&c->cfg->arena, cap * sizeof(*users));
    if (!users) {
        rc = fail(c, fl, "out of memory");
        goto close;
    }
    if (cnt)
        memcpy(users, eg->users, cnt * sizeof(*users));
    char line[1024];
    size_t lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            rc = fail(c, fl, "%s:%zu: line longer than %zu bytes", path, lineno, sizeof(line) - 2);
            goto close;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || !colon[1]) {
            rc = fail(c, fl, "%s:%zu: expected name:password", path, lineno);
            goto close;
        }
        *colon = '\0';
        const char *why = check_agent_name(line);
        if (why) {
            char q[96];
            rc = fail(c, fl, "%s:%zu: %s, got %s", path, lineno, why, quoted(line, q, sizeof(q)));
            goto close;
        }
        for (size_t j = 0; j < cnt; j++)
            if (strcmp(users[j].name, line) == 0) {
                rc = fail(c, fl, "%s:%zu: duplicate user \"%s\" (also %s)", path, lineno, line,
                          j < eg->n_users ? "in egress.users" : "earlier in the file");
                goto close;
            }
        if (cnt == cap) {
            sg_egress_user_t *more = sg_arena_zalloc(&c->cfg->arena, 2 * cap * sizeof(*users));
            if (!more) {
                rc = fail(c, fl, "out of memory");
                goto close;
            }
            memcpy(more, users, cnt * sizeof(*users));
            users = more;
            cap *= 2;
        }
        users[cnt].name = sg_arena_strdup(&c->cfg->arena, line);
        users[cnt].password = sg_arena_strdup(&c->cfg->arena, colon + 1);
        if (!users[cnt].name || !users[cnt].password) {
            rc = fail(c, fl, "out of memory");
            goto close;
        }
        cnt++;
    }
    if (ferror(f)) {
        rc = fail(c, fl, "cannot read %s: %s", path, strerror(errno));
        goto close;
    }
    eg->users = users;
    eg->n_users = cnt;
    rc = 0;
close:
    fclose(f);
out:
    path_pop(c, old);
    return rc;
}

static int egress_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_egress_conf_t *eg = obj;
    if (!eg->auth_user != !eg->auth_password) {
        const char *k = eg->auth_user ? "auth_user" : "auth_password";
        size_t old = path_key(c, k);
        int rc = fail(c, key_loc(n, k, at), "auth_user and auth_password must be set together");
        path_pop(c, old);
        return rc;
    }
    if (eg->users_file) {
        eg->users_file = resolve_path(c, eg->users_file);
        if (users_file_load(c, n, at, eg) < 0)
            return -1;
    }
    /* The shared credential (auth_user) names no agent: a user of the same
     * name would make the agent depend on which password was sent. */
    for (size_t i = 0; eg->auth_user && i < eg->n_users; i++)
        if (strcmp(eg->users[i].name, eg->auth_user) == 0) {
            size_t old = path_key(c, "auth_user");
            int rc = fail(c, key_loc(n, "auth_user", at), "\"%s\" is also an agent in egress.users%s", eg->auth_user,
                          eg->users_file ? " or egress.users_file" : "");
            path_pop(c, old);
            return rc;
        }
    return 0;
}

static const field_t egress_fields[] = {
    CUSTOM("allow", egress_allow, F_DOC_LIST, &egress_rule_schema),
    STR(sg_egress_conf_t, "auth_user", auth_user, NULL, F_NONEMPTY, NULL),
    STR(sg_egress_conf_t, "auth_password", auth_password, NULL, 0, NULL),
    DUR(sg_egress_conf_t, "dns_ttl", dns_ttl_ms, "30s", 0, SEC(86400)),
    U32(sg_egress_conf_t, "keepalive", keepalive, "100000", 0, 100000), /* as upstreams (#18) */
    DUR(sg_egress_conf_t, "keepalive_timeout", keepalive_timeout_ms, "30s", MS(1), DMAX),
    DUR(sg_egress_conf_t, "connect_timeout", connect_timeout_ms, "10s", MS(1), DMAX),
    DUR(sg_egress_conf_t, "response_timeout", response_timeout_ms, "300s", MS(1), DMAX),
    DUR(sg_egress_conf_t, "read_timeout", read_timeout_ms, "300s", MS(1), DMAX),
    DUR(sg_egress_conf_t, "tunnel_idle_timeout", tunnel_idle_timeout_ms, "1h", MS(1), DMAX),
    LIST(sg_egress_conf_t, "users", users, n_users, egress_user_schema),
    STR(sg_egress_conf_t, "users_file", users_file, NULL, F_NONEMPTY, NULL),
    STR(sg_egress_conf_t, "agent_header", agent_header, "X-Agent-Id", F_NONEMPTY, check_agent_header),
    U32(sg_egress_conf_t, "max_agents", max_agents, "256", 1, 4096),
    OBJ(sg_egress_conf_t, "rate_limit", rate_limit, egress_rate_schema),
    OBJ(sg_egress_conf_t, "tls", tls, tls_client_schema),
};
static const schema_t egress_schema = {SCHEMA(egress_fields), 0, NULL, egress_done, false, 0};

/* ------------------------------------------------------------------------ */
/* log, limits, shutdown                                                     */

static const field_t log_fields[] = {
    STR(sg_log_conf_t, "access", access, "stdout", 0, check_log_target),
    STR(sg_log_conf_t, "error", error, "stderr", 0, check_error_log_target),
    ENUM(sg_log_conf_t, "level", level, "info", log_levels),
    ENUM(sg_log_conf_t, "format", format, "auto", log_formats),
    SIZE32(sg_log_conf_t, "ring_bytes", ring_bytes, "1m", KIB(4), MIB(1024)),
    DUR(sg_log_conf_t, "flush_interval", flush_interval_ms, "100ms", MS(1), SEC(10)),
};
static const schema_t log_schema = {SCHEMA(log_fields), 0, NULL, NULL, false, 0};

static const field_t limits_fields[] = {
    U32(sg_limits_conf_t, "max_connections", max_connections, "10000", 1, 1000000),
    SIZE32(sg_limits_conf_t, "request_line_bytes", request_line_bytes, "16k", 256, MIB(1)),
    SIZE32(sg_limits_conf_t, "header_bytes", header_bytes, "64k", KIB(1), MIB(1)),
    U32(sg_limits_conf_t, "header_count", header_count, "100", 1, 10000),
    SIZE64(sg_limits_conf_t, "body_bytes", body_bytes, "0", 0, 1099511627776.0 * 1024),
    DUR(sg_limits_conf_t, "client_header_timeout", client_header_timeout_ms, "30s", MS(1), DMAX),
    DUR(sg_limits_conf_t, "keepalive_timeout", keepalive_timeout_ms, "75s", MS(1), DMAX),
    DUR(sg_limits_conf_t, "client_body_timeout", client_body_timeout_ms, "60s", MS(1), DMAX),
    DUR(sg_limits_conf_t, "send_timeout", send_timeout_ms, "60s", MS(1), DMAX),
    DUR(sg_limits_conf_t, "tunnel_idle_timeout", tunnel_idle_timeout_ms, "1h", MS(1), DMAX),
    SIZE32(sg_limits_conf_t, "buffer_bytes", buffer_bytes, "256k", KIB(16), MIB(1024)),
    ENUM(sg_limits_conf_t, "underscores_in_headers", underscores_in_headers, "drop", underscore_modes),
};
static const schema_t limits_schema = {SCHEMA(limits_fields), 0, NULL, NULL, false, 0};

static const field_t shutdown_fields[] = {
    DUR(sg_shutdown_conf_t, "drain_delay", drain_delay_ms, "5s", 0, SEC(3600)),
    DUR(sg_shutdown_conf_t, "drain_timeout", drain_timeout_ms, "30s", 0, SEC(86400)),
};
static const schema_t shutdown_schema = {SCHEMA(shutdown_fields), 0, NULL, NULL, false, 0};

static const field_t tls_global_fields[] = {
    DUR(sg_tls_global_conf_t, "ticket_key_rotation", ticket_key_rotation_ms, "1h", SEC(1), SEC(7 * 86400)),
};
static const schema_t tls_global_schema = {SCHEMA(tls_global_fields), 0, NULL, NULL, false, 0};

/* ------------------------------------------------------------------------ */
/* top level                                                                 */

static uint32_t cpu_count(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return (uint32_t)SG_MIN(n, MAX_WORKERS);
}

static int top_workers(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    sg_config_t *cfg = base;
    const char *s;
    int64_t v;
    if (get_scalar(c, n, "auto or a number from 1 to 256", &s) < 0)
        return -1;
    if (strcmp(s, "auto") == 0) {
        cfg->workers = 0;
        return 0;
    }
    if (parse_int(s, &v) < 0 || v < 1 || v > MAX_WORKERS)
        return bad_value(c, n, s, "auto or a number from 1 to 256");
    cfg->workers = (uint32_t)v;
    return 0;
}

/* busy_poll: off, or the spin window as "<n>us" or "<n>ms" (1 us .. 10 ms). */
static int top_busy_poll(ctx_t *c, const sg__cnode_t *n, void *base, const field_t *f)
{
    SG_UNUSED(f);
    static const char expected[] = "off, or a window from 1us to 10ms (\"50us\", \"1ms\")";
    sg_config_t *cfg = base;
    const char *s;
    if (get_scalar(c, n, expected, &s) < 0)
        return -1;
    if (strcmp(s, "off") == 0) {
        cfg->busy_poll_us = 0;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (v == 0 || errno != 0)
        return bad_value(c, n, s, expected);
    if (strcmp(end, "ms") == 0 && v <= 10)
        v *= 1000;
    else if (strcmp(end, "us") != 0 || v > 10000)
        return bad_value(c, n, s, expected);
    cfg->busy_poll_us = (uint32_t)v;
    return 0;
}

static bool same_addr(const sg_hostport_t *a, const sg_hostport_t *b)
{
    if (a->port == 0 || a->port != b->port)
        return false;
    /* Any-address binds conflict with every address of their family. */
    return strcmp(a->host, b->host) == 0 || (a->is_ipv6_literal == b->is_ipv6_literal &&
                                             (strcmp(a->host, "0.0.0.0") == 0 || strcmp(b->host, "0.0.0.0") == 0 ||
                                              strcmp(a->host, "::") == 0 || strcmp(b->host, "::") == 0));
}

static int top_done(ctx_t *c, const sg__cnode_t *n, loc_t at, void *obj, size_t idx)
{
    sg_config_t *cfg = obj;
    const sg__cpair_t *lp = sg__cnode_get(n, "listeners");
    if (cfg->n_listeners == 0) {
        path_set(c, "listeners");
        return fail(c, lp ? node_loc(lp->val, at) : at, "at least one listener is required");
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const sg_hostport_t *ai = &cfg->listeners[i].addr;
        for (size_t j = 0; j < i; j++)
            if (same_addr(ai, &cfg->listeners[j].addr)) {
                path_set(c, "listeners[%zu].address", i);
                return fail(c, key_loc(lp->val->items[i], "address", at), "address already used by listeners[%zu]", j);
            }
        if (cfg->admin.enabled && same_addr(ai, &cfg->admin.addr)) {
            path_set(c, "listeners[%zu].address", i);
            return fail(c, key_loc(lp->val->items[i], "address", at), "address already used by admin.address");
        }
    }
    if (cfg->workers == 0)
        cfg->workers = cpu_count();
    if (cfg->metrics.upstream_buckets.n == 0) {
        path_set(c, "metrics.upstream_buckets");
        if (set_buckets_from(c, &cfg->metrics.upstream_buckets, cfg->metrics.request_buckets.bounds,
                             cfg->metrics.request_buckets.n) < 0)
            return -1;
    }
    return 0;
}

/* Upstreams come before routes: route_done resolves names against them. */
static const field_t top_fields[] = {
    CUSTOM("workers", top_workers, 0, NULL),
    CUSTOM("busy_poll", top_busy_poll, 0, NULL),
    LIST(sg_config_t, "listeners", listeners, n_listeners, listener_schema),
    OBJ(sg_config_t, "admin", admin, admin_schema),
    MAP(sg_config_t, "upstreams", upstreams, n_upstreams, upstream_schema),
    LIST(sg_config_t, "routes", routes, n_routes, route_schema),
    OBJ(sg_config_t, "trace", trace, trace_schema),
    OBJ(sg_config_t, "metrics", metrics, metrics_schema),
    OBJ(sg_config_t, "postgres", postgres, pg_schema),
    OBJ(sg_config_t, "egress", egress, egress_schema),
    OBJ(sg_config_t, "log", log, log_schema),
    OBJ(sg_config_t, "limits", limits, limits_schema),
    OBJ(sg_config_t, "tls", tls, tls_global_schema),
    OBJ(sg_config_t, "shutdown", shutdown, shutdown_schema),
};
static const schema_t top_schema = {SCHEMA(top_fields), 0, NULL, top_done, false, 0};

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

/* ---- section fingerprints ------------------------------------------------ */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t node_fp(uint64_t h, const sg__cnode_t *n, int depth)
{
    if (!n || depth > 64)
        return fnv(h, "~", 1);
    unsigned char k = (unsigned char)n->kind;
    h = fnv(h, &k, 1);
    switch (n->kind) {
    case SG__CNODE_SCALAR:
        h = fnv(h, &n->len, sizeof(n->len));
        h = fnv(h, n->str, n->len);
        return fnv(h, n->is_plain ? "p" : "q", 1);
    case SG__CNODE_SEQ:
        h = fnv(h, &n->n_items, sizeof(n->n_items));
        for (size_t i = 0; i < n->n_items; i++)
            h = node_fp(h, n->items[i], depth + 1);
        return h;
    case SG__CNODE_MAP:
        h = fnv(h, &n->n_pairs, sizeof(n->n_pairs));
        for (size_t i = 0; i < n->n_pairs; i++) {
            h = fnv(h, n->pairs[i].key, strlen(n->pairs[i].key) + 1);
            h = node_fp(h, n->pairs[i].val, depth + 1);
        }
        return h;
    default:
        return h;
    }
}

static const sg__cnode_t *map_get(const sg__cnode_t *n, const char *key)
{
    if (!n || n->kind != SG__CNODE_MAP)
        return NULL;
    for (size_t i = 0; i < n->n_pairs; i++)
        if (strcmp(n->pairs[i].key, key) == 0)
            return n->pairs[i].val;
    return NULL;
}

static uint64_t section_fp(const sg__cnode_t *n)
{
    return n ? node_fp(0xcbf29ce484222325ull, n, 0) : 0;
}

/* The messages of errs in file order (stable: equal places keep the order found). */
static void sort_errors(sg_config_errors_t *e)
{
    for (size_t i = 1; i < e->n; i++)
        for (size_t j = i; j > 0; j--) {
            uint64_t a = (uint64_t)e->msg[j - 1].line << 32 | e->msg[j - 1].col;
            uint64_t b = (uint64_t)e->msg[j].line << 32 | e->msg[j].col;
            if (a <= b)
                break;
            char tmp[sizeof(e->msg[0])];
            memcpy(tmp, &e->msg[j], sizeof(tmp));
            memcpy(&e->msg[j], &e->msg[j - 1], sizeof(tmp));
            memcpy(&e->msg[j - 1], tmp, sizeof(tmp));
        }
}

static int load_string(const char *name, const char *yaml, size_t len, sg_config_t **out, char *err, size_t errlen,
                       sg_config_errors_t *errs)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;
    ctx_t c = {.file = name, .err = err, .errlen = errlen, .errs = errs};
    sg_config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        snprintf(err, errlen, "%s:1:1: (root): out of memory", name);
        note(&c, 1, 1, err);
        return -1;
    }
    c.cfg = cfg;
    sg_arena_init(&cfg->arena, 16384);
    atomic_init(&cfg->refcount, 1);
    sg_arena_t tmp;
    sg_arena_init(&tmp, 65536);
    sg__cnode_t *root = NULL;
    if (sg__config_yaml_parse(&tmp, name, yaml, len, &root, err, errlen) < 0) {
        note(&c, 0, 0, err); /* a syntax error ends the load: it is the only one */
        goto fail;
    }
    c.root = root;
    cfg->path = sg_arena_strdup(&cfg->arena, name);
    if (!cfg->path) {
        fail(&c, (loc_t){1, 1}, "out of memory");
        goto fail;
    }
    if (root && root->kind != SG__CNODE_MAP && !sg__cnode_is_null(root)) {
        fail(&c, node_loc(root, (loc_t){1, 1}), "expected a mapping of settings, got %s", kind_name(root));
        goto fail;
    }
    if (apply_defaults(&c, &top_schema, cfg) < 0 || parse_obj(&c, root, (loc_t){1, 1}, &top_schema, cfg, 0) < 0 ||
        c.n_errs > 0)
        goto fail;
    cfg->fp_postgres = section_fp(map_get(root, "postgres"));
    cfg->fp_trace_export = section_fp(map_get(map_get(root, "trace"), "export"));
    sg_arena_destroy(&tmp);
    *out = cfg;
    return 0;
fail:
    sg_arena_destroy(&tmp);
    sg_config_free(cfg);
    if (errs)
        sort_errors(errs);
    return -1;
}

int sg_config_load_string(const char *name, const char *yaml, size_t len, sg_config_t **out, char *err, size_t errlen)
{
    return load_string(name, yaml, len, out, err, errlen, NULL);
}

int sg_config_load_string_all(const char *name, const char *yaml, size_t len, sg_config_t **out,
                              sg_config_errors_t *errs)
{
    char err[SG_CONFIG_ERROR_LEN];
    errs->n = errs->n_total = 0;
    return load_string(name, yaml, len, out, err, sizeof(err), errs);
}

static int load_file(const char *path, sg_config_t **out, char *err, size_t errlen, sg_config_errors_t *errs)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int rc = -1;
    if (!buf)
        goto done;
    for (;;) {
        if (len == cap) {
            if (cap >= (64u << 20)) {
                snprintf(err, errlen, "%s: file larger than 64 MiB", path);
                goto done;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                goto oom;
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
                goto done;
            }
            break;
        }
    }
    rc = load_string(path, buf, len, out, err, errlen, errs);
    goto done;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
done:
    free(buf);
    fclose(f);
    return rc;
}

int sg_config_load(const char *path, sg_config_t **out, char *err, size_t errlen)
{
    return load_file(path, out, err, errlen, NULL);
}

int sg_config_load_all(const char *path, sg_config_t **out, sg_config_errors_t *errs)
{
    char err[SG_CONFIG_ERROR_LEN];
    errs->n = errs->n_total = 0;
    int rc = load_file(path, out, err, sizeof(err), errs);
    if (rc < 0 && errs->n_total == 0) { /* the file itself (cannot open, too large): one message */
        errs->n_total = errs->n = 1;
        errs->msg[0].line = errs->msg[0].col = 0;
        snprintf(errs->msg[0].text, sizeof(errs->msg[0].text), "%s", err);
    }
    return rc;
}

void sg_config_free(sg_config_t *cfg)
{
    if (!cfg)
        return;
    sg_arena_destroy(&cfg->arena);
    free(cfg);
}

sg_config_t *sg_config_retain(sg_config_t *cfg)
{
    if (cfg)
        atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);
    return cfg;
}

void sg_config_release(sg_config_t *cfg)
{
    /* acq_rel: the thread that frees sees every other thread's last use. */
    if (cfg && atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_acq_rel) == 1)
        sg_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Schema key listing (docs test)                                            */

#define MAX_SCHEMA_KEYS 384
static const char *schema_keys[MAX_SCHEMA_KEYS];
static size_t n_schema_keys;
static char schema_key_buf[24576];
static size_t schema_key_used;
static pthread_once_t schema_keys_once = PTHREAD_ONCE_INIT;

static void add_key(const char *prefix, const char *key)
{
    int n = snprintf(schema_key_buf + schema_key_used, sizeof(schema_key_buf) - schema_key_used, "%s%s", prefix, key);
    if (n < 0 || (size_t)n >= sizeof(schema_key_buf) - schema_key_used || n_schema_keys == MAX_SCHEMA_KEYS)
        return; /* sized for the schema with room to spare; the docs test would notice a cut */
    schema_keys[n_schema_keys++] = schema_key_buf + schema_key_used;
    schema_key_used += (size_t)n + 1;
}

static void list_schema(const schema_t *s, const char *prefix)
{
    char sub[256];
    for (size_t i = 0; i < s->n_fields; i++) {
        const field_t *f = &s->fields[i];
        add_key(prefix, f->key);
        const char *suffix = NULL;
        if (f->type == FT_OBJ)
            suffix = ".";
        else if (f->type == FT_LIST || (f->type == FT_CUSTOM && (f->flags & F_DOC_LIST)))
            suffix = "[].";
        else if (f->type == FT_MAP)
            suffix = ".<name>.";
        if (suffix && f->sub) {
            snprintf(sub, sizeof(sub), "%s%s%s", prefix, f->key, suffix);
            list_schema(f->sub, sub);
        }
    }
}

static void build_schema_keys(void)
{
    list_schema(&top_schema, "");
}

size_t sg_config_schema_keys(const char **out, size_t cap)
{
    pthread_once(&schema_keys_once, build_schema_keys);
    for (size_t i = 0; i < n_schema_keys && i < cap; i++)
        out[i] = schema_keys[i];
    return n_schema_keys;
}
