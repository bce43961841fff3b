/* Metric labels of routes, upstreams and listeners a reload adds, through
 * the real binary: a reload that adds a route, an upstream (a real
 * upstream socket) and a listener gives them their own label values
 * (route="added", upstream="fresh", listener="side"), nothing lands under
 * "other", the exposition still passes promtool; a reload that removes
 * them keeps their counters, unchanged; an egress.allow entry a reload
 * adds gets its own destination series; a reload past the registry's
 * spare room counts the extra name as "other" and says so in the log. */
#include "support/clock.h"
#include "support/gw_fixture.h"

#include "sg/metrics.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The start-up config: one route (rest -> A), one listener. */
static char *config_boot(unsigned port_a)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "workers: 2\n"
                     "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
                     "admin: {address: \"127.0.0.1:0\"}\n"
                     "log: {access: \"off\"}\n"
                     "upstreams:\n"
                     "  A: {servers: [\"127.0.0.1:%u\"]}\n"
                     "routes:\n"
                     "  - {name: rest, upstream: A}\n",
                     port_a);
    cr_assert(n > 0);
    return s;
}

/* The same plus route "added" (/new/ -> upstream "fresh" on port_b) and
 * listener "side". */
static char *config_added(unsigned port_a, unsigned port_b)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "workers: 2\n"
                     "listeners:\n"
                     "  - {name: api, address: \"127.0.0.1:0\"}\n"
                     "  - {name: side, address: \"127.0.0.1:0\"}\n"
                     "admin: {address: \"127.0.0.1:0\"}\n"
                     "log: {access: \"off\"}\n"
                     "upstreams:\n"
                     "  A: {servers: [\"127.0.0.1:%u\"]}\n"
                     "  fresh: {servers: [\"127.0.0.1:%u\"]}\n"
                     "routes:\n"
                     "  - {name: added, match: {prefix: /new/}, upstream: fresh}\n"
                     "  - {name: rest, upstream: A}\n",
                     port_a, port_b);
    cr_assert(n > 0);
    return s;
}

/* Replaces the config file and reloads (POST /-/reload); asserts success. */
static void reload_with(sg_proc_t *gw, const char *text)
{
    char tmp[256];
    cr_assert_eq(sg_proc_write_file(gw, "next.yaml", text, tmp, sizeof(tmp)), 0);
    cr_assert_eq(rename(tmp, gw->cfg_path), 0);
    hc_response_t r;
    cr_assert_eq(hc_request(sg_proc_addr(gw, "admin"),
                            "POST /-/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n", &r, 10000),
                 HC_OK);
    cr_assert_eq(r.status, 200, "reload: %s", r.body);
    hc_response_free(&r);
}

/* GET path on a fresh connection to listener `lst`; returns the status and
 * the answering upstream's name in who. */
static int get(sg_proc_t *gw, const char *lst, const char *path, char *who, size_t cap)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    hc_response_t r;
    who[0] = '\0';
    if (hc_request(sg_proc_addr(gw, lst), raw, &r, 5000) != HC_OK)
        return -1;
    int st = r.status;
    hc_header(&r, "X-Upstream", who, cap);
    hc_response_free(&r);
    return st;
}

/* The /metrics text (malloc'ed), or NULL. */
static char *scrape(sg_proc_t *gw)
{
    hc_response_t r;
    if (hc_request(sg_proc_addr(gw, "admin"), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r, 5000) != HC_OK)
        return NULL;
    char *s = r.status == 200 && r.body ? strdup(r.body) : NULL;
    hc_response_free(&r);
    return s;
}

