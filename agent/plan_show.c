/* Rendering of a plan (plan_show.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <json-c/json.h>
#include <string.h>

#include "jsonobj.h"
#include "jsonout.h"
#include "plan_show.h"
#include "sizes.h"

static const char *tier_reason(const struct sizing_result *s)
{
    static const char *const detected[] = {
        [PROFILE_TIER_SMALL] = "auto: MemTotal is below 16 GiB",
        [PROFILE_TIER_MEDIUM] = "auto: MemTotal is from 16 GiB up to 64 GiB",
        [PROFILE_TIER_LARGE] = "auto: MemTotal is 64 GiB or more",
    };
    return s->tier_detected ? detected[s->tier] : "set in the profile";
}

static const char *overcommit_meaning(int mode)
{
    static const char *const meanings[] = {
        "heuristic overcommit", "always overcommit",
        "strict accounting: a large segment can fail with ENOMEM even below the limits",
    };
    return mode >= 0 && mode <= 2 ? meanings[mode] : "unknown";
}

/* How the limits follow from the profile: what it asks for (raise-only
 * may keep a higher running value, which the runtime table shows). */
static void print_derivation(const struct plan *plan, FILE *out)
{
    const struct profile *p = plan->profile;
    const struct sizing_result *s = &plan->sizing;
    const struct sizing_key *max = &s->keys[SIZING_KEY_SHMMAX], *all = &s->keys[SIZING_KEY_SHMALL];
    char ram[32], maxh[32], allh[32];

    sizes_format_human(s->ram_bytes, ram, sizeof(ram));
    sizes_format_human(max->derived, maxh, sizeof(maxh));
    sizes_format_human(all->derived > UINT64_MAX / s->page_size ? UINT64_MAX : all->derived * s->page_size,
                       allh, sizeof(allh));
    fprintf(out, "Derivation\n");
    fprintf(out, "  tier       %s (%s)\n", profile_tier_name(s->tier), tier_reason(s));
    fprintf(out, "  RAM        %" PRIu64 " bytes (%s, %s)\n", s->ram_bytes, ram,
            s->tier_detected ? "MemTotal of this host" : "the tier's nominal size");
    fprintf(out, "  workload   %s\n", profile_workload_name(p->workload));
    if (s->shmmax_overridden)
        fprintf(out, "  shmmax     %" PRIu64 " bytes (%s), set by the profile\n", max->derived, maxh);
    else
        fprintf(out, "  shmmax     %" PRIu64 " bytes (%s) = %u%% of RAM%s, rounded down to a page\n",
                max->derived, maxh, s->fraction_pct,
                p->shmmax.set ? " (profile)"
                : p->workload == PROFILE_WORKLOAD_GENERAL ? " (the tier table)"
                                                  : "");
    fprintf(out, "  shmall     %" PRIu64 " pages (%s) = %s\n", all->derived, allh,
            p->shmall.set ? "set by the profile" : "shmmax / page size");
    if (s->keys[SIZING_KEY_SHMMNI].managed)
        fprintf(out, "  shmmni     %" PRIu64 " segments, set by the profile\n", s->keys[SIZING_KEY_SHMMNI].derived);
    fprintf(out, "  page size  %" PRIu64 " bytes (this kernel)\n", s->page_size);
    fprintf(out, "  policy     %s (%s)\n\n", profile_policy_name(p->policy),
            p->policy == PROFILE_POLICY_ENFORCE ? "set exactly the derived values"
                                        : "never lower a value that is already higher");
}

static void print_runtime(const struct plan *plan, FILE *out)
{
    const struct host_facts *h = &plan->host;

    fprintf(out, "Runtime changes (/proc/sys/kernel)\n");
    fprintf(out, "  %-15s %-22s %-22s %s\n", "KEY", "CURRENT", "TARGET", "ACTION");
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        char current[24] = "(unknown)";

        if (!k->managed)
            continue;
        if (k->current_known)
            (void)snprintf(current, sizeof(current), "%" PRIu64, k->current);
        fprintf(out, "  %-15s %-22s %-22" PRIu64 " %s%s\n", sizing_key_name(id), current, k->target,
                sizing_action_name(k->action), k->persist ? "" : " (raise-only)");
    }
    if (h->runtime_write_errno != 0)
        fprintf(out, "  note: apply cannot change the running kernel here: %s\n",
                host_runtime_write_reason(h->runtime_write_errno));
    fputc('\n', out);
}

static void print_dropin_and_usage(const struct plan *plan, FILE *out)
{
    const struct host_facts *h = &plan->host;
    char *diff = plan_diff(plan);

    fprintf(out, "Drop-in %s (%s)\n", plan->dropin_path,
            plan->dropin_read_errno == ENOENT ? "new file" : plan->dropin_changed ? "changes" : "unchanged");
    fputs(diff ? diff : PLAN_DIFF_NO_MEMORY, out);
    free(diff);
    fputc('\n', out);
    if (h->usage_known)
        fprintf(out, "Usage     %" PRIu64 " segments, %" PRIu64 " bytes, %" PRIu64
                     " pages; largest segment %" PRIu64 " bytes\n",
                h->usage.segments, h->usage.bytes, h->usage.pages, h->usage.largest_segment);
    fprintf(out, "Overcommit vm.overcommit_memory = %d (%s)\n", h->overcommit_memory,
            overcommit_meaning(h->overcommit_memory));
}

