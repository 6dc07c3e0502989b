/* `shmprov remove`: the inverse of apply. Lock, plan, turn the plan into a
 * removal plan (removal.c: the boot values once the drop-in is gone),
 * refuse what is not shmprov's, then the same transaction as apply
 * (apply.c), then say what happened, record it, report it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apply.h"
#include "cleanup.h"
#include "cli.h"
#include "conflicts.h"
#include "lastapply.h"
#include "log.h"
#include "metrics.h"
#include "removal.h"
#include "runreport.h"

/* remove's options: the rows of cmd_remove_entry point here. */
static struct cli_transaction tx;
static bool dry_run, force;

/* What only a remove collects, after what every run does. */
struct remove_run {
    struct cli_run base;
    bool profile_missing; /* removing the recorded drop-in: no profile, so no report */
    char recorded_path[4096], recorded_sha256[65]; /* "" when no apply recorded one */
    struct removal *removal;
};

static bool profile_exists(const struct cli_options *o)
{
    struct stat st;

    return lstat(o->profile_path ? o->profile_path : PROFILE_DEFAULT_PATH, &st) == 0 || errno != ENOENT;
}

/* The profile, or with none at its path the built-in default's settings
 * for the drop-in the last apply recorded (never under --root: the
 * record is this host's). */
static int load_profile(struct remove_run *run)
{
    const struct cli_options *o = run->base.o;
    struct profile_diags diags;
    char *dropin;
    int r;

    if (tx.apply.root || profile_exists(o) || lastapply_recorded_dropin(run->recorded_path, run->recorded_sha256) < 0 ||
        profile_check_dropin_path(run->recorded_path) < 0)
        return cli_load_profile(o, &run->base.profile);
    log_info("no profile %s: removing the drop-in the last apply recorded, %s (no report)",
             o->profile_path ? o->profile_path : PROFILE_DEFAULT_PATH, run->recorded_path);
    profile_diags_init(&diags, PROFILE_BUILTIN_NAME);
    r = profile_load_builtin(&diags, &run->base.profile);
    profile_diags_free(&diags);
    dropin = r == 0 ? strdup(run->recorded_path) : NULL;
    if (!dropin) {
        log_error("cannot load the built-in default profile: %s", strerror(r < 0 ? -r : ENOMEM));
        return EXIT_FAILURE_RUNTIME;
    }
    free(run->base.profile->dropin);
    run->base.profile->dropin = dropin;
    run->profile_missing = true;
    return EXIT_OK;
}

/* The sha256 the last apply recorded for this very drop-in, or NULL. */
static const char *recorded_sha256(struct remove_run *run)
{
    if (tx.apply.root)
        return NULL;
    if (!run->recorded_path[0] && lastapply_recorded_dropin(run->recorded_path, run->recorded_sha256) < 0)
        return NULL;
    return strcmp(run->recorded_path, run->base.plan->dropin_path) == 0 ? run->recorded_sha256 : NULL;
}

/* Refusals that need the removal plan: a drop-in that is not a regular
 * file (even with --force, as apply), or not shmprov's (unless --force),
 * and a boot value that cannot be known when the kernel is to be set. */
static void refuse_by_removal(struct remove_run *run)
{
    const struct removal_key *unknown = removal_unknown_key(run->removal);
    struct cli_run *b = &run->base;
    const char *path = b->plan->dropin_path;

    if (!run->removal) /* decided before this is called; nothing to say without it */
        return;
    conflicts_log(&run->removal->boot, false);
    if (b->plan->dropin_problem[0])
        cli_refuse(b, APPLY_ERR_IO, "dropin", "refusing to remove: %s (nothing changed)", b->plan->dropin_problem);
    else if (!removal_owned(run->removal->owner) && !force)
        cli_refuse(b, REPORT_ERR_DROPIN_NOT_OWNED, "ownership",
                   "refusing to remove %s: %s (nothing changed; --force removes it anyway)", path,
                   removal_owner_text(run->removal->owner));
    else if (unknown && !tx.apply.root && !tx.apply.keep_runtime)
        cli_refuse(b, REPORT_ERR_BOOT_VALUE_UNKNOWN, "boot-values",
                   "refusing to remove %s: %s, so the running kernel cannot be set to it (nothing changed; "
                   "--keep-runtime deletes the file only)", path, unknown->problem);
}

