/* Common macros and small types shared by every module. */
#ifndef SG_COMMON_H
#define SG_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SG_MUST_CHECK __attribute__((warn_unused_result))
#define SG_UNUSED(x) ((void)(x))
#define SG_LIKELY(x) __builtin_expect(!!(x), 1)
#define SG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SG_CACHELINE 64
#define SG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

#define sg_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A borrowed slice of bytes: never owns its memory, not NUL-terminated. */
typedef struct sg_str {
    const char *p;
    size_t len;
} sg_str_t;

#define SG_STR(lit) ((sg_str_t){(lit), sizeof(lit) - 1})
#define SG_STR_NULL ((sg_str_t){NULL, 0})

static inline sg_str_t sg_str_make(const char *p, size_t len)
{
    sg_str_t s = {p, len};
    return s;
}

static inline sg_str_t sg_str_cstr(const char *p)
{
    sg_str_t s = {p, p ? strlen(p) : 0};
    return s;
}

static inline bool sg_str_eq(sg_str_t a, sg_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline char sg_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* Eight bytes of a and b, equal ignoring ASCII case: they differ at most in
 * bit 5 (0x20), and only in bytes where a's, with that bit set, is a
 * letter (a per-byte range test whose sums cannot carry across bytes). */
static inline bool sg__word_ieq(uint64_t a, uint64_t b)
{
    const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80u;
    uint64_t x = a ^ b;
    if (x & ~(ones * 0x20u))
        return false;
    if (!x)
        return true;
    uint64_t l = a | ones * 0x20u, low7 = l & ones * 0x7fu;
    uint64_t letter = (ones * (127u + 'z' + 1u) - low7) & ~l & (low7 + ones * (127u - ('a' - 1u))) & highs;
    return ((x << 2) & highs & ~letter) == 0;
}

/* ASCII case-insensitive comparison (header names, hosts); eight bytes at
 * a time from eight bytes on (the last word overlaps the one before). */
static inline bool sg_str_ieq(sg_str_t a, sg_str_t b)
{
    if (a.len != b.len)
        return false;
    if (a.len >= 8) {
        uint64_t wa, wb;
        size_t i = 0;
        for (; i + 8 <= a.len; i += 8) {
            memcpy(&wa, a.p + i, 8);
            memcpy(&wb, b.p + i, 8);
            if (!sg__word_ieq(wa, wb))
                return false;
        }
        if (i == a.len)
            return true;
        memcpy(&wa, a.p + a.len - 8, 8);
        memcpy(&wb, b.p + b.len - 8, 8);
        return sg__word_ieq(wa, wb);
    }
    for (size_t i = 0; i < a.len; i++)
        if (sg_ascii_lower(a.p[i]) != sg_ascii_lower(b.p[i]))
            return false;
    return true;
}

static inline bool sg_str_has_prefix(sg_str_t s, sg_str_t prefix)
{
    return s.len >= prefix.len && memcmp(s.p, prefix.p, prefix.len) == 0;
}

#endif /* SG_COMMON_H */
