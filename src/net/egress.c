/* Egress allow-list, request-target parsing and proxy authentication (pure
 * functions; see include/sg/egress.h). Every address is compared in its
 * 128-bit IPv6 form, IPv4 a.b.c.d being ::ffff:a.b.c.d (RFC 4291 2.5.5.2),
 * so a mapped address, a mapped rule and a plain IPv4 rule all agree. */
#include "sg/egress.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* ---- 128-bit address form ------------------------------------------------ */

static bool to_v6(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

/* A CIDR rule in the 128-bit form. */
static bool rule_net(const sg_egress_rule_t *r, uint8_t net[16], unsigned *bits)
{
    if (!r->has_cidr || !to_v6((const struct sockaddr *)&r->net, net))
        return false;
    *bits = r->prefix_len + (r->net.ss_family == AF_INET ? 96u : 0u);
    return true;
}

#define V4(a, b, c, d)                                                                                                 \
    {                                                                                                                  \
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d                                                           \
    }

typedef struct special_range {
    uint8_t net[16];
    unsigned bits;
    sg_egress_verdict_t verdict;
} special_range_t;

/* RFC 6890 special-purpose registries: what an agent must not reach
 * through the proxy by default. */
static const special_range_t specials[] = {
    {V4(0, 0, 0, 0), 96 + 8, SG_EGRESS_UNSPECIFIED}, /* "this network" */
    {V4(10, 0, 0, 0), 96 + 8, SG_EGRESS_PRIVATE},    /* RFC 1918 */
    {V4(100, 64, 0, 0), 96 + 10, SG_EGRESS_PRIVATE}, /* RFC 6598 shared (CGNAT) */
    {V4(127, 0, 0, 0), 96 + 8, SG_EGRESS_LOOPBACK},
    {V4(169, 254, 0, 0), 96 + 16, SG_EGRESS_LINK_LOCAL}, /* incl. 169.254.169.254 metadata */
    {V4(172, 16, 0, 0), 96 + 12, SG_EGRESS_PRIVATE},
    {V4(192, 0, 0, 0), 96 + 24, SG_EGRESS_RESERVED}, /* IETF protocol assignments */
    {V4(192, 168, 0, 0), 96 + 16, SG_EGRESS_PRIVATE},
    {V4(198, 18, 0, 0), 96 + 15, SG_EGRESS_RESERVED}, /* benchmarking */
    {V4(224, 0, 0, 0), 96 + 4, SG_EGRESS_MULTICAST},
    {V4(240, 0, 0, 0), 96 + 4, SG_EGRESS_RESERVED}, /* incl. 255.255.255.255 */
    {{0}, 128, SG_EGRESS_UNSPECIFIED},              /* :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, SG_EGRESS_LOOPBACK},
    {{0xfe, 0x80}, 10, SG_EGRESS_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, SG_EGRESS_PRIVATE}, /* deprecated site-local */
    {{0xfc}, 7, SG_EGRESS_PRIVATE},        /* unique local */
    {{0xff}, 8, SG_EGRESS_MULTICAST},
};

/* IPv6 forms that carry an IPv4 address a router may translate to it. */
typedef struct embed_form {
    uint8_t net[16];
    unsigned bits;   /* prefix of the form */
    unsigned offset; /* bit position of the IPv4 address */
} embed_form_t;

static const embed_form_t embeds[] = {
    {{0}, 96, 96},                                        /* IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1) */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, 96, 96}, /* IPv4-translated ::ffff:0:a.b.c.d (RFC 2765) */
    {{0, 0x64, 0xff, 0x9b}, 96, 96},                      /* NAT64 well-known prefix (RFC 6052) */
    {{0x20, 0x02}, 16, 16},                               /* 6to4 2002:AABB:CCDD::/48 (RFC 3056) */
};

static sg_egress_verdict_t class_v6(const uint8_t a[16], unsigned *range_bits)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(specials); i++) {
        if (prefix_match(a, specials[i].net, specials[i].bits)) {
            *range_bits = specials[i].bits;
            return specials[i].verdict;
        }
    }
    for (size_t i = 0; i < SG_ARRAY_SIZE(embeds); i++) {
        if (!prefix_match(a, embeds[i].net, embeds[i].bits))
            continue;
        uint8_t m[16] = V4(0, 0, 0, 0);
        unsigned off = embeds[i].offset / 8;
        memcpy(m + 12, a + off, 4);
        unsigned b;
        sg_egress_verdict_t v = class_v6(m, &b);
        if (v != SG_EGRESS_OK) {
            /* A rule must pin the embedded range as precisely, in this form. */
            *range_bits = embeds[i].offset + (b - 96);
            return v;
        }
        break;
    }
    *range_bits = 0;
    return SG_EGRESS_OK;
}

