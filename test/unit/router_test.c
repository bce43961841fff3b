/* Router: host and prefix matching, first match wins, path rewrites. */
#include "sg/router.h"

#include <criterion/criterion.h>

static sg_route_conf_t route(const char *host, const char *prefix)
{
    sg_route_conf_t r = {0};
    r.host = host;
    r.prefix = prefix;
    r.upstream = "u";
    return r;
}

static int match(const sg_router_t *r, const char *host, const char *path)
{
    return sg_router_match(r, sg_str_cstr(host), sg_str_cstr(path));
}

Test(router, exact_host, .timeout = 5)
{
    sg_route_conf_t routes[] = {route("api.example.com", "/"), route(NULL, "/")};
    sg_router_t *r = sg_router_new_routes(routes, 2);
    cr_assert_not_null(r);
    cr_assert_eq(match(r, "api.example.com", "/x"), 0);
    cr_assert_eq(match(r, "www.example.com", "/x"), 1);
    cr_assert_eq(match(r, "example.com", "/x"), 1);
    cr_assert_eq(match(r, "xapi.example.com", "/x"), 1);
    cr_assert_eq(match(r, "api.example.com.evil", "/x"), 1);
    cr_assert_eq(match(r, "", "/x"), 1, "no Host: only host-less routes");
    sg_router_free(r);
}

Test(router, suffix_host_matches_subdomains_not_bare_suffix, .timeout = 5)
{
    sg_route_conf_t routes[] = {route("*.example.com", "/")};
    sg_router_t *r = sg_router_new_routes(routes, 1);
    cr_assert_eq(match(r, "a.example.com", "/"), 0);
    cr_assert_eq(match(r, "a.b.example.com", "/"), 0);
    cr_assert_eq(match(r, "example.com", "/"), -1);
    cr_assert_eq(match(r, ".example.com", "/"), -1, "an empty label is not a subdomain");
    cr_assert_eq(match(r, "badexample.com", "/"), -1);
    cr_assert_eq(match(r, "example.com.org", "/"), -1);
    cr_assert_eq(match(r, "", "/"), -1);
    sg_router_free(r);
}

Test(router, host_port_and_trailing_dot_ignored, .timeout = 5)
{
    sg_route_conf_t routes[] = {route("api.example.com", "/"), route("*.svc.local", "/"), route("[::1]", "/"),
                                route("127.0.0.1", "/")};
    sg_router_t *r = sg_router_new_routes(routes, 4);
    cr_assert_eq(match(r, "api.example.com:8080", "/"), 0);
    cr_assert_eq(match(r, "api.example.com.", "/"), 0);
    cr_assert_eq(match(r, "api.example.com.:443", "/"), 0);
    cr_assert_eq(match(r, "x.svc.local:80", "/"), 1);
    cr_assert_eq(match(r, "[::1]:8080", "/"), 2);
    cr_assert_eq(match(r, "[::1]", "/"), 2);
    cr_assert_eq(match(r, "127.0.0.1:9", "/"), 3);
    cr_assert_eq(match(r, "api.example.com:", "/"), 0);
    sg_router_free(r);
}

Test(router, host_case_insensitive, .timeout = 5)
{
    sg_route_conf_t routes[] = {route("api.example.com", "/"), route("*.example.org", "/")};
    sg_router_t *r = sg_router_new_routes(routes, 2);
    cr_assert_eq(match(r, "API.Example.COM", "/"), 0);
    cr_assert_eq(match(r, "Www.EXAMPLE.org:80", "/"), 1);
    sg_router_free(r);
}

Test(router, path_is_case_sensitive, .timeout = 5)
{
    sg_route_conf_t routes[] = {route(NULL, "/api/")};
    sg_router_t *r = sg_router_new_routes(routes, 1);
    cr_assert_eq(match(r, "h", "/api/x"), 0);
    cr_assert_eq(match(r, "h", "/API/x"), -1);
    sg_router_free(r);
}

