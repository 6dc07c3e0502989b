#pragma once
/* The command line (README "Commands"): option parsing, the command table, and the
 * steps every command shares (choosing and loading the profile). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

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

/* CLI_OUTPUT_PROMETHEUS: the metrics (metrics.h), status only. */
enum output_format { CLI_OUTPUT_TEXT, CLI_OUTPUT_JSON, CLI_OUTPUT_PROMETHEUS };

struct cli_options {
    const char *profile_path; /* NULL: the default path, else the built-in */
    enum output_format output;
    char **args; /* positional arguments after the command */
    int nargs;
};

/* A long option of one command, a row of its table as git's OPT_BOOL and
 * OPT_STRING: it points at where its value goes, a bool set to true for a
 * flag, a const char * for one that takes an argument. That storage is the
 * command's own, a file-scope static next to its table: a new option is a
 * row and a variable in its cmd_*.c, nothing else. */
struct cli_option {
    const char *name;   /* without the leading "--" */
    const char *arg;    /* its argument in the help ("DIR"); NULL: a flag */
    bool *flag;         /* a flag's storage */
    const char **value; /* the storage of an option with an argument */
    const char *help;   /* one paragraph: --help wraps it */
};
#define CLI_FLAG(name, flag, help) { name, NULL, flag, NULL, help }
#define CLI_VALUE(name, arg, value, help) { name, arg, NULL, value, help }

/* The options of the transaction (apply.c) that apply and remove share:
 * each command points its rows at its own one of these. */
struct cli_transaction {
    struct apply_options apply; /* --root, --no-verify, ... as apply_run() takes them */
    bool no_report;
    bool defer_report; /* spool the report, send it later (boot) */
};
#define CLI_TRANSACTION_OPTIONS(tx) \
    CLI_FLAG("no-verify", &(tx).apply.no_verify, "skip the test allocation"), \
    CLI_FLAG("no-report", &(tx).no_report, \
             "do not report this run (a report that cannot be delivered is spooled, never a failure)"), \
    CLI_FLAG("defer-report", &(tx).defer_report, \
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
    /* Refuses first, with cli_usage_error, options that do not go together. */
    int (*exec)(const struct cli_options *o);
};

extern const struct cli_command cmd_plan_entry, cmd_apply_entry, cmd_remove_entry, cmd_verify_entry,
    cmd_validate_entry, cmd_flush_entry, cmd_status_entry;

/* Says "shmprov: <message> (see 'shmprov --help')"; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs shmprov; returns the process exit code. */
int cli_main(int argc, char **argv);

/* Loads --profile, else PROFILE_DEFAULT_PATH, else the built-in default
 * (and says so). Prints diagnostics itself. Returns 0 or an exit code. */
int cli_load_profile(const struct cli_options *o, struct profile **ret);

/* --root DIR must be an absolute directory other than '/': says why not
 * and returns -EINVAL, or 0. */
int cli_check_root(const char *root);

struct lock;
/* Takes the lock at path (waiting LOCK_WAIT_MS at most), naming the holder
 * when it cannot (also in *why, allocated, when why is not NULL). Returns
 * 0, -EWOULDBLOCK when another shmprov held it all that time, or another
 * negative errno. */
int cli_lock(const char *path, struct lock **ret, char **why);

/* Reads the host and builds the plan for profile (plan, apply and verify
 * all start so). Reports problems itself; returns an exit code, and the
 * plan only with EXIT_OK. A profile that contradicts itself is EXIT_USAGE.
 * *why (why may be NULL) gets the reason of an EXIT_FAILURE_RUNTIME,
 * allocated. */
int cli_build_plan(const struct profile *profile, bool force, const char *root, struct plan **ret, char **why);

/* Loads the profile, builds its plan (force: as --force) and returns what
 * use returns for it; the exit code of a step that failed, said. */
int cli_with_plan(const struct cli_options *o, bool force,
                  int (*use)(const struct cli_options *o, const struct plan *plan));

/* What apply and remove collect on their way, for their output, their
 * state record and their report. Each command's own run begins with it. */
struct cli_run {
    const struct cli_options *o;
    const struct cli_transaction *tx;
    const char *command; /* "apply", "remove" */
    const char *result;  /* the report's result word, once the run is over */
    struct profile *profile;
    struct plan *plan;
    struct lock *lock;
    struct apply_outcome out;
    bool out_known;
    struct report_error error;
    bool refused;
    bool profile_invalid; /* contradicts itself: exit 2, said already, no report */
    const struct conflicts *conflicts;     /* for the report: as the files stand at the end; NULL: unknown */
    const struct report_drift_list *drift; /* for the report: the drift an apply puts back; NULL: none */
    uint64_t start_ms;
    struct state state; /* as this run recorded it */
};

/* A command's run of size bytes (it begins with a struct cli_run),
 * zeroed, started now; NULL when out of memory. */
void *cli_run_new(size_t size, const struct cli_options *o, const struct cli_transaction *tx, const char *command);
/* Refuses the run: a stable code and the step, and (fmt not NULL) the
 * reason, said and kept for the report; with fmt NULL, the reason is in
 * run->error.message already. */
void cli_refuse(struct cli_run *run, const char *code, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes the apply lock, or refuses the run (the reason in run->error). */
bool cli_run_lock(struct cli_run *run);
/* Builds run->plan, or refuses the run. */
bool cli_run_plan(struct cli_run *run, bool force);
/* Runs the transaction (apply.c) for run->plan, fills run->out and logs
 * the outcome once: a failure and what was restored, the probe's note on
 * its key. */
void cli_run_transaction(struct cli_run *run, const struct apply_options *opts);
/* The text's lines of a failed transaction: what failed, what was restored. */
void cli_print_failure(const struct apply_outcome *out);
/* Whether the transaction ran and left the host as asked. */
bool cli_run_succeeded(const struct cli_run *run);
/* The state record (state.h) of run, which ends now. */
void cli_run_state(const struct cli_run *run, struct state_run *ret);
/* The run as report data: also what --output json prints. */
json_object *cli_run_report(const struct cli_run *run);
/* Records the run (record; NULL: not on the live system), says its result
 * (print; NULL: there is nothing to show but the error) and lets the next
 * apply in: the kernel and the drop-in are done. */
void cli_run_conclude(struct cli_run *run, void (*record)(struct cli_run *), void (*print)(const struct cli_run *));
/* Releases the lock, the plan, the profile and the error's message (not
 * run itself). */
void cli_run_free(struct cli_run *run);

/* --report (verify, apply --dry-run): sends rr's report, or says why not. */
void cli_send_asked_report(const struct report_run *rr);

/* apply --dry-run: exactly plan (force: --force), reported when asked. */
int cmd_plan_dry_run(const struct cli_options *o, bool force, bool report);
