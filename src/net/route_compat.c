/* Route matching used by the proxy until src/net/router.c (another
 * helper's module) lands; then these two functions call sg_router_*.
 * First match wins: host (NULL any, exact, "*.suffix"), then path prefix. */
#include "net/net_int.h"

static bool host_matches(const char *pattern, sg_str_t host)
{
    if (!pattern || !pattern[0])
        return true;
    sg_str_t p = sg_str_cstr(pattern);
    if (p.len > 2 && p.p[0] == '*' && p.p[1] == '.') {
        sg_str_t suffix = sg_str_make(p.p + 1, p.len - 1); /* ".example.com" */
        return host.len > suffix.len && sg_str_ieq(sg_str_make(host.p + host.len - suffix.len, suffix.len), suffix);
    }
    return sg_str_ieq(p, host);
}

int32_t sg__route_match(const sg_config_t *cfg, sg_str_t host, sg_str_t path)
{
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const sg_route_conf_t *r = &cfg->routes[i];
        if (!host_matches(r->host, host))
            continue;
        const char *prefix = r->prefix ? r->prefix : "/";
        if (sg_str_has_prefix(path, sg_str_cstr(prefix)))
            return (int32_t)i;
    }
    return -1;
}

int sg__route_rewrite(const sg_route_conf_t *r, sg_str_t path, char *out, size_t cap)
{
    sg_str_t rest = path;
    const char *lead = "";
    if (r->rewrite) {
        sg_str_t prefix = sg_str_cstr(r->prefix ? r->prefix : "/");
        if (sg_str_has_prefix(path, prefix)) {
            rest = sg_str_make(path.p + prefix.len, path.len - prefix.len);
            lead = r->rewrite;
        }
    } else if (r->strip_prefix) {
        sg_str_t sp = sg_str_cstr(r->strip_prefix);
        if (sg_str_has_prefix(path, sp))
            rest = sg_str_make(path.p + sp.len, path.len - sp.len);
    }
    size_t ll = strlen(lead);
    bool need_slash = (ll == 0 || lead[ll - 1] != '/') && (rest.len == 0 || rest.p[0] != '/');
    if (ll == 0 && rest.len && rest.p[0] == '/')
        need_slash = false;
    if (ll && lead[ll - 1] == '/' && rest.len && rest.p[0] == '/') {
        rest.p++;
        rest.len--;
    }
    if (ll > 0 && rest.len == 0)
        need_slash = false;
    size_t n = ll + (need_slash ? 1 : 0) + rest.len;
    if (n + 1 > cap)
        return -1;
    memcpy(out, lead, ll);
    size_t o = ll;
    if (need_slash)
        out[o++] = '/';
    memcpy(out + o, rest.p, rest.len);
    o += rest.len;
    out[o] = '\0';
    return (int)o;
}
