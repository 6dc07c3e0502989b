#pragma once
/* The spool of undelivered events: one file per event in one directory,
 * "<20-digit sequence>-<event id>.json", the sequence ordering events
 * oldest first across runs. Every file is written by fsutil_write_atomic()
 * (mode 0600), so a file in the spool is always a whole event.
 *
 * Bounded in count and bytes: an event that would exceed a bound pushes
 * out the oldest ones, counted (enum spool_counter) until a delivered
 * report has carried the count. Nothing else deletes an event but
 * spool_remove(), which the caller calls only after a 2xx.
 *
 * One process at a time: the caller holds the spool lock. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Files larger than this are never written and, when found, skipped. */
#define SPOOL_MAX_EVENT_BYTES ((size_t)1024 * 1024)

/* Names inside the spool directory: the counters, and the directories
 * (mode 0700, made on demand) that events are set aside in. */
#define SPOOL_DROPPED_FILE "dropped.count"
#define SPOOL_QUARANTINED_FILE "quarantined.count"
#define SPOOL_QUARANTINE_DIR "quarantine"
#define SPOOL_REJECTED_FILE "rejected.count"
#define SPOOL_REJECTED_DIR "rejected"
/* Next to a counter ("dropped.count.unknown"): see spool_count_unknown(). */
#define SPOOL_UNKNOWN_SUFFIX ".unknown"

enum spool_counter {
    SPOOL_COUNTER_DROPPED,     /* pushed out by the bounds */
    SPOOL_COUNTER_QUARANTINED, /* moved to the quarantine directory */
    SPOOL_COUNTER_REJECTED,    /* moved to the rejected directory */
    SPOOL_COUNTERS
};

struct spool;

struct spool_entry {
    char name[128];  /* file name inside the spool directory */
    char id[64];     /* the event id (a UUID) */
    uint64_t bytes;  /* size when listed */
    /* 0, or why the file can't be used (it is never deleted nor counted
     * against the bounds): -ELOOP a symlink, -EINVAL not a regular file (a
     * FIFO...), -EFBIG over SPOOL_MAX_EVENT_BYTES, or the errno of opening
     * it (-EACCES, -EMFILE). */
    int error;
};

/* Opens dir, creating it (and missing parents) mode 0700. Refused: a
 * symlink as dir itself (-ELOOP), a directory writable by group or others
 * or owned by another user (-EPERM), max_count 0 (-EINVAL). A counter file
 * that is damaged or cannot be read is no failure: see
 * spool_counter_damaged(). Temporary files a killed run left behind (older
 * than 10 minutes, so never a concurrent writer's) are deleted. */
int spool_open(const char *dir, size_t max_count, uint64_t max_bytes, struct spool **ret);
void spool_close(struct spool *s); /* NULL is a no-op */

/* The directory, for messages. */
const char *spool_path(const struct spool *s);

/* Stores an event. event_id must be a lowercase UUID (-EINVAL otherwise);
 * an event already spooled under that id is kept as it is (returns 0).
 * -EFBIG when len is over SPOOL_MAX_EVENT_BYTES or over max_bytes alone.
 * The event is written first; only then are the oldest events deleted
 * until both bounds hold again, each one counted as dropped (the counter
 * is written before the deletions, so a crash can over-count, never hide
 * a loss). On failure nothing was written and nothing deleted. Returns 0
 * when the event is in the spool; then *ret_sync_error (may be NULL) is 0,
 * or why the directory could not be synced after it (a crash may still
 * lose it). */
int spool_put(struct spool *s, const char *event_id, const char *json, size_t len, int *ret_sync_error);

/* Every event file, oldest first, including unusable ones (entry.error).
 * Other names, names starting with '.', the counters and the quarantine
 * directory are not listed. Symlinks are never followed and FIFOs never
 * opened. free() the array; *ret is NULL when the count is 0. */
int spool_list(struct spool *s, struct spool_entry **ret, size_t *ret_count);

/* Reads an event: NUL-terminated, malloc'd. */
int spool_read(struct spool *s, const struct spool_entry *e, char **ret_json, size_t *ret_len);

/* Deletes a delivered event durably. -ENOENT when it is already gone. */
int spool_remove(struct spool *s, const struct spool_entry *e);

/* Moves an event that must never be sent again to the directory of
 * counter c under the same name and counts it: a damaged one to
 * SPOOL_QUARANTINE_DIR (SPOOL_COUNTER_QUARANTINED), one the collector
 * refused as malformed to SPOOL_REJECTED_DIR (SPOOL_COUNTER_REJECTED).
 * Counted first: a crash can over-count, never hide one; not counted, not
 * moved. Returns 0 when it moved; then *ret_sync_error (may be NULL) is 0,
 * or why the directories could not be synced (the move may not survive a
 * crash). A negative errno: it is still in place. */
int spool_set_aside(struct spool *s, const struct spool_entry *e, enum spool_counter c, int *ret_sync_error);

/* The counter's file name inside the spool directory. */
const char *spool_counter_file(enum spool_counter c);

/* Events counted and not yet reported. */
uint64_t spool_count(const struct spool *s, enum spool_counter c);

/* True when spool_count() may be short: the counter file was found damaged
 * or unreadable (by this run or by one whose report has not been delivered
 * yet), and was rewritten to count from 0. */
bool spool_count_unknown(const struct spool *s, enum spool_counter c);

/* 0, or why spool_open() found this counter file unusable: -EBADMSG (not a
 * number) or the errno of reading it. *ret_rewrite_error (may be NULL) is 0
 * or why it could not be rewritten then. */
int spool_counter_damaged(const struct spool *s, enum spool_counter c, int *ret_rewrite_error);

/* After a report carrying reported (and, when unknown_reported,
 * "unknown") was delivered, this run's or an older one: subtracts what it
 * carried, down to 0 at most (what was counted since stays counted), and
 * persists the counter. */
int spool_clear_count(struct spool *s, enum spool_counter c, uint64_t reported, bool unknown_reported);

/* What the spool in dir holds, for gauges: read without the lock a
 * delivery may hold for its whole network deadline, and without changing
 * anything (unlike spool_open()); each figure is whole, but they may be
 * from moments apart. A missing directory is an empty spool. Returns 0 (a
 * damaged counter has count_known false), or a negative errno when the
 * directory cannot be listed. */
struct spool_figures {
    uint64_t waiting; /* event files */
    uint64_t count[SPOOL_COUNTERS];
    bool count_known[SPOOL_COUNTERS];
};
int spool_peek(const char *dir, struct spool_figures *ret);
