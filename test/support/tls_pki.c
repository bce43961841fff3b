#include "support/tls_pki.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The CA's key and certificate, kept between calls of one pki (tests are
 * single-threaded per process). */
typedef struct ca {
    EVP_PKEY *key;
    X509 *cert;
} ca_t;

static int fail(const char *what)
{
    fprintf(stderr, "tls_pki: %s\n", what);
    ERR_print_errors_fp(stderr);
    return -1;
}

static FILE *create(const char *path, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return NULL;
    if (fchmod(fd, mode) != 0) { /* the umask must not loosen or tighten the test's mode */
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f)
        close(fd);
    return f;
}

static int write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = create(path, 0600);
    if (!f)
        return fail(path);
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok == 1 ? 0 : fail("PEM_write_PrivateKey");
}

static int write_cert(const char *path, X509 *x)
{
    FILE *f = create(path, 0644);
    if (!f)
        return fail(path);
    int ok = PEM_write_X509(f, x);
    fclose(f);
    return ok == 1 ? 0 : fail("PEM_write_X509");
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e)
        return fail(value);
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1 ? 0 : fail("X509_add_ext");
}

/* A certificate for key, signed by signer (itself when NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long from_days, long to_days, bool is_ca,
                       const ca_t *signer)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    unsigned char sbytes[16];
    BIGNUM *bn = NULL;
    if (RAND_bytes(sbytes, sizeof(sbytes)) != 1)
        goto bad;
    sbytes[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(sbytes, sizeof(sbytes), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto bad;
    X509_set_version(x, 2);
    if (!X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400L) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400L))
        goto bad;
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"swarmgate tests", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *issuer = signer ? signer->cert : x;
    if (X509_set_issuer_name(x, X509_get_subject_name(issuer)) != 1 || X509_set_pubkey(x, key) != 1)
        goto bad;
    if (add_ext(x, issuer, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") < 0)
        goto bad;
    if (is_ca) {
        if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
            add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") < 0)
            goto bad;
    } else {
        if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") < 0 ||
            add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") < 0)
            goto bad;
        if (san && add_ext(x, issuer, NID_subject_alt_name, san) < 0)
            goto bad;
    }
    if (X509_sign(x, signer ? signer->key : key, EVP_sha256()) == 0)
        goto bad;
    BN_free(bn);
    return x;
bad:
    fail("make_cert");
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static void path_in(const sg_test_pki_t *p, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", p->dir, name);
}

static int load_ca(const sg_test_pki_t *p, ca_t *ca)
{
    ca->key = NULL;
    ca->cert = NULL;
    FILE *f = fopen(p->ca_key, "r");
    if (f) {
        ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    f = fopen(p->ca, "r");
    if (f) {
        ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    return ca->key && ca->cert ? 0 : fail("load the CA");
}

static void free_ca(ca_t *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
}

int sg_test_pki_leaf(sg_test_pki_t *p, const char *stem, const char *cn, const char *san, long from_days, long to_days,
                     sg_test_pair_t *out)
{
    ca_t ca;
    if (load_ca(p, &ca) < 0)
        return -1;
    int rc = -1;
    char name[96];
    memset(out, 0, sizeof(*out));
    snprintf(name, sizeof(name), "%s.pem", stem);
    path_in(p, name, out->cert, sizeof(out->cert));
    snprintf(name, sizeof(name), "%s.key", stem);
    path_in(p, name, out->key, sizeof(out->key));
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? make_cert(k, cn, san, from_days, to_days, false, &ca) : NULL;
    if (x && write_key(out->key, k) == 0 && write_cert(out->cert, x) == 0) {
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
            out->not_after_unix = (int64_t)timegm(&tm);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        snprintf(out->serial_hex, sizeof(out->serial_hex), "%s", hex ? hex : "");
        OPENSSL_free(hex);
        BN_free(bn);
        rc = 0;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    free_ca(&ca);
    ERR_clear_error();
    return rc;
}

static int make_ca(const char *cert_path, const char *key_path, const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? make_cert(k, cn, NULL, -2, 3650, true, NULL) : NULL;
    int rc = x && write_cert(cert_path, x) == 0 && (!key_path || write_key(key_path, k) == 0) ? 0 : -1;
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int sg_test_pki_make(sg_test_pki_t *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/sg-pki-XXXXXX");
    if (!mkdtemp(p->dir))
        return fail("mkdtemp");
    path_in(p, "ca.pem", p->ca, sizeof(p->ca));
    path_in(p, "ca.key", p->ca_key, sizeof(p->ca_key));
    path_in(p, "other-ca.pem", p->other_ca, sizeof(p->other_ca));
    char other_key[192];
    path_in(p, "other-ca.key", other_key, sizeof(other_key));
    if (make_ca(p->ca, p->ca_key, "swarmgate test CA") < 0 || make_ca(p->other_ca, other_key, "another CA") < 0)
        return -1;
    static const char server_san[] = "DNS:localhost,DNS:server.test,IP:127.0.0.1,IP:::1";
    if (sg_test_pki_leaf(p, "server", "server.test", server_san, -1, 90, &p->server) < 0 ||
        sg_test_pki_leaf(p, "alt", "alt.test", "DNS:alt.test,DNS:www.alt.test", -1, 30, &p->alt) < 0 ||
        sg_test_pki_leaf(p, "wildcard", "*.wild.test", "DNS:*.wild.test", -1, 60, &p->wildcard) < 0 ||
        sg_test_pki_leaf(p, "expired", "server.test", server_san, -30, -1, &p->expired) < 0 ||
        sg_test_pki_leaf(p, "wronghost", "other.test", "DNS:other.test", -1, 90, &p->wronghost) < 0 ||
        sg_test_pki_leaf(p, "cn-only", "cn.test", NULL, -1, 90, &p->cn_only) < 0)
        return -1;
    return 0;
}

int sg_test_pki_file(const sg_test_pki_t *p, const char *name, const char *text, unsigned mode, char *out, size_t cap)
{
    path_in(p, name, out, cap);
    FILE *f = create(out, mode);
    if (!f)
        return fail(out);
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

void sg_test_pki_remove(sg_test_pki_t *p)
{
    if (!p->dir[0])
        return;
    DIR *d = opendir(p->dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", p->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(p->dir);
    p->dir[0] = '\0';
}
