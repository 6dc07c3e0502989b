#include "sizing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const key_names[SIZING_KEY_COUNT] = { "kernel.shmmax", "kernel.shmall", "kernel.shmmni" };
static const char *const key_units[SIZING_KEY_COUNT] = { "bytes", "pages", "segments" };
static const char *const action_names[] = { "keep", "raise", "lower", "set" };

const char *sizing_key_name(enum sizing_key_id id) { return key_names[id]; }
const char *sizing_key_unit(enum sizing_key_id id) { return key_units[id]; }
const char *sizing_action_name(enum sizing_action action) { return action_names[action]; }

enum ram_tier sizing_classify(uint64_t memtotal_bytes)
{
    if (memtotal_bytes < (UINT64_C(16) << 30))
        return PROFILE_TIER_SMALL;
    if (memtotal_bytes < (UINT64_C(64) << 30))
        return PROFILE_TIER_MEDIUM;
    return PROFILE_TIER_LARGE;
}

/* A fixed tier's nominal RAM. */
static const uint64_t tier_ram[] = {
    [PROFILE_TIER_SMALL] = SIZING_TIER_SMALL_RAM,
    [PROFILE_TIER_MEDIUM] = SIZING_TIER_MEDIUM_RAM,
    [PROFILE_TIER_LARGE] = SIZING_TIER_LARGE_RAM,
};

/* The guide: general follows the tier table (half of RAM), database half,
 * bigdata three quarters. */
static unsigned workload_pct(enum workload workload)
{
    return workload == PROFILE_WORKLOAD_BIGDATA ? 75 : 50;
}

/* floor(ram * pct / 100) without overflowing 64 bits. */
static uint64_t percent_of(uint64_t ram, unsigned pct)
{
    return (ram / 100) * pct + (ram % 100) * pct / 100;
}

__attribute__((format(printf, 4, 5))) static void add_problem(struct sizing_result *r, bool in_profile,
                                                               enum sizing_key_id key, const char *fmt, ...)
{
    struct sizing_problem *p;
    va_list ap;

    if (r->nproblems >= SIZING_MAX_PROBLEMS)
        return;
    p = &r->problems[r->nproblems++];
    p->in_profile = in_profile;
    p->key = key;
    va_start(ap, fmt);
    (void)vsnprintf(p->text, sizeof(p->text), fmt, ap);
    va_end(ap);
}

static void derive(const struct sizing_input *in, struct sizing_result *r)
{
    const struct profile *p = in->profile;
    uint64_t page = in->page_size;
    struct sizing_key *max = &r->keys[SIZING_KEY_SHMMAX], *all = &r->keys[SIZING_KEY_SHMALL],
                      *mni = &r->keys[SIZING_KEY_SHMMNI];

    r->fraction_pct = workload_pct(p->workload);
    max->source = all->source = "derived";
    if (p->shmmax.set && p->shmmax.size.kind == SIZE_PERCENT) {
        r->fraction_pct = (unsigned)p->shmmax.size.value;
        max->source = "profile";
    }
    max->derived = percent_of(r->ram_bytes, r->fraction_pct) / page * page;
    if (p->shmmax.set && p->shmmax.size.kind == SIZE_BYTES) {
        max->derived = p->shmmax.size.value;
        max->source = "profile";
        r->shmmax_overridden = true;
    }

    /* Whole pages covering shmmax: exact when shmmax is page-aligned. */
    all->derived = max->derived / page + (max->derived % page != 0);
    if (p->shmall.set) {
        all->derived = p->shmall.in_pages ? p->shmall.size.value : p->shmall.size.value / page;
        all->source = "profile";
        if (all->derived < max->derived / page + (max->derived % page != 0))
            add_problem(r, true, SIZING_KEY_SHMALL,
                        "limits.shmall (%" PRIu64 " pages of %" PRIu64 " bytes) is smaller than limits.shmmax (%" PRIu64
                        " bytes): shmall x page size must be at least shmmax",
                        all->derived, page, max->derived);
    }
    max->managed = all->managed = true;

    mni->managed = p->shmmni.set;
    if (mni->managed) {
        mni->derived = p->shmmni.size.value;
        mni->source = "profile";
    }
}

static void apply_policy(const struct sizing_input *in, struct sizing_result *r)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        struct sizing_key *k = &r->keys[id];

        if (!k->managed)
            continue;
        k->current_known = in->current.known[id];
        k->current = in->current.value[id];
        k->target = k->derived;
        k->persist = true;
        if (in->profile->policy == PROFILE_POLICY_RAISE_ONLY && k->current_known && k->current > k->derived) {
            k->target = k->current;
            k->persist = false;
            k->source = "kept (raise-only)";
        }
        k->action = sizing_action_of(k);
    }
}

