#include "apply.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "kernel.h"
#include "removal.h"

static const char *const result_names[] = { "unchanged", "changed", "failed", "not-applicable" };

const char *apply_result_name(enum apply_result r) { return result_names[r]; }

static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(buf + used, size - used, fmt, ap); /* cut short when full, by design */
    va_end(ap);
}

/* Writes text at path, or deletes path when text is NULL. Returns 0 or a
 * negative errno; *ret_in_place says whether the change took all the same
 * (only the directory's fsync after it failed, or nothing was left to
 * delete). */
static int put_dropin(const char *path, const char *text, size_t len, mode_t mode, bool *ret_in_place)
{
    struct stat st;
    int r;

    if (text)
        return fsutil_write_atomic_renamed(path, text, len, mode, ret_in_place);
    r = fsutil_remove_durable(path);
    *ret_in_place = r >= 0 || (lstat(path, &st) < 0 && errno == ENOENT);
    return r;
}

/* Puts back the drop-in exactly as it was: its old bytes, or its absence.
 * A failed directory fsync after the rename or the unlink still leaves the
 * old state in place: said, but not counted as a failure to restore. */
static void restore_dropin(const struct plan *plan, struct apply_outcome *out)
{
    const char *sep = out->restored[0] ? "; " : "", *path = out->dropin_path;
    char *buf = out->restored;
    size_t size = sizeof(out->restored);
    bool back = false;
    int r = put_dropin(path, plan->dropin_old, plan->dropin_old_len, (mode_t)plan->dropin_old_mode, &back);

    out->dropin_restored = r >= 0 || back;
    out->rollback_incomplete |= !out->dropin_restored;
    if (plan->dropin_old && r < 0 && back)
        append(buf, size, "%sdrop-in %s restored to its previous bytes (but its directory could not be synced: %s)",
               sep, path, strerror(-r));
    else if (plan->dropin_old && r < 0 && !plan->dropin_new)
        append(buf, size, "%sdrop-in %s NOT restored: %s; it is deleted", sep, path, strerror(-r));
    else if (plan->dropin_old && r < 0)
        append(buf, size, "%sdrop-in %s NOT restored: %s; it holds the new bytes (%zu bytes)", sep, path,
               strerror(-r), plan->dropin_new_len);
    else if (plan->dropin_old)
        append(buf, size, "%sdrop-in %s restored to its previous bytes", sep, path);
    else if (r < 0 && r != -ENOENT && back)
        append(buf, size, "%sdrop-in %s removed (it did not exist; but its directory could not be synced: %s)", sep,
               path, strerror(-r));
    else if (!back)
        append(buf, size, "%sdrop-in %s NOT removed (it did not exist before): %s; it holds the new bytes", sep,
               path, strerror(-r));
    else
        append(buf, size, "%sdrop-in %s removed (it did not exist)", sep, path);
}

static void set_error_code(struct apply_outcome *out, const char *code, const char *step)
{
    out->error_code = code;
    out->error_step = step;
}

/* Writes value and reads it back: 0, or a negative errno with *ret_seen
 * and *ret_seen_known telling what the kernel holds as far as known, and
 * *ret_written whether the write itself went through (the read-back is
 * what failed). */
static int write_and_confirm(enum sizing_key_id id, uint64_t value, uint64_t *ret_seen, bool *ret_seen_known,
                             bool *ret_written, char *why, size_t why_len)
{
    int r = kernel_write_limit(id, value);

    *ret_written = r >= 0;
    if (r < 0) {
        (void)snprintf(why, why_len, "cannot write %" PRIu64 " to %s: %s", value, kernel_limit_path(id),
                       strerror(-r));
        *ret_seen_known = kernel_read_limit(id, ret_seen) == 0;
        return r;
    }
    r = kernel_read_limit(id, ret_seen);
    *ret_seen_known = r == 0;
    if (r < 0) {
        (void)snprintf(why, why_len, "wrote %" PRIu64 " to %s but cannot read it back: %s", value,
                       kernel_limit_path(id), strerror(-r));
        return r;
    }
    if (*ret_seen != value) {
        (void)snprintf(why, why_len, "wrote %" PRIu64 " to %s but the kernel reports %" PRIu64, value,
                       kernel_limit_path(id), *ret_seen);
        return -ERANGE;
    }
    return 0;
}

