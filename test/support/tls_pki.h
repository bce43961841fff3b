/* Certificates for TLS tests, made with the OpenSSL API in a fresh temp
 * dir: a CA, leaves it signed (EC P-256 keys, mode 0600) for the cases the
 * tests need, and a second CA that signed none of them. Nothing here
 * touches the network or the system's trust store. */
#ifndef SG_TEST_TLS_PKI_H
#define SG_TEST_TLS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sg_test_pair {
    char cert[192]; /* PEM: the leaf */
    char key[192];  /* PEM: its private key (PKCS#8), mode 0600 */
    int64_t not_after_unix;
    char serial_hex[80];
} sg_test_pair_t;

typedef struct sg_test_pki {
    char dir[128];
    char ca[192];             /* the CA certificate: the tests' trust anchor */
    char ca_key[192];         /* the CA's key (to sign more leaves) */
    char other_ca[192];       /* a CA that signed nothing here */
    sg_test_pair_t server;    /* SAN DNS:localhost, DNS:server.test, IP:127.0.0.1, IP:::1; valid -1 d .. +90 d */
    sg_test_pair_t alt;       /* SAN DNS:alt.test, DNS:www.alt.test; valid -1 d .. +30 d */
    sg_test_pair_t wildcard;  /* SAN DNS:*.wild.test; valid -1 d .. +60 d */
    sg_test_pair_t expired;   /* SAN as server; valid -30 d .. -1 d */
    sg_test_pair_t wronghost; /* SAN DNS:other.test; valid -1 d .. +90 d */
    sg_test_pair_t cn_only;   /* no SAN, subject CN cn.test; valid -1 d .. +90 d */
} sg_test_pki_t;

/* Makes the directory and every file above. 0, or -1 (a message on stderr). */
int sg_test_pki_make(sg_test_pki_t *p);
/* One more leaf signed by the CA into p->dir: files <stem>.pem and
 * <stem>.key; san like "DNS:a.test,IP:10.0.0.1" or NULL (then cn is the
 * subject CN); validity from now + from_days to now + to_days. 0 or -1. */
int sg_test_pki_leaf(sg_test_pki_t *p, const char *stem, const char *cn, const char *san, long from_days, long to_days,
                     sg_test_pair_t *out);
/* Writes text into p->dir/<name> with mode `mode`; the path into out. 0 or -1. */
int sg_test_pki_file(const sg_test_pki_t *p, const char *name, const char *text, unsigned mode, char *out, size_t cap);
/* Removes the directory and what is in it. */
void sg_test_pki_remove(sg_test_pki_t *p);

#endif /* SG_TEST_TLS_PKI_H */
