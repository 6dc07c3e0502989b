#pragma once
/* Orphan segments: nothing attached AND both the creator and the last
 * process that attached or detached gone (not merely a user's, which can
 * be a live database's memory). One is removed only after a re-check,
 * right before IPC_RMID, finds it unchanged. */

#include <stdbool.h>
#include <stddef.h>

#include "shmseg.h"

enum orphans_pid_state {
    ORPHANS_PID_ALIVE,
    ORPHANS_PID_GONE,
    ORPHANS_PID_NEVER,     /* last pid only: nothing ever attached */
    ORPHANS_PID_NOT_VISIBLE /* 0 in /proc: a process of another pid namespace; assumed alive */
};

struct orphans_verdict {
    enum orphans_pid_state creator, last;
    bool candidate;  /* nattch 0, not marked for destroy, creator and last gone */
    bool persistent; /* the profile marks its key persistent: never removed */
    /* Set by status_judge_segment() (orphans_classify() leaves it false):
     * shmprov's own test segment, left by a killed run. Such a segment is
     * then not counted as a candidate of unknown origin. */
    bool probe_leftover;
};

/* Whether a pid (as /proc/sysvipc/shm shows it) is a live process here.
 * last_pid: 0 means "never attached" when the segment's atime and dtime
 * are 0. */
enum orphans_pid_state orphans_pid_state(int64_t pid, bool is_last_pid, const struct shmseg *s);
const char *orphans_pid_state_name(enum orphans_pid_state state); /* "alive", "gone", ... */

/* Classifies one segment; persistent_keys as in the profile. */
void orphans_classify(const struct shmseg *s, const uint32_t *persistent_keys, size_t npersistent_keys,
                      struct orphans_verdict *ret);

enum orphans_outcome {
    ORPHAN_REMOVED,
    ORPHAN_WOULD_REMOVE, /* --dry-run */
    ORPHAN_CHANGED,      /* no longer the segment scanned, or no longer an orphan: left alone */
    ORPHAN_ALREADY_GONE,
    ORPHAN_FAILED,       /* IPC_STAT or IPC_RMID refused (not the owner, not root) */
};

const char *orphans_outcome_name(enum orphans_outcome outcome); /* "removed", "would-remove", ... */

/* Removes the segment scanned as *s only when IPC_STAT finds it still that
 * segment (id, key, size, ctime, both pids) and still an orphan; with
 * dry_run, stops before IPC_RMID. why gets one sentence: why or why not. */
enum orphans_outcome orphans_remove(const struct shmseg *s, bool dry_run, char *why, size_t why_len);
