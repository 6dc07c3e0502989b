/* `shmprov status`: limits, usage, headroom and segments (README "status"). Changes
 * nothing, except with --remove-orphans: each orphan candidate is re-checked
 * right before IPC_RMID and removed only when still unchanged and still an
 * orphan; one log line per decision. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "jsonout.h"
#include "log.h"
#include "status.h"

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

/* Returns the number of removals that failed. A probe leftover (shmprov's
 * own test segment, left by a killed run: probe.h) is removed too, under
 * the same re-check and named as what it is: it is known to be ours and
 * dead, and it may hold all of kernel.shmall. (Never persistent: status.c
 * does not call a persistent key's segment a leftover.) */
static unsigned remove_orphans(const struct status *s, bool dry_run, json_object *removals)
{
    unsigned failed = 0;

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
            enum orphans_outcome r = orphans_remove(seg, dry_run, why, sizeof(why));
            log_removal(seg, kind, r, why);
            failed += r == ORPHAN_FAILED;
            outcome = orphans_outcome_name(r);
        }
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int(seg->id));
        json_object_object_add(o, "kind", json_object_new_string(v->probe_leftover ? "probe-leftover" : "orphan"));
        json_object_object_add(o, "outcome", json_object_new_string(outcome));
        json_object_object_add(o, "reason", jsonout_string(why));
        json_object_array_add(removals, o);
    }
    return failed;
}

int cmd_status(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    struct status *status = NULL;
    json_object *removals = NULL;
    const char *note = NULL;
    unsigned failed = 0;
    int code, r;

    code = cli_load_profile(o, &profile, &note);
    if (code != EXIT_OK)
        return code;
    code = cli_build_plan(profile, true, NULL, &plan, NULL, 0);
    if (code != EXIT_OK)
        goto out;
    plan->profile_note = note;
    r = status_gather(plan, &status);
    if (r < 0) {
        log_error("cannot read the status: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }

    /* Removal first, so the listing printed is the one that was acted on
     * and the outcomes can go with it. */
    if (o->remove_orphans) {
        removals = json_object_new_array();
        if (!status->segments)
            log_error("cannot look for orphans: /proc/sysvipc/shm: %s",
                      status->segments_errno == EINVAL ? "not the table the kernel writes (malformed or cut short)"
                                                       : strerror(status->segments_errno));
        failed = remove_orphans(status, o->dry_run, removals);
        if (!status->segments)
            failed++;
    }

    if (o->output == OUTPUT_JSON) {
        json_object *doc = status_to_json(status);
        if (removals)
            json_object_object_add(doc, "removals", json_object_get(removals));
        printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(doc);
    } else {
        status_print_text(status, o->segments, stdout);
        if (removals)
            printf("\nOrphan removal%s: %zu candidate(s), outcomes in the log lines on stderr\n",
                   o->dry_run ? " (--dry-run: nothing removed)" : "", json_object_array_length(removals));
    }
    code = failed ? EXIT_FAILURE_RUNTIME : EXIT_OK;
out:
    json_object_put(removals);
    status_free(status);
    plan_free(plan);
    profile_free(profile);
    return code;
}
