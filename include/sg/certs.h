/* The certificate expiry gauge,
 * swarm_tls_certificate_expiry_timestamp_seconds{listener,name}: the
 * notAfter date (Unix seconds) of each certificate of the config's TLS
 * listeners, read from the files when the control thread starts and again
 * at each reload, and written at scrape time by a collector (see
 * sg_metrics_add_collector). `name` is the certificate's first DNS name
 * (its CN without one); two certificates of one listener with the same
 * name make one series with the earlier date, so an alert sees the worst.
 * The family is written (without samples) when no listener has TLS, so it
 * is always in the registry.
 *
 * Owner: the control thread (sg_control_t); built, rendered and freed
 * there. The table copies what it needs: the config may go. */
#ifndef SG_CERTS_H
#define SG_CERTS_H

#include "sg/config.h"
#include "sg/expose.h"

typedef struct sg_certs sg_certs_t;

/* Reads the certificates of cfg's TLS listeners. A file that cannot be
 * read (it changed since the config was checked) leaves its series out
 * and is reported in err (the first such problem; err[0] == '\0' when
 * none). NULL only on allocation failure. */
sg_certs_t *sg_certs_load(const sg_config_t *cfg, char *err, size_t errlen) SG_MUST_CHECK;
void sg_certs_free(sg_certs_t *c);
/* Series in the table. */
size_t sg_certs_count(const sg_certs_t *c);
/* Series i (0 <= i < count): its labels and date; false past the end. */
bool sg_certs_get(const sg_certs_t *c, size_t i, const char **listener, const char **name, int64_t *not_after_unix);
/* Calls warn(ud, line) for each certificate that expires within `days` of
 * now_unix or has expired (a line naming listener, name, file and days
 * left), for the control thread's log at start and reload. */
void sg_certs_each_expiring(const sg_certs_t *c, int64_t now_unix, int days, void (*warn)(void *ud, const char *line),
                            void *ud);
/* Writes the family and its series (c may be NULL: the family alone). */
void sg_certs_render(const sg_certs_t *c, sg_expose_t *x);

#endif /* SG_CERTS_H */