enum sizing_action sizing_action_of(const struct sizing_key *k)
{
    if (!k->current_known)
        return SIZING_ACTION_SET;
    if (k->target == k->current)
        return SIZING_ACTION_KEEP;
    return k->target > k->current ? SIZING_ACTION_RAISE : SIZING_ACTION_LOWER;
}

/* Going below what live segments already use breaks them or their next
 * allocation: refuse unless the operator forces it. */
static void check_guards(const struct sizing_input *in, struct sizing_result *r)
{
    const struct sizing_key *max = &r->keys[SIZING_KEY_SHMMAX], *all = &r->keys[SIZING_KEY_SHMALL],
                            *mni = &r->keys[SIZING_KEY_SHMMNI];

    if (in->force)
        return;
    if (all->target < in->usage.pages)
        add_problem(r, false, SIZING_KEY_SHMALL,
                    "kernel.shmall: target %" PRIu64 " pages is below the %" PRIu64
                    " pages existing segments already use",
                    all->target, in->usage.pages);
    if (max->target < in->usage.largest_segment)
        add_problem(r, false, SIZING_KEY_SHMMAX,
                    "kernel.shmmax: target %" PRIu64 " bytes is below the largest existing segment (%" PRIu64
                    " bytes)",
                    max->target, in->usage.largest_segment);
    if (mni->managed && mni->target < in->usage.segments)
        add_problem(r, false, SIZING_KEY_SHMMNI,
                    "kernel.shmmni: target %" PRIu64 " is below the %" PRIu64 " segments that exist",
                    mni->target, in->usage.segments);
}

int sizing_compute(const struct sizing_input *in, struct sizing_result *ret)
{
    struct sizing_result r;

    if (!in->profile || in->page_size == 0 || (in->page_size & (in->page_size - 1)) != 0)
        return -EINVAL;
    memset(&r, 0, sizeof(r));
    r.page_size = in->page_size;
    if (in->profile->ram_tier == PROFILE_TIER_AUTO) {
        if (in->memtotal_bytes == 0)
            return -EINVAL;
        r.tier_detected = true;
        r.tier = sizing_classify(in->memtotal_bytes);
        r.ram_bytes = in->memtotal_bytes;
    } else {
        r.tier = in->profile->ram_tier;
        r.ram_bytes = tier_ram[r.tier];
    }

    derive(in, &r);
    if (r.keys[SIZING_KEY_SHMMAX].derived == 0)
        add_problem(&r, false, SIZING_KEY_SHMMAX,
                    "kernel.shmmax: %u%% of %" PRIu64 " bytes of RAM is less than one page", r.fraction_pct,
                    r.ram_bytes);
    apply_policy(in, &r);
    check_guards(in, &r);
    *ret = r;
    return 0;
}

uint64_t sizing_headroom(uint64_t shmmax, uint64_t shmall, uint64_t shmmni, uint64_t page_size,
                         uint64_t shm_tot_pages, uint64_t segments, enum sizing_key_id *ret_limited_by)
{
    uint64_t free_pages, bytes;

    if (segments >= shmmni) {
        *ret_limited_by = SIZING_KEY_SHMMNI;
        return 0;
    }
    if (page_size == 0 || shm_tot_pages >= shmall) {
        *ret_limited_by = SIZING_KEY_SHMALL;
        return 0;
    }
    free_pages = shmall - shm_tot_pages;
    bytes = free_pages > UINT64_MAX / page_size ? UINT64_MAX : free_pages * page_size;
    *ret_limited_by = bytes < shmmax ? SIZING_KEY_SHMALL : SIZING_KEY_SHMMAX;
    return bytes < shmmax ? bytes : shmmax;
}

struct sizing_headroom sizing_headroom_now(const struct sizing_current *limits, uint64_t page_size,
                                           uint64_t shm_tot_pages, uint64_t segments)
{
    struct sizing_headroom h = { .known = limits->known[SIZING_KEY_SHMMAX] && limits->known[SIZING_KEY_SHMALL] &&
                                          limits->known[SIZING_KEY_SHMMNI] };

    if (h.known)
        h.bytes = sizing_headroom(limits->value[SIZING_KEY_SHMMAX], limits->value[SIZING_KEY_SHMALL],
                                  limits->value[SIZING_KEY_SHMMNI], page_size, shm_tot_pages, segments, &h.limited_by);
    return h;
}
