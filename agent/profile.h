#pragma once
/* The host profile (README "Profile reference"): a strict YAML parser on libyaml. Parsing takes
 * a buffer and a file name and does no I/O (profile_parse() in testing.h), so
 * every rejection is testable without root; profile_load() is the one I/O edge. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sizes.h"

#define PROFILE_MAX_BYTES ((size_t)1024 * 1024)
#define PROFILE_DEFAULT_PATH "/etc/shmprov/profile.yaml"
#define PROFILE_DEFAULT_DROPIN "/etc/sysctl.d/60-shmprov.conf"
#define PROFILE_BUILTIN_NAME "<built-in default>"
/* Why the built-in default is in use: the only way it comes to be. */
#define PROFILE_BUILTIN_NOTE "no " PROFILE_DEFAULT_PATH ": using the built-in default profile"
#define PROFILE_SHMMNI_MAX 32768
#define PROFILE_PERSISTENT_KEYS_MAX 64
#define PROFILE_LABELS_MAX 16
#define PROFILE_LABEL_NAME_MAX 63   /* bytes; ^[a-z][a-z0-9_.-]{0,62}$ */
#define PROFILE_LABEL_VALUE_MAX 256 /* bytes of UTF-8 */
/* metrics.textfile: a name short enough for fsutil_write_atomic()'s
 * temporary name beside it (".shmprov-tmp." + name + ".xxxxxxxx") to fit NAME_MAX. */
#define PROFILE_TEXTFILE_MAX 1024
#define PROFILE_TEXTFILE_NAME_MAX 200

enum ram_tier { PROFILE_TIER_AUTO, PROFILE_TIER_SMALL, PROFILE_TIER_MEDIUM, PROFILE_TIER_LARGE };
enum workload { PROFILE_WORKLOAD_GENERAL, PROFILE_WORKLOAD_DATABASE, PROFILE_WORKLOAD_BIGDATA };
enum policy { PROFILE_POLICY_ENFORCE, PROFILE_POLICY_RAISE_ONLY };

const char *profile_tier_name(enum ram_tier tier);
const char *profile_workload_name(enum workload workload);
const char *profile_policy_name(enum policy policy);

/* Where a value stood in its file, so later checks can point at it. */
struct profile_mark {
    unsigned line, col; /* 1-based; 0 when the key is absent */
};

struct profile_limit {
    bool set;
    struct size_value size; /* shmall: SIZE_BYTES with in_pages for a bare integer */
    bool in_pages;
    struct profile_mark mark;
};

struct profile_report {
    char *url;
    char *token_file;
    char *ca_file;
    char *client_cert;
    char *client_key;
    char *spool_dir;
    unsigned timeout_s;
    unsigned splay_s; /* random delay before reporting, 0..splay_s seconds */
    unsigned spool_max_events; /* undelivered events kept before the oldest are dropped */
};

/* An operator label (labels:), carried in every report. The value is the
 * scalar's text as written: `tier: 2` is "2", `legacy: yes` is "yes". */
struct profile_label {
    char name[PROFILE_LABEL_NAME_MAX + 1];
    char value[PROFILE_LABEL_VALUE_MAX + 1]; /* valid UTF-8, no control characters, may be "" */
};

struct profile {
    char *path;           /* as given (for messages), or PROFILE_BUILTIN_NAME */
    char *canonical_path; /* absolute, for the drop-in header; same as path when built in */
    bool builtin;
    char sha256_hex[65];
    enum ram_tier ram_tier;
    enum workload workload;
    enum policy policy;
    struct profile_limit shmmax;
    struct profile_limit shmall;
    struct profile_limit shmmni;
    char *dropin;
    unsigned conflicts_warn_only; /* conflicts: 1 for warn, 0 (the default) for refuse */
    char *metrics_textfile; /* where apply, verify and status write metrics; NULL when not set */
    struct profile_report report;
    /* segments.persistent_keys: System V keys (the bits of a key_t) whose
     * segments outlive their creators; `status --remove-orphans` keeps them. */
    uint32_t persistent_keys[PROFILE_PERSISTENT_KEYS_MAX];
    size_t npersistent_keys;
    /* labels: in file order, names unique. */
    struct profile_label labels[PROFILE_LABELS_MAX];
    unsigned nlabels;
};

/* Whether path may be a drop-in (the rule of the profile's 'dropin'): a
 * '.conf' file of letters, digits, '.', '_' or '-' directly in a directory
 * read at boot. 0, -ENOTDIR (another directory) or -EINVAL (the name). */
int profile_check_dropin_path(const char *path);

struct profile_diag {
    unsigned line, col; /* 1-based */
    char *message;
};

/* All the errors found in one file, reported together. */
struct profile_diags {
    char *file;
    struct profile_diag *items;
    size_t count;
};

void profile_diags_init(struct profile_diags *d, const char *file);
void profile_diags_free(struct profile_diags *d);
/* Appends "FILE:LINE:COL: error: MESSAGE". Returns <0 only on ENOMEM. */
int profile_diags_add(struct profile_diags *d, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prints every diagnostic as "FILE:LINE:COL: error: MESSAGE" on stderr. */
void profile_diags_print(const struct profile_diags *d);

/* Reads and parses path: regular file, at most PROFILE_MAX_BYTES, and when
 * running as root not writable by anyone but root. Errors go to diags. */
int profile_load(const char *path, struct profile_diags *diags, struct profile **ret);

/* The profile compiled in from profiles/default.yaml. */
int profile_load_builtin(struct profile_diags *diags, struct profile **ret);

void profile_free(struct profile *p);
