#include "sg/egress_verdict.h"

const char *sg_egress_verdict_name(sg_egress_verdict_t v)
{
    static const char *const names[SG_EGRESS__COUNT] = {
        [SG_EGRESS_OK] = "ok",
        [SG_EGRESS_HOST_NOT_ALLOWED] = "host_not_allowed",
        [SG_EGRESS_PORT_NOT_ALLOWED] = "port_not_allowed",
        [SG_EGRESS_LOOPBACK] = "loopback",
        [SG_EGRESS_LINK_LOCAL] = "link_local",
        [SG_EGRESS_PRIVATE] = "private",
        [SG_EGRESS_UNSPECIFIED] = "unspecified",
        [SG_EGRESS_MULTICAST] = "multicast",
        [SG_EGRESS_RESERVED] = "reserved",
        [SG_EGRESS_AUTH] = "auth",
    };
    return (unsigned)v < SG_EGRESS__COUNT ? names[v] : "other";
}
