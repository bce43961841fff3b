/* Unit tests for src/obs/json.c: escaping, UTF-8 repair, the sg_buf_t writer. */
#include "sg/json.h"

#include "support/jsoncheck.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static char *esc(const char *in, size_t len)
{
    static char out[4096];
    size_t n = sg_json_escape(out, sizeof(out) - 1, in, len);
    out[n] = '\0';
    return out;
}

/* Wraps the escaped body in quotes and checks the result is a valid JSON
 * string that decodes to `want`. */
static void assert_json_string(const char *body, const char *want, size_t want_len)
{
    char doc[4200], dec[4200];
    int n = snprintf(doc, sizeof(doc), "{\"k\":\"%s\"}", body);
    char err[128];
    cr_assert(sg_test_json_valid(doc, (size_t)n, err, sizeof(err)), "%s: %s", doc, err);
    long dl = sg_test_json_get(doc, (size_t)n, "k", 0, dec, sizeof(dec));
    cr_assert_eq(dl, (long)want_len);
    cr_assert_eq(memcmp(dec, want, want_len), 0);
}

typedef struct ctl_case {
    unsigned char c;
    char want[8];
} ctl_case_t;

ParameterizedTestParameters(json, control_chars)
{
    static ctl_case_t cases[33];
    static const char *const shortf[32] = {
        ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    for (unsigned i = 0; i < 32; i++) {
        cases[i].c = (unsigned char)i;
        if (shortf[i])
            snprintf(cases[i].want, sizeof(cases[i].want), "%s", shortf[i]);
        else
            snprintf(cases[i].want, sizeof(cases[i].want), "\\u%04x", i);
    }
    cases[32].c = 0x7f;
    snprintf(cases[32].want, sizeof(cases[32].want), "\\u007f");
    return cr_make_param_array(ctl_case_t, cases, 33);
}

ParameterizedTest(ctl_case_t *c, json, control_chars, .timeout = 30)
{
    char in[3] = {'a', (char)c->c, 'b'};
    char want[16];
    snprintf(want, sizeof(want), "a%sb", c->want);
    cr_assert_str_eq(esc(in, 3), want);
    assert_json_string(esc(in, 3), in, 3);
}

Test(json, quote_and_backslash, .timeout = 30)
{
    cr_assert_str_eq(esc("\"", 1), "\\\"");
    cr_assert_str_eq(esc("\\", 1), "\\\\");
    cr_assert_str_eq(esc("a\"b\\c", 5), "a\\\"b\\\\c");
    cr_assert_str_eq(esc("/", 1), "/");
    assert_json_string(esc("\"}\\{", 4), "\"}\\{", 4);
}

Test(json, printable_ascii_unchanged, .timeout = 30)
{
    char in[95];
    for (int i = 0; i < 95; i++)
        in[i] = (char)(0x20 + i);
    const char *o = esc(in, 95);
    /* 93 plain + 2 escaped (quote and backslash) */
    cr_assert_eq(strlen(o), 97);
    assert_json_string(o, in, 95);
}

Test(json, valid_multibyte_kept, .timeout = 30)
{
    const char *s[] = {
        "\xc2\x80",         /* U+0080 */
        "\xc3\xa9",         /* é */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800 */
        "\xe2\x82\xac",     /* € */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000 */
        "\xef\xbf\xbd",     /* U+FFFD itself */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000 */
        "\xf0\x9f\x98\x80", /* emoji */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF */
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        cr_assert_str_eq(esc(s[i], strlen(s[i])), s[i]);
        assert_json_string(esc(s[i], strlen(s[i])), s[i], strlen(s[i]));
    }
}

typedef struct utf8_case {
    char in[8];
    size_t len;
    char want[32];
} utf8_case_t;

#define FFFD "\xef\xbf\xbd"

ParameterizedTestParameters(json, invalid_utf8_replaced)
{
    static utf8_case_t cases[] = {
        {"\x80", 1, FFFD}, /* stray continuation */
        {"\xbf", 1, FFFD},
        {"\x80\x80", 2, FFFD FFFD},
        {"\xc0\xaf", 2, FFFD FFFD}, /* overlong '/' (C0 never valid) */
        {"\xc1\xbf", 2, FFFD FFFD},
        {"\xe0\x80\xaf", 3, FFFD FFFD FFFD}, /* overlong 3-byte */
        {"\xe0\x9f\xbf", 3, FFFD FFFD FFFD},
        {"\xf0\x80\x80\xaf", 4, FFFD FFFD FFFD FFFD}, /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 4, FFFD FFFD FFFD FFFD},
        {"\xed\xa0\x80", 3, FFFD FFFD FFFD},          /* surrogate U+D800 */
        {"\xed\xbf\xbf", 3, FFFD FFFD FFFD},          /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD}, /* F5 lead */
        {"\xff", 1, FFFD},
        {"\xfe", 1, FFFD},
        {"\xc3", 1, FFFD},     /* truncated at end */
        {"\xe2\x82", 2, FFFD}, /* maximal subpart: one U+FFFD */
        {"\xf0\x9f\x98", 3, FFFD},
        {"\xc3x", 2, FFFD "x"}, /* truncated, then ASCII */
        {"\xe2\x82x", 3, FFFD "x"},
        {"\xf0\x9f\x98\"", 4, FFFD "\\\""},
        {"\xe2\x82\xe2\x82\xac", 5, FFFD "\xe2\x82\xac"},
        {"a\xc3\xa9\xa9", 4, "a\xc3\xa9" FFFD},
    };
    return cr_make_param_array(utf8_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(utf8_case_t *c, json, invalid_utf8_replaced, .timeout = 30)
{
    const char *o = esc(c->in, c->len);
    cr_assert_str_eq(o, c->want);
    char doc[128];
    int n = snprintf(doc, sizeof(doc), "\"%s\"", o);
    cr_assert(sg_test_json_valid(doc, (size_t)n, NULL, 0));
}

Test(json, never_writes_past_cap_and_cuts_whole, .timeout = 30)
{
    /* Every cap from 0 to the full length, on an input mixing every class:
     * the canary after cap survives and the output is always valid JSON. */
    const char in[] = "a\"\x01\xc3\xa9\xe2\x82\xac\x80\\\n\xf0\x9f\x98\x80z";
    size_t full = sg_json_escape(NULL, 0, in, 0);
    cr_assert_eq(full, 0);
    char big[256];
    full = sg_json_escape(big, sizeof(big), in, sizeof(in) - 1);
    for (size_t cap = 0; cap <= full; cap++) {
        char out[256];
        memset(out, 0x5a, sizeof(out));
        size_t used = 0;
        size_t n = sg_json_escape_ex(out, cap, in, sizeof(in) - 1, &used);
        cr_assert_leq(n, cap);
        for (size_t k = cap; k < sizeof(out); k++)
            cr_assert_eq(out[k], 0x5a, "byte %zu written with cap %zu", k, cap);
        cr_assert_eq(memcmp(out, big, n), 0, "a prefix of the full output");
        cr_assert_eq(used == sizeof(in) - 1, n == full);
        char doc[300];
        doc[0] = '"';
        memcpy(doc + 1, out, n);
        doc[n + 1] = '"';
        cr_assert(sg_test_json_valid(doc, n + 2, NULL, 0), "cap %zu cut inside an escape", cap);
    }
}

Test(json, random_bytes_always_valid_json, .timeout = 30)
{
    srand(1234);
    for (int round = 0; round < 2000; round++) {
        unsigned char in[64];
        size_t len = (size_t)(rand() % 64);
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)rand();
        char doc[64 * 6 + 2];
        doc[0] = '"';
        size_t n = sg_json_escape(doc + 1, sizeof(doc) - 2, (const char *)in, len);
        doc[n + 1] = '"';
        char err[128];
        cr_assert(sg_test_json_valid(doc, n + 2, err, sizeof(err)), "round %d: %s", round, err);
    }
}

