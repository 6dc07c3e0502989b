#pragma once
/* Facts about the running host, read from /proc and sysconf. Reading never
 * changes anything. The parsers are declared in testing.h, for the tests. */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sizing.h"

struct host_facts {
    uint64_t memtotal_bytes; /* 0 when /proc/meminfo could not be read */
    char memtotal_error[PATH_MAX + 96]; /* why, when memtotal_bytes is 0: "PATH: reason" */
    uint64_t page_size;
    struct sizing_current current; /* kernel.shmmax/shmall/shmmni now */
    /* /proc/sysvipc/shm, read once per run: the usage is summed from it,
     * status and verify list it. NULL when unreadable: segments_errno says
     * why. Owned: host_facts_free(), or the plan it is moved into. */
    struct shmseg_table *segments;
    int segments_errno;
    bool usage_known;
    struct sizing_usage usage; /* from segments */
    int overcommit_memory;     /* vm.overcommit_memory, -1 when unknown */
    bool commit_known;         /* CommitLimit and Committed_AS from /proc/meminfo */
    uint64_t commit_limit_bytes, committed_bytes;
    /* 0 when /proc/sys/kernel/shm* can be written here; otherwise the errno:
     * EROFS (read-only /proc/sys: a container), EACCES/EPERM (not root). */
    int runtime_write_errno;
    char hostname[256];
    char kernel_release[128];
};

/* Fills *ret. Individual facts that cannot be read are marked unknown (see
 * the fields); returns a negative errno only when nothing sensible can be
 * derived (no page size). */
int host_read(struct host_facts *f);
void host_facts_free(struct host_facts *h);

struct shmseg_table;
/* Reads every segment of this IPC namespace from /proc/sysvipc/shm (or
 * $SHMPROV_TEST_PROC_DIR/sysvipc/shm: a test-only override, also for
 * meminfo). Returns 0 and a table to free(), or a negative errno. */
int host_read_segments(struct shmseg_table **ret);

/* Why /proc/sysvipc/shm could not be read (a positive errno), for people. */
const char *host_segments_reason(int err);

/* Text for runtime_write_errno, for people. */
const char *host_runtime_write_reason(int err);
