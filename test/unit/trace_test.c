/* Unit tests for src/obs/trace.c: UUIDs, span ids, traceparent, tracestate
 * and sg_trace_resolve (DESIGN.md section 4, W3C Trace Context Level 2). */
#include "sg/trace.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>

#define TP_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_TRACE_UUID "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
#define TP_PARENT "00f067aa0ba902b7"
#define TP_VALID "00-" TP_TRACE "-" TP_PARENT "-01"

/* ---- UUIDs ---------------------------------------------------------- */

/* Criterion runs each parameter in a new process image: parameters hold
 * their strings inline, never pointers to literals. */
typedef struct uuid_case {
    char in[64];
    char want[40]; /* "" = invalid */
} uuid_case_t;

ParameterizedTestParameters(trace, uuid_parse_table)
{
    static uuid_case_t cases[] = {
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"},
        {"4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"},
        {"4Bf92f35-77b3-4DA6-a3CE-929d0e0E4736", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"},
        {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000001"},
        {"10000000-0000-0000-0000-000000000000", "10000000-0000-0000-0000-000000000000"},
        {"ffffffff-ffff-ffff-ffff-ffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
        {"00000000-0000-0000-0000-000000000000", ""},  /* all zeros */
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e473", ""},   /* 35 chars */
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e47366", ""}, /* 37 chars */
        {"4bf92f3577b34da6a3ce929d0e0e4736", ""},      /* no dashes */
        {"4bf92f3577b3-4da6-a3ce-929d0e0e-4736", ""},  /* dashes misplaced */
        {"4bf92f35-77b34-da6-a3ce-929d0e0e4736", ""},
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e473g", ""}, /* non-hex */
        {"4bf92f35-77b3-4da6-a3ce+929d0e0e4736", ""},
        {"{4bf92f35-77b3-4da6-a3ce-929d0e0e4736}", ""},
        {"urn:uuid:4bf92f35-77b3-4da6-a3ce-929d0e0e4736", ""},
        {" 4bf92f35-77b3-4da6-a3ce-929d0e0e4736", ""}, /* parse is strict; resolve trims */
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r", ""},
        {"4bf92f35-77b3-4da6-a3ce-929d0e0e47\n6", ""},
        {"", ""},
        {"------------------------------------", ""},
    };
    return cr_make_param_array(uuid_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(uuid_case_t *c, trace, uuid_parse_table, .timeout = 30)
{
    char out[SG_TRACE_ID_LEN + 1];
    memset(out, 'X', sizeof(out));
    int rc = sg_trace_id_parse(sg_str_cstr(c->in), out);
    if (c->want[0]) {
        cr_assert_eq(rc, 0, "%s should be valid", c->in);
        cr_assert_str_eq(out, c->want);
    } else {
        cr_assert_neq(rc, 0, "%s should be invalid", c->in);
    }
}

Test(trace, uuid_parse_null_and_embedded_nul, .timeout = 30)
{
    char out[SG_TRACE_ID_LEN + 1];
    cr_assert_neq(sg_trace_id_parse(SG_STR_NULL, out), 0);
    cr_assert_neq(sg_trace_id_parse(sg_str_make("4bf92f35-77b3-4da6-a3ce-929d0e0e47\0"
                                                "6",
                                                36),
                                    out),
                  0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

Test(trace, generated_ids_are_v4_and_distinct, .timeout = 30)
{
    enum { N = 2000 };
    char(*ids)[SG_TRACE_ID_LEN + 1] = calloc(N, sizeof(*ids));
    cr_assert_not_null(ids);
    for (int i = 0; i < N; i++) {
        sg_trace_id_generate(ids[i]);
        char again[SG_TRACE_ID_LEN + 1];
        cr_assert_eq(sg_trace_id_parse(sg_str_cstr(ids[i]), again), 0, "%s", ids[i]);
        cr_assert_str_eq(again, ids[i], "generated ids are lower case");
        cr_assert_eq(ids[i][14], '4', "version nibble of %s", ids[i]);
        cr_assert(strchr("89ab", ids[i][19]) != NULL, "variant of %s", ids[i]);
    }
    qsort(ids, N, sizeof(*ids), cmp_str);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(ids[i - 1], ids[i]);
    free(ids);
}

Test(trace, span_ids_are_nonzero_hex_and_distinct, .timeout = 30)
{
    enum { N = 20000 };
    char(*ids)[SG_SPAN_ID_LEN + 1] = calloc(N, sizeof(*ids));
    cr_assert_not_null(ids);
    for (int i = 0; i < N; i++) {
        sg_span_id_generate(ids[i]);
        cr_assert_eq(strlen(ids[i]), SG_SPAN_ID_LEN);
        cr_assert_eq(strspn(ids[i], "0123456789abcdef"), SG_SPAN_ID_LEN, "%s", ids[i]);
        cr_assert_str_neq(ids[i], "0000000000000000");
    }
    qsort(ids, N, sizeof(*ids), cmp_str);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(ids[i - 1], ids[i]);
    free(ids);
}

Test(trace, uuid_hex_round_trip, .timeout = 30)
{
    char hex[SG_TRACE_HEX_LEN + 1], back[SG_TRACE_ID_LEN + 1];
    sg_trace_id_to_hex(TP_TRACE_UUID, hex);
    cr_assert_str_eq(hex, TP_TRACE);
    sg_trace_hex_to_id(hex, back);
    cr_assert_str_eq(back, TP_TRACE_UUID);
    for (int i = 0; i < 100; i++) {
        char id[SG_TRACE_ID_LEN + 1];
        sg_trace_id_generate(id);
        sg_trace_id_to_hex(id, hex);
        cr_assert_eq(strlen(hex), SG_TRACE_HEX_LEN);
        sg_trace_hex_to_id(hex, back);
        cr_assert_str_eq(back, id);
    }
}

Test(trace, source_names, .timeout = 30)
{
    cr_assert_str_eq(sg_trace_source_name(SG_TRACE_SRC_GENERATED), "generated");
    cr_assert_str_eq(sg_trace_source_name(SG_TRACE_SRC_FORWARDED), "forwarded");
    cr_assert_str_eq(sg_trace_source_name(SG_TRACE_SRC_TRACEPARENT), "traceparent");
    cr_assert_str_eq(sg_trace_source_name(SG_TRACE_SRC_REPLACED), "replaced");
}

/* ---- traceparent ------------------------------------------------------- */

typedef struct tp_case {
    char in[128];
    bool valid;
    uint8_t version;
    uint8_t flags;
} tp_case_t;

ParameterizedTestParameters(trace, traceparent_table)
{
    static tp_case_t cases[] = {
        {TP_VALID, true, 0x00, 0x01},
        {"00-" TP_TRACE "-" TP_PARENT "-00", true, 0x00, 0x00},
        {"00-" TP_TRACE "-" TP_PARENT "-03", true, 0x00, 0x03},
        {"00-" TP_TRACE "-" TP_PARENT "-ff", true, 0x00, 0xff}, /* reserved bits cleared by resolve */
        {"  " TP_VALID " \t", true, 0x00, 0x01},                /* OWS trimmed */
        {"\t" TP_VALID, true, 0x00, 0x01},
        {"01-" TP_TRACE "-" TP_PARENT "-01", true, 0x01, 0x01},
        {"cc-" TP_TRACE "-" TP_PARENT "-01", true, 0xcc, 0x01},
        {"cc-" TP_TRACE "-" TP_PARENT "-01-what-the-future-will-be-like", true, 0xcc, 0x01},
        {"cc-" TP_TRACE "-" TP_PARENT "-01-", true, 0xcc, 0x01},
        {"fe-" TP_TRACE "-" TP_PARENT "-09-x", true, 0xfe, 0x09},
        {"cc-" TP_TRACE "-" TP_PARENT "-01what", false, 0, 0}, /* char 56 not '-' */
        {"cc-" TP_TRACE "-" TP_PARENT "-01,x", false, 0, 0},
        {"ff-" TP_TRACE "-" TP_PARENT "-01", false, 0, 0},       /* version ff */
        {"00-" TP_TRACE "-" TP_PARENT "-01-extra", false, 0, 0}, /* 00 is exactly 55 */
        {TP_VALID "x", false, 0, 0},
        {TP_VALID ",", false, 0, 0},
        {TP_VALID "," TP_VALID, false, 0, 0},             /* two values in one line */
        {"00-" TP_TRACE "-" TP_PARENT "-1", false, 0, 0}, /* 54 chars */
        {"00-" TP_TRACE "-" TP_PARENT, false, 0, 0},
        {"0-" TP_TRACE "-" TP_PARENT "-01", false, 0, 0},
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_PARENT "-01", false, 0, 0}, /* upper case */
        {"00-" TP_TRACE "-00F067AA0BA902B7-01", false, 0, 0},
        {"00-" TP_TRACE "-" TP_PARENT "-0A", false, 0, 0},
        {"0A-" TP_TRACE "-" TP_PARENT "-01", false, 0, 0},
        {"00-00000000000000000000000000000000-" TP_PARENT "-01", false, 0, 0}, /* zero trace-id */
        {"00-" TP_TRACE "-0000000000000000-01", false, 0, 0},                  /* zero parent-id */
        {"00-" TP_TRACE "-" TP_PARENT "-0g", false, 0, 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e473g-" TP_PARENT "-01", false, 0, 0},
        {"00-" TP_TRACE "-00f067aa0ba902bz-01", false, 0, 0},
        {"00_" TP_TRACE "-" TP_PARENT "-01", false, 0, 0},
        {"00-" TP_TRACE "_" TP_PARENT "-01", false, 0, 0},
        {"00-" TP_TRACE "-" TP_PARENT "_01", false, 0, 0},
        {"00-4bf92f35-77b3-4da6-a3ce-929d0e0e4736-" TP_PARENT "-01", false, 0, 0}, /* UUID form */
        {"00--" TP_TRACE TP_PARENT "-01", false, 0, 0},
        {"xx-" TP_TRACE "-" TP_PARENT "-01", false, 0, 0},
        {"", false, 0, 0},
        {"   ", false, 0, 0},
        {"00-" TP_TRACE "-" TP_PARENT "-01\r", false, 0, 0},
    };
    return cr_make_param_array(tp_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(tp_case_t *c, trace, traceparent_table, .timeout = 30)
{
    sg_traceparent_t tp;
    int rc = sg_traceparent_parse(sg_str_cstr(c->in), &tp);
    if (!c->valid) {
        cr_assert_neq(rc, 0, "'%s' should be invalid", c->in);
        return;
    }
    cr_assert_eq(rc, 0, "'%s' should be valid", c->in);
    cr_assert_str_eq(tp.trace_hex, TP_TRACE);
    cr_assert_str_eq(tp.parent_id, TP_PARENT);
    cr_assert_eq(tp.version, c->version);
    cr_assert_eq(tp.flags, c->flags);
}

/* ---- tracestate ------------------------------------------------------- */

typedef struct ts_case {
    char in[64];
    bool valid;
} ts_case_t;

ParameterizedTestParameters(trace, tracestate_table)
{
    static ts_case_t cases[] = {
        {"", true},
        {"   ", true},
        {",", true},
        {"rojo=00f067aa0ba902b7", true},
        {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
        {" rojo=1 ,\tcongo=2 ", true},
        {"rojo=1,,congo=2", true},
        {"rojo=1, ,congo=2,", true},
        {"a_-*/9=1", true},
        {"z=1", true},
        {"1tenant@sys=1", true},
        {"tenant@s=1", true},
        {"t_-*/@s_-*/9=1", true},
        {"a= b", true}, /* chr includes SP except at the end */
        {"a=b c", true},
        {"a=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", true},
        {"Rojo=1", false}, /* upper case key */
        {"rOjo=1", false},
        {"1rojo=1", true}, /* the suite's grammar: a key starts with lcalpha or DIGIT */
        {"_a=1", false},
        {"tenant@1sys=1", true},
        {"Tenant@sys=1", false},
        {"_t@sys=1", false},
        {"@sys=1", false}, /* test_tracestate_key_illegal_vendor_format */
        {"@foo=1,bar=2", false},
        {"t@=1", true},
        {"foo@=1,bar=2", true},
        {"foo@@bar=1,bar=2", true},
        {"a@b@c=1", true},
        {"a.b=1", false},
        {"a b=1", false},
        {"=1", false},
        {"a", false},
        {"a=", false},
        {"a=b=c", false},
        {"a=b,c", false},
        {"a=\x7f", false},
        {"a=\x01", false},
        {"a=\xc3\xa9", false},
        {"a=1,a=2", true}, /* duplicated keys are inherited (test_tracestate_duplicated_keys) */
        {"a=1,b=2,a=1", true},
        {"t@s=1,t@s=2", true},
    };
    return cr_make_param_array(ts_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(ts_case_t *c, trace, tracestate_table, .timeout = 30)
{
    cr_assert_eq(sg_tracestate_valid(sg_str_cstr(c->in)), c->valid, "'%s'", c->in);
}

static char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

Test(trace, tracestate_key_and_value_lengths, .timeout = 30)
{
    char key[300], val[300], m[700];
    /* simple key: 256 ok, 257 not */
    snprintf(m, sizeof(m), "%s=1", repeat(key, 'k', 256));
    cr_assert(sg_tracestate_valid(sg_str_cstr(m)));
    snprintf(m, sizeof(m), "%s=1", repeat(key, 'k', 257));
    cr_assert_not(sg_tracestate_valid(sg_str_cstr(m)));
    /* "@" keys are plain keys of up to 256 characters (test_tracestate_key_length_limit):
     * no 241-character tenant or 14-character system limit of their own */
    snprintf(m, sizeof(m), "%s@vvvvvvvvvvvvvv=1", repeat(key, 't', 241));
    cr_assert(sg_tracestate_valid(sg_str_cstr(m)));
    snprintf(m, sizeof(m), "%s@v=1", repeat(key, 't', 242));
    cr_assert(sg_tracestate_valid(sg_str_cstr(m)));
    snprintf(m, sizeof(m), "t@%s=1", repeat(key, 's', 15));
    cr_assert(sg_tracestate_valid(sg_str_cstr(m)));
    snprintf(m, sizeof(m), "t@%s=1", repeat(key, 's', 255));
    cr_assert_not(sg_tracestate_valid(sg_str_cstr(m)), "257 characters");
    /* value: 256 ok, 257 not */
    snprintf(m, sizeof(m), "k=%s", repeat(val, 'v', 256));
    cr_assert(sg_tracestate_valid(sg_str_cstr(m)));
    snprintf(m, sizeof(m), "k=%s", repeat(val, 'v', 257));
    cr_assert_not(sg_tracestate_valid(sg_str_cstr(m)));
}

/* "k0=0,k1=1,..." with n members starting at `first`. */
static size_t members(char *buf, size_t cap, int first, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = first; i < first + n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%sk%d=%d", len ? "," : "", i, i);
    return len;
}

Test(trace, tracestate_member_count, .timeout = 30)
{
    char buf[1024];
    members(buf, sizeof(buf), 0, 32);
    cr_assert(sg_tracestate_valid(sg_str_cstr(buf)));
    members(buf, sizeof(buf), 0, 33);
    cr_assert_not(sg_tracestate_valid(sg_str_cstr(buf)));
    /* empty members do not count */
    size_t len = members(buf, sizeof(buf), 0, 32);
    memcpy(buf + len, ",, ,", 5);
    cr_assert(sg_tracestate_valid(sg_str_cstr(buf)));
}

/* ---- resolve ---------------------------------------------------------- */

static void assert_traceparent_shape(const sg_trace_ctx_t *c)
{
    char want[SG_TRACEPARENT_LEN + 1], hex[SG_TRACE_HEX_LEN + 1];
    sg_trace_id_to_hex(c->trace_id, hex);
    snprintf(want, sizeof(want), "00-%s-%s-%02x", hex, c->span_id, c->flags);
    cr_assert_str_eq(c->traceparent, want);
    sg_traceparent_t tp;
    cr_assert_eq(sg_traceparent_parse(sg_str_cstr(c->traceparent), &tp), 0);
    cr_assert_eq(strlen(c->span_id), SG_SPAN_ID_LEN);
    cr_assert_eq(c->flags & ~0x03, 0);
}

static bool is_v4(const char *id)
{
    return id[14] == '4' && strchr("89ab", id[19]) != NULL;
}

Test(trace, resolve_nothing_generates, .timeout = 30)
{
    sg_trace_in_t in = {0};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_GENERATED);
    cr_assert(is_v4(c.trace_id));
    cr_assert_not(c.had_invalid);
    cr_assert_not(c.conflict);
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert_eq(c.flags, 0x03, "sampled + random");
    cr_assert_str_eq(c.tracestate, "");
    cr_assert_eq(c.tracestate_len, 0);
    assert_traceparent_shape(&c);

    sg_trace_resolve(&in, false, &c);
    cr_assert_eq(c.flags, 0x02, "not sampled, random");
    assert_traceparent_shape(&c);
}

Test(trace, resolve_forwards_valid_id_lower_cased, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {SG_STR(" 4BF92F35-77B3-4DA6-A3CE-929D0E0E4736 ")}, .n_xtid = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    cr_assert_str_eq(c.trace_id, TP_TRACE_UUID);
    cr_assert_not(c.had_invalid);
    cr_assert_eq(c.flags, 0x01, "sampled, not random: swarmgate did not make the id");
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert(strstr(c.traceparent, TP_TRACE) == c.traceparent + 3);
    assert_traceparent_shape(&c);
}

Test(trace, resolve_identical_values_forwarded, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {SG_STR(TP_TRACE_UUID), SG_STR("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736"),
                                 SG_STR(TP_TRACE_UUID ", " TP_TRACE_UUID)},
                        .n_xtid = 3};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    cr_assert_str_eq(c.trace_id, TP_TRACE_UUID);
}

typedef struct bad_xtid_case {
    char v1[96];
    char v2[48]; /* "": one line */
} bad_xtid_case_t;

ParameterizedTestParameters(trace, resolve_replaces_invalid_id)
{
    static bad_xtid_case_t cases[] = {
        {"not-a-uuid", ""},
        {"", ""},
        {"00000000-0000-0000-0000-000000000000", ""},
        {TP_TRACE_UUID "\r\nX-Evil: 1", ""},
        {TP_TRACE_UUID "0", ""},
        {TP_TRACE, ""},
        {TP_TRACE_UUID ", 11111111-2222-4333-8444-555555555555", ""},
        {TP_TRACE_UUID ",", ""},
        {TP_TRACE_UUID, "11111111-2222-4333-8444-555555555555"},
        {TP_TRACE_UUID, "garbage"},
        {"garbage", TP_TRACE_UUID},
    };
    return cr_make_param_array(bad_xtid_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(bad_xtid_case_t *bc, trace, resolve_replaces_invalid_id, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {sg_str_cstr(bc->v1), sg_str_cstr(bc->v2)}, .n_xtid = bc->v2[0] ? 2 : 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_REPLACED);
    cr_assert(c.had_invalid);
    cr_assert(is_v4(c.trace_id));
    cr_assert_str_neq(c.trace_id, TP_TRACE_UUID);
    cr_assert_eq(c.flags, 0x03, "random bit: swarmgate made the id");
    assert_traceparent_shape(&c);
}

Test(trace, resolve_too_many_lines_is_invalid, .timeout = 30)
{
    sg_trace_in_t in = {0};
    for (size_t i = 0; i < SG_TRACE_MAX_VALUES; i++)
        in.xtid[i] = SG_STR(TP_TRACE_UUID);
    in.n_xtid = SG_TRACE_MAX_VALUES;
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    in.n_xtid = SG_TRACE_MAX_VALUES + 1; /* the parser saw more lines than it kept */
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_REPLACED);
    cr_assert(c.had_invalid);
}

Test(trace, resolve_alias, .timeout = 30)
{
    sg_trace_ctx_t c;
    sg_trace_in_t in = {.alias = {SG_STR("11111111-2222-4333-8444-555555555555")}, .n_alias = 1};
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    cr_assert_str_eq(c.trace_id, "11111111-2222-4333-8444-555555555555");

    /* X-Trace-Id wins over the alias */
    in.xtid[0] = SG_STR(TP_TRACE_UUID);
    in.n_xtid = 1;
    sg_trace_resolve(&in, true, &c);
    cr_assert_str_eq(c.trace_id, TP_TRACE_UUID);

    /* an invalid alias is ignored (not counted), traceparent is next */
    sg_trace_in_t in2 = {
        .alias = {SG_STR("req-1234")}, .n_alias = 1, .traceparent = {SG_STR(TP_VALID)}, .n_traceparent = 1};
    sg_trace_resolve(&in2, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_TRACEPARENT);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.trace_id, TP_TRACE_UUID);

    sg_trace_in_t in3 = {.alias = {SG_STR("req-1234")}, .n_alias = 1};
    sg_trace_resolve(&in3, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_GENERATED);
    cr_assert_not(c.had_invalid);
}

Test(trace, resolve_continues_traceparent, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID)},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("rojo=00f067aa0ba902b7"), SG_STR(" congo=t61rcWkgMzE ")},
                        .n_tracestate = 2};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, false, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_TRACEPARENT);
    cr_assert_str_eq(c.trace_id, TP_TRACE_UUID);
    cr_assert_str_eq(c.parent_span_id, TP_PARENT);
    cr_assert_str_neq(c.span_id, TP_PARENT);
    cr_assert_eq(c.flags, 0x01, "parent-based: sampled kept though sample_new=false");
    cr_assert_not(c.had_invalid);
    cr_assert_not(c.conflict);
    cr_assert_str_eq(c.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    cr_assert_eq(c.tracestate_len, strlen(c.tracestate));
    assert_traceparent_shape(&c);
    cr_assert_eq(strncmp(c.traceparent, "00-" TP_TRACE "-", 36), 0);
}

ParameterizedTestParameters(trace, resolve_flags_on_continue)
{
    static tp_case_t cases[] = {
        {"00-" TP_TRACE "-" TP_PARENT "-00", true, 0, 0x00},        {"00-" TP_TRACE "-" TP_PARENT "-01", true, 0, 0x01},
        {"00-" TP_TRACE "-" TP_PARENT "-02", true, 0, 0x02},        {"00-" TP_TRACE "-" TP_PARENT "-03", true, 0, 0x03},
        {"00-" TP_TRACE "-" TP_PARENT "-ff", true, 0, 0x03},        {"00-" TP_TRACE "-" TP_PARENT "-fc", true, 0, 0x00},
        {"cc-" TP_TRACE "-" TP_PARENT "-09-future", true, 0, 0x01},
    };
    return cr_make_param_array(tp_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(tp_case_t *tc, trace, resolve_flags_on_continue, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {sg_str_cstr(tc->in)}, .n_traceparent = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.flags, tc->flags);
    cr_assert_str_eq(c.parent_span_id, TP_PARENT);
    cr_assert_eq(strncmp(c.traceparent, "00-", 3), 0, "always sent as version 00");
    assert_traceparent_shape(&c);
}

Test(trace, resolve_invalid_traceparent_restarts, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {SG_STR("00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_PARENT "-01")},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, false, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_GENERATED);
    cr_assert(c.had_invalid);
    cr_assert_str_neq(c.trace_id, TP_TRACE_UUID);
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert_str_eq(c.tracestate, "", "tracestate dropped with an invalid traceparent");
    cr_assert_eq(c.flags, 0x02);
    assert_traceparent_shape(&c);
}

Test(trace, resolve_two_traceparent_lines_invalid, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID), SG_STR(TP_VALID)},
                        .n_traceparent = 2,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_GENERATED);
    cr_assert(c.had_invalid);
    cr_assert_str_neq(c.trace_id, TP_TRACE_UUID);
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert_str_eq(c.tracestate, "");
}

Test(trace, resolve_same_id_in_both_continues, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {SG_STR("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736")},
                        .n_xtid = 1,
                        .traceparent = {SG_STR("00-" TP_TRACE "-" TP_PARENT "-02")},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    cr_assert_not(c.conflict);
    cr_assert_str_eq(c.parent_span_id, TP_PARENT);
    cr_assert_eq(c.flags, 0x02);
    cr_assert_str_eq(c.tracestate, "rojo=1");
}

Test(trace, resolve_conflict_x_trace_id_wins, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {SG_STR("11111111-2222-4333-8444-555555555555")},
                        .n_xtid = 1,
                        .traceparent = {SG_STR("00-" TP_TRACE "-" TP_PARENT "-03")},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, false, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_FORWARDED);
    cr_assert(c.conflict);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.trace_id, "11111111-2222-4333-8444-555555555555");
    cr_assert_eq(strncmp(c.traceparent, "00-11111111222243338444555555555555-", 36), 0);
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert_str_eq(c.tracestate, "");
    cr_assert_eq(c.flags, 0x00, "restart: sampler says no, id not ours");
    assert_traceparent_shape(&c);
}

/* DESIGN.md section 4: an invalid X-Trace-Id is replaced by a new UUIDv4;
 * the valid traceparent then carries another id, so it is restarted with
 * the new one (tracestate dropped): one id on every header. */
Test(trace, resolve_invalid_id_with_valid_traceparent_restarts_with_new_id, .timeout = 30)
{
    sg_trace_in_t in = {.xtid = {SG_STR("bogus")},
                        .n_xtid = 1,
                        .traceparent = {SG_STR(TP_VALID)},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_REPLACED);
    cr_assert(c.had_invalid);
    cr_assert_not(c.conflict, "conflict counts two valid ids only");
    cr_assert_str_neq(c.trace_id, TP_TRACE_UUID);
    cr_assert_eq(c.trace_id[14], '4', "a new UUIDv4");
    cr_assert_str_eq(c.parent_span_id, "");
    cr_assert_str_eq(c.tracestate, "");
    cr_assert_eq(c.flags, 0x03, "sampled by the sampler, random: our id");
    char hex[SG_TRACE_HEX_LEN + 1];
    sg_trace_id_to_hex(c.trace_id, hex);
    cr_assert(strstr(c.traceparent, hex), "%s", c.traceparent);
}

Test(trace, resolve_tracestate_32_vs_33_members_over_lines, .timeout = 30)
{
    static char l1[512], l2[512], l3[512];
    members(l1, sizeof(l1), 0, 10);
    members(l2, sizeof(l2), 10, 12);
    members(l3, sizeof(l3), 22, 10);
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID)},
                        .n_traceparent = 1,
                        .tracestate = {sg_str_cstr(l1), SG_STR("  "), sg_str_cstr(l2), sg_str_cstr(l3)},
                        .n_tracestate = 4};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_not(c.had_invalid);
    char want[1600];
    snprintf(want, sizeof(want), "%s,%s,%s", l1, l2, l3);
    cr_assert_str_eq(c.tracestate, want, "32 members, lines joined in order");

    members(l3, sizeof(l3), 22, 11); /* 33 */
    in.tracestate[3] = sg_str_cstr(l3);
    sg_trace_resolve(&in, true, &c);
    cr_assert(c.had_invalid);
    cr_assert_str_eq(c.tracestate, "");
    cr_assert_str_eq(c.parent_span_id, TP_PARENT, "traceparent still continued");
}

