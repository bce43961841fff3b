/* Route matching: a linear scan over routes compiled once (lower-cased
 * hosts, precomputed lengths). Configs have tens of routes, so a scan with
 * cheap comparisons beats a trie and keeps "first match wins" obvious. */
#include "sg/router.h"

#include <stdlib.h>

typedef enum host_kind {
    HOST_ANY = 0,
    HOST_EXACT,
    HOST_SUFFIX, /* "*.example.com": stored as ".example.com" */
    HOST__COUNT
} host_kind_t;

typedef struct compiled_route {
    host_kind_t host_kind;
    sg_str_t host;   /* lower-case, borrowed from the config */
    sg_str_t prefix; /* borrowed from the config */
    bool is_dir;     /* prefix ends in '/': no boundary check needed */
} compiled_route_t;

struct sg_router {
    size_t n;
    compiled_route_t routes[];
};

sg_router_t *sg_router_new_routes(const sg_route_conf_t *routes, size_t n_routes)
{
    sg_router_t *r = calloc(1, sizeof(*r) + n_routes * sizeof(r->routes[0]));
    if (!r)
        return NULL;
    r->n = n_routes;
    for (size_t i = 0; i < n_routes; i++) {
        compiled_route_t *cr = &r->routes[i];
        const char *h = routes[i].host;
        if (!h || !*h) {
            cr->host_kind = HOST_ANY;
        } else if (h[0] == '*' && h[1] == '.') {
            cr->host_kind = HOST_SUFFIX;
            cr->host = sg_str_cstr(h + 1);
        } else {
            cr->host_kind = HOST_EXACT;
            cr->host = sg_str_cstr(h);
        }
        const char *p = routes[i].prefix ? routes[i].prefix : "/";
        cr->prefix = sg_str_cstr(p);
        cr->is_dir = cr->prefix.len > 0 && p[cr->prefix.len - 1] == '/';
    }
    return r;
}

sg_router_t *sg_router_new(const sg_config_t *cfg)
{
    return sg_router_new_routes(cfg->routes, cfg->n_routes);
}

void sg_router_free(sg_router_t *r)
{
    free(r);
}

sg_str_t sg_router_host_only(sg_str_t host)
{
    size_t n = host.len;
    if (n && host.p[0] == '[') {
        const char *rb = memchr(host.p, ']', n);
        return rb ? sg_str_make(host.p, (size_t)(rb - host.p) + 1) : host;
    }
    const char *colon = memchr(host.p ? host.p : "", ':', n);
    if (colon)
        n = (size_t)(colon - host.p);
    if (n && host.p[n - 1] == '.') /* "example.com." is the same name (RFC 1034 3.1) */
        n--;
    return sg_str_make(host.p, n);
}

static bool host_matches(const compiled_route_t *cr, sg_str_t h)
{
    switch (cr->host_kind) {
    case HOST_ANY:
        return true;
    case HOST_EXACT:
        return sg_str_ieq(h, cr->host);
    case HOST_SUFFIX:
        /* The suffix includes its leading dot, so "example.com" itself (and
         * "badexample.com") do not match "*.example.com". */
        return h.len > cr->host.len && sg_str_ieq(sg_str_make(h.p + h.len - cr->host.len, cr->host.len), cr->host);
    default:
        return false;
    }
}

/* A prefix without a trailing '/' must end at a segment boundary. */
static bool prefix_matches(sg_str_t prefix, bool is_dir, sg_str_t path)
{
    if (!sg_str_has_prefix(path, prefix))
        return false;
    if (is_dir || path.len == prefix.len)
        return true;
    char next = path.p[prefix.len];
    return next == '/' || next == '?';
}

int sg_router_match(const sg_router_t *r, sg_str_t host, sg_str_t path)
{
    sg_str_t h = sg_router_host_only(host);
    for (size_t i = 0; i < r->n; i++) {
        const compiled_route_t *cr = &r->routes[i];
        if (host_matches(cr, h) && prefix_matches(cr->prefix, cr->is_dir, path))
            return (int)i;
    }
    return -1;
}

/* Copies into out as far as it fits; returns the new offset either way. */
static size_t put(char *out, size_t cap, size_t off, const char *s, size_t n)
{
    if (n && off < cap) {
        size_t room = cap - off;
        memcpy(out + off, s, SG_MIN(room, n));
    }
    return off + n;
}

size_t sg_router_rewrite_path(const sg_route_conf_t *route, sg_str_t path, char *out, size_t cap)
{
    const char *q = memchr(path.p ? path.p : "", '?', path.len);
    size_t plen = q ? (size_t)(q - path.p) : path.len; /* path part, before the query */
    sg_str_t rest = sg_str_make(path.p, plen);
    sg_str_t head = SG_STR_NULL;
    bool need_slash = false;
    size_t len = 0;

    if (route->strip_prefix) {
        sg_str_t sp = sg_str_cstr(route->strip_prefix);
        bool is_dir = sp.len && sp.p[sp.len - 1] == '/';
        if (prefix_matches(sp, is_dir, rest)) {
            rest = sg_str_make(rest.p + sp.len, rest.len - sp.len);
            need_slash = !rest.len || rest.p[0] != '/';
        }
    } else if (route->rewrite) {
        sg_str_t pre = sg_str_cstr(route->prefix ? route->prefix : "/");
        if (sg_str_has_prefix(rest, pre)) {
            rest = sg_str_make(rest.p + pre.len, rest.len - pre.len);
            head = sg_str_cstr(route->rewrite);
            bool head_dir = head.len && head.p[head.len - 1] == '/';
            if (head_dir && rest.len && rest.p[0] == '/')
                rest = sg_str_make(rest.p + 1, rest.len - 1); /* "/v2/" + "/x": no "//" */
            /* prefix "/v1/" with rewrite "/v2": "/v1/x" gives "/v2/x" */
            need_slash = !head_dir && rest.len && rest.p[0] != '/';
        }
    }
    len = put(out, cap, len, head.p, head.len);
    if (need_slash)
        len = put(out, cap, len, "/", 1);
    len = put(out, cap, len, rest.p, rest.len);
    if (len == 0)
        len = put(out, cap, len, "/", 1);
    if (q)
        len = put(out, cap, len, q, path.len - plen);
    if (cap)
        out[SG_MIN(len, cap - 1)] = '\0';
    return len;
}
