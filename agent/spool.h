#pragma once
/* The spool of undelivered events: one file per event in one directory,
 * "<20-digit sequence>-<event id>.json", the sequence ordering events
 * oldest first across runs. Every file is written by fsutil_write_atomic()
 * (mode 0600), so a file in the spool is always a whole event.
 *
 * Bounded in count and bytes: an event that would exceed a bound pushes
 * out the oldest ones, and how many were pushed out is kept in a counter
 * file ("dropped.count") until a delivered report has carried it. Nothing
 * else deletes an event but spool_remove(), which the caller calls only
 * after a 2xx.
 *
 * One process at a time: the caller holds the apply lock. */

#include <stddef.h>
#include <stdint.h>

/* Files larger than this are never written and, when found, skipped. */
#define SPOOL_MAX_EVENT_BYTES ((size_t)1024 * 1024)

/* Name of the drop counter inside the spool directory. */
#define SPOOL_DROPPED_FILE "dropped.count"

struct spool;

struct spool_entry {
    char name[128];  /* file name inside the spool directory */
    char id[64];     /* the event id (a UUID) */
    uint64_t bytes;  /* size when listed */
    /* 0, or why the file can't be used (the caller warns and skips it; it
     * is never deleted nor counted against the bounds): -ELOOP a symlink,
     * -EINVAL not a regular file (a FIFO...), -EFBIG over
     * SPOOL_MAX_EVENT_BYTES, or the errno of opening it (-EACCES). */
    int error;
};

/* Opens dir, creating it (and missing parents) mode 0700. Refused: a
 * symlink as dir itself (-ELOOP), a directory writable by group or others
 * or owned by another user (-EPERM), max_count 0 (-EINVAL), a damaged
 * counter file (-EBADMSG). Temporary files a killed run left behind (older
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
 * a loss). On failure nothing was written and nothing deleted. */
int spool_put(struct spool *s, const char *event_id, const char *json, size_t len);

/* Every event file, oldest first, including unusable ones (entry.error).
 * Other names, names starting with '.', and the counter are not listed.
 * Symlinks are never followed and FIFOs never opened. free() the array;
 * *ret is NULL when the count is 0. */
int spool_list(struct spool *s, struct spool_entry **ret, size_t *ret_count);

/* Reads an event: NUL-terminated, malloc'd. */
int spool_read(struct spool *s, const struct spool_entry *e, char **ret_json, size_t *ret_len);

/* Deletes a delivered event durably. -ENOENT when it is already gone. */
int spool_remove(struct spool *s, const struct spool_entry *e);

/* Events dropped by the bounds and not yet reported. */
uint64_t spool_dropped(const struct spool *s);

/* After a report carrying spool_dropped() == n was delivered: subtracts n
 * (drops that happened since stay counted) and persists the counter. */
int spool_clear_dropped(struct spool *s, uint64_t reported);
