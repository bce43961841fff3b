/* Server and client contexts (SSL_CTX) built from the config, and the
 * callbacks they carry: servername (certificate by SNI), ALPN (http/1.1),
 * the client's new-session hook. Built on the main or control thread,
 * then shared read-only by every worker. */
#include "tls/tls_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int proto_version(sg_tls_version_t v)
{
    return v == SG_TLS_VERSION_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* What both sides share: the version floor (TLS 1.1 and lower never), no
 * renegotiation (a CPU sink and an old attack surface), no compression
 * (CRIME), buffers released while idle (a keep-alive connection holds no
 * 34 KiB of record buffers), and a write buffer that may move between
 * retries. */
static int common_setup(SSL_CTX *ctx, sg_tls_version_t min_version)
{
    if (SSL_CTX_set_min_proto_version(ctx, proto_version(min_version)) != 1)
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

/* ---- server ------------------------------------------------------------------ */

/* RFC 7301 section 3.2: a client that offers ALPN without a protocol we
 * speak gets a fatal no_application_protocol alert (as nginx does); a
 * client that offers none gets HTTP/1.1 without ALPN. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    SG_UNUSED(ssl);
    SG_UNUSED(arg);
    return sg_tls_alpn_select(in, inlen, out, outlen) == 1 ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The certificate by SNI: the handshake moves to the chosen context (its
 * certificate and key; versions and ciphers were fixed at SSL_new from the
 * default context, and every context is set up alike). No or an unknown
 * name: the default certificate, and the extension is not acknowledged. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    sg_tls_server_t *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    bool is_match;
    uint32_t idx = sg_tls_sni_select(&s->sni, name, strlen(name), &is_match);
    if (idx != 0 && idx < s->n && SSL_set_SSL_CTX(ssl, s->ctx[idx]) != s->ctx[idx]) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    sg_tls_conn_t *c = SSL_get_ex_data(ssl, sg__tls_conn_index());
    if (c)
        c->cert_idx = idx;
    return is_match ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *server_ctx(const sg_tls_server_conf_t *conf, const char *listener, sg_tls_ticket_keys_t *keys,
                           sg__tls_pair_t *pair, char *err, size_t errlen)
{
    char detail[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || common_setup(ctx, conf->min_version) < 0)
        goto ssl_fail;
    if (SSL_CTX_set_cipher_list(ctx, conf->ciphers ? conf->ciphers : SG_TLS_DEFAULT_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, conf->ciphersuites ? conf->ciphersuites : SG_TLS_DEFAULT_CIPHERSUITES) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "listener %s: tls.ciphers or tls.ciphersuites selects no cipher", listener);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* Mozilla intermediate: the client's preference order (it knows
     * whether it has AES hardware), ffdhe2048 for DHE, X25519 first. */
    if (SSL_CTX_set1_groups_list(ctx, SG_TLS_DEFAULT_GROUPS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1)
        goto ssl_fail;
    if (SSL_CTX_use_certificate(ctx, pair->leaf) != 1 || SSL_CTX_set1_chain(ctx, pair->chain) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, pair->key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto ssl_fail;
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    /* The session context: a ticket is resumed only on the listener that
     * issued it (OpenSSL compares it), even though the keys are shared. */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    size_t ln = strlen(listener);
    size_t sl = SG_MIN(ln, sizeof(sid));
    memcpy(sid, listener, sl);
    if (SSL_CTX_set_session_id_context(ctx, sid, (unsigned)sl) != 1)
        goto ssl_fail;
    /* Tickets only: a per-process server cache would not be shared with
     * other instances and costs a lock per handshake. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (keys && conf->session_tickets) {
        if (sg__tls_tickets_install(ctx, keys) < 0)
            goto ssl_fail;
        /* A ticket is good for one rotation period after it was issued
         * (its key stays accepted at least that long: see tls_tickets.c). */
        uint64_t period_s = sg__tls_tickets_period_ms(keys) / 1000;
        SSL_CTX_set_timeout(ctx, (long)SG_MAX(period_s, (uint64_t)1));
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    return ctx;
ssl_fail:
    sg__tls_ssl_errors(detail, sizeof(detail));
    snprintf(err, errlen, "listener %s: setting up TLS: %s", listener, detail);
    SSL_CTX_free(ctx);
    return NULL;
}

sg_tls_server_t *sg_tls_server_new(const sg_tls_server_conf_t *conf, const char *listener, sg_tls_ticket_keys_t *keys,
                                   char *err, size_t errlen)
{
    char why[400];
    if (!conf->enabled || conf->n_certificates == 0) {
        snprintf(err, errlen, "listener %s: no TLS certificate configured", listener);
        return NULL;
    }
    sg_tls_server_t *s = calloc(1, sizeof(*s));
    sg_tls_sni_name_t *names = NULL;
    size_t n_names = 0, cap_names = 0;
    if (!s)
        goto oom;
    atomic_init(&s->refcount, 1);
    s->ctx = calloc(conf->n_certificates, sizeof(*s->ctx));
    s->info = calloc(conf->n_certificates, sizeof(*s->info));
    if (!s->ctx || !s->info)
        goto oom;
    for (size_t i = 0; i < conf->n_certificates; i++) {
        const sg_tls_cert_conf_t *cc = &conf->certificates[i];
        sg__tls_pair_t pair;
        if (sg__tls_load_pair(cc->cert, cc->key, &pair, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "listener %s: %s", listener, why);
            goto fail;
        }
        sg__tls_cert_info(pair.leaf, &s->info[i]);
        int rc = sg__tls_cert_names(pair.leaf, (uint32_t)i, &names, &n_names, &cap_names);
        s->ctx[i] = rc == 0 ? server_ctx(conf, listener, keys, &pair, err, errlen) : NULL;
        sg__tls_pair_free(&pair);
        if (rc != 0)
            goto oom;
        if (!s->ctx[i])
            goto fail;
        s->n = i + 1;
    }
    if (sg_tls_sni_table_build(&s->sni, names, n_names) != 0)
        goto oom;
    /* Only the default context's callback runs: the handshake starts there. */
    SSL_CTX_set_tlsext_servername_callback(s->ctx[0], on_servername);
    SSL_CTX_set_tlsext_servername_arg(s->ctx[0], s);
    for (size_t i = 0; i < n_names; i++)
        free((void *)(uintptr_t)names[i].name);
    free(names);
    return s;
oom:
    snprintf(err, errlen, "listener %s: out of memory", listener);
fail:
    for (size_t i = 0; i < n_names; i++)
        free((void *)(uintptr_t)names[i].name);
    free(names);
    sg_tls_server_release(s);
    return NULL;
}

sg_tls_server_t *sg_tls_server_retain(sg_tls_server_t *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refcount, 1, memory_order_relaxed);
    return s;
}

void sg_tls_server_release(sg_tls_server_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refcount, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; s->ctx && i < s->n; i++)
        SSL_CTX_free(s->ctx[i]);
    free(s->ctx);
    free(s->info);
    sg_tls_sni_table_free(&s->sni);
    free(s);
}

size_t sg_tls_server_n_certs(const sg_tls_server_t *s)
{
    return s->n;
}

const sg_tls_cert_info_t *sg_tls_server_cert_info(const sg_tls_server_t *s, size_t i)
{
    return i < s->n ? &s->info[i] : NULL;
}

uint32_t sg_tls_server_select(const sg_tls_server_t *s, const char *name, bool *is_match)
{
    return sg_tls_sni_select(&s->sni, name, name ? strlen(name) : 0, is_match);
}

/* ---- client ------------------------------------------------------------------ */

/* TLS 1.3 tickets arrive after the handshake; TLS 1.2 ones at its end. The
 * connection keeps the newest for the transport (sg_tls_conn_session). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    sg_tls_conn_t *c = SSL_get_ex_data(ssl, sg__tls_conn_index());
    if (!c || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION_free(c->session);
    c->session = sess;
    return 1; /* the reference is ours */
}

