/* Egress allow-list, target parsing and proxy auth (pure functions), and
 * the egress metric families. Rules come from the real config loader. */
#include "sg/egress.h"

#include "sg/expose.h"
#include "sg/metrics.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static sg_config_t *load(const char *allow)
{
    char yaml[2048], err[512];
    snprintf(yaml, sizeof(yaml),
             "listeners: [{name: egress, address: \"127.0.0.1:0\", mode: egress}]\n"
             "egress:\n  allow: %s\n",
             allow);
    sg_config_t *cfg = NULL;
    int rc = sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    cr_assert_eq(rc, 0, "config: %s", err);
    return cfg;
}

static struct sockaddr_storage addr_of(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1, "%s", ip);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1, "%s", ip);
    }
    return ss;
}

static sg_egress_verdict_t check(const sg_config_t *cfg, const char *ip, uint16_t port, int32_t name_rule,
                                 int32_t *rule)
{
    struct sockaddr_storage ss = addr_of(ip);
    int32_t r = -7;
    sg_egress_verdict_t v = sg_egress_check_addr(&cfg->egress, (struct sockaddr *)&ss, port, name_rule, &r);
    if (rule)
        *rule = r;
    return v;
}

/* ---- address classes: every special range, its edges ------------------- */

typedef struct class_case {
    char ip[48];
    sg_egress_verdict_t v;
} class_case_t;

ParameterizedTestParameters(egress, address_classes)
{
    static class_case_t cases[] = {
        {"0.0.0.0", SG_EGRESS_UNSPECIFIED},
        {"0.255.255.255", SG_EGRESS_UNSPECIFIED},
        {"1.0.0.0", SG_EGRESS_OK},
        {"9.255.255.255", SG_EGRESS_OK},
        {"10.0.0.0", SG_EGRESS_PRIVATE},
        {"10.255.255.255", SG_EGRESS_PRIVATE},
        {"11.0.0.0", SG_EGRESS_OK},
        {"100.63.255.255", SG_EGRESS_OK},
        {"100.64.0.0", SG_EGRESS_PRIVATE},
        {"100.127.255.255", SG_EGRESS_PRIVATE},
        {"100.128.0.0", SG_EGRESS_OK},
        {"126.255.255.255", SG_EGRESS_OK},
        {"127.0.0.1", SG_EGRESS_LOOPBACK},
        {"127.255.255.255", SG_EGRESS_LOOPBACK},
        {"128.0.0.0", SG_EGRESS_OK},
        {"169.253.255.255", SG_EGRESS_OK},
        {"169.254.0.0", SG_EGRESS_LINK_LOCAL},
        {"169.254.169.254", SG_EGRESS_LINK_LOCAL},
        {"169.254.255.255", SG_EGRESS_LINK_LOCAL},
        {"169.255.0.0", SG_EGRESS_OK},
        {"172.15.255.255", SG_EGRESS_OK},
        {"172.16.0.0", SG_EGRESS_PRIVATE},
        {"172.31.255.255", SG_EGRESS_PRIVATE},
        {"172.32.0.0", SG_EGRESS_OK},
        {"192.0.0.1", SG_EGRESS_RESERVED},
        {"192.0.1.1", SG_EGRESS_OK},
        {"192.167.255.255", SG_EGRESS_OK},
        {"192.168.0.0", SG_EGRESS_PRIVATE},
        {"192.168.255.255", SG_EGRESS_PRIVATE},
        {"192.169.0.0", SG_EGRESS_OK},
        {"198.17.255.255", SG_EGRESS_OK},
        {"198.18.0.0", SG_EGRESS_RESERVED},
        {"198.19.255.255", SG_EGRESS_RESERVED},
        {"198.20.0.0", SG_EGRESS_OK},
        {"223.255.255.255", SG_EGRESS_OK},
        {"224.0.0.1", SG_EGRESS_MULTICAST},
        {"239.255.255.255", SG_EGRESS_MULTICAST},
        {"240.0.0.0", SG_EGRESS_RESERVED},
        {"255.255.255.255", SG_EGRESS_RESERVED},
        {"93.184.216.34", SG_EGRESS_OK},
        {"::", SG_EGRESS_UNSPECIFIED},
        {"::1", SG_EGRESS_LOOPBACK},
        {"::2", SG_EGRESS_UNSPECIFIED}, /* IPv4-compatible 0.0.0.2 */
        {"fe80::1", SG_EGRESS_LINK_LOCAL},
        {"febf:ffff::1", SG_EGRESS_LINK_LOCAL},
        {"fec0::1", SG_EGRESS_PRIVATE},
        {"fbff:ffff::1", SG_EGRESS_OK},
        {"fc00::", SG_EGRESS_PRIVATE},
        {"fd12:3456::1", SG_EGRESS_PRIVATE},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SG_EGRESS_PRIVATE},
        {"fe00::1", SG_EGRESS_OK},
        {"ff02::1", SG_EGRESS_MULTICAST},
        {"2606:4700::1111", SG_EGRESS_OK},
        /* IPv4-mapped, -compatible, -translated, NAT64 and 6to4 forms */
        {"::ffff:127.0.0.1", SG_EGRESS_LOOPBACK},
        {"::ffff:169.254.169.254", SG_EGRESS_LINK_LOCAL},
        {"::ffff:10.1.2.3", SG_EGRESS_PRIVATE},
        {"::ffff:0.0.0.0", SG_EGRESS_UNSPECIFIED},
        {"::ffff:8.8.8.8", SG_EGRESS_OK},
        {"::127.0.0.1", SG_EGRESS_LOOPBACK},
        {"::ffff:0:192.168.1.1", SG_EGRESS_PRIVATE},
        {"64:ff9b::169.254.169.254", SG_EGRESS_LINK_LOCAL},
        {"64:ff9b::7f00:1", SG_EGRESS_LOOPBACK},
        {"64:ff9b::8.8.8.8", SG_EGRESS_OK},
        {"2002:7f00:1::", SG_EGRESS_LOOPBACK},
        {"2002:a9fe:a9fe::1", SG_EGRESS_LINK_LOCAL},
        {"2002:0808:0808::1", SG_EGRESS_OK},
    };
    return cr_make_param_array(class_case_t, cases, SG_ARRAY_SIZE(cases));
}

