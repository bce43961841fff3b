/* Clocks (src/core/time.c). Any thread; never fail. */
#ifndef SG_TIME_H
#define SG_TIME_H

#include "sg/common.h"

/* Monotonic milliseconds and nanoseconds (CLOCK_MONOTONIC): the clock of
 * heartbeats, ejections and every deadline. */
uint64_t sg_now_ms(void);
uint64_t sg_now_ns(void);
/* Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME): timestamps
 * that leave the process (spans, logs, metrics). */
uint64_t sg_unix_ns(void);

#endif /* SG_TIME_H */
