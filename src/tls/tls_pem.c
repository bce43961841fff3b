/* Certificate and key files: reading (bounded, with errno in the message),
 * PEM parsing without any passphrase prompt, sshd's permission rule for
 * keys, the key-certificate match, and what the SNI table and the expiry
 * gauge need of a certificate (names, dates). Used by the contexts at
 * build time and by the config loader's checks. */
#include "tls/tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX (1u << 20)

void sg__tls_ssl_errors(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

uint64_t sg__tls_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

BIO *sg__tls_file_bio(const char *path, const char *what, char *why, size_t cap)
{
    /* Non-blocking open and a regular file only: a FIFO or a device named
     * by mistake must not hang a reload on the control thread. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, cap, "cannot read %s file %s: %s", what, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s file %s is not a regular file", what, path);
        close(fd);
        return NULL;
    }
    if (st.st_size > (off_t)FILE_MAX) {
        snprintf(why, cap, "%s file %s is larger than 1 MiB", what, path);
        close(fd);
        return NULL;
    }
    char *buf = malloc(FILE_MAX);
    size_t n = 0;
    int err = 0;
    while (buf && n < FILE_MAX) {
        ssize_t r = read(fd, buf + n, FILE_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = errno;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    BIO *b = NULL;
    if (!buf)
        snprintf(why, cap, "reading %s file %s: out of memory", what, path);
    else if (err)
        snprintf(why, cap, "cannot read %s file %s: %s", what, path, strerror(err));
    else if (!(b = BIO_new(BIO_s_mem())) || (n > 0 && BIO_write(b, buf, (int)n) != (int)n)) {
        BIO_free(b);
        b = NULL;
        snprintf(why, cap, "reading %s file %s: out of memory", what, path);
    }
    if (buf) {
        OPENSSL_cleanse(buf, n); /* it may be a key */
        free(buf);
    }
    return b;
}

int sg_tls_check_key_mode(const char *key_file, char *why, size_t cap)
{
    struct stat st;
    if (stat(key_file, &st) != 0) {
        snprintf(why, cap, "cannot read key file %s: %s", key_file, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "key file %s is not a regular file", key_file);
        return -1;
    }
    /* sshd's rule (sshkey_perm_ok): a private key grants nothing to group
     * or others. A key others can read is a key others have. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, cap,
                 "key file %s is accessible by group or others (mode %04o); private keys must be readable by "
                 "their owner only: chmod 600 %s",
                 key_file, (unsigned)(st.st_mode & 07777), key_file);
        return -1;
    }
    return 0;
}

/* Never prompt: a daemon has no terminal, and OpenSSL's default callback
 * would read one. -1 makes an encrypted key fail to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    SG_UNUSED(buf);
    SG_UNUSED(size);
    SG_UNUSED(rwflag);
    *(bool *)u = true;
    return -1;
}

int sg__tls_load_chain(const char *cert_file, X509 **leaf, STACK_OF(X509) * *chain, char *why, size_t cap)
{
    *leaf = NULL;
    *chain = NULL;
    ERR_clear_error();
    BIO *b = sg__tls_file_bio(cert_file, "certificate", why, cap);
    if (!b)
        return -1;
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!x) {
        ERR_clear_error();
        snprintf(why, cap, "no PEM certificate in %s (expected -----BEGIN CERTIFICATE-----)", cert_file);
        BIO_free(b);
        return -1;
    }
    STACK_OF(X509) *st = sk_X509_new_null();
    if (!st)
        goto oom;
    for (;;) {
        X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!ca)
            break;
        if (!sk_X509_push(st, ca)) {
            X509_free(ca);
            goto oom;
        }
    }
    /* The loop ends on "no start line" at the end of the file; anything
     * else is a broken certificate after the leaf. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        char detail[160];
        sg__tls_ssl_errors(detail, sizeof(detail));
        snprintf(why, cap, "bad certificate after the first one in %s: %s", cert_file, detail);
        sk_X509_pop_free(st, X509_free);
        X509_free(x);
        BIO_free(b);
        return -1;
    }
    ERR_clear_error();
    BIO_free(b);
    *leaf = x;
    *chain = st;
    return 0;
oom:
    ERR_clear_error();
    sk_X509_pop_free(st, X509_free);
    X509_free(x);
    BIO_free(b);
    snprintf(why, cap, "reading %s: out of memory", cert_file);
    return -1;
}

EVP_PKEY *sg__tls_load_key(const char *key_file, char *why, size_t cap)
{
    if (sg_tls_check_key_mode(key_file, why, cap) < 0)
        return NULL;
    ERR_clear_error();
    BIO *b = sg__tls_file_bio(key_file, "key", why, cap);
    if (!b)
        return NULL;
    bool asked = false;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked);
    BIO_free(b);
    if (!k) {
        ERR_clear_error();
        if (asked)
            snprintf(why, cap,
                     "key file %s is encrypted: swarmgate cannot ask for a passphrase (store it unencrypted, "
                     "mode 600)",
                     key_file);
        else
            snprintf(why, cap, "no PEM private key in %s (expected -----BEGIN PRIVATE KEY-----)", key_file);
    }
    return k;
}

void sg__tls_pair_free(sg__tls_pair_t *p)
{
    X509_free(p->leaf);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    memset(p, 0, sizeof(*p));
}

int sg__tls_load_pair(const char *cert_file, const char *key_file, sg__tls_pair_t *out, char *why, size_t cap)
{
    memset(out, 0, sizeof(*out));
    if (sg__tls_load_chain(cert_file, &out->leaf, &out->chain, why, cap) < 0)
        return SG_TLS_BAD_CERT_FILE;
    if (!(out->key = sg__tls_load_key(key_file, why, cap))) {
        sg__tls_pair_free(out);
        return SG_TLS_BAD_KEY_FILE;
    }
    ERR_clear_error();
    if (X509_check_private_key(out->leaf, out->key) != 1) {
        ERR_clear_error();
        snprintf(why, cap, "key %s does not match certificate %s", key_file, cert_file);
        sg__tls_pair_free(out);
        return SG_TLS_BAD_KEY_FILE;
    }
    return 0;
}

int sg_tls_check_cert_key(const char *cert_file, const char *key_file, char *why, size_t cap)
{
    sg__tls_pair_t p;
    int rc = sg__tls_load_pair(cert_file, key_file, &p, why, cap);
    if (rc < 0)
        return rc;
    sg__tls_pair_free(&p);
    return 0;
}

int sg_tls_check_ca_file(const char *ca_file, char *why, size_t cap)
{
    X509 *leaf;
    STACK_OF(X509) * chain;
    if (sg__tls_load_chain(ca_file, &leaf, &chain, why, cap) < 0)
        return -1;
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return 0;
}

int sg_tls_check_ciphers(const char *ciphers, const char *ciphersuites, char *why, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ERR_clear_error();
        snprintf(why, cap, "out of memory");
        return -1;
    }
    int rc = 0;
    if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        snprintf(why, cap, "no TLS 1.2 cipher of \"%.120s\" is known to OpenSSL", ciphers);
        rc = -1;
    } else if (ciphersuites && SSL_CTX_set_ciphersuites(ctx, ciphersuites) != 1) {
        snprintf(why, cap, "\"%.120s\" is not a list of TLS 1.3 cipher suites OpenSSL knows", ciphersuites);
        rc = -1;
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

/* ---- what a certificate says -------------------------------------------------- */

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* A DNS name or CN as the SNI table stores it: a host name, or "*." and
 * one; anything else (an embedded NUL, spaces) is left out. */
static size_t cert_name(const unsigned char *s, int len, char *out)
{
    char norm[SG_TLS_NAME_MAX + 1];
    if (len <= 0 || memchr(s, 0, (size_t)len))
        return 0;
    bool is_wild = len > 2 && s[0] == '*' && s[1] == '.';
    size_t off = is_wild ? 2 : 0;
    size_t n = sg_tls_sni_normalize((const char *)s + off, (size_t)len - off, norm);
    if (n == 0 || n + off > SG_TLS_NAME_MAX)
        return 0;
    if (is_wild)
        memcpy(out, "*.", 2);
    memcpy(out + off, norm, n + 1);
    return n + off;
}

/* Calls fn for each name, SAN DNS names first; the CN only without them
 * (RFC 6125 section 6.4.4). Stops at a negative return. */
static int each_name(X509 *x, int (*fn)(const char *name, size_t len, void *ud), void *ud)
{
    char buf[SG_TLS_NAME_MAX + 1];
    int rc = 0;
    bool has_dns = false;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && rc >= 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        has_dns = true;
        size_t n = cert_name(ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName), buf);
        if (n)
            rc = fn(buf, n, ud);
    }
    GENERAL_NAMES_free(sans);
    if (has_dns || rc < 0)
        return rc;
    const X509_NAME *subj = X509_get_subject_name(x);
    int at = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (at >= 0) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, at));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, cn);
        if (len > 0) {
            size_t n = cert_name(utf8, len, buf);
            if (n)
                rc = fn(buf, n, ud);
        }
        OPENSSL_free(utf8);
    }
    ERR_clear_error();
    return rc;
}