ParameterizedTest(class_case_t *c, egress, address_classes, .timeout = 10)
{
    struct sockaddr_storage ss = addr_of(c->ip);
    sg_egress_verdict_t v = sg_egress_addr_class((struct sockaddr *)&ss, NULL);
    cr_assert_eq(v, c->v, "%s: %s, want %s", c->ip, sg_egress_verdict_name(v), sg_egress_verdict_name(c->v));
}

/* Special addresses are refused even when the name was allowed, and with
 * any broad rule; only a CIDR inside the special range allows them. */
Test(egress, special_addresses_need_a_precise_cidr_rule, .timeout = 10)
{
    sg_config_t *cfg = load("[localhost, \"0.0.0.0/0\", \"::/0\", metadata.internal]");
    int32_t rule;
    cr_assert_eq(check(cfg, "127.0.0.1", 80, 0, NULL), SG_EGRESS_LOOPBACK, "a name rule never allows loopback");
    cr_assert_eq(check(cfg, "::1", 80, 0, NULL), SG_EGRESS_LOOPBACK);
    cr_assert_eq(check(cfg, "169.254.169.254", 80, 3, NULL), SG_EGRESS_LINK_LOCAL);
    cr_assert_eq(check(cfg, "10.0.0.1", 80, -1, NULL), SG_EGRESS_PRIVATE, "0.0.0.0/0 is the public internet");
    cr_assert_eq(check(cfg, "fd00::1", 80, -1, NULL), SG_EGRESS_PRIVATE, "::/0 likewise");
    cr_assert_eq(check(cfg, "::ffff:127.0.0.1", 80, -1, NULL), SG_EGRESS_LOOPBACK);
    cr_assert_eq(check(cfg, "8.8.8.8", 80, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 1);
    cr_assert_eq(check(cfg, "2606:4700::1", 80, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 2);
    cr_assert_eq(check(cfg, "8.8.8.8", 80, 0, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 0, "the name rule is the destination of a public address");
    sg_config_free(cfg);

    cfg = load("[\"127.0.0.1:8080\", \"169.254.169.254/32\", \"10.0.0.0/8:443\", \"[::1]\", \"fd00::/8\", "
               "\"::ffff:192.168.1.0/120\"]");
    cr_assert_eq(check(cfg, "127.0.0.1", 8080, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 0);
    cr_assert_eq(check(cfg, "::ffff:127.0.0.1", 8080, -1, &rule), SG_EGRESS_OK, "mapped form of an allowed address");
    cr_assert_eq(rule, 0);
    cr_assert_eq(check(cfg, "127.0.0.1", 8081, -1, NULL), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "127.0.0.2", 8080, -1, NULL), SG_EGRESS_LOOPBACK);
    cr_assert_eq(check(cfg, "127.0.0.1", 8081, 0, NULL), SG_EGRESS_LOOPBACK, "an allowed name: the address is why");
    cr_assert_eq(check(cfg, "169.254.169.254", 80, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 1);
    cr_assert_eq(check(cfg, "169.254.169.253", 80, -1, NULL), SG_EGRESS_LINK_LOCAL);
    cr_assert_eq(check(cfg, "10.255.255.255", 443, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 2);
    cr_assert_eq(check(cfg, "10.0.0.0", 443, -1, NULL), SG_EGRESS_OK);
    cr_assert_eq(check(cfg, "11.0.0.0", 443, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED, "just past the CIDR");
    cr_assert_eq(check(cfg, "9.255.255.255", 443, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED, "just before it");
    cr_assert_eq(check(cfg, "10.0.0.1", 80, -1, NULL), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "::1", 1, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 3);
    cr_assert_eq(check(cfg, "fd00::1", 5, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 4);
    cr_assert_eq(check(cfg, "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 5, -1, NULL), SG_EGRESS_OK);
    cr_assert_eq(check(cfg, "fe00::", 5, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "fc00::1", 5, -1, NULL), SG_EGRESS_PRIVATE, "fc00::/8 is outside fd00::/8");
    cr_assert_eq(check(cfg, "192.168.1.255", 5, -1, &rule), SG_EGRESS_OK, "a mapped CIDR allows plain IPv4");
    cr_assert_eq(rule, 5);
    cr_assert_eq(check(cfg, "192.168.2.0", 5, -1, NULL), SG_EGRESS_PRIVATE);
    cr_assert_eq(check(cfg, "64:ff9b::7f00:1", 8080, -1, NULL), SG_EGRESS_LOOPBACK,
                 "127.0.0.1 allowed does not allow its NAT64 form");
    sg_config_free(cfg);
}

Test(egress, cidr_prefix_edges, .timeout = 10)
{
    sg_config_t *cfg = load("[\"203.0.113.128/25\", \"198.51.100.7/32:8443\", \"2001:db8:1::/48\", \"0.0.0.0/1\"]");
    int32_t rule;
    cr_assert_eq(check(cfg, "203.0.113.128", 1, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 0);
    cr_assert_eq(check(cfg, "203.0.113.255", 1, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 0);
    cr_assert_eq(check(cfg, "203.0.113.127", 1, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "198.51.100.7", 8443, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 1);
    cr_assert_eq(check(cfg, "198.51.100.6", 8443, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "198.51.100.7", 443, -1, NULL), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "2001:db8:1:ffff::1", 1, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 2);
    cr_assert_eq(check(cfg, "2001:db8:2::", 1, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(check(cfg, "127.255.255.255", 1, -1, NULL), SG_EGRESS_LOOPBACK, "/1 covers 127/8 but is broader");
    cr_assert_eq(check(cfg, "126.0.0.1", 1, -1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 3);
    cr_assert_eq(check(cfg, "128.0.0.1", 1, -1, NULL), SG_EGRESS_HOST_NOT_ALLOWED);
    sg_config_free(cfg);
}

/* ---- names ---------------------------------------------------------------- */

Test(egress, host_rules_exact_suffix_and_port, .timeout = 10)
{
    sg_config_t *cfg = load("[api.example.com:443, \"*.Example.org:443\", pypi.org, \"files.example.net:*\", "
                            "{host: registry.npmjs.org, port: 8443}]");
    int32_t rule = -1;
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "api.example.com", 443, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 0);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "api.example.com", 80, &rule), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "x.api.example.com", 443, &rule), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "example.com", 443, &rule), SG_EGRESS_HOST_NOT_ALLOWED);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "a.example.org", 443, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 1);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "a.b.example.org", 443, &rule), SG_EGRESS_OK);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "example.org", 443, &rule), SG_EGRESS_HOST_NOT_ALLOWED,
                 "*.suffix is not the bare domain");
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "badexample.org", 443, &rule), SG_EGRESS_HOST_NOT_ALLOWED,
                 "suffix matches at a label boundary");
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "a.example.org", 444, &rule), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "pypi.org", 1, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 2);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "files.example.net", 65535, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 3);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "registry.npmjs.org", 8443, &rule), SG_EGRESS_OK);
    cr_assert_eq(rule, 4);
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "registry.npmjs.org", 443, &rule), SG_EGRESS_PORT_NOT_ALLOWED);
    cr_assert_not(sg_egress_has_cidr_rule(&cfg->egress, 443));
    sg_config_free(cfg);

    cfg = load("[\"10.0.0.0/8:443\"]");
    cr_assert(sg_egress_has_cidr_rule(&cfg->egress, 443));
    cr_assert_not(sg_egress_has_cidr_rule(&cfg->egress, 80));
    cr_assert_eq(sg_egress_match_host(&cfg->egress, "anything", 443, &rule), SG_EGRESS_HOST_NOT_ALLOWED);
    sg_config_free(cfg);
}