/* Writes back the values the kernel had before, for every key touched.
 * Only values that were read are ever written (apply refuses to start
 * otherwise). A rollback is worth a second attempt: the fault that failed
 * the step before may have been a passing one. */
static void restore_runtime(const struct plan *plan, struct apply_outcome *out)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        const char *sep = out->restored[0] ? "; " : "";
        char why[256];
        uint64_t seen = 0;
        bool seen_known = false, wrote = false;
        int r;

        if (!out->keys[id].written || !k->current_known)
            continue;
        r = write_and_confirm(id, k->current, &seen, &seen_known, &wrote, why, sizeof(why));
        if (r < 0)
            r = write_and_confirm(id, k->current, &seen, &seen_known, &wrote, why, sizeof(why));
        /* A write that failed may still leave the value it was to put
         * back (it never changed): that is restored. */
        if (r < 0 && seen_known && seen == k->current)
            r = 0;
        out->rollback_incomplete |= r < 0;
        if (r < 0 && seen_known)
            append(out->restored, sizeof(out->restored), "%s%s NOT restored to %" PRIu64 " (%s); it holds %" PRIu64,
                   sep, sizing_key_name(id), k->current, why, seen);
        else if (r < 0)
            append(out->restored, sizeof(out->restored), "%s%s NOT restored to %" PRIu64 " (%s); its value is unknown",
                   sep, sizing_key_name(id), k->current, why);
        else
            append(out->restored, sizeof(out->restored), "%s%s restored to %" PRIu64, sep, sizing_key_name(id),
                   k->current);
    }
}

static int write_runtime(const struct plan *plan, struct apply_outcome *out)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        uint64_t seen = 0;
        bool seen_known = false, wrote = false;
        int r;

        if (!k->managed || (k->current_known && k->current == k->target))
            continue;
        out->keys[id].written = true; /* even a failed write may have landed */
        r = write_and_confirm(id, k->target, &seen, &seen_known, &wrote, out->error, sizeof(out->error));
        if (r < 0) {
            set_error_code(out, wrote ? APPLY_ERR_READBACK : APPLY_ERR_KERNEL_WRITE, "runtime");
            return r;
        }
    }
    return 0;
}

static void read_after(struct apply_outcome *out)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        int r = kernel_read_limit(id, &out->keys[id].after);
        out->keys[id].after_known = r == 0;
        out->keys[id].after_error = r;
    }
}

/* Every value written was read back at once; read all again before the
 * probe, so another process changing them meanwhile is caught too. */
static int check_after(const struct plan *plan, struct apply_outcome *out)
{
    read_after(out);
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        if (!k->managed || (out->keys[id].after_known && out->keys[id].after == k->target))
            continue;
        if (!out->keys[id].after_known) {
            (void)snprintf(out->error, sizeof(out->error), "cannot read %s back before the test allocation: %s",
                           kernel_limit_path(id), strerror(-out->keys[id].after_error));
            return out->keys[id].after_error;
        }
        (void)snprintf(out->error, sizeof(out->error),
                       "%s: the kernel reports %" PRIu64 " instead of %" PRIu64 " (another process changing it?)",
                       kernel_limit_path(id), out->keys[id].after, k->target);
        return -ERANGE;
    }
    return 0;
}

/* Rollback writes back only what was read: a key whose value is unknown
 * would have nothing (or 0) to go back to. */
static int check_current_known(const struct plan *plan, struct apply_outcome *out)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        if (!k->managed || k->current_known)
            continue;
        (void)snprintf(out->error, sizeof(out->error),
                       "cannot read %s: %s; refusing to change a limit whose value could not be put back "
                       "(nothing changed)",
                       kernel_limit_path(id), strerror(-plan->host.current.error[id]));
        return -EIO;
    }
    return 0;
}


