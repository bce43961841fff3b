/* The record driver: one SSL object between two memory BIOs. The
 * transport moves bytes between the socket and the BIOs; this file turns
 * OpenSSL's return values into four statuses and its error queue into one
 * failure kind (sg_tls_error_t) with a line for the log.
 *
 * OpenSSL's error queue is per thread: every call starts with it empty and
 * leaves it empty, so one connection's failure never shows up as
 * another's on the same worker. */
#include "tls/tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- failure kinds ------------------------------------------------------------- */

static sg_tls_error_t verify_kind(long vr)
{
    switch (vr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return SG_TLS_E_UNKNOWN_CA;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return SG_TLS_E_HOSTNAME;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return SG_TLS_E_CERT_EXPIRED;
    default:
        return SG_TLS_E_CERT_INVALID;
    }
}

/* A fatal alert the peer sent (reason = SSL_AD_REASON_OFFSET + alert). */
static sg_tls_error_t alert_kind(int alert)
{
    switch (alert) {
    case SSL_AD_PROTOCOL_VERSION:
        return SG_TLS_E_PROTOCOL_VERSION;
    case SSL_AD_NO_APPLICATION_PROTOCOL:
        return SG_TLS_E_NO_ALPN;
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
        return SG_TLS_E_CERT_REJECTED;
    default:
        return SG_TLS_E_PEER_ALERT;
    }
}

static sg_tls_error_t reason_kind(unsigned long e)
{
    if (e == 0)
        return SG_TLS_E_PROTOCOL;
    int reason = ERR_GET_REASON(e);
    if (reason == ERR_R_MALLOC_FAILURE)
        return SG_TLS_E_INTERNAL;
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return SG_TLS_E_INTERNAL;
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
        return alert_kind(reason - SSL_AD_REASON_OFFSET);
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
        return SG_TLS_E_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_CIPHERS_AVAILABLE:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
        return SG_TLS_E_NO_SHARED_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return SG_TLS_E_NO_ALPN;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return SG_TLS_E_HTTP_REQUEST;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return SG_TLS_E_CLOSED;
    default:
        return SG_TLS_E_PROTOCOL;
    }
}

static void set_failure(sg_tls_conn_t *c, sg_tls_error_t kind, const char *detail)
{
    if (c->error != SG_TLS_OK)
        return; /* the first failure is the cause */
    c->error = kind;
    snprintf(c->error_text, sizeof(c->error_text), "%s: %s", sg_tls_error_name(kind), detail);
}

/* Records why the last call failed (ssl_err from SSL_get_error) and
 * empties the queue; returns the status for the caller. */
static sg_tls_status_t failed(sg_tls_conn_t *c, int ssl_err)
{
    char detail[160];
    sg_tls_error_t kind;
    unsigned long e = ERR_peek_error();
    long vr = c->is_client ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (ssl_err == SSL_ERROR_SYSCALL && e == 0) {
        kind = SG_TLS_E_CLOSED; /* EOF from the BIO (sg_tls_conn_feed_eof) */
        snprintf(detail, sizeof(detail), "the peer closed the connection without close_notify");
    } else if (vr != X509_V_OK && !c->is_handshake_done) {
        kind = verify_kind(vr);
        if (kind == SG_TLS_E_HOSTNAME) {
            const char *want = SSL_get0_peername(c->ssl);
            if (!want)
                want = X509_VERIFY_PARAM_get0_host(SSL_get0_param(c->ssl), 0);
            snprintf(detail, sizeof(detail), "certificate verify failed: %s (wanted %s)",
                     X509_verify_cert_error_string(vr), want ? want : "?");
        } else {
            snprintf(detail, sizeof(detail), "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        }
    } else {
        kind = reason_kind(e);
        if (e)
            ERR_error_string_n(e, detail, sizeof(detail));
        else
            snprintf(detail, sizeof(detail), "SSL error %d", ssl_err);
    }
    ERR_clear_error();
    set_failure(c, kind, detail);
    return c->error == SG_TLS_E_CLOSED ? SG_TLS_CLOSED : SG_TLS_FAILED;
}

/* ---- life ---------------------------------------------------------------------- */

static sg_tls_conn_t *conn_new(SSL_CTX *ctx)
{
    sg_tls_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ERR_clear_error();
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio || SSL_set_ex_data(c->ssl, sg__tls_conn_index(), c) != 1) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "more to come" until the socket's EOF. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* ssl owns both now */
    return c;
}

sg_tls_conn_t *sg_tls_conn_new_server(sg_tls_server_t *srv)
{
    sg_tls_conn_t *c = conn_new(srv->ctx[0]);
    if (!c)
        return NULL;
    c->srv = sg_tls_server_retain(srv);
    SSL_set_accept_state(c->ssl);
    return c;
}

static bool is_ip_literal(const char *s)
{
    unsigned char bin[16];
    return inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1;
}

sg_tls_conn_t *sg_tls_conn_new_client(sg_tls_client_t *cli, const char *host, const sg_tls_session_t *resume)
{
    const char *name = cli->server_name ? cli->server_name : host;
    if (!name || !*name)
        return NULL;
    sg_tls_conn_t *c = conn_new(cli->ctx);
    if (!c)
        return NULL;
    c->cli = sg_tls_client_retain(cli);
    c->is_client = true;
    bool is_ip = is_ip_literal(name);
    bool ok = true;
    /* RFC 6066 section 3: no IP literal in SNI. */
    if (!is_ip)
        ok = SSL_set_tlsext_host_name(c->ssl, name) == 1;
    if (ok && cli->verify) {
        /* The name is checked against the certificate's SAN (CN only
         * without DNS names); "*.example.com" matches one whole label. */
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip)
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) == 1;
        else
            ok = SSL_set1_host(c->ssl, name) == 1;
    }
    if (ok && resume)
        ok = SSL_set_session(c->ssl, (SSL_SESSION *)(uintptr_t)resume) == 1;
    if (!ok) {
        ERR_clear_error();
        sg_tls_conn_free(c);
        return NULL;
    }
    SSL_set_connect_state(c->ssl);
    return c;
}