Test(egress, parse_targets, .timeout = 10)
{
    sg_egress_target_t t;
    cr_assert_eq(sg_egress_parse_target(SG_STR("API.Example.com:443"), 0, &t), 0);
    cr_assert_str_eq(t.host, "api.example.com");
    cr_assert_eq(t.port, 443);
    cr_assert_not(t.is_ip);
    cr_assert_eq(sg_egress_parse_target(SG_STR("example.com."), 80, &t), 0);
    cr_assert_str_eq(t.host, "example.com");
    cr_assert_eq(t.port, 80);
    cr_assert_eq(sg_egress_parse_target(SG_STR("127.0.0.1:8080"), 0, &t), 0);
    cr_assert(t.is_ip);
    cr_assert_eq(t.addr.ss_family, AF_INET);
    cr_assert_eq(ntohs(((struct sockaddr_in *)&t.addr)->sin_port), 8080);
    cr_assert_eq(sg_egress_parse_target(SG_STR("[::1]:443"), 0, &t), 0);
    cr_assert(t.is_ip);
    cr_assert_str_eq(t.host, "::1");
    cr_assert_eq(t.addr.ss_family, AF_INET6);
    cr_assert_eq(sg_egress_parse_target(SG_STR("[FE80::1]"), 80, &t), 0);
    cr_assert_str_eq(t.host, "fe80::1");
    cr_assert_eq(sg_egress_parse_target(SG_STR("under_score.example:1"), 0, &t), 0);

    static const char *const bad[] = {
        "",
        "example.com", /* CONNECT needs a port */
        "example.com:0",
        "example.com:65536",
        "example.com:",
        "example.com:+1",
        "example.com:44a",
        "user@example.com:443",
        "::1:443",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[fe80::1%eth0]:443",
        "[127.0.0.1]:80",
        "a..b:80",
        ".example.com:80",
        "exa mple.com:80",
        "ex/ample:80",
        "127.1:80",
        "0x7f.1:80",
        "2130706433:80",
        "example.123:80",
        ":80",
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(bad); i++)
        cr_assert_eq(sg_egress_parse_target(sg_str_cstr(bad[i]), 0, &t), -1, "accepted \"%s\"", bad[i]);
}

