/* The TLS module (sg/tls.h) without sockets: the pure SNI and ALPN
 * functions, the file checks, and whole handshakes between a client and a
 * server sg_tls_conn_t talking through their memory BIOs (certificates
 * made by test/support/tls_pki.c). Where a test needs a client swarmgate
 * would never be (TLS 1.1, ALPN h2 only, TLS 1.2 only), a raw OpenSSL peer
 * on memory BIOs stands in for it. */
#include "sg/tls.h"

#include "support/tls_pki.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- names, SNI, ALPN (pure) ------------------------------------------------ */

Test(tls, label_names, .timeout = 10)
{
    cr_expect_str_eq(sg_tls_error_name(SG_TLS_OK), "success");
    cr_expect_str_eq(sg_tls_error_name(SG_TLS_E_HOSTNAME), "hostname_mismatch");
    cr_expect_str_eq(sg_tls_error_name(SG_TLS_E__COUNT), "?");
    for (int e = 0; e < SG_TLS_E__COUNT; e++) {
        const char *n = sg_tls_error_name((sg_tls_error_t)e);
        cr_expect(n && *n && strcmp(n, "?") != 0, "error %d has a name", e);
        for (const char *p = n; *p; p++)
            cr_expect((*p >= 'a' && *p <= 'z') || *p == '_', "%s is a label value", n);
    }
    cr_expect_str_eq(sg_tls_version_name(SG_TLS_VERSION_NONE), "none");
    cr_expect_str_eq(sg_tls_version_name(SG_TLS_VERSION_1_2), "TLSv1.2");
    cr_expect_str_eq(sg_tls_version_name(SG_TLS_VERSION_1_3), "TLSv1.3");
}

Test(tls, sni_normalize, .timeout = 10)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"Example.COM", "example.com"},
        {"example.com.", "example.com"},
        {"a_b-c.example", "a_b-c.example"},
        {"x", "x"},
        {"", NULL},
        {".", NULL},
        {"a..b", NULL},
        {".a", NULL},
        {"a.", "a"},
        {"a..", NULL},
        {"*.example.com", NULL},
        {"ex ample.com", NULL},
        {"ex\xc3\xa9.com", NULL},
        {"127.0.0.1", "127.0.0.1"},
    };
    char out[SG_TLS_NAME_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = sg_tls_sni_normalize(cases[i].in, strlen(cases[i].in), out);
        if (cases[i].out) {
            cr_expect_eq(n, strlen(cases[i].out), "%s", cases[i].in);
            cr_expect_str_eq(out, cases[i].out, "%s", cases[i].in);
        } else {
            cr_expect_eq(n, 0, "%s refused", cases[i].in);
        }
    }
    cr_expect_eq(sg_tls_sni_normalize("a\0b", 3, out), 0, "embedded NUL");
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    cr_expect_eq(sg_tls_sni_normalize(label, 64, out), 0, "a 64-byte label");
    cr_expect_eq(sg_tls_sni_normalize(label, 63, out), 63);
    char longname[300];
    for (int i = 0; i < 127; i++)
        memcpy(longname + 2 * i, "a.", 2);
    longname[254] = 'a';
    cr_expect_eq(sg_tls_sni_normalize(longname, 255, out), 0, "255 bytes");
    cr_expect_eq(sg_tls_sni_normalize(longname, 253, out), 253, "253 bytes");
    cr_expect_eq(sg_tls_sni_normalize(NULL, 0, out), 0);
}

static uint32_t pick(const sg_tls_sni_table_t *t, const char *name, bool *hit)
{
    return sg_tls_sni_select(t, name, strlen(name), hit);
}

Test(tls, sni_select_exact_then_wildcard_then_default, .timeout = 10)
{
    static const sg_tls_sni_name_t names[] = {
        {"default.test", 12, 0},
        {"*.example.com", 13, 1},
        {"api.example.com", 15, 2},
        {"*.example.com", 13, 3},
        {"API.other.test", 14, 3},
        {"f*.bad.test", 11, 4},
        {"a.*.bad.test", 12, 4},
        {"*", 1, 4},
        {"", 0, 4},
        {"*.Wild.Test.", 12, 5},
    };
    sg_tls_sni_table_t t;
    cr_assert_eq(sg_tls_sni_table_build(&t, names, sizeof(names) / sizeof(names[0])), 0);
    cr_expect_eq(t.n_skipped, 4, "partial and inner wildcards, '*' and '' are skipped");
    bool hit;
    cr_expect_eq(pick(&t, "api.example.com", &hit), 2, "exact beats wildcard");
    cr_expect(hit);
    cr_expect_eq(pick(&t, "API.Example.Com.", &hit), 2, "case and a trailing dot do not matter");
    cr_expect_eq(pick(&t, "www.example.com", &hit), 1, "the first certificate with the wildcard");
    cr_expect(hit);
    cr_expect_eq(pick(&t, "example.com", &hit), 0, "a wildcard does not match its base name");
    cr_expect_not(hit);
    cr_expect_eq(pick(&t, "a.b.example.com", &hit), 0, "a wildcard matches one label only");
    cr_expect_not(hit);
    cr_expect_eq(pick(&t, "api.other.test", &hit), 3, "names are normalized in the table too");
    cr_expect_eq(pick(&t, "x.wild.test", &hit), 5);
    cr_expect_eq(pick(&t, "fx.bad.test", &hit), 0, "partial wildcards are never matched");
    cr_expect_not(hit);
    cr_expect_eq(pick(&t, "default.test", &hit), 0);
    cr_expect(hit, "the default matched by name");
    cr_expect_eq(pick(&t, "", &hit), 0);
    cr_expect_not(hit);
    cr_expect_eq(sg_tls_sni_select(&t, "api.example.com\0x", 17, &hit), 0, "embedded NUL: no match");
    cr_expect_not(hit);
    sg_tls_sni_table_free(&t);
    sg_tls_sni_table_t empty;
    cr_assert_eq(sg_tls_sni_table_build(&empty, NULL, 0), 0);
    cr_expect_eq(pick(&empty, "a.test", &hit), 0);
    cr_expect_not(hit);
    sg_tls_sni_table_free(&empty);
}

