/* `shmprov status`: limits, usage, headroom and segments (README "status"). Changes
 * nothing, except with --remove-orphans: each orphan candidate is re-checked
 * right before IPC_RMID and removed only when still unchanged and still an
 * orphan; one log line per decision. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "host.h"
#include "jsonout.h"
#include "log.h"
#include "metrics.h"
#include "status_show.h"

/* status's options: the rows of cmd_status_entry point here. */
static struct {
    bool segments, remove_orphans, dry_run;
} opt;

static void log_removal(const struct shmseg *seg, const char *kind, enum orphans_outcome outcome, const char *why)
{
    char what[160];

    (void)snprintf(what, sizeof(what), "segment id %" PRId32 " (key 0x%08x, %" PRIu64 " bytes, creator pid %" PRId64 ")",
                   seg->id, (unsigned)seg->key, seg->size, seg->cpid);
    switch (outcome) {
    case ORPHAN_REMOVED:
        log_info("removed %s %s: %s", kind, what, why);
        break;
    case ORPHAN_WOULD_REMOVE:
        log_info("would remove %s %s (--dry-run): %s", kind, what, why);
        break;
    case ORPHAN_FAILED:
        log_error("cannot remove %s %s: %s", kind, what, why);
        break;
    default:
        log_info("left %s alone: %s", what, why);
    }
}

struct removals {
    unsigned failed;
    unsigned removed; /* really removed: not with --dry-run */
};

/* The outcome of each removal, counting those that failed (nothing can be
 * looked for without the segment table) and those that happened. A probe
 * leftover (shmprov's own test segment, left by a killed run: probe.h) is
 * removed too, under the same re-check and named as what it is: it is
 * known to be ours and dead, and it may hold all of kernel.shmall. (Never
 * persistent: status.c does not call a persistent key's segment a
 * leftover.) */
static json_object *remove_orphans(const struct status *s, struct removals *n)
{
    json_object *removals = json_object_new_array();

    if (!s->segments) {
        log_error("cannot look for orphans: /proc/sysvipc/shm: %s", host_segments_reason(s->segments_errno));
        n->failed++;
    }
    for (size_t i = 0; s->segments && i < s->segments->count; i++) {
        const struct shmseg *seg = &s->segments->items[i];
        const struct orphans_verdict *v = &s->verdicts[i];
        json_object *o;
        const char *outcome, *kind = v->probe_leftover ? "probe leftover" : "orphan";
        char why[300];

        if (!v->candidate && !v->probe_leftover)
            continue;
        if (v->persistent) {
            (void)snprintf(why, sizeof(why), "the profile marks key 0x%08x persistent", (unsigned)seg->key);
            log_info("kept %s segment id %" PRId32 ": %s", kind, seg->id, why);
            outcome = "kept-persistent";
        } else {
            enum orphans_outcome r = orphans_remove(seg, opt.dry_run, why, sizeof(why));
            log_removal(seg, kind, r, why);
            n->failed += r == ORPHAN_FAILED;
            n->removed += r == ORPHAN_REMOVED;
            outcome = orphans_outcome_name(r);
        }
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int(seg->id));
        json_object_object_add(o, "kind", json_object_new_string(v->probe_leftover ? "probe-leftover" : "orphan"));
        json_object_object_add(o, "outcome", json_object_new_string(outcome));
        json_object_object_add(o, "reason", jsonout_string(why));
        json_object_array_add(removals, o);
    }
    return removals;
}

/* The metrics of what status read: the kernel's counters for usage where
 * it gave them, as the text does. */
static void status_metrics(const struct status *s, struct metrics *m)
{
    const struct plan *plan = s->plan;

    metrics_init(m, plan->profile, plan);
    if (s->kernel_known) {
        m->segments = (struct metrics_u64){ true, s->kernel.segments };
        m->pages = (struct metrics_u64){ true, s->kernel.pages };
    }
    m->bytes = (struct metrics_u64){ s->segments != NULL, s->table.bytes };
    m->largest = (struct metrics_u64){ s->segments != NULL, s->table.largest_segment };
    m->orphans = (struct metrics_u64){ s->segments != NULL, s->norphans - s->npersistent_orphans };
    m->leftovers = (struct metrics_u64){ s->segments != NULL, s->nleftovers };
    metrics_set_boot(m, plan, s->boot_known ? &s->boot : NULL);
    metrics_set_state(m, NULL);
    metrics_read_spool(m, plan->profile);
}

