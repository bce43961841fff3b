/* Session ticket keys shared by every worker (sg/tls.h explains the
 * policy). Layout of a ticket's key name (16 bytes, RFC 5077 section 4):
 * 8 random bytes fixed for the key set, then the key's generation (big
 * endian), so a ticket finds its slot at once and a ticket from another
 * process or key set is simply unknown.
 *
 * Slots: generation g lives in slot g % N_SLOTS. Only generations g and
 * g - 1 are accepted; making g wipes the slot of g - 2. With four slots
 * the slot a rotation writes (that of g - 3, wiped long ago) is never one
 * a reader may still accept.
 * Each slot is a sequence lock over atomic words (as the metric exemplars:
 * src/obs/metrics.c): the writer makes the sequence odd, writes, makes it
 * even; a reader retries when it saw an odd or changed sequence. The one
 * writer at a time is chosen by a flag (compare-and-swap). */
#include "tls/tls_int.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>

#define N_SLOTS 4
#define NAME_LEN 16
#define AES_LEN 32
#define HMAC_LEN 32
#define KEY_WORDS ((NAME_LEN + AES_LEN + HMAC_LEN) / 8)

typedef struct slot {
    _Atomic uint64_t seq;
    _Atomic uint64_t gen; /* 0 = empty */
    _Atomic uint64_t w[KEY_WORDS];
} slot_t;

typedef struct key {
    uint8_t name[NAME_LEN];
    uint8_t aes[AES_LEN];
    uint8_t hmac[HMAC_LEN];
} tkey_t;
_Static_assert(sizeof(tkey_t) == KEY_WORDS * 8, "key words");

struct sg_tls_ticket_keys {
    _Atomic uint64_t gen;         /* current generation */
    _Atomic uint64_t next_ms;     /* monotonic ms of the next rotation */
    _Atomic uint64_t rotation_ms; /* period */
    atomic_flag is_writing;
    uint8_t prefix[8]; /* immutable after new */
    slot_t slot[N_SLOTS];
};

static void slot_write(slot_t *s, uint64_t gen, const tkey_t *k)
{
    uint64_t words[KEY_WORDS] = {0};
    if (k)
        memcpy(words, k, sizeof(words));
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->gen, gen, memory_order_relaxed);
    for (size_t i = 0; i < KEY_WORDS; i++)
        atomic_store_explicit(&s->w[i], words[i], memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
    OPENSSL_cleanse(words, sizeof(words));
}

/* A consistent copy of generation gen's key; false when the slot holds
 * another generation (rotated meanwhile) or stayed busy. */
static bool slot_read(const slot_t *cs, uint64_t gen, tkey_t *out)
{
    slot_t *s = (slot_t *)(uintptr_t)cs; /* atomic loads on a const object */
    for (int tries = 0; tries < 64; tries++) {
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        uint64_t g = atomic_load_explicit(&s->gen, memory_order_relaxed);
        uint64_t words[KEY_WORDS];
        for (size_t i = 0; i < KEY_WORDS; i++)
            words[i] = atomic_load_explicit(&s->w[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) != s1)
            continue;
        bool ok = g == gen;
        if (ok)
            memcpy(out, words, sizeof(*out));
        OPENSSL_cleanse(words, sizeof(words));
        return ok;
    }
    return false;
}

static uint64_t now_ms(void)
{
    return sg__tls_now_ns() / 1000000u;
}

int sg_tls_ticket_keys_rotate(sg_tls_ticket_keys_t *k)
{
    if (atomic_flag_test_and_set_explicit(&k->is_writing, memory_order_acquire))
        return 0; /* another thread is rotating right now: that is the rotation */
    int rc = -1;
    uint64_t g = atomic_load_explicit(&k->gen, memory_order_relaxed) + 1;
    tkey_t nk;
    memcpy(nk.name, k->prefix, 8);
    for (int i = 0; i < 8; i++)
        nk.name[8 + i] = (uint8_t)(g >> (56 - 8 * i));
    if (RAND_bytes(nk.aes, AES_LEN) == 1 && RAND_bytes(nk.hmac, HMAC_LEN) == 1) {
        slot_write(&k->slot[g % N_SLOTS], g, &nk);
        /* Publish, then wipe the key two generations back: from now on
         * only g and g - 1 are accepted. */
        atomic_store_explicit(&k->gen, g, memory_order_release);
        if (g >= 2)
            slot_write(&k->slot[(g - 2) % N_SLOTS], 0, NULL);
        rc = 0;
    }
    ERR_clear_error();
    OPENSSL_cleanse(&nk, sizeof(nk));
    atomic_flag_clear_explicit(&k->is_writing, memory_order_release);
    return rc;
}