Test(tls, alpn_select, .timeout = 10)
{
    const uint8_t *out = NULL;
    uint8_t len = 0;
    static const uint8_t both[] = "\x02h2\x08http/1.1";
    cr_expect_eq(sg_tls_alpn_select(both, sizeof(both) - 1, &out, &len), 1);
    cr_expect_eq(len, 8);
    cr_expect_eq(out, both + 4, "points into the client's list");
    static const uint8_t h2[] = "\x02h2";
    cr_expect_eq(sg_tls_alpn_select(h2, sizeof(h2) - 1, &out, &len), 0);
    static const uint8_t h10[] = "\x08http/1.0";
    cr_expect_eq(sg_tls_alpn_select(h10, sizeof(h10) - 1, &out, &len), 0);
    static const uint8_t zero[] = "\x08http/1.1\x00";
    cr_expect_eq(sg_tls_alpn_select(zero, sizeof(zero) - 1, &out, &len), -1, "an empty name");
    static const uint8_t cut[] = "\x08http/1.1\x05h2";
    cr_expect_eq(sg_tls_alpn_select(cut, sizeof(cut) - 1, &out, &len), -1, "an entry past the end");
    cr_expect_eq(sg_tls_alpn_select(both, 0, &out, &len), -1, "an empty list");
    cr_expect_eq(sg_tls_alpn_select(NULL, 3, &out, &len), -1);
}

/* ---- files ------------------------------------------------------------------- */

static sg_test_pki_t pki;

static void pki_setup(void)
{
    cr_assert_eq(sg_test_pki_make(&pki), 0);
}

static void pki_teardown(void)
{
    sg_test_pki_remove(&pki);
}

TestSuite(tls_files, .init = pki_setup, .fini = pki_teardown, .timeout = 30);

