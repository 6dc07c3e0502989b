#pragma once
#include <stdbool.h>
#include <stdint.h>

/* "2026-12-05T17:21:22.123456Z" and its terminating NUL, with room to spare. */
#define CLOCK_TEXT_MAX 40

/* CLOCK_MONOTONIC in milliseconds: durations and deadlines, immune to
 * the wall clock being set. */
uint64_t clock_monotonic_ms(void);

/* CLOCK_REALTIME in nanoseconds since the epoch; 0 if the clock is unset
 * (before 1970) or unreadable. */
uint64_t clock_realtime_ns(void);

/* realtime_ns as RFC 3339 UTC: "...T17:21:22Z", or with micro
 * "...T17:21:22.123456Z". */
void clock_format_utc(uint64_t realtime_ns, bool micro, char out[CLOCK_TEXT_MAX]);
