/* TLS with OpenSSL 3: server contexts for listeners (certificates chosen by
 * SNI, ALPN http/1.1, session tickets), client contexts for upstreams (TLS
 * origination with certificate and host name verification), a ticket key
 * set shared by every worker and rotated, and a per-connection driver over
 * two memory BIOs that the transport feeds with the socket's bytes.
 *
 * Layer: between core and config (core < tls < config < obs < net < ctl).
 * The module is a library: it knows no loop, socket, metric or log. config
 * embeds its settings types (sg_tls_server_conf_t, sg_tls_client_conf_t)
 * and calls its file checks at load (--check-config and reload); obs takes
 * its error and version names for the metric labels; the transport (net)
 * builds the contexts of a config generation and drives connections;
 * ctl reads certificate expiry dates. OpenSSL's headers stay in src/tls
 * (tls_int.h): this header compiles without them.
 *
 * Threads. Contexts (sg_tls_server_t, sg_tls_client_t) and the ticket key
 * set are built on one thread (main or control) and are then immutable
 * apart from their atomics: any worker may make connections from them at
 * once (OpenSSL's SSL_CTX allows that). They are reference-counted: a
 * connection retains its context, so a generation may drop its reference
 * while connections made from it are still open. A connection
 * (sg_tls_conn_t) belongs to one thread. The pure functions (SNI, ALPN,
 * names) run on any thread.
 *
 * Errors: constructors return NULL and write one line naming the file and
 * what is wrong into err; the connection calls return a status and keep
 * the failure kind (sg_tls_error_t) and a text for the log. */
#ifndef SG_TLS_H
#define SG_TLS_H

#include "sg/common.h"

/* ---- settings (embedded in sg_config_t; strings owned by the config) ---- */

/* Protocol versions: the negotiated version of a connection (label
 * `version`), and the floor of a context (min_version). TLS 1.1 and lower
 * are never offered nor accepted. */
typedef enum sg_tls_version {
    SG_TLS_VERSION_NONE = 0, /* no version agreed (a failed handshake) */
    SG_TLS_VERSION_1_2,
    SG_TLS_VERSION_1_3,
    SG_TLS_VERSION__COUNT
} sg_tls_version_t;

/* Mozilla's "intermediate" profile (server side TLS guidelines 5.7): TLS 1.2
 * ciphers with forward secrecy and AEAD only, and every TLS 1.3 suite. */
#define SG_TLS_DEFAULT_CIPHERS                                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                           \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define SG_TLS_DEFAULT_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* Key exchange groups of the same profile. */
#define SG_TLS_DEFAULT_GROUPS "X25519:P-256:P-384"
/* Session ticket keys are replaced this often by default (tls.ticket_key_rotation). */
#define SG_TLS_DEFAULT_TICKET_ROTATION_MS (3600u * 1000u)

/* One certificate of a listener: PEM files, the certificate file holding
 * the leaf first and then its intermediates. */
typedef struct sg_tls_cert_conf {
    const char *cert;
    const char *key;
} sg_tls_cert_conf_t;

/* listeners[].tls. enabled is false when the listener has no tls section. */
typedef struct sg_tls_server_conf {
    bool enabled;
    sg_tls_cert_conf_t *certificates; /* n_certificates >= 1 when enabled; [0] is the default */
    size_t n_certificates;
    sg_tls_version_t min_version; /* default 1.2 */
    const char *ciphers;          /* TLS 1.2 cipher list, default SG_TLS_DEFAULT_CIPHERS */
    const char *ciphersuites;     /* TLS 1.3 suites, default SG_TLS_DEFAULT_CIPHERSUITES */
    bool session_tickets;         /* resumption by tickets, default true */
} sg_tls_server_conf_t;

/* upstreams.<name>.tls. */
typedef struct sg_tls_client_conf {
    bool enabled;
    const char *server_name;      /* SNI and the name verified; NULL = the host of each server address */
    bool verify;                  /* verify the server's chain and name, default true */
    const char *ca_file;          /* PEM trust anchors; NULL = the system store (OpenSSL's default paths) */
    const char *cert;             /* client certificate (mutual TLS), with key; NULL = none */
    const char *key;              /* its private key */
    sg_tls_version_t min_version; /* default 1.2 */
} sg_tls_client_conf_t;

/* ---- failure kinds and names ---- */

/* Why a handshake (or a connection) failed: label `result` of the TLS
 * handshake counters (SG_TLS_OK is "success"). Values are stable. */
