/* `shmprov apply`: lock, plan, refuse conflicts, then the transaction
 * (apply.c), then say what happened. `apply --dry-run` is `plan`. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apply.h"
#include "cli.h"
#include "clock.h"
#include "conflicts.h"
#include "delivery.h"
#include "host.h"
#include "lock.h"
#include "jsonout.h"
#include "lastapply.h"
#include "log.h"
#include "metrics.h"
#include "report.h"
#include "runreport.h"
#include "state.h"


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

/* Everything one apply collects on its way, for its output and its report. */
struct apply_run {
    const struct cli_options *o;
    struct profile *profile;
    struct plan *plan;
    struct lock *lock;
    struct conflicts conflicts;
    bool conflicts_known;
    struct apply_outcome out;
    bool out_known;
    struct report_error error;
    bool refused;
    bool profile_invalid; /* contradicts itself: exit 2, said already, no report */
    struct report_drift_list drift;
    uint64_t start_ms;
    bool conflicts_on_disk; /* conflicts read from the disk again after a rollback */
    struct state state;     /* as this run recorded it (lastapply_record) */
};

static void refuse(struct apply_run *run, const char *code, const char *step)
{
    run->refused = true;
    run->error.code = code;
    run->error.step = step;
}

/* Guards (existing segments): refuse, unless --force. */
static bool refused_by_guards(struct apply_run *run)
{
    const struct sizing_result *s = &run->plan->sizing;
    size_t used = 0;

    for (unsigned i = 0; i < s->nproblems; i++) {
        log_error("refusing to apply: %s (--force overrides; nothing changed)", s->problems[i].text);
        used += (size_t)snprintf(run->error.message + used, used < sizeof(run->error.message)
                                 ? sizeof(run->error.message) - used : 0, "%s%s", i ? "; " : "", s->problems[i].text);
        if (used >= sizeof(run->error.message))
            used = sizeof(run->error.message) - 1;
    }
    if (s->nproblems)
        refuse(run, REPORT_ERR_SEGMENTS_IN_USE, "guard");
    return s->nproblems > 0;
}

/* Boot-order conflicts: refuse, unless the profile says warn. */
static bool refused_by_conflicts(struct apply_run *run)
{
    struct conflicts *c = &run->conflicts;
    int r = conflicts_check(run->plan, run->o->root, c);

    if (r < 0) {
        (void)snprintf(run->error.message, sizeof(run->error.message), "cannot analyse the sysctl.d directories: %s",
                       strerror(-r));
        log_error("%s", run->error.message);
        refuse(run, REPORT_ERR_IO, "conflicts");
        return true;
    }
    run->conflicts_known = true;
    if (c->count > 0 && !run->profile->conflicts_warn_only) {
        conflicts_log(c, true);
        log_error("refusing to apply: another file would override %s at boot (nothing changed; "
                  "'conflicts: warn' in the profile downgrades this to a warning)",
                  run->plan->dropin_path);
        (void)snprintf(run->error.message, sizeof(run->error.message), "%s", c->items[0].text);
        refuse(run, REPORT_ERR_CONFLICT, "conflicts");
        return true;
    }
    if (c->count > 0)
        conflicts_log(c, false);
    return false;
}

static void run_transaction(struct apply_run *run, const struct probe_leftover *leftovers, int nleftovers)
{
    struct apply_options opts = { .root = run->o->root, .no_verify = run->o->no_verify,
                                  .persist_only = run->o->persist_only };
    struct apply_outcome *out = &run->out;

    if (!cli_transaction("apply", run->plan, &opts, out, &run->error))
        return;
    run->out_known = true;
    out->probe_leftovers_found = nleftovers;
    for (int i = 0; i < nleftovers; i++) {
        out->probe_leftovers[i] = leftovers[i];
        out->probe_leftovers_removed += leftovers[i].outcome == ORPHAN_REMOVED;
    }
    /* After a rollback the report shows who wins each key now, not who
     * would have. */
    if (out->result == APPLY_FAILED && !run->o->root)
        run->conflicts_known = run->conflicts_on_disk = conflicts_check_on_disk(run->plan, &run->conflicts) == 0;
}

