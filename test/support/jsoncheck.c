#include "support/jsoncheck.h"

#include <stdio.h>
#include <string.h>

typedef struct jp {
    const unsigned char *s;
    size_t len, i;
    int depth;
    char *err;
    size_t errlen;
    /* member lookup */
    const char *key;
    int want_n;
    int seen;
    char *out;
    size_t cap;
    long found_len;
} jp_t;

static bool fail(jp_t *p, const char *why)
{
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "offset %zu: %s", p->i, why);
    return false;
}

static void ws(jp_t *p)
{
    while (p->i < p->len && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static bool value(jp_t *p);

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string; decodes into dec (cap deccap) when dec != NULL.
 * *declen gets the decoded length or (size_t)-1 when it did not fit. */
static bool string(jp_t *p, char *dec, size_t deccap, size_t *declen)
{
    size_t o = 0;
    bool fits = true;
    char tmp[4];
    if (p->i >= p->len || p->s[p->i] != '"')
        return fail(p, "expected string");
    p->i++;
    for (;;) {
        if (p->i >= p->len)
            return fail(p, "unterminated string");
        unsigned char c = p->s[p->i];
        size_t n = 0;
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20)
            return fail(p, "raw control character in string");
        if (c == '\\') {
            if (p->i + 1 >= p->len)
                return fail(p, "truncated escape");
            unsigned char e = p->s[p->i + 1];
            p->i += 2;
            switch (e) {
            case '"':
                tmp[0] = '"';
                n = 1;
                break;
            case '\\':
                tmp[0] = '\\';
                n = 1;
                break;
            case '/':
                tmp[0] = '/';
                n = 1;
                break;
            case 'b':
                tmp[0] = '\b';
                n = 1;
                break;
            case 'f':
                tmp[0] = '\f';
                n = 1;
                break;
            case 'n':
                tmp[0] = '\n';
                n = 1;
                break;
            case 'r':
                tmp[0] = '\r';
                n = 1;
                break;
            case 't':
                tmp[0] = '\t';
                n = 1;
                break;
            case 'u': {
                unsigned cp = 0;
                if (p->i + 4 > p->len)
                    return fail(p, "truncated \\u");
                for (int k = 0; k < 4; k++) {
                    int h = hexv(p->s[p->i + (size_t)k]);
                    if (h < 0)
                        return fail(p, "bad \\u hex");
                    cp = cp << 4 | (unsigned)h;
                }
                p->i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo = 0;
                    if (p->i + 6 > p->len || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                        return fail(p, "lone high surrogate");
                    for (int k = 0; k < 4; k++) {
                        int h = hexv(p->s[p->i + 2 + (size_t)k]);
                        if (h < 0)
                            return fail(p, "bad \\u hex");
                        lo = lo << 4 | (unsigned)h;
                    }
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return fail(p, "bad low surrogate");
                    p->i += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return fail(p, "lone low surrogate");
                }
                n = put_utf8(tmp, cp);
                break;
            }
            default:
                return fail(p, "bad escape");
            }
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            n = 1;
            p->i++;
        } else {
            /* strict UTF-8 (RFC 3629) */
            size_t need;
            unsigned char lo = 0x80, hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf)
                need = 2;
            else if (c >= 0xe0 && c <= 0xef) {
                need = 3;
                if (c == 0xe0)
                    lo = 0xa0;
                if (c == 0xed)
                    hi = 0x9f;
            } else if (c >= 0xf0 && c <= 0xf4) {
                need = 4;
                if (c == 0xf0)
                    lo = 0x90;
                if (c == 0xf4)
                    hi = 0x8f;
            } else
                return fail(p, "invalid UTF-8 lead byte");
            if (p->i + need > p->len)
                return fail(p, "truncated UTF-8");
            if (p->s[p->i + 1] < lo || p->s[p->i + 1] > hi)
                return fail(p, "invalid UTF-8 sequence");
            for (size_t k = 2; k < need; k++)
                if (p->s[p->i + k] < 0x80 || p->s[p->i + k] > 0xbf)
                    return fail(p, "invalid UTF-8 continuation");
            memcpy(tmp, p->s + p->i, need);
            n = need;
            p->i += need;
        }
        if (dec && fits) {
            if (o + n >= deccap)
                fits = false;
            else {
                memcpy(dec + o, tmp, n);
                o += n;
            }
        }
    }
    if (dec) {
        if (fits)
            dec[o] = '\0';
        *declen = fits ? o : (size_t)-1;
    }
    return true;
}