typedef enum sg_tls_error {
    SG_TLS_OK = 0,
    SG_TLS_E_PROTOCOL_VERSION, /* no version both sides accept (e.g. a TLS 1.1 client) */
    SG_TLS_E_NO_SHARED_CIPHER, /* no cipher suite or group in common */
    SG_TLS_E_NO_ALPN,          /* the client offered ALPN without http/1.1 (RFC 7301 section 3.2) */
    SG_TLS_E_HTTP_REQUEST,     /* plain HTTP sent to a TLS port */
    SG_TLS_E_UNKNOWN_CA,       /* (client side) the chain does not lead to a trusted CA */
    SG_TLS_E_HOSTNAME,         /* (client side) the certificate is not for the name asked for */
    SG_TLS_E_CERT_EXPIRED,     /* (client side) the certificate (or one in its chain) has expired */
    SG_TLS_E_CERT_INVALID,     /* (client side) any other verification failure (not yet valid, bad signature...) */
    SG_TLS_E_CERT_REJECTED,    /* the peer refused our certificate (its alert: unknown_ca, bad/expired certificate) */
    SG_TLS_E_PEER_ALERT,       /* the peer ended the handshake with another fatal alert */
    SG_TLS_E_PROTOCOL,         /* malformed or unexpected TLS data */
    SG_TLS_E_CLOSED,           /* the peer closed before the handshake ended, or without close_notify */
    SG_TLS_E_TIMEOUT,          /* set by the transport: the handshake took too long */
    SG_TLS_E_INTERNAL,         /* out of memory, a library error */
    SG_TLS_E__COUNT
} sg_tls_error_t;

/* Label values: "success", "protocol_version", "no_shared_cipher",
 * "no_application_protocol", "http_request", "unknown_ca",
 * "hostname_mismatch", "certificate_expired", "certificate_invalid",
 * "certificate_rejected", "peer_alert", "protocol_error", "closed",
 * "timeout", "internal"; "?" out of range. */
const char *sg_tls_error_name(sg_tls_error_t e);
/* "none", "TLSv1.2", "TLSv1.3" (OpenSSL's and nginx's spelling); "?" out of range. */
const char *sg_tls_version_name(sg_tls_version_t v);

/* ---- pure functions: SNI and ALPN (test/fuzz/fuzz_sni.c) ---- */

/* Host names are compared in the form sg_tls_sni_normalize gives:
 * ASCII lower case, one trailing dot removed, 1..253 bytes of labels of
 * 1..63 letters, digits, '-' or '_' separated by dots. */
#define SG_TLS_NAME_MAX 253

/* Normalizes a server name (from a ClientHello or a certificate) into out
 * (NUL-terminated, SG_TLS_NAME_MAX + 1 bytes). Returns its length, or 0
 * when `name` is not a host name (empty, too long, a bad character or
 * label, an embedded NUL). Wildcards are not host names here. */
size_t sg_tls_sni_normalize(const char *name, size_t len, char out[SG_TLS_NAME_MAX + 1]);

/* One name a certificate answers for: "api.example.com" or a wildcard
 * "*.example.com" (the whole leftmost label, RFC 6125 section 6.4.3: it
 * matches one label, not "example.com" nor "a.b.example.com"). */
typedef struct sg_tls_sni_name {
    const char *name;
    size_t len;
    uint32_t cert_idx;
} sg_tls_sni_name_t;

/* Names prepared for lookup: exact names and wildcard suffixes, each sorted
 * with the certificate index as a tie-breaker. Owner: whoever built it;
 * sg_tls_sni_table_free. Immutable after build: any thread may look up. */
typedef struct sg_tls_sni_table {
    struct sg__tls_sni_entry *_exact;
    size_t _n_exact;
    struct sg__tls_sni_entry *_wild; /* stored without "*." */
    size_t _n_wild;
    size_t n_skipped; /* names that were neither a host name nor a whole-label wildcard */
} sg_tls_sni_table_t;

/* Builds the table from n names (copied). Names that are not host names or
 * "*." + host name are skipped (counted). 0, or -ENOMEM. */
int sg_tls_sni_table_build(sg_tls_sni_table_t *t, const sg_tls_sni_name_t *names, size_t n) SG_MUST_CHECK;
void sg_tls_sni_table_free(sg_tls_sni_table_t *t);

/* The certificate for a requested server name: an exact name first, then a
 * wildcard; among equal matches the lowest index (the first certificate of
 * the config). No match, no name or a malformed one: 0, the default, with
 * *is_match false. O(log n), no allocation. */
uint32_t sg_tls_sni_select(const sg_tls_sni_table_t *t, const char *name, size_t len, bool *is_match);

