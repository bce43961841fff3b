/* Shared config value parsers: durations, sizes, host:port, ${ENV}. */
#include "sg/config.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>

/* Criterion runs each parameter in a fresh process (with its own address
 * layout), so strings live inline in the case structs, not as pointers. */
typedef struct dur_case {
    char in[40];
    int rc;
    uint64_t ms;
} dur_case_t;

ParameterizedTestParameters(parse, duration_cases)
{
    static dur_case_t cases[] = {
        {"250ms", 0, 250},
        {"5s", 0, 5000},
        {"5", 0, 5000}, /* bare number = seconds */
        {"0", 0, 0},
        {"0ms", 0, 0},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"1d", 0, 86400000},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551s", 0, 18446744073709551000ull},
        {"18446744073709552s", -1, 0},     /* x1000 overflows */
        {"18446744073709551615s", -1, 0},  /* x1000 overflows */
        {"18446744073709551616ms", -1, 0}, /* > UINT64_MAX */
        {"213503982334602d", -1, 0},
        {"99999999999999999999999", -1, 0},
        {"", -1, 0},
        {"s", -1, 0},
        {"ms", -1, 0},
        {"-5s", -1, 0},
        {"+5s", -1, 0},
        {" 5s", -1, 0},
        {"5s ", -1, 0},
        {"1.5s", -1, 0},
        {"5w", -1, 0},
        {"5S", -1, 0},
        {"5sec", -1, 0},
        {"5 s", -1, 0},
        {"1h30m", -1, 0},
        {"0x10s", -1, 0},
    };
    return cr_make_param_array(dur_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(dur_case_t *c, parse, duration_cases, .timeout = 5)
{
    uint64_t v = 12345;
    int rc = sg_parse_duration_ms(c->in, &v);
    cr_assert_eq(rc, c->rc, "\"%s\": rc %d, want %d", c->in, rc, c->rc);
    if (rc == 0)
        cr_assert_eq(v, c->ms, "\"%s\": %llu, want %llu", c->in, (unsigned long long)v, (unsigned long long)c->ms);
}

typedef struct size_case {
    char in[40];
    int rc;
    uint64_t bytes;
} size_case_t;

ParameterizedTestParameters(parse, size_cases)
{
    static size_case_t cases[] = {
        {"0", 0, 0},
        {"512", 0, 512},
        {"16k", 0, 16384},
        {"16K", 0, 16384},
        {"1m", 0, 1048576},
        {"1M", 0, 1048576},
        {"1g", 0, 1073741824},
        {"3G", 0, 3221225472ull},
        {"18446744073709551615", 0, UINT64_MAX},
        {"17179869183g", 0, 17179869183ull << 30},
        {"17179869184g", -1, 0}, /* 2^34 GiB = 2^64 */
        {"18014398509481984k", -1, 0},
        {"18446744073709551616", -1, 0},
        {"", -1, 0},
        {"k", -1, 0},
        {"-1k", -1, 0},
        {"1.5m", -1, 0},
        {"1kb", -1, 0},
        {"1t", -1, 0},
        {"1 k", -1, 0},
    };
    return cr_make_param_array(size_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(size_case_t *c, parse, size_cases, .timeout = 5)
{
    uint64_t v = 7;
    int rc = sg_parse_size(c->in, &v);
    cr_assert_eq(rc, c->rc, "\"%s\": rc %d, want %d", c->in, rc, c->rc);
    if (rc == 0)
        cr_assert_eq(v, c->bytes, "\"%s\": %llu, want %llu", c->in, (unsigned long long)v,
                     (unsigned long long)c->bytes);
}

typedef struct hp_case {
    char in[40];
    int rc;
    char host[40];
    uint16_t port;
    bool v6;
    bool ip;
} hp_case_t;

ParameterizedTestParameters(parse, hostport_cases)
{
    static hp_case_t cases[] = {
        {"127.0.0.1:8080", 0, "127.0.0.1", 8080, false, true},
        {"0.0.0.0:1", 0, "0.0.0.0", 1, false, true},
        {"[::1]:443", 0, "::1", 443, true, true},
        {"[::]:65535", 0, "::", 65535, true, true},
        {"[2001:db8::1]:80", 0, "2001:db8::1", 80, true, true},
        {"[::ffff:10.0.0.1]:80", 0, "::ffff:10.0.0.1", 80, true, true},
        {"platform.internal:3002", 0, "platform.internal", 3002, false, false},
        {"agent_gw:9000", 0, "agent_gw", 9000, false, false},
        {"localhost:80", 0, "localhost", 80, false, false},
        {"127.0.0.1:0", -1, "", 0, false, false}, /* port 0 only for binds (schema flag) */
        {"127.0.0.1:65536", -1, "", 0, false, false},
        {"127.0.0.1:", -1, "", 0, false, false},
        {"127.0.0.1", -1, "", 0, false, false},
        {":80", -1, "", 0, false, false},
        {"::1:80", -1, "", 0, false, false},
        {"[::1]", -1, "", 0, false, false},
        {"[::1:80", -1, "", 0, false, false},
        {"[zz::1]:80", -1, "", 0, false, false},
        {"[10.0.0.1]:80", -1, "", 0, false, false},
        {"[fe80::1%eth0]:80", -1, "", 0, false, false},
        {"300.1.1.1:80", -1, "", 0, false, false},
        {"host name:80", -1, "", 0, false, false},
        {"-bad.example:80", -1, "", 0, false, false},
        {"a..b:80", -1, "", 0, false, false},
        {"a:+80", -1, "", 0, false, false},
        {"a:080000", -1, "", 0, false, false},
        {"", -1, "", 0, false, false},
    };
    return cr_make_param_array(hp_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(hp_case_t *c, parse, hostport_cases, .timeout = 5)
{
    sg_arena_t a;
    sg_arena_init(&a, 0);
    sg_hostport_t hp;
    int rc = sg_parse_hostport(&a, c->in, &hp);
    cr_assert_eq(rc, c->rc, "\"%s\": rc %d, want %d", c->in, rc, c->rc);
    if (rc == 0) {
        cr_assert_str_eq(hp.host, c->host);
        cr_assert_eq(hp.port, c->port);
        cr_assert_eq(hp.is_ipv6_literal, c->v6, "\"%s\" v6", c->in);
        cr_assert_eq(hp.is_ip_literal, c->ip, "\"%s\" ip", c->in);
    }
    sg_arena_destroy(&a);
}

typedef struct env_case {
    char in[40];
    bool ok;
    char out[40];  /* when ok */
    char err[120]; /* when !ok */
} env_case_t;

ParameterizedTestParameters(parse, env_cases)
{
    static env_case_t cases[] = {
        {"plain", true, "plain", ""},
        {"", true, "", ""},
        {"${SG_T_SET}", true, "value-1", ""},
        {"a-${SG_T_SET}-b", true, "a-value-1-b", ""},
        {"${SG_T_SET}${SG_T_SET}", true, "value-1value-1", ""},
        {"${SG_T_SET:-zzz}", true, "value-1", ""},
        {"${SG_T_UNSET:-fallback}", true, "fallback", ""},
        {"${SG_T_UNSET:-}", true, "", ""},
        {"x${SG_T_UNSET:-}y", true, "xy", ""},
        {"${SG_T_EMPTY}", true, "", ""},
        {"${SG_T_EMPTY:-dflt}", true, "dflt", ""},
        {"${SG_T_UNSET:-a:b/c?d=e}", true, "a:b/c?d=e", ""},
        {"price $5 and $", true, "price $5 and $", ""},
        {"$${SG_T_SET}", true, "${SG_T_SET}", ""},
        {"${SG_T_UNSET}", false, "",
         "environment variable SG_T_UNSET is not set (write ${SG_T_UNSET:-default} to give a default)"},
        {"${SG_T_UNSET:-${SG_T_SET}}", false, "", "nested braces in \"${SG_T_UNSET:-...}\" are not supported"},
        {"${SG_T_UNSET:-{x}}", false, "", "nested braces in \"${SG_T_UNSET:-...}\" are not supported"},
        {"${SG_T_SET{x}}", false, "", "nested braces in \"${SG_T_SET...}\" are not supported"},
        {"${SG_T_SET", false, "", "unterminated \"${SG_T_SET\" (missing '}')"},
        {"${SG_T_UNSET:-abc", false, "", "unterminated \"${SG_T_UNSET\" (missing '}')"},
        {"${}", false, "", "empty variable name in \"${}\""},
        {"${1X}", false, "", "invalid variable name after \"${\" (expected letters, digits and _)"},
        {"${A-b}", false, "", "unsupported syntax in \"${A-...\" (use ${VAR} or ${VAR:-default})"},
        {"${A:?err}", false, "", "unsupported syntax in \"${A:...\" (use ${VAR} or ${VAR:-default})"},
    };
    return cr_make_param_array(env_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(env_case_t *c, parse, env_cases, .timeout = 5)
{
    setenv("SG_T_SET", "value-1", 1);
    setenv("SG_T_EMPTY", "", 1);
    unsetenv("SG_T_UNSET");
    sg_arena_t a;
    sg_arena_init(&a, 0);
    char err[256] = "";
    char *out = sg_expand_env(&a, c->in, err, sizeof(err));
    if (c->ok) {
        cr_assert_not_null(out, "\"%s\": %s", c->in, err);
        cr_assert_str_eq(out, c->out);
    } else {
        cr_assert_null(out, "\"%s\" should fail, gave \"%s\"", c->in, out ? out : "");
        cr_assert_str_eq(err, c->err);
    }
    sg_arena_destroy(&a);
}
