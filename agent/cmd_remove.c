/* `shmprov remove`: the inverse of apply. Lock, plan, turn the plan into a
 * removal plan (removal.c: the boot values once the drop-in is gone),
 * refuse what is not shmprov's, then the same transaction as apply
 * (apply.c), then say what happened, record it, report it. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apply.h"
#include "cli.h"
#include "clock.h"
#include "conflicts.h"
#include "host.h"
#include "jsonout.h"
#include "lastapply.h"
#include "lock.h"
#include "log.h"
#include "metrics.h"
#include "removal.h"
#include "report.h"
#include "runreport.h"
#include "state.h"

/* Everything one remove collects on its way, for its output and its report. */
struct remove_run {
    const struct cli_options *o;
    struct profile *profile;
    bool profile_missing; /* removing the recorded drop-in: no profile, so no report */
    char recorded_path[4096], recorded_sha256[65]; /* "" when no apply recorded one */
    struct plan *plan;
    struct removal *removal;
    struct lock *lock;
    struct apply_outcome out;
    bool out_known;
    struct report_error error;
    bool refused;
    bool profile_invalid; /* exit 2, said already, no report */
    uint64_t start_ms;
    struct state state;
};

static void refuse(struct remove_run *run, const char *code, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse(struct remove_run *run, const char *code, const char *step, const char *fmt, ...)
{
    va_list ap;

    run->refused = true;
    run->error.code = code;
    run->error.step = step;
    if (!fmt)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(run->error.message, sizeof(run->error.message), fmt, ap);
    va_end(ap);
    log_error("%s", run->error.message);
}

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
    struct profile_diags diags;
    const char *note = NULL;
    char *dropin;
    int r;

    if (run->o->root || profile_exists(run->o) ||
        lastapply_recorded_dropin(run->recorded_path, run->recorded_sha256) < 0 ||
        profile_check_dropin_path(run->recorded_path) < 0)
        return cli_load_profile(run->o, &run->profile, &note);
    log_info("no profile %s: removing the drop-in the last apply recorded, %s (no report)",
             run->o->profile_path ? run->o->profile_path : PROFILE_DEFAULT_PATH, run->recorded_path);
    profile_diags_init(&diags, PROFILE_BUILTIN_NAME);
    r = profile_load_builtin(&diags, &run->profile);
    profile_diags_free(&diags);
    dropin = r == 0 ? strdup(run->recorded_path) : NULL;
    if (!dropin) {
        log_error("cannot load the built-in default profile: %s", strerror(r < 0 ? -r : ENOMEM));
        return EXIT_FAILURE_RUNTIME;
    }
    free(run->profile->dropin);
    run->profile->dropin = dropin;
    run->profile_missing = true;
    return EXIT_OK;
}

/* The sha256 the last apply recorded for this very drop-in, or NULL. */
static const char *recorded_sha256(struct remove_run *run)
{
    if (run->o->root)
        return NULL;
    if (!run->recorded_path[0] && lastapply_recorded_dropin(run->recorded_path, run->recorded_sha256) < 0)
        return NULL;
    return strcmp(run->recorded_path, run->plan->dropin_path) == 0 ? run->recorded_sha256 : NULL;
}

/* Refusals that need the removal plan: a drop-in that is not a regular
 * file (even with --force, as apply), or not shmprov's (unless --force),
 * and a boot value that cannot be known when the kernel is to be set. */
static bool refused_by_removal(struct remove_run *run)
{
    const struct removal_key *unknown = removal_unknown_key(run->removal);
    bool runtime = !run->o->root && !run->o->keep_runtime;

    conflicts_log(&run->removal->boot, false);
    if (run->plan->dropin_problem[0]) {
        refuse(run, REPORT_ERR_IO, "dropin", "refusing to remove: %s (nothing changed)", run->plan->dropin_problem);
        return true;
    }
    if (!removal_owned(run->removal->owner) && !run->o->force) {
        refuse(run, REPORT_ERR_DROPIN_NOT_OWNED, "ownership",
               "refusing to remove %s: %s (nothing changed; --force removes it anyway)", run->plan->dropin_path,
               removal_owner_text(run->removal->owner));
        return true;
    }
    if (unknown && runtime) {
        refuse(run, REPORT_ERR_BOOT_VALUE_UNKNOWN, "boot-values",
               "refusing to remove %s: %s, so the running kernel cannot be set to it (nothing changed; "
               "--keep-runtime deletes the file only)", run->plan->dropin_path, unknown->problem);
        return true;
    }
    return false;
}

