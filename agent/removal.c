#include "removal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropin.h"
#include "hash.h"
#include "sizes.h"
#include "testing.h"

enum removal_owner removal_judge_owner(const char *bytes, size_t len, const char *recorded_sha256,
                                       const char *rendered, size_t rendered_len)
{
    size_t header_len = strlen(DROPIN_HEADER);
    char sha[65];

    if (!bytes)
        return REMOVAL_ABSENT;
    if (recorded_sha256 && recorded_sha256[0]) {
        hash_sha256_hex(bytes, len, sha);
        return strcmp(sha, recorded_sha256) == 0 ? REMOVAL_OWNED_RECORD : REMOVAL_EDITED;
    }
    if (len < header_len || memcmp(bytes, DROPIN_HEADER, header_len) != 0)
        return REMOVAL_FOREIGN;
    if (rendered && len == rendered_len && memcmp(bytes, rendered, len) == 0)
        return REMOVAL_OWNED_RENDERED;
    return REMOVAL_NOT_RENDERED;
}

bool removal_owned(enum removal_owner owner)
{
    return owner == REMOVAL_ABSENT || owner == REMOVAL_OWNED_RECORD || owner == REMOVAL_OWNED_RENDERED;
}

const char *removal_owner_text(enum removal_owner owner)
{
    static const char *const texts[] = {
        [REMOVAL_ABSENT] = "it does not exist",
        [REMOVAL_OWNED_RECORD] = "shmprov's: its sha256 is the one the last apply recorded",
        [REMOVAL_OWNED_RENDERED] = "shmprov's: it has shmprov's header and holds what the profile gives now",
        [REMOVAL_EDITED] = "edited since shmprov wrote it: its sha256 is not the one the last apply recorded",
        [REMOVAL_NOT_RENDERED] = ("not what shmprov would write: it has shmprov's header but not what the profile "
                                  "gives now (edited, or written from another profile), and no apply recorded it"),
        [REMOVAL_FOREIGN] = "not shmprov's: it does not start with shmprov's header and no apply recorded it",
    };

    return owner <= REMOVAL_FOREIGN ? texts[owner] : texts[REMOVAL_FOREIGN];
}

static void on_line(void *ctx, const struct sysctld_line *l)
{
    bool *set = ctx;

    if (l->value && l->key_index < SIZING_KEY_COUNT)
        set[l->key_index] = true;
}

void removal_keys_set_by(const char *text, size_t len, bool ret[SIZING_KEY_COUNT])
{
    const char *keys[SIZING_KEY_COUNT];

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        keys[id] = sizing_key_name((enum sizing_key_id)id);
        ret[id] = false;
    }
    (void)sysctld_parse_text(SYSCTLD_SYSTEMD, text, len, keys, SIZING_KEY_COUNT, on_line, NULL, ret);
}

uint64_t removal_kernel_default(enum sizing_key_id id)
{
    return id == SIZING_KEY_SHMMNI ? SIZING_SHMMNI_DEFAULT : SIZING_KERNEL_DEFAULT;
}

void removal_boot_value(enum sizing_key_id id, const struct sysctld_assignment *w, bool uncertain,
                        struct removal_key *ret)
{
    const char *why = NULL;

    ret->boot_known = false;
    ret->problem[0] = '\0';
    if (uncertain) {
        (void)snprintf(ret->problem, sizeof(ret->problem),
                       "%s: a file systemd-sysctl reads could not be analysed, so its value at boot is unknown",
                       sizing_key_name(id));
        return;
    }
    if (!w->known) {
        ret->boot = removal_kernel_default(id);
        ret->boot_known = true;
        (void)snprintf(ret->source, sizeof(ret->source), "%s", REMOVAL_SOURCE_DEFAULT);
        return;
    }
    (void)snprintf(ret->source, sizeof(ret->source), "%s:%u", w->path, w->line);
    ret->boot_known = sizes_parse_uint(w->value, &ret->boot, &why) == 0;
    if (!ret->boot_known)
        (void)snprintf(ret->problem, sizeof(ret->problem),
                       "%s:%u sets %s to '%s', which shmprov cannot read as a value (%s)", w->path, w->line,
                       sizing_key_name(id), w->value, why);
}

/* The keys a removal resets: those the drop-in sets; with no drop-in to
 * read, those the profile manages. */
