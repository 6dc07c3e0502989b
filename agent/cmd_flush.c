/* `shmprov flush`: send the spooled reports now. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "delivery.h"
#include "jsonout.h"
#include "lock.h"
#include "log.h"

/* waiting is null when the spool could not be listed. */
static void print_json(const struct delivery_summary *sum)
{
    json_object *doc = json_object_new_object();

    json_object_object_add(doc, "command", json_object_new_string("flush"));
    json_object_object_add(doc, "delivered", json_object_new_int((int)sum->delivered));
    json_object_object_add(doc, "rejected", json_object_new_int((int)sum->rejected));
    json_object_object_add(doc, "quarantined", json_object_new_int((int)sum->quarantined));
    json_object_object_add(doc, "waiting", sum->waiting_unknown ? NULL : json_object_new_int((int)sum->waiting));
    json_object_object_add(doc, "error", sum->error[0] ? jsonout_string(sum->error) : NULL);
    printf("%s\n", jsonout_text(doc, true));
    json_object_put(doc);
}

static int cmd_flush(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct lock *lock = NULL;
    struct delivery_summary sum;
    int code, r;

    code = cli_load_profile(o, &profile);
    if (code != EXIT_OK)
        return code;
    if (!profile->report.url) {
        log_error("%s has no report.url: there is nowhere to send the spool", profile->path);
        code = EXIT_USAGE;
        goto out;
    }
    /* The spool belongs to one shmprov at a time. */
    if (cli_lock(LOCK_SPOOL_PATH, &lock, NULL) < 0) {
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    r = delivery_flush(profile, &sum);
    /* Quarantined events are out of the spool for good: only what is still
     * waiting (or may be) is a failure, and then it is said as one. */
    code = r < 0 || sum.waiting > 0 || sum.waiting_unknown ? EXIT_FAILURE_RUNTIME : EXIT_OK;
    if (code != EXIT_OK && sum.waiting_unknown)
        log_error("reports may still be waiting in %s: %s", profile->report.spool_dir,
                  sum.error[0] ? sum.error : strerror(-r));
    else if (code != EXIT_OK)
        log_error("%u report(s) still waiting in %s: %s", sum.waiting, profile->report.spool_dir,
                  sum.error[0] ? sum.error : "the collector did not take them");
    else if (sum.error[0])
        log_warn("%s", sum.error);
    if (o->output == CLI_OUTPUT_JSON)
        print_json(&sum);
    else if (sum.waiting_unknown)
        printf("shmprov flush: %u delivered, %u rejected, %u quarantined, unknown how many waiting in %s\n",
               sum.delivered, sum.rejected, sum.quarantined, profile->report.spool_dir);
    else
        printf("shmprov flush: %u delivered, %u rejected, %u quarantined, %u waiting in %s\n", sum.delivered,
               sum.rejected, sum.quarantined, sum.waiting, profile->report.spool_dir);
out:
    lock_release(lock);
    profile_free(profile);
    return code;
}

const struct cli_command cmd_flush_entry = {
    .name = "flush",
    .help = "send spooled reports now (exit 1 while some are waiting)",
    .exec = cmd_flush,
};
