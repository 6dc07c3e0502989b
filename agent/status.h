#pragma once
/* `shmprov status`: the System V shared memory of this IPC namespace now
 * (limits and who sets them at boot, usage, headroom, overcommit, the
 * namespace, every segment with its orphan verdict). Gathering only reads;
 * status_show.h renders it. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "conflicts.h"
#include "kernel.h"
#include "orphans.h"
#include "plan.h"
#include "shmseg.h"

/* The initial namespaces' fixed inode numbers (include/linux/proc_ns.h). */
#define STATUS_INITIAL_IPC_NS_INO UINT64_C(0xEFFFFFFF)
#define STATUS_INITIAL_PID_NS_INO UINT64_C(0xEFFFFFFC)
#define STATUS_INITIAL_USER_NS_INO UINT64_C(0xEFFFFFFD)

struct status_namespace {
    bool ipc_known;
    uint64_t ipc_ino;  /* /proc/self/ns/ipc */
    bool ipc_initial;  /* the host's IPC namespace: these limits are the host's */
    bool pid_initial, user_initial;
    const char *container; /* "docker", "podman", "lxc", ... or NULL when none detected */
    char container_buf[64];
};

struct status {
    const struct plan *plan; /* profile, host facts (limits, overcommit), drop-in path */
    struct status_namespace ns;
    bool kernel_known;
    struct kernel_shm_usage kernel; /* the kernel's counters (SHM_INFO) */
    /* Segments and pages in use: the kernel's counters when it gave them,
     * else the table's sums. */
    uint64_t segments_in_use, pages_in_use;
    const struct shmseg_table *segments; /* NULL when /proc/sysvipc/shm could not be read */
    int segments_errno;
    struct sizing_usage table; /* the table's sums, as plan counts them */
    struct orphans_verdict *verdicts; /* one per segment */
    size_t norphans, npersistent_orphans; /* candidates, probe leftovers not included */
    size_t nleftovers; /* probe segments a killed shmprov left (verdict.probe_leftover) */
    struct sizing_headroom headroom; /* under the running limits, from the usage above */
    /* Who sets each key at boot, under systemd-sysctl's and procps' rules:
     * the analysis verify makes (boot_known false when it failed). */
    bool boot_known;
    struct conflicts boot;
};

/* orphans_classify() plus probe_leftover: shmprov's own test segment is
 * not an orphan of unknown origin, unless its key is persistent. */
void status_judge_segment(const struct shmseg *seg, const struct profile *p, uid_t euid,
                          struct orphans_verdict *ret);

/* Reads everything else for plan's profile and host, and judges segments
 * (borrowed: NULL when they could not be read, segments_errno says why).
 * Returns 0, or -ENOMEM. */
int status_gather(const struct plan *plan, const struct shmseg_table *segments, int segments_errno,
                  struct status **ret);
void status_free(struct status *s);
