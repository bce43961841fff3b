/* Egress (forward proxy) decisions: request-target parsing, the allow-list
 * and proxy authentication. Pure functions: no I/O, no allocation, any
 * thread. The run-time side (resolution, pools, CONNECT tunnels) is in
 * src/net/egress_proxy.c; docs/egress.md describes the behaviour.
 *
 * Allow-list semantics (deny by default):
 *  - a host rule ("api.example.com", "*.example.com", optional port) matches
 *    the requested name (ASCII case ignored, one trailing dot ignored);
 *    "*.example.com" matches names below example.com, not example.com;
 *  - a CIDR rule (an IP literal is a /32 or /128) matches the resolved
 *    address (or the IP literal that was requested);
 *  - whatever matched, the address the connection goes to is checked:
 *    loopback, link-local (cloud metadata 169.254.169.254), private and
 *    shared (CGNAT) ranges, unspecified, multicast and reserved addresses,
 *    also in IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4
 *    (2002::/16) IPv6 forms, are refused unless a CIDR rule contains the
 *    address AND lies within that special range (127.0.0.1, 10.0.0.0/8 or
 *    169.254.169.254/32 do; 0.0.0.0/0 or ::/0 do not: they mean the public
 *    internet). A host-name rule never allows such an address. */
#ifndef SG_EGRESS_H
#define SG_EGRESS_H

#include "sg/common.h"
#include "sg/config.h"

#include "sg/egress_verdict.h"

#include <sys/socket.h>

/* sg_egress_verdict_t and its label names: sg/egress_verdict.h (the
 * vocabulary of a metric label belongs to obs). */

/* A parsed request target authority. */
typedef struct sg_egress_target {
    char host[256]; /* lower case, no brackets, no trailing dot */
    uint16_t port;
    bool is_ip; /* host is an IP literal; addr holds it (port set) */
    struct sockaddr_storage addr;
} sg_egress_target_t;

/* Parses "host[:port]" or "[v6][:port]" (RFC 9112 3.2.3 authority-form for
 * CONNECT, the authority of an absolute-form target otherwise). A missing
 * port gives default_port; default_port 0 makes the port required. Refuses
 * user info, empty labels, bad characters, port 0, and names whose last
 * label is numeric without being a dotted-quad IPv4 address ("127.1",
 * "0x7f.1": resolvers read those as addresses). Returns 0 or -1. */
int sg_egress_parse_target(sg_str_t authority, uint16_t default_port, sg_egress_target_t *out) SG_MUST_CHECK;

/* First host rule naming `host` (lower case) with a matching port.
 * Returns SG_EGRESS_OK (*rule_idx set), SG_EGRESS_PORT_NOT_ALLOWED (a host
 * rule names it with another port) or SG_EGRESS_HOST_NOT_ALLOWED. */
sg_egress_verdict_t sg_egress_match_host(const sg_egress_conf_t *eg, const char *host, uint16_t port,
                                         int32_t *rule_idx);

/* True when some CIDR rule allows `port`: only then is a name that no host
 * rule names worth resolving. */
bool sg_egress_has_cidr_rule(const sg_egress_conf_t *eg, uint16_t port);

/* The special range `addr` falls in: SG_EGRESS_OK for an ordinary public
 * address, else the range's verdict; *range_bits (may be NULL) receives the
 * prefix length, in bits of the 128-bit IPv6 form (IPv4 a.b.c.d is
 * ::ffff:a.b.c.d), that a CIDR rule needs at least to lie within it. */
sg_egress_verdict_t sg_egress_addr_class(const struct sockaddr *addr, unsigned *range_bits);

/* Decision for connecting to `addr` (port `port`) when the name matched
 * host rule `name_rule` (-1 for none, or an IP-literal target). On
 * SG_EGRESS_OK *rule_idx is the rule that allowed it: a CIDR rule for a
 * special address, otherwise name_rule when >= 0, else the first CIDR rule
 * containing the address. */
sg_egress_verdict_t sg_egress_check_addr(const sg_egress_conf_t *eg, const struct sockaddr *addr, uint16_t port,
                                         int32_t name_rule, int32_t *rule_idx);

/* Checks a Proxy-Authorization value: "Basic <base64(user:password)>"
 * (scheme case-insensitive, RFC 7617). The comparison takes the same time
 * whatever the credentials are (up to a 512-byte decoded limit). */
bool sg_egress_auth_ok(sg_str_t value, const char *user, const char *password);

/* The per-agent credentials (egress.users) a Proxy-Authorization value
 * names: "Basic <base64(name:password)>". Returns the index of the user
 * whose name and password match, else -1. The password comparison takes
 * the same time whatever was offered (up to 512 decoded bytes). */
int sg_egress_auth_user(sg_str_t value, const sg_egress_user_t *users, size_t n_users);

#endif /* SG_EGRESS_H */