/* Plans and refuses; run->refused or a plan ready for the transaction. */
static void decide(struct remove_run *run)
{
    int code, r;

    /* An image root belongs to its build, a dry run changes nothing:
     * only a removal on the live system is serialised with apply. */
    code = run->o->root || run->o->dry_run
               ? 0 : cli_lock(LOCK_DEFAULT_PATH, &run->lock, run->error.message, sizeof(run->error.message));
    if (code < 0) {
        refuse(run, code == -EWOULDBLOCK ? REPORT_ERR_LOCK_TIMEOUT : REPORT_ERR_IO, "lock", NULL);
        return;
    }
    code = cli_build_plan(run->profile, true, run->o->root, &run->plan, run->error.message,
                          sizeof(run->error.message));
    run->profile_invalid = code == EXIT_USAGE;
    if (code != EXIT_OK) {
        refuse(run, REPORT_ERR_HOST_UNREADABLE, "plan", NULL);
        return;
    }
    r = removal_prepare(run->plan, run->o->root, recorded_sha256(run), &run->removal);
    if (r < 0) {
        refuse(run, REPORT_ERR_IO, "boot-values", "cannot analyse the sysctl.d directories: %s", strerror(-r));
        return;
    }
    (void)refused_by_removal(run);
}

static bool nothing_to_do(const struct remove_run *run)
{
    bool runtime = !run->o->root && !run->o->keep_runtime;

    if (run->plan->dropin_changed)
        return false;
    for (int id = 0; runtime && id < KEY_COUNT; id++) {
        const struct sizing_key *k = &run->plan->sizing.keys[id];
        if (k->managed && (!k->current_known || k->current != k->target))
            return false;
    }
    return true;
}

static void run_transaction(struct remove_run *run)
{
    /* Nothing to remove proves nothing: the probe runs only after a change. */
    struct apply_options opts = { .root = run->o->root, .no_verify = run->o->no_verify || nothing_to_do(run),
                                  .persist_only = true, .keep_runtime = run->o->keep_runtime };

    run->out_known = cli_transaction("remove", run->plan, &opts, &run->out, &run->error);
    /* After a rollback the report shows who wins each key now. */
    if (run->out_known && run->out.result == APPLY_FAILED && !run->o->root)
        (void)conflicts_check_on_disk(run->plan, &run->removal->boot);
}

static const char *result_word(const struct remove_run *run)
{
    if (run->refused)
        return "refused";
    if (run->o->dry_run)
        return "dry-run";
    if (!run->out_known)
        return "failed";
    return run->out.result == APPLY_CHANGED ? "removed" : apply_result_name(run->out.result);
}

static bool succeeded(const struct remove_run *run)
{
    return run->out_known && (run->out.result == APPLY_CHANGED || run->out.result == APPLY_UNCHANGED);
}

static json_object *run_report(const struct remove_run *run)
{
    struct report_run rr = {
        .command = "remove",
        .result = result_word(run),
        .profile = run->profile,
        .plan = run->plan,
        .conflicts = run->removal ? &run->removal->boot : NULL,
        .out = run->out_known ? &run->out : NULL,
        .error = run->error.code ? &run->error : NULL,
        .duration_ms = clock_monotonic_ms() - run->start_ms,
        .resolve_fqdn = run->profile->report.url && !run->o->no_report && !run->o->defer_report,
    };

    lastapply_sha256_on_disk(run->plan ? run->plan->dropin_path : run->profile->dropin, rr.dropin_sha256_on_disk);
    return report_data(&rr);
}

/* Each key's way back: from the running value to its boot value, and
 * where that comes from; after a rollback, the value it holds again. */
