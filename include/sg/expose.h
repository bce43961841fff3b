/* Prometheus text rendering: the calls a metric source makes while a scrape
 * renders. PROVISIONAL COPY (pg branch): only the declarations the Postgres
 * poller calls, exactly as agreed with the expose module; the real header
 * from src/obs/expose.c replaces this file when it lands in main.
 *
 * Called on the control thread during a scrape. Label names and values are
 * raw bytes: escaping is the renderer's job. */
#ifndef SG_EXPOSE_H
#define SG_EXPOSE_H

#include "sg/common.h"
#include "sg/config.h"

typedef struct sg_expose sg_expose_t;

/* Starts a family (HELP/TYPE). For counters `name` is without "_total". */
void sg_expose_family(sg_expose_t *x, const char *name, const char *help, sg_metric_type_t type);
/* One sample of the current family: name + suffix ("" or "_total" ...). */
void sg_expose_sample(sg_expose_t *x, const char *name, const char *suffix, const char *const *label_names,
                      const char *const *label_values, size_t n_labels, double value);
/* One histogram series: counts are non-cumulative, n_bounds + 1 of them
 * (the last is +Inf); sum in the histogram's unit. */
void sg_expose_histogram(sg_expose_t *x, const char *name, const char *const *label_names,
                         const char *const *label_values, size_t n_labels, const double *bounds,
                         const uint64_t *counts, size_t n_bounds, double sum);

#endif /* SG_EXPOSE_H */