/* Finds "http/1.1" in a client's ALPN list (RFC 7301 section 3.1: entries
 * of a length byte and 1..255 bytes). Returns 1 with *out / *out_len
 * pointing at the entry's bytes inside `in`, 0 when the list is well
 * formed but lacks it, -1 when it is malformed (a zero length, an entry
 * running past the end, an empty list). */
int sg_tls_alpn_select(const uint8_t *in, size_t in_len, const uint8_t **out, uint8_t *out_len);

/* ---- files: checks for the config loader ---- */

/* sshd's rule for private keys: refused when the file (symlinks followed)
 * grants any permission to group or others. 0, or -1 with a reason in why
 * ("... mode 0644 ...: chmod 600 ..."), also when it cannot be stat()ed. */
int sg_tls_check_key_mode(const char *key_file, char *why, size_t cap) SG_MUST_CHECK;
/* Loads a PEM certificate chain and a PEM private key (encrypted keys are
 * refused: there is nobody to type a passphrase) and checks that the key
 * belongs to the leaf certificate. Also applies sg_tls_check_key_mode.
 * 0; else a reason naming the file in why and SG_TLS_BAD_CERT_FILE (the
 * certificate file is missing or holds no certificate) or
 * SG_TLS_BAD_KEY_FILE (the key file, or a key that does not match). */
#define SG_TLS_BAD_CERT_FILE (-1)
#define SG_TLS_BAD_KEY_FILE (-2)
int sg_tls_check_cert_key(const char *cert_file, const char *key_file, char *why, size_t cap) SG_MUST_CHECK;
/* A PEM file of trust anchors: readable, at least one certificate. */
int sg_tls_check_ca_file(const char *ca_file, char *why, size_t cap) SG_MUST_CHECK;
/* The TLS 1.2 cipher list and the TLS 1.3 suites are understood by this
 * OpenSSL and select at least one cipher (either may be NULL: not checked). */
int sg_tls_check_ciphers(const char *ciphers, const char *ciphersuites, char *why, size_t cap) SG_MUST_CHECK;

/* What the expiry gauge and the logs need of one certificate. */
typedef struct sg_tls_cert_info {
    int64_t not_before_unix;        /* seconds */
    int64_t not_after_unix;         /* seconds */
    char name[SG_TLS_NAME_MAX + 1]; /* first DNS name of the SAN, else the subject CN (normalized,
                                       wildcards kept), else "" */
    char serial_hex[80];            /* upper-case hex, for logs */
} sg_tls_cert_info_t;

/* Reads the leaf of a PEM certificate file. 0, or -1 with why. */
int sg_tls_cert_file_info(const char *cert_file, sg_tls_cert_info_t *out, char *why, size_t cap) SG_MUST_CHECK;

/* ---- session ticket keys ---- */

/* The keys that encrypt session tickets (TLS 1.2 tickets and TLS 1.3
 * PSKs): one set per process, shared by every listener context of every
 * generation, so a ticket stays good across workers and reloads. Keys are
 * random (AES-256-CBC + HMAC-SHA256, RFC 5077 section 4's layout), never
 * derived from a long-lived secret, and a key is wiped two rotations after
 * it was made: a ticket is accepted while its key is the current or the
 * previous one (between one and two rotation periods) and one decrypted
 * with the previous key is renewed. Tickets do not outlive the process.
 *
 * Rotation is lazy: the first handshake after the period has passed
 * rotates (one thread wins a compare-and-swap), so no timer is needed;
 * sg_tls_ticket_keys_rotate forces one. Readers copy a key under a
 * per-slot sequence lock of atomic words: no lock is taken on any path.
 * Owner: main (or the runtime); freed after every context using it. */
typedef struct sg_tls_ticket_keys sg_tls_ticket_keys_t;

/* rotation_ms: how long a key encrypts new tickets (1 s .. 7 d). NULL on
 * allocation or random-number failure. */
sg_tls_ticket_keys_t *sg_tls_ticket_keys_new(uint64_t rotation_ms) SG_MUST_CHECK;
void sg_tls_ticket_keys_free(sg_tls_ticket_keys_t *k);
/* A reload's new period; it takes effect at the next rotation. Any thread. */
void sg_tls_ticket_keys_set_rotation(sg_tls_ticket_keys_t *k, uint64_t rotation_ms);
/* Makes a new current key now (the old one becomes the previous). 0, or -1
 * when random bytes could not be had (the keys are unchanged). Any thread;
 * a rotation already in progress on another thread makes this a no-op. */
int sg_tls_ticket_keys_rotate(sg_tls_ticket_keys_t *k);
/* Rotates when the period has passed at now_ms (CLOCK_MONOTONIC ms).
 * Called by the ticket callback; exposed for tests and timers. */