/* Plans and refuses; run->base.refused or a plan ready for the transaction. */
static void decide(struct remove_run *run)
{
    struct cli_run *b = &run->base;
    int r;

    /* An image root belongs to its build, a dry run changes nothing:
     * only a removal on the live system is serialised with apply. */
    if ((!tx.apply.root && !dry_run && !cli_run_lock(b)) || !cli_run_plan(b, true))
        return;
    r = removal_prepare(b->plan, tx.apply.root, recorded_sha256(run), &run->removal);
    b->conflicts = run->removal ? &run->removal->boot : NULL;
    if (r < 0)
        cli_refuse(b, APPLY_ERR_IO, "boot-values", "cannot analyse the sysctl.d directories: %s", strerror(-r));
    else
        refuse_by_removal(run);
}

static bool nothing_to_do(const struct cli_run *run)
{
    bool runtime = !tx.apply.root && !tx.apply.keep_runtime;

    if (run->plan->dropin_changed)
        return false;
    for (int id = 0; runtime && id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &run->plan->sizing.keys[id];
        if (k->managed && (!k->current_known || k->current != k->target))
            return false;
    }
    return true;
}

static void run_transaction(struct remove_run *run)
{
    struct cli_run *b = &run->base;
    /* Nothing to remove proves nothing: the probe runs only after a change. */
    struct apply_options opts = { .root = tx.apply.root, .no_verify = tx.apply.no_verify || nothing_to_do(b),
                                  .persist_only = true, .keep_runtime = tx.apply.keep_runtime };

    cli_run_transaction(b, &opts);
    /* After a rollback the report shows who wins each key now. */
    if (b->out.result == APPLY_FAILED && !tx.apply.root)
        (void)conflicts_check_on_disk(b->plan, &run->removal->boot);
}

static const char *result_word(const struct cli_run *run)
{
    if (run->refused)
        return "refused";
    if (dry_run)
        return "dry-run";
    if (!run->out_known)
        return "failed";
    return run->out.result == APPLY_CHANGED ? "removed" : apply_result_name(run->out.result);
}

/* Each key's way back: from the running value to its boot value, and
 * where that comes from; after a rollback, the value it holds again. */
static void print_keys(const struct cli_run *run, const struct removal *removal)
{
    bool rolled_back = run->out_known && run->out.result == APPLY_FAILED;

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &run->plan->sizing.keys[id];
        const struct removal_key *rk = &removal->keys[id];
        const struct apply_key_outcome *after = &run->out.keys[id];

        if (!rk->managed)
            continue;
        if (!rk->boot_known)
            printf("  %s: %s\n", sizing_key_name(id), rk->problem);
        else if (rolled_back && after->after_known)
            printf("  %s: %" PRIu64 " (boot without the drop-in: %" PRIu64 ", %s)\n", sizing_key_name(id),
                   after->after, k->target, rk->source);
        else if (!k->current_known)
            printf("  %s: unknown -> %" PRIu64 " (%s)\n", sizing_key_name(id), k->target, rk->source);
        else
            printf("  %s: %" PRIu64 " -> %" PRIu64 " (%s)%s\n", sizing_key_name(id), k->current, k->target,
                   rk->source, k->current == k->target ? ", already so" : "");
    }
}

static const char *dropin_text(const struct cli_run *run)
{
    const struct apply_outcome *out = &run->out;

    if (!run->plan->dropin_old && run->plan->dropin_read_errno == ENOENT)
        return "absent, nothing to delete";
    if (dry_run || run->refused)
        return run->refused ? "kept" : "would be deleted";
    if (out->dropin_written && out->result == APPLY_FAILED)
        return out->dropin_restored ? "deleted, then put back (see restored)" : "deleted, NOT put back";
    return out->dropin_written ? "deleted" : "not deleted";
}

static void print_outcome(const struct apply_outcome *out)
{
    if (out->runtime_skipped)
        printf("  running kernel not touched: %s\n", out->runtime_skip_reason);
    if (out->probe_ran)
        printf("  test allocation: %s\n", out->probe.passed ? "passed" : "failed");
    cli_print_failure(out);
}

static const char *headline(const struct cli_run *run)
{
    if (!run->refused && nothing_to_do(run))
        return "nothing to remove";
    return dry_run && !run->refused ? "would remove" : run->result;
}

