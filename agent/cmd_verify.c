/* `shmprov verify`: does the host match the profile? The running kernel,
 * the drop-in's bytes, and which file wins each key at boot. Changes
 * nothing; exit 3 on drift. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "conflicts.h"
#include "host.h"
#include "log.h"
#include "plan.h"
#include "jsonout.h"
#include "lastapply.h"
#include "metrics.h"
#include "probe.h"
#include "report.h"

static bool report; /* verify --report: the row of cmd_verify_entry */

/* Adds one discrepancy; its message is printf-formatted. Quietly full
 * at REPORT_DRIFT_MAX: the first ones are the ones a person reads. */
static struct report_drift *add(struct report_drift_list *l, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct report_drift *add(struct report_drift_list *l, const char *kind, const char *fmt, ...)
{
    struct report_drift *d;
    va_list ap;

    if (l->count >= REPORT_DRIFT_MAX)
        return NULL;
    d = &l->items[l->count++];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    va_start(ap, fmt);
    (void)vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
    return d;
}

static void check_runtime(const struct plan *plan, struct report_drift_list *l)
{
    bool raise_only = plan->profile->policy == PROFILE_POLICY_RAISE_ONLY;

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        struct report_drift *d = NULL;

        if (!k->managed)
            continue;
        if (!k->current_known)
            d = add(l, "runtime", "%s: cannot read the running value", sizing_key_name(id));
        else if (!plan_key_in_sync(plan, (enum sizing_key_id)id))
            d = add(l, "runtime", "%s: the running kernel has %" PRIu64 ", the profile wants %s%" PRIu64,
                    sizing_key_name(id), k->current, raise_only ? "at least " : "", k->derived);
        if (!d)
            continue;
        d->key = sizing_key_name(id);
        (void)snprintf(d->expected, sizeof(d->expected), "%s%" PRIu64, raise_only ? ">=" : "", k->derived);
        if (k->current_known)
            (void)snprintf(d->found, sizeof(d->found), "%" PRIu64, k->current);
    }
}

static void check_dropin(const struct plan *plan, struct report_drift_list *l)
{
    struct report_drift *d;

    if (plan->dropin_read_errno == ENOENT)
        d = add(l, "dropin-missing", "%s does not exist: the limits are not persisted for the next boot",
                plan->dropin_path);
    else if (plan->dropin_read_errno == ELOOP)
        d = add(l, "dropin-symlink", "%s is a symbolic link, not shmprov's drop-in", plan->dropin_path);
    else if (plan->dropin_read_errno != 0)
        d = add(l, "dropin-unreadable", "%s", plan->dropin_problem);
    else if (plan->dropin_changed)
        d = add(l, "dropin-edited",
                "%s differs from what the profile gives (edited by hand, or the profile changed since the last "
                "apply)", plan->dropin_path);
    else
        return;
    if (!d)
        return;
    d->file = plan->dropin_path;
    (void)snprintf(d->expected, sizeof(d->expected), "sha256:%s", plan->dropin_new_sha256);
    if (plan->dropin_old)
        (void)snprintf(d->found, sizeof(d->found), "sha256:%s", plan->dropin_old_sha256);
}

/* A test segment a killed shmprov left behind holds up to all of
 * kernel.shmall while everything else looks in sync. Reported, never
 * removed here: verify changes nothing. */
static void check_probe_leftovers(const struct plan *plan, struct report_drift_list *l)
{
    const struct shmseg_table *t = plan->host.segments;
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    uint64_t page = plan->host.page_size ? plan->host.page_size : 1;
    size_t n;

    if (probe_key_persistent(plan->profile->persistent_keys, plan->profile->npersistent_keys))
        return;
    if (!t) {
        log_warn("cannot look for test segments a killed shmprov left behind: /proc/sysvipc/shm: %s",
                 host_segments_reason(plan->host.segments_errno));
        return;
    }
    n = probe_find_leftovers(t, geteuid(), found, PROBE_LEFTOVERS_MAX);
    for (size_t i = 0; i < n && i < PROBE_LEFTOVERS_MAX; i++) {
        const struct shmseg *s = &found[i].seg;
        struct report_drift *d = add(l, "probe-leftover",
            "segment id %" PRId32 " (%" PRIu64 " bytes, key 0x%08x) is a test allocation a killed shmprov (pid %" PRId64
            ") left behind; it holds %" PRIu64 " pages of kernel.shmall: 'shmprov apply' removes it",
            s->id, s->size, (unsigned)s->key, s->cpid, s->size / page + (s->size % page != 0));

        if (d)
            (void)snprintf(d->found, sizeof(d->found), "segment %" PRId32 ", %" PRIu64 " bytes", s->id, s->size);
    }
}