/* Warnings, then why apply would refuse. */
static void print_findings(const struct plan *plan, FILE *out)
{
    const struct sizing_result *s = &plan->sizing;

    for (unsigned i = 0; i < plan->nwarnings; i++)
        fprintf(out, "\nwarning: %s", plan->warnings[i]);
    for (unsigned i = 0; i < s->nproblems; i++)
        fprintf(out, "\n%s%s", s->problems[i].in_profile ? "" : "apply would refuse: ", s->problems[i].text);
    if (plan->dropin_problem[0])
        fprintf(out, "\napply would refuse: %s", plan->dropin_problem);
    if (plan->nwarnings || s->nproblems || plan->dropin_problem[0])
        fputc('\n', out);
}

int plan_print_text(const struct plan *plan, FILE *out)
{
    const struct profile *p = plan->profile;

    fprintf(out, "shmprov plan: what 'shmprov apply' would do on %s (nothing is changed)\n\n",
            plan->host.hostname);
    fprintf(out, "Profile   %s%s\n", p->path, p->builtin ? " (auto tier, general workload, enforce)" : "");
    if (p->builtin)
        fprintf(out, "          %s\n", PROFILE_BUILTIN_NOTE);
    fprintf(out, "          sha256 %s\n\n", p->sha256_hex);
    print_derivation(plan, out);
    print_runtime(plan, out);
    print_dropin_and_usage(plan, out);
    print_findings(plan, out);
    return ferror(out) ? -EIO : 0;
}

/* ---- JSON ------------------------------------------------------------- */

/* Whether apply may change the running kernel here, and the overcommit
 * mode the test allocation runs under. */
static json_object *json_runtime(const struct host_facts *h)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "writable", json_object_new_boolean(h->runtime_write_errno == 0));
    json_object_object_add(o, "note", h->runtime_write_errno ? jsonout_string(host_runtime_write_reason(
                                                                   h->runtime_write_errno))
                                                             : NULL);
    json_object_object_add(o, "overcommit_memory",
                           h->overcommit_memory >= 0 ? json_object_new_int(h->overcommit_memory) : NULL);
    return o;
}

static json_object *json_derivation(const struct sizing_result *s)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "tier", json_object_new_string(profile_tier_name(s->tier)));
    json_object_object_add(o, "tier_detected", json_object_new_boolean(s->tier_detected));
    jsonout_add_u64(o, "ram_bytes", true, s->ram_bytes);
    json_object_object_add(o, "shmmax_percent_of_ram",
                           s->shmmax_overridden ? NULL : json_object_new_int((int)s->fraction_pct));
    jsonout_add_u64(o, "page_size", true, s->page_size);
    return o;
}

static json_object *json_keys(const struct sizing_result *s)
{
    json_object *a = json_object_new_array();

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &s->keys[id];
        json_object *o;

        if (!k->managed)
            continue;
        o = jsonobj_key((enum sizing_key_id)id, k);
        json_object_object_add(o, "persisted", json_object_new_boolean(k->persist));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *json_dropin(const struct plan *plan)
{
    json_object *o = json_object_new_object();
    char *diff = plan_diff(plan);

    json_object_object_add(o, "path", jsonout_string(plan->dropin_path));
    json_object_object_add(o, "exists", json_object_new_boolean(plan->dropin_read_errno != ENOENT));
    json_object_object_add(o, "changed", json_object_new_boolean(plan->dropin_changed));
    json_object_object_add(o, "diff", jsonout_string(diff ? diff : PLAN_DIFF_NO_MEMORY));
    free(diff);
    json_object_object_add(o, "content", jsonout_string_len(plan->dropin_new, plan->dropin_new_len));
    return o;
}

json_object *plan_to_json(const struct plan *plan)
{
    json_object *doc = jsonobj_document("plan", plan->profile, plan->sizing.tier, &plan->host);
    json_object *warnings, *problems;

    if (!doc)
        return NULL;
    json_object_object_add(doc, "runtime", json_runtime(&plan->host));
    json_object_object_add(doc, "derivation", json_derivation(&plan->sizing));
    json_object_object_add(doc, "keys", json_keys(&plan->sizing));
    json_object_object_add(doc, "usage", jsonobj_usage(&plan->host));
    json_object_object_add(doc, "dropin", json_dropin(plan));

    warnings = json_object_new_array();
    for (unsigned i = 0; i < plan->nwarnings; i++)
        json_object_array_add(warnings, jsonout_string(plan->warnings[i]));
    json_object_object_add(doc, "warnings", warnings);
    problems = json_object_new_array();
    for (unsigned i = 0; i < plan->sizing.nproblems; i++)
        json_object_array_add(problems, jsonout_string(plan->sizing.problems[i].text));
    if (plan->dropin_problem[0])
        json_object_array_add(problems, jsonout_string(plan->dropin_problem));
    json_object_object_add(doc, "problems", problems);
    return doc;
}
