/* A strict JSON (RFC 8259) checker for tests: validates a document
 * (including UTF-8 in strings) and can fetch one member's value. Not for
 * production use: recursive, and it does not build a tree. */
#ifndef SG_TEST_JSONCHECK_H
#define SG_TEST_JSONCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is exactly one JSON value (surrounding whitespace
 * allowed). On failure writes a reason with the byte offset into err. */
bool sg_test_json_valid(const char *s, size_t len, char *err, size_t errlen);

/* Finds the n-th (0-based) member named `key` at any depth, in document
 * order. A string value is decoded (escapes to UTF-8) into out; any other
 * value is copied as its raw text. Returns the value's length, or -1 when
 * the document is invalid, the key is absent or out is too small. */
long sg_test_json_get(const char *s, size_t len, const char *key, int n, char *out, size_t cap);

/* Number of members named `key` at any depth (-1 on an invalid document). */
long sg_test_json_count(const char *s, size_t len, const char *key);

#endif /* SG_TEST_JSONCHECK_H */
