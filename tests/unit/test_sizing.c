/* The sizing guide's numbers, both policies, both page sizes, the guards
 * and the overrides. */
#include <errno.h>

#include "helpers.h"
#include "probe.h"
#include "sizing.h"

#define DEFAULT SIZING_KERNEL_DEFAULT

struct derivation_row {
    const char *yaml;
    uint64_t memtotal;
    uint64_t page;
    enum ram_tier tier;
    uint64_t shmmax;
    uint64_t shmall;
};

static const struct derivation_row derivation_rows[] = {
    /* The guide's table, 4 KiB pages. */
    { "version: 1\nhost: {ram_tier: small}\n", 0, 4096, PROFILE_TIER_SMALL, 4294967296, 1048576 },
    { "version: 1\nhost: {ram_tier: medium}\n", 0, 4096, PROFILE_TIER_MEDIUM, 17179869184, 4194304 },
    { "version: 1\nhost: {ram_tier: large}\n", 0, 4096, PROFILE_TIER_LARGE, 68719476736, 16777216 },
    /* 64 KiB pages (arm64, ppc64le): same bytes, 16x fewer pages. */
    { "version: 1\nhost: {ram_tier: small}\n", 0, 65536, PROFILE_TIER_SMALL, 4294967296, 65536 },
    { "version: 1\nhost: {ram_tier: medium}\n", 0, 65536, PROFILE_TIER_MEDIUM, 17179869184, 262144 },
    { "version: 1\nhost: {ram_tier: large}\n", 0, 65536, PROFILE_TIER_LARGE, 68719476736, 1048576 },
    /* Workloads: database 50 %, bigdata 75 %. */
    { "version: 1\nhost: {ram_tier: small, workload: database}\n", 0, 4096, PROFILE_TIER_SMALL, 4294967296, 1048576 },
    { "version: 1\nhost: {ram_tier: medium, workload: database}\n", 0, 4096, PROFILE_TIER_MEDIUM, 17179869184, 4194304 },
    { "version: 1\nhost: {ram_tier: small, workload: bigdata}\n", 0, 4096, PROFILE_TIER_SMALL, 6442450944, 1572864 },
    { "version: 1\nhost: {ram_tier: medium, workload: bigdata}\n", 0, 4096, PROFILE_TIER_MEDIUM, 25769803776, 6291456 },
    { "version: 1\nhost: {ram_tier: large, workload: bigdata}\n", 0, 4096, PROFILE_TIER_LARGE, 103079215104, 25165824 },
    { "version: 1\nhost: {ram_tier: large, workload: bigdata}\n", 0, 65536, PROFILE_TIER_LARGE, 103079215104, 1572864 },
    /* auto: measured MemTotal, rounded down to a whole page. */
    { "version: 1\n", 8052617216, 4096, PROFILE_TIER_SMALL, 4026306560, 982985 },
    { "version: 1\n", 8052617216, 65536, PROFILE_TIER_SMALL, 4026269696, 61436 },
    { "version: 1\n", 16 * GiB - 1024, 4096, PROFILE_TIER_SMALL, 8589930496, 2097151 },
    { "version: 1\n", 16 * GiB, 4096, PROFILE_TIER_MEDIUM, 8589934592, 2097152 },
    { "version: 1\n", 64 * GiB - 1024, 4096, PROFILE_TIER_MEDIUM, 34359734272, 8388607 },
    { "version: 1\n", 64 * GiB, 4096, PROFILE_TIER_LARGE, 34359738368, 8388608 },
    { "version: 1\nhost: {workload: bigdata}\n", 25165824000, 4096, PROFILE_TIER_MEDIUM, 18874368000, 4608000 },
    /* Overrides. */
    { "version: 1\nhost: {ram_tier: medium}\nlimits: {shmmax: 60%}\n", 0, 4096, PROFILE_TIER_MEDIUM, 20615839744, 5033164 },
    { "version: 1\nhost: {ram_tier: medium}\nlimits: {shmmax: 10GiB}\n", 0, 4096, PROFILE_TIER_MEDIUM, 10737418240, 2621440 },
    { "version: 1\nlimits: {shmmax: 1000000}\n", 8 * GiB, 4096, PROFILE_TIER_SMALL, 1000000, 245 },
    { "version: 1\nlimits: {shmmax: 16GiB, shmall: 16GiB}\n", 8 * GiB, 4096, PROFILE_TIER_SMALL, 17179869184, 4194304 },
    { "version: 1\nlimits: {shmmax: 16GiB, shmall: 8000000}\n", 8 * GiB, 4096, PROFILE_TIER_SMALL, 17179869184, 8000000 },
    { "version: 1\nlimits: {shmall: 16GiB}\n", 8 * GiB, 65536, PROFILE_TIER_SMALL, 4294967296, 262144 },
};

