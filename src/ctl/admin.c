/* The admin listener's routes: /metrics and /health*, answered on the
 * control thread through the connection machinery's local responder. */
#include "sg/admin.h"

#include "sg/expose.h"
#include "sg/health.h"
#include "sg/http1.h"
#include "sg/json.h"
#include "sg/worker.h"

#include <arpa/inet.h>
#include <strings.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void free_expose(void *ud, const char *body)
{
    SG_UNUSED(body);
    sg_expose_t *x = ud;
    sg_expose_destroy(x);
    free(x);
}

SG_PRINTF(3, 4) static void answer_json(sg_local_resp_t *resp, uint16_t status, const char *fmt, ...)
{
    resp->status = status;
    resp->content_type = "application/json";
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(resp->body, resp->body_cap, fmt, ap);
    va_end(ap);
    resp->body_len = n < 0 ? 0 : SG_MIN((size_t)n, resp->body_cap ? resp->body_cap - 1 : 0);
}

static void answer_metrics(sg_admin_t *a, const sg_local_req_t *req, sg_local_resp_t *resp, bool is_any_thread)
{
    size_t n = 0;
    const sg_h1_header_t *accept = req->head ? sg_h1_find(req->head, SG_STR("Accept"), &n) : NULL;
    sg_expose_format_t f = sg_expose_negotiate(accept ? accept->value : SG_STR_NULL);
    sg_expose_t *x = malloc(sizeof(*x));
    if (!x) {
        answer_json(resp, 503, "{\"error\":\"%s\"}\n", "out of memory");
        return;
    }
    sg_expose_init(x, f);
    uint64_t t0 = sg_now_ns();
    if (is_any_thread)
        sg_metrics_render_any_thread(a->metrics, x, sg_now_ms());
    else
        sg_metrics_render(a->metrics, x, sg_now_ms());
    if (sg_expose_finish(x) != 0 || x->has_error) {
        free_expose(x, NULL);
        answer_json(resp, 503, "{\"error\":\"%s\"}\n", "metrics render failed");
        return;
    }
    if (!is_any_thread) {
        a->last_render_ns = sg_now_ns() - t0;
        a->scrapes++;
    }
    resp->status = 200;
    resp->content_type = sg_expose_content_type(f);
    resp->ext_body = x->data;
    resp->ext_len = x->len;
    resp->ext_free = free_expose;
    resp->ext_ud = x;
}

void sg_admin_health(sg_admin_t *a, int kind, sg_local_resp_t *resp)
{
    const sg_config_t *cfg = atomic_load_explicit(&a->rt->config, memory_order_acquire);
    sg_health_inputs_t in = {
        .now_ms = sg_now_ms(),
        .stale_ms = cfg->admin.liveness_stale_ms,
        .pg_enabled = cfg->postgres.conninfo != NULL,
        .pg_required = cfg->postgres.required,
        .pg_up = atomic_load_explicit(&a->rt->pg_up, memory_order_relaxed),
        .pg_failing = atomic_load_explicit(&a->rt->pg_failing, memory_order_relaxed),
    };
    size_t len = 0;
    resp->status = (uint16_t)sg_health_render(a->rt, &in, (sg_health_kind_t)kind, resp->body, resp->body_cap, &len);
    resp->body_len = len;
    resp->content_type = "application/json";
    resp->extra_headers = "Cache-Control: no-store\r\n";
}

bool sg_admin_is_loopback(const sg_hostport_t *hp)
{
    const char *h = hp->host;
    if (!h || !h[0] || strcmp(h, "*") == 0)
        return false; /* every address */
    if (strcasecmp(h, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, h, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

/* POST /-/reload: the same reload as SIGHUP, answered with its outcome.
 * Only on a loopback admin listener: anyone who can reach a public admin
 * port could otherwise make the process re-read its file at will. */
static void answer_reload(sg_admin_t *a, const sg_local_req_t *req, sg_local_resp_t *resp)
{
    if (req->method != SG_METHOD_POST) {
        resp->extra_headers = "Allow: POST\r\n";
        answer_json(resp, 405, "{\"status\":\"error\",\"error\":\"%s\"}\n", "method not allowed");
        return;
    }
    const sg_config_t *cfg = atomic_load_explicit(&a->rt->config, memory_order_acquire);
    if (!sg_admin_is_loopback(&cfg->admin.addr)) {
        answer_json(resp, 403, "{\"status\":\"error\",\"error\":\"%s\"}\n",
                    "reload over HTTP needs the admin listener on a loopback address; send SIGHUP");
        return;
    }
    struct sg_server *srv = atomic_load_explicit(&a->server, memory_order_acquire);
    if (!srv) {
        answer_json(resp, 503, "{\"status\":\"error\",\"error\":\"%s\"}\n", "starting");
        return;
    }
    char err[1024];
    uint32_t gen = 0;
    if (sg_server_reload(srv, &gen, err, sizeof(err)) == 0) {
        answer_json(resp, 200, "{\"status\":\"ok\",\"generation\":%u}\n", gen);
        return;
    }
    char esc[2048];
    size_t n = sg_json_escape(esc, sizeof(esc) - 1, err, strlen(err));
    esc[n] = '\0';
    answer_json(resp, 400, "{\"status\":\"error\",\"error\":\"%s\"}\n", esc);
}

void sg_admin_respond(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp)
{
    sg_admin_t *a = ud;
    if (sg_str_eq(req->path, SG_STR("/-/reload"))) {
        answer_reload(a, req, resp);
        return;
    }
    bool is_read = req->method == SG_METHOD_GET || req->method == SG_METHOD_HEAD;
    int kind = sg_health_kind_for_path(req->path);
    if (kind >= 0 || sg_str_eq(req->path, SG_STR("/metrics"))) {
        if (!is_read) {
            resp->extra_headers = "Allow: GET, HEAD\r\n";
            answer_json(resp, 405, "{\"error\":\"%s\"}\n", "method not allowed");
            return;
        }
        if (kind >= 0)
            sg_admin_health(a, kind, resp);
        else
            answer_metrics(a, req, resp, false);
        return;
    }
    answer_json(resp, 404, "{\"error\":\"no such admin endpoint\",\"endpoints\":[%s]}\n",
                "\"/metrics\",\"/health\",\"/health/live\",\"/health/ready\",\"/livez\",\"/readyz\",\"/-/reload\"");
}

void sg_admin_local_respond(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp)
{
    sg_admin_t *a = ud;
    if (sg_str_eq(req->path, SG_STR("/metrics"))) {
        answer_metrics(a, req, resp, true);
        return;
    }
    int kind = sg_health_kind_for_path(req->path);
    if (kind < 0) {
        answer_json(resp, 404, "{\"error\":\"%s\"}\n", "not found");
        return;
    }
    sg_admin_health(a, kind, resp);
}