/* ---- auth ------------------------------------------------------------------ */

Test(egress, proxy_basic_auth, .timeout = 10)
{
    /* agent:s3cret:x -> YWdlbnQ6czNjcmV0Ong= */
    cr_assert(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6czNjcmV0Ong="), "agent", "s3cret:x"));
    cr_assert(sg_egress_auth_ok(SG_STR("  basic   YWdlbnQ6czNjcmV0Ong  "), "agent", "s3cret:x"), "padding optional");
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6czNjcmV0Ong="), "agent", "s3cret:y"));
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6czNjcmV0Ong="), "agen", "ts3cret:x"));
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6czNjcmV0Ong="), "agent", "s3cret:"), "longer than expected");
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6czNjcmV0"), "agent", "s3cret:x"), "prefix only");
    cr_assert_not(sg_egress_auth_ok(SG_STR("Bearer YWdlbnQ6czNjcmV0Ong="), "agent", "s3cret:x"));
    cr_assert_not(sg_egress_auth_ok(SG_STR("BasicYWdlbnQ6czNjcmV0Ong="), "agent", "s3cret:x"));
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic YWdlbnQ6c*NjcmV0Ong="), "agent", "s3cret:x"));
    cr_assert_not(sg_egress_auth_ok(SG_STR("Basic "), "", ""));
    cr_assert(sg_egress_auth_ok(SG_STR("Basic Og=="), "", ""), "empty user and password: \":\"");
    cr_assert_not(sg_egress_auth_ok(SG_STR(""), "agent", "s3cret:x"));
    char big[1200] = "Basic ";
    memset(big + 6, 'Q', 1000);
    cr_assert_not(sg_egress_auth_ok(sg_str_cstr(big), "agent", "s3cret:x"));
}

Test(egress, verdict_names, .timeout = 10)
{
    cr_assert_str_eq(sg_egress_verdict_name(SG_EGRESS_HOST_NOT_ALLOWED), "host_not_allowed");
    cr_assert_str_eq(sg_egress_verdict_name(SG_EGRESS_LINK_LOCAL), "link_local");
    cr_assert_str_eq(sg_egress_verdict_name(SG_EGRESS_AUTH), "auth");
    for (int i = 0; i < SG_EGRESS__COUNT; i++)
        cr_assert_neq(strcmp(sg_egress_verdict_name((sg_egress_verdict_t)i), "other"), 0);
}

/* ---- metrics ------------------------------------------------------------------ */

static char *render_text(sg_metrics_t *m)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    sg_metrics_render(m, &x, 0);
    cr_assert_eq(sg_expose_finish(&x), 0);
    char *s = malloc(x.len + 1);
    memcpy(s, x.data, x.len);
    s[x.len] = '\0';
    sg_expose_destroy(&x);
    return s;
}

