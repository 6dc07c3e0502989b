#include "plan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dropin.h"
#include "fsutil.h"
#include "hash.h"
#include "sizes.h"
#include "udiff.h"

#define DROPIN_MAX_BYTES ((size_t)1024 * 1024)

/* Returns the warning kept, or NULL when the list is full. */
__attribute__((format(printf, 2, 3))) static const char *add_warning(struct plan *plan, const char *fmt, ...)
{
    va_list ap;
    char *w;

    if (plan->nwarnings >= sizeof(plan->warnings) / sizeof(plan->warnings[0]))
        return NULL;
    w = plan->warnings[plan->nwarnings++];
    va_start(ap, fmt);
    (void)vsnprintf(w, sizeof(plan->warnings[0]), fmt, ap);
    va_end(ap);
    return w;
}

/* Every finite value lowers the kernel's default: say so plainly, from what
 * to what, because that is the change operators do not expect. */
static void warn_lowering(struct plan *plan)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        char to[32];

        if (!k->managed || k->action != SIZING_ACTION_LOWER)
            continue;
        if (id == SIZING_KEY_SHMMNI) {
            add_warning(plan, "%s would be lowered from %" PRIu64 " to %" PRIu64, sizing_key_name(id),
                        k->current, k->target);
            continue;
        }
        sizes_format_human(id == SIZING_KEY_SHMALL ? k->target * plan->host.page_size : k->target, to, sizeof(to));
        add_warning(
            plan, "%s would be lowered from %" PRIu64 "%s to %" PRIu64 " (%s)%s", sizing_key_name(id), k->current,
            k->current == SIZING_KERNEL_DEFAULT ? " (the kernel's built-in default, effectively unlimited)" : "",
            k->target, to,
            plan->profile->policy == PROFILE_POLICY_ENFORCE ? "; 'policy: raise-only' never lowers a limit" : "");
    }
}

/* A fixed tier names a RAM size; a host with much less usually means a
 * fleet role was applied to the wrong host: say when the limits would let
 * shared memory grow past all of this host's RAM. */
static void warn_tier_fit(struct plan *plan)
{
    const struct sizing_result *s = &plan->sizing;
    uint64_t pages = s->keys[SIZING_KEY_SHMALL].derived, mem = plan->host.memtotal_bytes;
    uint64_t bytes = pages > UINT64_MAX / s->page_size ? UINT64_MAX : pages * s->page_size;
    char nominal[32], ram[32], reach[32];

    if (s->tier_detected || mem == 0 || bytes <= mem)
        return;
    sizes_format_human(s->ram_bytes, nominal, sizeof(nominal));
    sizes_format_human(mem, ram, sizeof(ram));
    sizes_format_human(bytes, reach, sizeof(reach));
    plan->tier_warning = add_warning(
        plan, "ram_tier: %s (%s nominal) on a host with %s of RAM lets shared memory reach %s, %.1f times its "
              "RAM: is this profile meant for this host?",
        profile_tier_name(s->tier), nominal, ram, reach, (double)bytes / (double)mem);
}

static int read_current_dropin(struct plan *plan)
{
    struct stat st;
    int r = fsutil_read_file(plan->dropin_path, DROPIN_MAX_BYTES, true, &plan->dropin_old,
                             &plan->dropin_old_len, &st);

    plan->dropin_read_errno = r < 0 ? -r : 0;
    plan->dropin_old_mode = r == 0 ? (unsigned)(st.st_mode & 07777) : 0644;
    if (r == -ENOMEM)
        return r;
    /* Not a warning: apply refuses these before touching anything, so
     * plan must say it would (exit 1). */
    if (r == -ELOOP)
        (void)snprintf(plan->dropin_problem, sizeof(plan->dropin_problem),
                       "%s is a symbolic link: apply refuses to write through it", plan->dropin_path);
    else if (r < 0 && r != -ENOENT)
        (void)snprintf(plan->dropin_problem, sizeof(plan->dropin_problem),
                       "%s: %s; apply refuses to replace it", plan->dropin_path,
                       r == -EINVAL ? "not a regular file (a FIFO, a socket or a device)" : fsutil_strerror(r));
    return 0;
}