void sg_tls_conn_free(sg_tls_conn_t *c)
{
    if (!c)
        return;
    /* OpenSSL marks the session of a connection freed without a shutdown
     * as not resumable. A connection that ended without a TLS failure (a
     * pooled connection closed when idle, a client gone after its
     * response) keeps its session good: RFC 5246 section 7.2.1 dropped
     * that requirement, as implementations had. */
    if (c->is_handshake_done && (c->error == SG_TLS_OK || c->error == SG_TLS_E_CLOSED))
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl); /* and both BIOs */
    SSL_SESSION_free(c->session);
    sg_tls_server_release(c->srv);
    sg_tls_client_release(c->cli);
    ERR_clear_error();
    free(c);
}

/* ---- bytes ------------------------------------------------------------------------ */

int sg_tls_conn_feed(sg_tls_conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        int chunk = (int)SG_MIN(len, (size_t)1 << 30);
        if (BIO_write(c->rbio, p, chunk) != chunk) {
            ERR_clear_error();
            return -ENOMEM;
        }
        p += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

void sg_tls_conn_feed_eof(sg_tls_conn_t *c)
{
    BIO_set_mem_eof_return(c->rbio, 0);
}

sg_tls_status_t sg_tls_conn_handshake(sg_tls_conn_t *c)
{
    if (c->is_handshake_done)
        return SG_TLS_DONE;
    if (c->error != SG_TLS_OK)
        return c->error == SG_TLS_E_CLOSED ? SG_TLS_CLOSED : SG_TLS_FAILED;
    if (c->hs_start_ns == 0)
        c->hs_start_ns = sg__tls_now_ns();
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->is_handshake_done = true;
        c->hs_ns = sg__tls_now_ns() - c->hs_start_ns;
        return SG_TLS_DONE;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return SG_TLS_WANT_INPUT;
    }
    c->hs_ns = sg__tls_now_ns() - c->hs_start_ns;
    return failed(c, e);
}

sg_tls_status_t sg_tls_conn_read(sg_tls_conn_t *c, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (!c->is_handshake_done) {
        sg_tls_status_t st = sg_tls_conn_handshake(c);
        if (st != SG_TLS_DONE)
            return st;
    }
    if (c->error != SG_TLS_OK)
        return c->error == SG_TLS_E_CLOSED ? SG_TLS_CLOSED : SG_TLS_FAILED;
    if (cap == 0)
        return SG_TLS_DONE;
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, buf, cap, n);
    if (r == 1)
        return SG_TLS_DONE;
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return SG_TLS_WANT_INPUT;
    case SSL_ERROR_ZERO_RETURN: /* close_notify: a clean end */
        ERR_clear_error();
        return SG_TLS_CLOSED;
    default:
        return failed(c, e);
    }
}