Test(router, first_match_wins, .timeout = 5)
{
    /* The general route first shadows the specific one: config order rules,
     * not prefix length. */
    sg_route_conf_t routes[] = {route(NULL, "/api/"), route(NULL, "/api/v2/"), route(NULL, "/")};
    sg_router_t *r = sg_router_new_routes(routes, 3);
    cr_assert_eq(match(r, "h", "/api/v2/x"), 0);
    cr_assert_eq(match(r, "h", "/other"), 2);
    sg_router_free(r);

    sg_route_conf_t ordered[] = {route(NULL, "/api/v2/"), route(NULL, "/api/"), route(NULL, "/")};
    r = sg_router_new_routes(ordered, 3);
    cr_assert_eq(match(r, "h", "/api/v2/x"), 0);
    cr_assert_eq(match(r, "h", "/api/v1/x"), 1);
    cr_assert_eq(match(r, "h", "/"), 2);
    sg_router_free(r);

    sg_route_conf_t hosts[] = {route("*.example.com", "/"), route("api.example.com", "/")};
    r = sg_router_new_routes(hosts, 2);
    cr_assert_eq(match(r, "api.example.com", "/"), 0);
    sg_router_free(r);
}

Test(router, prefix_boundaries, .timeout = 5)
{
    sg_route_conf_t routes[] = {route(NULL, "/api"), route(NULL, "/docs/")};
    sg_router_t *r = sg_router_new_routes(routes, 2);
    cr_assert_eq(match(r, "h", "/api"), 0);
    cr_assert_eq(match(r, "h", "/api/"), 0);
    cr_assert_eq(match(r, "h", "/api/x"), 0);
    cr_assert_eq(match(r, "h", "/api?x=1"), 0);
    cr_assert_eq(match(r, "h", "/apix"), -1, "no match inside a segment");
    cr_assert_eq(match(r, "h", "/ap"), -1);
    cr_assert_eq(match(r, "h", "/docs/"), 1);
    cr_assert_eq(match(r, "h", "/docs/a"), 1);
    cr_assert_eq(match(r, "h", "/docs"), -1, "a trailing / in the prefix is required in the path");
    cr_assert_eq(match(r, "h", "/docsx"), -1);
    cr_assert_eq(match(r, "h", ""), -1);
    sg_router_free(r);

    sg_route_conf_t all[] = {route(NULL, "/")};
    r = sg_router_new_routes(all, 1);
    cr_assert_eq(match(r, "h", "/"), 0);
    cr_assert_eq(match(r, "h", "/anything?q"), 0);
    cr_assert_eq(match(r, "h", "*"), -1, "asterisk-form is not a path");
    sg_router_free(r);
}

Test(router, no_routes, .timeout = 5)
{
    sg_router_t *r = sg_router_new_routes(NULL, 0);
    cr_assert_not_null(r);
    cr_assert_eq(match(r, "h", "/"), -1);
    sg_router_free(r);
}

Test(router, host_only, .timeout = 5)
{
    sg_str_t h = sg_router_host_only(SG_STR("Example.com:8080"));
    cr_assert(sg_str_eq(h, SG_STR("Example.com")));
    h = sg_router_host_only(SG_STR("[2001:db8::1]:443"));
    cr_assert(sg_str_eq(h, SG_STR("[2001:db8::1]")));
    h = sg_router_host_only(SG_STR("a.b."));
    cr_assert(sg_str_eq(h, SG_STR("a.b")));
    h = sg_router_host_only(SG_STR_NULL);
    cr_assert_eq(h.len, 0);
}

static const char *rw(const sg_route_conf_t *r, const char *path, char *buf, size_t cap)
{
    size_t n = sg_router_rewrite_path(r, sg_str_cstr(path), buf, cap);
    cr_assert_lt(n, cap, "\"%s\" needs %zu bytes", path, n);
    cr_assert_eq(strlen(buf), n);
    return buf;
}

Test(router, strip_prefix_keeps_query, .timeout = 5)
{
    char b[128];
    sg_route_conf_t r = route(NULL, "/api/");
    r.strip_prefix = "/api";
    cr_assert_str_eq(rw(&r, "/api/users?id=1&x=/api", b, sizeof(b)), "/users?id=1&x=/api");
    cr_assert_str_eq(rw(&r, "/api/", b, sizeof(b)), "/");
    cr_assert_str_eq(rw(&r, "/api?q", b, sizeof(b)), "/?q");
    cr_assert_str_eq(rw(&r, "/api", b, sizeof(b)), "/");
    cr_assert_str_eq(rw(&r, "/apix/y", b, sizeof(b)), "/apix/y", "no strip inside a segment");
    r.strip_prefix = "/api/";
    cr_assert_str_eq(rw(&r, "/api/users", b, sizeof(b)), "/users");
    cr_assert_str_eq(rw(&r, "/api/?a=b", b, sizeof(b)), "/?a=b");
}

