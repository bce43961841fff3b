/* The pure part of TLS: label names, server name normalization, the SNI
 * table and ALPN selection. No OpenSSL, no I/O: fuzzed by
 * test/fuzz/fuzz_sni.c against a naive reference. */
#include "sg/tls.h"

#include <errno.h>
#include <stdlib.h>

static const char *const error_names[SG_TLS_E__COUNT] = {
    [SG_TLS_OK] = "success",
    [SG_TLS_E_PROTOCOL_VERSION] = "protocol_version",
    [SG_TLS_E_NO_SHARED_CIPHER] = "no_shared_cipher",
    [SG_TLS_E_NO_ALPN] = "no_application_protocol",
    [SG_TLS_E_HTTP_REQUEST] = "http_request",
    [SG_TLS_E_UNKNOWN_CA] = "unknown_ca",
    [SG_TLS_E_HOSTNAME] = "hostname_mismatch",
    [SG_TLS_E_CERT_EXPIRED] = "certificate_expired",
    [SG_TLS_E_CERT_INVALID] = "certificate_invalid",
    [SG_TLS_E_CERT_REJECTED] = "certificate_rejected",
    [SG_TLS_E_PEER_ALERT] = "peer_alert",
    [SG_TLS_E_PROTOCOL] = "protocol_error",
    [SG_TLS_E_CLOSED] = "closed",
    [SG_TLS_E_TIMEOUT] = "timeout",
    [SG_TLS_E_INTERNAL] = "internal",
};

static const char *const version_names[SG_TLS_VERSION__COUNT] = {
    [SG_TLS_VERSION_NONE] = "none",
    [SG_TLS_VERSION_1_2] = "TLSv1.2",
    [SG_TLS_VERSION_1_3] = "TLSv1.3",
};

const char *sg_tls_error_name(sg_tls_error_t e)
{
    return (unsigned)e < SG_TLS_E__COUNT ? error_names[e] : "?";
}

const char *sg_tls_version_name(sg_tls_version_t v)
{
    return (unsigned)v < SG_TLS_VERSION__COUNT ? version_names[v] : "?";
}

/* ---- names ---------------------------------------------------------------- */

static bool is_label_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

size_t sg_tls_sni_normalize(const char *name, size_t len, char out[SG_TLS_NAME_MAX + 1])
{
    if (!name)
        return 0;
    if (len > 0 && name[len - 1] == '.') /* an absolute name: "example.com." */
        len--;
    if (len == 0 || len > SG_TLS_NAME_MAX)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)sg_ascii_lower(name[i]);
        if (ch == '.') {
            if (label == 0)
                return 0; /* empty label: "a..b", ".a" */
            label = 0;
        } else if (is_label_char(ch)) {
            if (++label > 63)
                return 0;
        } else {
            return 0; /* NUL, space, '*', non-ASCII... */
        }
        out[i] = (char)ch;
    }
    if (label == 0)
        return 0;
    out[len] = '\0';
    return len;
}

/* ---- the table -------------------------------------------------------------- */

struct sg__tls_sni_entry {
    char *name; /* normalized; a wildcard's suffix without "*." */
    size_t len;
    uint32_t cert_idx;
};

typedef struct sg__tls_sni_entry entry_t;

static int entry_cmp_key(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, SG_MIN(alen, blen));
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const entry_t *a = pa, *b = pb;
    int c = entry_cmp_key(a->name, a->len, b->name, b->len);
    if (c != 0)
        return c;
    return a->cert_idx < b->cert_idx ? -1 : a->cert_idx > b->cert_idx ? 1 : 0;
}

void sg_tls_sni_table_free(sg_tls_sni_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->_n_exact; i++)
        free(t->_exact[i].name);
    for (size_t i = 0; i < t->_n_wild; i++)
        free(t->_wild[i].name);
    free(t->_exact);
    free(t->_wild);
    memset(t, 0, sizeof(*t));
}

int sg_tls_sni_table_build(sg_tls_sni_table_t *t, const sg_tls_sni_name_t *names, size_t n)
{
    memset(t, 0, sizeof(*t));
    if (n == 0)
        return 0;
    t->_exact = calloc(n, sizeof(entry_t));
    t->_wild = calloc(n, sizeof(entry_t));
    if (!t->_exact || !t->_wild)
        goto oom;
    char buf[SG_TLS_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        const char *s = names[i].name;
        size_t len = s ? names[i].len : 0;
        bool is_wild = len >= 2 && s[0] == '*' && s[1] == '.';
        size_t nl = is_wild ? sg_tls_sni_normalize(s + 2, len - 2, buf) : sg_tls_sni_normalize(s, len, buf);
        if (nl == 0) {
            t->n_skipped++; /* "f*.example.com", "a.*.com", "", non-ASCII */
            continue;
        }
        entry_t *e = is_wild ? &t->_wild[t->_n_wild] : &t->_exact[t->_n_exact];
        e->name = malloc(nl + 1);
        if (!e->name)
            goto oom;
        memcpy(e->name, buf, nl + 1);
        e->len = nl;
        e->cert_idx = names[i].cert_idx;
        if (is_wild)
            t->_n_wild++;
        else
            t->_n_exact++;
    }
    qsort(t->_exact, t->_n_exact, sizeof(entry_t), entry_cmp);
    qsort(t->_wild, t->_n_wild, sizeof(entry_t), entry_cmp);
    return 0;
oom:
    sg_tls_sni_table_free(t);
    return -ENOMEM;
}

/* The first entry equal to key (the lowest cert_idx of that name), or NULL. */
static const entry_t *lower_bound(const entry_t *a, size_t n, const char *key, size_t klen)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (entry_cmp_key(a[mid].name, a[mid].len, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && entry_cmp_key(a[lo].name, a[lo].len, key, klen) == 0 ? &a[lo] : NULL;
}

uint32_t sg_tls_sni_select(const sg_tls_sni_table_t *t, const char *name, size_t len, bool *is_match)
{
    char buf[SG_TLS_NAME_MAX + 1];
    *is_match = false;
    size_t nl = sg_tls_sni_normalize(name, len, buf);
    if (nl == 0)
        return 0;
    const entry_t *e = lower_bound(t->_exact, t->_n_exact, buf, nl);
    if (!e) {
        /* "*.example.com" stands for exactly one leftmost label. */
        const char *dot = memchr(buf, '.', nl);
        if (dot)
            e = lower_bound(t->_wild, t->_n_wild, dot + 1, nl - (size_t)(dot + 1 - buf));
    }
    if (!e)
        return 0;
    *is_match = true;
    return e->cert_idx;
}

/* ---- ALPN -------------------------------------------------------------------- */

int sg_tls_alpn_select(const uint8_t *in, size_t in_len, const uint8_t **out, uint8_t *out_len)
{
    static const uint8_t want[] = "http/1.1";
    const size_t want_len = sizeof(want) - 1;
    int found = 0;
    if (!in || in_len == 0)
        return -1;
    for (size_t i = 0; i < in_len;) {
        size_t l = in[i];
        if (l == 0 || l > in_len - i - 1)
            return -1; /* RFC 7301 3.1: empty names are not allowed; no truncation */
        if (!found && l == want_len && memcmp(in + i + 1, want, want_len) == 0) {
            *out = in + i + 1;
            *out_len = (uint8_t)l;
            found = 1;
        }
        i += 1 + l;
    }
    return found;
}