static bool number(jp_t *p)
{
    size_t st = p->i;
    if (p->i < p->len && p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->len)
        return fail(p, "bad number");
    if (p->s[p->i] == '0')
        p->i++;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9')
        while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    else
        return fail(p, "bad number");
    if (p->i < p->len && p->s[p->i] == '.') {
        p->i++;
        size_t d = p->i;
        while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == d)
            return fail(p, "bad fraction");
    }
    if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        size_t d = p->i;
        while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == d)
            return fail(p, "bad exponent");
    }
    return p->i > st;
}

static bool literal(jp_t *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->i + n > p->len || memcmp(p->s + p->i, lit, n) != 0)
        return fail(p, "bad literal");
    p->i += n;
    return true;
}

static bool object(jp_t *p)
{
    p->i++; /* { */
    ws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
        return true;
    }
    for (;;) {
        char name[256];
        size_t nlen = 0;
        ws(p);
        if (!string(p, name, sizeof(name), &nlen))
            return false;
        ws(p);
        if (p->i >= p->len || p->s[p->i] != ':')
            return fail(p, "expected ':'");
        p->i++;
        ws(p);
        bool match = p->key && nlen != (size_t)-1 && strcmp(name, p->key) == 0;
        size_t vstart = p->i;
        if (match && p->seen++ == p->want_n && p->out) {
            if (p->i < p->len && p->s[p->i] == '"') {
                size_t dl = 0;
                if (!string(p, p->out, p->cap, &dl))
                    return false;
                p->found_len = dl == (size_t)-1 ? -2 : (long)dl;
            } else {
                if (!value(p))
                    return false;
                size_t n = p->i - vstart;
                if (n + 1 > p->cap)
                    p->found_len = -2;
                else {
                    memcpy(p->out, p->s + vstart, n);
                    p->out[n] = '\0';
                    p->found_len = (long)n;
                }
            }
        } else if (!value(p)) {
            return false;
        }
        ws(p);
        if (p->i < p->len && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->len && p->s[p->i] == '}') {
            p->i++;
            return true;
        }
        return fail(p, "expected ',' or '}'");
    }
}

static bool array(jp_t *p)
{
    p->i++; /* [ */
    ws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
        return true;
    }
    for (;;) {
        ws(p);
        if (!value(p))
            return false;
        ws(p);
        if (p->i < p->len && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->len && p->s[p->i] == ']') {
            p->i++;
            return true;
        }
        return fail(p, "expected ',' or ']'");
    }
}

static bool value(jp_t *p)
{
    if (p->i >= p->len)
        return fail(p, "expected value");
    if (++p->depth > 64)
        return fail(p, "too deep");
    bool ok;
    switch (p->s[p->i]) {
    case '{':
        ok = object(p);
        break;
    case '[':
        ok = array(p);
        break;
    case '"':
        ok = string(p, NULL, 0, NULL);
        break;
    case 't':
        ok = literal(p, "true");
        break;
    case 'f':
        ok = literal(p, "false");
        break;
    case 'n':
        ok = literal(p, "null");
        break;
    default:
        ok = number(p);
        break;
    }
    p->depth--;
    return ok;
}

static bool run(jp_t *p)
{
    ws(p);
    if (!value(p))
        return false;
    ws(p);
    if (p->i != p->len)
        return fail(p, "trailing bytes");
    return true;
}

bool sg_test_json_valid(const char *s, size_t len, char *err, size_t errlen)
{
    jp_t p = {.s = (const unsigned char *)s, .len = len, .err = err, .errlen = errlen};
    return run(&p);
}

long sg_test_json_get(const char *s, size_t len, const char *key, int n, char *out, size_t cap)
{
    jp_t p = {
        .s = (const unsigned char *)s, .len = len, .key = key, .want_n = n, .out = out, .cap = cap, .found_len = -1};
    if (!run(&p))
        return -1;
    return p.found_len < 0 ? -1 : p.found_len;
}

long sg_test_json_count(const char *s, size_t len, const char *key)
{
    jp_t p = {.s = (const unsigned char *)s, .len = len, .key = key, .want_n = -1, .found_len = -1};
    if (!run(&p))
        return -1;
    return p.seen;
}