static double value_of(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0 && p[pl] == ' ')
            return strtod(p + pl + 1, NULL);
    return NAN;
}

Test(egress, metric_families, .timeout = 10)
{
    sg_config_t *cfg = load("[api.example.com:443, \"127.0.0.1\", api.example.com:443]");
    sg_metrics_t *m = sg_metrics_create(cfg, 2);
    cr_assert_not_null(m);
    sg_metrics_shard_t *s0 = sg_metrics_worker_shard(m, 0), *s1 = sg_metrics_worker_shard(m, 1);
    sg_trace_ctx_t tc;
    memset(&tc, 0, sizeof(tc));
    strcpy(tc.trace_id, "0af76519-16cd-43dd-8448-eb211c80319c");
    sg_reqrec_t r;
    memset(&r, 0, sizeof(r));
    r.is_egress = true;
    r.egress_agent_idx = -1; /* unknown */
    r.trace = &tc;
    r.start_ns = 1000000000ull;
    r.end_ns = r.start_ns + 1500000000ull; /* 1.5 s */
    r.method = SG_METHOD_CONNECT;
    r.status = 200;
    r.is_tunnel = true;
    /* Destination labels: the rules' distinct texts in order (what a
     * generation maps each rule to); rule 2 repeats rule 0's text. */
    int32_t d0 = sg_metrics_intern(m, SG_METRICS_DIM_DEST, cfg->egress.allow[0].text);
    int32_t d1 = sg_metrics_intern(m, SG_METRICS_DIM_DEST, cfg->egress.allow[1].text);
    int32_t d2 = sg_metrics_intern(m, SG_METRICS_DIM_DEST, cfg->egress.allow[2].text);
    cr_assert_eq(d0, 0);
    cr_assert_eq(d1, 1);
    cr_assert_eq(d2, 0, "same text, same series");
    r.egress_dest_idx = d0;
    sg_metrics_record_egress(s0, &r);
    r.egress_dest_idx = d2;
    sg_metrics_record_egress(s1, &r);
    r.is_tunnel = false;
    r.method = SG_METHOD_GET;
    r.egress_dest_idx = d1;
    sg_metrics_record_egress(s0, &r);
    /* A rule a reload added: its own series once interned. */
    int32_t dn = sg_metrics_intern(m, SG_METRICS_DIM_DEST, "new.example.com:443");
    cr_assert_eq(dn, 2);
    r.egress_dest_idx = dn;
    sg_metrics_record_egress(s1, &r);
    r.egress_dest_idx = -1;
    r.status = 403;
    sg_metrics_record_egress(s0, &r);
    sg_metrics_egress_refused(s0, SG_EGRESS_LINK_LOCAL);
    sg_metrics_egress_refused(s1, SG_EGRESS_LINK_LOCAL);
    sg_metrics_egress_refused(s1, SG_EGRESS_AUTH);
    sg_metrics_egress_refused(s1, SG_EGRESS_OK);     /* not a refusal */
    sg_metrics_egress_refused(s1, SG_EGRESS__COUNT); /* out of range */
    char *out = render_text(m);
    cr_assert_eq(value_of(out, "swarm_egress_requests_total{agent=\"unknown\",destination=\"api.example.com:443\","
                               "method=\"CONNECT\",code=\"200\"}"),
                 2, "%s", out);
    cr_assert_eq(
        value_of(
            out,
            "swarm_egress_requests_total{agent=\"unknown\",destination=\"127.0.0.1\",method=\"GET\",code=\"200\"}"),
        1);
    cr_assert_eq(
        value_of(out,
                 "swarm_egress_requests_total{agent=\"unknown\",destination=\"none\",method=\"GET\",code=\"403\"}"),
        1);
    cr_assert_eq(value_of(out, "swarm_egress_requests_total{agent=\"unknown\",destination=\"new.example.com:443\","
                               "method=\"GET\",code=\"200\"}"),
                 1);
    cr_assert_eq(value_of(out, "swarm_egress_tunnels_total{destination=\"api.example.com:443\"}"), 2);
    cr_assert_eq(value_of(out, "swarm_egress_tunnels_total{destination=\"127.0.0.1\"}"), 0);
    cr_assert(isnan(value_of(out, "swarm_egress_tunnels_total{destination=\"none\"}")), "none only when used");
    cr_assert_eq(value_of(out, "swarm_egress_tunnel_duration_seconds_count{destination=\"api.example.com:443\"}"), 2);
    cr_assert_eq(value_of(out, "swarm_egress_tunnel_duration_seconds_sum{destination=\"api.example.com:443\"}"), 3);
    cr_assert_eq(
        value_of(out, "swarm_egress_tunnel_duration_seconds_bucket{destination=\"api.example.com:443\",le=\"1\"}"), 0);
    cr_assert_eq(
        value_of(out, "swarm_egress_tunnel_duration_seconds_bucket{destination=\"api.example.com:443\",le=\"2.5\"}"),
        2);
    cr_assert_eq(value_of(out, "swarm_egress_refused_total{reason=\"link_local\"}"), 2);
    cr_assert_eq(value_of(out, "swarm_egress_refused_total{reason=\"auth\"}"), 1);
    cr_assert_eq(value_of(out, "swarm_egress_refused_total{reason=\"loopback\"}"), 0);
    cr_assert(isnan(value_of(out, "swarm_http_requests_total{route=\"none\",method=\"GET\",code=\"403\"}")),
              "egress requests stay out of the route families");
    free(out);
    sg_metrics_destroy(m);
    sg_config_free(cfg);
}

