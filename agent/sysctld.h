#pragma once
/* Which file and line finally sets each kernel key shmprov manages at boot
 * (README "apply, a transaction", step 2): a drop-in that a later file
 * overrides is a silent failure. Two sets of rules, modelled on the tools
 * as Debian 12 ships them and checked against the real binaries:
 *
 *  SYSCTLD_SYSTEMD  systemd-sysctl 252 at boot: *.conf in /etc/sysctl.d,
 *                   /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d.
 *  SYSCTLD_PROCPS   procps-ng 4.0.2 `sysctl --system`: the same plus
 *                   /lib/sysctl.d, then /etc/sysctl.conf read last.
 *
 * The line parser is pure, so it is tested and fuzzed without a file
 * system. Problems in the files are returned as warnings. */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

enum sysctld_rules { SYSCTLD_SYSTEMD, SYSCTLD_PROCPS };
#define SYSCTLD_RULE_SETS 2

#define SYSCTLD_MAX_KEYS 3
#define SYSCTLD_MAX_WARNINGS 16
#define SYSCTLD_KEY_MAX 64
#define SYSCTLD_VALUE_MAX 64
#define SYSCTLD_FILE_MAX_BYTES ((size_t)1024 * 1024)
/* sysctl.d paths are short: longer ones are cut in results, never overflowed. */
#define SYSCTLD_PATH_MAX 512
#define SYSCTLD_WARNING_MAX (SYSCTLD_PATH_MAX + 128)

/* One line, as the tool reads it, that names a managed key. */
struct sysctld_line {
    size_t key_index;    /* into the keys[] given to the parser */
    unsigned line;       /* 1-based, counted the way the tool counts */
    const char *name;    /* the key as the tool keeps it, e.g. "kernel/shmmax", "kernel/shm*" */
    const char *value;   /* into the text, value_len bytes, not NUL-terminated; */
    size_t value_len;    /*   NULL for an exclusion ("-key" without '=') */
    bool glob;           /* name is a pattern (systemd and procps: fnmatch-style) */
    bool exact;          /* name is exactly the canonical key: it stops every glob */
    bool ignore_failure; /* '-' before the key */
    bool uncertain;      /* the tools read this line differently, byte by byte: a NUL, a lone
                          * '\r', '\v' or '\f' in it or before it in the file */
};

typedef void (*sysctld_line_fn)(void *ctx, const struct sysctld_line *l);
typedef void (*sysctld_warning_fn)(void *ctx, unsigned line, const char *why);

/* Parses one file's text under rules, calling on_line for every line that
 * names one of keys[] ("kernel.shmmax" or "kernel/shmmax"; a glob line once
 * per key it matches) and on_warning (which may be NULL) for lines the tool
 * warns about. Returns 0, -EINVAL for bad arguments, or -ENOMEM. */
int sysctld_parse_text(enum sysctld_rules rules, const char *text, size_t len,
                       const char *const *keys, size_t nkeys, sysctld_line_fn on_line,
                       sysctld_warning_fn on_warning, void *ctx);

/* The line whose value a tool writes last to a key. */
struct sysctld_assignment {
    bool known;                    /* false: the tool writes nothing to the key (the rest is empty) */
    char path[SYSCTLD_PATH_MAX];   /* on the target system, as the tool names the file */
    unsigned line;
    char value[SYSCTLD_VALUE_MAX]; /* as written; control characters shown as '?', long ones cut with "..." */
    bool glob;                     /* the line's key is a pattern matching this key */
    bool ignore_failure;
};

struct sysctld_key_report {
    char key[SYSCTLD_KEY_MAX];     /* as given, e.g. "kernel.shmmax" */
    size_t total;                  /* lines that name the key */
    struct sysctld_assignment winner;
};

struct sysctld_analysis {
    enum sysctld_rules rules;
    size_t nkeys;
    struct sysctld_key_report keys[SYSCTLD_MAX_KEYS];
    bool blocked;    /* the tool would hang opening a file (a FIFO) and apply nothing at all */
    bool incomplete; /* a file the tool reads was not analysed: the winners may be wrong */
    const char *incomplete_why; /* the first such file and why, when incomplete (one of warnings[]) */
    size_t nwarnings, dropped_warnings;
    char warnings[SYSCTLD_MAX_WARNINGS][SYSCTLD_WARNING_MAX]; /* "PATH: why" or "PATH:LINE: why" */
};

/* Scans the configuration under root ("/", or an image for --root) as each
 * tool would at boot into ret[SYSCTLD_SYSTEMD] and ret[SYSCTLD_PROCPS],
 * reading every file once for both. Symbolic links are resolved inside
 * root, never on the host. Unreadable or odd files are warnings, not errors.
 *
 * With pending_path (absolute, on the target system) the analysis is as it
 * will be once that file holds pending_text (pending_len bytes), or is gone
 * when pending_text is NULL; the file on disk is not read and its directory
 * need not exist. A same-named file in a directory read first still hides it.
 *
 * Returns 0, or a negative errno with ret untouched: -EINVAL for bad arguments,
 * -ENOENT/-ENOTDIR when root is not a directory, -ENOMEM. */
int sysctld_analyse_both(const char *root, const char *const *keys, size_t nkeys, const char *pending_path,
                         const char *pending_text, size_t pending_len,
                         struct sysctld_analysis *ret[SYSCTLD_RULE_SETS]);

/* sysctld_analysis_free(NULL) is a no-op. */
void sysctld_analysis_free(struct sysctld_analysis *a);

/* Every directory systemd-sysctl or sysctl --system reads drop-ins from,
 * NULL-terminated: a drop-in anywhere else is never applied at boot. */
extern const char *const sysctld_dirs[];

const char *sysctld_rules_name(enum sysctld_rules rules);