Test(tls_files, key_mode_follows_sshd)
{
    char why[400];
    cr_expect_eq(sg_tls_check_key_mode(pki.server.key, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(chmod(pki.server.key, 0400), 0);
    cr_expect_eq(sg_tls_check_key_mode(pki.server.key, why, sizeof(why)), 0, "0400 is fine: %s", why);
    static const unsigned bad[] = {0640, 0604, 0644, 0660, 0610, 0601};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(chmod(pki.server.key, bad[i]), 0);
        cr_expect_eq(sg_tls_check_key_mode(pki.server.key, why, sizeof(why)), -1, "mode %o", bad[i]);
        char mode[16];
        snprintf(mode, sizeof(mode), "mode %04o", bad[i]);
        cr_expect(strstr(why, mode) && strstr(why, pki.server.key) && strstr(why, "chmod 600"), "%s", why);
    }
    cr_assert_eq(chmod(pki.server.key, 0600), 0);
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/nope.key", pki.dir);
    cr_expect_eq(sg_tls_check_key_mode(missing, why, sizeof(why)), -1);
    cr_expect(strstr(why, missing) && strstr(why, "No such file"), "%s", why);
    cr_expect_eq(sg_tls_check_key_mode(pki.dir, why, sizeof(why)), -1, "a directory");
}

Test(tls_files, cert_key_pairs)
{
    char why[400];
    cr_expect_eq(sg_tls_check_cert_key(pki.server.cert, pki.server.key, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(sg_tls_check_cert_key(pki.server.cert, pki.alt.key, why, sizeof(why)), SG_TLS_BAD_KEY_FILE);
    cr_expect(strstr(why, "does not match") && strstr(why, pki.alt.key) && strstr(why, pki.server.cert), "%s", why);
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/nope.pem", pki.dir);
    cr_expect_eq(sg_tls_check_cert_key(missing, pki.server.key, why, sizeof(why)), SG_TLS_BAD_CERT_FILE);
    cr_expect(strstr(why, "cannot read certificate file") && strstr(why, missing), "%s", why);
    cr_expect_eq(sg_tls_check_cert_key(pki.server.key, pki.server.key, why, sizeof(why)), SG_TLS_BAD_CERT_FILE,
                 "a key is no cert");
    cr_expect(strstr(why, "no PEM certificate"), "%s", why);
    cr_expect_eq(sg_tls_check_cert_key(pki.server.cert, pki.server.cert, why, sizeof(why)), SG_TLS_BAD_KEY_FILE,
                 "a cert is no key");
    cr_expect(strstr(why, "group or others"), "the cert file is 0644, so the mode check names it first: %s", why);
    char notkey[256];
    cr_assert_eq(sg_test_pki_file(&pki, "notkey.key", "hello\n", 0600, notkey, sizeof(notkey)), 0);
    cr_expect_eq(sg_tls_check_cert_key(pki.server.cert, notkey, why, sizeof(why)), SG_TLS_BAD_KEY_FILE);
    cr_expect(strstr(why, "no PEM private key") && strstr(why, notkey), "%s", why);

    /* An encrypted key is refused without prompting (stdin is not read). */
    FILE *f = fopen(pki.server.key, "r");
    cr_assert_not_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(k);
    char enc[256];
    snprintf(enc, sizeof(enc), "%s/enc.key", pki.dir);
    f = fopen(enc, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), (unsigned char *)"secret", 6, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(k);
    cr_assert_eq(chmod(enc, 0600), 0);
    cr_expect_eq(sg_tls_check_cert_key(pki.server.cert, enc, why, sizeof(why)), SG_TLS_BAD_KEY_FILE);
    cr_expect(strstr(why, "encrypted"), "%s", why);

    /* A chain file: leaf then CA, read whole. */
    char chain[256], buf[8192];
    FILE *a = fopen(pki.server.cert, "r"), *b = fopen(pki.ca, "r");
    cr_assert(a && b);
    size_t n = fread(buf, 1, sizeof(buf) / 2, a);
    n += fread(buf + n, 1, sizeof(buf) / 2 - 1, b);
    buf[n] = '\0';
    fclose(a);
    fclose(b);
    cr_assert_eq(sg_test_pki_file(&pki, "chain.pem", buf, 0644, chain, sizeof(chain)), 0);
    cr_expect_eq(sg_tls_check_cert_key(chain, pki.server.key, why, sizeof(why)), 0, "%s", why);
    strcat(buf, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    cr_assert_eq(sg_test_pki_file(&pki, "badchain.pem", buf, 0644, chain, sizeof(chain)), 0);
    cr_expect_eq(sg_tls_check_cert_key(chain, pki.server.key, why, sizeof(why)), SG_TLS_BAD_CERT_FILE);
    cr_expect(strstr(why, "bad certificate after the first one"), "%s", why);
    cr_expect_eq(ERR_peek_error(), 0, "the error queue is left empty");
}

Test(tls_files, ca_file_and_ciphers)
{
    char why[400];
    cr_expect_eq(sg_tls_check_ca_file(pki.ca, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(sg_tls_check_ca_file(pki.ca_key, why, sizeof(why)), -1);
    cr_expect(strstr(why, "no PEM certificate"), "%s", why);
    cr_expect_eq(sg_tls_check_ciphers(SG_TLS_DEFAULT_CIPHERS, SG_TLS_DEFAULT_CIPHERSUITES, why, sizeof(why)), 0);
    cr_expect_eq(sg_tls_check_ciphers("NOPE-CIPHER", NULL, why, sizeof(why)), -1);
    cr_expect(strstr(why, "NOPE-CIPHER"), "%s", why);
    cr_expect_eq(sg_tls_check_ciphers(NULL, "TLS_NOPE", why, sizeof(why)), -1);
    cr_expect(strstr(why, "TLS_NOPE"), "%s", why);
}

Test(tls_files, cert_info)
{
    sg_tls_cert_info_t info;
    char why[400];
    cr_assert_eq(sg_tls_cert_file_info(pki.server.cert, &info, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(info.not_after_unix, pki.server.not_after_unix);
    cr_expect_lt(info.not_before_unix, (int64_t)time(NULL));
    cr_expect_str_eq(info.name, "localhost", "the first SAN DNS name");
    cr_expect_str_eq(info.serial_hex, pki.server.serial_hex);
    cr_assert_eq(sg_tls_cert_file_info(pki.cn_only.cert, &info, why, sizeof(why)), 0);
    cr_expect_str_eq(info.name, "cn.test", "the CN without a SAN");
    cr_assert_eq(sg_tls_cert_file_info(pki.wildcard.cert, &info, why, sizeof(why)), 0);
    cr_expect_str_eq(info.name, "*.wild.test");
    cr_assert_eq(sg_tls_cert_file_info(pki.expired.cert, &info, why, sizeof(why)), 0);
    cr_expect_lt(info.not_after_unix, (int64_t)time(NULL));
}

/* ---- handshakes in memory ----------------------------------------------------- */

TestSuite(tls_conn, .init = pki_setup, .fini = pki_teardown, .timeout = 60);

static sg_tls_server_t *server_ex(const sg_test_pair_t *const *pairs, size_t n, sg_tls_version_t min_version,
                                  sg_tls_ticket_keys_t *keys, const char *listener)
{
    sg_tls_cert_conf_t certs[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++)
        certs[i] = (sg_tls_cert_conf_t){pairs[i]->cert, pairs[i]->key};
    sg_tls_server_conf_t conf = {
        .enabled = true,
        .certificates = certs,
        .n_certificates = n,
        .min_version = min_version,
        .ciphers = SG_TLS_DEFAULT_CIPHERS,
        .ciphersuites = SG_TLS_DEFAULT_CIPHERSUITES,
        .session_tickets = keys != NULL,
    };
    char err[512];
    sg_tls_server_t *s = sg_tls_server_new(&conf, listener, keys, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    return s;
}

static sg_tls_server_t *server_of(const sg_test_pair_t *pair)
{
    const sg_test_pair_t *p[] = {pair};
    return server_ex(p, 1, SG_TLS_VERSION_1_2, NULL, "l");
}

static sg_tls_client_t *client_ex(const char *ca_file, const char *server_name, bool verify, sg_tls_version_t min)
{
    sg_tls_client_conf_t conf = {
        .enabled = true,
        .server_name = server_name,
        .verify = verify,
        .ca_file = ca_file,
        .min_version = min,
    };
    char err[512];
    sg_tls_client_t *c = sg_tls_client_new(&conf, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    return c;
}

static sg_tls_client_t *client_of(const char *server_name)
{
    return client_ex(pki.ca, server_name, true, SG_TLS_VERSION_1_2);
}

/* Moves every pending byte of `from` into `to`. */
static size_t move(sg_tls_conn_t *from, sg_tls_conn_t *to)
{
    char buf[4096];
    size_t total = 0, n;
    while ((n = sg_tls_conn_take(from, buf, sizeof(buf))) > 0) {
        cr_assert_eq(sg_tls_conn_feed(to, buf, n), 0);
        total += n;
    }
    return total;
}

typedef struct hs {
    sg_tls_status_t client, server;
} hs_t;

static bool settled(sg_tls_status_t s)
{
    return s == SG_TLS_DONE || s == SG_TLS_FAILED || s == SG_TLS_CLOSED;
}

/* Runs both handshakes until neither can move (each side's alert, if any,
 * delivered to the other). */
static hs_t pump(sg_tls_conn_t *cl, sg_tls_conn_t *sv)
{
    hs_t h = {SG_TLS_WANT_INPUT, SG_TLS_WANT_INPUT};
    for (int round = 0; round < 16; round++) {
        h.client = sg_tls_conn_handshake(cl);
        size_t a = move(cl, sv);
        h.server = sg_tls_conn_handshake(sv);
        size_t b = move(sv, cl);
        if (a == 0 && b == 0 && (settled(h.client) || settled(h.server))) {
            h.client = sg_tls_conn_handshake(cl);
            h.server = sg_tls_conn_handshake(sv);
            break;
        }
    }
    return h;
}

/* Reads whatever plaintext has arrived (and post-handshake messages). */
static size_t drain(sg_tls_conn_t *c, char *buf, size_t cap, sg_tls_status_t *last)
{
    size_t total = 0, n = 0;
    sg_tls_status_t st;
    while ((st = sg_tls_conn_read(c, buf + total, cap - total, &n)) == SG_TLS_DONE && n > 0) {
        total += n;
        if (total == cap)
            break;
    }
    if (last)
        *last = st;
    return total;
}

Test(tls_conn, handshake_alpn_and_data_both_ways)
{
    sg_tls_server_t *srv = server_of(&pki.server);
    sg_tls_client_t *cli = client_of(NULL);
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "127.0.0.1", NULL);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    cr_assert(cl && sv);
    sg_tls_client_release(cli); /* the connection keeps its context alive */
    sg_tls_server_release(srv);
    hs_t h = pump(cl, sv);
    cr_assert_eq(h.client, SG_TLS_DONE, "%s", sg_tls_conn_error_text(cl));
    cr_assert_eq(h.server, SG_TLS_DONE, "%s", sg_tls_conn_error_text(sv));
    cr_expect(sg_tls_conn_is_handshake_done(cl) && sg_tls_conn_is_handshake_done(sv));
    cr_expect_eq(sg_tls_conn_version(cl), SG_TLS_VERSION_1_3);
    cr_expect_eq(sg_tls_conn_version(sv), SG_TLS_VERSION_1_3);
    cr_expect_str_eq(sg_tls_conn_alpn(sv), "http/1.1");
    cr_expect_str_eq(sg_tls_conn_alpn(cl), "http/1.1");
    cr_expect_null(sg_tls_conn_server_name(sv), "an IP literal sends no SNI");
    cr_expect_eq(sg_tls_conn_cert_idx(sv), 0);
    cr_expect_not(sg_tls_conn_is_resumed(sv));
    cr_expect_gt(sg_tls_conn_handshake_ns(sv), 0);
    cr_expect_gt(sg_tls_conn_handshake_ns(cl), 0);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_OK);
    cr_expect_str_eq(sg_tls_conn_error_text(sv), "");

    /* 200 KiB each way, in pieces, through the records. */
    size_t big = 200 * 1024;
    char *data = malloc(big), *got = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + 3);
    for (size_t off = 0; off < big; off += 10000)
        cr_assert_eq(sg_tls_conn_write(cl, data + off, SG_MIN((size_t)10000, big - off)), SG_TLS_DONE);
    cr_expect_gt(sg_tls_conn_pending(cl), big, "ciphertext waits in the write BIO");
    move(cl, sv);
    cr_expect_eq(sg_tls_conn_pending(cl), 0);
    sg_tls_status_t st;
    cr_assert_eq(drain(sv, got, big + 1, &st), big);
    cr_expect_eq(st, SG_TLS_WANT_INPUT);
    cr_expect_eq(memcmp(got, data, big), 0);
    cr_assert_eq(sg_tls_conn_write(sv, "pong", 4), SG_TLS_DONE);
    move(sv, cl);
    cr_assert_eq(drain(cl, got, big, &st), 4, "TLS 1.3 tickets are read silently before the data");
    cr_expect_eq(memcmp(got, "pong", 4), 0);
    cr_expect_eq(sg_tls_conn_write(sv, "", 0), SG_TLS_DONE);

    /* close_notify: a clean end on the other side. */
    cr_assert_eq(sg_tls_conn_shutdown(cl), SG_TLS_DONE);
    move(cl, sv);
    size_t n;
    cr_expect_eq(sg_tls_conn_read(sv, got, big, &n), SG_TLS_CLOSED);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_OK, "a clean close is no failure");
    free(data);
    free(got);
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    cr_expect_eq(ERR_peek_error(), 0);
}

Test(tls_conn, eof_without_close_notify_is_a_closed_failure)
{
    sg_tls_server_t *srv = server_of(&pki.server);
    sg_tls_client_t *cli = client_of("localhost");
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "ignored.example", NULL);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    cr_assert_eq(pump(cl, sv).server, SG_TLS_DONE);
    cr_expect_str_eq(sg_tls_conn_server_name(sv), "localhost", "server_name overrides the host");
    cr_expect_str_eq(sg_tls_conn_server_name(cl), "localhost");
    sg_tls_conn_feed_eof(sv);
    char buf[16];
    size_t n;
    cr_expect_eq(sg_tls_conn_read(sv, buf, sizeof(buf), &n), SG_TLS_CLOSED);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_CLOSED, "%s", sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_write(sv, "x", 1), SG_TLS_FAILED);
    cr_expect_eq(sg_tls_conn_shutdown(sv), SG_TLS_FAILED, "no close_notify after a failure");

    /* EOF in the middle of a handshake. */
    sg_tls_conn_t *cl2 = sg_tls_conn_new_client(cli, "localhost", NULL);
    sg_tls_conn_t *sv2 = sg_tls_conn_new_server(srv);
    cr_assert_eq(sg_tls_conn_handshake(cl2), SG_TLS_WANT_INPUT);
    char hello[8192];
    size_t hl = sg_tls_conn_take(cl2, hello, sizeof(hello));
    cr_assert_gt(hl, 10);
    cr_assert_eq(sg_tls_conn_feed(sv2, hello, hl / 2), 0);
    cr_expect_eq(sg_tls_conn_handshake(sv2), SG_TLS_WANT_INPUT, "half a ClientHello");
    sg_tls_conn_feed_eof(sv2);
    cr_expect_eq(sg_tls_conn_handshake(sv2), SG_TLS_CLOSED);
    cr_expect_eq(sg_tls_conn_error(sv2), SG_TLS_E_CLOSED, "%s", sg_tls_conn_error_text(sv2));
    cr_expect_eq(sg_tls_conn_version(sv2), SG_TLS_VERSION_NONE);
    cr_expect_gt(sg_tls_conn_handshake_ns(sv2), 0, "a failed handshake is timed too");
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    sg_tls_conn_free(cl2);
    sg_tls_conn_free(sv2);
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
}

/* Client server_name -> which certificate, proved by verification (each
 * certificate verifies only for its own names). */
Test(tls_conn, sni_picks_the_certificate)
{
    const sg_test_pair_t *pairs[] = {&pki.server, &pki.alt, &pki.wildcard, &pki.cn_only};
    sg_tls_server_t *srv = server_ex(pairs, 4, SG_TLS_VERSION_1_2, NULL, "l");
    static const struct {
        const char *sni;
        uint32_t idx;
        bool is_verified;
    } cases[] = {
        {"server.test", 0, true},    {"alt.test", 1, true}, {"WWW.ALT.TEST", 1, true},  {"a.wild.test", 2, true},
        {"a.b.wild.test", 0, false}, {"cn.test", 3, true},  {"unknown.test", 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_tls_client_t *cli = client_of(cases[i].sni);
        sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "127.0.0.1", NULL);
        sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
        hs_t h = pump(cl, sv);
        cr_expect_eq(sg_tls_conn_cert_idx(sv), cases[i].idx, "%s", cases[i].sni);
        if (cases[i].is_verified) {
            cr_expect_eq(h.client, SG_TLS_DONE, "%s: %s", cases[i].sni, sg_tls_conn_error_text(cl));
            cr_expect_eq(h.server, SG_TLS_DONE, "%s", cases[i].sni);
        } else {
            cr_expect_eq(h.client, SG_TLS_FAILED, "%s", cases[i].sni);
            cr_expect_eq(sg_tls_conn_error(cl), SG_TLS_E_HOSTNAME, "%s: %s", cases[i].sni, sg_tls_conn_error_text(cl));
        }
        sg_tls_conn_free(cl);
        sg_tls_conn_free(sv);
        sg_tls_client_release(cli);
    }
    bool hit;
    cr_expect_eq(sg_tls_server_select(srv, "www.alt.test", &hit), 1);
    cr_expect_eq(sg_tls_server_n_certs(srv), 4);
    cr_expect_eq(sg_tls_server_cert_info(srv, 1)->not_after_unix, pki.alt.not_after_unix);
    cr_expect_str_eq(sg_tls_server_cert_info(srv, 2)->name, "*.wild.test");
    cr_expect_null(sg_tls_server_cert_info(srv, 4));
    sg_tls_server_release(srv);
}

/* ---- verification failures, each its own kind ---- */

typedef struct verify_case {
    const sg_test_pair_t *served;
    const char *ca;
    const char *name;
    sg_tls_error_t client_kind;
    sg_tls_error_t server_kind;
} verify_case_t;

static void expect_verify(const verify_case_t *vc, const char *what)
{
    sg_tls_server_t *srv = server_of(vc->served);
    sg_tls_client_t *cli = client_ex(vc->ca, NULL, true, SG_TLS_VERSION_1_2);
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, vc->name, NULL);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    hs_t h = pump(cl, sv);
    cr_expect_eq(h.client, SG_TLS_FAILED, "%s", what);
    cr_expect_eq(sg_tls_conn_error(cl), vc->client_kind, "%s: client %s (%s)", what,
                 sg_tls_error_name(sg_tls_conn_error(cl)), sg_tls_conn_error_text(cl));
    cr_expect_eq(sg_tls_conn_error(sv), vc->server_kind, "%s: server %s (%s)", what,
                 sg_tls_error_name(sg_tls_conn_error(sv)), sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_version(cl), SG_TLS_VERSION_1_3, "%s: the version was agreed", what);
    cr_expect(strncmp(sg_tls_conn_error_text(cl), sg_tls_error_name(vc->client_kind),
                      strlen(sg_tls_error_name(vc->client_kind))) == 0,
              "%s", sg_tls_conn_error_text(cl));
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
}

Test(tls_conn, verification_failures_have_their_own_kinds)
{
    verify_case_t unknown = {&pki.server, pki.other_ca, "server.test", SG_TLS_E_UNKNOWN_CA, SG_TLS_E_CERT_REJECTED};
    expect_verify(&unknown, "a CA that did not sign it");
    verify_case_t system = {&pki.server, NULL, "server.test", SG_TLS_E_UNKNOWN_CA, SG_TLS_E_CERT_REJECTED};
    expect_verify(&system, "the system store");
    verify_case_t host = {&pki.wronghost, pki.ca, "server.test", SG_TLS_E_HOSTNAME, SG_TLS_E_CERT_REJECTED};
    expect_verify(&host, "another host's certificate");
    verify_case_t ip = {&pki.wronghost, pki.ca, "127.0.0.1", SG_TLS_E_HOSTNAME, SG_TLS_E_CERT_REJECTED};
    expect_verify(&ip, "an IP not in the certificate");
    verify_case_t expired = {&pki.expired, pki.ca, "server.test", SG_TLS_E_CERT_EXPIRED, SG_TLS_E_CERT_REJECTED};
    expect_verify(&expired, "an expired certificate");

    /* The hostname message names what was wanted. */
    sg_tls_server_t *srv = server_of(&pki.wronghost);
    sg_tls_client_t *cli = client_of(NULL);
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "server.test", NULL);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    pump(cl, sv);
    cr_expect(strstr(sg_tls_conn_error_text(cl), "wanted server.test"), "%s", sg_tls_conn_error_text(cl));
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
}

Test(tls_conn, verify_off_and_ip_names)
{
    sg_tls_server_t *srv = server_of(&pki.wronghost);
    sg_tls_client_t *cli = client_ex(NULL, NULL, false, SG_TLS_VERSION_1_2);
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "server.test", NULL);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(pump(cl, sv).client, SG_TLS_DONE, "verify: false takes any certificate: %s",
                 sg_tls_conn_error_text(cl));
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);

    srv = server_of(&pki.server);
    cli = client_of(NULL);
    cl = sg_tls_conn_new_client(cli, "::1", NULL);
    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(pump(cl, sv).client, SG_TLS_DONE, "IPv6 SAN: %s", sg_tls_conn_error_text(cl));
    cr_expect_null(sg_tls_conn_server_name(sv));
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    cr_expect_null(sg_tls_conn_new_client(cli, "", NULL), "no name at all");
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
}

