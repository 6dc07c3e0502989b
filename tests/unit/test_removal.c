/* shmprov remove's choices: whose the drop-in is, which keys it sets, what
 * each key is at boot once it is gone, and the removal plan built from a
 * scratch root. */
#include <sys/stat.h>

#include "dropin.h"
#include "hash.h"
#include "helpers.h"
#include "plan.h"
#include "removal.h"

#define DEFAULT UINT64_C(18446744073692774399)

static const char ours[] = DROPIN_HEADER "# profile: x\nkernel.shmmax = 4294967296\nkernel.shmall = 1048576\n";

Test(removal, kernel_defaults_are_the_uapi_values)
{
    cr_assert_eq(removal_kernel_default(SIZING_KEY_SHMMAX), DEFAULT);
    cr_assert_eq(removal_kernel_default(SIZING_KEY_SHMALL), DEFAULT);
    cr_assert_eq(removal_kernel_default(SIZING_KEY_SHMMNI), 4096);
}

Test(removal, owner_by_the_recorded_sha256)
{
    char sha[65];

    hash_sha256_hex(ours, strlen(ours), sha);
    cr_assert_eq(removal_judge_owner(NULL, 0, sha, NULL, 0), REMOVAL_ABSENT);
    cr_assert_eq(removal_judge_owner(ours, strlen(ours), sha, NULL, 0), REMOVAL_OWNED_RECORD);
    cr_assert_eq(removal_judge_owner(ours, strlen(ours) - 1, sha, ours, strlen(ours)), REMOVAL_EDITED,
                 "a record decides alone: matching the profile's text does not make an edit shmprov's");
}

Test(removal, owner_without_a_record)
{
    const char foreign[] = "kernel.shmmax = 4294967296\n";

    cr_assert_eq(removal_judge_owner(ours, strlen(ours), NULL, ours, strlen(ours)), REMOVAL_OWNED_RENDERED);
    cr_assert_eq(removal_judge_owner(ours, strlen(ours), "", ours, strlen(ours)), REMOVAL_OWNED_RENDERED);
    cr_assert_eq(removal_judge_owner(ours, strlen(ours) - 2, NULL, ours, strlen(ours)), REMOVAL_NOT_RENDERED);
    cr_assert_eq(removal_judge_owner(foreign, strlen(foreign), NULL, foreign, strlen(foreign)), REMOVAL_FOREIGN,
                 "the header comes first: equal bytes without it are not shmprov's");
    cr_assert(removal_owned(REMOVAL_ABSENT) && removal_owned(REMOVAL_OWNED_RECORD) &&
              removal_owned(REMOVAL_OWNED_RENDERED));
    cr_assert(!removal_owned(REMOVAL_EDITED) && !removal_owned(REMOVAL_NOT_RENDERED) &&
              !removal_owned(REMOVAL_FOREIGN));
}

Test(removal, keys_set_by_a_drop_in)
{
    const char glob[] = "# kernel.shmmni = 1\nkernel.shm* = 5\n";
    const char exclusion[] = "-kernel.shmmni\nkernel/shmall = 7\n";
    bool set[SIZING_KEY_COUNT];

    removal_keys_set_by(ours, strlen(ours), set);
    cr_assert(set[SIZING_KEY_SHMMAX] && set[SIZING_KEY_SHMALL] && !set[SIZING_KEY_SHMMNI]);
    removal_keys_set_by(glob, strlen(glob), set);
    cr_assert(set[SIZING_KEY_SHMMAX] && set[SIZING_KEY_SHMALL] && set[SIZING_KEY_SHMMNI], "a pattern sets every key it matches");
    removal_keys_set_by(exclusion, strlen(exclusion), set);
    cr_assert(!set[SIZING_KEY_SHMMAX] && set[SIZING_KEY_SHMALL] && !set[SIZING_KEY_SHMMNI], "an exclusion sets nothing");
}

Test(removal, boot_value_of_a_winner_or_the_default)
{
    struct sysctld_assignment w = { .known = true, .path = "/usr/lib/sysctl.d/50-x.conf", .line = 3, .value = "123456789" };
    struct sysctld_assignment none = { .known = false };
    struct removal_key k;

    removal_boot_value(SIZING_KEY_SHMMAX, &w, false, &k);
    cr_assert(k.boot_known);
    cr_assert_eq(k.boot, 123456789);
    cr_assert_str_eq(k.source, "/usr/lib/sysctl.d/50-x.conf:3");
    removal_boot_value(SIZING_KEY_SHMMNI, &none, false, &k);
    cr_assert(k.boot_known);
    cr_assert_eq(k.boot, 4096);
    cr_assert_str_eq(k.source, REMOVAL_SOURCE_DEFAULT);
    removal_boot_value(SIZING_KEY_SHMALL, &none, false, &k);
    cr_assert_eq(k.boot, DEFAULT);
}