static void print_keys(const struct remove_run *run)
{
    bool rolled_back = run->out_known && run->out.result == APPLY_FAILED;

    for (int id = 0; id < KEY_COUNT; id++) {
        const struct sizing_key *k = &run->plan->sizing.keys[id];
        const struct removal_key *rk = &run->removal->keys[id];
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

static const char *dropin_text(const struct remove_run *run)
{
    const struct apply_outcome *out = &run->out;

    if (!run->plan->dropin_old && run->plan->dropin_read_errno == ENOENT)
        return "absent, nothing to delete";
    if (run->o->dry_run || run->refused)
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
    if (out->result == APPLY_FAILED) {
        printf("  failed: %s\n", out->error);
        if (out->restored[0])
            printf("  restored: %s\n", out->restored);
    }
}

static const char *headline(const struct remove_run *run)
{
    if (!run->refused && nothing_to_do(run))
        return "nothing to remove";
    return run->o->dry_run && !run->refused ? "would remove" : result_word(run);
}

static void print_text(const struct remove_run *run)
{
    bool rolled_back = run->out_known && run->out.result == APPLY_FAILED;

    printf("shmprov remove%s: %s\n", run->o->dry_run ? " --dry-run" : "", headline(run));
    printf("  drop-in %s: %s", run->plan->dropin_path, dropin_text(run));
    if (run->plan->dropin_old && !rolled_back)
        printf(" (%s)", removal_owner_text(run->removal->owner));
    printf("\n");
    print_keys(run);
    for (unsigned i = 0; i < run->plan->nwarnings; i++)
        printf("  warning: %s\n", run->plan->warnings[i]);
    if (run->refused)
        printf("  %s\n", run->error.message);
    else if (run->out_known)
        print_outcome(&run->out);
    else if (run->o->dry_run)
        printf("  nothing changed (--dry-run)\n");
}

static void say_result(const struct remove_run *run)
{
    if (run->o->output == OUTPUT_JSON) {
        /* The very document a report carries as its data. */
        json_object *data = run_report(run);
        printf("%s\n", jsonout_text(data, true));
        json_object_put(data);
    } else if (run->plan && run->removal) {
        print_text(run);
    } else {
        printf("shmprov remove: %s\n  %s: %s\n", result_word(run), run->error.code, run->error.message);
    }
}

/* One record per remove on the live system, as per apply: the metrics say
 * how the last one went. A success forgets the apply that left the
 * drop-in, which is gone now. */
static void record_run(struct remove_run *run)
{
    struct state_run r;

    cli_state_run(run->start_ms, result_word(run), run->out_known ? &run->out : NULL, &r);
    lastapply_record_removal(succeeded(run) ? run->plan->dropin_path : NULL, &r, &run->state);
}

/* The host as it stands after the removal, against the profile: what
 * verify would say, and the last run as recorded. */
static void publish_metrics(const struct remove_run *run)
{
    struct plan *plan = NULL;
    struct conflicts *disk = malloc(sizeof(*disk));

    if (disk && cli_build_plan(run->profile, true, NULL, &plan, NULL, 0) == EXIT_OK) {
        metrics_publish_plan(plan, conflicts_check_on_disk(plan, disk) == 0 ? disk : NULL, plan->host.segments,
                             &run->state);
    } else {
        log_warn("cannot write the metrics to %s", run->profile->metrics_textfile);
    }
    plan_free(plan);
    free(disk);
}

static int exit_code(const struct remove_run *run)
{
    if (run->profile_invalid)
        return EXIT_USAGE;
    if (run->o->dry_run)
        return run->refused ? EXIT_FAILURE_RUNTIME : EXIT_OK;
    return succeeded(run) ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

/* Record, say, let the next apply in, then report and write the metrics. */
static void finish(struct remove_run *run)
{
    const struct cli_options *o = run->o;
    bool live = !o->root && !o->dry_run;

    if (live)
        record_run(run);
    say_result(run);
    lock_release(run->lock);
    run->lock = NULL;
    if (!live || run->profile_missing || o->no_report || !run->profile->report.url)
        log_debug("no report: %s", o->root ? "--root" : o->dry_run ? "--dry-run" : "none asked for");
    else
        runreport_send(run->profile, run_report(run), o->defer_report);
    if (live && run->profile->metrics_textfile)
        publish_metrics(run);
}

static int cmd_remove(const struct cli_options *o)
{
    struct remove_run *run;
    int code;

    if (o->root && cli_check_root(o->root) < 0)
        return EXIT_USAGE;
    run = calloc(1, sizeof(*run));
    if (!run)
        return EXIT_FAILURE_RUNTIME;
    run->o = o;
    run->start_ms = clock_monotonic_ms();
    code = load_profile(run);
    if (code != EXIT_OK)
        goto out;
    decide(run);
    if (!run->refused && !o->dry_run)
        run_transaction(run);
    code = exit_code(run);
    if (!run->profile_invalid)
        finish(run);
out:
    lock_release(run->lock);
    removal_free(run->removal);
    plan_free(run->plan);
    profile_free(run->profile);
    free(run);
    return code;
}

const struct cli_command cmd_remove_entry = {
    .name = "remove",
    .help = "the inverse of apply: delete the drop-in (only while it is what shmprov wrote; with no profile, "
            "the one the last apply recorded), set the running kernel to what boot gives without it (the value "
            "of the file systemd-sysctl reads last, else the kernel's default), prove it with a test "
            "allocation; on any failure put everything back",
    .options = (const struct cli_option[]){
        CLI_FLAG("dry-run", dry_run, "say what would be deleted and each key's value from -> to; change nothing"),
        CLI_FLAG("keep-runtime", keep_runtime, "delete the drop-in only; the running kernel is not touched"),
        CLI_FLAG("force", force,
                 "delete a drop-in that is no longer what shmprov wrote (never a symbolic link or anything but a "
                 "regular file)"),
        CLI_VALUE("root", "DIR", root, "delete the drop-in under DIR only (image builds)"),
        CLI_TRANSACTION_OPTIONS,
        { NULL },
    },
    .exec = cmd_remove,
};
