/* Wall-clock time with a seam that tests can set. */
#ifndef KEYGATE_CLOCK_H
#define KEYGATE_CLOCK_H

#include <stdint.h>

/* Seconds since the Unix epoch, UTC (the fake time when one is set). */
int64_t kg_clock_now(void);

/* Milliseconds since the Unix epoch, UTC (fake time × 1000 when set). */
int64_t kg_clock_now_ms(void);

/* Microseconds from a monotonic clock, for durations; never faked. */
int64_t kg_clock_mono_us(void);

/*
 * Make kg_clock_now() return `unix_seconds` until called again; 0 restores
 * the real clock. For tests; process-wide and thread-safe.
 */
void kg_clock_set_fake(int64_t unix_seconds);

#endif /* KEYGATE_CLOCK_H */
