#pragma once
/* What shmprov remembers between runs, in one small JSON file
 * (/var/lib/shmprov/state.json, written atomically): what the last
 * successful apply set, so the next run can say what drifted since, and
 * the host's event sequence number. Reading or writing it never decides
 * whether an apply happens; a missing or damaged file only means nothing
 * is remembered. */

#include <stdbool.h>
#include <stdint.h>

#include "sizing.h"

#define STATE_DIR "/var/lib/shmprov"
#define STATE_FILE "state.json"
#define STATE_LOCK_PATH "/run/shmprov/state.lock"

struct state_apply {
    bool known;                  /* a successful apply was recorded */
    bool managed[KEY_COUNT];
    uint64_t value[KEY_COUNT];   /* what it set (or kept) */
    char dropin_path[4096];
    char dropin_sha256[65];      /* of the bytes it left on disk */
    char profile_sha256[65];
    char time[40];               /* RFC 3339 UTC */
};

struct state {
    uint64_t sequence; /* of the last event numbered, 0 before the first */
    struct state_apply last_apply;
};

/* Reads dir/state.json into *ret (zeroed when absent). Returns 0, or a
 * negative errno (-EBADMSG when damaged) with *ret zeroed. */
int state_load(const char *dir, struct state *ret);

/* Replaces what is remembered about the last apply, under the state
 * lock; writes nothing when it records the same values, drop-in and
 * profile as before (its time then stays that of the apply that set
 * them). Returns 0 or a negative errno. */
int state_record_apply(const char *dir, const struct state_apply *a);

/* The next event sequence number (1, 2, ...), kept under the state lock.
 * A damaged file is moved aside to state.json.damaged and numbering
 * starts again at 1. Returns 0 or a negative errno. */
int state_next_sequence(const char *dir, uint64_t *ret);
