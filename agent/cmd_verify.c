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

#include "cli.h"
#include "conflicts.h"
#include "host.h"
#include "log.h"
#include "plan.h"
#include "probe.h"

#define MAX_DRIFT 16

struct drift {
    const char *kind; /* runtime, dropin-missing, dropin-edited, dropin-symlink, overridden, probe-leftover */
    char text[600];
    bool has_segment; /* probe-leftover: which segment, for programs */
    int32_t segment_id;
    uint64_t bytes;
};

struct drift_list {
    unsigned count;
    struct drift items[MAX_DRIFT];
};

static void add(struct drift_list *l, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(struct drift_list *l, const char *kind, const char *fmt, ...)
{
    va_list ap;

    if (l->count >= MAX_DRIFT)
        return;
    l->items[l->count].kind = kind;
    va_start(ap, fmt);
    (void)vsnprintf(l->items[l->count].text, sizeof(l->items[0].text), fmt, ap);
    va_end(ap);
    l->count++;
}

static void check_runtime(const struct plan *plan, struct drift_list *l)
{
    bool raise_only = plan->profile->policy == POLICY_RAISE_ONLY;

    for (int id = 0; id < KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        if (!k->managed)
            continue;
        if (!k->current_known)
            add(l, "runtime", "%s: cannot read the running value", sizing_key_name(id));
        else if (!plan_key_in_sync(plan, (enum sizing_key_id)id))
            add(l, "runtime", "%s: the running kernel has %" PRIu64 ", the profile wants %s%" PRIu64,
                sizing_key_name(id), k->current, raise_only ? "at least " : "", k->derived);
    }
}

static void check_dropin(const struct plan *plan, struct drift_list *l)
{
    if (plan->dropin_read_errno == ENOENT)
        add(l, "dropin-missing", "%s does not exist: the limits are not persisted for the next boot",
            plan->dropin_path);
    else if (plan->dropin_read_errno == ELOOP)
        add(l, "dropin-symlink", "%s is a symbolic link, not shmprov's drop-in", plan->dropin_path);
    else if (plan->dropin_read_errno != 0)
        add(l, "dropin-unreadable", "%s", plan->dropin_problem);
    else if (plan->dropin_changed)
        add(l, "dropin-edited",
            "%s differs from what the profile gives (edited by hand, or the profile changed since the last apply)",
            plan->dropin_path);
}

/* A test segment a killed shmprov left behind holds up to all of
 * kernel.shmall while everything else looks in sync. Reported, never
 * removed here: verify changes nothing. */
static void check_probe_leftovers(const struct plan *plan, struct drift_list *l)
{
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    struct shmseg_table *t = NULL;
    uint64_t page = plan->host.page_size ? plan->host.page_size : 1;
    size_t n;
    int r;

    if (probe_key_persistent(plan->profile->persistent_keys, plan->profile->npersistent_keys))
        return;
    r = host_read_segments(&t);
    if (r < 0) {
        log_warn("cannot look for test segments a killed shmprov left behind: /proc/sysvipc/shm: %s",
                 r == -EINVAL ? "not the table the kernel writes (malformed or cut short)" : strerror(-r));
        return;
    }
    n = probe_find_leftovers(t, geteuid(), found, PROBE_LEFTOVERS_MAX);
    free(t);
    for (size_t i = 0; i < n && i < PROBE_LEFTOVERS_MAX && l->count < MAX_DRIFT; i++) {
        const struct shmseg *s = &found[i].seg;

        add(l, "probe-leftover",
            "segment id %" PRId32 " (%" PRIu64 " bytes, key 0x%08x) is a test allocation a killed shmprov (pid %" PRId64
            ") left behind; it holds %" PRIu64 " pages of kernel.shmall: 'shmprov apply' removes it",
            s->id, s->size, (unsigned)s->key, s->cpid, s->size / page + (s->size % page != 0));
        l->items[l->count - 1].has_segment = true;
        l->items[l->count - 1].segment_id = s->id;
        l->items[l->count - 1].bytes = s->size;
    }
}

static void check_boot_order(const struct conflicts *c, struct drift_list *l)
{
    for (size_t i = 0; i < c->nwarnings; i++)
        log_warn("%s", c->warnings[i]);
    for (size_t i = 0; i < c->count; i++)
        add(l, "overridden", "%s", c->items[i].text);
}

int cmd_verify(const struct cli_options *o)
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    struct conflicts conflicts;
    struct drift_list drift = { 0 };
    const char *note = NULL;
    int code, r;

    code = cli_load_profile(o, &profile, &note);
    if (code != EXIT_OK)
        return code;
    code = cli_build_plan(profile, true, NULL, &plan);
    if (code != EXIT_OK)
        goto out;
    r = conflicts_check_on_disk(plan, &conflicts);
    if (r < 0) {
        log_error("cannot analyse the sysctl.d directories: %s", strerror(-r));
        code = EXIT_FAILURE_RUNTIME;
        goto out;
    }

    check_runtime(plan, &drift);
    check_dropin(plan, &drift);
    check_boot_order(&conflicts, &drift);
    check_probe_leftovers(plan, &drift);

    if (o->output == OUTPUT_JSON) {
        json_object *doc = json_object_new_object(), *items = json_object_new_array();
        for (unsigned i = 0; i < drift.count; i++) {
            json_object *d = json_object_new_object();
            json_object_object_add(d, "kind", json_object_new_string(drift.items[i].kind));
            json_object_object_add(d, "message", json_object_new_string(drift.items[i].text));
            if (drift.items[i].has_segment) {
                json_object_object_add(d, "segment_id", json_object_new_int(drift.items[i].segment_id));
                json_object_object_add(d, "bytes", json_object_new_uint64(drift.items[i].bytes));
            }
            json_object_array_add(items, d);
        }
        json_object_object_add(doc, "command", json_object_new_string("verify"));
        json_object_object_add(doc, "profile", json_object_new_string(profile->path));
        json_object_object_add(doc, "result", json_object_new_string(drift.count ? "drift" : "in-sync"));
        json_object_object_add(doc, "drift", items);
        json_object_object_add(doc, "conflicts", conflicts_json(&conflicts));
        printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(doc);
    } else if (drift.count == 0) {
        printf("shmprov verify: in sync with %s (running kernel, %s, boot order)\n", profile->path,
               plan->dropin_path);
    } else {
        printf("shmprov verify: drift from %s\n", profile->path);
        for (unsigned i = 0; i < drift.count; i++)
            printf("  %s: %s\n", drift.items[i].kind, drift.items[i].text);
        if (plan->dropin_read_errno == 0 && plan->dropin_changed)
            fputs(plan->dropin_diff, stdout);
    }
    code = drift.count ? EXIT_DRIFT : EXIT_OK;
out:
    plan_free(plan);
    profile_free(profile);
    return code;
}
