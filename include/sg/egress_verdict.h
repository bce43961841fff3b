/* Why the egress proxy refused a destination: the values of the label
 * `reason` of swarm_egress_refused_total (DESIGN.md), so they live with the
 * metrics (obs); src/net/egress.c decides them. */
#ifndef SG_EGRESS_VERDICT_H
#define SG_EGRESS_VERDICT_H

/* Why a destination was refused (label `reason` of
 * swarm_egress_refused_total). SG_EGRESS_OK is not a refusal. */
typedef enum sg_egress_verdict {
    SG_EGRESS_OK = 0,
    SG_EGRESS_HOST_NOT_ALLOWED, /* no rule names the host (or contains the address) */
    SG_EGRESS_PORT_NOT_ALLOWED, /* a rule names the host or address, none with this port */
    SG_EGRESS_LOOPBACK,         /* 127.0.0.0/8, ::1 */
    SG_EGRESS_LINK_LOCAL,       /* 169.254.0.0/16, fe80::/10 */
    SG_EGRESS_PRIVATE,          /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10 */
    SG_EGRESS_UNSPECIFIED,      /* 0.0.0.0/8, :: */
    SG_EGRESS_MULTICAST,        /* 224.0.0.0/4, ff00::/8 */
    SG_EGRESS_RESERVED,         /* 240.0.0.0/4 (and broadcast), 192.0.0.0/24, 198.18.0.0/15 */
    SG_EGRESS_AUTH,             /* proxy authentication missing or wrong (407) */
    SG_EGRESS__COUNT
} sg_egress_verdict_t;

/* Label value: "ok", "host_not_allowed", "port_not_allowed", "loopback",
 * "link_local", "private", "unspecified", "multicast", "reserved", "auth". */
const char *sg_egress_verdict_name(sg_egress_verdict_t v);

#endif /* SG_EGRESS_VERDICT_H */