Test(egress, auth_user_names_the_agent, .timeout = 10)
{
    sg_egress_user_t users[] = {{"alpha", "pw-a"}, {"beta", "s3cret:x"}};
    /* alpha:pw-a, beta:s3cret:x, beta:wrong, gamma:pw-a */
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic YWxwaGE6cHctYQ=="), users, 2), 0);
    cr_assert_eq(sg_egress_auth_user(SG_STR("basic YmV0YTpzM2NyZXQ6eA=="), users, 2), 1, "a colon in the password");
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic YmV0YTp3cm9uZw=="), users, 2), -1);
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic Z2FtbWE6cHctYQ=="), users, 2), -1, "no such user");
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic YWxwaGE="), users, 2), -1, "no colon");
    cr_assert_eq(sg_egress_auth_user(SG_STR("Bearer YWxwaGE6cHctYQ=="), users, 2), -1);
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic !!!"), users, 2), -1);
    cr_assert_eq(sg_egress_auth_user(SG_STR("Basic YWxwaGE6cHctYQ=="), users, 0), -1);
}

Test(egress, agent_labels_are_capped, .timeout = 10)
{
    char yaml[512], err[512];
    snprintf(yaml, sizeof(yaml),
             "listeners: [{name: egress, address: \"127.0.0.1:0\", mode: egress}]\n"
             "egress: {allow: [api.example.com:443], max_agents: 2}\n");
    sg_config_t *cfg = NULL;
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0, "%s", err);
    sg_metrics_t *m = sg_metrics_create(cfg, 1);
    cr_assert_not_null(m);
    cr_assert_eq(sg_metrics_agent(m, "alpha", 5), 0);
    cr_assert_eq(sg_metrics_agent(m, "beta", 4), 1);
    cr_assert_eq(sg_metrics_agent(m, "alpha", 5), 0, "a name keeps its index");
    cr_assert_eq(sg_metrics_agent(m, "gamma", 5), INT32_MAX, "beyond max_agents: other");
    cr_assert_eq(sg_metrics_agent(m, "alphabet", 5), 0, "the length counts");
    cr_assert_eq(sg_metrics_agent(m, "unknown", 7), -1);
    cr_assert_eq(sg_metrics_agent(m, "other", 5), INT32_MAX);
    cr_assert_eq(sg_metrics_agent(m, "bad name", 8), -1, "not a token: unknown");
    cr_assert_eq(sg_metrics_agent(m, "", 0), -1);

    sg_metrics_shard_t *s = sg_metrics_worker_shard(m, 0);
    sg_reqrec_t r;
    memset(&r, 0, sizeof(r));
    r.is_egress = true;
    r.method = SG_METHOD_GET;
    r.status = 200;
    r.egress_dest_idx = sg_metrics_intern(m, SG_METRICS_DIM_DEST, "api.example.com:443");
    r.req_bytes = 100;
    r.resp_bytes = 1000;
    r.egress_agent_idx = 0;
    sg_metrics_record_egress(s, &r);
    r.egress_agent_idx = INT32_MAX;
    sg_metrics_record_egress(s, &r);
    r.egress_agent_idx = 1; /* beta */
    r.status = 429;
    sg_metrics_record_egress(s, &r);
    sg_metrics_egress_rate_limited(s, 1);
    char *out = render_text(m);
    cr_assert_eq(value_of(out, "swarm_egress_requests_total{agent=\"alpha\",destination=\"api.example.com:443\","
                               "method=\"GET\",code=\"200\"}"),
                 1, "%s", out);
    cr_assert_eq(value_of(out, "swarm_egress_requests_total{agent=\"other\",destination=\"api.example.com:443\","
                               "method=\"GET\",code=\"200\"}"),
                 1);
    cr_assert_eq(value_of(out, "swarm_egress_requests_total{agent=\"beta\",destination=\"api.example.com:443\","
                               "method=\"GET\",code=\"429\"}"),
                 1);
    cr_assert_eq(value_of(out, "swarm_egress_bytes_total{agent=\"alpha\",direction=\"in\"}"), 100);
    cr_assert_eq(value_of(out, "swarm_egress_bytes_total{agent=\"alpha\",direction=\"out\"}"), 1000);
    cr_assert_eq(value_of(out, "swarm_egress_bytes_total{agent=\"other\",direction=\"out\"}"), 1000);
    cr_assert(isnan(value_of(out, "swarm_egress_bytes_total{agent=\"unknown\",direction=\"in\"}")),
              "unknown only when used");
    cr_assert(strstr(out, "agent=\"gamma\"") == NULL, "a name beyond the cap never becomes a label");
    cr_assert_eq(value_of(out, "swarm_egress_rate_limited_total{agent=\"beta\"}"), 1);
    cr_assert(isnan(value_of(out, "swarm_egress_rate_limited_total{agent=\"alpha\"}")), "only agents limited");
    free(out);
    sg_metrics_destroy(m);
    sg_config_free(cfg);
}