/* ---- raw OpenSSL peers for clients swarmgate would never be ---- */

typedef struct raw {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
} raw_t;

static void raw_init(raw_t *r, int min_v, int max_v, const unsigned char *alpn, unsigned alpn_len)
{
    r->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(r->ctx);
    SSL_CTX_set_security_level(r->ctx, 0); /* lets TLS 1.1 be offered */
    SSL_CTX_set_cipher_list(r->ctx, "DEFAULT:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(r->ctx, min_v);
    SSL_CTX_set_max_proto_version(r->ctx, max_v);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_NONE, NULL);
    if (alpn)
        SSL_CTX_set_alpn_protos(r->ctx, alpn, alpn_len);
    r->ssl = SSL_new(r->ctx);
    r->rbio = BIO_new(BIO_s_mem());
    r->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r->rbio, -1);
    SSL_set_bio(r->ssl, r->rbio, r->wbio);
    SSL_set_connect_state(r->ssl);
}

static void raw_free(raw_t *r)
{
    SSL_set_shutdown(r->ssl, SSL_SENT_SHUTDOWN); /* keeps the session resumable */
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
    ERR_clear_error();
}

/* Handshake between a raw client and a server conn; 1 when the raw side completed. */
static int raw_pump(raw_t *r, sg_tls_conn_t *sv, sg_tls_status_t *server_status)
{
    int done = 0;
    char buf[16384];
    for (int round = 0; round < 16; round++) {
        int rc = SSL_do_handshake(r->ssl);
        done = rc == 1;
        int n;
        bool moved = false;
        while ((n = BIO_read(r->wbio, buf, sizeof(buf))) > 0) {
            cr_assert_eq(sg_tls_conn_feed(sv, buf, (size_t)n), 0);
            moved = true;
        }
        *server_status = sg_tls_conn_handshake(sv);
        size_t m;
        while ((m = sg_tls_conn_take(sv, buf, sizeof(buf))) > 0) {
            BIO_write(r->rbio, buf, (int)m);
            moved = true;
        }
        if (!moved && (done || settled(*server_status)))
            break;
    }
    ERR_clear_error();
    return done;
}

