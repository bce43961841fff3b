/* JSON escaping and the fixed-buffer writer (include/sg/json.h).
 *
 * This runs for every access-log line, so the common case (printable ASCII)
 * is a table-driven scan followed by one memcpy per run. */
#include "sg/json.h"

#include <stdint.h>

static const char hex_lower[16] = "0123456789abcdef";

/* 0: copied as is; 1: needs an escape; 2: part of a multi-byte sequence. */
enum { C_PLAIN = 0, C_ESC = 1, C_HIGH = 2 };

#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const uint8_t byte_class[256] = {
    R16(C_ESC),
    R16(C_ESC), /* 0x00-0x1f */
    /* 0x20-0x2f: '"' (0x22) escaped */
    0,
    0,
    C_ESC,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    R16(0), /* 0x30-0x3f */
    R16(0), /* 0x40-0x4f */
    /* 0x50-0x5f: '\\' (0x5c) escaped */
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    C_ESC,
    0,
    0,
    0,
    R16(0), /* 0x60-0x6f */
    /* 0x70-0x7f: DEL (0x7f) escaped */
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    C_ESC,
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
    R16(C_HIGH),
};
#undef R16

/* Length of the well-formed UTF-8 sequence at p (Unicode 15, table 3-7),
 * or 0 when it is ill-formed; then *bad gets the length of its maximal
 * subpart (at least 1), replaced by one U+FFFD (Unicode section 3.9,
 * "U+FFFD Substitution of Maximal Subparts"). */
static size_t utf8_seq(const unsigned char *p, size_t avail, size_t *bad)
{
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates D800-DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        *bad = 1; /* continuation byte, C0/C1 (overlong), F5-FF */
        return 0;
    }
    size_t i = 1;
    if (i < avail && p[i] >= lo && p[i] <= hi) {
        for (i = 2; i < need && i < avail; i++)
            if (p[i] < 0x80 || p[i] > 0xbf)
                break;
        if (i == need)
            return need;
    }
    *bad = i;
    return 0;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
/* Some byte of x is 0. */
static inline uint64_t has_zero(uint64_t x)
{
    return (x - ONES) & ~x & HIGHS;
}

/* Some byte of v is not C_PLAIN: < 0x20, 0x7f, '"', '\\' or >= 0x80. */
static inline bool word_has_special(uint64_t v)
{
    uint64_t below_space = (v - ONES * 0x20u) & ~v & HIGHS; /* also sets for >= 0x80, tested anyway */
    return ((v & HIGHS) | below_space | has_zero(v ^ (ONES * 0x7fu)) | has_zero(v ^ (ONES * '"')) |
            has_zero(v ^ (ONES * '\\'))) != 0;
}

size_t sg_json_escape_ex(char *out, size_t cap, const char *in, size_t len, size_t *in_used)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < len) {
        /* Run of bytes that need nothing: eight at a time while none of
         * them is a control byte, DEL, '"', '\\' or >= 0x80 (SWAR: a zero
         * byte test on the word XOR each special value), then bytewise. */
        size_t start = i;
        while (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (word_has_special(v))
                break;
            i += 8;
        }
        while (i < len && byte_class[s[i]] == C_PLAIN)
            i++;
        if (i > start) {
            size_t run = i - start;
            if (run > cap - o) {
                run = cap - o;
                memcpy(out + o, s + start, run);
                o += run;
                i = start + run;
                break;
            }
            memcpy(out + o, s + start, run);
            o += run;
            if (i == len)
                break;
        }
        unsigned char c = s[i];
        if (byte_class[c] == C_ESC) {
            char e = 0;
            switch (c) {
            case '"':
                e = '"';
                break;
            case '\\':
                e = '\\';
                break;
            case '\b':
                e = 'b';
                break;
            case '\f':
                e = 'f';
                break;
            case '\n':
                e = 'n';
                break;
            case '\r':
                e = 'r';
                break;
            case '\t':
                e = 't';
                break;
            default:
                break;
            }
            if (e) {
                if (cap - o < 2)
                    break;
                out[o++] = '\\';
                out[o++] = e;
            } else {
                if (cap - o < 6)
                    break;
                memcpy(out + o, "\\u00", 4);
                out[o + 4] = hex_lower[c >> 4];
                out[o + 5] = hex_lower[c & 0xf];
                o += 6;
            }
            i++;
            continue;
        }
        size_t bad = 0, n = utf8_seq(s + i, len - i, &bad);
        if (n) {
            if (cap - o < n)
                break;
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            if (cap - o < 3)
                break;
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += bad;
        }
    }
    if (in_used)
        *in_used = i;
    return o;
}

size_t sg_json_escape(char *out, size_t cap, const char *in, size_t len)
{
    return sg_json_escape_ex(out, cap, in, len, NULL);
}

bool sg_buf_put_u64(sg_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sg_buf_put(b, tmp + sizeof(tmp) - n, n);
}