/* Value of the sample line "series value" in text, -1 when absent. */
static double value_in(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

/* Whether some line of text starts with prefix. */
static bool has_prefix(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

/* Scrapes until `series` reads `want` (the worker records a request just
 * after its last byte went out) or the deadline passes; returns the last
 * scrape (malloc'ed). */
static char *scrape_until(sg_proc_t *gw, const char *series, double want)
{
    long long deadline = sgt_now_ms() + 5000;
    char *text = NULL;
    do {
        free(text);
        text = scrape(gw);
        cr_assert_not_null(text, "scrape");
    } while (value_in(text, series) != want && sgt_now_ms() < deadline);
    return text;
}

/* promtool check metrics; only the platform's gauge named *_total may be
 * reported. */
static void expect_promtool_clean(const char *text)
{
    char path[] = "/tmp/sg_reload_metrics_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[512];
    bool clean = true;
    while (fgets(line, sizeof(line), p))
        if (!strstr(line, "swarm_tickets_total")) {
            clean = false;
            fprintf(stderr, "promtool: %s", line);
        }
    int st = pclose(p);
    unlink(path);
    cr_assert(clean, "promtool complains");
    cr_assert(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3), "promtool status %d", st);
}

#define REQ_ADDED "swarm_http_requests_total{route=\"added\",method=\"GET\",code=\"200\"}"
#define UP_FRESH "swarm_upstream_response_duration_seconds_count{upstream=\"fresh\"}"

Test(reload_metrics, added_route_upstream_listener_get_their_own_labels, .timeout = 60)
{
    us_server_t *a = us_start("A", false), *b = us_start("fresh", false);
    cr_assert(a && b);
    char *boot = config_boot(us_port(a));
    char *added = config_added(us_port(a), us_port(b));
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, boot, 10000), 0);
    char who[32];
    cr_assert_eq(get(&gw, "api", "/before", who, sizeof(who)), 200);

    reload_with(&gw, added);
    cr_assert(sg_proc_reread_ports(&gw));
    cr_assert_not_null(sg_proc_addr(&gw, "side"), "the new listener is in the ports file");
    const int n = 5;
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/new/%d", i);
        cr_assert_eq(get(&gw, "api", path, who, sizeof(who)), 200, "%s", path);
        cr_assert_str_eq(who, "fresh", "%s reached %s", path, who);
    }
    /* one request on the new listener, kept open: its gauge reads 1 */
    hc_conn_t c;
    cr_assert_eq(hc_connect(&c, sg_proc_addr(&gw, "side"), 2000), 0);
    cr_assert(hc_send_str(&c, "GET /new/side HTTP/1.1\r\nHost: t\r\n\r\n", 2000));
    hc_response_t r;
    cr_assert_eq(hc_read_response(&c, &r, 5000), HC_OK);
    cr_assert_eq(r.status, 200);
    hc_response_free(&r);

    char *text = scrape_until(&gw, REQ_ADDED, n + 1);
    cr_expect_eq(value_in(text, REQ_ADDED), n + 1, "%s", text);
    cr_expect_eq(value_in(text, UP_FRESH), n + 1);
    cr_expect_eq(value_in(text, "swarm_upstream_error_rate{upstream=\"fresh\"}"), 0);
    cr_expect_eq(value_in(text, "swarm_upstream_connect_errors_total{upstream=\"fresh\"}"), 0);
    char srv[128];
    snprintf(srv, sizeof(srv), "swarm_upstream_server_up{upstream=\"fresh\",server=\"127.0.0.1:%u\"}", us_port(b));
    cr_expect_eq(value_in(text, srv), 1, "a new upstream's servers are listed");
    cr_expect_eq(value_in(text, "swarm_http_connections_active{listener=\"side\"}"), 1);
    cr_expect(!has_prefix(text, "swarm_http_requests_total{route=\"other\""), "nothing counted as other");
    cr_expect(!has_prefix(text, "swarm_upstream_response_duration_seconds_count{upstream=\"other\"}"));
    cr_expect(!has_prefix(text, "swarm_upstream_error_rate{upstream=\"other\"}"));
    cr_expect(!has_prefix(text, "swarm_http_connections_active{listener=\"other\"}"));
    cr_expect_eq(value_in(text, "swarm_http_requests_total{route=\"rest\",method=\"GET\",code=\"200\"}"), 1);
    expect_promtool_clean(text);
    free(text);
    hc_close(&c);

    /* Removed again: the counters stay, unchanged; the gauge of current
     * servers drops the removed upstream's server. */
    reload_with(&gw, boot);
    cr_assert_eq(get(&gw, "api", "/new/after", who, sizeof(who)), 200);
    cr_assert_str_eq(who, "A", "/new/ now falls to rest");
    text = scrape_until(&gw, "swarm_http_requests_total{route=\"rest\",method=\"GET\",code=\"200\"}", 2);
    cr_expect_eq(value_in(text, "swarm_http_requests_total{route=\"rest\",method=\"GET\",code=\"200\"}"), 2, "%s",
                 text);
    cr_expect_eq(value_in(text, REQ_ADDED), n + 1, "a removed route keeps its counter");
    cr_expect_eq(value_in(text, UP_FRESH), n + 1, "a removed upstream keeps its counter");
    cr_expect_eq(value_in(text, "swarm_upstream_connect_errors_total{upstream=\"fresh\"}"), 0);
    cr_expect_eq(value_in(text, srv), -1, "server_up lists the servers in force");
    cr_expect(!has_prefix(text, "swarm_http_requests_total{route=\"other\""));
    expect_promtool_clean(text);
    free(text);

    /* Added back: same series, counting on from where it stopped. */
    reload_with(&gw, added);
    cr_assert_eq(get(&gw, "api", "/new/again", who, sizeof(who)), 200);
    text = scrape_until(&gw, REQ_ADDED, n + 2);
    cr_expect_eq(value_in(text, REQ_ADDED), n + 2, "%s", text);
    cr_expect_eq(value_in(text, UP_FRESH), n + 2);
    free(text);

    char *err = sg_proc_stderr(&gw);
    cr_expect(!strstr(err, "no label room"), "no capacity warning: %s", err);
    free(err);
    free(boot);
    free(added);
    gw_stop(&gw);
    us_stop(a);
    us_stop(b);
}

