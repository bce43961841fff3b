/* Helpers for observability integration tests (trace ids, /metrics,
 * /health*, access log): one-shot GETs, reading a sample out of a scrape,
 * deadline-bounded waits on a metric, a file or a readiness status, and
 * UUID checks. Every wait polls with a deadline; nothing sleeps to sync. */
#ifndef SG_TEST_OBS_FIXTURE_H
#define SG_TEST_OBS_FIXTURE_H

#include "support/http_client.h"

#include <stdbool.h>
#include <stddef.h>

/* GET path on a fresh connection to addr, with extra header lines
 * ("Name: v\r\n..." or NULL). Returns HC_*; r must be freed. */
int obs_get(const char *addr, const char *path, const char *extra, hc_response_t *r, int timeout_ms);

/* Value of the sample whose text before the value is exactly `series`
 * (e.g. `swarm_http_requests_total{route="a",method="GET",code="200"}`)
 * in an exposition body; false when absent. */
bool obs_metric(const char *text, const char *series, double *out);
/* Count of samples (lines) that start with `prefix`. */
int obs_count_lines(const char *text, const char *prefix);
/* Scrapes admin /metrics (text format): the body (malloc'ed), NULL when
 * the GET fails or is not a 200. */
char *obs_scrape_text(const char *admin);
/* Sum of the values of the samples (lines) that start with `prefix`; their
 * number in *n (may be NULL). */
double obs_sum_lines(const char *text, const char *prefix, int *n);
/* Scrapes admin /metrics (text format) and reads one sample. */
bool obs_scrape_value(const char *admin, const char *series, double *out);
/* Waits until the sample exists and is >= min; its last value in *got. */
bool obs_wait_metric_ge(const char *admin, const char *series, double min, int timeout_ms, double *got);
/* Waits until the sample exists and equals want; its last value in *got. */
bool obs_wait_metric_eq(const char *admin, const char *series, double want, int timeout_ms, double *got);

/* Waits until GET path on addr answers `status`. */
bool obs_wait_status(const char *addr, const char *path, int status, int timeout_ms);

/* Whole file (malloc'ed, NUL-terminated; "" when missing). */
char *obs_slurp(const char *path);
/* Waits until the file holds a line containing needle; returns a copy of
 * that line (malloc'ed, without the newline) or NULL at the deadline. */
char *obs_wait_line(const char *path, const char *needle, int timeout_ms);

/* Lower-case canonical UUID text, version 4, RFC 4122 variant. */
bool obs_is_uuid_v4(const char *s);
/* A UUID without its dashes (32 hex) into out[33]. */
void obs_uuid_hex(const char *uuid, char out[33]);
/* A loopback TCP port that was free a moment ago. */
unsigned obs_free_port(void);
/* A fresh temp dir (for log files) into out; obs_rmdir removes it with
 * the files in it. */
bool obs_mkdtemp(char *out, size_t cap);
void obs_rmdir(const char *dir);

#endif /* SG_TEST_OBS_FIXTURE_H */