Test(removal, boot_value_shmprov_cannot_read_is_unknown)
{
    static const char *const unreadable[] = { "0x1000", "010", "1e9", "-1", "18446744073709551616", "4096 4096" };
    struct sysctld_assignment w = { .known = true, .path = "/etc/sysctl.d/99-x.conf", .line = 2 };
    struct removal_key k;

    for (size_t i = 0; i < sizeof(unreadable) / sizeof(unreadable[0]); i++) {
        (void)snprintf(w.value, sizeof(w.value), "%s", unreadable[i]);
        removal_boot_value(SIZING_KEY_SHMMAX, &w, false, &k);
        cr_assert(!k.boot_known, "'%s' read as %llu", unreadable[i], (unsigned long long)k.boot);
        cr_assert(strstr(k.problem, "/etc/sysctl.d/99-x.conf:2 sets kernel.shmmax to '"), "%s", k.problem);
    }
    w.known = false;
    removal_boot_value(SIZING_KEY_SHMMAX, &w, true, &k);
    cr_assert(!k.boot_known, "an analysis that could not read every file knows no default either");
    cr_assert(strstr(k.problem, "could not be analysed"), "%s", k.problem);
}

static struct plan *plan_in_scratch(const struct profile *p, uint64_t shmmax_now)
{
    struct host_facts h = { .memtotal_bytes = UINT64_C(8) << 30, .page_size = 4096, .overcommit_memory = 0 };
    struct plan *plan = NULL;

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        h.current.known[id] = true;
        h.current.value[id] = id == SIZING_KEY_SHMMNI ? 4096 : DEFAULT;
    }
    h.current.value[SIZING_KEY_SHMMAX] = shmmax_now;
    cr_assert_eq(plan_build(p, &h, true, scratch(), &plan), 0);
    return plan;
}

Test(removal, prepare_makes_the_boot_values_the_targets, .init = scratch_make, .fini = scratch_remove)
{
    struct profile *p = parse_profile_or_die("version: 1\nhost: {ram_tier: small}\n");
    struct plan *plan = plan_in_scratch(p, 4294967296);
    struct removal *r = NULL;

    put_file(scratch(), "etc/sysctl.d/60-shmprov.conf", plan->dropin_new);
    plan_free(plan);
    put_file(scratch(), "usr/lib/sysctl.d/50-x.conf", "kernel.shmall = 777\n");
    /* Hidden by ours, never ours to reset. */
    put_file(scratch(), "usr/lib/sysctl.d/60-shmprov.conf", "kernel.shmmni = 9999\n");
    plan = plan_in_scratch(p, 4294967296);
    cr_assert_eq(removal_prepare(plan, scratch(), NULL, &r), 0);
    cr_assert_eq(r->owner, REMOVAL_OWNED_RENDERED);
    cr_assert_null(plan->dropin_new, "a removal plan has no new text");
    cr_assert(plan->dropin_changed);
    cr_assert(r->keys[SIZING_KEY_SHMMAX].managed && r->keys[SIZING_KEY_SHMALL].managed && !r->keys[SIZING_KEY_SHMMNI].managed);
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMMAX].target, DEFAULT);
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMMAX].action, SIZING_ACTION_RAISE);
    cr_assert_str_eq(plan->sizing.keys[SIZING_KEY_SHMMAX].source, REMOVAL_SOURCE_DEFAULT);
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMALL].target, 777);
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMALL].action, SIZING_ACTION_LOWER);
    cr_assert_str_eq(r->keys[SIZING_KEY_SHMALL].source, "/usr/lib/sysctl.d/50-x.conf:1");
    cr_assert(!plan->sizing.keys[SIZING_KEY_SHMMNI].managed);
    cr_assert_null(removal_unknown_key(r));
    removal_free(r);
    plan_free(plan);
    profile_free(p);
}

Test(removal, prepare_without_a_drop_in_resets_the_profile_keys, .init = scratch_make, .fini = scratch_remove)
{
    struct profile *p = parse_profile_or_die("version: 1\nhost: {ram_tier: small}\nlimits: {shmmni: 8192}\n");
    struct plan *plan = plan_in_scratch(p, 1234);
    struct removal *r = NULL;

    put_file(scratch(), "etc/sysctl.d/10-x.conf", "kernel.shmmax = 0x10\n");
    cr_assert_eq(removal_prepare(plan, scratch(), NULL, &r), 0);
    cr_assert_eq(r->owner, REMOVAL_ABSENT);
    cr_assert(!plan->dropin_changed);
    cr_assert(r->keys[SIZING_KEY_SHMMAX].managed && r->keys[SIZING_KEY_SHMALL].managed && r->keys[SIZING_KEY_SHMMNI].managed);
    cr_assert_not_null(removal_unknown_key(r), "0x10 is refused, not read as 16 nor as the default");
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMMAX].target, 1234, "an unknown boot value leaves the key alone");
    cr_assert_eq(plan->sizing.keys[SIZING_KEY_SHMMNI].target, 4096);
    removal_free(r);
    plan_free(plan);
    profile_free(p);
}