sg_tls_status_t sg_tls_conn_write(sg_tls_conn_t *c, const void *data, size_t len)
{
    if (!c->is_handshake_done || c->error != SG_TLS_OK) {
        if (c->error == SG_TLS_OK)
            set_failure(c, SG_TLS_E_INTERNAL, "write before the handshake completed");
        return SG_TLS_FAILED;
    }
    const char *p = data;
    while (len > 0) {
        size_t w = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, p, len, &w) != 1) {
            (void)failed(c, SSL_get_error(c->ssl, 0));
            return SG_TLS_FAILED;
        }
        p += w;
        len -= w;
    }
    return SG_TLS_DONE;
}

sg_tls_status_t sg_tls_conn_shutdown(sg_tls_conn_t *c)
{
    /* OpenSSL forbids SSL_shutdown after a fatal error (RFC 8446 section
     * 6.2: the connection is already gone). */
    if (c->error != SG_TLS_OK || !c->is_handshake_done)
        return SG_TLS_FAILED;
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    ERR_clear_error();
    return r >= 0 ? SG_TLS_DONE : SG_TLS_FAILED;
}

bool sg_tls_conn_has_input(const sg_tls_conn_t *c)
{
    return SSL_pending(c->ssl) > 0 || BIO_ctrl_pending(c->rbio) > 0;
}

size_t sg_tls_conn_pending(const sg_tls_conn_t *c)
{
    return BIO_ctrl_pending(c->wbio);
}

size_t sg_tls_conn_take(sg_tls_conn_t *c, void *buf, size_t cap)
{
    size_t got = 0;
    if (cap == 0 || BIO_ctrl_pending(c->wbio) == 0)
        return 0;
    if (BIO_read_ex(c->wbio, buf, cap, &got) != 1)
        got = 0;
    ERR_clear_error();
    return got;
}

/* ---- what happened ---------------------------------------------------------------- */

bool sg_tls_conn_is_handshake_done(const sg_tls_conn_t *c)
{
    return c->is_handshake_done;
}

bool sg_tls_conn_is_resumed(const sg_tls_conn_t *c)
{
    return c->is_handshake_done && SSL_session_reused(c->ssl) == 1;
}

sg_tls_error_t sg_tls_conn_error(const sg_tls_conn_t *c)
{
    return c->error;
}

void sg_tls_conn_set_error(sg_tls_conn_t *c, sg_tls_error_t e)
{
    if ((unsigned)e < SG_TLS_E__COUNT && e != SG_TLS_OK)
        set_failure(c, e, e == SG_TLS_E_TIMEOUT ? "the handshake did not complete in time" : "set by the transport");
}

const char *sg_tls_conn_error_text(const sg_tls_conn_t *c)
{
    return c->error_text;
}

sg_tls_version_t sg_tls_conn_version(const sg_tls_conn_t *c)
{
    /* Before the end of a handshake the version is reported only for the
     * failures that come after both sides agreed on one (a certificate
     * refused by either side); others (a refused ClientHello, garbage, an
     * early close) have "none". */
    if (!c->is_handshake_done) {
        switch (c->error) {
        case SG_TLS_E_UNKNOWN_CA:
        case SG_TLS_E_HOSTNAME:
        case SG_TLS_E_CERT_EXPIRED:
        case SG_TLS_E_CERT_INVALID:
        case SG_TLS_E_CERT_REJECTED:
            break;
        default:
            return SG_TLS_VERSION_NONE;
        }
    }
    switch (SSL_version(c->ssl)) {
    case TLS1_3_VERSION:
        return SG_TLS_VERSION_1_3;
    case TLS1_2_VERSION:
        return SG_TLS_VERSION_1_2;
    default:
        return SG_TLS_VERSION_NONE;
    }
}

const char *sg_tls_conn_server_name(const sg_tls_conn_t *c)
{
    return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

uint32_t sg_tls_conn_cert_idx(const sg_tls_conn_t *c)
{
    return c->cert_idx;
}

const char *sg_tls_conn_alpn(const sg_tls_conn_t *c)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    /* The only protocol either side offers is http/1.1 (sg_tls_alpn_select). */
    return p && len == 8 && memcmp(p, "http/1.1", 8) == 0 ? "http/1.1" : NULL;
}

uint64_t sg_tls_conn_handshake_ns(const sg_tls_conn_t *c)
{
    return c->hs_ns;
}

sg_tls_session_t *sg_tls_conn_session(sg_tls_conn_t *c)
{
    if (!c->is_client || !c->session || SSL_SESSION_up_ref(c->session) != 1)
        return NULL;
    return (sg_tls_session_t *)(void *)c->session;
}