Test(trace, resolve_tracestate_duplicate_across_lines_kept, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID)},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("a=1,b=2"), SG_STR("a=3")},
                        .n_tracestate = 2};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.tracestate, "a=1,b=2,a=3", "passed on unchanged, duplicate included");
}

Test(trace, resolve_tracestate_long_key_next_to_another_line, .timeout = 30)
{
    char key[300], line[320];
    snprintf(line, sizeof(line), "%s=1", repeat(key, 'z', 256));
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID)},
                        .n_traceparent = 1,
                        .tracestate = {SG_STR("foo=1"), sg_str_cstr(line)},
                        .n_tracestate = 2};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_not(c.had_invalid);
    cr_assert_eq(c.tracestate_len, 5 + 1 + 258);
    cr_assert(strncmp(c.tracestate, "foo=1,zzz", 9) == 0);
}

Test(trace, resolve_tracestate_too_long_dropped, .timeout = 30)
{
    static char big[600];
    char v[300];
    snprintf(big, sizeof(big), "a=%s,b=%s", repeat(v, 'x', 256), v); /* valid, 518 chars */
    sg_trace_in_t in = {
        .traceparent = {SG_STR(TP_VALID)}, .n_traceparent = 1, .tracestate = {sg_str_cstr(big)}, .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.tracestate, "");
    cr_assert_eq(c.tracestate_len, 0);

    /* exactly 512 fits */
    snprintf(big, sizeof(big), "a=%s,b=", repeat(v, 'x', 256));
    size_t l = strlen(big);
    memset(big + l, 'y', 512 - l);
    big[512] = '\0';
    in.tracestate[0] = sg_str_cstr(big);
    cr_assert(sg_tracestate_valid(in.tracestate[0]));
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.tracestate_len, 512);
    cr_assert_str_eq(c.tracestate, big);
}