void sg_tls_ticket_keys_tick(sg_tls_ticket_keys_t *k, uint64_t now_ms);
/* Generation of the current key (1 after creation, +1 per rotation). */
uint64_t sg_tls_ticket_keys_generation(const sg_tls_ticket_keys_t *k);

/* ---- contexts ---- */

typedef struct sg_tls_server sg_tls_server_t;
typedef struct sg_tls_client sg_tls_client_t;

/* A listener's contexts: one per certificate, configured alike (versions,
 * ciphers, groups, ALPN, tickets), the first being the default; the
 * servername callback moves a handshake to the certificate that
 * sg_tls_sni_select picks. `listener` names the session context (a ticket
 * from another listener is not resumed here). keys may be NULL: then no
 * tickets are issued (nor is a session cache kept). keys is borrowed: it
 * must outlive every server built with it. Returns NULL with err on a
 * file, key or cipher problem. Main or control thread. */
sg_tls_server_t *sg_tls_server_new(const sg_tls_server_conf_t *conf, const char *listener, sg_tls_ticket_keys_t *keys,
                                   char *err, size_t errlen) SG_MUST_CHECK;
sg_tls_server_t *sg_tls_server_retain(sg_tls_server_t *s);
void sg_tls_server_release(sg_tls_server_t *s);
size_t sg_tls_server_n_certs(const sg_tls_server_t *s);
/* The loaded certificate i (0 <= i < n): expiry and name, for the gauge. */
const sg_tls_cert_info_t *sg_tls_server_cert_info(const sg_tls_server_t *s, size_t i);
/* The certificate index for a server name, as a handshake would pick it. */
uint32_t sg_tls_server_select(const sg_tls_server_t *s, const char *name, bool *is_match);

/* An upstream's context: versions, trust anchors (ca_file or the system
 * store), the client certificate, ALPN http/1.1, a client session cache
 * (see sg_tls_conn_session). NULL with err on a file problem. */
sg_tls_client_t *sg_tls_client_new(const sg_tls_client_conf_t *conf, char *err, size_t errlen) SG_MUST_CHECK;
sg_tls_client_t *sg_tls_client_retain(sg_tls_client_t *c);
void sg_tls_client_release(sg_tls_client_t *c);

/* ---- sessions (client side resumption) ---- */

/* A resumable session (OpenSSL's SSL_SESSION), reference-counted by
 * OpenSSL: the transport keeps the last one per upstream server and
 * worker and offers it on the next connection to that server. A TLS 1.3
 * session is good for one resumption (RFC 8446 appendix C.4; OpenSSL's
 * client marks it used): after each connection replace the kept session
 * with sg_tls_conn_session's, which the server renews on every
 * resumption. */
typedef struct sg_tls_session sg_tls_session_t;
void sg_tls_session_free(sg_tls_session_t *s);

/* ---- connections: the record driver over memory BIOs ---- */

/* One TLS connection without a socket: the transport writes what it reads
 * from the socket into it (feed), drives the handshake, reads plaintext out
 * (read), writes plaintext in (write) and sends what is pending (take)
 * after every call. Nothing here blocks or does I/O. Owner: the transport's
 * connection; one thread. */
typedef struct sg_tls_conn sg_tls_conn_t;

typedef enum sg_tls_status {
    SG_TLS_DONE = 0,   /* handshake complete / bytes read / written */
    SG_TLS_WANT_INPUT, /* more bytes from the peer are needed (send what is pending first) */
    SG_TLS_CLOSED,     /* the peer closed: close_notify (error SG_TLS_OK) or EOF (SG_TLS_E_CLOSED) */
    SG_TLS_FAILED,     /* see sg_tls_conn_error / sg_tls_conn_error_text; send what is pending
                          (an alert), then close */
    SG_TLS_STATUS__COUNT
} sg_tls_status_t;

/* A server side connection on a listener's contexts (retained). NULL on
 * allocation failure. */
sg_tls_conn_t *sg_tls_conn_new_server(sg_tls_server_t *srv) SG_MUST_CHECK;
/* A client side connection to an upstream server whose address host is
 * `host` (a name or an IP literal, without brackets). The name verified
 * and sent as SNI is the context's server_name when set, else host; an IP
 * literal is verified against the certificate's IP addresses and sends no
 * SNI (RFC 6066 section 3). resume (may be NULL) is offered for
 * resumption and stays the caller's. NULL on allocation failure or when
 * there is no name at all. */
