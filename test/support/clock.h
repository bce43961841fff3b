/* The test helpers' one clock: a monotonic time in milliseconds for
 * deadlines and durations, and a short sleep for the polling interval of a
 * deadline-bounded wait or the pace of a deliberately slow peer (never to
 * synchronize: STYLE.md section 10). */
#ifndef SG_TEST_CLOCK_H
#define SG_TEST_CLOCK_H

/* CLOCK_MONOTONIC in milliseconds (any thread). */
long long sgt_now_ms(void);
/* Sleeps ms milliseconds (the whole time, also when a signal interrupts). */
void sgt_nap_ms(int ms);

#endif