Test(trace, resolve_uses_only_counted_values, .timeout = 30)
{
    /* Header-name matching (traceparent vs trace-parent look-alikes) is the
     * caller's job: resolve reads only the first n values of each array. */
    sg_trace_in_t in = {.xtid = {SG_STR(TP_TRACE_UUID)},
                        .n_xtid = 0,
                        .alias = {SG_STR(TP_TRACE_UUID)},
                        .n_alias = 0,
                        .traceparent = {SG_STR(TP_VALID), SG_STR("garbage")},
                        .n_traceparent = 0,
                        .tracestate = {SG_STR("rojo=1")},
                        .n_tracestate = 1};
    sg_trace_ctx_t c;
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_GENERATED);
    cr_assert_str_neq(c.trace_id, TP_TRACE_UUID);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.tracestate, "", "no traceparent: tracestate not forwarded");

    in.n_traceparent = 1; /* the second, garbage line is not counted */
    sg_trace_resolve(&in, true, &c);
    cr_assert_eq(c.source, SG_TRACE_SRC_TRACEPARENT);
    cr_assert_not(c.had_invalid);
    cr_assert_str_eq(c.tracestate, "rojo=1");
}

Test(trace, resolve_new_span_each_time, .timeout = 30)
{
    sg_trace_in_t in = {.traceparent = {SG_STR(TP_VALID)}, .n_traceparent = 1};
    sg_trace_ctx_t a, b;
    sg_trace_resolve(&in, true, &a);
    sg_trace_resolve(&in, true, &b);
    cr_assert_str_eq(a.trace_id, b.trace_id);
    cr_assert_str_neq(a.span_id, b.span_id);
}
