/* Fuzzes certificate selection by SNI and ALPN selection against naive
 * references written for clarity, not speed.
 *
 * Input: lines split on '\n'. The first byte of the input says how many
 * lines (0..8) are certificate names; each such line is <cert index byte>
 * <name>. The other lines are server names looked up. The whole input is
 * also a client ALPN list. Invariants: sg_tls_sni_select and
 * sg_tls_alpn_select agree with the references, the table never selects
 * an index it was not given, and the normalizer's output is its own fixed
 * point. */
#include "fuzz_check.h"
#include "sg/tls.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64

/* A host name by RFC 1123 rules as the module states them, lower-cased
 * into out; 0 when not one. */
static size_t ref_normalize(const char *s, size_t len, char *out)
{
    if (len && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (!ok || ++label > 63) {
            return 0;
        }
        out[i] = c;
    }
    if (label == 0)
        return 0;
    out[len] = '\0';
    return len;
}

typedef struct ref_name {
    char name[256];
    bool is_wild;
    uint32_t idx;
    bool is_valid;
} ref_name_t;

static uint32_t ref_select(const ref_name_t *names, size_t n, const char *q, size_t qlen, bool *hit)
{
    char nq[256];
    *hit = false;
    if (ref_normalize(q, qlen, nq) == 0)
        return 0;
    uint32_t best = UINT32_MAX;
    for (size_t i = 0; i < n; i++)
        if (names[i].is_valid && !names[i].is_wild && strcmp(names[i].name, nq) == 0 && names[i].idx < best)
            best = names[i].idx;
    if (best == UINT32_MAX) {
        const char *dot = strchr(nq, '.');
        for (size_t i = 0; dot && i < n; i++)
            if (names[i].is_valid && names[i].is_wild && strcmp(names[i].name, dot + 1) == 0 && names[i].idx < best)
                best = names[i].idx;
    }
    if (best == UINT32_MAX)
        return 0;
    *hit = true;
    return best;
}

static int ref_alpn(const uint8_t *in, size_t len, size_t *at)
{
    if (len == 0)
        return -1;
    int found = 0;
    size_t i = 0;
    while (i < len) {
        size_t l = in[i];
        if (l == 0 || i + 1 + l > len)
            return -1;
        if (!found && l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            found = 1;
            *at = i + 1;
        }
        i += 1 + l;
    }
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *lines[MAX_LINES];
    size_t lens[MAX_LINES], n_lines = 0, start = 1;
    for (size_t i = 1; i <= size && n_lines < MAX_LINES; i++)
        if (i == size || data[i] == '\n') {
            lines[n_lines] = (const char *)data + start;
            lens[n_lines++] = i - start;
            start = i + 1;
        }
    size_t n_names = SG_MIN((size_t)(data[0] % 9), n_lines);

    sg_tls_sni_name_t names[8];
    ref_name_t ref[8];
    for (size_t i = 0; i < n_names; i++) {
        const char *l = lines[i];
        size_t len = lens[i];
        uint32_t idx = len ? (uint8_t)l[0] % 8 : 0;
        const char *nm = len ? l + 1 : l;
        size_t nl = len ? len - 1 : 0;
        names[i] = (sg_tls_sni_name_t){nm, nl, idx};
        ref[i].idx = idx;
        ref[i].is_wild = nl >= 2 && nm[0] == '*' && nm[1] == '.';
        size_t off = ref[i].is_wild ? 2 : 0;
        ref[i].is_valid = ref_normalize(nm + off, nl - off, ref[i].name) > 0;
    }
    sg_tls_sni_table_t t;
    if (sg_tls_sni_table_build(&t, names, n_names) != 0)
        return 0;
    size_t n_invalid = 0;
    for (size_t i = 0; i < n_names; i++)
        n_invalid += !ref[i].is_valid;
    FUZZ_CHECK(t.n_skipped == n_invalid);

    for (size_t q = n_names; q < n_lines; q++) {
        bool hit, ref_hit;
        uint32_t got = sg_tls_sni_select(&t, lines[q], lens[q], &hit);
        uint32_t want = ref_select(ref, n_names, lines[q], lens[q], &ref_hit);
        FUZZ_CHECK(got == want);
        FUZZ_CHECK(hit == ref_hit);
        FUZZ_CHECK(got < 8);
        char a[SG_TLS_NAME_MAX + 1], b[SG_TLS_NAME_MAX + 1], c[256];
        size_t na = sg_tls_sni_normalize(lines[q], lens[q], a);
        FUZZ_CHECK(na == ref_normalize(lines[q], lens[q], c));
        if (na) {
            FUZZ_CHECK(strlen(a) == na && strcmp(a, c) == 0);
            FUZZ_CHECK(sg_tls_sni_normalize(a, na, b) == na && strcmp(a, b) == 0);
        }
    }
    sg_tls_sni_table_free(&t);

    const uint8_t *out = NULL;
    uint8_t out_len = 0;
    size_t at = 0;
    int got = sg_tls_alpn_select(data, size, &out, &out_len);
    int want = ref_alpn(data, size, &at);
    FUZZ_CHECK(got == want);
    if (got == 1)
        FUZZ_CHECK(out == data + at && out_len == 8);
    return 0;
}
