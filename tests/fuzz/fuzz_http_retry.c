/* What shmprov does with a retryable answer's Retry-After. libcurl reads
 * the header (delay-seconds or an HTTP date, as seconds from now) into a
 * curl_off_t; http_retry_wait() must turn every value of that type, with
 * any time left and any jitter, into a wait inside the budget or a
 * refusal: never a wrapped short wait, never a sleep past the deadline. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "testing.h"

#define MIN_ATTEMPT_MS 100u /* as in http.c */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t in[3 * sizeof(uint64_t)] = { 0 };
    uint64_t left_ms, jitter_ms, wait = 0, budget;
    int64_t retry_after_s;
    int r;

    /* Three native-endian 64-bit numbers; a short input is zero-padded. */
    memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
    memcpy(&left_ms, in, sizeof(left_ms));
    memcpy(&jitter_ms, in + 8, sizeof(jitter_ms));
    memcpy(&retry_after_s, in + 16, sizeof(retry_after_s));

    r = http_retry_wait(left_ms, jitter_ms, retry_after_s, &wait);
    if (left_ms < MIN_ATTEMPT_MS) {
        if (r != -ETIME)
            abort();
        return 0;
    }
    budget = left_ms - MIN_ATTEMPT_MS;
    if (r == -ERANGE) {
        /* Refused only when the server asked for more than the budget. */
        if (retry_after_s <= 0 || (uint64_t)retry_after_s <= budget / 1000u)
            abort();
        return 0;
    }
    if (r != 0 || wait > budget)
        abort();
    if (retry_after_s > 0) {
        /* At least what was asked (it fits), and never less than the
         * jitter unless the budget cut it. */
        if (wait < (uint64_t)retry_after_s * 1000u)
            abort();
        if (wait != budget && wait != (uint64_t)retry_after_s * 1000u + jitter_ms)
            abort();
    } else if (wait != (jitter_ms < budget ? jitter_ms : budget)) {
        abort();
    }
    return 0;
}
