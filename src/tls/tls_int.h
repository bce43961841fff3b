/* Private to src/tls: OpenSSL's headers and the structs shared by the
 * module's files (tls_pem.c: files and certificates; tls_tickets.c: the
 * ticket key set; tls_ctx.c: server and client contexts and their
 * callbacks; tls_conn.c: the record driver; tls_sni.c: the pure SNI and
 * ALPN functions). Nothing outside src/tls (and its unit tests) includes it. */
#ifndef SG_TLS_INT_H
#define SG_TLS_INT_H

#include "sg/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdatomic.h>

/* A certificate file and its key, loaded. Owner: the caller of
 * sg__tls_load_pair; sg__tls_pair_free. */
typedef struct sg__tls_pair {
    X509 *leaf;
    STACK_OF(X509) * chain; /* intermediates, in file order; may be empty */
    EVP_PKEY *key;
} sg__tls_pair_t;

/* Reads a whole file (at most 1 MiB) into a memory BIO. NULL with why. */
BIO *sg__tls_file_bio(const char *path, const char *what, char *why, size_t cap);
/* The leaf and chain of a PEM certificate file. 0, or -1 with why. */
int sg__tls_load_chain(const char *cert_file, X509 **leaf, STACK_OF(X509) * *chain, char *why, size_t cap);
/* A PEM private key (mode checked, no passphrase prompt). NULL with why. */
EVP_PKEY *sg__tls_load_key(const char *key_file, char *why, size_t cap);
/* Chain + key + match check. 0, or SG_TLS_BAD_CERT_FILE / SG_TLS_BAD_KEY_FILE
 * with why (out is then empty). */
int sg__tls_load_pair(const char *cert_file, const char *key_file, sg__tls_pair_t *out, char *why, size_t cap);
void sg__tls_pair_free(sg__tls_pair_t *p);
/* The names a certificate answers for: its SAN DNS names, or its subject
 * CN when it has none, appended to (*names, *n, *cap) as malloc'ed copies
 * (NUL-terminated) tagged with cert_idx. 0 or -ENOMEM. */
int sg__tls_cert_names(X509 *x, uint32_t cert_idx, sg_tls_sni_name_t **names, size_t *n, size_t *cap);
void sg__tls_cert_info(X509 *x, sg_tls_cert_info_t *out);
/* OpenSSL's first queued error as text (the queue is cleared). */
void sg__tls_ssl_errors(char *buf, size_t cap);

/* Installs the ticket callback of keys on ctx (SSL_CTX_set_tlsext_ticket_key_evp_cb). */
int sg__tls_tickets_install(SSL_CTX *ctx, sg_tls_ticket_keys_t *keys);
/* The rotation period now in force. */
uint64_t sg__tls_tickets_period_ms(const sg_tls_ticket_keys_t *keys);

/* ex_data slots (allocated once, any thread). */
int sg__tls_conn_index(void); /* SSL -> sg_tls_conn_t */
int sg__tls_keys_index(void); /* SSL_CTX -> sg_tls_ticket_keys_t */

/* Monotonic time without runtime.h (a higher layer's header). */
uint64_t sg__tls_now_ns(void);

struct sg_tls_server {
    atomic_uint refcount;
    size_t n;
    SSL_CTX **ctx;            /* n contexts, [0] the default */
    sg_tls_cert_info_t *info; /* n */
    sg_tls_sni_table_t sni;
};

struct sg_tls_client {
    atomic_uint refcount;
    SSL_CTX *ctx;
    const char *server_name; /* owned copy or NULL */
    bool verify;
};

/* The record driver's state (tls_conn.c). */
struct sg_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio;     /* owned by ssl */
    sg_tls_server_t *srv; /* retained, server side */
    sg_tls_client_t *cli; /* retained, client side */
    SSL_SESSION *session; /* client side: newest resumable session received (owned) */
    uint64_t hs_start_ns, hs_ns;
    uint32_t cert_idx;
    sg_tls_error_t error;
    bool is_handshake_done;
    bool is_client;
    char error_text[200];
};

#endif /* SG_TLS_INT_H */