sg_egress_verdict_t sg_egress_addr_class(const struct sockaddr *addr, unsigned *range_bits)
{
    uint8_t a[16];
    unsigned b = 0;
    if (!to_v6(addr, a)) {
        if (range_bits)
            *range_bits = 128;
        return SG_EGRESS_RESERVED;
    }
    sg_egress_verdict_t v = class_v6(a, &b);
    if (range_bits)
        *range_bits = b;
    return v;
}

sg_egress_verdict_t sg_egress_check_addr(const sg_egress_conf_t *eg, const struct sockaddr *addr, uint16_t port,
                                         int32_t name_rule, int32_t *rule_idx)
{
    uint8_t a[16];
    if (!to_v6(addr, a))
        return SG_EGRESS_RESERVED;
    unsigned range_bits = 0;
    sg_egress_verdict_t cls = class_v6(a, &range_bits);
    int32_t cidr = -1;
    bool port_miss = false;
    for (size_t i = 0; i < eg->n_allow; i++) {
        uint8_t net[16];
        unsigned bits;
        if (!rule_net(&eg->allow[i], net, &bits) || !prefix_match(a, net, bits))
            continue;
        if (cls != SG_EGRESS_OK && bits < range_bits)
            continue; /* 0.0.0.0/0 means the public internet, not 127.0.0.1 */
        if (eg->allow[i].port && eg->allow[i].port != port) {
            port_miss = true;
            continue;
        }
        cidr = (int32_t)i;
        break;
    }
    if (cls != SG_EGRESS_OK) {
        if (cidr >= 0) {
            *rule_idx = cidr;
            return SG_EGRESS_OK;
        }
        /* A name that was allowed: the address is the problem. */
        return port_miss && name_rule < 0 ? SG_EGRESS_PORT_NOT_ALLOWED : cls;
    }
    if (name_rule >= 0) {
        *rule_idx = name_rule;
        return SG_EGRESS_OK;
    }
    if (cidr >= 0) {
        *rule_idx = cidr;
        return SG_EGRESS_OK;
    }
    return port_miss ? SG_EGRESS_PORT_NOT_ALLOWED : SG_EGRESS_HOST_NOT_ALLOWED;
}

/* ---- names -------------------------------------------------------------------- */

sg_egress_verdict_t sg_egress_match_host(const sg_egress_conf_t *eg, const char *host, uint16_t port, int32_t *rule_idx)
{
    size_t hl = strlen(host);
    bool port_miss = false;
    for (size_t i = 0; i < eg->n_allow; i++) {
        const char *h = eg->allow[i].host;
        if (!h)
            continue;
        bool is_match;
        if (h[0] == '*' && h[1] == '.') {
            size_t sl = strlen(h + 1); /* ".example.com" */
            is_match = hl > sl && memcmp(host + hl - sl, h + 1, sl) == 0;
        } else {
            is_match = strcmp(h, host) == 0;
        }
        if (!is_match)
            continue;
        if (eg->allow[i].port && eg->allow[i].port != port) {
            port_miss = true;
            continue;
        }
        *rule_idx = (int32_t)i;
        return SG_EGRESS_OK;
    }
    return port_miss ? SG_EGRESS_PORT_NOT_ALLOWED : SG_EGRESS_HOST_NOT_ALLOWED;
}

bool sg_egress_has_cidr_rule(const sg_egress_conf_t *eg, uint16_t port)
{
    for (size_t i = 0; i < eg->n_allow; i++)
        if (eg->allow[i].has_cidr && (!eg->allow[i].port || eg->allow[i].port == port))
            return true;
    return false;
}

/* ---- targets -------------------------------------------------------------------- */

static int parse_port(const char *p, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* DNS name: letters, digits, '-', '_', non-empty labels of at most 63
 * characters; the last label must not be all digits (RFC 1123 2.1 and
 * RFC 3696 2: else inet_aton-style resolvers read it as an address). */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    bool all_digits = true;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            all_digits = true;
            continue;
        }
        bool is_digit = ch >= '0' && ch <= '9';
        bool ok = is_digit || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_';
        if (!ok || ++label > 63)
            return false;
        all_digits &= is_digit;
    }
    return label > 0 && !all_digits;
}