/* Egress: an allow entry a reload adds gets its own destination series. */
static char *config_egress(unsigned port_a, unsigned port_b)
{
    char *s = NULL;
    int n = port_b ? asprintf(&s,
                              "workers: 2\n"
                              "listeners: [{name: eg, address: \"127.0.0.1:0\", mode: egress}]\n"
                              "admin: {address: \"127.0.0.1:0\"}\n"
                              "log: {access: \"off\"}\n"
                              "egress: {allow: [\"127.0.0.1:%u\", \"127.0.0.1:%u\"]}\n",
                              port_a, port_b)
                   : asprintf(&s,
                              "workers: 2\n"
                              "listeners: [{name: eg, address: \"127.0.0.1:0\", mode: egress}]\n"
                              "admin: {address: \"127.0.0.1:0\"}\n"
                              "log: {access: \"off\"}\n"
                              "egress: {allow: [\"127.0.0.1:%u\"]}\n",
                              port_a);
    cr_assert(n > 0);
    return s;
}

static int egress_get(sg_proc_t *gw, unsigned port)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "GET http://127.0.0.1:%u/x HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", port, port);
    hc_response_t r;
    if (hc_request(sg_proc_addr(gw, "eg"), raw, &r, 5000) != HC_OK)
        return -1;
    int st = r.status;
    hc_response_free(&r);
    return st;
}