Test(router, rewrite_replaces_prefix, .timeout = 5)
{
    char b[128];
    sg_route_conf_t r = route(NULL, "/v1/");
    r.rewrite = "/api/v1/";
    cr_assert_str_eq(rw(&r, "/v1/tickets?state=open", b, sizeof(b)), "/api/v1/tickets?state=open");
    cr_assert_str_eq(rw(&r, "/v1/", b, sizeof(b)), "/api/v1/");
    cr_assert_str_eq(rw(&r, "/v1//x", b, sizeof(b)), "/api/v1/x", "no // at the join");
    r.rewrite = "/v2";
    cr_assert_str_eq(rw(&r, "/v1/x", b, sizeof(b)), "/v2/x");
    cr_assert_str_eq(rw(&r, "/v1/?q=1", b, sizeof(b)), "/v2?q=1");
    r.rewrite = "/";
    cr_assert_str_eq(rw(&r, "/v1/x?y", b, sizeof(b)), "/x?y");

    sg_route_conf_t r2 = route(NULL, "/old");
    r2.rewrite = "/new";
    cr_assert_str_eq(rw(&r2, "/old", b, sizeof(b)), "/new");
    cr_assert_str_eq(rw(&r2, "/old/a", b, sizeof(b)), "/new/a");
    cr_assert_str_eq(rw(&r2, "/old?a", b, sizeof(b)), "/new?a");
}

Test(router, no_rewrite_copies_path, .timeout = 5)
{
    char b[64];
    sg_route_conf_t r = route(NULL, "/");
    cr_assert_str_eq(rw(&r, "/a/b?c=d", b, sizeof(b)), "/a/b?c=d");
    cr_assert_str_eq(rw(&r, "/", b, sizeof(b)), "/");
}

Test(router, rewrite_reports_needed_length, .timeout = 5)
{
    sg_route_conf_t r = route(NULL, "/v1/");
    r.rewrite = "/a-much-longer-prefix/";
    char small[8];
    memset(small, 'Z', sizeof(small));
    size_t need = sg_router_rewrite_path(&r, SG_STR("/v1/x?q=1"), small, sizeof(small));
    cr_assert_eq(need, strlen("/a-much-longer-prefix/x?q=1"));
    cr_assert_eq(small[7], '\0', "truncated output is still terminated");
    cr_assert_eq(memcmp(small, "/a-much", 7), 0);
    cr_assert_eq(sg_router_rewrite_path(&r, SG_STR("/v1/x?q=1"), NULL, 0), need);
    char big[64];
    cr_assert_eq(sg_router_rewrite_path(&r, SG_STR("/v1/x?q=1"), big, need + 1), need);
    cr_assert_str_eq(big, "/a-much-longer-prefix/x?q=1");
}

Test(router, built_from_config, .timeout = 5)
{
    static const char yaml[] = "listeners: [{address: 127.0.0.1:0}]\n"
                               "upstreams: {a: {servers: [127.0.0.1:1]}, b: {servers: [127.0.0.1:2]}}\n"
                               "routes:\n"
                               "  - {match: {host: '*.Example.COM', prefix: /api}, upstream: a, strip_prefix: true}\n"
                               "  - {upstream: b}\n";
    sg_config_t *cfg;
    char err[256];
    cr_assert_eq(sg_config_load_string("r.yaml", yaml, sizeof(yaml) - 1, &cfg, err, sizeof(err)), 0, "%s", err);
    sg_router_t *r = sg_router_new(cfg);
    cr_assert_eq(match(r, "x.example.com:8443", "/api/t"), 0);
    cr_assert_eq(match(r, "example.com", "/api/t"), 1);
    cr_assert_eq(match(r, "x.example.com", "/apis"), 1);
    char b[64];
    cr_assert_str_eq(rw(&cfg->routes[0], "/api/t?x", b, sizeof(b)), "/t?x");
    cr_assert_eq(cfg->routes[1].upstream_idx, 1);
    sg_router_free(r);
    sg_config_free(cfg);
}
