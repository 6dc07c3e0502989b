#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apply.h"
#include "clock.h"
#include "fsutil.h"
#include "host.h"
#include "lock.h"
#include "log.h"
#include "streams.h"
#include "version.h"

enum {
    OPT_DRY_RUN = 1 << 0,
    OPT_FORCE = 1 << 1,
    OPT_TRANSACTION = 1 << 2, /* --no-report, --defer-report, --no-verify, --root: apply and remove */
    OPT_STATUS_ONLY = 1 << 3, /* --segments, --remove-orphans */
    OPT_REPORT = 1 << 4,      /* --report */
    OPT_PERSIST_ONLY = 1 << 5, /* --persist-only: apply */
    OPT_KEEP_RUNTIME = 1 << 6, /* --keep-runtime: remove */
};

struct command {
    const char *name;
    unsigned options; /* command-specific options it accepts */
    int max_args;     /* -1: any number */
    int (*exec)(const struct cli_options *o);
};

static const struct command commands[] = {
    { "plan", OPT_FORCE, 0, cmd_plan },
    { "apply", OPT_DRY_RUN | OPT_FORCE | OPT_TRANSACTION | OPT_PERSIST_ONLY | OPT_REPORT, 0, cmd_apply },
    { "remove", OPT_DRY_RUN | OPT_FORCE | OPT_TRANSACTION | OPT_KEEP_RUNTIME, 0, cmd_remove },
    { "verify", OPT_REPORT, 0, cmd_verify },
    { "validate", 0, -1, cmd_validate },
    { "flush", 0, 0, cmd_flush },
    { "status", OPT_DRY_RUN | OPT_STATUS_ONLY, 0, cmd_status },
};

