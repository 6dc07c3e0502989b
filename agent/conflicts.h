#pragma once
/* Boot-order conflicts (README "apply, a transaction", step 2): for each key shmprov's drop-in sets, does
 * another file win at boot, under systemd-sysctl's rules or under procps
 * `sysctl --system`'s? Built on sysctld's analysis of the directories. */

#include <json-c/json.h>
#include <stdbool.h>

#include "plan.h"
#include "sysctld.h"

#define CONFLICTS_MAX_WARNINGS 8

struct conflict {
    enum sizing_key_id key;
    enum sysctld_rules rules;
    struct sysctld_assignment winner; /* the other file's line */
    char text[SYSCTLD_PATH_MAX * 2 + 256]; /* one sentence for people */
};

struct conflicts {
    size_t count;
    struct conflict items[SIZING_KEY_COUNT * SYSCTLD_RULE_SETS]; /* one per key and rules at most */
    /* Who sets each key last at boot, per rules, once apply has written. */
    struct sysctld_assignment winners[SIZING_KEY_COUNT][SYSCTLD_RULE_SETS];
    /* Per rules: a file could not be analysed, or would hang the tool; the
     * winners above may then be wrong. */
    bool uncertain[SYSCTLD_RULE_SETS];
    size_t nwarnings;
    char warnings[CONFLICTS_MAX_WARNINGS][SYSCTLD_WARNING_MAX + 64];
};

/* As it will be at boot after apply writes plan's drop-in (under root when
 * not NULL): the drop-in's new text counts, its old text does not. */
int conflicts_check(const struct plan *plan, const char *root, struct conflicts *ret);

/* As it is on disk now (verify). */
int conflicts_check_on_disk(const struct plan *plan, struct conflicts *ret);

/* Logs every conflict, as errors (apply refuses) or warnings. */
void conflicts_log(const struct conflicts *c, bool as_errors);

json_object *conflicts_json(const struct conflicts *c);
/* {"systemd-sysctl": "PATH:LINE" | null, "sysctl --system": ...} */
json_object *conflicts_winner_json(const struct conflicts *c, enum sizing_key_id key);