Test(reload_metrics, added_egress_allow_entry_gets_its_own_destination, .timeout = 60)
{
    us_server_t *a = us_start("A", false), *b = us_start("B", false);
    cr_assert(a && b);
    char *boot = config_egress(us_port(a), 0), *added = config_egress(us_port(a), us_port(b));
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, boot, 10000), 0);
    cr_assert_eq(egress_get(&gw, us_port(a)), 200);
    cr_assert_eq(egress_get(&gw, us_port(b)), 403, "not allowed before the reload");
    reload_with(&gw, added);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(egress_get(&gw, us_port(b)), 200);
    char series_b[160], series_a[160];
    snprintf(series_b, sizeof(series_b),
             "swarm_egress_requests_total{agent=\"unknown\",destination=\"127.0.0.1:%u\",method=\"GET\",code=\"200\"}",
             us_port(b));
    snprintf(series_a, sizeof(series_a),
             "swarm_egress_requests_total{agent=\"unknown\",destination=\"127.0.0.1:%u\",method=\"GET\",code=\"200\"}",
             us_port(a));
    char *text = scrape_until(&gw, series_b, 3);
    cr_expect_eq(value_in(text, series_b), 3, "%s", text);
    cr_expect_eq(value_in(text, series_a), 1);
    cr_expect(!has_prefix(text, "swarm_egress_requests_total{agent=\"unknown\",destination=\"other\""),
              "nothing counted as other");
    expect_promtool_clean(text);
    free(text);
    /* Removed again: its counter stays. */
    reload_with(&gw, boot);
    cr_assert_eq(egress_get(&gw, us_port(a)), 200);
    text = scrape_until(&gw, series_a, 2);
    cr_expect_eq(value_in(text, series_a), 2, "%s", text);
    cr_expect_eq(value_in(text, series_b), 3, "a removed entry keeps its counter");
    free(text);
    free(boot);
    free(added);
    gw_stop(&gw);
    us_stop(a);
    us_stop(b);
}

Test(reload_metrics, past_the_spare_room_counts_as_other_and_warns, .timeout = 60)
{
    us_server_t *a = us_start("A", false);
    cr_assert(a);
    char *boot = config_boot(us_port(a));
    /* SG_METRICS_SPARE_LABELS + 1 new routes n0..n16: the last finds no room */
    size_t cap = 8192, len = 0;
    char *many = malloc(cap);
    cr_assert(many);
    len += (size_t)snprintf(many + len, cap - len,
                            "workers: 2\n"
                            "listeners: [{name: api, address: \"127.0.0.1:0\"}]\n"
                            "admin: {address: \"127.0.0.1:0\"}\n"
                            "log: {access: \"off\"}\n"
                            "upstreams:\n"
                            "  A: {servers: [\"127.0.0.1:%u\"]}\n"
                            "routes:\n",
                            us_port(a));
    for (int i = 0; i <= SG_METRICS_SPARE_LABELS; i++)
        len += (size_t)snprintf(many + len, cap - len, "  - {name: n%d, match: {prefix: /n%d/}, upstream: A}\n", i, i);
    snprintf(many + len, cap - len, "  - {name: rest, upstream: A}\n");
    sg_proc_t gw;
    cr_assert_eq(sg_proc_start(&gw, boot, 10000), 0);
    reload_with(&gw, many);
    char last[64], who[32], path[64];
    snprintf(last, sizeof(last), "route \\\"n%d\\\"", SG_METRICS_SPARE_LABELS); /* JSON-escaped */
    cr_assert(sg_proc_wait_stderr(&gw, "no label room left", 1, 5000), "capacity warning logged");
    char *err = sg_proc_stderr(&gw);
    cr_expect(strstr(err, last), "the warning names %s: %s", last, err);
    free(err);

    snprintf(path, sizeof(path), "/n%d/x", SG_METRICS_SPARE_LABELS);
    cr_assert_eq(get(&gw, "api", path, who, sizeof(who)), 200);
    cr_assert_eq(get(&gw, "api", "/n0/x", who, sizeof(who)), 200);
    char *text = scrape_until(&gw, "swarm_http_requests_total{route=\"other\",method=\"GET\",code=\"200\"}", 1);
    cr_expect_eq(value_in(text, "swarm_http_requests_total{route=\"other\",method=\"GET\",code=\"200\"}"), 1, "%s",
                 text);
    text = (free(text), scrape_until(&gw, "swarm_http_requests_total{route=\"n0\",method=\"GET\",code=\"200\"}", 1));
    cr_expect_eq(value_in(text, "swarm_http_requests_total{route=\"n0\",method=\"GET\",code=\"200\"}"), 1);
    expect_promtool_clean(text);
    free(text);

    /* Reloading the same file again: one warning per reload, no new room
     * taken (known names keep theirs). */
    reload_with(&gw, many);
    cr_assert(sg_proc_wait_stderr(&gw, "no label room left", 2, 5000));
    free(many);
    free(boot);
    gw_stop(&gw);
    us_stop(a);
}