Test(json, buf_numbers, .timeout = 30)
{
    char mem[128];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    sg_buf_put_u64(&b, 0);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_u64(&b, UINT64_MAX);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_i64(&b, INT64_MIN);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_i64(&b, -7);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_milli(&b, 0);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_milli(&b, 1234);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_milli(&b, 5);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_milli(&b, 300000050);
    SG_BUF_LIT(&b, " ");
    sg_buf_put_hex(&b, 0xabc, 6);
    cr_assert_not(b.is_overflow);
    mem[b.len] = '\0';
    cr_assert_str_eq(mem, "0 18446744073709551615 -9223372036854775808 -7 0.000 1.234 0.005 300000.050 000abc");
}

Test(json, buf_overflow_is_all_or_nothing, .timeout = 30)
{
    char mem[8];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert(SG_BUF_LIT(&b, "12345"));
    cr_assert_not(sg_buf_put_u64(&b, 1234));
    cr_assert(b.is_overflow);
    cr_assert_eq(b.len, 5);
    cr_assert(sg_buf_putc(&b, 'x'));
    cr_assert_not(sg_buf_put_json_str(&b, "abc", 3, SIZE_MAX));
    cr_assert_eq(b.len, 6);
    cr_assert(sg_buf_put_json_str(&b, "", 0, SIZE_MAX));
    cr_assert_eq(b.len, 8);
    cr_assert_eq(memcmp(mem, "12345x\"\"", 8), 0);
}

Test(json, buf_json_str_max_body, .timeout = 30)
{
    char mem[64];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert(sg_buf_put_json_str(&b, "a\nbcdef", 7, 4));
    cr_assert_not(b.is_overflow);
    mem[b.len] = '\0';
    cr_assert_str_eq(mem, "\"a\\nb\"");
    /* a cut never splits an escape */
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert(sg_buf_put_json_str(&b, "ab\n", 3, 3));
    mem[b.len] = '\0';
    cr_assert_str_eq(mem, "\"ab\"");
}

