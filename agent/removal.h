#pragma once
/* `shmprov remove`, the inverse of apply: a plan turned into a removal
 * plan, with no new drop-in text and as each key's target the value boot
 * would give once the drop-in is gone (the remaining files' winner under
 * systemd-sysctl's rules, else the kernel's default). apply.c runs it as
 * the same transaction. Only removal_prepare() reads files. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conflicts.h"
#include "plan.h"
#include "sizing.h"

/* The source of a key's boot value when no file sets it. */
#define REMOVAL_SOURCE_DEFAULT "kernel default"

/* Whose the file at the drop-in path is. */
enum removal_owner {
    REMOVAL_ABSENT,         /* nothing there: nothing to delete */
    REMOVAL_OWNED_RECORD,   /* its sha256 is the one the last apply recorded */
    REMOVAL_OWNED_RENDERED, /* no record: shmprov's header and the profile's text now */
    REMOVAL_EDITED,         /* a record, and another sha256: edited since */
    REMOVAL_NOT_RENDERED,   /* no record, shmprov's header, but not the profile's text now */
    REMOVAL_FOREIGN,        /* no record and no shmprov header */
};

struct removal_key {
    bool managed;    /* the drop-in sets it: it goes back to its boot value */
    bool boot_known; /* false: a file sets it to what cannot be read (problem says why) */
    uint64_t boot;
    char source[SYSCTLD_PATH_MAX + 16]; /* "PATH:LINE", or REMOVAL_SOURCE_DEFAULT */
    char problem[SYSCTLD_PATH_MAX + SYSCTLD_VALUE_MAX + 160];
};

struct removal {
    enum removal_owner owner;
    struct removal_key keys[SIZING_KEY_COUNT];
    /* Who wins each key at boot once the drop-in is gone, under both
     * tools' rules (the report's winning_file). */
    struct conflicts boot;
    char *rendered; /* what the profile renders now (the plan's new text), moved here */
    size_t rendered_len;
};

/* One sentence: why the file is (or is not) shmprov's. */
const char *removal_owner_text(enum removal_owner owner);

/* true for the owners a removal may delete without --force. */
bool removal_owned(enum removal_owner owner);

/* The kernel's default of key id (sizing.h). */
uint64_t removal_kernel_default(enum sizing_key_id id);

/* Turns plan (under root when not NULL) into the removal plan, in place:
 * judges the drop-in against recorded_sha256 (may be NULL), picks the keys
 * it sets (the profile's when it is absent) and makes their boot values the
 * targets. Returns 0 and a removal to removal_free(), or a negative errno. */
int removal_prepare(struct plan *plan, const char *root, const char *recorded_sha256, struct removal **ret);

void removal_free(struct removal *r); /* NULL is a no-op */

/* A key whose boot value is not known, or NULL when all are. */
const struct removal_key *removal_unknown_key(const struct removal *r);