/* Plans, refuses, or runs the transaction; run says which. */
static void decide_and_apply(struct apply_run *run)
{
    struct probe_leftover leftovers[PROBE_LEFTOVERS_MAX];
    int nleftovers = 0, code;

    /* An image root belongs to its build; only the live system is shared. */
    code = run->o->root ? 0 : cli_lock(LOCK_DEFAULT_PATH, &run->lock, run->error.message,
                                       sizeof(run->error.message));
    if (code < 0) {
        refuse(run, code == -EWOULDBLOCK ? REPORT_ERR_LOCK_TIMEOUT : REPORT_ERR_IO, "lock");
        return;
    }
    if (!run->o->root)
        remove_probe_leftovers(run->profile, leftovers, &nleftovers);
    /* Read the state only once the lock is held: another apply may just
     * have changed it. */
    code = cli_build_plan(run->profile, run->o->force, run->o->root, &run->plan, run->error.message,
                          sizeof(run->error.message));
    run->profile_invalid = code == EXIT_USAGE;
    if (code != EXIT_OK) {
        refuse(run, REPORT_ERR_HOST_UNREADABLE, "plan");
        return;
    }
    if (refused_by_guards(run))
        return;
    if (run->plan->tier_warning[0])
        log_warn("%s", run->plan->tier_warning);
    if (run->o->root && run->profile->ram_tier == TIER_AUTO)
        log_warn("--root with 'ram_tier: auto' sizes the image for THIS machine's MemTotal (%" PRIu64
                 " bytes); set host.ram_tier for images meant for other hosts",
                 run->plan->host.memtotal_bytes);
    if (refused_by_conflicts(run))
        return;
    if (!run->o->root)
        lastapply_drift(run->plan, &run->drift);
    run_transaction(run, leftovers, nleftovers);
}

static const char *result_word(const struct apply_run *run)
{
    if (run->refused)
        return "refused";
    return run->out_known ? apply_result_name(run->out.result) : "failed";
}

static json_object *run_report(const struct apply_run *run)
{
    struct report_run rr = {
        .command = "apply",
        .result = result_word(run),
        .profile = run->profile,
        .plan = run->plan,
        .conflicts = run->conflicts_known ? &run->conflicts : NULL,
        .out = run->out_known ? &run->out : NULL,
        .error = run->error.code ? &run->error : NULL,
        .drift = &run->drift,
        .corrective_change = run->drift.count > 0 && run->out_known && run->out.result == APPLY_CHANGED,
        .duration_ms = clock_monotonic_ms() - run->start_ms,
        .resolve_fqdn = run->profile->report.url && !run->o->no_report && !run->o->defer_report,
    };

    lastapply_sha256_on_disk(run->out_known ? run->out.dropin_path
                             : run->plan    ? run->plan->dropin_path
                                            : run->profile->dropin,
                             rr.dropin_sha256_on_disk);
    return report_data(&rr);
}

static void say_result(const struct apply_run *run)
{
    if (run->o->output == OUTPUT_JSON) {
        /* The very document a report carries as its data. */
        json_object *data = run_report(run);
        printf("%s\n", jsonout_text(data, true));
        json_object_put(data);
    } else if (run->out_known) {
        print_text(run->plan, &run->conflicts, &run->out);
    } else {
        printf("shmprov apply: %s\n  %s: %s\n", result_word(run), run->error.code, run->error.message);
    }
}

/* One record per apply on the live system, whatever its result: the
 * metrics alert on a failed or refused one, and on none for too long.
 * Under the apply lock, so records follow the order of the applies. */
static void record_run(struct apply_run *run)
{
    struct state_run r;
    bool success = run->out_known && (run->out.result == APPLY_CHANGED || run->out.result == APPLY_UNCHANGED);

    cli_state_run(run->start_ms, result_word(run), run->out_known ? &run->out : NULL, &r);
    lastapply_record(run->plan, success ? &run->out : NULL, &r, &run->state);
}

/* Whether the drop-in on disk holds the profile's bytes after this run:
 * written or already so, or written and not put back by a rollback that
 * could not; else as the plan found it. */
static bool dropin_is_new(const struct apply_run *run, const struct plan *plan)
{
    const struct apply_outcome *out = &run->out;

    if (run->out_known && (out->result == APPLY_CHANGED || out->result == APPLY_UNCHANGED))
        return true;
    if (run->out_known && out->dropin_written && !out->dropin_restored)
        return true;
    return plan->dropin_read_errno == 0 && !plan->dropin_changed;
}

/* conflicts_check() found the winners as they are with the new drop-in in
 * place, which holds once it is; a rollback read them from the disk again.
 * Otherwise (refused, not applicable) the disk is asked now. */
static void boot_metrics(const struct apply_run *run, const struct plan *plan, bool dropin_new, struct metrics *m)
{
    struct conflicts *disk;

    if (run->conflicts_known && (dropin_new || run->conflicts_on_disk)) {
        metrics_set_boot(m, plan, &run->conflicts);
        return;
    }
    disk = malloc(sizeof(*disk));
    metrics_set_boot(m, plan, disk && conflicts_check_on_disk(plan, disk) == 0 ? disk : NULL);
    free(disk);
}