static void pick_keys(const struct plan *plan, struct removal *r)
{
    bool set[SIZING_KEY_COUNT] = { false };

    if (plan->dropin_old)
        removal_keys_set_by(plan->dropin_old, plan->dropin_old_len, set);
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        r->keys[id].managed = plan->dropin_old ? set[id] : plan->sizing.keys[id].managed;
}

/* The boot values become the plan's targets, from the running values as
 * the host read them (sizing fills in only the keys the profile manages).
 * A key whose boot value is unknown keeps its running value: nothing is
 * written to it. */
static void set_targets(struct plan *plan, const struct removal *r)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        struct sizing_key *k = &plan->sizing.keys[id];
        const struct removal_key *rk = &r->keys[id];

        k->managed = rk->managed;
        k->current_known = plan->host.current.known[id];
        k->current = plan->host.current.value[id];
        k->target = rk->boot_known ? rk->boot : k->current;
        k->derived = k->target;
        k->source = strcmp(rk->source, REMOVAL_SOURCE_DEFAULT) == 0 ? REMOVAL_SOURCE_DEFAULT : "boot file";
        k->action = sizing_action_of(k);
    }
}

/* A plan's sizing problems and warnings are about the profile's values,
 * which a removal does not set; procps applying another value than
 * systemd-sysctl is worth a word. */
static void set_warnings(struct plan *plan, const struct removal *r)
{
    size_t max = sizeof(plan->warnings) / sizeof(plan->warnings[0]);

    plan->sizing.nproblems = 0;
    plan->nwarnings = 0;
    plan->tier_warning = NULL;
    for (int id = 0; id < SIZING_KEY_COUNT && plan->nwarnings < max; id++) {
        const struct sysctld_assignment *sd = &r->boot.winners[id][SYSCTLD_SYSTEMD];
        const struct sysctld_assignment *pp = &r->boot.winners[id][SYSCTLD_PROCPS];

        if (!r->keys[id].managed || (sd->known == pp->known && (!sd->known || strcmp(sd->value, pp->value) == 0)))
            continue;
        if (pp->known)
            (void)snprintf(plan->warnings[plan->nwarnings++], sizeof(plan->warnings[0]),
                           /* A warning has 320 bytes: a long path is cut. */
                           "%s: 'sysctl --system' would set %.64s from %.160s:%u, not what systemd-sysctl sets "
                           "at boot", sizing_key_name(id), pp->value, pp->path, pp->line);
        else
            (void)snprintf(plan->warnings[plan->nwarnings++], sizeof(plan->warnings[0]),
                           "%s: 'sysctl --system' would leave the kernel default, not what systemd-sysctl sets at "
                           "boot", sizing_key_name(id));
    }
}

int removal_prepare(struct plan *plan, const char *root, const char *recorded_sha256, struct removal **ret)
{
    struct removal *r = calloc(1, sizeof(*r));
    int rc;

    if (!r)
        return -ENOMEM;
    r->rendered = plan->dropin_new;
    r->rendered_len = plan->dropin_new_len;
    plan->dropin_new = NULL;
    plan->dropin_new_len = 0;
    plan->dropin_new_sha256[0] = '\0';
    plan->dropin_changed = plan->dropin_old != NULL;
    r->owner = removal_judge_owner(plan->dropin_old, plan->dropin_old_len, recorded_sha256, r->rendered,
                                   r->rendered_len);
    pick_keys(plan, r);
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        plan->sizing.keys[id].persist = false;
    /* With no new text, the analysis is of the tree once the file is gone. */
    rc = conflicts_check(plan, root, &r->boot);
    if (rc < 0) {
        removal_free(r);
        return rc;
    }
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        if (r->keys[id].managed)
            removal_boot_value((enum sizing_key_id)id, &r->boot.winners[id][SYSCTLD_SYSTEMD],
                               r->boot.uncertain[SYSCTLD_SYSTEMD], &r->keys[id]);
    set_targets(plan, r);
    set_warnings(plan, r);
    *ret = r;
    return 0;
}

void removal_free(struct removal *r)
{
    if (!r)
        return;
    free(r->rendered);
    free(r);
}

const struct removal_key *removal_unknown_key(const struct removal *r)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        if (r->keys[id].managed && !r->keys[id].boot_known)
            return &r->keys[id];
    return NULL;
}
