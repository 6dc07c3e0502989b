#pragma once
/* A plan: everything apply would do, computed from the profile and the host
 * without changing either. plan_show.h renders it. */

#include <stdbool.h>

#include "host.h"
#include "profile.h"
#include "sizing.h"

struct plan {
    const struct profile *profile;
    struct host_facts host;
    struct sizing_result sizing;

    char dropin_path[4096]; /* the drop-in on disk: the root prefix and the profile's path */
    char *dropin_new;      /* NULL in a removal plan (removal.h): the drop-in is to go */
    size_t dropin_new_len;
    char *dropin_old;      /* NULL when absent or unreadable */
    size_t dropin_old_len;
    unsigned dropin_old_mode; /* its permission bits, which a rollback puts back */
    int dropin_read_errno; /* 0, ENOENT, ELOOP (a symlink), ... */
    /* Why apply would refuse to replace what is at dropin_path (a symbolic
     * link, a FIFO, a directory, unreadable), "" when it would not. */
    char dropin_problem[4096 + 128];
    bool dropin_changed;
    /* Hashed once here for drift, the state record, verify and the report:
     * of dropin_new ("" in a removal plan) and of dropin_old ("" when it
     * is NULL). */
    char dropin_new_sha256[65], dropin_old_sha256[65];

    unsigned nwarnings;
    char warnings[SIZING_KEY_COUNT + 3][320];
    const char *tier_warning; /* of warnings[]: the tier does not fit this host's RAM; NULL when it does */
};

/* Builds the plan: sizing from the profile and host facts, then the drop-in
 * text, compared with the file on disk (read, never followed through a
 * symlink), under root when root is not NULL (image builds). Takes h's
 * segment table over, also on failure (h->segments is NULL after). Returns
 * 0 or a negative errno. */
int plan_build(const struct profile *p, struct host_facts *h, bool force, const char *root,
               struct plan **ret);
void plan_free(struct plan *plan);
/* The unified diff from the drop-in on disk to the new one ("" when
 * unchanged), allocated; built only where it is shown (plan, apply, and
 * verify on drift). NULL when out of memory. */
char *plan_diff(const struct plan *plan);
#define PLAN_DIFF_NO_MEMORY "(out of memory: no diff)\n"

/* Whether apply could proceed, or the graver reason it would refuse. */
enum plan_refusal { PLAN_PROCEEDS, PLAN_HOST_REFUSES, PLAN_PROFILE_CONTRADICTS };
enum plan_refusal plan_refusal(const struct plan *plan);

/* Whether the running value of a managed key is what the profile asks for
 * (policy-aware: raise-only accepts more); false when the key is not
 * managed or its value could not be read. verify and status both ask. */
bool plan_key_in_sync(const struct plan *plan, enum sizing_key_id key);
/* The same rule for a value read at another time (an apply's read-back). */
bool plan_value_in_sync(enum policy policy, uint64_t derived, uint64_t value);