sg_tls_conn_t *sg_tls_conn_new_client(sg_tls_client_t *cli, const char *host,
                                      const sg_tls_session_t *resume) SG_MUST_CHECK;
/* Frees the connection (and releases its context). A connection that
 * ended without a TLS failure (EOF without close_notify included) keeps
 * its session resumable: OpenSSL would otherwise mark it bad when freed
 * without a shutdown. Send sg_tls_conn_shutdown's close_notify first when
 * the socket is still writable. */
void sg_tls_conn_free(sg_tls_conn_t *c);

/* Bytes read from the socket (copied). 0, or -ENOMEM. */
int sg_tls_conn_feed(sg_tls_conn_t *c, const void *data, size_t len) SG_MUST_CHECK;
/* The socket reached EOF: reads past the fed bytes see the end. */
void sg_tls_conn_feed_eof(sg_tls_conn_t *c);

/* Runs the handshake as far as the fed bytes allow. DONE once complete
 * (then again on every call), WANT_INPUT, CLOSED (EOF during the
 * handshake: error SG_TLS_E_CLOSED) or FAILED. The first call starts the
 * handshake clock (sg_tls_conn_handshake_ns). */
sg_tls_status_t sg_tls_conn_handshake(sg_tls_conn_t *c);
/* Plaintext out: DONE with *n > 0 bytes, WANT_INPUT (post-handshake
 * messages such as TLS 1.3 tickets are consumed silently), CLOSED or
 * FAILED. Only after the handshake is DONE. */
sg_tls_status_t sg_tls_conn_read(sg_tls_conn_t *c, void *buf, size_t cap, size_t *n);
/* Plaintext in: encrypted whole into the pending output (memory BIOs never
 * push back: the transport's back-pressure is sg_tls_conn_pending). DONE or
 * FAILED. Only after the handshake is DONE. */
sg_tls_status_t sg_tls_conn_write(sg_tls_conn_t *c, const void *data, size_t len);
/* Queues a close_notify alert (send it, then close the socket). DONE, or
 * FAILED when the connection is already broken. */
sg_tls_status_t sg_tls_conn_shutdown(sg_tls_conn_t *c);

/* Bytes fed or decrypted but not read yet (a read would not need the
 * socket). */
bool sg_tls_conn_has_input(const sg_tls_conn_t *c);
/* Ciphertext waiting to be written to the socket. */
size_t sg_tls_conn_pending(const sg_tls_conn_t *c);
/* Moves up to cap bytes of it into buf; returns how many. */
size_t sg_tls_conn_take(sg_tls_conn_t *c, void *buf, size_t cap);

/* What happened, for the metrics hooks (sg_metrics_tls_handshake,
 * sg_metrics_upstream_tls_handshake), the access log and errors. */
bool sg_tls_conn_is_handshake_done(const sg_tls_conn_t *c);
bool sg_tls_conn_is_resumed(const sg_tls_conn_t *c);
sg_tls_error_t sg_tls_conn_error(const sg_tls_conn_t *c);
/* Records a failure found outside (SG_TLS_E_TIMEOUT); a failure already
 * recorded is kept. */
void sg_tls_conn_set_error(sg_tls_conn_t *c, sg_tls_error_t e);
/* One line for the error log: the failure kind and OpenSSL's reason or the
 * verification error ("hostname_mismatch: certificate verify failed: hostname
 * mismatch (wanted api.example.com)"); "" without a failure. */
const char *sg_tls_conn_error_text(const sg_tls_conn_t *c);
sg_tls_version_t sg_tls_conn_version(const sg_tls_conn_t *c);
/* The SNI a client sent (server side) or that was sent (client side); NULL
 * when none. Valid while c lives. */
const char *sg_tls_conn_server_name(const sg_tls_conn_t *c);
/* Server side: index of the certificate presented (0 = default). */
uint32_t sg_tls_conn_cert_idx(const sg_tls_conn_t *c);
/* The ALPN protocol agreed ("http/1.1"), or NULL when none was. */
const char *sg_tls_conn_alpn(const sg_tls_conn_t *c);
/* Monotonic nanoseconds from the first sg_tls_conn_handshake call to the
 * call that completed (or failed) it; 0 before that. */
uint64_t sg_tls_conn_handshake_ns(const sg_tls_conn_t *c);
/* Client side: the newest resumable session the server gave (TLS 1.3
 * tickets arrive after the handshake: read first), as a new reference for
 * the caller (sg_tls_session_free), or NULL. */
sg_tls_session_t *sg_tls_conn_session(sg_tls_conn_t *c) SG_MUST_CHECK;

#endif /* SG_TLS_H */
