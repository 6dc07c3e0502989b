#pragma once
/* The sizing guide as arithmetic (README "Sizing rules"). Pure: structs in, numbers
 * and reasons out; no I/O, no logging, no globals. */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "profile.h"

/* The kernel's own defaults, what a key holds when no sysctl file sets it
 * (include/uapi/linux/shm.h): SHMMAX and SHMALL are ULONG_MAX - (1UL << 24)
 * since Linux 3.16 (18446744073692774399 on 64-bit), SHMMNI is 4096. */
#define SIZING_KERNEL_DEFAULT ((uint64_t)(ULONG_MAX - (1UL << 24)))
#define SIZING_SHMMNI_DEFAULT 4096

#define SIZING_TIER_SMALL_RAM (UINT64_C(8) << 30)
#define SIZING_TIER_MEDIUM_RAM (UINT64_C(32) << 30)
#define SIZING_TIER_LARGE_RAM (UINT64_C(128) << 30)

enum sizing_key_id { SIZING_KEY_SHMMAX, SIZING_KEY_SHMALL, SIZING_KEY_SHMMNI, SIZING_KEY_COUNT };
/* SIZING_ACTION_SET: the current value could not be read. */
enum sizing_action { SIZING_ACTION_KEEP, SIZING_ACTION_RAISE, SIZING_ACTION_LOWER, SIZING_ACTION_SET };

const char *sizing_key_name(enum sizing_key_id id); /* "kernel.shmmax" */
const char *sizing_key_unit(enum sizing_key_id id); /* "bytes", "pages", "segments" */
const char *sizing_action_name(enum sizing_action action);

struct sizing_current {
    bool known[SIZING_KEY_COUNT];
    uint64_t value[SIZING_KEY_COUNT];
    int error[SIZING_KEY_COUNT]; /* when not known: the read's negative errno */
};

struct sizing_usage {
    uint64_t segments;
    uint64_t bytes;
    uint64_t pages; /* shm_tot: sum of whole pages of every segment */
    uint64_t largest_segment;
};

struct sizing_input {
    const struct profile *profile;
    uint64_t memtotal_bytes; /* used when the tier is auto */
    uint64_t page_size;
    struct sizing_current current;
    struct sizing_usage usage;
    bool force; /* allow going below what existing segments use */
};

struct sizing_key {
    bool managed;  /* shmprov sets it (shmmni only when the profile does) */
    uint64_t derived; /* what the profile asks for */
    uint64_t target;  /* what apply would set, after the policy */
    bool persist;     /* written to the drop-in (raise-only may keep a higher value) */
    bool current_known;
    uint64_t current;
    enum sizing_action action;
    const char *source; /* "derived", "profile", "kept (raise-only)" */
};

#define SIZING_MAX_PROBLEMS 4
struct sizing_problem {
    /* The profile contradicts itself at key's setting, and text is the
     * reason alone (the command says where); else the host's state makes
     * apply refuse, and text is the whole sentence. */
    bool in_profile;
    enum sizing_key_id key;
    char text[320];
};

struct sizing_result {
    enum ram_tier tier;   /* never PROFILE_TIER_AUTO: the class used or detected */
    bool tier_detected;   /* tier was auto */
    uint64_t ram_bytes;
    unsigned fraction_pct; /* share of RAM for shmmax (derivation or override) */
    bool shmmax_overridden;
    uint64_t page_size;
    struct sizing_key keys[SIZING_KEY_COUNT];
    /* Why apply would refuse (guards, inconsistent overrides), if anything. */
    unsigned nproblems;
    struct sizing_problem problems[SIZING_MAX_PROBLEMS];
};

/* What apply does to k: set when its current value is unknown, else keep,
 * raise or lower it to its target. */
enum sizing_action sizing_action_of(const struct sizing_key *k);

/* Classifies a measured MemTotal: <16 GiB small, <64 GiB medium, else large. */
enum ram_tier sizing_classify(uint64_t memtotal_bytes);

/* Returns 0 and fills *ret; -EINVAL for an unusable page size or RAM. Problems
 * that make apply refuse are in ret->problems, not the return value. */
int sizing_compute(const struct sizing_input *in, struct sizing_result *ret);

/* The largest segment shmget() would create now, as newseg() decides: 0
 * when every id is taken (segments >= shmmni) or shm_tot_pages >= shmall,
 * else min(shmmax, (shmall - shm_tot_pages) * page_size), saturating. Sets
 * *ret_limited_by to the limit that decides it. */
uint64_t sizing_headroom(uint64_t shmmax, uint64_t shmall, uint64_t shmmni, uint64_t page_size,
                         uint64_t shm_tot_pages, uint64_t segments, enum sizing_key_id *ret_limited_by);

struct sizing_headroom {
    bool known; /* the three limits were read */
    uint64_t bytes;
    enum sizing_key_id limited_by;
};
/* sizing_headroom() under the limits in force, when all three are known. */
struct sizing_headroom sizing_headroom_now(const struct sizing_current *limits, uint64_t page_size,
                                           uint64_t shm_tot_pages, uint64_t segments);