static void print_text(const struct cli_run *run)
{
    const struct removal *removal = ((const struct remove_run *)run)->removal;
    bool rolled_back = run->out_known && run->out.result == APPLY_FAILED;

    printf("shmprov remove%s: %s\n", dry_run ? " --dry-run" : "", headline(run));
    printf("  drop-in %s: %s", run->plan->dropin_path, dropin_text(run));
    if (run->plan->dropin_old && !rolled_back)
        printf(" (%s)", removal_owner_text(removal->owner));
    printf("\n");
    print_keys(run, removal);
    for (unsigned i = 0; i < run->plan->nwarnings; i++)
        printf("  warning: %s\n", run->plan->warnings[i]);
    if (run->refused)
        printf("  %s\n", run->error.message);
    else if (run->out_known)
        print_outcome(&run->out);
    else if (dry_run)
        printf("  nothing changed (--dry-run)\n");
}

/* One record per remove on the live system, as per apply: the metrics say
 * how the last one went. A success forgets the apply that left the
 * drop-in, which is gone now. */
static void record_run(struct cli_run *run)
{
    struct state_run r;

    cli_run_state(run, &r);
    lastapply_record_removal(cli_run_succeeded(run) ? run->plan->dropin_path : NULL, &r, &run->state);
}

/* The host as it stands after the removal, against the profile: what
 * verify would say, and the last run as recorded. */
static void publish_metrics(const struct cli_run *run)
{
    struct plan *plan = NULL;
    struct conflicts *disk = malloc(sizeof(*disk));

    if (disk && cli_build_plan(run->profile, true, NULL, &plan, NULL) == EXIT_OK) {
        metrics_publish_plan(plan, conflicts_check_on_disk(plan, disk) == 0 ? disk : NULL, plan->host.segments,
                             &run->state);
    } else {
        log_warn("cannot write the metrics to %s", run->profile->metrics_textfile);
    }
    plan_free(plan);
    free(disk);
}

static int exit_code(const struct cli_run *run)
{
    if (run->profile_invalid)
        return EXIT_USAGE;
    if (dry_run)
        return run->refused ? EXIT_FAILURE_RUNTIME : EXIT_OK;
    return cli_run_succeeded(run) ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

/* Record, say, let the next apply in, then report and write the metrics. */
static void finish(struct remove_run *run)
{
    struct cli_run *b = &run->base;
    bool live = !tx.apply.root && !dry_run;

    b->result = result_word(b);
    cli_run_conclude(b, live ? record_run : NULL, b->plan && run->removal ? print_text : NULL);
    if (!live || run->profile_missing || tx.no_report || !b->profile->report.url)
        log_debug("no report: %s", tx.apply.root ? "--root" : dry_run ? "--dry-run" : "none asked for");
    else
        runreport_send(b->profile, cli_run_report(b), tx.defer_report);
    if (live && b->profile->metrics_textfile)
        publish_metrics(b);
}

static int cmd_remove(const struct cli_options *o)
{
    CLEANUP_FREE struct remove_run *run = NULL;
    int code;

    if (tx.apply.root && cli_check_root(tx.apply.root) < 0)
        return EXIT_USAGE;
    run = cli_run_new(sizeof(*run), o, &tx, "remove");
    if (!run)
        return EXIT_FAILURE_RUNTIME;
    code = load_profile(run);
    if (code == EXIT_OK) {
        decide(run);
        if (!run->base.refused && !dry_run)
            run_transaction(run);
        code = exit_code(&run->base);
        if (!run->base.profile_invalid)
            finish(run);
    }
    removal_free(run->removal);
    cli_run_free(&run->base);
    return code;
}

const struct cli_command cmd_remove_entry = {
    .name = "remove",
    .help = "the inverse of apply: delete the drop-in (only while it is what shmprov wrote; with no profile, "
            "the one the last apply recorded), set the running kernel to what boot gives without it (the value "
            "of the file systemd-sysctl reads last, else the kernel's default), prove it with a test "
            "allocation; on any failure put everything back",
    .options = (const struct cli_option[]){
        CLI_FLAG("dry-run", &dry_run, "say what would be deleted and each key's value from -> to; change nothing"),
        CLI_FLAG("keep-runtime", &tx.apply.keep_runtime, "delete the drop-in only; the running kernel is not touched"),
        CLI_FLAG("force", &force,
                 "delete a drop-in that is no longer what shmprov wrote (never a symbolic link or anything but a "
                 "regular file)"),
        CLI_VALUE("root", "DIR", &tx.apply.root, "delete the drop-in under DIR only (image builds)"),
        CLI_TRANSACTION_OPTIONS(tx),
        { 0 },
    },
    .exec = cmd_remove,
};