Test(tls_conn, tls11_and_below_is_refused)
{
    sg_tls_server_t *srv = server_of(&pki.server);
    raw_t r;
    raw_init(&r, TLS1_1_VERSION, TLS1_1_VERSION, NULL, 0);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    sg_tls_status_t st;
    cr_expect_eq(raw_pump(&r, sv, &st), 0);
    cr_expect_eq(st, SG_TLS_FAILED);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_PROTOCOL_VERSION, "%s", sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_version(sv), SG_TLS_VERSION_NONE);
    sg_tls_conn_free(sv);
    raw_free(&r);

    raw_init(&r, TLS1_VERSION, TLS1_VERSION, NULL, 0);
    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(raw_pump(&r, sv, &st), 0);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_PROTOCOL_VERSION, "TLS 1.0: %s", sg_tls_conn_error_text(sv));
    sg_tls_conn_free(sv);
    raw_free(&r);
    sg_tls_server_release(srv);

    /* min_version 1.3 refuses a TLS 1.2-only client; 1.2 takes it. */
    const sg_test_pair_t *p[] = {&pki.server};
    srv = server_ex(p, 1, SG_TLS_VERSION_1_3, NULL, "l");
    raw_init(&r, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0);
    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(raw_pump(&r, sv, &st), 0);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_PROTOCOL_VERSION, "%s", sg_tls_conn_error_text(sv));
    sg_tls_conn_free(sv);
    raw_free(&r);
    sg_tls_server_release(srv);

    srv = server_of(&pki.server);
    raw_init(&r, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0);
    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(raw_pump(&r, sv, &st), 1);
    cr_expect_eq(st, SG_TLS_DONE, "%s", sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_version(sv), SG_TLS_VERSION_1_2);
    cr_expect_null(sg_tls_conn_alpn(sv), "no ALPN offered, none agreed");
    sg_tls_conn_free(sv);
    raw_free(&r);
    sg_tls_server_release(srv);
}