void sg_tls_ticket_keys_tick(sg_tls_ticket_keys_t *k, uint64_t now)
{
    uint64_t next = atomic_load_explicit(&k->next_ms, memory_order_relaxed);
    if (now < next)
        return;
    uint64_t period = atomic_load_explicit(&k->rotation_ms, memory_order_relaxed);
    /* One thread moves the deadline and rotates; the others go on with the
     * current key (still valid: it becomes the previous one). */
    if (atomic_compare_exchange_strong_explicit(&k->next_ms, &next, now + period, memory_order_relaxed,
                                                memory_order_relaxed))
        (void)sg_tls_ticket_keys_rotate(k);
}

uint64_t sg_tls_ticket_keys_generation(const sg_tls_ticket_keys_t *k)
{
    return atomic_load_explicit(&((sg_tls_ticket_keys_t *)(uintptr_t)k)->gen, memory_order_acquire);
}

uint64_t sg__tls_tickets_period_ms(const sg_tls_ticket_keys_t *k)
{
    return atomic_load_explicit(&((sg_tls_ticket_keys_t *)(uintptr_t)k)->rotation_ms, memory_order_relaxed);
}

void sg_tls_ticket_keys_set_rotation(sg_tls_ticket_keys_t *k, uint64_t rotation_ms)
{
    atomic_store_explicit(&k->rotation_ms, rotation_ms ? rotation_ms : SG_TLS_DEFAULT_TICKET_ROTATION_MS,
                          memory_order_relaxed);
}

sg_tls_ticket_keys_t *sg_tls_ticket_keys_new(uint64_t rotation_ms)
{
    sg_tls_ticket_keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    atomic_flag_clear(&k->is_writing);
    sg_tls_ticket_keys_set_rotation(k, rotation_ms);
    if (RAND_bytes(k->prefix, sizeof(k->prefix)) != 1 || sg_tls_ticket_keys_rotate(k) != 0) {
        ERR_clear_error();
        free(k);
        return NULL;
    }
    atomic_store_explicit(&k->next_ms, now_ms() + atomic_load(&k->rotation_ms), memory_order_relaxed);
    return k;
}

void sg_tls_ticket_keys_free(sg_tls_ticket_keys_t *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

/* ---- the OpenSSL callback ---------------------------------------------------- */

static int set_hmac(EVP_MAC_CTX *hctx, uint8_t *hmac_key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(hctx, hmac_key, HMAC_LEN, params) == 1 ? 0 : -1;
}

/* RFC 5077 section 4 via OpenSSL 3's EVP callback. enc = 1: fill the key
 * name and IV, set up encryption (1, or -1 on failure: no ticket). enc =
 * 0: find the key by name: 0 unknown (a full handshake, a fresh ticket),
 * 1 accepted, 2 accepted and renewed (a new ticket is sent), -1 on
 * failure. */
static int on_ticket_key(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    sg_tls_ticket_keys_t *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sg__tls_keys_index());
    if (!k)
        return enc ? -1 : 0;
    sg_tls_ticket_keys_tick(k, now_ms());
    tkey_t key;
    int rc = -1;
    if (enc) {
        uint64_t g = 0;
        bool ok = false;
        for (int tries = 0; tries < 4 && !ok; tries++) {
            g = sg_tls_ticket_keys_generation(k);
            ok = slot_read(&k->slot[g % N_SLOTS], g, &key);
        }
        if (ok && RAND_bytes(iv, EVP_MAX_IV_LENGTH) == 1 &&
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) == 1 && set_hmac(hctx, key.hmac) == 0) {
            memcpy(key_name, key.name, NAME_LEN);
            rc = 1;
        }
    } else {
        uint64_t g = 0;
        for (int i = 0; i < 8; i++)
            g = g << 8 | key_name[8 + i];
        uint64_t cur = sg_tls_ticket_keys_generation(k);
        rc = 0;
        if (memcmp(key_name, k->prefix, 8) == 0 && g != 0 && (g == cur || g + 1 == cur) &&
            slot_read(&k->slot[g % N_SLOTS], g, &key) && memcmp(key.name, key_name, NAME_LEN) == 0) {
            /* 2 renews the ticket: always in TLS 1.3, where a client uses
             * a ticket once (RFC 8446 appendix C.4; OpenSSL's client does)
             * and OpenSSL sends a new one after a resumption only when
             * asked; in TLS 1.2 when the key is the previous one. */
            bool is_tls13 = SSL_version(ssl) == TLS1_3_VERSION;
            if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) == 1 && set_hmac(hctx, key.hmac) == 0)
                rc = g == cur && !is_tls13 ? 1 : 2;
            else
                rc = -1;
        }
    }
    OPENSSL_cleanse(&key, sizeof(key));
    return rc;
}

int sg__tls_tickets_install(SSL_CTX *ctx, sg_tls_ticket_keys_t *keys)
{
    if (SSL_CTX_set_ex_data(ctx, sg__tls_keys_index(), keys) != 1)
        return -1;
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) == 1 ? 0 : -1;
}
