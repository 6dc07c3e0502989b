#pragma once
/* Apply as a transaction: write the drop-in, write the running kernel's
 * limits, read them back, prove them with the probe; on any failure put
 * back the previous runtime values and drop-in bytes (or its absence).
 * The caller holds the lock and has refused conflicts. A removal plan
 * (removal.h) runs through the same steps: `shmprov remove`. */

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"
#include "probe.h"

struct apply_options {
    const char *root; /* write the drop-in under this directory only; NULL: the live system */
    bool no_verify;   /* skip the probe */
    bool persist_only; /* /proc/sys read-only here: write the drop-in anyway */
    bool keep_runtime; /* change the drop-in only, never the running kernel (remove --keep-runtime) */
};

enum apply_result { APPLY_UNCHANGED, APPLY_CHANGED, APPLY_FAILED, APPLY_NOT_APPLICABLE };

/* The error codes of a failed run (README "Reports": a stable set). */
#define APPLY_ERR_IO "io"                         /* the drop-in could not be written or synced */
#define APPLY_ERR_PERMISSION "permission"         /* not allowed to change the running kernel */
#define APPLY_ERR_HOST_UNREADABLE "host-unreadable" /* a fact apply needs could not be read */
#define APPLY_ERR_KERNEL_WRITE "kernel-write"     /* writing /proc/sys/kernel/shm* failed */
#define APPLY_ERR_READBACK "readback"             /* the kernel holds another value than written */
#define APPLY_ERR_PROBE "probe-failed"            /* the test allocation failed or could not run */

struct apply_key_outcome {
    bool written;      /* a value was written to /proc */
    bool after_known;
    int after_error;   /* when not after_known: the read's negative errno */
    uint64_t after;    /* what the kernel reports at the end */
};

struct apply_outcome {
    enum apply_result result;
    char dropin_path[4096]; /* where it was (or would be) written, root included */
    bool dropin_written; /* written, or for a removal plan deleted */
    int stale_temps_removed;
    struct apply_key_outcome keys[SIZING_KEY_COUNT];
    bool runtime_skipped; /* --root, or not applicable here */
    const char *runtime_skip_reason;
    bool probe_ran;
    struct probe_result probe;
    /* When result is APPLY_FAILED: what failed (a stable code and the step
     * it failed in, for programs; the text, for people), and what was put
     * back. */
    const char *error_code; /* APPLY_ERR_* */
    const char *error_step; /* "dropin", "runtime", "probe" */
    char error[4096 + 512];
    bool rollback_ran;
    bool rollback_incomplete; /* something could NOT be put back: restored says what */
    bool dropin_restored;     /* the drop-in this run wrote is back as it was */
    char restored[2 * 4096 + 512];
    /* Probe segments a killed shmprov left behind (probe.h), handled right
     * before the probe: how many were found (each with its outcome in
     * probe_leftovers) and how many of them were removed. */
    int probe_leftovers_found;
    int probe_leftovers_removed;
    struct probe_leftover probe_leftovers[PROBE_LEFTOVERS_MAX];
};

const char *apply_result_name(enum apply_result r);

/* Runs the transaction for plan; out's result says whether it failed. */
void apply_run(const struct plan *plan, const struct apply_options *o, struct apply_outcome *out);