sg_tls_client_t *sg_tls_client_new(const sg_tls_client_conf_t *conf, char *err, size_t errlen)
{
    char why[400], detail[200];
    sg_tls_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&c->refcount, 1);
    c->verify = conf->verify;
    if (conf->server_name && !(c->server_name = strdup(conf->server_name)))
        goto oom;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || common_setup(c->ctx, conf->min_version) < 0)
        goto ssl_fail;
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof(alpn) - 1) != 0)
        goto ssl_fail;
    if (conf->verify) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (conf->ca_file) {
            if (sg_tls_check_ca_file(conf->ca_file, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "tls.ca_file: %s", why);
                goto fail;
            }
            if (SSL_CTX_load_verify_locations(c->ctx, conf->ca_file, NULL) != 1)
                goto ssl_fail;
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            goto ssl_fail;
        }
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    if (conf->cert || conf->key) {
        sg__tls_pair_t pair;
        if (!conf->cert || !conf->key) {
            snprintf(err, errlen, "tls.cert and tls.key go together");
            goto fail;
        }
        if (sg__tls_load_pair(conf->cert, conf->key, &pair, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s", why);
            goto fail;
        }
        int ok = SSL_CTX_use_certificate(c->ctx, pair.leaf) == 1 && SSL_CTX_set1_chain(c->ctx, pair.chain) == 1 &&
                 SSL_CTX_use_PrivateKey(c->ctx, pair.key) == 1;
        sg__tls_pair_free(&pair);
        if (!ok)
            goto ssl_fail;
    }
    /* Sessions go to the connection (on_new_session), not a shared cache:
     * the transport keeps one per server and worker, without a lock. */
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
    return c;
ssl_fail:
    sg__tls_ssl_errors(detail, sizeof(detail));
    snprintf(err, errlen, "setting up TLS: %s", detail);
    goto fail;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    sg_tls_client_release(c);
    return NULL;
}

sg_tls_client_t *sg_tls_client_retain(sg_tls_client_t *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refcount, 1, memory_order_relaxed);
    return c;
}

void sg_tls_client_release(sg_tls_client_t *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refcount, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(c->ctx);
    free((void *)(uintptr_t)c->server_name);
    free(c);
}

void sg_tls_session_free(sg_tls_session_t *s)
{
    SSL_SESSION_free((SSL_SESSION *)(void *)s);
}