/* The metrics after this apply, from what it knows; only the segment
 * table is read again (the orphan candidates), and the plan only when the
 * lock was never taken, so there is none. */
static void fill_metrics(const struct apply_run *run, const struct plan *plan, struct metrics *m)
{
    struct shmseg_table *segments = NULL;
    bool dropin_new = plan && dropin_is_new(run, plan);

    metrics_init(m, run->profile, plan);
    for (int id = 0; plan && run->out_known && id < KEY_COUNT; id++) {
        const struct apply_key_outcome *k = &run->out.keys[id];

        /* Read again after the change or the rollback; never read (nothing
         * was touched): the plan's value stands. */
        if (k->after_known || k->after_error)
            metrics_set_running(m, (enum sizing_key_id)id, k->after_known, k->after);
    }
    if (plan) {
        metrics_set_dropin(m, dropin_new);
        boot_metrics(run, plan, dropin_new, m);
    }
    (void)host_read_segments(&segments);
    metrics_count_segments(m, run->profile, segments);
    free(segments);
    metrics_set_state(m, &run->state);
    metrics_read_spool(m, run->profile);
}

static void publish_metrics(const struct apply_run *run)
{
    struct metrics *m = malloc(sizeof(*m));
    struct plan *own = NULL;
    const struct plan *plan = run->plan;

    if (!m) {
        log_warn("cannot write the metrics to %s: %s", run->profile->metrics_textfile, strerror(ENOMEM));
        return;
    }
    /* Refused at the lock: the other apply is done or nearly; these are
     * the limits it leaves. */
    if (!plan && run->error.step && strcmp(run->error.step, "lock") == 0 &&
        cli_build_plan(run->profile, true, NULL, &own, NULL, 0) == EXIT_OK)
        plan = own;
    fill_metrics(run, plan, m);
    metrics_publish(m, run->profile);
    plan_free(own);
    free(m);
}

static int cmd_apply(const struct cli_options *o)
{
    struct apply_run *run;
    const char *note = NULL;
    int code;

    if (o->dry_run)
        return cmd_plan(o);
    if (o->root && cli_check_root(o->root) < 0)
        return EXIT_USAGE;
    run = calloc(1, sizeof(*run));
    if (!run)
        return EXIT_FAILURE_RUNTIME;
    run->o = o;
    run->start_ms = clock_monotonic_ms();
    code = cli_load_profile(o, &run->profile, &note);
    if (code != EXIT_OK)
        goto out;
    decide_and_apply(run);
    /* A profile that contradicts itself was said already: exit 2, and no
     * report of a run that never was one. */
    if (run->profile_invalid) {
        code = EXIT_USAGE;
        goto out;
    }
    code = run->out_known && run->out.result != APPLY_FAILED ? EXIT_OK : EXIT_FAILURE_RUNTIME;
    if (!o->root)
        record_run(run);
    say_result(run);
    /* The kernel and the drop-in are done: let the next apply in before
     * waiting on the network (the spool has its own lock). */
    lock_release(run->lock);
    run->lock = NULL;
    if (run->profile->report.url && !o->no_report && o->root)
        log_info("--root: no report (the image is not a host)");
    else if (run->profile->report.url && !o->no_report)
        runreport_send(run->profile, run_report(run), o->defer_report);
    /* Last, so the spool's figures include this run's report. */
    if (run->profile->metrics_textfile && !o->root)
        publish_metrics(run);
out:
    lock_release(run->lock);
    plan_free(run->plan);
    profile_free(run->profile);
    free(run);
    return code;
}

static int check_options(const struct cli_options *o)
{
    if (o->report && !o->dry_run)
        return cli_usage_error("'apply --report' needs --dry-run: apply reports every run");
    if (o->report && o->no_report)
        return cli_usage_error("--report and --no-report contradict each other");
    return EXIT_OK;
}

const struct cli_command cmd_apply_entry = {
    .name = "apply",
    .help = "write the drop-in, set the running kernel, prove it with a test allocation; on any failure put "
            "everything back",
    .options = (const struct cli_option[]){
        CLI_FLAG("dry-run", dry_run, "exactly plan"),
        CLI_FLAG("report", report, "with --dry-run: report it too (result dry-run)"),
        CLI_VALUE("root", "DIR", root,
                  "write the drop-in under DIR only (image builds); the running kernel and the test allocation "
                  "are skipped"),
        CLI_FLAG("persist-only", persist_only, "where /proc/sys is read-only (a container), write the drop-in anyway"),
        CLI_TRANSACTION_OPTIONS,
        CLI_FLAG("force", force, "allow limits below what existing segments use"),
        { NULL },
    },
    .check = check_options,
    .exec = cmd_apply,
};