/* sizing_compute() on yaml; the result keeps nothing of the profile. */
static struct sizing_result compute(const char *yaml, uint64_t memtotal, uint64_t page,
                                    const struct sizing_current *current, const struct sizing_usage *usage, bool force)
{
    struct profile *p = parse_profile_or_die(yaml);
    struct sizing_input in = { .profile = p, .memtotal_bytes = memtotal, .page_size = page, .force = force };
    struct sizing_result r;

    if (current)
        in.current = *current;
    if (usage)
        in.usage = *usage;
    cr_assert_eq(sizing_compute(&in, &r), 0);
    profile_free(p);
    return r;
}

Test(sizing, derivation_table)
{
    for (size_t i = 0; i < sizeof(derivation_rows) / sizeof(derivation_rows[0]); i++) {
        const struct derivation_row *row = &derivation_rows[i];
        struct sizing_result r = compute(row->yaml, row->memtotal, row->page, NULL, NULL, false);

        cr_expect_eq(r.tier, row->tier, "row %zu: tier %d, expected %d", i, r.tier, row->tier);
        cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].target, row->shmmax, "row %zu: shmmax %llu, expected %llu", i,
                     (unsigned long long)r.keys[SIZING_KEY_SHMMAX].target, (unsigned long long)row->shmmax);
        cr_expect_eq(r.keys[SIZING_KEY_SHMALL].target, row->shmall, "row %zu: shmall %llu, expected %llu", i,
                     (unsigned long long)r.keys[SIZING_KEY_SHMALL].target, (unsigned long long)row->shmall);
        cr_expect_eq(r.nproblems, 0, "row %zu: unexpected problem: %s", i, r.problems[0].text);
        cr_expect_not(r.keys[SIZING_KEY_SHMMNI].managed, "row %zu: shmmni managed without being set", i);
    }
}

Test(sizing, derived_shmmax_is_page_aligned_and_shmall_exact)
{
    static const uint64_t pages[] = { 4096, 16384, 65536 };
    for (size_t i = 0; i < 3; i++)
        for (uint64_t mem = 1 * GiB + 12345 * 1024; mem < 200 * GiB; mem = mem * 3 + 4096) {
            struct sizing_result r =
                compute("version: 1\nhost: {workload: bigdata}\n", mem, pages[i], NULL, NULL, false);

            cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].target % pages[i], 0);
            cr_expect_eq(r.keys[SIZING_KEY_SHMALL].target * pages[i], r.keys[SIZING_KEY_SHMMAX].target);
            cr_expect_leq(r.keys[SIZING_KEY_SHMMAX].target, mem / 4 * 3);
            cr_expect_gt(r.keys[SIZING_KEY_SHMMAX].target + pages[i], mem / 4 * 3);
        }
}

struct policy_row {
    const char *yaml;
    uint64_t current_max, current_all;
    uint64_t target_max, target_all;
    enum sizing_action action_max, action_all;
    bool persist_max;
};