/* The probe proves the values apply meant to set, not whatever the kernel
 * holds by now; a key the plan leaves alone is proven as read back. */
static uint64_t probe_limit(const struct plan *plan, const struct apply_outcome *out, enum sizing_key_id id)
{
    const struct sizing_key *k = &plan->sizing.keys[id];

    if (k->managed)
        return k->target;
    return out->keys[id].after_known ? out->keys[id].after : removal_kernel_default(id);
}

static int run_probe(const struct plan *plan, bool changed, struct apply_outcome *out)
{
    struct probe_limits limits = {
        .shmmax = probe_limit(plan, out, SIZING_KEY_SHMMAX),
        .shmall = probe_limit(plan, out, SIZING_KEY_SHMALL),
        .shmmni = probe_limit(plan, out, SIZING_KEY_SHMMNI),
        .page_size = plan->host.page_size,
        .overcommit_memory = plan->host.overcommit_memory,
        .skip_round_trip = !changed,
        .key_persistent = probe_key_persistent(plan->profile->persistent_keys, plan->profile->npersistent_keys),
    };
    int r = probe_run(&limits, &out->probe);

    if (r < 0) {
        (void)snprintf(out->error, sizeof(out->error), "the test allocation could not run: %s", strerror(-r));
        return r;
    }
    out->probe_ran = true;
    if (!out->probe.passed) {
        const struct probe_step *failed = out->probe.upper_bound.status == PROBE_FAILED ? &out->probe.upper_bound
                                          : out->probe.acceptance.status == PROBE_FAILED ? &out->probe.acceptance
                                                                                         : &out->probe.round_trip;
        (void)snprintf(out->error, sizeof(out->error), "test allocation failed: %s", failed->detail);
        return -EPROTO;
    }
    return 0;
}

/* Whether the running kernel is touched: skipped under --root and
 * --keep-runtime, and where /proc/sys is read-only (then, unless the
 * drop-in is to change anyway, there is nothing to do: returns 1). -1:
 * refused, not allowed to change it. */
static int decide_runtime(const struct plan *plan, const struct apply_options *o, bool runtime_changes,
                          struct apply_outcome *out)
{
    if (o->root) {
        out->runtime_skipped = true;
        out->runtime_skip_reason = plan->dropin_new ? "--root: the drop-in is written under the root only; the running "
                                                      "kernel is not touched"
                                                    : "--root: the drop-in is deleted under the root only; the running "
                                                      "kernel is not touched";
    } else if (o->keep_runtime) {
        out->runtime_skipped = true;
        out->runtime_skip_reason = "--keep-runtime: the drop-in is deleted; the running kernel is not touched";
    } else if (plan->host.runtime_write_errno == EROFS) {
        out->runtime_skipped = true;
        out->runtime_skip_reason = host_runtime_write_reason(EROFS);
        if (!o->persist_only) {
            out->result = APPLY_NOT_APPLICABLE;
            return 1;
        }
    } else if (plan->host.runtime_write_errno != 0 && runtime_changes) {
        (void)snprintf(out->error, sizeof(out->error), "cannot change the running kernel: %s (nothing changed)",
                       host_runtime_write_reason(plan->host.runtime_write_errno));
        set_error_code(out, APPLY_ERR_PERMISSION, "runtime");
        return -1;
    }
    return 0;
}

/* A removal plan (no new text) deletes the drop-in; any other plan writes
 * it when its bytes differ. Returns 0, 1 when the change is in place but
 * not durable (its directory could not be synced: undone like any other
 * change rather than half-succeed), or -1 when nothing changed. */
