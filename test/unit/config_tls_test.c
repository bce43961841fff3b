/* TLS keys of the config (listeners[].tls, upstreams.<name>.tls, tls):
 * defaults, the checks made on the files at load (so --check-config and a
 * reload see them), relative paths, and exact "file:line:col: path:
 * message" errors. Certificates come from test/support/tls_pki.c. */
#include "sg/config.h"

#include "support/proc.h"
#include "support/tls_pki.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static sg_test_pki_t pki;

static void setup(void)
{
    cr_assert_eq(sg_test_pki_make(&pki), 0);
}

static void teardown(void)
{
    sg_test_pki_remove(&pki);
}

TestSuite(config_tls, .init = setup, .fini = teardown, .timeout = 30);

static sg_config_t *load_ok(const char *yaml)
{
    sg_config_t *cfg = NULL;
    char err[1024] = "";
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0, "%s\n%s", err, yaml);
    return cfg;
}

static sg_config_errors_t errs;

/* Every error of the load, joined by newlines. */
static char *load_errors(const char *yaml)
{
    sg_config_t *cfg = NULL;
    cr_assert_eq(sg_config_load_string_all("t.yaml", yaml, strlen(yaml), &cfg, &errs), -1, "should fail:\n%s", yaml);
    static char all[8192];
    size_t o = 0;
    all[0] = '\0';
    for (size_t i = 0; i < errs.n && o < sizeof(all) - 600; i++)
        o += (size_t)snprintf(all + o, sizeof(all) - o, "%s\n", errs.msg[i].text);
    return all;
}

static void expect_error(const char *yaml, const char *want)
{
    char *all = load_errors(yaml);
    cr_expect(strstr(all, want), "want: %s\ngot:\n%s", want, all);
}

Test(config_tls, listener_cert_and_key_with_defaults)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - {name: web, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}\n"
             "  - {name: plain, address: 127.0.0.1:0}\n",
             pki.server.cert, pki.server.key);
    sg_config_t *cfg = load_ok(yaml);
    const sg_tls_server_conf_t *t = &cfg->listeners[0].tls;
    cr_expect(t->enabled);
    cr_assert_eq(t->n_certificates, 1);
    cr_expect_str_eq(t->certificates[0].cert, pki.server.cert);
    cr_expect_str_eq(t->certificates[0].key, pki.server.key);
    cr_expect_eq(t->min_version, SG_TLS_VERSION_1_2);
    cr_expect_str_eq(t->ciphers, SG_TLS_DEFAULT_CIPHERS);
    cr_expect_str_eq(t->ciphersuites, SG_TLS_DEFAULT_CIPHERSUITES);
    cr_expect(t->session_tickets);
    cr_expect_not(cfg->listeners[1].tls.enabled, "no tls section: plain TCP");
    cr_expect_eq(cfg->listeners[1].tls.n_certificates, 0);
    cr_expect_eq(cfg->tls.ticket_key_rotation_ms, 3600u * 1000u);
    sg_config_free(cfg);
}

Test(config_tls, certificates_list_and_settings)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: web\n"
             "    address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n"
             "      min_version: \"1.3\"\n"
             "      ciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n"
             "      ciphersuites: TLS_AES_128_GCM_SHA256\n"
             "      session_tickets: false\n"
             "tls: {ticket_key_rotation: 10m}\n",
             pki.server.cert, pki.server.key, pki.alt.cert, pki.alt.key, pki.wildcard.cert, pki.wildcard.key);
    sg_config_t *cfg = load_ok(yaml);
    const sg_tls_server_conf_t *t = &cfg->listeners[0].tls;
    cr_assert_eq(t->n_certificates, 3);
    cr_expect_str_eq(t->certificates[2].key, pki.wildcard.key);
    cr_expect_eq(t->min_version, SG_TLS_VERSION_1_3);
    cr_expect_str_eq(t->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    cr_expect_str_eq(t->ciphersuites, "TLS_AES_128_GCM_SHA256");
    cr_expect_not(t->session_tickets);
    cr_expect_eq(cfg->tls.ticket_key_rotation_ms, 600000);
    sg_config_free(cfg);

    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, min_version: TLSv1.2}}]\n", pki.server.cert,
             pki.server.key);
    cfg = load_ok(yaml);
    cr_expect_eq(cfg->listeners[0].tls.min_version, SG_TLS_VERSION_1_2);
    sg_config_free(cfg);
}

