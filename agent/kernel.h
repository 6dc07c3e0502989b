#pragma once
/* The running kernel's limits in /proc/sys/kernel. Values are per IPC
 * namespace: these calls change only the caller's namespace. */

#include <stdint.h>

#include "sizing.h"

/* Writes value as plain decimal (the kernel reads "010" as octal).
 * Returns 0 or the negative errno of the open or the write; the caller
 * reads the value back with kernel_read_limit(). */
int kernel_write_limit(enum sizing_key_id id, uint64_t value);

int kernel_read_limit(enum sizing_key_id id, uint64_t *ret);

/* Reads a procfs file holding one plain decimal number: 0, the read's
 * negative errno, or -EBADMSG when it holds no such number. */
int kernel_read_uint(const char *path, uint64_t *ret);

/* The kernel's own counters of the caller's IPC namespace, from
 * shmctl(SHM_INFO): used_ids is the counter newseg() checks against shmmni
 * and shm_tot the one it checks against shmall, so decisions made on them
 * are the kernel's, not a sum over /proc/sysvipc/shm that could disagree. */
struct kernel_shm_usage {
    uint64_t segments;  /* used_ids */
    uint64_t pages;     /* shm_tot: whole pages of every segment */
    uint64_t rss_pages; /* shm_rss */
    uint64_t swap_pages; /* shm_swp */
};

/* Returns 0, or shmctl's negative errno. */
int kernel_read_shm_usage(struct kernel_shm_usage *ret);

/* "/proc/sys/kernel/shmmax" */
const char *kernel_limit_path(enum sizing_key_id id);