static const struct policy_row policy_rows[] = {
    /* enforce on the kernel defaults lowers both. */
    { "version: 1\nhost: {ram_tier: small}\n", DEFAULT, DEFAULT, 4294967296, 1048576, SIZING_ACTION_LOWER, SIZING_ACTION_LOWER, true },
    /* raise-only on the kernel defaults keeps both, and persists neither. */
    { "version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n", DEFAULT, DEFAULT, DEFAULT, DEFAULT, SIZING_ACTION_KEEP, SIZING_ACTION_KEEP, false },
    /* raise-only below the derived values raises. */
    { "version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n", 1 * GiB, 262144, 4294967296, 1048576, SIZING_ACTION_RAISE, SIZING_ACTION_RAISE, true },
    /* raise-only mixed: shmmax higher (kept), shmall lower (raised). */
    { "version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n", 8 * GiB, 1000, 8 * GiB, 1048576, SIZING_ACTION_KEEP, SIZING_ACTION_RAISE, false },
    /* enforce when already equal: keep. */
    { "version: 1\nhost: {ram_tier: small}\n", 4294967296, 1048576, 4294967296, 1048576, SIZING_ACTION_KEEP, SIZING_ACTION_KEEP, true },
    /* enforce below: raise. */
    { "version: 1\nhost: {ram_tier: large}\n", 4294967296, 1048576, 68719476736, 16777216, SIZING_ACTION_RAISE, SIZING_ACTION_RAISE, true },
};

Test(sizing, policies)
{
    for (size_t i = 0; i < sizeof(policy_rows) / sizeof(policy_rows[0]); i++) {
        const struct policy_row *row = &policy_rows[i];
        struct sizing_current cur = { .known = { true, true, true }, .value = { row->current_max, row->current_all, 4096 } };
        struct sizing_result r = compute(row->yaml, 0, 4096, &cur, NULL, false);

        cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].target, row->target_max, "row %zu shmmax", i);
        cr_expect_eq(r.keys[SIZING_KEY_SHMALL].target, row->target_all, "row %zu shmall", i);
        cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].action, row->action_max, "row %zu shmmax action", i);
        cr_expect_eq(r.keys[SIZING_KEY_SHMALL].action, row->action_all, "row %zu shmall action", i);
        cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].persist, row->persist_max, "row %zu persist", i);
    }
}

Test(sizing, unknown_current_value_is_set)
{
    struct sizing_result r = compute("version: 1\nhost: {ram_tier: small}\n", 0, 4096, NULL, NULL, false);

    cr_expect_eq(r.keys[SIZING_KEY_SHMMAX].action, SIZING_ACTION_SET);
    cr_expect_str_eq(sizing_action_name(r.keys[SIZING_KEY_SHMMAX].action), "set");
}

/* The guards (segments in use: the host's state) and the profile's own
 * contradiction; problem NULL: none expected. */
struct problem_row {
    const char *yaml;
    uint64_t page;
    bool kernel_defaults; /* running values: the kernel's defaults, else unknown */
    struct sizing_usage usage;
    bool force;
    const char *problem;
    bool in_profile;
    enum sizing_key_id key;
};

