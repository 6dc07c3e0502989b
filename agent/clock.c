/* The clocks shmprov reads, and the one text form it writes times in. */
#include "clock.h"

#include <stdio.h>
#include <time.h>

uint64_t clock_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_realtime_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || ts.tv_sec < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void clock_format_utc(uint64_t realtime_ns, bool micro, char out[CLOCK_TEXT_MAX])
{
    time_t seconds = (time_t)(realtime_ns / 1000000000u);
    struct tm tm;
    char text[24];

    gmtime_r(&seconds, &tm);
    (void)strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm); /* 19 bytes until the year 10000 */
    if (micro)
        (void)snprintf(out, CLOCK_TEXT_MAX, "%s.%06uZ", text, (unsigned)(realtime_ns / 1000u % 1000000u));
    else
        (void)snprintf(out, CLOCK_TEXT_MAX, "%sZ", text);
}