typedef struct names_acc {
    sg_tls_sni_name_t **names;
    size_t *n, *cap;
    uint32_t idx;
} names_acc_t;

static int add_name(const char *name, size_t len, void *ud)
{
    names_acc_t *a = ud;
    if (*a->n == *a->cap) {
        size_t nc = *a->cap ? *a->cap * 2 : 8;
        sg_tls_sni_name_t *nn = realloc(*a->names, nc * sizeof(*nn));
        if (!nn)
            return -ENOMEM;
        *a->names = nn;
        *a->cap = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len + 1);
    (*a->names)[(*a->n)++] = (sg_tls_sni_name_t){copy, len, a->idx};
    return 0;
}

int sg__tls_cert_names(X509 *x, uint32_t cert_idx, sg_tls_sni_name_t **names, size_t *n, size_t *cap)
{
    names_acc_t a = {names, n, cap, cert_idx};
    return each_name(x, add_name, &a) < 0 ? -ENOMEM : 0;
}

static int first_name(const char *name, size_t len, void *ud)
{
    memcpy(ud, name, len + 1);
    return -1; /* stop: the first is enough */
}

void sg__tls_cert_info(X509 *x, sg_tls_cert_info_t *out)
{
    memset(out, 0, sizeof(*out));
    out->not_before_unix = asn1_unix(X509_get0_notBefore(x));
    out->not_after_unix = asn1_unix(X509_get0_notAfter(x));
    (void)each_name(x, first_name, out->name);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = serial ? ASN1_INTEGER_to_BN(serial, NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(out->serial_hex, sizeof(out->serial_hex), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
}

int sg_tls_cert_file_info(const char *cert_file, sg_tls_cert_info_t *out, char *why, size_t cap)
{
    X509 *leaf;
    STACK_OF(X509) * chain;
    if (sg__tls_load_chain(cert_file, &leaf, &chain, why, cap) < 0)
        return -1;
    sg__tls_cert_info(leaf, out);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return 0;
}
