/* Router: host and path-prefix match of a request to a configured route,
 * and the path rewrite a route asks for. Pure functions, no allocation on
 * the match path; safe to share one router between threads (read-only).
 *
 * Matching rules (docs/configuration.md, "Routes"):
 * - Routes are tried in config order and the FIRST match wins; put specific
 *   routes before general ones (a prefix "/" route last).
 * - Host: a route without `host` matches any Host. "api.example.com" matches
 *   that name exactly; "*.example.com" matches any name ending in
 *   ".example.com" (a.example.com, a.b.example.com) but not "example.com"
 *   itself. The comparison ignores ASCII case, a ":port" in the Host value
 *   and one trailing dot. IPv6 hosts are written "[::1]".
 * - Path: byte-wise and case-sensitive on the raw request-target. A prefix
 *   ending in "/" matches any path starting with it; a prefix without a
 *   trailing "/" matches only at a segment boundary: "/api" matches "/api",
 *   "/api/x" and "/api?q" but not "/apix". */
#ifndef SG_ROUTER_H
#define SG_ROUTER_H

#include "sg/common.h"
#include "sg/config.h"

typedef struct sg_router sg_router_t;

/* Builds a router over cfg's routes. The router borrows route strings from
 * cfg: free the router before the config. Returns NULL on out-of-memory.
 * Owner: the caller; freed by sg_router_free(). Any thread. */
sg_router_t *sg_router_new(const sg_config_t *cfg) SG_MUST_CHECK;
/* Same, from a bare route array (tests, reloads); the array is borrowed. */
sg_router_t *sg_router_new_routes(const sg_route_conf_t *routes, size_t n_routes) SG_MUST_CHECK;
void sg_router_free(sg_router_t *r);

/* Index of the first route matching host (the Host header value, may carry
 * ":port"; empty when absent) and path (the origin-form request-target, may
 * carry "?query"), or -1 when none matches (404). */
int sg_router_match(const sg_router_t *r, sg_str_t host, sg_str_t path);

/* The host part of a Host header value: ":port" and one trailing dot
 * removed; "[v6]:port" gives "[v6]". Borrows from host. */
sg_str_t sg_router_host_only(sg_str_t host);

/* The path to send upstream for a request that matched `route`:
 * - strip_prefix: removes it from the start of the path ("/api/users" with
 *   strip_prefix "/api" gives "/users"); the result always starts with "/";
 * - rewrite: replaces the matched match.prefix with the rewrite text
 *   ("/v1/x" with prefix "/v1/" and rewrite "/api/v1/" gives "/api/v1/x");
 *   a "//" that would appear at the join is collapsed;
 * - neither: the path unchanged.
 * The query string ("?..." and what follows) is kept as it is.
 * snprintf semantics: writes at most cap-1 bytes plus a NUL (when cap > 0)
 * and returns the full length of the result; the result is complete iff the
 * return value is < cap. */
size_t sg_router_rewrite_path(const sg_route_conf_t *route, sg_str_t path, char *out, size_t cap);

#endif /* SG_ROUTER_H */
