/* Listeners and local responders.
 *
 * A listener either proxies (reverse mode) or answers requests itself
 * through a local responder: the admin listener (control thread) and the
 * /health* paths of a reverse listener with serve_health use one. The
 * responder runs on the loop thread that owns the connection, must not
 * block, and fills the response synchronously. */
#ifndef SG_LISTENER_H
#define SG_LISTENER_H

#include "sg/common.h"
#include "sg/http1.h"
#include "sg/reqrec.h"

typedef struct sg_local_req {
    sg_method_t method;
    sg_str_t path;  /* without the query */
    sg_str_t query; /* after '?', may be empty */
    const sg_h1_head_t *head;
    int32_t listener_idx;
    const char *trace_id; /* this request's trace id (NUL-terminated) */
} sg_local_req_t;

/* The responder writes its body into `body` (capacity body_cap, a buffer
 * lent by the connection) and sets body_len, or points ext_body at a larger
 * body it owns, in which case ext_free(ext_ud, ext_body) is called once the
 * bytes are written (or the connection died). */
typedef struct sg_local_resp {
    uint16_t status;           /* default 200 */
    const char *content_type;  /* default "application/json"; "" for none (no content) */
    const char *extra_headers; /* NULL or complete "Name: value\r\n" lines */
    char *body;
    size_t body_cap;
    size_t body_len;
    const char *ext_body;
    size_t ext_len;
    void (*ext_free)(void *ext_ud, const char *ext_body);
    void *ext_ud;
} sg_local_resp_t;

typedef void (*sg_local_responder_cb)(void *ud, const sg_local_req_t *req, sg_local_resp_t *resp);

typedef enum sg_health_kind {
    SG_HEALTH_LIVE = 0,
    SG_HEALTH_READY,
    SG_HEALTH_ALL, /* both, with ready's status code */
    SG_HEALTH_KIND__COUNT
} sg_health_kind_t;

/* Maps a request path to a health kind; -1 when the path is not a health
 * endpoint (/health, /health/live, /livez, /health/ready, /readyz). */
int sg_health_kind_for_path(sg_str_t path);

#endif /* SG_LISTENER_H */