Test(config_tls, relative_paths_are_taken_from_the_config_directory)
{
    char yaml[1024], path[256], err[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0, tls: {certificates: [{cert: server.pem, key: ./server.key}]}}]\n"
             "upstreams:\n  u: {servers: [127.0.0.1:1], tls: {ca_file: ca.pem, cert: alt.pem, key: alt.key}}\n");
    cr_assert_eq(sg_test_pki_file(&pki, "sg.yaml", yaml, 0644, path, sizeof(path)), 0);
    sg_config_t *cfg = NULL;
    cr_assert_eq(sg_config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
    char want[256];
    snprintf(want, sizeof(want), "%s/server.pem", pki.dir);
    cr_expect_str_eq(cfg->listeners[0].tls.certificates[0].cert, want);
    snprintf(want, sizeof(want), "%s/./server.key", pki.dir);
    cr_expect_str_eq(cfg->listeners[0].tls.certificates[0].key, want);
    snprintf(want, sizeof(want), "%s/ca.pem", pki.dir);
    cr_expect_str_eq(cfg->upstreams[0].tls.ca_file, want);
    snprintf(want, sizeof(want), "%s/alt.key", pki.dir);
    cr_expect_str_eq(cfg->upstreams[0].tls.key, want);
    sg_config_free(cfg);
}

Test(config_tls, key_files_follow_sshd_rule)
{
    char yaml[1024], want[1024];
    cr_assert_eq(chmod(pki.server.key, 0640), 0);
    snprintf(yaml, sizeof(yaml), "listeners:\n  - address: 127.0.0.1:0\n    tls: {cert: %s, key: %s}\n",
             pki.server.cert, pki.server.key);
    /* col: the key's value */
    const char *kv = strstr(strstr(yaml, "key: "), " ") + 1;
    const char *line3 = strstr(yaml, "    tls:");
    snprintf(want, sizeof(want),
             "t.yaml:3:%d: listeners[0].tls.key: key file %s is accessible by group or others (mode 0640); private "
             "keys must be readable by their owner only: chmod 600 %s",
             (int)(kv - line3) + 1, pki.server.key, pki.server.key);
    char *all = load_errors(yaml);
    cr_expect_str_eq(all, strcat(want, "\n"));
    cr_assert_eq(chmod(pki.server.key, 0400), 0);
    sg_config_free(load_ok(yaml));
    cr_assert_eq(chmod(pki.server.key, 0604), 0);
    expect_error(yaml, "(mode 0604)");
}

Test(config_tls, a_key_that_does_not_match_is_a_config_error)
{
    char yaml[2048], want[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n",
             pki.server.cert, pki.server.key, pki.alt.cert, pki.wildcard.key);
    snprintf(want, sizeof(want), "listeners[0].tls.certificates[1].key: key %s does not match certificate %s",
             pki.wildcard.key, pki.alt.cert);
    char *all = load_errors(yaml);
    cr_expect(strstr(all, want), "want %s\ngot %s", want, all);
    cr_expect(strncmp(all, "t.yaml:6:", 9) == 0, "%s", all);
    cr_expect_eq(errs.n, 1);
}

Test(config_tls, missing_and_wrong_files_are_named)
{
    char yaml[2048], missing[256], want[512];
    snprintf(missing, sizeof(missing), "%s/missing.pem", pki.dir);
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s}}]\n", missing,
             pki.server.key);
    snprintf(want, sizeof(want), "listeners[0].tls.cert: cannot read certificate file %s: No such file or directory",
             missing);
    expect_error(yaml, want);
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s}}]\n", pki.server.cert,
             missing);
    snprintf(want, sizeof(want), "listeners[0].tls.key: cannot read key file %s: No such file or directory", missing);
    expect_error(yaml, want);
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s}}]\n", pki.server.key,
             pki.server.key);
    expect_error(yaml, "listeners[0].tls.cert: no PEM certificate in");
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s}}]\n", pki.server.cert,
             pki.dir);
    expect_error(yaml, "listeners[0].tls.key: key file");
    expect_error(yaml, "is not a regular file");
}