static const char usage_text[] =
    "Usage: shmprov [--profile FILE] [--output text|json|prometheus] [-q|-v] COMMAND [OPTIONS]\n"
    "\n"
    "Sizes System V shared memory (kernel.shmmax, kernel.shmall) from a host profile.\n"
    "\n"
    "Commands:\n"
    "  plan                 show the derived values and every change apply would make;\n"
    "                       changes nothing\n"
    "  apply                write the drop-in, set the running kernel, prove it with a\n"
    "                       test allocation; on any failure put everything back\n"
    "    --dry-run          exactly plan\n"
    "    --report           with --dry-run: report it too (result dry-run)\n"
    "    --root DIR         write the drop-in under DIR only (image builds); the\n"
    "                       running kernel and the test allocation are skipped\n"
    "    --no-verify        skip the test allocation\n"
    "    --persist-only     where /proc/sys is read-only (a container), write the\n"
    "                       drop-in anyway\n"
    "    --no-report        do not report this run (a report that cannot be\n"
    "                       delivered is spooled, never a failure)\n"
    "    --defer-report     spool the report without sending it (at boot: never\n"
    "                       wait on the network; a later apply or flush sends it)\n"
    "    --force            allow limits below what existing segments use\n"
    "  remove               the inverse of apply: delete the drop-in (only while it is\n"
    "                       what shmprov wrote; with no profile, the one the last apply\n"
    "                       recorded), set the running kernel to what boot gives without\n"
    "                       it (the value of the file systemd-sysctl reads last, else the\n"
    "                       kernel's default), prove it with a test allocation; on any\n"
    "                       failure put everything back\n"
    "    --dry-run          say what would be deleted and each key's value from -> to;\n"
    "                       change nothing\n"
    "    --keep-runtime     delete the drop-in only; the running kernel is not touched\n"
    "    --force            delete a drop-in that is no longer what shmprov wrote (never\n"
    "                       a symbolic link or anything but a regular file)\n"
    "    --root DIR         delete the drop-in under DIR only (image builds)\n"
    "    --no-verify, --no-report, --defer-report   as for apply\n"
    "  verify               compare the running kernel, the drop-in and the boot order\n"
    "                       with the profile; changes nothing; exit 3 on drift\n"
    "    --report           report the result (in-sync or drift) as apply does\n"
    "  validate [FILE...]   check profiles (default: the profile plan would use);\n"
    "                       no side effects\n"
    "  flush                send spooled reports now (exit 1 while some are waiting)\n"
    "  status               limits (running, at boot, in the profile), page size, usage,\n"
    "                       headroom, overcommit, namespace, orphan candidates; changes\n"
    "                       nothing\n"
    "    --segments         list every segment (key, id, owner, perms, size, attached,\n"
    "                       creator and last pid and whether they are alive)\n"
    "    --remove-orphans   remove orphan candidates (nothing attached, creator and last\n"
    "                       user gone) that are unchanged on a re-check right before\n"
    "                       removal; keys the profile lists in segments.persistent_keys\n"
    "                       are kept; a log line per segment; exit 1 if one fails\n"
    "    --dry-run          with --remove-orphans: re-check, remove nothing\n"
    "\n"
    "Options:\n"
    "  -p, --profile FILE   host profile (default " PROFILE_DEFAULT_PATH ";\n"
    "                       when it does not exist the built-in default profile is used:\n"
    "                       auto tier, general workload, policy enforce)\n"
    "  -o, --output FORMAT  text (default) or json: one JSON document on stdout;\n"
    "                       prometheus (status only): the metrics in Prometheus' text\n"
    "                       format, as metrics.textfile in the profile receives them\n"
    "  -q, --quiet          only errors on stderr\n"
    "  -v, --verbose        more detail on stderr\n"
    "  -h, --help           show this help\n"
    "  -V, --version        show the version\n"
    "\n"
    "Exit status: 0 success (also \"nothing to change\", \"nothing to remove\" and\n"
    "\"runtime not applicable here\" where /proc/sys is read-only), 1 run-time\n"
    "failure (apply or remove refused or rolled back, an I/O error, the result not\n"
    "written; plan: apply would refuse), 2 bad invocation or invalid profile\n"
    "(nothing touched), 3 verify found drift.\n"
    "\n"
    "Diagnostics go to stderr; stdout carries only the result.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("shmprov: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'shmprov --help')\n", stderr);
    return EXIT_USAGE;
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Exit 2 is for what the operator named or wrote: no such file, not a
 * regular file, too large, a symlink loop. A failure of the machine while
 * reading (EIO, EACCES, ENOSPC, ENOMEM, EMFILE...) is a run-time failure. */
static bool profile_error_is_invalid(int r)
{
    switch (r) {
    case -ENOENT:
    case -ENOTDIR:
    case -EISDIR:
    case -EINVAL:
    case -EFBIG:
    case -ELOOP:
    case -ENAMETOOLONG:
        return true;
    default:
        return false;
    }
}

int cli_load_profile(const struct cli_options *o, struct profile **ret, const char **ret_note)
{
    struct profile_diags diags;
    const char *path = o->profile_path ? o->profile_path : PROFILE_DEFAULT_PATH;
    bool invalid;
    int r;

    *ret_note = NULL;
    profile_diags_init(&diags, path);
    r = profile_load(path, &diags, ret);
    if (r == -ENOENT && !o->profile_path) {
        *ret_note = "no " PROFILE_DEFAULT_PATH ": using the built-in default profile";
        log_info("%s", *ret_note);
        r = profile_load_builtin(&diags, ret);
    }
    if (r == 0) {
        profile_diags_free(&diags);
        return EXIT_OK;
    }
    invalid = diags.count > 0 || profile_error_is_invalid(r);
    if (diags.count > 0)
        profile_diags_print(&diags);
    else
        log_error("cannot read profile '%s': %s", path, fsutil_strerror(r));
    profile_diags_free(&diags);
    return invalid ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
}

