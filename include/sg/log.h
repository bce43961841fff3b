/* Logging: a leveled error log and a JSON-lines access log that never block
 * a worker.
 *
 * Each worker (and the control thread) owns one sg_log_ring_t: two fixed
 * byte rings (access lines, error lines), single producer (the owning
 * thread) and single consumer (the flusher). A producer appends whole lines
 * without locks; when a ring is full the line is dropped and counted. The
 * flusher, sg_log_flush_all(), runs on the control thread every
 * log.flush_interval and writes the rings to their outputs (stdout, stderr
 * or a file opened O_APPEND). sg_log_shutdown() flushes everything.
 *
 * Error lines: text ("<ts> <LEVEL> [trace_id] message") when the format is
 * text, or auto and the error output is a terminal; otherwise one JSON
 * object per line: {"ts","level","trace_id"?,"msg"}. Control characters in
 * messages are escaped in both formats (no log injection).
 *
 * Access lines: one JSON object per request, see sg_log_access(). */
#ifndef SG_LOG_H
#define SG_LOG_H

#include "sg/common.h"
#include "sg/config.h"
#include "sg/reqrec.h"

/* Longest line, in bytes, newline included; longer lines are cut (string
 * fields are cut first, so the line stays valid JSON). */
#define SG_LOG_LINE_MAX 16384

typedef struct sg_log_ring sg_log_ring_t;

/* Opens the outputs of `conf` (main thread, before workers start). Until
 * this is called, sg_log() writes text to stderr at level info. Calling it
 * again (e.g. on reload) reopens outputs and applies level/format.
 * Returns 0, or a negative errno when a file cannot be opened; the message
 * names the file in `err`. */
int sg_log_init(const sg_log_conf_t *conf, char *err, size_t errlen) SG_MUST_CHECK;
/* Reopens file outputs (log rotation, SIGHUP). Control thread. 0 or -errno. */
int sg_log_reopen(void) SG_MUST_CHECK;
/* Flushes every ring still registered, then closes files and returns to the
 * pre-init state (stderr, text). Call once the workers have stopped. */
void sg_log_shutdown(void);

/* A ring of `bytes` (rounded up to a power of two, min 4 KiB) per stream,
 * registered with the flusher. Owner: the caller (a worker or the control
 * thread); freed by sg_log_ring_free(), which flushes what is left first.
 * NULL on out-of-memory. Any thread. */
sg_log_ring_t *sg_log_ring_new(size_t bytes) SG_MUST_CHECK;
void sg_log_ring_free(sg_log_ring_t *ring);
/* Lines this ring dropped because it was full. */
uint64_t sg_log_ring_dropped(const sg_log_ring_t *ring);

/* Makes `ring` the calling thread's ring for sg_log() (NULL detaches). */
void sg_log_thread_attach(sg_log_ring_t *ring);
sg_log_ring_t *sg_log_thread_ring(void);

bool sg_log_enabled(sg_log_level_t level);
void sg_log_set_level(sg_log_level_t level);
/* sg_log_level_name() is in sg/config.h, beside the enum. */

/* Logs one error-log line. `trace_id` may be NULL. Any thread: goes to the
 * thread's ring when one is attached, else is written directly (under a
 * mutex; for main and start-up, not for the request path). */
void sg_log(sg_log_level_t level, const char *trace_id, const char *fmt, ...) SG_PRINTF(3, 4);

#define sg_log_debug(tid, ...) sg_log(SG_LOG_DEBUG, (tid), __VA_ARGS__)
#define sg_log_info(tid, ...) sg_log(SG_LOG_INFO, (tid), __VA_ARGS__)
#define sg_log_warn(tid, ...) sg_log(SG_LOG_WARN, (tid), __VA_ARGS__)
#define sg_log_error(tid, ...) sg_log(SG_LOG_ERROR, (tid), __VA_ARGS__)

/* Appends one access-log line for `rec` to `ring` (the worker's own ring;
 * owning thread only). No printf, no allocation. Fields, in order:
 *   ts            RFC 3339 UTC with ms, of the request start
 *   trace_id, span_id, parent_span_id (only when continuing a traceparent)
 *   client, method, path, host
 *   route         `route_name` (omitted when NULL: no route matched)
 *   upstream      the upstream server "ip:port" (omitted when none)
 *   status, req_bytes, resp_bytes (integers)
 *   dur_ms        end - start, milliseconds with 3 decimals
 *   upstream_ms   upstream start -> response head (omitted when unknown)
 *   error         rec->error (omitted when NULL)
 * The route name is a parameter (not an index into a table) because the
 * route table belongs to a config generation; pass
 * cfg->routes[rec->route_idx].name from the generation the request used.
 * Does nothing when the access log is "off". */
void sg_log_access(sg_log_ring_t *ring, const sg_reqrec_t *rec, const char *route_name);

/* Writes every registered ring to its output. Control thread (or any one
 * thread at a time; serialized internally). Never blocks on a producer.
 * Returns the number of bytes written. */
size_t sg_log_flush_all(void);

/* Lines dropped by every ring (full), ever, including freed rings. */
uint64_t sg_log_dropped_total(void);

#endif /* SG_LOG_H */
