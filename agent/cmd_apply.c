/* `shmprov apply`: lock, plan, refuse conflicts, then the transaction
 * (apply.c), then say what happened. `apply --dry-run` is `plan`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "cleanup.h"
#include "cli.h"
#include "conflicts.h"
#include "host.h"
#include "lastapply.h"
#include "log.h"
#include "metrics.h"
#include "runreport.h"

/* apply's options: the rows of cmd_apply_entry point here. */
static struct cli_transaction tx;
static bool dry_run, report, force;

/* What only an apply collects, after what every run does. */
struct apply_run {
    struct cli_run base;
    struct conflicts conflicts; /* base.conflicts points here once they are known */
    struct report_drift_list drift;
    bool conflicts_on_disk; /* conflicts read from the disk again after a rollback */
};

static const char *step_text(const struct probe_step *s)
{
    return s->detail[0] ? s->detail : probe_status_name(s->status);
}

static void print_text(const struct cli_run *run)
{
    const struct plan *plan = run->plan;
    const struct apply_outcome *out = &run->out;
    const struct conflicts *c = &((const struct apply_run *)run)->conflicts;

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
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
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
    cli_print_failure(out);
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

/* Guards (existing segments): refuse, unless --force. */
static bool refused_by_guards(struct cli_run *run)
{
    const struct sizing_result *s = &run->plan->sizing;
    size_t len;
    FILE *message;

    if (s->nproblems == 0)
        return false;
    message = open_memstream(&run->error.message, &len);
    for (unsigned i = 0; i < s->nproblems; i++) {
        log_error("refusing to apply: %s (--force overrides; nothing changed)", s->problems[i].text);
        if (message)
            fprintf(message, "%s%s", i ? "; " : "", s->problems[i].text);
    }
    if (message)
        (void)fclose(message);
    cli_refuse(run, REPORT_ERR_SEGMENTS_IN_USE, "guard", NULL);
    return true;
}

/* Boot-order conflicts: refuse, unless the profile says warn. */
static bool refused_by_conflicts(struct apply_run *run)
{
    struct cli_run *b = &run->base;
    struct conflicts *c = &run->conflicts;
    int r = conflicts_check(b->plan, tx.apply.root, c);

    if (r < 0) {
        cli_refuse(b, APPLY_ERR_IO, "conflicts", "cannot analyse the sysctl.d directories: %s", strerror(-r));
        return true;
    }
    b->conflicts = c;
    if (c->count > 0 && !b->profile->conflicts_warn_only) {
        conflicts_log(c, true);
        log_error("refusing to apply: another file would override %s at boot (nothing changed; "
                  "'conflicts: warn' in the profile downgrades this to a warning)",
                  b->plan->dropin_path);
        b->error.message = strdup(c->items[0].text);
        cli_refuse(b, REPORT_ERR_CONFLICT, "conflicts", NULL);
        return true;
    }
    if (c->count > 0)
        conflicts_log(c, false);
    return false;
}

static void run_transaction(struct apply_run *run, const struct probe_leftover *leftovers, int nleftovers)
{
    struct cli_run *b = &run->base;
    struct apply_outcome *out = &b->out;

    cli_run_transaction(b, &tx.apply);
    out->probe_leftovers_found = nleftovers;
    for (int i = 0; i < nleftovers; i++) {
        out->probe_leftovers[i] = leftovers[i];
        out->probe_leftovers_removed += leftovers[i].outcome == ORPHAN_REMOVED;
    }
    /* After a rollback the report shows who wins each key now, not who
     * would have. */
    if (out->result == APPLY_FAILED && !tx.apply.root) {
        run->conflicts_on_disk = conflicts_check_on_disk(b->plan, &run->conflicts) == 0;
        b->conflicts = run->conflicts_on_disk ? &run->conflicts : NULL;
    }
}

/* Plans, refuses, or runs the transaction; run says which. */
static void decide_and_apply(struct apply_run *run)
{
    struct cli_run *b = &run->base;
    struct probe_leftover leftovers[PROBE_LEFTOVERS_MAX];
    int nleftovers = 0;

    /* An image root belongs to its build; only the live system is shared. */
    if (!tx.apply.root && !cli_run_lock(b))
        return;
    if (!tx.apply.root)
        remove_probe_leftovers(b->profile, leftovers, &nleftovers);
    /* Read the state only once the lock is held: another apply may just
     * have changed it. */
    if (!cli_run_plan(b, force) || refused_by_guards(b))
        return;
    if (b->plan->tier_warning)
        log_warn("%s", b->plan->tier_warning);
    if (tx.apply.root && b->profile->ram_tier == PROFILE_TIER_AUTO)
        log_warn("--root with 'ram_tier: auto' sizes the image for THIS machine's MemTotal (%" PRIu64
                 " bytes); set host.ram_tier for images meant for other hosts",
                 b->plan->host.memtotal_bytes);
    if (refused_by_conflicts(run))
        return;
    if (!tx.apply.root)
        lastapply_drift(b->plan, &run->drift);
    run_transaction(run, leftovers, nleftovers);
}

/* One record per apply on the live system, whatever its result: the
 * metrics alert on a failed or refused one, and on none for too long.
 * Under the apply lock, so records follow the order of the applies. */
static void record_run(struct cli_run *run)
{
    struct state_run r;

    cli_run_state(run, &r);
    lastapply_record(run->plan, cli_run_succeeded(run) ? &run->out : NULL, &r, &run->state);
}

/* Whether the drop-in on disk holds the profile's bytes after this run:
 * written or already so, or written and not put back by a rollback that
 * could not; else as the plan found it. */
static bool dropin_is_new(const struct cli_run *run, const struct plan *plan)
{
    if (cli_run_succeeded(run))
        return true;
    if (run->out_known && run->out.dropin_written && !run->out.dropin_restored)
        return true;
    return plan->dropin_read_errno == 0 && !plan->dropin_changed;
}

/* conflicts_check() found the winners as they are with the new drop-in in
 * place, which holds once it is; a rollback read them from the disk again.
 * Otherwise (refused, not applicable) the disk is asked now. */
static void boot_metrics(const struct apply_run *run, const struct plan *plan, bool dropin_new, struct metrics *m)
{
    CLEANUP_FREE struct conflicts *disk = NULL;

    if (run->base.conflicts && (dropin_new || run->conflicts_on_disk)) {
        metrics_set_boot(m, plan, run->base.conflicts);
        return;
    }
    disk = malloc(sizeof(*disk));
    metrics_set_boot(m, plan, disk && conflicts_check_on_disk(plan, disk) == 0 ? disk : NULL);
}

/* The metrics after this apply, from what it knows; only the segment
 * table is read again (the orphan candidates), and the plan only when the
 * lock was never taken, so there is none. */
static void fill_metrics(const struct apply_run *run, const struct plan *plan, struct metrics *m)
{
    const struct cli_run *b = &run->base;
    CLEANUP_FREE struct shmseg_table *segments = NULL;
    bool dropin_new = plan && dropin_is_new(b, plan);

    metrics_init(m, b->profile, plan);
    for (int id = 0; plan && b->out_known && id < SIZING_KEY_COUNT; id++) {
        const struct apply_key_outcome *k = &b->out.keys[id];

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
    metrics_count_segments(m, b->profile, segments);
    metrics_set_state(m, &b->state);
    metrics_read_spool(m, b->profile);
}

static void publish_metrics(const struct apply_run *run)
{
    const struct cli_run *b = &run->base;
    CLEANUP_FREE struct metrics *m = malloc(sizeof(*m));
    struct plan *own = NULL;
    const struct plan *plan = b->plan;

    if (!m) {
        log_warn("cannot write the metrics to %s: %s", b->profile->metrics_textfile, strerror(ENOMEM));
        return;
    }
    /* Refused at the lock: the other apply is done or nearly; these are
     * the limits it leaves. */
    if (!plan && b->error.step && strcmp(b->error.step, "lock") == 0 &&
        cli_build_plan(b->profile, true, NULL, &own, NULL) == EXIT_OK)
        plan = own;
    fill_metrics(run, plan, m);
    metrics_publish(m, b->profile);
    plan_free(own);
}

/* Record, say, report, then the metrics: last, so the spool's figures
 * include this run's report (the spool has its own lock). */
static void finish(struct apply_run *run)
{
    struct cli_run *b = &run->base;

    b->result = b->refused ? "refused" : b->out_known ? apply_result_name(b->out.result) : "failed";
    cli_run_conclude(b, tx.apply.root ? NULL : record_run, b->out_known ? print_text : NULL);
    if (b->profile->report.url && !tx.no_report && tx.apply.root)
        log_info("--root: no report (the image is not a host)");
    else if (b->profile->report.url && !tx.no_report)
        runreport_send(b->profile, cli_run_report(b), tx.defer_report);
    if (b->profile->metrics_textfile && !tx.apply.root)
        publish_metrics(run);
}

static int exit_code(const struct cli_run *run)
{
    if (run->profile_invalid)
        return EXIT_USAGE;
    return run->out_known && run->out.result != APPLY_FAILED ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

static int cmd_apply(const struct cli_options *o)
{
    CLEANUP_FREE struct apply_run *run = NULL;
    int code;

    if (report && !dry_run)
        return cli_usage_error("'apply --report' needs --dry-run: apply reports every run");
    if (report && tx.no_report)
        return cli_usage_error("--report and --no-report contradict each other");
    if (dry_run)
        return cmd_plan_dry_run(o, force, report);
    if (tx.apply.root && cli_check_root(tx.apply.root) < 0)
        return EXIT_USAGE;
    run = cli_run_new(sizeof(*run), o, &tx, "apply");
    if (!run)
        return EXIT_FAILURE_RUNTIME;
    run->base.drift = &run->drift;
    code = cli_load_profile(o, &run->base.profile);
    if (code == EXIT_OK) {
        decide_and_apply(run);
        code = exit_code(&run->base);
        /* A profile that contradicts itself was said already: exit 2, and
         * no report of a run that never was one. */
        if (!run->base.profile_invalid)
            finish(run);
    }
    cli_run_free(&run->base);
    return code;
}

const struct cli_command cmd_apply_entry = {
    .name = "apply",
    .help = "write the drop-in, set the running kernel, prove it with a test allocation; on any failure put "
            "everything back",
    .options = (const struct cli_option[]){
        CLI_FLAG("dry-run", &dry_run, "exactly plan"),
        CLI_FLAG("report", &report, "with --dry-run: report it too (result dry-run)"),
        CLI_VALUE("root", "DIR", &tx.apply.root,
                  "write the drop-in under DIR only (image builds); the running kernel and the test allocation "
                  "are skipped"),
        CLI_FLAG("persist-only", &tx.apply.persist_only,
                 "where /proc/sys is read-only (a container), write the drop-in anyway"),
        CLI_TRANSACTION_OPTIONS(tx),
        CLI_FLAG("force", &force, "allow limits below what existing segments use"),
        { 0 },
    },
    .exec = cmd_apply,
};