Test(config_tls, shape_errors)
{
    char yaml[2048];
    expect_error("listeners: [{address: 127.0.0.1:0, tls: {}}]\n",
                 "t.yaml:1:41: listeners[0].tls: a certificate is required: cert and key, or certificates: "
                 "[{cert, key}, ...]");
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s}}]\n", pki.server.cert);
    expect_error(yaml, "listeners[0].tls.key: missing required key (cert and key go together)");
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, certificates: [{cert: %s, key: %s}]}}]\n",
             pki.server.cert, pki.server.key, pki.alt.cert, pki.alt.key);
    expect_error(yaml, "listeners[0].tls.certificates: use cert and key, or certificates, not both");
    expect_error("listeners: [{address: 127.0.0.1:0, tls: {certificates: []}}]\n",
                 "listeners[0].tls.certificates: expected at least one {cert, key}");
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {certificates: [{cert: %s}]}}]\n",
             pki.server.cert);
    expect_error(yaml, "listeners[0].tls.certificates[0].key: missing required key");
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, sni: yes}}]\n",
             pki.server.cert, pki.server.key);
    expect_error(yaml, "listeners[0].tls.sni: unknown key");
    /* `tls:` with no value is no TLS, like an absent section. */
    sg_config_t *cfg = load_ok("listeners: [{address: 127.0.0.1:0, tls: }]\n");
    cr_expect_not(cfg->listeners[0].tls.enabled);
    sg_config_free(cfg);
}

Test(config_tls, versions_and_ciphers)
{
    char yaml[2048];
    static const char *const old[] = {"\"1.1\"", "\"1.0\"", "TLSv1.1", "SSLv3"};
    for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
        snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, min_version: %s}}]\n",
                 pki.server.cert, pki.server.key, old[i]);
        expect_error(yaml, "listeners[0].tls.min_version: expected 1.2 or 1.3 (TLS 1.1 and lower are refused: RFC "
                           "8996), got");
    }
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, min_version: \"1.4\"}}]\n", pki.server.cert,
             pki.server.key);
    expect_error(yaml, "listeners[0].tls.min_version: expected 1.2 or 1.3, got \"1.4\"");
    snprintf(yaml, sizeof(yaml), "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, ciphers: RC4-NOPE}}]\n",
             pki.server.cert, pki.server.key);
    expect_error(yaml, "listeners[0].tls.ciphers: no TLS 1.2 cipher of \"RC4-NOPE\" is known to OpenSSL");
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0, tls: {cert: %s, key: %s, ciphersuites: TLS_NOPE}}]\n", pki.server.cert,
             pki.server.key);
    expect_error(yaml, "listeners[0].tls.ciphersuites: \"TLS_NOPE\" is not a list of TLS 1.3 cipher suites");
}

