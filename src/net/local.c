/* Local answers: what a listener answers itself instead of proxying (the
 * health paths, /metrics where configured, OPTIONS *, Max-Forwards: 0). The
 * paths are part of the data path's contract (sg/listener.h); the answers'
 * bodies come from the responder the process gave the listener. */
#include "sg/listener.h"

int sg_health_kind_for_path(sg_str_t path)
{
    /* The query string does not take part in the match. */
    for (size_t i = 0; i < path.len; i++)
        if (path.p[i] == '?') {
            path.len = i;
            break;
        }
    if (sg_str_eq(path, SG_STR("/health")) || sg_str_eq(path, SG_STR("/health/")))
        return SG_HEALTH_ALL;
    if (sg_str_eq(path, SG_STR("/health/live")) || sg_str_eq(path, SG_STR("/livez")))
        return SG_HEALTH_LIVE;
    if (sg_str_eq(path, SG_STR("/health/ready")) || sg_str_eq(path, SG_STR("/readyz")))
        return SG_HEALTH_READY;
    return -1;
}