Test(tls_conn, alpn_without_http11_is_refused)
{
    sg_tls_server_t *srv = server_of(&pki.server);
    static const unsigned char h2[] = "\x02h2";
    raw_t r;
    raw_init(&r, TLS1_2_VERSION, TLS1_3_VERSION, h2, 3);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    sg_tls_status_t st;
    cr_expect_eq(raw_pump(&r, sv, &st), 0);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_NO_ALPN, "%s", sg_tls_conn_error_text(sv));
    sg_tls_conn_free(sv);
    raw_free(&r);

    static const unsigned char both[] = "\x02h2\x08http/1.1";
    raw_init(&r, TLS1_2_VERSION, TLS1_3_VERSION, both, sizeof(both) - 1);
    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(raw_pump(&r, sv, &st), 1);
    cr_expect_str_eq(sg_tls_conn_alpn(sv), "http/1.1");
    const unsigned char *sel;
    unsigned sl;
    SSL_get0_alpn_selected(r.ssl, &sel, &sl);
    cr_expect(sl == 8 && memcmp(sel, "http/1.1", 8) == 0, "the client sees http/1.1");
    sg_tls_conn_free(sv);
    raw_free(&r);
    sg_tls_server_release(srv);
}

Test(tls_conn, plain_http_and_garbage)
{
    sg_tls_server_t *srv = server_of(&pki.server);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(sg_tls_conn_feed(sv, req, sizeof(req) - 1), 0);
    cr_expect_eq(sg_tls_conn_handshake(sv), SG_TLS_FAILED);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_HTTP_REQUEST, "%s", sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_handshake(sv), SG_TLS_FAILED, "stays failed");
    sg_tls_conn_set_error(sv, SG_TLS_E_TIMEOUT);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_HTTP_REQUEST, "the first failure is kept");
    sg_tls_conn_free(sv);

    sv = sg_tls_conn_new_server(srv);
    static const unsigned char junk[] = {0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(sg_tls_conn_feed(sv, junk, sizeof(junk)), 0);
    cr_expect_eq(sg_tls_conn_handshake(sv), SG_TLS_FAILED);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_PROTOCOL, "%s", sg_tls_conn_error_text(sv));
    cr_expect_gt(sg_tls_conn_pending(sv), 0, "an alert waits to be sent");
    sg_tls_conn_free(sv);

    sv = sg_tls_conn_new_server(srv);
    cr_expect_eq(sg_tls_conn_handshake(sv), SG_TLS_WANT_INPUT);
    sg_tls_conn_set_error(sv, SG_TLS_E_TIMEOUT);
    cr_expect_eq(sg_tls_conn_error(sv), SG_TLS_E_TIMEOUT);
    cr_expect(strstr(sg_tls_conn_error_text(sv), "timeout: "), "%s", sg_tls_conn_error_text(sv));
    cr_expect_eq(sg_tls_conn_handshake(sv), SG_TLS_FAILED);
    sg_tls_conn_free(sv);
    sg_tls_server_release(srv);
    cr_expect_eq(ERR_peek_error(), 0);
}

