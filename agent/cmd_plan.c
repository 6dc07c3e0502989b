/* `shmprov plan` and `shmprov apply --dry-run`: read everything, change
 * nothing, show what apply would do. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "host.h"
#include "log.h"
#include "plan.h"

int cmd_plan(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    struct host_facts host;
    const char *note = NULL;
    int code, r;

    code = cli_load_profile(o, &profile, &note);
    if (code != EXIT_OK)
        return code;

    r = host_read(&host);
    if (r < 0) {
        log_error("cannot read the page size of this kernel: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    if (host.memtotal_bytes == 0 && profile->ram_tier == TIER_AUTO) {
        log_error("cannot read MemTotal from /proc/meminfo, which 'ram_tier: auto' needs; "
                  "set host.ram_tier in the profile");
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }

    r = plan_build(profile, &host, o->force, &plan);
    if (r < 0) {
        log_error("cannot build the plan: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }
    plan->profile_note = note;

    /* A profile that contradicts itself is invalid: no plan, exit 2. */
    if (plan_exit_code(plan) == EXIT_USAGE) {
        for (unsigned i = 0; i < plan->sizing.nproblems; i++)
            if (plan->sizing.problems[i].in_profile)
                fprintf(stderr, "%s\n", plan->sizing.problems[i].text);
        code = EXIT_USAGE;
        goto out;
    }

    if (o->output == OUTPUT_JSON) {
        r = plan_print_json(plan, stdout);
        for (unsigned i = 0; i < plan->nwarnings; i++)
            log_warn("%s", plan->warnings[i]);
    } else {
        r = plan_print_text(plan, stdout);
    }
    /* In JSON the refusal is inside the document; say it on stderr too. */
    for (unsigned i = 0; o->output == OUTPUT_JSON && i < plan->sizing.nproblems; i++)
        log_error("apply would refuse: %s", plan->sizing.problems[i].text);
    code = r < 0 ? EXIT_FAILURE_RUNTIME : plan_exit_code(plan);
out:
    plan_free(plan);
    profile_free(profile);
    return code;
}
