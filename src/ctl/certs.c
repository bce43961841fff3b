/* The certificate expiry gauge (sg/certs.h). */
#include "sg/certs.h"

#include "sg/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct cert_row {
    char *listener;
    char *name;
    char *file;
    int64_t not_after_unix;
} cert_row_t;

struct sg_certs {
    cert_row_t *rows;
    size_t n, cap;
};

static const char family[] = "swarm_tls_certificate_expiry_timestamp_seconds";

void sg_certs_free(sg_certs_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->rows[i].listener);
        free(c->rows[i].name);
        free(c->rows[i].file);
    }
    free(c->rows);
    free(c);
}

/* One series per (listener, name): a second certificate of the same name
 * keeps the earlier date. 0 or -ENOMEM. */
static int add_row(sg_certs_t *c, const char *listener, const char *name, const char *file, int64_t not_after)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->rows[i].listener, listener) == 0 && strcmp(c->rows[i].name, name) == 0) {
            if (not_after < c->rows[i].not_after_unix) {
                char *f = strdup(file);
                if (!f)
                    return -ENOMEM;
                free(c->rows[i].file);
                c->rows[i].file = f;
                c->rows[i].not_after_unix = not_after;
            }
            return 0;
        }
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8;
        cert_row_t *r = realloc(c->rows, nc * sizeof(*r));
        if (!r)
            return -ENOMEM;
        c->rows = r;
        c->cap = nc;
    }
    cert_row_t row = {strdup(listener), strdup(name), strdup(file), not_after};
    if (!row.listener || !row.name || !row.file) {
        free(row.listener);
        free(row.name);
        free(row.file);
        return -ENOMEM;
    }
    c->rows[c->n++] = row;
    return 0;
}

sg_certs_t *sg_certs_load(const sg_config_t *cfg, char *err, size_t errlen)
{
    sg_certs_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    err[0] = '\0';
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const sg_listener_conf_t *lc = &cfg->listeners[l];
        if (!lc->tls.enabled)
            continue;
        for (size_t i = 0; i < lc->tls.n_certificates; i++) {
            const char *file = lc->tls.certificates[i].cert;
            sg_tls_cert_info_t info;
            char why[400];
            if (sg_tls_cert_file_info(file, &info, why, sizeof(why)) < 0) {
                if (!err[0])
                    snprintf(err, errlen, "listener %s: %s", lc->name, why);
                continue;
            }
            char fallback[48];
            const char *name = info.name;
            if (!name[0]) { /* neither a DNS name nor a CN: its place in the list */
                snprintf(fallback, sizeof(fallback), "certificates[%zu]", i);
                name = fallback;
            }
            if (add_row(c, lc->name, name, file, info.not_after_unix) < 0) {
                sg_certs_free(c);
                return NULL;
            }
        }
    }
    return c;
}

size_t sg_certs_count(const sg_certs_t *c)
{
    return c ? c->n : 0;
}

bool sg_certs_get(const sg_certs_t *c, size_t i, const char **listener, const char **name, int64_t *not_after_unix)
{
    if (!c || i >= c->n)
        return false;
    *listener = c->rows[i].listener;
    *name = c->rows[i].name;
    *not_after_unix = c->rows[i].not_after_unix;
    return true;
}

void sg_certs_each_expiring(const sg_certs_t *c, int64_t now_unix, int days, void (*warn)(void *ud, const char *line),
                            void *ud)
{
    for (size_t i = 0; c && i < c->n; i++) {
        const cert_row_t *r = &c->rows[i];
        int64_t left = r->not_after_unix - now_unix;
        if (left > (int64_t)days * 86400)
            continue;
        char line[768];
        if (left <= 0)
            snprintf(line, sizeof(line), "tls: listener %s: certificate %s (%s) has EXPIRED %lld day(s) ago",
                     r->listener, r->name, r->file, (long long)(-left / 86400));
        else
            snprintf(line, sizeof(line), "tls: listener %s: certificate %s (%s) expires in %lld day(s)", r->listener,
                     r->name, r->file, (long long)(left / 86400));
        warn(ud, line);
    }
}

void sg_certs_render(const sg_certs_t *c, sg_expose_t *x)
{
    static const char *const labels[] = {"listener", "name"};
    sg_expose_family(x, family,
                     "Expiry (notAfter) of each certificate of a TLS listener, in seconds since the Unix epoch, "
                     "as read at start or at the last reload.",
                     SG_METRIC_GAUGE);
    for (size_t i = 0; c && i < c->n; i++) {
        const char *vals[] = {c->rows[i].listener, c->rows[i].name};
        sg_expose_sample(x, family, "", labels, vals, 2, (double)c->rows[i].not_after_unix);
    }
}
