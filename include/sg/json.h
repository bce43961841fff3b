/* JSON output helpers: string escaping (with UTF-8 repair) and a small
 * writer over a caller-owned fixed buffer. Used for access-log lines,
 * error-log lines in JSON format and span export bodies.
 *
 * Pure functions, no allocation, callable from any thread. */
#ifndef SG_JSON_H
#define SG_JSON_H

#include "sg/common.h"

/* Escapes `len` bytes of `in` as the inside of a JSON string (RFC 8259
 * section 7), writing at most `cap` bytes to `out` (no quotes, no NUL).
 * - '"' and '\\' are backslash-escaped; \b \f \n \r \t use their short form;
 *   every other byte 0x00-0x1F and 0x7F becomes \u00XX.
 * - Valid UTF-8 is copied; each maximal invalid subsequence (overlong form,
 *   surrogate, truncated sequence, code point above U+10FFFF, stray
 *   continuation byte) becomes one U+FFFD (EF BF BD).
 * - Output is cut only between whole escapes/characters: the result is
 *   always a valid JSON string body.
 * Returns the bytes written. *in_used (may be NULL) gets how many input
 * bytes were consumed: less than `len` means the output was cut. */
size_t sg_json_escape_ex(char *out, size_t cap, const char *in, size_t len, size_t *in_used);
size_t sg_json_escape(char *out, size_t cap, const char *in, size_t len);

/* A writer over a fixed buffer owned by the caller. Never writes past cap.
 * Appends are all-or-nothing: an append that does not fit sets is_overflow
 * and writes nothing, so `len` always ends on a whole token. Not NUL
 * terminated. Owner: the caller; one thread at a time. */
typedef struct sg_buf {
    char *p;
    size_t len;
    size_t cap;
    bool is_overflow;
} sg_buf_t;

static inline void sg_buf_init(sg_buf_t *b, char *mem, size_t cap)
{
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->is_overflow = false;
}

static inline size_t sg_buf_avail(const sg_buf_t *b)
{
    return b->cap - b->len;
}

static inline bool sg_buf_put(sg_buf_t *b, const void *s, size_t n)
{
    if (SG_UNLIKELY(n > b->cap - b->len)) {
        b->is_overflow = true;
        return false;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

static inline bool sg_buf_putc(sg_buf_t *b, char c)
{
    if (SG_UNLIKELY(b->len == b->cap)) {
        b->is_overflow = true;
        return false;
    }
    b->p[b->len++] = c;
    return true;
}

static inline bool sg_buf_puts(sg_buf_t *b, const char *s)
{
    return sg_buf_put(b, s, strlen(s));
}

/* Appends a string literal without strlen. */
#define SG_BUF_LIT(b, lit) sg_buf_put((b), (lit), sizeof(lit) - 1)

/* Decimal integers, without printf. */
bool sg_buf_put_u64(sg_buf_t *b, uint64_t v);
bool sg_buf_put_i64(sg_buf_t *b, int64_t v);
/* `v` thousandths as a decimal with exactly 3 fraction digits: 1234 -> "1.234". */
bool sg_buf_put_milli(sg_buf_t *b, uint64_t v);
/* `v` as exactly `digits` lower-case hex digits (most significant first). */
bool sg_buf_put_hex(sg_buf_t *b, uint64_t v, unsigned digits);

/* Appends "<escaped in>" (with the quotes). The escaped body is limited to
 * `max_body` bytes (cut between whole characters; SIZE_MAX = no limit);
 * that cut is not an overflow. If the quotes and at least the cut body do
 * not fit in the buffer, nothing is written and is_overflow is set. */
bool sg_buf_put_json_str(sg_buf_t *b, const char *in, size_t len, size_t max_body);

/* Appends the RFC 3339 UTC time of `unix_ns` with milliseconds:
 * "2024-05-01T12:34:56.789Z" (24 bytes, no quotes). */
bool sg_buf_put_rfc3339_ms(sg_buf_t *b, uint64_t unix_ns);

#endif /* SG_JSON_H */