static int change_dropin(const struct plan *plan, struct apply_outcome *out)
{
    bool renamed = false;
    int r;

    if (!plan->dropin_changed)
        return 0;
    r = put_dropin(out->dropin_path, plan->dropin_new, plan->dropin_new_len, 0644, &renamed);
    out->dropin_written = r >= 0 || renamed;
    if (r >= 0)
        return 0;
    set_error_code(out, APPLY_ERR_IO, "dropin");
    if (renamed)
        (void)snprintf(out->error, sizeof(out->error), "%s %s but cannot sync its directory: %s",
                       plan->dropin_new ? "wrote" : "deleted", out->dropin_path, strerror(-r));
    else
        (void)snprintf(out->error, sizeof(out->error), "cannot %s %s: %s%s (not %s)",
                       plan->dropin_new ? "write" : "delete", out->dropin_path, strerror(-r),
                       r == -ELOOP ? " (a symbolic link: refused)" : "", plan->dropin_new ? "written" : "deleted");
    return renamed ? 1 : -1;
}

static void roll_back(const struct plan *plan, struct apply_outcome *out)
{
    out->rollback_ran = true;
    restore_runtime(plan, out);
    if (out->dropin_written)
        restore_dropin(plan, out);
    read_after(out);
    out->result = APPLY_FAILED;
}

/* The drop-in's directory under an image root may not exist yet; the
 * temporary files of a run killed between create and rename go. */
static int prepare_dropin_dir(const struct plan *plan, const struct apply_options *o, struct apply_outcome *out)
{
    int r;

    if (o->root && plan->dropin_new && (r = fsutil_mkdir_parents(out->dropin_path)) < 0) {
        (void)snprintf(out->error, sizeof(out->error), "cannot create the directory of %s: %s", out->dropin_path,
                       strerror(-r));
        set_error_code(out, APPLY_ERR_IO, "dropin");
        return r;
    }
    out->stale_temps_removed = fsutil_remove_stale_temps(out->dropin_path, 0);
    return 0;
}

/* Everything that would stop the run, decided before anything is touched:
 * 0 to go on, 1 when there is nothing to do here (not applicable), -1
 * refused with out's error set. */
static int check_before_touching(const struct plan *plan, const struct apply_options *o, bool runtime_changes,
                                 struct apply_outcome *out)
{
    int r;

    if (plan->dropin_problem[0]) {
        (void)snprintf(out->error, sizeof(out->error), "%s (nothing changed)", plan->dropin_problem);
        set_error_code(out, APPLY_ERR_IO, "dropin");
        return -1;
    }
    r = decide_runtime(plan, o, runtime_changes, out);
    if (r != 0)
        return r;
    if (!out->runtime_skipped && check_current_known(plan, out) < 0) {
        set_error_code(out, APPLY_ERR_HOST_UNREADABLE, "runtime");
        return -1;
    }
    return prepare_dropin_dir(plan, o, out) < 0 ? -1 : 0;
}

void apply_run(const struct plan *plan, const struct apply_options *o, struct apply_outcome *out)
{
    bool runtime_changes = false;
    int r;

    memset(out, 0, sizeof(*out));
    _Static_assert(sizeof(out->dropin_path) >= sizeof(plan->dropin_path), "dropin_path would be truncated");
    (void)snprintf(out->dropin_path, sizeof(out->dropin_path), "%s", plan->dropin_path);
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        runtime_changes |= k->managed && (!k->current_known || k->current != k->target);
    }

    r = check_before_touching(plan, o, runtime_changes, out);
    if (r > 0)
        return; /* not applicable here: nothing to do */
    if (r < 0 || (r = change_dropin(plan, out)) < 0) {
        out->result = APPLY_FAILED; /* nothing changed */
        return;
    }
    if (r > 0) /* changed, but not durably: undone */
        goto rollback;

    if (out->runtime_skipped) {
        out->result = out->dropin_written ? APPLY_CHANGED : APPLY_UNCHANGED;
        return;
    }

    if (write_runtime(plan, out) < 0)
        goto rollback;
    if (check_after(plan, out) < 0) {
        set_error_code(out, APPLY_ERR_READBACK, "runtime");
        goto rollback;
    }
    if (!o->no_verify && run_probe(plan, out->dropin_written || runtime_changes, out) < 0) {
        set_error_code(out, APPLY_ERR_PROBE, "probe");
        goto rollback;
    }

    out->result = out->dropin_written || runtime_changes ? APPLY_CHANGED : APPLY_UNCHANGED;
    return;

rollback:
    roll_back(plan, out);
}
