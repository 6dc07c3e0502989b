#pragma once
/* The probe (README "apply, a transaction", step 5): proves with real
 * shmget() calls that the running kernel enforces the limits apply has just
 * written, in the agent's own IPC namespace. Every shmget carries
 * SHM_NORESERVE and only the one-page round-trip segment is ever touched,
 * so probing a 64 GiB limit costs no memory. No segment the probe creates
 * survives it: each create->IPC_RMID window runs with all catchable signals
 * blocked, and what SIGKILL leaves there carries SHMPROV_PROBE_KEY, so the
 * next apply removes it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "orphans.h"
#include "shmseg.h"

/* The key of every segment the probe creates ("shmp" in ASCII), so a
 * leftover can be told from everybody else's. IPC_CREAT | IPC_EXCL: the
 * probe never opens an existing segment, and IPC_RMID makes the key private
 * at once. When another segment holds the key, the probe uses IPC_PRIVATE
 * segments, never touches the holder, and says whose the key is (key_note):
 * failing would let any local user make every apply roll back. */
#define SHMPROV_PROBE_KEY 0x73686d70

/* A key names one segment at a time, so there is at most one leftover;
 * room for more only matters for a table faked by the tests. */
#define PROBE_LEFTOVERS_MAX 4

/* The limits the kernel should be enforcing now (what apply wrote). */
struct probe_limits {
    uint64_t shmmax;       /* bytes */
    uint64_t shmall;       /* pages */
    uint64_t shmmni;       /* segments */
    uint64_t page_size;    /* must be the running kernel's */
    int overcommit_memory; /* vm.overcommit_memory, -1 when unknown */
    /* Skip the round trip (apply when it changed nothing: the limits are
     * still proven by the upper bound and the acceptance, and the round
     * trip tests none). */
    bool skip_round_trip;
    /* The profile lists SHMPROV_PROBE_KEY as persistent (another program's,
     * probe_key_persistent()): the probe then never uses it, only
     * IPC_PRIVATE segments. */
    bool key_persistent;
};

enum probe_step_status { PROBE_PASSED, PROBE_FAILED, PROBE_SKIPPED };

struct probe_step {
    enum probe_step_status status;
    /* The errno the decisive call returned, 0 when none: not only for
     * failures (the upper bound passes with EINVAL, say). */
    int err;
    uint64_t bytes; /* size of the segment requested, 0 when none was */
    char detail[256]; /* one sentence for people; why it passed/failed/was skipped */
};

struct probe_result {
    struct probe_step upper_bound, acceptance, round_trip;
    /* Usage (shmctl SHM_INFO) the acceptance was decided on: read right
     * before it, and again when the kernel's answer disagreed with it. */
    uint64_t shm_tot_pages;
    uint64_t segments;
    uint64_t headroom_bytes; /* largest segment that fits now: probe_headroom() */
    bool passed;             /* no step FAILED (SKIPPED is not a failure) */
    /* Empty, or why SHMPROV_PROBE_KEY could not be used and whose it is:
     * the probe then used private segments (a warning, not a failure). */
    char key_note[384];
};

/* A probe segment a killed shmprov left behind. */
struct probe_leftover {
    struct shmseg seg; /* its row of /proc/sysvipc/shm */
    /* Filled by probe_remove_leftovers() only: */
    enum orphans_outcome outcome;
    char why[160];
};

/* Runs the three steps and fills *ret: 0 whether or not ret->passed. A
 * negative errno means the probe could not run and *ret is untouched:
 * -EINVAL for a page_size not the running kernel's, or the errno of
 * shmctl(SHM_INFO) or sigprocmask. */
int probe_run(const struct probe_limits *limits, struct probe_result *ret);

/* "passed", "failed", "skipped" (also the report's JSON values). */
const char *probe_status_name(enum probe_step_status status);

/* Whether row s of /proc/sysvipc/shm is a probe segment a killed shmprov
 * left behind: key SHMPROV_PROBE_KEY, mode 0600, owned and created by euid,
 * and an orphan by orphans_classify(). */
bool probe_is_leftover(const struct shmseg *s, uid_t euid);

/* Whether keys (a profile's segments.persistent_keys) name
 * SHMPROV_PROBE_KEY: another program's segment that must outlive its
 * creator then uses it, and nothing with the key is treated as a leftover. */
bool probe_key_persistent(const uint32_t *keys, size_t nkeys);

/* Copies the leftovers of table t (probe_is_leftover() for euid) into ret,
 * at most max, and returns how many there are (possibly more than max). */
size_t probe_find_leftovers(const struct shmseg_table *t, uid_t euid, struct probe_leftover *ret, size_t max);

/* Removes the leftovers of geteuid() that orphans_remove()'s re-check finds
 * unchanged. Fills ret[0..n) (n at most max) with each and its outcome;
 * returns n, or a negative errno when the table cannot be read. */
int probe_remove_leftovers(struct probe_leftover *ret, size_t max);
