#pragma once
/* The command line (README "Commands"): option parsing, the command table, and the
 * steps every command shares (choosing and loading the profile). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apply.h"
#include "plan.h"
#include "profile.h"
#include "report.h"
#include "state.h"

enum exit_code {
    EXIT_OK = 0,
    EXIT_FAILURE_RUNTIME = 1, /* kernel refused, I/O error, ... */
    EXIT_USAGE = 2,           /* bad invocation or invalid profile; nothing touched */
    EXIT_DRIFT = 3,           /* verify found drift */
};

/* OUTPUT_PROMETHEUS: the metrics (metrics.h), status only. */
enum output_format { OUTPUT_TEXT, OUTPUT_JSON, OUTPUT_PROMETHEUS };

struct cli_options {
    const char *profile_path; /* NULL: the default path, else the built-in */
    enum output_format output;
    bool dry_run;
    bool force;
    bool no_report;
    bool report;       /* verify --report, apply --dry-run --report */
    bool defer_report; /* spool the report, send it later (boot) */
    bool no_verify;
    bool persist_only;
    bool keep_runtime; /* remove --keep-runtime */
    const char *root; /* apply --root DIR, remove --root DIR */
    bool segments;       /* status --segments */
    bool remove_orphans; /* status --remove-orphans */
    char **args; /* positional arguments after the command */
    int nargs;
};

/* A long option of one command. Its value lands in struct cli_options at
 * field: a bool set to true for a flag, a const char * for one that takes
 * an argument. */
struct cli_option {
    const char *name; /* without the leading "--" */
    const char *arg;  /* its argument in the help ("DIR"); NULL: a flag */
    size_t field;     /* offsetof(struct cli_options, ...) */
    const char *help; /* one paragraph: --help wraps it */
};
/* The rows of an option table, as git's OPT_BOOL and OPT_STRING. */
#define CLI_FLAG(name, member, help) { name, NULL, offsetof(struct cli_options, member), help }
#define CLI_VALUE(name, arg, member, help) { name, arg, offsetof(struct cli_options, member), help }
/* The options of the transaction (apply.c) that apply and remove share. */
#define CLI_TRANSACTION_OPTIONS \
    CLI_FLAG("no-verify", no_verify, "skip the test allocation"), \
    CLI_FLAG("no-report", no_report, \
             "do not report this run (a report that cannot be delivered is spooled, never a failure)"), \
    CLI_FLAG("defer-report", defer_report, \
             "spool the report without sending it (at boot: never wait on the network; a later apply or " \
             "flush sends it)")

/* A command, as each cmd_*.c defines it: everything the parser and the
 * help know about it. The global options (--profile, --output, -q, -v,
 * --help, --version) are cli.c's and every command takes them. */
struct cli_command {
    const char *name;
    const char *args;                 /* its arguments in the help, any number ("[FILE...]"); NULL: none */
    const char *help;                 /* one paragraph, as an option's */
    const struct cli_option *options; /* ends with a NULL name */
    bool prometheus;                  /* takes --output prometheus */
    /* Refuses combinations of options (with cli_usage_error); NULL: none. */
    int (*check)(const struct cli_options *o);
    int (*exec)(const struct cli_options *o);
};

extern const struct cli_command cmd_plan_entry, cmd_apply_entry, cmd_remove_entry, cmd_verify_entry,
    cmd_validate_entry, cmd_flush_entry, cmd_status_entry;

/* Says "shmprov: <message> (see 'shmprov --help')"; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs shmprov; returns the process exit code. */
int cli_main(int argc, char **argv);

/* Loads --profile, else PROFILE_DEFAULT_PATH, else the built-in default (and
 * says so in *ret_note). Prints diagnostics itself. Returns 0 or an exit
 * code. */
int cli_load_profile(const struct cli_options *o, struct profile **ret, const char **ret_note);

/* --root DIR must be an absolute directory other than '/': says why not
 * and returns -EINVAL, or 0. */
int cli_check_root(const char *root);

struct lock;
/* Takes the lock at path (waiting LOCK_WAIT_MS at most), naming the holder
 * when it cannot (also in why, when not NULL). Returns 0, -EWOULDBLOCK when
 * another shmprov held it all that time, or another negative errno. */
int cli_lock(const char *path, struct lock **ret, char *why, size_t why_len);

/* Reads the host and builds the plan for profile (plan, apply and verify
 * all start so). Reports problems itself; returns an exit code, and the
 * plan only with EXIT_OK. A profile that contradicts itself is EXIT_USAGE.
 * why (may be NULL) gets the reason of an EXIT_FAILURE_RUNTIME. */
int cli_build_plan(const struct profile *profile, bool force, const char *root, struct plan **ret, char *why,
                   size_t why_len);

/* Runs the transaction (apply.c) for command ("apply", "remove") and logs
 * its outcome once: a failure and what was restored, the probe's note on
 * its key. Returns true with *out filled; false on an internal error,
 * said, with *error set (io, step runtime). */
bool cli_transaction(const char *command, const struct plan *plan, const struct apply_options *opts,
                     struct apply_outcome *out, struct report_error *error);

/* The state record (state.h) of a run that started at start_ms (clock_monotonic_ms)
 * and ends now with result; out (may be NULL) says whether its probe ran
 * and passed. */
void cli_state_run(uint64_t start_ms, const char *result, const struct apply_outcome *out, struct state_run *ret);

/* plan, and apply --dry-run */
int cmd_plan(const struct cli_options *o);