/* ---- resumption ---- */

/* One full exchange; returns the client's newest session (tickets are
 * read after the handshake). */
static sg_tls_session_t *connect_once(sg_tls_client_t *cli, sg_tls_server_t *srv, const sg_tls_session_t *resume,
                                      bool *client_resumed, bool *server_resumed)
{
    sg_tls_conn_t *cl = sg_tls_conn_new_client(cli, "server.test", resume);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    cr_assert(cl && sv);
    hs_t h = pump(cl, sv);
    cr_assert_eq(h.client, SG_TLS_DONE, "%s", sg_tls_conn_error_text(cl));
    cr_assert_eq(h.server, SG_TLS_DONE, "%s", sg_tls_conn_error_text(sv));
    cr_assert_eq(sg_tls_conn_write(sv, "hi", 2), SG_TLS_DONE);
    move(sv, cl);
    char buf[16];
    cr_assert_eq(drain(cl, buf, sizeof(buf), NULL), 2);
    *client_resumed = sg_tls_conn_is_resumed(cl);
    *server_resumed = sg_tls_conn_is_resumed(sv);
    sg_tls_session_t *s = sg_tls_conn_session(cl);
    sg_tls_conn_free(cl);
    sg_tls_conn_free(sv);
    return s;
}

/* TLS 1.3 tickets are used once by the client (RFC 8446 appendix C.4):
 * every resumption gets a fresh ticket, which the next connection uses. */
Test(tls_conn, tls13_resumption_with_shared_rotating_keys)
{
    sg_tls_ticket_keys_t *keys = sg_tls_ticket_keys_new(3600 * 1000);
    cr_assert_not_null(keys);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 1);
    const sg_test_pair_t *p[] = {&pki.server};
    sg_tls_server_t *srv = server_ex(p, 1, SG_TLS_VERSION_1_2, keys, "api");
    sg_tls_client_t *cli = client_of(NULL);
    bool cr, sr;
    sg_tls_session_t *s1 = connect_once(cli, srv, NULL, &cr, &sr);
    cr_assert_not_null(s1, "the client kept a ticket");
    cr_expect_not(cr || sr);

    sg_tls_session_t *s2 = connect_once(cli, srv, s1, &cr, &sr);
    cr_expect(cr && sr, "the second handshake is resumed");
    cr_assert_not_null(s2, "a resumption brings a new ticket");

    /* Another server built from the same keys (a reload, another worker's
     * view): still resumed. Another listener name: not. */
    sg_tls_server_t *srv2 = server_ex(p, 1, SG_TLS_VERSION_1_2, keys, "api");
    sg_tls_session_t *s3 = connect_once(cli, srv2, s2, &cr, &sr);
    cr_expect(cr && sr, "resumed by a new context with the same keys");
    sg_tls_server_t *other = server_ex(p, 1, SG_TLS_VERSION_1_2, keys, "admin");
    sg_tls_session_t *s4 = connect_once(cli, other, s3, &cr, &sr);
    cr_expect_not(sr, "a ticket of listener api is not resumed on listener admin");

    /* One rotation: a ticket of the previous key still decrypts; two: its
     * key is wiped, a full handshake follows and its new ticket works. */
    sg_tls_session_t *sa = connect_once(cli, srv, NULL, &cr, &sr);
    cr_assert_eq(sg_tls_ticket_keys_rotate(keys), 0);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 2);
    sg_tls_session_t *sa2 = connect_once(cli, srv, sa, &cr, &sr);
    cr_expect(sr, "a ticket of the previous key is resumed");
    sg_tls_session_t *sb = connect_once(cli, srv, NULL, &cr, &sr);
    cr_assert_eq(sg_tls_ticket_keys_rotate(keys), 0);
    cr_assert_eq(sg_tls_ticket_keys_rotate(keys), 0);
    sg_tls_session_t *sb2 = connect_once(cli, srv, sb, &cr, &sr);
    cr_expect_not(sr, "two rotations later the key is wiped: a full handshake");
    sg_tls_session_t *sb3 = connect_once(cli, srv, sb2, &cr, &sr);
    cr_expect(sr, "and the new ticket works");

    sg_tls_session_t *all[] = {s1, s2, s3, s4, sa, sa2, sb, sb2, sb3};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sg_tls_session_free(all[i]);
    sg_tls_server_release(srv);
    sg_tls_server_release(srv2);
    sg_tls_server_release(other);
    sg_tls_client_release(cli);
    sg_tls_ticket_keys_free(keys);
}

Test(tls_conn, tls12_resumption_and_tickets_off)
{
    sg_tls_ticket_keys_t *keys = sg_tls_ticket_keys_new(60 * 1000);
    const sg_test_pair_t *p[] = {&pki.server};
    sg_tls_server_t *srv = server_ex(p, 1, SG_TLS_VERSION_1_2, keys, "l");
    raw_t r;
    raw_init(&r, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0);
    sg_tls_conn_t *sv = sg_tls_conn_new_server(srv);
    sg_tls_status_t st;
    cr_assert_eq(raw_pump(&r, sv, &st), 1);
    SSL_SESSION *sess = SSL_get1_session(r.ssl);
    cr_assert_not_null(sess);
    cr_expect(SSL_SESSION_has_ticket(sess), "a TLS 1.2 ticket");
    sg_tls_conn_free(sv);
    raw_free(&r);

    raw_init(&r, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0);
    SSL_set_session(r.ssl, sess);
    sv = sg_tls_conn_new_server(srv);
    cr_assert_eq(raw_pump(&r, sv, &st), 1);
    cr_expect(sg_tls_conn_is_resumed(sv), "TLS 1.2 resumed by ticket");
    cr_expect_eq(sg_tls_conn_version(sv), SG_TLS_VERSION_1_2);
    sg_tls_conn_free(sv);
    raw_free(&r);
    SSL_SESSION_free(sess);
    sg_tls_server_release(srv);

    /* session_tickets: false (or no key set): no ticket, no resumption. */
    srv = server_ex(p, 1, SG_TLS_VERSION_1_2, NULL, "l");
    sg_tls_client_t *cli = client_of(NULL);
    bool cr, sr;
    sg_tls_session_t *s = connect_once(cli, srv, NULL, &cr, &sr);
    cr_expect_null(s, "no ticket was given");
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
    sg_tls_ticket_keys_free(keys);
}

