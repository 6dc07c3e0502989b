/* `shmprov apply`: lock, plan, refuse conflicts, then the transaction
 * (apply.c), then say what happened. `apply --dry-run` is `plan`. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apply.h"
#include "cli.h"
#include "conflicts.h"
#include "delivery.h"
#include "host.h"
#include "lock.h"
#include "report.h"
#include "log.h"


static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *step_text(const struct probe_step *s)
{
    return s->detail[0] ? s->detail : probe_status_name(s->status);
}

static void print_text(const struct plan *plan, const struct conflicts *c, const struct apply_outcome *out)
{
    printf("shmprov apply: %s\n", apply_result_name(out->result));
    if (out->result == APPLY_NOT_APPLICABLE) {
        printf("  runtime not applicable here: %s\n", out->runtime_skip_reason);
        printf("  nothing changed; 'shmprov apply --persist-only' writes the drop-in anyway\n");
        return;
    }
    printf("  drop-in %s: %s\n", out->dropin_path,
           out->dropin_written && out->result == APPLY_FAILED ? "written, then put back (see restored)"
           : out->dropin_written                             ? "written"
           : plan->dropin_changed                            ? "not written"
                                                             : "unchanged");
    for (int id = 0; id < KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        if (!k->managed)
            continue;
        if (out->runtime_skipped)
            printf("  %s: target %" PRIu64 " (running kernel not touched)\n", sizing_key_name(id), k->target);
        else if (out->keys[id].written && out->result != APPLY_FAILED)
            printf("  %s: %" PRIu64 " -> %" PRIu64 " (%s)\n", sizing_key_name(id), k->current,
                   out->keys[id].after, sizing_action_name(k->action));
        else if (!out->keys[id].after_known && !k->current_known)
            printf("  %s: unknown (cannot be read)\n", sizing_key_name(id));
        else /* refused before the kernel was read again: the plan's value */
            printf("  %s: %" PRIu64 "%s\n", sizing_key_name(id),
                   out->keys[id].after_known ? out->keys[id].after : k->current,
                   out->keys[id].written ? "" : " (unchanged)");
    }
    for (size_t i = 0; i < c->nwarnings; i++)
        printf("  warning: %s\n", c->warnings[i]);
    if (out->runtime_skipped)
        printf("  runtime and test allocation skipped: %s\n", out->runtime_skip_reason);
    if (out->probe_ran)
        printf("  test allocation: upper bound %s; acceptance %s; round trip %s\n",
               step_text(&out->probe.upper_bound), step_text(&out->probe.acceptance),
               step_text(&out->probe.round_trip));
    if (out->result == APPLY_FAILED) {
        printf("  failed: %s\n", out->error);
        if (out->restored[0])
            printf("  restored: %s\n", out->restored);
    }
}

/* A report that cannot be delivered is spooled, never an apply failure. */
static void send_report(const struct plan *plan, const struct conflicts *c, const struct apply_outcome *out,
                        uint64_t duration_ms, bool defer)
{
    const struct profile *p = plan->profile;
    struct delivery_summary sum;
    struct lock *spool_lock = NULL;
    long holder = 0;
    int r;

    if (!defer)
        delivery_splay(p);
    /* Another shmprov delivering holds the spool at most its network
     * deadline; wait that long. Failing that, only spool the event (its
     * file is written atomically under a unique name): never lose it. */
    r = lock_acquire(LOCK_SPOOL_PATH, p->report.timeout_s * 1000u + LOCK_WAIT_MS, &spool_lock, &holder);
    if (r < 0) {
        log_warn("cannot lock %s (%s%ld): keeping the report for a later run", LOCK_SPOOL_PATH,
                 r == -EWOULDBLOCK ? "held by pid " : strerror(-r), r == -EWOULDBLOCK ? holder : 0L);
        defer = true;
    }
    r = delivery_report(p, report_data(plan, c, out, duration_ms, 0), !defer, &sum);
    lock_release(spool_lock);

    for (size_t i = 0; i < sizeof(sum.damaged) / sizeof(sum.damaged[0]); i++)
        if (sum.damaged[i][0])
            log_warn("%s", sum.damaged[i]);
    /* LOST only when it is: neither spooled nor delivered. */
    if (r < 0)
        log_error("report LOST: %s", sum.error);
    else if (sum.own_direct)
        log_warn("report delivered directly (could not spool it: %s)", sum.spool_error);
    else if (defer)
        log_info("report kept in %s for a later run or 'shmprov flush' (%u waiting)",
                 plan->profile->report.spool_dir, sum.waiting);
    else if (sum.own_delivered && sum.waiting == 0)
        log_info("report delivered to %s", plan->profile->report.url);
    else if (sum.own_delivered)
        /* Not "older": this one stays too when its removal failed. */
        log_warn("report delivered; %u report(s) still waiting in %s", sum.waiting, plan->profile->report.spool_dir);
    else
        log_warn("report not delivered, kept in %s (%u waiting): %s", plan->profile->report.spool_dir, sum.waiting,
                 sum.error);
}