Test(config_tls, upstream_tls)
{
    char yaml[2048];
    sg_config_t *cfg = load_ok("listeners: [{address: 127.0.0.1:0}]\n"
                               "upstreams:\n"
                               "  a: {servers: [api.example.com:443], tls: {}}\n"
                               "  b: {servers: [127.0.0.1:80]}\n"
                               "  c: {servers: [127.0.0.1:443], tls: {enabled: false, ca_file: /nonexistent}}\n"
                               "  d: {servers: [10.0.0.1:443], tls: {server_name: api.internal, verify: false, "
                               "min_version: \"1.3\"}}\n");
    const sg_tls_client_conf_t *a = &cfg->upstreams[0].tls;
    cr_expect(a->enabled, "a tls mapping turns it on");
    cr_expect(a->verify, "verification is on by default");
    cr_expect_null(a->ca_file, "the system store");
    cr_expect_null(a->server_name, "the host of each server");
    cr_expect_eq(a->min_version, SG_TLS_VERSION_1_2);
    cr_expect_not(cfg->upstreams[1].tls.enabled);
    cr_expect_not(cfg->upstreams[2].tls.enabled, "enabled: false turns it off (its files are not read)");
    const sg_tls_client_conf_t *d = &cfg->upstreams[3].tls;
    cr_expect_str_eq(d->server_name, "api.internal");
    cr_expect_not(d->verify);
    cr_expect_eq(d->min_version, SG_TLS_VERSION_1_3);
    sg_config_free(cfg);

    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0}]\n"
             "upstreams:\n  a: {servers: [127.0.0.1:443], tls: {ca_file: %s, cert: %s, key: %s}}\n",
             pki.ca, pki.alt.cert, pki.alt.key);
    cfg = load_ok(yaml);
    cr_expect_str_eq(cfg->upstreams[0].tls.ca_file, pki.ca);
    cr_expect_str_eq(cfg->upstreams[0].tls.cert, pki.alt.cert);
    sg_config_free(cfg);

    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  a: {servers: [127.0.0.1:443], tls: {ca_file: %s}}\n",
             pki.ca_key);
    expect_error(yaml, "upstreams.a.tls.ca_file: no PEM certificate in");
    expect_error(
        "listeners: [{address: 127.0.0.1:0}]\n"
        "upstreams:\n  a: {servers: [127.0.0.1:443], tls: {ca_file: /nonexistent/ca.pem}}\n",
        "upstreams.a.tls.ca_file: cannot read certificate file /nonexistent/ca.pem: No such file or directory");
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0}]\nupstreams:\n  a: {servers: [127.0.0.1:443], tls: {cert: %s}}\n",
             pki.alt.cert);
    expect_error(yaml, "upstreams.a.tls.key: missing required key (cert and key go together)");
    snprintf(yaml, sizeof(yaml),
             "listeners: [{address: 127.0.0.1:0}]\n"
             "upstreams:\n  a: {servers: [127.0.0.1:443], tls: {cert: %s, key: %s}}\n",
             pki.alt.cert, pki.server.key);
    expect_error(yaml, "upstreams.a.tls.key: key");
    expect_error(yaml, "does not match certificate");
    expect_error("listeners: [{address: 127.0.0.1:0}]\n"
                 "upstreams:\n  a: {servers: [127.0.0.1:443], tls: {server_name: \"bad name\"}}\n",
                 "upstreams.a.tls.server_name: expected a host name or an IP address, got \"bad name\"");
    expect_error("listeners: [{address: 127.0.0.1:0}]\n"
                 "upstreams:\n  a: {servers: [127.0.0.1:443], tls: {min_version: \"1.1\"}}\n",
                 "upstreams.a.tls.min_version: expected 1.2 or 1.3 (TLS 1.1 and lower are refused");
}

Test(config_tls, ticket_key_rotation_bounds)
{
    expect_error("listeners: [{address: 127.0.0.1:0}]\ntls: {ticket_key_rotation: 0s}\n",
                 "tls.ticket_key_rotation: expected a duration from 1s to 7d, got \"0s\"");
    expect_error("listeners: [{address: 127.0.0.1:0}]\ntls: {ticket_key_rotation: 8d}\n",
                 "tls.ticket_key_rotation: expected a duration from 1s to 7d, got \"8d\"");
}

/* Every TLS mistake of a file in one --check-config run, through the binary. */
Test(config_tls, check_config_reports_each_tls_error)
{
    char yaml[4096], path[256], out[8192];
    cr_assert_eq(chmod(pki.alt.key, 0644), 0);
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - {name: a, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}\n"
             "  - {name: b, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}\n"
             "  - {name: c, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}\n",
             pki.server.cert, pki.wronghost.key, pki.alt.cert, pki.alt.key, pki.server.cert, pki.server.key);
    cr_assert_eq(sg_test_pki_file(&pki, "check.yaml", yaml, 0644, path, sizeof(path)), 0);
    const char *args[] = {"--check-config", path, NULL};
    cr_assert_eq(sg_proc_run(args, out, sizeof(out), 10000), 2, "%s", out);
    cr_expect(strstr(out, ":2:") && strstr(out, "listeners[0].tls.key: key") && strstr(out, "does not match"), "%s",
              out);
    cr_expect(strstr(out, ":3:") && strstr(out, "listeners[1].tls.key: key file") && strstr(out, "(mode 0644)"), "%s",
              out);
    cr_expect_null(strstr(out, "listeners[2]"), "%s", out);
    cr_assert_eq(chmod(pki.alt.key, 0600), 0);
    snprintf(yaml, sizeof(yaml), "listeners: [{name: a, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}]\n",
             pki.server.cert, pki.server.key);
    cr_assert_eq(sg_test_pki_file(&pki, "good.yaml", yaml, 0644, path, sizeof(path)), 0);
    const char *ok[] = {"--check-config", path, NULL};
    cr_assert_eq(sg_proc_run(ok, out, sizeof(out), 10000), 0, "%s", out);
    cr_expect(strstr(out, "config OK"), "%s", out);

    /* Serving it is tested through the binary: integration/tls_listener_test.c. */
}