Test(tls_conn, ticket_keys_rotate_by_time)
{
    sg_tls_ticket_keys_t *keys = sg_tls_ticket_keys_new(1000);
    cr_assert_not_null(keys);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    sg_tls_ticket_keys_tick(keys, now);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 1, "not due yet");
    sg_tls_ticket_keys_tick(keys, now + 1500);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 2);
    sg_tls_ticket_keys_tick(keys, now + 1600);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 2, "the next deadline is a period later");
    sg_tls_ticket_keys_set_rotation(keys, 60000);
    sg_tls_ticket_keys_tick(keys, now + 2600);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 3, "the old deadline still holds");
    sg_tls_ticket_keys_tick(keys, now + 3700);
    cr_expect_eq(sg_tls_ticket_keys_generation(keys), 3, "then the new period");
    sg_tls_ticket_keys_free(keys);
}

/* Workers handshake with tickets while another thread rotates: every
 * handshake completes (TSan: the key slots are read without a data race). */
typedef struct worker_arg {
    sg_tls_server_t *srv;
    sg_tls_client_t *cli;
    int ok;
} worker_arg_t;

static void *handshakes(void *p)
{
    worker_arg_t *a = p;
    sg_tls_session_t *s = NULL;
    for (int i = 0; i < 30; i++) {
        sg_tls_conn_t *cl = sg_tls_conn_new_client(a->cli, "server.test", s);
        sg_tls_conn_t *sv = sg_tls_conn_new_server(a->srv);
        char buf[4096];
        size_t n;
        for (int round = 0; round < 16; round++) {
            sg_tls_conn_handshake(cl);
            while ((n = sg_tls_conn_take(cl, buf, sizeof(buf))) > 0)
                if (sg_tls_conn_feed(sv, buf, n) != 0)
                    return NULL;
            sg_tls_conn_handshake(sv);
            while ((n = sg_tls_conn_take(sv, buf, sizeof(buf))) > 0)
                if (sg_tls_conn_feed(cl, buf, n) != 0)
                    return NULL;
        }
        (void)sg_tls_conn_read(cl, buf, sizeof(buf), &n);
        a->ok += sg_tls_conn_is_handshake_done(cl) && sg_tls_conn_is_handshake_done(sv);
        sg_tls_session_free(s);
        s = sg_tls_conn_session(cl);
        sg_tls_conn_free(cl);
        sg_tls_conn_free(sv);
    }
    sg_tls_session_free(s);
    return NULL;
}

static void *rotator(void *p)
{
    sg_tls_ticket_keys_t *k = p;
    for (int i = 0; i < 200; i++) {
        (void)sg_tls_ticket_keys_rotate(k);
        usleep(200);
    }
    return NULL;
}

Test(tls_conn, handshakes_on_threads_while_keys_rotate)
{
    sg_tls_ticket_keys_t *keys = sg_tls_ticket_keys_new(3600 * 1000);
    const sg_test_pair_t *p[] = {&pki.server};
    sg_tls_server_t *srv = server_ex(p, 1, SG_TLS_VERSION_1_2, keys, "l");
    sg_tls_client_t *cli = client_of(NULL);
    worker_arg_t a[2] = {{srv, cli, 0}, {srv, cli, 0}};
    pthread_t th[3];
    pthread_create(&th[0], NULL, handshakes, &a[0]);
    pthread_create(&th[1], NULL, handshakes, &a[1]);
    pthread_create(&th[2], NULL, rotator, keys);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_expect_eq(a[0].ok, 30);
    cr_expect_eq(a[1].ok, 30);
    sg_tls_client_release(cli);
    sg_tls_server_release(srv);
    sg_tls_ticket_keys_free(keys);
}

/* ---- context errors ---- */

Test(tls_conn, context_errors_name_the_file)
{
    char err[512], missing[256];
    snprintf(missing, sizeof(missing), "%s/missing.pem", pki.dir);
    sg_tls_cert_conf_t certs[] = {{pki.server.cert, pki.server.key}, {missing, pki.alt.key}};
    sg_tls_server_conf_t conf = {.enabled = true, .certificates = certs, .n_certificates = 2};
    cr_expect_null(sg_tls_server_new(&conf, "web", NULL, err, sizeof(err)));
    cr_expect(strstr(err, "listener web") && strstr(err, missing), "%s", err);
    certs[1] = (sg_tls_cert_conf_t){pki.alt.cert, pki.server.key};
    cr_expect_null(sg_tls_server_new(&conf, "web", NULL, err, sizeof(err)));
    cr_expect(strstr(err, "does not match"), "%s", err);
    conf.n_certificates = 0;
    cr_expect_null(sg_tls_server_new(&conf, "web", NULL, err, sizeof(err)));
    conf.n_certificates = 1;
    conf.ciphers = "NOPE";
    cr_expect_null(sg_tls_server_new(&conf, "web", NULL, err, sizeof(err)));
    cr_expect(strstr(err, "ciphers"), "%s", err);

    sg_tls_client_conf_t cc = {.enabled = true, .verify = true, .ca_file = missing};
    cr_expect_null(sg_tls_client_new(&cc, err, sizeof(err)));
    cr_expect(strstr(err, "ca_file") && strstr(err, missing), "%s", err);
    cc.ca_file = pki.ca;
    cc.cert = pki.server.cert;
    cr_expect_null(sg_tls_client_new(&cc, err, sizeof(err)));
    cr_expect(strstr(err, "go together"), "%s", err);
    cc.key = pki.alt.key;
    cr_expect_null(sg_tls_client_new(&cc, err, sizeof(err)));
    cr_expect(strstr(err, "does not match"), "%s", err);
    cc.key = pki.server.key;
    sg_tls_client_t *cli = sg_tls_client_new(&cc, err, sizeof(err));
    cr_expect_not_null(cli, "a client certificate: %s", err);
    sg_tls_client_release(cli);
    cr_expect_eq(ERR_peek_error(), 0);
}