int cli_check_root(const char *root)
{
    struct stat st;

    if (root[0] != '/' || strcmp(root, "/") == 0) {
        log_error("--root must be an absolute directory other than '/', not '%s'", root);
        return -EINVAL;
    }
    if (stat(root, &st) < 0) {
        log_error("--root '%s': %s", root, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("--root '%s': not a directory", root);
        return -EINVAL;
    }
    return 0;
}

int cli_lock(const char *path, struct lock **ret, char *why, size_t why_len)
{
    char text[PATH_MAX + 128];
    long holder = 0;
    int r = lock_acquire(path, LOCK_WAIT_MS, ret, &holder);

    if (r == -EWOULDBLOCK)
        (void)snprintf(text, sizeof(text), "another shmprov (pid %ld) holds %s; gave up after %d s", holder, path,
                       LOCK_WAIT_MS / 1000);
    else if (r < 0)
        (void)snprintf(text, sizeof(text), "cannot lock %s: %s", path, strerror(-r));
    if (r < 0) {
        log_error("%s", text);
        if (why)
            (void)snprintf(why, why_len, "%s", text);
    }
    return r;
}

/* Logs a reason, and keeps it for the report when asked to. */
static void say_error(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say_error(char *why, size_t why_len, const char *fmt, ...)
{
    char text[PATH_MAX + 256];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_error("%s", text);
    if (why)
        (void)snprintf(why, why_len, "%s", text);
}

int cli_build_plan(const struct profile *profile, bool force, const char *root, struct plan **ret, char *why,
                   size_t why_len)
{
    struct host_facts host;
    int r = host_read(&host);

    if (r < 0) {
        say_error(why, why_len, "cannot read the page size of this kernel: %s", strerror(-r));
        return EXIT_FAILURE_RUNTIME;
    }
    if (host.memtotal_bytes == 0 && profile->ram_tier == TIER_AUTO) {
        say_error(why, why_len,
                  "cannot read MemTotal (%s), which 'ram_tier: auto' needs; set host.ram_tier in the profile",
                  host.memtotal_error);
        host_facts_free(&host);
        return EXIT_FAILURE_RUNTIME;
    }
    r = plan_build(profile, &host, force, root, ret);
    if (r < 0) {
        say_error(why, why_len, "cannot build the plan: %s", strerror(-r));
        return EXIT_FAILURE_RUNTIME;
    }
    /* A profile that contradicts itself is invalid wherever it is used. */
    if (plan_refusal(*ret) == PLAN_PROFILE_CONTRADICTS) {
        for (unsigned i = 0; i < (*ret)->sizing.nproblems; i++)
            if ((*ret)->sizing.problems[i].in_profile) /* only limits.shmall can contradict */
                fprintf(stderr, "%s:%u:%u: error: %s\n", profile->path, profile->shmall.mark.line,
                        profile->shmall.mark.col, (*ret)->sizing.problems[i].text);
        plan_free(*ret);
        *ret = NULL;
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void log_outcome(const struct apply_outcome *out)
{
    if (out->probe_ran && out->probe.key_note[0])
        log_warn("test allocation: %s", out->probe.key_note);
    if (out->result == APPLY_FAILED) {
        log_error("%s", out->error);
        if (out->restored[0])
            log_error("restored: %s", out->restored);
    } else if (out->result == APPLY_NOT_APPLICABLE) {
        log_warn("runtime not applicable here: %s; nothing changed", out->runtime_skip_reason);
    }
}

bool cli_transaction(const char *command, const struct plan *plan, const struct apply_options *opts,
                     struct apply_outcome *out, struct report_error *error)
{
    int r = apply_run(plan, opts, out);

    if (r < 0) {
        (void)snprintf(error->message, sizeof(error->message), "%s failed: %s", command, strerror(-r));
        log_error("%s", error->message);
        error->code = REPORT_ERR_IO;
        error->step = "runtime";
        return false;
    }
    log_outcome(out);
    return true;
}

void cli_state_run(uint64_t start_ms, const char *result, const struct apply_outcome *out, struct state_run *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->known = true;
    ret->end = (uint64_t)time(NULL);
    ret->duration_ms = clock_monotonic_ms() - start_ms;
    ret->probe_passed = out && out->probe_ran ? out->probe.passed : -1;
    (void)snprintf(ret->result, sizeof(ret->result), "%s", result);
}

/* Returns <0 on a usage error already reported (as -exit code), 0 to exit
 * successfully now (--help, --version), >0 to run the command. */
static int parse_argv(int argc, char **argv, struct cli_options *o, const struct command **ret_cmd)
{
    enum {
        ARG_DRY_RUN = 0x100,
        ARG_FORCE,
        ARG_NO_REPORT,
        ARG_NO_VERIFY,
        ARG_ROOT,
        ARG_PERSIST_ONLY,
        ARG_DEFER_REPORT,
        ARG_SEGMENTS,
        ARG_REMOVE_ORPHANS,
        ARG_REPORT,
        ARG_KEEP_RUNTIME,
    };
    static const struct option options[] = {
        { "profile", required_argument, NULL, 'p' },
        { "output", required_argument, NULL, 'o' },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "dry-run", no_argument, NULL, ARG_DRY_RUN },
        { "force", no_argument, NULL, ARG_FORCE },
        { "no-report", no_argument, NULL, ARG_NO_REPORT },
        { "defer-report", no_argument, NULL, ARG_DEFER_REPORT },
        { "no-verify", no_argument, NULL, ARG_NO_VERIFY },
        { "root", required_argument, NULL, ARG_ROOT },
        { "persist-only", no_argument, NULL, ARG_PERSIST_ONLY },
        { "segments", no_argument, NULL, ARG_SEGMENTS },
        { "remove-orphans", no_argument, NULL, ARG_REMOVE_ORPHANS },
        { "report", no_argument, NULL, ARG_REPORT },
        { "keep-runtime", no_argument, NULL, ARG_KEEP_RUNTIME },
        {},
    };
    unsigned used = 0;
    const struct command *cmd;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":p:o:qvhV", options, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (optarg[0] == '\0')
                return -usage_error("--profile needs a file name");
            o->profile_path = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "text") == 0)
                o->output = OUTPUT_TEXT;
            else if (strcmp(optarg, "json") == 0)
                o->output = OUTPUT_JSON;
            else if (strcmp(optarg, "prometheus") == 0)
                o->output = OUTPUT_PROMETHEUS;
            else
                return -usage_error("--output must be 'text', 'json' or 'prometheus', not '%s'", optarg);
            break;
        case 'q':
            log_set_level(LOG_QUIET);
            break;
        case 'v':
            log_set_level(LOG_VERBOSE);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'V':
            printf("shmprov %s\n", SHMPROV_VERSION);
            return 0;
        case ARG_DRY_RUN:
            o->dry_run = true;
            used |= OPT_DRY_RUN;
            break;
        case ARG_FORCE:
            o->force = true;
            used |= OPT_FORCE;
            break;
        case ARG_NO_REPORT:
            o->no_report = true;
            used |= OPT_TRANSACTION;
            break;
        case ARG_DEFER_REPORT:
            o->defer_report = true;
            used |= OPT_TRANSACTION;
            break;
        case ARG_NO_VERIFY:
            o->no_verify = true;
            used |= OPT_TRANSACTION;
            break;
        case ARG_PERSIST_ONLY:
            o->persist_only = true;
            used |= OPT_PERSIST_ONLY;
            break;
        case ARG_KEEP_RUNTIME:
            o->keep_runtime = true;
            used |= OPT_KEEP_RUNTIME;
            break;
        case ARG_ROOT:
            o->root = optarg;
            used |= OPT_TRANSACTION;
            break;
        case ARG_SEGMENTS:
            o->segments = true;
            used |= OPT_STATUS_ONLY;
            break;
        case ARG_REMOVE_ORPHANS:
            o->remove_orphans = true;
            used |= OPT_STATUS_ONLY;
            break;
        case ARG_REPORT:
            o->report = true;
            used |= OPT_REPORT;
            break;
        case ':':
            return -usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return -usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }

    if (optind >= argc)
        return -usage_error("no command given");
    cmd = find_command(argv[optind]);
    if (!cmd)
        return -usage_error("unknown command '%s'", argv[optind]);
    /* apply, remove and verify write the metrics to metrics.textfile;
     * their stdout is their result. */
    if (o->output == OUTPUT_PROMETHEUS && cmd->exec != cmd_status)
        return -usage_error("--output prometheus is for 'status' only, not '%s' (apply, verify and status write "
                            "the metrics to the profile's metrics.textfile)", cmd->name);
    if (used & OPT_DRY_RUN & ~cmd->options)
        return -usage_error("--dry-run is an option of 'apply', 'remove' and 'status', not of '%s'", cmd->name);
    if (used & OPT_STATUS_ONLY & ~cmd->options)
        return -usage_error("--segments and --remove-orphans are options of 'status', not of '%s'", cmd->name);
    if (cmd->exec == cmd_status && o->dry_run && !o->remove_orphans)
        return -usage_error("'status --dry-run' needs --remove-orphans: status alone changes nothing");
    if (used & OPT_TRANSACTION & ~cmd->options)
        return -usage_error("--no-report, --defer-report, --no-verify and --root are options of 'apply' and "
                            "'remove', not of '%s'", cmd->name);
    if (used & OPT_PERSIST_ONLY & ~cmd->options)
        return -usage_error("--persist-only is an option of 'apply', not of '%s'%s", cmd->name,
                            cmd->exec == cmd_remove ? " (remove deletes the drop-in where /proc/sys is read-only)" : "");
    if (used & OPT_KEEP_RUNTIME & ~cmd->options)
        return -usage_error("--keep-runtime is an option of 'remove', not of '%s'", cmd->name);
    if (used & OPT_REPORT & ~cmd->options)
        return -usage_error("--report is an option of 'verify' and 'apply --dry-run', not of '%s'", cmd->name);
    if (cmd->exec == cmd_apply && o->report && !o->dry_run)
        return -usage_error("'apply --report' needs --dry-run: apply reports every run");
    if (o->report && o->no_report)
        return -usage_error("--report and --no-report contradict each other");
    if (used & OPT_FORCE & ~cmd->options)
        return -usage_error("--force is an option of 'plan', 'apply' and 'remove', not of '%s'", cmd->name);
    o->args = argv + optind + 1;
    o->nargs = argc - optind - 1;
    if (cmd->max_args >= 0 && o->nargs > cmd->max_args)
        return -usage_error("unexpected argument '%s'", o->args[0]);
    *ret_cmd = cmd;
    return 1;
}

/* As coreutils' close_stdout: a result that never reached its reader (a
 * full disk, a closed pipe, /dev/full) is a failure, not a success. */
static int finish_stdout(int code)
{
    int r = streams_finish_stdout();

    if (r == 0)
        return code;
    log_error("cannot write the result to standard output: %s", strerror(-r));
    return code == EXIT_OK ? EXIT_FAILURE_RUNTIME : code;
}

int cli_main(int argc, char **argv)
{
    struct cli_options o = { .output = OUTPUT_TEXT };
    const struct command *cmd = NULL;
    int r;

    streams_setup();
    r = parse_argv(argc, argv, &o, &cmd);

    if (r < 0)
        return -r;
    if (r == 0) /* --help, --version */
        return finish_stdout(EXIT_OK);
    /* parse_argv() sets cmd whenever it returns > 0; the analyzer cannot
     * tell, as it does not follow usage_error() (variadic) to its return. */
    if (!cmd)
        return EXIT_USAGE;
    return finish_stdout(cmd->exec(&o));
}