/* The metrics say how things are now: after removals, read again (the
 * listing printed stays the one that was acted on). */
static int gather_metrics(const struct status *s, const struct removals *removed, struct metrics *m)
{
    struct status *again = NULL;
    CLEANUP_FREE struct shmseg_table *segments = NULL;
    int r;

    if (!removed->removed) {
        status_metrics(s, m);
        return 0;
    }
    r = host_read_segments(&segments);
    r = status_gather(s->plan, segments, r < 0 ? -r : 0, &again);
    if (r < 0)
        return r;
    status_metrics(again, m);
    status_free(again);
    return 0;
}

/* Prints the result (and the removals' outcomes) in the chosen format. */
static void print_status(const struct cli_options *o, const struct status *status, const struct metrics *m,
                         json_object *removals)
{
    if (o->output == CLI_OUTPUT_PROMETHEUS) {
        (void)metrics_render(m, stdout);
    } else if (o->output == CLI_OUTPUT_JSON) {
        json_object *doc = status_to_json(status);
        if (removals)
            json_object_object_add(doc, "removals", json_object_get(removals));
        printf("%s\n", jsonout_text(doc, true));
        json_object_put(doc);
    } else {
        status_print_text(status, opt.segments, stdout);
        if (removals)
            printf("\nOrphan removal%s: %zu candidate(s), outcomes in the log lines on stderr\n",
                   opt.dry_run ? " (--dry-run: nothing removed)" : "", json_object_array_length(removals));
    }
}

/* What status shows once the plan is built, and its exit code. */
static int show_status(const struct cli_options *o, const struct plan *plan)
{
    const struct profile *profile = plan->profile;
    struct status *status = NULL;
    struct metrics *m = NULL;
    json_object *removals = NULL;
    struct removals removed = { 0 };
    int code, r;

    r = status_gather(plan, plan->host.segments, plan->host.segments_errno, &status);
    m = malloc(sizeof(*m));
    if (r < 0 || !m) {
        log_error("cannot read the status: %s", strerror(r < 0 ? -r : ENOMEM));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }

    /* Removal first, so the listing printed is the one that was acted on
     * and the outcomes can go with it. */
    if (opt.remove_orphans)
        removals = remove_orphans(status, &removed);
    /* Gathered only where they go: plain status reads no state file. */
    if ((o->output == CLI_OUTPUT_PROMETHEUS || profile->metrics_textfile) && gather_metrics(status, &removed, m) < 0) {
        log_error("cannot read the status: %s", strerror(ENOMEM));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    print_status(o, status, m, removals);
    if (profile->metrics_textfile)
        metrics_publish(m, profile);
    code = removed.failed ? EXIT_FAILURE_RUNTIME : EXIT_OK;
out:
    json_object_put(removals);
    free(m);
    status_free(status);
    return code;
}

static int cmd_status(const struct cli_options *o)
{
    if (opt.dry_run && !opt.remove_orphans)
        return cli_usage_error("'status --dry-run' needs --remove-orphans: status alone changes nothing");
    return cli_with_plan(o, true, show_status);
}

const struct cli_command cmd_status_entry = {
    .name = "status",
    .help = "limits (running, at boot, in the profile), page size, usage, headroom, overcommit, namespace, "
            "orphan candidates; changes nothing",
    .options = (const struct cli_option[]){
        CLI_FLAG("segments", &opt.segments,
                 "list every segment (key, id, owner, perms, size, attached, creator and last pid and whether "
                 "they are alive)"),
        CLI_FLAG("remove-orphans", &opt.remove_orphans,
                 "remove orphan candidates (nothing attached, creator and last user gone) that are unchanged on a "
                 "re-check right before removal; keys the profile lists in segments.persistent_keys are kept; a "
                 "log line per segment; exit 1 if one fails"),
        CLI_FLAG("dry-run", &opt.dry_run, "with --remove-orphans: re-check, remove nothing"),
        { 0 },
    },
    .prometheus = true,
    .exec = cmd_status,
};
