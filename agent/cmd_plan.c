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

static bool force;       /* plan --force: the row of cmd_plan_entry */
static bool send_report; /* apply --dry-run --report */

static void print_boot_order(const struct plan *plan, const struct conflicts *c, bool refuses)
{
    printf("\nBoot order (who sets each key last once apply has written %s)\n", plan->profile->dropin);
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
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

    for (int id = 0; id < SIZING_KEY_COUNT; id++)
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

    lastapply_sha256_on_disk(plan->dropin_path, rr.dropin_sha256_on_disk);
    cli_send_asked_report(&rr);
}

/* The plan as one JSON document with the boot order; on stderr too what
 * would refuse, as the text says it on stdout. */
static int print_json(const struct plan *plan, const struct conflicts *c, bool refuses)
{
    json_object *doc = plan_to_json(plan);
    int r;

    if (!doc)
        return -ENOMEM;
    json_object_object_add(doc, "boot_order", boot_order_json(plan, c));
    json_object_object_add(doc, "conflicts", conflicts_json(c));
    /* The boot-order analysis's notes (odd files in sysctl.d) too. */
    for (size_t i = 0; i < c->nwarnings; i++)
        json_object_array_add(json_object_object_get(doc, "warnings"), jsonout_string(c->warnings[i]));
    r = printf("%s\n", jsonout_text(doc, true)) < 0 ? -EIO : 0;
    json_object_put(doc);
    for (unsigned i = 0; i < plan->nwarnings; i++)
        log_warn("%s", plan->warnings[i]);
    for (unsigned i = 0; i < plan->sizing.nproblems; i++)
        log_error("apply would refuse: %s", plan->sizing.problems[i].text);
    if (plan->dropin_problem[0])
        log_error("apply would refuse: %s", plan->dropin_problem);
    conflicts_log(c, refuses);
    return r;
}

/* What plan shows once the plan is built, and its exit code. */
static int show_plan(const struct cli_options *o, const struct plan *plan)
{
    CLEANUP_FREE struct conflicts *c = malloc(sizeof(*c));
    /* The same boot-order analysis apply makes before it writes. */
    int r = c ? conflicts_check(plan, NULL, c) : -ENOMEM;
    bool refuses;

    if (r < 0) {
        log_error("cannot analyse the sysctl.d directories: %s", strerror(-r));
        return EXIT_FAILURE_RUNTIME;
    }
    refuses = c->count > 0 && !plan->profile->conflicts_warn_only;
    if (o->output == CLI_OUTPUT_JSON) {
        r = print_json(plan, c, refuses);
    } else {
        r = plan_print_text(plan, stdout);
        print_boot_order(plan, c, refuses);
    }
    if (send_report)
        report_dry_run(plan, c);
    /* A profile that contradicts itself is exit 2 already (cli_build_plan). */
    return r < 0 || refuses || plan_refusal(plan) != PLAN_PROCEEDS ? EXIT_FAILURE_RUNTIME : EXIT_OK;
}

int cmd_plan_dry_run(const struct cli_options *o, bool forced, bool report)
{
    send_report = report;
    return cli_with_plan(o, forced, show_plan);
}

static int cmd_plan(const struct cli_options *o)
{
    return cli_with_plan(o, force, show_plan);
}

const struct cli_command cmd_plan_entry = {
    .name = "plan",
    .help = "show the derived values and every change apply would make; changes nothing",
    .options = (const struct cli_option[]){
        CLI_FLAG("force", &force, "allow limits below what existing segments use"),
        { 0 },
    },
    .exec = cmd_plan,
};