int sg_egress_parse_target(sg_str_t authority, uint16_t default_port, sg_egress_target_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *s = authority.p;
    size_t n = authority.len;
    if (!s || n == 0 || n > 300 || memchr(s, '@', n))
        return -1;
    const char *host, *port_p = NULL;
    size_t hl, pl = 0;
    bool is_bracket = s[0] == '[';
    if (is_bracket) {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return -1;
        host = s + 1;
        hl = (size_t)(rb - host);
        const char *after = rb + 1, *end = s + n;
        if (after < end) {
            if (*after != ':')
                return -1;
            port_p = after + 1;
            pl = (size_t)(end - port_p);
        }
    } else {
        const char *colon = memchr(s, ':', n);
        host = s;
        hl = colon ? (size_t)(colon - s) : n;
        if (colon) {
            port_p = colon + 1;
            pl = n - hl - 1;
            if (memchr(port_p, ':', pl))
                return -1; /* a bare IPv6 address needs brackets */
        }
    }
    if (port_p) {
        if (parse_port(port_p, pl, &out->port) < 0)
            return -1;
    } else if (default_port) {
        out->port = default_port;
    } else {
        return -1;
    }
    if (hl == 0 || hl >= sizeof(out->host))
        return -1;
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    if (is_bracket) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, out->host, &a6->sin6_addr) != 1) /* no zone ids either */
            return -1;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(out->port);
        for (char *p = out->host; *p; p++)
            *p = sg_ascii_lower(*p);
        out->is_ip = true;
        return 0;
    }
    if (hl > 1 && out->host[hl - 1] == '.')
        out->host[--hl] = '\0'; /* absolute name: same host */
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
    if (inet_pton(AF_INET, out->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(out->port);
        out->is_ip = true;
        return 0;
    }
    memset(&out->addr, 0, sizeof(out->addr));
    if (!name_ok(out->host, hl))
        return -1;
    for (char *p = out->host; *p; p++)
        *p = sg_ascii_lower(*p);
    return 0;
}

/* ---- proxy authentication --------------------------------------------------------- */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* RFC 4648 4, padding optional. Returns the decoded length or -1. */
static long b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned nbits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> nbits);
        }
    }
    return (long)o;
}

bool sg_egress_auth_ok(sg_str_t value, const char *user, const char *password)
{
    enum { CAP = 512 };
    if (!user || !password)
        return false;
    const char *p = value.p, *end = value.p + value.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) < 6 || !sg_str_ieq(sg_str_make(p, 5), SG_STR("basic")) || (p[5] != ' ' && p[5] != '\t'))
        return false;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    uint8_t dec[CAP];
    long dl = b64_decode(p, (size_t)(end - p), dec, sizeof(dec));
    if (dl < 0)
        return false;
    size_t ul = strlen(user), pl = strlen(password), el = ul + 1 + pl;
    /* Constant time in the credentials offered: always CAP rounds. */
    unsigned diff = (size_t)dl != el || el > CAP;
    for (size_t i = 0; i < CAP; i++) {
        uint8_t e = i < ul ? (uint8_t)user[i] : i == ul ? (uint8_t)':' : i < el ? (uint8_t)password[i - ul - 1] : 0;
        uint8_t d = i < (size_t)dl ? dec[i] : 0;
        diff |= (unsigned)(e ^ d);
    }
    return diff == 0;
}

int sg_egress_auth_user(sg_str_t value, const sg_egress_user_t *users, size_t n_users)
{
    enum { CAP = 512 };
    const char *p = value.p, *end = value.p + value.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) < 6 || !sg_str_ieq(sg_str_make(p, 5), SG_STR("basic")) || (p[5] != ' ' && p[5] != '\t'))
        return -1;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    uint8_t dec[CAP];
    long dl = b64_decode(p, (size_t)(end - p), dec, sizeof(dec));
    if (dl < 0)
        return -1;
    const uint8_t *colon = memchr(dec, ':', (size_t)dl);
    if (!colon)
        return -1;
    size_t ul = (size_t)(colon - dec), pl = (size_t)dl - ul - 1;
    /* The user name picks the entry (names are label values, not secrets);
     * the password is compared in constant time in what was offered. */
    for (size_t i = 0; i < n_users; i++) {
        const char *name = users[i].name, *pw = users[i].password;
        if (strlen(name) != ul || memcmp(name, dec, ul) != 0)
            continue;
        size_t el = strlen(pw);
        unsigned diff = pl != el || el > CAP;
        for (size_t k = 0; k < CAP; k++) {
            uint8_t e = k < el ? (uint8_t)pw[k] : 0;
            uint8_t d = k < pl ? colon[1 + k] : 0;
            diff |= (unsigned)(e ^ d);
        }
        return diff == 0 ? (int)i : -1;
    }
    return -1;
}