bool sg_buf_put_i64(sg_buf_t *b, int64_t v)
{
    if (v >= 0)
        return sg_buf_put_u64(b, (uint64_t)v);
    char tmp[21];
    uint64_t u = (uint64_t)0 - (uint64_t)v; /* INT64_MIN safe */
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    tmp[sizeof(tmp) - 1 - n++] = '-';
    return sg_buf_put(b, tmp + sizeof(tmp) - n, n);
}

bool sg_buf_put_milli(sg_buf_t *b, uint64_t v)
{
    char tmp[24];
    uint64_t ip = v / 1000;
    unsigned frac = (unsigned)(v % 1000);
    size_t n = 0;
    tmp[sizeof(tmp) - 1 - n++] = (char)('0' + frac % 10);
    tmp[sizeof(tmp) - 1 - n++] = (char)('0' + frac / 10 % 10);
    tmp[sizeof(tmp) - 1 - n++] = (char)('0' + frac / 100);
    tmp[sizeof(tmp) - 1 - n++] = '.';
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + ip % 10);
        ip /= 10;
    } while (ip);
    return sg_buf_put(b, tmp + sizeof(tmp) - n, n);
}

bool sg_buf_put_hex(sg_buf_t *b, uint64_t v, unsigned digits)
{
    char tmp[16];
    if (digits > 16)
        digits = 16;
    for (unsigned i = 0; i < digits; i++) {
        tmp[digits - 1 - i] = hex_lower[v & 0xf];
        v >>= 4;
    }
    return sg_buf_put(b, tmp, digits);
}

/* Whether s[0, len) is copied as is (no control byte, DEL, '"', '\\' or
 * byte >= 0x80): a word at a time, the last one overlapping the one before
 * it, so that a string of 8 bytes or more takes no bytewise tail. */
static bool is_plain(const unsigned char *s, size_t len)
{
    uint64_t v;
    if (len < 8) {
        for (size_t i = 0; i < len; i++)
            if (byte_class[s[i]] != C_PLAIN)
                return false;
        return true;
    }
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&v, s + i, 8);
        if (word_has_special(v))
            return false;
    }
    if (i == len)
        return true;
    memcpy(&v, s + len - 8, 8);
    return !word_has_special(v);
}

bool sg_buf_put_json_str(sg_buf_t *b, const char *in, size_t len, size_t max_body)
{
    size_t avail = sg_buf_avail(b);
    if (avail < 2) {
        b->is_overflow = true;
        return false;
    }
    size_t room = SG_MIN(avail - 2, max_body), used = 0;
    char *o = b->p + b->len;
    if (len <= room && is_plain((const unsigned char *)in, len)) {
        /* The common case (ids, addresses, names, plain paths): what
         * sg_json_escape_ex would write, without its per-run work. */
        o[0] = '"';
        if (len)
            memcpy(o + 1, in, len);
        o[len + 1] = '"';
        b->len += len + 2;
        return true;
    }
    size_t n = sg_json_escape_ex(o + 1, room, in, len, &used);
    if (used < len && room < max_body) {
        /* cut by the buffer, not by max_body: all-or-nothing */
        b->is_overflow = true;
        return false;
    }
    o[0] = '"';
    o[n + 1] = '"';
    b->len += n + 2;
    return true;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * civil_from_days): integer only, no gmtime_r and its locale/TZ work. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static inline void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* The text up to the seconds of the last second formatted on this thread
 * (every access-log line of a second shares it). */
static _Thread_local uint64_t tl_ts_secs = UINT64_MAX;
static _Thread_local char tl_ts_text[20];

bool sg_buf_put_rfc3339_ms(sg_buf_t *b, uint64_t unix_ns)
{
    uint64_t secs = unix_ns / 1000000000u;
    unsigned ms = (unsigned)(unix_ns / 1000000u % 1000u);
    char t[24];
    if (secs != tl_ts_secs) {
        int64_t days = (int64_t)(secs / 86400u);
        unsigned sod = (unsigned)(secs % 86400u);
        int64_t y;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        unsigned yy = (unsigned)(y % 10000);
        put2(t, yy / 100);
        put2(t + 2, yy % 100);
        t[4] = '-';
        put2(t + 5, m);
        t[7] = '-';
        put2(t + 8, d);
        t[10] = 'T';
        put2(t + 11, sod / 3600);
        t[13] = ':';
        put2(t + 14, sod / 60 % 60);
        t[16] = ':';
        put2(t + 17, sod % 60);
        t[19] = '.';
        memcpy(tl_ts_text, t, sizeof(tl_ts_text));
        tl_ts_secs = secs;
    } else {
        memcpy(t, tl_ts_text, sizeof(tl_ts_text));
    }
    t[20] = (char)('0' + ms / 100);
    put2(t + 21, ms % 100);
    t[23] = 'Z';
    return sg_buf_put(b, t, sizeof(t));
}