static void check_boot_order(const struct conflicts *c, struct report_drift_list *l)
{
    for (size_t i = 0; i < c->nwarnings; i++)
        log_warn("%s", c->warnings[i]);
    for (size_t i = 0; i < c->count; i++) {
        struct report_drift *d = add(l, "overridden", "%s", c->items[i].text);

        if (!d)
            continue;
        d->key = sizing_key_name(c->items[i].key);
        d->file = c->items[i].winner.path;
        (void)snprintf(d->found, sizeof(d->found), "%.71s", c->items[i].winner.value);
    }
}

static void print_text(const struct plan *plan, const struct report_drift_list *drift)
{
    if (drift->count == 0) {
        printf("shmprov verify: in sync with %s (running kernel, %s, boot order)\n", plan->profile->path,
               plan->dropin_path);
        return;
    }
    printf("shmprov verify: drift from %s\n", plan->profile->path);
    for (unsigned i = 0; i < drift->count; i++)
        printf("  %s: %s\n", drift->items[i].kind, drift->items[i].message);
    if (plan->dropin_read_errno == 0 && plan->dropin_changed) {
        char *diff = plan_diff(plan);

        fputs(diff ? diff : PLAN_DIFF_NO_MEMORY, stdout);
        free(diff);
    }
}

static void say_result(const struct cli_options *o, const struct report_run *rr)
{
    if (o->output == CLI_OUTPUT_JSON) {
        /* The same document verify --report sends. */
        json_object *doc = report_data(rr);
        printf("%s\n", jsonout_text(doc, true));
        json_object_put(doc);
    } else {
        print_text(rr->plan, rr->drift);
    }
    if (report)
        cli_send_asked_report(rr);
}

/* What verify finds once the plan is built, and its exit code. */
static int verify_plan(const struct cli_options *o, const struct plan *plan)
{
    struct report_drift_list *drift = calloc(1, sizeof(*drift));
    struct conflicts *conflicts = malloc(sizeof(*conflicts));
    int r = drift && conflicts ? conflicts_check_on_disk(plan, conflicts) : -ENOMEM;

    if (r < 0) {
        log_error("cannot analyse the sysctl.d directories: %s", strerror(-r));
        free(drift);
        free(conflicts);
        return EXIT_FAILURE_RUNTIME;
    }
    check_runtime(plan, drift);
    check_dropin(plan, drift);
    check_boot_order(conflicts, drift);
    check_probe_leftovers(plan, drift);

    struct report_run rr = {
        .command = "verify", .result = drift->count ? "drift" : "in-sync", .profile = plan->profile, .plan = plan,
        .conflicts = conflicts, .drift = drift, .resolve_fqdn = report,
    };
    lastapply_sha256_on_disk(plan->dropin_path, rr.dropin_sha256_on_disk);
    say_result(o, &rr);
    /* The metrics of what verify found: the same checks, as numbers. */
    if (plan->profile->metrics_textfile)
        metrics_publish_plan(plan, conflicts, plan->host.segments, NULL);
    r = drift->count ? EXIT_DRIFT : EXIT_OK;
    free(drift);
    free(conflicts);
    return r;
}

static int cmd_verify(const struct cli_options *o)
{
    return cli_with_plan(o, true, verify_plan);
}

const struct cli_command cmd_verify_entry = {
    .name = "verify",
    .help = "compare the running kernel, the drop-in and the boot order with the profile; changes nothing; "
            "exit 3 on drift",
    .options = (const struct cli_option[]){
        CLI_FLAG("report", &report, "report the result (in-sync or drift) as apply does"),
        { 0 },
    },
    .exec = cmd_verify,
};
