/*
 * clock.h - the monotonic clock in milliseconds, for deadlines and timers.
 *
 * Used by master (restart backoff), cleanup (qmgr reconnect) and anything
 * that measures a wait; never for timestamps a user sees.
 */
#ifndef POSTERN_CLOCK_H
#define POSTERN_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);     /* CLOCK_MONOTONIC, milliseconds */
int64_t clock_now_us(void);     /* CLOCK_MONOTONIC, microseconds (latency metrics) */

#endif