/* Whether the drop-in changes, and both texts' hashes. */
static void compare_dropin(struct plan *plan)
{
    plan->dropin_changed = !plan->dropin_old || plan->dropin_old_len != plan->dropin_new_len ||
                           memcmp(plan->dropin_old, plan->dropin_new, plan->dropin_new_len) != 0;
    hash_sha256_hex(plan->dropin_new, plan->dropin_new_len, plan->dropin_new_sha256);
    if (plan->dropin_old)
        hash_sha256_hex(plan->dropin_old, plan->dropin_old_len, plan->dropin_old_sha256);
}

char *plan_diff(const struct plan *plan)
{
    char *diff = NULL;
    int r = udiff_render(plan->dropin_old, plan->dropin_old_len, plan->dropin_new, plan->dropin_new_len,
                         plan->dropin_old ? plan->dropin_path : "/dev/null", plan->dropin_path, &diff);

    if (r == -E2BIG)
        return strdup("(the current file is too long to show a diff)\n");
    return r < 0 ? NULL : diff;
}

int plan_build(const struct profile *p, struct host_facts *h, bool force, const char *root,
               struct plan **ret)
{
    struct sizing_input in = {
        .profile = p,
        .memtotal_bytes = h->memtotal_bytes,
        .page_size = h->page_size,
        .current = h->current,
        .usage = h->usage,
        .force = force,
    };
    struct plan *plan = calloc(1, sizeof(*plan));
    int r;

    if (!plan) {
        host_facts_free(h);
        return -ENOMEM;
    }
    plan->profile = p;
    plan->host = *h;
    h->segments = NULL;
    if ((size_t)snprintf(plan->dropin_path, sizeof(plan->dropin_path), "%s%s", root ? root : "", p->dropin) >=
        sizeof(plan->dropin_path))
        r = -ENAMETOOLONG;
    else
        r = sizing_compute(&in, &plan->sizing);
    if (r == 0)
        r = dropin_render(p, &plan->sizing, &plan->dropin_new, &plan->dropin_new_len);
    if (r == 0)
        r = read_current_dropin(plan);
    if (r == 0)
        compare_dropin(plan);
    if (r < 0) {
        plan_free(plan);
        return r;
    }
    warn_lowering(plan);
    warn_tier_fit(plan);
    if (!h->usage_known)
        add_warning(plan, "cannot read /proc/sysvipc/shm: existing segments are not checked");
    *ret = plan;
    return 0;
}

void plan_free(struct plan *plan)
{
    if (!plan)
        return;
    free(plan->dropin_new);
    free(plan->dropin_old);
    host_facts_free(&plan->host);
    free(plan);
}

bool plan_value_in_sync(enum policy policy, uint64_t derived, uint64_t value)
{
    return policy == PROFILE_POLICY_RAISE_ONLY ? value >= derived : value == derived;
}

bool plan_key_in_sync(const struct plan *plan, enum sizing_key_id key)
{
    const struct sizing_key *k = &plan->sizing.keys[key];

    return k->managed && k->current_known && plan_value_in_sync(plan->profile->policy, k->derived, k->current);
}

enum plan_refusal plan_refusal(const struct plan *plan)
{
    enum plan_refusal worst = plan->dropin_problem[0] ? PLAN_HOST_REFUSES : PLAN_PROCEEDS;

    for (unsigned i = 0; i < plan->sizing.nproblems; i++)
        if (plan->sizing.problems[i].in_profile)
            return PLAN_PROFILE_CONTRADICTS;
        else
            worst = PLAN_HOST_REFUSES;
    return worst;
}
