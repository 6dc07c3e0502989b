#pragma once
/* What shmprov remembers between runs, in one small JSON file written
 * atomically: what the last successful apply set (for drift), how the last
 * apply went (for the metrics), and the event sequence number. It never
 * decides whether an apply happens; a missing or damaged file only means
 * nothing is remembered. */

#include <stdbool.h>
#include <stdint.h>

#include "sizing.h"

#define STATE_DIR "/var/lib/shmprov"
#define STATE_FILE "state.json"
#define STATE_LOCK_PATH "/run/shmprov/state.lock"
/* "SHA256  PATH" of the drop-in the last successful apply left, in
 * sha256sum --check format: what a package's purge checks, with the
 * binary already gone, before it deletes the drop-in. */
#define STATE_DROPIN_RECORD "dropin.sha256"

struct state_apply {
    bool known;                  /* a successful apply was recorded */
    bool managed[SIZING_KEY_COUNT];
    uint64_t value[SIZING_KEY_COUNT];   /* what it set (or kept) */
    char dropin_path[4096];
    char dropin_sha256[65];      /* of the bytes it left on disk */
    char profile_sha256[65];
    char time[40];               /* RFC 3339 UTC */
};

/* The last apply (or remove), whatever its result: what a monitoring
 * system alerts on (a failed or refused apply, or none for too long). */
struct state_run {
    bool known;               /* an apply was recorded */
    char result[16];          /* "changed", "unchanged", "refused", "failed", "not-applicable", "removed" */
    uint64_t end;             /* when it ended, unix seconds */
    uint64_t duration_ms;
    int probe_passed;         /* 1, 0, or -1: it ran no test allocation */
};

struct state {
    uint64_t sequence; /* of the last event numbered, 0 before the first */
    struct state_apply last_apply;
    struct state_run last_run;
    uint64_t last_success_end; /* unix seconds the last changed/unchanged apply ended, 0 before the first */
};

/* Reads dir/state.json into *ret (zeroed when absent). Returns 0, or a
 * negative errno (-EBADMSG when damaged) with *ret zeroed. */
int state_load(const char *dir, struct state *ret);

/* Records an apply in one write under the state lock: run as the last
 * run, and for a successful apply (a not NULL) run->end as the last success
 * and a as what it set, unless the record already holds the same values,
 * drop-in and profile (its time then stays). ret (may be NULL) gets the
 * state as written. Returns 0 or a negative errno. */
int state_record_run(const char *dir, const struct state_run *run, const struct state_apply *a, struct state *ret);

/* Records a run of `shmprov remove` the same way; dropin_path (not NULL:
 * it is gone) forgets the apply that left it, so the next apply does not
 * take the removal for drift. Returns 0 or a negative errno. */
int state_record_removal(const char *dir, const struct state_run *run, const char *dropin_path, struct state *ret);

/* The next event sequence number (1, 2, ...), kept under the state lock.
 * A damaged file is moved aside to state.json.damaged and numbering
 * starts again at 1. Returns 0 or a negative errno. */
int state_next_sequence(const char *dir, uint64_t *ret);
