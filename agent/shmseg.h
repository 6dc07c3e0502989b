#pragma once
/* /proc/sysvipc/shm, row by row: every segment of the reader's IPC
 * namespace. Pure: text in, a table out, fed any bytes by the fuzz target. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sizing.h"

/* Flags the kernel keeps in the mode word (linux/shm.h). */
#define SHMSEG_MODE_DEST 01000   /* IPC_RMID while attached: goes when the last one detaches */
#define SHMSEG_MODE_LOCKED 02000 /* SHM_LOCK: pages kept in memory */

struct shmseg {
    uint32_t key;  /* the key_t's bits; 0 is IPC_PRIVATE (also every segment marked for destroy) */
    int32_t id;    /* shmid */
    unsigned mode; /* permission bits | SHMSEG_MODE_* */
    uint64_t size; /* bytes */
    /* As seen from the reader's pid namespace: 0 when the process is not
     * visible there, and lpid 0 too when nothing ever attached. */
    int64_t cpid, lpid;
    uint64_t nattch;
    uint32_t uid, gid, cuid, cgid;
    int64_t atime, dtime, ctime; /* seconds since the epoch; 0 = never */
    uint64_t rss, swap;          /* bytes resident / swapped (0 on kernels without the columns) */
};

struct shmseg_table {
    size_t count;
    struct shmseg items[]; /* in the kernel's order (by index) */
};

/* Parses len bytes of /proc/sysvipc/shm (the header line first). Returns 0
 * and a table to free with free(), or -EINVAL for text that is not that
 * table (a malformed, truncated or absurd row anywhere), or -ENOMEM. */
int shmseg_parse(const char *text, size_t len, struct shmseg_table **ret);

/* Sums a table as the kernel accounts it: shm_tot is whole pages; sums
 * saturate at UINT64_MAX. Returns 0 or -EINVAL (page_size 0). */
int shmseg_usage(const struct shmseg_table *t, uint64_t page_size, struct sizing_usage *ret);

/* "rw-------" style text of the low nine mode bits; buf holds >= 10 bytes. */
void shmseg_perms_text(unsigned mode, char buf[10]);
