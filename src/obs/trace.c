/* Trace context rules (DESIGN.md section 4, W3C Trace Context Level 2).
 *
 * Pure functions over the header values the parser collected. The only
 * state is the random source: a per-thread getrandom() buffer for new trace
 * ids (UUIDv4, formatted by libuuid) and a per-thread splitmix64 generator,
 * seeded from getrandom, for span ids (one per request: no system call on
 * the hot path). */
#include "sg/trace.h"

#include <uuid/uuid.h>

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char hex_lower[16] = "0123456789abcdef";

/* -1 for anything that is not a hex digit. `lower_only` rejects A-F, as
 * traceparent requires (W3C Trace Context, section 3.2.2: lower-case hex). */
static inline int hex_val(char c, bool lower_only)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (!lower_only && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static sg_str_t trim_ows(sg_str_t s)
{
    while (s.len && is_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len && is_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* ---- UUIDs ------------------------------------------------------------ */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ID_ONES 0x0101010101010101ull

/* Bit 7 of each byte of x that lies strictly between lo and hi (both
 * below 0x80); exact per byte: the masked sums cannot carry across bytes
 * (bit hacks' hasbetween). */
static inline uint64_t bytes_between(uint64_t x, unsigned lo, unsigned hi)
{
    uint64_t low7 = x & ID_ONES * 0x7fu;
    return (ID_ONES * (127u + hi) - low7) & ~x & (low7 + ID_ONES * (127u - lo)) & ID_ONES * 0x80u;
}

/* Eight id bytes: whether each is a hex digit (any case), lowered. */
static inline bool hex_word(uint64_t w, uint64_t *lower)
{
    uint64_t l = w | ID_ONES * 0x20u; /* 'A'-'F' -> 'a'-'f'; digits have the bit */
    uint64_t ok = bytes_between(w, '0' - 1, '9' + 1) | bytes_between(l, 'a' - 1, 'f' + 1);
    *lower = l;
    return (ok & ~w) == ID_ONES * 0x80u; /* bytes >= 0x80 never are */
}

static inline uint64_t load_word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load_two_groups(const unsigned char *a, const unsigned char *b)
{
    uint32_t x, y;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    return (uint64_t)x | (uint64_t)y << 32;
}
#endif

int sg_trace_id_parse(sg_str_t in, char out[SG_TRACE_ID_LEN + 1])
{
    if (in.len != SG_TRACE_ID_LEN || !in.p)
        return -1;
    const unsigned char *u = (const unsigned char *)in.p;
    if (u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-')
        return -1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The 32 digits as four words (8, 4+4, 4+4, 8 of the groups), checked
     * and lowered eight at a time: this runs for every request. */
    uint64_t w[4] = {load_word(u), load_two_groups(u + 9, u + 14), load_two_groups(u + 19, u + 24), load_word(u + 28)};
    uint64_t l[4], nonzero = 0;
    for (size_t i = 0; i < 4; i++) {
        if (!hex_word(w[i], &l[i]))
            return -1;
        nonzero |= l[i] ^ ID_ONES * '0';
    }
    if (!nonzero)
        return -1;
    char id[SG_TRACE_ID_LEN + 4];
    memcpy(id, &l[0], 8);
    id[8] = '-';
    memcpy(id + 9, &l[1], 4);
    id[13] = '-';
    memcpy(id + 14, (const char *)&l[1] + 4, 4);
    id[18] = '-';
    memcpy(id + 19, &l[2], 4);
    id[23] = '-';
    memcpy(id + 24, (const char *)&l[2] + 4, 4);
    memcpy(id + 28, &l[3], 8);
    memcpy(out, id, SG_TRACE_ID_LEN);
#else
    bool nonzero = false;
    for (size_t i = 0; i < SG_TRACE_ID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            continue;
        int v = hex_val((char)u[i], false);
        if (v < 0)
            return -1;
        nonzero |= v != 0;
    }
    if (!nonzero)
        return -1;
    for (size_t i = 0; i < SG_TRACE_ID_LEN; i++)
        out[i] = sg_ascii_lower(in.p[i]);
#endif
    out[SG_TRACE_ID_LEN] = '\0';
    return 0;
}

static uint64_t span_next(void);

/* New trace ids (#18): UUIDv4 whose 122 random bits come from a per-thread
 * buffer filled by getrandom() (the kernel's CSPRNG), SG_TRACE_ID_BATCH ids
 * per system call; libuuid formats them. uuid_generate_random() made 6
 * system calls and reseeded libc's random() for every id (about 9,500
 * instructions; docs/performance.md). Each worker thread has its own
 * buffer: no lock, and a forked child would refill on its first id only if
 * it were threaded the same way (swarmgate never forks after start). */
#define SG_TRACE_ID_BATCH 32u
static _Thread_local unsigned char id_pool[SG_TRACE_ID_BATCH * 16];
static _Thread_local unsigned id_pool_left;
static _Atomic uint64_t id_pool_refills;

static void id_pool_refill(void)
{
    size_t got = 0;
    while (got < sizeof(id_pool)) {
        ssize_t n = getrandom(id_pool + got, sizeof(id_pool) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            break;
    }
    if (got < sizeof(id_pool)) {
        /* getrandom cannot fail on Linux >= 3.17 once the pool is ready;
         * libuuid's own source fills what is missing. */
        for (size_t i = got / 16; i < SG_TRACE_ID_BATCH; i++)
            uuid_generate_random(id_pool + i * 16);
    }
    id_pool_left = SG_TRACE_ID_BATCH;
    atomic_fetch_add_explicit(&id_pool_refills, 1, memory_order_relaxed);
}

uint64_t sg_trace_id_refills(void)
{
    return atomic_load_explicit(&id_pool_refills, memory_order_relaxed);
}

void sg_trace_id_generate(char out[SG_TRACE_ID_LEN + 1])
{
    if (SG_UNLIKELY(id_pool_left == 0))
        id_pool_refill();
    unsigned char *u = id_pool + (size_t)(--id_pool_left) * 16;
    /* RFC 9562 5.4: version 4 in the high nibble of octet 6, variant 10 in
     * the two high bits of octet 8; 122 random bits remain, so the id is
     * never all zeros. */
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    uuid_unparse_lower(u, out);
    memset(u, 0, 16); /* an id is used once */
}

void sg_trace_id_to_hex(const char uuid[SG_TRACE_ID_LEN], char hex[SG_TRACE_HEX_LEN + 1])
{
    /* A valid id is 8-4-4-4-12 hex digits: the groups are copied whole and
     * lowered by setting bit 0x20 (a no-op on '0'-'9', 'A'-'F' -> 'a'-'f'),
     * a word at a time: this runs for every request. */
    memcpy(hex, uuid, 8);
    memcpy(hex + 8, uuid + 9, 4);
    memcpy(hex + 12, uuid + 14, 4);
    memcpy(hex + 16, uuid + 19, 4);
    memcpy(hex + 20, uuid + 24, 12);
    for (size_t i = 0; i < SG_TRACE_HEX_LEN; i += 8) {
        uint64_t w;
        memcpy(&w, hex + i, 8);
        w |= 0x2020202020202020ull;
        memcpy(hex + i, &w, 8);
    }
    hex[SG_TRACE_HEX_LEN] = '\0';
}

void sg_trace_hex_to_id(const char hex[SG_TRACE_HEX_LEN], char uuid[SG_TRACE_ID_LEN + 1])
{
    size_t j = 0;
    for (size_t i = 0; i < SG_TRACE_ID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            uuid[i] = '-';
        else
            uuid[i] = sg_ascii_lower(hex[j++]);
    }
    uuid[SG_TRACE_ID_LEN] = '\0';
}

/* ---- span ids ---------------------------------------------------------- */

/* splitmix64 over a per-thread state (Steele, Lea, Flood 2014): one add and
 * three multiply/xor-shift rounds per id, full 2^64 period. Span ids only
 * need to be unique, not secret (W3C section 3.2.2.4). */
static _Thread_local uint64_t span_state;
static _Thread_local bool span_seeded;

static void span_seed(void)
{
    uint64_t seed = 0;
    ssize_t n;
    do {
        n = getrandom(&seed, sizeof(seed), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(seed)) {
        /* getrandom cannot fail on Linux >= 3.17 once the pool is ready;
         * fall back to something unique per thread and instant anyway. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&span_state ^
               ((uint64_t)getpid() << 16);
    }
    span_state = seed;
    span_seeded = true;
}

static uint64_t span_next(void)
{
    if (SG_UNLIKELY(!span_seeded))
        span_seed();
    uint64_t z = (span_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The 8 nibbles of v as lower-case hex, most significant first, in the
 * byte order of a little-endian store: each nibble spread into a byte,
 * then '0' added, and 'a' - '0' - 10 more where the nibble is above 9. */
static inline uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = (x | x << 16) & 0x0000ffff0000ffffull;
    x = (x | x << 8) & 0x00ff00ff00ff00ffull;
    x = (x | x << 4) & 0x0f0f0f0f0f0f0f0full; /* byte k holds nibble k */
    uint64_t above9 = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return __builtin_bswap64(x + 0x3030303030303030ull + above9 * ('a' - '0' - 10));
}
#endif

void sg_span_id_generate(char out[SG_SPAN_ID_LEN + 1])
{
    uint64_t v;
    do
        v = span_next();
    while (SG_UNLIKELY(v == 0)); /* all-zero parent-id is invalid (W3C 3.2.2.4) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t hi = hex8((uint32_t)(v >> 32)), lo = hex8((uint32_t)v);
    memcpy(out, &hi, 8);
    memcpy(out + 8, &lo, 8);
#else
    for (int i = SG_SPAN_ID_LEN - 1; i >= 0; i--) {
        out[i] = hex_lower[v & 0xf];
        v >>= 4;
    }
#endif
    out[SG_SPAN_ID_LEN] = '\0';
}

/* ---- traceparent ------------------------------------------------------- */

/* `n` lower-case hex digits; *is_zero tells whether all were '0'. */
static bool lower_hex_run(const char *p, size_t n, bool *is_zero)
{
    bool zero = true;
    for (size_t i = 0; i < n; i++) {
        int v = hex_val(p[i], true);
        if (v < 0)
            return false;
        zero &= v == 0;
    }
    if (is_zero)
        *is_zero = zero;
    return true;
}

int sg_traceparent_parse(sg_str_t in, sg_traceparent_t *out)
{
    in = trim_ows(in);
    /* W3C Trace Context Level 2, section 3.2 and 4.3 (versioning):
     * version "-" trace-id "-" parent-id "-" trace-flags, 55 characters for
     * version 00. A higher version is read on its first 55 characters when
     * the 56th is absent or '-'. Version ff is invalid. */
    if (!in.p || in.len < SG_TRACEPARENT_LEN)
        return -1;
    const char *p = in.p;
    bool zero;
    if (!lower_hex_run(p, 2, NULL))
        return -1;
    uint8_t version = (uint8_t)(hex_val(p[0], true) << 4 | hex_val(p[1], true));
    if (version == 0xff)
        return -1;
    if (version == 0x00 && in.len != SG_TRACEPARENT_LEN)
        return -1;
    if (version != 0x00 && in.len > SG_TRACEPARENT_LEN && p[SG_TRACEPARENT_LEN] != '-')
        return -1;
    if (p[2] != '-' || p[35] != '-' || p[52] != '-')
        return -1;
    if (!lower_hex_run(p + 3, SG_TRACE_HEX_LEN, &zero) || zero)
        return -1;
    if (!lower_hex_run(p + 36, SG_SPAN_ID_LEN, &zero) || zero)
        return -1;
    if (!lower_hex_run(p + 53, 2, NULL))
        return -1;
    memcpy(out->trace_hex, p + 3, SG_TRACE_HEX_LEN);
    out->trace_hex[SG_TRACE_HEX_LEN] = '\0';
    memcpy(out->parent_id, p + 36, SG_SPAN_ID_LEN);
    out->parent_id[SG_SPAN_ID_LEN] = '\0';
    out->flags = (uint8_t)(hex_val(p[53], true) << 4 | hex_val(p[54], true));
    out->version = version;
    return 0;
}

/* ---- tracestate -------------------------------------------------------- */

#define TS_MAX_MEMBERS 32

static inline bool is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_keychar(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* The key grammar of the W3C suite (test/tracecontext/tracestate.py, which
 * wins over older wording, DESIGN.md section 4):
 *   key = ( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )
 * The older split into tenant-id "@" system-id (241 + 14 characters, one
 * "@") is gone: "foo@", "foo@@bar" and "t@" followed by 15 characters are
 * keys; a key that starts with "@" or is over 256 characters is not. */
static bool ts_key_valid(sg_str_t k)
{
    if (k.len == 0 || k.len > 256 || !(is_lcalpha(k.p[0]) || is_digit(k.p[0])))
        return false;
    for (size_t i = 1; i < k.len; i++)
        if (!is_keychar(k.p[i]) && k.p[i] != '@')
            return false;
    return true;
}

/* section 3.3.1.3.2: value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable, no ',' or '='). */
static bool ts_value_valid(sg_str_t v)
{
    if (v.len < 1 || v.len > 256)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return v.p[v.len - 1] != ' ';
}

/* Validates the list formed by joining `lines` with ','. Empty members
 * (OWS only) are allowed and ignored (section 3.3.1.1). */
static bool ts_lines_valid(const sg_str_t *lines, size_t n_lines, size_t *n_members_out)
{
    size_t n = 0;
    for (size_t l = 0; l < n_lines; l++) {
        const char *p = lines[l].p, *end = p ? p + lines[l].len : NULL;
        while (p && p <= end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *mend = comma ? comma : end;
            sg_str_t m = trim_ows(sg_str_make(p, (size_t)(mend - p)));
            p = comma ? comma + 1 : NULL;
            if (m.len == 0)
                continue;
            const char *eq = memchr(m.p, '=', m.len);
            if (!eq)
                return false;
            sg_str_t k = sg_str_make(m.p, (size_t)(eq - m.p));
            sg_str_t v = sg_str_make(eq + 1, m.len - k.len - 1);
            if (!ts_key_valid(k) || !ts_value_valid(v))
                return false;
            /* A duplicated key does not make the list invalid: the suite
             * (test_tracestate_duplicated_keys) wants it inherited, the
             * duplicate kept as sent or dropped; it is kept (passed on
             * unchanged). Every member counts towards the 32. */
            if (n == TS_MAX_MEMBERS)
                return false;
            n++;
        }
    }
    if (n_members_out)
        *n_members_out = n;
    return true;
}

bool sg_tracestate_valid(sg_str_t in)
{
    return ts_lines_valid(&in, 1, NULL);
}

/* ---- resolve ----------------------------------------------------------- */

typedef enum id_state {
    ID_ABSENT = 0,
    ID_VALID,
    ID_INVALID,
} id_state_t;

/* An id header: valid when every value (header lines, and comma-separated
 * elements within a line, RFC 9110 section 5.3) is the same UUID. */
static id_state_t resolve_id_header(const sg_str_t *vals, size_t n, char out[SG_TRACE_ID_LEN + 1])
{
    if (n == 0)
        return ID_ABSENT;
    if (n > SG_TRACE_MAX_VALUES)
        return ID_INVALID;
    bool have = false;
    char one[SG_TRACE_ID_LEN + 1];
    for (size_t i = 0; i < n; i++) {
        const char *p = vals[i].p, *end = p ? p + vals[i].len : NULL;
        if (!p)
            return ID_INVALID;
        while (p) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            sg_str_t e = trim_ows(sg_str_make(p, (size_t)((comma ? comma : end) - p)));
            p = comma ? comma + 1 : NULL;
            if (sg_trace_id_parse(e, one) != 0)
                return ID_INVALID;
            if (!have) {
                memcpy(out, one, sizeof(one));
                have = true;
            } else if (memcmp(out, one, SG_TRACE_ID_LEN) != 0) {
                return ID_INVALID;
            }
        }
    }
    return ID_VALID;
}

static void format_traceparent(sg_trace_ctx_t *out)
{
    char *t = out->traceparent;
    t[0] = '0';
    t[1] = '0';
    t[2] = '-';
    sg_trace_id_to_hex(out->trace_id, t + 3); /* writes a NUL at 35, overwritten next */
    t[35] = '-';
    memcpy(t + 36, out->span_id, SG_SPAN_ID_LEN);
    t[52] = '-';
    t[53] = hex_lower[out->flags >> 4];
    t[54] = hex_lower[out->flags & 0xf];
    t[55] = '\0';
}

/* Joins the tracestate lines with ',' (dropping OWS-only lines) when they
 * are valid and fit; returns false when the combined value was invalid. */
static bool take_tracestate(const sg_trace_in_t *in, sg_trace_ctx_t *out)
{
    out->tracestate[0] = '\0';
    out->tracestate_len = 0;
    if (in->n_tracestate == 0)
        return true;
    if (in->n_tracestate > SG_TRACE_MAX_VALUES)
        return false;
    size_t n_members = 0;
    if (!ts_lines_valid(in->tracestate, in->n_tracestate, &n_members))
        return false;
    if (n_members == 0)
        return true;
    size_t len = 0;
    for (size_t i = 0; i < in->n_tracestate; i++) {
        sg_str_t l = trim_ows(in->tracestate[i]);
        if (l.len == 0)
            continue;
        size_t need = l.len + (len ? 1 : 0);
        if (len + need > SG_TRACESTATE_MAX) {
            /* Valid but longer than we forward: dropped whole (W3C section
             * 3.3.1.5 allows a participant to discard tracestate). */
            out->tracestate[0] = '\0';
            out->tracestate_len = 0;
            return true;
        }
        if (len)
            out->tracestate[len++] = ',';
        memcpy(out->tracestate + len, l.p, l.len);
        len += l.len;
    }
    out->tracestate[len] = '\0';
    out->tracestate_len = len;
    return true;
}

void sg_trace_resolve(const sg_trace_in_t *in, bool sample_new, sg_trace_ctx_t *out)
{
    /* Everything but the tracestate text, which is a C string of
     * tracestate_len bytes (its bytes past the NUL are never read): most
     * of the struct, not worth zeroing per request. */
    memset(out, 0, offsetof(sg_trace_ctx_t, tracestate));
    out->tracestate[0] = '\0';
    out->tracestate_len = 0;
    bool is_generated = false;

    /* traceparent: exactly one line, valid (two lines = invalid, W3C 3.2). */
    sg_traceparent_t tp;
    id_state_t tp_state = ID_ABSENT;
    if (in->n_traceparent == 1)
        tp_state = sg_traceparent_parse(in->traceparent[0], &tp) == 0 ? ID_VALID : ID_INVALID;
    else if (in->n_traceparent > 1)
        tp_state = ID_INVALID;
    if (tp_state == ID_INVALID)
        out->had_invalid = true;

    /* X-Trace-Id, then an accepted alias, then traceparent, then new. */
    id_state_t xt = resolve_id_header(in->xtid, in->n_xtid, out->trace_id);
    if (xt == ID_VALID) {
        out->source = SG_TRACE_SRC_FORWARDED;
    } else if (xt == ID_INVALID) {
        out->had_invalid = true;
        out->source = SG_TRACE_SRC_REPLACED;
        /* DESIGN.md section 4: an invalid id is replaced by a new UUIDv4.
         * A valid traceparent with another trace id is then restarted with
         * the new id below, so one id still holds on every header. */
        sg_trace_id_generate(out->trace_id);
        is_generated = true;
    } else if (resolve_id_header(in->alias, in->n_alias, out->trace_id) == ID_VALID) {
        /* Alias headers (X-Request-Id, ...) often carry non-UUID ids by
         * design: an invalid one is ignored, not counted as replaced. */
        out->source = SG_TRACE_SRC_FORWARDED;
    } else if (tp_state == ID_VALID) {
        sg_trace_hex_to_id(tp.trace_hex, out->trace_id);
        out->source = SG_TRACE_SRC_TRACEPARENT;
    } else {
        sg_trace_id_generate(out->trace_id);
        out->source = SG_TRACE_SRC_GENERATED;
        is_generated = true;
    }

    sg_span_id_generate(out->span_id);

    bool is_continue = false;
    if (tp_state == ID_VALID) {
        char hex[SG_TRACE_HEX_LEN + 1];
        sg_trace_id_to_hex(out->trace_id, hex);
        if (memcmp(hex, tp.trace_hex, SG_TRACE_HEX_LEN) == 0)
            is_continue = true;
        else if (out->source == SG_TRACE_SRC_FORWARDED)
            out->conflict = true; /* a valid X-Trace-Id wins (DESIGN.md section 4) */
    }

    if (is_continue) {
        /* Keep sampled (0x01) and random (0x02); other bits are reserved
         * and cleared (W3C Level 2, section 3.2.2.5). Sent as version 00. */
        out->flags = tp.flags & 0x03;
        memcpy(out->parent_span_id, tp.parent_id, sizeof(tp.parent_id));
        if (!take_tracestate(in, out))
            out->had_invalid = true;
    } else {
        out->flags = (uint8_t)((sample_new ? 0x01 : 0x00) | (is_generated ? 0x02 : 0x00));
        out->parent_span_id[0] = '\0';
        out->tracestate[0] = '\0';
        out->tracestate_len = 0;
    }
    format_traceparent(out);
}

const char *sg_trace_source_name(sg_trace_source_t s)
{
    static const char *const names[SG_TRACE_SRC__COUNT] = {
        [SG_TRACE_SRC_GENERATED] = "generated",
        [SG_TRACE_SRC_FORWARDED] = "forwarded",
        [SG_TRACE_SRC_TRACEPARENT] = "traceparent",
        [SG_TRACE_SRC_REPLACED] = "replaced",
    };
    return (unsigned)s < SG_TRACE_SRC__COUNT ? names[s] : "unknown";
}