Test(json, rfc3339_matches_gmtime, .timeout = 30)
{
    const uint64_t fixed[] = {0, 951782400000000000ull /* 2000-02-29 */, 1709251199999000000ull,
                              4102444800123456789ull /* 2100-01-01 */, 16725225599999000000ull /* 2499-12-31 */};
    srand(99);
    for (int i = 0; i < 2000; i++) {
        uint64_t ns = i < 5 ? fixed[i] : ((uint64_t)rand() << 31 ^ (uint64_t)rand()) % 4102444800000000000ull;
        char mem[32];
        sg_buf_t b;
        sg_buf_init(&b, mem, sizeof(mem));
        cr_assert(sg_buf_put_rfc3339_ms(&b, ns));
        cr_assert_eq(b.len, 24);
        mem[24] = '\0';
        time_t t = (time_t)(ns / 1000000000u);
        struct tm tm;
        gmtime_r(&t, &tm);
        char want[40];
        size_t w = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + w, sizeof(want) - w, ".%03uZ", (unsigned)(ns / 1000000u % 1000u));
        cr_assert_str_eq(mem, want, "ns=%" PRIu64, ns);
    }
}

/* Plain runs are skipped eight bytes at a time (SWAR): one byte that needs
 * escaping (or UTF-8 checking) anywhere in a run, at every position and
 * with every value, is escaped exactly as it is on its own. */
Test(json, every_byte_at_every_position_escapes_as_alone, .timeout = 30)
{
    enum { N = 27 };
    for (int b = 0; b < 256; b++) {
        char one[8], alone[16];
        one[0] = (char)b;
        size_t alone_len = sg_json_escape(alone, sizeof(alone), one, 1);
        for (int pos = 0; pos < N; pos++) {
            char in[N], out[64], want[64];
            memset(in, 'a', sizeof(in));
            in[pos] = (char)b;
            size_t n = sg_json_escape(out, sizeof(out), in, sizeof(in));
            memset(want, 'a', (size_t)pos);
            memcpy(want + pos, alone, alone_len);
            memset(want + pos + alone_len, 'a', (size_t)(N - pos - 1));
            size_t want_len = (size_t)N - 1 + alone_len;
            cr_assert_eq(n, want_len, "byte 0x%02x at %d: %zu bytes, want %zu", b, pos, n, want_len);
            cr_assert_eq(memcmp(out, want, n), 0, "byte 0x%02x at %d", b, pos);
        }
    }
}

/* sg_buf_put_json_str copies a plain string as is (fast path) and escapes
 * anything else: its output is sg_json_escape's in quotes for every byte
 * value at every position of strings of 1 to 20 bytes. */
Test(json, buf_json_str_is_quoted_escape, .timeout = 30)
{
    for (size_t len = 1; len <= 20; len++) {
        for (int c = 0; c < 256; c++) {
            for (size_t pos = 0; pos < len; pos++) {
                char in[20], mem[256], want[256];
                memset(in, 'x', len);
                in[pos] = (char)c;
                sg_buf_t b;
                sg_buf_init(&b, mem, sizeof(mem));
                cr_assert(sg_buf_put_json_str(&b, in, len, 1000));
                want[0] = '"';
                size_t n = sg_json_escape(want + 1, sizeof(want) - 2, in, len);
                want[n + 1] = '"';
                cr_assert_eq(b.len, n + 2, "len %zu byte %d at %zu", len, c, pos);
                cr_assert_eq(memcmp(mem, want, n + 2), 0, "len %zu byte %d at %zu", len, c, pos);
            }
        }
    }
    char mem[8];
    sg_buf_t b;
    sg_buf_init(&b, mem, sizeof(mem));
    cr_assert(sg_buf_put_json_str(&b, "", 0, 10));
    cr_assert_eq(b.len, 2);
    cr_assert_not(sg_buf_put_json_str(&b, "abcdefgh", 8, 10)); /* does not fit: nothing written */
    cr_assert(b.is_overflow);
    cr_assert_eq(b.len, 2);
}

/* The text up to the seconds is kept per thread: times within one second,
 * then another second, then the first again, all as gmtime says. */
Test(json, rfc3339_same_second_and_back, .timeout = 30)
{
    const uint64_t base = 1709251199000000000ull; /* 2024-02-29T23:59:59Z */
    const uint64_t ns[] = {base + 1000000, base + 999000000, base + 1000000000, base + 5000000, base};
    const char *want[] = {"2024-02-29T23:59:59.001Z", "2024-02-29T23:59:59.999Z", "2024-03-01T00:00:00.000Z",
                          "2024-02-29T23:59:59.005Z", "2024-02-29T23:59:59.000Z"};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        char mem[32];
        sg_buf_t b;
        sg_buf_init(&b, mem, sizeof(mem));
        cr_assert(sg_buf_put_rfc3339_ms(&b, ns[i]));
        mem[b.len] = '\0';
        cr_assert_str_eq(mem, want[i]);
    }
}
