/* The certificate expiry gauge (sg/certs.h): dates read from the files
 * of the config's TLS listeners, one series per listener and name (the
 * earlier date wins), the family always written, expiring certificates
 * reported. */
#include "sg/certs.h"

#include "support/tls_pki.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
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

TestSuite(certs, .init = setup, .fini = teardown, .timeout = 30);

static char *render(const sg_certs_t *c)
{
    sg_expose_t x;
    sg_expose_init(&x, SG_EXPOSE_TEXT);
    sg_certs_render(c, &x);
    cr_assert_eq(sg_expose_finish(&x), 0);
    char *out = strndup(x.data, x.len);
    sg_expose_destroy(&x);
    return out;
}

typedef struct lines {
    char text[8][800];
    int n;
} lines_t;

static void collect(void *ud, const char *line)
{
    lines_t *l = ud;
    if (l->n < 8)
        snprintf(l->text[l->n++], sizeof(l->text[0]), "%s", line);
}

Test(certs, one_series_per_listener_and_name)
{
    sg_test_pair_t soon, soon_dup;
    cr_assert_eq(sg_test_pki_leaf(&pki, "soon", "soon.test", "DNS:soon.test", -1, 10, &soon), 0);
    /* the same name, later expiry: the earlier one is what counts */
    cr_assert_eq(sg_test_pki_leaf(&pki, "soon2", "soon.test", "DNS:soon.test", -1, 200, &soon_dup), 0);
    char yaml[4096], err[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: web\n"
             "    address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n"
             "        - {cert: %s, key: %s}\n"
             "  - {name: edge, address: 127.0.0.1:0, tls: {cert: %s, key: %s}}\n"
             "  - {name: plain, address: 127.0.0.1:0}\n",
             pki.server.cert, pki.server.key, soon_dup.cert, soon_dup.key, soon.cert, soon.key, pki.wildcard.cert,
             pki.wildcard.key, pki.expired.cert, pki.expired.key);
    sg_config_t *cfg = NULL;
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0, "%s", err);
    sg_certs_t *c = sg_certs_load(cfg, err, sizeof(err));
    cr_assert_not_null(c);
    cr_expect_str_eq(err, "");
    cr_assert_eq(sg_certs_count(c), 4);
    char *out = render(c);
    char want[4096];
    snprintf(want, sizeof(want),
             "# HELP swarm_tls_certificate_expiry_timestamp_seconds Expiry (notAfter) of each certificate of a TLS "
             "listener, in seconds since the Unix epoch, as read at start or at the last reload.\n"
             "# TYPE swarm_tls_certificate_expiry_timestamp_seconds gauge\n"
             "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"web\",name=\"localhost\"} %lld\n"
             "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"web\",name=\"soon.test\"} %lld\n"
             "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"web\",name=\"*.wild.test\"} %lld\n"
             "swarm_tls_certificate_expiry_timestamp_seconds{listener=\"edge\",name=\"localhost\"} %lld\n",
             (long long)pki.server.not_after_unix, (long long)soon.not_after_unix,
             (long long)pki.wildcard.not_after_unix, (long long)pki.expired.not_after_unix);
    cr_expect_str_eq(out, want);
    free(out);

    lines_t l = {.n = 0};
    sg_certs_each_expiring(c, (int64_t)time(NULL), 14, collect, &l);
    cr_assert_eq(l.n, 2, "%s", l.n ? l.text[0] : "");
    cr_expect(strstr(l.text[0], "listener web: certificate soon.test") &&
                  (strstr(l.text[0], "expires in 9 day") || strstr(l.text[0], "expires in 10 day")) &&
                  strstr(l.text[0], soon.cert),
              "%s", l.text[0]);
    cr_expect(strstr(l.text[1], "listener edge") && strstr(l.text[1], "has EXPIRED 1 day(s) ago"), "%s", l.text[1]);
    const char *ln, *nm;
    int64_t na;
    cr_expect(sg_certs_get(c, 3, &ln, &nm, &na) && strcmp(ln, "edge") == 0);
    cr_expect_not(sg_certs_get(c, 4, &ln, &nm, &na));
    sg_certs_free(c);

    /* A file that went away since the check: left out, named. */
    cr_assert_eq(unlink(pki.wildcard.cert), 0);
    c = sg_certs_load(cfg, err, sizeof(err));
    cr_assert_not_null(c);
    cr_expect(strstr(err, "listener web") && strstr(err, pki.wildcard.cert), "%s", err);
    cr_expect_eq(sg_certs_count(c), 3);
    sg_certs_free(c);
    sg_config_free(cfg);
}

Test(certs, the_family_is_written_without_tls)
{
    char *out = render(NULL);
    cr_expect_str_eq(out, "# HELP swarm_tls_certificate_expiry_timestamp_seconds Expiry (notAfter) of each "
                          "certificate of a TLS listener, in seconds since the Unix epoch, as read at start or at "
                          "the last reload.\n# TYPE swarm_tls_certificate_expiry_timestamp_seconds gauge\n");
    free(out);
    sg_config_t *cfg = NULL;
    char err[512];
    static const char yaml[] = "listeners: [{address: 127.0.0.1:0}]\n";
    cr_assert_eq(sg_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0);
    sg_certs_t *c = sg_certs_load(cfg, err, sizeof(err));
    cr_expect_eq(sg_certs_count(c), 0);
    sg_certs_free(c);
    sg_certs_free(NULL);
    sg_config_free(cfg);
}