static int check_root(const char *root)
{
    struct stat st;

    if (root[0] != '/' || strcmp(root, "/") == 0) {
        log_error("--root must be an absolute directory other than '/', not '%s'", root);
        return -EINVAL;
    }
    if (stat(root, &st) < 0) {
        log_error("--root '%s': %s", root, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("--root '%s': not a directory", root);
        return -EINVAL;
    }
    return 0;
}

/* A test segment a killed shmprov left behind holds shmmax bytes of
 * shmall: it goes before anything is planned, or the plan's guards would
 * count it as a segment in use and the probe would find no room. Not
 * under --root (an image, not this host's kernel), and not when the
 * profile says the probe's key is another program's. */
static void remove_probe_leftovers(const struct profile *p, struct probe_leftover *found, int *ret_found)
{
    int n = 0;

    if (!probe_key_persistent(p->persistent_keys, p->npersistent_keys))
        n = probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX);
    if (n < 0)
        log_warn("cannot look for test segments a killed shmprov left behind: /proc/sysvipc/shm: %s", strerror(-n));
    *ret_found = n > 0 ? n : 0;
    for (int i = 0; i < *ret_found; i++) {
        const struct probe_leftover *l = &found[i];

        if (l->outcome == ORPHAN_REMOVED)
            log_info("removed test segment id %" PRId32 " (key 0x%08x, %" PRIu64 " bytes) a killed shmprov (pid %"
                     PRId64 ") left behind: %s", l->seg.id, (unsigned)l->seg.key, l->seg.size, l->seg.cpid, l->why);
        else
            log_warn("test segment id %" PRId32 " (%" PRIu64 " bytes) a killed shmprov left behind is still there: %s",
                     l->seg.id, l->seg.size, l->why);
    }
}

int cmd_apply(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    struct lock *lock = NULL;
    struct conflicts conflicts;
    struct apply_outcome out;
    struct apply_options opts = { .root = o->root, .no_verify = o->no_verify, .persist_only = o->persist_only };
    struct probe_leftover leftovers[PROBE_LEFTOVERS_MAX];
    int nleftovers = 0;
    const char *note = NULL;
    uint64_t start = now_ms();
    int code, r;

    if (o->dry_run)
        return cmd_plan(o);
    if (o->root && check_root(o->root) < 0)
        return EXIT_USAGE;
    code = cli_load_profile(o, &profile, &note);
    if (code != EXIT_OK)
        return code;

    /* An image root belongs to its build; only the live system is shared. */
    if (!o->root) {
        code = cli_lock(LOCK_DEFAULT_PATH, &lock);
        if (code != EXIT_OK)
            goto out;
    }

    if (!o->root)
        remove_probe_leftovers(profile, leftovers, &nleftovers);

    /* Read the state only once the lock is held: another apply may just
     * have changed it. */
    code = cli_build_plan(profile, o->force, o->root, &plan);
    if (code != EXIT_OK)
        goto out;
    /* Guards (existing segments): refuse, unless --force. */
    for (unsigned i = 0; i < plan->sizing.nproblems; i++) {
        log_error("refusing to apply: %s (--force overrides; nothing changed)", plan->sizing.problems[i].text);
        code = EXIT_FAILURE_RUNTIME;
    }
    if (code != EXIT_OK)
        goto out;
    if (plan->tier_warning[0])
        log_warn("%s", plan->tier_warning);
    if (o->root && profile->ram_tier == TIER_AUTO)
        log_warn("--root with 'ram_tier: auto' sizes the image for THIS machine's MemTotal (%" PRIu64
                 " bytes); set host.ram_tier for images meant for other hosts",
                 plan->host.memtotal_bytes);

    r = conflicts_check(plan, o->root, &conflicts);
    if (r < 0) {
        log_error("cannot analyse the sysctl.d directories: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    if (conflicts.count > 0 && !profile->conflicts_warn_only) {
        conflicts_log(&conflicts, true);
        log_error("refusing to apply: another file would override %s at boot (nothing changed; "
                  "'conflicts: warn' in the profile downgrades this to a warning)",
                  plan->dropin_path);
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    if (conflicts.count > 0)
        conflicts_log(&conflicts, false);

    r = apply_run(plan, &opts, &out);
    if (r == 0) {
        out.probe_leftovers_found = nleftovers;
        for (int i = 0; i < nleftovers; i++) {
            out.probe_leftovers[i] = leftovers[i];
            out.probe_leftovers_removed += leftovers[i].outcome == ORPHAN_REMOVED;
        }
    }
    if (r < 0) {
        log_error("apply failed: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    if (out.probe_ran && out.probe.key_note[0])
        log_warn("test allocation: %s", out.probe.key_note);
    if (out.result == APPLY_FAILED) {
        log_error("%s", out.error);
        if (out.restored[0])
            log_error("restored: %s", out.restored);
    } else if (out.result == APPLY_NOT_APPLICABLE) {
        log_warn("runtime not applicable here: %s; nothing changed", out.runtime_skip_reason);
    }
    if (o->output == OUTPUT_JSON) {
        /* The very document a report carries as its data. */
        json_object *data = report_data(plan, &conflicts, &out, now_ms() - start, 0);
        printf("%s\n", json_object_to_json_string_ext(data, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(data);
    } else
        print_text(plan, &conflicts, &out);
    /* The kernel and the drop-in are done: let the next apply in before
     * waiting on the network (the spool has its own lock). */
    lock_release(lock);
    lock = NULL;
    if (profile->report.url && !o->no_report && o->root)
        log_info("--root: no report (the image is not a host)");
    else if (profile->report.url && !o->no_report)
        send_report(plan, &conflicts, &out, now_ms() - start, o->defer_report);
    code = out.result == APPLY_FAILED ? EXIT_FAILURE_RUNTIME : EXIT_OK;
out:
    lock_release(lock);
    plan_free(plan);
    profile_free(profile);
    return code;
}