static const struct problem_row problem_rows[] = {
    { "version: 1\nhost: {ram_tier: small}\n", 4096, false, { 3, 5 * GiB, 1310720, 2 * GiB }, false,
      "kernel.shmall: target 1048576 pages is below the 1310720 pages existing segments already use", false,
      SIZING_KEY_SHMALL },
    /* --force allows it. */
    { "version: 1\nhost: {ram_tier: small}\n", 4096, false, { 3, 5 * GiB, 1310720, 2 * GiB }, true, NULL, false, 0 },
    { "version: 1\nhost: {ram_tier: small}\nlimits: {shmall: 4000000}\n", 4096, false, { 1, 6 * GiB, 1572864, 6 * GiB },
      false, "kernel.shmmax: target 4294967296 bytes is below the largest existing segment (6442450944 bytes)", false,
      SIZING_KEY_SHMMAX },
    { "version: 1\nhost: {ram_tier: small}\nlimits: {shmmni: 10}\n", 4096, false, { .segments = 20 }, false,
      "kernel.shmmni: target 10 is below the 20 segments that exist", false, SIZING_KEY_SHMMNI },
    /* raise-only never trips the guards it cannot cause. */
    { "version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n", 4096, true, { 1, 6 * GiB, 1572864, 6 * GiB }, false,
      NULL, false, 0 },
    { "version: 1\nlimits:\n  shmmax: 16GiB\n  shmall: 1000\n", 4096, false, { 0 }, false,
      "limits.shmall (1000 pages of 4096 bytes) is smaller than limits.shmmax (17179869184 bytes): shmall x page size "
      "must be at least shmmax", true, SIZING_KEY_SHMALL },
    /* The same shmall is enough with 64 KiB pages only if it covers shmmax. */
    { "version: 1\nlimits:\n  shmmax: 16GiB\n  shmall: 262144\n", 65536, false, { 0 }, false, NULL, false, 0 },
    { "version: 1\nlimits:\n  shmmax: 16GiB\n  shmall: 262144\n", 4096, false, { 0 }, false,
      "limits.shmall (262144 pages of 4096 bytes) is smaller than limits.shmmax (17179869184 bytes): shmall x page "
      "size must be at least shmmax", true, SIZING_KEY_SHMALL },
};

Test(sizing, problems)
{
    struct sizing_current defaults = { .known = { true, true, true }, .value = { DEFAULT, DEFAULT, 4096 } };

    for (size_t i = 0; i < sizeof(problem_rows) / sizeof(problem_rows[0]); i++) {
        const struct problem_row *row = &problem_rows[i];
        struct sizing_result r =
            compute(row->yaml, 8 * GiB, row->page, row->kernel_defaults ? &defaults : NULL, &row->usage, row->force);

        if (!row->problem) {
            cr_expect_eq(r.nproblems, 0, "row %zu: unexpected problem: %s", i, r.problems[0].text);
        } else {
            cr_expect_eq(r.nproblems, 1, "row %zu", i);
            cr_expect_str_eq(r.problems[0].text, row->problem, "row %zu", i);
            cr_expect_eq(r.problems[0].in_profile, row->in_profile, "row %zu", i);
            cr_expect_eq(r.problems[0].key, row->key, "row %zu", i);
        }
    }
}

Test(sizing, shmmni_is_managed_only_when_set)
{
    struct sizing_current cur = { .known = { true, true, true }, .value = { DEFAULT, DEFAULT, 4096 } };
    struct sizing_result r = compute("version: 1\nlimits: {shmmni: 8192}\n", 8 * GiB, 4096, &cur, NULL, false);

    cr_expect(r.keys[SIZING_KEY_SHMMNI].managed);
    cr_expect_eq(r.keys[SIZING_KEY_SHMMNI].target, 8192);
    cr_expect_eq(r.keys[SIZING_KEY_SHMMNI].action, SIZING_ACTION_RAISE);
}

Test(sizing, rejects_bad_page_size_and_missing_memtotal)
{
    struct profile *p = parse_profile_or_die("version: 1\n");
    struct sizing_result r;
    struct sizing_input in = { .profile = p, .memtotal_bytes = 8 * GiB, .page_size = 0 };

    cr_expect_eq(sizing_compute(&in, &r), -EINVAL);
    in.page_size = 3000;
    cr_expect_eq(sizing_compute(&in, &r), -EINVAL);
    in.page_size = 4096;
    in.memtotal_bytes = 0;
    cr_expect_eq(sizing_compute(&in, &r), -EINVAL, "auto tier needs MemTotal");
    profile_free(p);
}

