/* `shmprov plan` and `shmprov apply --dry-run`: read everything, change
 * nothing, show what apply would do. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "conflicts.h"
#include "log.h"
#include "jsonout.h"
#include "lastapply.h"
#include "plan_show.h"
#include "report.h"
#include "runreport.h"

static void print_boot_order(const struct plan *plan, const struct conflicts *c, bool refuses)
{
    printf("\nBoot order (who sets each key last once apply has written %s)\n", plan->profile->dropin);
    for (int id = 0; id < KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        if (!k->managed)
            continue;
        printf("  %-15s", sizing_key_name(id));
        for (int rules = 0; rules < SYSCTLD_RULE_SETS; rules++) {
            const struct sysctld_assignment *w = &c->winners[id][rules];
            if (w->known)
                printf(" %s: %s:%u%s", sysctld_rules_name(rules), w->path, w->line, rules ? "" : ";");
            else
                printf(" %s: nothing (kernel default)%s", sysctld_rules_name(rules), rules ? "" : ";");
        }
        putchar('\n');
    }
    for (size_t i = 0; i < c->count; i++)
        printf("%s: %s\n", refuses ? "apply would refuse" : "warning", c->items[i].text);
    for (size_t i = 0; i < c->nwarnings; i++)
        printf("warning: %s\n", c->warnings[i]);
}

static json_object *boot_order_json(const struct plan *plan, const struct conflicts *c)
{
    json_object *o = json_object_new_object();

    for (int id = 0; id < KEY_COUNT; id++)
        if (plan->sizing.keys[id].managed)
            json_object_object_add(o, sizing_key_name(id), conflicts_winner_json(c, id));
    return o;
}

/* apply --dry-run --report: what apply would do, as a report whose result
 * is dry-run (the keys' "after" is the running value: nothing changed). */
static void report_dry_run(const struct plan *plan, const struct conflicts *c)
{
    struct report_run rr = {
        .command = "apply", .result = "dry-run", .profile = plan->profile, .plan = plan, .conflicts = c,
        .resolve_fqdn = true,
    };

    if (!plan->profile->report.url) {
        log_warn("--report: the profile sets no report.url; nothing sent");
        return;
    }
    lastapply_sha256_on_disk(plan->dropin_path, rr.dropin_sha256_on_disk);
    runreport_send(plan->profile, report_data(&rr), false);
}

static int exit_code_of(enum plan_refusal refusal)
{
    static const int codes[] = {
        [PLAN_PROCEEDS] = EXIT_OK,
        [PLAN_HOST_REFUSES] = EXIT_FAILURE_RUNTIME,
        [PLAN_PROFILE_CONTRADICTS] = EXIT_USAGE,
    };
    return codes[refusal];
}

int cmd_plan(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    CLEANUP_FREE struct conflicts *conflicts = malloc(sizeof(*conflicts)); /* 20 KiB: off the stack */
    const char *note = NULL;
    bool refuses;
    int code, r;

    code = cli_load_profile(o, &profile, &note);
    if (code != EXIT_OK)
        return code;

    code = cli_build_plan(profile, o->force, NULL, &plan, NULL, 0);
    if (code != EXIT_OK)
        goto out;
    plan->profile_note = note;

    /* The same boot-order analysis apply makes before it writes. */
    r = conflicts ? conflicts_check(plan, NULL, conflicts) : -ENOMEM;
    if (r < 0) {
        log_error("cannot analyse the sysctl.d directories: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    refuses = conflicts->count > 0 && !profile->conflicts_warn_only;

    if (o->output == OUTPUT_JSON) {
        json_object *doc = plan_to_json(plan);
        if (!doc) {
            code = EXIT_FAILURE_RUNTIME;
            goto out;
        }
        json_object_object_add(doc, "boot_order", boot_order_json(plan, conflicts));
        json_object_object_add(doc, "conflicts", conflicts_json(conflicts));
        /* The boot-order analysis's notes (odd files in sysctl.d) too. */
        for (size_t i = 0; i < conflicts->nwarnings; i++)
            json_object_array_add(json_object_object_get(doc, "warnings"),
                                  jsonout_string(conflicts->warnings[i]));
        r = printf("%s\n", jsonout_text(doc, true)) < 0 ? -EIO : 0;
        json_object_put(doc);
        for (unsigned i = 0; i < plan->nwarnings; i++)
            log_warn("%s", plan->warnings[i]);
        /* In JSON the refusal is inside the document; say it on stderr too. */
        for (unsigned i = 0; i < plan->sizing.nproblems; i++)
            log_error("apply would refuse: %s", plan->sizing.problems[i].text);
        if (plan->dropin_problem[0])
            log_error("apply would refuse: %s", plan->dropin_problem);
        conflicts_log(conflicts, refuses);
    } else {
        r = plan_print_text(plan, stdout);
        print_boot_order(plan, conflicts, refuses);
    }
    if (o->report)
        report_dry_run(plan, conflicts);
    code = r < 0 ? EXIT_FAILURE_RUNTIME : exit_code_of(plan_refusal(plan));
    if (code == EXIT_OK && refuses)
        code = EXIT_FAILURE_RUNTIME;
out:
    plan_free(plan);
    profile_free(profile);
    return code;
}

const struct cli_command cmd_plan_entry = {
    .name = "plan",
    .help = "show the derived values and every change apply would make; changes nothing",
    .options = (const struct cli_option[]){
        CLI_FLAG("force", force, "allow limits below what existing segments use"),
        { NULL },
    },
    .exec = cmd_plan,
};