Test(sizing, classify_boundaries)
{
    cr_expect_eq(sizing_classify(8 * GiB), PROFILE_TIER_SMALL);
    cr_expect_eq(sizing_classify(16 * GiB - 1), PROFILE_TIER_SMALL);
    cr_expect_eq(sizing_classify(16 * GiB), PROFILE_TIER_MEDIUM);
    cr_expect_eq(sizing_classify(64 * GiB - 1), PROFILE_TIER_MEDIUM);
    cr_expect_eq(sizing_classify(64 * GiB), PROFILE_TIER_LARGE);
    cr_expect_eq(sizing_classify(UINT64_MAX), PROFILE_TIER_LARGE);
}

/* The largest segment newseg() would create now; probe_headroom() tells
 * the probe the same under the limits it is told. */
struct headroom_row {
    uint64_t shmmax, shmall, shmmni, page, pages_used, segments, headroom;
    enum sizing_key_id by;
};

static const struct headroom_row headroom_rows[] = {
    { 1000000, 100, 10, 4096, 0, 0, 409600, SIZING_KEY_SHMALL },
    { 8192, 100, 10, 4096, 0, 0, 8192, SIZING_KEY_SHMMAX },
    { 1 * MiB, 1024, 16, 4096, 0, 0, 1 * MiB, SIZING_KEY_SHMMAX },
    /* shmall binds: 10 pages left */
    { 1 * MiB, 1024, 16, 4096, 1014, 3, 40960, SIZING_KEY_SHMALL },
    { 1 * MiB, 64, 16, 65536, 60, 3, 4 * 65536, SIZING_KEY_SHMALL },
    /* full, or over-full after shmall was lowered below usage */
    { 8192, 100, 10, 4096, 100, 3, 0, SIZING_KEY_SHMALL },
    { 1 * MiB, 1024, 16, 4096, 1024, 3, 0, SIZING_KEY_SHMALL },
    { 1 * MiB, 1024, 16, 4096, 5000, 3, 0, SIZING_KEY_SHMALL },
    /* every id taken */
    { 8192, 100, 10, 4096, 0, 10, 0, SIZING_KEY_SHMMNI },
    { 1 * MiB, 1024, 2, 4096, 0, 2, 0, SIZING_KEY_SHMMNI },
    { 1 * MiB, 1024, 2, 4096, 0, 3, 0, SIZING_KEY_SHMMNI },
    /* kernel defaults: pages x page size saturates instead of wrapping, shmmax binds */
    { DEFAULT, DEFAULT, 4096, 4096, 0, 0, DEFAULT, SIZING_KEY_SHMMAX },
    { DEFAULT, DEFAULT, 4096, 4096, 7, 1, DEFAULT, SIZING_KEY_SHMMAX },
    /* shmall defaults with a finite shmmax */
    { 64 * GiB, DEFAULT, 4096, 65536, 0, 0, 64 * GiB, SIZING_KEY_SHMMAX },
    { 1 * MiB, 1024, 16, 0, 0, 0, 0, SIZING_KEY_SHMALL }, /* no page size: no room */
};

Test(sizing, headroom_as_newseg_decides)
{
    for (size_t i = 0; i < sizeof(headroom_rows) / sizeof(headroom_rows[0]); i++) {
        const struct headroom_row *row = &headroom_rows[i];
        struct sizing_current limits = { .known = { true, true, true },
                                         .value = { row->shmmax, row->shmall, row->shmmni } };
        struct probe_limits told = { .shmmax = row->shmmax, .shmall = row->shmall, .shmmni = row->shmmni,
                                     .page_size = row->page };
        struct sizing_headroom h = sizing_headroom_now(&limits, row->page, row->pages_used, row->segments);

        cr_expect(h.known, "row %zu", i);
        cr_expect_eq(h.bytes, row->headroom, "row %zu", i);
        cr_expect_eq(h.limited_by, row->by, "row %zu", i);
        cr_expect_eq(probe_headroom(&told, row->pages_used, row->segments), row->headroom, "row %zu: the probe's", i);
    }
    cr_expect_not(sizing_headroom_now(&(struct sizing_current){ .known = { true, true, false } }, 4096, 0, 0).known,
                  "unknown without all three limits");
}
